"""`netcompiler forward CONFIG [--checkpoint CKPT] [--data SPEC] [--output OUT.hdf]
[--layer NAME]`: run the network (inference mode) over a dataset and write one layer's output,
one entry per sequence in the dataset's order, to a RETURNN-style HDF file (atomically).

TensorFlow is imported by the functions that need it, not by this module."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netcompiler.core.errors import UserError
from netcompiler.training.checkpoints import checkpoint_prefix, restore_network
from netcompiler.training.command_support import (
    EXIT_ERROR,
    EXIT_OK,
    TrainError,
    oom_types,
    out_of_memory_error,
    parse_data_spec,
    user_error,
    validated_config,
)
from netcompiler.training.model_dir import os_reason
from netcompiler.training.options import TrainOptions


def cli_forward(args) -> int:
    """`netcompiler forward CONFIG [--checkpoint CKPT] [--data SPEC] [--output OUT.hdf]
    [--layer NAME]`: run the network (inference mode) over a dataset and write the layer's output
    to a RETURNN-style HDF file (atomically)."""
    result = validated_config(args)
    if result is None:
        return EXIT_ERROR
    try:
        return run_forward(args, result)
    except UserError as exc:  # TrainError, Unsupported, a dataset or config problem
        return user_error("forward", exc)


def run_forward(args, result) -> int:
    """The command on a validated config: restore, run over the dataset, write the file."""
    from netcompiler.backend.build import CompiledNetwork
    from netcompiler.backend.export import inference_inputs

    opts = TrainOptions.from_config(result.config.data)
    ckpt_path = getattr(args, "checkpoint", None) or opts.model_dir
    if not ckpt_path:
        raise TrainError("no --checkpoint given and train.model_dir is not set")
    prefix = checkpoint_prefix(ckpt_path)
    net = CompiledNetwork(result, seed=int(opts.random_seed))
    restore_network(net, prefix)
    layer = getattr(args, "layer", None) or "output"
    try:
        fetch = net.normalise_fetch(layer)
    except KeyError as exc:
        raise TrainError(str(exc.args[0])) from None
    keys = inference_inputs(net, fetch)
    dataset = forward_dataset(args, opts, result, net)
    missing = [k for k in keys if k not in dataset.keys]
    if missing:
        raise TrainError(f"the dataset has no key(s) {', '.join(missing)} needed by `{layer}`")
    out_path = getattr(args, "output", None) or str(
        Path(opts.model_dir or ".") / f"forward-{layer.replace('/', '_')}.hdf"
    )
    by_index = layer_outputs(net, dataset, keys, fetch, layer, opts)
    write_outputs(out_path, dataset, by_index)
    print(f"wrote {len(by_index)} sequences of `{layer}` to {out_path}")
    return EXIT_OK


def forward_dataset(args, opts, result, net):
    """The dataset of `--data` (default: the config's dev data, else its train data)."""
    from netcompiler.frontend.extern_data import shared_time_keys
    from netcompiler.training.datasets import DatasetError, check_shared_time_axes, make_dataset

    extern = result.config.data.get("extern_data") or {}
    spec = parse_data_spec(getattr(args, "data", None), opts.dev_data or opts.train_data)
    if spec is None:
        raise TrainError("no --data given and the config has no train.dev_data/train_data")
    try:
        dataset = make_dataset(spec, extern, default_seed=int(opts.random_seed), name="forward")
        check_shared_time_axes(dataset, shared_time_keys(net.inferred.extern))
    except DatasetError as exc:
        raise TrainError(f"bad dataset: {exc}") from None
    return dataset


def layer_outputs(net, dataset, keys, fetch, layer: str, opts) -> list[tuple[int, dict]]:
    """(sequence index, {"data": 2-D float32 output}) of every sequence, by index; running out
    of memory is a TrainError naming the batch."""
    import tensorflow as tf

    from netcompiler.training.datasets import batches, padded_batch

    fn = net.get_function(keys, fetch, False)
    shape = net.shape(layer)
    out: list[tuple[int, dict]] = []
    for group in batches(
        dataset, int(opts.batch_size), opts.max_seqs, "sorted", int(opts.random_seed), 0
    ):
        padded, lengths = padded_batch(dataset, group, keys)
        inputs = {k: tf.constant(v) for k, v in padded.items()}
        lens = {k: tf.constant(lengths[k]) for k in keys if net.extern_shapes[k].time is not None}
        try:
            values, out_lens = fn(inputs, lens)[layer]
        except oom_types():
            raise out_of_memory_error(
                f"running `{layer}` forward", group_description(group, lens), opts
            ) from None
        values = values.numpy()
        out_lens = None if out_lens is None else out_lens.numpy()
        for j, i in enumerate(group):
            length = None if out_lens is None else int(out_lens[j])
            out.append((int(i), {"data": as_frames(values[j], length, shape.time is not None)}))
    return sorted(out, key=lambda t: t[0])


def group_description(group, lens: dict) -> str:
    """ "a batch of 3 sequences of up to 200 frames" for a batch's sequence lengths."""
    n = len(group)
    frames = max((int(np.max(np.asarray(v))) for v in lens.values()), default=0)
    return f"a batch of {n} sequence{'s' if n != 1 else ''}" + (
        f" of up to {frames} frames" if frames else ""
    )


def as_frames(value, length: int | None, has_time: bool):
    """One sequence's output as a float32 [frames, features] array (HDF's layout): cut to its
    length; a vector is a column of frames (with time) or one frame; more axes are flattened
    into the features."""
    v = value if length is None else value[:length]
    if v.ndim == 1:
        v = v[:, None] if has_time else v[None, :]
    elif v.ndim == 0:
        v = v.reshape(1, 1)
    elif v.ndim > 2:
        v = v.reshape(v.shape[0], -1)
    return v.astype(np.float32)


def write_outputs(out_path: str, dataset, by_index: list[tuple[int, dict]]) -> None:
    """Write the outputs (with the dataset's sequence tags, if it has them) as HDF."""
    from netcompiler.training.datasets import write_hdf

    tags = [dataset.seq_tags[i] for i, _ in by_index] if hasattr(dataset, "seq_tags") else None
    try:
        write_hdf(out_path, [s for _, s in by_index], None, tags)
    except OSError as exc:
        raise TrainError(f"cannot write --output {out_path} ({os_reason(exc)})") from None
