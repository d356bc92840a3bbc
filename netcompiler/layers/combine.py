"""`combine` and `eval`: element-wise functions of several inputs, broadcast by axis identity.

The output axes are the union of the inputs' axes, matched by identity (dynamic axes) or size
(static axes): batch first, then the other axes in order of first appearance, the feature axis
last. Inputs without an axis broadcast over it (e.g. `[B, F=1]` with `[B, T(data), F=1]`, or
two different time axes `[B, T(a), F]` + `[B, T(b), F]` -> `[B, T(a), T(b), F]`). Feature axes
must have the same size.

Also the helpers the other element-wise layers use: `broadcast_shape`, `align` (a tensor
transposed/expanded to the broadcast axes) and `GuessFromInputs` (the `prev:` shape guess of a
layer whose shape follows from its inputs).
"""
from __future__ import annotations

from ..dims import BATCH, FEATURE, Shape, broadcast_dims
from .. import expr as _expr
from ..activations import parse_activation
from .base import LayerRule

COMBINE_KINDS = ("add", "sub", "mul", "truediv", "maximum", "minimum", "average", "eval")


# -- shared helpers ---------------------------------------------------------------------------------

def broadcast_shape(ctx, shapes: list[Shape], names: list[str], option: str = "from",
                    rule: str = "shape.broadcast") -> tuple:
    """The broadcast axes of several inputs (batch first, feature last), or a ShapeError."""
    feature = None
    feature_of = None
    for name, s in zip(names, shapes):
        f = s.feature
        if f is None:
            continue
        if feature is None:
            feature, feature_of = f, (name, s)
        elif f.size != feature.size:
            raise ctx.error(
                f"`{ctx.layer.layer_class}` inputs differ in features: `{feature_of[0]}` "
                f"{feature_of[1]} and `{name}` {s}", option, rule,
                hint="inputs are broadcast by axis identity; their feature axes must have the "
                     "same size")
    dims = list(broadcast_dims(shapes))
    if feature is not None:
        dims.append(feature)
    return tuple(dims)


def check_n_out(ctx, out: Shape) -> None:
    """An explicit `n_out` must equal the output's feature size (classes if sparse)."""
    n_out = ctx.opts.get("n_out")
    if n_out is not None and out.feature_size != n_out:
        raise ctx.error(f"`n_out: {n_out}` does not match the output {out} of "
                        f"`{ctx.layer.layer_class}`", "n_out", "shape.n-out",
                        hint="leave `n_out` out; the output size follows from the inputs")


def check_activation(ctx, shape: Shape, option: str = "activation") -> None:
    name = ctx.opt(option)
    if name is None:
        return
    try:
        _, base = parse_activation(name)
    except ValueError as exc:
        raise ctx.error(str(exc), option, "shape.activation") from None
    if base in ("softmax", "log_softmax") and shape.feature is None:
        raise ctx.error(f"`{option}: {name}` normalises over the feature axis, but the output "
                        f"{shape} has none", option, "shape.activation")


def describe_inputs(ctx) -> str:
    return ", ".join(f"`{n}` {s}" for n, s in zip(ctx.source_names, ctx.sources))


def align(x, in_shape: Shape, out_shape: Shape):
    """TensorFlow: `x` with axes `in_shape.dims` transposed and expanded (size 1) so that it
    broadcasts against a tensor with axes `out_shape.dims`."""
    import tensorflow as tf

    if x.shape.rank == 0 or not in_shape.dims:
        return x
    used: set[int] = set()
    order: list[int] = []  # input axis for each output axis present in the input, in output order
    present: list[bool] = []
    for d in out_shape.dims:
        j = _find(in_shape, d, used)
        present.append(j is not None)
        if j is not None:
            used.add(j)
            order.append(j)
    if len(order) != len(in_shape.dims):
        raise ValueError(f"cannot align {in_shape} to {out_shape}")
    if order != sorted(order):
        x = tf.transpose(x, order)
    new_shape = []
    k = 0
    dyn = tf.shape(x)
    for p in present:
        if p:
            new_shape.append(dyn[k])
            k += 1
        else:
            new_shape.append(1)
    if all(present):
        return x
    return tf.reshape(x, tf.stack(new_shape))


