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
"""
from __future__ import annotations

import math
import os
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import yaml

from netcompiler.core.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from netcompiler.frontend.loader import EXP_FLOAT
from netcompiler.returnn.config import (DEFAULT_TIMEOUT, NotData, ReadConfig, ReturnnConfigError,
                             find_not_data, read_config)

#: keys whose value must be data (else an error suggesting --exec)
NEEDED_KEYS = ("network", "extern_data", "num_inputs", "num_outputs", "target", "batch_size",
               "max_seqs", "batching", "num_epochs", "save_interval", "random_seed",
               "learning_rate", "learning_rates", "learning_rate_control", "optimizer", "adam",
               "nadam", "momentum", "optimizer_epsilon", "gradient_clip_global_norm",
               "newbob_learning_rate_decay", "learning_rate_decay",
               "newbob_relative_error_threshold", "newbob_relative_error_div_by_old",
               "newbob_multi_num_epochs", "newbob_multi_update_interval", "min_learning_rate",
               "newbob_relative_error_grow_threshold", "newbob_learning_rate_growth",
               "learning_rate_growth", "learning_rate_control_relative_error_relative_lr",
               "learning_rate_control_min_num_epochs_per_new_lr",
               "learning_rate_control_error_measure")
#: keys with no meaning for netcompiler (logging, devices, the task to run)
IGNORED_KEYS = {
    "task": "the task is the netcompiler command",
    "use_tensorflow": "netcompiler is TensorFlow",
    "backend": "netcompiler is TensorFlow",
    "device": "devices are chosen by TensorFlow",
    "multiprocessing": "RETURNN's data loading process",
    "update_on_device": "RETURNN's device setup",
    "log": "RETURNN's log", "log_verbosity": "RETURNN's log", "log_batch_size": "RETURNN's log",
    "tf_log_memory_usage": "RETURNN's log", "tf_log_dir": "RETURNN's TensorBoard log",
    "tf_session_opts": "TF1 session options",
    "learning_rate_file": "netcompiler keeps the learning-rate state in its checkpoints",
    "cache_size": "RETURNN's data cache",
}
IGNORED_PREFIXES = ("debug_", "log_")
#: RETURNN options that change nothing at these values (their defaults)
NOOP_VALUES = {
    "gradient_clip": (0,), "gradient_clip_norm": (0,), "gradient_clip_avg_norm": (0,),
    "gradient_noise": (0,), "gradient_nan_inf_filter": (False,), "chunking": ("0", "", 0, None),
    "truncation": (-1,), "max_seq_length": (0, None), "window": (1,),
    "stop_on_nonfinite_train_score": (True,), "maximize_grad_norm": (0,),
    "grad_norm_to_clip_to_zero": (0,), "accum_grad_multiple_step": (0, 1),
}
WHY_NOT = {
    "gradient_clip_norm": "per-variable norm clipping; netcompiler clips the global norm "
                          "(gradient_clip) or every entry (gradient_clip_value)",
    "gradient_clip_avg_norm": "netcompiler clips the global norm or every entry",
    "gradient_nan_inf_filter": "netcompiler stops on a NaN/Inf loss instead",
    "truncation": "netcompiler has no truncated backpropagation",
    "stop_on_nonfinite_train_score": "netcompiler always stops on a NaN/Inf loss",
    "eval": "`netcompiler train` has no eval dataset (use `netcompiler forward --data`)",
    "cleanup_old_models": "netcompiler keeps the newest train.keep_last_n checkpoints",
    "pretrain": "netcompiler has no layer-wise pretraining",
    "adadelta": "netcompiler has no Adadelta", "adagrad": "netcompiler has no Adagrad",
    "rmsprop": "netcompiler has no RMSProp",
    "learning_rate_control_relative_error_relative_lr":
        "netcompiler's newbob does not scale the relative error by the learning rate",
    "learning_rate_control_min_num_epochs_per_new_lr":
        "netcompiler's newbob may change the rate after every epoch",
    "learning_rate_control_error_measure":
        "netcompiler's newbob compares the dev loss or the dev error (else train's)",
    "newbob_learning_rate_growth": "netcompiler's newbob never grows the rate",
}
NEWBOB_KEYS = ("newbob_learning_rate_decay", "learning_rate_decay",
               "newbob_relative_error_threshold", "newbob_relative_error_div_by_old",
               "newbob_multi_num_epochs", "newbob_multi_update_interval",
               "newbob_relative_error_grow_threshold", "newbob_learning_rate_growth",
               "newbob_error_threshold", "min_learning_rate",
               "learning_rate_control_relative_error_relative_lr",
               "learning_rate_control_min_num_epochs_per_new_lr",
               "learning_rate_control_error_measure")
OPTIMIZER_KEYS = ("optimizer", "adam", "nadam", "adadelta", "adagrad", "rmsprop", "momentum",
                  "optimizer_epsilon")
EXTERN_OPTIONS = ("dim", "sparse", "shape", "dtype", "available_for_inference", "same_time_as")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "bool")
RETURNN_EPSILON = 1e-16  # RETURNN's default `optimizer_epsilon`
RETURNN_LEARNING_RATE = 1.0  # RETURNN's default `learning_rate`
RETURNN_NEWBOB_DECAY = 0.5  # RETURNN's default `newbob_learning_rate_decay`
RETURNN_NEWBOB_THRESHOLD = -0.01
RETURNN_12AX_LENGTHS = (10, 100)  # Task12AXDataset: random.randint(10, 100), both inclusive
LINE_WIDTH = 100


class ReturnnImportError(ReturnnConfigError):
    """The config cannot be imported (e.g. its network needs Python)."""


@dataclass
class Entry:
    """One listed key: why it was not imported (or ignored)."""

    key: str
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}{where}: {self.text}"


@dataclass
class ImportResult:
    source: str
    mode: str
    config: dict
    not_imported: list[Entry] = field(default_factory=list)
    python: list[Entry] = field(default_factory=list)
    ignored: list[Entry] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[Entry]:
        """Everything not imported (options without an equivalent, Python values), by line."""
        return _by_line(self.not_imported + self.python)

    def header(self, command: str | None = None) -> str:
        how = {"safe": "read as data, nothing run", "exec": "run with --exec",
               "json": "a JSON config"}[self.mode]
        lines = [f"Imported from the RETURNN config ({how}): {_NOWRAP}{self.source}"]
        if command:
            lines.append(f"by: {_NOWRAP}{command}")
        blocks = [lines]
        if self.not_imported:
            blocks.append(["Not imported (no equivalent in netcompiler):"]
                          + [f"  - {e}" for e in _by_line(self.not_imported)])
        if self.python:
            blocks.append(["Python, not imported:"]
                          + [f"  - {e}" for e in _by_line(self.python)])
        if self.ignored:
            blocks.append(["Ignored (no meaning here, or RETURNN's no-op default):"]
                          + [f"  - {e}" for e in _by_line(self.ignored)])
        if self.helpers:
            blocks.append(["Helper values (used to compute the values below): "
                           + ", ".join(self.helpers)])
        if self.notes:
            blocks.append(["Notes:"] + [f"  - {n}" for n in self.notes])
        out: list[str] = []
        for i, block in enumerate(blocks):
            if i:
                out.append("#")
            for line in block:
                if _NOWRAP in line:  # a path or a command: on a line of its own, unbroken
                    head, _, tail = line.partition(_NOWRAP)
                    out += ["# " + head.rstrip(), "#   " + tail]
                    continue
                indent = "#     " if line.startswith("  - ") else "#   "
                wrapped = textwrap.wrap(line, LINE_WIDTH - 2, subsequent_indent="    ",
                                        break_long_words=False, break_on_hyphens=False) or [""]
                out.append("# " + wrapped[0])
                out += [indent + w.strip() for w in wrapped[1:]]
        return "\n".join(out) + "\n"

    def to_yaml(self, command: str | None = None) -> str:
        return self.header(command) + dump_yaml(self.config)


_NOWRAP = "\x00"


def _by_line(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.line or 0))


# -- YAML a person would write ---------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Quotes every string that netcompiler's loader would read as something else (it also
    reads `1e-3` as a float), and double-quotes strings with YAML line breaks (NEL, LS, PS)."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", EXP_FLOAT, list("-+.0123456789"))
_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper, value: str):
    style = '"' if any(c in value for c in _BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _flow(value) -> str:
    text = yaml.dump(value if isinstance(value, (dict, list)) else [value], Dumper=_Dumper,
                     default_flow_style=True, sort_keys=False, width=10 ** 9,
                     allow_unicode=True).strip()
    return text if isinstance(value, (dict, list)) else text[1:-1]


def _fits(indent: int, head: str, value) -> bool:
    text = _flow(value)
    return "\n" not in text and indent + len(head) + len(text) <= LINE_WIDTH


def _scalars(value) -> bool:
    return isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value)


def _block(value, indent: int, head: str) -> bool:
    """Whether a mapping/list goes in block style: it does not fit on the line (a list of
    scalars always stays one flow line)."""
    return isinstance(value, (dict, list)) and bool(value) and not _scalars(value) \
        and not _fits(indent, head, value)


def _emit(value, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            head = f"{_flow(str(k))}:"
            if _block(v, indent, head + " "):
                lines.append(pad + head)
                _emit(v, indent + 2, lines)
            else:
                lines.append(f"{pad}{head} {_flow(v)}")
    else:  # a list too long for one line: one item per line
        for v in value:
            if _block(v, indent, "- "):
                sub: list[str] = []
                _emit(v, indent + 2, sub)
                lines.append(pad + "- " + sub[0][indent + 2:])
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_flow(v)}")


def dump_yaml(config: dict) -> str:
    """Block style for the sections, flow style for mappings and lists that fit on one line
    (~100 characters), keys in the given order, a blank line between top-level sections."""
    lines: list[str] = []
    for i, (key, value) in enumerate(config.items()):
        if i and isinstance(value, dict) or (i and isinstance(list(config.values())[i - 1], dict)):
            lines.append("")
        if isinstance(value, dict) and value:  # a section: always block style
            lines.append(f"{_flow(str(key))}:")
            _emit(value, 2, lines)
        else:
            _emit({key: value}, 0, lines)
    return "\n".join(lines) + "\n"


# -- the mapping -----------------------------------------------------------------------------------
class _Importer:
    def __init__(self, read: ReadConfig, spec_augment: bool = False):
        self.read = read
        self.replace_spec_augment = spec_augment
        self.values = read.values
        self.order = {k: i for i, k in enumerate(self.values)}
        self.result = ImportResult(read.path, read.mode, {})
        self.errors: list[str] = []
        self.done: set[str] = set()
        self.train: list[tuple[float, str, Any]] = []  # (position, key, value)

    # -- helpers ------------------------------------------------------------------------------
    def line(self, key: str) -> int | None:
        return self.read.lines.get(key)

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def skip(self, key: str, text: str) -> None:
        self.done.add(key)
        self.result.not_imported.append(Entry(key, self.line(key), text))

    def ignore(self, key: str, text: str) -> None:
        self.done.add(key)
        self.result.ignored.append(Entry(key, self.line(key), text))

    def emit(self, key: str, value, *sources: str) -> None:
        present = [self.order[s] for s in sources if s in self.order]
        pos = min(present) if present else len(self.order) + len(self.train)
        self.train.append((pos, key, value))
        self.done.update(s for s in sources if s in self.values)

    def needed_check(self) -> None:
        for key in NEEDED_KEYS:
            value = self.values.get(key)
            if key not in self.values:
                continue
            for path, bad in find_not_data(value):
                where = self.read.locate(key, bad)
                if not path and bad.line is None:
                    where = self.read.locate(key)
                name = key + "".join(f"[{p!r}]" for p in path)
                if self.read.mode == "safe":
                    self.errors.append(f"{where}: error: {name}: {_reason(bad)} "
                                       f"(needs Python; run with --exec)")
                elif not ((key == "network" and path) or (  # dropped and listed
                        key == "extern_data" and len(path) >= 2
                        and path[1] not in EXTERN_OPTIONS)):
                    self.errors.append(f"{where}: error: {name}: not plain data: {bad.reason}")
                if self.read.mode == "safe":
                    break

    # -- the parts ----------------------------------------------------------------------------
    def run(self) -> ImportResult:
        if "network" not in self.values:
            self.network()  # the error saying why (first: the rest would not matter)
        self.needed_check()
        if self.errors:
            raise ReturnnImportError(self.errors)
        config = self.result.config
        extern = self.extern_data()
        if "target" in self.values:
            self.done.add("target")
        network = self.network()
        if extern is not None:
            config["extern_data"] = extern
        if isinstance(self.get("target"), str) and self.get("target") != "classes":
            config["target"] = self.get("target")
        config["network"] = network
        self.datasets()
        self.optimizer()
        self.learning_rate()
        self.training_scalars()
        self.rest()
        if self.train:
            config["train"] = {k: v for _, k, v in sorted(self.train, key=lambda t: t[0])}
            self.drop_rejected_train_options()
        return self.result

    def drop_rejected_train_options(self) -> None:
        """A mapped training value netcompiler's schema rejects (e.g. `laplace:.0`, a negative
        seed) is listed as not imported instead of making the YAML invalid."""
        from netcompiler.frontend.schema import validate_config

        train = self.result.config["train"]
        for d in validate_config({"network": {}, "train": train}):
            if d.severity == "error" and len(d.path) >= 2 and d.path[0] == "train" \
                    and d.path[1] in train:
                key = d.path[1]
                value = train.pop(key)
                self.result.not_imported.append(Entry(
                    f"train.{key}", None, f"{_short(value)}: not accepted by netcompiler "
                                          f"({d.message})"))
        if not train:
            del self.result.config["train"]

    def network(self):
        if "network" not in self.values:
            torch = self.get("backend") == "torch" or any(
                k in self.values for k in ("get_model", "train_step", "forward_step"))
            hint = (" (a PyTorch-backend config: its model is Python code, `get_model` / "
                    "`train_step`; netcompiler imports RETURNN's TF network dicts)"
                    if torch else "")
            raise ReturnnImportError(f"{self.read.path}: error: no `network` dict{hint}")
        self.done.add("network")
        network = self.values["network"]
        if not isinstance(network, dict):
            raise ReturnnImportError(f"{self.read.locate('network')}: error: `network` must be "
                                     f"a dict, got {type(network).__name__}")
        network = self.plain(network, ("network",))
        self.behavior_defaults(network)
        self.spec_augment(network)
        return network

    def spec_augment(self, network: dict) -> None:
        """RETURNN's SpecAugment recipe is Python: an `eval` layer calls a function of the
        config (`self.network.get_config().typed_value('transform')(source(0, as_data=True),
        network=self.network)`). With --spec-augment such a layer becomes netcompiler's
        `spec_augment` with the recipe's widths (time masks up to 20 frames, at least 2 per
        sequence and one per 100 frames; 2 feature masks up to F/5); otherwise a note says so.
        The recipe's masks grow with the training step (after 1000 and 2000 steps), which is
        not reproduced."""
        for name, layer in network.items():
            if not isinstance(layer, dict) or layer.get("class") != "eval":
                continue
            m = _SPEC_AUGMENT_CALL.search(str(layer.get("eval", "")))
            if m is None or not isinstance(self.values.get(m.group(1)), NotData):
                continue
            func = m.group(1)
            if not self.replace_spec_augment:
                self.result.notes.append(
                    f"network.{name} calls the config's Python function `{func}` (RETURNN's "
                    f"SpecAugment recipe); run with --spec-augment to replace it by "
                    f"netcompiler's `spec_augment` layer")
                continue
            new = {"class": "spec_augment"}
            if "from" in layer:
                new["from"] = layer["from"]
            new.update(SPEC_AUGMENT_RECIPE)
            network[name] = new
            self.result.notes.append(
                f"network.{name}: the `eval` layer calling the config's Python `{func}` "
                f"(RETURNN's SpecAugment recipe) is replaced by `spec_augment` with the "
                f"recipe's first widths (--spec-augment); the recipe's growth of the masks "
                f"with the training step is not reproduced: review the options")

    def behavior_defaults(self, network: dict) -> None:
        """RETURNN defaults that changed with `behavior_version`, written out where they differ
        from netcompiler's: a `conv` without `with_bias` (and without `bias`) has no bias before
        behavior_version 10, so it gets `with_bias: false` (its checkpoint holds no bias)."""
        version = self.get("behavior_version")
        if "behavior_version" in self.values:
            self.done.add("behavior_version")
        if isinstance(version, int) and not isinstance(version, bool) and version >= 10:
            return
        changed: list[str] = []

        def walk(layers: dict, prefix: str) -> None:
            for name, layer in layers.items():
                if not isinstance(layer, dict):
                    continue
                if layer.get("class") == "conv" and "with_bias" not in layer \
                        and not layer.get("bias"):
                    layer["with_bias"] = False
                    changed.append(prefix + str(name))
                for key in ("unit", "subnetwork"):
                    if isinstance(layer.get(key), dict):
                        walk(layer[key], f"{prefix}{name}/")

        walk(network, "")
        if changed:
            since = (f"behavior_version {version}" if version is not None
                     else "no behavior_version")
            self.result.notes.append(
                f"`with_bias: false` written on conv layers {', '.join(changed)}: RETURNN's "
                f"conv has no bias by default before behavior_version 10 ({since} here)")

    def plain(self, value, path: tuple):
        """Tuples as lists, keys as strings; Python objects (exec mode) dropped and listed."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(v, NotData):
                    name = ".".join(str(p) for p in path[1:] + (k,))
                    self.result.python.append(Entry(f"{path[0]}.{name}", self.line(path[0]),
                                                    f"{v.reason} (not importable)"))
                    continue
                out[str(k)] = self.plain(v, path + (k,))
            return out
        if isinstance(value, (list, tuple)):
            items = []
            for i, v in enumerate(value):
                if isinstance(v, NotData):
                    name = ".".join(str(p) for p in path[1:] + (i,))
                    self.result.python.append(Entry(f"{path[0]}.{name}", self.line(path[0]),
                                                    f"{v.reason} (not importable)"))
                    continue
                items.append(self.plain(v, path + (i,)))
            return items
        return value

    def extern_entry(self, key: str, source: str, entry) -> dict | Any:
        if not isinstance(entry, dict):
            return self.plain(entry, (source, key))
        out = {}
        for opt, v in entry.items():
            if opt in EXTERN_OPTIONS:
                if opt == "dtype" and v not in DTYPES:
                    self.result.not_imported.append(Entry(
                        f"{source}.{key}.dtype", self.line(source),
                        f"{v!r} is not a netcompiler dtype; the default "
                        f"({'int32' if entry.get('sparse') else 'float32'}) is used"))
                    continue
                if v is None and opt == "dim":
                    continue
                out[opt] = self.plain(v, (source, key, opt))
            else:
                self.result.not_imported.append(Entry(
                    f"{source}.{key}.{opt}", self.line(source),
                    "not a netcompiler extern_data option"))
        return out

    def extern_data(self) -> dict | None:
        extern = self.get("extern_data")
        if isinstance(extern, dict):
            self.done.add("extern_data")
            for k in ("num_inputs", "num_outputs"):
                if k in self.values:
                    self.ignore(k, "extern_data is given (it wins, as in RETURNN)")
            return {str(k): self.extern_entry(str(k), "extern_data", v) for k, v in extern.items()}
        if "extern_data" in self.values:
            raise ReturnnImportError(f"{self.read.locate('extern_data')}: error: `extern_data` "
                                     f"must be a dict")
        num_in, num_out = self.get("num_inputs"), self.get("num_outputs")
        if num_in is None and num_out is None:
            return None
        target = self.get("target") if isinstance(self.get("target"), str) else "classes"
        out: dict = {}
        if isinstance(num_in, int) and not isinstance(num_in, bool):
            out["data"] = {"dim": num_in}
        elif num_in is not None:
            self.skip("num_inputs", f"{num_in!r} is not a number")
        if isinstance(num_out, int) and not isinstance(num_out, bool):
            out[target] = {"dim": num_out, "sparse": True}
        elif isinstance(num_out, dict):
            for key, spec in num_out.items():
                key = str(key)
                if isinstance(spec, int) and not isinstance(spec, bool):
                    spec = [spec, 1]
                if isinstance(spec, (list, tuple)) and len(spec) == 2 \
                        and all(isinstance(v, int) for v in spec):
                    dim, ndim = spec
                    out[key] = {"dim": dim, "sparse": True} if ndim <= 1 else {"dim": dim}
                elif isinstance(spec, dict):
                    out[key] = self.extern_entry(key, "num_outputs", spec)
                else:
                    self.result.not_imported.append(Entry(
                        f"num_outputs.{key}", self.line("num_outputs"),
                        f"{spec!r} is not [dim, ndim] nor a data dict"))
            if "data" in num_out and "data" in out and isinstance(num_in, int):
                out = {"data": out.pop("data"), **out}
        elif num_out is not None:
            self.skip("num_outputs", f"{num_out!r} is not a number or dict")
        self.done.update(k for k in ("num_inputs", "num_outputs") if k in self.values)
        self.result.notes.append(
            "extern_data written out from num_inputs/num_outputs (data: dense num_inputs "
            "features; a generated task delivers one-hot vectors; targets: class indices)")
        return out

    # -- datasets -----------------------------------------------------------------------------
    def datasets(self) -> None:
        for key, ours in (("train", "train_data"), ("dev", "dev_data")):
            if key not in self.values:
                continue
            value = self.values[key]
            if isinstance(value, NotData):
                self.done.add(key)
                self.result.python.append(Entry(key, self.line(key), _reason(value)
                                                + " (--exec evaluates it)"))
                continue
            spec = self.dataset(key, value)
            if spec is None:
                continue
            self.emit(ours, spec, key)
        if "eval" in self.values:
            self.skip("eval", WHY_NOT["eval"])

    def dataset(self, key: str, value) -> dict | None:
        if isinstance(value, str):
            if ":" in value:
                self.skip(key, f"the dataset string {value!r} (only HDF file lists are imported)")
                return None
            files = [f for f in value.split(",") if f]
            return {"class": "hdf", "files": files[0] if len(files) == 1 else files}
        if not isinstance(value, dict):
            self.skip(key, f"{type(value).__name__} is not a dataset dict")
            return None
        cls = value.get("class")
        opts = {k: v for k, v in value.items() if k != "class"}
        if cls == "HDFDataset":
            spec: dict = {"class": "hdf"}
            mapping = {"files": "files", "partition_epoch": "partition"}
        elif cls == "Task12AXDataset":
            spec = {"class": "12ax"}
            mapping = {"num_seqs": "num_seqs", "fixed_random_seed": "seed",
                       "partition_epoch": "partition"}
        else:
            self.skip(key, f"dataset class {cls!r}: netcompiler has no such dataset (its "
                           f"datasets: hdf, npz, 12ax, copy, reverse, number_base_convert)")
            return None
        self.done.add(key)
        for opt, v in opts.items():
            if opt in mapping and not isinstance(v, NotData) and v is not None:
                if opt == "files" and isinstance(v, tuple):
                    v = list(v)
                spec[mapping[opt]] = v
            elif opt in ("fixed_random_seed",) and v is None:
                continue
            else:
                self.result.not_imported.append(Entry(
                    f"{key}.{opt}", self.line(key), f"not a netcompiler option of {cls}"))
        if cls == "Task12AXDataset":
            spec["min_len"], spec["max_len"] = RETURNN_12AX_LENGTHS
            note = ("12ax: netcompiler's 12-AX task (same symbols and targets, its own "
                    "generator) with RETURNN's sequence lengths 10..100")
            if note not in self.result.notes:
                self.result.notes.append(note)
        return spec

    # -- optimizer ----------------------------------------------------------------------------
    def optimizer(self) -> None:
        opt = self.get("optimizer")
        epsilon = self.get("optimizer_epsilon", RETURNN_EPSILON)
        momentum = self.get("momentum", 0.0)
        spec: dict | None = None
        unsupported = [k for k in ("adadelta", "adagrad", "rmsprop") if self.get(k)]
        if opt:
            if isinstance(opt, str):
                opt = {"class": opt}
            if not isinstance(opt, dict) or not isinstance(opt.get("class"), str):
                self.skip("optimizer", f"{opt!r} is not an optimizer dict with a class name")
                return
            name = opt["class"].lower()
            ours = {"adam": "adam", "nadam": "nadam", "gradientdescent": "sgd", "sgd": "sgd",
                    "momentum": "sgd"}.get(name)
            if ours is None:
                self.skip("optimizer", f"optimizer class {opt['class']!r}: netcompiler has "
                                       f"adam, nadam, sgd (with momentum) and adamw")
                return
            spec = {"class": ours}
            rename = {"epsilon": "epsilon", "beta1": "beta_1", "beta2": "beta_2",
                      "beta_1": "beta_1", "beta_2": "beta_2", "momentum": "momentum"}
            for k, v in opt.items():
                if k == "class":
                    continue
                if k in rename and (k != "momentum" or ours == "sgd"):
                    spec[rename[k]] = v
                else:
                    self.result.not_imported.append(Entry(
                        f"optimizer.{k}", self.line("optimizer"),
                        "not an option of netcompiler's optimizer"))
        elif self.get("adam"):
            spec = {"class": "adam"}
        elif self.get("nadam"):
            spec = {"class": "nadam"}
        elif unsupported:
            for k in unsupported:
                self.skip(k, WHY_NOT[k] + "; no optimizer imported (netcompiler's default "
                                          "is adam)")
            return
        else:
            spec = {"class": "sgd"}
            self.result.notes.append("optimizer sgd: RETURNN's default (no optimizer in the "
                                     "config)")
        for k in ("adam", "nadam"):
            if k in self.values and not self.get(k):
                self.ignore(k, "false")
        for k in unsupported:
            self.skip(k, WHY_NOT[k] + f" (the config's optimizer {spec['class']} wins)")
        if spec["class"] in ("adam", "nadam") and "epsilon" not in spec:
            spec["epsilon"] = float(epsilon)
            if "optimizer_epsilon" not in self.values:
                self.result.notes.append("optimizer epsilon 1e-16: RETURNN's default "
                                         "optimizer_epsilon (Keras's is 1e-7)")
        elif spec["class"] == "sgd" and "optimizer_epsilon" in self.values:
            self.ignore("optimizer_epsilon", "not used by SGD")
        if spec["class"] == "sgd" and momentum and "momentum" not in spec:
            spec["momentum"] = momentum
        elif "momentum" in self.values and spec["class"] != "sgd":
            self.ignore("momentum", f"not used by {spec['class']}")
        self.emit("optimizer", spec, *OPTIMIZER_KEYS)

    # -- learning rate ------------------------------------------------------------------------
    def learning_rate(self) -> None:
        lr = self.get("learning_rate", RETURNN_LEARNING_RATE)
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
            self.emit("learning_rate", float(lr) if isinstance(lr, float) else lr,
                      "learning_rate")
            if "learning_rate" not in self.values:
                self.result.notes.append("learning_rate 1.0: RETURNN's default")
        else:
            self.skip("learning_rate", f"{lr!r}: netcompiler needs a rate > 0")
        self.epoch_rates()
        control = self.get("learning_rate_control", "constant")
        kind = None
        if control in ("newbob", "newbob_rel", "newbob_relative"):
            kind = "newbob"
        elif control == "newbob_multi_epoch":
            kind = "newbob_multi_epoch"
        elif control == "constant":
            if "learning_rate_control" in self.values:
                self.ignore("learning_rate_control", "constant is netcompiler's default")
        else:
            self.skip("learning_rate_control", f"{control!r} has no netcompiler equivalent")
        if kind is None:
            for k in NEWBOB_KEYS:
                if k in self.values and k not in self.done:
                    self.ignore(k, "unused (no newbob learning-rate control)")
            return
        opts: dict = {}
        decay = self.get("learning_rate_decay", self.get("newbob_learning_rate_decay",
                                                         RETURNN_NEWBOB_DECAY))
        if isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 < decay <= 1:
            opts["decay"] = float(decay)
        else:
            for k in ("learning_rate_decay", "newbob_learning_rate_decay"):
                if k in self.values:
                    self.skip(k, f"{decay!r}: netcompiler's decay is a factor in (0, 1]")
        threshold = self.get("newbob_relative_error_threshold", RETURNN_NEWBOB_THRESHOLD)
        sources = ["learning_rate_control", "learning_rate_decay", "newbob_learning_rate_decay",
                   "newbob_relative_error_threshold", "newbob_relative_error_div_by_old",
                   "min_learning_rate"]
        if kind == "newbob_multi_epoch":
            # RETURNN's rule, implemented as is: the threshold keeps RETURNN's meaning
            opts["relative_error_threshold"] = threshold
            n = self.get("newbob_multi_num_epochs", 5)
            opts["num_epochs"] = n
            opts["update_interval"] = self.get("newbob_multi_update_interval", n)
            if self.get("newbob_relative_error_div_by_old", False):
                opts["relative_error_div_by_old"] = True
            grow_t = self.get("newbob_relative_error_grow_threshold")
            if grow_t is not None:
                opts["relative_error_grow_threshold"] = grow_t
            growth = self.get("learning_rate_growth", self.get("newbob_learning_rate_growth",
                                                               1.0))
            if growth != 1.0:
                opts["growth"] = growth
            if self.get("learning_rate_control_relative_error_relative_lr"):
                opts["relative_error_relative_lr"] = True
            m = self.get("learning_rate_control_min_num_epochs_per_new_lr", 0)
            if isinstance(m, int) and not isinstance(m, bool) and m > 1:
                opts["min_num_epochs_per_new_lr"] = m
            sources += ["newbob_multi_num_epochs", "newbob_multi_update_interval",
                        "newbob_relative_error_grow_threshold", "newbob_learning_rate_growth",
                        "learning_rate_growth",
                        "learning_rate_control_relative_error_relative_lr",
                        "learning_rate_control_min_num_epochs_per_new_lr"]
        elif self.get("newbob_relative_error_div_by_old", False):
            opts["relative_error_threshold"] = threshold
        else:
            # RETURNN: (new - old) / |new| > t; netcompiler: (new - old) / |old| > t'.
            # For positive scores both decide alike when 1 + t' = 1 / (1 - t).
            opts["relative_error_threshold"] = round(threshold / (1 - threshold), 12)
            self.result.notes.append(
                f"newbob relative_error_threshold {opts['relative_error_threshold']:g} = "
                f"t/(1-t) for RETURNN's t = {threshold:g}: RETURNN divides the score change by "
                f"the new score, netcompiler by the previous one; the decisions are the same "
                f"for positive scores")
        min_lr = self.get("min_learning_rate", 0.0)
        if isinstance(min_lr, (int, float)) and min_lr > 0:
            opts["min_learning_rate"] = min_lr
        measure = self.get("learning_rate_control_error_measure")
        if isinstance(measure, str) and measure.startswith("dev_error"):
            opts["error_measure"] = "error"
            sources.append("learning_rate_control_error_measure")
            if measure not in ("dev_error", "dev_error_output"):
                self.result.notes.append(f"learning_rate_control_error_measure {measure!r}: "
                                         f"netcompiler uses the main loss layer's dev error")
        elif measure not in (None, "dev_score", "dev_score_output"):
            self.skip("learning_rate_control_error_measure",
                      WHY_NOT["learning_rate_control_error_measure"])
        elif "learning_rate_control_error_measure" in self.values:
            self.ignore("learning_rate_control_error_measure", "the dev score is the default")
        self.emit("learning_rate_control", kind, *sources)
        self.emit("learning_rate_control_opts", opts, *sources)
        if kind == "newbob":
            if self.get("learning_rate_control_relative_error_relative_lr"):
                self.skip("learning_rate_control_relative_error_relative_lr",
                          WHY_NOT["learning_rate_control_relative_error_relative_lr"])
            elif "learning_rate_control_relative_error_relative_lr" in self.values:
                self.ignore("learning_rate_control_relative_error_relative_lr", "false")
            n = self.get("learning_rate_control_min_num_epochs_per_new_lr", 0)
            if isinstance(n, int) and n > 1:
                self.skip("learning_rate_control_min_num_epochs_per_new_lr",
                          WHY_NOT["learning_rate_control_min_num_epochs_per_new_lr"])
            elif "learning_rate_control_min_num_epochs_per_new_lr" in self.values:
                self.ignore("learning_rate_control_min_num_epochs_per_new_lr",
                            "no effect at <= 1")
            growth = self.get("newbob_learning_rate_growth", 1.0)
            if growth != 1.0:
                self.skip("newbob_learning_rate_growth", WHY_NOT["newbob_learning_rate_growth"])
        for k in NEWBOB_KEYS:
            if k in self.values and k not in self.done:
                self.ignore(k, "no effect here")

    def epoch_rates(self) -> None:
        """`learning_rates`: a list (epoch 1 = the first) or {epoch: rate}, as is."""
        if "learning_rates" not in self.values:
            return
        rates = self.values["learning_rates"]
        if isinstance(rates, (list, tuple)) and rates:
            self.emit("learning_rates", list(rates), "learning_rates")
        elif isinstance(rates, dict) and rates and all(
                isinstance(k, int) and not isinstance(k, bool) for k in rates):
            self.emit("learning_rates", {int(k): v for k, v in rates.items()},
                      "learning_rates")
        elif not rates:
            self.ignore("learning_rates", f"{rates!r}: none listed")
        else:
            self.skip("learning_rates", f"{_short(rates)}: not a list of rates or a mapping "
                                        f"epoch -> rate")

    # -- the simple options -------------------------------------------------------------------
    def _positive_int(self, key: str, ours: str, minimum: int = 1) -> None:
        if key not in self.values:
            return
        v = self.values[key]
        if isinstance(v, int) and not isinstance(v, bool) and v >= minimum:
            self.emit(ours, v, key)
        else:
            self.skip(key, f"{v!r}: netcompiler needs an integer >= {minimum}")

    def training_scalars(self) -> None:
        self._positive_int("batch_size", "batch_size")
        self._positive_int("max_seqs", "max_seqs")
        self._positive_int("num_epochs", "num_epochs")
        self._positive_int("save_interval", "save_interval")
        if "random_seed" in self.values:
            seed = self.values["random_seed"]
            if isinstance(seed, int) and not isinstance(seed, bool):
                self.emit("random_seed", seed, "random_seed")
            else:
                self.skip("random_seed", f"{seed!r} is not an integer")
        if "batching" in self.values:
            b = self.values["batching"]
            if b in ("random", "sorted"):
                self.emit("batching", b, "batching")
            elif isinstance(b, str) and b.startswith("laplace:.") and b[9:].isdigit():
                self.emit("batching", f"laplace:{int(b[9:])}", "batching")
            else:
                self.skip("batching", f"{b!r}: netcompiler's batching is random, sorted or "
                                      f"laplace:N (N sequences per bucket, RETURNN's laplace:.N)")
        clip = self.get("gradient_clip_global_norm")
        if "gradient_clip_global_norm" in self.values:
            if isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0:
                self.emit("gradient_clip", clip, "gradient_clip_global_norm")
            elif clip in (0, None):
                self.ignore("gradient_clip_global_norm", "0 (off)")
            else:
                self.skip("gradient_clip_global_norm", f"{clip!r} is not a positive number")
        self.gradient_options()
        if "model" in self.values:
            model = self.values["model"]
            if isinstance(model, NotData):
                self.done.add("model")
                self.result.python.append(Entry(
                    "model", self.line("model"), f"{_reason(model)}: set train.model_dir "
                    f"(or --exec evaluates it)"))
            elif isinstance(model, str) and model:
                self.emit("model_dir", os.path.dirname(model) or ".", "model")
                self.result.notes.append(f"model_dir: the directory of RETURNN's model "
                                         f"prefix {model!r}")
            else:
                self.skip("model", f"{model!r} is not a path")

    def gradient_options(self) -> None:
        """RETURNN's `gradient_clip` (per entry), `gradient_noise` and `max_seq_length`
        (0: off, left to `rest`, which lists them as RETURNN's no-op defaults)."""
        for key, ours in (("gradient_clip", "gradient_clip_value"),
                          ("gradient_noise", "gradient_noise")):
            v = self.values.get(key)
            if key not in self.values or isinstance(v, NotData) or _is_noop(key, v):
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                self.emit(ours, v, key)
            else:
                self.skip(key, f"{_short(v)} is not a positive number")
        if "accum_grad_multiple_step" in self.values:
            v = self.values["accum_grad_multiple_step"]
            if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                self.emit("accum_grad_multiple_step", v, "accum_grad_multiple_step")
            elif not isinstance(v, NotData) and not _is_noop("accum_grad_multiple_step", v):
                self.skip("accum_grad_multiple_step", f"{_short(v)} is not a number of steps")
        if "chunking" in self.values:
            v = self.values["chunking"]
            if not isinstance(v, NotData) and not _is_noop("chunking", v):
                from netcompiler.frontend.chunk_spec import ChunkingError, parse_chunking

                try:
                    parse_chunking(v)
                    self.emit("chunking", list(v) if isinstance(v, (tuple, list)) else str(v),
                              "chunking")
                except ChunkingError as exc:
                    self.skip("chunking", f"{_short(v)}: {exc}")
        if "max_seq_length" in self.values:
            v = self.values["max_seq_length"]
            if isinstance(v, NotData) or _is_noop("max_seq_length", v):
                return
            if isinstance(v, int) and not isinstance(v, bool):
                # RETURNN: a negative value -n limits only `classes` to n
                self.emit("max_seq_length", v if v > 0 else {"classes": -v}, "max_seq_length")
            elif isinstance(v, dict) and v and all(
                    isinstance(n, int) and not isinstance(n, bool) for n in v.values()):
                self.emit("max_seq_length", {str(k): n for k, n in v.items()}, "max_seq_length")
            else:
                self.skip("max_seq_length", f"{_short(v)}: not a number of frames or a "
                                            f"mapping key -> frames")

    def rest(self) -> None:
        used = self.read.used
        for key, value in self.values.items():
            if key in self.done or key.startswith("__") or key == "_":  # `_`: thrown away
                continue
            if key in IGNORED_KEYS:
                self.ignore(key, IGNORED_KEYS[key])
            elif _is_noop(key, value):
                self.ignore(key, f"{value!r} is RETURNN's default (no effect)")
            elif isinstance(value, NotData):
                self.result.python.append(Entry(key, self.line(key), _reason(value)))
            elif key.startswith(IGNORED_PREFIXES):
                self.ignore(key, "RETURNN's debugging/logging")
            elif key in WHY_NOT:
                self.skip(key, f"{_short(value)}: {WHY_NOT[key]}")
            elif key in used:
                self.result.helpers.append(key)
            else:
                self.skip(key, f"{_short(value)}: not a netcompiler option")


