"""`transposed_conv` (RETURNN's TransposedConvLayer): shapes, parameters and validation errors
without TensorFlow; values and per-sequence lengths against a NumPy transposed convolution (the
adjoint of TF's forward convolution, as `conv2d_transpose` is defined) on ragged batches whose
padding holds large random values, and against TF's `conv2d_transpose` run on each sequence
alone the way RETURNN calls it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

EXTERN = {
    "data": {"dim": 6},  # [B, T(data), F=6]
    "cls": {"dim": 5, "sparse": True},  # [B, T(cls)] sparse(5)
    "img": {"shape": [None, 4, 3]},  # [B, T(img), S=4, F=3]
    "vec": {"shape": [6]},  # [B, F=6]
}


def infer(layer: dict):
    return validate(
        {"extern_data": EXTERN, "network": {"output": {"class": "transposed_conv", **layer}}}
    )


def shape_and_params(layer: dict):
    result = infer(layer)
    assert result.errors == [], [d.full_message() for d in result.errors]
    params = {k: tuple(p.shape) for k, p in result.inferred.params["output"].items()}
    return str(result.inferred.shapes["output"]), params


def error(layer: dict):
    result = infer(layer)
    assert len(result.errors) == 1, [d.full_message() for d in result.errors]
    return result.errors[0]


# -- RETURNN's output length, written out independently -----------------------------------------


def returnn_out_len(n, f, s, padding, output_padding, remove):
    """RETURNN `calc_transposed_conv_out_length` (Keras `deconv_output_length`), minus
    `remove_padding` at both ends."""
    if output_padding is None:
        if padding == "valid":
            size = n * s + max(f - s, 0)
        else:
            size = n * s
    else:
        pad = {"same": f // 2, "valid": 0}[padding]
        size = n * s + f - s - 2 * pad + output_padding
    return size - 2 * remove


# -- front end ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        # strides default to filter_size: a new time axis
        ({"filter_size": [3], "n_out": 4}, "[B, T(output), F=4]"),
        ({"filter_size": [3], "n_out": 4, "strides": 1}, "[B, T(data), F=4]"),
        (
            {"filter_size": [3], "n_out": 4, "strides": [1], "padding": "valid"},
            "[B, T(output), F=4]",
        ),
        # valid, stride 1: n + 2 frames, minus 2 * 1: the lengths of the input again
        (
            {"filter_size": [3], "n_out": 4, "strides": 1, "padding": "valid", "remove_padding": 1},
            "[B, T(data), F=4]",
        ),
        # 2-D: S=4 -> 4 * 2 + max(3 - 2, 0) = 9, minus 2 * 1
        (
            {
                "filter_size": [2, 3],
                "n_out": 2,
                "from": "data:img",
                "strides": [1, 2],
                "padding": "valid",
                "remove_padding": [0, 1],
            },
            "[B, T(output), S=7, F=2]",
        ),
        (
            {
                "filter_size": [1, 3],
                "n_out": 2,
                "from": "data:img",
                "strides": [1, 2],
                "output_padding": [None, 1],
            },
            "[B, T(img), S=8, F=2]",
        ),
        (
            {
                "filter_size": [3, 3],
                "n_out": 2,
                "from": "data:img",
                "in_spatial_dims": ["dim:4", "T"],
                "strides": [2, 1],
            },
            "[B, S=8, T(img), F=2]",
        ),
    ],
)
def test_shapes(layer, expected):
    assert shape_and_params(layer)[0] == expected


def test_params_in_returnns_layout():
    """W: [*filter_size, n_out, n_in] (RETURNN's W_native_transposed_conv), b: [n_out]."""
    assert shape_and_params({"filter_size": [3], "n_out": 4})[1] == {"W": (3, 4, 6), "b": (4,)}
    assert shape_and_params(
        {"filter_size": [2, 3], "n_out": 5, "from": "data:img", "with_bias": False}
    )[1] == {"W": (2, 3, 5, 3)}
    result = infer({"filter_size": [3], "n_out": 4})
    assert result.inferred.param_count("output") == 3 * 4 * 6 + 4


@pytest.mark.parametrize(
    "f, s, padding, accepted",
    [
        (3, 2, "valid", [0, 1]),  # Keras: output_padding < stride
        (3, 1, "valid", [0]),
        (3, 2, "same", [0, 1]),  # odd filter: 0 <= p < s
        (2, 2, "same", [1, 2]),  # even filter: 0 < p <= s
        (4, 3, "same", [1, 2, 3]),
    ],
)
def test_output_padding_that_tf_rejects_is_an_error(f, s, padding, accepted):
    """TF's conv2d_transpose (RETURNN's op) needs the forward convolution of the output size to
    give back the input size; every other `output_padding` is a validation error."""
    for p in range(0, 5):
        n = 7
        size = returnn_out_len(n, f, s, padding, p, 0)
        if padding == "same":
            fits = math.ceil(size / s) == n
        else:
            fits = math.ceil((size - f + 1) / s) == n
        assert fits == (p in accepted), (p, size)
        result = infer(
            {"filter_size": [f], "strides": s, "padding": padding, "output_padding": p, "n_out": 2}
        )
        if fits:
            assert result.errors == [], [d.full_message() for d in result.errors]
        else:
            [e] = result.errors
            assert e.rule == "shape.conv-padding" and e.path[-1] == "output_padding"
            assert f"`output_padding: {p}`" in e.message
            assert " or ".join(map(str, accepted)) in e.hint


def test_errors():
    e = error({"filter_size": [3, 3], "n_out": 4})
    assert e.rule == "shape.conv-dims" and "`data` [B, T(data), F=6]" in e.message
    assert e.path == ("network", "output", "filter_size")
    e = error({"filter_size": [3], "n_out": 4, "strides": [2, 2]})
    assert e.rule == "shape.conv-dims" and e.path[-1] == "strides"
    e = error({"filter_size": [3], "n_out": 4, "remove_padding": [1, 1]})
    assert e.rule == "shape.conv-dims" and e.path[-1] == "remove_padding"
    e = error({"filter_size": [3], "n_out": 4, "output_padding": [0, 0]})
    assert e.rule == "shape.conv-dims" and e.path[-1] == "output_padding"
    e = error({"filter_size": [3], "n_out": 4, "from": "data:cls"})
    assert e.rule == "shape.no-feature" and "sparse(5)" in e.message
    e = error({"filter_size": [3], "n_out": 4, "from": "data:vec"})
    assert e.rule == "shape.conv-dims" and "`data:vec` [B, F=6]" in e.message
    # S=4, same, stride 1: 4 frames; removing 2 at both ends leaves none
    e = error(
        {
            "filter_size": [1, 3],
            "n_out": 2,
            "from": "data:img",
            "strides": 1,
            "remove_padding": [0, 2],
        }
    )
    assert e.rule == "shape.conv-size" and "S=4" in e.message
    e = error({"filter_size": [3]})
    assert e.rule == "schema.missing-option" and "n_out" in e.message
    for bad in (
        {"padding": "full"},
        {"strides": 0},
        {"remove_padding": -1},
        {"output_padding": -1},
        {"filter_size": [0]},
        {"dilation_rate": 2},
        {"filter_size": [1, 1, 1, 1]},
    ):
        e = error({"filter_size": [3], "n_out": 4, **bad})
        assert e.rule.startswith("schema."), (bad, e.full_message())


# -- builder against NumPy ----------------------------------------------------------------------

B, T = 3, 7
LENS = np.array([7, 4, 1], np.int32)


def transposed_conv_ref(x, W, strides, padding, output_padding, remove):
    """NumPy: the transposed convolution of one sequence `x` [*spatial, n_in] with
    W [*filter, n_out, n_in] as TF defines conv2d_transpose: the adjoint of the forward
    convolution (TF's SAME/VALID padding) that maps an output of RETURNN's size back to x;
    then `remove` frames cut off at both ends of each axis."""
    nd = x.ndim - 1
    filt = W.shape[:nd]
    sizes = [
        returnn_out_len(n, f, s, padding, p, 0)
        for n, f, s, p in zip(x.shape[:nd], filt, strides, output_padding)
    ]
    lefts = []
    for n, size, f, s in zip(x.shape[:nd], sizes, filt, strides):
        if padding == "same":
            assert math.ceil(size / s) == n
            lefts.append(max((n - 1) * s + f - size, 0) // 2)
        else:
            assert math.ceil((size - f + 1) / s) == n
            lefts.append(0)
    y = np.zeros(tuple(sizes) + (W.shape[-2],))
    # forward: x[i] = sum_k y[i*s + k - left] @ W[k]  =>  adjoint: y[i*s + k - left] += W[k] @ x[i]
    for i in np.ndindex(*x.shape[:nd]):
        for k in np.ndindex(*filt):
            pos = tuple(ii * s + kk - left for ii, s, kk, left in zip(i, strides, k, lefts))
            if all(0 <= p < size for p, size in zip(pos, sizes)):
                y[pos] += W[k] @ x[i]
    crop = tuple(slice(r, size - r) for r, size in zip(remove, sizes))
    return y[crop]


def per_axis(v, n, default):
    if v is None:
        return [default] * n
    return list(v) if isinstance(v, list) else [v] * n


def compile_and_run(layer: dict, key: str, noise: float = 0.0, seed: int = 0):
    import netcompiler

    rng = np.random.default_rng(seed)
    extern = {"data": EXTERN["data"], "img": EXTERN["img"]}
    x = {
        "data": rng.normal(size=(B, T, 6)).astype(np.float32),
        "img": rng.normal(size=(B, T, 4, 3)).astype(np.float32),
    }
    for b in range(B):  # large values in the padding: they must never reach a valid frame
        for k in x:
            x[k][b, LENS[b] :] = 1e3 * rng.normal(size=x[k][b, LENS[b] :].shape)
    net = netcompiler.compile(
        {
            "extern_data": extern,
            "network": {"output": {"class": "transposed_conv", "from": f"data:{key}", **layer}},
        }
    )
    W = net.variable("output/W")
    W.assign(rng.normal(size=W.shape).astype(np.float32))
    if layer.get("with_bias", True):
        b = net.variable("output/b")
        b.assign(rng.normal(size=b.shape).astype(np.float32))
    values, lengths = net(inputs=x, lengths={"data": LENS, "img": LENS})["output"]
    return net, x, values.numpy(), lengths.numpy()


CASES_1D = [
    {"filter_size": [3]},  # strides = filter: 3n
    {"filter_size": [3], "strides": 2},  # same: 2n
    {"filter_size": [4], "strides": 2, "padding": "valid"},  # 2n + 2
    {"filter_size": [2], "strides": 3, "padding": "valid"},  # f < s: 3n, gaps
    {"filter_size": [3], "strides": 2, "padding": "valid", "output_padding": 1},
    {"filter_size": [2], "strides": 2, "output_padding": 1},  # even filter, same
    {"filter_size": [5], "strides": 2, "output_padding": 0, "activation": "tanh"},
    {"filter_size": [5], "strides": 1, "padding": "valid", "remove_padding": 2},  # keeps T
    {"filter_size": [4], "strides": 2, "padding": "valid", "remove_padding": 1, "with_bias": False},
    {"filter_size": [3], "strides": 1},  # keeps T
]


@pytest.mark.parametrize("opts", CASES_1D)
def test_1d_against_numpy_on_ragged_batch(opts):
    pytest.importorskip("tensorflow")
    layer = {"n_out": 4, **opts}
    net, x, values, lengths = compile_and_run(layer, "data")
    W = net.variable("output/W").numpy().astype(np.float64)
    bias = net.variable("output/b").numpy() if opts.get("with_bias", True) else 0.0
    f = opts["filter_size"][0]
    s = per_axis(opts.get("strides"), 1, f)[0]
    p = per_axis(opts.get("output_padding"), 1, None)[0]
    r = per_axis(opts.get("remove_padding"), 1, 0)[0]
    padding = opts.get("padding", "same")
    assert np.isfinite(values).all()
    assert values.shape[1] == returnn_out_len(T, f, s, padding, p, r)
    for b in range(B):
        n = int(LENS[b])
        want_len = returnn_out_len(n, f, s, padding, p, r)
        assert lengths[b] == want_len, (b, lengths[b], want_len)
        ref = (
            transposed_conv_ref(x["data"][b, :n].astype(np.float64), W, [s], padding, [p], [r])
            + bias
        )
        if opts.get("activation") == "tanh":
            ref = np.tanh(ref)
        assert ref.shape == (want_len, 4)
        np.testing.assert_allclose(values[b, :want_len], ref, atol=1e-4, rtol=1e-5)
        np.testing.assert_array_equal(values[b, want_len:], 0.0)  # padded frames are zero
    if s == 1 and returnn_out_len(5, f, s, padding, p, r) == 5:
        np.testing.assert_array_equal(lengths, LENS)


@pytest.mark.parametrize(
    "opts",
    [
        {"filter_size": [3, 2]},  # strides [3, 2]
        {"filter_size": [2, 3], "strides": [2, 1], "padding": "valid", "remove_padding": [0, 1]},
        {"filter_size": [3, 3], "strides": 2, "output_padding": [1, None], "with_bias": False},
        {"filter_size": [5, 4], "strides": [1, 2]},  # TF's left padding on both
    ],
)
def test_2d_over_time_and_static_axis(opts):
    pytest.importorskip("tensorflow")
    layer = {"n_out": 2, **opts}
    net, x, values, lengths = compile_and_run(layer, "img", seed=1)
    W = net.variable("output/W").numpy().astype(np.float64)
    bias = net.variable("output/b").numpy() if opts.get("with_bias", True) else 0.0
    filt = opts["filter_size"]
    strides = per_axis(opts.get("strides"), 2, None)
    strides = [f if s is None else s for f, s in zip(filt, strides)]
    out_pad = per_axis(opts.get("output_padding"), 2, None)
    remove = per_axis(opts.get("remove_padding"), 2, 0)
    padding = opts.get("padding", "same")
    static = returnn_out_len(4, filt[1], strides[1], padding, out_pad[1], remove[1])
    assert values.shape[2:] == (static, 2)
    for b in range(B):
        n = int(LENS[b])
        want_len = returnn_out_len(n, filt[0], strides[0], padding, out_pad[0], remove[0])
        assert lengths[b] == want_len
        ref = (
            transposed_conv_ref(
                x["img"][b, :n].astype(np.float64), W, strides, padding, out_pad, remove
            )
            + bias
        )
        np.testing.assert_allclose(values[b, :want_len], ref, atol=1e-4, rtol=1e-5)
        np.testing.assert_array_equal(values[b, want_len:], 0.0)


@pytest.mark.parametrize("opts", [c for c in CASES_1D if "activation" not in c])
def test_1d_equals_tf_conv2d_transpose_per_sequence(opts):
    """Each sequence alone through TF's conv2d_transpose as RETURNN calls it (1-D wrapped into
    2-D, output_shape from RETURNN's length formula, then `remove_padding` sliced off)."""
    tf = pytest.importorskip("tensorflow")
    layer = {"n_out": 4, **opts}
    net, x, values, lengths = compile_and_run(layer, "data", seed=2)
    W = net.variable("output/W").numpy()
    bias = net.variable("output/b").numpy() if opts.get("with_bias", True) else 0.0
    f = opts["filter_size"][0]
    s = per_axis(opts.get("strides"), 1, f)[0]
    p = per_axis(opts.get("output_padding"), 1, None)[0]
    r = per_axis(opts.get("remove_padding"), 1, 0)[0]
    padding = opts.get("padding", "same")
    for b in range(B):
        n = int(LENS[b])
        size = returnn_out_len(n, f, s, padding, p, 0)
        y = tf.nn.conv2d_transpose(
            x["data"][b : b + 1, :n, None, :],
            W[:, None],
            output_shape=[1, size, 1, 4],
            strides=[1, s, 1, 1],
            padding=padding.upper(),
        ).numpy()[0, :, 0]
        y = y[r : size - r] + bias
        np.testing.assert_allclose(values[b, : lengths[b]], y, atol=1e-4, rtol=1e-5)


def test_padding_invariance_and_chaining():
    """More padded frames change nothing; the new time axis feeds the next layer (a conv back
    down with stride 2) with its own lengths."""
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(
        {
            "extern_data": {"data": {"dim": 6}},
            "network": {
                "up": {
                    "class": "transposed_conv",
                    "filter_size": [4],
                    "strides": 2,
                    "n_out": 5,
                    "padding": "valid",
                },
                "output": {
                    "class": "conv",
                    "from": "up",
                    "filter_size": [2],
                    "strides": 2,
                    "padding": "valid",
                    "n_out": 3,
                },
            },
        }
    )
    rng = np.random.default_rng(5)
    x = rng.normal(size=(B, T, 6)).astype(np.float32)
    longer = np.concatenate([x, 50 * rng.normal(size=(B, 4, 6)).astype(np.float32)], axis=1)
    short = net(inputs={"data": x}, lengths={"data": LENS}, fetch=["up", "output"])
    long = net(inputs={"data": longer}, lengths={"data": LENS}, fetch=["up", "output"])
    for name in ("up", "output"):
        (va, lena), (vc, lenc) = short[name], long[name]
        np.testing.assert_array_equal(lena.numpy(), lenc.numpy())
        for b, n in enumerate(lena.numpy()):
            np.testing.assert_allclose(va.numpy()[b, :n], vc.numpy()[b, :n], atol=1e-5)
    # up: 2n + 2; output: valid conv f=2, s=2: ceil((2n + 2 - 1) / 2) = n + 1
    np.testing.assert_array_equal(short["up"][1].numpy(), 2 * LENS + 2)
    np.testing.assert_array_equal(short["output"][1].numpy(), LENS + 1)
