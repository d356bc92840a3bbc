"""Batching (`batches`) and the TensorFlow input pipeline (`tf_dataset`).

TensorFlow is imported only inside `tf_dataset`.

Batch frame budget: a sequence counts with its length `L = max over the dataset's keys` (at
least 1); a batch of sequences S is valid when `max(L for s in S) * len(S) <= batch_size` (so
every padded [B, T] tensor of every key stays within the budget) and `len(S) <= max_seqs`. A
single sequence longer than `batch_size` forms a batch of its own. Batches are filled greedily
along the ordering chosen by `batching`:

- `random`: a permutation drawn from `numpy.random.default_rng([seed, epoch])`;
- `sorted`: ascending length (stable: ties by index); the same every epoch;
- `laplace` / `laplace:N`: RETURNN-style: the random permutation is cut into buckets of N
  neighbouring sequences (default: 16 x the estimated sequences per batch, at least 2), each
  bucket sorted by length (alternately ascending/descending, like RETURNN), batches formed
  greedily, then the batch order shuffled with the same generator.

`partition` (RETURNN's partition_epoch): when a dataset has `partition = P > 1`, epoch `e` uses
only part `(e - 1) % P` of `numpy.array_split(arange(num_seqs), P)`, so P consecutive epochs
(counted from 1) see every sequence once.
"""

from __future__ import annotations

import numpy as np

from netcompiler.training.datasets.base import Dataset, DatasetError

BATCHINGS = ("random", "sorted", "laplace")


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % (2**63), int(epoch) % (2**63)])


def epoch_seq_indices(dataset: Dataset, epoch: int) -> np.ndarray:
    """The sequence indices used in `epoch` (all of them unless the dataset is partitioned)."""
    if hasattr(dataset, "epoch_indices"):  # a view deciding itself (chunking.ChunkedDataset)
        return dataset.epoch_indices(epoch)
    idx = np.arange(dataset.num_seqs)
    p = int(getattr(dataset, "partition", 1) or 1)
    if p <= 1:
        return idx
    return np.array_split(idx, p)[(int(epoch) - 1) % p]


def _parse_batching(batching: str) -> tuple[str, int | None]:
    if not isinstance(batching, str):
        raise DatasetError(f"batching must be a string ({', '.join(BATCHINGS)}), got {batching!r}")
    name, _, arg = batching.partition(":")
    if name not in BATCHINGS or (arg and name != "laplace"):
        raise DatasetError(
            f"unknown batching {batching!r} (use one of {', '.join(BATCHINGS)}, or laplace:N)"
        )
    if arg:
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 1:
            raise DatasetError(f"batching {batching!r}: N must be a positive integer")
        return name, n
    return name, None


def _greedy(order: np.ndarray, lens: np.ndarray, batch_size: int, max_seqs: int | None):
    out: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    limit = max_seqs if max_seqs else None
    for i in order.tolist():
        L = int(lens[i])
        new_max = max(cur_max, L)
        if cur and (
            new_max * (len(cur) + 1) > batch_size or (limit is not None and len(cur) + 1 > limit)
        ):
            out.append(cur)
            cur, new_max = [], L
        cur.append(i)
        cur_max = new_max
    if cur:
        out.append(cur)
    return out


def long_sequences(dataset: Dataset, max_seq_length) -> np.ndarray:
    """Boolean mask of the sequences longer than `max_seq_length` (RETURNN's: an int limits
    every key, a mapping {key: frames} those keys; a sequence is long if any limited key is)."""
    n = dataset.num_seqs
    if isinstance(max_seq_length, dict):
        limits = dict(max_seq_length)
    else:
        limits = {k: max_seq_length for k in dataset.keys}
    long = np.zeros(n, dtype=bool)
    for key, limit in limits.items():
        if key not in dataset.keys:
            raise DatasetError(
                f"key `{key}` is not a key of the dataset (it has {', '.join(dataset.keys)})"
            )
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise DatasetError(f"the limit of `{key}` must be an integer >= 1, got {limit!r}")
        long |= np.asarray(dataset.seq_lengths(key), dtype=np.int64) > int(limit)
    return long


