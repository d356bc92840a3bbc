"""`masked_computation` and `unmask` (RETURNN's MaskedComputationLayer / UnmaskLayer), and the
`cast` layer and the `cumsum` rec unit they are used with in RETURNN's tests.

Checked against NumPy: an LSTM run only on the masked frames (inside a rec unit, step by step)
equals the LSTM over the packed frames, and outside a rec unit the packed axis, its lengths and
the unmasked frames are what a per-sequence NumPy loop gives.
"""

from __future__ import annotations

import numpy as np
import pytest

import netcompiler

B, T, F, N = 3, 6, 4, 5
LEN = np.array([6, 4, 1], dtype=np.int32)
RNG = np.random.default_rng(3)
X = RNG.normal(size=(B, T, F)).astype(np.float32)
# the mask: where the first feature is positive (also at padded frames, which must not count)
MASK = X[:, :, 0] > 0
EXTERN = {"data": {"dim": F}}
MASK_LAYER = {"class": "compare", "from": "first", "kind": "greater", "value": 0.0}
FIRST = {"class": "slice", "from": "data", "axis": "F", "slice_start": 0, "slice_end": 1}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lstm_step(x, c, h, W, W_re, b):
    i, j, f, o = np.split(x @ W + h @ W_re + b, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
    return c, _sigmoid(o) * np.tanh(c)


def _lstm(xs, W, W_re, b):
    """NumPy LSTM (netcompiler's `lstm`: gates i, j, f, o, no forget bias) over frames [t, F]."""
    n = W_re.shape[0]
    c, h = np.zeros(n), np.zeros(n)
    out = []
    for x in xs:
        c, h = _lstm_step(x, c, h, W, W_re, b)
        out.append(h)
    return np.array(out).reshape(len(xs), n)


def _valid_mask():
    return MASK & (np.arange(T)[None, :] < LEN[:, None])


def _squeeze_mask():
    return {
        "first": FIRST,
        "mask3": MASK_LAYER,
        "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
    }


def _weights(net, prefix):
    return [net.variable(f"{prefix}/{p}").numpy() for p in ("W", "W_re", "b")]


# -- outside a rec unit: packing, the unit over the packed axis, unmasking ------------------------
def _outer_cfg():
    net = _squeeze_mask()
    net.update(
        {
            "masked": {
                "class": "masked_computation",
                "from": "data",
                "mask": "mask",
                "unit": {"class": "rec", "unit": "lstm", "n_out": N},
            },
            "output": {"class": "unmask", "from": "masked", "mask": "mask"},
        }
    )
    return {"extern_data": EXTERN, "network": net}


def test_outside_loop_shapes():
    r = netcompiler.validate(_outer_cfg())
    assert not r.errors, r.errors
    shapes = {k: str(v) for k, v in r.inferred.shapes.items()}
    assert shapes["mask"] == "[B, T(data)] bool"
    packed = r.inferred.shapes["masked"].dims[1]
    assert packed.kind == "time" and packed is not r.inferred.extern["data"].time
    assert shapes["masked/data:data"] == f"[B, {packed}, F={F}]"
    assert shapes["masked"] == f"[B, {packed}, F={N}]"
    assert shapes["output"] == f"[B, T(data), F={N}]"
    assert set(r.inferred.params["masked/unit"]) == {"W", "W_re", "b"}


def test_outside_loop_lstm_over_packed_frames_and_unmask():
    net = netcompiler.compile(_outer_cfg(), seed=1)
    out = net(inputs={"data": X}, lengths={"data": LEN}, fetch=["masked", "output"])
    packed, packed_len = (np.asarray(v) for v in out["masked"])
    full, full_len = (np.asarray(v) for v in out["output"])
    W, W_re, b = _weights(net, "masked/unit")
    valid = _valid_mask()
    np.testing.assert_array_equal(packed_len, valid.sum(axis=1))
    np.testing.assert_array_equal(full_len, LEN)
    assert packed.shape[1] == valid.sum(axis=1).max()
    for s in range(B):
        frames = X[s][valid[s]]
        ref = _lstm(frames, W, W_re, b)
        np.testing.assert_allclose(packed[s, : len(frames)], ref, rtol=1e-5, atol=1e-5)
        # unmask: each frame the last computed frame at or before it (before the first: 0)
        k = np.cumsum(valid[s])
        for t in range(LEN[s]):
            want = ref[k[t] - 1] if k[t] > 0 else np.zeros(N)
            np.testing.assert_allclose(full[s, t], want, rtol=1e-5, atol=1e-5)


def test_subnetwork_unit_outside_loop_packs_frames():
    net = _squeeze_mask()
    net.update(
        {
            "masked": {
                "class": "masked_computation",
                "from": "data",
                "mask": "mask",
                "unit": {
                    "class": "subnetwork",
                    "from": "data",
                    "subnetwork": {
                        "sum": {"class": "rec", "unit": "cumsum", "n_out": F, "from": "data"},
                        "output": {"class": "copy", "from": "sum"},
                    },
                },
            },
            "output": {"class": "unmask", "from": "masked", "mask": "mask"},
        }
    )
    cnet = netcompiler.compile({"extern_data": EXTERN, "network": net})
    out = cnet(inputs={"data": X}, lengths={"data": LEN}, fetch=["output"])
    y = np.asarray(out["output"][0])
    valid = _valid_mask()
    for s in range(B):
        acc = np.zeros(F)
        for t in range(LEN[s]):
            if valid[s, t]:
                acc = acc + X[s, t]
            np.testing.assert_allclose(y[s, t], acc, rtol=1e-5, atol=1e-5)


# -- inside a rec unit: the unit runs only where the mask is true ---------------------------------
@pytest.mark.parametrize("move_out", [False, True])
def test_in_loop_lstm_equals_lstm_over_packed_frames(move_out):
    unit = {
        "first": {
            "class": "slice",
            "from": "data:source",
            "axis": "F",
            "slice_start": 0,
            "slice_end": 1,
        },
        "mask3": MASK_LAYER,
        "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
        "masked": {
            "class": "masked_computation",
            "from": "data:source",
            "mask": "mask",
            "unit": {"class": "rec", "unit": "lstm", "n_out": N},
        },
        "output": {"class": "unmask", "from": "masked", "mask": "mask"},
    }
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": unit,
                "optimize_move_layers_out": move_out,
            }
        },
    }
    r = netcompiler.validate(cfg)
    assert not r.errors, r.errors
    assert str(r.inferred.shapes["output/mask"]) == "[B] bool"
    net = netcompiler.compile(cfg, seed=2)
    y = np.asarray(net(inputs={"data": X}, lengths={"data": LEN}, fetch=["output"])["output"][0])
    W, W_re, b = _weights(net, "output/masked/unit")
    valid = _valid_mask()
    for s in range(B):
        ref = _lstm(X[s][valid[s]], W, W_re, b)
        k = np.cumsum(valid[s])
        for t in range(LEN[s]):
            want = ref[k[t] - 1] if k[t] > 0 else np.zeros(N)
            np.testing.assert_allclose(y[s, t], want, rtol=1e-5, atol=1e-5)


