"""The plan of a rec unit: which of its layers are needed and where each one runs -- moved out
before the loop, step by step inside it, or moved out after it. No TensorFlow.

A needed layer that is not on a recurrence (a cycle through `prev:`), not a search choice and
does not depend on one is computed once over the whole loop axis before the loop (RETURNN's
optimisation; `optimize_move_layers_out: false` turns it off). Its per-frame inputs
(`data:source`, `data:KEY`, `prev:` of another moved-out layer, a teacher-forced `choice`) then
carry the loop axis; layers that read nothing per frame are loop invariant (computed once, no
loop axis). Without search and with a known loop length, in-loop layers the loop itself does not
need (nothing that stays in the loop reads them, directly or through `prev:`; no per-step state;
classes whose rule is `position_wise`) are moved out *after* the loop: computed once over the
stacked outputs of the in-loop layers they read. While searching, the choice needs them step by
step. `unit_placement` tells where each layer runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from netcompiler.backend.loop.unit_traits import (
    has_search_choice,
    is_choice,
    is_stateful,
    masked_scope,
    size_target_dims,
    unit_rule,
)
from netcompiler.core.dims import Dim
from netcompiler.core.errors import Unsupported
from netcompiler.frontend.network import Layer


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
    """The needed layers of a unit and where each one runs."""

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
        after = {layer.name for layer in self.after}
        return [layer for layer in self.in_loop if layer.name not in after]

    @property
    def step_names(self) -> set[str]:
        return {layer.name for layer in self.steps}

    @property
    def placement(self) -> Placement:
        return Placement(
            frozenset(layer.name for layer in self.moved_out),
            frozenset(self.step_names),
            frozenset(layer.name for layer in self.after),
        )


def plan_unit(
    net, rec: Layer, required_locals, search: bool, known_length: bool = True
) -> UnitPlan:
    """Which needed unit layers run before, inside and after the loop. Moving layers out after
    the loop needs the whole loop run first: only without search (the choice needs its inputs
    step by step) and with a known loop length (no `end` decides it step by step)."""
    unit = rec.unit
    for layer in unit.layers.values():
        if layer.unit is not None:  # a validation error (shape.nested-rec)
            raise Unsupported(f"`{layer.name}`: a rec unit inside a rec unit is not supported")
    loop_dim = net.inferred.loop_dims[rec.name]
    g = _unit_graph(net, rec, search)
    required = {unit.layers[n].name for n in required_locals if n in unit.layers}
    needed = set(required)
    for n in required:
        needed |= nx.ancestors(g, n)
    order = [net.network.layers[n] for n in net.order if n in needed]
    choices = [layer for layer in order if is_choice(layer)]
    search_choices = choices if search else []
    search_choice = None
    if search and choices:
        # several choices: each one prunes the beam in turn (in dependency order)
        search_choice = next(
            (layer for layer in choices if layer.local_name == "output"), choices[-1]
        )
    sub = g.subgraph(needed)
    moves_out = rec.opts.get("optimize_move_layers_out", True)
    if not moves_out:
        in_loop = set(needed)
    else:
        in_loop = _loop_seeds(net, sub, order, needed, search_choices, loop_dim, known_length)
        for n in set(in_loop):
            in_loop |= nx.descendants(sub, n)
    while True:
        plan = _plan_for(net, g, rec, loop_dim, order, in_loop, search_choice, search_choices)
        # a stateful layer reading nothing per frame still changes its state every step: it
        # stays in the loop (moved out it would be computed once, without a loop axis)
        stuck = {
            layer.name
            for layer in plan.moved_out
            if layer.name not in plan.varying and is_stateful(net, layer)
        }
        if not stuck:
            break
        for n in stuck:
            in_loop |= {n} | nx.descendants(sub, n)
    if moves_out and not search and known_length:
        _place_after_loop(net, plan, g, sub, in_loop)
    _mark_prev_needed(net, plan)
    return plan


def _unit_graph(net, rec: Layer, search: bool) -> nx.DiGraph:
    """The unit's dependency graph (prev: edges included). A teacher-forced choice is the target
    frame and does not read its input, so its incoming edges are cut."""
    unit = rec.unit
    names = {layer.name for layer in unit.layers.values()}
    g = nx.DiGraph(net.graph.g.subgraph(names))
    if not search:
        for layer in unit.layers.values():
            if is_choice(layer):
                g.remove_edges_from(list(g.in_edges(layer.name)))
    return g


def _recurrences(graph) -> set[str]:
    """The layers of `graph` on a cycle (through prev:)."""
    found = set()
    for comp in nx.strongly_connected_components(graph):
        if len(comp) > 1 or any(graph.has_edge(n, n) for n in comp):
            found |= comp
    return found


def _loop_seeds(
    net,
    sub,
    order: list[Layer],
    needed: set[str],
    search_choices: list[Layer],
    loop_dim: Dim,
    known_length: bool,
) -> set[str]:
    """The layers that must run step by step on their own account (their descendants follow)."""
    seeds = _recurrences(sub)
    seeds |= {layer.name for layer in search_choices}
    # a masked computation and the layers of its unit stay in the loop (the unit's state
    # and output are kept where the mask is false)
    for layer in order:
        if masked_scope(layer):
            seeds |= {layer.name} | {n for n in needed if n.startswith(layer.name + "/")}
    for layer in order:
        if unit_rule(layer).loop_only or net.inferred.shapes[layer.name].has(loop_dim):
            seeds.add(layer.name)
        elif not known_length and is_stateful(net, layer):
            seeds.add(layer.name)  # moved out, a cell would need the loop lengths
    return seeds


def _plan_for(
    net,
    g,
    rec: Layer,
    loop_dim: Dim,
    order: list[Layer],
    in_loop: set[str],
    search_choice,
    search_choices: list[Layer],
) -> UnitPlan:
    """The plan with the layers `in_loop` in the loop and the others moved out before it."""
    # moved-out layers have no cycle through prev:, so they can be ordered with prev: edges
    out_names = [layer.name for layer in order if layer.name not in in_loop]
    rank = {n: i for i, n in enumerate(out_names)}
    out_order = nx.lexicographical_topological_sort(g.subgraph(out_names), key=rank.get)
    plan = UnitPlan(
        rec,
        loop_dim,
        order,
        [layer for layer in order if layer.name in in_loop],
        [net.network.layers[n] for n in out_order],
        search_choice=search_choice,
        search_choices=list(search_choices),
    )
    names = {layer.name for layer in rec.unit.layers.values()}
    for layer in plan.moved_out:
        if _reads_per_frame(net, layer, names, plan.varying):
            plan.varying.add(layer.name)
    return plan


def _reads_per_frame(net, layer: Layer, unit_names: set[str], varying: set[str]) -> bool:
    """A moved-out layer that carries the loop axis: step indexed, a choice (its target
    sequence), or reading a frame, a `prev:` or a varying unit layer."""
    found = unit_rule(layer).step_indexed or is_choice(layer)
    for _, ref in net.graph.refs.get(layer.name, []):
        if ref.kind in ("source", "step") or (ref.kind == "extern" and ref.frame):
            found = True
        elif ref.kind == "layer" and ref.target.name in unit_names:
            if ref.prev or ref.target.name in varying:
                found = True
    return found


def _place_after_loop(net, plan: UnitPlan, g, sub, in_loop: set[str]) -> None:
    """Move the in-loop layers the loop does not need out after it (`plan.after`), and note
    the in-loop layers they read (`plan.after_inputs`)."""
    after = _after_loop_layers(net, sub, plan.order, in_loop, plan.loop_dim)
    if not after:
        return
    rank = {layer.name: i for i, layer in enumerate(plan.order)}
    after_order = nx.lexicographical_topological_sort(g.subgraph(after), key=rank.get)
    plan.after = [net.network.layers[n] for n in after_order]
    steps = plan.step_names
    for layer in plan.after:
        for _, ref in net.graph.refs.get(layer.name, []):
            if ref.kind == "layer" and ref.target.name in steps:
                plan.after_inputs.add(ref.target.name)


def _mark_prev_needed(net, plan: UnitPlan) -> None:
    """`plan.prev_needed`: the step layers whose previous value the loop carries."""
    steps = plan.step_names
    for layer in plan.steps:
        for _, ref in net.graph.refs.get(layer.name, []):
            if ref.kind == "layer" and ref.prev and ref.target.name in steps:
                plan.prev_needed.add(ref.target.name)
        if masked_scope(layer):  # where the mask is false: its previous output
            plan.prev_needed.add(layer.name)


def _after_loop_layers(net, sub, order: list[Layer], in_loop: set[str], loop_dim: Dim) -> set[str]:
    """In-loop layers that the loop itself does not need: not on a recurrence, no per-step state,
    not step indexed, `position_wise`, and no layer that stays in the loop
    reads them (directly or through `prev:`). They are computed after the loop."""
    loop_sub = sub.subgraph(in_loop)
    pinned = _recurrences(loop_sub)
    for layer in order:
        if layer.name in in_loop and (
            not unit_rule(layer).position_wise or net.inferred.shapes[layer.name].has(loop_dim)
        ):
            pinned.add(layer.name)
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
            shape = (
                net.inferred.extern[ref.target]
                if ref.kind == "extern"
                else net.inferred.shapes[ref.target.name]
            )
            own |= set(shape.time_dims)
    own |= size_target_dims(net, rec)
    known_length = not searching or loop_dim in own
    required = {"output"} | set(fetch)
    if not known_length and "end" in rec.unit.layers:
        required.add("end")
    return plan_unit(net, rec, required, searching, known_length).placement
