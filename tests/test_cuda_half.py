"""The 16-bit CUDA kernels (``<kernel>_bf16``, ``<kernel>_f16``): in the CUDA simulator (or on
a GPU) each equals its float32 kernel run on the widened logits, its outputs of rows rounded
once to 16 bits, nearest even (NumPy's float16 rounding, ``softce.half.float32_to_bfloat16``),
its per-row outputs in float32 unchanged; special values, subnormals and results rounding up
to inf included, in place too; the front end reads 16-bit device arrays as they are. Without
a GPU every signature the modules list compiles to PTX and assembles.

As in test_cuda_sim.py, ``test_cuda_half_in_the_simulator`` runs this file again with
NUMBA_ENABLE_CUDASIM=1, where the ``cuda`` tests run (tiny grids: the simulator runs a Python
thread per CUDA thread).
"""

import importlib
import re

import numpy as np
import pytest
import simulator

from softce.codegen.parameters import HALF_KERNELS
from softce.half import BFLOAT16, bfloat16_to_float32, float32_to_bfloat16, storage

on_cuda = pytest.mark.cuda
F32 = np.float32
HALVES = ("bf16", "f16")
#: bfloat16's largest finite value and float16's
BF16_MAX, F16_MAX = float(bfloat16_to_float32(np.array([0x7F7F], np.uint16))[0]), 65504.0


def test_cuda_half_in_the_simulator() -> None:
    simulator.run_file(__file__)


@pytest.fixture(autouse=True)
def _launch_configuration():
    with simulator.tiny_grids():
        yield


# helpers -----------------------------------------------------------------------------------

def to_bits(values: np.ndarray, half: str) -> np.ndarray:
    """float32 values rounded to 16 bits, nearest even: their uint16 bit patterns."""
    if half == "bf16":
        return float32_to_bfloat16(values).view(np.uint16)
    return np.asarray(values, F32).astype(np.float16).view(np.uint16)


def widen(bits: np.ndarray, half: str) -> np.ndarray:
    """The float32 values of 16-bit bit patterns."""
    if half == "bf16":
        return bfloat16_to_float32(bits)
    return bits.view(np.float16).astype(F32)


def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Bit for bit, any NaN equal to any NaN."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.dtype.kind == "f":
        nan = np.isnan(got)
        assert (nan == np.isnan(want)).all(), what
        got, want = np.where(nan, 0, got), np.where(nan, 0, want)
    np.testing.assert_array_equal(got, want, err_msg=what)


def table(kernel: str) -> list[tuple[str, str]]:
    """(name, role) of each parameter of a generated kernel, in call order."""
    from softce.cuda.backend import KERNELS

    return [(p.name, p.role) for p in KERNELS.table(kernel)]


def held(kernel: str) -> tuple[str, ...]:
    """The arrays the kernel's 16-bit variants hold in 16 bits."""
    from softce.cuda.backend import KERNELS

    return KERNELS.half_arrays(kernel)


OUTPUT_ROLES = ("out_rows", "out_row", "out_flat")


def first_input(kernel: str) -> str:
    """The name of a kernel's first input array (x, a backward kernel's y, a soft-cap's t)."""
    return next(name for name, role in table(kernel) if role in ("rows", "flat"))


def arguments(kernel: str, x: np.ndarray, half: str) -> dict[str, np.ndarray]:
    """Host arguments of a kernel besides its outputs: x as its first input (flattened for
    an elementwise kernel), probabilities of the same 16-bit type for later 16-bit rows
    (targets, the backward kernels' g), float32 values for later float32 arrays (a soft-cap
    gradient's dy), labels, per-row weights with an uncounted row, eps, z and the cap."""
    rows, n = x.shape
    rng = np.random.default_rng(rows * 97 + n)
    args: dict[str, np.ndarray] = {}
    for name, role in table(kernel):
        if role in ("rows", "flat"):
            if not args:
                args[name] = x if role == "rows" else x.ravel()
            elif name in held(kernel):
                p = rng.random((rows, n)).astype(F32)
                args[name] = to_bits(p / p.sum(1, keepdims=True), half)
            else:
                args[name] = (rng.standard_normal(x.size) * 3).astype(F32)
        elif role == "class_vector":
            args[name] = (rng.random(n) + 0.5).astype(F32)
        elif role == "row_labels":
            args[name] = rng.integers(0, n, rows).astype(np.int64)
        elif role == "row_values":
            values = np.linspace(-1.5, 2.0, rows).astype(F32)
            args[name] = (values != values[0]).astype(F32) if name == "counted" else values
        elif role == "param":
            args[name] = {"eps": 0.1, "z": 1e-3, "cap": 5.0}[name]
    return args


