"""RETURNN's config conventions, made explicit in the config data before the graph is built.

RETURNN configs lean on defaults that live outside the network dict:

- `num_inputs: N` / `num_outputs: M` instead of `extern_data`: the input `data` is dense with N
  features, the target `classes` has M classes (sparse). `num_outputs` may also map keys to
  `[dim, ndim]` (ndim 1: class indices, 2: dense features), e.g. `{classes: [10, 1]}`.
- A layer with a `loss` and no `target` compares against the config's `target` (default
  `classes`), unless the loss needs no target (`as_is`).

`apply_conventions` writes these into the data (after the schema check, so that the file as
written is what is checked), and returns the notes it has to say. Pure data, no TensorFlow.
"""

from __future__ import annotations

from typing import Any

from netcompiler.core.config_types import ConfigData, ConfigPath
from netcompiler.core.diagnostics import Diagnostic

DEFAULT_TARGET = "classes"
#: losses without a target (RETURNN's `need_target = False`): no default target is filled in
NO_TARGET_LOSSES = ("as_is",)


def extern_from_num_io(data: ConfigData) -> dict[str, dict[str, Any]] | None:
    """`extern_data` from `num_inputs`/`num_outputs`; None when the config has neither (or has
    `extern_data` itself, which then wins as in RETURNN)."""
    if isinstance(data.get("extern_data"), dict):
        return None
    num_in, num_out = data.get("num_inputs"), data.get("num_outputs")
    if num_in is None and num_out is None:
        return None
    extern: dict[str, dict[str, Any]] = {}
    if isinstance(num_in, int) and not isinstance(num_in, bool):
        extern["data"] = {"dim": num_in}
    if isinstance(num_out, int) and not isinstance(num_out, bool):
        extern[default_target(data)] = {"dim": num_out, "sparse": True}
    elif isinstance(num_out, dict):
        for key, spec in num_out.items():
            if isinstance(spec, int) and not isinstance(spec, bool):
                spec = [spec, 1]
            if isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, int) for v in spec):
                dim, ndim = spec
                extern[str(key)] = {"dim": dim, "sparse": True} if ndim <= 1 else {"dim": dim}
    return extern


def default_target(data: ConfigData) -> str:
    target = data.get("target")
    return target if isinstance(target, str) and target else DEFAULT_TARGET


def apply_conventions(data: object) -> list[Diagnostic]:
    """Make RETURNN's implicit defaults explicit in `data` (in place)."""
    notes: list[Diagnostic] = []
    if not isinstance(data, dict):
        return notes
    extern = extern_from_num_io(data)
    if extern is not None:
        data["extern_data"] = extern
    network = data.get("network")
    extern = data.get("extern_data")
    target = default_target(data)
    # without that key the loss stays without target: the shape check says so
    if isinstance(network, dict) and isinstance(extern, dict) and target in extern:
        _fill_targets(network, target, ("network",), notes)
    return notes


def _fill_targets(
    layers: dict[str, Any], target: str, path: ConfigPath, notes: list[Diagnostic]
) -> None:
    for name, opts in layers.items():
        if not isinstance(opts, dict):
            continue
        if opts.get("loss") and opts.get("loss") not in NO_TARGET_LOSSES and "target" not in opts:
            opts["target"] = target
        unit = opts.get("unit")
        if opts.get("class") == "rec" and isinstance(unit, dict):
            _fill_targets(unit, target, path + (name, "unit"), notes)
        subnetwork = opts.get("subnetwork")
        if opts.get("class") == "subnetwork" and isinstance(subnetwork, dict):
            _fill_targets(subnetwork, target, path + (name, "subnetwork"), notes)
