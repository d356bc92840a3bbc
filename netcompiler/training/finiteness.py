"""Guards against a diverging training run: the errors for a non-finite loss or non-finite
variables, the fused check of the live variables, the check of a checkpoint's tensors (to name
the last good checkpoint), and the one-time warning when the loss grows far beyond its start.

TensorFlow is imported by the functions that need it, not by this module."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from netcompiler.training.checkpoints import list_checkpoints
from netcompiler.training.command_support import TrainError

#: a step loss above this many times the run's first step loss (at least 1.0) prints a warning
LOSS_GROWTH_WARNING = 1e3


class NonFiniteLoss(TrainError):
    pass


class NonFiniteWeights(NonFiniteLoss):
    """The loss was finite but the variables are no longer (e.g. a huge learning rate)."""


def listed(names: list[str]) -> str:
    """The first three names, comma-separated, and " (and more)" if there are more."""
    return f"{', '.join(names[:3])}{' (and more)' if len(names) > 3 else ''}"


# -- the live variables -----------------------------------------------------------------------------
def checked_variables(net, optimizer) -> list[tuple[str, Any]]:
    """(name, variable) of every floating-point variable a checkpoint holds: the network's,
    the optimizer's slots (not its learning rate)."""
    import tensorflow as tf

    def floating(v) -> bool:
        return tf.as_dtype(v.dtype).is_floating

    out = [(f"network/{n}", v) for n, v in net.variables_by_name.items() if floating(v)]
    seen = {id(v) for _, v in out}
    for v in optimizer.variables:
        name = str(getattr(v, "path", None) or v.name)
        if id(v) in seen or not floating(v) or "learning_rate" in name:
            continue
        seen.add(id(v))
        out.append((f"optimizer/{name}", v))
    return out


class FiniteCheck:
    """Calling it gives the names of the network and optimizer variables holding NaN or inf
    now, checked eagerly one by one: it runs when a checkpoint is saved or restored, and after
    a step whose in-graph check (`all_finite`) failed, so tracing a function for it would cost
    more than it saves. The variables are collected at the first call."""

    def __init__(self, net, optimizer):
        self.net, self.optimizer = net, optimizer
        self.checked: list[tuple[str, Any]] | None = None

    def __call__(self) -> list[str]:
        import tensorflow as tf

        if self.checked is None:
            self.checked = checked_variables(self.net, self.optimizer)
        return [n for n, v in self.checked if not bool(tf.reduce_all(tf.math.is_finite(v)))]


def all_finite(variables):
    """In a step: a scalar bool, True when every variable of `variables` is finite. One sum per
    variable (a single pass over its memory), added up: a NaN or inf anywhere makes the total
    non-finite. So can a total that overflows float32 (values near 1e38): the flag is
    conservative, and the trainer names the culprits exactly (FiniteCheck) before it stops."""
    import tensorflow as tf

    if not variables:
        return tf.constant(True)
    axes: dict[int, Any] = {}  # one constant per rank, not one per variable (fewer graph nodes)
    sums = []
    for v in variables:
        rank = v.shape.rank
        if rank not in axes:
            axes[rank] = tf.constant(list(range(rank)), tf.int32)
        sums.append(tf.cast(tf.reduce_sum(v, axis=axes[rank]), tf.float32))
    return tf.math.is_finite(tf.add_n(sums))


def check_step_loss(stats, loss: float, epoch: int, step: int, global_step: int) -> None:
    """NonFiniteLoss if a step's loss (or any of its statistics) is NaN or inf."""
    if not (np.all(np.isfinite(stats)) and math.isfinite(loss)):
        raise NonFiniteLoss(
            f"the training loss is {loss} at epoch {epoch}, step {step} (global step {global_step})"
        )


def check_step_variables(
    bad: list[str], loss: float, epoch: int, step: int, global_step: int, lr: float
) -> None:
    """NonFiniteWeights if variables (`bad`, their names) hold NaN or inf after a step whose
    loss was finite."""
    if bad:
        raise NonFiniteWeights(
            f"the training loss is {loss:.4g} but the variables {listed(bad)} hold NaN "
            f"or inf after epoch {epoch}, step {step} (global step {global_step}): the learning "
            f"rate ({lr:.3g}) is too high or the gradients need clipping (train.gradient_clip)"
        )


# -- checkpoints ------------------------------------------------------------------------------------
def nonfinite_checkpoint_variables(prefix) -> list[str]:
    """Names of the floating-point network and optimizer tensors of a checkpoint holding NaN
    or inf (not the training state: its NaN `lr_prev_score` means "none", nor the learning
    rate, which the learning-rate control sets anew)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    bad = []
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if (
            not key.startswith(("network/", "optimizer/"))
            or "learning_rate" in key
            or not dtype.is_floating
        ):
            continue
        if not np.all(np.isfinite(reader.get_tensor(key))):
            bad.append(key.replace("/.ATTRIBUTES/VARIABLE_VALUE", ""))
    return sorted(bad)


def last_finite_checkpoint(model_dir) -> Path | None:
    """The newest checkpoint whose tensors are all finite (None if none is)."""
    for _, path in reversed(list_checkpoints(model_dir)):
        try:
            if not nonfinite_checkpoint_variables(path / "ckpt"):
                return path
        except Exception:  # unreadable: not a good checkpoint either
            continue
    return None


def stopping(exc: NonFiniteLoss, model_dir) -> NonFiniteLoss:
    """`exc` (of its own class) with the run's end and the last good checkpoint added."""
    kept = last_finite_checkpoint(model_dir)
    return type(exc)(
        f"{exc}; stopping. "
        + (
            f"The last good checkpoint {kept} is kept."
            if kept
            else "No checkpoint was written yet."
        )
    )


# -- a growing loss ---------------------------------------------------------------------------------
class LossGrowthWatch:
    """Warns once when a step loss exceeds LOSS_GROWTH_WARNING times the first step's (at
    least 1.0): the learning rate is probably too high. Does not stop the run."""

    def __init__(self):
        self.reference: float | None = None
        self.warned = False

    def observe(self, loss: float, epoch: int, step: int, lr: float, err=None) -> None:
        """Take a step's loss; the warning goes to `err` (None: sys.stderr at the time)."""
        if self.reference is None:
            self.reference = abs(loss)
            return
        limit = LOSS_GROWTH_WARNING * max(self.reference, 1.0)
        if not self.warned and abs(loss) > limit:
            self.warned = True
            print(
                f"netcompiler train: warning: the training loss grew from "
                f"{self.reference:.4g} (first step) to {loss:.4g} at epoch {epoch}, step "
                f"{step}: the learning rate ({lr:.3g}) is probably too high (or set "
                f"train.gradient_clip)",
                file=err or sys.stderr,
                flush=True,
            )
