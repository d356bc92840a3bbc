"""A simple NumPy `.npz` dataset layout: reader (`read_npz`) and atomic writer (`write_npz`).

Layout (every array stored without pickling; `numpy.load(..., allow_pickle=False)` reads it):

- `<key>`: all frames of the key concatenated over sequences: int [N] class indices (sparse) or
  float [N, dim] features (dense);
- `<key>_lengths`: int [num_seqs], the length of every sequence for that key (a key is any
  array `K` for which `K_lengths` exists; all keys have the same number of sequences);
- `<key>_dim` (optional, int scalar): the dim (number of classes when sparse); default: from
  extern_data, else the feature size (dense) or max label + 1 (sparse);
- `<key>_sparse` (optional, bool scalar): default: the array is integer and 1-D;
- `seq_tags` (optional): str [num_seqs]; default `<file stem>-<i>`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from netcompiler.core.atomic import atomic_write
from netcompiler.training.datasets.base import (
    DatasetError,
    KeyInfo,
    as_lengths,
    check_frame_dtype,
    extern_key_info,
)
from netcompiler.training.datasets.hdf import check_frames, check_is_file, collect_seqs


def _scalar(where: str, name: str, value, kinds: str, what: str):
    """A 0-d (or one-element) array of one of the dtype `kinds`, as a Python scalar."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in kinds:
        raise DatasetError(
            f"{where}: {name} must be {what}, got an array of shape "
            f"{arr.shape} and dtype {arr.dtype}"
        )
    return arr.reshape(()).item()


def read_npz(path, extern_data=None):
    """Read one npz file: (key_info, flat frames per key, lengths per key, seq tags)."""
    path = Path(path)
    where = f"npz file {str(path)!r}"
    check_is_file("npz file", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"cannot read {where}: {exc}") from None
    keys = [k for k in arrays if f"{k}_lengths" in arrays]
    if not keys:
        raise DatasetError(
            f"{where} holds no key (expected arrays '<key>' and '<key>_lengths'; "
            f"found {sorted(arrays)})"
        )
    info, flat, lengths = {}, {}, {}
    named = (
        np.asarray(arrays["seq_tags"]).reshape(-1).tolist() if "seq_tags" in arrays else None
    )  # only to name a sequence in an error
    for k in keys:
        arr = arrays[k]
        check_frame_dtype(where, k, arr)
        lens = as_lengths(
            where, f"{k}_lengths", np.asarray(arrays[f"{k}_lengths"]).reshape(-1), named
        )
        ext = extern_key_info(k, extern_data[k]) if extern_data and k in extern_data else None
        if f"{k}_sparse" in arrays:
            sparse = bool(
                _scalar(where, f"{k}_sparse", arrays[f"{k}_sparse"], "biu", "one boolean")
            )
        elif ext is not None:
            sparse = ext.sparse
        else:
            sparse = arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer)
        if sparse and arr.ndim != 1 or not sparse and arr.ndim != 2:
            raise DatasetError(
                f"{where}: key {k!r} has shape {arr.shape}, expected "
                f"{'[N] (sparse)' if sparse else '[N, dim] (dense)'}"
            )
        if f"{k}_dim" in arrays:
            dim = _scalar(where, f"{k}_dim", arrays[f"{k}_dim"], "iu", "one integer")
            if dim < 1:
                raise DatasetError(f"{where}: {k}_dim must be >= 1, got {dim}")
        elif not sparse:
            dim = int(arr.shape[1])
        elif ext is not None:
            dim = ext.dim
        else:
            dim = int(arr.max()) + 1 if arr.size else 1
        if not sparse and arr.shape[1] != dim:
            raise DatasetError(
                f"{where}: key {k!r} has {arr.shape[1]} features but {k}_dim = {dim}"
            )
        info[k] = KeyInfo(dim, sparse)
        flat[k], lengths[k] = arr, lens
        check_frames(where, k, info[k], arr, lens)
    nums = {k: len(v) for k, v in lengths.items()}
    if len(set(nums.values())) > 1:
        raise DatasetError(f"{where}: keys have different numbers of sequences: {nums}")
    n = next(iter(nums.values()))
    if "seq_tags" in arrays:
        tags = [str(t) for t in np.asarray(arrays["seq_tags"]).reshape(-1).tolist()]
        if len(tags) != n:
            raise DatasetError(f"{where}: {len(tags)} seq_tags for {n} sequences")
    else:
        tags = [f"{path.stem}-{i}" for i in range(n)]
    return info, flat, lengths, tags


def write_npz(path, seqs: list[dict], extern_data=None, seq_tags: list[str] | None = None) -> Path:
    """Write sequences (dicts key -> array; optional 'seq_tag' entry) in the npz layout above
    (uncompressed; atomic via a temp file in the same directory and os.replace)."""
    keys, info, flat, lengths, tags = collect_seqs(seqs, extern_data, seq_tags)
    out = {"seq_tags": np.array(tags, dtype=str)}
    for k in keys:
        if k == "seq_tags" or k.endswith(("_lengths", "_dim", "_sparse")):
            raise DatasetError(f"key name {k!r} clashes with the npz layout's reserved names")
        out[k] = flat[k]
        out[f"{k}_lengths"] = lengths[k].astype(np.int32)
        out[f"{k}_dim"] = np.int64(info[k].dim)
        out[f"{k}_sparse"] = np.bool_(info[k].sparse)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **out)

    atomic_write(path, write, ".npz.tmp")
    return Path(path)
