"""The dependency graph of a network (networkx), and the checks made on it.

Nodes are layer full names (`att`, `dec/s`) and extern data (`data:classes`). An edge u -> v
means v reads u; edges through `prev:` carry `prev=True` and are the only ones allowed to close
a cycle. A rec layer with a unit depends on every layer of its unit (its output is the unit's
loop), and the unit's layers that read `data:source` depend on the rec layer's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.diagnostics import ERROR, WARNING, Diagnostic, did_you_mean
from netcompiler.frontend.network import Layer, Network, Ref, layer_references, resolve
from netcompiler.layers import traits


@dataclass
class Graph:
    network: Network
    g: nx.DiGraph[str]
    # layer full name -> [(option sub-path, Ref)] in option order
    refs: dict[str, list[tuple[ConfigPath, Ref]]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: `reuse_params`: layer -> the layer whose variables it shares
    param_owner: dict[str, str] = field(default_factory=dict)

    def static_graph(self) -> nx.DiGraph[str]:
        """The graph without `prev:` edges (must be acyclic). A plain copy, made once: filtered
        views are slow to walk on 1000-layer networks."""
        cached = getattr(self, "_static", None)
        if cached is None or cached[0] != self.g.number_of_edges():
            sg: nx.DiGraph[str] = nx.DiGraph()
            sg.add_nodes_from(self.g.nodes(data=True))
            sg.add_edges_from((u, v, d) for u, v, d in self.g.edges(data=True) if not d["prev"])
            cached = (self.g.number_of_edges(), sg)
            self._static = cached
        return cached[1]

    def order(self) -> list[str]:
        """Layer names in an order where every non-`prev:` input comes first."""
        sg = self.static_graph()
        names = [
            n
            for n in nx.lexicographical_topological_sort(sg, key=self._sort_key)
            if n in self.network.layers
        ]
        return names

    def _sort_key(self, node: str) -> tuple[int, str] | tuple[int, int, str]:
        layer = self.network.layers.get(node)
        return (0, node) if layer is None else (1, layer.path.__len__(), node)


def _add_edge(g: nx.DiGraph[str], u: str, v: str, prev: bool, option: str | int) -> None:
    if g.has_edge(u, v):
        # a non-prev edge wins: it is the one that constrains the order
        g.edges[u, v]["prev"] = g.edges[u, v]["prev"] and prev
    else:
        g.add_edge(u, v, prev=prev, option=option)


def build_graph(network: Network) -> Graph:
    """The dependency graph of `network`, with the diagnostics of every reference, target and
    subnetwork found while building it (and of cycles)."""
    g: nx.DiGraph[str] = nx.DiGraph()
    graph = Graph(network, g)
    _add_nodes(graph)
    for layer in network.layers.values():
        _check_max_seq_len(graph, layer)
        _check_eval(graph, layer)
        resolved = _add_reference_edges(graph, layer)
        _check_targets(graph, layer)
        _check_registered(graph, layer)
        graph.refs[layer.name] = resolved
        if layer.unit is not None:
            for sub_layer in layer.unit.layers.values():
                _add_edge(g, sub_layer.name, layer.name, False, "unit")
        _check_subnet_output(graph, layer)
    _check_cycles(graph)
    return graph


def _add_nodes(graph: Graph) -> None:
    """One node per extern data key (given or registered) and per layer."""
    network, g = graph.network, graph.g
    for key in network.extern:
        g.add_node(f"data:{key}", kind="extern")
    for key in network.registered:
        g.add_node(f"data:{key}", kind="extern")
    for layer in network.layers.values():
        g.add_node(
            layer.name,
            kind="layer",
            rec=layer.scope.rec_layer.name if layer.scope.rec_layer else None,
        )


def _add_reference_edges(graph: Graph, layer: Layer) -> list[tuple[ConfigPath, Ref]]:
    """Resolves every layer reference of `layer`, reports the unresolvable ones and adds an
    edge for each one that reads values; returns those, in option order."""
    resolved = []
    for sub, text in layer_references(layer):
        path = layer.path + sub[:1] if sub[0] == "max_seq_len" else layer.path + sub
        if not isinstance(text, str):
            continue
        if sub[0] == "max_seq_len" and text.startswith("base:"):
            # max_len_from('base:x') is written as seen from inside the unit
            text = text[len("base:") :]
        ref, diag = resolve(text, layer.scope, graph.network, path)
        if diag is not None:
            graph.diagnostics.append(diag)
            continue
        assert ref is not None, "resolve gives a Ref or an error"
        if sub[0] == "reuse_params":
            # shares variables, reads no values: no edge (RETURNN allows a reuse of a layer
            # that depends on this one)
            _record_param_owner(graph, layer, ref, text, path)
            continue
        if sub[0] == "explicit_search_source":
            # RETURNN: a dependency of a `choice` only while searching, for its beam
            # bookkeeping; netcompiler reorders every layer along the beam itself, so the
            # reference is checked but reads no value (no edge)
            continue
        resolved.append((sub, ref))
        _add_read_edges(graph, layer, sub, ref)
    return resolved


def _record_param_owner(graph: Graph, layer: Layer, ref: Ref, text: str, path: ConfigPath) -> None:
    """`reuse_params: NAME`: `layer` shares the variables of layer NAME (a plain layer name)."""
    if ref.kind == "layer" and not ref.prev:
        graph.param_owner[layer.name] = ref.target.name
    else:
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"`reuse_params: {text}` must name a layer",
                "graph.reuse-params",
                path,
            )
        )


def _add_read_edges(graph: Graph, layer: Layer, sub: ConfigPath, ref: Ref) -> None:
    """The edges of one reference that `layer` reads through option path `sub`."""
    g = graph.g
    if ref.kind == "source":
        # `data:source` inside a unit reads what the rec layer reads
        rec = ref.target
        for _, rec_ref in graph.refs.get(rec.name, []) or _refs_of(rec, graph.network):
            if rec_ref.kind != "source":
                _add_edge(g, rec_ref.node, layer.name, False, "from")
    else:
        _add_edge(g, ref.node, layer.name, ref.prev, sub[0])
        if ref.stacked:  # `rec/name`: the rec layer's loop computes it
            _add_edge(g, ref.target.scope.rec_layer.name, layer.name, False, sub[0])


def _check_targets(graph: Graph, layer: Layer) -> None:
    """`target`/`size_target` must name extern data; a registered key adds an edge from the
    layer that registers it."""
    network = graph.network
    for option in ("target", "size_target"):
        target = layer.opts.get(option)
        if isinstance(target, str) and target not in network.data_keys():
            graph.diagnostics.append(
                Diagnostic(
                    ERROR,
                    f"`{option}: {target}`: no such extern data",
                    "graph.unknown-data",
                    layer.path + (option,),
                    hint=did_you_mean(target, network.data_keys()),
                )
            )
        elif isinstance(target, str) and target in network.registered:
            _add_edge(graph.g, f"data:{target}", layer.name, False, option)


def _check_subnet_output(graph: Graph, layer: Layer) -> None:
    """An inline subnetwork needs an `output` layer: it is the output of the layer."""
    if (
        layer.subnet is not None
        and traits(layer.layer_class).sub_network_kind == "inline"
        and "output" not in layer.subnet.layers
    ):
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"the subnetwork of `{layer.name}` has no `output` layer",
                "graph.no-output",
                layer.path + ("subnetwork",),
                hint="its `output` layer is the output of the subnetwork layer",
            )
        )


def _check_registered(graph: Graph, layer: Layer) -> None:
    """`register_as_extern_data: KEY`: a new key, from a layer of the top-level network; the
    layer feeds the node `data:KEY`."""
    key = layer.opts.get("register_as_extern_data")
    if not isinstance(key, str):
        return
    network = graph.network
    path = layer.path + ("register_as_extern_data",)
    if key in network.extern:
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"`register_as_extern_data: {key}`: `{key}` is already extern data",
                "graph.register-extern",
                path,
            )
        )
    elif network.registered.get(key) is not layer:
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"`register_as_extern_data: {key}`: `{network.registered[key].name}` "
                f"registers `{key}` already",
                "graph.register-extern",
                path,
            )
        )
    elif layer.scope.in_rec:
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"`register_as_extern_data` inside the unit of "
                f"`{layer.scope.loop_layer.name}` is not supported (only top-level layers)",
                "graph.register-extern",
                path,
                hint="register a top-level layer that reads it",
            )
        )
    else:
        _add_edge(graph.g, layer.name, f"data:{key}", False, "register_as_extern_data")


def _check_max_seq_len(graph: Graph, layer: Layer) -> None:
    from netcompiler.frontend.seq_len_expr import SeqLenExprError, parse

    text = layer.opts.get("max_seq_len")
    if isinstance(text, str):
        try:
            parse(text)
        except SeqLenExprError as exc:
            graph.diagnostics.append(
                Diagnostic(ERROR, str(exc), "graph.max-seq-len", layer.path + ("max_seq_len",))
            )


def eval_option(layer: Layer) -> str | None:
    """The option holding an `eval` expression of this layer (`eval` layer, `combine` with
    `kind: eval`), else None."""
    return traits(layer.layer_class).expression_option(layer.opts)


def _check_eval(graph: Graph, layer: Layer) -> None:
    """Every `eval` expression is parsed once here, independently of shape inference (so an
    expression of a layer whose inputs fail is still checked); its error carries the
    ExprError's own rule (`expr.python-call`) or `shape.eval`, at `<layer>.eval`. The layer is
    then skipped by shape inference, which does not report it again."""
    from netcompiler.frontend.expr import ExprError, parse_expression

    option = eval_option(layer)
    text = layer.opts.get(option) if option else None
    # missing / not a string: the schema or the shape rule says so
    if option is None or not isinstance(text, str):
        return
    try:
        parse_expression(text)
    except ExprError as exc:
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"invalid `{option}` expression {text!r}: {exc.message}",
                exc.rule or "shape.eval",
                layer.path + (option,),
                hint=exc.hint,
            )
        )


def _refs_of(layer: Layer, network: Network) -> list[tuple[ConfigPath, Ref]]:
    out = []
    for sub, text in layer_references(layer):
        if sub[0] != "from":
            continue
        ref, _ = resolve(text, layer.scope, network, layer.path + sub)
        if ref is not None:
            out.append((sub, ref))
    return out


def _check_cycles(graph: Graph) -> None:
    sg = graph.static_graph()
    seen: set[frozenset[str]] = set()
    for cycle in nx.simple_cycles(sg):
        key = frozenset(cycle)
        if key in seen:
            continue
        seen.add(key)
        # start the listing at the smallest name so the message is stable
        i = cycle.index(min(cycle))
        cycle = cycle[i:] + cycle[:i]
        text = " -> ".join(cycle + [cycle[0]])
        first = graph.network.layers.get(cycle[0])
        path = first.path if first is not None else ("network",)
        hint = "inside a rec unit, read the previous step with `prev:NAME`"
        layers = [graph.network.layers.get(n) for n in cycle]
        choice = next(
            (
                layer
                for layer in layers
                if layer is not None and traits(layer.layer_class).chooses_labels
            ),
            None,
        )
        if choice is not None:
            # the usual slip: the decoder reads its own label of this step instead of the last
            reader = next(
                (
                    layer
                    for layer in layers
                    if layer is not None
                    and any(
                        ref.kind == "layer" and ref.target is choice and not ref.prev
                        for _, ref in graph.refs.get(layer.name, [])
                    )
                ),
                None,
            )
            if reader is not None:
                path = reader.path
            hint = f"did you mean `prev:{choice.local_name}`?"
        graph.diagnostics.append(
            Diagnostic(
                ERROR,
                f"dependency cycle not through `prev:`: {text}",
                "graph.cycle",
                path,
                hint=hint,
            )
        )
        if len(seen) >= 10:
            break


def output_layers(network: Network) -> list[Layer]:
    """Layers that count as outputs: `output`, `is_output_layer`, or with a `loss`."""
    out = []
    for layer in network.layers.values():
        if layer.scope.in_rec:
            continue
        if (
            layer.local_name == "output"
            or layer.opts.get("is_output_layer")
            or layer.opts.get("loss")
        ):
            out.append(layer)
    return out


def check_outputs(graph: Graph) -> list[Diagnostic]:
    """No `output` layer is an error; layers that feed no output or loss get a warning."""
    network = graph.network
    diags: list[Diagnostic] = []
    if "output" not in network.top.layers and not output_layers(network):
        # RETURNN needs no `output` layer when others carry a loss or `is_output_layer`
        diags.append(
            Diagnostic(
                ERROR,
                "the network has no `output` layer (and no layer with a "
                "`loss` or `is_output_layer`)",
                "graph.no-output",
                ("network",),
                hint="name the final layer `output`",
            )
        )
    for scope in network.iter_scopes():
        if scope.in_rec and "output" not in scope.layers:
            diags.append(
                Diagnostic(
                    ERROR,
                    f"the unit of rec layer `{scope.loop_layer.name}` has no `output` layer",
                    "graph.no-output",
                    scope.path,
                )
            )
    sinks = {layer.name for layer in output_layers(network)}
    for scope in network.iter_scopes():
        if scope.in_rec:
            for local in ("output", "end"):
                if local in scope.layers:
                    sinks.add(scope.layers[local].name)
            sinks.update(
                layer.name
                for layer in scope.layers.values()
                if layer.opts.get("loss") or layer.opts.get("is_output_layer")
            )
    needed: set[str] = set()
    for s in sinks:
        if s in graph.g:
            needed.add(s)
            needed.update(nx.ancestors(graph.g, s))
    # a used rec layer needs its unit (unit edges); a rec layer whose unit has a used layer
    # (e.g. a loss inside the unit) is used itself: it runs that unit's loop
    for name in list(needed):
        layer = network.layers.get(name)
        while (
            layer is not None and layer.scope.in_rec and layer.scope.loop_layer.name not in needed
        ):
            rec = layer.scope.loop_layer
            needed.add(rec.name)
            needed.update(nx.ancestors(graph.g, rec.name))
            layer = rec
    for layer in network.layers.values():
        if layer.name not in needed and not layer.synthetic:
            diags.append(
                Diagnostic(
                    WARNING,
                    f"layer `{layer.name}` feeds no output or loss",
                    "graph.unused",
                    layer.path,
                )
            )
    return diags
