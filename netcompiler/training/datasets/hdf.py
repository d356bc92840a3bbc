"""RETURNN's HDF dataset layout: reader (`read_hdf`) and atomic writer (`write_hdf`), via h5py.

Layout (as written by RETURNN's `SimpleHDFWriter` and read by its `HDFDataset`):

- root attrs: `inputPattSize` (dim of `data`: features, or classes when sparse), `numSeqs`,
  `numTimesteps` (total frames of `data`), `numDims` (1), `numLabels` (dim of `data`);
- `inputs`: all frames of key `data` concatenated over sequences: float32 [N, dim] when dense,
  int32 class indices [N] when sparse;
- `seqLengths`: int32 [numSeqs, 1 + n_targets] (column 0: `data`, column 1 + i: the i-th
  target key in sorted order; RETURNN writes [numSeqs, 2] with a zero column 1 when there are no
  targets) or [numSeqs] (all keys share the length);
- `seqTags`: the sequence names (variable-length strings);
- `targets/data/<key>`: the concatenated frames of every other key ([N_key] sparse or
  [N_key, dim] dense); `targets/size` attrs `<key>: [dim, ndim]` (ndim 1 = sparse, 2 = dense;
  older files store just the dim, meaning sparse); `targets/labels/<key>`: label names;
- `labels`: label names of `data` (may be empty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from netcompiler.core.atomic import atomic_write
from netcompiler.training.datasets.base import (
    DatasetError,
    KeyInfo,
    as_frames,
    as_lengths,
    check_frame_dtype,
    extern_key_info,
)


def _decode(t) -> str:
    if isinstance(t, bytes):
        t = t.decode("utf-8")
    return str(t).split("\0")[0]


def check_is_file(what: str, path: Path) -> None:
    """DatasetError unless `path` is an existing regular file (a directory is named as such)."""
    if path.is_dir():
        raise DatasetError(f"{what} {str(path)!r} is a directory, not a file")
    if not path.exists():
        raise DatasetError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise DatasetError(f"{what} {str(path)!r} is not a regular file")


def _show(value) -> str:
    """A short one-line form of an attribute value for messages."""
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _int_attr(where: str, what: str, value) -> int:
    """An integer attribute: one whole number (not a string, not a list)."""
    arr = np.asarray(value)
    if (
        arr.size != 1
        or arr.dtype.kind not in "iuf"
        or (arr.dtype.kind == "f" and not float(arr.reshape(())).is_integer())
    ):
        raise DatasetError(f"{where}: {what} must be an integer, got {_show(value)}")
    return int(arr.reshape(()))


def _target_size(where: str, key: str, value) -> tuple[int, bool]:
    """`targets/size` attribute of a key: [dim, ndim] (ndim 1 sparse, 2 dense) or just dim."""
    arr = np.asarray(value)
    if (
        arr.ndim > 1
        or arr.size not in (1, 2)
        or arr.dtype.kind not in "iuf"
        or (arr.dtype.kind == "f" and not all(float(x).is_integer() for x in arr.reshape(-1)))
    ):
        raise DatasetError(
            f"{where}: targets/size attribute {key!r} must be [dim, ndim] or dim "
            f"(integers), got {_show(value)}"
        )
    size = arr.reshape(-1).tolist()
    dim, ndim = int(size[0]), int(size[1]) if len(size) > 1 else 1
    if dim < 1 or ndim not in (1, 2):
        raise DatasetError(
            f"{where}: targets/size attribute {key!r} = {size}: dim must be >= 1 "
            f"and ndim 1 (sparse) or 2 (dense)"
        )
    return dim, ndim == 1


def read_hdf(
    path,
) -> tuple[dict[str, KeyInfo], dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """Read one RETURNN HDF file: (key_info, flat frames per key, lengths per key, seq tags).
    Every problem with the file, including a layout h5py cannot read as expected (a group where
    a dataset should be, strings where numbers should be), is a DatasetError."""
    path = Path(path)
    check_is_file("HDF file", path)
    where = f"HDF file {str(path)!r}"
    try:
        return _read_hdf(path, where)
    except DatasetError:
        raise
    except (OSError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DatasetError(f"cannot read {where}: {type(exc).__name__}: {exc}") from None


def _read_hdf(path: Path, where: str):
    import h5py

    try:
        fin = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"cannot read HDF file {str(path)!r}: {exc}") from None
    try:
        info, flat, lengths, tags = _read_layout(fin, path, where)
    finally:
        fin.close()
    for key in info:
        check_frames(where, key, info[key], flat[key], lengths[key])
    return info, flat, lengths, tags


def _read_layout(fin, path: Path, where: str):
    """(key_info, flat frames, lengths, tags) of an open file, checked against each other but
    not yet against the frames' values (`check_frames` does that)."""
    for name in ("inputs", "seqLengths"):
        if name not in fin:
            raise DatasetError(f"{where} is not in RETURNN's HDF layout: no {name!r} dataset")
    inputs = fin["inputs"][...]
    check_frame_dtype(where, "data", inputs)
    seq_lengths, tags = _seq_lengths_and_tags(fin, path, where)
    patt = (
        _int_attr(where, "attribute inputPattSize", fin.attrs["inputPattSize"])
        if "inputPattSize" in fin.attrs
        else None
    )
    info = {"data": _inputs_info(where, inputs, patt)}
    flat = {"data": inputs}
    lengths = {"data": seq_lengths[:, 0]}
    target_keys = _target_keys(fin)
    size_attrs = fin["targets/size"].attrs if "targets/size" in fin else {}
    for col, key in enumerate(target_keys, start=1):
        if f"targets/data/{key}" not in fin:
            continue  # labels only
        arr = fin[f"targets/data/{key}"][...]
        check_frame_dtype(where, key, arr)
        lengths[key] = _target_lengths(where, key, col, seq_lengths, target_keys)
        info[key] = _target_info(where, key, arr, size_attrs)
        flat[key] = arr
    return info, flat, lengths, tags


