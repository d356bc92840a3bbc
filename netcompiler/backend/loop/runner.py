"""Decoder loops: `rec` layers whose `unit` is a sub-network, run step by step.

`run_rec` is called by `CompiledNetwork.forward` (inside its tf.function) for every rec layer
with a unit dict. It

1. plans the unit (`plan_unit`): which unit layers are needed (the unit's `output`, fetched
   sub-layers, `end` when the loop length is not known), and which of them can be *moved out* of
   the loop: a layer that is not on a recurrence (a cycle through `prev:`), not a search choice
   and does not depend on one is computed once over the whole loop axis before the loop
   (RETURNN's optimisation; `optimize_move_layers_out: false` turns it off). Its per-frame inputs
   (`data:source`, `data:KEY`, `prev:` of another moved-out layer, a teacher-forced `choice`) then
   carry the loop axis; layers that read nothing per frame are loop invariant (computed once,
   no loop axis).
   Without search and with a known loop length, in-loop layers the loop itself does not need
   (nothing that stays in the loop reads them, directly or through `prev:`; no per-step state;
   classes whose rule is `position_wise`) are moved out *after* the loop: computed once
   over the stacked outputs of the in-loop layers they read, e.g. the `output_prob` softmax of a
   teacher-forced attention decoder. While searching, the choice needs them step by step.
   `unit_placement` tells where each layer runs.
2. runs the remaining layers in a `tf.while_loop` (none at all if nothing remains). Loop state:
   `t`, the `prev:` values of in-loop layers read through `prev:`, the per-layer state of stateful
   layers (`rnn_cell`: (c, h) / (h,), `self_attention`: preallocated key/value buffers
   [B, T_max, H, d], `cum_concat`: the frames so far [B, T_max, ...]), one TensorArray per
   stacked layer (required in-loop layers and those read
   after the loop), and for search/end-driven loops
   `ended`, `length` (and beam `scores`, and a TensorArray of beam back-pointers).
3. stacks the results over the loop: [B, T_loop, ...], registers the loop lengths and computes
   the layers moved out after the loop.

Loop length: the rec input's time axis, or the target's lengths (teacher forcing), or -- when the
loop axis has no lengths (searching) -- until every hypothesis' `end` layer fired, at most
`max_seq_len` steps.

Search: the batch becomes B*K (K = beam size); encoder (`base:`) values and lengths are repeated
K times. At the search `choice` every value computed so far in the step, every `prev:` value and
every layer state is reordered by the beam back-pointers. Ended hypotheses are kept with a fixed
score (one continuation with log-prob 0). Beam pruning ranks by the summed log-probabilities; the
final ranking divides by the hypothesis length when `length_normalization` (default) is set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import tensorflow as tf

from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, Dim, Shape
from netcompiler.core.errors import Unsupported
from netcompiler.layers import get_rule
from netcompiler.layers.rec import stacked_shape
from netcompiler.frontend.network import Layer, Ref
from netcompiler.frontend.shapes import concat_features

# What the loop needs to know about a layer class is a trait of its rule
# (`netcompiler.core.layer_rule.LayerRule`): `stateful` / `carries_state` (a per-step state),
# `step_indexed`, `loop_only`, `position_wise` (may run after the loop), `chooses_labels`
# (the search / teacher-forced `choice`) and `masked_step`.
DEFAULT_MAX_SEQ_LEN = 256


# -- shapes --------------------------------------------------------------------------------------
def _loop_axis(shape: Shape, loop_dim: Dim) -> int:
    return shape.index(loop_dim)


def _spec(shape: Shape) -> list:
    """Static shape of a tensor of `shape`: batch and time axes unknown."""
    return [d.size if d.kind in (FEATURE, SPATIAL) else None for d in shape.dims]


def _relax(x, spec):
    """`x` with exactly the static shape `spec` (keeps while_loop shapes stable)."""
    return tf.compat.v1.placeholder_with_default(x, spec)


def _relax_like(x):
    """Relax the first (batch) axis of a state tensor."""
    spec = x.shape.as_list()
    if spec:
        spec[0] = None
    return _relax(x, spec)


def _rule(layer: Layer):
    """The rule of a unit layer (compiled, so its class has one)."""
    return get_rule(layer.layer_class)


def is_choice(layer: Layer) -> bool:
    """A label decision (`chooses_labels`): searched, or teacher-forced to its target."""
    return _rule(layer).chooses_labels


def is_stateful(net, layer: Layer) -> bool:
    """A unit layer that carries a state from step to step: a `stateful` class whose rule says
    this layer `carries_state` (e.g. one step of `self_attention` or of a cell over a per-step
    input without a time axis; over an input with a time axis the layer runs over that axis in
    every step, no state carried)."""
    rule = _rule(layer)
    return rule.stateful and rule.carries_state(layer.opts, net.inferred.shapes[layer.name])


def masked_scope(layer: Layer) -> bool:
    """A `masked_step` layer (`masked_computation`; not its synthetic input `NAME/data:data`):
    inside a loop its unit's layers `NAME/...` run per step and it keeps the previous output and
    unit state where the mask is false."""
    return _rule(layer).masked_step and layer.subnet is not None


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where the needed layers of a unit run (full layer names): `before` the loop (moved out,
    computed once over the loop axis or loop invariant), `in_loop` (step by step) and `after`
    the loop (computed once over the stacked outputs of the in-loop layers they read)."""
    before: frozenset[str]
    in_loop: frozenset[str]
    after: frozenset[str]


