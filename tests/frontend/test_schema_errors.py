"""Schema errors: one test per kind, checking rule, message, hint, path, line and column."""

from __future__ import annotations

import pytest

from netcompiler.core.diagnostics import ERROR, format_text
from netcompiler.frontend.validate import validate

# columns used below (1-based):
# line 5: `class` 9, `from` 24, `n_out` 36, `activation` 47
# line 6: `att` 3, `class` 9, `from` 32, `n_out` 43, `num_heads` 54, `total_key_dim` 68
# line 7: `output` 3, `class` 12, `from` 28, `loss` 39, `target` 49
BASE = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  enc: {class: linear, from: data, n_out: 32, activation: tanh}
  att: {class: self_attention, from: enc, n_out: 32, num_heads: 4, total_key_dim: 32}
  output: {class: softmax, from: att, loss: ce, target: classes}
"""


def check(text: str, old: str | None = None, new: str | None = None, **kw):
    if old is not None:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return validate(text, name="c.yaml", **kw)


def only(result, errors_only: bool = False):
    diags = result.errors if errors_only else result.diagnostics
    assert len(diags) == 1, [format_text(d) for d in result.diagnostics]
    d = diags[0]
    assert d.severity == ERROR and d.file == "c.yaml"
    return d


def where(d):
    return d.path, d.line, d.col


def test_base_config_is_valid():
    result = check(BASE)
    assert result.ok and result.diagnostics == []


def test_unknown_layer_class_with_suggestion():
    d = only(check(BASE, "class: linear", "class: linaer"))
    assert d.rule == "schema.unknown-class"
    assert d.message == "unknown layer class `linaer`"
    assert d.hint == "did you mean `linear`?"
    assert where(d) == (("network", "enc", "class"), 5, 9)
    assert format_text(d) == (
        "c.yaml:5:9: error: network.enc.class: unknown layer class "
        "`linaer` (did you mean `linear`?) [schema.unknown-class]"
    )


def test_unknown_layer_class_without_close_match():
    d = only(check(BASE, "class: linear", "class: frobnicate"))
    assert d.rule == "schema.unknown-class"
    assert d.hint is None
    assert where(d) == (("network", "enc", "class"), 5, 9)


def test_unknown_option_with_suggestion():
    result = check(BASE, "num_heads: 4", "num_head: 4")
    assert [d.rule for d in result.diagnostics] == [
        "schema.missing-option",
        "schema.unknown-option",
    ]
    missing, unknown = result.diagnostics
    assert unknown.message == "unknown option `num_head` for layer class `self_attention`"
    assert unknown.hint == "did you mean `num_heads`?"
    assert where(unknown) == (("network", "att", "num_head"), 6, 54)
    # the option that is now missing is reported too, at the layer's key
    assert missing.message == "missing required option `num_heads` of layer class `self_attention`"
    assert missing.hint is None
    assert where(missing) == (("network", "att"), 6, 3)


def test_unknown_option_suggests_common_options():
    d = only(check(BASE, "loss: ce", "los: ce"))
    assert d.rule == "schema.unknown-option"
    assert d.message == "unknown option `los` for layer class `softmax`"
    assert d.hint == "did you mean `loss`?"
    assert where(d) == (("network", "output", "los"), 7, 39)


def test_unknown_option_inside_a_rec_unit():
    text = (
        "extern_data: {data: {dim: 3}}\n"
        "network:\n"
        "  output:\n"
        "    class: rec\n"
        "    unit:\n"
        "      output: {class: linear, from: data:source, n_ot: 4}\n"
    )
    d = only(check(text))
    assert d.rule == "schema.unknown-option"
    assert d.message == "unknown option `n_ot` for layer class `linear`"
    assert d.hint == "did you mean `n_out`?"
    assert where(d) == (("network", "output", "unit", "output", "n_ot"), 6, 50)


def test_wrong_type_integer():
    d = only(check(BASE, "num_heads: 4", "num_heads: four"))
    assert d.rule == "schema.type"
    assert d.message == '`num_heads` must be of type integer, got string "four"'
    assert d.hint is None
    assert where(d) == (("network", "att", "num_heads"), 6, 54)


@pytest.mark.parametrize(
    "value, got",
    [
        ("1.5", "number 1.5"),
        ("true", "boolean true"),
        ("[1]", "list [1]"),
        ("{a: 1}", 'mapping {"a": 1}'),
        ("null", "null null"),
    ],
)
def test_wrong_type_of_n_out(value, got):
    d = only(check(BASE, "n_out: 32, activation", f"n_out: {value}, activation"))
    assert d.rule == "schema.type"
    assert d.message == f"`n_out` must be of type integer, got {got}"
    assert where(d) == (("network", "enc", "n_out"), 5, 36)


def test_wrong_type_of_from():
    result = check(BASE, "from: enc", "from: 3")
    d = only(result, errors_only=True)
    assert d.rule == "schema.type"
    assert d.message == "`from` must be of type array or string, got integer 3"
    assert where(d) == (("network", "att", "from"), 6, 32)
    # `enc` is no longer read by anything
    assert [(w.rule, w.path) for w in result.warnings] == [("graph.unused", ("network", "enc"))]


def test_wrong_type_inside_a_from_list():
    d = only(check(BASE, "from: enc", "from: [enc, [x]]"))
    assert d.rule == "schema.type"
    assert d.message == '`[1]` must be of type string, got list ["x"]'
    assert where(d) == (("network", "att", "from", 1), 6, 44)


def test_wrong_type_of_a_layer():
    result = check(
        BASE,
        "  att: {class: self_attention, from: enc, n_out: 32, num_heads: 4, total_key_dim: 32}",
        "  att: 3",
    )
    [d] = [x for x in result.diagnostics if x.rule.startswith("schema")]
    assert d.rule == "schema.type"
    assert d.message == "`att` must be of type object, got integer 3"
    assert where(d) == (("network", "att"), 6, 3)


def test_out_of_range_num_heads_zero():
    d = only(check(BASE, "num_heads: 4", "num_heads: 0"))
    assert d.rule == "schema.range"
    assert d.message == "`num_heads` out of range: must be >= 1, got 0"
    assert d.hint is None
    assert where(d) == (("network", "att", "num_heads"), 6, 54)


def test_out_of_range_exclusive_maximum():
    d = only(check(BASE, "n_out: 32, activation", "n_out: 32, dropout: 1.0, activation"))
    assert d.rule == "schema.range"
    assert d.message == "`dropout` out of range: must be < 1, got 1.0"
    assert where(d) == (("network", "enc", "dropout"), 5, 47)


def test_missing_required_option():
    d = only(check(BASE, ", total_key_dim: 32", ""))
    assert d.rule == "schema.missing-option"
    assert d.message == "missing required option `total_key_dim` of layer class `self_attention`"
    assert d.hint is None
    assert where(d) == (("network", "att"), 6, 3)


def test_missing_class():
    d = only(check(BASE, "class: linear, ", ""))
    assert d.rule == "schema.missing-option"
    assert d.message == "missing required option `class`"
    assert where(d) == (("network", "enc"), 5, 3)


def test_missing_rec_unit():
    d = only(
        check(
            BASE,
            "class: linear, from: data, n_out: 32, activation: tanh",
            "class: rec, from: data, n_out: 32",
        )
    )
    assert d.rule == "schema.missing-option"
    assert d.message == "missing required option `unit` of layer class `rec`"
    assert where(d) == (("network", "enc"), 5, 3)


def test_unknown_activation():
    d = only(check(BASE, "activation: tanh", "activation: tanhh"))
    assert d.rule == "schema.enum"
    assert d.message == "unknown activation `tanhh`"
    assert d.hint == "did you mean `tanh`?"
    assert where(d) == (("network", "enc", "activation"), 5, 47)


def test_unknown_scaled_activation():
    d = only(check(BASE, "activation: tanh", "activation: 2*sigmod"))
    assert (d.rule, d.message, d.hint) == (
        "schema.enum",
        "unknown activation `2*sigmod`",
        "did you mean `sigmoid`?",
    )
    assert where(d) == (("network", "enc", "activation"), 5, 47)


def test_scaled_activation_is_valid():
    assert check(BASE, "activation: tanh", "activation: 2*sigmoid").ok
    assert check(BASE, "activation: tanh", "activation: null").ok


def test_unknown_loss():
    d = only(check(BASE, "loss: ce", "loss: cee"))
    assert d.rule == "schema.enum"
    assert d.message == (
        '`loss`: unknown value "cee" (one of: ce, mse, ctc, edit_distance, '
        "as_is, l1, binary_ce, expected_loss, null)"
    )
    assert d.hint == "did you mean `ce`?"
    assert where(d) == (("network", "output", "loss"), 7, 39)


def test_unknown_rec_unit():
    d = only(
        check(
            BASE,
            "class: linear, from: data, n_out: 32, activation: tanh",
            "class: rec, from: data, n_out: 32, unit: lstmm",
        )
    )
    assert d.rule == "schema.enum"
    assert d.message.startswith('`unit`: unknown value "lstmm" (one of: lstm, lstmp, ')
    assert d.hint == "did you mean `lstm`?"
    assert where(d) == (("network", "enc", "unit"), 5, 44)


def test_unknown_initializer():
    d = only(check(BASE, "activation: tanh", "forward_weights_init: glorot_unifrom"))
    assert (
        d.rule == "schema.initializer"
    )  # names/calls are checked by netcompiler.frontend.initializers
    assert d.message.startswith("unknown initialiser `glorot_unifrom` (one of: constant, ")
    assert d.hint == "did you mean `glorot_uniform`?"
    assert where(d) == (("network", "enc", "forward_weights_init"), 5, 47)


def test_initializer_call_with_unknown_argument():
    d = only(
        check(
            BASE,
            "activation: tanh",
            'forward_weights_init: "variance_scaling_initializer(scal=0.5)"',
        )
    )
    assert d.rule == "schema.initializer"
    assert "`variance_scaling_initializer` has no argument `scal`" in d.message
    assert d.hint == "did you mean `scale`?"
    assert where(d)[0] == ("network", "enc", "forward_weights_init")


def test_unknown_direction_is_an_enum_error_without_hint():
    d = only(
        check(
            BASE,
            "class: linear, from: data, n_out: 32, activation: tanh",
            "class: rec, from: data, n_out: 32, unit: lstm, direction: 2",
        )
    )
    assert d.rule == "schema.enum"
    assert d.message == "`direction`: unknown value 2 (one of: 1, -1)"
    assert d.hint is None


def test_unknown_top_level_key():
    result = check(BASE, "network:", "netwrok:")
    assert [d.rule for d in result.diagnostics] == [
        "schema.missing-option",
        "schema.unknown-option",
    ]
    missing, unknown = result.diagnostics
    assert unknown.message == "unknown key `netwrok`"
    assert unknown.hint == "did you mean `network`?"
    assert where(unknown) == (("netwrok",), 4, 1)
    assert missing.message == "missing required option `network`"
    assert where(missing) == ((), 1, 1)


def test_several_errors_are_all_reported_at_once():
    text = """\
