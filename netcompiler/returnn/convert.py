"""`netcompiler import-returnn`: a RETURNN config file -> a netcompiler YAML config.

`import_returnn(path)` reads the config (`netcompiler.returnn.config`: as data, or run with
`exec_mode=True`) and maps its values:

- `network` as written (RETURNN network dicts are netcompiler's), tuples as lists; Python
  objects inside it (exec mode) are dropped and listed by layer and option;
- `extern_data` (options netcompiler lacks dropped and listed), else `num_inputs` /
  `num_outputs` expanded into `extern_data` (`data` dense with num_inputs features, the target
  sparse; `{key: [dim, ndim]}` sparse for ndim 1, dense otherwise; `{key: {...}}` as data
  options), and `target`;
- `train` / `dev` datasets: `HDFDataset` (and RETURNN's plain `"a.hdf,b.hdf"` string) -> `hdf`,
  `Task12AXDataset` -> `12ax` (RETURNN's sequence lengths 10..100); other classes are listed;
- training options onto `train:` with RETURNN's semantics and defaults where netcompiler's
  differ: `batch_size`, `max_seqs`, `batching`, `num_epochs`, `save_interval`, `random_seed`,
  `learning_rate` (RETURNN's default 1.0), the optimizer (`optimizer`, `adam`, `nadam`,
  `momentum`; none: plain SGD, RETURNN's default; `optimizer_epsilon`, default 1e-16),
  `learning_rates` (list or {epoch: rate}), `learning_rate_control` newbob (threshold mapped
  t -> t/(1-t)) and `newbob_multi_epoch` (RETURNN's rule, its options as they are) with
  `newbob_learning_rate_decay` (default 0.5), `newbob_relative_error_threshold`,
  `min_learning_rate`, `learning_rate_control_error_measure` (dev score or dev error),
  `gradient_clip` (per entry -> `gradient_clip_value`), `gradient_clip_global_norm`
  (-> `gradient_clip`), `gradient_noise`, `max_seq_length` (-n -> {classes: n}),
  `accum_grad_multiple_step`, `chunking` ("size:step", the same for every key), `model` (its
  directory -> `model_dir`).

Everything else is reported in three groups: *not imported* (warnings: options netcompiler has
no equivalent for, or whose RETURNN meaning differs, and values that are Python), *ignored*
(no meaning here: logging, devices, `task`, and options set to RETURNN's no-op default), and
*helpers* (values only used to compute others). A needed value that is Python is an error.

This module runs the parts in order and holds the command; the parts are
`netcompiler.returnn.convert_network`, `convert_data`, `convert_train` and
`convert_learning_rate`, working on an `ImportState` (`convert_state`); the result and its
YAML are `netcompiler.returnn.import_result` and `netcompiler.returnn.yaml_out`.
"""

from __future__ import annotations

import math

from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from netcompiler.returnn.config import read_config
from netcompiler.returnn.config_exec import DEFAULT_TIMEOUT
from netcompiler.returnn.config_values import NotData, ReadConfig, ReturnnConfigError, find_not_data
from netcompiler.returnn.convert_data import EXTERN_OPTIONS, map_datasets, map_extern_data
from netcompiler.returnn.convert_learning_rate import map_learning_rate
from netcompiler.returnn.convert_network import map_network
from netcompiler.returnn.convert_state import WHY_NOT, ImportState, is_noop, short_repr
from netcompiler.returnn.convert_train import (
    drop_rejected_train_options,
    map_optimizer,
    map_training_scalars,
)
from netcompiler.returnn.import_result import Entry, ImportResult, ReturnnImportError

#: keys whose value must be data (else an error suggesting --exec)
NEEDED_KEYS = (
    "network",
    "extern_data",
    "num_inputs",
    "num_outputs",
    "target",
    "batch_size",
    "max_seqs",
    "batching",
    "num_epochs",
    "save_interval",
    "random_seed",
    "learning_rate",
    "learning_rates",
    "learning_rate_control",
    "optimizer",
    "adam",
    "nadam",
    "momentum",
    "optimizer_epsilon",
    "gradient_clip_global_norm",
    "newbob_learning_rate_decay",
    "learning_rate_decay",
    "newbob_relative_error_threshold",
    "newbob_relative_error_div_by_old",
    "newbob_multi_num_epochs",
    "newbob_multi_update_interval",
    "min_learning_rate",
    "newbob_relative_error_grow_threshold",
    "newbob_learning_rate_growth",
    "learning_rate_growth",
    "learning_rate_control_relative_error_relative_lr",
    "learning_rate_control_min_num_epochs_per_new_lr",
    "learning_rate_control_error_measure",
)
#: keys with no meaning for netcompiler (logging, devices, the task to run)
IGNORED_KEYS = {
    "task": "the task is the netcompiler command",
    "use_tensorflow": "netcompiler is TensorFlow",
    "backend": "netcompiler is TensorFlow",
    "device": "devices are chosen by TensorFlow",
    "multiprocessing": "RETURNN's data loading process",
    "update_on_device": "RETURNN's device setup",
    "log": "RETURNN's log",
    "log_verbosity": "RETURNN's log",
    "log_batch_size": "RETURNN's log",
    "tf_log_memory_usage": "RETURNN's log",
    "tf_log_dir": "RETURNN's TensorBoard log",
    "tf_session_opts": "TF1 session options",
    "learning_rate_file": "netcompiler keeps the learning-rate state in its checkpoints",
    "cache_size": "RETURNN's data cache",
}
IGNORED_PREFIXES = ("debug_", "log_")


