"""Losses and error measures on padded batches: pure functions of tensors and lengths.

Every function returns a `LossValue` of *sums* over the valid (non-padded) frames and the number
of frames they were summed over, so that batches (and replicas of a distribution strategy) can be
combined exactly: the per-frame loss of several batches is `sum(loss) / sum(frames)`.

    ce   sparse targets [B, T] against class probabilities (the `softmax` layer's output) [B, T, K]
         -sum_k q_k log p_k with q = (1 - label_smoothing) * onehot(target) + label_smoothing / K;
         normalised per frame; error = frame error rate (argmax != target).
         Stability: when the probabilities come straight from a softmax op in a traced graph, the
         softmax's logits are used (`log_softmax(logits)`), else log(max(p, 1e-30)).
    mse  mean over the feature axis of (output - target)^2 (a sparse target is one-hot encoded),
         summed over valid frames, normalised per frame; error = frame error rate (argmax !=
         argmax of the target) when the output has a feature axis.
    ctc  `tf.nn.ctc_loss` with blank = the last class index; the output [B, T, K] holds
         probabilities (softmax) or logits (`loss_opts.from_logits: true`); the per-sequence
         negative log-likelihoods are summed and normalised per *input* frame (the output's valid
         frames); error = label error rate of the greedy (best path) decoding: edit distance
         divided by the number of target labels.
    edit_distance  sparse labels [B, T] (e.g. a `decide` after search) against sparse targets
         [B, S]: not differentiable, so as in RETURNN it only keeps statistics: loss 0, error =
         Levenshtein distance of the valid labels divided by the number of target labels.
    as_is  no target: the layer's output is the loss (RETURNN's AsIsLoss), every entry summed
         (cast to float32; padded frames of the time axis left out), normalised as RETURNN
         does: per valid frame when the output has batch and time axes, per sequence with a
         batch axis and no time axis, else not at all (divided by 1); no error measure.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

LOSSES = ("ce", "mse", "ctc", "edit_distance", "as_is")
#: losses without a target (the trainer passes None for it)
NO_TARGET = ("as_is",)
_LOG_EPS = 1e-30


class LossValue(NamedTuple):
    loss: tf.Tensor  # float32 scalar: sum over valid frames (or sequences for ctc)
    frames: tf.Tensor  # float32 scalar: normaliser (valid frames)
    errors: tf.Tensor  # float32 scalar: number of errors (frames, or edit operations for ctc)
    error_frames: tf.Tensor  # float32 scalar: normaliser of `errors`


def sequence_mask(lengths, values) -> tf.Tensor:
    """bool [B, T]: True at the valid frames of a batch-major `values` [B, T, ...]."""
    values = tf.convert_to_tensor(values)
    maxlen = tf.shape(values)[1]
    if lengths is None:
        return tf.ones(tf.shape(values)[:2], tf.bool)
    return tf.sequence_mask(tf.cast(lengths, tf.int32), maxlen=maxlen)


def log_probs(probs, from_logits: bool = False) -> tf.Tensor:
    """Stable log-probabilities of `probs` over the last axis.

    With `from_logits` the input is logits. Otherwise, when `probs` is the output of a softmax op
    in a traced graph, the op's input (the logits) is used; else log(max(p, 1e-30)).
    """
    if from_logits:
        return tf.nn.log_softmax(probs, axis=-1)
    op = getattr(probs, "op", None)
    if op is not None and not tf.executing_eagerly():
        try:
            if op.type == "Softmax":
                return tf.nn.log_softmax(op.inputs[0], axis=-1)
        except AttributeError:  # eager tensors have no usable `op`
            pass
    return tf.math.log(tf.maximum(tf.cast(probs, tf.float32), _LOG_EPS))


def logits_of(probs, from_logits: bool = False) -> tf.Tensor:
    """Unnormalised log scores (for ctc): logits or log-probabilities."""
    return log_probs(probs, from_logits)


def _frame_errors(pred_scores, targets, mask):
    pred = tf.argmax(pred_scores, axis=-1, output_type=tf.int32)
    wrong = tf.logical_and(tf.not_equal(pred, tf.cast(targets, tf.int32)), mask)
    return tf.reduce_sum(tf.cast(wrong, tf.float32))


def _fit_time(targets, values):
    """Pad or cut `targets` on axis 1 to the time size of `values` (padding differs per key)."""
    t_out = tf.shape(values)[1]
    t_tgt = tf.shape(targets)[1]
    targets = targets[:, :t_out]
    pad = tf.maximum(t_out - t_tgt, 0)
    paddings = tf.concat([[[0, 0], [0, pad]], tf.zeros([tf.rank(targets) - 2, 2], tf.int32)], 0)
    return tf.pad(targets, paddings)


def ce_loss(
    probs, targets, lengths, label_smoothing: float = 0.0, from_logits: bool = False
) -> LossValue:
    """Cross entropy of sparse `targets` [B, T] under `probs` [B, T, K] (see module doc)."""
    logp = log_probs(probs, from_logits)
    targets = _fit_time(tf.cast(targets, tf.int32), logp)
    mask = sequence_mask(lengths, logp)
    nll = -tf.gather(logp, tf.maximum(targets, 0), axis=-1, batch_dims=2)
    if label_smoothing:
        ls = tf.cast(label_smoothing, tf.float32)
        smooth = -tf.reduce_mean(logp, axis=-1)  # -sum_k (1/K) log p_k
        nll = (1.0 - ls) * nll + ls * smooth
    maskf = tf.cast(mask, tf.float32)
    frames = tf.reduce_sum(maskf)
    loss = tf.reduce_sum(tf.where(mask, nll, 0.0))
    errors = _frame_errors(logp, targets, mask)
    return LossValue(loss, frames, errors, frames)


def mse_loss(values, targets, lengths, target_sparse: bool = False) -> LossValue:
    """Mean squared error per frame (mean over features), summed over valid frames."""
    values = tf.cast(values, tf.float32)
    if target_sparse:
        targets = tf.one_hot(tf.cast(targets, tf.int32), tf.shape(values)[-1], dtype=tf.float32)
    targets = tf.cast(targets, tf.float32)
    has_time = values.shape.rank is not None and values.shape.rank >= 2 and lengths is not None
    if has_time:
        targets = _fit_time(targets, values)
    sq = tf.math.squared_difference(values, targets)
    rank = values.shape.rank
    if has_time:
        per_frame = tf.reduce_mean(sq, axis=list(range(2, rank))) if rank > 2 else sq
        mask = sequence_mask(lengths, values)
    else:
        per_frame = tf.reduce_mean(sq, axis=list(range(1, rank))) if rank > 1 else sq
        mask = tf.ones_like(per_frame, tf.bool)
    frames = tf.reduce_sum(tf.cast(mask, tf.float32))
    loss = tf.reduce_sum(tf.where(mask, per_frame, 0.0))
    if has_time and rank > 2:
        tgt_idx = tf.argmax(targets, axis=-1, output_type=tf.int32)
        errors = _frame_errors(values, tgt_idx, mask)
    else:
        errors = tf.constant(0.0)
    return LossValue(loss, frames, errors, frames)


def ctc_loss(probs, out_lengths, targets, target_lengths, from_logits: bool = False) -> LossValue:
    """CTC (blank = last class) of sparse `targets` [B, S] given `probs` [B, T, K]."""
    logits = logits_of(probs, from_logits)
    out_lengths = tf.cast(out_lengths, tf.int32)
    target_lengths = tf.cast(target_lengths, tf.int32)
    targets = tf.cast(targets, tf.int32)
    tmask = tf.sequence_mask(target_lengths, maxlen=tf.shape(targets)[1])
    targets = tf.where(tmask, targets, 0)
    per_seq = tf.nn.ctc_loss(
        labels=targets,
        logits=logits,
        label_length=target_lengths,
        logit_length=out_lengths,
        logits_time_major=False,
        blank_index=-1,
    )
    frames = tf.cast(tf.reduce_sum(out_lengths), tf.float32)
    loss = tf.reduce_sum(per_seq)
    # greedy decoding -> label error rate
    decoded, _ = tf.nn.ctc_greedy_decoder(
        tf.transpose(logits, [1, 0, 2]), out_lengths, blank_index=-1
    )
    hyp = tf.cast(decoded[0], tf.int64)
    ref = tf.sparse.from_dense(tf.where(tmask, tf.cast(targets, tf.int64) + 1, 0))
    ref = tf.SparseTensor(
        ref.indices, ref.values - 1, tf.cast(tf.shape(targets, tf.int64), tf.int64)
    )
    dist = tf.edit_distance(hyp, ref, normalize=False)
    errors = tf.reduce_sum(dist)
    return LossValue(loss, frames, errors, tf.cast(tf.reduce_sum(target_lengths), tf.float32))


def _as_sparse(labels, lengths) -> tf.SparseTensor:
    labels = tf.cast(labels, tf.int64)
    mask = tf.sequence_mask(tf.cast(lengths, tf.int32), maxlen=tf.shape(labels)[1])
    indices = tf.where(mask)
    return tf.SparseTensor(
        indices, tf.gather_nd(labels, indices), tf.cast(tf.shape(labels), tf.int64)
    )


def edit_distance_loss(labels, lengths, targets, target_lengths) -> LossValue:
    """Edit distance of `labels` [B, T] to `targets` [B, S] on their valid frames (no loss)."""
    dist = tf.edit_distance(
        _as_sparse(labels, lengths), _as_sparse(targets, target_lengths), normalize=False
    )
    n_ref = tf.cast(tf.reduce_sum(target_lengths), tf.float32)
    return LossValue(tf.constant(0.0), n_ref, tf.reduce_sum(dist), n_ref)


def frame_error(values, targets, lengths) -> LossValue:
    """Frame error rate only (no loss): argmax(values) != targets on valid frames."""
    values = tf.convert_to_tensor(values)
    targets = _fit_time(tf.cast(targets, tf.int32), values)
    mask = sequence_mask(lengths, values)
    frames = tf.reduce_sum(tf.cast(mask, tf.float32))
    return LossValue(tf.constant(0.0), frames, _frame_errors(values, targets, mask), frames)


def as_is_loss(values, lengths, batch_axis: int | None = 0, time_axis: int | None = 1) -> LossValue:
    """The output `values` itself as the loss (see module doc): the sum of all its entries on
    the valid frames of `time_axis` (lengths `lengths` [B]), and RETURNN's normaliser: the
    number of valid frames with batch and time axes, the batch size with only a batch axis,
    else 1."""
    values = tf.cast(values, tf.float32)
    rank = values.shape.rank
    if time_axis is not None and batch_axis is not None and lengths is not None:
        lengths = tf.cast(lengths, tf.int32)
        mask = tf.sequence_mask(lengths, maxlen=tf.shape(values)[time_axis])  # [B, T]
        if time_axis < batch_axis:
            mask = tf.transpose(mask)
        first, second = sorted((batch_axis, time_axis))
        shape = [1] * rank
        shape[first], shape[second] = -1, -1
        shape = [tf.shape(values)[i] if s == -1 else 1 for i, s in enumerate(shape)]
        mask = tf.reshape(mask, tf.stack(shape))
        loss = tf.reduce_sum(tf.where(mask, values, 0.0))
        frames = tf.cast(tf.reduce_sum(lengths), tf.float32)
    else:
        loss = tf.reduce_sum(values)
        frames = (
            tf.cast(tf.shape(values)[batch_axis], tf.float32)
            if batch_axis is not None
            else tf.constant(1.0)
        )
    zero = tf.constant(0.0)
    return LossValue(loss, frames, zero, zero)


def compute_loss(
    kind: str,
    values,
    lengths,
    targets,
    target_lengths,
    opts: dict | None = None,
    target_sparse: bool = True,
    batch_axis: int | None = 0,
    time_axis: int | None = 1,
) -> LossValue:
    """Dispatch on the layer's `loss` name (`ce`, `mse`, `ctc`, ...); `opts` is `loss_opts`.
    `batch_axis` / `time_axis`: where `values` has them (None: it has none); only `as_is`
    reads them (the other losses take batch-major [B, T, ...] values)."""
    opts = dict(opts or {})
    if kind == "as_is":  # no target
        return as_is_loss(values, lengths, batch_axis, time_axis)
    from_logits = bool(opts.get("from_logits", False))
    if kind == "ce":
        return ce_loss(
            values, targets, lengths, float(opts.get("label_smoothing", 0.0) or 0.0), from_logits
        )
    if kind == "mse":
        return mse_loss(values, targets, lengths, target_sparse)
    if kind == "ctc":
        if lengths is None:
            lengths = tf.fill([tf.shape(values)[0]], tf.shape(values)[1])
        if target_lengths is None:
            target_lengths = tf.fill([tf.shape(targets)[0]], tf.shape(targets)[1])
        return ctc_loss(values, lengths, targets, target_lengths, from_logits)
    if kind == "edit_distance":
        if lengths is None:
            lengths = tf.fill([tf.shape(values)[0]], tf.shape(values)[1])
        if target_lengths is None:
            target_lengths = tf.fill([tf.shape(targets)[0]], tf.shape(targets)[1])
        return edit_distance_loss(values, lengths, targets, target_lengths)
    raise ValueError(
        f"loss `{kind}` is not supported by the trainer (supported: {', '.join(LOSSES)})"
    )


def l2_penalty(variables) -> tf.Tensor:
    """Sum of squares of the given variables (the layer's `L2` factor is applied by the caller)."""
    total = tf.constant(0.0)
    for v in variables:
        total = total + tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
    return total