def run(kernel: str, dtype: object, args: dict, outputs: dict[str, np.dtype],
        in_place: str | None = None) -> dict[str, np.ndarray]:
    """The kernel's outputs (``outputs``: name -> element type), launched as the backend
    launches it (a 16-bit ``dtype`` takes uint16 arguments as bit patterns of that dtype);
    ``in_place`` names the output written over the first input."""
    from numba import cuda

    from softce.cuda.backend import BACKEND

    def device_array(v: np.ndarray) -> object:
        if storage(dtype) and v.dtype == np.uint16:
            v = v.view(dtype)
        return cuda.to_device(np.ascontiguousarray(v))

    shape = args[first_input(kernel)].shape
    device = {name: device_array(v) if isinstance(v, np.ndarray) else v
              for name, v in args.items()}
    for name, role in table(kernel):
        if role in OUTPUT_ROLES and name != in_place:
            device[name] = cuda.device_array(shape[:1] if role == "out_row" else shape,
                                             outputs[name])
    if in_place is not None:
        device[in_place] = device[first_input(kernel)]
    BACKEND.launch(kernel, dtype, **device)
    return {name: device[name].copy_to_host() for name, role in table(kernel)
            if role in OUTPUT_ROLES}


def check_against_float32(kernel: str, half: str, bits: np.ndarray) -> None:
    """The 16-bit variant on ``bits`` against the float32 kernel on their widened values:
    float32 outputs equal, 16-bit outputs the float32 ones rounded to 16 bits (and for
    float16 also written as float32, equal)."""

    args = arguments(kernel, bits, half)
    wide = {name: widen(v, half) if isinstance(v, np.ndarray) and v.dtype == np.uint16 else v
            for name, v in args.items()}
    outs = [name for name, role in table(kernel) if role in OUTPUT_ROLES]
    narrow = [name for name in outs if name in held(kernel)]
    f32 = run(kernel, F32, wide, dict.fromkeys(outs, np.dtype(F32)))
    dtype = BFLOAT16 if half == "bf16" else np.dtype(np.float16)
    got = run(kernel, dtype, args, {name: dtype if name in narrow else np.dtype(F32)
                                    for name in outs})
    for name in outs:
        if name in narrow:
            same(got[name].view(np.uint16), to_bits(f32[name], half), f"{kernel}_{half} {name}")
        else:
            same(got[name], f32[name], f"{kernel}_{half} {name}")
    if half == "f16" and narrow:  # float16 variants write float32 outputs too
        wide_out = run(kernel, np.float16, args, dict.fromkeys(outs, np.dtype(F32)))
        for name in outs:
            same(wide_out[name], f32[name], f"{kernel}_f16 {name} (float32)")


def logits(rows: int, n: int, half: str) -> np.ndarray:
    rng = np.random.default_rng(rows + n)
    x = (rng.standard_normal((rows, n)) * 4).astype(F32)
    x[1, n // 2] = -np.inf  # a masked logit
    return to_bits(x, half)


def edge_rows(half: str, n: int = 9) -> np.ndarray:
    """Rows of special values: +inf, -inf only, NaN, subnormal logits, exps that are
    subnormal in 16 bits, and a log-probability past the largest finite 16-bit value (it
    rounds to -inf)."""
    big = BF16_MAX if half == "bf16" else F16_MAX
    tiny = 9.2e-41 if half == "bf16" else 6e-8  # subnormal in the 16-bit type
    far = 88.0 if half == "bf16" else 16.0  # exp(-far) subnormal there
    past = 1e36 if half == "bf16" else 100.0  # -big - LSE rounds past -big
    x = np.zeros((7, n), F32)
    x[0, [1, 4]] = np.inf
    x[1] = -np.inf
    x[2, 3] = np.nan
    x[3] = tiny * np.arange(n)
    x[4, 1:] = -far - np.arange(n - 1, dtype=F32) / 2
    x[5, :2] = -big, past
    x[5, 2:] = -big
    x[6, ::2] = -np.inf
    return to_bits(x, half)


# the kernels --------------------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("kernel", sorted(HALF_KERNELS))
def test_each_16_bit_kernel_is_its_float32_kernel_rounded_once(kernel: str, half: str) -> None:
    check_against_float32(kernel, half, logits(3, 33, half))


@on_cuda
@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp",
                                    "cross_entropy_grad_label",
                                    "cross_entropy_grad_prob_smoothed"])
