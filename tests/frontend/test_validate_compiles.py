"""What validates, compiles and runs.

For every conformance example, every example config and every network of the RETURNN corpus
(`tests/returnn_corpus/*.yaml`, when present): if `netcompiler.validate` reports no error, then
`netcompiler.compile` succeeds and a forward pass over a small random ragged batch runs (every
top-level layer fetched; a beam search too where the network has a rec unit with a `choice`).

Plus the structures that used to validate but failed to compile, each now supported (with an
independent expectation) or a validation error at the right config path:
- `rec` with a cell unit inside a rec unit: one cell step per loop step, its state carried; equal
  to the cell over the whole sequence (what the loop optimisation moves out) and to a NumPy LSTM;
- `initial_state` of `rnn_cell` / cell `rec` (zeros, ones, a number, var, a layer, a list / dict
  per state part) in and outside a unit; `keep_over_epoch` and misshaped layers are errors;
- two `choice` layers in one unit: beam search over both, equal to brute force;
- a rec with a sub-network unit inside a unit: a validation error at `network.dec.unit.inner`.
"""

from __future__ import annotations

import glob
import itertools
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402

from conformance import EXAMPLES, make_inputs  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
CORPUS = sorted(glob.glob(os.path.join(HERE, "returnn_corpus", "*.yaml")))


def _cases():
    for ex in EXAMPLES:
        yield pytest.param(ex.config, id=f"example-{ex.name}")
    for path in CONFIGS:
        yield pytest.param(path, id=f"config-{os.path.basename(path)}")
    for path in CORPUS:
        # the published setups (exp_*, hundreds of layers) take a minute each; the corpus test
        # runs them in the default suite (validate, compile, forward in training mode)
        big = os.path.basename(path).startswith("exp_")
        yield pytest.param(
            path, id=f"corpus-{os.path.basename(path)}", marks=[pytest.mark.slow] if big else []
        )


def _forward(net, rng, search=True):
    inputs, lengths = make_inputs(net.extern_shapes, 3, 5, rng, [5, 3, 1])
    top = [layer.name for layer in net.network.layers.values() if not layer.scope.in_rec]
    out = net(inputs=inputs, lengths=lengths, training=False, fetch=top)
    for name in top:
        value = out[name][0] if isinstance(out[name], tuple) else out[name]
        assert value is not None, name
    from netcompiler.backend.loop.unit_traits import search_rec_layers

    if search and search_rec_layers(net.network):
        hyps = net.search(inputs, lengths, beam_size=2)
        assert len(hyps) == 3
    return out


@pytest.mark.parametrize("config", list(_cases()))
def test_what_validates_compiles_and_runs(config):
    result = netcompiler.validate(config)
    if result.errors:
        # the other half: what does not validate is refused by `compile` with the same located
        # diagnostics (a ConfigError), never a crash in the back end
        assert all(d.path and d.rule for d in result.errors), result.errors
        with pytest.raises(netcompiler.ConfigError) as info:
            netcompiler.compile(config, seed=1)
        assert [d.rule for d in info.value.diagnostics] == [d.rule for d in result.errors]
        return
    net = netcompiler.compile(config, seed=1)
    _forward(net, np.random.default_rng(0))


# -- a cell `rec` / `rnn_cell` inside a unit ------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_lstm(x, W, W_re, b, c0, h0):
    """Plain LSTM over [B, T, n_in] from state (c0, h0); gate blocks (i, j, f, o); no masking."""
    c, h = c0.astype(np.float64), h0.astype(np.float64)
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ W_re + b
        i, j, f, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def np_gru(x, W, W_re, b, h0):
    """Plain GRU: gate blocks (z, r, h); h' = z h + (1 - z) tanh(x W_h + (r h) U_h + b_h)."""
    h = h0.astype(np.float64)
    uz, ur, uh = np.split(W_re, 3, axis=-1)
    out = []
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ W + b, 3, axis=-1)
        z = _sigmoid(xz + h @ uz)
        r = _sigmoid(xr + h @ ur)
        h = z * h + (1 - z) * np.tanh(xh + (r * h) @ uh)
        out.append(h)
    return np.stack(out, axis=1)