@dataclass
class UnitPlan:
    rec: Layer
    loop_dim: Dim
    order: list[Layer]  # needed unit layers, dependency order
    #: the layers not moved out before the loop: run step by step (`steps`) or after the loop
    #: over the stacked steps (`after`)
    in_loop: list[Layer]
    moved_out: list[Layer]  # computed before the loop, dependency order
    varying: set[str] = field(default_factory=set)  # moved-out layers that carry the loop axis
    #: the choice whose labels are the search result (`output` if it is a choice, else the last)
    search_choice: Layer | None = None
    #: every choice of the unit while searching, dependency order (each one is a beam step)
    search_choices: list[Layer] = field(default_factory=list)
    prev_needed: set[str] = field(default_factory=set)  # in-loop layers read via prev: in loop
    #: computed after the loop over the stacked in-loop outputs (dependency order, prev: edges
    #: included); every one of them carries the loop axis
    after: list[Layer] = field(default_factory=list)
    #: in-loop layers read by after-loop layers (stacked over the loop for them)
    after_inputs: set[str] = field(default_factory=set)

    @property
    def steps(self) -> list[Layer]:
        """The layers run step by step inside the tf.while_loop, dependency order."""
        after = {l.name for l in self.after}
        return [l for l in self.in_loop if l.name not in after]

    @property
    def step_names(self) -> set[str]:
        return {l.name for l in self.steps}

    @property
    def placement(self) -> Placement:
        return Placement(frozenset(l.name for l in self.moved_out),
                         frozenset(self.step_names),
                         frozenset(l.name for l in self.after))


def plan_unit(net, rec: Layer, required_locals, search: bool, known_length: bool = True
              ) -> UnitPlan:
    """Which needed unit layers run before, inside and after the loop. Moving layers out after
    the loop needs the whole loop run first: only without search (the choice needs its inputs
    step by step) and with a known loop length (no `end` decides it step by step)."""
    unit = rec.unit
    names = {l.name for l in unit.layers.values()}
    for l in unit.layers.values():
        if l.unit is not None:  # a validation error (shape.nested-rec)
            raise Unsupported(f"`{l.name}`: a rec unit inside a rec unit is not supported")
    loop_dim = net.inferred.loop_dims[rec.name]
    # the unit's dependency graph (prev: edges included); a teacher-forced choice is the target
    # frame and does not read its input, so its incoming edges are cut
    g = nx.DiGraph(net.graph.g.subgraph(names))
    if not search:
        for l in unit.layers.values():
            if is_choice(l):
                g.remove_edges_from(list(g.in_edges(l.name)))
    required = {unit.layers[n].name for n in required_locals if n in unit.layers}
    needed = set(required)
    for n in required:
        needed |= nx.ancestors(g, n)
    order = [net.network.layers[n] for n in net.order if n in needed]
    choices = [l for l in order if is_choice(l)]
    search_choice = None
    search_choices = choices if search else []
    if search and choices:
        # several choices: each one prunes the beam in turn (in dependency order)
        search_choice = next((l for l in choices if l.local_name == "output"), choices[-1])
    sub = g.subgraph(needed)
    if not rec.opts.get("optimize_move_layers_out", True):
        in_loop = set(needed)
    else:
        seeds = set()
        for comp in nx.strongly_connected_components(sub):
            if len(comp) > 1 or any(sub.has_edge(n, n) for n in comp):
                seeds |= comp  # a recurrence through prev:
        seeds |= {l.name for l in search_choices}
        # a masked computation and the layers of its unit stay in the loop (the unit's state
        # and output are kept where the mask is false)
        for l in order:
            if masked_scope(l):
                seeds |= {l.name} | {n for n in needed if n.startswith(l.name + "/")}
        for l in order:
            if _rule(l).loop_only or net.inferred.shapes[l.name].has(loop_dim):
                seeds.add(l.name)
            elif not known_length and is_stateful(net, l):
                seeds.add(l.name)  # moved out, a cell would need the loop lengths
        in_loop = set(seeds)
        for n in seeds:
            in_loop |= nx.descendants(sub, n)
    while True:
        # moved-out layers have no cycle through prev:, so they can be ordered with prev: edges
        out_names = [l.name for l in order if l.name not in in_loop]
        rank = {n: i for i, n in enumerate(out_names)}
        out_order = nx.lexicographical_topological_sort(g.subgraph(out_names), key=rank.get)
        plan = UnitPlan(rec, loop_dim, order, [l for l in order if l.name in in_loop],
                        [net.network.layers[n] for n in out_order], search_choice=search_choice,
                        search_choices=list(search_choices))
        for l in plan.moved_out:
            varying = _rule(l).step_indexed or is_choice(l)
            for _, ref in net.graph.refs.get(l.name, []):
                if ref.kind in ("source", "step") or (ref.kind == "extern" and ref.frame):
                    varying = True
                elif ref.kind == "layer" and ref.target.name in names:
                    if ref.prev or ref.target.name in plan.varying:
                        varying = True
            if varying:
                plan.varying.add(l.name)
        # a stateful layer reading nothing per frame still changes its state every step: it
        # stays in the loop (moved out it would be computed once, without a loop axis)
        stuck = {l.name for l in plan.moved_out
                 if l.name not in plan.varying and is_stateful(net, l)}
        if not stuck:
            break
        for n in stuck:
            in_loop |= {n} | nx.descendants(sub, n)
    if rec.opts.get("optimize_move_layers_out", True) and not search and known_length:
        after = _after_loop_layers(net, sub, order, in_loop, loop_dim)
        if after:
            rank = {l.name: i for i, l in enumerate(order)}
            after_order = nx.lexicographical_topological_sort(g.subgraph(after), key=rank.get)
            plan.after = [net.network.layers[n] for n in after_order]
            steps = plan.step_names
            for l in plan.after:
                for _, ref in net.graph.refs.get(l.name, []):
                    if ref.kind == "layer" and ref.target.name in steps:
                        plan.after_inputs.add(ref.target.name)
    steps = plan.step_names
    for l in plan.steps:
        for _, ref in net.graph.refs.get(l.name, []):
            if ref.kind == "layer" and ref.prev and ref.target.name in steps:
                plan.prev_needed.add(ref.target.name)
        if masked_scope(l):  # where the mask is false: its previous output
            plan.prev_needed.add(l.name)
    return plan


