"""Labels masked on the device (``deferred_label_checks``): a cross-entropy call
on CUDA arrays computes its counted positions, their weights and the mean's divisor on the
device and hands the bad-label flag to the handler instead of reading it. Its losses and
gradients equal the default path's (labels checked, and masked where needed, on the host) for
every option, ignored positions and empty means included; a bad label sets the flag and its
position is neither read nor counted.

As in test_cuda_sim.py, ``test_deferred_labels_in_the_simulator`` runs this file again with
NUMBA_ENABLE_CUDASIM=1, where the ``cuda`` tests run.
"""


import numpy as np
import pytest
import simulator

import softce
from softce.cuda import deferred_label_checks

on_cuda = pytest.mark.cuda


def test_deferred_labels_in_the_simulator() -> None:
    simulator.run_file(__file__)


@pytest.fixture(autouse=True)
def _launch_configuration():
    with simulator.tiny_grids():
        yield


class Flags:
    """A handler that keeps the flags it is given (device arrays) and reads them later."""

    def __init__(self) -> None:
        self.flags: list[object] = []

    def __call__(self, flag: object) -> None:
        self.flags.append(flag)

    def raised(self) -> list[tuple[int, int]]:
        """(bad label, non-finite class weight) of each call."""
        return [tuple(int(v) for v in f.copy_to_host()) for f in self.flags]


def host(a: object) -> np.ndarray:
    return np.asarray(a.copy_to_host() if hasattr(a, "copy_to_host") else a)


OPTIONS = [{}, {"ignore_index": 2}, {"weight": np.linspace(-0.5, 2.0, 7)},
           {"label_smoothing": 0.1, "z_loss": 1e-3}, {"softcap": 3.0, "return_lse": True}]


@on_cuda
@pytest.mark.parametrize("reduction", ["mean", "none"])  # "sum" is the mean's numerator
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_masked_on_the_device_as_on_the_host(options: dict, reduction: str) -> None:
    from numba import cuda

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 7, 5)) * 3).astype(np.float32)
    labels = rng.integers(0, 7, (2, 5))
    labels[0, 1] = options.get("ignore_index", -100)  # ignored
    labels[1, 3] = 2
    kw = {"axis": 1, "reduction": reduction, **options}
    if "weight" in kw:
        kw["weight"] = cuda.to_device(kw["weight"].astype(np.float32))
    go = (rng.standard_normal((2, 5)).astype(np.float32) if reduction == "none" else 0.5)
    dx, dlab = cuda.to_device(x), cuda.to_device(labels)
    want = softce.cross_entropy_grad(dx, dlab, grad_output=go, **kw)
    flags = Flags()
    with deferred_label_checks(flags):
        got = softce.cross_entropy_grad(dx, dlab, grad_output=go, **kw)
    for g, w in zip(got, want):
        np.testing.assert_allclose(host(g), host(w), rtol=2e-6, atol=1e-7)
    if reduction == "mean":  # the loss alone: the forward kernels
        want_loss = softce.cross_entropy(dx, dlab, **kw)
        with deferred_label_checks(flags):
            got_loss = softce.cross_entropy(dx, dlab, **kw)
        for g, w in zip(got_loss if isinstance(got_loss, tuple) else (got_loss,),
                        want_loss if isinstance(want_loss, tuple) else (want_loss,)):
            np.testing.assert_allclose(host(g), host(w), rtol=2e-6, atol=1e-7)
    assert flags.raised() == [(0, 0)] * len(flags.flags) and flags.flags


@on_cuda
def test_more_positions_and_classes_than_the_mask_has_threads() -> None:
    """The mask is one block: each thread takes positions and classes in strides, and the
    mean's divisor adds their partial sums in order; the bad-weight flag sees the last
    class."""
    from numba import cuda

    rng = np.random.default_rng(8)
    x = cuda.to_device(rng.standard_normal((36, 264)).astype(np.float32))  # a GPU's 256 too
    labels = rng.integers(0, 264, 36)
    labels[::7] = 5  # ignored
    dlab = cuda.to_device(labels)
    weight = cuda.to_device(rng.uniform(0.5, 2.0, 264).astype(np.float32))
    kw = {"weight": weight, "ignore_index": 5, "reduction": "mean"}
    want = softce.cross_entropy(x, dlab, **kw)
    flags = Flags()
    with deferred_label_checks(flags):
        got = softce.cross_entropy(x, dlab, **kw)
        bad_weight = weight.copy_to_host()
        bad_weight[-1] = np.inf
        softce.cross_entropy(x, dlab, weight=cuda.to_device(bad_weight))
    np.testing.assert_allclose(host(got), host(want), rtol=2e-6)
    assert flags.raised() == [(0, 0), (0, 1)]


@on_cuda
def test_a_bad_label_sets_the_flag_and_is_not_read() -> None:
    from numba import cuda

    x = np.zeros((3, 4), np.float32)
    flags = Flags()
    with deferred_label_checks(flags):
        loss, grad = softce.cross_entropy_grad(cuda.to_device(x),
                                               cuda.to_device(np.array([1, 9, 3])))
    assert flags.raised() == [(1, 0)]
    # the bad position counts for nothing: the mean of the two others, zero gradient there
    np.testing.assert_allclose(host(loss), np.log(4), rtol=1e-6)
    assert not host(grad)[1].any()
    with pytest.raises(ValueError, match="label 9"):  # the default path raises at once
        softce.cross_entropy(cuda.to_device(x), cuda.to_device(np.array([1, 9, 3])))


