"""Importing a RETURNN config's `network`: the dict as written (tuples as lists, Python values
dropped and listed), with RETURNN's defaults that depend on `behavior_version` written out and
RETURNN's SpecAugment recipe (Python, an `eval` layer) replaced on request (--spec-augment).
"""

from __future__ import annotations

import re

from netcompiler.returnn.config_values import NotData
from netcompiler.returnn.convert_state import ImportState
from netcompiler.returnn.import_result import ReturnnImportError

#: an `eval` calling a function of the config on its input (RETURNN's SpecAugment recipe)
SPEC_AUGMENT_CALL = re.compile(
    r"typed_value\(\s*['\"](\w+)['\"]\s*\)\s*\(\s*source\(\s*0\s*,\s*as_data\s*=\s*True\s*\)"
)
#: the widths of RETURNN's SpecAugment recipe before its step-dependent growth
SPEC_AUGMENT_RECIPE = {
    "max_num_time_masks": 2,
    "time_mask_frames_per_mask": 100,
    "max_time_mask_width": 20,
    "max_num_feature_masks": 2,
}


def map_network(state: ImportState) -> dict:
    """The netcompiler network; raises ReturnnImportError when there is no `network` dict."""
    if "network" not in state.values:
        torch = state.get("backend") == "torch" or any(
            k in state.values for k in ("get_model", "train_step", "forward_step")
        )
        hint = (
            " (a PyTorch-backend config: its model is Python code, `get_model` / "
            "`train_step`; netcompiler imports RETURNN's TF network dicts)"
            if torch
            else ""
        )
        raise ReturnnImportError(f"{state.read.path}: error: no `network` dict{hint}")
    state.done.add("network")
    network = state.values["network"]
    if not isinstance(network, dict):
        raise ReturnnImportError(
            f"{state.read.locate('network')}: error: `network` must be "
            f"a dict, got {type(network).__name__}"
        )
    network = state.plain(network, ("network",))
    behavior_defaults(state, network)
    spec_augment(state, network)
    return network


def spec_augment(state: ImportState, network: dict) -> None:
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
        m = SPEC_AUGMENT_CALL.search(str(layer.get("eval", "")))
        if m is None or not isinstance(state.values.get(m.group(1)), NotData):
            continue
        func = m.group(1)
        if not state.replace_spec_augment:
            state.result.notes.append(
                f"network.{name} calls the config's Python function `{func}` (RETURNN's "
                f"SpecAugment recipe); run with --spec-augment to replace it by "
                f"netcompiler's `spec_augment` layer"
            )
            continue
        new: dict = {"class": "spec_augment"}
        if "from" in layer:
            new["from"] = layer["from"]
        new.update(SPEC_AUGMENT_RECIPE)
        network[name] = new
        state.result.notes.append(
            f"network.{name}: the `eval` layer calling the config's Python `{func}` "
            f"(RETURNN's SpecAugment recipe) is replaced by `spec_augment` with the "
            f"recipe's first widths (--spec-augment); the recipe's growth of the masks "
            f"with the training step is not reproduced: review the options"
        )


def behavior_defaults(state: ImportState, network: dict) -> None:
    """RETURNN defaults that changed with `behavior_version`, written out where they differ
    from netcompiler's: a `conv` without `with_bias` (and without `bias`) has no bias before
    behavior_version 10, so it gets `with_bias: false` (its checkpoint holds no bias)."""
    version = state.get("behavior_version")
    if "behavior_version" in state.values:
        state.done.add("behavior_version")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 10:
        return
    changed: list[str] = []

    def walk(layers: dict, prefix: str) -> None:
        for name, layer in layers.items():
            if not isinstance(layer, dict):
                continue
            if layer.get("class") == "conv" and "with_bias" not in layer and not layer.get("bias"):
                layer["with_bias"] = False
                changed.append(prefix + str(name))
            for key in ("unit", "subnetwork"):
                if isinstance(layer.get(key), dict):
                    walk(layer[key], f"{prefix}{name}/")

    walk(network, "")
    if changed:
        since = f"behavior_version {version}" if version is not None else "no behavior_version"
        state.result.notes.append(
            f"`with_bias: false` written on conv layers {', '.join(changed)}: RETURNN's "
            f"conv has no bias by default before behavior_version 10 ({since} here)"
        )


__all__ = [
    "map_network",
    "spec_augment",
    "behavior_defaults",
    "SPEC_AUGMENT_RECIPE",
    "SPEC_AUGMENT_CALL",
]