def batches(
    dataset: Dataset,
    batch_size: int,
    max_seqs: int | None = None,
    batching: str = "random",
    seed: int = 42,
    epoch: int = 1,
    max_seq_length=None,
) -> list[list[int]]:
    """Sequence index groups, one per batch (see module docstring); deterministic given
    (seed, epoch). Every sequence of the epoch appears in exactly one batch, except with
    `max_seq_length` (int or {key: int}): the longer sequences are skipped (DatasetError if
    that leaves none)."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_seqs is not None and (
        isinstance(max_seqs, bool) or not isinstance(max_seqs, (int, np.integer)) or max_seqs < 1
    ):
        raise DatasetError(f"max_seqs must be a positive integer or None, got {max_seqs!r}")
    method, bucket = _parse_batching(batching)
    idx = epoch_seq_indices(dataset, epoch)
    if max_seq_length and len(idx):
        kept = idx[~long_sequences(dataset, max_seq_length)[idx]]
        if not len(kept):
            raise DatasetError(
                f"all {len(idx)} sequences of epoch {epoch} are longer than "
                f"max_seq_length {max_seq_length}"
            )
        idx = kept
    lens = np.maximum(np.asarray(dataset.seq_lengths(None), dtype=np.int64), 1)
    if len(idx) == 0:
        return []
    rng = _rng(seed, epoch)
    if method == "sorted":
        order = idx[np.argsort(lens[idx], kind="stable")]
        return _greedy(order, lens, int(batch_size), max_seqs)
    order = idx[rng.permutation(len(idx))]
    if method == "random":
        return _greedy(order, lens, int(batch_size), max_seqs)
    # laplace
    if bucket is None:
        per_batch = max(1, int(batch_size) // max(1, int(np.mean(lens[idx]))))
        if max_seqs:
            per_batch = min(per_batch, int(max_seqs))
        bucket = max(2, 16 * per_batch)
    parts = []
    for b, start in enumerate(range(0, len(order), bucket)):
        part = order[start : start + bucket]
        part = part[np.argsort(lens[part], kind="stable")]
        parts.append(part[::-1] if b % 2 else part)
    groups = _greedy(np.concatenate(parts), lens, int(batch_size), max_seqs)
    perm = rng.permutation(len(groups))
    return [groups[j] for j in perm]


def padded_batch(
    dataset: Dataset, group, keys=None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """NumPy version of one `tf_dataset` element: (inputs padded with 0, lengths int32 [B]),
    of the keys `keys` (default: all of the dataset's)."""
    seqs = [dataset.get_seq(int(i)) for i in group]
    inputs, lengths = {}, {}
    for k in dataset.keys if keys is None else keys:
        info = dataset.key_info[k]
        lens = np.array([len(s[k]) for s in seqs], dtype=np.int32)
        T = int(lens.max()) if len(lens) else 0
        shape = (len(seqs), T) if info.sparse else (len(seqs), T, info.dim)
        arr = np.zeros(shape, dtype=np.int32 if info.sparse else np.float32)
        for b, s in enumerate(seqs):
            arr[b, : lens[b]] = s[k]
        inputs[k], lengths[k] = arr, lens
    return inputs, lengths


def element_signature(dataset: Dataset):
    """The tf.TensorSpec structure of a `tf_dataset` element (dynamic batch and time dims)."""
    import tensorflow as tf

    inputs, lengths = {}, {}
    for k in dataset.keys:
        info = dataset.key_info[k]
        if info.sparse:
            inputs[k] = tf.TensorSpec([None, None], tf.int32)
        else:
            inputs[k] = tf.TensorSpec([None, None, info.dim], tf.float32)
        lengths[k] = tf.TensorSpec([None], tf.int32)
    return inputs, lengths


# Above this many bytes of data, `tf_dataset` streams padded batches from Python instead of
# holding all sequences as one ragged tensor inside the tf.data graph.
IN_GRAPH_MAX_BYTES = 256 * 1024 * 1024


def _flat_and_lengths(dataset: Dataset, key: str):
    if hasattr(dataset, "flat"):
        return dataset.flat(key), dataset.seq_lengths(key)
    seqs = [dataset.get_seq(i)[key] for i in range(dataset.num_seqs)]
    info = dataset.key_info[key]
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    if seqs:
        flat = np.concatenate(seqs, axis=0)
    else:
        flat = np.zeros((0,) if info.sparse else (0, info.dim))
    return flat, lens


#: batches padded at once, and batches prepared ahead of the train step. Fixed numbers with
#: tf.data's autotuning off: with autotuning, reaching the end of an epoch's iterator blocked
#: until the autotuner's next wake-up (10 ms doubling to 60 s after the iterator started), so
#: epochs ended 2-40 s after their last step (benchmarks/vs_returnn.py; epoch times snapped to
#: 20.5, 41, 82 s). A train step is far slower than padding a batch, so 2 ahead is enough.
PARALLEL_BATCHES = 2
PREFETCH_BATCHES = 2


def tf_dataset(dataset: Dataset, batch_groups, prefetch: bool = True):
    """A `tf.data.Dataset` yielding `(inputs, lengths)` per batch group, in the given order:
    `inputs[key]`: int32 [B, T] (sparse) / float32 [B, T, dim] (dense), batch-major, padded with
    0 to the longest sequence of the batch; `lengths[key]`: int32 [B]. Batch and time dims are
    None in the element_spec.

    All sequences are held as one `tf.RaggedTensor` per key; each element gathers its rows and
    pads them inside the tf.data graph (parallel map, no Python per batch), followed by a
    prefetch of PREFETCH_BATCHES (tf.data's autotuning off, see PARALLEL_BATCHES). Datasets over IN_GRAPH_MAX_BYTES use a Python generator over
    precomputed NumPy batches instead."""
    import tensorflow as tf

    groups = [np.asarray(g, dtype=np.int64).reshape(-1) for g in batch_groups]
    for g in groups:
        if len(g) and (g.min() < 0 or g.max() >= dataset.num_seqs):
            raise DatasetError(
                f"batch group has a sequence index outside 0..{dataset.num_seqs - 1}"
            )
    signature = element_signature(dataset)
    total = (
        sum(_flat_and_lengths(dataset, k)[0].nbytes for k in dataset.keys)
        if hasattr(dataset, "flat")
        else IN_GRAPH_MAX_BYTES + 1
    )

    if total <= IN_GRAPH_MAX_BYTES:
        ragged = {}
        for k in dataset.keys:
            flat, lens = _flat_and_lengths(dataset, k)
            info = dataset.key_info[k]
            values = tf.constant(flat, dtype=tf.int32 if info.sparse else tf.float32)
            ragged[k] = tf.RaggedTensor.from_row_lengths(
                values, tf.constant(lens, tf.int64), validate=False
            )
        sizes = np.array([len(g) for g in groups], dtype=np.int64)
        flat_idx = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        index = tf.RaggedTensor.from_row_lengths(
            tf.constant(flat_idx, tf.int64), tf.constant(sizes, tf.int64), validate=False
        )
        ds = tf.data.Dataset.from_tensor_slices(index)

        def gather(idx):
            inputs, lengths = {}, {}
            for k in dataset.keys:
                rows = tf.gather(ragged[k], idx)
                padded = rows.to_tensor(default_value=tf.zeros([], rows.dtype))
                if dataset.key_info[k].sparse:
                    padded = tf.ensure_shape(padded, [None, None])
                else:
                    padded = tf.ensure_shape(padded, [None, None, dataset.key_info[k].dim])
                inputs[k] = padded
                lengths[k] = tf.cast(rows.row_lengths(), tf.int32)
            return inputs, lengths

        ds = ds.map(gather, num_parallel_calls=PARALLEL_BATCHES, deterministic=True)
    else:

        def gen():
            for g in groups:
                yield padded_batch(dataset, g)

        ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
    if prefetch:
        ds = ds.prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