def _cell_config(cls: str, unit: str, init, move_out: bool, recurrent: bool = False) -> dict:
    cell = {
        "class": cls,
        "unit": unit,
        "n_out": 5,
        "from": ["data:source", "prev:output"] if recurrent else "data:source",
    }
    if init is not None:
        cell["initial_state"] = init
    network = {
        "lin": {"class": "linear", "from": "data", "n_out": 5, "activation": "tanh"},
        "enc_state": {"class": "reduce", "mode": "max", "axes": "T", "from": "lin"},
        "output": {
            "class": "rec",
            "from": "data",
            "optimize_move_layers_out": move_out,
            "unit": {"cell": cell, "output": {"class": "copy", "from": "cell"}},
        },
    }
    return {"extern_data": {"data": {"dim": 3}}, "network": network}


X = np.random.default_rng(5).standard_normal((3, 6, 3)).astype(np.float32)
LENS = np.array([6, 4, 1], np.int32)

INITS = [
    None,
    "zeros",
    "ones",
    0.5,
    "var",
    "base:enc_state",
    {"c": "base:enc_state", "h": -0.25},
    ["ones", "base:enc_state"],
]


def _np_state(net, init, key, enc_state, B, n):
    if isinstance(init, dict):
        value = init.get(key)
    elif isinstance(init, list):
        value = init[("c", "h").index(key) if len(init) == 2 else 0]
    else:
        value = init
    if value == "var":
        return np.broadcast_to(net.variable(f"output/cell/initial_{key}").numpy(), (B, n))
    if value == "base:enc_state":
        return enc_state
    return np.full((B, n), {None: 0.0, "zeros": 0.0, "ones": 1.0}.get(value, value))


@pytest.mark.parametrize("cls", ["rec", "rnn_cell"])
@pytest.mark.parametrize("init", INITS, ids=[str(i) for i in INITS])
def test_cell_in_unit_steps_equal_moved_out_and_numpy(cls, init):
    from netcompiler.backend.loop.plan import unit_placement

    assert not netcompiler.validate(_cell_config(cls, "lstm", init, True)).errors
    stepwise = netcompiler.compile(_cell_config(cls, "lstm", init, False), seed=2)
    moved = netcompiler.compile(_cell_config(cls, "lstm", init, True), seed=2)
    assert "output/cell" in unit_placement(stepwise, "output").in_loop
    assert "output/cell" in unit_placement(moved, "output").before  # run over the sequence
    if init == "var":  # a trained variable: give it a non-zero value
        for net in (stepwise, moved):
            for k, v in (("c", 0.3), ("h", -0.7)):
                net.variable(f"output/cell/initial_{k}").assign(np.linspace(-v, v, 5))
    fetch = ["output", "enc_state"]
    a = stepwise(inputs={"data": X}, lengths={"data": LENS}, fetch=fetch)
    b = moved(inputs={"data": X}, lengths={"data": LENS}, fetch=fetch)
    ya, yb = a["output"][0].numpy(), b["output"][0].numpy()
    enc = a["enc_state"][0].numpy() if isinstance(a["enc_state"], tuple) else a["enc_state"]
    enc = np.asarray(enc)
    W, W_re, bias = (stepwise.variable(f"output/cell/{p}").numpy() for p in ("W", "W_re", "b"))
    c0 = _np_state(stepwise, init, "c", enc, 3, 5)
    h0 = _np_state(stepwise, init, "h", enc, 3, 5)
    want = np_lstm(X, W, W_re, bias, c0, h0)
    for i, n in enumerate(LENS):
        np.testing.assert_allclose(ya[i, :n], want[i, :n], atol=1e-5)
        np.testing.assert_allclose(yb[i, :n], want[i, :n], atol=1e-5)


@pytest.mark.parametrize("init", [None, "ones", "base:enc_state", {"h": "base:enc_state"}])
def test_gru_cell_rec_in_unit(init):
    a = netcompiler.compile(_cell_config("rec", "gru", init, False), seed=3)
    b = netcompiler.compile(_cell_config("rec", "gru", init, True), seed=3)
    fetch = ["output", "enc_state"]
    ya = a(inputs={"data": X}, lengths={"data": LENS}, fetch=fetch)
    yb = b(inputs={"data": X}, lengths={"data": LENS}, fetch=fetch)["output"][0].numpy()
    enc = np.asarray(ya["enc_state"][0] if isinstance(ya["enc_state"], tuple) else ya["enc_state"])
    ya = ya["output"][0].numpy()
    W, W_re, bias = (a.variable(f"output/cell/{p}").numpy() for p in ("W", "W_re", "b"))
    h0 = (
        enc
        if init in ("base:enc_state", {"h": "base:enc_state"})
        else np.full((3, 5), 1.0 if init == "ones" else 0.0)
    )
    want = np_gru(X, W, W_re, bias, h0)
    for i, n in enumerate(LENS):
        np.testing.assert_allclose(ya[i, :n], want[i, :n], atol=1e-5)
        np.testing.assert_allclose(yb[i, :n], want[i, :n], atol=1e-5)


