"""`netcompiler forward CONFIG`: run the network forward on data and write a layer's output to
HDF (the work is `netcompiler.training.forward.cli_forward`, imported when the command runs)."""

from __future__ import annotations

from netcompiler.cli.configs import add_precision_option, add_set_option
from netcompiler.cli.tensorflow_command import tensorflow_command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("forward", help="run the network forward on data")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--checkpoint",
        help="a model dir (newest checkpoint), a ckpt-NNN dir or a "
        "checkpoint prefix (default: train.model_dir)",
    )
    p.add_argument(
        "--data",
        help="dataset spec: a built-in name or a YAML mapping, e.g. "
        '"{class: 12ax, num_seqs: 10}" (default: train.dev_data)',
    )
    p.add_argument("--model-dir", metavar="DIR", help="sets train.model_dir")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.hdf",
        help="output HDF file (default: MODEL_DIR/forward-LAYER.hdf)",
    )
    p.add_argument("--layer", default="output", help="the layer to write (default: output)")
    add_set_option(p)
    add_precision_option(p)
    p.set_defaults(handler=tensorflow_command("training.forward", "cli_forward"))
