"""Dataset base classes and extern_data helpers (NumPy only; no TensorFlow import).

A `Dataset` holds a fixed, finite list of sequences. Every sequence is a dict key -> array:
sparse keys are int32 [T] class indices, dense keys float32 [T, dim] features. All built-in
datasets keep their sequences in memory as one concatenated array per key plus per-sequence
lengths (`ArrayDataset`), so `get_seq` is a cheap slice and lengths are vectorised for batching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from netcompiler.core.errors import UserError


class DatasetError(UserError, ValueError):
    """A bad dataset spec, an unreadable file, or data that does not match `extern_data`."""


@dataclass(frozen=True)
class KeyInfo:
    """What one extern-data key holds: `dim` (classes when sparse, features when dense)."""

    dim: int
    sparse: bool

    def describe(self) -> str:
        return f"{'sparse' if self.sparse else 'dense'} dim {self.dim}"


def extern_key_info(key: str, entry) -> KeyInfo | None:
    """KeyInfo of one `extern_data` entry ({dim, sparse, shape, dtype, ...}); None if the entry
    gives no dim."""
    if not isinstance(entry, Mapping):
        raise DatasetError(f"extern_data[{key!r}] must be a mapping, got {entry!r}")
    sparse = bool(entry.get("sparse", False))
    dim = entry.get("dim")
    if dim is None:
        shape = entry.get("shape")
        if shape and not sparse and shape[-1] is not None:
            dim = shape[-1]
    if dim is None:
        return None
    return KeyInfo(int(dim), sparse)


def check_against_extern_data(
    name: str, provided: Mapping[str, KeyInfo], extern_data, source: str = ""
) -> tuple[str, ...]:
    """Check the keys a dataset provides against `extern_data` and return the keys it will
    deliver (in extern_data order; all provided keys when extern_data is empty/None).

    Raises DatasetError when a key's dim or sparsity differ, or when an input key (one not marked
    `available_for_inference: false`) is missing from the data."""
    where = f"{name} dataset{(' ' + source) if source else ''}"
    if not extern_data:
        return tuple(provided)
    keys = []
    for key, entry in extern_data.items():
        want = extern_key_info(key, entry)
        if key not in provided:
            if isinstance(entry, Mapping) and entry.get("available_for_inference", True) is False:
                continue  # a target the data does not have (e.g. forwarding): fine
            raise DatasetError(
                f"{where} provides no key {key!r} required by extern_data "
                f"(it provides: {', '.join(provided) or 'nothing'})"
            )
        have = provided[key]
        if want is not None and (want.dim != have.dim or want.sparse != have.sparse):
            raise DatasetError(
                f"{where}: key {key!r} is {have.describe()} in the data but extern_data[{key!r}] "
                f"says {want.describe()}"
            )
        keys.append(key)
    return tuple(keys)


def check_frame_dtype(where: str, key: str, arr: np.ndarray) -> None:
    """Frames must be real numbers: strings, objects and complex numbers are refused (a cast to
    int32/float32 would fail, or silently drop the imaginary part)."""
    kind = np.asarray(arr).dtype.kind
    if kind == "c":
        raise DatasetError(
            f"{where}: key {key!r} holds complex numbers ({arr.dtype}); only "
            f"real numbers are supported"
        )
    if kind not in "biuf":
        raise DatasetError(
            f"{where}: key {key!r} holds {arr.dtype} values (e.g. strings), not numbers"
        )


def as_lengths(where: str, name: str, values, tags=None) -> np.ndarray:
    """Sequence lengths as int64: whole numbers >= 0. Float lengths are accepted only when they
    are integral (7.0), never truncated (7.7 is an error); a negative length names its
    sequence."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DatasetError(
                f"{where}: {name} holds non-integer lengths "
                f"(e.g. {float(arr[bad].flat[0]):g}); lengths are whole numbers"
            )
        out = arr.astype(np.int64)
    else:
        raise DatasetError(f"{where}: {name} must hold integer lengths, got {arr.dtype} values")
    neg = np.argwhere(out < 0)
    if neg.size:
        row = int(neg[0][0])
        seq = repr(tags[row]) if tags is not None and row < len(tags) else f"number {row}"
        raise DatasetError(
            f"{where}: {name} gives sequence {seq} the negative length {int(out[tuple(neg[0])])}"
        )
    return out