def needed_value_errors(read: ReadConfig) -> list[str]:
    """Located errors for the needed values (NEEDED_KEYS) that are not data: in safe mode the
    first Python part of each (run with --exec); in exec mode the Python objects except those
    the import drops and lists (inside the network, unknown extern_data options)."""
    errors: list[str] = []
    for key in NEEDED_KEYS:
        value = read.values.get(key)
        if key not in read.values:
            continue
        for path, bad in find_not_data(value):
            where = read.locate(key, bad)
            if not path and bad.line is None:
                where = read.locate(key)
            name = key + "".join(f"[{p!r}]" for p in path)
            if read.mode == "safe":
                errors.append(
                    f"{where}: error: {name}: {bad.plain_reason()} (needs Python; run with --exec)"
                )
            elif not (
                (key == "network" and path)
                or (  # dropped and listed
                    key == "extern_data" and len(path) >= 2 and path[1] not in EXTERN_OPTIONS
                )
            ):
                errors.append(f"{where}: error: {name}: not plain data: {bad.reason}")
            if read.mode == "safe":
                break
    return errors


def convert(read: ReadConfig, spec_augment: bool = False) -> ImportResult:
    """Map the values read from a RETURNN config to a netcompiler config (`spec_augment`:
    replace the SpecAugment recipe's `eval` layer by netcompiler's `spec_augment`)."""
    state = ImportState(read, spec_augment)
    if "network" not in state.values:
        map_network(state)  # the error saying why (first: the rest would not matter)
    errors = needed_value_errors(read)
    if errors:
        raise ReturnnImportError(errors)
    config = state.result.config
    extern = map_extern_data(state)
    if "target" in state.values:
        state.done.add("target")
    network = map_network(state)
    if extern is not None:
        config["extern_data"] = extern
    if isinstance(state.get("target"), str) and state.get("target") != "classes":
        config["target"] = state.get("target")
    config["network"] = network
    map_datasets(state)
    map_optimizer(state)
    map_learning_rate(state)
    map_training_scalars(state)
    _list_the_rest(state)
    if state.train:
        config["train"] = {k: v for _, k, v in sorted(state.train, key=lambda t: t[0])}
        drop_rejected_train_options(state)
    return state.result


def _list_the_rest(state: ImportState) -> None:
    """Every key not dealt with: ignored, Python, not imported (with why) or a helper value."""
    used = state.read.used
    for key, value in state.values.items():
        if key in state.done or key.startswith("__") or key == "_":  # `_`: thrown away
            continue
        if key in IGNORED_KEYS:
            state.ignore(key, IGNORED_KEYS[key])
        elif is_noop(key, value):
            state.ignore(key, f"{value!r} is RETURNN's default (no effect)")
        elif isinstance(value, NotData):
            state.result.python.append(Entry(key, state.line(key), value.plain_reason()))
        elif key.startswith(IGNORED_PREFIXES):
            state.ignore(key, "RETURNN's debugging/logging")
        elif key in WHY_NOT:
            state.skip(key, f"{short_repr(value)}: {WHY_NOT[key]}")
        elif key in used:
            state.result.helpers.append(key)
        else:
            state.skip(key, f"{short_repr(value)}: not a netcompiler option")


def import_returnn(
    path: str, exec_mode: bool = False, timeout: float = DEFAULT_TIMEOUT, spec_augment: bool = False
) -> ImportResult:
    """Read and map a RETURNN config. Raises ReturnnConfigError (ReturnnImportError) with
    located one-line messages for a config that cannot be read or imported."""
    return convert(read_config(path, exec_mode=exec_mode, timeout=timeout), spec_augment)


# -- the command line ------------------------------------------------------------------------------
COMMAND = "netcompiler import-returnn"