def test_in_loop_equals_outside_loop():
    """The same masked LSTM inside a rec unit and over time (weights copied): equal frames."""
    unit = {
        "first": {
            "class": "slice",
            "from": "data:source",
            "axis": "F",
            "slice_start": 0,
            "slice_end": 1,
        },
        "mask3": MASK_LAYER,
        "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
        "masked": {
            "class": "masked_computation",
            "from": "data:source",
            "mask": "mask",
            "unit": {"class": "rec", "unit": "lstm", "n_out": N},
        },
        "output": {"class": "copy", "from": "masked"},
    }
    a = netcompiler.compile(
        {
            "extern_data": EXTERN,
            "network": {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": unit,
                    "optimize_move_layers_out": False,
                }
            },
        }
    )
    b = netcompiler.compile(_outer_cfg(), seed=5)
    for p in ("W", "W_re", "b"):
        a.variable(f"output/masked/unit/{p}").assign(b.variable(f"masked/unit/{p}"))
    ya = np.asarray(a(inputs={"data": X}, lengths={"data": LEN}, fetch=["output"])["output"][0])
    yb = np.asarray(b(inputs={"data": X}, lengths={"data": LEN}, fetch=["output"])["output"][0])
    for s in range(B):
        np.testing.assert_allclose(ya[s, : LEN[s]], yb[s, : LEN[s]], rtol=1e-5, atol=1e-5)


