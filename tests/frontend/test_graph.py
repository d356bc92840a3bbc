"""The dependency graph (references, cycles, outputs) and the shape errors of the front end."""

from __future__ import annotations

import pytest

from netcompiler.core.diagnostics import ERROR, WARNING, format_text
from netcompiler.frontend.graph import build_graph, output_layers
from netcompiler.frontend.loader import parse_yaml
from netcompiler.frontend.network import build_network
from netcompiler.frontend.validate import validate

BASE = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  enc: {class: linear, from: data, n_out: 32, activation: tanh}
  att: {class: self_attention, from: enc, n_out: 32, num_heads: 4, total_key_dim: 32}
  output: {class: softmax, from: att, loss: ce, target: classes}
"""

DECODER = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 5, sparse: true}
network:
  enc: {class: linear, from: data, n_out: 8}
  dec:
    class: rec
    from: []
    target: classes
    unit:
      emb: {class: linear, from: prev:output, n_out: 6}
      s: {class: linear, from: [emb, prev:s], n_out: 16}
      output: {class: softmax, from: s, n_out: 5, loss: ce, target: classes}
  output: {class: linear, from: dec, n_out: 3, is_output_layer: true}
  ctx: {class: linear, from: enc, n_out: 9, loss: mse, target: data}
"""


def check(text: str, old: str | None = None, new: str | None = None, **kw):
    if old is not None:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return validate(text, name="g.yaml", **kw)


def errors(result):
    return [(d.rule, d.path, d.line, d.col) for d in result.errors]


def the_error(result, rule=None):
    errs = [d for d in result.errors if rule is None or d.rule == rule]
    assert len(errs) == 1, [format_text(d) for d in result.diagnostics]
    return errs[0]


def test_valid_configs():
    for text in (BASE, DECODER):
        result = check(text)
        assert result.ok and result.diagnostics == [], [format_text(d) for d in result.diagnostics]


# -- references -----------------------------------------------------------------------------------


def test_unknown_reference_with_suggestion():
    result = check(BASE, "from: enc", "from: ecn")
    d = the_error(result)
    assert d.rule == "graph.unknown-layer"
    assert d.message == "unknown layer `ecn` in `ecn`"
    assert d.hint == "did you mean `enc`?"
    assert (d.path, d.line, d.col) == (("network", "att", "from"), 6, 32)
    # a layer with a bad input is not shape-inferred, and `enc` is now unused
    assert "att" not in result.inferred.shapes
    assert [(w.rule, w.path) for w in result.warnings] == [("graph.unused", ("network", "enc"))]


def test_unknown_reference_in_a_list_is_located_at_the_item():
    result = check(BASE, "from: enc", "from: [enc, data, attn]")
    d = the_error(result)
    assert d.rule == "graph.unknown-layer"
    assert d.hint == "did you mean `att`?"
    assert (d.path, d.line, d.col) == (("network", "att", "from", 2), 6, 50)


def test_unknown_reference_in_a_rec_unit_suggests_base():
    result = check(DECODER, "from: [emb, prev:s]", "from: [emb, prev:s, ecn]")
    d = the_error(result)
    assert d.rule == "graph.unknown-layer"
    assert d.message == "unknown layer `ecn` in `ecn` in the unit of `dec`"
    assert d.hint == "did you mean `base:enc`?"
    assert (d.path, d.line, d.col) == (("network", "dec", "unit", "s", "from", 2), 12, 46)


def test_enclosing_layer_name_inside_a_rec_unit_suggests_base():
    d = the_error(check(DECODER, "from: [emb, prev:s]", "from: [emb, prev:s, enc]"))
    assert d.rule == "graph.unknown-layer"
    assert d.hint == "did you mean `base:enc`?"


def test_base_reference_inside_a_rec_unit_resolves():
    result = check(DECODER, "from: [emb, prev:s]", "from: [emb, prev:s, base:enc]")
    # `enc` is over T(data) while the unit runs per step over T(classes): the graph is fine,
    # the edge exists, only the shapes disagree
    graph = result.graph
    assert graph.g.has_edge("enc", "dec/s")
    assert not any(d.rule.startswith("graph") for d in result.diagnostics)


def test_unknown_extern_data_key_with_suggestion():
    d = the_error(check(BASE, "from: data,", "from: data:clases,"))
    assert d.rule == "graph.unknown-data"
    assert d.message == "unknown extern data `clases` in `data:clases`"
    assert d.hint == "did you mean `classes`?"
    assert (d.path, d.line, d.col) == (("network", "enc", "from"), 5, 24)


