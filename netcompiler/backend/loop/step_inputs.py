"""What the layers run step by step read in one step: the current frame of a sequence (the rec
input, `data:KEY`, a teacher-forced target, a layer moved out with the loop axis, `prev:` of a
moved-out layer), a loop-invariant value (tiled for the beam), or a value of the step itself
(`cur`: this step's outputs so far, `prev`: the previous step's)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from netcompiler.backend.loop.tensors import loop_axis
from netcompiler.backend.loop.unit_traits import is_choice
from netcompiler.core.dims import Shape
from netcompiler.frontend.network import Layer


class StepInputs:
    """The per-frame sequences (`frames`: key -> (tensor, loop axis)) and loop-invariant values
    (`invariants`) the step layers read, collected before the loop (`inputs`: `RecInputs`,
    `setup`: a measured `LoopSetup`, `outside`: the `OutsideLayers` computed before it)."""

    def __init__(self, inputs, setup, outside):
        self.inputs = inputs
        self.setup = setup
        self.outside = outside
        plan = setup.plan
        self.in_loop = plan.step_names  # run step by step (not moved out before or after)
        self.search_names = (
            {layer.name for layer in plan.search_choices} if setup.beam_search else set()
        )
        self.frames: dict[str, tuple[Any, int]] = {}
        self.invariants: dict[str, Any] = {}
        unit_names = inputs.unit_names
        for layer in plan.steps:
            self._collect(layer, unit_names)

    def _add_seq(self, key: str, v, shape: Shape) -> None:
        self.frames[key] = (self.setup.tile(v, shape), loop_axis(shape, self.inputs.loop_dim))

    def _collect(self, layer: Layer, unit_names: set[str]) -> None:
        """Note what `layer` reads per frame or once (in the order it reads it)."""
        inputs = self.inputs
        if is_choice(layer) and layer.name not in self.search_names:
            key = f"data:{layer.opts.get('target')}"  # teacher forcing: the target frame
            if key not in self.frames:
                self._add_seq(key, inputs.target_value(layer), inputs.inferred.extern[key[5:]])
            return
        for _, ref in inputs.net.graph.refs.get(layer.name, []):
            if ref.kind == "layer" and ref.target.name in unit_names:
                self._collect_unit_ref(ref)
            elif ref.kind == "source":
                if "source" not in self.frames:
                    self._add_seq("source", inputs.source_value(), inputs.source_shape())
            elif ref.kind == "extern" and ref.frame:  # `data:KEY`: its current frame
                if ref.node not in self.frames:
                    self._add_seq(
                        ref.node, inputs.values[ref.node], inputs.inferred.extern[ref.target]
                    )
            elif ref.kind == "step":
                pass  # the loop counter itself (`read`)
            elif ref.node not in self.invariants:
                self.invariants[ref.node] = self.setup.tile(
                    inputs.values[ref.node], inputs.outer_shape(ref)
                )

    def _collect_unit_ref(self, ref) -> None:
        """A unit layer read by a step layer: nothing to collect if it runs in the loop."""
        tname = ref.target.name
        if tname in self.in_loop:
            return
        if ref.prev:
            if f"prev:{tname}" not in self.frames:
                v, s = self.outside.prev_seq(tname)
                self._add_seq(f"prev:{tname}", v, s)
        elif tname in self.setup.plan.varying:
            if tname not in self.frames:
                v, s = self.outside.unit_seq(tname)
                self._add_seq(tname, v, s)
        else:
            self.invariants[tname] = self.setup.tile(
                self.outside.values[tname], self.inputs.inferred.shapes[tname]
            )

    def frame(self, key: str, t):
        """The frame `t` of the sequence `key`."""
        v, axis = self.frames[key]
        return tf.gather(v, t, axis=axis)

    def read(self, ref, t, cur: dict, prev: dict):
        """(value, per-step shape) of what a step layer reads through `ref` at step `t`."""
        inputs, loop_dim = self.inputs, self.inputs.loop_dim
        if ref.kind == "layer" and ref.target.name in inputs.unit_names:
            return self._read_unit(ref, t, cur, prev)
        if ref.kind == "step":
            return t, Shape((), None, "int32")
        if ref.kind == "source":
            return self.frame("source", t), inputs.source_shape().without(loop_dim)
        if ref.kind == "extern" and ref.frame:
            shape = inputs.inferred.extern[ref.target]
            return self.frame(ref.node, t), shape.without(loop_dim)
        return self.invariants[ref.node], inputs.outer_shape(ref)

    def _read_unit(self, ref, t, cur: dict, prev: dict):
        tname = ref.target.name
        s = self.inputs.inferred.shapes[tname]
        if ref.prev:
            if tname in self.in_loop:
                return prev[tname], s
            return self.frame(f"prev:{tname}", t), s
        if tname in self.in_loop:
            return cur[tname], s
        if tname in self.setup.plan.varying:
            return self.frame(tname, t), s
        return self.invariants[tname], s

    def source(self, layer: Layer, t, cur: dict, prev: dict):
        """The step's `from` input of a layer, concatenated on the feature axis."""
        srcs = [
            self.read(ref, t, cur, prev)
            for sub, ref in self.inputs.net.graph.refs.get(layer.name, [])
            if sub[0] == "from"
        ]
        vals = [v for v, _ in srcs]
        return vals[0] if len(vals) == 1 else tf.concat(vals, axis=-1)
