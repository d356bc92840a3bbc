"""The `netcompiler` command line: validate, schema, graph (and compile/train/search/forward).

`validate`, `schema` and `graph` never import TensorFlow, so they stay fast enough for editors
and pre-commit hooks. The TensorFlow subcommands import their module only when run.

Exit codes: 0 all valid, 1 some config invalid, 2 usage error (bad arguments, missing or
unreadable file, no configs found).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from netcompiler.core.diagnostics import ERROR, Diagnostic, Report, format_github, format_text
from netcompiler.training.command_support import import_tensorflow_quietly, needs_tf
from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, UsageError, UserError, internal_message
from netcompiler.frontend.graph_text import render_dot, render_mermaid
from netcompiler.core.rules import explain_command

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# load problems that mean "could not read the file" (exit 2), not "the config is invalid" (1)
UNREADABLE_RULES = ("load.missing", "load.unreadable")
# set to re-raise unexpected exceptions instead of reporting them as `internal` diagnostics
DEBUG_ENV = "NETCOMPILER_DEBUG"


# -- finding configs -------------------------------------------------------------------------------
def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _configs_in_dir(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*")
                  if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES)


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
            found = []
            for match in sorted(glob.glob(arg, recursive=True)):
                if os.path.isdir(match):
                    found.extend(_configs_in_dir(Path(match)))
                else:
                    found.append(match)
            if not found:
                problems.append(f"{arg}: no configs match this pattern")
        else:
            found = [arg]  # a missing file is reported as a `load.missing` diagnostic
        for f in found:
            if f not in files:
                files.append(f)
    return files, problems


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


def _internal(path: str, exc: BaseException) -> Diagnostic:
    if os.environ.get(DEBUG_ENV):
        raise exc
    return Diagnostic(ERROR, internal_message(exc), "internal", (), path)


def check_config(path: str, overrides: list[str], strict: bool) -> Checked:
    from netcompiler.frontend.validate import validate

    try:
        result = validate(path, overrides, strict=strict)
    except Exception as exc:  # a bug, not a user mistake: report it and go on
        return Checked([_internal(path, exc)], path=path)
    # diagnostics without a file (e.g. a failed `--set`) belong to this config
    diags = [d if d.file else d.located(path, d.line, d.col) for d in result.diagnostics]
    return Checked(diags, path=path, result=result)


# -- the --shapes table ----------------------------------------------------------------------------
def shape_rows(result) -> list[tuple[str, str, str, str]]:
    """(layer, class, output axes, params) rows: extern data first, then layers in dependency
    order with the layers of each rec unit indented under their rec layer."""
    inferred, graph = result.inferred, result.graph
    network = graph.network
    rows = []
    for key, shape in inferred.extern.items():
        rows.append((f"data:{key}", "extern_data", str(shape), "-"))
    order = graph.order()
    placed = set(order)
    order += [n for n in network.layers if n not in placed]  # e.g. layers on a cycle

    def add_scope(scope, depth: int):
        for name in order:
            layer = network.layers[name]
            if layer.scope is not scope:
                continue
            shape = inferred.shapes.get(name)
            rows.append(("  " * depth + name, layer.layer_class or "?",
                         str(shape) if shape is not None else "?",
                         str(inferred.param_count(name))))
            if layer.unit is not None:
                add_scope(layer.unit, depth + 1)
            if layer.subnet is not None:
                add_scope(layer.subnet, depth + 1)

    add_scope(network.top, 0)
    return rows


def format_shapes(result) -> list[str]:
    header = ("layer", "class", "output", "params")
    rows = shape_rows(result)
    total = str(result.inferred.total_params)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(4)]
    widths[3] = max(widths[3], len(total))

    def line(row):
        left = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
        return f"{left}  {row[3].rjust(widths[3])}".rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    out.append(line(("total", "", "", total)))
    return out


# -- validate --------------------------------------------------------------------------------------
def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def cmd_validate(args, out: TextIO, err: TextIO) -> int:
    overrides = args.set or []
    check_overrides(overrides)
    files, problems = expand_paths(args.paths)
    for p in problems:
        print(f"netcompiler validate: error: {p}", file=err)
    checked = [check_config(f, overrides, args.strict) for f in files]

    n_errors = sum(len(c.errors) for c in checked)
    n_warnings = sum(len(c.warnings) for c in checked)
    if args.format == "json":
        doc = {
            "configs": [{"path": c.path, "valid": c.valid,
                         "diagnostics": [_with_help(d) for d in c.diagnostics]}
                        for c in checked],
            "errors": n_errors,
            "warnings": n_warnings,
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        fmt = format_github if args.format == "github" else format_text
        for c in checked:
            for d in c.diagnostics:
                if args.quiet and d.severity != ERROR:
                    continue
                print(fmt(d), file=out)
        if args.format == "text" and not args.quiet:
            print(f"checked {_plural(len(checked), 'config')}: {_plural(n_errors, 'error')}, "
                  f"{_plural(n_warnings, 'warning')}", file=out)
            # where the rule ids are explained: the first error's, else the first warning's
            first = next((d.rule for c in checked for d in c.errors), None) or next(
                (d.rule for c in checked for d in c.diagnostics), None)
            if first is not None:
                print(f"({explain_command(first)} tells more)", file=out)
    if args.shapes and args.format != "json":
        for c in checked:
            if not c.valid or c.result is None or getattr(c.result, "inferred", None) is None:
                continue
            try:
                table = format_shapes(c.result)
            except Exception as exc:
                d = _internal(c.path, exc)
                c.diagnostics.append(d)
                print(format_text(d), file=err)
                continue
            print(f"\n{c.path}:", file=out)
            for row in table:
                print(row, file=out)

    if problems or any(c.unreadable for c in checked):
        return EXIT_USAGE
    return EXIT_INVALID if any(not c.valid for c in checked) else EXIT_OK


def _with_help(d: Diagnostic) -> dict:
    """A diagnostic as JSON, with `help`: the command that explains its rule."""
    return {**d.to_dict(), "help": explain_command(d.rule)}


# -- explain ---------------------------------------------------------------------------------------
def cmd_explain(args, out: TextIO, err: TextIO) -> int:
    """`netcompiler explain RULE`: what a diagnostic's rule checks and how to fix it; without
    RULE, the list of rule ids."""
    import textwrap

    from netcompiler.core.diagnostics import did_you_mean
    from netcompiler.core.rules import FAMILIES, RULES, explain, summary

    if not args.rule:
        width = max(len(r) for r in RULES)
        for rule in sorted(RULES):
            print(f"{rule.ljust(width)}  {textwrap.shorten(summary(rule), 98 - width)}",
                  file=out)
        return EXIT_OK
    rule = args.rule.strip().strip("[]")  # as copied from a message: `[schema.type]`
    text = explain(rule)
    if text is None:
        hint = did_you_mean(rule, list(RULES) + list(FAMILIES))
        raise UsageError(f"unknown rule `{rule}`" + (f"; {hint}" if hint else "") +
                         " (`netcompiler explain` lists them)")
    print(rule, file=out)
    print(textwrap.fill(text, 79, initial_indent="  ", subsequent_indent="  "), file=out)
    return EXIT_OK


# -- schema ----------------------------------------------------------------------------------------
def cmd_schema(args, out: TextIO, err: TextIO) -> int:
    from netcompiler.frontend.schema import render_config_schema, write_config_schema

    if args.write:
        path = write_config_schema()
        print(f"wrote {path}", file=err)
        return EXIT_OK
    json.dump(render_config_schema(), out, indent=2)
    out.write("\n")
    return EXIT_OK


# -- graph -----------------------------------------------------------------------------------------
def cmd_graph(args, out: TextIO, err: TextIO) -> int:
    if args.format == "png" and not args.output:
        raise UsageError("--format png needs -o FILE.png")
    overrides = args.set or []
    check_overrides(overrides)
    checked = check_config(args.config, overrides, strict=False)
    graph = getattr(checked.result, "graph", None)
    for d in checked.errors:
        print(format_text(d), file=err)
    if graph is None:
        print(f"netcompiler graph: error: {args.config}: cannot draw the graph", file=err)
        return EXIT_USAGE if checked.unreadable else EXIT_INVALID
    output = args.output
    try:
        if args.format in ("svg", "png", "html"):
            from netcompiler.frontend.render import RenderError, render

            try:
                data = render(checked.result, args.format, os.path.basename(args.config))
            except RenderError as exc:
                raise UsageError(f"--format {args.format}: {exc}") from None
        else:
            text = render_mermaid(graph) if args.format == "mermaid" else render_dot(graph)
            data = text.encode("utf-8")
    except UsageError:
        raise
    except Exception as exc:
        print(format_text(_internal(args.config, exc)), file=err)
        return EXIT_INVALID
    if output:
        from netcompiler.core.atomic import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        try:
            atomic_write(output, write, make_parents=False)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {output}", file=err)
    else:
        out.write(data.decode("utf-8"))
    return EXIT_OK


# -- subcommands that need TensorFlow (implemented in other modules) ------------------------------
def _lazy(module: str, func: str) -> Callable:
    def handler(args, out: TextIO, err: TextIO) -> int:
        from netcompiler import missing_tf_extra

        try:
            import_tensorflow_quietly()
        except ImportError as exc:  # the light install (`pip install netcompiler`)
            print(needs_tf(args.command, exc), file=err)
            return EXIT_USAGE
        try:
            fn = getattr(importlib.import_module(f"netcompiler.{module}"), func)
        except (ImportError, AttributeError) as exc:
            if missing_tf_extra(exc):
                print(needs_tf(args.command, exc), file=err)
            else:
                print(f"netcompiler {args.command}: not available yet ({exc})", file=err)
            return EXIT_USAGE
        try:
            return fn(args)
        except ModuleNotFoundError as exc:  # e.g. h5py, imported when an HDF file is read
            if not missing_tf_extra(exc):
                raise
            print(needs_tf(args.command, exc), file=err)
            return EXIT_USAGE

    return handler


# -- the parser ------------------------------------------------------------------------------------
def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config value before validation, e.g. "
                        "network.att.num_heads=8 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netcompiler", description="Validate, draw and compile YAML network configs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check configs (schema, references, shapes)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="config files, directories or globs")
    _add_set(p)
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument("--shapes", action="store_true",
                   help="print each valid network's layers, output axes and parameter counts")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print errors only (no warnings, no summary)")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("schema", help="print the config JSON Schema")
    p.add_argument("--write", action="store_true", help="rewrite schemas/config.schema.json")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("explain", help="explain a diagnostic's rule id, e.g. shape.conv-groups",
                       description="What a rule (the [id] at the end of a diagnostic) checks, "
                                   "and an example of the fix; without RULE, list the rules.")
    p.add_argument("rule", nargs="?", metavar="RULE", help="e.g. schema.unknown-option")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("graph", help="draw the layer dependency graph (dot, mermaid, or "
                                     "rendered with Graphviz: svg, png, html)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--format", choices=("dot", "mermaid", "svg", "png", "html"), default="dot",
                   help="dot/mermaid: the graph as text; svg/png: drawn by Graphviz's `dot` "
                        "(each layer with its class and shape, flagged layers red); html: one "
                        "self-contained page with the SVG and a table of the layers")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write here (atomically) instead of stdout (required for png)")
    _add_set(p)
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("compile", help="build the TensorFlow model and save it")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--checkpoint", help="load variables from this checkpoint first")
    _add_set(p)
    p.set_defaults(handler=_lazy("backend.export", "cli_compile"))

    p = sub.add_parser("train", help="train a config (resumes from the newest checkpoint)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--model-dir", metavar="DIR",
                   help="checkpoints, scores.tsv and TensorBoard logs (sets train.model_dir)")
    _add_set(p)
    p.set_defaults(handler=_lazy("training.trainer", "cli_train"))

    p = sub.add_parser("search", help="decode with beam search",
                       description="Beam search with the decoder (the rec unit with a `choice`) "
                                   "over a dataset: the n best hypotheses per sequence as TSV "
                                   "(seq_tag, rank, score, length, labels) and, when the data "
                                   "has the target, the sequence and label error rates.")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--checkpoint", required=True,
                   help="a ckpt-NNN directory or a model dir (its newest checkpoint)")
    p.add_argument("--data", required=True,
                   help="a built-in task name (reverse), a YAML mapping "
                        "(\"{class: reverse, num_seqs: 100, seed: 7}\"), an .hdf/.npz file, or "
                        "dev/train (the config's train.dev_data/train_data)")
    p.add_argument("-o", "--output", metavar="OUT.tsv",
                   help="write the hypotheses here (atomically; default: stdout)")
    p.add_argument("--beam-size", type=int, metavar="K",
                   help="beam size (default: the choice layer's beam_size)")
    p.add_argument("--n-best", type=int, default=1, metavar="N",
                   help="hypotheses per sequence, best first (default 1; at most K)")
    _add_set(p)
    p.set_defaults(handler=_lazy("training.search", "cli_search"))

    p = sub.add_parser("forward", help="run the network forward on data")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--checkpoint", help="a model dir (newest checkpoint), a ckpt-NNN dir or a "
                                        "checkpoint prefix (default: train.model_dir)")
    p.add_argument("--data", help="dataset spec: a built-in name or a YAML mapping, e.g. "
                                  "\"{class: 12ax, num_seqs: 10}\" (default: train.dev_data)")
    p.add_argument("--model-dir", metavar="DIR", help="sets train.model_dir")
    p.add_argument("-o", "--output", metavar="FILE.hdf",
                   help="output HDF file (default: MODEL_DIR/forward-LAYER.hdf)")
    p.add_argument("--layer", default="output", help="the layer to write (default: output)")
    _add_set(p)
    p.set_defaults(handler=_lazy("training.trainer", "cli_forward"))

    p = sub.add_parser(
        "import-returnn", help="convert a RETURNN config (and checkpoint) to netcompiler",
        description="Read a RETURNN config file as data (nothing is run; --exec runs it in a "
                    "child process) and write the netcompiler YAML, listing what was not "
                    "imported; the result is validated (exit 1 when it does not validate).")
    p.add_argument("config", metavar="CONFIG", help="the RETURNN config file")
    p.add_argument("-o", "--output", metavar="OUT.yaml",
                   help="write the YAML here (atomically; default: stdout)")
    p.add_argument("--exec", action="store_true",
                   help="run the config with Python in a child process, as RETURNN does "
                        "(only for your own configs)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="--exec: stop the child after S seconds (default 60)")
    p.add_argument("--spec-augment", action="store_true",
                   help="replace an eval layer running the config's Python SpecAugment "
                        "(RETURNN's recipe) by netcompiler's spec_augment layer")
    p.add_argument("--checkpoint", metavar="PREFIX",
                   help="also convert this RETURNN checkpoint (e.g. net-model/network.100)")
    p.add_argument("--model-dir", metavar="DIR",
                   help="with --checkpoint: write the netcompiler checkpoint into DIR")
    p.set_defaults(handler=_import_returnn)
    return parser


def _import_returnn(args, out: TextIO, err: TextIO) -> int:
    from netcompiler.returnn.convert import cli_import_returnn  # no TensorFlow unless --checkpoint

    return cli_import_returnn(args, out, err)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.handler(args, sys.stdout, sys.stderr)
    except UserError as exc:  # a mistake the user can fix: one line (UsageError: exit 2)
        print(f"netcompiler {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `netcompiler schema | head`
        return EXIT_OK
    except Exception as exc:  # InternalError or anything unexpected: a bug
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"netcompiler {args.command}: {internal_message(exc)}", file=sys.stderr)
        return EXIT_INVALID
