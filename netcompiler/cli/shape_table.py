"""The table `validate --shapes` prints: each layer's class, output axes and parameter count
(extern data first, rec units and subnetworks indented under their layer), and the total."""

from __future__ import annotations


def _layer_order(graph) -> list[str]:
    """The layers in dependency order, then those the order leaves out (e.g. on a cycle)."""
    order = graph.order()
    placed = set(order)
    return order + [n for n in graph.network.layers if n not in placed]


def shape_rows(result) -> list[tuple[str, str, str, str]]:
    """(layer, class, output axes, params) rows: extern data first, then layers in dependency
    order with the layers of each rec unit indented under their rec layer."""
    inferred, graph = result.inferred, result.graph
    network = graph.network
    rows = []
    for key, shape in inferred.extern.items():
        rows.append((f"data:{key}", "extern_data", str(shape), "-"))
    order = _layer_order(graph)

    def add_scope(scope, depth: int):
        for name in order:
            layer = network.layers[name]
            if layer.scope is not scope:
                continue
            shape = inferred.shapes.get(name)
            rows.append(
                (
                    "  " * depth + name,
                    layer.layer_class or "?",
                    str(shape) if shape is not None else "?",
                    str(inferred.param_count(name)),
                )
            )
            if layer.unit is not None:
                add_scope(layer.unit, depth + 1)
            if layer.subnet is not None:
                add_scope(layer.subnet, depth + 1)

    add_scope(network.top, 0)
    return rows


def format_shapes(result) -> list[str]:
    """The table's lines: a header, a rule, one row per layer and the total parameter count."""
    header = ("layer", "class", "output", "params")
    rows = shape_rows(result)
    total = str(result.inferred.total_params)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(4)]
    widths[3] = max(widths[3], len(total))

    def line(row):
        left = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
        return f"{left}  {row[3].rjust(widths[3])}".rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    out.append(line(("total", "", "", total)))
    return out
