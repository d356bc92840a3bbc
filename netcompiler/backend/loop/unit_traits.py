"""What the decoder loop needs to know about the layers of a rec unit, and which rec layers can
be searched. No TensorFlow: the plan and `unit_placement` use it too.

What the loop needs to know about a layer class is a trait of its rule
(`netcompiler.core.layer_rule.LayerRule`): `stateful` / `carries_state` (a per-step state),
`step_indexed`, `loop_only`, `position_wise` (may run after the loop), `chooses_labels`
(the search / teacher-forced `choice`) and `masked_step`.
"""

from __future__ import annotations

import networkx as nx

from netcompiler.frontend.network import Layer
from netcompiler.layers import get_rule


def unit_rule(layer: Layer):
    """The rule of a unit layer (compiled, so its class has one)."""
    return get_rule(layer.layer_class)


def is_choice(layer: Layer) -> bool:
    """A label decision (`chooses_labels`): searched, or teacher-forced to its target."""
    return unit_rule(layer).chooses_labels


def is_stateful(net, layer: Layer) -> bool:
    """A unit layer that carries a state from step to step: a `stateful` class whose rule says
    this layer `carries_state` (e.g. one step of `self_attention` or of a cell over a per-step
    input without a time axis; over an input with a time axis the layer runs over that axis in
    every step, no state carried)."""
    rule = unit_rule(layer)
    return rule.stateful and rule.carries_state(layer.opts, net.inferred.shapes[layer.name])


def masked_scope(layer: Layer) -> bool:
    """A `masked_step` layer (`masked_computation`; not its synthetic input `NAME/data:data`):
    inside a loop its unit's layers `NAME/...` run per step and it keeps the previous output and
    unit state where the mask is false."""
    return unit_rule(layer).masked_step and layer.subnet is not None


def size_target_dims(net, rec: Layer, values=None) -> set:
    """The time axis of the rec layer's `size_target` (if fed, when `values` are given)."""
    key = rec.opts.get("size_target")
    shape = net.inferred.extern.get(key) if isinstance(key, str) else None
    if shape is None or shape.time is None or (values is not None and f"data:{key}" not in values):
        return set()
    return {shape.time}


def has_search_choice(rec: Layer) -> bool:
    """A rec layer whose unit has a choice (so it can be searched)."""
    return rec.unit is not None and any(is_choice(layer) for layer in rec.unit.layers.values())


def choice_targets(rec: Layer) -> set[str]:
    """The extern data keys the choices of the unit of `rec` are teacher-forced to."""
    return {layer.opts.get("target") for layer in rec.unit.layers.values() if is_choice(layer)}


def choice_layer(rec: Layer) -> Layer:
    """The (first) choice layer of the unit of `rec` (a rec layer with `has_search_choice`)."""
    return next(layer for layer in rec.unit.layers.values() if is_choice(layer))


def search_rec_layers(network) -> list[Layer]:
    """The rec layers of the network (not inside a rec unit) whose unit has a choice: the
    decoders beam search can run."""
    return [
        layer
        for layer in network.layers.values()
        if not layer.scope.in_rec and has_search_choice(layer)
    ]


def search_rec_layer(net) -> Layer:
    """The rec layer searched by `net.search`: the one the network's output depends on."""
    sg = net.graph.static_graph()
    out = net.output_name
    cands = search_rec_layers(net.network)
    if not cands:
        raise ValueError("the network has no rec unit with a `choice` layer to search")
    for layer in cands:
        if layer.name == out or layer.name in nx.ancestors(sg, out):
            return layer
    return cands[0]
