r"""Decoding: `netcompiler search` (beam search over a dataset, n-best TSV, sequence and label
error rates) and `search_dataset`, which the trainer also uses for the per-epoch dev sequence
error.

The TSV has one row per hypothesis. A sequence tag is written escaped (`tsv_field`), so a tag with
a tab or a line break stays one field of one row: backslash -> `\\`, tab -> `\t`, newline ->
`\n`, carriage return -> `\r` (the escaping of PostgreSQL's text COPY format; `tsv_unescape`
undoes it). Tags without these characters are written as they are."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcompiler.core.atomic import atomic_write_text
from netcompiler.core.errors import UserError
from netcompiler.training.checkpoints import checkpoint_prefix, restore_network
from netcompiler.training.command_support import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    TrainError,
    oom_types,
    out_of_memory_error,
    parse_data_spec,
    user_error,
    validated_config,
)
from netcompiler.training.options import TrainOptions

EOS = 0
_TSV_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_TSV_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def tsv_field(text: str) -> str:
    """`text` escaped for one TSV field (see the module docstring)."""
    return "".join(_TSV_ESCAPES.get(c, c) for c in str(text))


def tsv_unescape(field: str) -> str:
    """The text of a field written by `tsv_field`."""
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field) and field[i + 1] in _TSV_UNESCAPES:
            out.append(_TSV_UNESCAPES[field[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_eos(labels) -> list[int]:
    """The labels up to (excluding) the first EOS (0); all of them if there is none.

    Applied to hypotheses and targets alike: the built-in decoder tasks end every target with one
    EOS (`reverse`: x_T..x_1, 0; `number_base_convert`: digits + 1, 0) and never use 0 inside; a
    search hypothesis has `length` labels, which excludes the EOS step unless the rec layer sets
    `include_eos: true` (then the EOS is its last label) -- cutting both at the first 0 compares
    the same thing either way. A hypothesis that never emitted EOS (it ran into max_seq_len) keeps
    all its labels."""
    out = []
    for x in np.asarray(labels).reshape(-1).tolist():
        if int(x) == EOS:
            break
        out.append(int(x))
    return out


def edit_distance(a, b) -> int:
    """Levenshtein distance between two label sequences (substitutions, insertions, deletions)."""
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


@dataclass
class SearchErrors:
    """Errors of the best hypotheses against the target (`target` None: the data has none)."""

    target: str | None
    seqs: int = 0
    seq_errors: int = 0
    label_errors: int = 0
    ref_labels: int = 0

    @property
    def sequence_error(self) -> float:
        return self.seq_errors / self.seqs if self.seqs else float("nan")

    @property
    def label_error(self) -> float:
        return self.label_errors / self.ref_labels if self.ref_labels else float("nan")


def search_dataset(net, rec, dataset, beam: int, n_best: int, opts: TrainOptions):
    """Beam search over a dataset in batches: ({seq index: n-best hypotheses}, SearchErrors)
    (see `strip_eos` for how EOS is treated)."""
    from netcompiler.backend.loop.unit_traits import choice_targets
    from netcompiler.training.datasets import batches, padded_batch

    targets = sorted(k for k in choice_targets(rec) if k)
    # every non-target key goes in (the loop takes its batch size from any batched input)
    inputs_needed = [k for k in dataset.keys if k in net.extern_shapes and k not in targets]
    target = targets[0] if len(targets) == 1 and targets[0] in dataset.keys else None
    errors = SearchErrors(target)
    hyps_by_index: dict[int, list[dict]] = {}
    for group in batches(
        dataset, int(opts.batch_size), opts.max_seqs, "sorted", int(opts.random_seed), 0
    ):
        inputs, lengths = padded_batch(dataset, group)
        ins = {k: inputs[k] for k in inputs_needed}
        lens = {k: lengths[k] for k in inputs_needed if net.extern_shapes[k].time is not None}
        try:
            res = net.search(ins, lens, beam_size=beam, n_best=n_best)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        except oom_types():
            frames = max((int(np.max(v)) for v in lens.values()), default=0)
            raise out_of_memory_error(
                f"in beam search (beam {beam})",
                f"a batch of {len(group)} sequence{'s' if len(group) != 1 else ''}"
                + (f" of up to {frames} frames" if frames else ""),
                opts,
            ) from None
        for i, hyps in zip(group, res):
            hyps_by_index[int(i)] = hyps
            if target is not None:
                hyp = strip_eos(hyps[0]["labels"])
                ref = strip_eos(dataset.get_seq(int(i))[target])
                errors.seqs += 1
                errors.seq_errors += int(hyp != ref)
                errors.label_errors += edit_distance(hyp, ref)
                errors.ref_labels += len(ref)
    return hyps_by_index, errors


def _search_dataset_spec(text: str, opts: TrainOptions):
    """(spec, name) for `--data`: `dev`/`train` (the config's train.dev_data/train_data, with the
    trainer's seeds), a built-in task name, a YAML flow mapping, or an .hdf/.h5/.npz path."""
    if text in ("dev", "train"):
        spec = opts.dev_data if text == "dev" else opts.train_data
        if spec is None:
            raise TrainError(f"--data {text}: the config has no train.{text}_data")
        return spec, text
    stripped = text.strip()
    lower = stripped.lower()
    if lower.endswith((".hdf", ".h5", ".hdf5", ".npz")) and not stripped.startswith("{"):
        if Path(stripped).is_dir():
            raise TrainError(f"--data: {stripped} is a directory, not a file")
        if not Path(stripped).is_file():
            raise TrainError(f"--data: no such file: {stripped}")
        return {"class": "npz" if lower.endswith(".npz") else "hdf", "files": stripped}, "search"
    return parse_data_spec(text, None), "search"


def cli_search(args) -> int:
    """`netcompiler search CONFIG --checkpoint CKPT --data DATA [-o OUT] [--beam-size K]
    [--n-best N] [--set K=V]`: beam search with the decoder (the rec unit with a `choice`) over a
    dataset; writes the n best hypotheses per sequence as TSV (atomically) or to stdout, and --
    when the data has the choice's target -- prints the sequence and label error rates of the
    best hypotheses (see `strip_eos` for how EOS is treated)."""
    result = validated_config(args)
    if result is None:
        return EXIT_ERROR
    beam = getattr(args, "beam_size", None)
    n_best = getattr(args, "n_best", None)
    if beam is not None and beam < 1:
        print("netcompiler search: error: --beam-size must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    if n_best is not None and n_best < 1:
        print("netcompiler search: error: --n-best must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _search(args, result)
    except UserError as exc:  # TrainError, DatasetError, Unsupported, ...
        return user_error("search", exc)
    except OSError as exc:
        return user_error("search", f"cannot write the output: {exc}")


def _search(args, result) -> int:
    from netcompiler.backend.build import CompiledNetwork
    from netcompiler.backend.loop.unit_traits import (
        choice_targets,
        search_rec_layer,
        search_rec_layers,
    )

    config = result.config.data
    opts = TrainOptions.from_config(config)
    if not search_rec_layers(result.inferred.network):
        raise TrainError(
            "the network has no decoder to search: no `rec` layer with a `unit` "
            "containing a `choice` layer"
        )
    # data first (cheap, the most common mistake), then the checkpoint
    spec, name = _search_dataset_spec(args.data, opts)
    prefix = checkpoint_prefix(args.checkpoint)
    net = CompiledNetwork(result, seed=int(opts.random_seed))
    rec = search_rec_layer(net)
    targets = sorted(k for k in choice_targets(rec) if k)
    dataset = _open_search_dataset(config, spec, name, targets, net, opts)
    beam = _beam_size(args, rec)
    n_best = int(getattr(args, "n_best", None) or 1)
    if n_best > beam:
        print(
            f"netcompiler search: error: --n-best {n_best} is larger than the beam size {beam}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    restore_network(net, prefix)
    _check_decoder_inputs(net, rec, targets, dataset)
    hyps_by_index, errors = search_dataset(net, rec, dataset, beam, n_best, opts)
    text = nbest_tsv(hyps_by_index, dataset.seq_tags)
    out = getattr(args, "output", None)
    to_stdout = out in (None, "-")
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(Path(out), text)
    info = sys.stderr if to_stdout else sys.stdout
    where = "" if to_stdout else f" -> {out}"
    summary = f"search: {len(hyps_by_index)} sequences, beam size {beam}, n-best {n_best}{where}"
    print(summary + error_rates_summary(errors), file=info, flush=True)
    return EXIT_OK


def _open_search_dataset(config: dict, spec, name: str, targets: list[str], net, opts):
    """The dataset to search, read with the config's `extern_data` in which the choice
    `targets` are optional (plain inference data has none); raises TrainError if it is bad."""
    from netcompiler.frontend.extern_data import shared_time_keys
    from netcompiler.training.datasets import DatasetError, check_shared_time_axes, make_dataset

    extern = dict(config.get("extern_data") or {})
    for k in targets:  # the targets are optional in the data (plain inference data)
        if isinstance(extern.get(k), dict):
            extern[k] = dict(extern[k], available_for_inference=False)
    try:
        dataset = make_dataset(spec, extern, default_seed=int(opts.random_seed), name=name)
        check_shared_time_axes(dataset, shared_time_keys(net.inferred.extern))
    except DatasetError as exc:
        raise TrainError(f"bad dataset: {exc}") from None
    return dataset


def _beam_size(args, rec) -> int:
    """`--beam-size`, else the decoder's `choice` layer's `beam_size` (default 1)."""
    from netcompiler.backend.loop.unit_traits import choice_layer

    return int(
        args.beam_size
        if getattr(args, "beam_size", None) is not None
        else choice_layer(rec).opts.get("beam_size", 1) or 1
    )


def _check_decoder_inputs(net, rec, targets: list[str], dataset) -> None:
    """Raises TrainError if the dataset lacks an input (not a choice target) that the
    decoder `rec` needs."""
    inputs_needed = [
        k
        for k in net.extern_shapes
        if k not in targets and f"data:{k}" in net.needed_layers([rec.name])
    ]
    missing = [k for k in inputs_needed if k not in dataset.keys]
    if missing:
        raise TrainError(f"the dataset has no key(s) {', '.join(missing)} needed by the decoder")


def nbest_tsv(hyps_by_index: dict[int, list[dict]], seq_tags) -> str:
    """The n-best TSV text: a header, then one row per hypothesis (sequences in index order,
    hypotheses by rank from 1), the tag escaped by `tsv_field`."""
    lines = ["seq_tag\trank\tscore\tlength\tlabels"]
    for i in sorted(hyps_by_index):
        tag = tsv_field(seq_tags[i])
        for rank, h in enumerate(hyps_by_index[i], start=1):
            labels = " ".join(str(int(x)) for x in h["labels"])
            lines.append(f"{tag}\t{rank}\t{h['score']:.6f}\t{h['length']}\t{labels}")
    return "\n".join(lines) + "\n"


def error_rates_summary(errors: SearchErrors) -> str:
    """The error rates for the search summary line ("" when the data has no target)."""
    if errors.target is None:
        return ""
    return (
        f"; sequence error {errors.sequence_error:.2%} ({errors.seq_errors}/{errors.seqs}), "
        f"label error {errors.label_error:.2%} ({errors.label_errors}/{errors.ref_labels})"
    )