def _reason(value: NotData) -> str:
    return value.reason.replace(" (needs Python)", "")


def _is_noop(key: str, value) -> bool:
    if isinstance(value, NotData):
        return False
    return any(value == d and isinstance(value, bool) == isinstance(d, bool)
               for d in NOOP_VALUES.get(key, ()))


class _Python:
    def __repr__(self) -> str:
        return "<Python>"


def _short(value) -> str:
    def hide(v):
        if isinstance(v, NotData):
            return _Python()
        if isinstance(v, dict):
            return {k: hide(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(hide(x) for x in v)
        return v

    text = repr(hide(value))
    return text if len(text) <= 40 else text[:37] + "..."


#: an `eval` calling a function of the config on its input (RETURNN's SpecAugment recipe)
_SPEC_AUGMENT_CALL = re.compile(
    r"typed_value\(\s*['\"](\w+)['\"]\s*\)\s*\(\s*source\(\s*0\s*,\s*as_data\s*=\s*True\s*\)")
#: the widths of RETURNN's SpecAugment recipe before its step-dependent growth
SPEC_AUGMENT_RECIPE = {"max_num_time_masks": 2, "time_mask_frames_per_mask": 100,
                       "max_time_mask_width": 20, "max_num_feature_masks": 2}


def convert(read: ReadConfig, spec_augment: bool = False) -> ImportResult:
    """Map the values read from a RETURNN config to a netcompiler config (`spec_augment`:
    replace the SpecAugment recipe's `eval` layer by netcompiler's `spec_augment`)."""
    return _Importer(read, spec_augment).run()


def import_returnn(path: str, exec_mode: bool = False, timeout: float = DEFAULT_TIMEOUT,
                   spec_augment: bool = False) -> ImportResult:
    """Read and map a RETURNN config. Raises ReturnnConfigError (ReturnnImportError) with
    located one-line messages for a config that cannot be read or imported."""
    return convert(read_config(path, exec_mode=exec_mode, timeout=timeout), spec_augment)


__all__ = ["ImportResult", "Entry", "ReturnnImportError", "import_returnn", "convert",
           "dump_yaml"]


# -- the command line ------------------------------------------------------------------------------
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

    name = "netcompiler import-returnn"
    if bool(args.checkpoint) != bool(args.model_dir):
        print(f"{name}: error: --checkpoint PREFIX and --model-dir DIR go together",
              file=err)
        return EXIT_USAGE
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        print(f"{name}: error: --timeout must be a positive number of seconds", file=err)
        return EXIT_USAGE
    if args.timeout != DEFAULT_TIMEOUT and not args.exec:
        print(f"{name}: error: --timeout applies to --exec only", file=err)
        return EXIT_USAGE
    try:
        result = import_returnn(args.config, exec_mode=args.exec, timeout=args.timeout,
                                spec_augment=getattr(args, "spec_augment", False))
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
            print(f"{name}: error: cannot write {args.output}: {exc.strerror or exc}", file=err)
            return EXIT_USAGE
    else:
        out.write(text)
        out.flush()
    for entry in result.warnings:
        print(f"{args.config}:{entry.line or 1}: warning: not imported: {entry.key}: "
              f"{entry.text}", file=err)
    for d in check.diagnostics:
        print(format_text(d), file=err)
    errors = [d for d in check.diagnostics if d.severity == ERROR]
    if errors:
        print(f"{name}: {target} does not validate ({len(errors)} "
              f"error{'s' if len(errors) != 1 else ''}); edit it, then "
              f"`netcompiler validate {args.output or 'OUT.yaml'}`", file=err)
        for note in result.notes:
            if "--spec-augment" in note:
                print(f"{name}: hint: {note}", file=err)
        return EXIT_INVALID
    if args.checkpoint:
        from netcompiler.training.command_support import import_tensorflow_quietly, needs_tf

        try:
            import_tensorflow_quietly()
            from netcompiler.returnn.checkpoint_import import (ReturnnCheckpointError,
                                                    import_returnn_checkpoint)
        except ImportError as exc:  # the light install: the YAML is written, the weights not
            print(needs_tf("import-returnn --checkpoint", exc), file=err)
            return EXIT_USAGE
        try:
            summary = import_returnn_checkpoint(result.config, args.checkpoint, args.model_dir)
        except ReturnnCheckpointError as exc:
            print(f"{name}: error: {exc}", file=err)
            return EXIT_INVALID
        print(summary, file=out if args.output else err)
    return EXIT_OK
