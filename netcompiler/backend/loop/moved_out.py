"""Unit layers computed once outside the loop: moved out before it (over the whole loop axis,
or loop invariant) or after it (over the stacked outputs of the in-loop layers they read), and
the sequences the loop reads from them (`x` and `prev:x` over the loop axis)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from netcompiler.backend.loop.tensors import loop_axis
from netcompiler.backend.loop.unit_traits import is_choice, unit_rule
from netcompiler.core.dims import BATCH, Shape
from netcompiler.frontend.network import Layer
from netcompiler.layers.rec import stacked_shape


class OutsideLayers:
    """The values of the unit layers computed outside the loop (`values`, by full name) for one
    run (`inputs`: `RecInputs`, `setup`: a measured `LoopSetup`, `initial`: `InitialOutputs`)."""

    def __init__(self, inputs, setup, initial):
        self.inputs = inputs
        self.setup = setup
        self.initial = initial
        self.values: dict[str, Any] = {}
        #: layers whose value in `values` carries the loop axis (moved out before or after the
        #: loop, or stacked in-loop layers read after the loop)
        self.varying: set[str] = set(setup.plan.varying)
        self._prev_seqs: dict[str, Any] = {}

    def broadcast_loop(self, v, shape: Shape):
        """`v` (of the per-step `shape`) repeated over the loop axis."""
        at = 1 if shape.dims and shape.dims[0].kind == BATCH else 0
        T = self.setup.loop_size(self.inputs.dim_lengths, self.inputs.loop_dim)
        return tf.repeat(tf.expand_dims(v, at), T, axis=at)

    def unit_seq(self, name: str):
        """(value, shape) of a moved-out unit layer, with the loop axis if it varies."""
        shape = self.inputs.inferred.shapes[name]
        if name in self.varying:
            return self.values[name], stacked_shape(shape, self.inputs.loop_dim)
        return self.values[name], shape

    def prev_seq(self, name: str):
        """prev:x over the loop axis for an x computed outside the loop (or stacked after
        it): [init, x_0, ..., x_{T-2}]."""
        inputs = self.inputs
        shape = inputs.inferred.shapes[name]
        if name not in self._prev_seqs:
            v = self.values[name]
            if name not in self.varying:
                v = self.broadcast_loop(v, shape)
            st = stacked_shape(shape, inputs.loop_dim)
            axis = loop_axis(st, inputs.loop_dim)
            init = self.initial.of(inputs.net.network.layers[name], self.setup.B)
            init = tf.expand_dims(tf.cast(init, v.dtype), axis)
            n = tf.shape(v)[axis]
            body = tf.gather(v, tf.range(n - 1), axis=axis)
            self._prev_seqs[name] = tf.concat([init, body], axis=axis)
        return self._prev_seqs[name], stacked_shape(shape, inputs.loop_dim)

    def set_stacked(self, name: str, value) -> None:
        """An in-loop layer stacked over the loop (read by a layer computed after it)."""
        self.values[name] = value
        self.varying.add(name)

    def compute(self, layer: Layer, after_loop: bool = False):
        """Compute `layer` once outside the loop and keep its value: moved out before it, or
        (`after_loop`) after it, then its in-loop inputs are stacked over the loop."""
        if after_loop:
            self.varying.add(layer.name)
        self.values[layer.name] = self._call(layer)

    def _call(self, layer: Layer):
        inputs, loop_dim = self.inputs, self.inputs.loop_dim
        if is_choice(layer):  # teacher forcing: the target sequence
            return inputs.target_value(layer)
        varying = layer.name in self.varying
        layer_inputs = [
            (sub,) + self._input(ref, varying)
            for sub, ref in inputs.net.graph.refs.get(layer.name, [])
        ]
        if varying and unit_rule(layer).concat_sources:
            # a `from` list is concatenated on the feature axis: an input of the enclosing
            # network without the loop axis (`base:x`) is repeated over it, as in every step
            n_from = sum(1 for sub, _, _ in layer_inputs if sub[0] == "from")
            if n_from > 1:
                layer_inputs = [
                    (sub, self.broadcast_loop(v, s), stacked_shape(s, loop_dim))
                    if sub[0] == "from" and s.has_batch and not s.has(loop_dim)
                    else (sub, v, s)
                    for sub, v, s in layer_inputs
                ]
        shape = inputs.inferred.shapes[layer.name]
        out_shape = stacked_shape(shape, loop_dim) if varying else shape
        ctx, rule = inputs.net.make_context(
            layer,
            layer_inputs,
            out_shape,
            inputs.dim_lengths,
            inputs.training,
            step_seed=inputs.step_seed,
        )
        with tf.name_scope(layer.local_name.replace(":", "_")):
            return rule.call(ctx)

    def _input(self, ref, varying: bool):
        """(value, shape) of what a layer computed outside the loop reads through `ref`."""
        inputs, loop_dim = self.inputs, self.inputs.loop_dim
        if ref.kind == "layer" and ref.target.name in inputs.unit_names:
            if ref.prev:
                return self.prev_seq(ref.target.name)
            v, s = self.unit_seq(ref.target.name)
            if varying and ref.target.name not in self.varying and s.has_batch:
                v, s = self.broadcast_loop(v, s), stacked_shape(s, loop_dim)
            return v, s
        if ref.kind == "source":
            return inputs.source_value(), inputs.source_shape()
        if ref.kind == "step":  # `:i` over the whole loop: 0 .. T-1
            T = self.setup.loop_size(inputs.dim_lengths, loop_dim)
            return tf.range(T), Shape((loop_dim,), None, "int32")
        return inputs.values[ref.node], inputs.outer_shape(ref)
