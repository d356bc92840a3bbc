"""Tests of the NumPy reference (``tests/numpy_reference.py``) against independent expectations.

Hand-computed tiny cases, naive loop implementations written straight from semantics.md, the
equivalences stated there, padding invariance, causality, head decomposition and exact zeros.
"""

import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy_reference as ref  # noqa: E402

E = math.e


def _rng(seed=0):
    return np.random.RandomState(seed)


def _valid(lengths, T):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _assert_valid_close(a, b, lengths, atol=1e-12):
    """Compare [B, T, ...] arrays on valid frames only."""
    m = _valid(lengths, a.shape[1])
    np.testing.assert_allclose(a[m], b[m], atol=atol, rtol=0)


def _fill_padding(x, lengths, rng):
    """Copy of x [B,T,...] with random values (not zeros) in the padded frames."""
    x = np.array(x, dtype=np.float64, copy=True)
    m = ~_valid(lengths, x.shape[1])
    x[m] = rng.randn(*x[m].shape) * 10.0
    return x


# ------------------------------------------------------------------------------------------
# naive loop implementations (independent of the vectorised reference)
# ------------------------------------------------------------------------------------------


def naive_self_attention(x, lengths, QKV, H, Dk, Dv, key_shift=None, left_only=False):
    x = np.asarray(x, dtype=np.float64)
    B, T, _ = x.shape
    dk, dv = Dk // H, Dv // H
    P = 2 * dk + dv
    out = np.zeros((B, T, Dv))
    for b in range(B):
        y = x[b] @ QKV
        for h in range(H):
            blk = y[:, h * P : (h + 1) * P]
            q = blk[:, :dk] / math.sqrt(dk)
            k = blk[:, dk : 2 * dk]
            v = blk[:, 2 * dk :]
            for i in range(T):
                keys = [j for j in range(T) if (j <= i if left_only else j < lengths[b])]
                if not keys:
                    continue
                en = []
                for j in keys:
                    e = sum(q[i, d] * k[j, d] for d in range(dk))
                    if key_shift is not None:
                        e += sum(q[i, d] * key_shift[i, j, d] for d in range(dk))
                    en.append(e)
                mx = max(en)
                ws = [math.exp(e - mx) for e in en]
                z = sum(ws)
                for jj, j in enumerate(keys):
                    out[b, i, h * dv : (h + 1) * dv] += ws[jj] / z * v[j]
    return out


# ------------------------------------------------------------------------------------------
# linear / softmax
# ------------------------------------------------------------------------------------------


def test_linear_hand():
    x = np.array([[1.0, 2.0]])
    W = np.array([[1.0, 0.0, 2.0], [3.0, -1.0, 0.5]])
    b = np.array([0.5, 0.0, -1.0])
    # [1*1+2*3+0.5, 1*0+2*-1, 1*2+2*0.5-1]
    np.testing.assert_allclose(ref.linear(x, W, b), [[7.5, -2.0, 2.0]])
    np.testing.assert_allclose(ref.linear(x, W), [[7.0, -2.0, 3.0]])


def test_linear_sparse_equals_one_hot():
    rng = _rng(1)
    W, b = rng.randn(5, 3), rng.randn(3)
    idx = np.array([[0, 4, 2], [1, 1, 3]])
    one_hot = np.eye(5)[idx]
    np.testing.assert_allclose(ref.linear_sparse(idx, W, b), ref.linear(one_hot, W, b), atol=1e-14)
    np.testing.assert_array_equal(ref.linear_sparse(np.array([3]), W), W[[3]])
    with pytest.raises(IndexError):
        ref.linear_sparse(np.array([5]), W)


def test_softmax_hand_and_stable():
    # softmax([0, ln 3]) = [1/4, 3/4]
    np.testing.assert_allclose(ref.softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75])
    big = np.array([1000.0, 1000.0 + math.log(3.0)])
    np.testing.assert_allclose(ref.softmax(big), [0.25, 0.75])
    x = _rng(2).randn(3, 4, 5)
    s = ref.softmax(x, axis=1)
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    assert s.dtype == np.float64


def test_masked_softmax_exact_zeros():
    e = np.array([[1.0, 2.0, np.nan, np.inf], [3.0, 0.0, 1.0, 2.0]])
    m = np.array([[True, True, False, False], [False, False, False, False]])
    w = ref.masked_softmax(e, m, axis=-1)
    assert w[0, 2] == 0.0 and w[0, 3] == 0.0
    np.testing.assert_allclose(w[0, :2], [1 / (1 + E), E / (1 + E)])
    # fully masked row -> zeros, not NaN
    assert np.all(w[1] == 0.0)
    assert np.all(np.isfinite(w))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_masked_softmax_property(n, seed):
    rng = _rng(seed % (2**31))
    e = rng.randn(3, n) * 30
    m = rng.rand(3, n) > 0.4
    w = ref.masked_softmax(e, m, axis=1)
    assert np.all(w[~m] == 0.0)
    for r in range(3):
        if m[r].any():
            np.testing.assert_allclose(w[r].sum(), 1.0)
            np.testing.assert_allclose(w[r, m[r]], ref.softmax(e[r, m[r]]))
        else:
            assert np.all(w[r] == 0.0)


# ------------------------------------------------------------------------------------------
# self attention
# ------------------------------------------------------------------------------------------


