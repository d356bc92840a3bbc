"""Importing a RETURNN config's learning rate: `learning_rate` (RETURNN's default 1.0),
`learning_rates` (per epoch) and the learning-rate control `newbob` (its threshold mapped
t -> t/(1-t)) or `newbob_multi_epoch` (RETURNN's rule, its options as they are), with the
`newbob_*` options, `min_learning_rate` and the error measure.
"""

from __future__ import annotations

from netcompiler.returnn.convert_state import WHY_NOT, ImportState, short_repr

RETURNN_LEARNING_RATE = 1.0  # RETURNN's default `learning_rate`
RETURNN_NEWBOB_DECAY = 0.5  # RETURNN's default `newbob_learning_rate_decay`
RETURNN_NEWBOB_THRESHOLD = -0.01
NEWBOB_KEYS = (
    "newbob_learning_rate_decay",
    "learning_rate_decay",
    "newbob_relative_error_threshold",
    "newbob_relative_error_div_by_old",
    "newbob_multi_num_epochs",
    "newbob_multi_update_interval",
    "newbob_relative_error_grow_threshold",
    "newbob_learning_rate_growth",
    "newbob_error_threshold",
    "min_learning_rate",
    "learning_rate_control_relative_error_relative_lr",
    "learning_rate_control_min_num_epochs_per_new_lr",
    "learning_rate_control_error_measure",
)
#: the RETURNN keys `learning_rate_control_opts` is made of (both kinds of newbob)
NEWBOB_SOURCES = (
    "learning_rate_control",
    "learning_rate_decay",
    "newbob_learning_rate_decay",
    "newbob_relative_error_threshold",
    "newbob_relative_error_div_by_old",
    "min_learning_rate",
)
#: ... and for newbob_multi_epoch also these
MULTI_EPOCH_SOURCES = (
    "newbob_multi_num_epochs",
    "newbob_multi_update_interval",
    "newbob_relative_error_grow_threshold",
    "newbob_learning_rate_growth",
    "learning_rate_growth",
    "learning_rate_control_relative_error_relative_lr",
    "learning_rate_control_min_num_epochs_per_new_lr",
)


def map_learning_rate(state: ImportState) -> None:
    """`train.learning_rate`, `learning_rates`, `learning_rate_control` and its options."""
    lr = state.get("learning_rate", RETURNN_LEARNING_RATE)
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        state.emit("learning_rate", float(lr) if isinstance(lr, float) else lr, "learning_rate")
        if "learning_rate" not in state.values:
            state.result.notes.append("learning_rate 1.0: RETURNN's default")
    else:
        state.skip("learning_rate", f"{lr!r}: netcompiler needs a rate > 0")
    _epoch_rates(state)
    kind = _control_kind(state)
    if kind is None:
        for k in NEWBOB_KEYS:
            if k in state.values and k not in state.done:
                state.ignore(k, "unused (no newbob learning-rate control)")
        return
    opts, sources = _newbob_options(state, kind)
    state.emit("learning_rate_control", kind, *sources)
    state.emit("learning_rate_control_opts", opts, *sources)
    if kind == "newbob":
        _list_newbob_differences(state)
    for k in NEWBOB_KEYS:
        if k in state.values and k not in state.done:
            state.ignore(k, "no effect here")


def _epoch_rates(state: ImportState) -> None:
    """`learning_rates`: a list (epoch 1 = the first) or {epoch: rate}, as is."""
    if "learning_rates" not in state.values:
        return
    rates = state.values["learning_rates"]
    if isinstance(rates, (list, tuple)) and rates:
        state.emit("learning_rates", list(rates), "learning_rates")
    elif (
        isinstance(rates, dict)
        and rates
        and all(isinstance(k, int) and not isinstance(k, bool) for k in rates)
    ):
        state.emit("learning_rates", {int(k): v for k, v in rates.items()}, "learning_rates")
    elif not rates:
        state.ignore("learning_rates", f"{rates!r}: none listed")
    else:
        state.skip(
            "learning_rates", f"{short_repr(rates)}: not a list of rates or a mapping epoch -> rate"
        )


def _control_kind(state: ImportState) -> str | None:
    """netcompiler's learning-rate control for RETURNN's `learning_rate_control`: "newbob",
    "newbob_multi_epoch", or None (constant, or listed as not imported)."""
    control = state.get("learning_rate_control", "constant")
    if control in ("newbob", "newbob_rel", "newbob_relative"):
        return "newbob"
    if control == "newbob_multi_epoch":
        return "newbob_multi_epoch"
    if control == "constant":
        if "learning_rate_control" in state.values:
            state.ignore("learning_rate_control", "constant is netcompiler's default")
    else:
        state.skip("learning_rate_control", f"{control!r} has no netcompiler equivalent")
    return None


