"""The trainer's input: building the train and dev datasets of `train.train_data` /
`train.dev_data` (with `train.chunking`), cutting a dataset into batches (lists of sequence
indices, per epoch), and feeding those batches to a step: through `tf.data` on one replica,
split into one padded slice per replica on several, the time axis padded to a multiple of
`train.jit_time_multiple` frames under `train.jit_compile`.

TensorFlow is imported by the functions that need it, not by this module."""

from __future__ import annotations

import numpy as np

from netcompiler.training.command_support import TrainError


def load_datasets(opts, config: dict, extern_shapes: dict, input_keys: tuple[str, ...], seed: int):
    """(train, dev) datasets of the options `opts` (dev None when not set), checked to have
    the keys a step reads (`input_keys`) and their shared time axes (`extern_shapes`, the
    network's inferred extern data); a TrainError naming the problem otherwise."""
    from netcompiler.frontend.extern_data import shared_time_keys
    from netcompiler.training.datasets import DatasetError, check_shared_time_axes, make_dataset

    extern = config.get("extern_data") or {}
    if opts.train_data is None:
        raise TrainError("train.train_data is not set (e.g. `train_data: 12ax`)")
    try:
        train = make_dataset(opts.train_data, extern, default_seed=seed, name="train")
        dev = (
            make_dataset(opts.dev_data, extern, default_seed=seed, name="dev")
            if opts.dev_data is not None
            else None
        )
        for ds in (train, dev):
            if ds is not None:
                check_shared_time_axes(ds, shared_time_keys(extern_shapes))
    except DatasetError as exc:
        raise TrainError(f"bad dataset: {exc}") from None
    if opts.chunking not in (None, "", 0, "0"):  # RETURNN's chunking (training only)
        train = chunked(train, opts.chunking, input_keys)
    for ds, what in ((train, "train_data"), (dev, "dev_data")):
        if ds is None:
            continue
        missing = [k for k in input_keys if k not in ds.keys]
        if missing:
            raise TrainError(
                f"train.{what}: the dataset has no key(s) "
                f"{', '.join(missing)} needed for training (it has "
                f"{', '.join(ds.keys)})"
            )
    return train, dev


def chunked(dataset, chunking, input_keys: tuple[str, ...]):
    """The training dataset cut into chunks as `train.chunking` says (unchanged when it lacks
    an input key: the missing key is reported by the caller)."""
    from netcompiler.training.datasets import DatasetError
    from netcompiler.training.datasets.chunking import ChunkedDataset, parse_chunking

    try:
        size, step = parse_chunking(chunking)
        if all(k in dataset.keys for k in input_keys):
            return ChunkedDataset(dataset, size, step, keys=input_keys)
    except DatasetError as exc:
        raise TrainError(f"train.chunking: {exc}") from None
    return dataset


def epoch_batches(
    dataset, opts, seed: int, epoch: int, batching: str | None = None, max_seq_length=None
) -> list[list[int]]:
    """The batches (lists of sequence indices) of `dataset` in `epoch`, as the options'
    batch_size, max_seqs and batching (or `batching`) say; sequences longer than
    `max_seq_length` are left out (a TrainError if that option is malformed)."""
    from netcompiler.training.datasets import DatasetError, batches

    if not max_seq_length:
        return batches(
            dataset, int(opts.batch_size), opts.max_seqs, batching or opts.batching, seed, epoch
        )
    try:
        return batches(
            dataset,
            int(opts.batch_size),
            opts.max_seqs,
            batching or opts.batching,
            seed,
            epoch,
            max_seq_length=max_seq_length,
        )
    except DatasetError as exc:
        raise TrainError(f"train.max_seq_length: {exc}") from None