def test_self_attention_hand_one_head_T2():
    # n_in = 1, H = 1, Dk = Dv = 1, QKV = [[1, 1, 1]]  ->  q = k = v = x, scale dk**-0.5 = 1.
    # x = [1, 2]: energy[i, j] = x_i * x_j = [[1, 2], [2, 4]]
    #   out0 = (1*e^1 + 2*e^2) / (e^1 + e^2) = (1 + 2e) / (1 + e)
    #   out1 = (1*e^2 + 2*e^4) / (e^2 + e^4) = (1 + 2e^2) / (1 + e^2)
    x = np.array([[[1.0], [2.0]]])
    QKV = np.array([[1.0, 1.0, 1.0]])
    out = ref.self_attention(x, [2], QKV, 1, 1, 1)
    np.testing.assert_allclose(out[0, :, 0], [(1 + 2 * E) / (1 + E), (1 + 2 * E**2) / (1 + E**2)])
    # causal: frame 0 only sees itself -> 1
    out = ref.self_attention(x, [2], QKV, 1, 1, 1, left_only=True)
    np.testing.assert_allclose(out[0, :, 0], [1.0, (1 + 2 * E**2) / (1 + E**2)])
    # length 1, non-causal: both queries see only key 0 -> v0 = 1
    out = ref.self_attention(x, [1], QKV, 1, 1, 1)
    np.testing.assert_allclose(out[0, 0, 0], 1.0)


def test_self_attention_hand_scaling():
    # Dk = 4 (H = 1): q-columns and k-columns all ones -> q = x*[1,1,1,1]*4**-0.5, k = x*[1,1,1,1]
    # energy = 0.5 * 4 * x_i x_j = 2 x_i x_j. x = [0, 1]: energy row 1 = [0, 2]
    # out1 = (0*1 + 1*e^2) / (1 + e^2);  row 0 = [0, 0] -> out0 = 0.5
    x = np.array([[[0.0], [1.0]]])
    QKV = np.ones((1, 9))
    out = ref.self_attention(x, [2], QKV, 1, 4, 1)
    np.testing.assert_allclose(out[0, :, 0], [0.5, E**2 / (1 + E**2)])


def test_self_attention_hand_key_shift():
    # q = k = v = x, dk = 1, x = [1, 2]; key_shift[i, j] = [s_ij] adds q_i * s_ij.
    # key_shift = [[0, 1], [-1, 0]] -> energy = [[1, 2 + 1], [2 - 2, 4]] = [[1, 3], [0, 4]]
    x = np.array([[[1.0], [2.0]]])
    QKV = np.array([[1.0, 1.0, 1.0]])
    ks = np.array([[[0.0], [1.0]], [[-1.0], [0.0]]])
    out = ref.self_attention(x, [2], QKV, 1, 1, 1, key_shift=ks)
    np.testing.assert_allclose(
        out[0, :, 0], [(E + 2 * E**3) / (E + E**3), (1 + 2 * E**4) / (1 + E**4)]
    )


def test_key_shift_uses_scaled_q():
    # dk = 4, q-columns ones -> scaled q = 0.5 * x * [1,1,1,1]; k-columns zero -> q.k = 0;
    # v-column one -> v = x = 1 for both frames.
    # key_shift[i, j] = j * [1,1,1,1] -> energy[i, j] = 0.5 * 4 * x_i * j = 2 j  (x_i = 1)
    # so the weights of each query are [1, e^2] / (1 + e^2); with an unscaled q it would be e^4.
    x = np.array([[[1.0], [1.0]]])
    QKV = np.zeros((1, 9))
    QKV[0, :4] = 1.0
    QKV[0, 8] = 1.0
    ks = np.zeros((2, 2, 4))
    ks[:, 1, :] = 1.0
    out, w = ref.self_attention(x, [2], QKV, 1, 4, 1, key_shift=ks, return_weights=True)
    np.testing.assert_allclose(w[0, 0, 0], [1 / (1 + E**2), E**2 / (1 + E**2)])
    np.testing.assert_allclose(w[0, 0, 1], [1 / (1 + E**2), E**2 / (1 + E**2)])
    np.testing.assert_allclose(out[0, :, 0], 1.0)


def test_float32_inputs_give_float64():
    rng = _rng(24)
    x = rng.randn(2, 3, 4).astype(np.float32)
    QKV = rng.randn(4, 6).astype(np.float32)
    out = ref.self_attention(x, np.array([3, 2], dtype=np.int32), QKV, 2, 2, 2)
    assert out.dtype == np.float64
    exp = ref.self_attention(x.astype(np.float64), [3, 2], QKV.astype(np.float64), 2, 2, 2)
    np.testing.assert_array_equal(out, exp)


@pytest.mark.parametrize("left_only", [False, True])
@pytest.mark.parametrize("use_key_shift", [False, True])
def test_self_attention_matches_naive(left_only, use_key_shift):
    rng = _rng(3)
    B, T, n_in, H, Dk, Dv = 3, 5, 4, 2, 6, 4
    lengths = np.array([5, 3, 1])
    x = rng.randn(B, T, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    ks = rng.randn(T, T, Dk // H) if use_key_shift else None
    out = ref.self_attention(x, lengths, QKV, H, Dk, Dv, key_shift=ks, left_only=left_only)
    exp = naive_self_attention(x, lengths, QKV, H, Dk, Dv, key_shift=ks, left_only=left_only)
    assert out.shape == (B, T, Dv)
    _assert_valid_close(out, exp, lengths, atol=1e-12)


def test_self_attention_column_layout_is_per_head_first():
    # H = 2, dk = 1, dv = 1: columns [q0 k0 v0 | q1 k1 v1]. Give head 1 a value column of 10
    # and head 0 a value column of 1; with zero q/k all weights are uniform over valid keys.
    x = np.array([[[1.0], [3.0]]])
    QKV = np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 10.0]])
    out = ref.self_attention(x, [2], QKV, 2, 2, 2)
    # head 0: mean of [1, 3] = 2; head 1: mean of [10, 30] = 20
    np.testing.assert_allclose(out[0], [[2.0, 20.0], [2.0, 20.0]])


