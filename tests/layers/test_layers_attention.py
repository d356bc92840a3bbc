"""Shape rules, errors and parameters of the attention family (batch C, phase 1).

softmax_over_spatial, dot, generic_attention, dot_attention, concat_attention,
gauss_window_attention, relative_positional_encoding, positional_encoding, rnn_cell,
get_last_hidden_state, choice. Shapes are hand-derived from semantics.md / layers.md.
"""

import sys

import pytest

from netcompiler.frontend.validate import validate

EXTERN = {
    "data": {"dim": 8},  # [B, T(data), F=8]
    "classes": {"dim": 5, "sparse": True},  # [B, T(classes)] sparse(5)
    "words": {"dim": 7, "sparse": True, "same_time_as": "data"},
    "heads4": {"shape": [None, 4, 6]},  # [B, T(heads4), S=4, F=6]
}


def run(network, extern=None):
    if "output" not in network:  # every network needs an `output` layer
        key = next(iter(extern or EXTERN))
        network = {**network, "output": {"class": "linear", "from": f"data:{key}", "n_out": 1}}
    return validate({"extern_data": extern or EXTERN, "network": network})


def ok(network, extern=None):
    r = run(network, extern)
    assert r.errors == [], [(d.rule, d.dotted_path, d.message) for d in r.errors]
    return r


def shape(r, name):
    return str(r.inferred.shapes[name])


def one_error(r, rule, path):
    errs = [d for d in r.errors if d.rule == rule]
    assert errs, [(d.rule, d.dotted_path, d.message) for d in r.diagnostics]
    assert errs[0].dotted_path == path, errs[0].dotted_path
    return errs[0].message


def params(r, name):
    return {k: p.shape for k, p in r.inferred.params[name].items()}


# encoder + decoder fragments used by several tests
ENC = {
    "enc": {"class": "linear", "from": "data", "n_out": 6},  # [B, T(data), F=6]
    "enc_ctx": {"class": "linear", "from": "data", "n_out": 4},  # [B, T(data), F=4]
    "dec": {"class": "linear", "from": "data:classes", "n_out": 4},  # [B, T(classes), F=4]
}


def decoder(unit, **rec_opts):
    net = dict(ENC)
    net["output"] = {"class": "rec", "from": [], "target": "classes", "unit": unit, **rec_opts}
    return net


# ---------------------------------------------------------------------------------------------
# softmax_over_spatial
# ---------------------------------------------------------------------------------------------


