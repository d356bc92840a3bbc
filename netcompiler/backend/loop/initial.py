"""Initial outputs of unit layers: what `prev:x` reads at step 0 (`initial_output`: a number,
`zeros`, `ones`, a trained variable `var`, `apply(0)` or a layer of the enclosing network)."""

from __future__ import annotations

import tensorflow as tf

from netcompiler.backend.loop.unit_traits import masked_scope
from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, Shape
from netcompiler.frontend.network import Layer


class InitialOutputs:
    """Initial outputs for one run of a unit (`inputs`: `RecInputs`, `setup`: a measured
    `LoopSetup`), for the batch B or, in a beam search, B*K."""

    def __init__(self, inputs, setup):
        self.inputs = inputs
        self.setup = setup

    def of(self, layer: Layer, batch):
        """The initial output of `layer` for a batch of size `batch`."""
        inputs = self.inputs
        if masked_scope(layer):  # a masked computation starts with its unit's initial output
            layer = layer.subnet.layers["unit"]
        shape = inputs.inferred.shapes[layer.name]
        init = layer.opts.get("initial_output", 0)
        if init is None or init == "zeros":
            init = 0
        elif init == "ones":
            init = 1
        elif init == "var":  # a trained variable, the same for every sequence
            var = inputs.net.layer_params[layer.name]["initial_output"]
            return tf.broadcast_to(var, tf.concat([[batch], tf.shape(var)], axis=0))
        elif init == "apply(0)":
            return self.apply_zero(layer, batch)
        elif isinstance(init, str):  # a layer of the enclosing network (`base:x`)
            ref = next(
                r for sub, r in inputs.net.graph.refs[layer.name] if sub[0] == "initial_output"
            )
            return self.setup.tile(inputs.values[ref.node], inputs.outer_shape(ref))
        dims = self.run_dims(shape, batch)
        dtype = tf.as_dtype(shape.dtype)
        if dtype == tf.bool:
            return tf.fill(tf.stack(dims) if dims else [], bool(init))
        return tf.fill(tf.stack(dims) if dims else [], tf.cast(init, dtype))

    def apply_zero(self, layer: Layer, batch):
        """`initial_output: apply(0)` (RETURNN): the layer itself, with its own variables,
        applied to all-zero `from` inputs (class 0 for sparse ones) of its per-step shapes; its
        other options (only layers outside the unit, checked by validation) keep their values.
        `batch` is B, or B*K in a beam search (then outer values are tiled)."""
        inputs, setup = self.inputs, self.setup
        tiled = batch is not setup.B
        layer_inputs = [
            (sub,) + self._zero_input(sub, ref, batch, tiled)
            for sub, ref in inputs.net.graph.refs.get(layer.name, [])
        ]
        lengths = {
            d: (tf.repeat(seq_lens, setup.K, axis=0) if tiled and setup.K > 1 else seq_lens)
            for d, seq_lens in inputs.dim_lengths.items()
        }
        ctx, rule = inputs.net.make_context(
            layer,
            layer_inputs,
            inputs.inferred.shapes[layer.name],
            lengths,
            inputs.training,
            in_rec=True,
            loop_dim=inputs.loop_dim,
            step_seed=inputs.step_seed,
            step=0,
        )
        ctx.max_steps = setup.max_len
        with tf.name_scope(f"{layer.local_name}_apply0"):
            return rule.call(ctx)

    def _zero_input(self, sub, ref, batch, tiled: bool):
        """(value, shape) of one input of `apply(0)`: zeros for what the layer reads per step,
        the value itself for a layer of the enclosing network (zeros if it is a `from`)."""
        inputs = self.inputs
        if ref.kind == "layer" and ref.target.name in inputs.unit_names:
            shape = inputs.inferred.shapes[ref.target.name]
            return self._zeros(shape, batch), shape
        if ref.kind == "step":
            return tf.zeros([], tf.int32), Shape((), None, "int32")
        if ref.kind == "source" or (ref.kind == "extern" and ref.frame):
            shape = (
                inputs.source_shape()
                if ref.kind == "source"
                else inputs.inferred.extern[ref.target]
            ).without(inputs.loop_dim)
            return self._zeros(shape, batch), shape
        # a layer of the enclosing network
        shape = inputs.outer_shape(ref)
        value = inputs.values[ref.node]
        value = self.setup.tile(value, shape) if tiled else value
        if sub[0] == "from":
            value = tf.zeros_like(value)
        return value, shape

    def _zeros(self, shape: Shape, batch):
        dims = self.run_dims(shape, batch)
        return tf.zeros(tf.stack(dims) if dims else [], tf.as_dtype(shape.dtype))

    def run_dims(self, shape: Shape, batch) -> list:
        """Run-time sizes of the axes of a per-step shape (batch: `batch`)."""
        dims = []
        for d in shape.dims:
            if d.kind == BATCH:
                dims.append(batch)
            elif d.kind in (FEATURE, SPATIAL):
                dims.append(d.size)
            elif d is self.inputs.loop_dim:
                dims.append(self.setup.max_len)
            else:
                dims.append(self.inputs.dim_size(d))
        return dims
