"""Importing a RETURNN config's training options onto `train:` with RETURNN's semantics and
defaults where netcompiler's differ: the optimizer (`optimizer`, `adam`, `nadam`, `momentum`;
none: plain SGD, RETURNN's default; `optimizer_epsilon`, default 1e-16), `batch_size`,
`max_seqs`, `batching`, `num_epochs`, `save_interval`, `random_seed`, the gradient options
(`gradient_clip`, `gradient_clip_global_norm`, `gradient_noise`, `accum_grad_multiple_step`),
`chunking`, `max_seq_length` and `model` (its directory). The learning rate is
`netcompiler.returnn.convert_learning_rate`.
"""

from __future__ import annotations

import os

from netcompiler.returnn.config_values import NotData
from netcompiler.returnn.convert_state import WHY_NOT, ImportState, is_noop, short_repr
from netcompiler.returnn.import_result import Entry

OPTIMIZER_KEYS = (
    "optimizer",
    "adam",
    "nadam",
    "adadelta",
    "adagrad",
    "rmsprop",
    "momentum",
    "optimizer_epsilon",
)
RETURNN_EPSILON = 1e-16  # RETURNN's default `optimizer_epsilon`


def map_optimizer(state: ImportState) -> None:
    """`train.optimizer` from `optimizer` (else `adam` / `nadam`; none: SGD, RETURNN's
    default), with RETURNN's epsilon and momentum."""
    opt = state.get("optimizer")
    unsupported = [k for k in ("adadelta", "adagrad", "rmsprop") if state.get(k)]
    if opt:
        spec = _optimizer_option(state, opt)
        if spec is None:
            return
    elif state.get("adam"):
        spec = {"class": "adam"}
    elif state.get("nadam"):
        spec = {"class": "nadam"}
    elif unsupported:
        for k in unsupported:
            state.skip(k, WHY_NOT[k] + "; no optimizer imported (netcompiler's default is adam)")
        return
    else:
        spec = {"class": "sgd"}
        state.result.notes.append("optimizer sgd: RETURNN's default (no optimizer in the config)")
    for k in ("adam", "nadam"):
        if k in state.values and not state.get(k):
            state.ignore(k, "false")
    for k in unsupported:
        state.skip(k, WHY_NOT[k] + f" (the config's optimizer {spec['class']} wins)")
    _epsilon_and_momentum(state, spec)
    state.emit("optimizer", spec, *OPTIMIZER_KEYS)


def _optimizer_option(state: ImportState, opt) -> dict | None:
    """RETURNN's `optimizer` (a class name or a dict) as netcompiler's optimizer dict, or None
    (listed as not imported)."""
    if isinstance(opt, str):
        opt = {"class": opt}
    if not isinstance(opt, dict) or not isinstance(opt.get("class"), str):
        state.skip("optimizer", f"{opt!r} is not an optimizer dict with a class name")
        return None
    name = opt["class"].lower()
    ours = {
        "adam": "adam",
        "nadam": "nadam",
        "gradientdescent": "sgd",
        "sgd": "sgd",
        "momentum": "sgd",
    }.get(name)
    if ours is None:
        state.skip(
            "optimizer",
            f"optimizer class {opt['class']!r}: netcompiler has "
            f"adam, nadam, sgd (with momentum) and adamw",
        )
        return None
    spec = {"class": ours}
    rename = {
        "epsilon": "epsilon",
        "beta1": "beta_1",
        "beta2": "beta_2",
        "beta_1": "beta_1",
        "beta_2": "beta_2",
        "momentum": "momentum",
    }
    for k, v in opt.items():
        if k == "class":
            continue
        if k in rename and (k != "momentum" or ours == "sgd"):
            spec[rename[k]] = v
        else:
            state.result.not_imported.append(
                Entry(
                    f"optimizer.{k}",
                    state.line("optimizer"),
                    "not an option of netcompiler's optimizer",
                )
            )
    return spec


def _epsilon_and_momentum(state: ImportState, spec: dict) -> None:
    """RETURNN's `optimizer_epsilon` (default 1e-16) on adam/nadam, `momentum` on SGD."""
    epsilon = state.get("optimizer_epsilon", RETURNN_EPSILON)
    momentum = state.get("momentum", 0.0)
    if spec["class"] in ("adam", "nadam") and "epsilon" not in spec:
        spec["epsilon"] = float(epsilon)
        if "optimizer_epsilon" not in state.values:
            state.result.notes.append(
                "optimizer epsilon 1e-16: RETURNN's default optimizer_epsilon (Keras's is 1e-7)"
            )
    elif spec["class"] == "sgd" and "optimizer_epsilon" in state.values:
        state.ignore("optimizer_epsilon", "not used by SGD")
    if spec["class"] == "sgd" and momentum and "momentum" not in spec:
        spec["momentum"] = momentum
    elif "momentum" in state.values and spec["class"] != "sgd":
        state.ignore("momentum", f"not used by {spec['class']}")


