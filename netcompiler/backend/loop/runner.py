"""Decoder loops: `rec` layers whose `unit` is a sub-network, run step by step.

`run_rec` is called by `CompiledNetwork.forward` (inside its tf.function) for every rec layer
with a unit dict. It

1. plans the unit (`netcompiler.backend.loop.plan`): which unit layers are needed (the unit's
   `output`, fetched sub-layers, `end` when the loop length is not known) and which of them are
   moved out before or after the loop, and computes the layers moved out before the loop
   (`netcompiler.backend.loop.moved_out`);
2. runs the remaining layers in a `tf.while_loop` (`netcompiler.backend.loop.step_loop`; none at
   all if nothing remains), pruning a beam at search choices (`netcompiler.backend.loop.beam`);
3. stacks the results over the loop: [B, T_loop, ...], registers the loop lengths and computes
   the layers moved out after the loop.

Loop length: the rec input's time axis, or the target's lengths (teacher forcing), or -- when the
loop axis has no lengths (searching) -- until every hypothesis' `end` layer fired, at most
`max_seq_len` steps (`netcompiler.backend.loop.max_len`).

Search: the batch becomes B*K (K = beam size); encoder (`base:`) values and lengths are repeated
K times (see `netcompiler.backend.loop.beam`).
"""

from __future__ import annotations

import tensorflow as tf

from netcompiler.backend.loop.initial import InitialOutputs
from netcompiler.backend.loop.moved_out import OutsideLayers
from netcompiler.backend.loop.outer import RecInputs
from netcompiler.backend.loop.setup import LoopSetup
from netcompiler.backend.loop.step_loop import StepLoop
from netcompiler.frontend.network import Layer


def run_rec(
    net,
    rec: Layer,
    values: dict,
    dim_lengths: dict,
    training: bool,
    fetch_locals=(),
    search: dict | None = None,
    step_seed=None,
):
    """Run the unit of `rec`; returns its stacked output. Fetched sub-layers are put into
    `values` under their full names, stacked [B, T_loop, ...]; the loop lengths go into
    `dim_lengths[loop_dim]`. `search`: None (search iff a choice's target is not given) or
    {"beam_size": K or None, "n_best": N, "results": {}} (forced search; the n-best labels,
    lengths and scores go into results[rec name])."""
    inputs = RecInputs(net, rec, values, dim_lengths, training, step_seed)
    setup = LoopSetup.create(inputs, fetch_locals, search)
    return UnitRun(inputs, setup).run()


class UnitRun:
    """One run of the unit of a rec layer: moved-out layers, the loop, after-loop layers."""

    def __init__(self, inputs: RecInputs, setup: LoopSetup):
        self.inputs = inputs
        self.setup = setup

    def run(self):
        """The stacked output of the unit (fetched layers go into `inputs.values`)."""
        inputs, setup = self.inputs, self.setup
        plan, scope = setup.plan, inputs.rec.name.replace("/", "_")
        setup.measure(inputs)
        initial = InitialOutputs(inputs, setup)
        outside = OutsideLayers(inputs, setup, initial)
        with tf.name_scope(scope + "_moved_out"):
            for layer in plan.moved_out:
                outside.compute(layer)
        stacked: dict = {}
        result_lengths = setup.lengths if setup.known_length else None
        if plan.steps:
            stacked, result_lengths = StepLoop(inputs, setup, outside, initial).run()
        if result_lengths is not None and inputs.loop_dim not in inputs.dim_lengths:
            inputs.dim_lengths[inputs.loop_dim] = result_lengths
        if plan.after:
            for name in plan.after_inputs:
                outside.set_stacked(name, stacked[name])
            with tf.name_scope(scope + "_after_loop"):
                for layer in plan.after:
                    outside.compute(layer, after_loop=True)
        self._stack_outside(stacked, outside)
        unit = inputs.unit
        for local in setup.fetch_locals:
            name = unit.layers[local].name
            inputs.values[name] = stacked[name]
        return stacked[unit.layers["output"].name]

    def _stack_outside(self, stacked: dict, outside: OutsideLayers) -> None:
        """Add the required layers computed outside the loop to `stacked`, loop-invariant ones
        repeated over the loop axis."""
        unit = self.inputs.unit
        for local in self.setup.required:
            if local not in unit.layers:
                continue
            name = unit.layers[local].name
            if name in stacked:
                continue
            if name in outside.values:
                v = outside.values[name]
                if name not in outside.varying:
                    v = outside.broadcast_loop(v, self.inputs.inferred.shapes[name])
                stacked[name] = v
