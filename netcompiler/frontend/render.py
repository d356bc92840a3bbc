"""Drawing a network: `netcompiler graph CONFIG --format svg|png|html`.

The picture is made by Graphviz's `dot` program (run as a subprocess, the dot source on its
stdin; no Python wrapper). Each layer is a box with its name, class and inferred output shape
(per step inside a rec unit), extern data an ellipse; the unit of a rec layer and the layers of
a `subnetwork` are clusters; `prev:` edges are dashed; layers that validation flags are drawn
red (errors) or orange (warnings), so a config with errors is still drawn as far as it goes.
`html` is one self-contained page: the SVG inline and a table of the layers.

No TensorFlow and no NumPy here: the light install draws graphs.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netcompiler.core.config_types import ConfigPath, LayerOptions
from netcompiler.core.diagnostics import ERROR, WARNING, Diagnostic
from netcompiler.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from netcompiler.frontend.graph import Graph
    from netcompiler.frontend.network import Layer
    from netcompiler.frontend.validate import ValidationResult

FORMATS = ("svg", "png", "html")
DOT_TIMEOUT_S = 300
INSTALL_HINT = (
    "install Graphviz: apt-get install graphviz (Debian/Ubuntu), brew install "
    "graphviz (macOS), conda install -c conda-forge graphviz, or graphviz.org/download"
)

RED, RED_FILL = "#c0392b", "#fdecea"
ORANGE, ORANGE_FILL = "#d9822b", "#fff4e5"
EXTERN_FILL = "#e8f1fb"
CLUSTER_FILL = {"rec": "#f4f6f8", "subnetwork": "#f8f6f1"}


class RenderError(UserError):
    """`dot` is missing or failed: one line for the user (exit 2)."""


# -- what is drawn ---------------------------------------------------------------------------------
@dataclass
class Node:
    name: str  # graph node name: layer full name, `data:KEY`, `rec:i`
    kind: str  # "layer", "extern", "step", "synthetic"
    cls: str
    shape: str
    sources: str = ""  # the `from` option as written
    params: str = ""
    status: str = ""  # ERROR, WARNING or ""
    messages: list[str] = field(default_factory=list)
    training: str = ""  # `loss: ce, target: classes`
    cluster: str | None = None  # name of the rec/subnetwork layer whose cluster holds it
    depth: int = 0  # nesting depth for the table


@dataclass
class Drawing:
    nodes: dict[str, Node]
    clusters: dict[str, tuple[str, str | None]]  # cluster layer -> (kind, parent cluster)
    edges: list[tuple[str, str, dict[str, Any]]]
    general: list[str]  # diagnostics that belong to no layer


def _graph_of(result: ValidationResult) -> Graph:
    assert result.graph is not None, "drawn only when validation got as far as the graph"
    return result.graph


def _flags(result: ValidationResult) -> tuple[dict[str, list[Diagnostic]], list[Diagnostic]]:
    """Errors and warnings by graph node (the layer whose config path is the longest prefix of
    the diagnostic's path; `extern_data.KEY...` -> `data:KEY`), and those of no node."""
    network = _graph_of(result).network
    by_path: dict[ConfigPath, str] = {}
    for layer in network.layers.values():
        if layer.synthetic and layer.path in by_path:
            continue  # a synthetic layer shares its config path with the layer it stands for
        by_path[tuple(layer.path)] = layer.name
    for key in network.extern:
        by_path[("extern_data", key)] = f"data:{key}"
    flagged: dict[str, list[Diagnostic]] = {}
    general: list[Diagnostic] = []
    for d in result.diagnostics:
        if d.severity not in (ERROR, WARNING):
            continue
        path = tuple(d.path)
        for n in range(len(path), 0, -1):
            node = by_path.get(path[:n])
            if node is not None:
                flagged.setdefault(node, []).append(d)
                break
        else:
            general.append(d)
    return flagged, general


def _sources_text(opts: LayerOptions) -> str:
    value = opts.get("from")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "[]"
    return str(value)


def _training_text(opts: LayerOptions) -> str:
    """`loss: ce, target: classes` of a layer (its loss and target as written), or ""."""
    parts = [
        f"{key}: {opts[key]}"
        for key in ("loss", "target")
        if isinstance(opts.get(key), (str, int, float)) and opts.get(key) != ""
    ]
    return ", ".join(parts)


def _message(d: Diagnostic) -> str:
    where = f"{d.line}:{d.col}: " if d.line else ""
    return f"{where}{d.severity}: {d.full_message()} [{d.rule}]"


def build_drawing(result: ValidationResult) -> Drawing:
    """What to draw for a `ValidationResult` that has a graph (shapes where inferred)."""
    graph = _graph_of(result)
    network = graph.network
    inferred = result.inferred
    shapes = inferred.shapes if inferred is not None else {}
    extern_shapes = inferred.extern if inferred is not None else {}
    flagged, general = _flags(result)

    def cluster_of(layer: Layer) -> str | None:
        if layer.synthetic and "/" in layer.name:  # `sub/data:data`: the input of `sub`
            owner = network.layers.get(layer.name.rsplit("/", 1)[0])
            if owner is not None and owner.subnet is not None and owner is not layer:
                return owner.name
        scope = layer.scope
        if scope.subnet_layer is not None:
            return scope.subnet_layer.name
        return scope.rec_layer.name if scope.rec_layer is not None else None

    clusters: dict[str, tuple[str, str | None]] = {}
    for holder in network.layers.values():
        if holder.unit is not None:
            clusters[holder.name] = ("rec", cluster_of(holder))
        elif holder.subnet is not None:
            clusters[holder.name] = ("subnetwork", cluster_of(holder))

    def depth(cluster: str | None) -> int:
        d = 0
        while cluster is not None:
            d += 1
            cluster = clusters[cluster][1]
        return d

    nodes: dict[str, Node] = {}
    for name, attrs in graph.g.nodes(data=True):
        layer = network.layers.get(name)
        if layer is not None:
            shape = shapes.get(name)
            params = ""
            if inferred is not None and name in inferred.params:
                params = str(inferred.param_count(name))
            node = Node(
                name,
                "synthetic" if layer.synthetic else "layer",
                layer.layer_class or "?",
                str(shape) if shape is not None else "?",
                _sources_text(layer.opts),
                params,
                training=_training_text(layer.opts),
                cluster=cluster_of(layer),
            )
        elif attrs.get("kind") == "extern":
            key = name[len("data:") :]
            shape = extern_shapes.get(key)
            node = Node(name, "extern", "extern_data", str(shape) if shape is not None else "?")
            if key in network.registered:
                node.sources = network.registered[key].name
        elif name.endswith(":i") and name[:-2] in network.layers:
            node = Node(name, "step", "step index", "[] int32", cluster=name[:-2])
        else:  # not expected; drawn plainly rather than dropped
            node = Node(name, "extern", "", "?")
        diags = flagged.get(name, [])
        if any(d.severity == ERROR for d in diags):
            node.status = ERROR
        elif diags:
            node.status = WARNING
        node.messages = [_message(d) for d in diags]
        node.depth = depth(node.cluster)
        nodes[name] = node
    edges: list[tuple[str, str, dict[str, Any]]] = []
    for u, v, attrs in graph.g.edges(data=True):
        # of the edges from a unit to its rec layer only the unit's `output` (the loop's
        # result) is drawn: the cluster shows the rest
        if attrs.get("option") == "unit" and not u.endswith("/output"):
            continue
        edges.append((u, v, attrs))
    return Drawing(nodes, clusters, edges, [_message(d) for d in general])


# -- dot source ------------------------------------------------------------------------------------
def dot_string(text: str) -> str:
    """A dot double-quoted string (ids, plain attribute values)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_text(text: str) -> str:
    """Text inside a Graphviz HTML-like label."""
    return html.escape(text, quote=True).replace("\n", " ")


def _node_label(node: Node) -> str:
    rows = [f"<b>{_html_text(node.name)}</b>"]
    if node.cls:
        rows.append(f'<font point-size="10" color="#555555">{_html_text(node.cls)}</font>')
    rows.append(f'<font face="monospace" point-size="10">{_html_text(node.shape)}</font>')
    if node.training:
        rows.append(f'<font point-size="9" color="#7a4f9a">{_html_text(node.training)}</font>')
    return "<" + "<br/>".join(rows) + ">"


def render_dot(drawing: Drawing, title: str = "") -> str:
    ids = {name: f"n{i}" for i, name in enumerate(drawing.nodes)}
    cids = {name: f"cluster_{i}" for i, name in enumerate(drawing.clusters)}
    lines = [
        "digraph network {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.35,'
        " labelloc=t, labeljust=l];",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#333333",'
        ' fontname="Helvetica", fontsize=11, margin="0.12,0.05"];',
        '  edge [color="#555555", arrowsize=0.7, fontname="Helvetica", fontsize=9];',
    ]
    if title:
        lines.append(f"  label={dot_string(title)};")

    def node_line(node: Node) -> str:
        attrs = [f"label={_node_label(node)}", f"tooltip={dot_string(node.name)}"]
        if node.kind == "extern":
            attrs += ["shape=ellipse", "style=filled", f'fillcolor="{EXTERN_FILL}"']
        elif node.kind == "step":
            attrs += ["shape=ellipse", 'style="dashed"']
        elif node.kind == "synthetic":
            attrs += ['style="rounded,dashed"']
        if node.status == ERROR:
            attrs += [
                f'color="{RED}"',
                f'fillcolor="{RED_FILL}"',
                "penwidth=2.5",
                f'fontcolor="{RED}"',
            ]
        elif node.status == WARNING:
            attrs += [f'color="{ORANGE}"', f'fillcolor="{ORANGE_FILL}"', "penwidth=2"]
        if node.messages:
            attrs[1] = f"tooltip={dot_string(node.name + ': ' + '; '.join(node.messages))}"
        return f"{ids[node.name]} [{', '.join(attrs)}];"

    members: dict[str | None, list[Node]] = {}
    for node in drawing.nodes.values():
        members.setdefault(node.cluster, []).append(node)
    children: dict[str | None, list[str]] = {}
    for name, (_, parent) in drawing.clusters.items():
        children.setdefault(parent, []).append(name)

    def emit(cluster: str | None, indent: str) -> None:
        for node in members.get(cluster, []):
            lines.append(indent + node_line(node))
        for child in children.get(cluster, []):
            kind = drawing.clusters[child][0]
            label = f"{child} ({'rec unit' if kind == 'rec' else 'subnetwork'})"
            lines.append(f"{indent}subgraph {cids[child]} {{")
            lines.append(f"{indent}  label={dot_string(label)};")
            style = "rounded,filled" if kind == "rec" else "rounded,filled,dashed"
            lines.append(
                f'{indent}  style="{style}"; fillcolor="{CLUSTER_FILL[kind]}"; color="#888888";'
            )
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    for u, v, attrs in drawing.edges:
        style = []
        option = attrs.get("option")
        if attrs.get("prev"):
            style += [
                "style=dashed",
                'label="prev"',
                'color="#1f5fa8"',
                'fontcolor="#1f5fa8"',
                "constraint=false",
            ]
        elif option in ("unit", "subnetwork"):  # the result of a unit / sub-network
            style += ["style=bold"]
        elif option and option != "from":
            style += [f"label={dot_string(option)}"]
        suffix = f" [{', '.join(style)}]" if style else ""
        lines.append(f"  {ids[u]} -> {ids[v]}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- running dot -----------------------------------------------------------------------------------
def find_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise RenderError(f"Graphviz's `dot` program is not on PATH; {INSTALL_HINT}")
    return dot


def run_dot(source: str, fmt: str) -> bytes:
    """`dot -T<fmt>` on the source; raises RenderError (one line) if it is missing or fails."""
    dot = find_dot()
    try:
        proc = subprocess.run(
            [dot, f"-T{fmt}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"`dot` took longer than {DOT_TIMEOUT_S} s; try --format dot and "
            "render a part of the graph"
        ) from None
    except OSError as exc:
        raise RenderError(f"cannot run `{dot}`: {exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[0] if lines else f"exit status {proc.returncode}"
        raise RenderError(f"`dot -T{fmt}` failed: {why}")
    return proc.stdout


_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)


def inline_svg(svg: str) -> str:
    """The `<svg>` element alone: without the XML declaration, DOCTYPE and comments that `dot`
    writes before it (the DOCTYPE names an external DTD)."""
    svg = _SVG_PROLOGUE.sub("", svg, count=1)
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.graph { overflow: auto; border: 1px solid #ddd; padding: 0.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.shape, td.num { font-family: monospace; white-space: nowrap; }
td.num { text-align: right; }
tr.error td { background: #fdecea; } tr.error td.name { color: #c0392b; font-weight: bold; }
tr.warning td { background: #fff4e5; }
ul.diags { font-family: monospace; font-size: 0.85em; }
"""


def render_html(drawing: Drawing, svg: str, title: str, summary: str) -> str:
    esc = html.escape
    rows = []
    for node in sorted(drawing.nodes.values(), key=_table_order(drawing)):
        cls = f' class="{node.status}"' if node.status else ""
        indent = "&nbsp;&nbsp;" * node.depth
        notes = "<br>".join(esc(m) for m in node.messages)
        rows.append(
            f'<tr{cls}><td class="name">{indent}{esc(node.name)}</td><td>{esc(node.cls)}</td>'
            f'<td class="shape">{esc(node.shape)}</td><td>{esc(node.sources)}</td>'
            f'<td class="num">{esc(node.params)}</td><td>{notes}</td></tr>'
        )
    general = ""
    if drawing.general:
        items = "".join(f"<li>{esc(m)}</li>" for m in drawing.general)
        general = f'<h2>Diagnostics of the whole config</h2><ul class="diags">{items}</ul>'
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<p>{esc(summary)}. Shapes are batch-major; inside a rec unit "
        "they are per step. Dashed blue edges read the previous step (<code>prev:</code>); red "
        "layers have errors, orange ones warnings.</p>\n"
        f'<div class="graph">\n{inline_svg(svg)}\n</div>\n{general}\n'
        "<h2>Layers</h2>\n<table>\n<thead><tr><th>layer</th><th>class</th><th>shape</th>"
        "<th>from</th><th>params</th><th>diagnostics</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )


def _table_order(drawing: Drawing) -> Callable[[Node], tuple[bool, list[int]]]:
    """Extern data first, then layers in their config order, each cluster's layers after the
    layer that owns the cluster."""
    position = {name: i for i, name in enumerate(drawing.nodes)}

    def key(node: Node) -> tuple[bool, list[int]]:
        chain = [node.name]
        cluster = node.cluster
        while cluster is not None:
            chain.append(cluster)
            cluster = drawing.clusters[cluster][1]
        return (node.kind != "extern", [position.get(n, 0) for n in reversed(chain)])

    return key


def summary_line(result: ValidationResult) -> str:
    n_err = len(result.errors)
    n_warn = len(result.warnings)
    layers = sum(not layer.synthetic for layer in _graph_of(result).network.layers.values())
    return (
        f"{layers} layer{'s' if layers != 1 else ''}, {n_err} error{'s' if n_err != 1 else ''}"
        f", {n_warn} warning{'s' if n_warn != 1 else ''}"
    )


def render(result: ValidationResult, fmt: str, title: str) -> bytes:
    """The drawing of a validated config as `fmt` (svg, png, html) bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    drawing = build_drawing(result)
    summary = summary_line(result)
    source = render_dot(drawing, f"{title}: {summary}")
    if fmt == "png":
        return run_dot(source, "png")
    svg = run_dot(source, "svg").decode("utf-8")
    if fmt == "svg":
        return svg.encode("utf-8")
    return render_html(drawing, svg, title, summary).encode("utf-8")