@on_cuda
def test_means_over_nothing() -> None:
    from numba import cuda

    x = cuda.to_device(np.ones((2, 3), np.float32))
    labels = cuda.to_device(np.array([-100, -100]))
    flags = Flags()
    with deferred_label_checks(flags):
        assert np.isnan(host(softce.cross_entropy(x, labels)))
        assert host(softce.cross_entropy(x, labels, empty_mean=0.0)) == 0
        loss, grad = softce.cross_entropy_grad(x, labels)
        empty = softce.cross_entropy(cuda.to_device(np.ones((0, 3), np.float32)),
                                     cuda.to_device(np.zeros(0, np.int64)))
    assert np.isnan(host(loss)) and not host(grad).any()
    assert np.isnan(host(empty))
    assert flags.raised() == [(0, 0)] * 4


@on_cuda
def test_every_array_of_a_call_comes_from_the_callers_allocator(monkeypatch) -> None:
    """Inside allocating_with (as softce.torch calls it for CUDA tensors: PyTorch's caching
    allocator) a call makes no device array of numba's: outputs, per-row results, the labels'
    mask and flags, casts and host data copied over all come from the given allocator, and
    the results are the same."""
    from numba import cuda

    from softce.cuda import allocating_with

    rng = np.random.default_rng(6)
    x = cuda.to_device(rng.standard_normal((4, 9)).astype(np.float32))
    labels = cuda.to_device(np.array([0, 8, -100, 3], np.int32))
    w = np.linspace(0.5, 1.5, 9)  # host float64 data: copied over and cast on the device
    kw = {"weight": w, "label_smoothing": 0.1, "return_lse": True}
    want = [host(a) for a in softce.cross_entropy_grad(x, labels, **kw)]
    want_p = host(softce.softmax(x))
    device_array = cuda.device_array
    made = []

    def allocate(shape: tuple[int, ...], dtype: np.dtype) -> object:
        made.append((shape, dtype))
        return device_array(shape, dtype)

    def refuse(*args, **kwargs):
        raise AssertionError("an array of numba's own")

    monkeypatch.setattr(cuda, "device_array", refuse)
    monkeypatch.setattr(cuda, "to_device", refuse)
    with allocating_with(allocate), deferred_label_checks(Flags()):
        got = softce.cross_entropy_grad(x, labels, **kw)
        p = softce.softmax(x)
    for g, r in zip(got, want):
        np.testing.assert_allclose(host(g), r, rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(host(p), want_p)
    assert ((4, 9), np.dtype(np.float32)) in made and len(made) >= 8, made
    with pytest.raises(TypeError, match="allocate"):
        with allocating_with(None):
            pass


def test_the_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="handler"):
        with deferred_label_checks(None):
            pass


@pytest.mark.gpu
def test_a_pytorch_training_step_never_waits_for_the_gpu() -> None:
    """softce.torch.cross_entropy forward and backward on CUDA tensors, ignored labels and
    label smoothing under the mean, in PyTorch's sync debug mode "error": no operation
    synchronises with the host; the results equal F.cross_entropy's (class weights too,
    which are read on the host)."""
    import torch
    import torch.nn.functional as F

    import softce.torch as st

    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 1000, device="cuda", generator=gen, requires_grad=True)
    labels = torch.randint(0, 1000, (64,), device="cuda", generator=gen)
    labels[::7] = -100
    weight = torch.rand(1000, device="cuda", generator=gen) + 0.5
    st.cross_entropy(x, labels).backward()  # kernels compiled and loaded first
    torch.cuda.synchronize()
    x.grad = None
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = st.cross_entropy(x, labels, label_smoothing=0.1)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.cross_entropy(ref_x, labels, label_smoothing=0.1)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=2e-5, atol=1e-7)
    w_loss = st.cross_entropy(x, labels, weight=weight)
    torch.testing.assert_close(w_loss, F.cross_entropy(x, labels, weight=weight), rtol=2e-5,
                               atol=1e-6)


@on_cuda
def test_class_weights_stay_on_the_device(monkeypatch) -> None:
    """Under a deferred check the class weights are never read on the host (given on the
    device, or as host data copied there); a weight that is not finite sets the second
    flag; a weight of the wrong shape or type is refused at once, by name."""
    from numba import cuda

    from softce.cuda.backend import BACKEND

    rng = np.random.default_rng(4)
    x = cuda.to_device(rng.standard_normal((6, 5)).astype(np.float32))
    labels = cuda.to_device(np.array([0, 4, -100, 2, 2, 1]))
    w = np.array([0.5, 1.0, 2.0, -1.0, 3.0], np.float32)
    want = [host(a) for a in softce.cross_entropy_grad(x, labels, weight=w)]
    to_host = BACKEND.to_host
    monkeypatch.setattr(BACKEND, "to_host", lambda v: pytest.fail("read on the host")
                        if getattr(v, "shape", None) == (5,) else to_host(v))
    flags = Flags()
    with deferred_label_checks(flags):
        for weight in (cuda.to_device(w), w, cuda.to_device(w.astype(np.float64))):
            got = softce.cross_entropy_grad(x, labels, weight=weight)
            for g, r in zip(got, want):
                np.testing.assert_allclose(host(g), r, rtol=2e-6, atol=1e-7)
        softce.cross_entropy(x, labels, weight=np.array([1, np.inf, 1, 1, 1], np.float32))
        with pytest.raises(ValueError, match="weight must have shape"):
            softce.cross_entropy(x, labels, weight=cuda.to_device(np.ones(4, np.float32)))
        with pytest.raises(TypeError, match="weight must be a real array"):
            softce.cross_entropy(x, labels, weight=cuda.to_device(np.ones(5, np.bool_)))
    assert flags.raised() == [(0, 0)] * 3 + [(0, 1)]