extern_data:
  data: {dim: 0}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  enc: {class: linaer, from: data, n_out: 32}
  att: {class: self_attention, from: enc, n_out: 32, num_head: 4, total_key_dim: -2}
  mid: {class: linear, from: att, n_out: many, activation: tanhh}
  output: {class: softmax, from: mid, loss: cee, target: classes}
trian: {}
"""
    result = check(text)
    got = [(d.rule, d.path, d.line, d.col) for d in result.errors]
    assert got == [
        ("schema.range", ("extern_data", "data", "dim"), 2, 10),
        ("schema.unknown-class", ("network", "enc", "class"), 5, 9),
        ("schema.missing-option", ("network", "att"), 6, 3),
        ("schema.unknown-option", ("network", "att", "num_head"), 6, 54),
        ("schema.range", ("network", "att", "total_key_dim"), 6, 67),
        ("schema.type", ("network", "mid", "n_out"), 7, 35),
        ("schema.enum", ("network", "mid", "activation"), 7, 48),
        ("schema.enum", ("network", "output", "loss"), 8, 39),
        ("schema.unknown-option", ("trian",), 9, 1),
    ]
    assert len(result.errors) == 9
    assert result.diagnostics[-1].hint == "did you mean `train`?"


def test_extern_data_errors():
    text = """\
