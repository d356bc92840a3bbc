"""`netcompiler train CONFIG`: train a config, resuming from the newest checkpoint (the work is
`netcompiler.training.trainer.cli_train`, imported when the command runs)."""

from __future__ import annotations

from netcompiler.cli.configs import add_set_option
from netcompiler.cli.tensorflow_command import tensorflow_command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a config (resumes from the newest checkpoint)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        help="checkpoints, scores.tsv and TensorBoard logs (sets train.model_dir)",
    )
    add_set_option(p)
    p.set_defaults(handler=tensorflow_command("training.trainer", "cli_train"))