def batch_description(batch) -> str:
    """ "a batch of 3 sequences of up to 20000 frames" for a step's replica inputs."""
    seqs, frames = 0, 0
    for inputs, lengths, _ in batch:
        n = 0
        for v in lengths.values():
            v = np.asarray(v)
            n = max(n, len(v))
            frames = max(frames, int(v.max()) if v.size else 0)
        if not lengths:
            for v in inputs.values():
                n = max(n, int(np.shape(v)[0]) if np.ndim(v) else 1)
        seqs += n
    return f"a batch of {seqs} sequence{'s' if seqs != 1 else ''}" + (
        f" of up to {frames} frames" if frames else ""
    )


class BatchFeeder:
    """Turns batches of sequence indices into a step's input: per step a list (one entry per
    replica) of (inputs, lengths, weight). `extern_shapes` are the network's extern data
    shapes, `opts` the TrainOptions (read at each batch); with train.jit_compile the padded
    input shapes seen are added to `jit_shapes` (XLA compiles once per distinct shape)."""

    def __init__(
        self,
        extern_shapes: dict,
        input_keys: tuple[str, ...],
        num_replicas: int,
        opts,
        jit_shapes: set,
    ):
        self.extern_shapes = extern_shapes
        self.input_keys = input_keys
        self.num_replicas = num_replicas
        self.opts = opts
        self.jit_shapes = jit_shapes

    def timed_keys(self) -> list[str]:
        """The input keys with a time axis (those that have lengths)."""
        return [k for k in self.input_keys if self.extern_shapes[k].time is not None]

    def padded(self, dataset, indices: list[int]):
        """Inputs/lengths of these sequences as padded numpy arrays (used for replica slices)."""
        from netcompiler.training.datasets import padded_batch

        inputs, lengths = padded_batch(dataset, indices, self.input_keys)
        return inputs, {k: lengths[k] for k in self.timed_keys()}

    def iterate(self, dataset, groups: list[list[int]]):
        """Per step: a list (one entry per replica) of (inputs, lengths, weight)."""
        import tensorflow as tf

        if self.num_replicas == 1:
            from netcompiler.training.datasets import tf_dataset

            for inputs, lengths in tf_dataset(dataset, groups):
                ins = self.bucket_time({k: inputs[k] for k in self.input_keys})
                lens = {k: tf.cast(lengths[k], tf.int32) for k in self.timed_keys()}
                yield [(ins, lens, tf.constant(1.0))]
            return
        for group in groups:
            yield self.replica_slices(dataset, group)

    def replica_slices(self, dataset, group: list[int]) -> list:
        """A batch split into one contiguous slice of its sequences per replica."""
        per = []
        for part in np.array_split(np.asarray(group), self.num_replicas):
            if len(part):
                ins, lens = self.padded(dataset, [int(i) for i in part])
                per.append((self.bucket_time(ins), lens, np.float32(1.0)))
            else:  # fewer sequences than replicas: a dummy sequence with weight 0
                ins, lens = self.padded(dataset, [int(group[0])])
                per.append((self.bucket_time(ins), lens, np.float32(0.0)))
        return per

    def bucket_time(self, inputs: dict) -> dict:
        """With train.jit_compile: pad the first time axis of every input up to a multiple of
        train.jit_time_multiple frames (zeros, lengths unchanged: masking keeps the results
        exact), so XLA sees fewer distinct shapes and compiles fewer times. Records the padded
        shapes in `jit_shapes` (XLA compiles once per distinct shape)."""
        if not self.opts.jit_compile:
            return inputs
        import tensorflow as tf

        multiple, out = int(self.opts.jit_time_multiple or 1), {}
        for k, x in inputs.items():
            shape = self.extern_shapes[k]
            if shape.time is not None and multiple > 1:
                axis = shape.index(shape.time)
                extra = -int(x.shape[axis]) % multiple
                if extra:
                    pad = [[0, 0]] * len(x.shape)
                    pad[axis] = [0, extra]
                    x = tf.pad(x, pad) if tf.is_tensor(x) else np.pad(x, pad)
            out[k] = x
        self.jit_shapes.add(tuple((k, tuple(int(d) for d in x.shape)) for k, x in out.items()))
        return out
