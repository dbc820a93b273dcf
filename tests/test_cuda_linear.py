"""``softce.linear_cross_entropy`` on CUDA arrays: the chunk loop on the device
(``softce.cuda.products``: products by ``softce.cuda.linalg.matmul``, softce's CUDA
cross-entropy kernels on each chunk) gives the NumPy route's loss and gradients, which
test_linear_cross_entropy.py checks against PyTorch, for every option, row and position chunks,
the class split, K-dimensional and unbatched shapes.

As in test_cuda_sim.py, ``test_linear_in_the_simulator`` runs this file again with
NUMBA_ENABLE_CUDASIM=1, where the ``cuda`` tests run.
"""


import numpy as np
import pytest
import simulator

import softce

on_cuda = pytest.mark.cuda


def test_linear_in_the_simulator() -> None:
    simulator.run_file(__file__)


def test_a_weight_on_another_backend_than_the_input_is_refused_by_name() -> None:
    class Device:
        __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    with pytest.raises(TypeError, match="linear_weight lives on the cuda backend"):
        softce.linear_cross_entropy(np.zeros((2, 3), np.float32), Device(), np.zeros(2, int))


def test_the_chunk_loops_kernels_compile_to_ptx_without_spills() -> None:
    """Each kernel of softce.cuda.linalg, as the chunk loop launches it, compiles for sm_90
    and assembles with ptxas: no spills or stack, no float64 in a float32 kernel."""
    from softce.cuda import linalg, ptx

    found = linalg.kernels()
    assert {name.rsplit("_", 1)[0] for name, _, _ in found} == {
        "matmul", "add", "add_column_sums", "fill", "smoothed_target"}
    for name, kernel, sig in found:
        r = ptx.check(name.replace("float32", "f32"), kernel, sig, (9, 0))
        assert r.spills == 0 and r.stack_bytes == 0 and not r.f64_in_f32, r


@pytest.fixture(autouse=True)
def _launch_configuration():
    with simulator.tiny_grids():
        yield


def host(a: object) -> np.ndarray:
    return np.asarray(a.copy_to_host() if hasattr(a, "copy_to_host") else a)


def device(a: np.ndarray | None) -> object:
    from numba import cuda

    return None if a is None else cuda.to_device(a)


def assert_as_numpy(args: tuple, kw: dict, dtype: type, grad_output: object = None) -> None:
    """The CUDA route's loss and gradients (numba device arrays) equal the NumPy route's."""
    want = softce.linear_cross_entropy_grad(*args, **kw, grad_output=grad_output)
    dkw = {**kw, "linear_bias": device(kw.get("linear_bias"))}
    dgo = device(grad_output) if isinstance(grad_output, np.ndarray) else grad_output
    dargs = (device(args[0]), device(args[1]),
             device(args[2]) if args[2].dtype.kind == "f" else args[2])  # labels: host
    got = softce.linear_cross_entropy_grad(*dargs, **dkw, grad_output=dgo)
    assert len(got) == len(want)
    tol = {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12,
                                                                    "atol": 1e-13}
    for g, w in zip(got, want):
        assert hasattr(g, "copy_to_host"), type(g)  # stays on the device
        np.testing.assert_allclose(host(g), np.asarray(w), **tol)
    loss = softce.linear_cross_entropy(*dargs, **dkw)
    np.testing.assert_allclose(host(loss), np.asarray(want[0]), **tol)


@on_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_of_views_and_vectors_equals_numpys(dtype: type) -> None:
    """Products of transposed views, of a vector on either side, accumulated or not, over
    more tiles than the grid has blocks."""
    from softce.cuda import linalg

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((14, 9)).astype(dtype), rng.standard_normal((13, 9)).astype(dtype)
    c = rng.standard_normal((14, 13)).astype(dtype)
    da, db, dc = device(a), device(b), device(c)
    tol = {"rtol": 1e-5} if dtype == np.float32 else {"rtol": 1e-13}
    linalg.matmul(da, db.T, dc, accumulate=True)
    np.testing.assert_allclose(host(dc), c + a @ b.T, **tol)
    linalg.matmul(da.T, dc, device_out := device(np.zeros((9, 13), dtype)))
    np.testing.assert_allclose(host(device_out), a.T @ host(dc), **tol)
    v, u = rng.standard_normal(9).astype(dtype), rng.standard_normal(14).astype(dtype)
    out = device(np.ones(14, dtype))
    linalg.matmul(da, device(v), out, accumulate=True)
    np.testing.assert_allclose(host(out), 1 + a @ v, **tol)
    out = device(np.zeros(9, dtype))
    linalg.matmul(device(u), da, out)
    np.testing.assert_allclose(host(out), u @ a, **tol)


def problem(dtype: type, n: int = 5, f: int = 4, c: int = 11, positions: tuple = (),
            probs: bool = False, bias: bool = True, seed: int = 1):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, f)).astype(dtype)
    w = rng.standard_normal((c, *positions, f)).astype(dtype)
    b = rng.standard_normal((c, *positions)).astype(dtype) if bias else None
    if probs:
        t = rng.random((n, c, *positions)).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, c, (n, *positions))
        t.reshape(-1)[1] = -100  # ignored
    return (h, w, t), b


@on_cuda
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_every_option_in_row_chunks_as_numpy(reduction: str) -> None:
    args, b = problem(np.float32)
    kw = {"linear_bias": b, "weight": np.linspace(0.5, 2.0, 11), "label_smoothing": 0.1,
          "z_loss": 1e-3, "softcap": 3.0, "reduction": reduction,
          "chunk_bytes": 2 * 2 * 11 * 4}  # two rows of logits and their capped copy
    assert_as_numpy(args, kw, np.float32, grad_output=0.5)


@on_cuda
def test_k_dimensional_probabilities_in_position_chunks_as_numpy() -> None:
    """Weight (C, d1, F), bias (C, d1), probabilities (N, C, d1), reduction "none" with a
    gradient per position; a chunk holds fewer positions than a row has."""
    args, b = problem(np.float64, n=3, c=6, positions=(3,), probs=True)
    kw = {"linear_bias": b, "reduction": "none", "chunk_bytes": 2 * 6 * 2 * 8}
    go = np.random.default_rng(2).standard_normal((3, 3))
    assert_as_numpy(args, kw, np.float64, grad_output=go)


@on_cuda
def test_class_split_as_numpy() -> None:
    """One row's logits over the budget (10 logits of 11): blocks of 5 classes, their LSEs
    merged."""
    args, b = problem(np.float32, n=2)
    kw = {"linear_bias": b, "label_smoothing": 0.1, "weight": np.linspace(0.5, 2.0, 11),
          "chunk_bytes": 10 * 4}
    assert_as_numpy(args, kw, np.float32)


@on_cuda
def test_unbatched_input_without_bias_as_numpy() -> None:
    (h, w, t), _ = problem(np.float64, bias=False)
    assert_as_numpy((h[0], w, t[0]), {}, np.float64)


@on_cuda
def test_a_host_weight_with_device_input_is_refused_by_name() -> None:
    (h, w, t), _ = problem(np.float32)
    with pytest.raises(TypeError, match="linear_weight lives on the cpu backend"):
        softce.linear_cross_entropy(device(h), w, t)
    with pytest.raises(TypeError, match="linear_bias lives on the cpu backend"):
        softce.linear_cross_entropy(device(h), device(w), t, linear_bias=np.zeros(11, h.dtype))