def as_frames(key: str, value, info: KeyInfo, where: str = "") -> np.ndarray:
    """`value` as int32 [T] (sparse) or float32 [T, dim] (dense); DatasetError if it has another
    shape."""
    arr = np.asarray(value)
    if not info.sparse and arr.size == 0 and arr.ndim <= 1:
        arr = arr.reshape(0, info.dim)
    ok = arr.ndim == 1 if info.sparse else (arr.ndim == 2 and arr.shape[1] == info.dim)
    if not ok:
        want = "[T]" if info.sparse else f"[T, {info.dim}]"
        raise DatasetError(
            f"{where + ': ' if where else ''}key {key!r} has shape {arr.shape}, "
            f"expected {want} ({info.describe()})"
        )
    return arr.astype(np.int32 if info.sparse else np.float32, copy=False)


def check_shared_time_axes(dataset: Dataset, groups: Sequence[Sequence[str]]) -> None:
    """Keys that share one time axis in the network (`same_time_as`, or axes a frame-wise loss
    unified) must have equal lengths in every sequence; DatasetError naming both keys and the
    first sequence where they differ."""
    for group in groups:
        keys = [k for k in group if k in dataset.keys]
        if len(keys) < 2:
            continue
        first = np.asarray(dataset.seq_lengths(keys[0]))
        for other in keys[1:]:
            lens = np.asarray(dataset.seq_lengths(other))
            bad = np.flatnonzero(lens != first)
            if bad.size:
                i = int(bad[0])
                tag = dataset.seq_tags[i] if i < len(dataset.seq_tags) else str(i)
                raise DatasetError(
                    f"{dataset.name} dataset: `{keys[0]}` and `{other}` share a time axis in the "
                    f"network, but sequence {tag!r} has {int(first[i])} frames of `{keys[0]}` "
                    f"and {int(lens[i])} of `{other}` ({bad.size} sequences differ)"
                )