def test_multi_head_equals_per_head_slices():
    rng = _rng(4)
    B, T, n_in, H, Dk, Dv = 2, 6, 3, 3, 6, 9
    dk, dv = Dk // H, Dv // H
    P = 2 * dk + dv
    lengths = np.array([6, 4])
    x = rng.randn(B, T, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    ks = rng.randn(T, T, dk)
    for left_only in (False, True):
        full = ref.self_attention(x, lengths, QKV, H, Dk, Dv, key_shift=ks, left_only=left_only)
        for h in range(H):
            single = ref.self_attention(
                x,
                lengths,
                QKV[:, h * P : (h + 1) * P],
                1,
                dk,
                dv,
                key_shift=ks,
                left_only=left_only,
            )
            _assert_valid_close(full[:, :, h * dv : (h + 1) * dv], single, lengths, atol=1e-12)


def test_self_attention_padding_invariance():
    rng = _rng(5)
    B, T, n_in, H, Dk, Dv = 3, 7, 4, 2, 4, 6
    lengths = np.array([7, 4, 2])
    x = rng.randn(B, T, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    ks = rng.randn(T, T, Dk // H)
    for left_only in (False, True):
        a = ref.self_attention(x, lengths, QKV, H, Dk, Dv, key_shift=ks, left_only=left_only)
        x2 = _fill_padding(x, lengths, rng)
        b = ref.self_attention(x2, lengths, QKV, H, Dk, Dv, key_shift=ks, left_only=left_only)
        _assert_valid_close(a, b, lengths, atol=1e-12)
        assert np.all(np.isfinite(b))


def test_self_attention_causal_dependency():
    rng = _rng(6)
    B, T, n_in, H, Dk, Dv = 2, 6, 3, 2, 4, 4
    lengths = np.array([6, 6])
    x = rng.randn(B, T, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    base = ref.self_attention(x, lengths, QKV, H, Dk, Dv, left_only=True)
    for t in range(T - 1):
        x2 = x.copy()
        x2[:, t + 1 :] = rng.randn(B, T - t - 1, n_in) * 5
        out = ref.self_attention(x2, lengths, QKV, H, Dk, Dv, left_only=True)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-12)
        assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :])
    # non-causal: frame 0 does depend on later frames
    nc = ref.self_attention(x, lengths, QKV, H, Dk, Dv)
    x2 = x.copy()
    x2[:, -1] += 3.0
    assert not np.allclose(ref.self_attention(x2, lengths, QKV, H, Dk, Dv)[:, 0], nc[:, 0])


def test_self_attention_masked_weights_exactly_zero():
    rng = _rng(7)
    B, T, n_in, H, Dk, Dv = 3, 5, 3, 2, 4, 4
    lengths = np.array([5, 2, 3])
    x = rng.randn(B, T, n_in) * 20  # large energies
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    _, w = ref.self_attention(x, lengths, QKV, H, Dk, Dv, return_weights=True)
    assert w.shape == (B, H, T, T)
    for b in range(B):
        assert np.all(w[b, :, :, lengths[b] :] == 0.0)
        np.testing.assert_allclose(w[b].sum(-1), 1.0)
    _, w = ref.self_attention(x, lengths, QKV, H, Dk, Dv, left_only=True, return_weights=True)
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.all(w[:, :, upper] == 0.0)


def test_self_attention_sparse_input():
    rng = _rng(8)
    B, T, V, H, Dk, Dv = 2, 4, 6, 2, 4, 2
    lengths = np.array([4, 3])
    idx = rng.randint(0, V, size=(B, T))
    QKV = rng.randn(V, 2 * Dk + Dv)
    sp = ref.self_attention(idx, lengths, QKV, H, Dk, Dv)
    dense = ref.self_attention(np.eye(V)[idx], lengths, QKV, H, Dk, Dv)
    _assert_valid_close(sp, dense, lengths, atol=1e-12)
    sp2 = ref.self_attention(idx, lengths, QKV, H, Dk, Dv, sparse=True)
    np.testing.assert_array_equal(sp, sp2)


# ------------------------------------------------------------------------------------------
# self attention with state (streaming)
# ------------------------------------------------------------------------------------------


def test_state_without_carried_keys_equals_plain():
    rng = _rng(9)
    B, T, n_in, H, Dk, Dv = 2, 5, 3, 2, 4, 4
    lengths = np.array([5, 3])
    x = rng.randn(B, T, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    for left_only in (True, False):
        out, nk, nv, nl = ref.self_attention_with_state(
            x, lengths, QKV, H, Dk, Dv, left_only=left_only
        )
        plain = ref.self_attention(x, lengths, QKV, H, Dk, Dv, left_only=left_only)
        _assert_valid_close(out, plain, lengths, atol=1e-12)
        np.testing.assert_array_equal(nl, lengths)
        # state holds the unscaled per-head keys of the valid frames
        _, k, v = ref.split_qkv_heads(ref.linear(x, QKV), H, Dk, Dv)
        for b in range(B):
            np.testing.assert_allclose(nk[b, :, : lengths[b]], k[b, :, : lengths[b]])
            np.testing.assert_allclose(nv[b, :, : lengths[b]], v[b, :, : lengths[b]])


def test_state_streaming_equals_full_causal():
    """Two ragged chunks streamed with state == causal attention on the joined sequences."""
    rng = _rng(10)
    B, n_in, H, Dk, Dv = 3, 3, 2, 4, 6
    T1, T2 = 4, 5
    len1 = np.array([4, 2, 3])
    len2 = np.array([5, 5, 1])
    x1 = _fill_padding(rng.randn(B, T1, n_in), len1, rng)
    x2 = _fill_padding(rng.randn(B, T2, n_in), len2, rng)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    out1, k1, v1, l1 = ref.self_attention_with_state(x1, len1, QKV, H, Dk, Dv)
    out2, k2, v2, l2 = ref.self_attention_with_state(
        x2, len2, QKV, H, Dk, Dv, prev_k=k1, prev_v=v1, state_var_lengths=l1
    )
    np.testing.assert_array_equal(l2, len1 + len2)
    for b in range(B):
        joined = np.concatenate([x1[b, : len1[b]], x2[b, : len2[b]]])[None]
        L = joined.shape[1]
        full = ref.self_attention(joined, [L], QKV, H, Dk, Dv, left_only=True)[0]
        np.testing.assert_allclose(out1[b, : len1[b]], full[: len1[b]], atol=1e-12)
        np.testing.assert_allclose(out2[b, : len2[b]], full[len1[b] :], atol=1e-12)
        # the accumulated state equals the keys of the joined sequence
        _, kf, vf = ref.split_qkv_heads(ref.linear(joined, QKV), H, Dk, Dv)
        np.testing.assert_allclose(k2[b, :, :L], kf[0], atol=1e-12)
        np.testing.assert_allclose(v2[b, :, :L], vf[0], atol=1e-12)


def test_state_with_key_shift_streaming_equals_full():
    rng = _rng(11)
    n_in, H, Dk, Dv, c = 3, 1, 2, 2, 2
    dk = Dk // H
    M = rng.randn(2 * c + 1, dk)
    x = rng.randn(1, 7, n_in)
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    full = ref.self_attention(
        x,
        [7],
        QKV,
        H,
        Dk,
        Dv,
        left_only=True,
        key_shift=ref.relative_positional_encoding(7, 7, M, c),
    )
    _, k1, v1, l1 = ref.self_attention_with_state(
        x[:, :3], [3], QKV, H, Dk, Dv, key_shift=ref.relative_positional_encoding(3, 3, M, c)
    )
    out2 = ref.self_attention_with_state(
        x[:, 3:],
        [4],
        QKV,
        H,
        Dk,
        Dv,
        prev_k=k1,
        prev_v=v1,
        key_shift=ref.relative_positional_encoding(4, 7, M, c),
    )[0]
    np.testing.assert_allclose(out2[0], full[0, 3:], atol=1e-12)


def test_state_var_lengths_masks_carried_keys():
    rng = _rng(12)
    B, n_in, H, Dk, Dv, Tp, T = 2, 3, 2, 4, 4, 4, 3
    dk, dv = Dk // H, Dv // H
    x = rng.randn(B, T, n_in)
    lengths = np.array([3, 3])
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    pk, pv = rng.randn(B, H, Tp, dk), rng.randn(B, H, Tp, dv)
    svl = np.array([1, 3])
    out, nk, nv, nl, w = ref.self_attention_with_state(
        x, lengths, QKV, H, Dk, Dv, prev_k=pk, prev_v=pv, state_var_lengths=svl, return_weights=True
    )
    assert w.shape == (B, H, T, Tp + T)
    assert np.all(w[0, :, :, 1:Tp] == 0.0) and np.all(w[0, :, :, 0] > 0)
    assert np.all(w[1, :, :, 3:Tp] == 0.0) and np.all(w[1, :, :, :3] > 0)
    # causal mask shifted by Tp: query i sees new keys j <= i only
    for i in range(T):
        assert np.all(w[:, :, i, Tp + i + 1 :] == 0.0)
        assert np.all(w[:, :, i, Tp : Tp + i + 1] > 0)
    # garbage in masked carried keys does not matter
    pk2, pv2 = pk.copy(), pv.copy()
    pk2[0, :, 1:] = 1e3
    pv2[0, :, 1:] = -1e3
    pk2[1, :, 3:] = 7.0
    out2 = ref.self_attention_with_state(
        x, lengths, QKV, H, Dk, Dv, prev_k=pk2, prev_v=pv2, state_var_lengths=svl
    )[0]
    np.testing.assert_allclose(out, out2, atol=1e-12)
    # equals the explicit computation with only the valid carried keys
    for b in range(B):
        o = ref.self_attention_with_state(
            x[b : b + 1],
            lengths[b : b + 1],
            QKV,
            H,
            Dk,
            Dv,
            prev_k=pk[b : b + 1, :, : svl[b]],
            prev_v=pv[b : b + 1, :, : svl[b]],
        )[0]
        np.testing.assert_allclose(out[b], o[0], atol=1e-12)
    # compacted next state
    np.testing.assert_array_equal(nl, svl + lengths)
    np.testing.assert_allclose(nk[0, :, :1], pk[0, :, :1])
    _, k, v = ref.split_qkv_heads(ref.linear(x, QKV), H, Dk, Dv)
    np.testing.assert_allclose(nk[0, :, 1:4], k[0])
    np.testing.assert_allclose(nv[1, :, 3:6], v[1])


def test_state_not_left_only_masks_padded_new_keys():
    rng = _rng(25)
    B, n_in, H, Dk, Dv, Tp, T = 2, 3, 1, 2, 2, 2, 4
    x = rng.randn(B, T, n_in)
    lengths = np.array([4, 2])
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    pk, pv = rng.randn(B, H, Tp, 2), rng.randn(B, H, Tp, 2)
    out, _, _, _, w = ref.self_attention_with_state(
        x, lengths, QKV, H, Dk, Dv, prev_k=pk, prev_v=pv, left_only=False, return_weights=True
    )
    assert np.all(w[1, :, :, Tp + 2 :] == 0.0)
    assert np.all(w[1, :, :, : Tp + 2] > 0.0) and np.all(w[0] > 0.0)
    out2 = ref.self_attention_with_state(
        _fill_padding(x, lengths, rng),
        lengths,
        QKV,
        H,
        Dk,
        Dv,
        prev_k=pk,
        prev_v=pv,
        left_only=False,
    )[0]
    _assert_valid_close(out, out2, lengths)


def test_state_hand_one_head():
    # q = k = v = x (dk = 1), one carried key k = v = 1; new x = [2].
    # energy = [2*1, 2*2] = [2, 4] -> out = (1*e^2 + 2*e^4) / (e^2 + e^4) = (1 + 2e^2) / (1 + e^2)
    QKV = np.array([[1.0, 1.0, 1.0]])
    out = ref.self_attention_with_state(
        np.array([[[2.0]]]),
        [1],
        QKV,
        1,
        1,
        1,
        prev_k=np.ones((1, 1, 1, 1)),
        prev_v=np.ones((1, 1, 1, 1)),
    )[0]
    np.testing.assert_allclose(out[0, 0, 0], (1 + 2 * E**2) / (1 + E**2))


def test_state_restrict_to_last_seq():
    rng = _rng(13)
    B, n_in, H, Dk, Dv = 2, 3, 1, 2, 2
    x = rng.randn(B, 3, n_in)
    lengths = np.array([3, 2])
    QKV = rng.randn(n_in, 2 * Dk + Dv)
    pk, pv = rng.randn(B, H, 2, 2), rng.randn(B, H, 2, 2)
    out_r, nk, nv, nl = ref.self_attention_with_state(
        x, lengths, QKV, H, Dk, Dv, prev_k=pk, prev_v=pv, restrict_state_to_last_seq=True
    )
    out, *_ = ref.self_attention_with_state(x, lengths, QKV, H, Dk, Dv, prev_k=pk, prev_v=pv)
    np.testing.assert_allclose(out_r, out)  # only the next state differs
    _, k, v = ref.split_qkv_heads(ref.linear(x, QKV), H, Dk, Dv)
    assert nk.shape == (B, H, 3, 2)
    np.testing.assert_array_equal(nl, lengths)
    np.testing.assert_allclose(nk[0], k[0])
    np.testing.assert_allclose(nv[1, :, :2], v[1, :, :2])
    assert np.all(nk[1, :, 2:] == 0.0)


# ------------------------------------------------------------------------------------------
# relative positional encoding
# ------------------------------------------------------------------------------------------


def test_relative_positional_encoding_hand():
    c = 1
    M = np.array([[-1.0], [0.0], [1.0]])  # rows: distance -1, 0, +1
    out = ref.relative_positional_encoding(3, 3, M, c)
    # out[i, j] = clip(j - i, -1, 1)
    exp = np.array([[0, 1, 1], [-1, 0, 1], [-1, -1, 0]], dtype=float)[..., None]
    np.testing.assert_array_equal(out, exp)
    assert out.shape == (3, 3, 1)
    # inside a rec unit at step t = 3: [1, 4, n_out] with i = 3
    step = ref.relative_positional_encoding(1, 4, M, c)
    np.testing.assert_array_equal(step[0, :, 0], [-1, -1, -1, 0])


def test_relative_positional_encoding_clipping_random():
    rng = _rng(14)
    c, n = 3, 4
    M = rng.randn(2 * c + 1, n)
    out = ref.relative_positional_encoding(9, 9, M, c)
    for i in range(9):
        for j in range(9):
            np.testing.assert_array_equal(out[i, j], M[min(max(j - i, -c), c) + c])


def test_fixed_encoding_matrix():
    c, n = 2, 6
    M = ref.fixed_relative_encoding_matrix(c, n)
    assert M.shape == (5, 6)
    # row 0 (distance -c): sin(0) = 0 first half, cos(0) = 1 second half
    np.testing.assert_allclose(M[0], [0, 0, 0, 1, 1, 1], atol=1e-15)
    # timescales 1, 100, 10000 (log_inc = ln(1e4) / 2): row p = 3
    inv = np.array([1.0, 1e-2, 1e-4])
    np.testing.assert_allclose(M[3], np.concatenate([np.sin(3 * inv), np.cos(3 * inv)]), rtol=1e-12)
    # odd n_out: zero last column
    M5 = ref.fixed_relative_encoding_matrix(c, 5)
    assert M5.shape == (5, 5) and np.all(M5[:, -1] == 0.0)
    np.testing.assert_allclose(M5[:, :4], ref.fixed_relative_encoding_matrix(c, 4))
    out = ref.relative_positional_encoding(4, 4, clipping=c, fixed=True, n_out=n)
    np.testing.assert_allclose(out, ref.relative_positional_encoding(4, 4, M, c))


# ------------------------------------------------------------------------------------------
# softmax_over_spatial / generic_attention
# ------------------------------------------------------------------------------------------


def test_softmax_over_spatial_basic():
    e = np.array([[0.0, math.log(3.0), 5.0], [1.0, 2.0, 3.0]])
    w = ref.softmax_over_spatial(e, [2, 3])
    np.testing.assert_allclose(w[0], [0.25, 0.75, 0.0])
    assert w[0, 2] == 0.0
    np.testing.assert_allclose(w[1], ref.softmax(e[1]))
    # energy_factor applied (after masking)
    w = ref.softmax_over_spatial(e, [2, 3], energy_factor=0.5)
    np.testing.assert_allclose(
        w[0], [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3)), 0.0]
    )
    # no time mask
    w = ref.softmax_over_spatial(e, [2, 3], use_time_mask=False)
    np.testing.assert_allclose(w, ref.softmax(e, axis=1))


