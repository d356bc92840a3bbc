"""The catalogue is complete and consistent: one schema and one shape rule per layer class,
the published config schema is up to date and works with external tools."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from netcompiler.frontend.schema import SCHEMA_DIR, layer_schema_files, render_config_schema
from netcompiler.layers import registry

ROOT = Path(__file__).resolve().parents[2]
# a copy of the reference catalogue of layer classes (shared reference, layers.md)
LAYERS_MD = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "layers.md"

# every class named in the catalogue of layers.md (the five attention layers and the table)
CATALOGUE = {
    "self_attention",
    "generic_attention",
    "dot_attention",
    "concat_attention",
    "gauss_window_attention",
    "linear",
    "softmax",
    "activation",
    "copy",
    "combine",
    "eval",
    "dropout",
    "layer_norm",
    "reduce",
    "softmax_over_spatial",
    "dot",
    "split_dims",
    "merge_dims",
    "combine_dims",
    "expand_dims",
    "squeeze",
    "slice",
    "window",
    "constant",
    "compare",
    "positional_encoding",
    "relative_positional_encoding",
    "reinterpret_data",
    "postfix_in_time",
    "prefix_in_time",
    "length",
    "conv",
    "pool",
    "rec",
    "rnn_cell",
    "get_last_hidden_state",
    "choice",
}


def test_catalogue_matches_layers_md():
    table = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)*", LAYERS_MD.read_text(), re.M))
    named = {n for row in table for n in row if n}
    assert named <= CATALOGUE


def test_every_class_has_one_schema_and_one_rule():
    rules = set(registry())
    schemas = set(layer_schema_files())
    assert rules == schemas, (
        f"rules without schema: {sorted(rules - schemas)}; "
        f"schemas without rule: {sorted(schemas - rules)}"
    )
    assert CATALOGUE <= rules, f"missing layer classes: {sorted(CATALOGUE - rules)}"


def test_layer_schemas_are_strict_and_documented():
    for name, path in layer_schema_files().items():
        schema = json.loads(path.read_text())
        assert schema.get("unevaluatedProperties") is False, name
        assert schema["properties"]["class"] == {"const": name}
        for option, prop in schema["properties"].items():
            if option != "class":
                assert prop.get("description"), f"{name}.{option} has no description"


def test_checked_in_config_schema_is_current():
    on_disk = json.loads((SCHEMA_DIR / "config.schema.json").read_text())
    assert on_disk == render_config_schema(), "run `netcompiler schema --write`"


def _check_jsonschema() -> str:
    """The `check-jsonschema` command of the test extra: beside this Python (its venv need not
    be activated), else on PATH; its absence is a broken test install, not a reason to skip."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    found = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    assert found, 'check-jsonschema is missing: pip install -e ".[test]"'
    return found


def test_check_jsonschema_accepts_examples_and_rejects_misspelt_option(tmp_path):
    check_jsonschema = _check_jsonschema()
    configs = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))
    assert configs
    schemafile = str(ROOT / "schemas" / "config.schema.json")
    ok = subprocess.run(
        [check_jsonschema, "--schemafile", schemafile, *configs], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "network:\n  output: {class: self_attention, from: data, n_out: 8,"
        " num_head: 2, num_heads: 2, total_key_dim: 8}\n"
    )
    res = subprocess.run(
        [check_jsonschema, "--schemafile", schemafile, str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 1
    assert "num_head" in res.stdout + res.stderr


def test_examples_carry_the_modeline():
    for path in (ROOT / "configs").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/config.schema.json", path
