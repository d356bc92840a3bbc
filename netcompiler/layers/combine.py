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

from netcompiler.core.dims import (
    BATCH,
    BATCH_DIM,
    FEATURE,
    SPATIAL,
    TIME,
    Shape,
    broadcast_dims,
    feature_dim,
    spatial_dim,
)
from netcompiler.core.layer_rule import LayerRule
from netcompiler.frontend import expr as _expr
from netcompiler.frontend import expr_types as _types
from netcompiler.frontend.activations import keeps_finite, parse_activation
from netcompiler.layers._util import check_n_out

COMBINE_KINDS = ("add", "sub", "mul", "truediv", "maximum", "minimum", "average", "eval")


# -- shared helpers ---------------------------------------------------------------------------------


def broadcast_shape(
    ctx, shapes: list[Shape], names: list[str], option: str = "from", rule: str = "shape.broadcast"
) -> tuple:
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
                f"{feature_of[1]} and `{name}` {s}",
                option,
                rule,
                hint="inputs are broadcast by axis identity; their feature axes must have the "
                "same size",
            )
    dims = list(broadcast_dims(shapes))
    if feature is not None:
        dims.append(feature)
    return tuple(dims)


def check_activation(ctx, shape: Shape, option: str = "activation") -> None:
    name = ctx.opt(option)
    if name is None:
        return
    try:
        _, base = parse_activation(name)
    except ValueError as exc:
        raise ctx.error(str(exc), option, "shape.activation") from None
    if base in ("softmax", "log_softmax") and shape.feature is None:
        raise ctx.error(
            f"`{option}: {name}` normalises over the feature axis, but the output {shape} has none",
            option,
            "shape.activation",
        )


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
    if all(present):
        return x
    new_shape = []
    k = 0
    dyn = tf.shape(x)
    for p in present:
        if p:
            new_shape.append(dyn[k])
            k += 1
        else:
            new_shape.append(1)
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
    """Set the padded frames of every time axis of the output to `value`: for results whose
    padded frames may not be finite even when the input's were (see `keeps_finite`)."""
    import tensorflow as tf

    mask = ctx.valid_mask(ctx.out_shape, y) if ctx.out_shape.time_dims else None
    if mask is None:
        return y
    return tf.where(mask, y, tf.cast(value, y.dtype))


def broadcast_to_out(ctx, y):
    """`y` broadcast to the full output shape (an `eval` expression may not use every input)."""
    import tensorflow as tf

    target = [dim_size(ctx, d) for d in ctx.out_shape.dims]
    if any(t is None for t in target):
        return y
    return tf.broadcast_to(y, tf.stack(target) if target else tf.constant([], tf.int32))


def dim_size(ctx, d):
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
        raise ctx.error(
            f"`activation` on {out.dtype} output {out}", "activation", "shape.activation"
        )
    check_activation(ctx, out)
    check_n_out(ctx, out)
    return out


def _activate_and_mask(ctx, y, keeps_finite_kind: bool = False):
    """`activation` applied to the `combine`/`eval` result. The padded frames of a float result
    are set to 0 only where finite padding could have become NaN or inf (an `eval` expression,
    `truediv`, `exp`/`log`/`sqrt`): a sum of finite padding is finite, and zeroing it would cost
    a pass over the output and another over its gradient (the network's padding contract is
    "finite", not "zero": every consumer that mixes frames masks its own input)."""
    from netcompiler.backend.activations import apply_activation

    activation = ctx.opt("activation")
    if activation is not None:
        y = apply_activation(activation, y)
    if y.dtype.is_floating and not (keeps_finite_kind and keeps_finite(activation)):
        y = mask_padding(ctx, y)
    return y


