"""TensorFlow builders of the basic layers against independent NumPy computations, on ragged
batches whose padding holds random values (compared on valid frames; padding must stay finite).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402

import numpy_reference  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

B, T, T2, F = 3, 6, 4, 5
LEN = np.array([6, 4, 1], dtype=np.int32)
LEN2 = np.array([2, 4, 3], dtype=np.int32)
RNG = np.random.default_rng(1234)
DATA = RNG.normal(size=(B, T, F)).astype(np.float32)
POS = RNG.uniform(0.2, 3.0, size=(B, T, F)).astype(np.float32)
OTHER = RNG.normal(size=(B, T2, F)).astype(np.float32)
VEC = RNG.normal(size=(B, F)).astype(np.float32)
CLASSES = RNG.integers(0, 7, size=(B, T)).astype(np.int32)
GRID = RNG.normal(size=(B, T, 3, F)).astype(np.float32)
# padding: random values, some of them huge or negative so that unmasked use shows up
for arr in (DATA, POS, CLASSES, GRID):
    for b, n in enumerate(LEN):
        arr[b, n:] = RNG.uniform(-50, 50, size=arr[b, n:].shape).astype(arr.dtype)
for b, n in enumerate(LEN2):
    OTHER[b, n:] = RNG.uniform(-50, 50, size=OTHER[b, n:].shape)

EXTERN = {
    "data": {"dim": F},
    "pos": {"dim": F, "same_time_as": "data"},
    "other": {"dim": F},
    "vec": {"shape": [F]},
    "classes": {"dim": 7, "sparse": True, "same_time_as": "data"},
    "grid": {"shape": [None, 3, F], "same_time_as": "data"},
}
INPUTS = {"data": DATA, "pos": POS, "other": OTHER, "vec": VEC, "classes": CLASSES, "grid": GRID}
LENGTHS = {"data": LEN, "pos": LEN, "other": LEN2, "classes": LEN, "grid": LEN}
TOL = dict(rtol=1e-5, atol=1e-5)


def build(network: dict, fetch, training=False, seed=None):
    net = dict(network)
    net.setdefault("output", {"class": "copy", "from": fetch[0]})
    compiled = compile_network({"extern_data": EXTERN, "network": net}, seed=seed)
    keys = {k for k in EXTERN}
    out = compiled(
        inputs={k: INPUTS[k] for k in keys},
        lengths={k: LENGTHS[k] for k in keys if k in LENGTHS},
        training=training,
        fetch=list(fetch),
    )
    return compiled, {
        k: (v.numpy(), None if lens is None else lens.numpy()) for k, (v, lens) in out.items()
    }


def valid(x, lengths=LEN, axis=1):
    """Boolean mask of valid frames broadcastable to x (time axis `axis`)."""
    t = x.shape[axis]
    m = np.arange(t)[None, :] < lengths[:, None]  # [B, T]
    shape = [1] * x.ndim
    shape[0], shape[axis] = x.shape[0], t
    return np.broadcast_to(m.reshape(shape), x.shape)


def assert_valid_close(got, want, lengths=LEN, axis=1, **tol):
    assert got.shape == want.shape, (got.shape, want.shape)
    m = valid(got, lengths, axis)
    np.testing.assert_allclose(got[m], want[m], **(tol or TOL))
    if got.dtype.kind == "f":
        assert np.isfinite(got).all(), "padded frames must stay finite"


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


X64 = DATA.astype(np.float64)
P64 = POS.astype(np.float64)

#: the activations checked on DATA (log and sqrt: on the positive POS, below); references:
#: numpy_reference.activation
ACTIVATIONS = (
    "relu",
    "2*sigmoid",
    "0.5*tanh",
    "gelu",
    "swish",
    "silu",
    "elu",
    "selu",
    "leaky_relu",
    "relu6",
    "softplus",
    "softsign",
    "log_sigmoid",
    "hard_sigmoid",
    "softmax",
    "log_softmax",
    "abs",
    "square",
    "exp",
    "identity",
)


def test_activation_builders():
    net = {
        f"a{i}": {"class": "activation", "from": "data", "activation": name}
        for i, name in enumerate(ACTIVATIONS)
    }
    # log and sqrt of a positive input: the padding (negative values) must still come out finite
    net["log"] = {"class": "activation", "from": "data:pos", "activation": "log"}
    net["sqrt"] = {"class": "activation", "from": "data:pos", "activation": "3*sqrt"}
    _, out = build(net, list(net))
    for i, name in enumerate(ACTIVATIONS):
        got, lengths = out[f"a{i}"]
        np.testing.assert_array_equal(lengths, LEN)
        assert got.dtype == np.float32
        assert_valid_close(got, numpy_reference.activation(name, X64))
    assert_valid_close(out["log"][0], np.log(P64))
    assert_valid_close(out["sqrt"][0], 3 * np.sqrt(P64))


def test_copy_builder_concatenates():
    _, out = build(
        {
            "c": {"class": "copy", "from": ["data", "data:pos"]},
            "s": {"class": "copy", "from": "data:classes"},
        },
        ["c", "s"],
    )
    assert_valid_close(out["c"][0], np.concatenate([X64, P64], axis=-1))
    got = out["s"][0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got[valid(got)], CLASSES[valid(CLASSES)])


COMBINE = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "average": lambda a, b: (a + b) / 2,
}


def test_combine_builders_broadcast_missing_axis():
    net = {}
    for kind in COMBINE:
        net[kind] = {"class": "combine", "kind": kind, "from": ["data", "data:pos"]}
        net[kind + "_bc"] = {"class": "combine", "kind": kind, "from": ["data:vec", "data"]}
    net["act"] = {
        "class": "combine",
        "kind": "add",
        "from": ["data", "data:pos"],
        "activation": "tanh",
    }
    net["three"] = {"class": "combine", "kind": "sub", "from": ["data", "data:pos", "data:vec"]}
    _, out = build(net, list(net))
    v = VEC.astype(np.float64)[:, None, :]
    for kind, ref in COMBINE.items():
        assert_valid_close(out[kind][0], ref(X64, P64))
        assert_valid_close(out[kind + "_bc"][0], ref(np.broadcast_to(v, X64.shape), X64))
    assert_valid_close(out["act"][0], np.tanh(X64 + P64))
    assert_valid_close(out["three"][0], X64 - P64 - v)


def test_combine_two_time_axes():
    _, out = build(
        {"c": {"class": "combine", "kind": "mul", "from": ["data", "data:other"]}}, ["c"]
    )
    got, _ = out["c"]
    assert got.shape == (B, T, T2, F)
    want = X64[:, :, None, :] * OTHER.astype(np.float64)[:, None, :, :]
    m = valid(got, LEN, 1) & valid(got, LEN2, 2)
    np.testing.assert_allclose(got[m], want[m], **TOL)
    assert np.isfinite(got).all()


def test_combine_int_lengths_and_truediv():
    net = {
        "l": {"class": "length", "from": "data"},
        "l2": {"class": "length", "from": "data:other"},
        "s": {"class": "combine", "kind": "add", "from": ["l", "l2"]},
        "d": {"class": "combine", "kind": "truediv", "from": ["l", "l2"]},
    }
    _, out = build(net, ["s", "d"])
    assert out["s"][0].dtype == np.int32
    np.testing.assert_array_equal(out["s"][0], LEN + LEN2)
    assert out["d"][0].dtype == np.float32
    np.testing.assert_allclose(out["d"][0], LEN / LEN2, rtol=1e-6)


def test_eval_builders():
    net = {
        "step": {"class": "eval", "from": "data", "eval": "2 * tf.sigmoid(source(0))"},
        "mix": {
            "class": "eval",
            "from": ["data", "data:vec", "data:pos"],
            "eval": "tf.clip_by_value(source(0), -1.0, 1.0) * source(1) "
            "+ tf.math.log(source(2)) / 2 - source(2) ** 2",
        },
        "cast": {
            "class": "eval",
            "from": "data:classes",
            "eval": "tf.cast(source(0), tf.float32) * 0.5 + 1",
        },
        "shift": {"class": "eval", "from": "data:classes", "eval": "source(0) + 1"},
        # an input the expression does not use still shapes the output (broadcast)
        "unused": {"class": "eval", "from": ["data:vec", "data"], "eval": "tf.exp(source(0))"},
        "comb": {
            "class": "combine",
            "kind": "eval",
            "from": ["data", "data:pos"],
            "eval": "tf.maximum(source(0), source(1)) - tf.nn.relu(source(0))",
            "activation": "2*sigmoid",
        },
    }
    compiled, out = build(net, list(net))
    assert_valid_close(out["step"][0], 2 * sigmoid(X64))
    v = VEC.astype(np.float64)[:, None, :]
    assert_valid_close(out["mix"][0], np.clip(X64, -1, 1) * v + np.log(P64) / 2 - P64**2)
    got = out["cast"][0]
    assert got.shape == (B, T) and got.dtype == np.float32
    assert_valid_close(got, CLASSES * 0.5 + 1)
    got = out["shift"][0]
    assert got.dtype == np.int32 and str(compiled.shape("shift")) == "[B, T(data)] sparse(7)"
    np.testing.assert_array_equal(got[valid(got)], (CLASSES + 1)[valid(got)])
    got = out["unused"][0]
    assert got.shape == (B, T, F)
    assert_valid_close(got, np.broadcast_to(np.exp(v), X64.shape))
    assert_valid_close(out["comb"][0], 2 * sigmoid(np.maximum(X64, P64) - np.maximum(X64, 0)))


def test_dropout_builder():
    # every entry its own noise (the default mask is per feature: tests/layers/test_layer_options.py)
    net = {
        "d": {
            "class": "dropout",
            "from": "data:pos",
            "dropout": 0.5,
            "dropout_noise_shape": {"*": None},
        }
    }
    _, out = build(net, ["d"])
    assert_valid_close(out["d"][0], P64)  # inference: identity
    _, out = build(net, ["d"], training=True, seed=3)
    got = out["d"][0]
    m = valid(got)
    kept = got[m] != 0
    np.testing.assert_allclose(got[m][kept], 2 * P64[m][kept], rtol=1e-6)
    assert 0.2 < kept.mean() < 0.8


def test_layer_norm_builder():
    net = {
        "ln": {"class": "layer_norm", "from": "data", "epsilon": 1e-3},
        "ln4": {"class": "layer_norm", "from": "data:grid"},
    }
    compiled, _ = build(net, ["ln"])
    scale = RNG.normal(size=F).astype(np.float32)
    bias = RNG.normal(size=F).astype(np.float32)
    compiled.variable("ln/scale").assign(scale)
    compiled.variable("ln/bias").assign(bias)
    assert compiled.variable("ln4/scale").numpy().tolist() == [1.0] * F
    assert compiled.variable("ln4/bias").numpy().tolist() == [0.0] * F
    out = compiled(inputs=INPUTS, lengths=LENGTHS, fetch=["ln", "ln4"])

    def ref(x, eps, s=1.0, b=0.0):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * s + b

    assert_valid_close(out["ln"][0].numpy(), ref(X64, 1e-3, scale, bias))
    assert_valid_close(out["ln4"][0].numpy(), ref(GRID.astype(np.float64), 1e-6))


def test_constant_builder():
    net = {
        "k": {"class": "constant", "from": [], "value": [[1, 2, 3], [4, 5, 6]]},
        "s": {"class": "constant", "from": [], "value": 2.5},
        "kb": {"class": "constant", "from": [], "value": [0.5, -1.0], "with_batch_dim": True},
        "m": {"class": "combine", "kind": "mul", "from": ["data", "s"]},
    }
    _, out = build(net, list(net))
    got = out["k"][0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [[1, 2, 3], [4, 5, 6]])
    assert out["s"][0].shape == () and out["s"][0] == np.float32(2.5)
    np.testing.assert_array_equal(out["kb"][0], np.tile([[0.5, -1.0]], (B, 1)))
    assert_valid_close(out["m"][0], 2.5 * X64)


def test_compare_builder():
    net = {
        "eq": {"class": "compare", "from": "data:classes", "kind": "equal", "value": 0},
        "gt": {"class": "compare", "from": ["data", "data:vec"], "kind": "greater"},
        "le": {"class": "compare", "from": ["data", "data:pos"], "kind": "less_equal"},
        "ne": {"class": "compare", "from": "data", "kind": "not_equal", "value": 0.5},
    }
    _, out = build(net, list(net))
    v = VEC[:, None, :]
    checks = {"eq": CLASSES == 0, "gt": DATA > v, "le": DATA <= POS, "ne": DATA != 0.5}
    for name, want in checks.items():
        got = out[name][0]
        assert got.dtype == np.bool_ and got.shape == want.shape
        m = valid(got)
        np.testing.assert_array_equal(got[m], want[m])
        assert not got[~m].any(), "padded frames of a comparison are False"


def test_length_builder():
    _, out = build(
        {
            "l": {"class": "length", "from": "data"},
            "l2": {"class": "length", "from": "data:other", "axis": "stag:other"},
        },
        ["l", "l2"],
    )
    np.testing.assert_array_equal(out["l"][0], LEN)
    np.testing.assert_array_equal(out["l2"][0], LEN2)
    assert out["l"][0].dtype == np.int32


def test_reinterpret_data_builder():
    net = {
        "dense": {"class": "reinterpret_data", "from": "data:classes", "set_sparse": False},
        "more": {"class": "reinterpret_data", "from": "data:classes", "increase_sparse_dim": 2},
        "based": {"class": "reinterpret_data", "from": "data:other", "size_base": "data"},
        "nof": {"class": "reinterpret_data", "from": "data:grid", "set_axes": {"F": None}},
        "f3": {"class": "reinterpret_data", "from": "data:grid", "set_axes": {"F": "dim:3"}},
        "kb": {
            "class": "constant",
            "from": [],
            "value": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            "with_batch_dim": True,
        },
        "kt": {"class": "reinterpret_data", "from": "kb", "set_axes": {"T": "dim:3"}},
        "kt_len": {"class": "length", "from": "kt"},
    }
    compiled, out = build(net, list(net))
    got, lengths = out["dense"]
    assert got.dtype == np.int32 and str(compiled.shape("dense")) == "[B, T(data)] int32"
    np.testing.assert_array_equal(got[valid(got)], CLASSES[valid(got)])
    np.testing.assert_array_equal(lengths, LEN)
    assert str(compiled.shape("more")) == "[B, T(data)] sparse(9)"
    # size_base: T(other) (max 4) becomes T(data) (max 6): padded, lengths of `data`
    got, lengths = out["based"]
    assert got.shape == (B, T, F)
    np.testing.assert_array_equal(lengths, LEN)
    np.testing.assert_allclose(got[:, :T2], OTHER)
    got = out["nof"][0]
    np.testing.assert_allclose(got[valid(got)], GRID[valid(got)])
    got = out["f3"][0]
    assert got.shape == (B, T, F, 3)
    want = np.transpose(GRID, (0, 1, 3, 2))
    np.testing.assert_allclose(got[valid(got)], want[valid(got)])
    got, lengths = out["kt"]
    assert got.shape == (B, 3, 2) and str(compiled.shape("kt")) == "[B, T(kt), F=2]"
    np.testing.assert_array_equal(lengths, [3, 3, 3])
    np.testing.assert_array_equal(out["kt_len"][0], [3, 3, 3])


def test_gauss_window_step_pattern_outside_rec():
    """`2 * sigmoid(linear(s))` then `combine add` (the location update of copy_gauss_window)."""
    net = {
        "logit": {"class": "linear", "from": "data", "n_out": 1},
        "step": {"class": "eval", "from": "logit", "eval": "2 * tf.sigmoid(source(0))"},
        "loc": {"class": "combine", "kind": "add", "from": ["step", "step"]},
    }
    compiled, out = build(net, ["logit", "step", "loc"])
    logit = out["logit"][0].astype(np.float64)
    assert_valid_close(out["step"][0], 2 * sigmoid(logit))
    assert_valid_close(out["loc"][0], 4 * sigmoid(logit))


# -- cells: sparse input (rows of W), RETURNN's unit names and forget bias -----------------------


def _np_cell(xp, lengths, W_re, gru=False, forget_bias=0.0, direction=1):
    """NumPy LSTM (gate blocks i, j, f, o; `forget_bias` added to f) / GRU (z, r, h) over the
    projected input xp [B, T, G*n]; state frozen and output 0 at padded frames."""
    Bn, Tn, _ = xp.shape
    n = W_re.shape[0]
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    out = np.zeros((Bn, Tn, n))
    for b in range(Bn):
        h, c = np.zeros(n), np.zeros(n)
        frames = range(lengths[b]) if direction == 1 else range(lengths[b] - 1, -1, -1)
        for t in frames:
            z = xp[b, t]
            if gru:
                zz, zr, zh = np.split(z, 3)
                uz, ur, uh = np.split(W_re, 3, axis=1)
                u, r = sig(zz + h @ uz), sig(zr + h @ ur)
                h = u * h + (1 - u) * np.tanh(zh + (r * h) @ uh)
            else:
                i, j, f, o = np.split(z + h @ W_re, 4)
                c = sig(f + forget_bias) * c + sig(i) * np.tanh(j)
                h = sig(o) * np.tanh(c)
            out[b, t] = h
    return out


@pytest.mark.parametrize(
    "cls, unit, direction",
    [("rec", "NativeLstm2", 1), ("rec", "lstm", -1), ("rec", "GRU", 1), ("rnn_cell", "LSTM", 1)],
)
def test_cell_over_sparse_input_looks_up_rows_of_W(cls, unit, direction):
    """Sparse labels into a cell: rows of W (= one-hot @ W), padded labels out of range."""
    layer = {"class": cls, "unit": unit, "n_out": 4, "from": "data:classes"}
    if cls == "rec":
        layer["direction"] = direction
    net, out = build({"r": layer}, ["r"])
    W, W_re, bias = (net.variable(f"r/{p}").numpy().astype(np.float64) for p in ("W", "W_re", "b"))
    assert W.shape[0] == 7
    idx = np.where(valid(CLASSES, axis=1), CLASSES, 0)
    xp = W[idx] + bias  # gathered rows
    want = _np_cell(xp, LEN, W_re, gru=unit.lower() == "gru", direction=direction)
    np.testing.assert_allclose(out["r"][0], want, **TOL)


@pytest.mark.parametrize(
    "cls, unit, opts, bias",
    [
        ("rec", "StandardLSTM", None, 1.0),
        ("rec", "BasicLSTM", {"forget_bias": 0.25}, 0.25),
        ("rec", "LSTMBlock", None, 0.0),  # NativeLSTM2 over time
        ("rnn_cell", "LSTMBlock", None, 1.0),  # StandardLSTM as a cell
        ("rec", "NativeLSTM", None, 0.0),
        ("rnn_cell", "standardlstm", {"forget_bias": 2.0}, 2.0),
    ],
)
def test_lstm_unit_forget_bias(cls, unit, opts, bias):
    """TF's LSTMCell (RETURNN's StandardLSTM, BasicLSTM; LSTMBlock as a cell) adds
    `forget_bias` (default 1) to the forget gate; the native LSTMs do not."""
    layer = {"class": cls, "unit": unit, "n_out": 3, "from": "data"}
    if opts:
        layer["unit_opts"] = opts
    net, out = build({"r": layer}, ["r"])
    W, W_re, b = (net.variable(f"r/{p}").numpy().astype(np.float64) for p in ("W", "W_re", "b"))
    xp = DATA.astype(np.float64) @ W + b
    np.testing.assert_allclose(out["r"][0], _np_cell(xp, LEN, W_re, forget_bias=bias), **TOL)


def test_lstm_forget_bias_per_step_in_a_loop():
    """`rnn_cell` with StandardLSTM inside a rec unit (one step per frame) adds the forget bias
    as over time; a sparse frame looks up rows of W."""
    for src, lab in (("data:source", False), ("data:classes", True)):
        net, out = build(
            {
                "loop": {
                    "class": "rec",
                    "from": "data",
                    "optimize_move_layers_out": False,
                    "unit": {
                        "output": {
                            "class": "rnn_cell",
                            "unit": "StandardLSTM",
                            "from": src,
                            "n_out": 3,
                        }
                    },
                }
            },
            ["loop"],
        )
        W, W_re, b = (
            net.variable(f"loop/output/{p}").numpy().astype(np.float64) for p in ("W", "W_re", "b")
        )
        xp = (
            W[np.where(valid(CLASSES, axis=1), CLASSES, 0)] if lab else DATA.astype(np.float64) @ W
        ) + b
        want = _np_cell(xp, LEN, W_re, forget_bias=1.0)
        got = out["loop"][0]
        for i in range(B):
            np.testing.assert_allclose(got[i, : LEN[i]], want[i, : LEN[i]], **TOL)
