"""The state of one import of a RETURNN config: the values read, the keys already dealt with,
the `train:` options mapped so far (kept in the config's order) and the result being filled;
with the tables and helpers the mapping modules share.

The mapping itself is `netcompiler.returnn.convert` (the order of the parts) with
`convert_network`, `convert_data`, `convert_train` and `convert_learning_rate`.
"""

from __future__ import annotations

from typing import Any

from netcompiler.returnn.config_values import NotData, ReadConfig
from netcompiler.returnn.import_result import Entry, ImportResult

#: RETURNN options that change nothing at these values (their defaults)
NOOP_VALUES = {
    "gradient_clip": (0,),
    "gradient_clip_norm": (0,),
    "gradient_clip_avg_norm": (0,),
    "gradient_noise": (0,),
    "gradient_nan_inf_filter": (False,),
    "chunking": ("0", "", 0, None),
    "truncation": (-1,),
    "max_seq_length": (0, None),
    "window": (1,),
    "stop_on_nonfinite_train_score": (True,),
    "maximize_grad_norm": (0,),
    "grad_norm_to_clip_to_zero": (0,),
    "accum_grad_multiple_step": (0, 1),
}
#: RETURNN options netcompiler does not import, and why
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
    "adadelta": "netcompiler has no Adadelta",
    "adagrad": "netcompiler has no Adagrad",
    "rmsprop": "netcompiler has no RMSProp",
    "learning_rate_control_relative_error_relative_lr": "netcompiler's newbob does not scale the relative error by the learning rate",
    "learning_rate_control_min_num_epochs_per_new_lr": "netcompiler's newbob may change the rate after every epoch",
    "learning_rate_control_error_measure": "netcompiler's newbob compares the dev loss or the dev error (else train's)",
    "newbob_learning_rate_growth": "netcompiler's newbob never grows the rate",
}


class ImportState:
    """One import: `values` read from `read`, `done` the keys dealt with, `train` the mapped
    training options as (position in the config, key, value)."""

    def __init__(self, read: ReadConfig, spec_augment: bool = False):
        self.read = read
        self.replace_spec_augment = spec_augment
        self.values = read.values
        self.order = {k: i for i, k in enumerate(self.values)}
        self.result = ImportResult(read.path, read.mode, {})
        self.done: set[str] = set()
        self.train: list[tuple[float, str, Any]] = []  # (position, key, value)

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
        """A `train:` option, placed where its first RETURNN source key stands in the config
        (else after everything); the sources are done."""
        present = [self.order[s] for s in sources if s in self.order]
        pos = min(present) if present else len(self.order) + len(self.train)
        self.train.append((pos, key, value))
        self.done.update(s for s in sources if s in self.values)

    def plain(self, value, path: tuple):
        """Tuples as lists, keys as strings; Python objects (exec mode) dropped and listed."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(v, NotData):
                    name = ".".join(str(p) for p in path[1:] + (k,))
                    self.result.python.append(
                        Entry(
                            f"{path[0]}.{name}", self.line(path[0]), f"{v.reason} (not importable)"
                        )
                    )
                    continue
                out[str(k)] = self.plain(v, path + (k,))
            return out
        if isinstance(value, (list, tuple)):
            items = []
            for i, v in enumerate(value):
                if isinstance(v, NotData):
                    name = ".".join(str(p) for p in path[1:] + (i,))
                    self.result.python.append(
                        Entry(
                            f"{path[0]}.{name}", self.line(path[0]), f"{v.reason} (not importable)"
                        )
                    )
                    continue
                items.append(self.plain(v, path + (i,)))
            return items
        return value


def is_noop(key: str, value) -> bool:
    """Whether a RETURNN option is set to the value at which it does nothing (NOOP_VALUES)."""
    if isinstance(value, NotData):
        return False
    return any(
        value == d and isinstance(value, bool) == isinstance(d, bool)
        for d in NOOP_VALUES.get(key, ())
    )


class _Python:
    """Stands for a Python value in `short_repr`."""

    def __repr__(self) -> str:
        return "<Python>"


def short_repr(value) -> str:
    """The repr of a value for a message: Python values as `<Python>`, at most 40 characters."""

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


__all__ = ["ImportState", "NOOP_VALUES", "WHY_NOT", "is_noop", "short_repr"]