def _find(shape: Shape, dim, used: set[int]) -> int | None:
    for i, d in enumerate(shape.dims):
        if i not in used and d is dim:
            return i
    for i, d in enumerate(shape.dims):
        if i not in used and d.matches(dim):
            return i
    return None


def mask_padding(ctx, y, value=0):
    """Set the padded frames of every time axis of the output to `value` (keeps them finite)."""
    import tensorflow as tf

    mask = ctx.valid_mask(ctx.out_shape, y) if ctx.out_shape.time_dims else None
    if mask is None:
        return y
    return tf.where(mask, y, tf.cast(value, y.dtype))


def broadcast_to_out(ctx, y):
    """`y` broadcast to the full output shape (an `eval` expression may not use every input)."""
    import tensorflow as tf

    target = [_dim_size(ctx, d) for d in ctx.out_shape.dims]
    if any(t is None for t in target):
        return y
    return tf.broadcast_to(y, tf.stack(target) if target else tf.constant([], tf.int32))


def _dim_size(ctx, d):
    """Run-time size of an output axis from the inputs that carry it."""
    import tensorflow as tf

    if d.kind not in (BATCH,) and d.size is not None:
        return d.size
    for x, s in zip(ctx.sources, ctx.source_shapes):
        j = _find(s, d, set())
        if j is not None:
            return tf.shape(x)[j]
    return None


class GuessFromInputs:
    """Mixin: the `prev:` shape guess of a layer whose shape follows from its inputs."""

    def guess_step_shape(self, ctx):
        return ctx.guess_from_inputs(self)


# -- combine ----------------------------------------------------------------------------------------

def _input_dtype(shape: Shape) -> str:
    return "int32" if shape.sparse else shape.dtype


def _checked_output(ctx, out: Shape) -> Shape:
    """`out` after the checks of `combine`/`eval` output: `activation` (float32 only) and
    `n_out`."""
    if ctx.opt("activation") is not None and out.dtype != "float32":
        raise ctx.error(f"`activation` on {out.dtype} output {out}", "activation",
                        "shape.activation")
    check_activation(ctx, out)
    check_n_out(ctx, out)
    return out


def _activate_and_mask(ctx, y):
    """`activation` applied to the `combine`/`eval` result, padded frames of a float result
    set to 0."""
    from ..activations import apply_activation

    if ctx.opt("activation") is not None:
        y = apply_activation(ctx.opt("activation"), y)
    if y.dtype.is_floating:
        y = mask_padding(ctx, y)
    return y


