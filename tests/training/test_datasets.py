"""netcompiler.training.datasets: generated tasks, RETURNN HDF / npz files, batching, tf.data pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcompiler.training.datasets import (
    ArrayDataset,
    DatasetError,
    KeyInfo,
    batches,
    make_dataset,
    padded_batch,
    tf_dataset,
    write_hdf,
    write_npz,
)

# a copy of the project fixtures written by RETURNN (see its README.md)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "returnn-hdf"
FIXTURE_FILES = ["dense_features_sparse_classes", "sparse_inputs"]

EXTERN = {
    "copy": {"data": {"dim": 10, "sparse": True}, "classes": {"dim": 10, "sparse": True}},
    "reverse": {"data": {"dim": 10, "sparse": True}, "classes": {"dim": 10, "sparse": True}},
    "12ax": {
        "data": {"dim": 9, "sparse": True},
        "classes": {"dim": 2, "sparse": True, "same_time_as": "data"},
    },
    "number_base_convert": {
        "data": {"dim": 10, "sparse": True},
        "classes": {"dim": 3, "sparse": True},
    },
}


def all_seqs(ds):
    return [ds.get_seq(i) for i in range(ds.num_seqs)]


def seqs_equal(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


# ---------------------------------------------------------------- import / config consistency


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, netcompiler.training.datasets as d; d.make_dataset('copy', None); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_example_configs_match_their_datasets():
    import yaml

    root = Path(__file__).resolve().parents[2]
    checked = 0
    for path in sorted((root / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        train = cfg.get("train") or {}
        for name in ("train", "dev"):
            spec = train.get(f"{name}_data")
            if spec is None or (isinstance(spec, dict) and spec.get("class") in ("hdf", "npz")):
                continue
            if isinstance(spec, dict):
                spec = {**spec, "num_seqs": 5}
            from netcompiler.frontend.conventions import extern_from_num_io

            extern = cfg.get("extern_data") or extern_from_num_io(cfg)  # or num_inputs/outputs
            ds = make_dataset(spec, extern, name=name)
            assert set(ds.keys) == set(extern), path.name
            checked += 1
    assert checked >= 4


# ---------------------------------------------------------------- generated tasks


@pytest.mark.parametrize("task", list(EXTERN))
def test_generated_deterministic_per_seed(task):
    a = make_dataset({"class": task, "seed": 7, "num_seqs": 50}, EXTERN[task])
    b = make_dataset({"class": task, "seed": 7, "num_seqs": 50}, EXTERN[task])
    c = make_dataset({"class": task, "seed": 8, "num_seqs": 50}, EXTERN[task])
    assert seqs_equal(all_seqs(a), all_seqs(b)) and a.seq_tags == b.seq_tags
    assert not seqs_equal(all_seqs(a), all_seqs(c))
    # default seeds: train from default_seed, dev offset from it; defaults num_seqs 1000 / 100
    train = make_dataset(task, EXTERN[task], default_seed=3, name="train")
    train2 = make_dataset(task, EXTERN[task], default_seed=3, name="train")
    dev = make_dataset(task, EXTERN[task], default_seed=3, name="dev")
    assert (train.num_seqs, dev.num_seqs) == (1000, 100)
    assert seqs_equal(all_seqs(train), all_seqs(train2))
    assert not seqs_equal(all_seqs(train)[:100], all_seqs(dev))
    assert len(set(train.seq_tags)) == train.num_seqs
    for s in all_seqs(train)[:20]:
        assert all(v.dtype == np.int32 and v.ndim == 1 for v in s.values())
    assert task in train.describe() and "1000 seqs" in train.describe()


@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_copy_reverse_definition(task):
    ds = make_dataset(task, EXTERN[task])
    lens = set()
    for s in all_seqs(ds):
        x, y = s["data"].tolist(), s["classes"].tolist()
        assert 3 <= len(x) <= 10 and all(1 <= v <= 9 for v in x)
        assert y == (x if task == "copy" else x[::-1]) + [0]
        lens.add(len(x))
    assert lens == set(range(3, 11))
    ds = make_dataset(
        {"class": task, "num_symbols": 4, "min_len": 2, "max_len": 3, "num_seqs": 30}, None
    )
    assert ds.key_info["data"] == KeyInfo(4, True)
    for s in all_seqs(ds):
        assert 2 <= len(s["data"]) <= 3 and set(s["data"].tolist()) <= {1, 2, 3}
        assert len(s["classes"]) == len(s["data"]) + 1 and s["classes"][-1] == 0


SYM = ["1", "2", "A", "B", "C", "X", "Y", "Z", "3"]  # the documented id -> symbol table


def reference_12ax(symbols):
    """Straightforward 12-AX state machine: remember the last digit 1/2 and the last symbol."""
    out, digit, last = [], None, None
    for s in symbols:
        if s == "1" or s == "2":
            digit = s
        hit = (digit == "1" and last == "A" and s == "X") or (
            digit == "2" and last == "B" and s == "Y"
        )
        out.append(1 if hit else 0)
        last = s
    return out


def test_12ax_definition():
    ds = make_dataset("12ax", EXTERN["12ax"])
    total = hits = 0
    seqs_with_hit = 0
    for s in all_seqs(ds):
        symbols = [SYM[i] for i in s["data"].tolist()]
        assert 8 <= len(symbols) <= 20 and symbols[0] in ("1", "2")
        assert len(s["classes"]) == len(symbols)
        assert s["classes"].tolist() == reference_12ax(symbols)
        # the distractor never sits inside a pair: letters alternate A/B/C then X/Y/Z
        for prev, cur in zip(symbols, symbols[1:]):
            if cur in "XYZ":
                assert prev in "ABC"
        total += len(symbols)
        hits += int(s["classes"].sum())
        seqs_with_hit += bool(s["classes"].any())
    # targets occur regularly (bias towards the context's target pair)
    assert 0.12 < hits / total < 0.35, hits / total
    assert seqs_with_hit > 0.9 * ds.num_seqs
    assert set(np.concatenate([s["data"] for s in all_seqs(ds)]).tolist()) == set(range(9))


def test_number_base_convert_definition():
    ds = make_dataset("number_base_convert", EXTERN["number_base_convert"])
    for s in all_seqs(ds):
        digits = s["data"].tolist()
        assert 1 <= len(digits) <= 6 and digits[0] != 0
        n = int("".join(str(d) for d in digits), 10)
        expected = [int(b) + 1 for b in bin(n)[2:]] + [0]
        assert s["classes"].tolist() == expected
    ds = make_dataset(
        {
            "class": "number_base_convert",
            "base_in": 16,
            "base_out": 3,
            "min_len": 2,
            "max_len": 4,
            "num_seqs": 200,
        },
        None,
    )
    assert ds.key_info == {"data": KeyInfo(16, True), "classes": KeyInfo(4, True)}
    for s in all_seqs(ds):
        digits = s["data"].tolist()
        assert 2 <= len(digits) <= 4 and digits[0] != 0
        n = int("".join("0123456789abcdef"[d] for d in digits), 16)
        assert s["classes"].tolist() == [int(c) + 1 for c in np.base_repr(n, 3)] + [0]


# ---------------------------------------------------------------- batching


def lengths_dataset(lengths, target_extra=0):
    lengths = np.asarray(lengths, dtype=np.int64)
    info = {"data": KeyInfo(5, True), "classes": KeyInfo(5, True)}
    tgt = lengths + target_extra
    return ArrayDataset(
        "t",
        info,
        {
            "data": np.zeros(int(lengths.sum()), np.int32),
            "classes": np.zeros(int(tgt.sum()), np.int32),
        },
        {"data": lengths, "classes": tgt},
    )


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 60), min_size=0, max_size=80),
    batch_size=st.integers(1, 200),
    max_seqs=st.one_of(st.none(), st.integers(1, 10)),
    batching=st.sampled_from(["random", "sorted", "laplace", "laplace:3"]),
    seed=st.integers(-5, 2**40),
    epoch=st.integers(0, 5),
    extra=st.integers(0, 2),
)
def test_batches_budget_and_coverage(lengths, batch_size, max_seqs, batching, seed, epoch, extra):
    ds = lengths_dataset(lengths, extra)
    groups = batches(ds, batch_size, max_seqs, batching, seed, epoch)
    assert groups == batches(ds, batch_size, max_seqs, batching, seed, epoch)  # deterministic
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))  # every seq exactly once
    for g in groups:
        assert g
        longest = max(max(ds.seq_length(i, "data"), ds.seq_length(i, "classes")) for i in g)
        assert longest * len(g) <= batch_size or len(g) == 1
        if max_seqs is not None:
            assert len(g) <= max_seqs


def test_batches_orderings():
    ds = make_dataset({"class": "copy", "min_len": 3, "max_len": 40}, None)
    lens = ds.seq_lengths()
    a = batches(ds, 200, None, "random", 1, 1)
    assert a != batches(ds, 200, None, "random", 1, 2) != batches(ds, 200, None, "random", 2, 1)
    s = batches(ds, 200, None, "sorted", 1, 1)
    order = [i for g in s for i in g]
    assert np.all(np.diff(lens[order]) >= 0)
    assert s == batches(ds, 200, None, "sorted", 5, 3)

    def padded(groups):
        return sum(int(lens[g].max()) * len(g) for g in groups)

    lap = batches(ds, 200, None, "laplace", 1, 1)
    assert lap != batches(ds, 200, None, "laplace", 1, 2)
    assert padded(lap) < 0.85 * padded(a), (padded(lap), padded(a))
    assert padded(s) <= padded(lap)
    # laplace shuffles the batch order: not simply ascending/descending
    maxes = [int(lens[g].max()) for g in lap]
    assert maxes != sorted(maxes) and maxes != sorted(maxes, reverse=True)


def test_single_long_sequence_own_batch_and_max_seqs():
    ds = lengths_dataset([5, 50, 5, 5, 5])
    for b in ("random", "sorted", "laplace"):
        groups = batches(ds, 20, 2, b, 0, 1)
        assert [1] in groups and all(len(g) <= 2 for g in groups)


def test_partition_epochs():
    ds = make_dataset({"class": "copy", "num_seqs": 10, "partition": 3}, None)
    seen = []
    for epoch in (1, 2, 3):
        seen += [i for g in batches(ds, 100, None, "random", 0, epoch) for i in g]
    assert sorted(seen) == list(range(10))
    assert batches(ds, 100, None, "sorted", 0, 1) == batches(ds, 100, None, "sorted", 0, 4)


# ---------------------------------------------------------------- HDF


def fixture_extern(meta):
    return {
        k: {"dim": meta[k]["dim"], "sparse": meta[k]["sparse"]}
        for k in ("data", "classes")
        if k in meta
    }


def check_against_json(ds, meta):
    assert ds.num_seqs == len(meta["seqs"])
    assert ds.seq_tags == [s["tag"] for s in meta["seqs"]]
    keys = [k for k in ("data", "classes") if k in meta]
    assert set(ds.keys) == set(keys)
    for k in keys:
        assert ds.key_info[k] == KeyInfo(meta[k]["dim"], meta[k]["sparse"])
    for i, s in enumerate(meta["seqs"]):
        got = ds.get_seq(i)
        for k in keys:
            want = np.array(s[k], dtype=np.int32 if meta[k]["sparse"] else np.float32)
            assert got[k].dtype == want.dtype and got[k].shape == want.shape, (k, i)
            np.testing.assert_array_equal(got[k], want)
            assert ds.seq_length(i, k) == len(want)


@pytest.mark.parametrize("stem", FIXTURE_FILES)
def test_hdf_fixture_files(stem, tmp_path):
    meta = json.loads((FIXTURES / f"{stem}.json").read_text())
    hdf = FIXTURES / meta["file"]
    ds = make_dataset({"class": "hdf", "files": str(hdf)}, fixture_extern(meta))
    check_against_json(ds, meta)
    ds_any = make_dataset({"class": "hdf", "files": str(hdf)}, None)  # no extern_data: all keys
    check_against_json(ds_any, meta)
    # written back by our writer, read identically
    out = tmp_path / "copy.hdf"
    write_hdf(
        out,
        [{**ds.get_seq(i), "seq_tag": ds.seq_tags[i]} for i in range(ds.num_seqs)],
        fixture_extern(meta),
    )
    check_against_json(
        make_dataset({"class": "hdf", "files": str(out)}, fixture_extern(meta)), meta
    )
    # and in the same layout as RETURNN's writer
    import h5py

    with h5py.File(hdf, "r") as a, h5py.File(out, "r") as b:
        for attr in ("inputPattSize", "numSeqs", "numTimesteps", "numLabels"):
            assert int(a.attrs[attr]) == int(b.attrs[attr]), attr
        for name in ("inputs", "seqLengths", "seqTags"):
            assert a[name].shape == b[name].shape and a[name].dtype.kind == b[name].dtype.kind
        np.testing.assert_array_equal(a["seqLengths"][...], b["seqLengths"][...])
        assert ("targets" in a) == ("targets" in b)
        if "targets" in a:
            assert set(a["targets/data"]) == set(b["targets/data"])
            for k in a["targets/size"].attrs:
                np.testing.assert_array_equal(
                    a["targets/size"].attrs[k], b["targets/size"].attrs[k]
                )


def test_hdf_fixture_mismatch_and_multiple_files():
    meta = json.loads((FIXTURES / "sparse_inputs.json").read_text())
    f = str(FIXTURES / "sparse_inputs.hdf")
    with pytest.raises(DatasetError, match=r"dim 10.*dim 12|dim 12.*dim 10"):
        make_dataset({"class": "hdf", "files": f}, {"data": {"dim": 12, "sparse": True}})
    with pytest.raises(DatasetError, match="dense"):
        make_dataset({"class": "hdf", "files": f}, {"data": {"dim": 10}})
    with pytest.raises(DatasetError, match="classes"):  # an input key the file lacks
        make_dataset(
            {"class": "hdf", "files": f},
            {"data": {"dim": 10, "sparse": True}, "classes": {"dim": 3, "sparse": True}},
        )
    # a target the file lacks is fine (forwarding)
    ds = make_dataset(
        {"class": "hdf", "files": f},
        {
            "data": {"dim": 10, "sparse": True},
            "classes": {"dim": 3, "sparse": True, "available_for_inference": False},
        },
    )
    assert ds.keys == ("data",)
    ds = make_dataset({"class": "hdf", "files": [f, f], "num_seqs": 4}, fixture_extern(meta))
    assert ds.num_seqs == 4 and ds.seq_tags == ["s0", "s1", "s2", "s0"]
    with pytest.raises(DatasetError, match="different|has keys"):
        make_dataset(
            {"class": "hdf", "files": [f, str(FIXTURES / "dense_features_sparse_classes.hdf")]},
            None,
        )


def random_seqs(rng, n, dense_dim=4, classes=7, extra_len=0):
    seqs = []
    for i in range(n):
        T = 0 if i == 1 else int(rng.integers(1, 9))
        seqs.append(
            {
                "data": rng.standard_normal((T, dense_dim)).astype(np.float32),
                "classes": rng.integers(0, classes, T + extra_len).astype(np.int32),
                "align": rng.integers(0, 3, T).astype(np.int32),
                "seq_tag": f"utt/{i}",
            }
        )
    return seqs


EXTERN_RT = {
    "data": {"dim": 4},
    "classes": {"dim": 7, "sparse": True},
    "align": {"dim": 3, "sparse": True},
}


@pytest.mark.parametrize("fmt", ["hdf", "npz"])
def test_writer_reader_round_trip(fmt, tmp_path):
    rng = np.random.default_rng(0)
    seqs = random_seqs(rng, 12, extra_len=2)
    path = tmp_path / f"sub/out.{fmt}"
    (write_hdf if fmt == "hdf" else write_npz)(path, seqs, EXTERN_RT)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    ds = make_dataset({"class": fmt, "files": f"out.{fmt}"}, EXTERN_RT, base_dir=tmp_path / "sub")
    assert ds.seq_tags == [s["seq_tag"] for s in seqs]
    assert ds.keys == ("data", "classes", "align")
    for i, s in enumerate(seqs):
        got = ds.get_seq(i)
        for k in ds.keys:
            np.testing.assert_array_equal(got[k], s[k])
            assert got[k].dtype == s[k].dtype
    assert ds.seq_length(1, "data") == 0 and ds.seq_length(1, "classes") == 2
    # sparse data in the HDF `inputs`, no other keys
    sparse = [{"data": np.array(x, np.int32)} for x in ([1, 2, 3], [4], [0, 0])]
    p2 = tmp_path / f"sparse.{fmt}"
    (write_hdf if fmt == "hdf" else write_npz)(p2, sparse, {"data": {"dim": 5, "sparse": True}})
    ds2 = make_dataset({"class": fmt, "files": str(p2)}, {"data": {"dim": 5, "sparse": True}})
    assert [ds2.get_seq(i)["data"].tolist() for i in range(3)] == [[1, 2, 3], [4], [0, 0]]
    assert ds2.seq_tags == ["seq-0", "seq-1", "seq-2"]
    # overwriting is atomic and leaves the new content
    (write_hdf if fmt == "hdf" else write_npz)(p2, sparse[:1], {"data": {"dim": 5, "sparse": True}})
    assert make_dataset({"class": fmt, "files": str(p2)}, None).num_seqs == 1


def test_writer_errors(tmp_path):
    with pytest.raises(DatasetError, match="shape"):
        write_hdf(
            tmp_path / "x.hdf", [{"data": np.zeros((3, 2), np.float32)}], {"data": {"dim": 4}}
        )
    with pytest.raises(DatasetError, match="outside"):
        write_hdf(
            tmp_path / "x.hdf", [{"data": np.array([1, 9])}], {"data": {"dim": 4, "sparse": True}}
        )
    with pytest.raises(DatasetError, match="'data'"):
        write_hdf(tmp_path / "x.hdf", [{"classes": np.array([1])}], None)
    assert list(tmp_path.iterdir()) == []


def test_npz_mismatch(tmp_path):
    p = tmp_path / "d.npz"
    write_npz(p, [{"data": np.array([1, 2, 7], np.int32)}], {"data": {"dim": 8, "sparse": True}})
    with pytest.raises(DatasetError, match=r"dim 8.*dim 5"):
        make_dataset({"class": "npz", "files": str(p)}, {"data": {"dim": 5, "sparse": True}})
    np.savez(tmp_path / "bad.npz", data=np.arange(4), data_lengths=np.array([2, 3]))
    with pytest.raises(DatasetError, match="sum to 5"):
        make_dataset({"class": "npz", "files": str(tmp_path / "bad.npz")}, None)


# ---------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    "spec, extern, match",
    [
        ("copyy", None, "unknown dataset 'copyy'"),
        ("hdf", None, "files"),
        (42, None, "built-in name"),
        ({"num_seqs": 3}, None, "missing 'class'"),
        ({"class": "lstm"}, None, "unknown dataset class 'lstm'"),
        ({"class": "copy", "num_seq": 3}, None, "unknown option.*num_seq"),
        ({"class": "copy", "min_len": 5, "max_len": 2}, None, "min_len 5 > max_len 2"),
        ({"class": "copy", "num_seqs": 0}, None, "num_seqs"),
        ({"class": "copy", "num_seqs": "10"}, None, "integer"),
        ({"class": "copy", "num_symbols": 1}, None, "num_symbols"),
        ({"class": "12ax", "num_symbols": 10}, None, "fixed to 9"),
        ({"class": "number_base_convert", "base_out": 1}, None, "base_out"),
        ({"class": "copy", "partition": 0}, None, "partition"),
        ("12ax", {"data": {"dim": 10, "sparse": True}}, r"sparse dim 9 .*sparse dim 10"),
        ("copy", {"data": {"dim": 10, "sparse": True}, "feat": {"dim": 3}}, "no key 'feat'"),
        ({"class": "hdf"}, None, "missing 'files'"),
        ({"class": "hdf", "files": []}, None, "non-empty"),
        ({"class": "hdf", "files": "/nonexistent/x.hdf"}, None, "does not exist"),
        ({"class": "npz", "files": "/nonexistent/*.npz"}, None, "no file matches"),
        ({"class": "hdf", "files": "x.hdf", "seed": 1}, None, "unknown option.*seed"),
    ],
)
def test_bad_specs(spec, extern, match):
    with pytest.raises(DatasetError, match=match):
        make_dataset(spec, extern)
    assert issubclass(DatasetError, ValueError)


def test_unreadable_files(tmp_path):
    for suffix in ("hdf", "npz"):
        p = tmp_path / f"junk.{suffix}"
        p.write_text("not a real file")
        with pytest.raises(DatasetError, match="cannot read"):
            make_dataset({"class": suffix, "files": str(p)}, None)
    with pytest.raises(DatasetError, match="num_seqs 5 but"):
        rng = np.random.default_rng(0)
        write_npz(tmp_path / "s.npz", random_seqs(rng, 3), EXTERN_RT)
        make_dataset({"class": "npz", "files": str(tmp_path / "s.npz"), "num_seqs": 5}, None)


def test_bad_batching_args():
    ds = lengths_dataset([3, 4])
    with pytest.raises(DatasetError, match="batching"):
        batches(ds, 10, None, "bucket", 0, 1)
    with pytest.raises(DatasetError, match="batch_size"):
        batches(ds, 0, None, "random", 0, 1)
    with pytest.raises(DatasetError, match="max_seqs"):
        batches(ds, 10, 0, "random", 0, 1)


# ---------------------------------------------------------------- tf.data


@pytest.mark.tf
def test_tf_dataset_padding_and_lengths(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    seqs = random_seqs(rng, 9, extra_len=1)
    write_hdf(tmp_path / "d.hdf", seqs, EXTERN_RT)
    ds = make_dataset({"class": "hdf", "files": str(tmp_path / "d.hdf")}, EXTERN_RT)
    groups = batches(ds, 24, None, "random", 0, 1)
    tfds = tf_dataset(ds, groups)
    inputs_spec, lengths_spec = tfds.element_spec
    assert inputs_spec["data"].shape.as_list() == [None, None, 4]
    assert inputs_spec["data"].dtype == tf.float32
    assert inputs_spec["classes"].shape.as_list() == [None, None]
    assert inputs_spec["classes"].dtype == tf.int32
    assert all(s.shape.as_list() == [None] and s.dtype == tf.int32 for s in lengths_spec.values())
    n = 0
    for (inputs, lengths), g in zip(tfds, groups):
        np_inputs, np_lengths = padded_batch(ds, g)
        for k in ds.keys:
            x, ln = inputs[k].numpy(), lengths[k].numpy()
            assert x.shape[0] == len(g) and x.shape[1] == max(ln)
            np.testing.assert_array_equal(x, np_inputs[k])
            np.testing.assert_array_equal(ln, np_lengths[k])
            for b, i in enumerate(g):
                want = seqs[i][k]
                assert ln[b] == len(want)
                np.testing.assert_array_equal(x[b, : len(want)], want)
                assert not x[b, len(want) :].any()  # padding is 0
        n += 1
    assert n == len(groups)


@pytest.mark.tf
def test_tf_dataset_no_retrace_and_generator_path(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    import netcompiler.training.datasets.pipeline as pipeline

    ds = make_dataset({"class": "reverse", "num_seqs": 60}, EXTERN["reverse"])
    groups = batches(ds, 40, None, "laplace", 0, 1)
    tfds = tf_dataset(ds, groups)

    @tf.function(input_signature=[tfds.element_spec])
    def step(batch):
        inputs, lengths = batch
        return tf.reduce_sum(inputs["classes"]) + tf.reduce_sum(lengths["data"])

    total = sum(int(step(b)) for b in tfds)
    assert step.experimental_get_tracing_count() == 1
    want = sum(int(s["classes"].sum()) + len(s["data"]) for s in all_seqs(ds))
    assert total == want
    # the streaming fallback (large datasets) yields the same elements
    monkeypatch.setattr(pipeline, "IN_GRAPH_MAX_BYTES", 0)
    gen = tf_dataset(ds, groups, prefetch=False)
    assert gen.element_spec == tfds.element_spec
    for (a, la), (b, lb) in zip(tfds, gen):
        for k in ds.keys:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
            np.testing.assert_array_equal(la[k].numpy(), lb[k].numpy())
    assert list(tf_dataset(ds, [])) == []
    # tf.data's autotuner off on both paths: with it, the end of an epoch's iterator waited for
    # the autotuner's next wake-up (up to 60 s; benchmarks/vs_returnn.py)
    assert tfds.options().autotune.enabled is False and gen.options().autotune.enabled is False
