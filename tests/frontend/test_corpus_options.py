"""Options RETURNN corpus networks use: documented no-ops (`unroll`, `collocate_with`,
`loss_only_on_non_search`, `enforce_batch_major`, `auto_use_channel_first`,
`explicit_search_source`), `initial_output: true` / `apply(0)`, `grad_filter`,
`dot` `add_var2_if_empty`, `conv` `in_spatial_dims` / `input_add_feature_dim` and the LSTM
peepholes of `unit_opts: {use_peepholes: true}`, each against a NumPy re-implementation."""

import numpy as np
import pytest

from netcompiler.frontend.validate import validate


def _errors(cfg):
    return [(d.rule, d.message) for d in validate(cfg).errors]


# -- validation only (no TensorFlow) ---------------------------------------------------------------


def test_noop_options_validate():
    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}},
        "network": {
            "lstm": {
                "class": "rec",
                "unit": "standardlstm",
                "unroll": True,
                "max_seq_len": 9,
                "n_out": 5,
                "from": "data",
            },
            "re": {"class": "reinterpret_data", "from": "lstm", "enforce_batch_major": True},
            "ev": {
                "class": "eval",
                "from": "re",
                "eval": "source(0) * 2",
                "collocate_with": ["lstm"],
            },
            "conv": {
                "class": "conv",
                "from": "ev",
                "filter_size": [3],
                "n_out": 2,
                "auto_use_channel_first": False,
            },
            "output": {
                "class": "softmax",
                "from": "conv",
                "target": "classes",
                "loss": "ce",
                "loss_only_on_non_search": True,
            },
        },
    }
    cfg["extern_data"]["classes"]["same_time_as"] = "data"
    assert _errors(cfg) == []


def test_explicit_search_source_must_name_a_layer():
    def cfg(src):
        return {
            "extern_data": {"data": {"dim": 4}, "classes": {"dim": 4, "sparse": True}},
            "network": {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "target": "classes",
                    "unit": {
                        "output": {
                            "class": "choice",
                            "from": "data:source",
                            "beam_size": 2,
                            "target": "classes",
                            "initial_output": 0,
                            "explicit_search_source": src,
                        }
                    },
                }
            },
        }

    assert _errors(cfg("prev:output")) == []
    [(rule, msg)] = _errors(cfg("prev:outptu"))
    assert rule == "graph.unknown-layer" and "outptu" in msg


def _unit_config(init, klass="linear", extra=None):
    unit = {
        "s": {
            "class": klass,
            "from": ["prev:s", "data:source"],
            "n_out": 3,
            "activation": "tanh",
            "initial_output": init,
        },
        "output": {"class": "copy", "from": "s"},
    }
    if klass == "rnn_cell":
        unit["s"] = {
            "class": "rnn_cell",
            "unit": "lstm",
            "from": "data:source",
            "n_out": 3,
            "initial_output": init,
        }
    unit.update(extra or {})
    return {
        "extern_data": {"data": {"dim": 4}},
        "network": {
            "dec": {"class": "rec", "from": "data", "unit": unit},
            "output": {"class": "copy", "from": "dec"},
        },
    }


def test_initial_output_bool_and_apply0_validate():
    assert _errors(_unit_config(True)) == []
    assert _errors(_unit_config(False)) == []
    assert _errors(_unit_config("apply(0)")) == []


def test_initial_output_apply0_refused_where_undefined():
    [(rule, msg)] = _errors(_unit_config("apply(0)", klass="rnn_cell"))
    assert rule == "shape.initial-output" and "rnn_cell" in msg
    cfg = _unit_config(
        "apply(0)",
        extra={
            "w": {"class": "linear", "from": "data:source", "n_out": 3},
            "o": {
                "class": "combine",
                "kind": "add",
                "from": ["prev:o", "w"],
                "n_out": 3,
                "initial_output": "apply(0)",
            },
            "output": {"class": "copy", "from": ["s", "o"]},
        },
    )
    assert _errors(cfg) == []  # `from` inputs only: fine
    cfg["network"]["dec"]["unit"]["a"] = {
        "class": "generic_attention",
        "base": "base:enc",
        "weights": "w2",
        "initial_output": "apply(0)",
    }
    errs = _errors(cfg)
    assert errs and all(rule != "schema.enum" for rule, _ in errs)


