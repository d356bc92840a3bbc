"""netcompiler: declarative network configs (RETURNN-style network dicts) compiled to TensorFlow.

Validation (`validate`) never imports TensorFlow; `compile` does.
"""

from __future__ import annotations

import os

from netcompiler.core.diagnostics import ConfigError, Diagnostic
from netcompiler.frontend.loader import load
from netcompiler.frontend.validate import ValidationResult, validate

# TensorFlow's C++ log level, unless the user chose one: its start-up chatter (oneDNN notes,
# CUDA probing) stays off the terminal. Set here, the one place, before any module of the
# package imports TensorFlow (which reads it when it is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
__all__ = ["ConfigError", "Diagnostic", "ValidationResult", "compile", "load", "validate"]


#: top-level modules that the `tf` extra installs (`pip install "netcompiler[tf]"`); the light
#: install (`pip install netcompiler`: validate, schema, graph) has none of them
TF_EXTRA_MODULES = ("tensorflow", "keras", "numpy", "h5py", "rich", "tensorboard")
TF_INSTALL = 'pip install "netcompiler[tf]"'


def missing_tf_extra(exc: BaseException) -> str | None:
    """The module of the `tf` extra whose absence raised `exc` (a ModuleNotFoundError), else
    None."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if name and name.split(".")[0] in TF_EXTRA_MODULES:
        return name.split(".")[0]
    return None


def compile(config, overrides=None, seed=None, precision=None):  # noqa: A001 - the product's verb
    """Validate and compile a config (path, YAML text, dict) into a `CompiledNetwork`
    (a `tf.Module`); raises `ConfigError` with every diagnostic if the config is invalid, and
    ImportError saying how to install TensorFlow where it is missing. `precision`:
    `float32`, `mixed_bfloat16` or `mixed_float16` (None: the config's `train.precision`)."""
    try:
        from netcompiler.backend.build import compile_network
    except ModuleNotFoundError as exc:
        missing = missing_tf_extra(exc)
        if missing is None:
            raise
        raise ImportError(
            f"netcompiler.compile needs TensorFlow (no module named "
            f"{missing!r}); install it with {TF_INSTALL}",
            name=missing,
        ) from exc

    return compile_network(config, overrides=overrides, seed=seed, precision=precision)
