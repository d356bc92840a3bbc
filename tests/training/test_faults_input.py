"""Hostile and broken input (issue 11, the input half): configs that try to exhaust memory, time
or the stack, files that are not files, and corrupt data files. Each must give one clear line
(file, option or sequence concerned) and exit 1 or 2: no traceback, no hang, no silent
truncation.

The config faults run without TensorFlow (in-process `cli.main`, or a subprocess with an
address-space limit and a timeout where the fault could exhaust the machine). The data faults
are checked on `make_dataset` (no TensorFlow) and once more through `netcompiler train` in
process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from netcompiler.cli import app as cli
from netcompiler.frontend import loader
from netcompiler.frontend.loader import parse_yaml
from netcompiler.frontend.validate import validate
from netcompiler.training.datasets import DatasetError, make_dataset, read_hdf

REPO = Path(__file__).resolve().parents[2]
ADDRESS_LIMIT = 2 * 1024**3  # 2 GiB of address space for the subprocess
TIME_LIMIT = 20  # seconds

NET = """\
extern_data:
  data: {dim: 3}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  output: {class: softmax, from: data, loss: ce, target: classes}
"""


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(out: str) -> str:
    """The single error line of `validate`'s output (plus its summary line)."""
    lines = [line for line in out.splitlines() if ": error: " in line]
    assert len(lines) == 1, out
    assert "Traceback" not in out and "internal" not in out, out
    return lines[0]


