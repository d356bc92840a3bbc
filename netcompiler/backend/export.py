"""SavedModel export, checkpoints by `<layer>/<param>` name, and `netcompiler compile`.

A SavedModel holds the variables and a `serving_default` signature taking every inference
input and its lengths (`data`, `data_lengths`, ...) and returning the fetched layers' values and
lengths (`output`, `output_lengths`). Static axes (features) have their size in the signature,
batch and time axes are `None`; the function checks at run time that every `<key>_lengths` has
one entry per sequence, each between 0 and the input's time size (an InvalidArgumentError naming
the input otherwise). Directories are written atomically: into a temporary sibling first, then
renamed, so a failure never leaves a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf

from netcompiler.backend.build import CompiledNetwork
from netcompiler.training.checkpoints import (
    checkpoint,
    checkpoint_prefix,
    restore_network,
    variable_tree,
)
from netcompiler.training.command_support import TrainError

__all__ = [
    "checkpoint",
    "variable_tree",
    "export_saved_model",
    "inference_inputs",
    "serving_function",
    "shapes_summary",
    "cli_compile",
]
from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UserError


def inference_inputs(net: CompiledNetwork, fetch: Iterable[str]) -> tuple[str, ...]:
    """Extern data keys the fetched layers need."""
    needed = net.needed_layers(fetch)
    return tuple(sorted(k for k in net.extern_shapes if f"data:{k}" in needed))


def _escape(name: str) -> str:
    return name.replace("/", "__")


def serving_function(net: CompiledNetwork, fetch: tuple[str, ...]):
    keys = inference_inputs(net, fetch)
    specs = {}
    for k in keys:
        shape = net.extern_shapes[k]
        specs[k] = tf.TensorSpec(
            [None if d.dynamic or d.size is None else int(d.size) for d in shape.dims],
            tf.as_dtype(shape.dtype),
            name=k,
        )
        if shape.time is not None:
            specs[f"{k}_lengths"] = tf.TensorSpec([None], tf.int32, name=f"{k}_lengths")

    def checked_lengths(k, x, lengths):
        shape = net.extern_shapes[k]
        time_axis = shape.index(shape.time)
        batch_axis = shape.batch_axis
        checks = [
            tf.debugging.assert_non_negative(lengths, message=f"{k}_lengths: a length is negative"),
            tf.debugging.assert_less_equal(
                lengths,
                tf.shape(x)[time_axis],
                message=f"{k}_lengths: a length is larger than the time size of `{k}` "
                f"(axis {time_axis})",
            ),
        ]
        if batch_axis is not None:
            checks.append(
                tf.debugging.assert_equal(
                    tf.size(lengths),
                    tf.shape(x)[batch_axis],
                    message=f"{k}_lengths: one length per sequence of `{k}` expected",
                )
            )
        with tf.control_dependencies(checks):
            return tf.identity(lengths)

    @tf.function(input_signature=[specs], autograph=False)
    def serve(features):
        inputs = {k: features[k] for k in keys}
        lengths = {
            k: checked_lengths(k, features[k], features[f"{k}_lengths"])
            for k in keys
            if f"{k}_lengths" in features
        }
        out = net.forward(inputs, lengths, training=False, fetch=fetch)
        result = {}
        for name, (values, lens) in out.items():
            result[_escape(name)] = values
            if lens is not None:
                result[f"{_escape(name)}_lengths"] = lens
        return result

    return serve


class _Exported(tf.Module):
    def __init__(self, net: CompiledNetwork, fetch: tuple[str, ...]):
        super().__init__(name="netcompiler_export")
        self.params = dict(net.variables_by_name)
        self.serve = serving_function(net, fetch)


def _atomic_dir(target: Path):
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def export_saved_model(
    net: CompiledNetwork, directory, fetch: Iterable[str] | None = None, summary: str | None = None
) -> Path:
    """Write a SavedModel (and `shapes.txt`) to `directory`, atomically."""
    fetch = net.normalise_fetch(fetch)
    target = Path(directory)
    tmp = _atomic_dir(target)
    try:
        module = _Exported(net, fetch)
        # signatures take a flat dict of tensors; wrap the one-dict-argument function
        concrete = module.serve.get_concrete_function()
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": concrete})
        (tmp / "shapes.txt").write_text(summary or shapes_summary(net), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, target)
    return target


def shapes_summary(net: CompiledNetwork) -> str:
    lines = []
    for key, shape in net.extern_shapes.items():
        lines.append(f"data:{key}\t{shape}")
    for name, shape in net.inferred.shapes.items():
        lines.append(
            f"{name}\t{net.network.layers[name].layer_class}\t{shape}\t"
            f"{net.inferred.param_count(name)}"
        )
    lines.append(f"total parameters\t{net.inferred.total_params}")
    return "\n".join(lines) + "\n"


def cli_compile(args) -> int:
    """`netcompiler compile CONFIG -o DIR [--set K=V] [--checkpoint CKPT]`."""
    import sys

    from netcompiler.core.diagnostics import format_text
    from netcompiler.frontend.validate import validate

    result = validate(args.config, overrides=args.set)
    for d in result.diagnostics:
        print(format_text(d), file=sys.stderr)
    if result.errors:
        unreadable = any(d.rule in ("load.missing", "load.unreadable") for d in result.errors)
        return EXIT_USAGE if unreadable else EXIT_INVALID
    try:
        net = CompiledNetwork(result)
    except UserError as exc:  # e.g. Unsupported
        print(f"netcompiler compile: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if getattr(args, "checkpoint", None):
        try:  # the same fit check as `forward` and `search`: never export random weights
            restore_network(net, checkpoint_prefix(args.checkpoint))
        except TrainError as exc:
            print(f"netcompiler compile: error: --checkpoint {exc}", file=sys.stderr)
            return EXIT_INVALID
    target = Path(args.output)
    if target.exists() and not target.is_dir():
        print(
            f"netcompiler compile: error: -o {target} exists and is not a directory",
            file=sys.stderr,
        )
        return EXIT_INVALID
    summary = shapes_summary(net)
    try:
        export_saved_model(net, args.output, summary=summary)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"netcompiler compile: error: cannot write -o {target} ({reason})", file=sys.stderr)
        return EXIT_INVALID
    except tf.errors.OpError as exc:  # e.g. the disk filled up while writing variables
        reason = str(exc.message).rsplit("; ", 1)[-1].splitlines()[0]
        print(f"netcompiler compile: error: cannot write -o {target} ({reason})", file=sys.stderr)
        return EXIT_INVALID
    print(summary, end="")
    print(f"SavedModel written to {args.output}")
    return EXIT_OK
