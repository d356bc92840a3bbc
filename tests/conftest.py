"""Shared test set-up: the `tf` marker on every test that needs TensorFlow.

`pytest -m "not tf and not slow"` is the fast front-end lane (validation, shapes, loader,
graph, schema, import-returnn, datasets without TensorFlow); `.ci/run` runs it with TensorFlow
made unimportable, so a TensorFlow test without the marker fails there.

A test gets the marker (besides an explicit `@pytest.mark.tf` / `pytestmark`) when its module
- imports TensorFlow at module level (`import tensorflow`, `pytest.importorskip("tensorflow")`
  at column 0): the module cannot even be imported without it; or
- needs TensorFlow somewhere (the code, not strings or comments, names `tensorflow`,
  `netcompiler.compile`, `compile_network`, `CompiledNetwork` or `Trainer`), unless it marks
  its TensorFlow tests one by one with `@pytest.mark.tf` (a module of front-end tests with a few
  TensorFlow ones): then those marks are trusted.
"""
from __future__ import annotations

import functools
import io
import re
import tokenize
from pathlib import Path

import pytest

#: TensorFlow imported when the module is imported
_MODULE_LEVEL_TF = re.compile(
    r"^(?:import tensorflow\b|from tensorflow\b|\w+\s*=\s*pytest\.importorskip\(\s*['\"]tensorflow"
    r"|pytest\.importorskip\(\s*['\"]tensorflow)", re.M)
#: signs (in code, strings and comments stripped) that a module runs TensorFlow somewhere
_NEEDS_TF = re.compile(
    r"\btensorflow\b|\bnetcompiler\s*\.\s*compile\s*\(|\bcompile_network\b|\bCompiledNetwork\b"
    r"|\bTrainer\b")
#: a test marked `tf` one by one
_PER_TEST_TF = re.compile(r"^\s*@pytest\.mark\.tf\b", re.M)


def _code_only(source: str) -> str:
    """The source without its strings and comments (names and operators, one per line)."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in (tokenize.STRING, tokenize.COMMENT) and tok.string.strip():
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - pytest reports the module
        return source
    # `netcompiler . compile (` joined back with spaces: the patterns allow them
    return " ".join(out)


@functools.lru_cache(maxsize=None)
def module_needs_tf(path: str) -> bool:
    """True if every test of the test module at `path` gets the `tf` marker (see the module
    docstring)."""
    source = Path(path).read_text(encoding="utf-8")
    if _MODULE_LEVEL_TF.search(source):
        return True
    if _PER_TEST_TF.search(source):
        return False
    return bool(_NEEDS_TF.search(_code_only(source)))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = getattr(item, "path", None)
        if path is None or path.suffix != ".py" or item.get_closest_marker("tf") is not None:
            continue
        if module_needs_tf(str(path)):
            item.add_marker(pytest.mark.tf)