def test_special_values_subnormals_and_overflow_to_inf(kernel: str, half: str) -> None:
    bits = edge_rows(half)
    if kernel == "log_softmax":  # a finite float32 log-probability that rounds to -inf
        out = run(kernel, F32, {"x": widen(bits, half)}, {"out": np.dtype(F32)})["out"]
        assert np.isfinite(out[5, 0]) and widen(to_bits(out[5, :1], half), half)[0] == -np.inf
    check_against_float32(kernel, half, bits)


@on_cuda
@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "cross_entropy_grad_label",
                                    "softcap_grad"])
def test_in_place_as_out_of_place(kernel: str, half: str) -> None:
    bits = logits(3, 33, half)
    args = arguments(kernel, bits, half)
    name = next(name for name, role in table(kernel)
                if role in OUTPUT_ROLES and name in held(kernel))
    dtype = BFLOAT16 if half == "bf16" else np.dtype(np.float16)
    outputs = {n: dtype if n in held(kernel) else np.dtype(F32)
               for n, role in table(kernel) if role in OUTPUT_ROLES}
    apart = run(kernel, dtype, args, outputs)
    together = run(kernel, dtype, args, outputs, in_place=name)
    for out in outputs:
        same(together[out].view(np.uint16) if outputs[out] == dtype else together[out],
             apart[out].view(np.uint16) if outputs[out] == dtype else apart[out],
             f"{kernel}_{half} {out} in place")


# the front end --------------------------------------------------------------------------------

@on_cuda
def test_the_front_end_reads_16_bit_device_arrays_as_they_are(monkeypatch) -> None:
    """bfloat16 (marked uint16) and float16 device arrays reach the 16-bit kernels with no
    float32 copy; results of the logits' shape in 16 bits (float16: float32 unless out= is
    float16, as on the CPU), losses and LSE in float32, a soft-cap's too."""
    from numba import cuda

    import softce
    from softce.cuda import device

    casts = []
    cast = device.cast
    monkeypatch.setattr(device, "cast", lambda arr, dt: casts.append(
        (arr.dtype.itemsize, np.dtype(dt))) or cast(arr, dt))
    labels = np.array([3, 0, 32], np.int64)
    for half, dtype in (("bf16", BFLOAT16), ("f16", np.dtype(np.float16))):
        bits = logits(3, 33, half)
        x = cuda.to_device(bits.view(dtype))
        xw = cuda.to_device(widen(bits, half))
        casts.clear()
        p = softce.softmax(x)
        loss, grad = softce.cross_entropy_grad(x, cuda.to_device(labels), reduction="sum",
                                               return_lse=True)[:2]
        assert (2, np.dtype(F32)) not in casts  # no widening copy
        want_p = softce.softmax(xw).copy_to_host()
        want_loss, want_grad = (a.copy_to_host() for a in softce.cross_entropy_grad(
            xw, cuda.to_device(labels), reduction="sum", return_lse=True)[:2])
        same(loss.copy_to_host(), want_loss, f"{half} loss")
        if half == "bf16":
            assert p.dtype == BFLOAT16 and p.dtype.metadata == BFLOAT16.metadata
            same(p.copy_to_host().view(np.uint16), to_bits(want_p, half), "bf16 softmax")
            same(grad.copy_to_host().view(np.uint16), to_bits(want_grad, half), "bf16 grad")
        else:
            same(p.copy_to_host(), want_p, "f16 softmax")
            same(grad.copy_to_host(), want_grad, "f16 grad")
            out = cuda.device_array((3, 33), np.float16)
            softce.log_softmax(x, out=out)
            same(out.copy_to_host().view(np.uint16),
                 to_bits(softce.log_softmax(xw).copy_to_host(), half), "f16 out=")
        same(softce.logsumexp(x).copy_to_host(), softce.logsumexp(xw).copy_to_host(),
             f"{half} logsumexp")
        # a soft-cap's 16-bit variants read the logits and write the gradient in 16 bits
        casts.clear()
        _, capped = softce.cross_entropy_grad(x, labels, softcap=5.0)
        assert (2, np.dtype(F32)) not in casts  # no widening copy
        _, want = softce.cross_entropy_grad(xw, labels, softcap=5.0)
        if half == "bf16":
            assert capped.dtype == BFLOAT16 and capped.dtype.metadata == BFLOAT16.metadata
            same(capped.copy_to_host().view(np.uint16), to_bits(want.copy_to_host(), half),
                 "bf16 soft-capped grad")
        else:
            same(capped.copy_to_host(), want.copy_to_host(), "f16 soft-capped grad")


