"""JSON Schema validation (draft 2020-12) of configs, reporting every error with its path.

The schema files in `schemas/` are the single source of truth for option names, types, defaults
and descriptions: `config.schema.json` (the whole config), `common.schema.json` (options every
layer accepts), `layers/<class>.schema.json` (one per layer class), `train.schema.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from netcompiler.core.config_types import ConfigPath, LayerOptions
from netcompiler.core.diagnostics import ERROR, Diagnostic, did_you_mean, format_path

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: a JSON Schema document or subschema, as `json.load` gives it
JsonSchema = dict[str, Any]


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / name


@cache
def load_schema(relative: str) -> JsonSchema:
    schema: JsonSchema = json.loads((SCHEMA_DIR / relative).read_text(encoding="utf-8"))
    return schema


def layer_schema_files() -> dict[str, Path]:
    """Layer class -> its schema file."""
    return {
        p.name[: -len(".schema.json")]: p
        for p in sorted((SCHEMA_DIR / "layers").glob("*.schema.json"))
    }


def _uri(path: Path) -> str:
    return path.resolve().as_uri()


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.rglob("*.schema.json"):
        resources.append(
            (_uri(path), Resource.from_contents(json.loads(path.read_text(encoding="utf-8"))))
        )
    return Registry().with_resources(resources)


@lru_cache(maxsize=1)
def config_validator() -> jsonschema.Draft202012Validator:
    path = SCHEMA_DIR / "config.schema.json"
    # validate against the rendering from the layer files (the checked-in file equals it; a
    # test keeps them in sync), so a new layer schema takes effect at once
    schema = render_config_schema()
    schema["$id"] = _uri(path)  # so relative $refs resolve against the schema directory
    return jsonschema.Draft202012Validator(schema, registry=_registry(), format_checker=None)


@cache
def layer_options(layer_class: str) -> dict[str, JsonSchema]:
    """Every option a layer class accepts (its own and the common ones) -> property schema."""
    options = dict(load_schema("common.schema.json")["$defs"]["common_options"]["properties"])
    files = layer_schema_files()
    if layer_class in files:
        options.update(load_schema(f"layers/{layer_class}.schema.json").get("properties", {}))
    return options


def option_default(layer_class: str, option: str, fallback: Any = None) -> Any:
    prop = layer_options(layer_class).get(option, {})
    return prop.get("default", fallback)


def layer_classes() -> list[str]:
    return sorted(layer_schema_files())


def render_config_schema() -> JsonSchema:
    """The config schema with one `if class == X then layers/X.schema.json` per layer file.

    `config.schema.json` is this rendering, checked in (a test keeps them equal), so external
    tools such as check-jsonschema and editors see the whole catalogue.
    """
    base = load_schema("config_base.json")
    schema: JsonSchema = json.loads(json.dumps(base))
    classes = layer_classes()
    layer = schema["$defs"]["layer"]
    layer["properties"]["class"] = {"enum": classes, "description": "The layer class."}
    layer["allOf"] = [
        {
            "if": {"properties": {"class": {"const": c}}, "required": ["class"]},
            "then": {"$ref": f"layers/{c}.schema.json"},
        }
        for c in classes
    ]
    return schema


# -- translating jsonschema errors into diagnostics -----------------------------------------------


def _layer_context(data: Any, path: ConfigPath) -> tuple[str | None, ConfigPath | None]:
    """If `path` points into a layer dict, (its class, the layer dict's path)."""
    node = data
    layer_class: str | None = None
    layer_path: ConfigPath | None = None
    for i, part in enumerate(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and (
            _is_layer_container(path[:i])
            or (part == "unit" and layer_class == "masked_computation" and layer_path == path[:i])
        ):  # a masked computation's unit is a layer
            layer_class = node.get("class") if isinstance(node.get("class"), str) else None
            layer_path = path[: i + 1]
    return layer_class, layer_path


def _is_layer_container(path: ConfigPath) -> bool:
    """`("network",)`, `(..., "unit")` and `(..., "subnetwork")` below a layer hold layers by
    name."""
    if path == ("network",):
        return True
    return (
        len(path) >= 3
        and path[0] == "network"
        and path[-1] in ("unit", "subnetwork")
        and len(path) % 2 == 1
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _schema_of(error: ValidationError) -> Mapping[str, Any]:
    """The subschema whose keyword failed: a mapping in every error that the checks translate
    (the stubs also allow the schemas `true` / `false`, and `Unset` for hand-made errors)."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def _allowed_names(error: ValidationError, data: Any, path: ConfigPath) -> list[str]:
    layer_class, layer_path = _layer_context(data, path)
    if layer_path == path and layer_class is not None:
        return list(layer_options(layer_class))
    names = list(_schema_of(error).get("properties", {}))
    return names


def _enum_values(schema: Mapping[str, Any]) -> list[Any]:
    if "enum" in schema:
        return list(schema["enum"])
    values: list[Any] = []
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            values.extend(v for v in _enum_values(sub) if v is not None)
    return values


def translate(error: ValidationError, data: Any, prefix: ConfigPath = ()) -> list[Diagnostic]:
    """One jsonschema error -> diagnostics with a config path, message and hint.

    `prefix` is the config path of the instance that was validated (a layer dict)."""
    path = prefix + tuple(error.absolute_path)
    v = error.validator
    # the failed value and keyword value: config data and schema data (`Unset` only in
    # hand-made errors)
    instance: Any = error.instance
    expected: Any = error.validator_value
    name = format_path(path[-1:]) if path else "config"
    if v in ("unevaluatedProperties", "additionalProperties"):
        return _unknown_key_diagnostics(error, data, path)
    if v == "required":
        return _missing_option_diagnostics(error, data, path)
    if v == "enum" or (
        v == "anyOf" and _enum_values(_schema_of(error)) and isinstance(instance, str)
    ):
        return [_enum_diagnostic(error, path, name)]
    if v == "const":
        return [
            Diagnostic(
                ERROR,
                f"`{name}` must be {_short(expected)}, got {_short(instance)}",
                "schema.enum",
                path,
            )
        ]
    if v == "type":
        types = " or ".join(expected) if isinstance(expected, list) else expected
        return [_type_mismatch(name, types, instance, path)]
    if v in _RANGE_OPERATORS:
        return [
            Diagnostic(
                ERROR,
                f"`{name}` out of range: must be {_RANGE_OPERATORS[v]} {expected}, "
                f"got {_short(instance)}",
                "schema.range",
                path,
            )
        ]
    if v in ("minItems", "maxItems", "minLength", "maxLength", "minProperties"):
        return [Diagnostic(ERROR, f"`{name}`: {error.message}", "schema.range", path)]
    if v == "pattern":
        return [_pattern_diagnostic(error, path, name)]
    if v in ("anyOf", "oneOf") and error.context:
        return _alternatives_diagnostics(error, data, prefix, path, name)
    return [Diagnostic(ERROR, f"`{name}`: {error.message}", f"schema.{v}", path)]


#: range keyword -> the comparison the value must pass, as the message writes it
_RANGE_OPERATORS = {
    "minimum": ">=",
    "maximum": "<=",
    "exclusiveMinimum": ">",
    "exclusiveMaximum": "<",
}


def _unknown_key_diagnostics(
    error: ValidationError, data: Any, path: ConfigPath
) -> list[Diagnostic]:
    """One diagnostic per key the schema does not allow, naming the layer class if the keys
    are options of a layer."""
    instance: Any = error.instance
    allowed = _allowed_names(error, data, path)
    layer_class, layer_path = _layer_context(data, path)
    extra = [k for k in instance if k not in allowed] if isinstance(instance, dict) else []
    out: list[Diagnostic] = []
    for key in extra:
        if layer_path == path and layer_class:
            msg = f"unknown option `{key}` for layer class `{layer_class}`"
        else:
            msg = f"unknown key `{key}`"
        out.append(
            Diagnostic(
                ERROR,
                msg,
                "schema.unknown-option",
                path + (key,),
                hint=did_you_mean(key, allowed),
            )
        )
    return out


def _missing_option_diagnostics(
    error: ValidationError, data: Any, path: ConfigPath
) -> list[Diagnostic]:
    """One diagnostic per required key that is missing."""
    instance: Any = error.instance
    expected: Any = error.validator_value
    missing = [k for k in expected if isinstance(instance, dict) and k not in instance]
    layer_class, layer_path = _layer_context(data, path)
    what = f" of layer class `{layer_class}`" if layer_class and layer_path == path else ""
    return [
        Diagnostic(ERROR, f"missing required option `{k}`{what}", "schema.missing-option", path)
        for k in missing
    ]


def _enum_diagnostic(error: ValidationError, path: ConfigPath, name: str) -> Diagnostic:
    """A value that is not one of the listed ones (a layer class or an option value)."""
    instance: Any = error.instance
    values = _enum_values(_schema_of(error))
    if path and path[-1] == "class":
        return Diagnostic(
            ERROR,
            f"unknown layer class `{instance}`",
            "schema.unknown-class",
            path,
            hint=did_you_mean(instance, values),
        )
    shown = ", ".join(x if isinstance(x, str) else json.dumps(x) for x in values[:12]) + (
        ", ..." if len(values) > 12 else ""
    )
    return Diagnostic(
        ERROR,
        f"`{name}`: unknown value {_short(instance)} (one of: {shown})",
        "schema.enum",
        path,
        hint=did_you_mean(instance, values) if isinstance(instance, str) else None,
    )


def _type_mismatch(name: str, types: str, instance: Any, path: ConfigPath) -> Diagnostic:
    """`types` is the expected type name, or several joined by ` or `."""
    return Diagnostic(
        ERROR,
        f"`{name}` must be of type {types}, got {_type_name(instance)} {_short(instance)}",
        "schema.type",
        path,
    )


def _pattern_diagnostic(error: ValidationError, path: ConfigPath, name: str) -> Diagnostic:
    """A string not of the expected form; for an activation, the names come from the
    pattern's alternatives so the hint can suggest one."""
    instance: Any = error.instance
    expected: Any = error.validator_value
    if path and path[-1] == "activation":
        names = expected.split("(", 3)[-1].split(")")[0].split("|")
        base = str(instance).split("*")[-1]
        return Diagnostic(
            ERROR,
            f"unknown activation `{instance}`",
            "schema.enum",
            path,
            hint=did_you_mean(base, names),
        )
    return Diagnostic(
        ERROR,
        f"`{name}`: {_short(instance)} does not match the expected form",
        "schema.pattern",
        path,
    )


def _alternatives_diagnostics(
    error: ValidationError, data: Any, prefix: ConfigPath, path: ConfigPath, name: str
) -> list[Diagnostic]:
    """A value matching none of the alternatives of an `anyOf`/`oneOf` that has sub-errors."""
    instance: Any = error.instance
    if _only_type_errors(error):
        types = sorted({t for e in error.context for t in _as_list(e.validator_value)})
        return [_type_mismatch(name, " or ".join(types), instance, path)]
    # pick the alternative that got furthest, so the user sees one concrete problem; a
    # top-level type mismatch of an alternative (e.g. `null` for an activation) is the
    # least informative one, so prefer any other error
    candidates = [e for e in error.context if e.validator != "type" or e.path]
    sub = best_match(candidates) if candidates else None
    if sub is not None:
        return translate(sub, data, prefix)
    return [
        Diagnostic(ERROR, f"`{name}`: {_short(instance)} is not valid here", "schema.type", path)
    ]


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def _only_type_errors(error: ValidationError) -> bool:
    return bool(error.context) and all(e.validator == "type" and not e.path for e in error.context)


def validate_config(data: Any) -> list[Diagnostic]:
    """All schema errors of a config, sorted by path.

    Same result as validating against `config.schema.json`, but faster: the top level is
    checked with the layer definition reduced to its `class`, and every layer dict (also inside
    rec units) with its own class's schema, instead of trying every `if class == X` per layer.
    """
    if not isinstance(data, dict):
        return [
            Diagnostic(
                ERROR, f"the config must be a mapping, got {_type_name(data)}", "schema.type", ()
            )
        ]
    diags: list[Diagnostic] = []
    seen: set[tuple[ConfigPath, str]] = set()

    def report(errors: Iterable[ValidationError], prefix: ConfigPath) -> None:
        for error in errors:
            for d in translate(error, data, prefix):
                key = (d.path, d.message)
                if key not in seen:
                    seen.add(key)
                    diags.append(d)

    report(_light_validator("config.schema.json").iter_errors(data), ())
    classes = set(layer_classes())

    def walk(layers: object, prefix: ConfigPath) -> None:
        if not isinstance(layers, dict):
            return
        for name, layer in layers.items():
            if (
                not isinstance(layer, dict)
                or not isinstance(layer.get("class"), str)
                or layer["class"] not in classes
            ):
                continue  # reported by the enclosing check (unknown class / not a mapping)
            path = prefix + (name,)
            report(
                _light_validator(f"layers/{layer['class']}.schema.json").iter_errors(layer), path
            )
            diags.extend(check_initializer_options(layer, path))
            if layer["class"] == "rec" and isinstance(layer.get("unit"), dict):
                walk(layer["unit"], path + ("unit",))
            if layer["class"] == "subnetwork" and isinstance(layer.get("subnetwork"), dict):
                walk(layer["subnetwork"], path + ("subnetwork",))
            if layer["class"] == "masked_computation" and isinstance(layer.get("unit"), dict):
                walk({"unit": layer["unit"]}, path)  # the unit is a layer dict

    walk(data.get("network"), ("network",))
    return diags


@cache
def initializer_options(layer_class: str) -> tuple[str, ...]:
    """The options of a layer class whose values are initialisers."""
    return tuple(
        name
        for name, prop in layer_options(layer_class).items()
        if isinstance(prop, dict) and str(prop.get("$ref", "")).endswith("#/$defs/initializer")
    )


def check_initializer_options(layer: LayerOptions, path: ConfigPath) -> list[Diagnostic]:
    """Initialiser names, calls and arguments (netcompiler.frontend.initializers) of one layer dict;
    the schema only checks their form. Also `gamma_init`/`beta_init` of a `batch_norm` dict."""
    from netcompiler.frontend.initializers import check_initializer

    out: list[Diagnostic] = []
    found: list[tuple[ConfigPath, Any]] = [
        ((name,), layer[name])
        for name in initializer_options(layer["class"])
        if name in layer and layer[name] is not None
    ]
    bn = layer.get("batch_norm")
    if isinstance(bn, dict):
        found += [(("batch_norm", k), bn[k]) for k in ("gamma_init", "beta_init") if k in bn]
    for sub, value in found:
        if isinstance(value, (str, dict, int, float)) and not isinstance(value, bool):
            problem = check_initializer(value)
            if problem is not None:
                out.append(
                    Diagnostic(ERROR, problem[0], "schema.initializer", path + sub, hint=problem[1])
                )
    return out


@lru_cache(maxsize=1)
def _light_registry() -> Registry:
    """All schema files, with `config.schema.json` reduced to checking each layer's `class`."""
    light = render_config_schema()
    light["$defs"]["layer"].pop("allOf", None)
    resources = []
    for path in SCHEMA_DIR.rglob("*.schema.json"):
        contents = (
            light
            if path.name == "config.schema.json" and path.parent == SCHEMA_DIR
            else json.loads(path.read_text(encoding="utf-8"))
        )
        resources.append((_uri(path), Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@cache
def _light_validator(relative: str) -> jsonschema.Draft202012Validator:
    path = SCHEMA_DIR / relative
    schema = _light_registry().get_or_retrieve(_uri(path)).value.contents
    schema = dict(schema, **{"$id": _uri(path)})
    return jsonschema.Draft202012Validator(schema, registry=_light_registry())


def failed_layer_paths(diags: Iterable[Diagnostic], data: Any) -> set[ConfigPath]:
    """Paths of the layer dicts that have schema errors (their shapes are not inferred)."""
    out: set[ConfigPath] = set()
    for d in diags:
        _, layer_path = _layer_context(data, d.path)
        if layer_path is not None:
            out.add(layer_path)
        elif len(d.path) >= 2 and d.path[0] == "network":
            out.add(d.path[:2])
    return out


def write_config_schema() -> Path:
    """Rewrite `schemas/config.schema.json` from `config_base.json` and the layer schemas."""
    path = SCHEMA_DIR / "config.schema.json"
    path.write_text(json.dumps(render_config_schema(), indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m netcompiler.frontend.schema: regenerate config.schema.json
    print(write_config_schema())
