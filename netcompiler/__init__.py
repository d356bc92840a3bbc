"""netcompiler: declarative network configs (RETURNN-style network dicts) compiled to TensorFlow.

Validation (`validate`) never imports TensorFlow; `compile` does.
"""
from __future__ import annotations

from .diagnostics import ConfigError, Diagnostic
from .loader import load
from .validate import ValidationResult, validate

__version__ = "0.1.0"
__all__ = ["ConfigError", "Diagnostic", "ValidationResult", "compile", "load", "validate"]


def compile(config, overrides=None, seed=None):  # noqa: A001 - the product's verb
    """Validate and compile a config (path, YAML text, dict) into a `CompiledNetwork`
    (a `tf.Module`); raises `ConfigError` with every diagnostic if the config is invalid."""
    from .build import compile_network

    return compile_network(config, overrides=overrides, seed=seed)
