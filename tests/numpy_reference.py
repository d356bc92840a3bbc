"""Independent NumPy reference implementation of the attention-layer maths.

This module is the oracle the TensorFlow builders of netcompiler are tested against
(see ``/work/shared/reference/semantics.md``, which is authoritative). It is pure NumPy:
no TensorFlow and no netcompiler imports.

Conventions (all functions)
---------------------------
* Everything is **batch-major**: ``[B, T, ...]``. Per-sequence lengths are int arrays ``[B]``.
  Frame ``t`` of sequence ``b`` is *valid* when ``t < len[b]``, otherwise *padded*.
* Inputs may be any float dtype; everything is computed in float64 and float64 is returned.
* "Masked" means the entry takes no part in the softmax: its weight is **exactly 0**.
  A softmax row in which *every* entry is masked returns all zeros (never NaN); this only
  happens for padded/empty positions, which are outside every contract.
* Values at padded frames of the *outputs* are not part of any contract. Where it costs
  nothing they are zeroed; tests must compare valid frames only (use :func:`valid_mask`).
* Dropout (``attention_dropout``) is a training-only feature and is not modelled: these
  are the inference-mode maths.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "valid_mask",
    "linear",
    "linear_sparse",
    "softmax",
    "masked_softmax",
    "split_qkv_heads",
    "self_attention",
    "self_attention_with_state",
    "relative_positional_encoding",
    "fixed_relative_encoding_matrix",
    "dot_attention",
    "concat_attention",
    "softmax_over_spatial",
    "generic_attention",
    "gauss_window_attention",
    "layer_norm",
    "lstm_sequence",
    "ACTIVATIONS",
    "activation",
]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _lengths(lengths, batch):
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape [B]=({batch},), got {lengths.shape!r}")
    if not np.issubdtype(lengths.dtype, np.integer):
        if not np.all(np.asarray(lengths) == np.round(lengths)):
            raise ValueError("lengths must be integers")
    return lengths.astype(np.int64)


def valid_mask(lengths, T):
    """Boolean mask of valid frames.

    :param lengths: int ``[B]``
    :param T: int, padded time length
    :return: bool ``[B, T]``, ``True`` where ``t < lengths[b]``
    """
    lengths = np.asarray(lengths).astype(np.int64)
    return np.arange(T)[None, :] < lengths[:, None]


def _is_sparse(x, sparse):
    if sparse is None:
        return np.issubdtype(np.asarray(x).dtype, np.integer)
    return bool(sparse)


# ---------------------------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------------------------


def linear(x, W, b=None):
    """Dense affine map ``y = x @ W + b``.

    :param x: float ``[..., n_in]``
    :param W: float ``[n_in, n_out]``
    :param b: optional float ``[n_out]``
    :return: float64 ``[..., n_out]``
    """
    y = _f64(x) @ _f64(W)
    if b is not None:
        y = y + _f64(b)
    return y


def linear_sparse(idx, W, b=None):
    """Sparse (index) input: row lookup ``y = W[idx] + b`` (== one-hot(idx) @ W + b).

    :param idx: int ``[...]`` with values in ``[0, n_in)``
    :param W: float ``[n_in, n_out]``
    :param b: optional float ``[n_out]``
    :return: float64 ``[..., n_out]``
    """
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError("linear_sparse expects integer indices")
    W = _f64(W)
    if idx.size and (idx.min() < 0 or idx.max() >= W.shape[0]):
        raise IndexError(f"sparse index out of range [0, {W.shape[0]})")
    y = W[idx]
    if b is not None:
        y = y + _f64(b)
    return y


# ---------------------------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------------------------


def softmax(x, axis=-1):
    """Numerically stable softmax (max subtracted first).

    :param x: float array of any shape
    :param axis: int, axis normalised over
    :return: float64, same shape as ``x``, sums to 1 over ``axis``
    """
    x = _f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def masked_softmax(energy, mask, axis=-1):
    """Softmax where masked entries get exactly 0 weight.

    :param energy: float array of any shape. Values at masked entries are ignored entirely
        (they may be anything, even inf/NaN).
    :param mask: bool array broadcastable to ``energy.shape``; ``True`` = keep (valid),
        ``False`` = masked (weight exactly 0).
    :param axis: int, axis normalised over
    :return: float64, shape of ``energy``. Over ``axis`` the unmasked entries sum to 1; a slice
        with no unmasked entry is all zeros (not NaN).
    """
    e = _f64(energy)
    m = np.broadcast_to(np.asarray(mask, dtype=bool), e.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        em = np.where(m, e, -np.inf)
        mx = np.max(em, axis=axis, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        ex = np.where(m, np.exp(np.where(m, e - mx, -np.inf)), 0.0)
    s = np.sum(ex, axis=axis, keepdims=True)
    return ex / np.where(s > 0, s, 1.0)


# ---------------------------------------------------------------------------------------------
# self attention
# ---------------------------------------------------------------------------------------------


def _qkv_dims(num_heads, total_key_dim, n_out):
    H, Dk, Dv = int(num_heads), int(total_key_dim), int(n_out)
    if Dk % H or Dv % H:
        raise ValueError("total_key_dim and n_out must be divisible by num_heads")
    return H, Dk // H, Dv // H


def split_qkv_heads(y, num_heads, total_key_dim, n_out):
    """Split the projected input ``y = x @ QKV`` into per-head q, k, v (**per head first**).

    Column layout of ``QKV`` (and hence of ``y``): with ``dk = Dk/H``, ``dv = Dv/H``,
    ``P = 2*dk + dv``, head ``h`` owns columns ``[h*P, (h+1)*P)``; inside that block the first
    ``dk`` columns are ``q_h``, the next ``dk`` are ``k_h``, the last ``dv`` are ``v_h``:
    ``[q0 k0 v0 | q1 k1 v1 | ...]``.

    :param y: float ``[B, T, 2*Dk + Dv]``
    :return: ``(q, k, v)`` float64 with shapes ``[B, H, T, dk]``, ``[B, H, T, dk]``,
        ``[B, H, T, dv]``. ``q`` is **not** scaled here.
    """
    y = _f64(y)
    H, dk, dv = _qkv_dims(num_heads, total_key_dim, n_out)
    B, T, F = y.shape
    P = 2 * dk + dv
    if F != H * P:
        raise ValueError(f"QKV output dim {F} != 2*Dk+Dv = {H * P}")
    y = y.reshape(B, T, H, P).transpose(0, 2, 1, 3)  # [B,H,T,P]
    return y[..., :dk], y[..., dk : 2 * dk], y[..., 2 * dk :]


def _project_qkv(x, QKV, sparse):
    if _is_sparse(x, sparse):
        return linear_sparse(x, QKV)
    return linear(x, QKV)


def _attend(q, k, v, key_mask, key_shift):
    """Core multi-head dot attention.

    :param q: ``[B,H,Tq,dk]`` (already scaled)
    :param k: ``[B,H,Tk,dk]``
    :param v: ``[B,H,Tk,dv]``
    :param key_mask: bool broadcastable to ``[B,H,Tq,Tk]``, True = attend
    :param key_shift: None or ``[Tq,Tk,dk]``
    :return: out ``[B,Tq,H*dv]``, weights ``[B,H,Tq,Tk]``
    """
    energy = np.einsum("bhid,bhjd->bhij", q, k)
    if key_shift is not None:
        ks = _f64(key_shift)
        Tq, Tk = q.shape[2], k.shape[2]
        if ks.shape != (Tq, Tk, q.shape[3]):
            raise ValueError(
                f"key_shift must have shape [Tq,Tk,dk]={(Tq, Tk, q.shape[3])!r}, got {ks.shape!r}"
            )
        energy = energy + np.einsum("bhid,ijd->bhij", q, ks)
    w = masked_softmax(energy, key_mask, axis=-1)
    out = np.einsum("bhij,bhjd->bhid", w, v)  # [B,H,Tq,dv]
    B, H, Tq, dv = out.shape
    out = out.transpose(0, 2, 1, 3).reshape(B, Tq, H * dv)  # heads concatenated in order
    return out, w


def self_attention(
    x,
    lengths,
    QKV,
    num_heads,
    total_key_dim,
    n_out,
    key_shift=None,
    left_only=False,
    sparse=None,
    return_weights=False,
):
    """Multi-head self-attention (RETURNN ``self_attention``), exactly as semantics.md.

    * ``y = x @ QKV`` (sparse input: ``y = QKV[x]``); no bias, no output projection.
    * Column layout per head first ``[q0 k0 v0 | q1 k1 v1 | ...]`` (see :func:`split_qkv_heads`).
    * ``q_h`` is multiplied by ``dk ** -0.5`` once, before any dot product.
    * ``energy[b,h,i,j] = q_h[b,i] . k_h[b,j]  (+ q_h[b,i] . key_shift[i,j])`` with the scaled q.
    * Masking: ``left_only=False`` masks keys ``j >= len[b]``; ``left_only=True`` masks keys
      ``j > i`` (causal; no length mask is added, valid queries never see padded keys).
    * ``w = softmax_j(energy)``; ``out[b,i,h*dv:(h+1)*dv] = sum_j w[b,h,i,j] v_h[b,j]``.

    :param x: float ``[B, T, n_in]`` or, for sparse input, int ``[B, T]`` (indices into the
        rows of QKV)
    :param lengths: int ``[B]``
    :param QKV: float ``[n_in, 2*Dk + Dv]``
    :param num_heads: H
    :param total_key_dim: Dk (divisible by H)
    :param n_out: Dv (divisible by H)
    :param key_shift: optional float ``[T, T, dk]`` (no batch axis, shared by all heads)
    :param left_only: ``attention_left_only``
    :param sparse: None = detect from the dtype of ``x`` (integer -> sparse); or force True/False
    :param return_weights: also return the attention weights
    :return: float64 ``[B, T, Dv]``; with ``return_weights`` a tuple ``(out, w)`` with
        ``w`` float64 ``[B, H, T, T]`` (masked keys exactly 0).
    """
    y = _project_qkv(x, QKV, sparse)
    B, T = y.shape[:2]
    lengths = _lengths(lengths, B)
    q, k, v = split_qkv_heads(y, num_heads, total_key_dim, n_out)
    dk = q.shape[-1]
    q = q * (dk**-0.5)
    if left_only:
        mask = (np.arange(T)[None, :] <= np.arange(T)[:, None])[None, None]  # [1,1,Tq,Tk]
    else:
        mask = valid_mask(lengths, T)[:, None, None, :]  # [B,1,1,Tk]
    out, w = _attend(q, k, v, mask, key_shift)
    return (out, w) if return_weights else out


def self_attention_with_state(
    x,
    lengths,
    QKV,
    num_heads,
    total_key_dim,
    n_out,
    prev_k=None,
    prev_v=None,
    state_var_lengths=None,
    key_shift=None,
    left_only=True,
    restrict_state_to_last_seq=False,
    sparse=None,
    return_weights=False,
):
    """Self-attention that also attends to keys/values carried over from earlier calls.

    This models ``initial_state`` / ``keep_over_epoch`` / ``restrict_state_to_last_seq`` /
    ``state_var_lengths`` (streaming a long input in chunks). Interpretation (semantics.md is
    terse here; this is what the reference implements):

    * The state is the **per-head, unscaled** keys and values of earlier frames:
      ``prev_k [B, H, Tp, dk]``, ``prev_v [B, H, Tp, dv]`` (exactly the ``k_h``/``v_h`` of
      :func:`split_qkv_heads`). ``prev_k=None`` means no carried keys (``Tp = 0``); the
      ``initial_state: zeros`` case with a non-empty state is simply ``prev_k = zeros``.
    * The key/value sequence attended to is ``concat([prev, new], time)``, ``Tk = Tp + T``.
      Key index ``Tp + j`` is the new frame ``j``; query ``i`` is at absolute position
      ``Tp + i``.
    * Carried key ``p`` (``0 <= p < Tp``) is valid iff ``p < state_var_lengths[b]``
      (all ``Tp`` valid when ``state_var_lengths`` is None). The valid carried keys are the
      *first* ``state_var_lengths[b]`` ones (left-aligned), the rest is masked.
    * New keys: ``left_only=True`` masks new key ``j > i`` (the causal mask shifted by ``Tp``:
      concatenated key index ``> i + Tp``); ``left_only=False`` masks new keys ``j >= len[b]``.
      Carried keys are never causally masked (they are all in the past).
    * ``key_shift``, if given, must have shape ``[T, Tp + T, dk]`` (queries x concatenated keys).
      :func:`relative_positional_encoding` with its default ``query_offset = Tk - Tq`` produces
      exactly that alignment.
    * Next state: without ``restrict_state_to_last_seq`` the carried (valid) keys followed by
      the ``len[b]`` valid new keys, **compacted per sequence** (left-aligned, zero padding),
      shape ``[B, H, Tp + T, dk]`` with next lengths ``n_carried[b] + len[b]``. With
      ``restrict_state_to_last_seq`` only the keys/values of this call: ``[B, H, T, dk]``
      (padded frames zeroed) with next lengths ``len[b]``.
      Feeding ``(next_k, next_v, next_lengths)`` back as ``(prev_k, prev_v,
      state_var_lengths)`` streams a long sequence chunk by chunk, and with ``left_only`` the
      outputs equal the full-sequence causal layer frame by frame.

    :param x: float ``[B, T, n_in]`` or int ``[B, T]`` (sparse)
    :param lengths: int ``[B]`` valid frames of this chunk
    :param QKV: float ``[n_in, 2*Dk + Dv]``
    :param prev_k: None or float ``[B, H, Tp, dk]``
    :param prev_v: None or float ``[B, H, Tp, dv]``
    :param state_var_lengths: None or int ``[B]`` (values in ``[0, Tp]``)
    :param key_shift: None or float ``[T, Tp + T, dk]``
    :param left_only: ``attention_left_only`` (default True, the usual streaming setup)
    :param restrict_state_to_last_seq: see above
    :return: ``(out [B, T, Dv], next_k, next_v, next_lengths [B])``; with ``return_weights``
        additionally ``w [B, H, T, Tp + T]`` appended.
    """
    y = _project_qkv(x, QKV, sparse)
    B, T = y.shape[:2]
    lengths = _lengths(lengths, B)
    q, k, v = split_qkv_heads(y, num_heads, total_key_dim, n_out)
    H, dk, dv = q.shape[1], q.shape[3], v.shape[3]
    if prev_k is None:
        if prev_v is not None:
            raise ValueError("prev_k and prev_v must be given together")
        prev_k = np.zeros((B, H, 0, dk))
        prev_v = np.zeros((B, H, 0, dv))
    prev_k, prev_v = _f64(prev_k), _f64(prev_v)
    Tp = prev_k.shape[2]
    if prev_k.shape != (B, H, Tp, dk) or prev_v.shape != (B, H, Tp, dv):
        raise ValueError("prev_k/prev_v must be [B,H,Tp,dk]/[B,H,Tp,dv]")
    if state_var_lengths is None:
        n_carried = np.full((B,), Tp, dtype=np.int64)
    else:
        n_carried = _lengths(state_var_lengths, B)
        if np.any(n_carried < 0) or np.any(n_carried > Tp):
            raise ValueError("state_var_lengths must be in [0, Tp]")

    q = q * (dk**-0.5)
    k_all = np.concatenate([prev_k, k], axis=2)
    v_all = np.concatenate([prev_v, v], axis=2)
    carried_mask = valid_mask(n_carried, Tp)[:, None, :]  # [B,1,Tp]
    carried_mask = np.broadcast_to(carried_mask, (B, T, Tp))
    if left_only:
        new_mask = np.arange(T)[None, :] <= np.arange(T)[:, None]  # [Tq,Tk_new]
        new_mask = np.broadcast_to(new_mask[None], (B, T, T))
    else:
        new_mask = np.broadcast_to(valid_mask(lengths, T)[:, None, :], (B, T, T))
    mask = np.concatenate([carried_mask, new_mask], axis=2)[:, None]  # [B,1,Tq,Tk]
    out, w = _attend(q, k_all, v_all, mask, key_shift)

    new_valid = valid_mask(lengths, T)  # [B,T]
    if restrict_state_to_last_seq:
        next_k = np.where(new_valid[:, None, :, None], k, 0.0)
        next_v = np.where(new_valid[:, None, :, None], v, 0.0)
        next_len = lengths.copy()
    else:
        next_k = np.zeros((B, H, Tp + T, dk))
        next_v = np.zeros((B, H, Tp + T, dv))
        next_len = n_carried + lengths
        for b in range(B):
            nc, nl = n_carried[b], lengths[b]
            next_k[b, :, :nc] = prev_k[b, :, :nc]
            next_v[b, :, :nc] = prev_v[b, :, :nc]
            next_k[b, :, nc : nc + nl] = k[b, :, :nl]
            next_v[b, :, nc : nc + nl] = v[b, :, :nl]
    res = (out, next_k, next_v, next_len)
    return res + (w,) if return_weights else res


# ---------------------------------------------------------------------------------------------
# relative positional encoding
# ---------------------------------------------------------------------------------------------


def fixed_relative_encoding_matrix(clipping, n_out, min_timescale=1.0, max_timescale=1.0e4):
    """The fixed (``fixed: true``) sinusoidal encoding matrix ``[2c+1, n_out]``.

    FORMULA (the TF builder must follow this exactly). Row ``p = 0 .. 2c`` encodes the
    *shifted* clipped relative distance ``p = clip(j - i, -c, c) + c`` (i.e. the row index,
    always ``>= 0``, exactly like the trainable ``encoding_matrix`` is indexed). Layout is the
    tensor2tensor / RETURNN ``get_positional_encoding`` one, **first half sin, second half cos**::

        n_ts    = n_out // 2                                   # number of timescales
        log_inc = log(max_timescale / min_timescale) / max(n_ts - 1, 1)
        inv[k]  = min_timescale * exp(-k * log_inc)            # k = 0 .. n_ts-1
        M[p, k]        = sin(p * inv[k])                       # columns 0 .. n_ts-1
        M[p, n_ts + k] = cos(p * inv[k])                       # columns n_ts .. 2*n_ts-1
        # odd n_out: one extra last column of zeros

    with ``min_timescale = 1``, ``max_timescale = 1e4``.

    :param clipping: c (int >= 0)
    :param n_out: number of features
    :return: float64 ``[2c+1, n_out]``
    """
    c, n = int(clipping), int(n_out)
    pos = np.arange(2 * c + 1, dtype=np.float64)
    n_ts = n // 2
    log_inc = math.log(float(max_timescale) / float(min_timescale)) / max(n_ts - 1, 1)
    inv = float(min_timescale) * np.exp(-np.arange(n_ts, dtype=np.float64) * log_inc)
    scaled = pos[:, None] * inv[None, :]
    m = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)
    if n % 2:
        m = np.concatenate([m, np.zeros((2 * c + 1, 1))], axis=1)
    return m


def relative_positional_encoding(
    T_q, T_k, encoding_matrix=None, clipping=16, fixed=False, n_out=None, query_offset=None
):
    """Relative positional encoding (the usual ``key_shift`` of self-attention).

    ``out[i, j] = M[clip(j - (i + query_offset), -c, c) + c]`` where ``M`` is
    ``encoding_matrix`` (trainable variable ``[2c+1, n_out]``) or, with ``fixed=True``,
    :func:`fixed_relative_encoding_matrix` ``(c, n_out)``.

    ``query_offset`` is the absolute position of query 0 relative to key 0; by default
    ``T_k - T_q``: 0 for the full sequence (``T_q == T_k``, the semantics.md formula), ``t``
    inside a rec unit at step t (``T_q = 1, T_k = t+1``, so ``i = t``), and ``Tp`` for a
    streaming chunk attending to ``Tp`` carried keys.

    :param T_q: number of queries
    :param T_k: number of keys
    :param encoding_matrix: float ``[2c+1, n_out]`` (ignored / may be None when ``fixed``)
    :param clipping: c
    :param fixed: use the sinusoid matrix
    :param n_out: feature dim, required with ``fixed``
    :param query_offset: see above
    :return: float64 ``[T_q, T_k, n_out]`` (no batch axis)
    """
    c = int(clipping)
    if fixed:
        if n_out is None:
            if encoding_matrix is None:
                raise ValueError("fixed=True needs n_out")
            n_out = _f64(encoding_matrix).shape[1]
        M = fixed_relative_encoding_matrix(c, n_out)
    else:
        M = _f64(encoding_matrix)
        if M.shape[0] != 2 * c + 1:
            raise ValueError(f"encoding_matrix must have 2*clipping+1 = {2 * c + 1} rows")
    if query_offset is None:
        query_offset = T_k - T_q
    i = np.arange(T_q)[:, None] + int(query_offset)
    j = np.arange(T_k)[None, :]
    return M[np.clip(j - i, -c, c) + c]


# ---------------------------------------------------------------------------------------------
# softmax over spatial / generic attention
# ---------------------------------------------------------------------------------------------


def softmax_over_spatial(
    energy,
    lengths,
    axis=1,
    energy_factor=None,
    use_time_mask=True,
    window_start=None,
    window_size=None,
):
    """Softmax over a time axis with masking (RETURNN ``softmax_over_spatial``).

    Order of operations: mask frames ``t >= len[b]`` (and, with a window, frames outside
    ``[window_start[b], window_start[b] + window_size)``), then multiply by ``energy_factor``,
    then softmax over ``axis``. Masked entries come out exactly 0.

    :param energy: float, batch-major ``[B, ...]`` with the time axis at ``axis`` (e.g.
        ``[B, Te]``, ``[B, Te, H]``, ``[B, Td, Te]`` with ``axis=2``)
    :param lengths: int ``[B]`` lengths of that time axis
    :param axis: the time axis (default 1); must not be 0
    :param energy_factor: optional float scale
    :param use_time_mask: False disables the length mask (the window mask still applies)
    :param window_start: optional int ``[B]`` (per sequence; floats are truncated to int)
    :param window_size: int, required with ``window_start``
    :return: float64, shape of ``energy``
    """
    e = _f64(energy)
    axis = axis % e.ndim
    if axis == 0:
        raise ValueError("axis 0 is the batch axis")
    B, T = e.shape[0], e.shape[axis]
    shape = [1] * e.ndim
    shape[0], shape[axis] = B, T
    mask = np.ones((B, T), dtype=bool)
    if use_time_mask:
        mask &= valid_mask(_lengths(lengths, B), T)
    if window_start is not None:
        if window_size is None:
            raise ValueError("window_start needs window_size")
        ws = np.asarray(window_start)
        if ws.ndim == 2 and ws.shape[1] == 1:
            ws = ws[:, 0]
        ws = ws.astype(np.int64).reshape(B)
        t = np.arange(T)[None, :]
        mask &= (t >= ws[:, None]) & (t < ws[:, None] + int(window_size))
    if energy_factor is not None:
        e = e * float(energy_factor)
    return masked_softmax(e, mask.reshape(shape), axis=axis)


def generic_attention(weights, base, has_decoder_axis=None, auto_squeeze=True):
    """Weighted sum of ``base`` over its time axis (RETURNN ``generic_attention``); no masking.

    ``out[b, (Td), (extra...), f] = sum_j weights[b, (Td), j, (extra...)] * base[b, j, (extra...), f]``

    Supported axis orders (``E`` = any number of extra axes, e.g. heads ``H``):

    * ``weights [B, Te, E...]``,      ``base [B, Te, E..., V]`` -> ``[B, E..., V]``
      (e.g. ``[B,Te]`` x ``[B,Te,V]`` -> ``[B,V]``; ``[B,Te,H]`` x ``[B,Te,H,V]`` -> ``[B,H,V]``)
    * ``weights [B, Td, Te, E...]``,  ``base [B, Te, E..., V]`` -> ``[B, Td, E..., V]``
      (decoder time axis directly after batch; e.g. ``[B,Td,Te]`` -> ``[B,Td,V]``,
      ``[B,Td,Te,H]`` x ``[B,Te,H,V]`` -> ``[B,Td,H,V]``)

    Inference when ``has_decoder_axis`` is None: decoder form if
    ``weights.shape[2:] == base.shape[1:-1]`` and ``weights.ndim == base.ndim``; otherwise the
    plain form. With ``auto_squeeze``, a trailing weight
    axis of size 1 that matches nothing (e.g. ``[B, Te, 1]`` with ``base [B, Te, V]``, or
    ``[B, Td, Te, 1]``) is squeezed away first (consistent with ``has_decoder_axis`` if given). Pass ``has_decoder_axis`` to disambiguate
    degenerate shapes (e.g. ``Te == 1``).

    :return: float64
    """
    w, base = _f64(weights), _f64(base)
    n_extra = base.ndim - 3
    if n_extra < 0:
        raise ValueError("base must be [B, Te, (extra...), V]")
    inner = tuple(base.shape[1:-1])  # (Te, extra...)
    if auto_squeeze and w.ndim >= 2 and w.shape[-1] == 1:
        plain_sq = w.ndim == base.ndim and tuple(w.shape[1:-1]) == inner
        dec_sq = w.ndim == base.ndim + 1 and tuple(w.shape[2:-1]) == inner
        dec_ok = w.ndim == base.ndim and tuple(w.shape[2:]) == inner
        if has_decoder_axis is False and plain_sq:
            w = w[..., 0]
        elif has_decoder_axis is True and dec_sq:
            w = w[..., 0]
        elif has_decoder_axis is None and (dec_sq or (plain_sq and not dec_ok)):
            w = w[..., 0]
    if has_decoder_axis is None:
        has_decoder_axis = w.ndim == base.ndim and tuple(w.shape[2:]) == inner
    expect = inner if not has_decoder_axis else (w.shape[1],) + inner
    if tuple(w.shape[1:]) != tuple(expect) or w.shape[0] != base.shape[0]:
        raise ValueError(
            f"weights shape {w.shape!r} does not fit base {base.shape!r} "
            f"(decoder axis: {has_decoder_axis})"
        )
    letters = "cdefghiklmnopqrsu"
    extra = letters[:n_extra]
    if has_decoder_axis:
        return np.einsum(f"btj{extra},bj{extra}v->bt{extra}v", w, base)
    return np.einsum(f"bj{extra},bj{extra}v->b{extra}v", w, base)


# ---------------------------------------------------------------------------------------------
# per-step attention layers (dot / concat / gauss window)
# ---------------------------------------------------------------------------------------------


def _base_mask(base_len, B, Te):
    return valid_mask(_lengths(base_len, B), Te)


def dot_attention(s, base_ctx, base, base_len, energy_factor=None, return_weights=False):
    """Dot-product attention (deprecated RETURNN ``dot_attention``), no variables.

    ``e[b,j] = base_ctx[b,j] . s[b]`` (times ``energy_factor``), keys ``j >= base_len[b]``
    masked, ``w = softmax_j(e)``, ``out[b] = sum_j w[b,j] base[b,j]``.
    With a decoder time axis each decoder frame is computed independently.

    :param s: float ``[B, D]`` or ``[B, Td, D]``
    :param base_ctx: float ``[B, Te, D]``
    :param base: float ``[B, Te, V]``
    :param base_len: int ``[B]``
    :param energy_factor: optional float
    :return: float64 ``[B, V]`` (or ``[B, Td, V]``); with ``return_weights`` also
        ``w [B, Te]`` (or ``[B, Td, Te]``)
    """
    s, base_ctx, base = _f64(s), _f64(base_ctx), _f64(base)
    B, Te, D = base_ctx.shape
    if s.shape[-1] != D:
        raise ValueError(f"source dim {s.shape[-1]} != base_ctx dim {D}")
    dec = s.ndim == 3
    s3 = s if dec else s[:, None, :]  # [B,Td,D]
    e = np.einsum("bjd,btd->btj", base_ctx, s3)  # [B,Td,Te]
    w = softmax_over_spatial(e, base_len, axis=2, energy_factor=energy_factor)
    out = np.einsum("btj,bjv->btv", w, base)
    if not dec:
        out, w = out[:, 0], w[:, 0]
    return (out, w) if return_weights else out


def concat_attention(s, base_ctx, base, base_len, v, return_weights=False):
    """Additive / tanh-concat attention (deprecated RETURNN ``concat_attention``).

    ``e[b,j] = sum_d v[d] * tanh(base_ctx[b,j,d] + s[b,d])``, keys ``j >= base_len[b]``
    masked, ``w = softmax_j(e)``, ``out[b] = sum_j w[b,j] base[b,j]``. One variable ``v: [D]``,
    no bias, no projection. With a decoder time axis each decoder frame is independent.

    :param s: float ``[B, D]`` or ``[B, Td, D]``
    :param base_ctx: float ``[B, Te, D]``
    :param base: float ``[B, Te, V]``
    :param base_len: int ``[B]``
    :param v: float ``[D]``
    :return: float64 ``[B, V]`` (or ``[B, Td, V]``); with ``return_weights`` also the weights
    """
    s, base_ctx, base, v = _f64(s), _f64(base_ctx), _f64(base), _f64(v).reshape(-1)
    B, Te, D = base_ctx.shape
    if s.shape[-1] != D or v.shape != (D,):
        raise ValueError("dimension mismatch")
    dec = s.ndim == 3
    s3 = s if dec else s[:, None, :]
    h = np.tanh(base_ctx[:, None, :, :] + s3[:, :, None, :])  # [B,Td,Te,D]
    e = h @ v  # [B,Td,Te]
    w = softmax_over_spatial(e, base_len, axis=2)
    out = np.einsum("btj,bjv->btv", w, base)
    if not dec:
        out, w = out[:, 0], w[:, 0]
    return (out, w) if return_weights else out


def gauss_window_attention(
    t,
    base,
    base_len,
    window_size,
    std=1.0,
    inner_size=None,
    inner_size_step=0.5,
    has_decoder_axis=None,
    return_weights=False,
):
    """Gauss-window attention (deprecated RETURNN ``gauss_window_attention``), documented form.

    For each location ``t`` (float):

    * ``c = round(t)`` rounding **half to even** (``np.round``, like ``tf.round``:
      round(2.5) = 2, round(3.5) = 4, round(-0.5) = -0).
    * window positions ``idx_k = c - W // 2 + k``, ``k = 0 .. W-1``.
    * frame used ``g_k = min(clip(idx_k, 0, Te-1), len[b]-1)`` (positions outside the sequence
      repeat the first/last valid frame; for ``len[b] == 0`` frame 0 is used, only padding).
    * inner offsets ``o_i = (i - (I-1)/2) * inner_size_step``, ``i = 0 .. I-1`` (the
      documentation's version, NOT RETURNN's code ``i*step - I/2``); without ``inner_size``
      a single offset ``o = 0``.
    * **unnormalised** Gaussian density at the *unclipped* positions:
      ``w[k, i] = exp(-(t + o_i - idx_k)^2 / (2 std^2)) / (std * sqrt(2 pi))``.
    * ``out[b, i] = sum_k w[k, i] * base[b, g_k]``.

    :param t: float ``[B]`` or ``[B, 1]`` (one decoder step) or ``[B, Td]`` (decoder sequence,
        each frame independent). ``[B, 1]`` is treated as one step unless
        ``has_decoder_axis=True``.
    :param base: float ``[B, Te, V]``
    :param base_len: int ``[B]``
    :param window_size: W
    :param std: s
    :param inner_size: I or None
    :param inner_size_step: step
    :return: float64 ``[B, V]``, ``[B, I, V]`` with inner_size; decoder form ``[B, Td, V]`` /
        ``[B, Td, I, V]``. With ``return_weights`` also ``(w, g)``: the weights
        ``[B, (Td,) W, I]`` (I = 1 without inner_size) and frame indices ``[B, (Td,) W]``.
    """
    t, base = _f64(t), _f64(base)
    B, Te, V = base.shape
    base_len = _lengths(base_len, B)
    if t.ndim == 1:
        t = t[:, None]
        dec = False
    elif t.ndim == 2:
        dec = bool(has_decoder_axis) if has_decoder_axis is not None else t.shape[1] != 1
    else:
        raise ValueError("t must be [B], [B,1] or [B,Td]")
    W = int(window_size)
    n_inner = 1 if inner_size is None else int(inner_size)
    offs = (
        (np.arange(n_inner) - (n_inner - 1) / 2.0) * float(inner_size_step)
        if inner_size
        else np.zeros(1)
    )
    c = np.round(t)  # half to even
    idx = c[..., None] - (W // 2) + np.arange(W)  # [B,Td,W] (float, integral values)
    g = np.minimum(np.clip(idx, 0, Te - 1), (base_len - 1)[:, None, None])
    g = np.maximum(g, 0).astype(np.int64)
    diff = t[..., None, None] + offs[None, None, None, :] - idx[..., None]  # [B,Td,W,I]
    w = np.exp(-(diff**2) / (2.0 * std**2)) / (std * math.sqrt(2.0 * math.pi))
    frames = base[np.arange(B)[:, None, None], g]  # [B,Td,W,V]
    out = np.einsum("btki,btkv->btiv", w, frames)  # [B,Td,I,V]
    if inner_size is None:
        out = out[:, :, 0]
    if not dec:
        out, w, g = out[:, 0], w[:, 0], g[:, 0]
    return (out, w, g) if return_weights else out


# ---------------------------------------------------------------------------------------------
# layer norm, LSTM
# ---------------------------------------------------------------------------------------------


def layer_norm(x, scale, bias, epsilon=1e-6):
    """Layer normalisation over the last axis.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` with ``mean``/``var`` the
    population mean/variance over the last axis.

    :param x: float ``[..., F]``
    :param scale: float ``[F]``
    :param bias: float ``[F]``
    :return: float64 ``[..., F]``
    """
    x = _f64(x)
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * _f64(scale) + _f64(bias)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # == 1/(1+exp(-z)), overflow free


def lstm_sequence(x, lengths, W, b, n_out, direction=1, return_final_state=False):
    """Plain LSTM over a padded batch.

    Per frame, with ``h_{-1} = c_{-1} = 0``::

        z = concat([x_t, h_{t-1}]) @ W + b        # W: [n_in + n_out, 4*n_out], b: [4*n_out]
        i, j, f, o = split(z, 4)                  # gate order: input, new input (j), forget, output
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(j)      # forget bias 0
        h_t = sigmoid(o) * tanh(c_t)

    (rows ``0 .. n_in-1`` of ``W`` act on ``x_t``, rows ``n_in ..`` on ``h_{t-1}``;
    columns ``[0,n)``=i, ``[n,2n)``=j, ``[2n,3n)``=f, ``[3n,4n)``=o.)
    At padded frames (``t >= len[b]``) the state is not updated and the output is 0.
    ``direction=-1`` processes each sequence reversed *within its own length*: frames
    ``len[b]-1, ..., 0``; the output at frame ``t`` is the hidden state after consuming
    frames ``len[b]-1 .. t`` and is stored at position ``t`` (not reversed back).

    :param x: float ``[B, T, n_in]``
    :param lengths: int ``[B]``
    :param W: float ``[n_in + n_out, 4*n_out]``
    :param b: float ``[4*n_out]`` (None = zeros)
    :param n_out: n
    :param direction: 1 or -1
    :param return_final_state: also return ``(h, c)``, each ``[B, n_out]``, the state after
        the last valid frame processed (zeros for empty sequences)
    :return: float64 ``[B, T, n_out]`` (zeros at padded frames)
    """
    x, W = _f64(x), _f64(W)
    B, T, n_in = x.shape
    n = int(n_out)
    if W.shape != (n_in + n, 4 * n):
        raise ValueError(f"W must be [n_in + n_out, 4*n_out] = {(n_in + n, 4 * n)!r}")
    b = np.zeros(4 * n) if b is None else _f64(b)
    lengths = _lengths(lengths, B)
    if direction not in (1, -1):
        raise ValueError("direction must be 1 or -1")
    h = np.zeros((B, n))
    c = np.zeros((B, n))
    out = np.zeros((B, T, n))
    for step in range(T):
        if direction == 1:
            pos = np.full((B,), step)
        else:
            pos = lengths - 1 - step  # position inside each sequence; < 0 once finished
        active = (pos >= 0) & (pos < lengths)
        xt = x[np.arange(B), np.clip(pos, 0, T - 1)]  # [B,n_in]
        z = np.concatenate([xt, h], axis=1) @ W + b
        zi, zj, zf, zo = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
        c_new = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zj)
        h_new = _sigmoid(zo) * np.tanh(c_new)
        a = active[:, None]
        c = np.where(a, c_new, c)
        h = np.where(a, h_new, h)
        for bb in np.nonzero(active)[0]:
            out[bb, pos[bb]] = h[bb]
    if return_final_state:
        return out, (h, c)
    return out


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------


def _softplus(x):
    return np.logaddexp(0.0, x)


def _log_softmax(x):
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _gelu_tanh(x):
    # RETURNN's `gelu`: the tanh approximation
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


#: the activation functions of configs by base name (``activation: 2*sigmoid`` is 2 times
#: ``sigmoid``), on float64; softmax and log_softmax over the last axis
ACTIVATIONS = {
    "identity": lambda x: x,
    "linear": lambda x: x,
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),  # TensorFlow's default slope
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "gelu": _gelu_tanh,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,  # Keras 3: relu6(x + 3) / 6
    "softmax": lambda x: np.exp(_log_softmax(x)),
    "log_softmax": _log_softmax,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "abs": np.abs,
    "square": np.square,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
}


def activation(name, x):
    """The activation ``name`` of a config (``tanh``, ``2*sigmoid``, ``0.5*relu``; None: the
    identity) applied to ``x``, in float64."""
    scale, base = 1.0, "identity" if name is None else str(name).strip()
    if "*" in base:
        factor, base = base.split("*", 1)
        scale, base = float(factor), base.strip()
    with np.errstate(all="ignore"):
        return scale * ACTIVATIONS[base](_f64(x))
