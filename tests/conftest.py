"""Shared test set-up: the `tf` marker on every test that needs TensorFlow.

`pytest -m "not tf and not slow"` is the fast front-end lane (validation, shapes, loader,
graph, schema, import-returnn, datasets without TensorFlow). A run whose `-m` expression says
`not tf` makes TensorFlow unimportable, in its own process and in the processes its tests start
(a `sitecustomize` on PYTHONPATH), so a TensorFlow test without the marker fails there instead
of passing on a machine that happens to have TensorFlow; the modules whose every test is `tf`
are not even collected there.

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
import os
import re
import shutil
import sys
import tempfile
import tokenize
from pathlib import Path

import pytest

#: TensorFlow imported when the module is imported
_MODULE_LEVEL_TF = re.compile(
    r"^(?:import tensorflow\b|from tensorflow\b|\w+\s*=\s*pytest\.importorskip\(\s*['\"]tensorflow"
    r"|pytest\.importorskip\(\s*['\"]tensorflow)",
    re.M,
)
#: signs (in code, strings and comments stripped) that a module runs TensorFlow somewhere
_NEEDS_TF = re.compile(
    r"\btensorflow\b|\bnetcompiler\s*\.\s*compile\s*\(|\bcompile_network\b|\bCompiledNetwork\b"
    r"|\bTrainer\b"
)
#: a test marked `tf` one by one
_PER_TEST_TF = re.compile(r"^\s*@pytest\.mark\.tf\b", re.M)
#: what the `not tf` lane blocks
TF_MODULES = ("tensorflow", "keras", "tensorboard")
BLOCKER = f"""\
import sys


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TF_MODULES!r}:
            raise ModuleNotFoundError(
                f"No module named {{name!r}} (the `not tf` test lane blocks TensorFlow: mark "
                f"the test `tf`)", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
"""


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


@functools.cache
def module_needs_tf(path: str) -> bool:
    """True if every test of the test module at `path` gets the `tf` marker (see the module
    docstring)."""
    source = Path(path).read_text(encoding="utf-8")
    if _MODULE_LEVEL_TF.search(source):
        return True
    if _PER_TEST_TF.search(source):
        return False
    return bool(_NEEDS_TF.search(_code_only(source)))


def deselects_tf(markexpr: str | None) -> bool:
    """True if the `-m` expression says `not tf` (the front-end lane)."""
    return bool(re.search(r"\bnot\s+tf\b", markexpr or ""))


_blocker_dir: str | None = None
_lane = False


def pytest_configure(config):
    global _blocker_dir, _lane
    _lane = deselects_tf(config.getoption("markexpr", None))
    if not _lane or "tensorflow" in sys.modules:
        return
    _blocker_dir = tempfile.mkdtemp(prefix="netcompiler-no-tf-")
    Path(_blocker_dir, "sitecustomize.py").write_text(BLOCKER)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_blocker_dir, os.environ.get("PYTHONPATH")) if p
    )
    namespace: dict = {}
    exec(compile(BLOCKER, "sitecustomize.py", "exec"), namespace)  # noqa: S102 - our own code


def pytest_unconfigure(config):
    if _blocker_dir is not None:
        shutil.rmtree(_blocker_dir, ignore_errors=True)


def pytest_ignore_collect(collection_path, config):
    """In the lane, a module whose every test is `tf` is not even imported (it would only be
    skipped, or fail to import, without TensorFlow)."""
    if (
        _lane
        and collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
        and module_needs_tf(str(collection_path))
    ):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = getattr(item, "path", None)
        if path is None or path.suffix != ".py" or item.get_closest_marker("tf") is not None:
            continue
        if module_needs_tf(str(path)):
            item.add_marker(pytest.mark.tf)