class CombineRule(GuessFromInputs, LayerRule):
    """Element-wise `kind` of all inputs; the output is their broadcast."""

    layer_class = "combine"
    position_wise = True
    concat_sources = False
    broadcasts_sources = True

    def expression_option(self, opts: dict) -> str | None:
        return "eval" if opts.get("kind") == "eval" else None

    def infer(self, ctx) -> Shape:
        kind = ctx.opt("kind")
        if not ctx.sources:
            raise ctx.error("`combine` needs at least one input", "from", "shape.inputs")
        if kind == "eval":
            return _infer_eval(ctx)
        if ctx.opts.get("eval") is not None:
            ctx.warn(
                f"`eval` is ignored with `kind: {kind}`",
                "eval",
                "shape.eval",
                hint="use `kind: eval` to evaluate the expression",
            )
        for name, s in zip(ctx.source_names, ctx.sources):
            if s.sparse:
                raise ctx.error(
                    f"`combine` with `kind: {kind}` of sparse input `{name}` {s} (class indices)",
                    "from",
                    "shape.sparse",
                    hint="use `eval` with tf.cast(source(i), tf.float32), or `compare`",
                )
        dtypes = {_input_dtype(s) for s in ctx.sources}
        if len(dtypes) > 1:
            raise ctx.error(
                f"`combine` inputs have different dtypes: {describe_inputs(ctx)}",
                "from",
                "shape.dtype",
            )
        dtype = dtypes.pop()
        if dtype == "bool":
            raise ctx.error(
                f"`combine` with `kind: {kind}` of bool inputs: {describe_inputs(ctx)}",
                "from",
                "shape.dtype",
                hint="use `eval` with tf.cast(source(i), tf.float32)",
            )
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
        return _activate_and_mask(ctx, y, keeps_finite_kind=kind != "truediv")


# -- eval -----------------------------------------------------------------------------------------


def parse_eval(ctx, option: str = "eval"):
    """The parsed expression of `eval`, or a located `shape.eval` error."""
    text = ctx.opt(option)
    if text is None:
        raise ctx.error(
            f"`{ctx.layer.layer_class}` needs `{option}` (an expression over source(i))",
            option,
            "shape.eval",
        )
    try:
        return _expr.parse_expression(text, len(ctx.sources))
    except _expr.ExprError as exc:
        raise ctx.error(
            f"invalid `{option}` expression {text!r}: {exc.message}",
            option,
            exc.rule or "shape.eval",
            hint=exc.hint,
        ) from None


def _infer_eval(ctx, option: str = "eval") -> Shape:
    tree = parse_eval(ctx, option)
    dtypes = [_input_dtype(s) for s in ctx.sources]
    try:
        dtype = _types.infer_dtype(tree, dtypes)
        feature = _types.infer_feature(tree, [s.feature is not None for s in ctx.sources])
    except _expr.ExprError as exc:
        raise ctx.error(
            f"`{option}` {ctx.opt(option)!r} with inputs {describe_inputs(ctx)}: {exc.message}",
            option,
            "shape.eval",
        ) from None
    dims = broadcast_shape(ctx, ctx.sources, ctx.source_names)
    if feature in (_types.KEPT, _types.REMOVED):  # reduced over the feature axis
        dims = tuple(d for d in dims if d.kind != FEATURE)
        if feature == _types.KEPT:
            dims += (feature_dim(1),)
    sparse_dim = None
    if dtype == "int32" and not any(d.kind == FEATURE for d in dims):
        # an integer result of class indices stays sparse (as RETURNN keeps the input's type)
        sparse = [s for s in ctx.sources if s.sparse]
        if sparse:
            sparse_dim = sparse[0].sparse_dim
    out = Shape(dims, sparse_dim, dtype)
    if ctx.layer.layer_class == "eval" and ctx.opts.get("out_type") is not None:
        out = _apply_out_type(ctx, out)
    return _checked_output(ctx, out)


# -- out_type (RETURNN's declared output type of `eval`) -------------------------------------------

_MISSING = object()
_KINDS = {"B": BATCH, "T": TIME, "S": SPATIAL, "F": FEATURE}


