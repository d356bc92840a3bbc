"""Learning-rate control: `constant`, `warmup` (per step), `newbob` and `newbob_multi_epoch`
(per epoch), plus the per-epoch list `train.learning_rates`.

Options come from `train.learning_rate_control_opts` (a mapping; see the descriptions in
`schemas/train.schema.json`):

constant
    the rate is `learning_rate` throughout (after a `learning_rates` list: its last rate).
warmup  (per optimizer step s = 1, 2, ...; W = `warmup_steps`, default 1000)
    s <= W: learning_rate * s / W (linear warmup), then by `decay_type`:
      `inverse_sqrt` (default): learning_rate * sqrt(W / s)
      `exponential`: learning_rate * decay_rate ** ((s - W) / decay_steps)
                     (`decay_rate` default 0.5, `decay_steps` default 1000)
      `constant`:    learning_rate
    never below `min_learning_rate` after the warmup (default 0).
newbob  (per epoch, RETURNN's "newbob relative" with the change divided by the OLD score)
    after each epoch with a dev score (else the train score): relative_error =
    (score - previous_score) / |previous_score|; when relative_error > `relative_error_threshold`
    (default -0.01, i.e. the score improved by less than 1 %) the rate is multiplied by `decay`
    (default 0.7), never below `min_learning_rate` (default 0).
newbob_multi_epoch  (per epoch, RETURNN's `newbob_multi_epoch` decision rule)
    the rate of epoch e (not listed in `learning_rates`) is decided from the epochs before it:
    1. `min_num_epochs_per_new_lr` m > 1 (default 0): if the last m epochs used two or more
       different rates, or fewer than m (but >= 1) epochs were trained, keep the last rate;
    2. else lr = the last epoch's rate (`learning_rate` before epoch 1); when
       `update_interval` k > 1 (default: `num_epochs`) and e % k != 1, keep lr;
    3. else over the last `num_epochs` + 1 (default 5 + 1) epochs, the mean of the relative
       errors of consecutive epochs (old, new): (new - old) / |new| (/ |old| with
       `relative_error_div_by_old`), each divided by (that new epoch's rate / `learning_rate`)
       with `relative_error_relative_lr`; fewer than 2 epochs or a missing score: keep lr;
    4. mean > `relative_error_threshold` (default -0.01): lr * `decay` (default 0.5, RETURNN's),
       not below `min_learning_rate`; mean < `relative_error_grow_threshold` (default: the
       threshold): lr * `growth` (default 1.0).
    The score is the dev loss (`error_measure: error`: the dev frame error), without dev data
    the train loss (error). A zero denominator gives 0 (no change) or +-inf.

`learning_rates` (list: epoch i uses learning_rates[i-1]; mapping {epoch: rate}: those epochs)
fixes the rate of the listed epochs (a warm-up); the other epochs are decided by the control,
which continues from the last rate used (constant keeps it, newbob decays it). Only with the
per-epoch controls (constant, newbob, newbob_multi_epoch).

The state (current rate, previous score, the rate and score of every epoch trained) is a plain
dict saved with every checkpoint (`meta.json`'s `learning_rate_control`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcompiler.core.errors import UserError

CONTROLS = ("constant", "warmup", "newbob", "newbob_multi_epoch")
PER_EPOCH = ("constant", "newbob", "newbob_multi_epoch")
DECAY_TYPES = ("inverse_sqrt", "exponential", "constant")
ERROR_MEASURES = ("loss", "error")
KNOWN_OPTS = {
    "constant": set(),
    "warmup": {"warmup_steps", "decay_type", "decay_rate", "decay_steps", "min_learning_rate"},
    "newbob": {"decay", "relative_error_threshold", "min_learning_rate", "error_measure"},
    "newbob_multi_epoch": {
        "decay",
        "growth",
        "relative_error_threshold",
        "relative_error_grow_threshold",
        "num_epochs",
        "update_interval",
        "min_num_epochs_per_new_lr",
        "relative_error_relative_lr",
        "relative_error_div_by_old",
        "min_learning_rate",
        "error_measure",
    },
}


class LearningRateError(UserError, ValueError):
    pass


def epoch_rates(value) -> dict[int, float]:
    """`train.learning_rates` (a list, or a mapping epoch -> rate) as {epoch: rate}."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        items = list(enumerate(value, start=1))
    elif isinstance(value, dict):
        items = []
        for k, v in value.items():
            try:
                epoch = int(k)
            except (TypeError, ValueError):
                raise LearningRateError(
                    f"learning_rates: key {k!r} is not an epoch number"
                ) from None
            if isinstance(k, bool) or str(epoch) != str(k).strip() or epoch < 1:
                raise LearningRateError(f"learning_rates: key {k!r} is not an epoch number >= 1")
            items.append((epoch, v))
    else:
        raise LearningRateError(
            f"learning_rates must be a list of rates or a mapping "
            f"epoch -> rate, got {type(value).__name__}"
        )
    out = {}
    for epoch, v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise LearningRateError(
                f"learning_rates: the rate of epoch {epoch} must be a number > 0, got {v!r}"
            )
        out[epoch] = float(v)
    return out


