"""The dependency graph as text: Graphviz dot and mermaid (`netcompiler graph --format dot|mermaid`);
`netcompiler.frontend.render` draws it with shapes and colours (svg/png/html). No TensorFlow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from netcompiler.frontend.graph import Graph

#: nodes by scope (None: the top level; else the rec layer whose unit holds them)
Members = dict[str | None, list[str]]


class NodeIds:
    """Sanitised, unique node ids for dot and mermaid (names may contain `/`, `:`, `-`)."""

    def __init__(self, prefix: str = "n_") -> None:
        self.prefix = prefix
        self.ids: dict[str, str] = {}
        self.used: set[str] = set()

    def __call__(self, name: str) -> str:
        if name not in self.ids:
            base = self.prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)
            ident, i = base, 1
            while ident in self.used:
                i += 1
                ident = f"{base}_{i}"
            self.used.add(ident)
            self.ids[name] = ident
        return self.ids[name]


def graph_parts(graph: Graph) -> tuple[Members, dict[str, tuple[str, str]]]:
    """Nodes by scope (None = top), node labels, edges."""
    network = graph.network
    g = graph.g
    members: Members = {}
    labels: dict[str, tuple[str, str]] = {}
    for node, attrs in g.nodes(data=True):
        layer = network.layers.get(node)
        if layer is not None:
            rec = layer.scope.rec_layer.name if layer.scope.rec_layer else None
            labels[node] = (node, layer.layer_class or "?")
        else:
            rec = None
            labels[node] = (node, "extern_data" if attrs.get("kind") == "extern" else "")
        members.setdefault(rec, []).append(node)
    return members, labels


def drawn_edges(graph: Graph) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The graph's edges; of the edges from a unit to its rec layer only the one from the unit's
    `output` (the loop's result) is drawn, the cluster shows the rest."""
    for u, v, attrs in graph.g.edges(data=True):
        if attrs.get("option") == "unit" and not u.endswith("/output"):
            continue
        yield u, v, attrs


def dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(graph: Graph) -> str:
    ids = NodeIds()
    members, labels = graph_parts(graph)
    network = graph.network
    lines = ["digraph network {", "  rankdir=TB;", "  node [shape=box];"]

    def emit(rec: str | None, indent: str) -> None:
        for node in members.get(rec, []):
            name, cls = labels[node]
            label = dot_quote(name)[1:-1] + (r"\n" + dot_quote(cls)[1:-1] if cls else "")
            attrs = [f'label="{label}"']
            if graph.g.nodes[node].get("kind") == "extern":
                attrs.append("shape=ellipse")
            lines.append(f"{indent}{ids(node)} [{', '.join(attrs)}];")
            layer = network.layers.get(node)
            if layer is not None and layer.unit is not None:
                cluster = NodeIds("cluster_")(node)
                lines.append(f"{indent}subgraph {cluster} {{")
                lines.append(f"{indent}  label={dot_quote(node + ' (rec unit)')};")
                lines.append(f"{indent}  style=rounded;")
                emit(node, indent + "  ")
                lines.append(f"{indent}}}")

    emit(None, "  ")
    for u, v, attrs in drawn_edges(graph):
        style = []
        if attrs.get("prev"):
            style.append("style=dashed")
            style.append('label="prev"')
        elif attrs.get("option") == "unit":
            style.append("style=bold")
        suffix = f" [{', '.join(style)}]" if style else ""
        lines.append(f"  {ids(u)} -> {ids(v)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def render_mermaid(graph: Graph) -> str:
    ids = NodeIds()
    members, labels = graph_parts(graph)
    network = graph.network
    lines = ["flowchart TD"]

    def emit(rec: str | None, indent: str) -> None:
        for node in members.get(rec, []):
            name, cls = labels[node]
            label = mermaid_text(name) + (f"<br/>{mermaid_text(cls)}" if cls else "")
            if graph.g.nodes[node].get("kind") == "extern":
                lines.append(f'{indent}{ids(node)}(["{label}"])')
            else:
                lines.append(f'{indent}{ids(node)}["{label}"]')
            layer = network.layers.get(node)
            if layer is not None and layer.unit is not None:
                sub = NodeIds("unit_")(node)
                lines.append(f'{indent}subgraph {sub} ["{mermaid_text(node)} (rec unit)"]')
                emit(node, indent + "  ")
                lines.append(f"{indent}end")

    emit(None, "  ")
    for u, v, attrs in drawn_edges(graph):
        if attrs.get("prev"):
            arrow = "-.->|prev|"
        elif attrs.get("option") == "unit":
            arrow = "==>"
        else:
            arrow = "-->"
        lines.append(f"  {ids(u)} {arrow} {ids(v)}")
    return "\n".join(lines) + "\n"
