"""`netcompiler compile CONFIG -o DIR`: build the TensorFlow model and save it (the work is
`netcompiler.backend.export.cli_compile`, imported when the command runs)."""

from __future__ import annotations

from netcompiler.cli.configs import add_precision_option, add_set_option
from netcompiler.cli.tensorflow_command import tensorflow_command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compile", help="build the TensorFlow model and save it")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--checkpoint", help="load variables from this checkpoint first")
    add_set_option(p)
    add_precision_option(p)
    p.set_defaults(handler=tensorflow_command("backend.export", "cli_compile"))
