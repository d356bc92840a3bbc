"""`netcompiler schema`: print the config JSON Schema, or (`--write`) rewrite
schemas/config.schema.json."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from netcompiler.core.errors import EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("schema", help="print the config JSON Schema")
    p.add_argument("--write", action="store_true", help="rewrite schemas/config.schema.json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from netcompiler.frontend.schema import render_config_schema, write_config_schema

    if args.write:
        path = write_config_schema()
        print(f"wrote {path}", file=err)
        return EXIT_OK
    json.dump(render_config_schema(), out, indent=2)
    out.write("\n")
    return EXIT_OK