def _after_loop_layers(net, sub, order: list[Layer], in_loop: set[str], loop_dim: Dim) -> set[str]:
    """In-loop layers that the loop itself does not need: not on a recurrence, no per-step state,
    not step indexed, `position_wise`, and no layer that stays in the loop
    reads them (directly or through `prev:`). They are computed after the loop."""
    loop_sub = sub.subgraph(in_loop)
    pinned = set()
    for comp in nx.strongly_connected_components(loop_sub):
        if len(comp) > 1 or any(loop_sub.has_edge(n, n) for n in comp):
            pinned |= comp  # a recurrence through prev:
    for l in order:
        if l.name in in_loop and (not _rule(l).position_wise
                                  or net.inferred.shapes[l.name].has(loop_dim)):
            pinned.add(l.name)
    core = set(pinned)
    for n in pinned:
        core |= nx.ancestors(loop_sub, n)  # what the pinned layers read (prev: included)
    return set(in_loop) - core


def unit_placement(net, rec_name: str, search: bool = False, fetch=()) -> Placement:
    """Where the needed layers of the unit of `rec_name` run (`Placement`), for fetching its
    output and the unit layers `fetch` (local names): with the choice's target given (teacher
    forcing, `search=False`) or while searching."""
    rec = net.network.layers[rec_name]
    searching = bool(search) and has_search_choice(rec)
    loop_dim = net.inferred.loop_dims[rec.name]
    own = set()
    for sub, ref in net.graph.refs.get(rec.name, []):
        if sub[0] == "from":
            shape = (net.inferred.extern[ref.target] if ref.kind == "extern"
                     else net.inferred.shapes[ref.target.name])
            own |= set(shape.time_dims)
    own |= size_target_dims(net, rec)
    known_length = not searching or loop_dim in own
    required = {"output"} | set(fetch)
    if not known_length and "end" in rec.unit.layers:
        required.add("end")
    return plan_unit(net, rec, required, searching, known_length).placement


def size_target_dims(net, rec: Layer, values=None) -> set:
    """The time axis of the rec layer's `size_target` (if fed, when `values` are given)."""
    key = rec.opts.get("size_target")
    shape = net.inferred.extern.get(key) if isinstance(key, str) else None
    if shape is None or shape.time is None or (values is not None and f"data:{key}" not in values):
        return set()
    return {shape.time}


def has_search_choice(rec: Layer) -> bool:
    return rec.unit is not None and any(is_choice(l) for l in rec.unit.layers.values())


def choice_targets(rec: Layer) -> set[str]:
    return {l.opts.get("target") for l in rec.unit.layers.values() if is_choice(l)}


def choice_layer(rec: Layer) -> Layer:
    """The (first) choice layer of the unit of `rec` (a rec layer with `has_search_choice`)."""
    return next(l for l in rec.unit.layers.values() if is_choice(l))


def search_rec_layers(network) -> list[Layer]:
    """The rec layers of the network (not inside a rec unit) whose unit has a choice: the
    decoders beam search can run."""
    return [l for l in network.layers.values() if not l.scope.in_rec and has_search_choice(l)]


# -- running -------------------------------------------------------------------------------------
def run_rec(net, rec: Layer, values: dict, dim_lengths: dict, training: bool,
            fetch_locals=(), search: dict | None = None, step_seed=None):
    """Run the unit of `rec`; returns its stacked output. Fetched sub-layers are put into
    `values` under their full names, stacked [B, T_loop, ...]; the loop lengths go into
    `dim_lengths[loop_dim]`. `search`: None (search iff a choice's target is not given) or
    {"beam_size": K or None, "n_best": N, "results": {}} (forced search; the n-best labels,
    lengths and scores go into results[rec name])."""
    return _Runner(net, rec, values, dim_lengths, training, fetch_locals, search,
                   step_seed).run()


