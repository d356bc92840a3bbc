"""`netcompiler search CONFIG --checkpoint CK --data D`: beam search with the decoder (the work
is `netcompiler.training.search.cli_search`, imported when the command runs)."""

from __future__ import annotations

from netcompiler.cli.configs import add_precision_option, add_set_option
from netcompiler.cli.tensorflow_command import tensorflow_command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="decode with beam search",
        description="Beam search with the decoder (the rec unit with a `choice`) "
        "over a dataset: the n best hypotheses per sequence as TSV "
        "(seq_tag, rank, score, length, labels) and, when the data "
        "has the target, the sequence and label error rates.",
    )
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a ckpt-NNN directory or a model dir (its newest checkpoint)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="a built-in task name (reverse), a YAML mapping "
        '("{class: reverse, num_seqs: 100, seed: 7}"), an .hdf/.npz file, or '
        "dev/train (the config's train.dev_data/train_data)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.tsv",
        help="write the hypotheses here (atomically; default: stdout)",
    )
    p.add_argument(
        "--beam-size",
        type=int,
        metavar="K",
        help="beam size (default: the choice layer's beam_size)",
    )
    p.add_argument(
        "--n-best",
        type=int,
        default=1,
        metavar="N",
        help="hypotheses per sequence, best first (default 1; at most K)",
    )
    add_set_option(p)
    add_precision_option(p)
    p.set_defaults(handler=tensorflow_command("training.search", "cli_search"))
