"""TensorFlow helpers of the decoder loop on single tensors: static shapes that stay stable
across `tf.while_loop` iterations, the loop axis, time-major to batch-major, beam tiling."""

from __future__ import annotations

import tensorflow as tf

from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, Dim, Shape


def built_before_loop(make, reads=()):
    """`make()` built in the graph around the `tf.while_loop` whose body is being traced, so
    that a loop-invariant value is computed once, not at every step; outside a loop body, or
    when one of the tensors `make` reads (`reads`; variables need not be listed) is computed
    inside the body, simply `make()`."""
    from tensorflow.python.ops.control_flow_util_v2 import WhileBodyFuncGraph

    graph = tf.compat.v1.get_default_graph()
    if not isinstance(graph, WhileBodyFuncGraph):
        return make()
    if any(getattr(t, "graph", None) is not graph.outer_graph for t in reads):
        return make()
    with graph.outer_graph.as_default():
        return make()


def loop_axis(shape: Shape, loop_dim: Dim) -> int:
    """The position of the loop axis in `shape`."""
    return shape.index(loop_dim)


def static_spec(shape: Shape) -> list:
    """Static shape of a tensor of `shape`: batch and time axes unknown."""
    return [d.size if d.kind in (FEATURE, SPATIAL) else None for d in shape.dims]


def relax(x, spec):
    """`x` with exactly the static shape `spec` (keeps while_loop shapes stable)."""
    return tf.compat.v1.placeholder_with_default(x, spec)


def relax_batch(x):
    """Relax the first (batch) axis of a state tensor."""
    spec = x.shape.as_list()
    if spec:
        spec[0] = None
    return relax(x, spec)


def to_batch_major(x, per_step: Shape):
    """[T, B, ...] -> [B, T, ...] for per-step shapes with a batch axis first."""
    if per_step.dims and per_step.dims[0].kind == BATCH:
        rank = len(per_step.dims) + 1
        return tf.transpose(x, [1, 0] + list(range(2, rank)))
    return x


def tile_beam(v, shape: Shape | None, beam_size: int):
    """Repeat the batch entries `beam_size` times (beam search)."""
    if beam_size == 1 or shape is None or not shape.has_batch:
        return v
    return tf.repeat(v, beam_size, axis=shape.batch_axis)
