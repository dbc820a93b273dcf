"""The cross-entropy family's front end, with PyTorch's options [D13]: class weights,
ignore_index, label smoothing, and softce's z-loss, logit soft-capping [D14], per-row LSE and
empty-batch mean.

Positions become rows (class axis last); each call runs one generated kernel: D9/D8's plain
kernels when no option is in effect, else D13's. "mean" divides as PyTorch does: by the sum
of weight[target] over counted positions for labels, by the number of positions for
probabilities. Labels are range-checked by the backend (on the device for CUDA arrays); the
labels of a call with class weights, or with labels equal to ignore_index, are masked on the
host, unless the backend masks them where they are (CUDA inside
``softce.cuda.deferred_label_checks``: counted positions, their weights and the mean's divisor
on the device, no host round trip).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .backend import Array, Backend, Layout, backend_for
from .checks import (
    CEOptions,
    check_axis,
    check_grad_output_shape,
    check_options,
    check_reduction,
    check_target_kind,
    check_target_shape,
    check_weight_layout,
    float_dtype,
    label_dtype,
    labels_and_mask,
    mean_divisor,
    result_dtype,
)
from .functions import checked_out, output_rows, row_values, writes
from .half import storage


def cross_entropy(logits: object, target: object, *, axis: int = -1,
                  weight: object = None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_lse: bool = False,
                  empty_mean: float | None = None):
    """Cross-entropy of softmax(logits) against integer labels or probabilities, as PyTorch's
    ``F.cross_entropy`` with the class axis at ``axis`` [D8, D9, D13].

    Labels (integer dtype, the shape of logits without ``axis``): loss = LSE(x) - x_c, with
    ``weight`` w_c, positions whose label is ``ignore_index`` left out, ``label_smoothing``
    eps mixing in the uniform distribution: (1 - eps) w_c (LSE - x_c) + (eps / C) sum_k w_k
    (LSE - x_k). Probabilities (float, the shape of logits): loss = -sum_k w_k ((1 - eps) y_k
    + eps / C) log softmax(x)_k. "mean" divides by the sum of w[target] over counted positions
    (labels) or by the number of positions (probabilities); with no counted position it is
    NaN as in PyTorch, or ``empty_mean`` when given. Beyond PyTorch: ``z_loss`` z adds
    z LSE(x)^2 at each counted position; ``softcap`` c replaces the logits by c tanh(x / c)
    first [D14]; ``return_lse`` returns (loss, lse) with the per-position LSE.
    """
    ce = CEPlan.check(logits, target, axis, reduction, weight, ignore_index, label_smoothing,
                      z_loss, softcap, return_lse, empty_mean, half=True)
    loss = ce.be.empty((ce.n_rows,), ce.dtype)
    lse = ce.run(loss)
    result = ce.reduce(loss)
    return (result, ce.rows.restore_batch(lse)) if ce.opts.return_lse else result


def cross_entropy_grad(logits: object, target: object, *, axis: int = -1,
                       weight: object = None, ignore_index: int = -100,
                       reduction: str = "mean", label_smoothing: float = 0.0,
                       z_loss: float = 0.0, softcap: float | None = None,
                       return_lse: bool = False, empty_mean: float | None = None,
                       grad_output: object = None, out: object = None):
    """(loss, dlogits) of ``cross_entropy`` (same options) in one fused pass per row, and lse
    too when ``return_lse``.

    dlogits = grad_output * d loss / d logits: (softmax(x) - e_c) per row for plain labels,
    (sum(y) softmax(x) - y) for probabilities, D13's weighted, smoothed forms (plus 2 z LSE
    softmax(x)) with options, divided as the loss is for "mean"; 0 at ignored positions.
    ``grad_output`` is a scalar, or for reduction="none" an array of the loss's shape.
    ``out=logits`` writes the gradient over the logits (no rows x classes temporary when the
    class axis is last and logits is C-contiguous).
    """
    ce = CEPlan.check(logits, target, axis, reduction, weight, ignore_index, label_smoothing,
                      z_loss, softcap, return_lse, empty_mean, half=True)
    be = ce.be
    # the kernel reads labels or probabilities while it writes out: no overlap at all
    checked = checked_out(be, out, ce.arr, ("logits", ce.arr), ("target", ce.target))
    w = chain_weights(be, grad_output, reduction, ce.rows, ce.dtype, ce.denominator)
    loss = be.empty((ce.n_rows,), ce.dtype)
    direct, grad = output_rows(be, checked, ce.rows, ce.grad_dtype)
    lse = ce.run(loss, w, grad)
    wanted = result_dtype(np.dtype(ce.arr.dtype))
    if checked is None and not writes(ce.grad_dtype, wanted):
        grad = be.cast(grad, wanted)  # 16-bit logits widened (probabilities): to 16 bits
    result = (ce.reduce(loss), be.finish(ce.rows, grad, direct, out, checked))
    return (*result, ce.rows.restore_batch(lse)) if ce.opts.return_lse else result


def nll_loss(logp: object, target: object, *, axis: int = -1, weight: object = None,
             ignore_index: int = -100, reduction: str = "mean") -> Array:
    """-weight[c] logp[c] per position, as PyTorch's ``F.nll_loss`` with the class axis at
    ``axis`` [D13]; "mean" divides by the sum of weight[target] over counted positions."""
    be = backend_for(logp)
    tdt, _ = be.describe(target)
    if tdt.kind not in "iu":
        raise TypeError(f"target must hold integer class labels, got dtype {tdt}")
    ce = CEPlan.check(logp, target, axis, reduction, weight, ignore_index, 0.0, 0.0, None,
                      False, None, name="logp", masked=True)
    loss = be.empty((ce.n_rows,), ce.dtype)
    counted = ce.counted_values()
    be.launch("nll_loss", ce.dtype, logp=ce.x, cw=ce.class_weights(), labels=ce.labels,
              counted=counted, loss=loss)
    if not ce.counted.all():
        be.zero_uncounted(counted, loss)
    return ce.reduce(loss)


def chain_weights(be: Backend, grad_output: object, reduction: str, rows: Layout,
                  dtype: np.dtype, divisor: float | Array) -> Array:
    """Per-row chain-rule weights: grad_output (a scalar, or for "none" an array of the batch
    shape), divided for "mean" by ``divisor`` (a mean over nothing has weights 0: there is
    no row to weigh), a number or a one-element array of the backend's."""
    go = 1.0 if grad_output is None else grad_output
    _, shape = be.describe(go)
    check_grad_output_shape(len(shape), shape, reduction)
    if reduction == "mean" and not isinstance(divisor, numbers.Real):
        if isinstance(go, numbers.Real):  # a host number: the weights made on the device
            return be.divided(float(go), divisor, rows.data.shape[0], dtype)
        w = row_values(be, go, "grad_output", rows, dtype)  # a new array: go is a scalar
        be.divide(w, divisor, 0.0)
        return w
    return row_values(be, go, "grad_output", rows, dtype,
                      divisor if reduction == "mean" else None)


