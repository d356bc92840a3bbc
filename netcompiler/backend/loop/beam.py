"""Beam search inside the decoder loop: the batch is B*K (K = beam size). At a search choice the
K best continuations of every sequence are kept by their summed log-probabilities, and every
value of the step (outputs so far, `prev:` values, layer states, ended flags, lengths) follows
its hypothesis through the back-pointers. Ended hypotheses are kept with a fixed score (one
continuation with log-prob 0). After the loop the hypotheses are traced back through the
back-pointers of every step and ranked, dividing by the hypothesis length when
`length_normalization` (default) is set."""

from __future__ import annotations

import math

import tensorflow as tf

from netcompiler.backend.loop.tensors import to_batch_major
from netcompiler.core.dims import Shape


def initial_scores(batch, beam_size: int):
    """[B*K] scores at the start: only the first hypothesis of every sequence is alive."""
    init_scores = tf.concat([[0.0], tf.fill([beam_size - 1], -math.inf)], axis=0)
    return tf.tile(init_scores, [batch])


def beam_step(probs, scores, ended, batch, beam_size: int, input_type: str = "prob"):
    """One pruning step: the labels [B*K], scores [B*K] and flat back-pointers [B*K] (an index
    into the B*K hypotheses of the step before) of the K best continuations per sequence.
    `probs` [B*K, C] are probabilities or, with `input_type: log_prob`, log-probabilities."""
    K, B = beam_size, batch
    probs = tf.cast(probs, tf.float32)
    if input_type == "log_prob":
        logp = probs
    else:
        logp = tf.math.log(tf.maximum(probs, 1e-30))
    C = tf.shape(logp)[-1]
    BK = tf.shape(logp)[0]
    ended_row = tf.concat([tf.zeros([BK, 1]), tf.fill([BK, C - 1], -math.inf)], axis=1)
    logp = tf.where(ended[:, None], ended_row, logp)
    cand = tf.reshape(scores[:, None] + logp, [B, K * C])
    top_scores, top_idx = tf.math.top_k(cand, k=K)
    bp = top_idx // C
    label = top_idx % C
    flat_bp = tf.reshape(tf.range(B)[:, None] * K + bp, [-1])
    return tf.reshape(label, [-1]), tf.reshape(top_scores, [-1]), flat_bp


def reorder_by_beam(state, bp, shapes: dict[str, Shape]) -> None:
    """Let every value of the step `state` (a `StepState`) follow its hypothesis: gather the
    batch entries by the back-pointers `bp` (values without a batch axis stay)."""

    def follow(x):
        return tf.gather(x, bp, axis=0)

    state.cur = {k: (follow(v) if shapes[k].has_batch else v) for k, v in state.cur.items()}
    state.prev = {k: (follow(v) if shapes[k].has_batch else v) for k, v in state.prev.items()}
    state.states = {k: tf.nest.map_structure(follow, v) for k, v in state.states.items()}
    state.old_states = {k: tf.nest.map_structure(follow, v) for k, v in state.old_states.items()}
    state.ended, state.length = follow(state.ended), follow(state.length)


def _trace_back(bps, sel):
    """[T, B*N] indices into the B*K hypotheses of every step of the selected final
    hypotheses `sel` [B*N], following the back-pointers `bps` [T, B*K] backwards."""
    rev = tf.reverse(bps, [0])
    after = tf.scan(lambda idx, bp_t: tf.gather(bp_t, idx), rev, initializer=sel)
    return tf.reverse(tf.concat([sel[None], after[:-1]], axis=0), [0])


def finish_search(loop_vars, stack_names, shapes: dict[str, Shape], setup, rec):
    """After the loop of `rec` (run with `setup`, a `LoopSetup`): rank the final hypotheses,
    trace the `n_best` of every sequence back, put labels, lengths, scores and log-probs into
    `search_opts["results"][rec name]` (when given) and return (the stacked layers of the best
    hypothesis [B, T, ...], its lengths [B])."""
    K, B = setup.K, setup.B
    include_eos = bool(rec.opts.get("include_eos", False))
    choice, search_opts = setup.plan.search_choice, setup.search_opts
    n_best = int((search_opts or {}).get("n_best", 1) or 1)
    n_best = max(1, min(n_best, K))
    scores = tf.reshape(loop_vars["scores"], [B, K])
    lengths = tf.reshape(loop_vars["length"], [B, K])
    ended = tf.reshape(loop_vars["ended"], [B, K])
    rank = scores
    if choice.opts.get("length_normalization", True):
        norm_len = lengths + tf.cast(tf.logical_and(ended, not include_eos), tf.int32)
        rank = scores / tf.cast(tf.maximum(norm_len, 1), tf.float32)
    top_rank, top_k = tf.math.top_k(rank, k=n_best)  # [B, N]
    sel = tf.reshape(tf.range(B)[:, None] * K + top_k, [-1])  # [B*N]
    idx = _trace_back(loop_vars["bp"].stack(), sel)  # [T, B*N]
    sel_len = tf.gather(tf.reshape(lengths, [-1]), sel)
    sel_scores = tf.reshape(top_rank, [-1])
    raw_scores = tf.gather(tf.reshape(scores, [-1]), sel)
    stacked_n = {}
    for n in stack_names:
        vals = loop_vars["tas"][n].stack()  # [T, BK, ...]
        picked = tf.gather(vals, idx, axis=1, batch_dims=1)  # [T, B*N, ...]
        stacked_n[n] = to_batch_major(picked, shapes[n])  # [B*N, T, ...]
    first = tf.reshape(tf.range(B) * n_best, [-1])
    best = {n: tf.gather(v, first, axis=0) for n, v in stacked_n.items()}
    best_len = tf.gather(sel_len, first)
    if search_opts is not None:
        labels = stacked_n[choice.name]
        T = tf.shape(labels)[1]
        search_opts.setdefault("results", {})[rec.name] = {
            "labels": tf.reshape(labels, [B, n_best, T]),
            "lengths": tf.reshape(sel_len, [B, n_best]),
            "scores": tf.reshape(sel_scores, [B, n_best]),
            "log_probs": tf.reshape(raw_scores, [B, n_best]),
        }
    return best, best_len
