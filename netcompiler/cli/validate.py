"""`netcompiler validate PATH...`: check configs (schema, references, shapes) and report every
diagnostic as text, JSON or GitHub annotations; `--shapes` adds each valid network's table.

Exit codes: 0 all valid, 1 some config invalid, 2 usage error (bad arguments, missing or
unreadable file, no configs found)."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from netcompiler.cli.configs import (
    Checked,
    add_set_option,
    check_config,
    check_overrides,
    expand_paths,
    internal_diagnostic,
)
from netcompiler.cli.shape_table import format_shapes
from netcompiler.core.diagnostics import ERROR, Diagnostic, format_github, format_text
from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from netcompiler.core.rules import explain_command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check configs (schema, references, shapes)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="config files, directories or globs")
    add_set_option(p)
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument(
        "--shapes",
        action="store_true",
        help="print each valid network's layers, output axes and parameter counts",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print errors only (no warnings, no summary)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    overrides = args.set or []
    check_overrides(overrides)
    files, problems = expand_paths(args.paths)
    for p in problems:
        print(f"netcompiler validate: error: {p}", file=err)
    checked = [check_config(f, overrides, args.strict) for f in files]
    if args.format == "json":
        _dump_json(checked, out)
    else:
        _print_diagnostics(checked, args, out)
    if args.shapes and args.format != "json":
        _print_shape_tables(checked, out, err)
    if problems or any(c.unreadable for c in checked):
        return EXIT_USAGE
    return EXIT_INVALID if any(not c.valid for c in checked) else EXIT_OK


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _with_help(d: Diagnostic) -> dict:
    """A diagnostic as JSON, with `help`: the command that explains its rule."""
    return {**d.to_dict(), "help": explain_command(d.rule)}


def _dump_json(checked: list[Checked], out: TextIO) -> None:
    doc = {
        "configs": [
            {
                "path": c.path,
                "valid": c.valid,
                "diagnostics": [_with_help(d) for d in c.diagnostics],
            }
            for c in checked
        ],
        "errors": sum(len(c.errors) for c in checked),
        "warnings": sum(len(c.warnings) for c in checked),
    }
    json.dump(doc, out, indent=2)
    out.write("\n")


def _print_diagnostics(checked: list[Checked], args: argparse.Namespace, out: TextIO) -> None:
    """Each diagnostic on a line (`--quiet`: errors only), then, as text, the summary."""
    fmt = format_github if args.format == "github" else format_text
    for c in checked:
        for d in c.diagnostics:
            if args.quiet and d.severity != ERROR:
                continue
            print(fmt(d), file=out)
    if args.format == "text" and not args.quiet:
        _print_summary(checked, out)


def _print_summary(checked: list[Checked], out: TextIO) -> None:
    n_errors = sum(len(c.errors) for c in checked)
    n_warnings = sum(len(c.warnings) for c in checked)
    print(
        f"checked {_plural(len(checked), 'config')}: {_plural(n_errors, 'error')}, "
        f"{_plural(n_warnings, 'warning')}",
        file=out,
    )
    # where the rule ids are explained: the first error's, else the first warning's
    first = next((d.rule for c in checked for d in c.errors), None) or next(
        (d.rule for c in checked for d in c.diagnostics), None
    )
    if first is not None:
        print(f"({explain_command(first)} tells more)", file=out)


def _print_shape_tables(checked: list[Checked], out: TextIO, err: TextIO) -> None:
    """The shape table of each valid config; a table that fails to build is an `internal`
    error of its config (so the exit code says invalid)."""
    for c in checked:
        if not c.valid or c.result is None or getattr(c.result, "inferred", None) is None:
            continue
        try:
            table = format_shapes(c.result)
        except Exception as exc:
            d = internal_diagnostic(c.path, exc)
            c.diagnostics.append(d)
            print(format_text(d), file=err)
            continue
        print(f"\n{c.path}:", file=out)
        for row in table:
            print(row, file=out)