@dataclass(frozen=True)
class DeviceMask:
    """Labels masked where they live (``Backend.mask_labels``), with no host round trip: the
    counted values per row, the mean's divisor (a one-element array) and the class weights
    (which stay where they are)."""

    counted: Array
    divisor: Array
    class_weights: Array  # the call's, or ones


@dataclass
class CEPlan:
    """The plan of one cross-entropy call: its checked inputs as rows (labels, with the host
    mask where one is needed, or probability rows), its options, and from them the kernel it
    runs (``plain``: D9/D8's, else D13's) and PyTorch's divisor for "mean"."""

    be: Backend
    arr: Array  # the logits as the caller gave them (16-bit ones as they are)
    target: object  # as the caller gave it (out= must not overlap it)
    rows: Layout
    x: Array  # the logit rows the kernels read (soft-capped when asked)
    labels: Array | None  # int32/int64, one per row
    counted: np.ndarray | None  # host mask of counted rows; None: every row counts
    labels_host: np.ndarray | None  # the labels on the host, where the mask needed them
    probs: Array | None
    opts: CEOptions
    reduction: str
    #: the labels' mask on the device, when the backend defers the check of labels
    device_mask: DeviceMask | None
    #: the dtype of the cross-entropy kernel variant the call runs: the logits' own for
    #: 16-bit logits read as they are, else the dtype it computes in (that of the soft-capped
    #: copy, under a soft-cap)
    kernel_dtype: np.dtype

    @classmethod
    def check(cls, logits: object, target: object, axis: object, reduction: object,
              weight: object, ignore_index: object, label_smoothing: object, z_loss: object,
              softcap: object, return_lse: object, empty_mean: object, name: str = "logits",
              masked: bool = False, half: bool = False) -> CEPlan:
        """Check every argument of a cross-entropy call and lay its inputs out as rows;
        ``masked`` takes the labels' mask on the host whatever the options (nll_loss).
        ``half``: the call's kernels have 16-bit variants, which read 16-bit logits as they
        are (with probabilities of the logits' own dtype; under a soft-cap its 16-bit
        variants read them into the float32 capped copy and write the gradient in 16 bits);
        other 16-bit logits are widened to float32 by a copy."""
        be = backend_for(logits)
        arr = be.float_array(logits, name, half=half)
        ax = check_axis(axis, arr.ndim)
        check_reduction(reduction)
        n = arr.shape[ax]
        dtype = float_dtype(arr.dtype)
        tdt, tshape = be.describe(target)
        # labels masked where they live (a backend that defers their check) take the class
        # weights there too: checked for finiteness by the mask, never read on the host
        on_device = not masked and be.device_mask() and tdt.kind in "iu"
        if on_device and weight is not None:
            check_weight_layout(*be.describe(weight), n)
        opts = check_options(n, dtype, None if weight is None or on_device
                             else be.to_host(weight), ignore_index, label_smoothing, z_loss,
                             softcap, return_lse, empty_mean)
        kind = check_target_kind(tdt)
        capped = opts.softcap is not None
        computed = arr
        if storage(arr.dtype) and not capped and kind == "probs" and storage(tdt) != storage(
                arr.dtype):
            computed = be.float_array(arr, name)
        kernel_dtype = dtype if capped else np.dtype(computed.dtype)
        rows = be.to_rows(computed, (ax,))
        check_target_shape(kind, tshape, tuple(arr.shape), rows.batch_shape, ax, name)
        labels = counted = labels_host = probs = device_mask = None
        if on_device:
            cw = (be.from_host(np.ones(n, dtype)) if weight is None
                  else be.cast(be.to_flat(be.operand(weight)).data, dtype))
            labels, counted_values, divisor = be.mask_labels(
                be.cast(be.to_flat(be.operand(target)).data, label_dtype(tdt)),
                opts.ignore_index, cw, dtype)
            device_mask = DeviceMask(counted_values, divisor, cw)
        elif kind == "labels":
            # the mask is taken on the host where it is needed: for the mean's weighted
            # divisor, an ignore_index that is a class, or labels outside [0, C) (ignored
            # positions, or a bad label to name); otherwise the labels stay where they are
            host_mask = masked or opts.weight is not None or 0 <= opts.ignore_index < n
            if not host_mask:
                labels = be.cast(be.to_flat(be.operand(target)).data, label_dtype(tdt))
                host_mask = not be.labels_in_range(labels, n)
            if host_mask:
                labels_host, counted = labels_and_mask(be.to_host(target), n,
                                                       opts.ignore_index)
                labels = be.from_host(labels_host)
        else:
            probs = be.to_rows(be.cast(be.operand(target), kernel_dtype), (ax,)).data
        x = rows.data
        if capped:  # s = c tanh(x / c) in the dtype the call computes in [D14]
            x = be.empty(rows.data.shape, dtype)
            be.launch("softcap", rows.data.dtype, t_in=be.flatten(rows.data),
                      cap=opts.softcap, out=be.flatten(x))
        return cls(be, arr, target, rows, x, labels, counted, labels_host, probs, opts,
                   reduction, device_mask, kernel_dtype)

    @property
    def dtype(self) -> np.dtype:
        """The dtype the call computes in: of its per-row results, weights and scalars."""
        return float_dtype(self.arr.dtype)

    @property
    def grad_dtype(self) -> np.dtype:
        """The dtype of the kernel variant that writes the gradient rows: under a soft-cap
        its chain rule's, which reads the logits as they are (16-bit ones too)."""
        if self.opts.softcap is None:
            return self.kernel_dtype
        return np.dtype(self.rows.data.dtype)

    @property
    def n_rows(self) -> int:
        return self.rows.data.shape[0]

    @property
    def plain(self) -> bool:
        """Whether D9/D8's plain kernels compute this call: no option changes the loss of a
        row and every row counts (known on the host)."""
        o = self.opts
        return (o.weight is None and o.label_smoothing == 0 and o.z_loss == 0
                and o.softcap is None and not o.return_lse and self.device_mask is None
                and (self.counted is None or bool(self.counted.all())))

    @property
    def denominator(self) -> float | Array:
        """PyTorch's divisor for "mean" (a one-element array when the labels were masked on
        the device)."""
        if self.device_mask is not None:
            return self.device_mask.divisor
        if self.labels is not None and self.counted is None:
            return float(self.n_rows)  # every label counts, unweighted
        return mean_divisor(self.n_rows, self.labels_host, self.counted, self.opts.weight)

    def class_weights(self) -> Array:
        if self.device_mask is not None:
            return self.device_mask.class_weights
        n = self.rows.data.shape[1]
        w = self.opts.weight
        return self.be.from_host(w if w is not None else np.ones(n, self.dtype))

    def counted_values(self) -> Array:
        """The counted mask as the kernels' per-row values (1 counted, 0 ignored)."""
        if self.device_mask is not None:
            return self.device_mask.counted
        mask = self.counted if self.counted is not None else np.ones(self.n_rows, bool)
        return self.be.from_host(mask.astype(self.dtype))

    def run(self, loss: Array, w: Array | None = None, grad: Array | None = None
            ) -> Array | None:
        """The call's kernel: fills loss (and grad rows, with chain-rule weights w); returns
        the per-row LSE of D13's kernels (None from the plain ones)."""
        be, dtype = self.be, self.kernel_dtype
        target = "label" if self.labels is not None else "prob"
        inputs = ({"labels": self.labels} if self.labels is not None else {"y": self.probs})
        if self.plain:
            if grad is None:
                be.launch(f"cross_entropy_{target}", dtype, x=self.x, **inputs, loss=loss)
            else:
                be.launch(f"cross_entropy_grad_{target}", dtype, x=self.x, **inputs,
                          grad_output=w, grad=grad, loss=loss)
            return None
        o = self.opts
        variant = "smoothed" if o.label_smoothing else "weighted"
        params = {"eps": o.label_smoothing} if o.label_smoothing else {}
        params["z"] = o.z_loss
        inputs["cw"] = self.class_weights()
        if self.labels is not None:
            inputs["counted"] = counted = self.counted_values()
        lse = be.empty((self.n_rows,), self.dtype)
        if grad is None:
            be.launch(f"cross_entropy_{target}_{variant}", dtype, x=self.x, **inputs,
                      **params, loss=loss, lse=lse)
        else:
            # with a soft-cap, d loss / d s goes over the capped copy s (in place), then the
            # chain rule through D14 writes grad (which may be the logits themselves)
            dest = grad if o.softcap is None else self.x
            be.launch(f"cross_entropy_grad_{target}_{variant}", dtype, x=self.x, **inputs,
                      grad_output=w, **params, grad=dest, loss=loss, lse=lse)
            if o.softcap is not None:
                be.launch("softcap_grad", self.grad_dtype, t_in=be.flatten(self.rows.data),
                          dy_in=be.flatten(dest), cap=o.softcap, out=be.flatten(grad))
        if self.device_mask is not None or (self.counted is not None
                                            and not self.counted.all()):
            # ignored positions add nothing and get no gradient, whatever their logits
            be.zero_uncounted(counted, loss, grad)
        return lse

    def reduce(self, loss: Array) -> Array:
        """loss per row -> the reduction, in the logits' dtype."""
        if self.reduction == "none":
            return self.rows.restore_batch(loss)
        divisor = self.denominator if self.reduction == "mean" else 1.0
        return reduced(self.be, loss, self.reduction, self.dtype, divisor,
                       self.opts.empty_mean)


def reduced(be: Backend, loss: Array, reduction: str, dtype: np.dtype,
            divisor: float | Array, empty_mean: float | None = None) -> Array:
    """Per-position losses (one axis) summed ("sum"; 0 for none) or divided by PyTorch's
    ``divisor`` ("mean": a number, or a one-element array of the backend's): a mean whose
    divisor is 0 is NaN, or ``empty_mean`` when given."""
    if reduction == "sum":
        return be.total(loss, 1) if loss.shape[0] else be.scalar(0, dtype)
    if not isinstance(divisor, numbers.Real):
        return be.total_over(loss, divisor, np.nan if empty_mean is None else empty_mean)
    if divisor == 0:
        return be.scalar(np.nan if empty_mean is None else empty_mean, dtype)
    return be.total(loss, divisor)
