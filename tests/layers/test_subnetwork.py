"""`subnetwork` layers (inlined: `sub/name` layers of the enclosing network) and references to
the layers of a rec unit or a subnetwork from outside (`rec/name`, `sub/name`).

Checked against independent expectations: the same layers written flat (weights copied by
name), NumPy, and the shapes/diagnostics written out by hand.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import netcompiler
from netcompiler.frontend.graph import output_layers

B, T, F = 3, 5, 4
LEN = np.array([5, 3, 1], dtype=np.int32)
RNG = np.random.default_rng(7)
X = RNG.normal(size=(B, T, F)).astype(np.float32)
Y = RNG.normal(size=(B, T, 2)).astype(np.float32)
CLS = RNG.integers(0, 6, size=(B, T)).astype(np.int32)
EXTERN = {
    "data": {"dim": F},
    "aux": {"dim": 2, "same_time_as": "data"},
    "classes": {"dim": 6, "sparse": True, "same_time_as": "data"},
}


def _errors(cfg, hints=False):
    r = netcompiler.validate(cfg)
    return [(d.dotted_path, d.rule, d.message) + ((d.hint,) if hints else ()) for d in r.errors]


def _shapes(cfg):
    r = netcompiler.validate(cfg)
    assert not r.errors, r.errors
    return {k: str(v) for k, v in r.inferred.shapes.items()}


def _copy_weights(src, dst, mapping):
    for a, b in mapping.items():
        dst.variable(b).assign(src.variable(a))


def _valid(a, lengths=LEN):
    """Frames within the lengths only (padding may differ)."""
    return [a[b, :n] for b, n in enumerate(lengths)]


def assert_close(a, b, lengths=LEN):
    for x, y in zip(_valid(np.asarray(a), lengths), _valid(np.asarray(b), lengths)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


# -- validation: names, shapes, located errors (no TensorFlow) -----------------------------------

SUB = {
    "extern_data": EXTERN,
    "network": {
        "pre": {"class": "linear", "from": "data", "n_out": 3, "activation": "relu"},
        "sub": {
            "class": "subnetwork",
            "from": ["data", "pre"],
            "subnetwork": {
                "h": {"class": "linear", "from": "data", "n_out": 5, "activation": "tanh"},
                "g": {"class": "linear", "from": ["h", "base:pre", "data:aux"], "n_out": 3},
                "output": {"class": "combine", "kind": "add", "from": ["g", "base:pre"]},
            },
        },
        "output": {"class": "linear", "from": ["sub", "sub/h"], "n_out": 2},
    },
}


def test_subnetwork_layers_are_named_sub_name_with_their_variables():
    r = netcompiler.validate(SUB)
    assert not r.errors, r.errors
    shapes = {k: str(v) for k, v in r.inferred.shapes.items()}
    assert shapes["sub/data:data"] == "[B, T(data), F=7]"  # from: [data, pre] concatenated
    assert shapes["sub/h"] == "[B, T(data), F=5]"
    assert shapes["sub/g"] == "[B, T(data), F=3]"
    assert shapes["sub"] == shapes["sub/output"] == "[B, T(data), F=3]"
    assert shapes["output"] == "[B, T(data), F=2]"
    params = {
        f"{n}/{p}": spec.shape for n, ps in r.inferred.params.items() for p, spec in ps.items()
    }
    assert params["sub/h/W"] == (7, 5) and params["sub/h/b"] == (5,)
    assert params["sub/g/W"] == (5 + 3 + 2, 3)
    assert "sub/W" not in params
    # the output reads `sub` and, from outside, the sub-layer `sub/h`
    assert {ref.target.name for _, ref in r.graph.refs["output"]} == {"sub", "sub/h"}


def test_subnetwork_errors_are_located_inside_it():
    cfg = copy.deepcopy(SUB)
    sub = cfg["network"]["sub"]["subnetwork"]
    sub["h"]["n_outt"] = 3  # schema: unknown option of a sub-layer
    sub["g"]["from"] = ["h", "pre"]  # `pre` is a layer of the enclosing network: base:pre
    errs = _errors(cfg)
    paths = {(p, rule) for p, rule, _ in errs}
    assert ("network.sub.subnetwork.h.n_outt", "schema.unknown-option") in paths
    assert ("network.sub.subnetwork.g.from[1]", "graph.unknown-layer") in paths
    hint = next(h for p, r, m, h in _errors(cfg, hints=True) if p.endswith("g.from[1]"))
    assert "base:pre" in hint
    # a shape error inside
    cfg = copy.deepcopy(SUB)
    cfg["network"]["sub"]["subnetwork"]["output"]["from"] = ["g", "h"]  # 3 vs 5 features
    errs = _errors(cfg)
    assert [p for p, _, _ in errs] == ["network.sub.subnetwork.output.from"], errs
    # no output layer
    cfg = copy.deepcopy(SUB)
    cfg["network"]["sub"]["subnetwork"]["out"] = cfg["network"]["sub"]["subnetwork"].pop("output")
    errs = _errors(cfg)
    assert ("network.sub.subnetwork", "graph.no-output") in {(p, r) for p, r, _ in errs}
    # an unknown input of the subnetwork: reported once, at its `from`
    cfg = copy.deepcopy(SUB)
    cfg["network"]["sub"]["from"] = ["data", "nope"]
    errs = _errors(cfg)
    assert [(p, r) for p, r, _ in errs] == [("network.sub.from[1]", "graph.unknown-layer")], errs
    # `data` read inside a subnetwork without input: located at the reader
    cfg = copy.deepcopy(SUB)
    cfg["network"]["sub"]["from"] = []
    errs = _errors(cfg)
    assert [(p, r) for p, r, _ in errs] == [("network.sub.subnetwork.h.from", "graph.unknown-data")]


def test_base_is_still_an_error_outside_rec_units_and_subnetworks():
    cfg = {"extern_data": EXTERN, "network": {"output": {"class": "copy", "from": "base:data"}}}
    assert [r for _, r, _ in _errors(cfg)] == ["graph.base-outside-rec"]


def test_loss_inside_a_subnetwork_counts():
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "sub": {
                "class": "subnetwork",
                "subnetwork": {
                    "prob": {
                        "class": "softmax",
                        "from": "data",
                        "n_out": 6,
                        "loss": "ce",
                        "target": "classes",
                    },
                    "output": {"class": "copy", "from": "prob"},
                },
            },
            "output": {"class": "copy", "from": "sub"},
        },
    }
    r = netcompiler.validate(cfg)
    assert not r.errors and not r.warnings, r.diagnostics
    assert "sub/prob" in {layer.name for layer in output_layers(r.graph.network)}
    # its target is checked where it is written
    cfg["network"]["sub"]["subnetwork"]["prob"]["n_out"] = 5
    assert [(p, rl) for p, rl, _ in _errors(cfg)] == [
        ("network.sub.subnetwork.prob.target", "shape.loss-target")
    ]


def test_subnetwork_in_rec_unit_has_per_step_shapes():
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "sub": {
                        "class": "subnetwork",
                        "from": ["data:source", "prev:output"],
                        "subnetwork": {
                            "h": {
                                "class": "linear",
                                "from": "data",
                                "n_out": 3,
                                "activation": "tanh",
                            },
                            "output": {
                                "class": "linear",
                                "from": ["h", "base:prev:output"],
                                "n_out": 3,
                            },
                        },
                    },
                    "output": {"class": "copy", "from": "sub"},
                },
            }
        },
    }
    shapes = _shapes(cfg)
    assert shapes["output/sub/data:data"] == "[B, F=7]"
    assert shapes["output/sub/h"] == "[B, F=3]"
    assert shapes["output"] == "[B, T(data), F=3]"


def test_rec_sub_layer_reference_has_stacked_shape_and_depends_on_the_rec_layer():
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "dec": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "att": {"class": "linear", "from": ["data:source", "prev:output"], "n_out": 2},
                    "output": {"class": "linear", "from": "att", "n_out": 3, "activation": "tanh"},
                },
            },
            "output": {"class": "linear", "from": ["dec/att", "dec"], "n_out": 2},
        },
    }
    r = netcompiler.validate(cfg)
    assert not r.errors, r.errors
    assert str(r.inferred.shapes["dec/att"]) == "[B, F=2]"  # per step
    assert str(r.inferred.shapes["output"]) == "[B, T(data), F=2]"
    assert r.inferred.params["output"]["W"].shape == (2 + 3, 2)  # stacked [B, T, 2] + [B, T, 3]
    assert r.graph.g.has_edge("dec", "output") and r.graph.g.has_edge("dec/att", "output")
    # unknown sub-layer: an unknown layer, with the usual error
    cfg["network"]["output"]["from"] = ["dec/attt"]
    assert [(p, rl) for p, rl, _ in _errors(cfg)] == [
        ("network.output.from[0]", "graph.unknown-layer")
    ]


# -- TensorFlow: equal to the same layers written flat, and NumPy ----------------------------------

tf_mark = pytest.mark.tf


@tf_mark
def test_subnetwork_equals_the_same_layers_written_flat():
    pytest.importorskip("tensorflow")
    flat = {
        "extern_data": EXTERN,
        "network": {
            "pre": {"class": "linear", "from": "data", "n_out": 3, "activation": "relu"},
            "h": {"class": "linear", "from": ["data", "pre"], "n_out": 5, "activation": "tanh"},
            "g": {"class": "linear", "from": ["h", "pre", "data:aux"], "n_out": 3},
            "o": {"class": "combine", "kind": "add", "from": ["g", "pre"]},
            "output": {"class": "linear", "from": ["o", "h"], "n_out": 2},
        },
    }
    a = netcompiler.compile(SUB)
    b = netcompiler.compile(flat)
    assert sorted(a.variables_by_name) == sorted(
        ["pre/W", "pre/b", "sub/h/W", "sub/h/b", "sub/g/W", "sub/g/b", "output/W", "output/b"]
    )
    _copy_weights(
        a,
        b,
        {
            "pre/W": "pre/W",
            "pre/b": "pre/b",
            "sub/h/W": "h/W",
            "sub/h/b": "h/b",
            "sub/g/W": "g/W",
            "sub/g/b": "g/b",
            "output/W": "output/W",
            "output/b": "output/b",
        },
    )
    inputs = {"data": X, "aux": Y}
    lengths = {"data": LEN, "aux": LEN}
    ya = a(inputs, lengths, fetch=["output", "sub", "sub/h"])
    yb = b(inputs, lengths, fetch=["output", "o", "h"])
    assert_close(ya["output"][0], yb["output"][0])
    assert_close(ya["sub"][0], yb["o"][0])
    assert_close(ya["sub/h"][0], yb["h"][0])
    np.testing.assert_array_equal(ya["sub"][1], LEN)
    # and NumPy: h = tanh([x, relu(x Wp + bp)] Wh + bh)
    v = {k: a.variable(k).numpy() for k in a.variables_by_name}
    pre = np.maximum(X @ v["pre/W"] + v["pre/b"], 0)
    h = np.tanh(np.concatenate([X, pre], -1) @ v["sub/h/W"] + v["sub/h/b"])
    assert_close(ya["sub/h"][0], h)


@tf_mark
def test_subnetwork_concat_sources_false_names_its_inputs():
    pytest.importorskip("tensorflow")
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "sub": {
                "class": "subnetwork",
                "from": ["data", "data:aux"],
                "concat_sources": False,
                "subnetwork": {
                    "output": {
                        "class": "combine",
                        "kind": "add",
                        "from": ["data:1", "data:data:aux"],
                    }
                },
            },
            "output": {"class": "linear", "from": ["sub", "data"], "n_out": 2},
        },
    }
    net = netcompiler.compile(cfg)
    y = net({"data": X, "aux": Y}, {"data": LEN, "aux": LEN}, fetch=["sub"])
    assert_close(y["sub"][0], 2 * Y)


@tf_mark
def test_subnetwork_inside_rec_unit_with_prev_accumulates_per_step():
    """RETURNN's test_reclayer_prev_in_subnet: `prev:accum` inside a subnetwork of a unit."""
    pytest.importorskip("tensorflow")
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "accum_sub": {
                        "class": "subnetwork",
                        "from": [],
                        "subnetwork": {
                            "accum": {
                                "class": "combine",
                                "kind": "add",
                                "from": ["prev:accum", "base:data:source"],
                            },
                            "output": {"class": "copy", "from": "accum"},
                        },
                    },
                    "output": {"class": "copy", "from": "accum_sub"},
                },
            }
        },
    }
    net = netcompiler.compile(cfg)
    y = net({"data": X}, {"data": LEN}, fetch=["output", "output/accum_sub/accum"])
    assert_close(y["output"][0], np.cumsum(X, axis=1))
    assert_close(y["output/accum_sub/accum"][0], np.cumsum(X, axis=1))


