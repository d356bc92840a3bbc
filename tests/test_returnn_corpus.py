"""The RETURNN compatibility corpus (tests/returnn_corpus/): network dicts taken from RETURNN's
demos and tests, converted to YAML and nothing else. Each must validate, compile, run forward
with the inferred shapes (and beam search where a rec unit has a `choice`), or, for a network
that calls Python from its config, be rejected with the rule its header names."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from returnn_corpus.harness import corpus_files, header, run_network  # noqa: E402

FILES = corpus_files()


def test_corpus_size_and_source_lines():
    assert len(FILES) >= 25, f"only {len(FILES)} corpus networks"
    for path in FILES:
        info = header(path)
        assert info["source"] is not None, f"{path.name}: line 1 is not a valid `# source:` line"
        src = info["source"]["path"]
        assert src.startswith(("demos/", "tests/")), (path.name, src)
        if src.startswith("tests/"):
            assert info["source"]["func"], f"{path.name}: a test source names its function"
        lines = path.read_text().splitlines()
        if len(lines) > 1 and lines[1].startswith("# expect-error"):
            assert info["expect"] is not None, f"{path.name}: malformed expect-error line"


@pytest.mark.tf
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corpus_network(path):
    pytest.importorskip("tensorflow")
    run_network(path)