def test_softmax_over_spatial_window_and_axis():
    rng = _rng(15)
    e = rng.randn(2, 6)
    w = ref.softmax_over_spatial(e, [6, 4], window_start=np.array([1, 2]), window_size=3)
    # seq 0: window [1, 4); seq 1: window [2, 5) intersect valid [0, 4) -> [2, 4)
    assert np.all(w[0, [0, 4, 5]] == 0.0)
    np.testing.assert_allclose(w[0, 1:4], ref.softmax(e[0, 1:4]))
    assert np.all(w[1, [0, 1, 4, 5]] == 0.0)
    np.testing.assert_allclose(w[1, 2:4], ref.softmax(e[1, 2:4]))
    # time axis 2 of [B, Td, Te]
    e3 = rng.randn(2, 3, 5)
    w3 = ref.softmax_over_spatial(e3, [5, 2], axis=2)
    assert np.all(w3[1, :, 2:] == 0.0)
    np.testing.assert_allclose(w3.sum(2), 1.0)
    # [B, Te, H] with axis 1
    e4 = rng.randn(2, 4, 3)
    w4 = ref.softmax_over_spatial(e4, [4, 1], axis=1)
    np.testing.assert_allclose(w4[1, 0], 1.0)
    assert np.all(w4[1, 1:] == 0.0)


