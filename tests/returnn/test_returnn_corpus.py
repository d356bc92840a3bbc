"""The RETURNN compatibility corpus (tests/returnn_corpus/): network dicts taken from RETURNN's
demos and tests and from published setups (rwth-i6/returnn-experiments), converted to YAML and
nothing else (a `variant` file says on line 2 what it replaced). Each must validate, compile, run forward
with the inferred shapes (and beam search where a rec unit has a `choice`), or, for a network
that calls Python from its config, be rejected with the rule its header names."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from returnn_corpus.harness import CorpusFailure, corpus_files, header, run_network  # noqa: E402

FILES = corpus_files()


def test_corpus_size_and_source_lines():
    assert len(FILES) >= 25, f"only {len(FILES)} corpus networks"
    for path in FILES:
        info = header(path)
        assert info["source"] is not None, f"{path.name}: line 1 is not a valid `# source:` line"
        src = info["source"]["path"]
        if info["source"]["repo"] == "returnn-experiments":  # a published research setup
            assert src.endswith(".config"), (path.name, src)
            continue
        assert src.startswith(("demos/", "tests/")), (path.name, src)
        if src.startswith("tests/"):
            assert info["source"]["func"], f"{path.name}: a test source names its function"
        lines = path.read_text().splitlines()
        if len(lines) > 1 and lines[1].startswith("# expect-error"):
            assert info["expect"] is not None, f"{path.name}: malformed expect-error line"


#: Corpus networks that do not run yet, with the validation error (rule) that stops them: what
#: they need is unsupported, and validation says so at the right place. A network listed here
#: that starts to run fails its test (take it off the list), and so does one that stops anywhere
#: else (a crash after validation would break "what validates, compiles").
KNOWN_BLOCKERS: dict[str, tuple[str, str]] = {
    "demo_neural_transducer_12ax": ("schema.unknown-class", "RETURNN's neural_transducer"),
    "rec_target_with_beam": ("graph.unknown-layer", "`extra.search:` networks"),
    "rec_trainable_sublayers": (
        "shape.state-key",
        "the c||h state of an rnn_cell inside the loop (prev:s)",
    ),
}


@pytest.mark.tf
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corpus_network(path):
    pytest.importorskip("tensorflow")
    blocker = KNOWN_BLOCKERS.get(path.stem)
    if blocker is None:
        run_network(path)
        return
    rule, what = blocker
    with pytest.raises(CorpusFailure) as info:
        run_network(path)
    assert info.value.stage == "validate", f"{path.stem} ({what}) got past validation: {info.value}"
    assert any(line.endswith(f"[{rule}]") for line in info.value.details), (
        f"{path.stem}: expected the blocker [{rule}] ({what}), got {info.value.details}"
    )


def test_known_blockers_are_corpus_networks():
    assert set(KNOWN_BLOCKERS) <= {p.stem for p in FILES}
