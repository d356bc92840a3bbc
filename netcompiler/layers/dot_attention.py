"""`dot_attention` (deprecated; one decoder step, semantics.md).

Source s `[B, D]` (or `[B, T(dec), D]`: every decoder frame independently), `base_ctx`
`[B, Te, D]`, `base` `[B, Te, V]`: `e[b,j] = base_ctx[b,j] . s[b]` (times `energy_factor`),
keys `j >= len_base[b]` masked, softmax over j, `out[b] = sum_j w[b,j] base[b,j]`: `[B, V]`
(or `[B, T(dec), V]`). No variables.
"""

from __future__ import annotations

from netcompiler.core.dims import (
    BATCH,
    BATCH_DIM,
    FEATURE,
    TIME,
    Dim,
    Shape,
    feature_dim,
    spatial_dim,
)
from netcompiler.core.layer_rule import LayerRule

DOT_FORMULATION = (
    "`energy: {class: dot, from: [base_ctx, s], red1: F, red2: F, var1: T, var2: null}`, "
    "`weights: {class: softmax_over_spatial, from: energy, energy_factor: ...}`, "
    "`att: {class: generic_attention, weights: weights, base: base}`"
)
CONCAT_FORMULATION = (
    "`combine(add, base_ctx, s)` -> `activation: tanh` -> "
    "`energy: {class: linear, n_out: 1, with_bias: false}` -> "
    "`weights: {class: softmax_over_spatial, from: energy}` -> "
    "`att: {class: generic_attention, weights: weights, base: base}`"
)
GAUSS_FORMULATION = (
    "compute the window weights explicitly (e.g. `eval`/`combine` over the positions), normalise "
    "or mask them with `softmax_over_spatial` (`window_start`, `window_size`) and attend with "
    "`{class: generic_attention, weights: ..., base: ...}`"
)


def guess_attention_step(ctx, inner: int | None = None) -> Shape | None:
    """Per-step shape from `base`'s features: `[B, F=V]` (`[B, S=I, F=V]`)."""
    base = ctx.known_ref("base")
    v = base.feature_size if base is not None else ctx.opts.get("n_out")
    if not isinstance(v, int) or isinstance(v, bool):
        return None
    dims = (BATCH_DIM,) + ((spatial_dim(inner, "inner"),) if inner is not None else ())
    return Shape(dims + (feature_dim(v),))


def check_base(ctx, base_option: str = "base") -> tuple[Shape, Dim]:
    """`base` must be `[B, Te, V]`; returns (shape, Te)."""
    base = ctx.require_ref(base_option)
    d = base.dims
    if not (
        len(d) == 3
        and d[0].kind == BATCH
        and d[1].kind == TIME
        and d[2].kind == FEATURE
        and not base.sparse
    ):
        raise ctx.error(
            f"`{base_option}` `{ctx.ref_name(base_option)}` {base}, but "
            f"`{ctx.layer.layer_class}` needs [B, T, F] (an encoder sequence)",
            base_option,
            "shape.attention-base",
        )
    return base, d[1]


def decoder_axes(ctx, src: Shape, enc: Dim, what: str) -> tuple[Dim, ...]:
    """The non-feature axes of the source: `[B]` (one step) or `[B, T(dec)]`."""
    nf = src.non_feature_dims
    ok = (
        len(nf) in (1, 2)
        and nf[0].kind == BATCH
        and (len(nf) == 1 or (nf[1].kind == TIME and nf[1] is not enc))
    )
    if not ok:
        extra = (
            f"; its time axis {enc} is the attended axis of `base`"
            if any(x is enc for x in nf)
            else ""
        )
        raise ctx.error(
            f"source `{', '.join(ctx.source_names)}` {src}, but `{ctx.layer.layer_class}` "
            f"needs {what} per step ([B, ...]) or over a decoder time axis ([B, T(dec), ...])"
            f"{extra}",
            "from",
            "shape.attention-source",
        )
    return nf