def _seq_lengths_and_tags(fin, path: Path, where: str) -> tuple[np.ndarray, list[str]]:
    """seqLengths as [numSeqs, columns] and the sequence tags (made up from the file name when
    the file has none), checked against each other and against the numSeqs attribute."""
    raw_lengths = np.asarray(fin["seqLengths"][...])
    if raw_lengths.ndim not in (1, 2):
        raise DatasetError(
            f"{where}: seqLengths has shape {raw_lengths.shape}, expected "
            f"[numSeqs] or [numSeqs, 1 + number of targets]"
        )
    if raw_lengths.ndim == 1:
        raw_lengths = raw_lengths[:, None]
    num_seqs = raw_lengths.shape[0]
    if "seqTags" in fin:
        tags = [_decode(t) for t in np.asarray(fin["seqTags"][...]).reshape(-1).tolist()]
    else:
        tags = [f"{path.stem}-{i}" for i in range(num_seqs)]
    if len(tags) != num_seqs:
        raise DatasetError(f"{where}: {len(tags)} seqTags but {num_seqs} rows in seqLengths")
    seq_lengths = as_lengths(where, "seqLengths", raw_lengths, tags)
    if (
        "numSeqs" in fin.attrs
        and _int_attr(where, "attribute numSeqs", fin.attrs["numSeqs"]) != num_seqs
    ):
        raise DatasetError(
            f"{where}: attribute numSeqs={int(fin.attrs['numSeqs'])} but "
            f"seqLengths has {num_seqs} rows"
        )
    return seq_lengths, tags


def _inputs_info(where: str, inputs: np.ndarray, patt: int | None) -> KeyInfo:
    """Key `data`: sparse [N] (its dim the inputPattSize attribute) or dense [N, dim]."""
    if inputs.ndim == 1:
        if patt is None:
            raise DatasetError(f"{where}: sparse inputs but no inputPattSize attribute")
        return KeyInfo(patt, True)
    if inputs.ndim == 2:
        if patt is not None and patt != inputs.shape[1]:
            raise DatasetError(
                f"{where}: inputPattSize={patt} but inputs have {inputs.shape[1]} features"
            )
        return KeyInfo(int(inputs.shape[1]), False)
    raise DatasetError(f"{where}: inputs have unsupported shape {inputs.shape}")