class Dataset:
    """A finite list of sequences (see module docstring). Subclasses set `keys`, `num_seqs`,
    `seq_tags`, `key_info` and implement `get_seq`."""

    name: str = "dataset"
    keys: tuple[str, ...] = ()
    key_info: dict[str, KeyInfo]
    num_seqs: int = 0
    seq_tags: list[str]
    #: RETURNN's partition_epoch: each epoch uses 1/partition of the sequences (see `batches`).
    partition: int = 1

    def get_seq(self, i: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def seq_length(self, i: int, key: str = "data") -> int:
        return int(len(self.get_seq(i)[key]))

    def seq_lengths(self, key: str | None = None) -> np.ndarray:
        """Lengths of all sequences (int64 [num_seqs]) for `key`, or when key is None the max
        over all keys (what counts for the frame budget of a batch)."""
        keys = self.keys if key is None else (key,)
        out = np.zeros(self.num_seqs, dtype=np.int64)
        for i in range(self.num_seqs):
            out[i] = max((self.seq_length(i, k) for k in keys), default=0)
        return out

    def __len__(self) -> int:
        return self.num_seqs

    def describe(self) -> str:
        lens = self.seq_lengths("data" if "data" in self.keys else None)
        keys = ", ".join(f"{k} ({self.key_info[k].describe()})" for k in self.keys)
        stats = (
            f"lengths {int(lens.min())}..{int(lens.max())} (mean {lens.mean():.1f})"
            if len(lens)
            else "empty"
        )
        part = f", partition {self.partition}" if self.partition > 1 else ""
        return f"{self.name}: {self.num_seqs} seqs, keys {keys}, {stats}{part}"


class ArrayDataset(Dataset):
    """Sequences stored as one concatenated array per key plus per-sequence lengths."""

    def __init__(
        self,
        name: str,
        key_info: Mapping[str, KeyInfo],
        flat: Mapping[str, np.ndarray],
        lengths: Mapping[str, np.ndarray],
        seq_tags: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        partition: int = 1,
        source: str = "",
    ):
        self.name = name
        self.source = source
        keys = tuple(keys) if keys is not None else tuple(key_info)
        self.keys = keys
        self.key_info = {k: key_info[k] for k in keys}
        self._all_info = dict(self.key_info)
        nums = {len(lengths[k]) for k in keys}
        if len(nums) > 1:
            raise DatasetError(
                f"{name} dataset{(' ' + source) if source else ''}: keys have "
                f"different numbers of sequences: "
                f"{ {k: len(lengths[k]) for k in keys} }"
            )
        self.num_seqs = nums.pop() if nums else 0
        self._flat = {}
        self._lengths = {}
        self._offsets = {}
        for k in keys:
            info = self.key_info[k]
            arr = np.asarray(flat[k])
            arr = arr.astype(np.int32 if info.sparse else np.float32, copy=False)
            lens = np.asarray(lengths[k], dtype=np.int64)
            if (lens < 0).any() or int(lens.sum()) != len(arr):
                raise DatasetError(
                    f"{name} dataset{(' ' + source) if source else ''}: key {k!r} has "
                    f"{len(arr)} frames but its sequence lengths sum to {int(lens.sum())}"
                )
            self._flat[k] = arr
            self._lengths[k] = lens
            self._offsets[k] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        if seq_tags is None:
            seq_tags = [f"{name}-{i}" for i in range(self.num_seqs)]
        self.seq_tags = [str(t) for t in seq_tags]
        if len(self.seq_tags) != self.num_seqs:
            raise DatasetError(
                f"{name} dataset: {len(self.seq_tags)} seq tags for {self.num_seqs} sequences"
            )
        if partition < 1:
            raise DatasetError(f"{name} dataset: partition must be >= 1, got {partition}")
        self.partition = int(partition)

    def to_one_hot(self, key: str) -> None:
        """Deliver the class indices of `key` as one-hot float vectors (dense, same dim)."""
        info = self.key_info[key]
        if not info.sparse:
            return
        flat = self._flat[key]
        dense = np.zeros((len(flat), info.dim), dtype=np.float32)
        dense[np.arange(len(flat)), flat] = 1.0
        self._flat[key] = dense
        self.key_info[key] = self._all_info[key] = KeyInfo(info.dim, False)

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.num_seqs:
            raise IndexError(f"sequence index {i} out of range (0..{self.num_seqs - 1})")
        return i

    def get_seq(self, i: int) -> dict[str, np.ndarray]:
        i = self._check_index(i)
        return {k: self._flat[k][self._offsets[k][i] : self._offsets[k][i + 1]] for k in self.keys}

    def seq_length(self, i: int, key: str = "data") -> int:
        i = self._check_index(i)
        if key not in self._lengths:
            raise KeyError(f"{self.name} dataset has no key {key!r} (keys: {self.keys})")
        return int(self._lengths[key][i])

    def seq_lengths(self, key: str | None = None) -> np.ndarray:
        if key is not None:
            return self._lengths[key].copy()
        if not self.keys:
            return np.zeros(self.num_seqs, dtype=np.int64)
        return np.max(np.stack([self._lengths[k] for k in self.keys]), axis=0)

    def select_keys(self, keys) -> ArrayDataset:
        """Deliver only `keys` (a subset of the stored keys, in this order); returns self."""
        keys = tuple(keys)
        missing = [k for k in keys if k not in self._flat]
        if missing:
            raise DatasetError(f"{self.name} dataset has no key(s) {missing} (keys: {self.keys})")
        self.keys = keys
        self.key_info = {k: self._all_info[k] for k in keys}
        return self

    def describe(self) -> str:
        text = super().describe()
        return f"{text}; from {self.source}" if self.source else text

    def flat(self, key: str) -> np.ndarray:
        """All frames of `key` concatenated over sequences (read-only view)."""
        return self._flat[key]

    @classmethod
    def from_seqs(
        cls,
        name: str,
        key_info: Mapping[str, KeyInfo],
        seqs: Sequence[Mapping[str, np.ndarray]],
        seq_tags=None,
        **kwargs,
    ):
        flat, lengths = {}, {}
        for k, info in key_info.items():
            parts = [
                as_frames(k, s[k], info, where=f"{name} sequence {i}") for i, s in enumerate(seqs)
            ]
            lengths[k] = np.array([len(p) for p in parts], dtype=np.int64)
            if parts:
                flat[k] = np.concatenate(parts, axis=0)
            else:
                flat[k] = np.zeros((0,) if info.sparse else (0, info.dim))
        return cls(name, key_info, flat, lengths, seq_tags=seq_tags, **kwargs)
