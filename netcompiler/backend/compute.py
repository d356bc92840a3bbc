"""Mixed precision: the one place where matrix products and convolutions meet the precision.

A network runs in one of `PRECISIONS` (`train.precision`, `netcompiler.compile(precision=)`,
`--precision`). Under `float32` everything is float32. Under `mixed_bfloat16` and
`mixed_float16` the variables stay float32 (the master weights, saved as float32), but the
matrix products, einsums and convolutions of the layer builders run in the compute dtype: both
operands are cast down, the product is computed, and the result is cast back to float32. So
everything else (biases, activations, softmax, layer and batch norm, masking, losses, the
optimizer) stays float32, and a layer's output dtype does not depend on the precision.

`CompiledNetwork.forward` enters `precision_scope(net.precision)` for the whole pass (loops and
beam search included, since they are traced inside it); the builders call `matmul`, `einsum`,
`matmul_last_axis` and `convolve` of this module instead of TensorFlow's, which read the active
compute dtype. Outside a scope (a builder called on its own) they compute in float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib

import tensorflow as tf

#: the precisions a network runs in; the first is the default
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

#: the dtype products run in, by precision (None: as given, float32)
COMPUTE_DTYPES = {"float32": None, "mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}

# the compute dtype of the forward pass being built (None: float32); a context variable, so
# two networks of different precision built in one process (or thread) do not mix
_active_compute_dtype: contextvars.ContextVar = contextvars.ContextVar(
    "netcompiler_compute_dtype", default=None
)


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else ValueError naming the choices (and the
    closest one)."""
    if precision in PRECISIONS:
        return precision
    close = difflib.get_close_matches(str(precision), PRECISIONS, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise ValueError(f"unknown precision `{precision}` (one of {', '.join(PRECISIONS)}){hint}")


def uses_loss_scaling(precision: str) -> bool:
    """Whether training in this precision needs a loss scale: float16's small exponent range
    lets small gradients underflow to zero; bfloat16 has float32's range and needs none."""
    return precision == "mixed_float16"


@contextlib.contextmanager
def precision_scope(precision: str):
    """Products built inside run in `precision`'s compute dtype."""
    token = _active_compute_dtype.set(COMPUTE_DTYPES[check_precision(precision)])
    try:
        yield
    finally:
        _active_compute_dtype.reset(token)


def active_compute_dtype():
    """The dtype products are built in now (None: float32)."""
    return _active_compute_dtype.get()


def _lowered(tensors):
    """(the tensors cast to the compute dtype, the dtype to cast the result back to); None
    for the latter when nothing is cast (float32 precision, or not all operands float32, e.g.
    int or float64 products, which keep their dtype)."""
    dtype = _active_compute_dtype.get()
    tensors = [tf.convert_to_tensor(t) for t in tensors]
    if dtype is None or any(t.dtype != tf.float32 for t in tensors):
        return tensors, None
    return [tf.cast(t, dtype) for t in tensors], tf.float32


def _restored(y, dtype):
    return y if dtype is None else tf.cast(y, dtype)


def matmul(a, b, **kwargs):
    """`tf.matmul(a, b, **kwargs)` in the compute dtype; float32 result."""
    (a, b), back = _lowered([a, b])
    return _restored(tf.matmul(a, b, **kwargs), back)


def einsum(equation: str, *operands):
    """`tf.einsum(equation, *operands)` in the compute dtype; float32 result."""
    operands, back = _lowered(operands)
    return _restored(tf.einsum(equation, *operands), back)


def matmul_last_axis(x, w, bias=None):
    """x [..., n] @ w [n, m] (+ bias [m]) -> [..., m] in the compute dtype; float32 result.

    One 2-D MatMul between two reshapes: the kernel `tf.tensordot` calls, without its dozen
    shape operations per call (each traced, differentiated and optimised before the first
    step), and not a broadcast BatchMatMul, whose gradient for `w` sums per-batch products.
    The bias is added to the 2-D product by `BiasAdd` (in float32), which Grappler fuses into
    the MatMul on CPUs (one pass less over the output)."""
    (x, w), back = _lowered([x, w])
    # static sizes where known: each dynamic size is a few more nodes to trace and optimise
    n_in = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    flat = x if x.shape.rank == 2 else tf.reshape(x, [-1, n_in])
    y = _restored(tf.matmul(flat, w), back)
    if bias is not None:
        y = tf.nn.bias_add(y, tf.cast(bias, y.dtype))
    if x.shape.rank == 2:
        return y
    n_out = [w.shape[-1]] if w.shape[-1] is not None else tf.shape(w)[-1:]
    out = tf.reshape(y, tf.concat([tf.shape(x)[:-1], n_out], axis=0))
    out.set_shape(x.shape[:-1].concatenate(w.shape[-1:]))
    return out


def convolve(op, x, filters, *args, **kwargs):
    """`op(x, filters, *args, **kwargs)` for a TensorFlow convolution `op`
    (`tf.nn.convolution`, `tf.nn.depthwise_conv2d`, `tf.nn.conv_transpose`, ...) in the
    compute dtype; float32 result."""
    (x, filters), back = _lowered([x, filters])
    return _restored(op(x, filters, *args, **kwargs), back)
