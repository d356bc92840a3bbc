"""`netcompiler import-returnn CONFIG`: convert a RETURNN config (and, with `--checkpoint`, its
checkpoint) to netcompiler. The work is `netcompiler.returnn.convert.cli_import_returnn`,
imported when the command runs; it needs TensorFlow only for `--checkpoint`."""

from __future__ import annotations

import argparse
from typing import TextIO


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "import-returnn",
        help="convert a RETURNN config (and checkpoint) to netcompiler",
        description="Read a RETURNN config file as data (nothing is run; --exec runs it in a "
        "child process) and write the netcompiler YAML, listing what was not "
        "imported; the result is validated (exit 1 when it does not validate).",
    )
    p.add_argument("config", metavar="CONFIG", help="the RETURNN config file")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.yaml",
        help="write the YAML here (atomically; default: stdout)",
    )
    p.add_argument(
        "--exec",
        action="store_true",
        help="run the config with Python in a child process, as RETURNN does "
        "(only for your own configs)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="--exec: stop the child after S seconds (default 60)",
    )
    p.add_argument(
        "--spec-augment",
        action="store_true",
        help="replace an eval layer running the config's Python SpecAugment "
        "(RETURNN's recipe) by netcompiler's spec_augment layer",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PREFIX",
        help="also convert this RETURNN checkpoint (e.g. net-model/network.100)",
    )
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        help="with --checkpoint: write the netcompiler checkpoint into DIR",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from netcompiler.returnn.convert import cli_import_returnn  # no TensorFlow unless --checkpoint

    return cli_import_returnn(args, out, err)