class _Runner:
    def __init__(self, net, rec, values, dim_lengths, training, fetch_locals, search,
                 step_seed=None):
        self.net = net
        self.step_seed = step_seed
        self.rec = rec
        self.values = values
        self.dim_lengths = dim_lengths
        self.training = training
        self.inferred = net.inferred
        self.loop_dim: Dim = net.inferred.loop_dims[rec.name]
        self.unit = rec.unit
        self.search_opts = search
        targets = choice_targets(rec)
        self.searching = has_search_choice(rec) and (
            search is not None or any(f"data:{k}" not in values for k in targets))
        self.known_length = self.loop_dim in dim_lengths and not (
            self.searching and self.loop_dim not in self._own_time_dims())
        required = {"output"} | set(fetch_locals)
        if not self.known_length and "end" in self.unit.layers:
            required.add("end")
        self.fetch_locals = set(fetch_locals)
        self.plan = plan_unit(net, rec, required, self.searching, self.known_length)
        self.required = required

    def _own_time_dims(self) -> set:
        """Time axes given by the rec layer's own input (the loop over the input frames), and
        the axis of `size_target` when that is fed (it sets the length also in search)."""
        shape = self._source_shape()
        own = set(shape.time_dims) if shape is not None else set()
        return own | size_target_dims(self.net, self.rec, self.values)

    def _max_seq_len(self):
        """`max_seq_len` as an int32 scalar: a number, or an expression over
        `max_len_from('LAYER')` (the longest sequence of that layer's time axis)."""
        from netcompiler.frontend.seq_len_expr import evaluate, parse

        value = self.rec.opts.get("max_seq_len")
        if not isinstance(value, str):
            return tf.constant(int(value or DEFAULT_MAX_SEQ_LEN), tf.int32)
        refs = {ref.text: ref for sub, ref in self.net.graph.refs.get(self.rec.name, [])
                if sub[0] == "max_seq_len"}

        def max_len(text):
            ref = refs.get(text) or refs.get(text[len("base:"):] if text.startswith("base:")
                                              else text)
            if ref is None:  # written with base: in the config, resolved without it
                ref = next(r for t, r in refs.items() if text.endswith(t))
            shape = self._outer_shape(ref)
            return self._dim_size(shape.time)

        return tf.maximum(evaluate(parse(value), max_len, seq_len_tf_ops()), 1)

    # -- inputs -----------------------------------------------------------------------------
    def _source_refs(self):
        return [ref for sub, ref in self.net.graph.refs.get(self.rec.name, []) if sub[0] == "from"]

    def _source_shape(self) -> Shape | None:
        refs = self._source_refs()
        if not refs:
            return None
        shapes = [self._outer_shape(r) for r in refs]
        return concat_features(shapes, [r.text for r in refs])

    def _source_value(self):
        refs = self._source_refs()
        vals = [self.values[r.node] for r in refs]
        return vals[0] if len(vals) == 1 else tf.concat(vals, axis=-1)

    def _outer_shape(self, ref: Ref) -> Shape:
        from netcompiler.frontend.shapes import read_shape
        return read_shape(self.inferred, ref)

    def _batch_size(self):
        # the batch the rec layer runs on (another one than `B` over the chunks of a
        # `time_chunking`): a value on that batch axis, else any batched value
        out = self.inferred.shapes.get(self.rec.name)
        want = next((d for d in out.dims if d.kind == "batch"), None) if out else None
        found = None
        for key, v in self.values.items():
            shape = (self.inferred.extern.get(key[5:]) if key.startswith("data:")
                     else self.inferred.shapes.get(key))
            if shape is not None and shape.has_batch and hasattr(v, "shape"):
                axis = shape.batch_axis
                if want is None or shape.dims[axis] is want:
                    return tf.shape(v)[axis]
                if found is None:
                    found = tf.shape(v)[axis]
        if found is not None:
            return found
        raise ValueError(f"`{self.rec.name}`: cannot tell the batch size (no batched input)")

    def _dim_size(self, dim: Dim):
        """Run-time size of a dynamic axis, from a value that has it."""
        for key, v in self.values.items():
            shape = (self.inferred.extern.get(key[5:]) if key.startswith("data:")
                     else self.inferred.shapes.get(key))
            if shape is not None and shape.has(dim) and hasattr(v, "shape"):
                return tf.shape(v)[shape.index(dim)]
        if dim in self.dim_lengths:
            return tf.reduce_max(self.dim_lengths[dim])
        raise ValueError(f"`{self.rec.name}`: unknown size of axis {dim}")

    # -- main ---------------------------------------------------------------------------------
    def run(self):
        plan = self.plan
        self.B = self._batch_size()
        self.K = 1
        if self.searching and plan.search_choice is not None:
            k = (self.search_opts or {}).get("beam_size")
            self.K = int(k if k is not None else plan.search_choice.opts.get("beam_size", 1))
        if self.known_length:
            self.lengths = self.dim_lengths[self.loop_dim]
            self.T = self._dim_size(self.loop_dim)
            self.max_len = self.T
        else:
            self.max_len = self._max_seq_len()
            self.T = None
        self.out_vals: dict[str, Any] = {}
        self._prev_seqs: dict[str, Any] = {}
        #: layers whose value in `out_vals` carries the loop axis (moved out before or after the
        #: loop, or stacked in-loop layers read after the loop)
        self.varying: set[str] = set(plan.varying)
        with tf.name_scope(self.rec.name.replace("/", "_") + "_moved_out"):
            for layer in plan.moved_out:
                self.out_vals[layer.name] = self._compute_moved_out(layer)
        stacked: dict[str, Any] = {}
        result_lengths = self.lengths if self.known_length else None
        if plan.steps:
            stacked, result_lengths = self._run_loop()
        if result_lengths is not None and self.loop_dim not in self.dim_lengths:
            self.dim_lengths[self.loop_dim] = result_lengths
        if plan.after:
            for name in plan.after_inputs:
                self.out_vals[name] = stacked[name]
                self.varying.add(name)
            with tf.name_scope(self.rec.name.replace("/", "_") + "_after_loop"):
                for layer in plan.after:
                    self.varying.add(layer.name)
                    self.out_vals[layer.name] = self._compute_moved_out(layer)
        for local in self.required:
            if local not in self.unit.layers:
                continue
            name = self.unit.layers[local].name
            if name in stacked:
                continue
            if name in self.out_vals:
                v = self.out_vals[name]
                if name not in self.varying:
                    v = self._broadcast_loop(v, self.inferred.shapes[name])
                stacked[name] = v
        for local in self.fetch_locals:
            name = self.unit.layers[local].name
            self.values[name] = stacked[name]
        return stacked[self.unit.layers["output"].name]

    # -- moved out ----------------------------------------------------------------------------
    def _broadcast_loop(self, v, shape: Shape):
        at = 1 if shape.dims and shape.dims[0].kind == BATCH else 0
        T = self.T if self.T is not None else tf.reduce_max(self.dim_lengths[self.loop_dim])
        return tf.repeat(tf.expand_dims(v, at), T, axis=at)

    def _unit_seq(self, name: str):
        """(value, shape) of a moved-out unit layer, with the loop axis if it varies."""
        shape = self.inferred.shapes[name]
        if name in self.varying:
            return self.out_vals[name], stacked_shape(shape, self.loop_dim)
        return self.out_vals[name], shape

    def _prev_seq(self, name: str):
        """prev:x over the loop axis for an x computed outside the loop (or stacked after
        it): [init, x_0, ..., x_{T-2}]."""
        if name not in self._prev_seqs:
            shape = self.inferred.shapes[name]
            v = self.out_vals[name]
            if name not in self.varying:
                v = self._broadcast_loop(v, shape)
            st = stacked_shape(shape, self.loop_dim)
            axis = _loop_axis(st, self.loop_dim)
            init = self._initial_output(self.net.network.layers[name], self.B)
            init = tf.expand_dims(tf.cast(init, v.dtype), axis)
            n = tf.shape(v)[axis]
            body = tf.gather(v, tf.range(n - 1), axis=axis)
            self._prev_seqs[name] = tf.concat([init, body], axis=axis)
        shape = self.inferred.shapes[name]
        return self._prev_seqs[name], stacked_shape(shape, self.loop_dim)

    def _compute_moved_out(self, layer: Layer):
        """A layer computed once outside the loop: moved out before it, or after it (then its
        in-loop inputs are stacked over the loop)."""
        unit_names = {l.name for l in self.unit.layers.values()}
        if is_choice(layer):  # teacher forcing: the target sequence
            return self._target_value(layer)
        varying = layer.name in self.varying
        inputs = []
        for sub, ref in self.net.graph.refs.get(layer.name, []):
            if ref.kind == "layer" and ref.target.name in unit_names:
                if ref.prev:
                    v, s = self._prev_seq(ref.target.name)
                else:
                    v, s = self._unit_seq(ref.target.name)
                    if varying and ref.target.name not in self.varying and s.has_batch:
                        v, s = self._broadcast_loop(v, s), stacked_shape(s, self.loop_dim)
            elif ref.kind == "source":
                v, s = self._source_value(), self._source_shape()
            elif ref.kind == "step":  # `:i` over the whole loop: 0 .. T-1
                T = self.T if self.T is not None else tf.reduce_max(
                    self.dim_lengths[self.loop_dim])
                v, s = tf.range(T), Shape((self.loop_dim,), None, "int32")
            else:
                v, s = self.values[ref.node], self._outer_shape(ref)
            inputs.append((sub, v, s))
        if varying and _rule(layer).concat_sources:
            # a `from` list is concatenated on the feature axis: an input of the enclosing
            # network without the loop axis (`base:x`) is repeated over it, as in every step
            n_from = sum(1 for sub, _, _ in inputs if sub[0] == "from")
            if n_from > 1:
                inputs = [(sub, self._broadcast_loop(v, s), stacked_shape(s, self.loop_dim))
                          if sub[0] == "from" and s.has_batch and not s.has(self.loop_dim)
                          else (sub, v, s) for sub, v, s in inputs]
        shape = self.inferred.shapes[layer.name]
        out_shape = stacked_shape(shape, self.loop_dim) if varying else shape
        ctx, rule = self.net.make_context(layer, inputs, out_shape, self.dim_lengths,
                                          self.training, step_seed=self.step_seed)
        with tf.name_scope(layer.local_name.replace(":", "_")):
            return rule.call(ctx)

    def _target_value(self, layer: Layer):
        key = layer.opts.get("target")
        if f"data:{key}" not in self.values:
            raise ValueError(f"`{layer.name}`: the target `{key}` is needed (teacher forcing)")
        return self.values[f"data:{key}"]

    # -- initial values -----------------------------------------------------------------------
    def _initial_output(self, layer: Layer, batch):
        if masked_scope(layer):  # a masked computation starts with its unit's initial output
            layer = layer.subnet.layers["unit"]
        shape = self.inferred.shapes[layer.name]
        init = layer.opts.get("initial_output", 0)
        if init is None or init == "zeros":
            init = 0
        elif init == "ones":
            init = 1
        elif init == "var":  # a trained variable, the same for every sequence
            var = self.net.layer_params[layer.name]["initial_output"]
            return tf.broadcast_to(var, tf.concat([[batch], tf.shape(var)], axis=0))
        elif init == "apply(0)":
            return self._apply_zero(layer, batch)
        elif isinstance(init, str):  # a layer of the enclosing network (`base:x`)
            ref = next(r for sub, r in self.net.graph.refs[layer.name]
                       if sub[0] == "initial_output")
            return self._tile(self.values[ref.node], self._outer_shape(ref))
        dims = self._run_dims(shape, batch)
        dtype = tf.as_dtype(shape.dtype)
        if dtype == tf.bool:
            return tf.fill(tf.stack(dims) if dims else [], bool(init))
        return tf.fill(tf.stack(dims) if dims else [], tf.cast(init, dtype))

    def _apply_zero(self, layer: Layer, batch):
        """`initial_output: apply(0)` (RETURNN): the layer itself, with its own variables,
        applied to all-zero `from` inputs (class 0 for sparse ones) of its per-step shapes; its
        other options (only layers outside the unit, checked by validation) keep their values.
        `batch` is B, or B*K in a beam search (then outer values are tiled)."""
        unit_names = {l.name for l in self.unit.layers.values()}
        tiled = batch is not self.B

        def zeros(shape):
            dims = self._run_dims(shape, batch)
            return tf.zeros(tf.stack(dims) if dims else [], tf.as_dtype(shape.dtype))

        inputs = []
        for sub, ref in self.net.graph.refs.get(layer.name, []):
            if ref.kind == "layer" and ref.target.name in unit_names:
                shape = self.inferred.shapes[ref.target.name]
                value = zeros(shape)
            elif ref.kind == "step":
                shape = Shape((), None, "int32")
                value = tf.zeros([], tf.int32)
            elif ref.kind == "source" or (ref.kind == "extern" and ref.frame):
                shape = (self._source_shape() if ref.kind == "source"
                         else self.inferred.extern[ref.target]).without(self.loop_dim)
                value = zeros(shape)
            else:  # a layer of the enclosing network
                shape = self._outer_shape(ref)
                value = self.values[ref.node]
                value = self._tile(value, shape) if tiled else value
                if sub[0] == "from":
                    value = tf.zeros_like(value)
            inputs.append((sub, value, shape))
        lengths = {d: (tf.repeat(l, self.K, axis=0) if tiled and self.K > 1 else l)
                   for d, l in self.dim_lengths.items()}
        ctx, rule = self.net.make_context(
            layer, inputs, self.inferred.shapes[layer.name], lengths, self.training,
            in_rec=True, loop_dim=self.loop_dim, step_seed=self.step_seed, step=0)
        ctx.max_steps = self.max_len
        with tf.name_scope(f"{layer.local_name}_apply0"):
            return rule.call(ctx)

    def _run_dims(self, shape: Shape, batch) -> list:
        """Run-time sizes of the axes of a per-step shape (batch: `batch`)."""
        dims = []
        for d in shape.dims:
            if d.kind == BATCH:
                dims.append(batch)
            elif d.kind in (FEATURE, SPATIAL):
                dims.append(d.size)
            elif d is self.loop_dim:
                dims.append(self.max_len)
            else:
                dims.append(self._dim_size(d))
        return dims

    # -- the loop -----------------------------------------------------------------------------
    def _tile(self, v, shape: Shape | None):
        """Repeat the batch entries K times (beam search)."""
        if self.K == 1 or shape is None or not shape.has_batch:
            return v
        return tf.repeat(v, self.K, axis=shape.batch_axis)

    def _run_loop(self):
        plan, net = self.plan, self.net
        K, B = self.K, self.B
        BK = B * K
        loop_dim = self.loop_dim
        unit_names = {l.name for l in self.unit.layers.values()}
        steps = plan.steps
        in_loop = plan.step_names  # run step by step (not moved out before or after the loop)
        end_driven = not self.known_length
        searching = self.searching and plan.search_choice is not None
        search_names = {l.name for l in plan.search_choices} if searching else set()
        # lengths seen by in-loop layers (tiled for the beam)
        step_lengths = {d: (tf.repeat(l, K, axis=0) if K > 1 else l)
                        for d, l in self.dim_lengths.items()}
        # per-frame sequences read inside the loop: name -> (tensor, loop axis), tiled
        frames: dict[str, tuple[Any, int]] = {}
        invariants: dict[str, Any] = {}

        def seq(key, v, shape):
            frames[key] = (self._tile(v, shape), _loop_axis(shape, loop_dim))

        for layer in steps:
            if is_choice(layer) and layer.name not in search_names:
                key = f"data:{layer.opts.get('target')}"  # teacher forcing: the target frame
                if key not in frames:
                    seq(key, self._target_value(layer), self.inferred.extern[key[5:]])
                continue
            for sub, ref in net.graph.refs.get(layer.name, []):
                if ref.kind == "layer" and ref.target.name in unit_names:
                    tname = ref.target.name
                    if tname in in_loop:
                        continue
                    if ref.prev:
                        if f"prev:{tname}" not in frames:
                            v, s = self._prev_seq(tname)
                            seq(f"prev:{tname}", v, s)
                    elif tname in plan.varying:
                        if tname not in frames:
                            v, s = self._unit_seq(tname)
                            seq(tname, v, s)
                    else:
                        invariants[tname] = self._tile(self.out_vals[tname],
                                                       self.inferred.shapes[tname])
                elif ref.kind == "source":
                    if "source" not in frames:
                        seq("source", self._source_value(), self._source_shape())
                elif ref.kind == "extern" and ref.frame:  # `data:KEY`: its current frame
                    if ref.node not in frames:
                        seq(ref.node, self.values[ref.node], self.inferred.extern[ref.target])
                elif ref.kind == "step":
                    pass  # the loop counter itself (step_ref)
                else:
                    if ref.node not in invariants:
                        invariants[ref.node] = self._tile(self.values[ref.node],
                                                          self._outer_shape(ref))

        def frame(key, t):
            v, axis = frames[key]
            return tf.gather(v, t, axis=axis)

        # stacked layers: required in-loop layers (+ the search choice for the n-best labels)
        stack_names = [self.unit.layers[n].name for n in sorted(self.required)
                       if n in self.unit.layers and self.unit.layers[n].name in in_loop]
        # in-loop layers read by layers computed after the loop
        stack_names += sorted(plan.after_inputs - set(stack_names))
        if searching and plan.search_choice.name not in stack_names:
            stack_names.append(plan.search_choice.name)
        specs = {l.name: _spec(self.inferred.shapes[l.name]) for l in steps}

        # initial loop state
        prev0 = {n: _relax(self._initial_output(net.network.layers[n], BK), specs[n])
                 for n in sorted(plan.prev_needed)}
        state0 = {}
        for layer in steps:
            if is_stateful(net, layer):
                init_inputs = [(sub, invariants[ref.node], self._outer_shape(ref))
                               for sub, ref in net.graph.refs.get(layer.name, [])
                               if sub[0] == "initial_state" and ref.node in invariants]
                ctx, rule = net.make_context(layer, init_inputs, self.inferred.shapes[layer.name],
                                             dict(step_lengths), self.training, in_rec=True,
                                             loop_dim=loop_dim)
                st = rule.initial_state(ctx, BK, self.max_len)
                state0[layer.name] = tf.nest.map_structure(_relax_like, st)
        ta_size = self.max_len if not end_driven else 0
        tas0 = {n: tf.TensorArray(tf.as_dtype(self.inferred.shapes[n].dtype), size=ta_size,
                                  dynamic_size=end_driven, element_shape=tf.TensorShape(specs[n]))
                for n in stack_names}
        lv0 = {"prev": prev0, "state": state0, "tas": tas0,
               "ended": _relax(tf.zeros([BK], tf.bool), [None]),
               "length": _relax(tf.zeros([BK], tf.int32), [None])}
        if searching:
            init_scores = tf.concat([[0.0], tf.fill([K - 1], -math.inf)], axis=0)
            lv0["scores"] = _relax(tf.tile(init_scores, [B]), [None])
            lv0["bp"] = tf.TensorArray(tf.int32, size=0, dynamic_size=True,
                                       element_shape=tf.TensorShape([None]))
        include_eos = bool(self.rec.opts.get("include_eos", False))
        end_layer = self.unit.layers.get("end")

        def cond(t, lv):
            c = t < self.max_len
            if end_driven and end_layer is not None:
                c = tf.logical_and(c, tf.logical_not(tf.reduce_all(lv["ended"])))
            return c

        def body(t, lv):
            prev = dict(lv["prev"])
            states = dict(lv["state"])
            old_states = dict(lv["state"])  # kept by masked computations where masked out
            ended, length = lv["ended"], lv["length"]
            scores = lv.get("scores")
            cur: dict[str, Any] = {}
            # lengths in this step, shared by its layers: a layer's new axis (`cum_concat`)
            # is seen by the layers after it
            lens_t = dict(step_lengths)
            flat_bp = None
            for layer in steps:
                name = layer.name
                shape = self.inferred.shapes[name]
                if searching and name in search_names:
                    src = step_source(layer, t, cur, prev)
                    label, scores, bp = self._beam_step(layer, src, scores, ended)
                    # back-pointers of the step: composed over the choices of the unit
                    flat_bp = bp if flat_bp is None else tf.gather(flat_bp, bp)
                    g = lambda x: tf.gather(x, bp, axis=0)  # noqa: E731
                    cur = {k: (g(v) if self.inferred.shapes[k].has_batch else v)
                           for k, v in cur.items()}
                    prev = {k: (g(v) if self.inferred.shapes[k].has_batch else v)
                            for k, v in prev.items()}
                    states = {k: tf.nest.map_structure(g, v) for k, v in states.items()}
                    old_states = {k: tf.nest.map_structure(g, v)
                                  for k, v in old_states.items()}
                    ended, length = g(ended), g(length)
                    cur[name] = _relax(label, specs[name])
                    continue
                if is_choice(layer):  # teacher forcing inside the loop
                    cur[name] = _relax(frame(f"data:{layer.opts.get('target')}", t), specs[name])
                    continue
                inputs = []
                for sub, ref in net.graph.refs.get(name, []):
                    inputs.append((sub,) + step_ref(ref, t, cur, prev))
                ctx, rule = net.make_context(
                    layer, inputs, shape, lens_t, self.training, in_rec=True,
                    loop_dim=loop_dim, step_seed=self.step_seed, step=t)
                ctx.step = t
                ctx.max_steps = self.max_len
                with tf.name_scope(layer.local_name.replace(":", "_")):
                    if masked_scope(layer):
                        out = rule.call_masked_step(ctx, prev[name])
                        keep = tf.cast(ctx.ref("mask"), tf.bool)
                        for n in [n for n in states if n.startswith(name + "/")]:
                            states[n] = tf.nest.map_structure(
                                lambda new, old: tf.where(
                                    tf.reshape(keep, [-1] + [1] * (len(new.shape) - 1)),
                                    new, old), states[n], old_states[n])
                    elif name in states:
                        out, new_state = rule.call_step(ctx, states[name])
                        states[name] = tf.nest.map_structure(_relax_like, new_state)
                    else:
                        out = rule.call(ctx)
                cur[name] = _relax(out, specs[name])
            new = {"prev": {n: cur[n] for n in prev}, "state": states,
                   "tas": {n: ta.write(t, cur[n]) for n, ta in lv["tas"].items()}}
            if end_driven and end_layer is not None and end_layer.name in cur:
                end_now = tf.reshape(tf.cast(cur[end_layer.name], tf.bool), [-1])
                fired = tf.logical_and(end_now, tf.logical_not(ended))
                length = tf.where(ended, length,
                                  tf.where(fired, t + (1 if include_eos else 0), t + 1))
                ended = tf.logical_or(ended, end_now)
            else:
                length = tf.where(ended, length, t + 1)
            new["ended"], new["length"] = _relax(ended, [None]), _relax(length, [None])
            if searching:
                new["scores"] = _relax(scores, [None])
                if flat_bp is None:
                    flat_bp = tf.range(BK)
                new["bp"] = lv["bp"].write(t, flat_bp)
            return t + 1, new

        def step_ref(ref, t, cur, prev):
            if ref.kind == "layer" and ref.target.name in unit_names:
                tname = ref.target.name
                s = self.inferred.shapes[tname]
                if ref.prev:
                    if tname in in_loop:
                        return prev[tname], s
                    return frame(f"prev:{tname}", t), s
                if tname in in_loop:
                    return cur[tname], s
                if tname in plan.varying:
                    return frame(tname, t), s
                return invariants[tname], s
            if ref.kind == "step":
                return t, Shape((), None, "int32")
            if ref.kind == "source":
                return frame("source", t), self._source_shape().without(loop_dim)
            if ref.kind == "extern" and ref.frame:
                shape = self.inferred.extern[ref.target]
                return frame(ref.node, t), shape.without(loop_dim)
            return invariants[ref.node], self._outer_shape(ref)

        def step_source(layer, t, cur, prev):
            """The step's `from` input of a layer, concatenated on the feature axis."""
            srcs = [step_ref(ref, t, cur, prev) for sub, ref in net.graph.refs.get(layer.name, [])
                    if sub[0] == "from"]
            vals = [v for v, _ in srcs]
            return vals[0] if len(vals) == 1 else tf.concat(vals, axis=-1)

        with tf.name_scope(self.rec.name.replace("/", "_") + "_loop"):
            t_final, lv = tf.while_loop(cond, body, (tf.constant(0), lv0),
                                        maximum_iterations=self.max_len)
        stacked = {}
        if searching:
            return self._finish_search(lv, t_final, stack_names, specs)
        for n in stack_names:
            stacked[n] = _to_batch_major(lv["tas"][n].stack(), self.inferred.shapes[n])
        lengths = self.lengths if self.known_length else lv["length"]
        return stacked, lengths

    # -- beam search --------------------------------------------------------------------------
    def _beam_step(self, layer: Layer, probs, scores, ended):
        K, B = self.K, self.B
        probs = tf.cast(probs, tf.float32)
        if layer.opts.get("input_type", "prob") == "log_prob":
            logp = probs
        else:
            logp = tf.math.log(tf.maximum(probs, 1e-30))
        C = tf.shape(logp)[-1]
        BK = tf.shape(logp)[0]
        ended_row = tf.concat([tf.zeros([BK, 1]), tf.fill([BK, C - 1], -math.inf)], axis=1)
        logp = tf.where(ended[:, None], ended_row, logp)
        cand = tf.reshape(scores[:, None] + logp, [B, K * C])
        top_scores, top_idx = tf.math.top_k(cand, k=K)
        bp = top_idx // C
        label = top_idx % C
        flat_bp = tf.reshape(tf.range(B)[:, None] * K + bp, [-1])
        return tf.reshape(label, [-1]), tf.reshape(top_scores, [-1]), flat_bp

    def _finish_search(self, lv, t_final, stack_names, specs):
        K, B = self.K, self.B
        include_eos = bool(self.rec.opts.get("include_eos", False))
        choice = self.plan.search_choice
        n_best = int((self.search_opts or {}).get("n_best", 1) or 1)
        n_best = max(1, min(n_best, K))
        scores = tf.reshape(lv["scores"], [B, K])
        lengths = tf.reshape(lv["length"], [B, K])
        ended = tf.reshape(lv["ended"], [B, K])
        rank = scores
        if choice.opts.get("length_normalization", True):
            norm_len = lengths + tf.cast(tf.logical_and(ended, not include_eos), tf.int32)
            rank = scores / tf.cast(tf.maximum(norm_len, 1), tf.float32)
        top_rank, top_k = tf.math.top_k(rank, k=n_best)  # [B, N]
        sel = tf.reshape(tf.range(B)[:, None] * K + top_k, [-1])  # [B*N]
        bps = lv["bp"].stack()  # [T, BK]
        rev = tf.reverse(bps, [0])
        after = tf.scan(lambda idx, bp_t: tf.gather(bp_t, idx), rev, initializer=sel)
        idx = tf.reverse(tf.concat([sel[None], after[:-1]], axis=0), [0])  # [T, B*N]
        sel_len = tf.gather(tf.reshape(lengths, [-1]), sel)
        sel_scores = tf.reshape(top_rank, [-1])
        raw_scores = tf.gather(tf.reshape(scores, [-1]), sel)
        stacked_n = {}
        for n in stack_names:
            vals = lv["tas"][n].stack()  # [T, BK, ...]
            picked = tf.gather(vals, idx, axis=1, batch_dims=1)  # [T, B*N, ...]
            stacked_n[n] = _to_batch_major(picked, self.inferred.shapes[n])  # [B*N, T, ...]
        best = {}
        first = tf.reshape(tf.range(B) * n_best, [-1])
        for n, v in stacked_n.items():
            best[n] = tf.gather(v, first, axis=0)
        best_len = tf.gather(sel_len, first)
        if self.search_opts is not None:
            labels = stacked_n[choice.name]
            T = tf.shape(labels)[1]
            self.search_opts.setdefault("results", {})[self.rec.name] = {
                "labels": tf.reshape(labels, [B, n_best, T]),
                "lengths": tf.reshape(sel_len, [B, n_best]),
                "scores": tf.reshape(sel_scores, [B, n_best]),
                "log_probs": tf.reshape(raw_scores, [B, n_best]),
            }
        return best, best_len