def test_recurrent_cell_rec_in_unit_stays_in_loop():
    """A cell rec reading `prev:output` runs step by step in both settings, and equals a NumPy
    loop that feeds the previous output back."""
    from netcompiler.backend.loop.plan import unit_placement

    a = netcompiler.compile(_cell_config("rec", "lstm", "ones", False, recurrent=True), seed=4)
    b = netcompiler.compile(_cell_config("rec", "lstm", "ones", True, recurrent=True), seed=4)
    assert "output/cell" in unit_placement(b, "output").in_loop
    ya = a(inputs={"data": X}, lengths={"data": LENS})["output"][0].numpy()
    yb = b(inputs={"data": X}, lengths={"data": LENS})["output"][0].numpy()
    W, W_re, bias = (a.variable(f"output/cell/{p}").numpy() for p in ("W", "W_re", "b"))
    c = h = np.ones((3, 5))
    prev = np.zeros((3, 5))
    for t in range(X.shape[1]):
        z = np.concatenate([X[:, t], prev], -1) @ W + h @ W_re + bias
        i, j, f, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
        h = _sigmoid(o) * np.tanh(c)
        prev = h
        for k, n in enumerate(LENS):
            if t < n:
                np.testing.assert_allclose(ya[k, t], h[k], atol=1e-5)
                np.testing.assert_allclose(yb[k, t], h[k], atol=1e-5)


def test_cell_rec_initial_state_over_time():
    """Outside a unit, `initial_state` of a cell rec / rnn_cell over the time axis."""
    for cls in ("rec", "rnn_cell"):
        cfg = {
            "extern_data": {"data": {"dim": 3}},
            "network": {
                "lin": {"class": "linear", "from": "data", "n_out": 4},
                "st": {"class": "reduce", "mode": "mean", "axes": "T", "from": "lin"},
                "output": {
                    "class": cls,
                    "unit": "lstm",
                    "n_out": 4,
                    "from": "data",
                    "initial_state": {"c": "st", "h": 2.0},
                },
            },
        }
        assert not netcompiler.validate(cfg).errors
        net = netcompiler.compile(cfg, seed=6)
        out = net(inputs={"data": X}, lengths={"data": LENS}, fetch=["output", "st"])
        y = out["output"][0].numpy()
        st = np.asarray(out["st"][0] if isinstance(out["st"], tuple) else out["st"])
        W, W_re, bias = (net.variable(f"output/{p}").numpy() for p in ("W", "W_re", "b"))
        want = np_lstm(X, W, W_re, bias, st, np.full((3, 4), 2.0))
        for i, n in enumerate(LENS):
            np.testing.assert_allclose(y[i, :n], want[i, :n], atol=1e-5)
            assert np.all(y[i, n:] == 0)


def test_cell_rec_in_unit_with_sparse_input_and_search():
    """A cell rec fed with the previous label inside a searched decoder (not moved out)."""
    unit = {
        "emb": {"class": "linear", "from": "prev:output", "n_out": 4},
        "lstm": {
            "class": "rec",
            "unit": "lstm",
            "n_out": 6,
            "from": ["emb", "base:enc_last"],
            "initial_state": "var",
        },
        "prob": {"class": "softmax", "from": "lstm", "n_out": 5},
        "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3},
        "end": {"class": "compare", "from": "output", "value": 0},
    }
    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}},
        "network": {
            "enc": {"class": "linear", "from": "data", "n_out": 4},
            "enc_last": {"class": "reduce", "mode": "max", "axes": "T", "from": "enc"},
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "max_seq_len": 4,
                "unit": unit,
            },
        },
    }
    result = netcompiler.validate(cfg)
    assert not result.errors, [d.message for d in result.errors]
    net = netcompiler.compile(cfg, seed=1)
    hyps = net.search({"data": X}, {"data": LENS}, beam_size=3, n_best=2)
    assert len(hyps) == 3 and all(len(h) == 2 for h in hyps)
    assert all(1 <= h[0]["length"] <= 4 for h in hyps)


# -- initial_state errors --------------------------------------------------------------------------
def _errors(cfg):
    return [(d.dotted_path, d.message) for d in netcompiler.validate(cfg).errors]


