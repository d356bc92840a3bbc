"""`netcompiler search`: beam search from a checkpoint over a dataset, the n-best TSV, the error
rates (checked against an independent computation here), and the user mistakes."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import yaml

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402
from netcompiler.backend.export import checkpoint  # noqa: E402
from netcompiler.cli import app as cli
from netcompiler.frontend.validate import validate  # noqa: E402
from netcompiler.training.datasets import make_dataset, write_npz  # noqa: E402
from netcompiler.training.trainer import Trainer  # noqa: E402

from markov_chain import MARKOV, markov_net  # noqa: E402

pytestmark = pytest.mark.tf

# a tiny reverse decoder (dot attention), trained for 2 epochs: far from perfect, so the error
# rates are neither 0 nor 1 and the n-best lists differ
DECODER = """
extern_data:
  data: {dim: 6, sparse: true}
  classes: {dim: 6, sparse: true}
network:
  src_embed: {class: linear, from: data, n_out: 8, with_bias: false}
  enc: {class: rec, unit: lstm, from: src_embed, n_out: 16}
  output:
    class: rec
    from: []
    target: classes
    max_seq_len: 12
    unit:
      target_embed: {class: linear, from: output, n_out: 8, with_bias: false}
      s: {class: rnn_cell, unit: lstm, from: [prev:target_embed, prev:att], n_out: 16}
      att: {class: dot_attention, from: s, base: base:enc, base_ctx: base:enc}
      output_prob: {class: softmax, from: [s, att], loss: ce, target: classes}
      output: {class: choice, from: output_prob, target: classes, beam_size: 3}
      end: {class: compare, from: output, kind: equal, value: 0}
train:
  train_data: {class: reverse, num_seqs: 300, num_symbols: 6, min_len: 2, max_len: 5}
  dev_data: {class: reverse, num_seqs: 40, num_symbols: 6, min_len: 2, max_len: 5}
  batch_size: 300
  num_epochs: 2
  learning_rate: 0.01
  random_seed: 3