def _target_keys(fin) -> list[str]:
    """The target keys, sorted (the order of their seqLengths columns): those with data or
    labels under `targets/`."""
    if "targets" not in fin:
        return []
    names = set()
    for sub in ("data", "labels"):
        if f"targets/{sub}" in fin:
            names |= set(fin[f"targets/{sub}"].keys())
    return sorted(names)


def _target_lengths(
    where: str, key: str, col: int, seq_lengths: np.ndarray, target_keys: list[str]
) -> np.ndarray:
    """A target's sequence lengths: its seqLengths column, or the only column all keys share."""
    if seq_lengths.shape[1] == 1:
        return seq_lengths[:, 0]
    if col < seq_lengths.shape[1]:
        return seq_lengths[:, col]
    raise DatasetError(
        f"{where}: seqLengths has {seq_lengths.shape[1]} columns, "
        f"no column for target {key!r} (targets: {target_keys})"
    )


def _target_info(where: str, key: str, arr: np.ndarray, size_attrs) -> KeyInfo:
    """A target's dim and sparseness from its targets/size attribute (a dense target may go
    without), checked against the shape of its frames."""
    size = size_attrs.get(key) if key in size_attrs else None
    if size is not None:
        dim, sparse = _target_size(where, key, size)
    elif arr.ndim == 2:
        dim, sparse = int(arr.shape[1]), False
    else:
        raise DatasetError(f"{where}: no targets/size attribute for sparse key {key!r}")
    if sparse != (arr.ndim == 1) or (not sparse and arr.shape[1] != dim):
        raise DatasetError(
            f"{where}: targets/data/{key} has shape {arr.shape} but "
            f"targets/size says {'sparse' if sparse else 'dense'} dim {dim}"
        )
    return KeyInfo(dim, sparse)


def check_frames(where: str, key: str, info: KeyInfo, flat: np.ndarray, lengths: np.ndarray):
    """Frames are real numbers, their count matches the lengths; sparse labels lie in
    [0, dim)."""
    check_frame_dtype(where, key, flat)
    lengths = as_lengths(where, f"the lengths of key {key!r}", lengths)
    total = int(np.sum(lengths))
    if total != len(flat):
        raise DatasetError(
            f"{where}: key {key!r} has {len(flat)} frames but its sequence lengths sum to {total}"
        )
    if info.sparse and len(flat):
        if not np.issubdtype(flat.dtype, np.integer):
            if not np.all(np.equal(np.mod(flat, 1), 0)):
                raise DatasetError(f"{where}: sparse key {key!r} holds non-integer values")
        lo, hi = int(np.min(flat)), int(np.max(flat))
        if lo < 0 or hi >= info.dim:
            raise DatasetError(
                f"{where}: sparse key {key!r} has class indices {lo}..{hi}, "
                f"outside 0..{info.dim - 1} (dim {info.dim})"
            )


def infer_key_info(key: str, seqs: Sequence[Mapping], extern_data) -> KeyInfo:
    """Key info from extern_data, else from the arrays (int [T] -> sparse with dim max+1,
    [T, D] -> dense dim D)."""
    if extern_data and key in extern_data:
        info = extern_key_info(key, extern_data[key])
        if info is not None:
            return info
    arrs = [np.asarray(s[key]) for s in seqs]
    nd = {a.ndim for a in arrs if a.size} or {a.ndim for a in arrs}
    if nd == {1} and all(np.issubdtype(a.dtype, np.integer) for a in arrs if a.size):
        return KeyInfo(max((int(a.max()) + 1 for a in arrs if a.size), default=1), True)
    if nd == {2}:
        return KeyInfo(int(next(a for a in arrs if a.ndim == 2).shape[1]), False)
    raise DatasetError(
        f"cannot tell the dim of key {key!r} (not in extern_data, arrays of ndim {sorted(nd)})"
    )


