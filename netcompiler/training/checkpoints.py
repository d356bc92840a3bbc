"""Checkpoints of a network: the `ckpt-NNN/` directories a model directory holds (written by
the trainer, `import-returnn --checkpoint`), finding one from a path, checking that it fits a
network and restoring a network's variables from it; `checkpoint(net)` is the
`tf.train.Checkpoint` whose keys are `network/<layer>/<param>`.

TensorFlow is imported by the functions that need it, not by this module."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from netcompiler.training.command_support import TrainError

#: the name of a checkpoint directory in a model directory (the epoch)
CKPT_RE = re.compile(r"^ckpt-(\d+)$")


def variable_tree(net) -> Any:
    """Variables as a tree of modules, so checkpoint keys are `<layer>/<param>` (e.g.
    `att/QKV/.ATTRIBUTES/VARIABLE_VALUE`, `dec/s/W/...` inside a rec unit)."""
    import tensorflow as tf

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


def checkpoint(net, **extra) -> Any:
    """A `tf.train.Checkpoint` of a CompiledNetwork's variables (`variable_tree`) plus
    `extra` objects (the trainer adds its optimizer and counters)."""
    import tensorflow as tf

    return tf.train.Checkpoint(network=variable_tree(net), **extra)


# -- checkpoints in a model directory --------------------------------------------------------------
def list_checkpoints(model_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints (epoch, directory), oldest first."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = []
    for p in model_dir.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file() and (p / "ckpt.index").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def newest_checkpoint(model_dir) -> Path | None:
    """The directory of the newest complete checkpoint in `model_dir`, None if there is none."""
    found = list_checkpoints(model_dir)
    return found[-1][1] if found else None


def checkpoint_prefix(path) -> str:
    """The checkpoint prefix for a model dir (newest), a ckpt-NNN dir or a prefix; TrainError if
    there is none."""
    path = Path(path)
    if path.is_dir():
        if (path / "ckpt.index").is_file():
            return str(path / "ckpt")
        newest = newest_checkpoint(path)
        if newest is None:
            raise TrainError(
                f"{path}: no checkpoint in this directory (expected ckpt-NNN/ "
                f"directories written by `netcompiler train`)"
            )
        return str(newest / "ckpt")
    if Path(str(path) + ".index").is_file():
        return str(path)
    raise TrainError(f"{path}: no such checkpoint or model directory")


def _network_variable_keys(prefix: str) -> dict[str, str]:
    """`<layer>/<param>` (the path under `network` in the object graph) -> checkpoint key.

    A variable reachable on several paths is stored once, under its *shortest* path: in a
    trainer checkpoint the variables of a rec unit (`network/dec/s/W`, depth 4) are stored as
    `optimizer/_trainable_variables/N/...` (depth 3), so the key cannot be derived from the name;
    the checkpoint's object graph still has the `network/dec/s/W` edge, which is followed here."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return {}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    root = next((c.node_id for c in graph.nodes[0].children if c.local_name == "network"), None)
    out: dict[str, str] = {}
    if root is None:
        return out
    stack = [(root, "")]
    while stack:
        node_id, path = stack.pop()
        node = graph.nodes[node_id]
        for attr in node.attributes:
            if attr.name == "VARIABLE_VALUE" and path:
                out[path] = attr.checkpoint_key
        if path.count("/") < 8:
            for child in node.children:
                stack.append(
                    (child.node_id, f"{path}/{child.local_name}" if path else child.local_name)
                )
    return out


def restore_network(net, prefix) -> None:
    """Load a network's variables from a checkpoint (a trainer's or `checkpoint`'s);
    a TrainError naming the problem if it was written for another network."""
    check_checkpoint_fits(prefix, net)
    try:
        status = checkpoint(net).read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf_errors()) as exc:
        raise TrainError(f"checkpoint {prefix} does not fit this config: {exc}") from None


def check_checkpoint_fits(prefix: str, net) -> None:
    """TrainError naming the variables a checkpoint lacks or holds with another shape."""
    import tensorflow as tf

    try:
        stored = dict(tf.train.list_variables(prefix))
        keys = _network_variable_keys(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise TrainError(f"cannot read checkpoint {prefix}: {exc}") from None
    problems = []
    for name, var in net.variables_by_name.items():
        key = keys.get(name, f"network/{name}/.ATTRIBUTES/VARIABLE_VALUE")
        if key not in stored:
            problems.append(f"`{name}` is missing")
        elif tuple(stored[key]) != tuple(var.shape):
            problems.append(
                f"`{name}` has shape {list(stored[key])} in the checkpoint but "
                f"{list(var.shape)} in this network"
            )
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TrainError(
            f"checkpoint {prefix} does not fit this network: {'; '.join(problems[:5])}{more}"
        )


def tf_errors():
    """TensorFlow's error base class (`tf.errors.OpError`), imported when needed."""
    import tensorflow as tf

    return tf.errors.OpError
