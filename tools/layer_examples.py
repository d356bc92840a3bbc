"""The examples of the layer reference (`tools/layer_reference.py`) and the schema helpers it
shares with it.

A class's examples are the conformance battery's (`tests/conformance.py`: NumPy, no TensorFlow),
at most `MAX_EXAMPLES`, chosen to show different options; without one the schema's `examples`
(layer dicts), else a minimal layer from the schema's required options, put into a config as
its `output` (at the top level or inside a rec unit, whichever validates first). Every example
is written as YAML and validated from that text with `netcompiler.validate`: one with an error
raises `LayerReferenceError`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import yaml

import netcompiler
from netcompiler.frontend.schema import load_schema
from netcompiler.layers import registry

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "tests" / "conformance.py"
MAX_EXAMPLES = 3
#: extern data of the generated examples (classes without a conformance or schema example)
GENERATED_EXTERN = {"data": {"dim": 5}, "classes": {"dim": 5, "sparse": True}}


class LayerReferenceError(Exception):
    """The reference cannot be generated (a class without family, an example that does not
    validate, ...); the message says which class and why."""


def rel_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def common_defs() -> dict[str, dict]:
    return load_schema("common.schema.json")["$defs"]


def is_common_ref(ref: str) -> bool:
    """A `$ref` into `common.schema.json` (from a layer schema, or inside the file itself)."""
    target = ref.split("#", 1)[0]
    return target in ("", "../common.schema.json", "common.schema.json")


def resolve(schema: dict) -> dict:
    """`schema` with a `$ref` into the common definitions merged in (its own keys win)."""
    ref = schema.get("$ref")
    if not ref or "#/$defs/" not in ref or not is_common_ref(ref):
        return schema
    defs = common_defs()
    name = ref_name(ref)
    if name not in defs:
        return schema
    merged = dict(resolve(defs[name]))
    merged.update({k: v for k, v in schema.items() if k != "$ref"})
    return merged


def load_conformance() -> list:
    """The conformance battery's examples (`tests/conformance.py`, NumPy but no TensorFlow)."""
    if not CONFORMANCE.is_file():
        raise LayerReferenceError(
            f"the conformance battery {rel_path(CONFORMANCE)} is missing (moved? update "
            f"CONFORMANCE in {rel_path(Path(__file__))})"
        )
    name = "_layer_reference_conformance"
    spec = importlib.util.spec_from_file_location(name, CONFORMANCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return list(module.EXAMPLES)


def _minimal_value(name: str, schema: dict) -> Any:
    schema = resolve(schema)
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    for key in ("anyOf", "oneOf"):
        for alt in schema.get(key, []):
            value = _minimal_value(name, alt)
            if value is not None:
                return value
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "integer" in types:
        return max(1, int(schema.get("minimum", 1)))
    if "number" in types:
        return float(max(1, schema.get("minimum", 1)))
    if "boolean" in types:
        return False
    if "string" in types:
        return "classes" if name == "target" else "data"
    if "array" in types:
        return []
    if "object" in types:
        return {}
    return None


def generated_layer(layer_class: str, schema: dict) -> dict:
    """A minimal layer of the class: its required options with the simplest valid values."""
    common = common_defs()["common_options"]["properties"]
    layer: dict[str, Any] = {"class": layer_class}
    for name in schema.get("required", []):
        if name == "class":
            continue
        prop = schema.get("properties", {}).get(name) or common.get(name, {})
        layer[name] = _minimal_value(name, prop)
    return layer


def wrapped_configs(layer_class: str, layer: dict) -> list[dict]:
    """Configs holding `layer` as `output`: at the top level, and inside a rec unit (first for
    classes that decide labels or live in a loop only)."""
    top = {"extern_data": json.loads(json.dumps(GENERATED_EXTERN)), "network": {"output": layer}}
    in_loop = {
        "extern_data": json.loads(json.dumps(GENERATED_EXTERN)),
        "network": {"output": {"class": "rec", "from": "data", "unit": {"output": layer}}},
    }
    rule = registry()[layer_class]
    loop_first = getattr(rule, "chooses_labels", False) or getattr(rule, "loop_only", False)
    return [in_loop, top] if loop_first else [top, in_loop]


def to_yaml(config: dict) -> str:
    text = yaml.safe_dump(
        config, default_flow_style=None, sort_keys=False, width=96, allow_unicode=True
    )
    if yaml.safe_load(text) != config:  # pragma: no cover - PyYAML round trip
        raise LayerReferenceError(f"YAML round trip changed the example: {config!r}")
    return text


def walk_layers(network: dict, prefix: str = ""):
    """(name, layer) in the order the config writes them, with the layers of rec units and
    sub-networks as `a/b` and a `masked_computation`'s unit (a layer dict) as `a/unit`."""
    for name, layer in network.items():
        if not isinstance(layer, dict):
            continue
        full = f"{prefix}{name}"
        yield full, layer
        unit, sub = layer.get("unit"), layer.get("subnetwork")
        if isinstance(unit, dict):
            nested = {"unit": unit} if isinstance(unit.get("class"), str) else unit
            yield from walk_layers(nested, f"{full}/")
        if isinstance(sub, dict):
            yield from walk_layers(sub, f"{full}/")


def check_example(layer_class: str, text: str, source: str):
    """Validate an example's YAML text and return the result; an error raises
    LayerReferenceError with the diagnostics."""
    result = netcompiler.validate(text)
    if not result.ok:
        problems = "; ".join(f"{d.dotted_path}: {d.message}" for d in result.errors)
        raise LayerReferenceError(
            f"layer class `{layer_class}`: the example from {source} does not validate: {problems}"
        )
    return result


def shapes_text(config: dict, result) -> str:
    """`name  shape` lines: the extern data, then the layers in config order."""
    inferred = result.inferred
    rows = [
        (key, str(shape))
        for key, shape in inferred.extern.items()
        if key in config.get("extern_data", {})
    ]
    ordered = [name for name, _ in walk_layers(config.get("network", {}))]
    known = [n for n in ordered if n in inferred.shapes]
    # then what inference adds (the parts of a `split`), without internal layers (`x/data:data`)
    known += [n for n in inferred.shapes if n not in known and ":" not in n]
    loops = set(getattr(inferred, "loop_dims", {}) or {})
    for name in known:
        per_step = any(name.startswith(f"{rec}/") for rec in loops)
        rows.append((name, str(inferred.shapes[name]) + ("  (per step)" if per_step else "")))
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name.ljust(width)}  {shape}\n" for name, shape in rows)