def collect_seqs(seqs: Sequence[Mapping], extern_data, seq_tags=None, what="write"):
    """Validate sequences for writing: (keys, key_info, flat, lengths, tags)."""
    seqs = list(seqs)
    if not seqs:
        raise DatasetError(f"cannot {what} an empty list of sequences")
    keys = [k for k in seqs[0] if k not in ("seq_tag", "tag")]
    for i, s in enumerate(seqs):
        ks = [k for k in s if k not in ("seq_tag", "tag")]
        if set(ks) != set(keys):
            raise DatasetError(f"sequence {i} has keys {sorted(ks)}, sequence 0 has {sorted(keys)}")
    info = {k: infer_key_info(k, seqs, extern_data) for k in keys}
    flat, lengths = {}, {}
    for k in keys:
        parts = [as_frames(k, s[k], info[k], where=f"sequence {i}") for i, s in enumerate(seqs)]
        lengths[k] = np.array([len(p) for p in parts], dtype=np.int64)
        flat[k] = np.concatenate(parts, axis=0)
        check_frames("sequences to write", k, info[k], flat[k], lengths[k])
    if seq_tags is None:
        seq_tags = [str(s.get("seq_tag", s.get("tag", f"seq-{i}"))) for i, s in enumerate(seqs)]
    seq_tags = [str(t) for t in seq_tags]
    if len(seq_tags) != len(seqs):
        raise DatasetError(f"{len(seq_tags)} seq tags for {len(seqs)} sequences")
    return keys, info, flat, lengths, seq_tags


def write_hdf(path, seqs: list[dict], extern_data=None, seq_tags: list[str] | None = None) -> Path:
    """Write sequences (dicts key -> array; optional 'seq_tag' entry) in RETURNN's HDF layout.

    `data` goes to `inputs`, every other key to `targets/data/<key>`. Dims/sparsity come from
    `extern_data[key]` ({dim, sparse}) or are inferred from the arrays. Atomic: a temp file in
    the same directory is renamed over `path`."""
    import h5py

    keys, info, flat, lengths, tags = collect_seqs(seqs, extern_data, seq_tags)
    if "data" not in keys:
        raise DatasetError(f"RETURNN's HDF layout needs a key 'data' (got keys {keys})")
    extra = sorted(k for k in keys if k != "data")
    n = len(tags)
    cols = [lengths["data"]] + ([lengths[k] for k in extra] if extra else [np.zeros(n, np.int64)])
    seq_len_arr = np.stack(cols, axis=1).astype(np.int32)
    dinfo = info["data"]

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["inputPattSize"] = np.int64(dinfo.dim)
            f.attrs["numDims"] = np.int64(1)
            f.attrs["numLabels"] = np.int64(dinfo.dim)
            f.attrs["numSeqs"] = np.int64(n)
            f.attrs["numTimesteps"] = np.int64(len(flat["data"]))
            f.create_dataset("inputs", data=flat["data"])
            f.create_dataset("labels", shape=(0,), dtype="S5")
            f.create_dataset("seqLengths", data=seq_len_arr)
            f.create_dataset(
                "seqTags", data=np.array(tags, dtype=object), dtype=h5py.string_dtype("utf-8")
            )
            if extra:
                grp_data = f.create_group("targets/data")
                grp_size = f.create_group("targets/size")
                grp_labels = f.create_group("targets/labels")
                for k in extra:
                    grp_data.create_dataset(k, data=flat[k])
                    grp_size.attrs[k] = np.array(
                        [info[k].dim, 1 if info[k].sparse else 2], dtype=np.int64
                    )
                    grp_labels.create_dataset(k, data=np.array([b"dummy-label"]))

    atomic_write(path, write, ".hdf.tmp")
    return Path(path)
