"""Pieces shared by the command-line commands that run networks (`train`, `forward`,
`search`, `compile --checkpoint`, `import-returnn --checkpoint`): the user error they report
(`TrainError`), their exit codes, validating a command's config with its diagnostics printed,
reading a `--data` option, out-of-memory reports, and importing TensorFlow quietly.

Light: imports neither TensorFlow nor NumPy at module level (`netcompiler.cli.app` imports it)."""

from __future__ import annotations

import os
import sys

from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UserError

#: exit codes of the TensorFlow commands: done, an error (config, data, run), usage error
EXIT_ERROR = EXIT_INVALID
__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "TF_LOGS_ENV",
    "TrainError",
    "import_tensorflow_quietly",
    "needs_tf",
    "oom_types",
    "out_of_memory_error",
    "parse_data_spec",
    "user_error",
    "validated_config",
]


class TrainError(UserError):
    """A user-facing problem (bad dataset, missing model dir, ...): printed, exit code 1."""


# -- a command's config and options -------------------------------------------------------------
def validated_config(args):
    """A command's validated config (`args.config` with `args.set` and `args.model_dir`
    applied as overrides), its diagnostics printed to stderr; None on errors."""
    from netcompiler.core.diagnostics import format_text
    from netcompiler.frontend.validate import validate

    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "model_dir", None):
        overrides.append(f"train.model_dir={args.model_dir}")
    result = validate(args.config, overrides)
    for d in result.diagnostics:
        if not d.file:
            d = d.located(args.config, d.line, d.col)
        print(format_text(d), file=sys.stderr)
    return None if result.errors else result


def user_error(command: str, exc: BaseException | str) -> int:
    """Print `netcompiler COMMAND: error: EXC` (one line) and return exit code 1."""
    print(f"netcompiler {command}: error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def parse_data_spec(text: str | None, fallback):
    """The dataset spec of a `--data` option: `fallback` if it is not given, else the YAML
    value (a dataset name or a mapping), read with the config loader's bounds; a
    TrainError naming `--data` if it is not YAML."""
    if text is None:
        return fallback
    from netcompiler.core.diagnostics import ConfigError
    from netcompiler.frontend.loader import parse_yaml

    try:  # the config loader's bounds (alias expansion, nesting) apply to --data too
        return parse_yaml(text, "--data").data
    except ConfigError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        why = first.message if first is not None else str(exc)
        raise TrainError(f"--data: not a dataset name or YAML mapping: {why}") from None


# -- out of memory ----------------------------------------------------------------------------------
def out_of_memory_error(where: str, batch: str, opts) -> TrainError:
    """The TrainError for running out of (device or host) memory `where` on `batch` (a
    description such as "a batch of 3 sequences of up to 200 frames"), with a hint to
    lower train.batch_size (`opts` are the TrainOptions) or, for one sequence, why not."""
    single = batch.startswith("a batch of 1 sequence ")
    hint = (
        "the sequence alone does not fit: shorten it or use a device with more memory"
        if single
        else f"use a smaller train.batch_size (now {opts.batch_size}, in frames) or "
        f"train.max_seqs, e.g. --set train.batch_size={max(1, int(opts.batch_size) // 2)}"
    )
    return TrainError(f"out of memory {where} on {batch}; {hint}")


def oom_types():
    """The exception types that mean out of memory (imports TensorFlow)."""
    import tensorflow as tf

    return (tf.errors.ResourceExhaustedError, MemoryError)


# -- TensorFlow, imported when a command needs it ---------------------------------------------------
TF_LOGS_ENV = "NETCOMPILER_TF_LOGS"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN notes, CUDA probing on machines
    without a GPU) kept off the terminal: those lines are written before TensorFlow's own log
    level applies. Python errors still propagate. NETCOMPILER_TF_LOGS=1 keeps the chatter."""
    if "tensorflow" in sys.modules or os.environ.get(TF_LOGS_ENV):
        return
    try:  # (TF_CPP_MIN_LOG_LEVEL: set in netcompiler/__init__.py)
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. embedded): nothing to hide
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()  # device probing logs happen here
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def needs_tf(command: str, exc: ImportError) -> str:
    """One line for a TensorFlow subcommand whose TensorFlow (or another module of the `tf`
    extra) is missing or does not import."""
    from netcompiler import TF_INSTALL, missing_tf_extra

    missing = missing_tf_extra(exc)
    if missing == "tensorflow":
        return f"netcompiler {command}: needs TensorFlow; install it with {TF_INSTALL}"
    if missing is not None:
        return (
            f"netcompiler {command}: needs TensorFlow and {missing} (not installed); "
            f"install them with {TF_INSTALL}"
        )
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"netcompiler {command}: TensorFlow is installed but does not import ({why}); "
        f"reinstall it with {TF_INSTALL}"
    )
