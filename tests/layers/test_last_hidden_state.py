"""`get_last_hidden_state` of cells: the final LSTM state c‖h (RETURNN's `key: "*"` of
`LSTMStateTuple(c, h)`), `key: c` / `key: h`, GRU's h; checked against the NumPy LSTM of
numpy_reference (ragged lengths, both directions) and, for shapes, without TensorFlow."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from netcompiler.frontend.validate import validate  # noqa: E402

import numpy_reference as ref  # noqa: E402

LENS = np.array([5, 2, 6, 1], np.int32)  # max 6 < T = 7: every sequence has padding
B, T, N_IN, N = 4, 7, 5, 3


def _check(network, extern=None):
    return validate({"extern_data": extern or {"data": {"dim": N_IN}}, "network": network})


def _errors(r, rule):
    return [d for d in r.errors if d.rule == rule]


# -- shapes (no TensorFlow) -------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["lstm", "nativelstm2", "standardlstm", "lstmblock"])
def test_lstm_state_is_c_and_h(unit):
    r = _check(
        {
            "l": {"class": "rec", "unit": unit, "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "l", "n_out": 8},
        }
    )
    assert not r.errors, [str(d) for d in r.errors]
    assert str(r.inferred.shapes["output"]) == "[B, F=8]"
    for key in ("c", "h"):
        r = _check(
            {
                "l": {"class": "rec", "unit": unit, "from": "data", "n_out": 4},
                "output": {"class": "get_last_hidden_state", "from": "l", "n_out": 4, "key": key},
            }
        )
        assert not r.errors, [str(d) for d in r.errors]


def test_state_sizes_and_keys():
    # rnn_cell over time is an LSTM too; `flat` is the whole state; combine adds the states
    r = _check(
        {
            "l": {"class": "rnn_cell", "unit": "lstm", "from": "data", "n_out": 4},
            "m": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4, "direction": -1},
            "output": {
                "class": "get_last_hidden_state",
                "from": ["l", "m"],
                "n_out": 8,
                "combine": "add",
                "key": "flat",
            },
        }
    )
    assert not r.errors, [str(d) for d in r.errors]
    # GRU: the state is h
    r = _check(
        {
            "g": {"class": "rec", "unit": "gru", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "g", "n_out": 4},
        }
    )
    assert not r.errors, [str(d) for d in r.errors]
    r = _check(
        {
            "g": {"class": "rec", "unit": "gru", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "g", "n_out": 4, "key": "c"},
        }
    )
    (e,) = _errors(r, "shape.state-key")
    assert e.dotted_path == "network.output.key"
    # the old size (h only) is now wrong, and the message says why
    r = _check(
        {
            "l": {"class": "rec", "unit": "nativelstm2", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "l", "n_out": 4},
        }
    )
    (e,) = _errors(r, "shape.n-out")
    assert "state size 8" in e.message and "c‖h" in e.message
    # a non-recurrent input: its last frame (h); no `c`
    r = _check(
        {
            "lin": {"class": "linear", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "lin", "n_out": 4},
        }
    )
    assert not r.errors, [str(d) for d in r.errors]
    r = _check(
        {
            "lin": {"class": "linear", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "lin", "n_out": 4, "key": "c"},
        }
    )
    assert _errors(r, "shape.state-key")
    r = _check(
        {
            "l": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
            "output": {"class": "get_last_hidden_state", "from": "l", "n_out": 4, "key": 1},
        }
    )
    assert _errors(r, "shape.state-key")


def test_in_loop_lstm_state_is_a_validation_error():
    def net(key, n_out):
        return {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "s": {"class": "rnn_cell", "unit": "lstm", "from": "data:source", "n_out": 4},
                    "st": {
                        "class": "get_last_hidden_state",
                        "from": "prev:s",
                        "n_out": n_out,
                        **({"key": key} if key else {}),
                    },
                    "output": {"class": "linear", "from": ["s", "st"], "n_out": 2},
                },
            }
        }

    r = _check(net(None, 8))
    (e,) = _errors(r, "shape.state-key")
    assert e.dotted_path == "network.output.unit.st.key"
    assert "inside a rec unit" in e.message
    assert _errors(_check(net("c", 4)), "shape.state-key")
    r = _check(net("h", 4))  # the output is available
    assert not r.errors, [str(d) for d in r.errors]


# -- values (TensorFlow) ----------------------------------------------------------------------------
def _build(network, seed=1):
    from netcompiler.backend.build import compile_network

    return compile_network({"extern_data": {"data": {"dim": N_IN}}, "network": network}, seed=seed)


def _fetch(net, name, x, lens):
    values, _ = net(inputs={"data": x}, lengths={"data": lens}, fetch=[name])[name]
    return values.numpy()


def _ref_lstm(net, name, x, lens, direction):
    W = np.concatenate([net.variable(f"{name}/W").numpy(), net.variable(f"{name}/W_re").numpy()])
    return ref.lstm_sequence(
        x,
        lens,
        W,
        net.variable(f"{name}/b").numpy(),
        N,
        direction=direction,
        return_final_state=True,
    )


@pytest.mark.parametrize("lens", [LENS, np.array([5, 0, 6, 1], np.int32)])
def test_lstm_final_state_against_numpy(lens):
    pytest.importorskip("tensorflow")
    net = _build(
        {
            "fw": {"class": "rec", "unit": "nativelstm2", "from": "data", "n_out": N},
            "bw": {"class": "rec", "unit": "lstm", "from": "data", "n_out": N, "direction": -1},
            "cell": {"class": "rnn_cell", "unit": "lstm", "from": "data", "n_out": N},
            "all": {"class": "get_last_hidden_state", "from": ["fw", "bw"], "n_out": 4 * N},
            "c": {
                "class": "get_last_hidden_state",
                "from": ["fw", "bw"],
                "n_out": 2 * N,
                "key": "c",
            },
            "h_add": {
                "class": "get_last_hidden_state",
                "from": ["fw", "bw"],
                "n_out": N,
                "key": "h",
                "combine": "add",
            },
            "cell_state": {"class": "get_last_hidden_state", "from": "cell", "n_out": 2 * N},
            "output": {"class": "copy", "from": "fw"},
        }
    )
    x = np.random.RandomState(0).randn(B, T, N_IN).astype(np.float32)
    x[np.arange(T)[None, :] >= lens[:, None]] = 7.0  # padding must not matter
    _, (h_fw, c_fw) = _ref_lstm(net, "fw", x, lens, 1)
    _, (h_bw, c_bw) = _ref_lstm(net, "bw", x, lens, -1)
    _, (h_cell, c_cell) = _ref_lstm(net, "cell", x, lens, 1)
    assert not np.allclose(c_fw, h_fw)  # c and h differ, so the order is checked
    np.testing.assert_allclose(
        _fetch(net, "all", x, lens), np.concatenate([c_fw, h_fw, c_bw, h_bw], -1), atol=1e-5
    )
    np.testing.assert_allclose(
        _fetch(net, "c", x, lens), np.concatenate([c_fw, c_bw], -1), atol=1e-5
    )
    np.testing.assert_allclose(_fetch(net, "h_add", x, lens), h_fw + h_bw, atol=1e-5)
    np.testing.assert_allclose(
        _fetch(net, "cell_state", x, lens), np.concatenate([c_cell, h_cell], -1), atol=1e-5
    )
    # h is the output at the last processed frame (backward: frame 0)
    fw, bw = _fetch(net, "fw", x, lens), _fetch(net, "bw", x, lens)
    for b, n in enumerate(lens):
        if n:
            np.testing.assert_allclose(h_fw[b], fw[b, n - 1], atol=1e-5)
            np.testing.assert_allclose(h_bw[b], bw[b, 0], atol=1e-5)


def test_lstm_final_state_with_initial_state_and_gru():
    pytest.importorskip("tensorflow")
    net = _build(
        {
            "l": {
                "class": "rec",
                "unit": "lstm",
                "from": "data",
                "n_out": N,
                "initial_state": {"c": "ones", "h": 0.5},
            },
            "g": {"class": "rec", "unit": "gru", "from": "data", "n_out": N, "direction": -1},
            "ls": {"class": "get_last_hidden_state", "from": "l", "n_out": 2 * N},
            "gs": {"class": "get_last_hidden_state", "from": "g", "n_out": N},
            "output": {"class": "copy", "from": "l"},
        }
    )
    lens = np.array([5, 0, 6, 1], np.int32)
    x = np.random.RandomState(1).randn(B, T, N_IN).astype(np.float32)
    W, W_re, b = (net.variable(f"l/{p}").numpy().astype(np.float64) for p in ("W", "W_re", "b"))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    want = []
    for bb, n in enumerate(lens):
        c, h = np.ones(N), np.full(N, 0.5)
        for t in range(n):
            i, j, f, o = np.split(x[bb, t] @ W + h @ W_re + b, 4)
            c = sig(f) * c + sig(i) * np.tanh(j)
            h = sig(o) * np.tanh(c)
        want.append(np.concatenate([c, h]))  # an empty sequence keeps the initial state
    np.testing.assert_allclose(_fetch(net, "ls", x, lens), np.array(want), atol=1e-5)
    g = _fetch(net, "g", x, lens)
    gs = _fetch(net, "gs", x, lens)
    for bb, n in enumerate(lens):
        np.testing.assert_allclose(gs[bb], g[bb, 0] if n else np.zeros(N), atol=1e-5)
