"""SavedModel export, checkpoints by `<layer>/<param>` name, and `netcompiler compile`.

A SavedModel holds the variables and a `serving_default` signature taking every inference
input and its lengths (`data`, `data_lengths`, ...) and returning the fetched layers' values and
lengths (`output`, `output_lengths`). Directories are written atomically: into a temporary
sibling first, then renamed, so a failure never leaves a half-written model.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import tensorflow as tf

from .build import CompiledNetwork


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
        specs[k] = tf.TensorSpec([None] * len(shape.dims), tf.as_dtype(shape.dtype), name=k)
        if shape.time is not None:
            specs[f"{k}_lengths"] = tf.TensorSpec([None], tf.int32, name=f"{k}_lengths")

    @tf.function(input_signature=[specs], autograph=False)
    def serve(features):
        inputs = {k: features[k] for k in keys}
        lengths = {k: features[f"{k}_lengths"] for k in keys if f"{k}_lengths" in features}
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


def export_saved_model(net: CompiledNetwork, directory, fetch: Iterable[str] | None = None,
                       summary: str | None = None) -> Path:
    """Write a SavedModel (and `shapes.txt`) to `directory`, atomically."""
    fetch = net._normalise_fetch(fetch)
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
        lines.append(f"{name}\t{net.network.layers[name].layer_class}\t{shape}\t"
                     f"{net.inferred.param_count(name)}")
    lines.append(f"total parameters\t{net.inferred.total_params}")
    return "\n".join(lines) + "\n"


# -- checkpoints ----------------------------------------------------------------------------------

def variable_tree(net: CompiledNetwork) -> tf.Module:
    """Variables as a tree of modules, so checkpoint keys are `<layer>/<param>` (e.g.
    `att/QKV/.ATTRIBUTES/VARIABLE_VALUE`, `dec/s/W/...` inside a rec unit)."""
    root = tf.Module()
    for full, var in net.variables_by_name.items():
        node = root
        parts = full.split("/")
        for part in parts[:-1]:
            child = getattr(node, part, None) if part.isidentifier() else node.__dict__.get(part)
            if child is None:
                child = tf.Module()
                setattr(node, part, child)
            node = child
        setattr(node, parts[-1], var)
    return root


def checkpoint(net: CompiledNetwork, **extra) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(network=variable_tree(net), **extra)


def cli_compile(args) -> int:
    """`netcompiler compile CONFIG -o DIR [--set K=V] [--checkpoint CKPT]`."""
    import sys

    from .diagnostics import format_text
    from .validate import validate

    result = validate(args.config, overrides=args.set)
    for d in result.diagnostics:
        print(format_text(d), file=sys.stderr)
    if result.errors:
        return 2 if any(d.rule in ("load.missing", "load.unreadable") for d in result.errors) else 1
    try:
        net = CompiledNetwork(result)
    except NotImplementedError as exc:
        print(f"netcompiler compile: error: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "checkpoint", None):
        checkpoint(net).read(args.checkpoint).expect_partial()
    summary = shapes_summary(net)
    export_saved_model(net, args.output, summary=summary)
    print(summary, end="")
    print(f"SavedModel written to {args.output}")
    return 0