def _output_class(config: dict) -> str | None:
    output = config.get("network", {}).get("output")
    return output.get("class") if isinstance(output, dict) else None


def _features(config: dict, layer_class: str) -> set:
    """What the layers of the class in an example use: (option, string value or type)."""
    found = set()
    for _, layer in walk_layers(config.get("network", {})):
        for key, value in layer.items() if layer.get("class") == layer_class else ():
            found.add((key, value if isinstance(value, str) else type(value).__name__))
    return found


def choose_examples(layer_class: str, conformance: list) -> list:
    """Up to MAX_EXAMPLES conformance examples of the class: first the first one whose layer
    under test (`output`) is of the class, then each time the one that shows the most options
    (or option values) not shown yet; battery order breaks ties."""
    covering = [e for e in conformance if layer_class in e.classes]
    covering.sort(key=lambda e: _output_class(e.config) != layer_class)  # stable
    chosen: list = []
    shown: set = set()
    while covering and len(chosen) < MAX_EXAMPLES:
        if chosen:
            gains = [len(_features(e.config, layer_class) - shown) for e in covering]
            best = max(range(len(covering)), key=lambda i: (gains[i], -i))
            if gains[best] == 0:
                break
        else:
            best = 0
        example = covering.pop(best)
        chosen.append(example)
        shown |= _features(example.config, layer_class)
    return chosen


def examples_for(layer_class: str, schema: dict, conformance: list) -> list[dict]:
    """The examples of a page: [{"source", "yaml", "shapes"}], each validated."""
    chosen = choose_examples(layer_class, conformance)
    out = []
    if chosen:
        for example in chosen:
            source = (
                f"the conformance battery (`{rel_path(CONFORMANCE)}`, example `{example.name}`)"
            )
            text = to_yaml(example.config)
            result = check_example(layer_class, text, source)
            out.append(
                {"source": source, "yaml": text, "shapes": shapes_text(example.config, result)}
            )
        return out
    if schema.get("examples"):
        candidates = [
            (f"the schema's `examples` (`schemas/layers/{layer_class}.schema.json`)", layer)
            for layer in schema["examples"]
        ]
    else:
        candidates = [
            ("the schema's required options (generated)", generated_layer(layer_class, schema))
        ]
    for source, layer in candidates:
        errors = []
        for config in wrapped_configs(layer_class, layer):
            text = to_yaml(config)
            try:
                result = check_example(layer_class, text, source)
            except LayerReferenceError as exc:
                errors.append(str(exc))
                continue
            out.append({"source": source, "yaml": text, "shapes": shapes_text(config, result)})
            break
        else:
            raise LayerReferenceError(" | ".join(errors))
    return out
