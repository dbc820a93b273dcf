"""The front end's contract with the backends: kernels called by keyword against their printed
parameter tables, and the backend picked from a call's first array."""

from __future__ import annotations

import numpy as np
import pytest

import softce
from softce import backend, cpu
from softce.signature import Library, Parameter, bind

LABEL_GRAD = cpu.KERNELS.table("cross_entropy_grad_label")


def label_grad_args(rows: int = 3, n: int = 5, dtype=np.float32) -> dict[str, np.ndarray]:
    return {"x": np.zeros((rows, n), dtype), "labels": np.zeros(rows, np.int64),
            "grad_output": np.ones(rows, dtype), "grad": np.empty((rows, n), dtype),
            "loss": np.empty(rows, dtype)}


def test_tables_name_every_parameter_of_both_backends() -> None:
    cuda_tables = Library("cuda")
    for name in ("softmax", "cross_entropy_grad_label_smoothed", "nll_loss", "softcap_grad",
                 "softmax_jacobian"):
        table = cpu.KERNELS.table(name)
        assert table == cuda_tables.table(name)
        assert all(isinstance(p, Parameter) for p in table)
    assert [(p.name, p.role, p.dtype) for p in LABEL_GRAD] == [
        ("x", "rows", "float"), ("labels", "row_labels", "label"),
        ("grad_output", "row_values", "float"), ("grad", "out_rows", "float"),
        ("loss", "out_row", "float")]


def test_bind_orders_keywords_as_the_table() -> None:
    args = label_grad_args()
    shuffled = dict(reversed(list(args.items())))
    ordered = bind("cross_entropy_grad_label", LABEL_GRAD, np.dtype(np.float32), shuffled)
    assert [id(a) for a in ordered] == [id(args[p.name]) for p in LABEL_GRAD]


def test_bind_names_the_kernel_and_parameter_of_a_wrong_argument() -> None:
    f32 = np.dtype(np.float32)
    args = label_grad_args()
    with pytest.raises(TypeError, match=r"cross_entropy_grad_label takes .*missing \['loss'\]"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32,
             {k: v for k, v in args.items() if k != "loss"})
    with pytest.raises(TypeError, match=r"unknown \['probs'\]"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32, {**args, "probs": args["x"]})
    with pytest.raises(TypeError, match=r"labels \(row_labels\) must have dtype int32 or int64"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32,
             {**args, "labels": np.zeros(3, np.int16)})
    with pytest.raises(TypeError, match=r"grad_output \(row_values\) must have dtype float32"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32,
             {**args, "grad_output": np.ones(3, np.float64)})
    with pytest.raises(ValueError, match=r"loss \(out_row\) has shape \(4,\), where R = 3"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32, {**args, "loss": np.empty(4, f32)})
    with pytest.raises(ValueError, match=r"grad \(out_rows\) has shape \(3, 6\), where n = 5"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32,
             {**args, "grad": np.empty((3, 6), f32)})
    with pytest.raises(ValueError, match=r"x \(rows\) must have 2 dimension"):
        bind("cross_entropy_grad_label", LABEL_GRAD, f32, {**args, "x": np.zeros(15, f32)})


def test_a_backend_launch_checks_before_the_kernel_runs() -> None:
    loss = np.full(3, 7.0, np.float32)
    with pytest.raises(ValueError, match="where R = 3"):
        cpu.BACKEND.launch("cross_entropy_label", np.dtype(np.float32),
                           x=np.zeros((3, 5), np.float32), labels=np.zeros(3, np.int32),
                           loss=np.empty(2, np.float32))
    cpu.BACKEND.launch("cross_entropy_label", np.dtype(np.float32),
                       labels=np.zeros(3, np.int32), loss=loss,
                       x=np.zeros((3, 5), np.float32))
    np.testing.assert_allclose(loss, np.log(5.0), rtol=1e-6)


def test_the_backend_comes_from_the_first_array() -> None:
    class FakeDeviceArray:
        __cuda_array_interface__: dict = {}

    assert backend.backend_for(np.zeros(3)) is cpu.BACKEND
    assert backend.backend_for([1.0, 2.0]).name == "cpu"
    assert backend.on_cuda(FakeDeviceArray())
    assert not backend.on_cuda(np.zeros(3))


def test_a_registered_backend_receives_its_arrays() -> None:
    """A new backend is one registration: the front end routes its arrays there."""

    class Tagged(np.ndarray):
        pass

    calls: list[str] = []

    class Recording(cpu.CPU):
        name = "recording"

        def launch(self, kernel_name, dtype, **args):
            calls.append(kernel_name)
            super().launch(kernel_name, dtype, **args)

    backend.register("recording", lambda a: isinstance(a, Tagged), Recording())
    try:
        x = np.arange(6.0).reshape(2, 3).view(Tagged)
        np.testing.assert_allclose(softce.softmax(x), softce.softmax(np.asarray(x)))
        softce.cross_entropy(x, np.array([0, 2]))
    finally:
        backend.unregister("recording")
    assert calls == ["softmax", "cross_entropy_label"]
    assert backend.backend_for(x) is cpu.BACKEND
