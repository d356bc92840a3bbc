"""The light install (`pip install netcompiler`, no TensorFlow, no NumPy) stays importable and
working: `validate`, `schema`, `graph` and `import-returnn` run with the modules of the `tf` extra made
unimportable, and the TensorFlow subcommands say in one line how to get it.

The modules are blocked by a `sitecustomize` on PYTHONPATH that puts a finder first on
`sys.meta_path` raising ModuleNotFoundError for them, as a Python without them installed does.
(`.ci/run` also checks a real light install in a venv of its own.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netcompiler import TF_EXTRA_MODULES
from netcompiler.frontend.validate import validate

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
HINT = 'install it with pip install "netcompiler[tf]"'

BLOCKER = f"""\
import sys


class _BlockTfExtra:
    blocked = {tuple(TF_EXTRA_MODULES)!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _BlockTfExtra())
"""


@pytest.fixture(scope="module")
def light_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("no_tf_site")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    env.pop("NETCOMPILER_DEBUG", None)
    return env


def light(env, *args, code=None, cwd=REPO):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "netcompiler", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_blocker_blocks(light_env):
    # otherwise every other test here would pass vacuously
    for module in ("tensorflow", "numpy", "h5py", "rich"):
        proc = light(light_env, code=f"import {module}")
        assert proc.returncode == 1
        assert f"ModuleNotFoundError: No module named '{module}'" in proc.stderr
    assert light(light_env, code="import yaml, jsonschema, networkx").returncode == 0


def test_validate_without_tensorflow(light_env):
    proc = light(light_env, "validate", "configs/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"checked {len(CONFIGS)} configs: 0 errors" in proc.stdout
    # the shape table too, and a broken config is reported, not crashed on
    proc = light(light_env, "validate", "--shapes", str(CONFIGS[0]))
    assert proc.returncode == 0 and "params" in proc.stdout and "total" in proc.stdout
    proc = light(light_env, "validate", "--set", "network.nope.class=linear", str(CONFIGS[0]))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_schema_without_tensorflow(light_env):
    from netcompiler.frontend.schema import render_config_schema

    proc = light(light_env, "schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == render_config_schema()


def test_graph_without_tensorflow(light_env, tmp_path):
    config = str(REPO / "configs" / "reverse_dot_attention.yaml")
    proc = light(light_env, "graph", config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("digraph") and "n_output_s" in proc.stdout
    svg = tmp_path / "g.svg"
    proc = light(light_env, "graph", config, "--format", "svg", "-o", str(svg))
    assert proc.returncode == 0, proc.stderr
    texts = {t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {"output/s", "rnn_cell", "[B, F=64]"} <= texts


RETURNN_CONFIG = """\
#!rnn.py
num_inputs = 9
num_outputs = 3
batch_size = 500
network = {
    "hidden": {"class": "linear", "activation": "tanh", "n_out": 16, "from": ["data"]},
    "output": {"class": "softmax", "loss": "ce", "from": ["hidden"]},
}
"""


def test_import_returnn_without_tensorflow(light_env, tmp_path):
    config = tmp_path / "small.config"
    config.write_text(RETURNN_CONFIG)
    target = tmp_path / "small.yaml"
    proc = light(light_env, "import-returnn", str(config), "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # what it wrote validates (in this process) and holds the network
    result = validate(str(target))
    assert result.ok, [d.message for d in result.errors]
    assert str(result.inferred.shapes["hidden"]) == "[B, T(data), F=16]"
    assert str(result.inferred.shapes["output"]) == "[B, T(data), F=3]"


@pytest.mark.parametrize(
    "argv",
    [
        ["compile", "{config}", "-o", "{tmp}/saved"],
        ["train", "{config}", "--model-dir", "{tmp}/model"],
        ["search", "{config}", "--checkpoint", "{tmp}/model", "--data", "reverse"],
        ["forward", "{config}", "--checkpoint", "{tmp}/model", "-o", "{tmp}/out.hdf"],
    ],
)
def test_tensorflow_commands_say_how_to_get_it(light_env, tmp_path, argv):
    config = str(REPO / "configs" / "reverse_dot_attention.yaml")
    argv = [a.format(config=config, tmp=tmp_path) for a in argv]
    proc = light(light_env, *argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"netcompiler {argv[0]}: needs TensorFlow; {HINT}"]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_python_api_without_tensorflow(light_env):
    code = (
        "import netcompiler\n"
        "r = netcompiler.validate('configs/reverse_dot_attention.yaml')\n"
        "print('valid', r.ok, len(r.inferred.shapes))\n"
        "try:\n"
        "    netcompiler.compile('configs/reverse_dot_attention.yaml')\n"
        "except ImportError as exc:\n"
        "    print('ImportError', exc)\n"
    )
    proc = light(light_env, code=code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("valid True ") and int(lines[0].split()[-1]) > 5
    assert lines[1] == (
        f"ImportError netcompiler.compile needs TensorFlow (no module named 'tensorflow'); {HINT}"
    )


def test_missing_h5py_alone_is_named():
    # TensorFlow present but another module of the extra missing: the message names it
    from netcompiler.training.command_support import needs_tf

    exc = ModuleNotFoundError("No module named 'h5py'", name="h5py")
    assert needs_tf("forward", exc) == (
        "netcompiler forward: needs TensorFlow and h5py (not installed); install them with "
        'pip install "netcompiler[tf]"'
    )
    broken = ImportError("libfoo.so: cannot open shared object file\nmore")
    assert needs_tf("train", broken) == (
        "netcompiler train: TensorFlow is installed but does not import (libfoo.so: cannot "
        'open shared object file); reinstall it with pip install "netcompiler[tf]"'
    )


def test_pyproject_keeps_tensorflow_out_of_the_core():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    extras = project["optional-dependencies"]
    for module in ("tensorflow", "numpy", "h5py"):
        assert module not in core
        assert any(dep.lower().startswith(module) for dep in extras["tf"])
    # the README's test command (`pip install -e ".[test]"`) installs TensorFlow too
    assert "netcompiler[tf]" in extras["test"]
    # the light install is these three (and what they pull in)
    assert {d.split(">")[0].split("=")[0].lower() for d in project["dependencies"]} == {
        "pyyaml",
        "jsonschema",
        "networkx",
    }


def test_pre_commit_hook_installs_the_light_package():
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "netcompiler-validate")
    # `language: python` installs the repository itself with its core dependencies only
    assert hook["language"] == "python"
    assert hook["entry"] == "netcompiler validate"
    assert not hook.get("additional_dependencies")