def _command_line(args) -> str:
    import shlex

    parts = ["netcompiler", "import-returnn", args.config]
    if args.exec:
        parts.append("--exec")
        if args.timeout != DEFAULT_TIMEOUT:
            parts += ["--timeout", f"{args.timeout:g}"]
    if getattr(args, "spec_augment", False):
        parts.append("--spec-augment")
    if args.output:
        parts += ["-o", args.output]
    if args.checkpoint:
        parts += ["--checkpoint", args.checkpoint, "--model-dir", args.model_dir]
    return shlex.join(parts)


def _usage_error(args) -> str | None:
    """What is wrong with the options taken together, if anything."""
    if bool(args.checkpoint) != bool(args.model_dir):
        return f"{COMMAND}: error: --checkpoint PREFIX and --model-dir DIR go together"
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        return f"{COMMAND}: error: --timeout must be a positive number of seconds"
    if args.timeout != DEFAULT_TIMEOUT and not args.exec:
        return f"{COMMAND}: error: --timeout applies to --exec only"
    return None


def cli_import_returnn(args, out, err) -> int:
    """`netcompiler import-returnn CONFIG [-o OUT.yaml] [--exec] [--timeout S]
    [--checkpoint PREFIX --model-dir DIR]`.

    Writes the YAML (atomically with -o, else to stdout), warnings for what was not imported
    on stderr, then validates it: its diagnostics are located in the written YAML. Exit 0 when
    it validates, 1 when the config cannot be imported or the YAML does not validate (the YAML
    is still written, for editing), 2 for usage errors and unreadable files. TensorFlow is
    imported only for --checkpoint.
    """
    from netcompiler.core.atomic import atomic_write_text
    from netcompiler.core.diagnostics import ERROR, format_text
    from netcompiler.frontend.validate import validate

    usage = _usage_error(args)
    if usage:
        print(usage, file=err)
        return EXIT_USAGE
    try:
        result = import_returnn(
            args.config,
            exec_mode=args.exec,
            timeout=args.timeout,
            spec_augment=getattr(args, "spec_augment", False),
        )
    except ReturnnConfigError as exc:
        for msg in exc.messages:
            print(msg, file=err)
        return EXIT_USAGE if exc.usage else EXIT_INVALID
    text = result.to_yaml(_command_line(args))
    target = args.output or "<stdout>"
    check = validate(text, name=target)
    if args.output:
        try:
            atomic_write_text(args.output, text)
        except OSError as exc:
            print(f"{COMMAND}: error: cannot write {args.output}: {exc.strerror or exc}", file=err)
            return EXIT_USAGE
    else:
        out.write(text)
        out.flush()
    for entry in result.warnings:
        print(
            f"{args.config}:{entry.line or 1}: warning: not imported: {entry.key}: {entry.text}",
            file=err,
        )
    for d in check.diagnostics:
        print(format_text(d), file=err)
    errors = [d for d in check.diagnostics if d.severity == ERROR]
    if errors:
        print(
            f"{COMMAND}: {target} does not validate ({len(errors)} "
            f"error{'s' if len(errors) != 1 else ''}); edit it, then "
            f"`netcompiler validate {args.output or 'OUT.yaml'}`",
            file=err,
        )
        for note in result.notes:
            if "--spec-augment" in note:
                print(f"{COMMAND}: hint: {note}", file=err)
        return EXIT_INVALID
    if args.checkpoint:
        return _import_checkpoint(args, result, out, err)
    return EXIT_OK


def _import_checkpoint(args, result: ImportResult, out, err) -> int:
    """--checkpoint: the RETURNN checkpoint's weights saved for the imported config (needs
    TensorFlow; the YAML is written before)."""
    from netcompiler.training.command_support import import_tensorflow_quietly, needs_tf

    try:
        import_tensorflow_quietly()
        from netcompiler.returnn.checkpoint_import import (
            ReturnnCheckpointError,
            import_returnn_checkpoint,
        )
    except ImportError as exc:  # the light install: the YAML is written, the weights not
        print(needs_tf("import-returnn --checkpoint", exc), file=err)
        return EXIT_USAGE
    try:
        summary = import_returnn_checkpoint(result.config, args.checkpoint, args.model_dir)
    except ReturnnCheckpointError as exc:
        print(f"{COMMAND}: error: {exc}", file=err)
        return EXIT_INVALID
    print(summary, file=out if args.output else err)
    return EXIT_OK


__all__ = [
    "import_returnn",
    "convert",
    "cli_import_returnn",
    "needed_value_errors",
    "NEEDED_KEYS",
    "IGNORED_KEYS",
    "IGNORED_PREFIXES",
]