def run_limited(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m netcompiler ARGV` under an address-space limit and a time limit; a timeout
    fails the test (TimeoutExpired propagates)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_LIMIT}, {ADDRESS_LIMIT}))
        from netcompiler.cli.app import main
        sys.exit(main({argv!r}))
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(cli.DEBUG_ENV, None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        env=env,
    )


# -- 1. denial of service in the config loader ----------------------------------------------------
def laughs(depth: int, width: int = 9) -> str:
    """ "Billion laughs": each level is a list of `width` aliases of the level below; the last
    level expands to width**depth scalars (9 deep: 387 million)."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n" + NET


def merge_laughs(depth: int, width: int = 9) -> str:
    """The same with merge keys: every level merges the level below into `width` mappings."""
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: lol" for j in range(width)) + "}"]
    for i in range(1, depth):
        lines.append(
            f"m{i}: &m{i} {{" + ", ".join(f"c{j}: {{<<: *m{i - 1}}}" for j in range(width)) + "}"
        )
    return "\n".join(lines) + "\n" + NET


@pytest.mark.parametrize(
    "name, text, line",
    [
        ("laughs7.yaml", laughs(7), 6),  # the 7-deep file: 1.8 GB and 14 s before
        ("laughs9.yaml", laughs(9), 6),  # the 9-deep file: 24 GB, killed after 280 s before
        ("merge9.yaml", merge_laughs(9), 5),
    ],
)
def test_alias_bomb_is_refused_quickly_within_2gb(tmp_path, name, text, line):
    (tmp_path / name).write_text(text)
    assert len(text) < 1500  # a few hundred bytes
    proc = run_limited(["validate", name], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [error] = [line for line in proc.stdout.splitlines() if ": error: " in line]
    # located at the alias that crosses the limit
    assert error.startswith(f"{name}:{line}:"), error
    assert error.endswith("[load.alias-limit]")
    assert "aliases expand to more than 100000 nodes" in error
    assert "Traceback" not in proc.stderr


def test_alias_limit_counts_subtree_sizes(monkeypatch):
    """An alias costs the size of what it copies; the limit is inclusive."""
    monkeypatch.setattr(loader, "MAX_ALIAS_NODES", 1000)
    anchor = "a: &a [" + ", ".join(["1"] * 99) + "]\n"  # a list of 99 scalars: 100 nodes
    ok = parse_yaml(anchor + "b: [" + ", ".join(["*a"] * 10) + "]\n")  # 10 copies: 1000
    assert ok.data["b"] == [[1] * 99] * 10
    with pytest.raises(loader.ConfigError) as info:
        parse_yaml(anchor + "b: [" + ", ".join(["*a"] * 11) + "]\n", "x.yaml")
    [d] = info.value.diagnostics
    assert (d.rule, d.file, d.line) == ("load.alias-limit", "x.yaml", 2)
    assert d.col == 5 + 10 * 4  # the 11th alias
    # a merge key is an alias too: 100 merges of a 10-key mapping (21 nodes) is 2100 > 1000
    merged = "d: &d {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}\n"
    with pytest.raises(loader.ConfigError) as info:
        parse_yaml(merged + "".join(f"x{i}: {{<<: *d, own: {i}}}\n" for i in range(100)))
    assert info.value.diagnostics[0].rule == "load.alias-limit"


def test_normal_anchor_reuse_still_loads_with_positions(tmp_path, capsys):
    text = (
        "extern_data:\n"
        "  data: {dim: 3}\n"
        "  classes: {dim: 2, sparse: true, same_time_as: data}\n"
        "network:\n"
        "  a: &lin {class: linear, activation: tanh, n_out: 8, from: data}\n"
        "  b: {<<: *lin, from: a}\n"
        "  c: {<<: *lin, from: b}\n"
        "  d: {<<: *lin, from: c, n_out: 4}\n"
        "  output: {class: softmax, from: d, loss: ce, target: classes}\n"
        "train: {learning_rate: 1e-3}\n"
    )
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    result = validate(str(path))
    assert result.ok, result.diagnostics
    assert result.config.data["network"]["d"] == {
        "class": "linear",
        "activation": "tanh",
        "n_out": 4,
        "from": "c",
    }
    assert result.config.source.values[("network", "d", "n_out")] == loader.Mark(8, 33)
    # positions still reach diagnostics: a misspelt option inside an aliased layer
    path.write_text(text.replace("  c: {<<: *lin, from: b}", "  c: {<<: *lin, frm: b}"))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1 and one_error(out).startswith(f"{path}:7:17: error: network.c.frm")


@pytest.mark.parametrize("suffix, prefix, col", [(".yaml", "x: ", 203), (".json", '{"x": ', 206)])
def test_deep_nesting_is_a_located_error(tmp_path, capsys, suffix, prefix, col):
    path = tmp_path / f"deep{suffix}"
    path.write_text(prefix + "[" * 5000 + "]" * 5000 + ("}" if suffix == ".json" else "") + "\n")
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    # the root mapping is level 1: the 200th `[` would be level 201
    assert one_error(out) == (
        f"{path}:1:{col}: error: the config is nested deeper than 200 levels [load.too-deep]"
    )
    # 199 levels of lists under the root load
    ok = parse_yaml(prefix + "[" * 199 + "]" * 199 + ("}" if suffix == ".json" else ""))
    depth, node = 0, ok.data["x"]
    while isinstance(node, list) and node:
        depth, node = depth + 1, node[0]
    assert depth == 198 and node == []


def test_nesting_is_counted_after_alias_expansion():
    text = "a: &a " + "[" * 150 + "]" * 150 + "\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n"
    with pytest.raises(loader.ConfigError) as info:
        parse_yaml(text, "x.yaml")
    [d] = info.value.diagnostics
    assert (d.rule, d.line, d.col) == ("load.too-deep", 2, 64)
    assert "alias `*a`" in d.message


def test_deep_set_override_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(NET)
    code, _, err = run(capsys, "validate", path, "--set", "x=" + "[" * 3000 + "]" * 3000)
    assert code == 2 and "nested deeper than 200 levels" in err and "Traceback" not in err


def test_fifo_config_fails_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")  # no writer: a plain open() would block for ever
    proc = run_limited(["validate", "pipe.yaml"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        "pipe.yaml: error: is a FIFO (named pipe), not a regular file [load.unreadable]"
        in proc.stdout
    )


def test_symlink_to_dev_zero_fails_at_once(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.yaml")  # endless NUL bytes
    proc = run_limited(["validate", "zero.yaml"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "zero.yaml: error: is a character device, not a regular file" in proc.stdout


def test_oversize_config_is_refused_without_reading(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.write(NET.encode())
        f.truncate(16 * 1024 * 1024 + 1)  # a sparse file: 16 MiB + 1 byte of NULs
    code, out, _ = run(capsys, "validate", path)
    assert code == 2
    assert one_error(out) == (
        f"{path}: error: the config file is too large (16777217 bytes; at "
        f"most 16777216 are read) [load.unreadable]"
    )


def test_size_limit_is_inclusive(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 200)
    path = tmp_path / "c.yaml"
    text = "a: 1\n" + "#" * 194 + "\n"
    path.write_text(text)
    assert len(text) == 200 and loader.load_file(path).data == {"a": 1}
    path.write_text(text + "\n")
    with pytest.raises(loader.ConfigError, match="too large"):
        loader.load_file(path)


def test_exponent_without_dot_is_a_float(tmp_path, capsys):
    data = parse_yaml(
        "a: 1e-3\nb: 2E5\nc: -1.5e3\nd: +3e+2\ne: '1e-3'\nf: 1e\ng: 10\nh: 1.0e-3\n1e5: key\n"
    ).data
    assert data == {
        "a": 0.001,
        "b": 200000.0,
        "c": -1500.0,
        "d": 300.0,
        "e": "1e-3",
        "f": "1e",
        "g": 10,
        "h": 0.001,
        "1e5": "key",
    }
    assert all(type(data[k]) is float for k in "abcdh") and type(data["g"]) is int
    path = tmp_path / "c.yaml"
    path.write_text(NET + "train: {learning_rate: 1e-3, train_data: copy}\n")
    code, out, _ = run(capsys, "validate", path)
    assert code == 0, out
    assert validate(str(path)).config.data["train"]["learning_rate"] == 0.001


# -- 2. validation refuses what compile would die on ----------------------------------------------
def test_huge_n_out_is_refused_at_its_option(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    text = NET.replace(
        "network:\n", "network:\n  hidden: {class: linear, from: data, n_out: 1e12}\n"
    )
    text = text.replace("from: data, loss", "from: hidden, loss")
    path.write_text(text)
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert one_error(out) == (
        f"{path}:5:39: error: network.hidden.n_out: `hidden` would have an axis of size "
        f"1000000000000 [B, T(data), F=1000000000000]; at most 2147483647 (2**31-1) is "
        f"supported [shape.too-large]"
    )


@pytest.mark.parametrize(
    "dim, n_out, ok",
    [
        (1, 2**31 - 1, True),  # W [1, 2**31-1]: at the limit
        (2, 2**30, False),  # W [2, 2**30]: one element too many
        (1000, 3_000_000, False),
    ],
)
def test_parameter_size_limit(tmp_path, dim, n_out, ok):
    text = (
        f"extern_data: {{data: {{dim: {dim}}}}}\n"
        f"network:\n"
        f"  hidden: {{class: linear, from: data, n_out: {n_out}, with_bias: false}}\n"
        f"  output: {{class: copy, from: hidden}}\n"
    )
    result = validate(text)
    if ok:
        assert result.ok, result.diagnostics
        assert result.inferred.param_count("hidden") == dim * n_out
    else:
        [d] = result.errors
        assert d.rule == "shape.too-large" and d.path == ("network", "hidden", "n_out")
        assert (
            f"parameter `W` of shape ({dim}, {n_out}), {dim * n_out} elements; at most 2147483647"
        ) in d.message


@pytest.mark.parametrize(
    "layer",
    [
        "e: {class: eval, from: data, eval: \"tf.cast(source(0), 'int32')\"}",
        "e: {class: cast, from: data, dtype: int32}",
    ],
)
def test_int_features_into_softmax_are_refused(tmp_path, capsys, layer):
    path = tmp_path / "c.yaml"
    path.write_text(
        NET.replace("network:\n", f"network:\n  {layer}\n").replace(
            "from: data, loss", "from: e, loss"
        )
    )
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    line = one_error(out)
    assert line.startswith(
        f"{path}:6:28: error: network.output.from: `softmax` needs float32 "
        f"input (it is multiplied with its weights), but input `e` is "
        f"[B, T(data), F=3] int32"
    ), line
    assert line.endswith("[shape.dtype]")
    # cast back to float32: valid
    path.write_text(
        NET.replace(
            "network:\n", f"network:\n  {layer}\n  f: {{class: cast, from: e, dtype: float32}}\n"
        ).replace("from: data, loss", "from: f, loss")
    )
    assert run(capsys, "validate", path)[0] == 0


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("batching", "laplace:0", 'unknown value "laplace:0"'),
        ("random_seed", "100000000000000000000000", "must be <= 9223372036854775807"),
        ("random_seed", "-1", "must be >= 0"),
    ],
)
def test_train_option_limits(tmp_path, capsys, option, value, message):
    path = tmp_path / "c.yaml"
    path.write_text(NET + f"train:\n  train_data: copy\n  {option}: {value}\n")
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    line = one_error(out)
    assert line.startswith(f"{path}:8:3: error: train.{option}: ") and message in line, line


@pytest.mark.parametrize(
    "option, value", [("batching", "laplace:1"), ("random_seed", str(2**63 - 1))]
)
def test_train_option_limits_inclusive(option, value):
    assert validate(NET + f"train:\n  train_data: copy\n  {option}: {value}\n").ok


# -- 2. corrupt data files ------------------------------------------------------------------------
FRAMES = np.arange(30, dtype=np.float32).reshape(10, 3) / 10
LABELS = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1], np.int32)


def hdf(
    path,
    inputs=FRAMES,
    seq_lengths=((4, 4), (6, 6)),
    tags=("s1", "s2"),
    classes=LABELS,
    size=(2, 1),
    attrs=None,
) -> Path:
    """A RETURNN-layout HDF file written field by field, so any field can be corrupt."""
    with h5py.File(path, "w") as f:
        f.attrs["inputPattSize"] = 3
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.create_dataset("inputs", data=inputs)
        f.create_dataset("seqLengths", data=np.asarray(seq_lengths))
        f.create_dataset(
            "seqTags", data=np.array(list(tags), dtype=object), dtype=h5py.string_dtype()
        )
        f.create_group("targets/data").create_dataset("classes", data=classes)
        f.create_group("targets/size").attrs["classes"] = size
    return Path(path)


def npz(path, **fields) -> Path:
    arrays = {
        "data": FRAMES,
        "data_lengths": np.array([4, 6]),
        "classes": LABELS,
        "classes_lengths": np.array([4, 6]),
    }
    arrays.update(fields)
    np.savez(path, **arrays)
    return Path(path)


# (file maker, expected message after "<file>: ")
CORRUPT = {
    "str_inputs.hdf": (
        lambda p: hdf(p, inputs=np.full((10, 3), b"x")),
        "key 'data' holds |S1 values (e.g. strings), not numbers",
    ),
    "str_classes.hdf": (
        lambda p: hdf(p, classes=np.array([b"a"] * 10)),
        "key 'classes' holds |S1 values (e.g. strings), not numbers",
    ),
    "str_attr.hdf": (
        lambda p: hdf(p, attrs={"numSeqs": "two"}),
        "attribute numSeqs must be an integer, got 'two'",
    ),
    "str_pattsize.hdf": (
        lambda p: hdf(p, attrs={"inputPattSize": b"3"}),
        "attribute inputPattSize must be an integer, got '3'",
    ),
    "size_str.hdf": (
        lambda p: hdf(p, size="xx"),
        "targets/size attribute 'classes' must be [dim, ndim] or dim (integers), got 'xx'",
    ),
    "size_2d.hdf": (
        lambda p: hdf(p, size=np.array([[2, 1], [3, 4]])),
        "targets/size attribute 'classes' must be [dim, ndim] or dim (integers), "
        "got [[2, 1], [3, 4]]",
    ),
    "size_ndim.hdf": (
        lambda p: hdf(p, size=np.array([2, 7])),
        "targets/size attribute 'classes' = [2, 7]: dim must be >= 1 and ndim 1 "
        "(sparse) or 2 (dense)",
    ),
    "float_len.hdf": (
        lambda p: hdf(p, seq_lengths=np.array([[4.7, 4], [5.3, 6]], np.float32)),
        "seqLengths holds non-integer lengths (e.g. 4.7); lengths are whole numbers",
    ),
    "neg_len.hdf": (
        lambda p: hdf(p, seq_lengths=((4, 4), (-2, 6)), tags=("s1", "s2")),
        "seqLengths gives sequence 's2' the negative length -2",
    ),
    "complex.hdf": (
        lambda p: hdf(p, inputs=FRAMES.astype(np.complex64) + 1j),
        "key 'data' holds complex numbers (complex64); only real numbers are supported",
    ),
    "sparse_array.npz": (
        lambda p: npz(p, classes_sparse=np.array([True, False])),
        "classes_sparse must be one boolean, got an array of shape (2,) and dtype bool",
    ),
    "dim_array.npz": (
        lambda p: npz(p, classes_dim=np.array([2, 3])),
        "classes_dim must be one integer, got an array of shape (2,) and dtype int64",
    ),
    "dim_str.npz": (
        lambda p: npz(p, classes_dim=np.array("two")),
        "classes_dim must be one integer, got an array of shape () and dtype <U3",
    ),
    "str_labels.npz": (
        lambda p: npz(p, classes=np.array(list("ababababab"))),
        "key 'classes' holds <U1 values (e.g. strings), not numbers",
    ),
    "float_len.npz": (
        lambda p: npz(p, data_lengths=np.array([4.5, 5.5])),
        "data_lengths holds non-integer lengths (e.g. 4.5); lengths are whole numbers",
    ),
    "neg_len.npz": (
        lambda p: npz(p, data_lengths=np.array([-1, 11]), seq_tags=np.array(["a", "b"])),
        "data_lengths gives sequence 'a' the negative length -1",
    ),
}
EXTERN = {"data": {"dim": 3}, "classes": {"dim": 2, "sparse": True, "same_time_as": "data"}}


def spec(path: Path) -> dict:
    return {"class": path.suffix[1:], "files": str(path)}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_data_file_is_one_clear_error(tmp_path, name):
    make, message = CORRUPT[name]
    path = make(tmp_path / name)
    what = "HDF file" if name.endswith(".hdf") else "npz file"
    with pytest.raises(DatasetError) as info:
        make_dataset(spec(path), EXTERN)
    assert str(info.value) == f"{what} {str(path)!r}: {message}"


def test_integral_float_lengths_are_accepted(tmp_path):
    ds = make_dataset(
        spec(hdf(tmp_path / "f.hdf", seq_lengths=np.array([[4.0, 4], [6, 6]], np.float32))), EXTERN
    )
    assert ds.seq_lengths("data").tolist() == [4, 6] and ds.seq_tags == ["s1", "s2"]
    assert np.array_equal(ds.get_seq(1)["data"], FRAMES[4:])
    ds = make_dataset(
        spec(
            npz(
                tmp_path / "f.npz",
                classes_lengths=np.array([4.0, 6.0]),
                classes_dim=np.array(2),
                classes_sparse=np.array(True),
            )
        ),
        EXTERN,
    )
    assert ds.seq_lengths("classes").tolist() == [4, 6]
    assert np.array_equal(ds.get_seq(0)["classes"], LABELS[:4])


@pytest.mark.parametrize("cls", ["hdf", "npz"])
def test_files_set_to_a_directory(tmp_path, cls):
    with pytest.raises(DatasetError) as info:
        make_dataset({"class": cls, "files": str(tmp_path)}, EXTERN)
    assert str(info.value) == (
        f"{'HDF' if cls == 'hdf' else 'npz'} file {str(tmp_path)!r} is a directory, not a file"
    )
    with pytest.raises(DatasetError, match="does not exist"):
        make_dataset({"class": cls, "files": str(tmp_path / "nope")}, EXTERN)


def test_hdf_reader_wraps_layout_errors(tmp_path):
    """A group where a dataset belongs: whatever h5py raises becomes a DatasetError."""
    path = tmp_path / "g.hdf"
    with h5py.File(path, "w") as f:
        f.create_group("inputs")
        f.create_dataset("seqLengths", data=np.array([1]))
    with pytest.raises(DatasetError, match=f"cannot read HDF file {str(path)!r}: "):
        read_hdf(path)


@pytest.mark.parametrize("same_time_as", [True, False])
def test_misaligned_lengths_are_refused_naming_the_sequence(tmp_path, same_time_as):
    """`classes` on the time axis of `data`: by `same_time_as`, or unified by the frame-wise
    loss. A file whose lengths differ in one sequence is refused, naming it."""
    from netcompiler.frontend.extern_data import shared_time_keys
    from netcompiler.training.datasets import check_shared_time_axes

    extern = json.loads(json.dumps(EXTERN))
    if not same_time_as:
        del extern["classes"]["same_time_as"]
    result = validate(
        {
            "extern_data": extern,
            "network": {
                "output": {"class": "softmax", "from": "data", "loss": "ce", "target": "classes"}
            },
        }
    )
    assert result.ok, result.diagnostics
    groups = shared_time_keys(result.inferred.extern)
    path = hdf(tmp_path / "mis.hdf", seq_lengths=((4, 4), (6, 5), (0, 1)), tags=("a", "b", "c"))
    ds = make_dataset(spec(path), extern)  # the file is consistent in itself
    assert ds.seq_lengths("classes").tolist() == [4, 5, 1]
    with pytest.raises(DatasetError) as info:
        check_shared_time_axes(ds, groups)
    assert str(info.value) == (
        "train dataset: `data` and `classes` share a time axis in the "
        "network, but sequence 'b' has 6 frames of `data` and 5 of "
        "`classes` (2 sequences differ)"
    )
    good = hdf(tmp_path / "good.hdf", seq_lengths=((4, 4), (6, 6)))
    check_shared_time_axes(make_dataset(spec(good), extern), groups)


# -- the same through `netcompiler train` (in process, one TensorFlow import) ----------------------
TRAIN_NET = NET + "train: {train_data: {class: hdf, files: FILE}, batch_size: 100, num_epochs: 1}\n"


@pytest.mark.tf
def test_train_cli_gives_one_line_for_each_bad_data_file(tmp_path, capsys):
    cases = {name: (make(tmp_path / name), message) for name, (make, message) in CORRUPT.items()}
    mis = hdf(tmp_path / "mis.hdf", seq_lengths=((4, 5), (6, 5)))  # same_time_as: data
    cases["mis.hdf"] = (
        mis,
        "train dataset: `data` and `classes` share a time axis in the "
        "network, but sequence 's1' has 4 frames of `data` and 5 of "
        "`classes` (2 sequences differ)",
    )
    cases["dir"] = (tmp_path, f"HDF file {str(tmp_path)!r} is a directory, not a file")
    for name, (path, message) in cases.items():
        cfg = tmp_path / "c.yaml"
        cls = "npz" if name.endswith(".npz") else "hdf"
        cfg.write_text(
            TRAIN_NET.replace(
                "class: hdf, files: FILE", f"class: {cls}, files: {json.dumps(str(path))}"
            )
        )
        model = tmp_path / f"model-{name}"
        code, out, err = run(capsys, "train", cfg, "--model-dir", model)
        assert code == 1, (name, err)
        assert "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        if name not in ("mis.hdf", "dir"):
            what = "HDF file" if cls == "hdf" else "npz file"
            message = f"{what} {str(path)!r}: {message}"
        assert lines[0] == f"netcompiler train: error: bad dataset: {message}", (name, lines[0])
        assert not list(model.glob("ckpt-*"))  # nothing trained, nothing saved


# -- tabs and newlines in sequence tags: one row per hypothesis in the search TSV -----------------
def test_tsv_escaping_round_trip():
    from netcompiler.training.search import tsv_field, tsv_unescape

    assert tsv_field("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    for tag in ["plain", "a\tb", "x\ny\r\n", "back\\slash", "\\t literally", "", "ü\t€"]:
        field = tsv_field(tag)
        assert not any(c in field for c in "\t\n\r") and tsv_unescape(field) == tag


@pytest.mark.tf
def test_search_tsv_keeps_one_row_per_hypothesis(tmp_path, capsys):
    from netcompiler.backend.build import compile_network
    from netcompiler.backend.export import checkpoint
    from netcompiler.training.datasets import write_npz
    from netcompiler.training.search import tsv_unescape

    config = {
        "extern_data": {"data": {"dim": 2}, "classes": {"dim": 3, "sparse": True}},
        "network": {
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "max_seq_len": 4,
                "unit": {
                    "output_prob": {"class": "softmax", "from": "prev:output", "n_out": 3},
                    "output": {
                        "class": "choice",
                        "from": "output_prob",
                        "target": "classes",
                        "beam_size": 2,
                    },
                    "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
                },
            }
        },
    }
    net = compile_network(config)
    ckpt = tmp_path / "ckpt-001"
    checkpoint(net).write(str(ckpt / "ckpt"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(config))
    tags = ["tab\there", "new\nline", "cr\rlf\r\n", "back\\slash"]
    data = tmp_path / "in.npz"
    write_npz(data, [{"data": np.zeros((2, 2), np.float32)} for _ in tags], seq_tags=tags)
    out = tmp_path / "o.tsv"
    code, _, err = run(
        capsys, "search", cfg, "--checkpoint", ckpt, "--data", data, "--n-best", 2, "-o", out
    )
    assert code == 0, err
    rows = out.read_bytes().decode().split("\n")
    assert rows[0] == "seq_tag\trank\tscore\tlength\tlabels" and rows[-1] == ""
    rows = [r.split("\t") for r in rows[1:-1]]
    assert len(rows) == 2 * len(tags) and all(len(r) == 5 for r in rows)
    assert [tsv_unescape(r[0]) for r in rows] == [t for t in tags for _ in range(2)]
    assert [r[1] for r in rows] == ["1", "2"] * len(tags)
    # `--data` naming a directory says so
    (tmp_path / "dir.npz").mkdir()
    code, _, err = run(capsys, "search", cfg, "--checkpoint", ckpt, "--data", tmp_path / "dir.npz")
    assert code == 1 and err.strip() == (
        f"netcompiler search: error: --data: {tmp_path / 'dir.npz'} is a directory, not a file"
    )


def test_data_option_is_bounded_like_a_config():
    """`--data` YAML (train/forward/search) goes through the config loader's bounds."""
    from netcompiler.training.command_support import TrainError, parse_data_spec

    level = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 7):
        level += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    with pytest.raises(TrainError, match=r"^--data: .*aliases expand"):
        parse_data_spec(level, None)
    assert parse_data_spec("{class: hdf, files: [a.hdf]}", None) == {
        "class": "hdf",
        "files": ["a.hdf"],
    }
    assert parse_data_spec("copy", None) == "copy"