"""
SPEC = "{class: reverse, num_seqs: 25, num_symbols: 6, min_len: 2, max_len: 5, seed: 7}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    cfg = root / "decoder.yaml"
    cfg.write_text(DECODER)
    result = validate(str(cfg))
    assert not result.errors, result.errors
    Trainer(result, model_dir=root / "model", out=open(os.devnull, "w")).train()
    return cfg, root / "model"


def run(capsys, *argv):
    code = cli.main(["search", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def parse_tsv(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def levenshtein(a, b) -> int:
    """Independent edit distance: the numpy DP table."""
    d = np.zeros((len(a) + 1, len(b) + 1), np.int64)
    d[:, 0] = np.arange(len(a) + 1)
    d[0, :] = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + int(a[i - 1] != b[j - 1])
            )
    return int(d[-1, -1])


def test_tsv_nbest_and_error_rates(trained, tmp_path, capsys):
    cfg, model = trained
    out = tmp_path / "hyps.tsv"
    code, stdout, err = run(
        capsys,
        cfg,
        "--checkpoint",
        model,
        "--data",
        SPEC,
        "--beam-size",
        3,
        "--n-best",
        3,
        "-o",
        out,
    )
    assert code == 0, err
    header, rows = parse_tsv(out.read_text())
    assert header == ["seq_tag", "rank", "score", "length", "labels"]
    ds = make_dataset(yaml.safe_load(SPEC), yaml.safe_load(DECODER)["extern_data"], name="search")
    assert len(rows) == 3 * ds.num_seqs
    # sequences in dataset order, ranks 1..3, best first, length = number of labels
    assert [r[0] for r in rows[::3]] == ds.seq_tags
    by_tag: dict[str, list] = {}
    for tag, rank, score, length, labels in rows:
        labs = [int(x) for x in labels.split()]
        assert int(length) == len(labs)
        assert 0 not in labs  # the EOS step is not part of a hypothesis (include_eos: false)
        by_tag.setdefault(tag, []).append((int(rank), float(score), labs))
    for hyps in by_tag.values():
        assert [h[0] for h in hyps] == [1, 2, 3]
        scores = [h[1] for h in hyps]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    # independent error rates: best hypothesis vs the target without its final EOS
    seq_err = lab_err = n_lab = 0
    for i, tag in enumerate(ds.seq_tags):
        target = ds.get_seq(i)["classes"]
        assert target[-1] == 0 and 0 not in target[:-1]
        ref = [int(x) for x in target[:-1]]
        hyp = by_tag[tag][0][2]
        seq_err += hyp != ref
        lab_err += levenshtein(hyp, ref)
        n_lab += len(ref)
    assert 0 < lab_err  # two epochs of a tiny model: not perfect yet
    assert f"sequence error {seq_err / ds.num_seqs:.2%} ({seq_err}/{ds.num_seqs})" in stdout
    assert f"label error {lab_err / n_lab:.2%} ({lab_err}/{n_lab})" in stdout
    assert str(out) in stdout
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    # the TSV holds what net.search gives for the same checkpoint
    net = compile_network(str(cfg))
    ckpt = sorted(model.glob("ckpt-*"))[-1]
    checkpoint(net).read(str(ckpt / "ckpt")).expect_partial()
    seq = ds.get_seq(0)
    hyps = net.search(
        {"data": seq["data"][None]}, {"data": [len(seq["data"])]}, beam_size=3, n_best=3
    )[0]
    for h, (_, score, labs) in zip(hyps, by_tag[ds.seq_tags[0]]):
        assert list(h["labels"]) == labs
        assert math.isclose(h["score"], score, abs_tol=2e-6)


def test_checkpoint_dir_stdout_and_default_beam(trained, capsys):
    cfg, model = trained
    ckpt = sorted(model.glob("ckpt-*"))[0]  # an older checkpoint given explicitly
    code, stdout, err = run(capsys, cfg, "--checkpoint", ckpt, "--data", SPEC)
    assert code == 0, err
    header, rows = parse_tsv(stdout)
    assert header[0] == "seq_tag" and len(rows) == 25 and {r[1] for r in rows} == {"1"}
    # the summary goes to stderr when the TSV goes to stdout; beam size from the choice layer
    assert "search: 25 sequences, beam size 3, n-best 1; sequence error" in err
    # `dev`: the config's dev_data with the trainer's seed
    code, stdout, err = run(capsys, cfg, "--checkpoint", model, "--data", "dev", "--beam-size", 1)
    assert code == 0, err
    assert "search: 40 sequences, beam size 1" in err
    assert parse_tsv(stdout)[1][0][0] == "reverse-dev-0"


def test_hand_weighted_markov_beam_and_npz(tmp_path, capsys):
    """Exact scores on a hand-weighted model, data from an .npz file without targets."""
    net = markov_net()
    ckpt = tmp_path / "ckpt-001"
    checkpoint(net).write(str(ckpt / "ckpt"))
    cfg = tmp_path / "markov.yaml"
    cfg.write_text(json.dumps(MARKOV))
    data = tmp_path / "in.npz"
    write_npz(
        data,
        [{"data": np.zeros((3, 2), np.float32)}, {"data": np.ones((1, 2), np.float32)}],
        seq_tags=["a", "b"],
    )
    out = tmp_path / "o.tsv"
    code, stdout, err = run(
        capsys, cfg, "--checkpoint", ckpt, "--data", data, "--n-best", 2, "-o", out
    )
    assert code == 0, err
    _, rows = parse_tsv(out.read_text())
    assert [r[0] for r in rows] == ["a", "a", "b", "b"]
    for r in rows:
        assert r[1:] in (
            ["1", f"{math.log(0.4 * 0.9) / 2:.6f}", "1", "2"],
            ["2", f"{math.log(0.6 * 0.34) / 2:.6f}", "1", "1"],
        )  # length-normalised
    assert [r[1] for r in rows] == ["1", "2", "1", "2"]
    assert "error" not in stdout  # no targets: no error rates
    # greedy (beam 1) finds the worse sequence
    code, stdout, _ = run(capsys, cfg, "--checkpoint", ckpt, "--data", data, "--beam-size", 1)
    assert code == 0 and [r[4] for r in parse_tsv(stdout)[1]] == ["1", "1"]


def test_user_mistakes(trained, tmp_path, capsys):
    cfg, model = trained
    code, _, err = run(capsys, cfg, "--checkpoint", tmp_path / "nope", "--data", SPEC)
    assert code == 1 and "no such checkpoint" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, cfg, "--checkpoint", empty, "--data", SPEC)
    assert code == 1 and "no checkpoint in this directory" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", "{class: reverse, bogus: 1}")
    assert code == 1 and "bad dataset" in err and "bogus" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", "nosuchtask")
    assert code == 1 and "unknown dataset 'nosuchtask'" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", "{class: reverse")
    assert code == 1 and "--data" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", tmp_path / "missing.hdf")
    assert code == 1 and "no such file" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", SPEC, "--n-best", 4)
    assert code == 2 and "larger than the beam size 3" in err
    code, _, err = run(capsys, cfg, "--checkpoint", model, "--data", SPEC, "--beam-size", 0)
    assert code == 2
    code, _, err = run(
        capsys, cfg, "--checkpoint", model, "--data", SPEC, "-o", tmp_path / "no" / "dir" / "x.tsv"
    )
    assert code == 1 and "cannot write" in err
    # a checkpoint of another network
    code, _, err = run(
        capsys, cfg, "--checkpoint", model, "--data", SPEC, "--set", "network.src_embed.n_out=4"
    )
    assert code == 1 and "does not fit this network" in err
    # no decoder: a frame-wise network has no choice layer to search
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        "extern_data:\n  data: {dim: 6, sparse: true}\n  classes: {dim: 6, sparse: "
        "true, same_time_as: data}\nnetwork:\n  output: {class: softmax, from: "
        "data, loss: ce, target: classes}\n"
    )
    code, _, err = run(capsys, plain, "--checkpoint", model, "--data", SPEC)
    assert code == 1 and "no `rec` layer" in err and "choice" in err
    # an invalid config: its diagnostics, exit 1
    code, _, err = run(
        capsys, cfg, "--checkpoint", model, "--data", SPEC, "--set", "network.output.unit.s.n_ouf=3"
    )
    assert code == 1 and "n_ouf" in err


def test_resume_decoder_training(trained, tmp_path):
    """A trainer checkpoint of a decoder fits the network (the unit variables are stored under
    the optimizer's path; `check_checkpoint_fits` follows the object graph)."""
    cfg, model = trained
    result = validate(str(cfg), ["train.num_epochs=3"])
    trainer = Trainer(result, model_dir=model, out=open(os.devnull, "w"))
    assert trainer.restore() == 2


def test_out_of_memory_in_search_is_one_line(trained, tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    from netcompiler.backend.build import CompiledNetwork

    def search(self, *args, **kw):  # the device runs out of memory
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(CompiledNetwork, "search", search)
    cfg, model = trained
    out = tmp_path / "hyps.tsv"
    code, stdout, err = run(capsys, cfg, "--checkpoint", model, "--data", SPEC, "-o", out)
    lines = [x for x in err.strip().splitlines() if "warning:" not in x]  # config warnings
    assert code == 1 and len(lines) == 1, err
    assert "out of memory in beam search (beam 3) on a batch of" in lines[0]
    assert "batch_size" in lines[0]
    assert not out.exists()