def test_generic_attention_forms():
    rng = _rng(16)
    B, Te, Td, H, V = 2, 5, 3, 2, 4
    base = rng.randn(B, Te, V)
    w = rng.rand(B, Te)
    out = ref.generic_attention(w, base)
    exp = np.array([sum(w[b, j] * base[b, j] for j in range(Te)) for b in range(B)])
    np.testing.assert_allclose(out, exp)
    # [B, Te, 1] auto-squeezed
    np.testing.assert_allclose(ref.generic_attention(w[:, :, None], base), exp)
    # heads
    baseH = rng.randn(B, Te, H, V)
    wH = rng.rand(B, Te, H)
    out = ref.generic_attention(wH, baseH)
    assert out.shape == (B, H, V)
    for b in range(B):
        for h in range(H):
            np.testing.assert_allclose(
                out[b, h], sum(wH[b, j, h] * baseH[b, j, h] for j in range(Te))
            )
    # decoder axis
    wD = rng.rand(B, Td, Te)
    out = ref.generic_attention(wD, base)
    assert out.shape == (B, Td, V)
    for t in range(Td):
        np.testing.assert_allclose(out[:, t], ref.generic_attention(wD[:, t], base))
    wDH = rng.rand(B, Td, Te, H)
    out = ref.generic_attention(wDH, baseH)
    assert out.shape == (B, Td, H, V)
    for t in range(Td):
        np.testing.assert_allclose(out[:, t], ref.generic_attention(wDH[:, t], baseH))


