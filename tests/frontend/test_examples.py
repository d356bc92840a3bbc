"""Every example config validates, and its inferred shapes equal the hand-derived ones."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netcompiler.frontend.validate import validate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
EXPECTED = ROOT / "tests" / "expected_shapes"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_validates_without_errors(path):
    result = validate(path)
    assert [str(d) for d in result.errors] == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_shapes_match_hand_derived(path):
    expected = yaml.safe_load((EXPECTED / f"{path.stem}.yaml").read_text())
    result = validate(path)
    got = {name: str(shape) for name, shape in result.inferred.shapes.items()}
    extern = {k: str(v) for k, v in result.inferred.extern.items()}
    assert extern == expected.pop("_extern_data")
    assert got == expected


def test_every_example_has_expected_shapes():
    assert {p.stem for p in CONFIGS} == {p.stem for p in EXPECTED.glob("*.yaml")}
    assert len(CONFIGS) >= 6


def test_shapes_table_of_an_example_lists_every_layer():
    import contextlib
    import io

    from netcompiler.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["validate", "--shapes", str(ROOT / "configs" / "transformer_encoder.yaml")])
    assert code == 0
    expected = yaml.safe_load((EXPECTED / "transformer_encoder.yaml").read_text())
    table = buf.getvalue()
    for name, shape in expected.items():
        if name != "_extern_data":
            assert shape in table, (name, shape)


def test_validation_does_not_import_tensorflow():
    code = (
        "import sys, netcompiler\n"
        "from netcompiler.cli.app import main\n"
        f"rc = main(['validate', '--quiet', {str(ROOT / 'configs')!r}])\n"
        "print(rc, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split()[-1] == "False", out.stdout + out.stderr
    assert out.stdout.split()[-2] == "0", out.stdout + out.stderr