extern_data:
  data: {dim: -1, sparse: maybe}
  classes: {dmi: 2, dtype: float31}
  feats: {shape: [null, 0]}
network:
  output: {class: softmax, from: data, n_out: 2}
"""
    result = check(text)
    got = [(d.rule, d.message, d.hint, d.path, d.line, d.col) for d in result.diagnostics]
    assert got == [
        (
            "schema.range",
            "`dim` out of range: must be >= 1, got -1",
            None,
            ("extern_data", "data", "dim"),
            2,
            10,
        ),
        (
            "schema.type",
            '`sparse` must be of type boolean, got string "maybe"',
            None,
            ("extern_data", "data", "sparse"),
            2,
            19,
        ),
        (
            "schema.unknown-option",
            "unknown key `dmi`",
            "did you mean `dim`?",
            ("extern_data", "classes", "dmi"),
            3,
            13,
        ),
        (
            "schema.enum",
            '`dtype`: unknown value "float31" (one of: float32, float16, bfloat16, '
            "float64, int32, int64, bool)",
            "did you mean `float32`?",
            ("extern_data", "classes", "dtype"),
            3,
            21,
        ),
        (
            "schema.range",
            "`[1]` out of range: must be >= 1, got 0",
            None,
            ("extern_data", "feats", "shape", 1),
            4,
            25,
        ),
    ]


def test_extern_data_not_a_mapping():
    result = check("extern_data: [data]\nnetwork:\n  output: {class: softmax, n_out: 2}\n")
    first = result.diagnostics[0]
    assert first.rule == "schema.type"
    assert first.message == '`extern_data` must be of type object, got list ["data"]'
    assert where(first) == (("extern_data",), 1, 1)


def test_extern_data_entry_not_a_mapping():
    result = check(BASE, "  data: {dim: 9}", "  data: 9")
    d = result.diagnostics[0]
    assert d.rule == "schema.type"
    assert d.message == "`data` must be of type object, got integer 9"
    assert where(d) == (("extern_data", "data"), 2, 3)
    # the broken entry is not inferred, so no shape error follows from it
    assert [x.rule for x in result.diagnostics if x.rule.startswith("shape")] == []


def test_extern_data_same_time_as_unknown():
    result = check(BASE, "same_time_as: data", "same_time_as: dta")
    d = result.diagnostics[0]
    assert d.rule == "shape.extern"
    assert d.message == "`same_time_as: dta`: no such extern data"
    assert where(d) == (("extern_data", "classes", "same_time_as"), 3, 35)


def test_extern_data_dim_and_shape_disagree():
    d = only(
        check(BASE, "  data: {dim: 9}", "  data: {dim: 9}\n  feats: {dim: 9, shape: [null, 8]}")
    )
    assert d.rule == "shape.extern"
    assert d.message == "`dim: 9` differs from the last entry of `shape: [None, 8]`"
    assert where(d) == (("extern_data", "feats", "dim"), 3, 11)


def test_extern_data_without_dim_or_shape():
    d = only(check(BASE, "  data: {dim: 9}", "  data: {dim: 9}\n  feats: {sparse: true}"))
    assert d.rule == "shape.extern"
    assert d.message == "extern data `feats` needs `dim` or `shape`"
    assert d.path == ("extern_data", "feats", "dim")  # missing: located at its entry
    assert (d.line, d.col) == (3, 3)


def test_schema_errors_in_strict_mode_stay_errors():
    result = check(BASE, "num_heads: 4", "num_heads: 0", strict=True)
    assert [d.severity for d in result.diagnostics] == [ERROR]


def test_to_dict_of_a_schema_error():
    d = only(check(BASE, "num_heads: 4", "num_heads: 0"))
    assert d.to_dict() == {
        "severity": "error",
        "rule": "schema.range",
        "message": "`num_heads` out of range: must be >= 1, got 0",
        "hint": None,
        "path": "network.att.num_heads",
        "file": "c.yaml",
        "line": 6,
        "col": 54,
    }
