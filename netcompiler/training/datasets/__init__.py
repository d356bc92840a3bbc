"""Datasets for training: built-in generated tasks, RETURNN HDF files, npz files; batching and
the tf.data input pipeline.

    ds = make_dataset(config["train"]["train_data"], config["extern_data"], name="train")
    groups = batches(ds, batch_size=5000, max_seqs=None, batching="laplace", seed=42, epoch=1)
    for inputs, lengths in tf_dataset(ds, groups): ...

A dataset spec (`train_data` / `dev_data` in the `train` section, see schemas/train.schema.json)
is either a built-in task name (`copy`, `reverse`, `12ax`, `number_base_convert`) or a mapping
with `class` and options:

- generated tasks (definitions in `netcompiler.training.datasets.generated`): `num_seqs` (default 1000
  for name "train", 100 otherwise), `seed` (default: `default_seed` for "train",
  `default_seed + DEV_SEED_OFFSET` for "dev", else default_seed + crc32(name)), `min_len`,
  `max_len`, `num_symbols` (copy/reverse), `base_in`/`base_out` (number_base_convert);
- `hdf` (RETURNN's HDF layout, `netcompiler.training.datasets.hdf`) and `npz`
  (`netcompiler.training.datasets.npz`): `files` (a path or list of paths; glob patterns allowed;
  relative paths against `base_dir` if given, else the working directory; sequences of all files
  concatenated in order), optional `num_seqs` (use only the first N sequences);
- every class: `partition` (RETURNN's partition_epoch, see `netcompiler.training.datasets.pipeline`).

The keys a dataset delivers are those of `extern_data` (all of its keys if extern_data is
empty); a key's dim/sparsity must equal extern_data's, and every extern_data key not marked
`available_for_inference: false` must be present, else `DatasetError`.

This package imports no TensorFlow at import time (`tf_dataset` imports it when called).
"""

from __future__ import annotations

import glob as _glob
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from netcompiler.training.datasets.base import (
    ArrayDataset,
    Dataset,
    DatasetError,
    KeyInfo,
    check_against_extern_data,
    check_shared_time_axes,
    extern_key_info,
)
from netcompiler.training.datasets.generated import (
    TASK_DEFAULTS,
    TASKS,
    GeneratedDataset,
    targets_12ax,
)
from netcompiler.training.datasets.hdf import read_hdf, write_hdf
from netcompiler.training.datasets.npz import read_npz, write_npz
from netcompiler.training.datasets.pipeline import (
    batches,
    element_signature,
    padded_batch,
    tf_dataset,
)

__all__ = [
    "ArrayDataset",
    "Dataset",
    "DatasetError",
    "GeneratedDataset",
    "KeyInfo",
    "TASKS",
    "batches",
    "element_signature",
    "make_dataset",
    "padded_batch",
    "read_hdf",
    "read_npz",
    "tf_dataset",
    "write_hdf",
    "write_npz",
    "DEV_SEED_OFFSET",
    "FILE_CLASSES",
    "check_against_extern_data",
    "check_shared_time_axes",
    "extern_key_info",
    "targets_12ax",
]

DEV_SEED_OFFSET = 1_000_003
DEFAULT_NUM_SEQS = {"train": 1000}
DEFAULT_NUM_SEQS_OTHER = 100
FILE_CLASSES = ("hdf", "npz")
CLASSES = TASKS + FILE_CLASSES
_COMMON_OPTS = {"class", "partition", "num_seqs"}
_GEN_OPTS = {"seed"}
#: RETURNN's names of the datasets netcompiler has, and of their options
RETURNN_CLASSES = {"Task12AXDataset": "12ax", "HDFDataset": "hdf"}
RETURNN_OPTIONS = {"fixed_random_seed": "seed", "partition_epoch": "partition"}
_FILE_OPTS = {"files"}