def map_training_scalars(state: ImportState) -> None:
    """The numbers and switches of `train:` (batches, epochs, seed, batching, clipping, the
    gradient options) and `model_dir`."""
    _positive_int(state, "batch_size", "batch_size")
    _positive_int(state, "max_seqs", "max_seqs")
    _positive_int(state, "num_epochs", "num_epochs")
    _positive_int(state, "save_interval", "save_interval")
    if "random_seed" in state.values:
        seed = state.values["random_seed"]
        if isinstance(seed, int) and not isinstance(seed, bool):
            state.emit("random_seed", seed, "random_seed")
        else:
            state.skip("random_seed", f"{seed!r} is not an integer")
    if "batching" in state.values:
        b = state.values["batching"]
        if b in ("random", "sorted"):
            state.emit("batching", b, "batching")
        elif isinstance(b, str) and b.startswith("laplace:.") and b[9:].isdigit():
            state.emit("batching", f"laplace:{int(b[9:])}", "batching")
        else:
            state.skip(
                "batching",
                f"{b!r}: netcompiler's batching is random, sorted or "
                f"laplace:N (N sequences per bucket, RETURNN's laplace:.N)",
            )
    clip = state.get("gradient_clip_global_norm")
    if "gradient_clip_global_norm" in state.values:
        if isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0:
            state.emit("gradient_clip", clip, "gradient_clip_global_norm")
        elif clip in (0, None):
            state.ignore("gradient_clip_global_norm", "0 (off)")
        else:
            state.skip("gradient_clip_global_norm", f"{clip!r} is not a positive number")
    map_gradient_options(state)
    _model_dir(state)


def _model_dir(state: ImportState) -> None:
    """RETURNN's `model` (a checkpoint prefix) -> `train.model_dir`, its directory."""
    if "model" not in state.values:
        return
    model = state.values["model"]
    if isinstance(model, NotData):
        state.done.add("model")
        state.result.python.append(
            Entry(
                "model",
                state.line("model"),
                f"{model.plain_reason()}: set train.model_dir (or --exec evaluates it)",
            )
        )
    elif isinstance(model, str) and model:
        state.emit("model_dir", os.path.dirname(model) or ".", "model")
        state.result.notes.append(f"model_dir: the directory of RETURNN's model prefix {model!r}")
    else:
        state.skip("model", f"{model!r} is not a path")


def _positive_int(state: ImportState, key: str, ours: str, minimum: int = 1) -> None:
    """An integer option >= `minimum`, else listed as not imported."""
    if key not in state.values:
        return
    v = state.values[key]
    if isinstance(v, int) and not isinstance(v, bool) and v >= minimum:
        state.emit(ours, v, key)
    else:
        state.skip(key, f"{v!r}: netcompiler needs an integer >= {minimum}")


def map_gradient_options(state: ImportState) -> None:
    """RETURNN's `gradient_clip` (per entry), `gradient_noise` and `max_seq_length`
    (0: off, left to the importer's last step, which lists them as RETURNN's no-op
    defaults)."""
    for key, ours in (
        ("gradient_clip", "gradient_clip_value"),
        ("gradient_noise", "gradient_noise"),
    ):
        v = state.values.get(key)
        if key not in state.values or isinstance(v, NotData) or is_noop(key, v):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            state.emit(ours, v, key)
        else:
            state.skip(key, f"{short_repr(v)} is not a positive number")
    if "accum_grad_multiple_step" in state.values:
        v = state.values["accum_grad_multiple_step"]
        if isinstance(v, int) and not isinstance(v, bool) and v > 1:
            state.emit("accum_grad_multiple_step", v, "accum_grad_multiple_step")
        elif not isinstance(v, NotData) and not is_noop("accum_grad_multiple_step", v):
            state.skip("accum_grad_multiple_step", f"{short_repr(v)} is not a number of steps")
    if "chunking" in state.values:
        v = state.values["chunking"]
        if not isinstance(v, NotData) and not is_noop("chunking", v):
            from netcompiler.frontend.chunk_spec import ChunkingError, parse_chunking

            try:
                parse_chunking(v)
                state.emit(
                    "chunking", list(v) if isinstance(v, (tuple, list)) else str(v), "chunking"
                )
            except ChunkingError as exc:
                state.skip("chunking", f"{short_repr(v)}: {exc}")
    if "max_seq_length" in state.values:
        v = state.values["max_seq_length"]
        if isinstance(v, NotData) or is_noop("max_seq_length", v):
            return
        if isinstance(v, int) and not isinstance(v, bool):
            # RETURNN: a negative value -n limits only `classes` to n
            state.emit("max_seq_length", v if v > 0 else {"classes": -v}, "max_seq_length")
        elif (
            isinstance(v, dict)
            and v
            and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values())
        ):
            state.emit("max_seq_length", {str(k): n for k, n in v.items()}, "max_seq_length")
        else:
            state.skip(
                "max_seq_length",
                f"{short_repr(v)}: not a number of frames or a mapping key -> frames",
            )


def drop_rejected_train_options(state: ImportState) -> None:
    """A mapped training value netcompiler's schema rejects (e.g. `laplace:.0`, a negative
    seed) is listed as not imported instead of making the YAML invalid."""
    from netcompiler.frontend.schema import validate_config

    train = state.result.config["train"]
    for d in validate_config({"network": {}, "train": train}):
        if (
            d.severity == "error"
            and len(d.path) >= 2
            and d.path[0] == "train"
            and d.path[1] in train
        ):
            key = d.path[1]
            value = train.pop(key)
            state.result.not_imported.append(
                Entry(
                    f"train.{key}",
                    None,
                    f"{short_repr(value)}: not accepted by netcompiler ({d.message})",
                )
            )
    if not train:
        del state.result.config["train"]


__all__ = [
    "map_optimizer",
    "map_training_scalars",
    "map_gradient_options",
    "drop_rejected_train_options",
    "OPTIMIZER_KEYS",
    "RETURNN_EPSILON",
]
