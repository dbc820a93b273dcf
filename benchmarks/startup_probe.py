"""Run by benchmarks.startup in a fresh interpreter: ``python startup_probe.py N`` imports
softce, calls its first N functions twice each on a 64x1000 float32 input and prints the
import and call times (seconds) as one JSON object; ``python startup_probe.py NAME ...``
calls the functions named."""

import json
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402 - timed

t1 = time.perf_counter()
import softce  # noqa: E402 - timed

t2 = time.perf_counter()
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 1000)).astype(np.float32)
labels = rng.integers(0, 1000, 64)
p = np.full_like(x, 1e-3)
calls = [
    ("softmax", lambda: softce.softmax(x)),
    ("log_softmax", lambda: softce.log_softmax(x)),
    ("logsumexp", lambda: softce.logsumexp(x)),
    ("cross_entropy", lambda: softce.cross_entropy(x, labels)),
    ("cross_entropy_probs", lambda: softce.cross_entropy(x, p)),
    ("cross_entropy_grad", lambda: softce.cross_entropy_grad(x, labels)),
]
first, second = {}, {}
chosen = (calls[: int(sys.argv[1])] if sys.argv[1].isdigit()
          else [(name, call) for name, call in calls if name in sys.argv[1:]])
for name, call in chosen:
    t = time.perf_counter()
    call()
    first[name] = time.perf_counter() - t
    t = time.perf_counter()
    call()
    second[name] = time.perf_counter() - t
print(json.dumps({"import_numpy_s": t1 - t0, "import_softce_s": t2 - t1,
                  "first_call_s": first, "second_call_s": second}))