def test_default_from_is_data():
    d = the_error(
        check(
            BASE.replace("  data: {dim: 9}\n", "  feats: {dim: 9}\n").replace(
                "same_time_as: data", "same_time_as: feats"
            ),
            "from: data, ",
            "",
        )
    )
    assert d.rule == "graph.unknown-data"
    assert d.message == "unknown extern data `data` in `data`"
    assert d.hint is None
    # `from` is not written: located at the layer
    assert (d.path, d.line, d.col) == (("network", "enc", "from"), 5, 3)


@pytest.mark.parametrize(
    "ref, rule, message",
    [
        (
            "prev:enc",
            "graph.prev-outside-rec",
            "`prev:enc`: `prev:` is only valid inside a rec unit",
        ),
        (
            "base:enc",
            "graph.base-outside-rec",
            "`base:enc`: `base:` is only valid inside a rec unit or a subnetwork",
        ),
        (
            "data:source",
            "graph.source-outside-rec",
            "`data:source`: `data:source` is only valid inside a rec unit",
        ),
    ],
)
def test_rec_only_references_outside_a_rec_unit(ref, rule, message):
    result = check(BASE, "from: enc", f"from: {ref}")
    d = the_error(result)
    assert (d.rule, d.message) == (rule, message)
    assert (d.path, d.line, d.col) == (("network", "att", "from"), 6, 32)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("prev:data", "`prev:data`: `prev:` of data is not supported"),
        ("prev:base:enc", "`prev:base:enc`: `prev:base:` is not a valid reference"),
    ],
)
def test_bad_references_inside_a_rec_unit(ref, message):
    d = the_error(check(DECODER, "from: prev:output, n_out: 6", f"from: {ref}, n_out: 6"))
    assert (d.rule, d.message) == ("graph.bad-reference", message)
    assert (d.path, d.line, d.col) == (("network", "dec", "unit", "emb", "from"), 11, 28)


def test_data_source_and_extern_frames_inside_a_rec_unit():
    text = """\
extern_data:
  data: {dim: 9}
network:
  output:
    class: rec
    from: data
    unit:
      x: {class: linear, from: [data:source, data:data, prev:output], n_out: 4}
      output: {class: linear, from: x, n_out: 3}
"""
    result = check(text)
    assert result.ok, [format_text(d) for d in result.diagnostics]
    refs = {ref.text: ref for _, ref in result.graph.refs["output/x"]}
    assert refs["data:source"].kind == "source"
    assert refs["data:data"].kind == "extern" and refs["data:data"].frame
    assert refs["prev:output"].prev
    # the unit layer reading data:source depends on the rec layer's input
    assert result.graph.g.has_edge("data:data", "output/x")
    assert str(result.inferred.shapes["output"]) == "[B, T(data), F=3]"


# -- cycles ---------------------------------------------------------------------------------------


def test_cycle_not_through_prev():
    text = """\
extern_data:
  data: {dim: 9}
network:
  b: {class: linear, from: [data, a], n_out: 4}
  a: {class: linear, from: b, n_out: 4}
  output: {class: softmax, from: a, n_out: 3}
"""
    result = check(text)
    d = the_error(result)
    assert d.rule == "graph.cycle"
    assert d.message == "dependency cycle not through `prev:`: a -> b -> a"
    assert d.hint == "inside a rec unit, read the previous step with `prev:NAME`"
    assert (d.path, d.line, d.col) == (("network", "a"), 5, 3)
    assert result.inferred is None  # no shape inference on a cyclic graph


def test_self_cycle_and_longer_cycle():
    text = """\
extern_data:
  data: {dim: 9}
network:
  x: {class: linear, from: x, n_out: 4}
  p: {class: linear, from: r, n_out: 4}
  q: {class: linear, from: p, n_out: 4}
  r: {class: linear, from: q, n_out: 4}
  output: {class: softmax, from: [x, r], n_out: 3}
"""
    result = check(text)
    got = sorted((d.message, d.path, d.line) for d in result.errors)
    assert got == [
        ("dependency cycle not through `prev:`: p -> q -> r -> p", ("network", "p"), 5),
        ("dependency cycle not through `prev:`: x -> x", ("network", "x"), 4),
    ]


