"""`spec_augment`: SpecAugment's time and feature masking of [B, T, F] input, as data.

RETURNN ASR setups (e.g. rwth-i6's returnn-experiments LSTM and conformer setups) apply it
through Python, an `eval` layer calling the config's `transform` function
(`self.network.get_config().typed_value('transform')(source(0, as_data=True), ...)`), which
netcompiler refuses (`expr.python-call`); this layer is the data-only replacement.

Not training: the identity. Training, per sequence b of valid length L:

- time masks: their number n is uniform in [`min_num_time_masks`, M] with
  M = `max_num_time_masks`, or max(`max_num_time_masks`, L // `time_mask_frames_per_mask`)
  when that is set (the setup's `max(T // 100, 2)` is `max_num_time_masks: 2`,
  `time_mask_frames_per_mask: 100`); the masks start at min(n, L) distinct frames drawn
  uniformly from the valid frames [0, L) and are each uniform in [1, `max_time_mask_width`]
  frames wide, cut at L (masks may overlap or touch). A time mask covers every feature.
- feature masks: the same over the F features (n uniform in [`min_num_feature_masks`,
  `max_num_feature_masks`], widths uniform in [1, `max_feature_mask_width`], default
  max(1, F // 5) as in the setup), each covering every valid frame of the sequence.
- masked entries are set to `mask_value` (default 0); padded frames are never touched.

As in RETURNN's setup the masks start at distinct positions (its top-k of random scores); unlike
it, the positions and the length-scaled number of time masks use each sequence's own length
rather than the padded batch length, so padding never receives (or swallows) a mask. The setup's
warm-up (fewer masks in the first 2000 steps) and time warping are not modelled.

The random numbers come from stateless ops seeded like dropout masks
(`CallContext.random_seed`: layer seed, training step, replica), so a resumed training run draws
the same masks as an uninterrupted one.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out, src_desc
from netcompiler.layers.combine import GuessFromInputs

#: salts of the random draws (distinct from dropout's salt 0 of the same layer)
_TIME_SALT, _FEATURE_SALT = 1001, 1011

_RULE = "shape.spec-augment"


def feature_mask_width(opts_get, features: int) -> int:
    """`max_feature_mask_width`, default max(1, F // 5)."""
    width = opts_get("max_feature_mask_width")
    return max(1, features // 5) if width is None else int(width)


class SpecAugmentRule(GuessFromInputs, LayerRule):
    layer_class = "spec_augment"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.sparse or src.dtype != "float32":
            what = "sparse input (class indices)" if src.sparse else f"{src.dtype} input"
            raise ctx.error(
                f"`spec_augment` of {what} {src_desc(ctx)}",
                "from",
                "shape.dtype",
                hint="SpecAugment masks dense float features [B, T, F]",
            )
        if ctx.in_rec:
            raise ctx.error(
                "`spec_augment` inside a rec unit is not supported (it masks whole sequences)",
                None,
                "shape.unsupported",
                hint="apply it to the input before the rec layer",
            )
        kinds = [d.kind for d in src.dims]
        if kinds.count(TIME) != 1:
            rule = "shape.no-time" if TIME not in kinds else "shape.axis"
            raise ctx.error(
                f"`spec_augment` needs input [B, T, F] with one time axis, got {src_desc(ctx)}",
                "from",
                rule,
            )
        if kinds != [BATCH, TIME, FEATURE]:
            raise ctx.error(
                f"`spec_augment` needs input [B, T, F], got {src_desc(ctx)}",
                "from",
                "shape.axis",
                hint="merge or remove the other axes first (`merge_dims`, `squeeze`)",
            )
        for what in ("time", "feature"):
            lo, hi = ctx.opt(f"min_num_{what}_masks"), ctx.opt(f"max_num_{what}_masks")
            if lo > hi:
                raise ctx.error(
                    f"`min_num_{what}_masks: {lo}` exceeds `max_num_{what}_masks: {hi}`",
                    f"min_num_{what}_masks",
                    _RULE,
                )
        features = int(src.feature_size)
        width = feature_mask_width(ctx.opt, features)
        if width > features:
            raise ctx.error(
                f"`max_feature_mask_width: {width}` exceeds the {features} features "
                f"of {src_desc(ctx)}",
                "max_feature_mask_width",
                _RULE,
            )
        check_n_out(ctx, src)
        return src

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        if not ctx.training:
            return tf.identity(x)
        shape = ctx.source_shape
        t_dim = shape.time
        n_batch, n_time = tf.shape(x)[0], tf.shape(x)[1]
        features = int(shape.feature_size)
        if ctx.has_lengths(t_dim):
            lengths = tf.cast(ctx.lengths(t_dim), tf.int32)
        else:
            lengths = tf.fill([n_batch], n_time)
        time_masked = random_spans(
            ctx,
            n_time,
            lengths,
            ctx.opt("min_num_time_masks"),
            ctx.opt("max_num_time_masks"),
            ctx.opt("time_mask_frames_per_mask"),
            ctx.opt("max_time_mask_width"),
            _TIME_SALT,
        )
        feature_masked = random_spans(
            ctx,
            features,
            tf.fill([n_batch], features),
            ctx.opt("min_num_feature_masks"),
            ctx.opt("max_num_feature_masks"),
            None,
            feature_mask_width(ctx.opt, features),
            _FEATURE_SALT,
        )
        valid = tf.sequence_mask(lengths, n_time)  # [B, T]
        mask = tf.logical_or(
            time_masked[:, :, None], tf.logical_and(valid[:, :, None], feature_masked[:, None, :])
        )
        value = tf.cast(ctx.opt("mask_value"), x.dtype)
        return tf.where(mask, value, x)


def random_spans(
    ctx, size, lengths, min_num: int, max_num: int, per_mask: int | None, max_width: int, salt: int
):
    """bool [B, size]: True inside the random masks of each sequence (valid: [0, lengths[b]))."""
    import tensorflow as tf

    n_batch = tf.shape(lengths)[0]
    # the number of masks: uniform in [min_num, max_b]
    max_b = tf.fill([n_batch], tf.constant(int(max_num), tf.int32))
    if per_mask:
        max_b = tf.maximum(max_b, lengths // int(per_mask))
    u = tf.random.stateless_uniform([n_batch], ctx.random_seed(salt))
    span = tf.cast(max_b - int(min_num) + 1, tf.float32)
    num = tf.minimum(int(min_num) + tf.cast(tf.floor(u * span), tf.int32), max_b)
    # distinct starts: the `num` highest random scores among the valid positions
    pos = tf.range(size)[None, :]
    valid = pos < lengths[:, None]
    scores = tf.where(
        valid, tf.random.stateless_uniform([n_batch, size], ctx.random_seed(salt + 1)), -1.0
    )
    order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
    ranks = tf.argsort(order, axis=-1, stable=True)  # rank of each position
    start = tf.logical_and(valid, ranks < num[:, None])
    # widths uniform in [1, max_width]; a mask starting at s covers [s, s + width)
    w = tf.random.stateless_uniform([n_batch, size], ctx.random_seed(salt + 2))
    width = tf.minimum(1 + tf.cast(tf.floor(w * float(max_width)), tf.int32), int(max_width))
    end = tf.where(start, pos + width, 0)
    # reach[t] = max end of the masks starting in (t - step, t]; masks start at most
    # max_width - 1 positions before a position they cover, so doubling `step` to
    # >= max_width finds every one
    reach, step = end, 1
    while step < max_width:
        shifted = tf.pad(reach, [[0, 0], [step, 0]])[:, :size]
        reach = tf.maximum(reach, shifted)
        step *= 2
    return tf.logical_and(valid, pos < reach)
