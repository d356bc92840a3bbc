"""Losses of `netcompiler.training.losses` against NumPy on ragged batches with random padding."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.training import losses

pytestmark = pytest.mark.tf


def _ragged(rng, B=5, T=9, K=6, min_len=1):
    lengths = rng.integers(min_len, T + 1, size=B).astype(np.int32)
    lengths[rng.integers(B)] = T  # the longest defines the padded size
    logits = rng.normal(size=(B, T, K)).astype(np.float32) * 3
    targets = rng.integers(0, K, size=(B, T)).astype(np.int32)
    # garbage in the padding: must never count
    for b in range(B):
        logits[b, lengths[b] :] = rng.normal(size=(T - lengths[b], K)) * 50
        targets[b, lengths[b] :] = rng.integers(0, K, size=T - lengths[b])
    return logits, targets, lengths


def _np_log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_ce(logits, targets, lengths, ls=0.0):
    logp = _np_log_softmax(logits.astype(np.float64))
    K = logits.shape[-1]
    total, frames, errors = 0.0, 0, 0
    for b, n in enumerate(lengths):
        for t in range(n):
            q = np.full(K, ls / K)
            q[targets[b, t]] += 1 - ls
            total += -(q * logp[b, t]).sum()
            errors += int(np.argmax(logp[b, t]) != targets[b, t])
            frames += 1
    return total, frames, errors


def _graph(fn):
    return tf.function(fn, autograph=False)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_ce_matches_numpy(seed, ls):
    rng = np.random.default_rng(seed)
    logits, targets, lengths = _ragged(rng)
    want, frames, errors = _np_ce(logits, targets, lengths, ls)

    # graph mode: the softmax op's logits are used
    got = _graph(lambda x, y, lens: losses.ce_loss(tf.nn.softmax(x), y, lens, ls))(
        logits, targets, lengths
    )
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-5)
    assert got.frames.numpy() == frames == lengths.sum()
    assert got.errors.numpy() == errors
    # eager mode: log of the clipped probabilities
    got = losses.ce_loss(tf.nn.softmax(logits), targets, lengths, ls)
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-4)
    # from logits
    got = losses.compute_loss(
        "ce", logits, lengths, targets, lengths, {"label_smoothing": ls, "from_logits": True}
    )
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-5)
    # per-frame normalisation excludes padding
    np.testing.assert_allclose(
        got.loss.numpy() / got.frames.numpy(), want / lengths.sum(), rtol=1e-5
    )


def test_ce_stable_for_saturated_softmax():
    logits = np.array([[[500.0, -500.0, 0.0], [0.0, 0.0, 0.0]]], np.float32)
    targets = np.array([[1, 2]], np.int32)
    lengths = np.array([2], np.int32)

    @tf.function(autograph=False)
    def loss_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            lv = losses.ce_loss(tf.nn.softmax(x), targets, lengths)
        return lv.loss, tape.gradient(lv.loss, x)

    loss, grad = loss_and_grad(tf.constant(logits))
    np.testing.assert_allclose(loss.numpy(), 1000.0 + np.log(3.0), rtol=1e-5)
    assert np.all(np.isfinite(grad.numpy()))


def test_ce_target_time_padded_differently():
    # the target may be padded to another length than the output: only valid frames count
    rng = np.random.default_rng(7)
    logits, targets, lengths = _ragged(rng, B=3, T=6)
    want = _np_ce(logits, targets, lengths)[0]
    longer = np.concatenate([targets, np.zeros((3, 4), np.int32)], axis=1)
    got = losses.ce_loss(logits, longer, lengths, from_logits=True)
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_mse_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    values, _, lengths = _ragged(rng, K=4)
    target = rng.normal(size=values.shape).astype(np.float32)
    want, frames, errors = 0.0, 0, 0
    for b, n in enumerate(lengths):
        d = values[b, :n].astype(np.float64) - target[b, :n]
        want += (d**2).mean(-1).sum()
        frames += n
        errors += int((values[b, :n].argmax(-1) != target[b, :n].argmax(-1)).sum())
    got = losses.compute_loss("mse", values, lengths, target, lengths, target_sparse=False)
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-5)
    assert got.frames.numpy() == frames
    assert got.errors.numpy() == errors


def test_mse_sparse_target_is_one_hot():
    rng = np.random.default_rng(3)
    values, targets, lengths = _ragged(rng, K=4)
    onehot = np.eye(4, dtype=np.float32)[targets]
    a = losses.mse_loss(values, targets, lengths, target_sparse=True)
    b = losses.mse_loss(values, onehot, lengths, target_sparse=False)
    np.testing.assert_allclose(a.loss.numpy(), b.loss.numpy(), rtol=1e-6)


def _np_ctc(logp, labels, blank):
    """-log p(labels | logp [T, K]) by the CTC forward algorithm (log space)."""
    ext = [blank]
    for lab in labels:
        ext += [lab, blank]
    S, T = len(ext), len(logp)
    alpha = np.full((T, S), -np.inf)
    alpha[0, 0] = logp[0, blank]
    if S > 1:
        alpha[0, 1] = logp[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            terms = [alpha[t - 1, s]]
            if s >= 1:
                terms.append(alpha[t - 1, s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[t - 1, s - 2])
            alpha[t, s] = np.logaddexp.reduce(terms) + logp[t, ext[s]]
    end = [alpha[T - 1, S - 1]] + ([alpha[T - 1, S - 2]] if S > 1 else [])
    return -np.logaddexp.reduce(end)


def _edit_distance(a, b):
    d = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev = cur
    return int(d[-1])


@pytest.mark.parametrize("seed", range(3))
def test_ctc_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    B, T, K, S = 4, 12, 5, 4  # class K-1 is the blank
    logits = rng.normal(size=(B, T, K)).astype(np.float32) * 2
    in_lens = rng.integers(8, T + 1, size=B).astype(np.int32)
    tgt_lens = rng.integers(1, S + 1, size=B).astype(np.int32)
    targets = rng.integers(0, K - 1, size=(B, S)).astype(np.int32)
    for b in range(B):
        logits[b, in_lens[b] :] = 99.0  # padding garbage
        targets[b, tgt_lens[b] :] = K - 1  # even an out-of-range label in the padding
    logp = _np_log_softmax(logits.astype(np.float64))
    want, errors = 0.0, 0
    for b in range(B):
        want += _np_ctc(logp[b, : in_lens[b]], list(targets[b, : tgt_lens[b]]), K - 1)
        best = logp[b, : in_lens[b]].argmax(-1)
        hyp = [int(c) for i, c in enumerate(best) if c != K - 1 and (i == 0 or c != best[i - 1])]
        errors += _edit_distance(hyp, list(targets[b, : tgt_lens[b]]))
    fn = _graph(lambda x, xl, y, yl: losses.compute_loss("ctc", tf.nn.softmax(x), xl, y, yl))
    got = fn(logits, in_lens, targets, tgt_lens)
    np.testing.assert_allclose(got.loss.numpy(), want, rtol=1e-4)
    assert got.frames.numpy() == in_lens.sum()
    assert got.errors.numpy() == errors
    assert got.error_frames.numpy() == tgt_lens.sum()
    eager = losses.compute_loss("ctc", logits, in_lens, targets, tgt_lens, {"from_logits": True})
    np.testing.assert_allclose(eager.loss.numpy(), want, rtol=1e-4)


def test_frame_error_and_l2():
    rng = np.random.default_rng(11)
    values, targets, lengths = _ragged(rng)
    fe = losses.frame_error(values, targets, lengths)
    want = sum(
        int((values[b, :n].argmax(-1) != targets[b, :n]).sum()) for b, n in enumerate(lengths)
    )
    assert fe.errors.numpy() == want and fe.frames.numpy() == lengths.sum()
    w = [
        tf.Variable(rng.normal(size=(3, 2)).astype(np.float32)),
        tf.Variable(rng.normal(size=(2,)).astype(np.float32)),
    ]
    np.testing.assert_allclose(
        losses.l2_penalty(w).numpy(),
        sum((v.numpy().astype(np.float64) ** 2).sum() for v in w),
        rtol=1e-6,
    )


def test_unknown_loss():
    with pytest.raises(ValueError, match="not supported"):
        losses.compute_loss(
            "expected_loss", np.zeros((1, 1, 2), np.float32), [1], np.zeros((1, 1), np.int32), [1]
        )


def _levenshtein(a, b) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_edit_distance_loss_keeps_statistics_only():
    from netcompiler.training.losses import compute_loss

    rng = np.random.default_rng(5)
    hyp = rng.integers(0, 4, size=(4, 6)).astype(np.int32)
    ref = rng.integers(0, 4, size=(4, 5)).astype(np.int32)
    hyp_len, ref_len = np.array([6, 3, 0, 4]), np.array([5, 5, 2, 1])
    lv = compute_loss("edit_distance", hyp, hyp_len, ref, ref_len)
    expected = sum(
        _levenshtein(list(h[:n]), list(r[:m])) for h, n, r, m in zip(hyp, hyp_len, ref, ref_len)
    )
    assert float(lv.loss) == 0.0  # not differentiable: no training signal, as in RETURNN
    assert float(lv.errors) == expected
    assert float(lv.error_frames) == ref_len.sum() == float(lv.frames)