@tf_mark
def test_subnetwork_in_rec_unit_equals_flat_unit():
    pytest.importorskip("tensorflow")
    sub_cfg = {
        "extern_data": EXTERN,
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "sub": {
                        "class": "subnetwork",
                        "from": ["data:source", "prev:output"],
                        "subnetwork": {
                            "h": {
                                "class": "linear",
                                "from": "data",
                                "n_out": 3,
                                "activation": "tanh",
                            },
                            "output": {
                                "class": "linear",
                                "from": ["h", "base:prev:output"],
                                "n_out": 3,
                            },
                        },
                    },
                    "output": {"class": "copy", "from": "sub"},
                },
            }
        },
    }
    flat_cfg = {
        "extern_data": EXTERN,
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "h": {
                        "class": "linear",
                        "from": ["data:source", "prev:output"],
                        "n_out": 3,
                        "activation": "tanh",
                    },
                    "o": {"class": "linear", "from": ["h", "prev:output"], "n_out": 3},
                    "output": {"class": "copy", "from": "o"},
                },
            }
        },
    }
    a = netcompiler.compile(sub_cfg)
    b = netcompiler.compile(flat_cfg)
    _copy_weights(
        a,
        b,
        {
            "output/sub/h/W": "output/h/W",
            "output/sub/h/b": "output/h/b",
            "output/sub/output/W": "output/o/W",
            "output/sub/output/b": "output/o/b",
        },
    )
    ya = a({"data": X}, {"data": LEN}, fetch=["output", "output/sub/h"])
    yb = b({"data": X}, {"data": LEN}, fetch=["output", "output/h"])
    assert_close(ya["output"][0], yb["output"][0])
    assert_close(ya["output/sub/h"][0], yb["output/h"][0])
    # NumPy: the recurrence written out
    v = {k: a.variable(k).numpy() for k in a.variables_by_name}
    prev = np.zeros((B, 3), np.float32)
    outs = []
    for t in range(T):
        h = np.tanh(np.concatenate([X[:, t], prev], -1) @ v["output/sub/h/W"] + v["output/sub/h/b"])
        prev = np.concatenate([h, prev], -1) @ v["output/sub/output/W"] + v["output/sub/output/b"]
        outs.append(prev)
    assert_close(ya["output"][0], np.stack(outs, 1))