@dataclass
class LearningRateControl:
    kind: str = "constant"
    base: float = 1e-3
    opts: dict = field(default_factory=dict)
    # newbob state
    current: float | None = None
    previous_score: float | None = None
    #: `train.learning_rates` (list or {epoch: rate})
    learning_rates: Any = None
    #: epoch -> [rate, score or None] of the epochs begun so far
    history: dict = field(default_factory=dict)
    epoch: int = 0

    def __post_init__(self):
        if self.kind not in CONTROLS:
            raise LearningRateError(
                f"unknown learning_rate_control `{self.kind}` (one of {', '.join(CONTROLS)})"
            )
        known = KNOWN_OPTS[self.kind]
        unknown = set(self.opts) - known
        if unknown:
            raise LearningRateError(
                f"learning_rate_control_opts: {', '.join(sorted(unknown))} not used by "
                f"`{self.kind}`" + (f" (it takes {', '.join(sorted(known))})" if known else "")
            )
        if self.kind == "warmup":
            if self.decay_type not in DECAY_TYPES:
                raise LearningRateError(
                    f"learning_rate_control_opts.decay_type must be one of {', '.join(DECAY_TYPES)}"
                )
        if self.opts.get("error_measure", "loss") not in ERROR_MEASURES:
            raise LearningRateError(
                f"learning_rate_control_opts.error_measure must be one of "
                f"{', '.join(ERROR_MEASURES)}"
            )
        if self.kind == "newbob_multi_epoch":
            for key in ("num_epochs", "update_interval"):
                v = self.opts.get(key, 1)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise LearningRateError(
                        f"learning_rate_control_opts.{key} must be an integer >= 1, got {v!r}"
                    )
            if self.grow_threshold > self.threshold:
                raise LearningRateError(
                    "learning_rate_control_opts.relative_error_grow_threshold "
                    f"({self.grow_threshold:g}) must not be above relative_error_threshold "
                    f"({self.threshold:g}): the rate would decay and grow at once"
                )
        self.presets = epoch_rates(self.learning_rates)
        if self.presets and self.kind not in PER_EPOCH:
            raise LearningRateError(
                f"learning_rates (per epoch) needs a per-epoch "
                f"learning_rate_control ({', '.join(PER_EPOCH)}), not "
                f"`{self.kind}`"
            )
        if self.current is None:
            self.current = float(self.presets.get(1, self.base))

    # -- options ----------------------------------------------------------------------------
    @property
    def warmup_steps(self) -> int:
        return max(1, int(self.opts.get("warmup_steps", 1000)))

    @property
    def decay_type(self) -> str:
        return str(self.opts.get("decay_type", "inverse_sqrt"))

    @property
    def min_lr(self) -> float:
        return float(self.opts.get("min_learning_rate", 0.0))

    @property
    def threshold(self) -> float:
        return float(self.opts.get("relative_error_threshold", -0.01))

    @property
    def grow_threshold(self) -> float:
        return float(self.opts.get("relative_error_grow_threshold", self.threshold))

    @property
    def num_epochs(self) -> int:
        return int(self.opts.get("num_epochs", 5))

    @property
    def update_interval(self) -> int:
        return int(self.opts.get("update_interval", self.num_epochs))

    # -- the rate -----------------------------------------------------------------------------
    def rate(self, step: int) -> float:
        """The learning rate for optimizer step `step` (0-based count of updates done)."""
        if self.kind == "constant":
            return float(self.current) if self.presets else float(self.base)
        if self.kind in PER_EPOCH:
            return float(self.current)
        s = step + 1
        w = self.warmup_steps
        if s <= w:
            return float(self.base) * s / w
        if self.decay_type == "inverse_sqrt":
            lr = self.base * math.sqrt(w / s)
        elif self.decay_type == "exponential":
            rate = float(self.opts.get("decay_rate", 0.5))
            steps = max(1.0, float(self.opts.get("decay_steps", 1000)))
            lr = self.base * rate ** ((s - w) / steps)
        else:
            lr = self.base
        return float(max(lr, self.min_lr))

    def begin_epoch(self, epoch: int) -> float:
        """Set the rate of `epoch` (1-based; per-epoch controls): listed in learning_rates,
        else decided by the control; returns it."""
        self.epoch = int(epoch)
        if self.kind == "warmup":
            return self.rate(0)
        if epoch in self.presets:
            lr = self.presets[epoch]
        elif self.kind == "newbob_multi_epoch":
            lr = self._multi_epoch_rate(epoch)
        else:  # constant / newbob: end_epoch decided it
            lr = float(self.current)
        self.current = float(lr)
        self.history[self.epoch] = [self.current, None]
        return self.current

    def end_epoch(self, score: float | None, error: float | None = None) -> float:
        """Update with the epoch's score (loss; `error`: its frame error, used with
        `error_measure: error`); returns the rate for the next epoch (newbob)."""
        if self.opts.get("error_measure", "loss") == "error":
            score = error
        finite = score is not None and math.isfinite(score)
        if self.epoch in self.history:
            self.history[self.epoch][1] = float(score) if finite else None
        if self.kind != "newbob" or not finite:
            return float(self.current)
        if self.previous_score is not None:
            prev = self.previous_score
            rel = (score - prev) / abs(prev) if prev != 0 else (0.0 if score == prev else 1.0)
            if rel > self.threshold:
                decay = float(self.opts.get("decay", 0.7))
                self.current = max(float(self.current) * decay, self.min_lr)
        self.previous_score = float(score)
        return float(self.current)

    # -- newbob_multi_epoch -------------------------------------------------------------------
    def relative_error(self, old: int, new: int) -> float | None:
        """RETURNN's relative error between two trained epochs (None: a score is missing)."""
        o, n = self.history.get(old, [None, None])[1], self.history.get(new, [None, None])[1]
        if o is None or n is None:
            return None
        denom = abs(o) if self.opts.get("relative_error_div_by_old", False) else abs(n)
        if denom == 0:
            rel = 0.0 if n == o else math.copysign(math.inf, n - o)
        else:
            rel = (n - o) / denom
        if self.opts.get("relative_error_relative_lr", False):
            lr = self.history[new][0]
            if lr > 0:
                rel /= lr / float(self.base)
        return rel

    def _multi_epoch_rate(self, epoch: int) -> float:
        past = sorted(e for e in self.history if e < epoch)
        m = int(self.opts.get("min_num_epochs_per_new_lr", 0))
        if m > 1 and past:
            last = [self.history[e][0] for e in past[-m:]]
            if len(set(last)) >= 2 or len(last) < m:
                return float(last[-1])
        lr = float(self.history[past[-1]][0]) if past else float(self.base)
        if self.update_interval > 1 and epoch % self.update_interval != 1:
            return lr
        window = past[-(self.num_epochs + 1) :]
        if len(window) <= 1:
            return lr
        rels = [self.relative_error(a, b) for a, b in zip(window, window[1:])]
        if any(r is None for r in rels):
            return lr
        mean = sum(rels) / len(rels)
        if mean > self.threshold:
            lr = max(lr * float(self.opts.get("decay", 0.5)), self.min_lr)
        elif mean < self.grow_threshold:
            lr = lr * float(self.opts.get("growth", 1.0))
        return float(lr)

    # -- state for checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "previous_score": self.previous_score,
            "history": {str(e): list(v) for e, v in sorted(self.history.items())},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("current") is not None:
            self.current = float(state["current"])
        prev = state.get("previous_score")
        self.previous_score = None if prev is None else float(prev)
        history = state.get("history")
        if isinstance(history, dict):
            self.history = {
                int(e): [float(v[0]), None if v[1] is None else float(v[1])]
                for e, v in history.items()
            }


def checkpoint_state(prefix) -> dict[str, Any]:
    """The learning-rate state a checkpoint's meta.json holds ({} if none or unreadable)."""
    path = Path(str(prefix)).parent / "meta.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8")).get("learning_rate_control")
    except (OSError, ValueError, AttributeError):
        return {}
    return state if isinstance(state, dict) else {}
