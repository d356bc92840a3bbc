"""Loading configs: YAML, JSON and dicts, positions, duplicate keys, tags, bad files, `--set`."""

from __future__ import annotations

import json

import pytest

from netcompiler.core.diagnostics import ConfigError, Diagnostic
from netcompiler.frontend.loader import (
    Config,
    Mark,
    apply_overrides,
    from_dict,
    load,
    load_file,
    parse_override,
    parse_yaml,
)
from netcompiler.frontend.validate import ValidationResult, validate

BASE_YAML = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  enc: {class: linear, from: data, n_out: 32, activation: tanh}
  att: {class: self_attention, from: enc, n_out: 32, num_heads: 4, total_key_dim: 32}
  output: {class: softmax, from: att, loss: ce, target: classes}
"""

BASE_DICT = {
    "extern_data": {
        "data": {"dim": 9},
        "classes": {"dim": 2, "sparse": True, "same_time_as": "data"},
    },
    "network": {
        "enc": {"class": "linear", "from": "data", "n_out": 32, "activation": "tanh"},
        "att": {
            "class": "self_attention",
            "from": "enc",
            "n_out": 32,
            "num_heads": 4,
            "total_key_dim": 32,
        },
        "output": {"class": "softmax", "from": "att", "loss": "ce", "target": "classes"},
    },
}

# several mistakes of different phases: schema (2), graph (1), plus an unused-layer warning
BROKEN_DICT = {
    "extern_data": {"data": {"dim": 9}},
    "network": {
        "enc": {"class": "linear", "from": "data", "n_out": 32, "activaton": "tanh"},
        "att": {
            "class": "self_attention",
            "from": "ecn",
            "n_out": 32,
            "num_heads": 0,
            "total_key_dim": 32,
        },
        "lonely": {"class": "linear", "from": "data", "n_out": 3},
        "output": {"class": "softmax", "from": "enc", "n_out": 2},
    },
}


def load_error(text: str, file: str | None = None) -> Diagnostic:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, file)
    assert len(info.value.diagnostics) == 1
    return info.value.diagnostics[0]


def file_error(path) -> Diagnostic:
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert len(info.value.diagnostics) == 1
    return info.value.diagnostics[0]


def summary(result: ValidationResult) -> list[tuple]:
    return sorted((d.severity, d.rule, d.path, d.message, d.hint) for d in result.diagnostics)


# -- the three routes give the same data and the same diagnostics --------------------------------


def test_yaml_json_and_dict_give_the_same_data(tmp_path):
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps(BASE_DICT, indent=2))
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(BASE_YAML)
    assert parse_yaml(BASE_YAML).data == BASE_DICT
    assert load_file(yaml_file).data == BASE_DICT
    assert load_file(json_file).data == BASE_DICT
    assert from_dict(BASE_DICT).data == BASE_DICT
    assert validate(yaml_file).ok and validate(json_file).ok and validate(BASE_DICT).ok


def test_yaml_json_and_dict_give_the_same_diagnostics(tmp_path):
    import yaml as pyyaml

    yaml_text = pyyaml.safe_dump(BROKEN_DICT, sort_keys=False)
    json_file = tmp_path / "broken.json"
    json_file.write_text(json.dumps(BROKEN_DICT, indent=4))
    from_yaml = validate(yaml_text)
    from_json = validate(json_file)
    from_dict_ = validate(BROKEN_DICT)
    assert summary(from_yaml) == summary(from_json) == summary(from_dict_)
    rules = sorted(d.rule for d in from_dict_.diagnostics)
    # `att` feeds nothing (output reads enc), `lonely` neither
    assert rules == [
        "graph.unknown-layer",
        "graph.unused",
        "graph.unused",
        "schema.range",
        "schema.unknown-option",
    ]
    # text routes are located; the dict route has no positions but names its source
    assert all(d.line is not None for d in from_yaml.diagnostics)
    assert all(d.file == str(json_file) and d.line for d in from_json.diagnostics)
    assert all(d.file == "<dict>" and d.line is None for d in from_dict_.diagnostics)


def test_json_file_indented_with_tabs(tmp_path):
    path = tmp_path / "tabs.json"
    path.write_text(json.dumps(BASE_DICT, indent="\t"))
    config = load_file(path)
    assert config.data == BASE_DICT
    # line 2 is `\t"extern_data": {`: the key starts after one tab, at column 2
    assert config.source.keys[("extern_data",)] == Mark(2, 2)


def test_json_positions(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(BASE_DICT, indent=2))
    src = load_file(path).source
    # line 16: `      "n_out": 32,` inside network.enc
    assert src.keys[("network", "enc", "n_out")] == Mark(16, 7)
    assert src.values[("network", "enc", "n_out")] == Mark(16, 16)


def test_dict_route_normalises_tuples_and_keys_and_copies():
    data = {"network": {"output": {"class": "softmax", "from": ("a", "b"), 3: "x"}}}
    config = from_dict(data)
    assert config.data == {
        "network": {"output": {"class": "softmax", "from": ["a", "b"], "3": "x"}}
    }
    config.data["network"]["output"]["class"] = "linear"
    assert data["network"]["output"]["class"] == "softmax"  # the caller's dict is untouched
    assert config.file == "<dict>"
    assert config.source.keys == {} and config.source.values == {}


def test_load_dispatch(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE_YAML)
    assert load(path).file == str(path)
    assert load(str(path)).file == str(path)
    assert load(BASE_YAML).file == "<string>"
    assert load(BASE_YAML, name="inline").file == "inline"
    assert load(BASE_DICT).file == "<dict>"
    config = load(BASE_DICT)
    assert load(config) is config
    with pytest.raises(TypeError):
        load(42)


# -- positions ------------------------------------------------------------------------------------


def test_positions_of_keys_and_values_flow_style():
    src = parse_yaml(BASE_YAML, "c.yaml").source
    assert src.file == "c.yaml"
    assert src.keys[("network",)] == Mark(4, 1)
    assert src.keys[("network", "att")] == Mark(6, 3)
    assert src.values[("network", "att")] == Mark(6, 8)
    assert src.keys[("network", "att", "num_heads")] == Mark(6, 54)
    assert src.values[("network", "att", "num_heads")] == Mark(6, 65)
    assert src.keys[("extern_data", "classes", "sparse")] == Mark(3, 21)
    assert src.values[("extern_data", "classes", "sparse")] == Mark(3, 29)


def test_positions_block_style_and_list_items():
    text = "network:\n  output:\n    class: softmax\n    from:\n      - a\n      - b\n"
    src = parse_yaml(text).source
    assert src.keys[("network", "output", "class")] == Mark(3, 5)
    assert src.values[("network", "output", "class")] == Mark(3, 12)
    assert src.values[("network", "output", "from", 0)] == Mark(5, 9)
    assert src.values[("network", "output", "from", 1)] == Mark(6, 9)


def test_locate_falls_back_to_the_nearest_enclosing_path():
    src = parse_yaml(BASE_YAML, "c.yaml").source
    # a missing option is located at its layer's key
    assert src.locate(("network", "att", "no_such_option")) == ("c.yaml", 6, 3)
    assert src.locate(("network", "att", "from")) == ("c.yaml", 6, 32)
    assert src.locate(("nothing", "here")) == ("c.yaml", 1, 1)


# -- duplicate keys, anchors, aliases, merge keys -------------------------------------------------


def test_duplicate_key_is_an_error_with_its_line():
    text = (
        "network:\n  output: {class: softmax}\n  enc: {class: linear}\n  output: {class: linear}\n"
    )
    d = load_error(text, "dup.yaml")
    assert d.rule == "load.duplicate-key"
    assert d.message == "duplicate key `output` (first defined at line 2)"
    assert (d.file, d.line, d.col) == ("dup.yaml", 4, 3)
    assert d.path == ("network", "output")


def test_duplicate_key_in_flow_mapping_and_json():
    d = load_error("network: {output: {class: softmax, n_out: 2, n_out: 3}}\n")
    assert d.rule == "load.duplicate-key"
    assert (d.line, d.col) == (1, 46)
    assert d.path == ("network", "output", "n_out")
    d = load_error('{\n  "a": 1,\n  "a": 2\n}\n')
    assert (d.rule, d.line, d.col, d.path) == ("load.duplicate-key", 3, 3, ("a",))


def test_duplicate_key_reported_by_validate_not_raised():
    result = validate("network:\n  output: {class: softmax}\n  output: {class: linear}\n")
    assert result.config is None and not result.ok
    [d] = result.diagnostics
    assert (d.rule, d.line, d.col) == ("load.duplicate-key", 3, 3)


def test_keys_overridden_after_a_merge_are_not_duplicates():
    text = (
        "defaults: &defaults {class: linear, n_out: 8, activation: tanh}\n"
        "network:\n"
        "  a:\n"
        "    <<: *defaults\n"
        "    n_out: 16\n"
        "  output:\n"
        "    <<: *defaults\n"
        "    class: softmax\n"
    )
    config = parse_yaml(text)
    assert config.data["network"]["a"] == {"class": "linear", "n_out": 16, "activation": "tanh"}
    assert config.data["network"]["output"] == {
        "class": "softmax",
        "n_out": 8,
        "activation": "tanh",
    }
    # the overriding key and its value are located where they are written
    assert config.source.keys[("network", "a", "n_out")] == Mark(5, 5)
    assert config.source.values[("network", "a", "n_out")] == Mark(5, 12)
    # merged keys point at the anchored mapping
    assert config.source.keys[("network", "a", "activation")] == Mark(1, 47)


def test_duplicate_after_a_merge_is_still_an_error():
    text = "base: &b {class: linear}\nx:\n  <<: *b\n  n_out: 1\n  n_out: 2\n"
    d = load_error(text)
    assert (d.rule, d.line, d.col, d.path) == ("load.duplicate-key", 5, 3, ("x", "n_out"))


def test_merge_of_several_mappings_first_wins():
    text = "a: &a {k: 1, x: 1}\nb: &b {k: 2, y: 2}\nc: {<<: [*a, *b], z: 3}\n"
    assert parse_yaml(text).data["c"] == {"k": 1, "x": 1, "y": 2, "z": 3}


def test_anchors_and_aliases():
    text = (
        "extern_data:\n"
        "  data: {dim: 9}\n"
        "network:\n"
        "  a: &lin {class: linear, from: data, n_out: 4}\n"
        "  b: *lin\n"
        "  output: {class: softmax, from: &ins [a, b], n_out: 2}\n"
        "  other: {class: linear, from: *ins, n_out: 3, is_output_layer: true}\n"
    )
    result = validate(text)
    assert result.ok, result.diagnostics
    data = result.config.data
    assert data["network"]["b"] == data["network"]["a"]
    assert data["network"]["other"]["from"] == ["a", "b"]
    # the aliased copies are independent plain data
    data["network"]["b"]["n_out"] = 5
    assert data["network"]["a"]["n_out"] == 4
    assert result.inferred.shapes["other"].feature_size == 3


def test_merge_of_a_scalar_is_an_error():
    d = load_error("a: &a 1\nx: {<<: *a}\n")
    assert d.rule == "load.yaml"
    assert "merge" in d.message
    assert (d.line, d.col) == (1, 4)  # the merged scalar (its anchor)


def test_recursive_alias_is_rejected():
    d = load_error("a: &x [1, *x]\n")
    assert d.rule == "load.yaml"
    assert "recursive" in d.message


def test_keys_are_kept_as_text():
    assert parse_yaml("yes: 1\n1: 2\nnull: 3\n").data == {"yes": 1, "1": 2, "null": 3}


def test_complex_key_is_rejected():
    d = load_error("? [1, 2]\n: 3\n")
    assert d.rule == "load.yaml" and (d.line, d.col) == (1, 3)


def test_timestamps_and_binary_stay_plain_text():
    data = parse_yaml("a: 2001-12-14\nb: !!binary aGVsbG8=\n").data
    assert data == {"a": "2001-12-14", "b": "aGVsbG8="}


# -- unsafe tags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, col",
    [
        ("x: !!python/object/apply:os.system ['echo hi']\n", 4),
        ("x: !!python/object/new:builtins.dict []\n", 4),
        ("x: !!python/name:os.system\n", 4),
        ("x: !!python/object:builtins.object {}\n", 4),
        ("x: !!python/tuple [1, 2]\n", 4),
        ("x: !custom 3\n", 4),
        ("x: !!set {a, b}\n", 4),
        ("x:\n  y: !Ref foo\n", 6),
        ("!!omap [a: 1]\n", 1),
    ],
)
def test_unknown_tags_are_rejected(text, col):
    d = load_error(text, "t.yaml")
    assert d.rule == "load.unsafe-tag"
    assert d.message.startswith("unsupported YAML tag")
    assert d.file == "t.yaml" and d.col == col
    assert d.line == text.count("\n", 0, text.index("!")) + 1


@pytest.mark.parametrize(
    "text, shown",
    [
        ("x: !!int\n", "'' for the tag int"),  # found by test_fuzz_configs (an IndexError)
        ("x: !!int abc\n", "'abc' for the tag int"),
        ("x: !!float abc\n", "'abc' for the tag float"),
        ("x:\n  y: !!bool maybe\n", "'maybe' for the tag bool"),
    ],
)
def test_safe_tags_on_unreadable_text_are_located_errors(text, shown):
    d = load_error(text, "t.yaml")
    assert d.message == f"invalid value {shown}"
    assert (d.file, d.line) == ("t.yaml", text.count("\n", 0, text.index("!!")) + 1)
    assert d.col == text.splitlines()[d.line - 1].index("!!") + 1


def test_unsafe_tag_on_a_key_is_rejected():
    d = load_error("network:\n  !!python/name:os.system x: 1\n")
    assert (d.rule, d.line, d.col) == ("load.unsafe-tag", 2, 3)


def test_unsafe_tags_execute_nothing(tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')"
    texts = [
        f'x: !!python/object/apply:builtins.exec ["{code}"]\n',
        f'network:\n  output: !!python/object/new:builtins.exec ["{code}"]\n',
        f'network: {{output: {{class: !!python/object/apply:builtins.exec ["{code}"]}}}}\n',
    ]
    for text in texts:
        result = validate(text)
        assert [d.rule for d in result.diagnostics] == ["load.unsafe-tag"]
        assert result.diagnostics[0].line == text.count("\n", 0, text.index("!!")) + 1
    assert not marker.exists()


# -- syntax errors and bad files ------------------------------------------------------------------


def test_syntax_error_reports_its_line():
    text = "network:\n  output: {class: softmax\n  enc: {class: linear}\n"
    d = load_error(text, "s.yaml")
    assert d.rule == "load.syntax"
    assert d.message.startswith("YAML syntax error")
    assert d.file == "s.yaml" and d.line == 3


def test_syntax_error_mapping_value_position():
    d = load_error("network:\n  output: class: softmax\n")
    assert (d.rule, d.line, d.col) == ("load.syntax", 2, 16)
    assert "mapping values are not allowed" in d.message


def test_tab_indentation_in_yaml_is_a_syntax_error():
    d = load_error("network:\n\toutput: {}\n")
    assert (d.rule, d.line, d.col) == ("load.syntax", 2, 1)


@pytest.mark.parametrize("text", ["", "   \n  \n", "# only a comment\n"])
def test_empty_text(text):
    d = load_error(text)
    assert d.rule == "load.empty"
    result = validate(text + "\n")
    assert [x.rule for x in result.diagnostics] == ["load.empty"]


@pytest.mark.parametrize("content", [b"", b"  \n\t\n \r\n"])
def test_empty_or_whitespace_file(tmp_path, content):
    path = tmp_path / "empty.yaml"
    path.write_bytes(content)
    d = file_error(path)
    assert (d.rule, d.file, d.line, d.col) == ("load.empty", str(path), 1, 1)
    assert [x.rule for x in validate(path).diagnostics] == ["load.empty"]


def test_non_utf8_file_reports_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"network:\n  output: {class: softmax}\n  # caf\xe9\n")
    d = file_error(path)
    assert d.rule == "load.encoding"
    assert (d.file, d.line, d.col) == (str(path), 3, 8)
    assert "0xe9" in d.message and "offset 43" in d.message


def test_non_utf8_column_counts_characters_not_bytes(tmp_path):
    path = tmp_path / "mixed.yaml"
    # `é` (2 bytes in UTF-8) then a bad byte: the bad byte is character 4 of line 2
    path.write_bytes(b"a: 1\nb\xc3\xa9:\xff\n")
    d = file_error(path)
    assert (d.rule, d.line, d.col) == ("load.encoding", 2, 4)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE_YAML.encode())
    config = load_file(path)
    assert config.data == BASE_DICT
    assert config.source.keys[("network",)] == Mark(4, 1)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    d = file_error(path)
    assert (d.rule, d.file, d.message) == ("load.missing", str(path), "no such file")
    result = validate(str(path))
    assert result.config is None
    assert [(x.rule, x.file) for x in result.diagnostics] == [("load.missing", str(path))]


def test_directory(tmp_path):
    d = file_error(tmp_path)
    assert (d.rule, d.file) == ("load.unreadable", str(tmp_path))
    assert "directory" in d.message
    assert [x.rule for x in validate(tmp_path).diagnostics] == ["load.unreadable"]


def test_empty_document_marker_is_an_empty_config():
    for text in ("---\n", "---\n...\n", "# only a comment\n---\n"):
        [d] = validate(text).diagnostics
        assert (d.rule, d.message) == ("load.empty", "the config is empty")
    # an explicit null is data, not an empty file
    [d] = validate("null\n").diagnostics
    assert d.rule == "schema.type"


def test_top_level_not_a_mapping():
    result = validate("[1, 2]\n")
    [d] = result.diagnostics
    assert d.rule == "schema.type"
    assert d.message == "the config must be a mapping, got list"
    assert (d.line, d.col) == (1, 1)


# -- --set overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("network.att.num_heads=8", ("network", "att", "num_heads"), 8),
        ("train.lr=0.5", ("train", "lr"), 0.5),
        ("network.enc.with_bias=true", ("network", "enc", "with_bias"), True),
        ("network.enc.activation=null", ("network", "enc", "activation"), None),
        ("network.output.from=[a,b]", ("network", "output", "from"), ["a", "b"]),
        ("network.output.from=[a, b]", ("network", "output", "from"), ["a", "b"]),
        (
            "network.output.loss_opts={label_smoothing: 0.1}",
            ("network", "output", "loss_opts"),
            {"label_smoothing": 0.1},
        ),
        ("network.output.from.1=c", ("network", "output", "from", 1), "c"),
        ("network.enc.class=linear", ("network", "enc", "class"), "linear"),
        ("network.enc.class='8'", ("network", "enc", "class"), "8"),
        ("a.b=x=y", ("a", "b"), "x=y"),
        ("a=", ("a",), ""),
        (" a = 1", ("a",), 1),
    ],
)
def test_parse_override(text, path, value):
    got_path, got_value = parse_override(text)
    assert got_path == path
    assert got_value == value and type(got_value) is type(value)


@pytest.mark.parametrize(
    "text",
    [
        "network.att.num_heads",
        "=3",
        "a..b=1",
        ".a=1",
        "a.=1",
        "a=[1,",
        "a={b: 1",
        "a=!!python/object/apply:os.system [ls]",
        "a=x: y: z",
    ],
)
def test_parse_override_bad_syntax(text):
    with pytest.raises(ValueError):
        parse_override(text)


def test_apply_overrides_nested_creation_and_list_index():
    config = parse_yaml("network:\n  output: {class: softmax, from: [a, b]}\n")
    apply_overrides(
        config, ["network.output.from.1=c", "train.optimizer.lr=0.1", "network.output.n_out=7"]
    )
    assert config.data == {
        "network": {"output": {"class": "softmax", "from": ["a", "c"], "n_out": 7}},
        "train": {"optimizer": {"lr": 0.1}},
    }
    assert config.source.overrides[("network", "output", "from", 1)] == "network.output.from.1=c"
    assert config.source.locate(("train", "optimizer", "lr")) == (
        "<--set train.optimizer.lr=0.1>",
        None,
        None,
    )
    # untouched paths keep their positions
    assert config.source.locate(("network", "output", "class")) == (None, 2, 12)


def test_apply_overrides_applied_in_order():
    config = from_dict({"a": 1})
    apply_overrides(config, ["a=2", "a=3"])
    assert config.data == {"a": 3}


def test_apply_overrides_number_names_a_mapping_key():
    config = parse_yaml("network:\n  '0': {class: linear}\n")
    apply_overrides(config, ["network.0.n_out=3"])
    assert config.data == {"network": {"0": {"class": "linear", "n_out": 3}}}
    assert ("network", "0", "n_out") in config.source.overrides


@pytest.mark.parametrize(
    "override",
    [
        "network.output.from.5=x",
        "network.output.from.x=1",
        "network.output.from.0.y=1",
        "network.output.class.x=1",
    ],
)
def test_apply_overrides_bad_target(override):
    config = parse_yaml("network:\n  output: {class: softmax, from: [a]}\n")
    with pytest.raises(ValueError):
        apply_overrides(config, [override])


def test_overrides_are_applied_before_validation_and_located():
    bad = "network.att.num_heads=0"
    result = validate(BASE_YAML, overrides=[bad])
    [d] = result.diagnostics
    assert d.rule == "schema.range"
    assert d.path == ("network", "att", "num_heads")
    assert (d.file, d.line, d.col) == (f"<--set {bad}>", None, None)
    # an override can also fix a config
    broken = BASE_YAML.replace("num_heads: 4", "num_heads: 5")
    assert not validate(broken).ok
    fixed = validate(broken, overrides=["network.att.num_heads=8"])
    assert fixed.ok, fixed.diagnostics
    assert fixed.config.data["network"]["att"]["num_heads"] == 8


def test_override_of_a_whole_layer_locates_inner_errors_at_the_override():
    override = "network.enc={class: linear, from: data, n_out: 0}"
    result = validate(BASE_YAML, overrides=[override])
    [d] = result.diagnostics
    assert d.rule == "schema.range" and d.path == ("network", "enc", "n_out")
    assert d.file == f"<--set {override}>"


def test_override_does_not_touch_the_callers_dict():
    data = json.loads(json.dumps(BASE_DICT))
    result = validate(data, overrides=["network.att.num_heads=8"])
    assert result.ok
    assert data["network"]["att"]["num_heads"] == 4


def test_bad_override_is_a_diagnostic():
    result = validate(BASE_YAML, overrides=["network.att.num_heads"])
    assert result.config is None
    [d] = result.diagnostics
    assert d.rule == "load.override"
    assert "KEY=VALUE" in d.message
    result = validate(BASE_YAML, overrides=["network.att.from.3=x"])
    assert [d.rule for d in result.diagnostics] == ["load.override"]


def test_config_error_text_is_gcc_style():
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\na: 2\n", "x.yaml")
    assert str(info.value) == (
        "x.yaml:2:1: error: a: duplicate key `a` (first defined at line 1) [load.duplicate-key]"
    )


def test_config_object_locate_keeps_existing_positions():
    config = parse_yaml(BASE_YAML, "c.yaml")
    assert isinstance(config, Config)
    d = Diagnostic("error", "m", "r", ("network", "enc", "n_out"))
    assert config.locate(d).line == 5 and config.locate(d).col == 36
    located = Diagnostic("error", "m", "r", ("network",), "other.yaml", 99, 1)
    assert config.locate(located) is located


def test_unprintable_character_is_a_located_syntax_error():
    d = load_error("network:\n  output: {class: soft\x1fmax}\n", "u.yaml")
    assert d.rule == "load.syntax"
    assert d.message == "YAML syntax error: character 0x001f is not allowed"
    assert (d.file, d.line, d.col) == ("u.yaml", 2, 23)
    [v] = validate("a: 1\nb: \x00\n").diagnostics
    assert (v.rule, v.line, v.col) == ("load.syntax", 2, 4)