@tf_mark
def test_rec_sub_layer_read_from_outside_equals_the_fetched_stacked_layer():
    pytest.importorskip("tensorflow")
    cfg = {
        "extern_data": EXTERN,
        "network": {
            "dec": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "att": {"class": "linear", "from": ["data:source", "prev:output"], "n_out": 2},
                    "output": {"class": "linear", "from": "att", "n_out": 3, "activation": "tanh"},
                },
            },
            "raw": {"class": "copy", "from": "dec/att"},
            "output": {"class": "linear", "from": ["dec/att", "dec"], "n_out": 2},
        },
    }
    net = netcompiler.compile(cfg)
    # only the reader fetched: the rec layer's run provides the stacked sub-layer
    y = net({"data": X}, {"data": LEN}, fetch=["raw"])
    ref = net({"data": X}, {"data": LEN}, fetch=["dec/att", "dec", "output"])
    assert y["raw"][0].shape == (B, T, 2)
    assert_close(y["raw"][0], ref["dec/att"][0])
    np.testing.assert_array_equal(y["raw"][1], LEN)
    v = {k: net.variable(k).numpy() for k in ("output/W", "output/b")}
    expect = np.concatenate([ref["dec/att"][0], ref["dec"][0]], -1) @ v["output/W"] + v["output/b"]
    assert_close(ref["output"][0], expect)