def default_seed_for(name: str, default_seed: int) -> int:
    if name == "train":
        return int(default_seed)
    if name == "dev":
        return int(default_seed) + DEV_SEED_OFFSET
    return int(default_seed) + zlib.crc32(name.encode("utf-8"))


def _int(where: str, key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{where}: {key!r} must be an integer, got {value!r}")
    if value < minimum:
        raise DatasetError(f"{where}: {key!r} must be >= {minimum}, got {value}")
    return int(value)


def _resolve_files(where: str, files, base_dir) -> list[Path]:
    if isinstance(files, (str, Path)):
        files = [files]
    if (
        not isinstance(files, (list, tuple))
        or not files
        or not all(isinstance(f, (str, Path)) for f in files)
    ):
        raise DatasetError(
            f"{where}: 'files' must be a path or a non-empty list of paths, got {files!r}"
        )
    out = []
    for f in files:
        p = Path(f).expanduser()
        if base_dir is not None and not p.is_absolute():
            p = Path(base_dir) / p
        if any(c in str(f) for c in "*?["):
            matches = sorted(_glob.glob(str(p)))
            if not matches:
                raise DatasetError(f"{where}: no file matches {str(p)!r}")
            out += [Path(m) for m in matches]
        else:
            out.append(p)
    return out


def _read_files(where: str, cls: str, paths: list[Path], extern_data):
    info: dict[str, KeyInfo] | None = None
    flats: dict[str, list] = {}
    lens: dict[str, list] = {}
    tags: list[str] = []
    for p in paths:
        i, f, file_lens, t = read_hdf(p) if cls == "hdf" else read_npz(p, extern_data)
        if info is None:
            info = i
            flats = {k: [] for k in i}
            lens = {k: [] for k in i}
        elif i != info:
            raise DatasetError(
                f"{where}: file {str(p)!r} has keys "
                f"{ {k: v.describe() for k, v in i.items()} } but "
                f"{str(paths[0])!r} has "
                f"{ {k: v.describe() for k, v in info.items()} }"
            )
        for k in info:
            flats[k].append(f[k])
            lens[k].append(file_lens[k])
        tags += t
    assert info is not None
    flat = {k: np.concatenate(v, axis=0) for k, v in flats.items()}
    lengths = {k: np.concatenate(v) for k, v in lens.items()}
    return info, flat, lengths, tags


def make_dataset(
    spec, extern_data: dict | None, default_seed: int = 42, name: str = "train", *, base_dir=None
) -> Dataset:
    """Build the dataset described by `spec` (a task name or a mapping with `class`), checked
    against `extern_data`. Raises DatasetError with a clear message on any problem."""
    where = f"{name}_data" if name in ("train", "dev") else f"dataset {name!r}"
    if extern_data is not None and not isinstance(extern_data, Mapping):
        raise DatasetError(f"extern_data must be a mapping, got {type(extern_data).__name__}")
    spec = _normalized_spec(where, spec)
    cls = spec["class"]
    where = f"{where} (class {cls})"
    partition = _int(where, "partition", spec.get("partition", 1), 1)
    if cls in TASKS:
        ds, source = _generated_dataset(where, spec, name, default_seed, partition, extern_data)
    else:
        ds, source = _file_dataset(where, spec, name, base_dir, partition, extern_data)
    keys = check_against_extern_data(name, ds.key_info, extern_data, source=source)
    ds.select_keys(keys)
    return ds


def _normalized_spec(where: str, spec) -> dict:
    """The spec as a mapping with a known `class` (a task name stands for `{class: NAME}`;
    RETURNN's class and option names become ours)."""
    if isinstance(spec, str):
        if spec not in TASKS:
            hint = (
                " (for files use {class: hdf, files: ...} or {class: npz, files: ...})"
                if spec in FILE_CLASSES or spec.endswith((".hdf", ".h5", ".npz"))
                else ""
            )
            raise DatasetError(
                f"{where}: unknown dataset {spec!r}; built-in datasets: {', '.join(TASKS)}{hint}"
            )
        spec = {"class": spec}
    if not isinstance(spec, Mapping):
        raise DatasetError(
            f"{where}: a dataset is a built-in name ({', '.join(TASKS)}) or a "
            f"mapping with 'class', got {type(spec).__name__} {spec!r}"
        )
    spec = dict(spec)
    if spec.get("class") in RETURNN_CLASSES:
        spec["class"] = RETURNN_CLASSES[spec["class"]]
        for theirs, ours in RETURNN_OPTIONS.items():
            if theirs in spec and ours not in spec:
                spec[ours] = spec.pop(theirs)
    if "class" not in spec:
        raise DatasetError(f"{where}: missing 'class' (one of {', '.join(CLASSES)})")
    if spec["class"] not in CLASSES:
        raise DatasetError(
            f"{where}: unknown dataset class {spec['class']!r} (one of {', '.join(CLASSES)})"
        )
    return spec


def _check_options(where: str, spec: dict, allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise DatasetError(
            f"{where}: unknown option(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed - {'class'}))})"
        )


def _generated_dataset(
    where: str, spec: dict, name: str, default_seed: int, partition: int, extern_data
) -> tuple[ArrayDataset, str]:
    """A built-in task's dataset and its source text for messages."""
    cls = spec["class"]
    allowed = _COMMON_OPTS | _GEN_OPTS | set(TASK_DEFAULTS[cls])
    if cls == "12ax":
        allowed |= {"num_symbols"}
    _check_options(where, spec, allowed)
    num_seqs = _int(
        where,
        "num_seqs",
        spec.get("num_seqs", DEFAULT_NUM_SEQS.get(name, DEFAULT_NUM_SEQS_OTHER)),
        1,
    )
    seed = spec.get("seed", default_seed_for(name, default_seed))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DatasetError(f"{where}: 'seed' must be an integer, got {seed!r}")
    options = {k: v for k, v in spec.items() if k not in _COMMON_OPTS | _GEN_OPTS}
    ds = GeneratedDataset(cls, num_seqs, int(seed), name=name, partition=partition, **options)
    # a generated task's symbols read as one-hot vectors where extern data declares them
    # dense with the same dim (RETURNN's generated tasks deliver them so: `num_inputs: 9`)
    for key, entry in (extern_data or {}).items():
        want = extern_key_info(key, entry)
        have = ds.key_info.get(key)
        if (
            want is not None
            and have is not None
            and have.sparse
            and not want.sparse
            and want.dim == have.dim
        ):
            ds.to_one_hot(key)
    return ds, f"({cls})"


def _file_dataset(
    where: str, spec: dict, name: str, base_dir, partition: int, extern_data
) -> tuple[ArrayDataset, str]:
    """The sequences of an hdf/npz dataset's files (the first `num_seqs` if given) and its
    source text for messages: the file, or the files in parentheses."""
    _check_options(where, spec, _COMMON_OPTS | _FILE_OPTS)
    if "files" not in spec:
        raise DatasetError(f"{where}: missing 'files' (a path or a list of paths)")
    paths = _resolve_files(where, spec["files"], base_dir)
    info, flat, lengths, tags = _read_files(where, spec["class"], paths, extern_data)
    if "num_seqs" in spec:
        n = _int(where, "num_seqs", spec["num_seqs"], 1)
        if n > len(tags):
            raise DatasetError(
                f"{where}: num_seqs {n} but the file(s) hold only {len(tags)} sequences"
            )
        for k in info:
            cut = int(np.sum(lengths[k][:n]))
            flat[k], lengths[k] = flat[k][:cut], lengths[k][:n]
        tags = tags[:n]
    source = ", ".join(repr(str(p)) for p in paths)
    source = f"({source})" if len(paths) > 1 else source
    ds = ArrayDataset(name, info, flat, lengths, seq_tags=tags, partition=partition, source=source)
    return ds, source
