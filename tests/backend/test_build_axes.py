"""Phase 2 (TensorFlow builder) of the axis-manipulating and time layers, against independent
NumPy computations on ragged batches whose padding holds random (not zero) values: only valid
frames are compared, and values at padded frames must be finite."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402

TOL = 1e-5
RNG = np.random.default_rng(1234)
B, T = 3, 7
LENS = np.array([7, 4, 1], np.int32)
EXTERN = {
    "data": {"dim": 6},  # [B, T(data), F=6]
    "cls": {"dim": 5, "sparse": True},  # [B, T(cls)] sparse(5)
    "img": {"shape": [None, 5, 3]},  # [B, T(img), S=5, F=3]
    "grid": {"shape": [None, 3, 4, 2]},  # [B, T(grid), S=3, S=4, F=2]
    "st": {"shape": [3, None, 4]},  # [B, S=3, T(st), F=4]
}
X = {
    "data": RNG.normal(size=(B, T, 6)).astype(np.float32),
    "cls": RNG.integers(0, 5, size=(B, T)).astype(np.int32),
    "img": RNG.normal(size=(B, T, 5, 3)).astype(np.float32),
    "grid": RNG.normal(size=(B, T, 3, 4, 2)).astype(np.float32),
    "st": RNG.normal(size=(B, 3, T, 4)).astype(np.float32),
}
LENGTHS = {k: LENS for k in X}


def run(network: dict, fetch: list[str]):
    """Compile `network` (every fetched layer is an output) and run it on the ragged batch."""
    network = {k: {**v, "is_output_layer": True} for k, v in network.items()}
    network.setdefault("output", dict(network[fetch[0]]))  # a network needs an `output`
    net = compile_network({"extern_data": EXTERN, "network": network})
    out = net(inputs=X, lengths=LENGTHS, fetch=fetch)
    values = {}
    for name in fetch:
        v, lens = out[name]
        v = v.numpy()
        if v.dtype.kind == "f":
            assert np.isfinite(v).all(), f"{name}: non-finite values (at padded frames?)"
        values[name] = (v, None if lens is None else lens.numpy())
    return net, values


def assert_close(actual, expected, what=""):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if actual.size:
        err = np.max(np.abs(actual - expected))
        assert err < TOL, f"{what}: max abs error {err}"


def valid(key: str, b: int) -> np.ndarray:
    """The valid frames of sequence b of extern data `key` (time axis first)."""
    x = X[key][b]
    if key == "st":
        return np.moveaxis(x, 1, 0)[: LENS[b]]
    return x[: LENS[b]]


# -- reduce ------------------------------------------------------------------------------------


def _lse(v, axis):
    m = np.max(v, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(v - m), axis=axis))


NP_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean, "logsumexp": _lse}


@pytest.mark.parametrize("mode", list(NP_REDUCE))
def test_reduce_over_time_is_masked(mode):
    _, out = run(
        {
            "t": {"class": "reduce", "mode": mode, "axes": "T"},
            "tk": {"class": "reduce", "mode": mode, "axes": "T", "keep_dims": True},
            "f": {"class": "reduce", "mode": mode, "axes": "F"},
            "b": {"class": "reduce", "mode": mode, "axes": "B"},
        },
        ["t", "tk", "f", "b"],
    )
    fn = NP_REDUCE[mode]
    for b in range(B):
        assert_close(out["t"][0][b], fn(valid("data", b), axis=0), f"{mode} over T, seq {b}")
        assert_close(out["tk"][0][b, 0], fn(valid("data", b), axis=0), f"{mode} keep_dims, seq {b}")
        assert_close(out["f"][0][b, : LENS[b]], fn(valid("data", b), axis=1), f"{mode} over F")
    assert out["tk"][0].shape == (B, 1, 6)
    for t in range(T):
        seqs = [b for b in range(B) if t < LENS[b]]
        assert_close(out["b"][0][t], fn(X["data"][seqs, t], axis=0), f"{mode} over B, frame {t}")


def test_reduce_over_static_axes_and_several_axes():
    # `static` includes the feature axis (RETURNN); `spatial_except_time` does not
    _, out = run(
        {
            "s": {"class": "reduce", "mode": "mean", "axes": "static", "from": "data:grid"},
            "se": {
                "class": "reduce",
                "mode": "mean",
                "axes": "spatial_except_time",
                "from": "data:grid",
            },
            "tf": {"class": "reduce", "mode": "max", "axes": ["T", "F"]},
        },
        ["s", "se", "tf"],
    )
    for b in range(B):
        assert_close(out["s"][0][b, : LENS[b]], valid("grid", b).mean(axis=(1, 2, 3)))
        assert_close(out["se"][0][b, : LENS[b]], valid("grid", b).mean(axis=(1, 2)))
        assert_close(out["tf"][0][b], valid("data", b).max())


def test_reduce_without_time_mask_counts_padding():
    _, out = run(
        {"x": {"class": "reduce", "mode": "sum", "axes": "T", "use_time_mask": False}}, ["x"]
    )
    assert_close(out["x"][0], X["data"].sum(axis=1))


def test_reduce_over_optional_time_axis():
    """`T?` names the time axis if there is one, else no axis: nothing is reduced."""
    _, out = run(
        {
            "r": {"class": "reduce", "mode": "max", "axes": "T?"},
            "v": {"class": "reduce", "mode": "mean", "axes": "T?", "from": "r"},
            "w": {"class": "reduce", "mode": "sum", "axes": ["T?", "F"], "from": "r"},
        },
        ["r", "v", "w"],
    )
    for b in range(B):
        assert_close(out["r"][0][b], valid("data", b).max(axis=0))
    assert_close(out["v"][0], out["r"][0])
    assert_close(out["w"][0], out["r"][0].sum(axis=-1))


def test_merge_dims_static_merges_attention_heads():
    """RETURNN's Transformer decoders: [B, T, H, D/H] -> `merge_dims axes: static` -> [B, T, D],
    the heads axis outermost (the inverse of `split_dims axis: F dims: [H, D/H]`)."""
    _, out = run(
        {
            "h": {"class": "split_dims", "axis": "F", "dims": [3, 2]},
            "m": {"class": "merge_dims", "axes": "static", "from": "h"},
        },
        ["h", "m"],
    )
    for b in range(B):
        n = LENS[b]
        heads = valid("data", b).reshape(n, 3, 2)
        assert_close(out["h"][0][b, :n], heads)
        assert_close(out["m"][0][b, :n], heads.reshape(n, 6))
        assert_close(out["m"][0][b, :n], valid("data", b))


# -- split_dims / merge_dims / combine_dims ----------------------------------------------------


def test_split_dims_feature_and_static():
    _, out = run(
        {
            "f": {"class": "split_dims", "axis": "F", "dims": [2, -1]},
            "s": {"class": "split_dims", "axis": "dim:4", "dims": [2, 2], "from": "data:grid"},
        },
        ["f", "s"],
    )
    for b in range(B):
        n = LENS[b]
        assert_close(out["f"][0][b, :n], valid("data", b).reshape(n, 2, 3))
        assert_close(out["s"][0][b, :n], valid("grid", b).reshape(n, 3, 2, 2, 2))


@pytest.mark.parametrize("k", [2, 3])
def test_split_dims_time_groups_frames(k):
    _, out = run(
        {
            "x": {"class": "split_dims", "axis": "T", "dims": [-1, k]},
            "c": {"class": "split_dims", "axis": "T", "dims": [-1, k], "from": "data:cls"},
        },
        ["x", "c"],
    )
    np.testing.assert_array_equal(out["x"][1], -(-LENS // k))
    for b in range(B):
        n = LENS[b]
        groups = -(-n // k)
        padded = np.zeros((groups * k, 6), np.float32)
        padded[:n] = valid("data", b)  # the last group is zero-filled, never padding values
        assert_close(out["x"][0][b, :groups], padded.reshape(groups, k, 6), f"seq {b}")
        labels = np.zeros(groups * k, np.int32)
        labels[:n] = valid("cls", b)
        np.testing.assert_array_equal(out["c"][0][b, :groups], labels.reshape(groups, k))


def test_merge_and_combine_dims():
    _, out = run(
        {
            "m1": {"class": "merge_dims", "axes": ["dim:4", "F"], "from": "data:grid"},
            "m2": {"class": "merge_dims", "axes": ["static:0", "static:1"], "from": "data:grid"},
            "m4": {"class": "merge_dims", "axes": "static", "from": "data:grid"},
            "m3": {"class": "merge_dims", "axes": ["static", "F"], "from": "data:st"},
            "c1": {"class": "combine_dims", "axes": "static", "from": "data:grid"},
            "c2": {"class": "combine_dims", "axes": "static", "from": "data:st"},
        },
        ["m1", "m2", "m3", "m4", "c1", "c2"],
    )
    for b in range(B):
        n = LENS[b]
        g = valid("grid", b)  # [n, 3, 4, 2]
        assert_close(out["m1"][0][b, :n], g.reshape(n, 3, 8))
        assert_close(out["m2"][0][b, :n], g.reshape(n, 12, 2))
        assert_close(out["c1"][0][b, :n], g.reshape(n, 24))
        assert_close(out["m4"][0][b, :n], g.reshape(n, 24))
        s = valid("st", b)  # [n, 3, 4] (the S=3 axis came before T)
        assert_close(out["m3"][0][b, :n], s.reshape(n, 12))
        assert_close(out["c2"][0][b, :n], s.reshape(n, 12))


# -- expand_dims / squeeze ---------------------------------------------------------------------


def test_expand_dims_and_squeeze():
    _, out = run(
        {
            "ef": {"class": "expand_dims", "axis": "F"},
            "et": {"class": "expand_dims", "axis": "T", "dim": 3},
            "e0": {"class": "expand_dims", "axis": 0, "from": "data:cls"},
            "sq": {"class": "squeeze", "axis": "static", "from": "e0"},
            "sqf": {"class": "squeeze", "axis": "F", "from": "ef"},
        },
        ["ef", "et", "e0", "sq", "sqf"],
    )
    x = X["data"]
    assert out["ef"][0].shape == (B, T, 6, 1) and out["et"][0].shape == (B, T, 3, 6)
    assert out["sqf"][0].shape == (B, T, 6)
    for b in range(B):
        n = LENS[b]
        assert_close(out["ef"][0][b, :n], x[b, :n, :, None])
        assert_close(out["et"][0][b, :n], np.repeat(x[b, :n, None], 3, axis=1))
        np.testing.assert_array_equal(out["e0"][0][b, 0, :n], X["cls"][b, :n])
        np.testing.assert_array_equal(out["sq"][0][b, :n], X["cls"][b, :n])
        assert_close(out["sqf"][0][b, :n], x[b, :n])


# -- slice -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, step", [(1, None, None), (None, -1, 2), (-3, None, 1), (2, 5, 2), (None, None, 3)]
)
def test_slice_time_per_sequence(start, end, step):
    opts = {
        k: v
        for k, v in (("slice_start", start), ("slice_end", end), ("slice_step", step))
        if v is not None
    }
    _, out = run(
        {
            "x": {"class": "slice", "axis": "T", **opts},
            "c": {"class": "slice", "axis": "T", "from": "data:cls", **opts},
        },
        ["x", "c"],
    )
    for b in range(B):
        expected = valid("data", b)[slice(start, end, step)]
        assert out["x"][1][b] == len(expected)
        assert_close(out["x"][0][b, : len(expected)], expected, f"seq {b}")
        np.testing.assert_array_equal(
            out["c"][0][b, : len(expected)], valid("cls", b)[slice(start, end, step)]
        )


def test_slice_static_axes():
    _, out = run(
        {
            "f": {"class": "slice", "axis": "F", "slice_start": 1, "slice_end": -1},
            "s": {"class": "slice", "axis": "dim:5", "slice_step": 2, "from": "data:img"},
        },
        ["f", "s"],
    )
    for b in range(B):
        n = LENS[b]
        assert_close(out["f"][0][b, :n], X["data"][b, :n, 1:-1])
        assert_close(out["s"][0][b, :n], X["img"][b, :n, ::2])
    np.testing.assert_array_equal(out["f"][1], LENS)


# -- window ------------------------------------------------------------------------------------


def np_window(v: np.ndarray, size: int, left: int, padding: str) -> np.ndarray:
    n = len(v)
    if padding == "valid":
        m = max(0, n - size + 1)
        return np.array([v[t : t + size] for t in range(m)], v.dtype).reshape(m, size, *v.shape[1:])
    out = np.zeros((n, size) + v.shape[1:], v.dtype)
    for t in range(n):
        for k in range(size):
            j = t - left + k
            if 0 <= j < n:
                out[t, k] = v[j]
    return out


@pytest.mark.parametrize(
    "opts, left",
    [
        ({"window_size": 3}, 1),
        ({"window_size": 4}, 1),
        ({"window_size": 4, "window_left": 3}, 3),
        ({"window_size": 2, "window_right": 0}, 1),
    ],
)
def test_window_same(opts, left):
    _, out = run({"x": {"class": "window", **opts}}, ["x"])
    np.testing.assert_array_equal(out["x"][1], LENS)
    for b in range(B):
        n = LENS[b]
        assert_close(
            out["x"][0][b, :n], np_window(valid("data", b), opts["window_size"], left, "same")
        )


def test_window_valid_and_static_axis():
    _, out = run(
        {
            "v": {"class": "window", "window_size": 3, "padding": "valid"},
            "c": {"class": "window", "window_size": 2, "from": "data:cls"},
            "s": {
                "class": "window",
                "window_size": 2,
                "axis": "dim:5",
                "padding": "valid",
                "from": "data:img",
            },
        },
        ["v", "c", "s"],
    )
    np.testing.assert_array_equal(out["v"][1], np.maximum(LENS - 2, 0))
    for b in range(B):
        n = LENS[b]
        ref = np_window(valid("data", b), 3, 0, "valid")
        assert_close(out["v"][0][b, : len(ref)], ref)
        np.testing.assert_array_equal(out["c"][0][b, :n], np_window(valid("cls", b), 2, 0, "same"))
        img = X["img"][b, :n]  # window over the static axis S=5 -> S=4, window S=2
        assert_close(out["s"][0][b, :n], np.stack([img[:, i : i + 2] for i in range(4)], axis=1))


# -- postfix_in_time / prefix_in_time ----------------------------------------------------------


def test_postfix_and_prefix_in_time():
    _, out = run(
        {
            "post": {"class": "postfix_in_time", "postfix": 2.5, "repeat": 2},
            "pre": {"class": "prefix_in_time", "prefix": -1.0, "repeat": 3},
            "cpost": {"class": "postfix_in_time", "from": "data:cls", "postfix": 4},
            "cpre": {"class": "prefix_in_time", "from": "data:cls", "prefix": 0},
            "gpre": {"class": "prefix_in_time", "from": "data:st", "prefix": 1.0},
        },
        ["post", "pre", "cpost", "cpre", "gpre"],
    )
    np.testing.assert_array_equal(out["post"][1], LENS + 2)
    np.testing.assert_array_equal(out["pre"][1], LENS + 3)
    np.testing.assert_array_equal(out["gpre"][1], LENS + 1)
    for b in range(B):
        n = LENS[b]
        v = valid("data", b)
        assert_close(out["post"][0][b, : n + 2], np.concatenate([v, np.full((2, 6), 2.5)]))
        assert_close(out["pre"][0][b, : n + 3], np.concatenate([np.full((3, 6), -1.0), v]))
        c = valid("cls", b)
        np.testing.assert_array_equal(out["cpost"][0][b, : n + 1], np.append(c, 4))
        np.testing.assert_array_equal(out["cpre"][0][b, : n + 1], np.insert(c, 0, 0))
        s = X["st"][b][:, :n]  # [3, n, 4], time is axis 1
        assert_close(out["gpre"][0][b][:, : n + 1], np.concatenate([np.ones((3, 1, 4)), s], axis=1))


# -- conv / pool -------------------------------------------------------------------------------


def spatial_ref(v: np.ndarray, window, strides, dilation, padding, reduce, n_out=None):
    """Generic N-D sliding window over the leading axes of `v` ([*spatial, F]) with the
    semantics of conv/pool: out[i] = reduce(frames i*s - left + k*d that lie inside v)."""
    nd = len(window)
    sizes = v.shape[:nd]
    outs, lefts = [], []
    for n, f, s, d in zip(sizes, window, strides, dilation):
        e = (f - 1) * d + 1
        if padding == "same":
            outs.append(math.ceil(n / s))
            lefts.append((e - 1) // 2)
        else:
            outs.append(max(0, math.ceil((n - e + 1) / s)))
            lefts.append(0)
    result = np.zeros(tuple(outs) + (v.shape[-1] if n_out is None else n_out,))
    for idx in np.ndindex(*outs):
        taps = []
        for k in np.ndindex(*window):
            pos = tuple(
                i * s - left + kk * d for i, s, left, kk, d in zip(idx, strides, lefts, k, dilation)
            )
            inside = all(0 <= p < n for p, n in zip(pos, sizes))
            taps.append((k, v[pos] if inside else None))
        if any(t is not None for _, t in taps):
            result[idx] = reduce(taps)  # else 0: (even filter, dilation) the window has no frame
    return result


def conv_reduce(W):
    def fn(taps):
        return sum((tap @ W[k] for k, tap in taps if tap is not None), np.zeros(W.shape[-1]))

    return fn


def max_reduce(taps):
    return np.max([t for _, t in taps if t is not None], axis=0)


def avg_reduce(taps):
    return np.mean([t for _, t in taps if t is not None], axis=0)


@pytest.mark.parametrize(
    "opts",
    [
        {"filter_size": [3]},
        {"filter_size": [3], "strides": 2},
        {"filter_size": [2], "padding": "valid"},
        {"filter_size": [3], "dilation_rate": 2},
        {"filter_size": [2], "dilation_rate": 2, "strides": 3, "padding": "valid"},
        {"filter_size": [4], "strides": 2, "activation": "tanh"},
    ],
)
def test_conv_1d(opts):
    net, out = run({"x": {"class": "conv", "n_out": 4, "bias_init": 0.3, **opts}}, ["x"])
    W = net.variable("x/W").numpy().astype(np.float64)
    bias = net.variable("x/b").numpy()
    np.testing.assert_allclose(bias, 0.3)
    strides = [opts.get("strides", 1)]
    dil = [opts.get("dilation_rate", 1)]
    padding = opts.get("padding", "same")
    values, lens = out["x"]
    for b in range(B):
        ref = (
            spatial_ref(
                valid("data", b).astype(np.float64),
                opts["filter_size"],
                strides,
                dil,
                padding,
                conv_reduce(W),
                W.shape[-1],
            )
            + bias
        )
        if opts.get("activation") == "tanh":
            ref = np.tanh(ref)
        if padding == "same" and strides == [1]:
            assert lens[b] == LENS[b]
        assert lens[b] == len(ref), (b, lens[b], len(ref))
        assert_close(values[b, : len(ref)], ref, f"seq {b}")


@pytest.mark.parametrize(
    "opts",
    [
        {"filter_size": [3, 3]},
        {"filter_size": [3, 2], "padding": "valid", "strides": [2, 1]},
        {"filter_size": [2, 3], "strides": [1, 2], "dilation_rate": [2, 1], "with_bias": False},
    ],
)
def test_conv_2d_over_time_and_static_axis(opts):
    net, out = run({"x": {"class": "conv", "n_out": 3, "from": "data:img", **opts}}, ["x"])
    W = net.variable("x/W").numpy().astype(np.float64)
    bias = net.variable("x/b").numpy() if opts.get("with_bias", True) else 0.0
    values, lens = out["x"]
    for b in range(B):
        ref = (
            spatial_ref(
                valid("img", b).astype(np.float64),
                opts["filter_size"],
                opts.get("strides", [1, 1]),
                opts.get("dilation_rate", [1, 1]),
                opts.get("padding", "same"),
                conv_reduce(W),
                W.shape[-1],
            )
            + bias
        )
        assert lens[b] == len(ref)
        assert values.shape[2:] == ref.shape[1:]
        assert_close(values[b, : len(ref)], ref, f"seq {b}")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "opts",
    [
        {"pool_size": [2]},
        {"pool_size": [3], "padding": "same"},
        {"pool_size": [3], "padding": "same", "strides": 1},
        {"pool_size": [2], "strides": 1, "dilation_rate": 2},
        {"pool_size": [2], "strides": 2, "dilation_rate": 2, "padding": "same"},
    ],
)
def test_pool_1d_padding_never_counts(mode, opts):
    _, out = run({"x": {"class": "pool", "mode": mode, **opts}}, ["x"])
    window = opts["pool_size"]
    strides = [opts.get("strides", window[0])]
    values, lens = out["x"]
    for b in range(B):
        ref = spatial_ref(
            valid("data", b).astype(np.float64),
            window,
            strides,
            [opts.get("dilation_rate", 1)],
            opts.get("padding", "valid"),
            max_reduce if mode == "max" else avg_reduce,
        )
        assert lens[b] == len(ref)
        assert_close(values[b, : len(ref)], ref, f"seq {b}")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_2d(mode):
    _, out = run(
        {
            "x": {
                "class": "pool",
                "mode": mode,
                "pool_size": [2, 2],
                "padding": "same",
                "from": "data:img",
            }
        },
        ["x"],
    )
    values, lens = out["x"]
    for b in range(B):
        ref = spatial_ref(
            valid("img", b).astype(np.float64),
            [2, 2],
            [2, 2],
            [1, 1],
            "same",
            max_reduce if mode == "max" else avg_reduce,
        )
        assert lens[b] == len(ref) and values.shape[2] == 3
        assert_close(values[b, : len(ref)], ref, f"seq {b}")


def test_padding_values_do_not_leak():
    """Changing only the padded frames changes no valid output frame."""
    network = {
        "c": {"class": "conv", "filter_size": [3], "n_out": 4, "strides": 2},
        "p": {"class": "pool", "mode": "max", "pool_size": [2], "padding": "same", "from": "c"},
        "w": {"class": "window", "window_size": 3, "from": "data"},
        "s": {"class": "slice", "axis": "T", "slice_start": -2, "from": "data"},
        "r": {"class": "reduce", "mode": "mean", "axes": "T", "from": "w"},
        "post": {"class": "postfix_in_time", "from": "data"},
    }
    fetch = ["p", "r", "s", "post"]
    network = {k: {**v, "is_output_layer": True} for k, v in network.items()}
    network["output"] = dict(network["r"])
    net = compile_network({"extern_data": EXTERN, "network": network})
    a = net(inputs=X, lengths=LENGTHS, fetch=fetch)
    other = dict(X)
    noisy = X["data"].copy()
    for b in range(B):
        noisy[b, LENS[b] :] = 1e3 * RNG.normal(size=noisy[b, LENS[b] :].shape)
    other["data"] = noisy
    c = net(inputs=other, lengths=LENGTHS, fetch=fetch)
    for name in fetch:
        va, la = a[name][0].numpy(), a[name][1]
        vc = c[name][0].numpy()
        if la is None:
            assert_close(vc, va, name)
            continue
        for b, n in enumerate(la.numpy()):
            assert_close(vc[b, :n], va[b, :n], f"{name} seq {b}")