def _to_batch_major(x, per_step: Shape):
    """[T, B, ...] -> [B, T, ...] for per-step shapes with a batch axis first."""
    if per_step.dims and per_step.dims[0].kind == BATCH:
        rank = len(per_step.dims) + 1
        return tf.transpose(x, [1, 0] + list(range(2, rank)))
    return x


# -- search API -----------------------------------------------------------------------------------
def search_rec_layer(net) -> Layer:
    """The rec layer searched by `net.search`: the one the network's output depends on."""
    sg = net.graph.static_graph()
    out = net.output_name
    cands = search_rec_layers(net.network)
    if not cands:
        raise ValueError("the network has no rec unit with a `choice` layer to search")
    for l in cands:
        if l.name == out or l.name in nx.ancestors(sg, out):
            return l
    return cands[0]


def search(net, inputs, lengths=None, beam_size=None, n_best=1):
    """Beam search; per sequence the n best hypotheses, best first:
    [[{"labels": int array [len], "length": int, "score": float, "log_prob": float}, ...], ...].
    `score` is what hypotheses are ranked by (log-prob / length with length_normalization)."""
    import numpy as np

    rec = search_rec_layer(net)
    targets = choice_targets(rec)
    inputs = {k: v for k, v in inputs.items() if k not in targets}
    lengths = {k: v for k, v in (lengths or {}).items() if k in inputs}
    keys = tuple(sorted(inputs))

    def make():
        signature = list(net.input_signature(keys))

        def run(inp, lens):
            opts = {"beam_size": beam_size, "n_best": int(n_best), "results": {}}
            net.forward(inp, lens, training=False, fetch=(rec.name,), search=opts)
            return opts["results"][rec.name]

        return tf.function(run, input_signature=signature, autograph=False)

    fn = net.search_function((keys, beam_size, int(n_best)), make)
    tensors, lens = net.prepare_inputs(inputs, lengths)
    res = {k: np.asarray(v) for k, v in fn(tensors, lens).items()}
    out = []
    for b in range(res["labels"].shape[0]):
        hyps = []
        for n in range(res["labels"].shape[1]):
            L = int(res["lengths"][b, n])
            hyps.append({"labels": res["labels"][b, n, :L], "length": L,
                         "score": float(res["scores"][b, n]),
                         "log_prob": float(res["log_probs"][b, n])})
        out.append(hyps)
    return out


def seq_len_tf_ops() -> dict:
    """`max_seq_len` arithmetic (`netcompiler.frontend.seq_len_expr.evaluate`) on float32 scalars with TensorFlow (floored to int32 at the end)."""
    return {
        "num": lambda v: tf.cast(v, tf.float32),
        "+": tf.add, "-": tf.subtract, "*": tf.multiply, "/": tf.divide,
        "//": lambda a, b: tf.math.floordiv(a, b),
        "min": tf.minimum, "max": tf.maximum,
        "floor": lambda a: tf.cast(tf.math.floor(a), tf.int32),
    }