@pytest.mark.parametrize(
    "init,needle",
    [
        ("keep_over_epoch", "`initial_state: keep_over_epoch` is not supported"),
        ("keep_over_epoch_no_init", "is not supported"),
        ("placeholder", "is not supported"),
        ("data:source", "a layer of the enclosing network (`base:NAME`)"),
        ("base:lin", "is [B, T(data), F=5], but the state part `c`"),
        ({"x": 1}, "has no state part `x`"),
        (["ones"], "a list needs one entry per state part"),
    ],
)
def test_unsupported_initial_state_is_a_validation_error(init, needle):
    cfg = _cell_config("rnn_cell", "lstm", init, True)
    errors = _errors(cfg)
    assert errors, init
    path, message = errors[0]
    assert path == "network.output.unit.cell.initial_state"
    assert needle in message


def test_initial_state_on_a_subnetwork_rec_is_an_error():
    cfg = _cell_config("rnn_cell", "lstm", None, True)
    cfg["network"]["output"]["initial_state"] = "zeros"
    assert ("network.output.initial_state",) == tuple(p for p, _ in _errors(cfg))


# -- two choices in one unit ------------------------------------------------------------------------
def test_two_choices_in_one_unit_search_equals_brute_force():
    C, T = 3, 2
    beam = {"beam_size": 81, "length_normalization": False}
    unit = {
        "s1": {"class": "softmax", "from": ["data:source", "prev:emb2"], "n_out": C},
        "c1": {"class": "choice", "from": "s1", "target": "t1", **beam},
        "emb1": {"class": "linear", "from": "c1", "n_out": 4},
        "s2": {"class": "softmax", "from": ["emb1", "data:source"], "n_out": C},
        "output": {"class": "choice", "from": "s2", "target": "t2", **beam},
        "emb2": {"class": "linear", "from": "output", "n_out": 4},
    }
    cfg = {
        "extern_data": {
            "data": {"dim": 2},
            "t1": {"dim": C, "sparse": True, "same_time_as": "data"},
            "t2": {"dim": C, "sparse": True, "same_time_as": "data"},
        },
        "network": {"output": {"class": "rec", "from": "data", "unit": unit}},
    }
    assert not netcompiler.validate(cfg).errors
    net = netcompiler.compile(cfg, seed=3)
    x = np.random.default_rng(1).standard_normal((1, T, 2)).astype(np.float32)
    # beam 81 >= every hypothesis count: the search is exhaustive
    hyps = net.search({"data": x}, {"data": np.array([T], np.int32)}, beam_size=81, n_best=4)[0]
    # brute force: the log-probability of every (c1, c2) label sequence by teacher forcing
    seqs = np.array(list(itertools.product(range(C), repeat=2 * T)), np.int32)
    N = len(seqs)
    t1, t2 = seqs[:, 0::2], seqs[:, 1::2]
    lens = np.full([N], T, np.int32)
    out = net(
        inputs={"data": np.repeat(x, N, axis=0), "t1": t1, "t2": t2},
        lengths={"data": lens, "t1": lens, "t2": lens},
        fetch=["output/s1", "output/s2"],
    )
    p1, p2 = out["output/s1"][0].numpy(), out["output/s2"][0].numpy()
    rows, steps = np.arange(N)[:, None], np.arange(T)[None, :]
    logp = np.log(p1[rows, steps, t1]).sum(1) + np.log(p2[rows, steps, t2]).sum(1)
    best = np.argsort(-logp)[:4]
    np.testing.assert_allclose([h["log_prob"] for h in hyps], logp[best], rtol=1e-5)
    for h, i in zip(hyps, best):
        np.testing.assert_array_equal(h["labels"], t2[i])


# -- nested rec units ------------------------------------------------------------------------------
def test_nested_rec_unit_is_a_validation_error():
    cfg = {
        "extern_data": {"data": {"dim": 4}},
        "network": {
            "dec": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "inner": {
                        "class": "rec",
                        "from": "data:source",
                        "unit": {"output": {"class": "linear", "n_out": 3, "from": "data:source"}},
                    },
                    "output": {"class": "linear", "from": "inner", "n_out": 3},
                },
            },
            "output": {"class": "copy", "from": "dec"},
        },
    }
    result = netcompiler.validate(cfg)
    assert [d.dotted_path for d in result.errors] == ["network.dec.unit.inner"]
    assert "not supported" in result.errors[0].message
    assert result.errors[0].rule == "shape.nested-rec"
    with pytest.raises(netcompiler.ConfigError):
        netcompiler.compile(cfg)