# ahead of time, no GPU ------------------------------------------------------------------------

@pytest.mark.parametrize("module", sorted(HALF_KERNELS))
def test_every_16_bit_signature_compiles_to_ptx_and_assembles(module: str) -> None:
    """The signatures SIGNATURES lists for the 16-bit variants (each output type; of the
    label types int64, the int32 ones differing only in the labels' loads), compiled for the
    newest checked compute capability (Hopper; ``scripts/ptx_report.py`` takes every
    signature): no spills, no float64 instruction, a full block launches; the loads widened
    and the stores narrowed by bit operations (bfloat16) or PTX's half conversions
    (float16)."""
    from softce.cuda.ptx import CCS, compile_ptx, resources
    from softce.cuda.runtime import MAX_THREADS

    mod = importlib.import_module(f"softce.generated.cuda.{module}")
    cc = CCS[-1]
    inputs = sum(name in mod.HALF_ARRAYS and not role.startswith("out")
                 for name, role, _ in mod.PARAMETERS)
    for half in HALVES:
        name = f"{module}_{half}"
        sigs = mod.SIGNATURES[name]
        assert sigs and all(sig.startswith("void(uint16[") for sig in sigs), name
        for sig in [sig for sig in sigs if "int32[" not in sig]:
            ptx = compile_ptx(getattr(mod, name), sig, cc)
            res = resources(name, sig, cc, ptx)
            assert res.registers > 0 and res.spills == 0 and res.stack_bytes == 0, res
            assert not res.f64_in_f32, res
            assert res.registers * MAX_THREADS <= 64 * 1024, res
            code = re.sub(r"//.*", "", ptx)
            narrowed = sig.count("uint16") > inputs  # 16-bit outputs
            if half == "f16":
                assert "cvt.f32.f16" in code and ("cvt.rn.f16.f32" in code) == narrowed, sig
            else:  # 32704 = 0x7FC0, the NaN of a rounded bfloat16
                assert "shl.b32" in code and "cvt.f32.f16" not in code, sig
                assert ("32704" in code) == narrowed, sig


# PyTorch CUDA tensors (a GPU only) ------------------------------------------------------------

@pytest.mark.gpu
def test_pytorch_16_bit_cuda_tensors_are_read_as_they_are() -> None:
    import torch

    import softce.torch as st

    gen = torch.Generator(device="cuda").manual_seed(0)
    labels = torch.tensor([0, 5, 32], device="cuda")
    for dtype in (torch.bfloat16, torch.float16):
        x = (3 * torch.randn(3, 33, device="cuda", generator=gen)).to(dtype)
        p = st.softmax(x, -1)
        assert p.dtype == dtype
        torch.testing.assert_close(p, st.softmax(x.float(), -1).to(dtype), rtol=0, atol=0)
        leaf = x.clone().requires_grad_(True)
        loss = st.cross_entropy(leaf, labels)
        loss.backward()
        wide = x.float().requires_grad_(True)
        ref = st.cross_entropy(wide, labels)
        ref.backward()
        assert loss.dtype == dtype and leaf.grad.dtype == dtype
        torch.testing.assert_close(loss.float(), ref.to(dtype).float(), rtol=0, atol=0)
        torch.testing.assert_close(leaf.grad, wide.grad.to(dtype), rtol=0, atol=0)
