"""Small helpers shared by shape rules."""

from __future__ import annotations

from netcompiler.core.dims import Shape


def n_out_or_target(ctx, option: str = "n_out") -> int:
    """`n_out`, or the number of classes of the `target` (as RETURNN infers it), plus one (the
    blank, last) with `loss: ctc`."""
    n_out = ctx.opt(option)
    if n_out is not None:
        return int(n_out)
    target = ctx.opt("target")
    if isinstance(target, str):
        shape = ctx.extern(target)
        if shape is not None and shape.feature_size is not None:
            blank = 1 if str(ctx.opts.get("loss") or "").lower() == "ctc" else 0
            return int(shape.feature_size) + blank
    raise ctx.error(
        f"`{ctx.layer.layer_class}` needs `n_out` (or a `target` to take it from)",
        None,
        "shape.missing-option",
    )


def input_features(ctx, shape: Shape, name: str = "from") -> int:
    """Feature size of an input (number of classes for sparse input, read as one-hot)."""
    size = shape.feature_size
    if size is None:
        raise ctx.error(
            f"input `{', '.join(ctx.source_names)}` {shape} has no feature axis",
            name,
            "shape.no-feature",
        )
    if not shape.sparse and shape.dtype != "float32":
        # the input is multiplied with float32 weights: int/bool features would fail in TF
        raise ctx.error(
            f"`{ctx.layer.layer_class}` needs float32 input (it is multiplied with "
            f"its weights), but input `{', '.join(ctx.source_names)}` is {shape}",
            name,
            "shape.dtype",
            hint="cast it first: a `cast` layer with `dtype: float32`, or "
            "tf.cast(..., tf.float32) in the `eval`",
        )
    return int(size)


def src_desc(ctx) -> str:
    """ "`name` shape" of the (single) input, for error messages."""
    return ctx.describe(", ".join(ctx.source_names), ctx.source_shape)


def float_features(ctx) -> Shape:
    """The single input, which must be float32 data with a feature axis (layers that scale or
    normalise features); a `shape.no-feature` error otherwise."""
    src = ctx.source
    if src.sparse or src.feature is None or src.dtype != "float32":
        what = (
            "sparse input (class indices)"
            if src.sparse
            else (
                f"{src.dtype} input" if src.dtype != "float32" else "an input without feature axis"
            )
        )
        raise ctx.error(
            f"`{ctx.layer.layer_class}` needs float features, got {what} {src_desc(ctx)}",
            "from",
            "shape.no-feature",
        )
    return src


def check_n_out(ctx, out: Shape) -> None:
    """A given `n_out` must equal the output's feature size (classes if sparse), as RETURNN
    checks it."""
    n_out = ctx.opts.get("n_out")
    if n_out is None or out.feature_size == n_out:
        return
    single = len(ctx.sources) == 1  # (a list in `from` concatenated counts as one)
    raise ctx.error(
        f"`n_out: {n_out}` differs from the output of `{ctx.name}` {out}"
        + (f" (input {src_desc(ctx)})" if single else ""),
        "n_out",
        "shape.n-out",
        hint="remove `n_out`; the output size follows from the input" + ("" if single else "s"),
    )


def zero_padded(ctx, x, shape: Shape, dim):
    """TensorFlow (call time): `x` with the padded frames of its time axis `dim` set to 0."""
    import tensorflow as tf

    return tf.where(ctx.time_mask(shape, dim, x), x, tf.zeros_like(x))


def pad_axis(x, axis: int, rank: int, before, after):
    """TensorFlow: `x` (of `rank` axes) zero-padded on `axis` by `before`/`after` entries
    (ints or scalar int32 tensors)."""
    import tensorflow as tf

    paddings = tf.scatter_nd([[axis]], tf.reshape(tf.stack([before, after]), [1, 2]), [rank, 2])
    return tf.pad(x, paddings)