def test_generic_attention_zero_weight_padding():
    rng = _rng(17)
    base = rng.randn(2, 4, 3)
    lengths = np.array([4, 2])
    w = ref.softmax_over_spatial(rng.randn(2, 4), lengths)
    a = ref.generic_attention(w, base)
    b = ref.generic_attention(w, _fill_padding(base, lengths, rng))
    np.testing.assert_allclose(a, b, atol=1e-14)


# ------------------------------------------------------------------------------------------
# dot / concat attention
# ------------------------------------------------------------------------------------------


def test_dot_attention_hand():
    # D = 1, s = [1], base_ctx = [0, ln 3, 99(padded)], base = [10, 20, 1000]
    # e = [0, ln 3], w = [1/4, 3/4] -> out = 2.5 + 15 = 17.5
    out = ref.dot_attention(
        np.array([[1.0]]),
        np.array([[[0.0], [math.log(3.0)], [99.0]]]),
        np.array([[[10.0], [20.0], [1000.0]]]),
        [2],
    )
    np.testing.assert_allclose(out, [[17.5]])


@pytest.mark.parametrize("energy_factor", [None, 0.37])
def test_dot_attention_equals_explicit_formulation(energy_factor):
    rng = _rng(18)
    B, Te, D, V, Td = 3, 6, 4, 5, 4
    lengths = np.array([6, 3, 1])
    s = rng.randn(B, D)
    ctx = _fill_padding(rng.randn(B, Te, D), lengths, rng)
    base = _fill_padding(rng.randn(B, Te, V), lengths, rng)
    out, w = ref.dot_attention(
        s, ctx, base, lengths, energy_factor=energy_factor, return_weights=True
    )
    # dot(base_ctx, s) -> softmax_over_spatial(energy_factor) -> generic_attention(base)
    energy = np.einsum("bjd,bd->bj", ctx, s)
    w2 = ref.softmax_over_spatial(energy, lengths, energy_factor=energy_factor)
    np.testing.assert_allclose(w, w2, atol=1e-14)
    np.testing.assert_allclose(out, ref.generic_attention(w2, base), atol=1e-12)
    for b in range(B):
        assert np.all(w[b, lengths[b] :] == 0.0)
    # padding invariance
    out_p = ref.dot_attention(
        s,
        _fill_padding(ctx, lengths, rng),
        _fill_padding(base, lengths, rng),
        lengths,
        energy_factor=energy_factor,
    )
    np.testing.assert_allclose(out, out_p, atol=1e-12)
    # decoder time axis: independent per frame
    sD = rng.randn(B, Td, D)
    outD = ref.dot_attention(sD, ctx, base, lengths, energy_factor=energy_factor)
    assert outD.shape == (B, Td, V)
    for t in range(Td):
        np.testing.assert_allclose(
            outD[:, t],
            ref.dot_attention(sD[:, t], ctx, base, lengths, energy_factor=energy_factor),
            atol=1e-12,
        )