def test_returnn_corpus_network_running_sum_of_odd_steps():
    """RETURNN's test_MaskedComputationLayer_UnmaskLayer_in_loop(_opt): the masked cumsum of the
    labels at odd steps."""
    from pathlib import Path

    import yaml

    path = (
        Path(__file__).resolve().parents[1]
        / "returnn_corpus"
        / "rec_MaskedComputationLayer_UnmaskLayer_in_loop.yaml"
    )
    cfg = yaml.safe_load(path.read_text())
    labels = RNG.integers(0, 20, size=(B, T)).astype(np.int32)
    for move_out in (False, True):
        cfg["network"]["output"]["optimize_move_layers_out"] = move_out
        net = netcompiler.compile(cfg)
        y = np.asarray(
            net(inputs={"data": labels}, lengths={"data": LEN}, fetch=["output"])["output"][0]
        )
        assert y.shape == (B, T)
        for s in range(B):
            acc = 0.0
            for t in range(LEN[s]):
                if t % 2 == 1:
                    acc += labels[s, t]
                assert y[s, t] == pytest.approx(acc), (move_out, s, t)


# -- cast, cumsum ----------------------------------------------------------------------------------
def test_cast_and_cumsum_over_time():
    cfg = {
        "extern_data": {"data": {"dim": 20, "sparse": True}},
        "network": {
            "f": {"class": "cast", "from": "data", "dtype": "float32"},
            "f1": {"class": "expand_dims", "from": "f", "axis": "f"},
            "output": {"class": "rec", "unit": "cumsum", "n_out": 1, "from": "f1"},
        },
    }
    r = netcompiler.validate(cfg)
    assert not r.errors, r.errors
    assert str(r.inferred.shapes["f"]) == "[B, T(data)]"
    assert str(r.inferred.shapes["output"]) == "[B, T(data), F=1]"
    assert r.inferred.total_params == 0
    labels = RNG.integers(0, 20, size=(B, T)).astype(np.int32)
    y = np.asarray(
        netcompiler.compile(cfg)(inputs={"data": labels}, lengths={"data": LEN}, fetch=["output"])[
            "output"
        ][0]
    )
    for s in range(B):
        np.testing.assert_allclose(y[s, : LEN[s], 0], np.cumsum(labels[s, : LEN[s]]))


# -- validation ------------------------------------------------------------------------------------
def _rules(cfg):
    return [(d.dotted_path, d.rule) for d in netcompiler.validate(cfg).errors]


def test_mask_must_be_bool_per_frame():
    cfg = _outer_cfg()
    cfg["network"]["masked"]["mask"] = "first"  # [B, T, F=1] float
    cfg["network"]["output"]["mask"] = "first"
    assert ("network.masked.mask", "shape.masked-computation") in _rules(cfg)


def test_unit_options_are_schema_checked():
    cfg = _outer_cfg()
    cfg["network"]["masked"]["unit"]["n_outt"] = 3
    assert ("network.masked.unit.n_outt", "schema.unknown-option") in _rules(cfg)


def test_cumsum_n_out_must_match_input():
    cfg = {
        "extern_data": EXTERN,
        "network": {"output": {"class": "rec", "unit": "cumsum", "n_out": F + 1}},
    }
    assert ("network.output.n_out", "shape.cell-unit") in _rules(cfg)