def test_softmax_over_spatial_shapes():
    net = dict(ENC)
    net["e"] = {
        "class": "dot",
        "from": ["enc_ctx", "dec"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
        "var2": "T",
    }  # [B, T(data), T(classes)]
    net["sm"] = {"class": "softmax_over_spatial", "from": "enc", "energy_factor": 0.5}
    net["sm_e"] = {"class": "softmax_over_spatial", "from": "e"}
    net["sm_axis"] = {"class": "softmax_over_spatial", "from": "e", "axis": "stag:data"}
    net["sm_log"] = {
        "class": "softmax_over_spatial",
        "from": "enc",
        "log_space": True,
        "use_time_mask": False,
    }
    r = ok(net)
    assert shape(r, "sm") == "[B, T(data), F=6]"
    assert shape(r, "sm_e") == "[B, T(data), T(classes)]"
    assert shape(r, "sm_axis") == "[B, T(data), T(classes)]"
    assert shape(r, "sm_log") == "[B, T(data), F=6]"
    assert params(r, "sm") == {}


def test_softmax_over_spatial_window():
    net = dict(ENC)
    net["start"] = {"class": "linear", "from": "enc", "n_out": 1}  # wrong: has a time axis
    net["ws"] = {
        "class": "softmax_over_spatial",
        "from": "enc",
        "window_start": 2,
        "window_size": 3,
    }
    r = ok(net)
    assert shape(r, "ws") == "[B, T(data), F=6]"
    bad = dict(net)
    bad["wl"] = {
        "class": "softmax_over_spatial",
        "from": "enc",
        "window_start": "start",
        "window_size": 3,
    }
    msg = one_error(run(bad), "shape.window-start", "network.wl.window_start")
    assert "`start` [B, T(data), F=1]" in msg and "[B]" in msg
    bad = dict(net)
    bad["nw"] = {"class": "softmax_over_spatial", "from": "enc", "window_start": 2}
    one_error(run(bad), "shape.missing-option", "network.nw.window_size")


def test_softmax_over_spatial_window_start_layer_in_rec():
    r = ok(
        decoder(
            {
                "pos": {"class": "linear", "from": "prev:output", "n_out": 1},  # [B, F=1]
                "q": {"class": "linear", "from": "prev:output", "n_out": 4},
                "e": {
                    "class": "dot",
                    "from": ["base:enc_ctx", "q"],
                    "red1": "F",
                    "red2": "F",
                    "var1": "T",
                    "var2": None,
                },
                "w": {
                    "class": "softmax_over_spatial",
                    "from": "e",
                    "window_start": "pos",
                    "window_size": 2,
                },
                "att": {"class": "generic_attention", "weights": "w", "base": "base:enc"},
                "prob": {"class": "softmax", "from": "att", "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 2},
            }
        )
    )
    assert shape(r, "output/w") == "[B, T(data)]"
    assert shape(r, "output/att") == "[B, F=6]"


def test_softmax_over_spatial_errors():
    net = {
        "x": {"class": "linear", "from": "data", "n_out": 3},
        "s": {"class": "softmax_over_spatial", "from": "x", "axis": "B"},
    }
    assert "batch" in one_error(run(net), "shape.axis", "network.s.axis")
    net = {"s": {"class": "softmax_over_spatial", "from": "data:classes"}}
    msg = one_error(run(net), "shape.sparse-input", "network.s.from")
    assert "`data:classes` [B, T(classes)] sparse(5)" in msg


def test_softmax_over_spatial_no_time_axis():
    r = run(
        {
            "g0": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
            "g": {"class": "linear", "from": "g0", "n_out": 3},
            "s": {"class": "softmax_over_spatial", "from": "g"},
        }
    )
    msg = one_error(r, "shape.no-time", "network.s.from")
    assert "`g` [B, F=3]" in msg


# ---------------------------------------------------------------------------------------------
# dot
# ---------------------------------------------------------------------------------------------


def test_dot_in_decoder_step_like_base_convert():
    r = ok(
        decoder(
            {
                "s": {"class": "linear", "from": "prev:output", "n_out": 4},  # [B, F=4]
                "energy": {
                    "class": "dot",
                    "from": ["base:enc_ctx", "s"],
                    "red1": "F",
                    "red2": "F",
                    "var1": "T",
                    "var2": None,
                },
                "w": {"class": "softmax_over_spatial", "from": "energy", "axis": "T"},
                "att": {
                    "class": "generic_attention",
                    "from": [],
                    "weights": "w",
                    "base": "base:enc",
                },
                "prob": {"class": "softmax", "from": ["s", "att"], "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 2},
            }
        )
    )
    assert shape(r, "output/energy") == "[B, T(data)]"
    assert shape(r, "output/w") == "[B, T(data)]"
    assert shape(r, "output/att") == "[B, F=6]"
    assert shape(r, "output/output") == "[B] sparse(5)"
    assert shape(r, "output") == "[B, T(classes)] sparse(5)"
    assert params(r, "output/energy") == {}


def test_dot_shapes_over_sequences():
    net = dict(ENC)
    net["q"] = {"class": "linear", "from": "data:heads4", "n_out": 6}  # [B, T(heads4), S=4, F=6]
    net["k"] = {"class": "linear", "from": "data:heads4", "n_out": 6}
    net["e_full"] = {
        "class": "dot",
        "from": ["enc_ctx", "dec"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
        "var2": "T",
    }
    net["e_absent"] = {
        "class": "dot",
        "from": ["enc_ctx", "dec"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
    }  # var2 absent: decoder T is broadcast
    net["e_heads"] = {
        "class": "dot",
        "from": ["q", "k"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
        "var2": None,
    }  # shared: B, T(heads4)?? no: T is var1
    net["ctx_over_time"] = {
        "class": "dot",
        "from": ["enc_ctx", "enc"],
        "red1": "T",
        "red2": "T",
        "var1": "F",
        "var2": "F",
    }
    net["broadcast"] = {
        "class": "dot",
        "from": ["enc", "enc_ctx"],
        "red1": "T",
        "red2": "T",
        "var1": "F",
        "var2": None,
    }
    net["last"] = {"class": "get_last_hidden_state", "from": "enc_ctx", "n_out": 4}
    net["energy"] = {
        "class": "dot",
        "from": ["enc_ctx", "last"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
    }
    net["v1_feature"] = {
        "class": "dot",
        "from": ["enc", "energy"],
        "red1": "T",
        "red2": "T",
        "var1": "F",
        "var2": None,
    }
    r = ok(net)
    assert shape(r, "e_full") == "[B, T(data), T(classes)]"
    assert shape(r, "e_absent") == "[B, T(classes), T(data)]"
    # T(heads4) of k is neither reduced nor kept but is shared with q's (kept via var1)?
    # no: q's T is var1, so k's T(heads4) is only in k: broadcast before var axes.
    assert shape(r, "e_heads") == "[B, S=4, T(heads4), T(heads4)]"
    # var1 F and var2 F: input 2's feature stays the feature axis, input 1's becomes static
    assert shape(r, "ctx_over_time") == "[B, S=4, F=6]"
    # input 2's F=4 is neither reduced nor kept: broadcast (kept, as a static axis)
    assert shape(r, "broadcast") == "[B, S=4, F=6]"
    assert shape(r, "energy") == "[B, T(data)]"
    assert shape(r, "v1_feature") == "[B, F=6]"


def test_dot_heads_shared():
    extern = {
        "a": {"shape": [None, 4, 6]},
        "b": {"shape": [None, 4, 6], "same_time_as": "a"},
        "c": {"shape": [None, 4, 6]},
    }
    r = ok(
        {
            "att_e": {
                "class": "dot",
                "from": ["data:a", "data:c"],
                "red1": "F",
                "red2": "F",
                "var1": "T",
                "var2": "T",
            },
            "att_v": {
                "class": "dot",
                "from": ["att_e", "data:c"],
                "red1": "stag:c",
                "red2": "T",
                "var1": "stag:a",
                "var2": "F",
            },
            "att_b": {
                "class": "dot",
                "from": ["data:a", "data:b"],
                "red1": "T",
                "red2": "T",
                "var1": None,
                "var2": "F",
            },
        },
        extern,
    )
    assert shape(r, "att_e") == "[B, S=4, T(a), T(c)]"
    assert shape(r, "att_v") == "[B, S=4, T(a), F=6]"
    # input 1's F=6 is neither reduced nor kept: broadcast, as a static axis
    assert shape(r, "att_b") == "[B, S=4, S=6, F=6]"


def test_dot_errors():
    net = dict(ENC)
    net["d"] = {"class": "dot", "from": ["enc", "dec"], "red1": "F", "red2": "F", "var1": "T"}
    msg = one_error(run(net), "shape.dot-reduce", "network.d.red2")
    assert "F=6" in msg and "F=4" in msg and "`enc` [B, T(data), F=6]" in msg
    assert "`dec` [B, T(classes), F=4]" in msg
    net = dict(ENC)
    net["d"] = {
        "class": "dot",
        "from": ["enc", "dec"],
        "red1": "T",
        "red2": "T",
        "var1": "F",
        "var2": "F",
    }
    msg = one_error(run(net), "shape.dot-reduce", "network.d.red2")
    assert "T(data)" in msg and "T(classes)" in msg and "different time axes" in msg
    net = dict(ENC)
    net["d"] = {"class": "dot", "from": "enc", "red1": "F", "red2": "F"}
    assert "exactly two" in one_error(run(net), "shape.inputs", "network.d.from")
    net = dict(ENC)
    net["d"] = {"class": "dot", "from": ["enc", "enc"], "red1": "F", "red2": "stag:nope"}
    assert "stag:nope" in one_error(run(net), "shape.axis", "network.d.red2")
    net = dict(ENC)
    net["d"] = {"class": "dot", "from": ["enc", "enc"], "red1": ["F", "T"], "red2": "F"}
    one_error(run(net), "shape.dot-reduce", "network.d.red2")
    net = dict(ENC)
    net["d"] = {"class": "dot", "from": ["enc", "enc"], "red1": "F", "red2": "F", "var1": "B"}
    one_error(run(net), "shape.axis", "network.d.var1")
    net = {"d": {"class": "dot", "from": ["data:classes", "data"], "red1": "T", "red2": "T"}}
    one_error(run(net), "shape.sparse-input", "network.d.from")


# ---------------------------------------------------------------------------------------------
# generic_attention
# ---------------------------------------------------------------------------------------------


def test_generic_attention_shapes():
    extern = dict(EXTERN)
    extern["hw"] = {"shape": [None, 4, 1], "same_time_as": "data"}  # [B, T(data), S=4, F=1]
    extern["hb"] = {"shape": [None, 4, 6], "same_time_as": "data"}  # [B, T(data), S=4, F=6]
    extern["hwf"] = {"shape": [None, 4], "same_time_as": "data"}  # [B, T(data), F=4]
    net = dict(ENC)
    net["w"] = {"class": "softmax_over_spatial", "from": "enc_ctx"}  # [B, T(data), F=4]?
    net["w1"] = {"class": "linear", "from": "enc", "n_out": 1}  # [B, T(data), F=1]
    net["e"] = {
        "class": "dot",
        "from": ["dec", "enc_ctx"],
        "red1": "F",
        "red2": "F",
        "var1": "T",
        "var2": "T",
    }  # [B, T(classes), T(data)]
    net["a_sq"] = {"class": "generic_attention", "weights": "w1", "base": "enc"}
    net["a_nosq"] = {
        "class": "generic_attention",
        "weights": "w1",
        "base": "enc",
        "auto_squeeze": False,
    }
    net["a_dec"] = {"class": "generic_attention", "weights": "e", "base": "enc"}
    net["a_heads"] = {"class": "generic_attention", "weights": "data:hw", "base": "data:hb"}
    net["a_heads_f"] = {"class": "generic_attention", "weights": "data:hwf", "base": "data:hb"}
    r = ok(net, extern)
    assert shape(r, "a_sq") == "[B, F=6]"
    assert shape(r, "a_nosq") == "[B, S=1, F=6]"
    assert shape(r, "a_dec") == "[B, T(classes), F=6]"
    assert shape(r, "a_heads") == "[B, S=4, F=6]"
    assert shape(r, "a_heads_f") == "[B, S=4, F=6]"
    assert params(r, "a_dec") == {}


def test_generic_attention_errors():
    net = dict(ENC)
    net["a"] = {"class": "generic_attention", "weights": "dec", "base": "enc"}
    msg = one_error(run(net), "shape.generic-attention", "network.a.weights")
    assert "`weights` `dec` [B, T(classes), F=4]" in msg and "`base` `enc` [B, T(data), F=6]" in msg
    assert "T(data)" in msg
    extern = dict(EXTERN)
    extern["hb"] = {"shape": [None, 4, 6], "same_time_as": "data"}
    net = dict(ENC)
    net["w"] = {"class": "softmax_over_spatial", "from": "enc"}
    net["a"] = {"class": "generic_attention", "weights": "w", "base": "data:hb"}
    msg = one_error(run(net, extern), "shape.generic-attention", "network.a.weights")
    assert "S=4" in msg
    net = dict(ENC)
    net["a"] = {"class": "generic_attention", "from": "enc", "weights": "enc", "base": "enc"}
    one_error(run(net), "shape.inputs", "network.a.from")
    r = run({"a": {"class": "generic_attention", "weights": "data"}})
    assert any(d.rule.startswith("schema") and "base" in d.message for d in r.errors)


def test_generic_attention_without_from_reads_nothing():
    # `from` absent must not default to `data` (data has another time axis than `dec`)
    net = dict(ENC)
    net["e"] = {"class": "linear", "from": "dec", "n_out": 1}
    net["w"] = {"class": "softmax_over_spatial", "from": "e"}
    net["a"] = {"class": "generic_attention", "weights": "w", "base": "dec"}
    r = ok(net)
    assert shape(r, "a") == "[B, F=4]"
    assert not r.inferred.graph.g.has_edge("data:data", "a")


# ---------------------------------------------------------------------------------------------
# dot_attention / concat_attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["dot_attention", "concat_attention"])
def test_per_step_attention_shapes(cls):
    extra = {"energy_factor": 0.5} if cls == "dot_attention" else {}
    r = ok(
        decoder(
            {
                "emb": {"class": "linear", "from": "prev:output", "n_out": 3},
                "s": {"class": "linear", "from": ["emb", "prev:att"], "n_out": 4},
                "att": {
                    "class": cls,
                    "from": "s",
                    "base": "base:enc",
                    "base_ctx": "base:enc_ctx",
                    **extra,
                },
                "prob": {"class": "softmax", "from": ["s", "att"], "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 2},
            }
        )
    )
    assert shape(r, "output/att") == "[B, F=6]"
    assert shape(r, "output/s") == "[B, F=4]"  # prev:att guessed [B, F=6] from base
    warns = [d for d in r.warnings if d.rule == "deprecated"]
    assert warns and "generic_attention" in warns[0].hint
    assert warns[0].dotted_path == "network.output.unit.att.class"
    expected = {"v": (4,)} if cls == "concat_attention" else {}
    assert params(r, "output/att") == expected
    # over a whole decoder sequence
    net = dict(ENC)
    net["att"] = {"class": cls, "from": "dec", "base": "enc", "base_ctx": "enc_ctx", "n_out": 6}
    r = ok(net)
    assert shape(r, "att") == "[B, T(classes), F=6]"


@pytest.mark.parametrize("cls", ["dot_attention", "concat_attention"])
def test_per_step_attention_errors(cls):
    net = dict(ENC)
    net["att"] = {"class": cls, "from": "dec", "base": "enc", "base_ctx": "enc"}
    msg = one_error(run(net), "shape.attention-features", "network.att.base_ctx")
    assert (
        "`from` `dec` [B, T(classes), F=4]" in msg and "`base_ctx` `enc` [B, T(data), F=6]" in msg
    )
    net = dict(ENC)
    net["att"] = {"class": cls, "from": "dec", "base": "enc", "base_ctx": "enc_ctx", "n_out": 5}
    msg = one_error(run(net), "shape.n-out", "network.att.n_out")
    assert "`enc` [B, T(data), F=6]" in msg
    net = dict(ENC)
    net["att"] = {"class": cls, "from": "enc_ctx", "base": "enc", "base_ctx": "enc_ctx"}
    msg = one_error(run(net), "shape.attention-source", "network.att.from")
    assert "`enc_ctx` [B, T(data), F=4]" in msg
    net = dict(ENC)
    net["att"] = {"class": cls, "from": "dec", "base": "enc", "base_ctx": "dec"}
    msg = one_error(run(net), "shape.attention-base", "network.att.base_ctx")
    assert "`dec` [B, T(classes), F=4]" in msg and "`enc` [B, T(data), F=6]" in msg
    net = dict(ENC)
    net["g"] = {"class": "get_last_hidden_state", "from": "enc", "n_out": 6}
    net["att"] = {"class": cls, "from": "dec", "base": "g", "base_ctx": "enc_ctx"}
    one_error(run(net), "shape.attention-base", "network.att.base")


# ---------------------------------------------------------------------------------------------
# gauss_window_attention
# ---------------------------------------------------------------------------------------------


def test_gauss_window_attention_shapes():
    r = ok(
        decoder(
            {
                "loc": {"class": "linear", "from": "prev:output", "n_out": 1},
                "att": {
                    "class": "gauss_window_attention",
                    "from": "loc",
                    "base": "base:enc",
                    "window_size": 5,
                    "inner_size": 3,
                },
                "att2": {
                    "class": "gauss_window_attention",
                    "from": "loc",
                    "base": "base:enc",
                    "window_size": 5,
                },
                "prob": {"class": "softmax", "from": ["att2", "loc"], "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 2},
            }
        )
    )
    assert shape(r, "output/att") == "[B, S=3, F=6]"
    assert shape(r, "output/att2") == "[B, F=6]"
    assert params(r, "output/att") == {}
    assert any(d.rule == "deprecated" for d in r.warnings)
    net = dict(ENC)
    net["loc"] = {"class": "linear", "from": "dec", "n_out": 1}
    net["att"] = {"class": "gauss_window_attention", "from": "loc", "base": "enc", "window_size": 3}
    net["att_i"] = {
        "class": "gauss_window_attention",
        "from": "loc",
        "base": "enc",
        "window_size": 3,
        "inner_size": 5,
    }
    r = ok(net)
    assert shape(r, "att") == "[B, T(classes), F=6]"
    assert shape(r, "att_i") == "[B, T(classes), S=5, F=6]"


def test_gauss_window_attention_errors():
    net = dict(ENC)
    net["att"] = {"class": "gauss_window_attention", "from": "dec", "base": "enc", "window_size": 3}
    msg = one_error(run(net), "shape.gauss-location", "network.att.from")
    assert "`dec` [B, T(classes), F=4]" in msg and "[B, F=1]" in msg
    net = dict(ENC)
    net["loc"] = {"class": "linear", "from": "enc", "n_out": 1}
    net["att"] = {"class": "gauss_window_attention", "from": "loc", "base": "enc", "window_size": 3}
    msg = one_error(run(net), "shape.attention-source", "network.att.from")
    assert "`loc` [B, T(data), F=1]" in msg
    net = {
        "att": {
            "class": "gauss_window_attention",
            "from": "data:classes",
            "base": "data",
            "window_size": 3,
        }
    }
    one_error(run(net), "shape.gauss-location", "network.att.from")
    r = run({"att": {"class": "gauss_window_attention", "base": "data"}})
    assert any(d.rule.startswith("schema") and "window_size" in d.message for d in r.errors)


# ---------------------------------------------------------------------------------------------
# relative_positional_encoding / positional_encoding
# ---------------------------------------------------------------------------------------------


def test_relative_positional_encoding():
    net = {
        "emb": {"class": "linear", "from": "data:words", "n_out": 8},
        "rel": {"class": "relative_positional_encoding", "from": "emb", "n_out": 2},
        "rel_fixed": {
            "class": "relative_positional_encoding",
            "from": "emb",
            "n_out": 2,
            "fixed": True,
        },
        "rel_c": {
            "class": "relative_positional_encoding",
            "from": "emb",
            "n_out": 2,
            "clipping": 3,
        },
        "att": {
            "class": "self_attention",
            "from": "emb",
            "num_heads": 4,
            "total_key_dim": 8,
            "n_out": 8,
            "key_shift": "rel",
        },
    }
    r = ok(net)
    assert shape(r, "rel") == "[T(data), T(data), F=2]"
    assert params(r, "rel") == {"encoding_matrix": (33, 2)}
    assert params(r, "rel_fixed") == {}
    assert params(r, "rel_c") == {"encoding_matrix": (7, 2)}
    assert shape(r, "att") == "[B, T(data), F=8]"


def test_relative_positional_encoding_in_rec():
    net = {
        "emb": {"class": "linear", "from": "data", "n_out": 8},
        "r": {
            "class": "rec",
            "from": "emb",
            "unit": {
                "rel": {"class": "relative_positional_encoding", "from": "data:source", "n_out": 4},
                "output": {
                    "class": "self_attention",
                    "from": "data:source",
                    "num_heads": 2,
                    "total_key_dim": 8,
                    "n_out": 8,
                    "attention_left_only": True,
                    "key_shift": "rel",
                },
            },
        },
    }
    r = ok(net)
    assert shape(r, "r/rel") == "[S=1, T(data), F=4]"
    assert shape(r, "r") == "[B, T(data), F=8]"


def test_relative_positional_encoding_errors():
    r = run(
        {
            "g0": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
            "g": {"class": "linear", "from": "g0", "n_out": 3},
            "rel": {"class": "relative_positional_encoding", "from": "g", "n_out": 2},
        }
    )
    assert "`g` [B, F=3]" in one_error(r, "shape.no-time", "network.rel.from")
    r = run({"rel": {"class": "relative_positional_encoding", "from": "data"}})
    assert any(d.rule.startswith("schema") and "n_out" in d.message for d in r.errors)
    r = run(
        {
            "rel": {"class": "relative_positional_encoding", "from": "data", "n_out": 3},
            "att": {
                "class": "self_attention",
                "num_heads": 2,
                "total_key_dim": 8,
                "n_out": 4,
                "key_shift": "rel",
            },
        }
    )
    assert "F=4" in one_error(r, "shape.key-shift", "network.att.key_shift")


def test_positional_encoding():
    r = ok(
        {
            "emb": {"class": "linear", "from": "data:words", "n_out": 8},
            "off0": {"class": "reduce", "mode": "mean", "axes": "T", "from": "emb"},
            "off": {"class": "linear", "from": "off0", "n_out": 1},
            "p_add": {"class": "positional_encoding", "from": "emb", "add_to_input": True},
            "p_new": {"class": "positional_encoding", "from": "data:words", "n_out": 6},
            "p_off": {"class": "positional_encoding", "from": "emb", "n_out": 4, "offset": "off"},
            "r": {
                "class": "rec",
                "from": "emb",
                "unit": {
                    "output": {
                        "class": "positional_encoding",
                        "from": "data:source",
                        "add_to_input": True,
                    }
                },
            },
        }
    )
    assert shape(r, "p_add") == "[B, T(data), F=8]"
    assert shape(r, "p_new") == "[B, T(data), F=6]"
    assert shape(r, "p_off") == "[B, T(data), F=4]"
    assert shape(r, "r/output") == "[B, F=8]"
    assert shape(r, "r") == "[B, T(data), F=8]"
    assert params(r, "p_add") == {}


def test_positional_encoding_errors():
    r = run({"p": {"class": "positional_encoding", "from": "data"}})
    one_error(r, "shape.missing-option", "network.p")
    r = run({"p": {"class": "positional_encoding", "from": "data:words", "add_to_input": True}})
    assert "`data:words`" in one_error(r, "shape.no-feature", "network.p.from")
    r = run(
        {"p": {"class": "positional_encoding", "from": "data", "add_to_input": True, "n_out": 3}}
    )
    assert "[B, T(data), F=8]" in one_error(r, "shape.n-out", "network.p.n_out")
    r = run({"p": {"class": "positional_encoding", "from": "data", "n_out": 3, "offset": "data"}})
    assert "`data` [B, T(data), F=8]" in one_error(r, "shape.positional-offset", "network.p.offset")


# ---------------------------------------------------------------------------------------------
# rnn_cell / get_last_hidden_state / choice
# ---------------------------------------------------------------------------------------------


def test_rnn_cell():
    r = ok(
        decoder(
            {
                "emb": {"class": "linear", "from": "prev:output", "n_out": 3},
                "s": {"class": "rnn_cell", "unit": "lstm", "from": ["emb", "prev:s"], "n_out": 7},
                "g": {"class": "rnn_cell", "unit": "gru", "from": "prev:output", "n_out": 2},
                "prob": {"class": "softmax", "from": ["s", "g"], "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3},
            }
        )
    )
    assert shape(r, "output/s") == "[B, F=7]"
    assert params(r, "output/s") == {"W": (10, 28), "W_re": (7, 28), "b": (28,)}
    assert params(r, "output/g") == {"W": (5, 6), "W_re": (2, 6), "b": (6,)}
    r = ok({"s": {"class": "rnn_cell", "unit": "nativelstm2", "from": "data", "n_out": 4}})
    assert shape(r, "s") == "[B, T(data), F=4]"
    assert params(r, "s") == {"W": (8, 16), "W_re": (4, 16), "b": (16,)}


def test_rnn_cell_errors():
    r = run(
        {
            "g0": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
            "g": {"class": "linear", "from": "g0", "n_out": 3},
            "s": {"class": "rnn_cell", "unit": "lstm", "from": "g", "n_out": 4},
        }
    )
    assert "`g` [B, F=3]" in one_error(r, "shape.no-time", "network.s.from")
    r = run({"s": {"class": "rnn_cell", "unit": "lstm", "from": "data"}})
    assert any(d.rule.startswith("schema") and "n_out" in d.message for d in r.errors)
    r = run({"s": {"class": "rnn_cell", "unit": "rnn", "from": "data", "n_out": 3}})
    assert any(d.rule.startswith("schema") and d.dotted_path == "network.s.unit" for d in r.errors)


def test_get_last_hidden_state():
    r = ok(
        {
            "l": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
            "m": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
            "h": {"class": "get_last_hidden_state", "from": ["l", "m"], "n_out": 16},
            "h2": {
                "class": "get_last_hidden_state",
                "from": ["l", "m"],
                "n_out": 4,
                "key": "h",
                "combine": "add",
            },
        }
    )
    assert shape(r, "h") == "[B, F=16]"  # an LSTM's state is c‖h
    assert shape(r, "h2") == "[B, F=4]"
    assert params(r, "h") == {}
    r = run(
        {
            "l": {"class": "rec", "unit": "gru", "from": "data", "n_out": 4},
            "h": {"class": "get_last_hidden_state", "from": "l", "n_out": 4, "key": "c"},
        }
    )
    one_error(r, "shape.state-key", "network.h.key")
    r = run(
        {
            "l": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
            "h": {"class": "get_last_hidden_state", "from": "l", "n_out": 4},
        }
    )
    assert "state size 8" in one_error(r, "shape.n-out", "network.h.n_out")
    r = run({"h": {"class": "get_last_hidden_state", "from": "data", "n_out": 4, "combine": "mul"}})
    assert any(d.dotted_path == "network.h.combine" for d in r.errors)
    r = run({"h": {"class": "get_last_hidden_state", "from": [], "n_out": 4}})
    one_error(r, "shape.inputs", "network.h.from")


def test_choice():
    r = ok(
        {
            "p": {"class": "softmax", "from": "data", "target": "classes"},
            "c": {
                "class": "choice",
                "from": "p",
                "target": "classes",
                "beam_size": 4,
                "input_type": "log_prob",
            },
        }
    )
    assert shape(r, "c") == "[B, T(data)] sparse(5)"
    assert r.inferred.shapes["c"].dtype == "int32"
    assert params(r, "c") == {}


def test_choice_prev_output_cycle_is_broken_by_guess():
    r = ok(
        decoder(
            {
                "emb": {"class": "linear", "from": "prev:output", "n_out": 3},
                "prob": {"class": "softmax", "from": "emb", "target": "classes"},
                "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3},
            }
        )
    )
    assert shape(r, "output/output") == "[B] sparse(5)"
    assert shape(r, "output/emb") == "[B, F=3]"


def test_choice_errors():
    r = run(
        {
            "p": {"class": "linear", "from": "data", "n_out": 4},
            "c": {"class": "choice", "from": "p", "target": "classes", "beam_size": 4},
        }
    )
    msg = one_error(r, "shape.choice-classes", "network.c.from")
    assert "`p` [B, T(data), F=4]" in msg and "`classes` [B, T(classes)] sparse(5)" in msg
    r = run({"c": {"class": "choice", "from": "data", "target": "data", "beam_size": 4}})
    one_error(r, "shape.choice-target", "network.c.target")
    r = run({"c": {"class": "choice", "from": "data", "target": "classes"}})
    assert any(d.rule.startswith("schema") and "beam_size" in d.message for d in r.errors)


def test_validation_does_not_import_tensorflow():
    ok({"c": {"class": "relative_positional_encoding", "from": "data", "n_out": 2}})
    for name in list(sys.modules):
        if name.startswith("netcompiler.layers."):
            mod = sys.modules[name]
            assert "tensorflow" not in getattr(mod, "__dict__", {}), name