def _newbob_options(state: ImportState, kind: str) -> tuple[dict, list[str]]:
    """`learning_rate_control_opts` for newbob of `kind`, and the RETURNN keys they come from."""
    opts: dict = {}
    decay = state.get(
        "learning_rate_decay", state.get("newbob_learning_rate_decay", RETURNN_NEWBOB_DECAY)
    )
    if isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 < decay <= 1:
        opts["decay"] = float(decay)
    else:
        for k in ("learning_rate_decay", "newbob_learning_rate_decay"):
            if k in state.values:
                state.skip(k, f"{decay!r}: netcompiler's decay is a factor in (0, 1]")
    threshold = state.get("newbob_relative_error_threshold", RETURNN_NEWBOB_THRESHOLD)
    sources = list(NEWBOB_SOURCES)
    if kind == "newbob_multi_epoch":
        _multi_epoch_options(state, opts, threshold)
        sources += MULTI_EPOCH_SOURCES
    elif state.get("newbob_relative_error_div_by_old", False):
        opts["relative_error_threshold"] = threshold
    else:
        # RETURNN: (new - old) / |new| > t; netcompiler: (new - old) / |old| > t'.
        # For positive scores both decide alike when 1 + t' = 1 / (1 - t).
        opts["relative_error_threshold"] = round(threshold / (1 - threshold), 12)
        state.result.notes.append(
            f"newbob relative_error_threshold {opts['relative_error_threshold']:g} = "
            f"t/(1-t) for RETURNN's t = {threshold:g}: RETURNN divides the score change by "
            f"the new score, netcompiler by the previous one; the decisions are the same "
            f"for positive scores"
        )
    min_lr = state.get("min_learning_rate", 0.0)
    if isinstance(min_lr, (int, float)) and min_lr > 0:
        opts["min_learning_rate"] = min_lr
    _error_measure(state, opts, sources)
    return opts, sources


def _multi_epoch_options(state: ImportState, opts: dict, threshold) -> None:
    """newbob_multi_epoch: RETURNN's rule, implemented as is (the threshold keeps RETURNN's
    meaning), its options under netcompiler's names."""
    opts["relative_error_threshold"] = threshold
    n = state.get("newbob_multi_num_epochs", 5)
    opts["num_epochs"] = n
    opts["update_interval"] = state.get("newbob_multi_update_interval", n)
    if state.get("newbob_relative_error_div_by_old", False):
        opts["relative_error_div_by_old"] = True
    grow_t = state.get("newbob_relative_error_grow_threshold")
    if grow_t is not None:
        opts["relative_error_grow_threshold"] = grow_t
    growth = state.get("learning_rate_growth", state.get("newbob_learning_rate_growth", 1.0))
    if growth != 1.0:
        opts["growth"] = growth
    if state.get("learning_rate_control_relative_error_relative_lr"):
        opts["relative_error_relative_lr"] = True
    m = state.get("learning_rate_control_min_num_epochs_per_new_lr", 0)
    if isinstance(m, int) and not isinstance(m, bool) and m > 1:
        opts["min_num_epochs_per_new_lr"] = m


def _error_measure(state: ImportState, opts: dict, sources: list[str]) -> None:
    """`learning_rate_control_error_measure`: the dev error (`error_measure: error`) or the
    dev score (netcompiler's default)."""
    measure = state.get("learning_rate_control_error_measure")
    if isinstance(measure, str) and measure.startswith("dev_error"):
        opts["error_measure"] = "error"
        sources.append("learning_rate_control_error_measure")
        if measure not in ("dev_error", "dev_error_output"):
            state.result.notes.append(
                f"learning_rate_control_error_measure {measure!r}: "
                f"netcompiler uses the main loss layer's dev error"
            )
    elif measure not in (None, "dev_score", "dev_score_output"):
        state.skip(
            "learning_rate_control_error_measure", WHY_NOT["learning_rate_control_error_measure"]
        )
    elif "learning_rate_control_error_measure" in state.values:
        state.ignore("learning_rate_control_error_measure", "the dev score is the default")


def _list_newbob_differences(state: ImportState) -> None:
    """RETURNN's newbob options that netcompiler's newbob does not have, where they are set."""
    if state.get("learning_rate_control_relative_error_relative_lr"):
        state.skip(
            "learning_rate_control_relative_error_relative_lr",
            WHY_NOT["learning_rate_control_relative_error_relative_lr"],
        )
    elif "learning_rate_control_relative_error_relative_lr" in state.values:
        state.ignore("learning_rate_control_relative_error_relative_lr", "false")
    n = state.get("learning_rate_control_min_num_epochs_per_new_lr", 0)
    if isinstance(n, int) and n > 1:
        state.skip(
            "learning_rate_control_min_num_epochs_per_new_lr",
            WHY_NOT["learning_rate_control_min_num_epochs_per_new_lr"],
        )
    elif "learning_rate_control_min_num_epochs_per_new_lr" in state.values:
        state.ignore("learning_rate_control_min_num_epochs_per_new_lr", "no effect at <= 1")
    growth = state.get("newbob_learning_rate_growth", 1.0)
    if growth != 1.0:
        state.skip("newbob_learning_rate_growth", WHY_NOT["newbob_learning_rate_growth"])


__all__ = [
    "map_learning_rate",
    "NEWBOB_KEYS",
    "RETURNN_LEARNING_RATE",
    "RETURNN_NEWBOB_DECAY",
    "RETURNN_NEWBOB_THRESHOLD",
]