def test_concat_attention_hand():
    # D = 1, v = [1]; s = [0]; base_ctx = [0, atanh(0.5)] -> e = [0, 0.5]
    # w = [1, e^0.5] / (1 + e^0.5); base = [0, 1] -> out = e^0.5 / (1 + e^0.5)
    out = ref.concat_attention(
        np.array([[0.0]]),
        np.array([[[0.0], [math.atanh(0.5)]]]),
        np.array([[[0.0], [1.0]]]),
        [2],
        np.array([1.0]),
    )
    np.testing.assert_allclose(out, [[math.exp(0.5) / (1 + math.exp(0.5))]])


def test_concat_attention_equals_explicit_formulation():
    rng = _rng(19)
    B, Te, D, V, Td = 3, 5, 4, 2, 3
    lengths = np.array([5, 2, 4])
    s = rng.randn(B, D)
    ctx = _fill_padding(rng.randn(B, Te, D), lengths, rng)
    base = _fill_padding(rng.randn(B, Te, V), lengths, rng)
    v = rng.randn(D)
    out, w = ref.concat_attention(s, ctx, base, lengths, v, return_weights=True)
    # combine(add) -> tanh -> linear(v, no bias, n_out 1) -> softmax_over_spatial -> generic_attention
    h = np.tanh(ctx + s[:, None, :])
    energy = ref.linear(h, v[:, None])  # [B, Te, 1]
    w2 = ref.softmax_over_spatial(energy, lengths, axis=1)  # [B, Te, 1]
    np.testing.assert_allclose(w, w2[..., 0], atol=1e-14)
    np.testing.assert_allclose(out, ref.generic_attention(w2, base), atol=1e-12)
    for b in range(B):
        assert np.all(w[b, lengths[b] :] == 0.0)
    sD = rng.randn(B, Td, D)
    outD = ref.concat_attention(sD, ctx, base, lengths, v)
    for t in range(Td):
        np.testing.assert_allclose(
            outD[:, t], ref.concat_attention(sD[:, t], ctx, base, lengths, v), atol=1e-12
        )


# ------------------------------------------------------------------------------------------
# gauss window attention
# ------------------------------------------------------------------------------------------


def _gauss(x, s=1.0):
    return math.exp(-x * x / (2 * s * s)) / (s * math.sqrt(2 * math.pi))


def test_gauss_round_half_to_even():
    assert np.round(2.5) == 2.0 and np.round(3.5) == 4.0
    Te = 10
    base = np.eye(Te)[None]  # one-hot frames: out[f] = total weight on frame f
    out, w, g = ref.gauss_window_attention(
        np.array([2.5]), base, [Te], window_size=3, return_weights=True
    )
    # c = 2 -> positions 1, 2, 3
    np.testing.assert_array_equal(g[0], [1, 2, 3])
    np.testing.assert_allclose(out[0, 1:4], [_gauss(1.5), _gauss(0.5), _gauss(0.5)])
    assert np.all(out[0, [0] + list(range(4, Te))] == 0.0)
    out = ref.gauss_window_attention(np.array([[3.5]]), base, [Te], window_size=3)
    # c = 4 -> positions 3, 4, 5; [B, 1] is one step -> [B, V]
    assert out.shape == (1, Te)
    np.testing.assert_allclose(out[0, 3:6], [_gauss(0.5), _gauss(0.5), _gauss(1.5)])


def test_gauss_clipping_unclipped_weights():
    # Te = 6, len = 4, t = 3.2, W = 5, std 2 -> c = 3, positions 1..5 -> frames 1,2,3,3,3
    Te, V = 6, 2
    rng = _rng(20)
    base = rng.randn(1, Te, V)
    out, w, g = ref.gauss_window_attention(
        np.array([3.2]), base, [4], 5, std=2.0, return_weights=True
    )
    np.testing.assert_array_equal(g[0], [1, 2, 3, 3, 3])
    ws = [_gauss(3.2 - p, 2.0) for p in [1, 2, 3, 4, 5]]
    np.testing.assert_allclose(w[0, :, 0], ws)
    exp = ws[0] * base[0, 1] + ws[1] * base[0, 2] + (ws[2] + ws[3] + ws[4]) * base[0, 3]
    np.testing.assert_allclose(out[0], exp)
    # left edge: t = 0.4 -> c = 0, W = 3 -> positions -1, 0, 1 -> frames 0, 0, 1
    out, w, g = ref.gauss_window_attention(np.array([0.4]), base, [4], 3, return_weights=True)
    np.testing.assert_array_equal(g[0], [0, 0, 1])
    exp = (_gauss(1.4) + _gauss(0.4)) * base[0, 0] + _gauss(0.6) * base[0, 1]
    np.testing.assert_allclose(out[0], exp)
    # padding invariance: frames >= len never used
    out2 = ref.gauss_window_attention(
        np.array([3.2]), _fill_padding(base, [4], rng), [4], 5, std=2.0
    )
    np.testing.assert_allclose(
        ref.gauss_window_attention(np.array([3.2]), base, [4], 5, std=2.0), out2
    )