def _declared_axes(ctx, out_type: dict, sparse: bool):
    """The axes `out_type` declares, batch first (netcompiler is batch-major), as
    ("B"|"T"|"S"|"F", size) pairs; None when it declares no `shape`."""
    shape = out_type.get("shape")
    if shape is None:
        return None
    entries = list(shape)
    batch_axis = out_type.get("batch_dim_axis", 0)
    if batch_axis is not None and batch_axis > len(entries):
        raise ctx.error(
            f"`out_type`: `batch_dim_axis: {batch_axis}` is out of range for "
            f"`shape: {list(shape)}` (the shape without the batch axis)",
            "out_type",
            "shape.out-type",
        )
    full = list(entries)
    if batch_axis is not None:
        full.insert(batch_axis, "B")
    time_axis = out_type.get("time_dim_axis")
    if time_axis is not None and (time_axis >= len(full) or full[time_axis] is not None):
        raise ctx.error(
            f"`out_type`: `time_dim_axis: {time_axis}` must name a dynamic (null) "
            f"entry of the shape {full} (with the batch axis)",
            "out_type",
            "shape.out-type",
        )
    dim = out_type.get("dim", _MISSING)
    feature = bool(not sparse and entries and isinstance(entries[-1], int) and dim is not None)
    if not sparse and dim not in (_MISSING, None) and (not entries or entries[-1] != dim):
        raise ctx.error(
            f"`out_type`: `dim: {dim}` differs from the last entry of `shape: {list(shape)}`",
            "out_type",
            "shape.out-type",
        )
    axes = [("B", None)] if batch_axis is not None else []
    for i, e in enumerate(entries):
        if e is None:
            axes.append(("T", None))
        elif feature and i == len(entries) - 1:
            axes.append(("F", e))
        else:
            axes.append(("S", e))
    return axes


def _describe_axes(axes) -> str:
    return "[" + ", ".join(k if size is None else f"{k}={size}" for k, size in axes) + "]"


def _apply_out_type(ctx, out: Shape) -> Shape:
    """The inferred output checked against `out_type` (an error where they differ), with what
    only the declaration tells: the number of classes of a sparse result, sparse or not."""
    out_type = ctx.opts["out_type"]
    dtype = out_type.get("dtype")
    if dtype is not None and dtype != out.dtype:
        raise ctx.error(
            f"`out_type` declares dtype {dtype}, but the expression gives {out.dtype} {out}",
            "out_type",
            "shape.out-type",
            hint=f"cast the result: tf.cast(..., tf.{dtype})",
        )
    sparse = out_type.get("sparse", out.sparse)
    dim = out_type.get("dim")
    axes = _declared_axes(ctx, out_type, sparse)
    if axes is not None:
        ok = len(axes) == out.ndim and all(
            _KINDS[k] == d.kind and (size is None or size == d.size)
            for (k, size), d in zip(axes, out.dims)
        )
        if not ok:
            raise ctx.error(
                f"`out_type` declares {_describe_axes(axes)}, but the expression gives {out}",
                "out_type",
                "shape.out-type",
                hint="netcompiler infers the output from the inputs (batch-major, "
                "feature last); fix `shape` or leave it out",
            )
    if sparse:
        if out.dtype != "int32" or out.feature is not None:
            raise ctx.error(
                f"`out_type` declares sparse class indices, but the expression gives "
                f"{out.dtype} {out}",
                "out_type",
                "shape.out-type",
                hint="class indices are int32 without a feature axis",
            )
        classes = dim if dim is not None else out.sparse_dim
        if classes is None:
            raise ctx.error(
                "`out_type` declares sparse output without `dim` (the number of "
                "classes), and no input tells it",
                "out_type",
                "shape.out-type",
            )
        return Shape(out.dims, classes, out.dtype)
    if dim is not None and out.feature_size != dim:
        raise ctx.error(
            f"`out_type` declares `dim: {dim}`, but the expression gives {out}",
            "out_type",
            "shape.out-type",
        )
    return Shape(out.dims, None, out.dtype)


