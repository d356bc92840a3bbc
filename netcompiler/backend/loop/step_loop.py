"""The `tf.while_loop` over the step layers of a rec unit: its initial state, the condition,
the body (one step of every step layer, a beam step at every search choice) and the stacked
outputs.

Loop variables: `t`, and a dict with the `prev:` values of in-loop layers read through `prev:`,
the per-layer state of stateful layers (`rnn_cell`: (c, h) / (h,), `self_attention`:
preallocated key/value buffers [B, T_max, H, d], `cum_concat`: the frames so far
[B, T_max, ...]), one TensorArray per stacked layer (required in-loop layers and those read
after the loop), `ended` and `length`, and while searching the beam `scores` and a TensorArray
of beam back-pointers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from netcompiler.backend.loop.beam import beam_step, finish_search, initial_scores, reorder_by_beam
from netcompiler.backend.loop.step_inputs import StepInputs
from netcompiler.backend.loop.tensors import relax, relax_batch, static_spec, to_batch_major
from netcompiler.backend.loop.unit_traits import is_choice, is_stateful, masked_scope, unit_rule
from netcompiler.frontend.network import Layer


@dataclass
class StepState:
    """The values of one step while its layers run: `cur` (outputs so far), `prev` (the
    previous step's outputs), `states` (layer states, updated as layers run), `old_states`
    (the states at the start of the step: kept by masked computations where masked out), the
    `ended` flags and `length`s, the beam `scores`, the step's axis `lengths` (a layer's new
    axis, e.g. of `cum_concat`, is seen by the layers after it) and `flat_bp`, the back-pointers
    of the step composed over its search choices (None before the first)."""

    t: Any
    prev: dict
    states: dict
    old_states: dict
    ended: Any
    length: Any
    scores: Any
    lengths: dict
    cur: dict = field(default_factory=dict)
    flat_bp: Any = None

    @classmethod
    def start(cls, t, loop_vars: dict, step_lengths: dict) -> StepState:
        return cls(
            t,
            dict(loop_vars["prev"]),
            dict(loop_vars["state"]),
            dict(loop_vars["state"]),
            loop_vars["ended"],
            loop_vars["length"],
            loop_vars.get("scores"),
            dict(step_lengths),
        )


class StepLoop:
    """The loop of one run of a unit (`inputs`: `RecInputs`, `setup`: a measured `LoopSetup`,
    `outside`: the `OutsideLayers` computed before it, `initial`: `InitialOutputs`)."""

    def __init__(self, inputs, setup, outside, initial):
        self.inputs = inputs
        self.setup = setup
        self.initial = initial
        self.shapes = inputs.inferred.shapes
        self.batch_beam = setup.B * setup.K  # B*K
        # lengths seen by in-loop layers (tiled for the beam)
        self.step_lengths = {
            d: (tf.repeat(seq_lens, setup.K, axis=0) if setup.K > 1 else seq_lens)
            for d, seq_lens in inputs.dim_lengths.items()
        }
        self.step_inputs = StepInputs(inputs, setup, outside)
        self.stack_names = self._stacked_layers()
        self.specs = {
            layer.name: static_spec(self.shapes[layer.name]) for layer in setup.plan.steps
        }
        self.end_driven = not setup.known_length
        self.end_layer = inputs.unit.layers.get("end")
        self.include_eos = bool(inputs.rec.opts.get("include_eos", False))

    def _stacked_layers(self) -> list[str]:
        """The layers stacked over the loop: required in-loop layers, the in-loop layers read
        after the loop (+ the search choice for the n-best labels)."""
        plan, unit, in_loop = self.setup.plan, self.inputs.unit, self.step_inputs.in_loop
        names = [
            unit.layers[n].name
            for n in sorted(self.setup.required)
            if n in unit.layers and unit.layers[n].name in in_loop
        ]
        names += sorted(plan.after_inputs - set(names))
        if self.setup.beam_search and plan.search_choice.name not in names:
            names.append(plan.search_choice.name)
        return names

    # -- the initial state ----------------------------------------------------------------------
    def initial_vars(self) -> dict:
        """The loop variables at step 0 (besides `t`)."""
        setup, BK = self.setup, self.batch_beam
        prev0 = {
            n: relax(self.initial.of(self.inputs.net.network.layers[n], BK), self.specs[n])
            for n in sorted(setup.plan.prev_needed)
        }
        state0 = {}
        for layer in setup.plan.steps:
            if is_stateful(self.inputs.net, layer):
                state0[layer.name] = self._initial_state(layer)
        ta_size = setup.max_len if not self.end_driven else 0
        tas0 = {
            n: tf.TensorArray(
                tf.as_dtype(self.shapes[n].dtype),
                size=ta_size,
                dynamic_size=self.end_driven,
                element_shape=tf.TensorShape(self.specs[n]),
            )
            for n in self.stack_names
        }
        lv0 = {
            "prev": prev0,
            "state": state0,
            "tas": tas0,
            "ended": relax(tf.zeros([BK], tf.bool), [None]),
            "length": relax(tf.zeros([BK], tf.int32), [None]),
        }
        if setup.beam_search:
            lv0["scores"] = relax(initial_scores(setup.B, setup.K), [None])
            lv0["bp"] = tf.TensorArray(
                tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None])
            )
        return lv0

    def _initial_state(self, layer: Layer):
        """The state a stateful layer starts with (its rule's `initial_state`, given its
        `initial_state` option's loop-invariant values)."""
        inputs, invariants = self.inputs, self.step_inputs.invariants
        init_inputs = [
            (sub, invariants[ref.node], inputs.outer_shape(ref))
            for sub, ref in inputs.net.graph.refs.get(layer.name, [])
            if sub[0] == "initial_state" and ref.node in invariants
        ]
        ctx, rule = inputs.net.make_context(
            layer,
            init_inputs,
            self.shapes[layer.name],
            dict(self.step_lengths),
            inputs.training,
            in_rec=True,
            loop_dim=inputs.loop_dim,
        )
        st = rule.initial_state(ctx, self.batch_beam, self.setup.max_len)
        return tf.nest.map_structure(relax_batch, st)

    # -- one step -------------------------------------------------------------------------------
    def cond(self, t, lv):
        c = t < self.setup.max_len
        if self.end_driven and self.end_layer is not None:
            c = tf.logical_and(c, tf.logical_not(tf.reduce_all(lv["ended"])))
        return c

    def body(self, t, lv):
        state = StepState.start(t, lv, self.step_lengths)
        for layer in self.setup.plan.steps:
            name = layer.name
            if name in self.step_inputs.search_names:
                self._search_step(layer, state)
            elif is_choice(layer):  # teacher forcing inside the loop
                target = self.step_inputs.frame(f"data:{layer.opts.get('target')}", t)
                state.cur[name] = relax(target, self.specs[name])
            else:
                state.cur[name] = relax(self._layer_step(layer, state), self.specs[name])
        new = self._next_vars(state, lv)  # the step's ops before the counter's (graph as before)
        return t + 1, new

    def _search_step(self, layer: Layer, state: StepState) -> None:
        """A search choice: prune the beam and let the step's values follow it."""
        src = self.step_inputs.source(layer, state.t, state.cur, state.prev)
        label, state.scores, bp = beam_step(
            src,
            state.scores,
            state.ended,
            self.setup.B,
            self.setup.K,
            layer.opts.get("input_type", "prob"),
        )
        # back-pointers of the step: composed over the choices of the unit
        state.flat_bp = bp if state.flat_bp is None else tf.gather(state.flat_bp, bp)
        reorder_by_beam(state, bp, self.shapes)
        state.cur[layer.name] = relax(label, self.specs[layer.name])

    def _layer_step(self, layer: Layer, state: StepState):
        """One step of a layer; updates its state (or its masked unit's states)."""
        inputs, name, t = self.inputs, layer.name, state.t
        layer_inputs = [
            (sub,) + self.step_inputs.read(ref, t, state.cur, state.prev)
            for sub, ref in inputs.net.graph.refs.get(name, [])
        ]
        ctx, rule = inputs.net.make_context(
            layer,
            layer_inputs,
            self.shapes[name],
            state.lengths,
            inputs.training,
            in_rec=True,
            loop_dim=inputs.loop_dim,
            step_seed=inputs.step_seed,
            step=t,
        )
        ctx.step = t
        ctx.max_steps = self.setup.max_len
        with tf.name_scope(layer.local_name.replace(":", "_")):
            if masked_scope(layer):
                out = rule.call_masked_step(ctx, state.prev[name])
                _keep_states_where_masked(
                    inputs.net.network.layers, name, tf.cast(ctx.ref("mask"), tf.bool), state
                )
            elif name in state.states:
                out, new_state = rule.call_step(ctx, state.states[name])
                state.states[name] = tf.nest.map_structure(relax_batch, new_state)
            else:
                out = rule.call(ctx)
        return out

    def _next_vars(self, state: StepState, lv: dict) -> dict:
        """The loop variables after the step."""
        t, cur = state.t, state.cur
        new = {
            "prev": {n: cur[n] for n in state.prev},
            "state": state.states,
            "tas": {n: ta.write(t, cur[n]) for n, ta in lv["tas"].items()},
        }
        ended, length = self._ended_and_length(state)
        new["ended"], new["length"] = relax(ended, [None]), relax(length, [None])
        if self.setup.beam_search:
            new["scores"] = relax(state.scores, [None])
            flat_bp = state.flat_bp if state.flat_bp is not None else tf.range(self.batch_beam)
            new["bp"] = lv["bp"].write(t, flat_bp)
        return new

    def _ended_and_length(self, state: StepState):
        """`ended` and `length` after the step: a hypothesis ends when its `end` layer fires
        (its length counts the end frame with `include_eos`); a known-length loop only counts."""
        t, ended, length, end_layer = state.t, state.ended, state.length, self.end_layer
        if self.end_driven and end_layer is not None and end_layer.name in state.cur:
            end_now = tf.reshape(tf.cast(state.cur[end_layer.name], tf.bool), [-1])
            fired = tf.logical_and(end_now, tf.logical_not(ended))
            length = tf.where(
                ended, length, tf.where(fired, t + (1 if self.include_eos else 0), t + 1)
            )
            ended = tf.logical_or(ended, end_now)
        else:
            length = tf.where(ended, length, t + 1)
        return ended, length

    # -- the loop -------------------------------------------------------------------------------
    def run(self):
        """Run the loop; returns (the stacked layers [B, T_loop, ...] by name, the loop
        lengths [B]); while searching those of the best hypothesis."""
        setup, rec = self.setup, self.inputs.rec
        lv0 = self.initial_vars()
        with tf.name_scope(rec.name.replace("/", "_") + "_loop"):
            _, lv = tf.while_loop(
                self.cond, self.body, (tf.constant(0), lv0), maximum_iterations=setup.max_len
            )
        if setup.beam_search:
            return finish_search(lv, self.stack_names, self.shapes, setup, rec)
        stacked = {
            n: to_batch_major(lv["tas"][n].stack(), self.shapes[n]) for n in self.stack_names
        }
        lengths = setup.lengths if setup.known_length else lv["length"]
        return stacked, lengths


def _keep_states_where_masked(layers: dict, name: str, keep, state: StepState) -> None:
    """The states of the unit of the masked computation `name` where `keep` (the mask) is
    false: their values at the start of the step (a state that grows, through its rule's
    `keep_state`)."""
    for n in [n for n in state.states if n.startswith(name + "/")]:
        rule = unit_rule(layers[n])
        if rule.state_grows:
            state.states[n] = rule.keep_state(keep, state.states[n], state.old_states[n])
            continue
        state.states[n] = tf.nest.map_structure(
            lambda new, old: tf.where(
                tf.reshape(keep, [-1] + [1] * (len(new.shape) - 1)), new, old
            ),
            state.states[n],
            state.old_states[n],
        )
