"""Registry of layer classes: every non-private module here defines `LayerRule` subclasses.

Adding a layer class = one module here (shape rule + builder) + one schema file in
`schemas/layers/` + one conformance entry.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from .base import LayerRule, ParamSpec, ShapeError

__all__ = ["LayerRule", "ParamSpec", "ShapeError", "registry", "get_rule"]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@lru_cache(maxsize=None)
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