class CombineRule(GuessFromInputs, LayerRule):
    """Element-wise `kind` of all inputs; the output is their broadcast."""

    layer_class = "combine"
    concat_sources = False

    def infer(self, ctx) -> Shape:
        kind = ctx.opt("kind")
        if not ctx.sources:
            raise ctx.error("`combine` needs at least one input", "from", "shape.inputs")
        if kind == "eval":
            return _infer_eval(ctx)
        if ctx.opts.get("eval") is not None:
            ctx.warn(f"`eval` is ignored with `kind: {kind}`", "eval", "shape.eval",
                     hint="use `kind: eval` to evaluate the expression")
        for name, s in zip(ctx.source_names, ctx.sources):
            if s.sparse:
                raise ctx.error(
                    f"`combine` with `kind: {kind}` of sparse input `{name}` {s} (class "
                    f"indices)", "from", "shape.sparse",
                    hint="use `eval` with tf.cast(source(i), tf.float32), or `compare`")
        dtypes = {_input_dtype(s) for s in ctx.sources}
        if len(dtypes) > 1:
            raise ctx.error(f"`combine` inputs have different dtypes: {describe_inputs(ctx)}",
                            "from", "shape.dtype")
        dtype = dtypes.pop()
        if dtype == "bool":
            raise ctx.error(f"`combine` with `kind: {kind}` of bool inputs: "
                            f"{describe_inputs(ctx)}", "from", "shape.dtype",
                            hint="use `eval` with tf.cast(source(i), tf.float32)")
        if kind in ("truediv", "average"):
            dtype = "float32"
        dims = broadcast_shape(ctx, ctx.sources, ctx.source_names)
        return _checked_output(ctx, Shape(dims, None, dtype))

    def call(self, ctx):
        import tensorflow as tf

        kind = ctx.opt("kind")
        out = ctx.out_shape
        if kind == "eval":
            return _call_eval(ctx)
        xs = [align(x, s, out) for x, s in zip(ctx.sources, ctx.source_shapes)]
        if out.dtype == "float32":
            xs = [tf.cast(x, tf.float32) if x.dtype != tf.float32 else x for x in xs]
        y = xs[0]
        for x in xs[1:]:
            if kind in ("add", "average"):
                y = y + x
            elif kind == "sub":
                y = y - x
            elif kind == "mul":
                y = y * x
            elif kind == "truediv":
                y = y / x
            elif kind == "maximum":
                y = tf.maximum(y, x)
            elif kind == "minimum":
                y = tf.minimum(y, x)
        if kind == "average":
            y = y / float(len(xs))
        return _activate_and_mask(ctx, y)


# -- eval -----------------------------------------------------------------------------------------

def parse_eval(ctx, option: str = "eval"):
    """The parsed expression of `eval`, or a located `shape.eval` error."""
    text = ctx.opt(option)
    if text is None:
        raise ctx.error(f"`{ctx.layer.layer_class}` needs `{option}` (an expression over "
                        f"source(i))", option, "shape.eval")
    try:
        return _expr.parse_expression(text, len(ctx.sources))
    except _expr.ExprError as exc:
        raise ctx.error(f"invalid `{option}` expression {text!r}: {exc.message}", option,
                        "shape.eval", hint=exc.hint) from None


def _infer_eval(ctx, option: str = "eval") -> Shape:
    tree = parse_eval(ctx, option)
    dtypes = [_input_dtype(s) for s in ctx.sources]
    try:
        dtype = _expr.infer_dtype(tree, dtypes)
    except _expr.ExprError as exc:
        raise ctx.error(f"`{option}` {ctx.opt(option)!r} with inputs {describe_inputs(ctx)}: "
                        f"{exc.message}", option, "shape.eval") from None
    dims = broadcast_shape(ctx, ctx.sources, ctx.source_names)
    sparse_dim = None
    if dtype == "int32" and not any(d.kind == FEATURE for d in dims):
        # an integer result of class indices stays sparse (as RETURNN keeps the input's type)
        sparse = [s for s in ctx.sources if s.sparse]
        if sparse:
            sparse_dim = sparse[0].sparse_dim
    return _checked_output(ctx, Shape(dims, sparse_dim, dtype))


def _call_eval(ctx, option: str = "eval"):
    import tensorflow as tf

    out = ctx.out_shape
    tree = _expr.parse_expression(ctx.opt(option), len(ctx.sources))
    xs = [align(x, s, out) for x, s in zip(ctx.sources, ctx.source_shapes)]
    y = _expr.to_tf(tree, xs)
    y = broadcast_to_out(ctx, y)
    want = tf.as_dtype(out.dtype)
    if y.dtype != want:
        y = tf.cast(y, want)
    return _activate_and_mask(ctx, y)


class EvalRule(GuessFromInputs, LayerRule):
    """An expression over `source(i)`; the output is the broadcast of all inputs."""

    layer_class = "eval"
    concat_sources = False

    def infer(self, ctx) -> Shape:
        return _infer_eval(ctx)

    def call(self, ctx):
        return _call_eval(ctx)
