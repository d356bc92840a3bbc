"""benchmarks/vs_returnn.py without RETURNN: its configs are valid netcompiler configs (and the
RETURNN config carries the very same network dict), its HDF files read back through
netcompiler's HDF reader and dataset, and its log parsers read the lines both tools print."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import netcompiler

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "vs_returnn", ROOT / "benchmarks" / "vs_returnn.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vs_returnn"] = mod  # dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("vs_returnn", None)


def _assigned(source: str) -> dict:
    """The literal values of the top-level `name = literal` assignments of a Python config
    (parsed, never executed); non-literal values (Dim(...) calls) are left out."""
    out = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


@pytest.mark.parametrize("quick", [True, False])
def test_train_configs_agree_and_validate(bench, tmp_path, quick):
    s = bench.TrainSizes(**vars(bench.QUICK_TRAIN)) if quick else bench.TrainSizes()
    nc = bench.netcompiler_train_config(s, tmp_path / "train.hdf", tmp_path / "model")
    result = netcompiler.validate(nc)
    assert not result.errors, [d.message for d in result.errors]
    # the yaml file as written is what `netcompiler train` reads
    path = bench.write_yaml(tmp_path / "nc.yaml", nc)
    assert not netcompiler.validate(str(path)).errors
    rt = _assigned(bench.returnn_train_config(s, tmp_path / "train.hdf", tmp_path / "m" / "model"))
    assert rt["network"] == nc["network"]
    assert rt["task"] == "train"
    assert (rt["batch_size"], rt["max_seqs"]) == (
        nc["train"]["batch_size"],
        nc["train"]["max_seqs"],
    )
    assert rt["batch_size"] == s.batch_seqs * s.frames
    assert (rt["learning_rate"], rt["num_epochs"]) == (s.learning_rate, s.epochs)
    # the network: blocks x 8 layers + input, final_ln, output
    assert len(nc["network"]) == 8 * s.blocks + 3
    att = nc["network"]["b0_att"]
    assert (att["n_out"], att["num_heads"]) == (s.dim, s.heads)


def test_search_configs_agree_and_validate(bench, tmp_path):
    s = bench.SearchSizes()
    nc = bench.netcompiler_search_config(s, tmp_path / "t.hdf", tmp_path / "model")
    result = netcompiler.validate(nc)
    assert not result.errors, [d.message for d in result.errors]
    vocab = bench.write_returnn_vocab(tmp_path / "vocab.txt", s.vocab)
    labels = ast.literal_eval(vocab.read_text())
    assert labels == {str(i): i for i in range(s.vocab)}
    for task in ("train", "search"):
        rt = _assigned(
            bench.returnn_search_config(
                s, task, tmp_path / "d.hdf", tmp_path / "m", vocab, tmp_path / "out.txt"
            )
        )
        assert rt["network"] == nc["network"]
        assert rt["task"] == task
        assert rt["extern_data"]["classes"]["vocab"]["vocab_file"] == str(vocab)
    assert nc["network"]["output"]["unit"]["output"]["beam_size"] == 12
    assert rt["search_output_file"] == str(tmp_path / "out.txt")


def test_dense_hdf_round_trip(bench, tmp_path):
    from netcompiler.training.datasets import make_dataset, read_hdf

    s = bench.TrainSizes(**vars(bench.QUICK_TRAIN))
    feats, labels = bench.train_data(s)
    feats[3] = feats[3][:17]  # a ragged sequence (data and classes keep equal lengths)
    labels[3] = labels[3][:17]
    path = bench.write_returnn_hdf(
        tmp_path / "train.hdf", feats, s.features, {"classes": (labels, s.classes)}
    )
    info, flat, lengths, tags = read_hdf(path)
    assert info["data"].dim == s.features and not info["data"].sparse
    assert info["classes"].dim == s.classes and info["classes"].sparse
    np.testing.assert_array_equal(flat["data"], np.concatenate(feats))
    np.testing.assert_array_equal(flat["classes"], np.concatenate(labels))
    expected_lens = [s.frames] * s.num_seqs
    expected_lens[3] = 17
    assert lengths["data"].tolist() == expected_lens == lengths["classes"].tolist()
    assert tags == [f"seq-{i}" for i in range(s.num_seqs)]
    # through the dataset `netcompiler train` builds from the generated config
    nc = bench.netcompiler_train_config(s, path, tmp_path / "model")
    ds = make_dataset(nc["train"]["train_data"], nc["extern_data"], name="train")
    assert ds.num_seqs == s.num_seqs
    seq = ds.get_seq(3)
    np.testing.assert_array_equal(seq["data"], feats[3])
    np.testing.assert_array_equal(seq["classes"], labels[3])


def test_sparse_hdf_round_trip(bench, tmp_path):
    from netcompiler.training.datasets import read_hdf

    s = bench.SearchSizes(vocab=30, min_len=2, max_len=9)
    src, tgt = bench.search_data(s, 12)
    assert [len(x) for x in src] == sorted(len(x) for x in src)
    assert all(t[-1] == 0 and (t[:-1] > 0).all() for t in tgt)  # EOS only at the end
    path = bench.write_returnn_hdf(
        tmp_path / "s.hdf",
        src,
        s.vocab,
        {"classes": (tgt, s.vocab)},
        tags=[f"x{i}" for i in range(12)],
    )
    info, flat, lengths, tags = read_hdf(path)
    assert (info["data"].dim, info["data"].sparse) == (30, True)
    np.testing.assert_array_equal(flat["data"], np.concatenate(src))
    np.testing.assert_array_equal(flat["classes"], np.concatenate(tgt))
    assert lengths["classes"].tolist() == [len(x) + 1 for x in src]
    assert tags == [f"x{i}" for i in range(12)]
    # inputs only (the search data): RETURNN's layout still has two seqLengths columns
    path = bench.write_returnn_hdf(tmp_path / "only.hdf", src, s.vocab)
    info, flat, lengths, _ = read_hdf(path)
    assert list(info) == ["data"] and lengths["data"].tolist() == [len(x) for x in src]


def test_log_parsers(bench, tmp_path):
    lines = [
        (1.0, "RETURNN starting up"),
        (9.5, "start epoch 1 global train step 0 with effective learning rate 0.0001 ..."),
        (10.0, "train epoch 1, step 0, cost:output 4.6, 0.5 sec/step"),
        (17.25, "train epoch 1, finished after 20 steps, 0:00:07 elapsed (99.0% computing time)"),
        (17.5, "epoch 1 score: 4.6 error: 0.99 elapsed: 0:00:07"),
        (18.0, "start epoch 2 global train step 20 with effective learning rate 0.0001 ..."),
        (24.5, "train epoch 2, finished after 20 steps, 0:00:06 elapsed (99.5% computing time)"),
    ]
    run = bench.Run(["x"], 0, 25.0, lines, tmp_path / "log")
    eps = bench.returnn_epochs(run)
    assert [e["epoch"] for e in eps] == [1, 2]
    assert [e["time"] for e in eps] == pytest.approx([7.75, 6.5])
    assert [e["reported"] for e in eps] == [7.0, 6.0]
    assert [e["end"] for e in eps] == [17.25, 24.5]

    model = tmp_path / "model"
    model.mkdir()
    (model / "scores.tsv").write_text(
        "epoch\tlearning_rate\ttrain_loss\ttrain_error\tdev_loss\tdev_error\tdev_seq_error\twall_time\n"
        "1\t0.0001\t4.700000\t0.99\tnan\tnan\tnan\t20.61\n"
        "2\t0.0001\t4.600000\t0.98\tnan\tnan\tnan\t8.90\n"
        "3\t0.0001\t4.500000\t0.97\tnan\tnan\tnan\t9.30\n"
    )
    lines = [
        (3.0, "train: hdf ..."),
        (24.0, "epoch 1/3: lr 0.0001, train loss 4.7000 error 99.00% (20.6s)"),
        (33.2, "epoch 2/3: lr 0.0001, train loss 4.6000 error 98.00% (8.9s)"),
        (42.6, "epoch 3/3: lr 0.0001, train loss 4.5000 error 97.00% (9.3s)"),
    ]
    eps = bench.netcompiler_epochs(bench.Run(["y"], 0, 44.0, lines, tmp_path / "log2"), model)
    assert [e["time"] for e in eps] == [20.61, 8.90, 9.30]
    assert [e["end"] for e in eps] == [24.0, 33.2, 42.6]
    summary = bench.summarize(eps)
    assert summary["steady"] == pytest.approx(9.1)  # median of 8.90, 9.30
    assert summary["overhead"] == pytest.approx(20.61 - 9.1)
    assert summary["to_end_of_1"] == 24.0

    out = tmp_path / "search.txt"
    out.write_text(
        "[(np.float32(-3.5), '4 4 7'), (np.float32(-3.6), '4 4')]\n"
        "[(np.float32(-1.0), ''), (np.float32(-2.0), '1')]\n"
    )
    assert bench.search_lengths_returnn(out) == [3, 0]
    tsv = tmp_path / "search.tsv"
    tsv.write_text(
        "seq_tag\trank\tscore\tlength\tlabels\n"
        "a\t1\t-1.0\t3\t4 4 7\na\t2\t-2.0\t2\t4 4\nb\t1\t-0.5\t1\t9\n"
    )
    assert bench.search_lengths_netcompiler(tsv) == [3, 1]