def test_use_peepholes_only_for_tf_lstm_cells():
    cfg = {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "output": {
                "class": "rec",
                "unit": "standardlstm",
                "n_out": 4,
                "from": "data",
                "unit_opts": {"use_peepholes": True},
            }
        },
    }
    assert _errors(cfg) == []
    assert validate(cfg).inferred.params["output"]["w_f_diag"].shape == (4,)
    cfg["network"]["output"]["unit"] = "nativelstm2"
    [(rule, msg)] = _errors(cfg)
    assert rule == "shape.cell-unit" and "use_peepholes" in msg
    cfg["network"]["output"]["unit"] = "standardlstm"
    cfg["network"]["output"]["unit_opts"] = {"use_peepholes": 1}
    [(rule, _)] = _errors(cfg)
    assert rule == "shape.cell-unit"


def _conv_cfg(**conv):
    layer = {"class": "conv", "from": "data", "n_out": 2, "padding": "valid"}
    layer.update(conv)
    return {"extern_data": {"data": {"dim": 5}}, "network": {"output": layer}}


def test_conv_input_add_feature_dim_shape():
    result = validate(_conv_cfg(filter_size=[2, 3], input_add_feature_dim=True))
    assert not result.errors
    assert str(result.inferred.shapes["output"]) == "[B, T(output), S=3, F=2]"
    assert result.inferred.params["output"]["W"].shape == (2, 3, 1, 2)


def test_conv_in_spatial_dims_must_name_every_spatial_axis():
    cfg = _conv_cfg(filter_size=[2], in_spatial_dims=["T"])
    cfg["network"] = {
        "split": {"class": "split_dims", "from": "data", "axis": "F", "dims": [5, 1]},
        "output": dict(cfg["network"]["output"], **{"from": "split"}),
    }
    cfg["extern_data"]["data"]["dim"] = 5
    errs = _errors(cfg)
    assert [r for r, _ in errs] == ["shape.conv-dims"]
    assert "leaves out" in errs[0][1]


# -- compiled ---------------------------------------------------------------------------------------

tf = pytest.importorskip("tensorflow")
import netcompiler  # noqa: E402

RNG = np.random.default_rng(7)


def _run(net, x, lens, fetch="output", **kw):
    got = net(inputs={"data": x}, lengths={"data": lens}, fetch=[fetch], **kw)
    return got[fetch][0].numpy()


def _unrolled(W, b, x, lens, s0):
    """s_t = tanh([s_{t-1}, x_t] W + b) from s0."""
    out = np.zeros((x.shape[0], x.shape[1], W.shape[1]))
    for i in range(x.shape[0]):
        s = s0[i]
        for t in range(lens[i]):
            s = np.tanh(np.concatenate([s, x[i, t]]) @ W + b)
            out[i, t] = s
    return out


@pytest.mark.parametrize("init", [True, "apply(0)"])
def test_initial_output_bool_and_apply0_in_the_loop(init):
    net = netcompiler.compile(_unit_config(init), seed=3)
    b = np.array([0.3, -0.2, 0.1], np.float32)
    net.variable("dec/s/b").assign(b)
    W = net.variable("dec/s/W").numpy()
    x = RNG.standard_normal((3, 4, 4)).astype(np.float32)
    lens = np.array([4, 2, 1], np.int32)
    # true: the number 1; apply(0): tanh(0 W + b), the layer on zero inputs
    s0 = np.ones((3, 3)) if init is True else np.tile(np.tanh(b), (3, 1))
    want = _unrolled(W, b, x, lens, s0)
    got = _run(net, x, lens)
    for i, n in enumerate(lens):
        np.testing.assert_allclose(got[i, :n], want[i, :n], atol=1e-5)


