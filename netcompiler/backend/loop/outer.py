"""What a rec layer reads from the enclosing network: its input (`from`), the values and shapes
of outer layers and extern data, the targets of teacher-forced choices, and the run-time sizes
of the batch and of dynamic axes."""

from __future__ import annotations

import tensorflow as tf

from netcompiler.backend.loop.unit_traits import size_target_dims
from netcompiler.core.dims import Dim, Shape
from netcompiler.frontend.feature_concat import concat_features
from netcompiler.frontend.network import Layer, Ref
from netcompiler.frontend.shapes import read_shape


class RecInputs:
    """One call of a rec layer inside a forward pass: the network, the values computed so far
    (`values`, by full layer name or `data:KEY`) and the lengths of the dynamic axes."""

    def __init__(
        self, net, rec: Layer, values: dict, dim_lengths: dict, training: bool, step_seed=None
    ):
        self.net = net
        self.rec = rec
        self.unit = rec.unit
        self.values = values
        self.dim_lengths = dim_lengths
        self.training = training
        self.step_seed = step_seed
        self.inferred = net.inferred
        self.loop_dim: Dim = net.inferred.loop_dims[rec.name]

    @property
    def unit_names(self) -> set[str]:
        """Full names of the unit's layers."""
        return {layer.name for layer in self.unit.layers.values()}

    def own_time_dims(self) -> set:
        """Time axes given by the rec layer's own input (the loop over the input frames), and
        the axis of `size_target` when that is fed (it sets the length also in search)."""
        shape = self.source_shape()
        own = set(shape.time_dims) if shape is not None else set()
        return own | size_target_dims(self.net, self.rec, self.values)

    def source_refs(self) -> list[Ref]:
        return [ref for sub, ref in self.net.graph.refs.get(self.rec.name, []) if sub[0] == "from"]

    def source_shape(self) -> Shape | None:
        """The shape of the rec layer's input (its `from` list concatenated), None without."""
        refs = self.source_refs()
        if not refs:
            return None
        shapes = [self.outer_shape(r) for r in refs]
        return concat_features(shapes, [r.text for r in refs])

    def source_value(self):
        refs = self.source_refs()
        vals = [self.values[r.node] for r in refs]
        return vals[0] if len(vals) == 1 else tf.concat(vals, axis=-1)

    def outer_shape(self, ref: Ref) -> Shape:
        """The shape of what `ref` reads outside the unit."""
        return read_shape(self.inferred, ref)

    def target_value(self, layer: Layer):
        """The target sequence of a teacher-forced choice."""
        key = layer.opts.get("target")
        if f"data:{key}" not in self.values:
            raise ValueError(f"`{layer.name}`: the target `{key}` is needed (teacher forcing)")
        return self.values[f"data:{key}"]

    def _value_shape(self, key: str) -> Shape | None:
        return (
            self.inferred.extern.get(key[5:])
            if key.startswith("data:")
            else self.inferred.shapes.get(key)
        )

    def batch_size(self):
        """The batch the rec layer runs on (another one than `B` over the chunks of a
        `time_chunking`): a value on that batch axis, else any batched value."""
        out = self.inferred.shapes.get(self.rec.name)
        want = next((d for d in out.dims if d.kind == "batch"), None) if out else None
        found = None
        for key, v in self.values.items():
            shape = self._value_shape(key)
            if shape is not None and shape.has_batch and hasattr(v, "shape"):
                axis = shape.batch_axis
                if want is None or shape.dims[axis] is want:
                    return tf.shape(v)[axis]
                if found is None:
                    found = tf.shape(v)[axis]
        if found is not None:
            return found
        raise ValueError(f"`{self.rec.name}`: cannot tell the batch size (no batched input)")

    def dim_size(self, dim: Dim):
        """Run-time size of a dynamic axis, from a value that has it."""
        for key, v in self.values.items():
            shape = self._value_shape(key)
            if shape is not None and shape.has(dim) and hasattr(v, "shape"):
                return tf.shape(v)[shape.index(dim)]
        if dim in self.dim_lengths:
            return tf.reduce_max(self.dim_lengths[dim])
        raise ValueError(f"`{self.rec.name}`: unknown size of axis {dim}")