def attention_output(ctx, src: Shape, base_ctx_option: str | None) -> Shape:
    """Shared rule of dot_attention and concat_attention."""
    base, enc = check_base(ctx)
    src_name = ", ".join(ctx.source_names)
    if src.sparse or src.feature is None:
        raise ctx.error(
            f"source `{src_name}` {src} has no feature axis", "from", "shape.no-feature"
        )
    nf = decoder_axes(ctx, src, enc, "a vector")
    if base_ctx_option is not None:
        bctx = ctx.require_ref(base_ctx_option)
        bname = ctx.ref_name(base_ctx_option)
        if not (bctx.ndim == 3 and bctx.has_batch and bctx.dims[1] is enc and bctx.feature):
            raise ctx.error(
                f"`base_ctx` `{bname}` {bctx} and `base` `{ctx.ref_name('base')}` {base} must "
                f"have the same axes up to the features",
                "base_ctx",
                "shape.attention-base",
            )
        if bctx.feature_size != src.feature_size:
            raise ctx.error(
                f"`from` `{src_name}` {src} and `base_ctx` `{bname}` {bctx} differ in features "
                f"({src.feature_size} != {bctx.feature_size})",
                "base_ctx",
                "shape.attention-features",
                hint="project the decoder state to the size of base_ctx (e.g. a `linear` layer)",
            )
    v = base.feature_size
    n_out = ctx.opts.get("n_out")
    if n_out is not None and n_out != v:
        raise ctx.error(
            f"`n_out: {n_out}` differs from the features of `base` "
            f"`{ctx.ref_name('base')}` {base} ({v})",
            "n_out",
            "shape.n-out",
            hint="leave `n_out` out: the output size is base's feature size",
        )
    return Shape(nf + (feature_dim(v),))


class DotAttentionRule(LayerRule):
    layer_class = "dot_attention"
    layer_options = ("base", "base_ctx")
    deprecated = DOT_FORMULATION

    def infer(self, ctx) -> Shape:
        return attention_output(ctx, ctx.source, "base_ctx")

    def guess_step_shape(self, ctx):
        return guess_attention_step(ctx)

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute

        s, squeeze = to_decoder_form(ctx.source, ctx.source_shape)  # [B, Td, D]
        base_ctx = ctx.ref("base_ctx")
        energy = compute.matmul(s, base_ctx, transpose_b=True)  # [B, Td, Te]
        factor = ctx.opt("energy_factor")
        if factor is not None:
            energy = energy * tf.cast(factor, energy.dtype)
        return attend(ctx, energy, squeeze)


def to_decoder_form(x, shape: Shape):
    """[B, D] -> [B, 1, D] (squeeze afterwards), [B, Td, D] unchanged."""
    import tensorflow as tf

    if len(shape.non_feature_dims) == 1:
        return tf.expand_dims(x, 1), True
    return x, False


def attend(ctx, energy, squeeze: bool):
    """Masked softmax over base's time axis of `energy` [B, Td, Te], weighted sum of base."""
    import tensorflow as tf

    from netcompiler.backend import compute

    base = ctx.ref("base")
    bshape = ctx.ref_shape("base")
    lengths = ctx.lengths(bshape.dims[1])
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(base)[1])[:, None, :]  # [B, 1, Te]
    mask = tf.broadcast_to(mask, tf.shape(energy))
    energy = tf.where(mask, energy, tf.constant(energy.dtype.min, energy.dtype))
    weights = tf.where(mask, tf.nn.softmax(energy, axis=-1), tf.zeros_like(energy))
    out = compute.matmul(weights, zero_padded(base, lengths))  # [B, Td, V]
    return out[:, 0] if squeeze else out


def zero_padded(base, lengths):
    """`base` [B, Te, V] with its padded frames set to 0, so that a non-finite value there
    (a `log` of zero padding, say) cannot turn a zero weight into NaN. Inside a decoder loop,
    where `base` and `lengths` come from outside the loop, this is done once, in the graph
    around the loop, not at every step (for a beam of 12 it was 40 % of a search step)."""
    import tensorflow as tf

    from netcompiler.backend.loop.tensors import built_before_loop

    def masked():
        valid = tf.sequence_mask(lengths, maxlen=tf.shape(base)[1])[:, :, None]
        return tf.where(valid, base, tf.zeros([], base.dtype))

    return built_before_loop(masked, reads=(base, lengths))