def test_initial_output_apply0_of_an_embedding_is_row_zero():
    # `emb` reads only the current frame: computed outside the loop; `prev:emb` at step 0 is
    # the embedding of class 0 (RETURNN feeds zeros, i.e. label 0, to a sparse input)
    cfg = {
        "extern_data": {"data": {"dim": 6, "sparse": True}},
        "network": {
            "dec": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "emb": {
                        "class": "linear",
                        "from": "data:source",
                        "n_out": 3,
                        "initial_output": "apply(0)",
                        "bias_init": 0.5,
                    },
                    "output": {"class": "copy", "from": "prev:emb"},
                },
            },
            "output": {"class": "copy", "from": "dec"},
        },
    }
    net = netcompiler.compile(cfg, seed=1)
    W = net.variable("dec/emb/W").numpy()
    x = RNG.integers(1, 6, size=(2, 4)).astype(np.int32)
    lens = np.array([4, 3], np.int32)
    got = _run(net, x, lens)
    for i, n in enumerate(lens):
        want = np.concatenate([W[[0]], W[x[i, : n - 1]]]) + 0.5
        np.testing.assert_allclose(got[i, :n], want, atol=1e-6)


@pytest.mark.parametrize("klass", ["linear", "softmax"])
def test_grad_filter_drops_large_gradients_per_sequence(klass):
    thr = 1.0
    cfg = {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "out": {
                "class": klass,
                "from": "data",
                "n_out": 2,
                "grad_filter": thr,
                "bias_init": 0.1,
            },
            "output": {"class": "copy", "from": "out"},
        },
    }
    net = netcompiler.compile(cfg, seed=2)
    x = RNG.standard_normal((3, 4, 3)).astype(np.float32)
    lens = np.full(3, 4, np.int32)
    C = RNG.uniform(-0.5, 0.5, (3, 4, 2)).astype(np.float32)
    C[1, 2, 0] = 20.0  # sequence 1 gets a large gradient: dropped
    W = net.variable("out/W")
    with tf.GradientTape() as tape:
        y = net(inputs={"data": x}, lengths={"data": lens}, fetch=["out"], training=True)["out"][0]
        loss = tf.reduce_sum(y * C)
    got = tape.gradient(loss, W).numpy()
    Wn, b = W.numpy(), net.variable("out/b").numpy()
    z = x @ Wn + b
    if klass == "softmax":  # the gradient before the softmax
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        g = p * (C - (p * C).sum(-1, keepdims=True))
    else:
        g = C
    keep = (g**2).max(axis=(1, 2)) < thr
    assert keep.tolist() == [True, False, True]
    want = np.einsum("btf,bto->fo", x[keep], g[keep])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the forward pass is unchanged
    np.testing.assert_allclose(y.numpy(), z if klass == "linear" else p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("add", [False, True])
def test_dot_add_var2_if_empty(add):
    cfg = {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "q": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
            "output": {
                "class": "dot",
                "from": ["data", "q"],
                "red1": "F",
                "red2": "F",
                "var1": "T",
                "var2": None,
                "add_var2_if_empty": add,
            },
        },
    }
    result = validate(cfg)
    assert not result.errors
    assert str(result.inferred.shapes["output"]) == ("[B, T(data), F=1]" if add else "[B, T(data)]")
    net = netcompiler.compile(cfg)
    x = RNG.standard_normal((2, 3, 3)).astype(np.float32)
    lens = np.array([3, 3], np.int32)
    got = _run(net, x, lens)
    want = np.einsum("btf,bf->bt", x, x.mean(1))
    np.testing.assert_allclose(got, want[..., None] if add else want, rtol=1e-5, atol=1e-6)


def _conv_valid(x, W, b):
    """NumPy 2-D valid convolution: x [B, N1, N2, C], W [k1, k2, C, O] -> [B, M1, M2, O]."""
    k1, k2 = W.shape[:2]
    B, N1, N2, _ = x.shape
    out = np.zeros((B, N1 - k1 + 1, N2 - k2 + 1, W.shape[-1]))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.einsum("bpqc,pqco->bo", x[:, i : i + k1, j : j + k2], W) + b
    return out


