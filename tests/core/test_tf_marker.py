"""The `tf` marker (tests/conftest.py) covers every TensorFlow test, so that
`pytest -m "not tf and not slow"` is a front-end lane that runs without TensorFlow.

A run with `not tf` in its `-m` expression makes TensorFlow unimportable (so the lane checks
itself); here: the rule on small modules, the blocking (in a pytest run of its own), and the
whole lane collected without TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import deselects_tf, module_needs_tf

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "source, needs",
    [
        ("import numpy as np\n\ndef test_a():\n    assert np.zeros(1).sum() == 0\n", False),
        (
            'import pytest\ntf = pytest.importorskip("tensorflow")\n\ndef test_a():\n    pass\n',
            True,
        ),
        ('import pytest\npytest.importorskip("tensorflow")\n', True),
        ("import tensorflow as tf\n", True),
        ('import netcompiler\n\ndef test_a():\n    netcompiler.compile("c.yaml")\n', True),
        ("from netcompiler.backend.build import compile_network\n", True),
        ("from netcompiler.training.trainer import Trainer\n", True),
        # in a string or a comment (code run in a subprocess without TensorFlow): not a sign
        ('CODE = "import netcompiler; netcompiler.compile(x)"\n# needs no tensorflow\n', False),
        # TensorFlow tests marked one by one: the marks are trusted, the rest is front end
        (
            "import pytest\n\n@pytest.mark.tf\ndef test_a():\n    import tensorflow\n\n"
            "def test_b():\n    pass\n",
            False,
        ),
        # ... unless the module cannot be imported without TensorFlow
        (
            'import pytest\ntf = pytest.importorskip("tensorflow")\n\n@pytest.mark.tf\n'
            "def test_a():\n    pass\n",
            True,
        ),
    ],
)
def test_which_modules_are_tf(tmp_path, source, needs):
    path = tmp_path / "test_mod.py"
    path.write_text(source)
    assert module_needs_tf(str(path)) is needs


def test_the_suite_s_tensorflow_modules_are_marked():
    here = Path(__file__).resolve().parents[1]
    for name in (
        "test_conformance.py",
        "test_train.py",
        "test_build_basic.py",
        "test_search_cli.py",
        "test_compile.py",
        "test_loop.py",
    ):
        assert module_needs_tf(str(next(here.rglob(name)))), name
    for name in (
        "test_loader.py",
        "test_graph.py",
        "test_schema_errors.py",
        "test_light_install.py",
        "test_layers_basic.py",
    ):
        assert not module_needs_tf(str(next(here.rglob(name)))), name


@pytest.mark.parametrize(
    "markexpr, lane",
    [
        ("not tf", True),
        ("not tf and not slow", True),
        ("not slow and not tf", True),
        ("not slow", False),
        ("tf", False),
        ("", False),
        (None, False),
        ("not tfx", False),
    ],
)
def test_which_runs_are_the_lane(markexpr, lane):
    assert deselects_tf(markexpr) is lane


def _pytest(args, cwd, pythonpath=()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, pythonpath), str(REPO), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_lane_blocks_tensorflow_in_its_process_and_children(tmp_path):
    (tmp_path / "test_probe.py").write_text(
        "import subprocess, sys\n"
        "import pytest\n\n\n"
        "def test_probe():\n"
        "    with pytest.raises(ModuleNotFoundError, match='mark the test `tf`'):\n"
        "        import tensorflow  # noqa: F401\n"
        "    child = subprocess.run([sys.executable, '-c', 'import tensorflow'],\n"
        "                           capture_output=True, text=True)\n"
        "    assert child.returncode == 1 and 'mark the test `tf`' in child.stderr\n"
        "    import numpy  # the rest of the tf extra stays\n\n\n"
        "@pytest.mark.tf\n"
        "def test_deselected():\n"
        "    raise AssertionError('a tf test ran in the lane')\n"
    )
    here = Path(__file__).resolve().parents[1]
    proc = _pytest(
        ["-p", "conftest", "-m", "not tf", "-q", "--rootdir", str(tmp_path), "test_probe.py"],
        tmp_path,
        [here],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed, 1 deselected" in proc.stdout


def test_the_front_end_lane_collects_without_tensorflow():
    proc = _pytest(["--collect-only", "-q", "-m", "not tf and not slow", "tests"], REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    files = {line.split("::")[0] for line in collected}
    assert "tests/frontend/test_loader.py" in files and "tests/frontend/test_graph.py" in files
    assert not files & {
        "tests/layers/test_conformance.py",
        "tests/training/test_train.py",
        "tests/backend/test_build_basic.py",
    }
    # the mixed modules keep their front-end tests in the lane, not their TensorFlow ones
    assert any(line.startswith("tests/frontend/test_expr.py::") for line in collected)
    assert not any("test_integer_expressions_with_tensorflow" in line for line in collected)