def test_cycle_inside_a_rec_unit_without_prev():
    result = check(DECODER, "from: [emb, prev:s]", "from: [emb, s]")
    d = the_error(result)
    assert d.rule == "graph.cycle"
    assert d.message == "dependency cycle not through `prev:`: dec/s -> dec/s"
    assert (d.path, d.line, d.col) == (("network", "dec", "unit", "s"), 12, 7)


def test_legal_cycle_through_prev_in_a_rec_unit():
    result = check(DECODER)
    assert result.ok
    g = result.graph.g
    assert g.edges["dec/s", "dec/s"]["prev"] is True
    assert g.edges["dec/output", "dec/emb"]["prev"] is True
    assert g.edges["dec/s", "dec/output"]["prev"] is False
    order = result.graph.order()
    assert (
        order.index("dec/emb")
        < order.index("dec/s")
        < order.index("dec/output")
        < order.index("dec")
    )
    shapes = result.inferred.shapes
    assert str(shapes["dec/s"]) == "[B, F=16]"
    assert str(shapes["dec"]) == "[B, T(classes), F=5]"


def test_two_layer_cycle_through_prev():
    text = DECODER.replace("from: prev:output, n_out: 6", "from: prev:s, n_out: 6").replace(
        "from: [emb, prev:s]", "from: emb"
    )
    result = check(text)
    assert result.ok, [format_text(d) for d in result.diagnostics]


# -- outputs --------------------------------------------------------------------------------------


def test_no_output_layer():
    # `out` has a loss: as in RETURNN, that is enough (it is the output), nothing is unused
    result = check(BASE, "  output: {", "  out: {")
    assert result.errors == [] and result.warnings == []
    # without a loss, nothing is an output
    result = check(
        BASE,
        "  output: {class: softmax, from: att, loss: ce, target: classes}",
        "  out: {class: softmax, from: att, target: classes}",
    )
    d = the_error(result)
    assert d.rule == "graph.no-output"
    assert d.message == (
        "the network has no `output` layer (and no layer with a `loss` or `is_output_layer`)"
    )
    assert d.hint == "name the final layer `output`"
    assert (d.path, d.line, d.col) == (("network",), 4, 1)


def test_rec_unit_without_output_layer():
    result = check(
        DECODER,
        "      output: {class: softmax, from: s, n_out: 5,",
        "      out: {class: softmax, from: s, n_out: 5,",
    )
    errs = [d for d in result.errors if d.rule == "graph.no-output"]
    assert len(errs) == 1
    d = errs[0]
    assert d.message == "the unit of rec layer `dec` has no `output` layer"
    assert (d.path, d.line, d.col) == (("network", "dec", "unit"), 10, 5)


def test_unused_layer_warning():
    result = check(BASE, "  output:", "  extra: {class: linear, from: enc, n_out: 3}\n  output:")
    assert result.ok
    [w] = result.diagnostics
    assert w.severity == WARNING
    assert w.rule == "graph.unused"
    assert w.message == "layer `extra` feeds no output or loss"
    assert (w.path, w.line, w.col) == (("network", "extra"), 7, 3)


def test_layers_feeding_a_loss_or_output_flag_are_used():
    network = build_network(parse_yaml(DECODER).data)
    assert sorted(layer.name for layer in output_layers(network)) == ["ctx", "output"]
    assert check(DECODER).warnings == []


def test_strict_turns_warnings_into_errors():
    text = BASE.replace("  output:", "  extra: {class: linear, from: enc, n_out: 3}\n  output:")
    relaxed = check(text)
    strict = check(text, strict=True)
    assert relaxed.ok and len(relaxed.warnings) == 1
    assert not strict.ok
    [d] = strict.diagnostics
    assert (d.severity, d.rule, d.line, d.col) == (ERROR, "graph.unused", 7, 3)
    assert check(BASE, strict=True).ok


def test_missing_network_reports_only_the_schema_error():
    result = check("extern_data: {data: {dim: 3}}\n")
    assert [(d.rule, d.message) for d in result.diagnostics] == [
        ("schema.missing-option", "missing required option `network`")
    ]


def test_build_graph_directly():
    network = build_network(parse_yaml(BASE).data)
    graph = build_graph(network)
    assert graph.diagnostics == []
    assert set(graph.g.nodes) == {"data:data", "data:classes", "enc", "att", "output"}
    assert graph.order() == ["enc", "att", "output"]


# -- shape errors available with linear, softmax, self_attention and rec -------------------------


