"""Property tests: mutated configs never make `validate` raise.

Valid configs are mutated structurally (delete, rename, retype, swap references) through the
dict route and as YAML text, and textually (inserted YAML fragments, truncation, deleted
slices). Every outcome must be a `ValidationResult` whose diagnostics are `Diagnostic`s with a
message and a rule.
"""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcompiler.core.diagnostics import ERROR, NOTE, WARNING, Diagnostic
from netcompiler.frontend.validate import ValidationResult, validate

VALID_CONFIGS = [
    {
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
    },
    {
        "extern_data": {"data": {"dim": 9}, "classes": {"dim": 5, "sparse": True}},
        "network": {
            "enc": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 8},
            "dec": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "unit": {
                    "emb": {"class": "linear", "from": "prev:output", "n_out": 6},
                    "s": {"class": "linear", "from": ["emb", "prev:s"], "n_out": 16},
                    "att": {
                        "class": "self_attention",
                        "from": "s",
                        "n_out": 8,
                        "num_heads": 2,
                        "total_key_dim": 8,
                        "attention_left_only": True,
                    },
                    "output": {
                        "class": "softmax",
                        "from": "att",
                        "n_out": 5,
                        "loss": "ce",
                        "target": "classes",
                    },
                },
            },
            "output": {"class": "linear", "from": "dec", "n_out": 3, "is_output_layer": True},
            "ctx": {"class": "linear", "from": "enc", "n_out": 9, "loss": "mse", "target": "data"},
        },
    },
    {
        "extern_data": {"data": {"shape": [None, 4]}},
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "x": {"class": "linear", "from": ["data:source", "prev:output"], "n_out": 3},
                    "output": {"class": "linear", "from": "x", "n_out": 3},
                },
            }
        },
    },
]


def test_the_seed_configs_are_valid():
    for config in VALID_CONFIGS:
        result = validate(config)
        assert result.ok, result.diagnostics
        assert validate(yaml.safe_dump(config)).ok


def check_result(result) -> None:
    assert isinstance(result, ValidationResult)
    assert isinstance(result.diagnostics, list)
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic)
        assert isinstance(d.message, str) and d.message
        assert isinstance(d.rule, str) and d.rule
        assert d.severity in (ERROR, WARNING, NOTE)
        assert isinstance(d.path, tuple)
        assert d.line is None or (isinstance(d.line, int) and d.line >= 1)
        assert d.col is None or (isinstance(d.col, int) and d.col >= 1)
        str(d.to_dict())
    # `ok` agrees with the errors
    assert result.ok == (not any(d.severity == ERROR for d in result.diagnostics))


# -- structural mutations -------------------------------------------------------------------------


