"""softce.torch in training: the loss curve of a small model trained with
softce.torch.CrossEntropyLoss against torch.nn.CrossEntropyLoss from the same weights, the
peak memory of one training step (in a subprocess), and PyTorch CUDA tensors on a GPU."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import softce.torch as st  # noqa: E402


def _train(loss_fn, model, data, steps: int) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for step in range(steps):
        x, y = data[step % len(data)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("dtype,rtol,options", [
    (torch.float64, 1e-10, {"label_smoothing": 0.1}),
    (torch.float32, 1e-4, {"label_smoothing": 0.1}),
    (torch.float64, 1e-10, {"ignore_index": 0, "inplace_backward": True}),
], ids=str)
def test_the_loss_curve_matches_torch_nn(dtype, rtol, options):
    gen = torch.Generator().manual_seed(0)
    classes = 30
    teacher = torch.randn(classes, 5, generator=gen, dtype=dtype)
    inputs = [torch.randn(32, 5, 16, generator=gen, dtype=dtype) for _ in range(4)]
    # labels a linear map of each position's features picks: learnable
    data = [(x, torch.einsum("cf,nfd->ncd", teacher, x).argmax(1)) for x in inputs]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(5, 32, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv1d(32, classes, 1)).to(dtype)  # (N, C, d1)
    ours = copy.deepcopy(model)
    theirs_options = {k: v for k, v in options.items() if k != "inplace_backward"}
    got = _train(st.CrossEntropyLoss(**options), ours, data, 30)
    ref = _train(torch.nn.CrossEntropyLoss(**theirs_options), model, data, 30)
    assert got[-1] < 0.8 * got[0], "the model did not learn"
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=rtol, atol=0)
    for p, q in zip(ours.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=100 * rtol, atol=100 * rtol)


# peak memory of one training step ---------------------------------------------------------

STEP = textwrap.dedent("""
    import gc, json, sys
    import torch
    import torch.nn.functional as F
    import softce.torch as st
    from softce import buffers

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    torch.set_num_threads(2)
    rows, classes, features = int(sys.argv[1]), int(sys.argv[2]), 32
    h = torch.randn(rows, features)
    labels = torch.randint(0, classes, (rows,))
    result = {"logits": rows * classes * 4}
    for which, loss_fn in (
            ("softce", st.cross_entropy), ("torch", F.cross_entropy),
            ("inplace", lambda x, t: st.cross_entropy(x, t, inplace_backward=True))):
        model = torch.nn.Linear(features, classes)

        def step():
            model.zero_grad(set_to_none=False)
            loss_fn(model(h), labels).backward()

        step()  # compile/load kernels, allocate the parameters' gradients
        buffers.configure(buffers.configure(0))  # free the outputs softce keeps for reuse
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        base = status("VmRSS:")
        step()
        step()  # the second reuses the first's gradient buffer
        result[which] = status("VmHWM:") - base
    print(json.dumps(result))
""")


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="resetting the peak RSS needs Linux's /proc/self/clear_refs")
def test_a_training_step_holds_one_gradient_beyond_the_logits():
    rows, classes = 1024, 16384  # 64 MiB of float32 logits
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", STEP, str(rows), str(classes)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    peak = json.loads(run.stdout.strip().splitlines()[-1])
    logits = peak["logits"]
    slack = 8 << 20  # the interpreter's own allocations, the weights' gradient (2 MiB)
    # a step allocates the logits and, with softce, one gradient of their size (its buffer
    # kept between steps counts: the measure starts before the first)
    assert peak["softce"] - logits <= 1.25 * logits + slack, peak
    # inplace_backward: the gradient goes over the logits
    assert peak["inplace"] - logits <= 0.25 * logits + slack, peak
    assert peak["torch"] > peak["softce"] + 0.5 * logits, peak
    print({k: round(v / logits, 2) for k, v in peak.items()})


STEP_16 = textwrap.dedent("""
    import gc, json, sys
    import torch
    import softce.torch as st
    from softce import buffers

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    torch.set_num_threads(2)
    rows, classes = int(sys.argv[1]), int(sys.argv[2])
    dtype = getattr(torch, sys.argv[3])
    logits = torch.randn(rows, classes).to(dtype).requires_grad_()
    labels = torch.randint(0, classes, (rows,))
    result = {"logits": logits.nelement() * logits.element_size()}
    for which, kw in (("softce", {}), ("smoothed", {"label_smoothing": 0.1}),
                      ("inplace", {"inplace_backward": True})):
        def step():
            logits.grad = None
            x = logits * 1 if kw.get("inplace_backward") else logits
            st.cross_entropy(x, labels, **kw).backward()
            assert logits.grad.dtype == dtype, logits.grad.dtype

        step()  # compile/load kernels
        logits.grad = None
        buffers.configure(buffers.configure(0))  # free the outputs softce keeps for reuse
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        base = status("VmRSS:")
        step()
        step()  # the second reuses the first's gradient buffer
        result[which] = status("VmHWM:") - base
    print(json.dumps(result))
""")


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="resetting the peak RSS needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_16_bit_step_holds_one_16_bit_gradient_and_no_float32_copy(dtype):
    """16-bit logits are read as 16 bits: a step's extra memory is its 16-bit gradient (the
    logits exist before the measure), not a float32 copy (2x the logits) and a float32
    gradient; in place the step's own copy x = logits * 1 holds the gradient."""
    rows, classes = 1024, 16384  # 32 MiB of 16-bit logits
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", STEP_16, str(rows), str(classes), dtype],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    peak = json.loads(run.stdout.strip().splitlines()[-1])
    logits = peak["logits"]
    slack = 6 << 20  # the interpreter's own allocations
    assert peak["softce"] <= 1.25 * logits + slack, peak
    assert peak["smoothed"] <= 1.25 * logits + slack, peak
    # the copy x = logits * 1, whose memory the gradient takes, and autograd's gradient of
    # logits through the product (a new tensor): twice the logits, never a float32 copy
    assert peak["inplace"] <= 2.25 * logits + slack, peak
    print({k: round(v / logits, 2) for k, v in peak.items()})


# CUDA tensors -----------------------------------------------------------------------------

@pytest.mark.gpu
def test_cuda_tensors_match_pytorch():
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1000, 3, generator=gen).to(dev)
    t = torch.randint(0, 1000, (64, 3), generator=gen).to(dev)
    w = torch.rand(1000, generator=gen).to(dev) + 0.5
    kw = {"weight": w, "label_smoothing": 0.1}
    for inplace in (False, True):
        a = x.clone().requires_grad_()
        loss = st.cross_entropy(a * 1, t, **kw, inplace_backward=inplace)
        (loss * 0.5).backward()
        b = x.clone().requires_grad_()
        ref = F.cross_entropy(b, t, **kw)
        (ref * 0.5).backward()
        assert loss.device == dev and a.grad.device == dev
        torch.testing.assert_close(loss, ref, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(a.grad, b.grad, rtol=2e-5, atol=2e-6)
    y = x.clone().requires_grad_()
    out = st.log_softmax(y, 1)
    out.backward(torch.ones_like(out))
    z = x.clone().requires_grad_()
    ref = F.log_softmax(z, 1)
    ref.backward(torch.ones_like(ref))
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(y.grad, z.grad, rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match="target is on cpu"):
        st.cross_entropy(x, t.cpu())