def test_total_key_dim_not_divisible_by_num_heads():
    d = the_error(check(BASE, "num_heads: 4", "num_heads: 5"))
    assert d.rule == "shape.num-heads"
    assert d.message == "`total_key_dim` 32 is not divisible by `num_heads` 5"
    assert (d.path, d.line, d.col) == (("network", "att", "total_key_dim"), 6, 68)


def test_n_out_not_divisible_by_num_heads():
    d = the_error(check(BASE, "n_out: 32, num_heads", "n_out: 30, num_heads"))
    assert d.rule == "shape.num-heads"
    assert d.message == "`n_out` 30 is not divisible by `num_heads` 4"
    assert (d.path, d.line, d.col) == (("network", "att", "n_out"), 6, 43)


def test_self_attention_without_time_axis_outside_rec():
    text = BASE.replace("  data: {dim: 9}\n", "  data: {dim: 9}\n  feats: {shape: [5]}\n")
    text = text.replace("from: data,", "from: data:feats,")
    d = the_error(check(text))
    assert d.rule == "shape.no-time"
    assert d.message == ("`self_attention` needs a time axis, but input `enc` is [B, F=32]")
    assert "attention_left_only" in d.hint
    assert (d.path, d.line, d.col) == (("network", "att", "from"), 7, 32)


SELF_ATT_IN_REC = """\
extern_data:
  data: {dim: 9}
network:
  output:
    class: rec
    from: data
    unit:
      s: {class: linear, from: data:source, n_out: 16}
      att: {class: self_attention, from: s, n_out: 8, num_heads: 2, total_key_dim: 8}
      output: {class: linear, from: att, n_out: 3}
"""


def test_self_attention_in_a_rec_unit_needs_attention_left_only():
    d = the_error(check(SELF_ATT_IN_REC))
    assert d.rule == "shape.rec-self-attention"
    assert d.message == (
        "`self_attention` inside a rec unit (input without time axis [B, F=16]) "
        "needs `attention_left_only: true`"
    )
    assert d.path == ("network", "output", "unit", "att", "attention_left_only")
    assert (d.line, d.col) == (9, 7)  # the option is missing: located at the layer


def test_self_attention_in_a_rec_unit_with_attention_left_only():
    result = check(
        SELF_ATT_IN_REC, "total_key_dim: 8}", "total_key_dim: 8, attention_left_only: true}"
    )
    assert result.ok, [format_text(d) for d in result.diagnostics]
    assert str(result.inferred.shapes["output/att"]) == "[B, F=8]"
    assert str(result.inferred.shapes["output"]) == "[B, T(data), F=3]"


def test_concatenating_inputs_with_different_time_axes():
    text = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 5, sparse: true}
network:
  a: {class: linear, from: data, n_out: 4}
  b: {class: linear, from: data:classes, n_out: 4}
  output: {class: softmax, from: [a, b], n_out: 3}
"""
    d = the_error(check(text))
    assert d.rule == "shape.concat"
    assert d.message == (
        "cannot concatenate inputs whose axes differ: `a` [B, T(data), F=4] and "
        "`b` [B, T(classes), F=4]"
    )
    assert (d.path, d.line, d.col) == (("network", "output", "from"), 7, 28)


def test_concatenating_inputs_with_the_same_time_axis():
    text = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 5, sparse: true, same_time_as: data}
network:
  a: {class: linear, from: data, n_out: 4}
  b: {class: linear, from: data:classes, n_out: 4}
  output: {class: softmax, from: [a, b], n_out: 3}
"""
    result = check(text)
    assert result.ok
    assert result.inferred.params["output"]["W"].shape == (8, 3)


def test_rec_cell_without_time_axis():
    text = BASE.replace("  data: {dim: 9}\n", "  data: {dim: 9}\n  feats: {shape: [5]}\n")
    text = text.replace(
        "class: linear, from: data, n_out: 32, activation: tanh",
        "class: rec, unit: lstm, from: data:feats, n_out: 32",
    )
    d = the_error(check(text))
    assert d.rule == "shape.no-time"
    assert d.message == (
        "`rec` with `unit: lstm` needs an input with a time axis, got `data:feats` [B, F=5]"
    )
    assert (d.path, d.line, d.col) == (("network", "enc", "from"), 6, 33)


def test_shape_error_reported_once():
    # `att` fails; `output` reads it and is skipped silently
    result = check(BASE, "num_heads: 4", "num_heads: 5")
    assert len(result.errors) == 1
    assert "att" not in result.inferred.shapes and "output" not in result.inferred.shapes
    assert str(result.inferred.shapes["enc"]) == "[B, T(data), F=32]"