def all_paths(node, path=()):
    """Every path to a dict value or list item."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(path + (k,))
            out.extend(all_paths(v, path + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(path + (i,))
            out.extend(all_paths(v, path + (i,)))
    return out


def get_parent(data, path):
    node = data
    for part in path[:-1]:
        node = node[part]
    return node


key_texts = st.one_of(
    st.sampled_from(
        [
            "class",
            "from",
            "n_out",
            "num_heads",
            "num_head",
            "unit",
            "output",
            "network",
            "netwrok",
            "extern_data",
            "dim",
            "sparse",
            "loss",
            "target",
            "activation",
            "prev:output",
            "<<",
            "",
            "data",
            "base",
            "same_time_as",
        ]
    ),
    st.text(min_size=0, max_size=8),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "linear",
            "softmax",
            "self_attention",
            "rec",
            "lstm",
            "tanh",
            "ce",
            "data",
            "data:classes",
            "data:source",
            "prev:output",
            "prev:s",
            "base:enc",
            "enc",
            "output",
            "att",
            "",
            "T",
            "classes",
            "lstmm",
            "data:data",
        ]
    ),
    st.text(max_size=10),
)

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(key_texts, children, max_size=3)
    ),
    max_leaves=6,
)


def layer_names(data) -> list[str]:
    names = []
    for path in all_paths(data):
        if len(path) >= 2 and path[-2] in ("network", "unit") and isinstance(path[-1], str):
            names.append(path[-1])
    return names


def mutate(data, draw) -> None:
    """Apply one random structural mutation in place."""
    paths = all_paths(data)
    if not paths:
        return
    path = draw(st.sampled_from(paths))
    parent = get_parent(data, path)
    last = path[-1]
    op = draw(st.sampled_from(["delete", "rename", "retype", "swap_ref", "dup_layer"]))
    if op == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif op == "rename" and isinstance(parent, dict):
        new = draw(key_texts)
        parent[new] = parent.pop(last)
    elif op == "retype":
        parent[last] = draw(values)
    elif op == "swap_ref":
        names = layer_names(data) or ["x"]
        prefix = draw(st.sampled_from(["", "", "prev:", "base:", "data:", "prev:base:"]))
        ref = prefix + draw(st.sampled_from(names + ["source", "classes", "data", "nope"]))
        if isinstance(parent, dict) and isinstance(parent.get("from"), (str, list, type(None))):
            parent["from"] = draw(st.sampled_from([ref, [ref], [ref, ref], []]))
        else:
            parent[last] = ref
    elif op == "dup_layer" and isinstance(parent, dict):
        parent[str(last) + "_copy"] = copy.deepcopy(parent[last])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_dicts_never_raise(data):
    config = copy.deepcopy(data.draw(st.sampled_from(VALID_CONFIGS)))
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(config, data.draw)
    check_result(validate(config))
    check_result(validate(config, strict=True))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_configs_as_yaml_never_raise(data):
    config = copy.deepcopy(data.draw(st.sampled_from(VALID_CONFIGS)))
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(config, data.draw)
    text = yaml.safe_dump(
        config, sort_keys=False, default_flow_style=data.draw(st.sampled_from([None, False]))
    )
    result = validate(text)
    check_result(result)
    # the YAML route finds the same problems as the dict route (where YAML keeps the data:
    # safe_dump writes keys as text, and the dict route turns keys into text too)
    if result.config is not None and result.config.data == validate(config).config.data:
        assert sorted((d.rule, d.path, d.message) for d in result.diagnostics) == sorted(
            (d.rule, d.path, d.message) for d in validate(config).diagnostics
        )


# -- text mutations -------------------------------------------------------------------------------

SEED_TEXTS = [yaml.safe_dump(c, sort_keys=False) for c in VALID_CONFIGS] + [
    yaml.safe_dump(c, sort_keys=False, default_flow_style=True) for c in VALID_CONFIGS
]

yaml_fragments = st.one_of(
    st.sampled_from(
        [
            ":",
            ": ",
            "- ",
            "-",
            "{",
            "}",
            "[",
            "]",
            ",",
            "&a ",
            "*a",
            "*b",
            "<<: *a\n",
            "!!python/object:os.system ",
            "!tag ",
            "!!str ",
            "!!int ",
            "!!set ",
            "? ",
            "|\n",
            ">\n",
            "'",
            '"',
            "#",
            "\t",
            "\n",
            "\n  ",
            "---\n",
            "...\n",
            "%YAML 1.1\n",
            "\x00",
            "\ufeff",
            "\\",
            "~",
            "null",
            "true",
            "  x: 1\n",
            "a: &a {b: 1}\n",
            "c: {<<: *a}\n",
            "k: v\nk: w\n",
            "!!binary aGk=",
            "2001-12-14",
            "0x1F",
            ".inf",
            "1e400",
            "é",
            "\u2028",
        ]
    ),
    st.text(max_size=12),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_text_mutations_never_raise(data):
    text = data.draw(st.sampled_from(SEED_TEXTS))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["insert", "truncate", "delete", "replace_line"]))
        pos = data.draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:pos] + data.draw(yaml_fragments) + text[pos:]
        elif op == "truncate":
            text = text[:pos]
        elif op == "delete":
            end = data.draw(st.integers(pos, min(len(text), pos + 20)))
            text = text[:pos] + text[end:]
        else:
            lines = text.split("\n")
            i = data.draw(st.integers(0, max(len(lines) - 1, 0)))
            lines[i] = data.draw(yaml_fragments)
            text = "\n".join(lines)
    # always a text config (a newline keeps `load` from taking it for a file name)
    result = validate(text + "\n")
    check_result(result)
    overrides = data.draw(
        st.lists(
            st.sampled_from(
                [
                    "network.output.n_out=3",
                    "network.x.y.z=[1,2]",
                    "network.output.from.0=data",
                    "a..b=1",
                    "network",
                    "network.output={class: linear}",
                    "extern_data=null",
                    "network.output.class=!!python/name:os.system",
                ]
            ),
            max_size=2,
        )
    )
    check_result(validate(text + "\n", overrides=overrides))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_arbitrary_data_never_raises(value):
    check_result(validate(value) if isinstance(value, dict) else validate({"network": value}))
    check_result(validate({"network": {"output": value}, "extern_data": {"data": {"dim": 3}}}))
    check_result(
        validate({"network": {"output": {"class": "rec", "unit": value}}, "extern_data": value})
    )


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_never_raise(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(raw)
    check_result(validate(path))
