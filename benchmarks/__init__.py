"""Benchmark softce against NumPy, SciPy and PyTorch (CPU) in one run.

Every call is made as a user makes it: NumPy arrays in, fresh outputs allocated by the call.
Each (shape, function, implementation) is warmed up once, then timed ``--repeats`` times
(``--ref-repeats`` for the references) in ``--rounds`` blocks, each after one untimed call:
softce and the references take turns, by default one softce call per round with the
references' calls spread evenly among the rounds, so a stretch of slow machine meets them all
alike. The median is reported. The machine's copy bandwidth is measured in the same run, and two
subprocesses time the cold first call (an empty Numba cache) and the warm import.

Bytes moved (for GB/s): logits read once + every output written once + labels or target
probabilities read once. softmax/log_softmax: 2 x logits; logsumexp: logits + one value per
row; cross_entropy: logits + labels (or target) + one loss per row; cross_entropy_grad:
2 x logits + labels + one loss per row. A copy counts read + write (2 x its size).

Run it from a source checkout: ``softce bench``, ``python -m benchmarks`` or
``python scripts/bench.py`` (``--help`` for the options). The modules: ``cases`` (shapes,
functions, inputs), ``implementations`` (softce's and the references' calls), ``timing``
(interleaved rounds, medians, the copy and preallocated floors), ``bar`` (the speedups to
reach), ``load`` (other processes' CPU use), ``machine`` (the machine and the code measured),
``startup`` (cold and warm subprocesses running ``startup_probe.py``), ``cells`` (table
cells), ``report`` (BENCHMARKS.md and the JSON), ``plot``, ``console`` and ``cli``
(``main``)."""
