"""`netcompiler graph CONFIG`: the layer dependency graph as text (dot, mermaid) or drawn by
Graphviz (svg, png, html), on stdout or written atomically to `-o FILE`."""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from netcompiler.cli.configs import (
    Checked,
    add_set_option,
    check_config,
    check_overrides,
    internal_diagnostic,
)
from netcompiler.core.diagnostics import format_text
from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UsageError
from netcompiler.frontend.graph_text import render_dot, render_mermaid


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "graph",
        help="draw the layer dependency graph (dot, mermaid, or "
        "rendered with Graphviz: svg, png, html)",
    )
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--format",
        choices=("dot", "mermaid", "svg", "png", "html"),
        default="dot",
        help="dot/mermaid: the graph as text; svg/png: drawn by Graphviz's `dot` "
        "(each layer with its class and shape, flagged layers red); html: one "
        "self-contained page with the SVG and a table of the layers",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write here (atomically) instead of stdout (required for png)",
    )
    add_set_option(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.format == "png" and not args.output:
        raise UsageError("--format png needs -o FILE.png")
    overrides = args.set or []
    check_overrides(overrides)
    checked = check_config(args.config, overrides, strict=False)
    graph = getattr(checked.result, "graph", None)
    for d in checked.errors:
        print(format_text(d), file=err)
    if graph is None:
        print(f"netcompiler graph: error: {args.config}: cannot draw the graph", file=err)
        return EXIT_USAGE if checked.unreadable else EXIT_INVALID
    try:
        data = _drawing(checked, graph, args)
    except UsageError:
        raise
    except Exception as exc:
        print(format_text(internal_diagnostic(args.config, exc)), file=err)
        return EXIT_INVALID
    if args.output:
        _write_atomically(args.output, data)
        print(f"wrote {args.output}", file=err)
    else:
        out.write(data.decode("utf-8"))
    return EXIT_OK


def _drawing(checked: Checked, graph, args: argparse.Namespace) -> bytes:
    """The graph in `args.format`: Graphviz renders svg/png/html, dot and mermaid are text."""
    if args.format in ("svg", "png", "html"):
        from netcompiler.frontend.render import RenderError, render

        try:
            return render(checked.result, args.format, os.path.basename(args.config))
        except RenderError as exc:
            raise UsageError(f"--format {args.format}: {exc}") from None
    text = render_mermaid(graph) if args.format == "mermaid" else render_dot(graph)
    return text.encode("utf-8")


def _write_atomically(output: str, data: bytes) -> None:
    from netcompiler.core.atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    try:
        atomic_write(output, write, make_parents=False)
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}") from None
