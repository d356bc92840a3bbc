"""The `tf` marker (tests/conftest.py) covers every TensorFlow test, so that
`pytest -m "not tf and not slow"` is a front-end lane that runs without TensorFlow.

`.ci/run` runs that lane with TensorFlow made unimportable; here the rule itself is checked on
small modules, and the lane is collected (not run) without TensorFlow.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import module_needs_tf

REPO = Path(__file__).resolve().parents[1]

BLOCKER = """\
import sys


class _BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tensorboard"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _BlockTensorFlow())
"""


@pytest.mark.parametrize("source, needs", [
    ('import numpy as np\n\ndef test_a():\n    assert np.zeros(1).sum() == 0\n', False),
    ('import pytest\ntf = pytest.importorskip("tensorflow")\n\ndef test_a():\n    pass\n', True),
    ('import pytest\npytest.importorskip("tensorflow")\n', True),
    ('import tensorflow as tf\n', True),
    ('import netcompiler\n\ndef test_a():\n    netcompiler.compile("c.yaml")\n', True),
    ('from netcompiler.build import compile_network\n', True),
    ('from netcompiler.train import Trainer\n', True),
    # in a string or a comment (code run in a subprocess without TensorFlow): not a sign
    ('CODE = "import netcompiler; netcompiler.compile(x)"\n# needs no tensorflow\n', False),
    # TensorFlow tests marked one by one: the marks are trusted, the rest is front end
    ('import pytest\n\n@pytest.mark.tf\ndef test_a():\n    import tensorflow\n\n'
     'def test_b():\n    pass\n', False),
    # ... unless the module cannot be imported without TensorFlow
    ('import pytest\ntf = pytest.importorskip("tensorflow")\n\n@pytest.mark.tf\n'
     'def test_a():\n    pass\n', True),
])
def test_which_modules_are_tf(tmp_path, source, needs):
    path = tmp_path / "test_mod.py"
    path.write_text(source)
    assert module_needs_tf(str(path)) is needs


def test_the_suite_s_tensorflow_modules_are_marked():
    here = Path(__file__).parent
    for name in ("test_conformance.py", "test_train.py", "test_build_basic.py",
                 "test_search_cli.py", "test_compile.py", "test_loop.py"):
        assert module_needs_tf(str(here / name)), name
    for name in ("test_loader.py", "test_graph.py", "test_schema_errors.py",
                 "test_light_install.py", "test_layers_basic.py"):
        assert not module_needs_tf(str(here / name)), name


def test_the_front_end_lane_collects_without_tensorflow(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "-p",
         "no:cacheprovider", "-m", "not tf and not slow", "tests"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    files = {line.split("::")[0] for line in collected}
    assert "tests/test_loader.py" in files and "tests/test_graph.py" in files
    assert not files & {"tests/test_conformance.py", "tests/test_train.py",
                        "tests/test_build_basic.py"}
    # the mixed modules keep their front-end tests in the lane, not their TensorFlow ones
    assert any(line.startswith("tests/test_expr.py::") for line in collected)
    assert not any("test_integer_expressions_with_tensorflow" in line for line in collected)
