"""Learning-rate control: `constant`, `warmup` (per step) and `newbob` (per epoch).

Options come from `train.learning_rate_control_opts` (a mapping; see the descriptions in
`schemas/train.schema.json`):

constant
    the rate is `learning_rate` throughout.
warmup  (per optimizer step s = 1, 2, ...; W = `warmup_steps`, default 1000)
    s <= W: learning_rate * s / W (linear warmup), then by `decay_type`:
      `inverse_sqrt` (default): learning_rate * sqrt(W / s)
      `exponential`: learning_rate * decay_rate ** ((s - W) / decay_steps)
                     (`decay_rate` default 0.5, `decay_steps` default 1000)
      `constant`:    learning_rate
    never below `min_learning_rate` after the warmup (default 0).
newbob  (per epoch, RETURNN's "newbob relative")
    after each epoch with a dev score (else the train score): relative_error =
    (score - previous_score) / |previous_score|; when relative_error > `relative_error_threshold`
    (default -0.01, i.e. the score improved by less than 1 %) the rate is multiplied by `decay`
    (default 0.7), never below `min_learning_rate` (default 0).

The state (current rate of newbob, previous score) is a plain dict saved with every checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CONTROLS = ("constant", "warmup", "newbob")
DECAY_TYPES = ("inverse_sqrt", "exponential", "constant")


class LearningRateError(ValueError):
    pass


@dataclass
class LearningRateControl:
    kind: str = "constant"
    base: float = 1e-3
    opts: dict = field(default_factory=dict)
    # newbob state
    current: float | None = None
    previous_score: float | None = None

    def __post_init__(self):
        if self.kind not in CONTROLS:
            raise LearningRateError(f"unknown learning_rate_control `{self.kind}` "
                                    f"(one of {', '.join(CONTROLS)})")
        known = {"constant": set(),
                 "warmup": {"warmup_steps", "decay_type", "decay_rate", "decay_steps",
                            "min_learning_rate"},
                 "newbob": {"decay", "relative_error_threshold", "min_learning_rate"}}[self.kind]
        unknown = set(self.opts) - known
        if unknown:
            raise LearningRateError(
                f"learning_rate_control_opts: {', '.join(sorted(unknown))} not used by "
                f"`{self.kind}`" + (f" (it takes {', '.join(sorted(known))})" if known else ""))
        if self.kind == "warmup":
            if self.decay_type not in DECAY_TYPES:
                raise LearningRateError(f"learning_rate_control_opts.decay_type must be one of "
                                        f"{', '.join(DECAY_TYPES)}")
        if self.current is None:
            self.current = float(self.base)

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

    # -- the rate -----------------------------------------------------------------------------
    def rate(self, step: int) -> float:
        """The learning rate for optimizer step `step` (0-based count of updates done)."""
        if self.kind == "constant":
            return float(self.base)
        if self.kind == "newbob":
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

    def end_epoch(self, score: float | None) -> float:
        """Newbob: update with the epoch's score; returns the rate for the next epoch."""
        if self.kind != "newbob" or score is None or not math.isfinite(score):
            return float(self.current)
        if self.previous_score is not None:
            prev = self.previous_score
            rel = (score - prev) / abs(prev) if prev != 0 else (0.0 if score == prev else 1.0)
            threshold = float(self.opts.get("relative_error_threshold", -0.01))
            if rel > threshold:
                decay = float(self.opts.get("decay", 0.7))
                self.current = max(float(self.current) * decay, self.min_lr)
        self.previous_score = float(score)
        return float(self.current)

    # -- state for checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"current": self.current, "previous_score": self.previous_score}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("current") is not None:
            self.current = float(state["current"])
        prev = state.get("previous_score")
        self.previous_score = None if prev is None else float(prev)
