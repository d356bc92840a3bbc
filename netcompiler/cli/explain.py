"""`netcompiler explain RULE`: what a diagnostic's rule checks and how to fix it; without RULE,
the list of rule ids with their summaries."""

from __future__ import annotations

import argparse
import textwrap
from typing import TextIO

from netcompiler.core.diagnostics import did_you_mean
from netcompiler.core.errors import EXIT_OK, UsageError
from netcompiler.core.rules import FAMILIES, RULES, explain, summary


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain a diagnostic's rule id, e.g. shape.conv-groups",
        description="What a rule (the [id] at the end of a diagnostic) checks, "
        "and an example of the fix; without RULE, list the rules.",
    )
    p.add_argument("rule", nargs="?", metavar="RULE", help="e.g. schema.unknown-option")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.rule:
        _list_rules(out)
        return EXIT_OK
    rule = args.rule.strip().strip("[]")  # as copied from a message: `[schema.type]`
    text = explain(rule)
    if text is None:
        hint = did_you_mean(rule, list(RULES) + list(FAMILIES))
        raise UsageError(
            f"unknown rule `{rule}`"
            + (f"; {hint}" if hint else "")
            + " (`netcompiler explain` lists them)"
        )
    print(rule, file=out)
    print(textwrap.fill(text, 79, initial_indent="  ", subsequent_indent="  "), file=out)
    return EXIT_OK


def _list_rules(out: TextIO) -> None:
    """Every rule id with its summary cut to fit a 100-column line."""
    width = max(len(r) for r in RULES)
    for rule in sorted(RULES):
        print(f"{rule.ljust(width)}  {textwrap.shorten(summary(rule), 98 - width)}", file=out)