def _outer_time_axes(ctx) -> list:
    """Time axes (other than the loop's) of the enclosing network's layers and extern data
    that the unit of this layer's rec layer reads (`base:x`, `data:KEY`); outside a unit, of
    extern data."""
    inferred = ctx.inferred
    shapes = []
    scope = ctx.layer.scope
    if scope.in_rec:
        for layer in scope.layers.values():
            for _, ref in inferred.graph.refs.get(layer.name, []):
                if ref.kind == "layer" and ref.target.scope is not scope:
                    shapes.append(inferred.shapes.get(ref.target.name))
                elif ref.kind == "extern":
                    shapes.append(inferred.extern.get(ref.target))
    else:
        shapes = list(inferred.extern.values())
    out: list = []
    for shape in shapes:
        for d in shape.time_dims if shape is not None else ():
            if d is not ctx.loop_dim and not any(d is c for c in out):
                out.append(d)
    return out


def _guess_from_out_type(ctx) -> Shape | None:
    """The per-step shape `out_type` declares, without inputs (for `prev:`); a time axis is
    taken only when the unit reads exactly one from outside (see `_outer_time_axes`)."""
    out_type = ctx.opts.get("out_type")
    if not isinstance(out_type, dict):
        return None
    try:
        sparse = bool(out_type.get("sparse", False))
        dim = out_type.get("dim")
        dtype = out_type.get("dtype") or ("int32" if sparse else "float32")
        if sparse and dim is None:
            return None
        axes = _declared_axes(ctx, out_type, sparse)
        if axes is None:
            if dim is None:
                return None
            axes = [("B", None)] + ([] if sparse else [("F", dim)])
        time_axis = None
        if any(k == "T" for k, _ in axes):
            # which time axis it is, `out_type` does not say (RETURNN matches it later): take
            # the one the unit reads from the enclosing network, if that is one axis; a wrong
            # pick would mislead every later pass, so several candidates give no guess
            candidates = _outer_time_axes(ctx)
            if sum(k == "T" for k, _ in axes) != 1 or len(candidates) != 1:
                return None
            time_axis = candidates[0]
        dims = []
        for k, size in axes:
            if k == "B":
                dims.append(BATCH_DIM)
            elif k == "T":
                dims.append(time_axis)
            elif k == "F":
                dims.append(feature_dim(size))
            else:
                dims.append(spatial_dim(size))
        return Shape(tuple(dims), dim if sparse else None, dtype)
    except Exception:  # noqa: BLE001 - only a guess; `infer` checks the real shape
        return None


def _call_eval(ctx, option: str = "eval"):
    import tensorflow as tf

    from netcompiler.backend.expr_eval import to_tf

    out = ctx.out_shape
    tree = _expr.parse_expression(ctx.opt(option), len(ctx.sources))
    # the inputs aligned to their broadcast (feature last), which differs from the output where
    # the expression reduces over the feature axis
    full = Shape(broadcast_shape(ctx, list(ctx.source_shapes), list(ctx.source_names)))
    xs = [align(x, s, full) for x, s in zip(ctx.sources, ctx.source_shapes)]
    y = to_tf(tree, xs, aligned=True)
    y = broadcast_to_out(ctx, y)
    want = tf.as_dtype(out.dtype)
    if y.dtype != want:
        y = tf.cast(y, want)
    return _activate_and_mask(ctx, y)


class EvalRule(GuessFromInputs, LayerRule):
    """An expression over `source(i)`; the output is the broadcast of all inputs."""

    layer_class = "eval"
    position_wise = True

    def expression_option(self, opts: dict) -> str | None:
        return "eval"

    concat_sources = False
    broadcasts_sources = True

    def infer(self, ctx) -> Shape:
        return _infer_eval(ctx)

    def guess_step_shape(self, ctx):
        """From the inputs known so far, else from `out_type`."""
        guess = ctx.guess_from_inputs(self)
        return guess if guess is not None else _guess_from_out_type(ctx)

    def call(self, ctx):
        return _call_eval(ctx)
