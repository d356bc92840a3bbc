"""The `netcompiler` command line: the parser, assembled from the command modules (one per
command: validate, schema, explain, graph, compile, train, search, forward, import-returnn), and
`main`, which runs a command and turns its errors into one line and an exit code.

`validate`, `schema` and `graph` never import TensorFlow, so they stay fast enough for editors
and pre-commit hooks. The TensorFlow subcommands import their module only when run.

Exit codes: 0 all valid, 1 some config invalid, 2 usage error (bad arguments, missing or
unreadable file, no configs found).
"""

from __future__ import annotations

import argparse
import os
import sys

from netcompiler.cli import compile as compile_command
from netcompiler.cli import explain, forward, graph, import_returnn, schema, search, train, validate
from netcompiler.cli.configs import DEBUG_ENV
from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UserError, internal_message

__all__ = ["COMMANDS", "DEBUG_ENV", "build_parser", "main"]

#: the command modules, in the order `netcompiler --help` lists them; each has
#: `add_parser(subparsers)`, which registers its sub-parser and sets its `handler`
COMMANDS = (
    validate,
    schema,
    explain,
    graph,
    compile_command,
    train,
    search,
    forward,
    import_returnn,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netcompiler", description="Validate, draw and compile YAML network configs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.handler(args, sys.stdout, sys.stderr)
    except UserError as exc:  # a mistake the user can fix: one line (UsageError: exit 2)
        print(f"netcompiler {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `netcompiler schema | head`
        return EXIT_OK
    except Exception as exc:  # InternalError or anything unexpected: a bug
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"netcompiler {args.command}: {internal_message(exc)}", file=sys.stderr)
        return EXIT_INVALID