def test_conv_input_add_feature_dim_values():
    net = netcompiler.compile(
        _conv_cfg(filter_size=[2, 3], input_add_feature_dim=True, bias_init=0.2), seed=4
    )
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    lens = np.array([4, 4], np.int32)
    got = _run(net, x, lens)
    W = net.variable("output/W").numpy()
    np.testing.assert_allclose(got, _conv_valid(x[..., None], W, 0.2), rtol=1e-4, atol=1e-5)


def test_conv_in_spatial_dims_order():
    # [B, T, S=4, F=2]; `in_spatial_dims: [dim:4, T]` convolves S first, then T (RETURNN moves
    # the axes into that order: the output is [B, S', T', F])
    cfg = {
        "extern_data": {"data": {"dim": 8}},
        "network": {
            "split": {"class": "split_dims", "from": "data", "axis": "F", "dims": [4, 2]},
            "output": {
                "class": "conv",
                "from": "split",
                "n_out": 3,
                "padding": "valid",
                "filter_size": [2, 3],
                "in_spatial_dims": ["dim:4", "T"],
                "with_bias": False,
            },
        },
    }
    result = validate(cfg)
    assert not result.errors
    assert str(result.inferred.shapes["output"]) == "[B, S=3, T(output), F=3]"
    net = netcompiler.compile(cfg, seed=5)
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    lens = np.array([5, 5], np.int32)
    got = _run(net, x, lens)
    W = net.variable("output/W").numpy()
    xs = x.reshape(2, 5, 4, 2).transpose(0, 2, 1, 3)  # [B, S, T, F]
    np.testing.assert_allclose(got, _conv_valid(xs, W, 0.0), rtol=1e-4, atol=1e-5)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


@pytest.mark.parametrize("klass", ["rec", "rnn_cell"])
def test_lstm_peepholes_match_tf_lstmcell_formula(klass):
    n = 3
    if klass == "rec":
        network = {
            "output": {
                "class": "rec",
                "unit": "standardlstm",
                "n_out": n,
                "from": "data",
                "unit_opts": {"use_peepholes": True, "forget_bias": 0.5},
            }
        }
        prefix = "output/"
    else:  # one step per loop step inside a unit (kept in the loop)
        network = {
            "dec": {
                "class": "rec",
                "from": "data",
                "optimize_move_layers_out": False,
                "unit": {
                    "s": {
                        "class": "rnn_cell",
                        "unit": "standardlstm",
                        "n_out": n,
                        "from": "data:source",
                        "unit_opts": {"use_peepholes": True, "forget_bias": 0.5},
                    },
                    "output": {"class": "copy", "from": "s"},
                },
            },
            "output": {"class": "copy", "from": "dec"},
        }
        prefix = "dec/s/"
    net = netcompiler.compile({"extern_data": {"data": {"dim": 2}}, "network": network}, seed=6)
    p = {
        k: net.variable(prefix + k).numpy()
        for k in ("W", "W_re", "b", "w_i_diag", "w_f_diag", "w_o_diag")
    }
    p["b"] = RNG.uniform(-0.5, 0.5, p["b"].shape).astype(np.float32)
    net.variable(prefix + "b").assign(p["b"])
    x = RNG.standard_normal((2, 4, 2)).astype(np.float32)
    lens = np.array([4, 3], np.int32)
    got = _run(net, x, lens)
    # TF's LSTMCell with peepholes (gate blocks i, j, f, o)
    for bi in range(2):
        c, h = np.zeros(n), np.zeros(n)
        for t in range(lens[bi]):
            i, j, f, o = np.split(x[bi, t] @ p["W"] + h @ p["W_re"] + p["b"], 4)
            c_new = _sigmoid(f + 0.5 + p["w_f_diag"] * c) * c + _sigmoid(
                i + p["w_i_diag"] * c
            ) * np.tanh(j)
            h = _sigmoid(o + p["w_o_diag"] * c_new) * np.tanh(c_new)
            c = c_new
            np.testing.assert_allclose(got[bi, t], h, atol=1e-5)
