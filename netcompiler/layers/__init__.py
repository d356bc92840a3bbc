"""Registry of layer classes: every non-private module here defines `LayerRule` subclasses.

Adding a layer class = one module here (shape rule + builder + the traits the engine reads,
see `LayerRule`) + one schema file in `schemas/layers/` + one conformance entry.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from netcompiler.core.layer_rule import COMMON_LAYER_OPTIONS, LayerRule, ParamSpec, ShapeError

__all__ = [
    "COMMON_LAYER_OPTIONS",
    "LayerRule",
    "ParamSpec",
    "ShapeError",
    "registry",
    "get_rule",
    "traits",
]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@cache
def registry() -> dict[str, LayerRule]:
    """Layer class name -> rule instance."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    rules: dict[str, LayerRule] = {}
    for cls in _subclasses(LayerRule):
        name = cls.__dict__.get("layer_class")
        if not name:
            continue
        if name in rules:
            raise RuntimeError(f"layer class `{name}` defined twice: {cls} and {type(rules[name])}")
        rules[name] = cls()
    return rules


def get_rule(layer_class: str) -> LayerRule | None:
    return registry().get(layer_class)


#: every trait at its default: the traits of a class that has no rule
_NO_TRAITS = LayerRule()


def traits(layer_class: str) -> LayerRule:
    """The rule of a layer class for reading its traits (`traits(cls).stateful`); for an unknown
    class (a schema error) the base `LayerRule`, every trait at its default."""
    rule = registry().get(layer_class) if isinstance(layer_class, str) else None
    return rule if rule is not None else _NO_TRAITS
