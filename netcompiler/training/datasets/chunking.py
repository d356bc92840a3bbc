"""RETURNN's `chunking` of the training data (`train.chunking`): every training sequence is cut
into chunks of `size` frames starting at frames 0, step, 2 * step, ... (while the start is
inside the sequence; the last chunks are shorter), and the chunks are trained on as sequences.

`ChunkedDataset(base, size, step)` is a view of `base` with one entry per chunk. All keys of a
sequence must have the same length (RETURNN's rule), except keys of length <= 1 (e.g. one
label per sequence), which every chunk gets whole. `partition` splits the sequences, not the
chunks (a sequence's chunks stay in one epoch), as RETURNN's partition_epoch does.
"""

from __future__ import annotations

import numpy as np

from netcompiler.frontend.chunk_spec import ChunkingError
from netcompiler.frontend.chunk_spec import parse_chunking as _parse
from netcompiler.training.datasets.base import Dataset, DatasetError
from netcompiler.training.datasets.pipeline import epoch_seq_indices


def parse_chunking(value) -> tuple[int, int] | None:
    """`chunk_spec.parse_chunking` with a DatasetError."""
    try:
        return _parse(value)
    except ChunkingError as exc:
        raise DatasetError(str(exc)) from None


class ChunkedDataset(Dataset):
    def __init__(self, base: Dataset, size: int, step: int, keys=None):
        """`keys`: the keys the view has (default: all of base's; RETURNN chunks the keys the
        network uses)."""
        self.base, self.size, self.step = base, int(size), int(step)
        self.name = base.name
        self.keys = tuple(k for k in base.keys if keys is None or k in keys)
        self.key_info = dict(base.key_info)
        self.partition = 1  # the partition is the base's (see epoch_indices)
        lens = {k: np.asarray(base.seq_lengths(k), dtype=np.int64) for k in self.keys}
        main = (
            np.max(np.stack([lens[k] for k in self.keys]), axis=0)
            if self.keys
            else np.zeros(0, np.int64)
        )
        for k in self.keys:
            bad = np.nonzero((lens[k] != main) & (lens[k] > 1))[0]
            if bad.size:
                i = int(bad[0])
                raise DatasetError(
                    f"chunking needs all keys of a sequence to have the same length: sequence "
                    f"{i} has {int(main[i])} frames but {int(lens[k][i])} of `{k}`"
                )
        seqs, starts = [], []
        for i, n in enumerate(main):
            s = np.arange(0, max(int(n), 1), self.step, dtype=np.int64)
            seqs.append(np.full(len(s), i, np.int64))
            starts.append(s)
        self.chunk_seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self.chunk_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.chunk_end = np.minimum(self.chunk_start + self.size, main[self.chunk_seq])
        self._full = {k: lens[k] <= 1 for k in self.keys}  # per sequence: key given whole
        self._lens = lens
        self.num_seqs = int(len(self.chunk_seq))
        tags = getattr(base, "seq_tags", None) or [str(i) for i in range(base.num_seqs)]
        self.seq_tags = [f"{tags[s]}@{a}" for s, a in zip(self.chunk_seq, self.chunk_start)]

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The chunks of the sequences the base uses in `epoch`."""
        used = np.zeros(self.base.num_seqs, dtype=bool)
        used[epoch_seq_indices(self.base, epoch)] = True
        return np.nonzero(used[self.chunk_seq])[0]

    def _span(self, j: int, key: str) -> tuple[int, int]:
        s = int(self.chunk_seq[j])
        if self._full[key][s]:
            return 0, int(self._lens[key][s])
        return int(self.chunk_start[j]), int(self.chunk_end[j])

    def get_seq(self, j: int) -> dict[str, np.ndarray]:
        seq = self.base.get_seq(int(self.chunk_seq[j]))
        out = {}
        for k in self.keys:
            a, b = self._span(j, k)
            out[k] = seq[k][a:b]
        return out

    def seq_length(self, j: int, key: str = "data") -> int:
        a, b = self._span(j, key)
        return b - a

    def seq_lengths(self, key: str | None = None) -> np.ndarray:
        keys = self.keys if key is None else (key,)
        out = np.zeros(self.num_seqs, dtype=np.int64)
        for k in keys:
            full = self._full[k][self.chunk_seq]
            n = np.where(full, self._lens[k][self.chunk_seq], self.chunk_end - self.chunk_start)
            out = np.maximum(out, n)
        return out

    def describe(self) -> str:
        return f"{self.base.describe()}; chunking {self.size}:{self.step}: {self.num_seqs} chunks"
