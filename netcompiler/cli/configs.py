"""The configs a command names: expanding paths and globs, checking `--set` texts, and
validating one config into a `Checked` report (an unexpected exception becomes an `internal`
diagnostic). Shared by `validate` and `graph`; never imports TensorFlow."""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from netcompiler.core.diagnostics import ERROR, Diagnostic, Report
from netcompiler.core.errors import UsageError, internal_message

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# load problems that mean "could not read the file" (exit 2), not "the config is invalid" (1)
UNREADABLE_RULES = ("load.missing", "load.unreadable")
# set to re-raise unexpected exceptions instead of reporting them as `internal` diagnostics
DEBUG_ENV = "NETCOMPILER_DEBUG"


# -- finding configs -------------------------------------------------------------------------------
def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _configs_in_dir(directory: Path) -> list[str]:
    return sorted(
        str(p) for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES
    )


def _configs_matching(pattern: str) -> list[str]:
    """The files a glob matches, a matched directory standing for the configs inside it."""
    found: list[str] = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        if os.path.isdir(match):
            found.extend(_configs_in_dir(Path(match)))
        else:
            found.append(match)
    return found


def expand_paths(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files to check (in argument order, each directory/glob sorted) and usage problems."""
    files: list[str] = []
    problems: list[str] = []
    for arg in paths:
        if os.path.isdir(arg):
            found = _configs_in_dir(Path(arg))
            if not found:
                problems.append(f"{arg}: no *.yaml, *.yml or *.json configs in this directory")
        elif _is_glob(arg) and not os.path.exists(arg):
            found = _configs_matching(arg)
            if not found:
                problems.append(f"{arg}: no configs match this pattern")
        else:
            found = [arg]  # a missing file is reported as a `load.missing` diagnostic
        for f in found:
            if f not in files:
                files.append(f)
    return files, problems


def add_set_option(p: argparse.ArgumentParser) -> None:
    """The `--set KEY=VALUE` option every command that reads a config takes."""
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override a config value before validation, e.g. network.att.num_heads=8 (repeatable)",
    )


class PrecisionOverride(argparse.Action):
    """`--precision P` is `--set train.precision=P`: the network reads its precision there."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.set = [*(getattr(namespace, "set", None) or []), f"train.precision={values}"]


def add_precision_option(p: argparse.ArgumentParser) -> None:
    """The `--precision` option of the commands that run a network (its choices: the schema's)."""
    from netcompiler.frontend.schema import load_schema

    choices = load_schema("train.schema.json")["properties"]["precision"]["enum"]
    p.add_argument(
        "--precision",
        choices=choices,
        action=PrecisionOverride,
        help="dtype of matmuls, einsums and convolutions (variables stay float32; "
        "default: the config's train.precision, float32)",
    )


def check_overrides(overrides: list[str]) -> None:
    """Reject malformed `--set` texts before any config is read."""
    from netcompiler.frontend.loader import parse_override

    for text in overrides:
        try:
            parse_override(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


# -- validating ------------------------------------------------------------------------------------
@dataclass
class Checked(Report):
    """One config's diagnostics (located in its file) and its ValidationResult."""

    path: str = ""
    result: object = None  # ValidationResult, when validation ran

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def unreadable(self) -> bool:
        return any(d.rule in UNREADABLE_RULES for d in self.errors)


def internal_diagnostic(path: str, exc: BaseException) -> Diagnostic:
    """An unexpected exception (a bug) as an `internal` error of the config at `path`; with
    DEBUG_ENV set, the exception is re-raised instead."""
    if os.environ.get(DEBUG_ENV):
        raise exc
    return Diagnostic(ERROR, internal_message(exc), "internal", (), path)


def check_config(path: str, overrides: list[str], strict: bool) -> Checked:
    """Validate the config at `path` with the `--set` overrides applied."""
    from netcompiler.frontend.validate import validate

    try:
        result = validate(path, overrides, strict=strict)
    except Exception as exc:  # a bug, not a user mistake: report it and go on
        return Checked([internal_diagnostic(path, exc)], path=path)
    # diagnostics without a file (e.g. a failed `--set`) belong to this config
    diags = [d if d.file else d.located(path, d.line, d.col) for d in result.diagnostics]
    return Checked(diags, path=path, result=result)