def test_gauss_inner_size_positions():
    # inner_size 5, step 0.5 -> locations t-1, t-0.5, t, t+0.5, t+1 (documented example)
    Te = 12
    base = np.eye(Te)[None]
    t = 5.0
    out, w, g = ref.gauss_window_attention(
        np.array([t]),
        base,
        [Te],
        window_size=4,
        inner_size=5,
        inner_size_step=0.5,
        return_weights=True,
    )
    assert out.shape == (1, 5, Te)
    np.testing.assert_array_equal(g[0], [3, 4, 5, 6])  # c - W//2 + k
    for i, loc in enumerate([t - 1, t - 0.5, t, t + 0.5, t + 1]):
        for p in [3, 4, 5, 6]:
            np.testing.assert_allclose(out[0, i, p], _gauss(loc - p))
    # the centre column equals the no-inner_size output
    np.testing.assert_allclose(out[:, 2], ref.gauss_window_attention(np.array([t]), base, [Te], 4))
    # even inner_size: offsets (i - 1.5) * step
    _, w4, _ = ref.gauss_window_attention(
        np.array([t]), base, [Te], 1, inner_size=4, inner_size_step=1.0, return_weights=True
    )
    np.testing.assert_allclose(w4[0, 0], [_gauss(o) for o in [-1.5, -0.5, 0.5, 1.5]])


def test_gauss_decoder_axis():
    rng = _rng(21)
    B, Te, V, Td = 2, 8, 3, 4
    base = rng.randn(B, Te, V)
    lengths = np.array([8, 5])
    t = rng.rand(B, Td) * 8
    out = ref.gauss_window_attention(t, base, lengths, 3)
    assert out.shape == (B, Td, V)
    outI = ref.gauss_window_attention(t, base, lengths, 3, inner_size=3)
    assert outI.shape == (B, Td, 3, V)
    for k in range(Td):
        np.testing.assert_allclose(out[:, k], ref.gauss_window_attention(t[:, k], base, lengths, 3))
        np.testing.assert_allclose(
            outI[:, k], ref.gauss_window_attention(t[:, k], base, lengths, 3, inner_size=3)
        )
    one = ref.gauss_window_attention(t[:, :1], base, lengths, 3, has_decoder_axis=True)
    assert one.shape == (B, 1, V)


# ------------------------------------------------------------------------------------------
# layer norm, LSTM
# ------------------------------------------------------------------------------------------


def test_layer_norm():
    # x = [1, 3]: mean 2, var 1 -> [-1, 1] / sqrt(1 + eps)
    out = ref.layer_norm(
        np.array([[1.0, 3.0]]), np.array([2.0, 1.0]), np.array([0.5, 0.0]), epsilon=0.0
    )
    np.testing.assert_allclose(out, [[-1.5, 1.0]])
    x = _rng(22).randn(3, 4, 7) * 3 + 2
    y = ref.layer_norm(x, np.ones(7), np.zeros(7))
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1.0, atol=1e-5)


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_lstm_hand_one_unit():
    # n_in = 1, n_out = 1; W rows [x, h], columns [i, j, f, o]
    W = np.array([[1.0, 2.0, 0.5, -1.0], [0.3, -0.2, 0.1, 0.4]])
    b = np.array([0.0, 0.1, 0.0, 0.2])
    x = np.array([[[1.0], [-2.0], [7.0]]])
    out, (h, c) = ref.lstm_sequence(x, [2], W, b, 1, return_final_state=True)
    hh, cc, hs = 0.0, 0.0, []
    for xt in [1.0, -2.0]:
        zi, zj, zf, zo = xt * W[0] + hh * W[1] + b
        cc = _sig(zf) * cc + _sig(zi) * math.tanh(zj)
        hh = _sig(zo) * math.tanh(cc)
        hs.append(hh)
    np.testing.assert_allclose(out[0, :2, 0], hs)
    assert out[0, 2, 0] == 0.0
    np.testing.assert_allclose([h[0, 0], c[0, 0]], [hh, cc])
    # first step by hand: zi = 1, zj = 2.1, zf = 0.5, zo = -0.8 -> c = sig(1) tanh(2.1)
    c1 = _sig(1.0) * math.tanh(2.1)
    np.testing.assert_allclose(out[0, 0, 0], _sig(-0.8) * math.tanh(c1))


def test_lstm_padding_and_reverse():
    rng = _rng(23)
    B, T, n_in, n = 3, 6, 2, 3
    lengths = np.array([6, 4, 1])
    x = rng.randn(B, T, n_in)
    W = rng.randn(n_in + n, 4 * n) * 0.5
    b = rng.randn(4 * n) * 0.1
    for d in (1, -1):
        out, (h, c) = ref.lstm_sequence(x, lengths, W, b, n, direction=d, return_final_state=True)
        out2 = ref.lstm_sequence(_fill_padding(x, lengths, rng), lengths, W, b, n, direction=d)
        np.testing.assert_allclose(out, out2, atol=1e-14)
        assert np.all(out[~_valid(lengths, T)] == 0.0)
        for bb in range(B):
            L = lengths[bb]
            single = ref.lstm_sequence(x[bb : bb + 1, :L], [L], W, b, n, direction=d)
            np.testing.assert_allclose(out[bb, :L], single[0], atol=1e-14)
            if d == -1:
                fwd_rev = ref.lstm_sequence(x[bb : bb + 1, :L][:, ::-1], [L], W, b, n)[0, ::-1]
                np.testing.assert_allclose(out[bb, :L], fwd_rev, atol=1e-14)
                np.testing.assert_allclose(h[bb], out[bb, 0], atol=1e-14)
            else:
                np.testing.assert_allclose(h[bb], out[bb, L - 1], atol=1e-14)
