"""What the trainer optimises, read from a compiled network: one `LossSpec` per layer with a
`loss` (its kind, target, scale, where its batch and time axes are), the L2 terms, the extern
data keys a step needs, and the `Accumulator` that adds a step's loss statistics up over an
epoch into the reported (scaled, per-frame) loss and error.

A step's statistics are an [L, 4] array, one row per LossSpec: loss sum over valid frames,
frames, errors, error frames. TensorFlow is not imported here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netcompiler.training.command_support import TrainError


@dataclass
class LossSpec:
    layer: str
    kind: str
    target: str
    scale: float
    opts: dict
    target_sparse: bool
    #: the layer whose output the loss is computed on ("": `layer`); for a `choice` layer its
    #: input distribution (RETURNN: a choice's `loss: ce` is the CE of the softmax feeding it)
    source: str = ""
    #: where the loss layer's output has its batch and (first) time axis (None: none); read
    #: by `as_is`, whose output may have any axes
    batch_axis: int | None = 0
    time_axis: int | None = 1


def loss_specs(net) -> list[LossSpec]:
    """The LossSpec of every layer of the CompiledNetwork `net` with a `loss`, in layer order; a
    TrainError for a loss the trainer lacks, a target that is no extern data key, or no loss
    at all."""
    from netcompiler.training.losses import LOSSES, NO_TARGET

    specs = []
    for name, layer in net.network.layers.items():
        kind = layer.opts.get("loss")
        if not kind:
            continue
        if kind not in LOSSES:
            raise TrainError(
                f"layer `{name}`: loss `{kind}` is not supported by the trainer "
                f"yet (supported: {', '.join(LOSSES)})"
            )
        specs.append(
            output_loss_spec(net, name, layer, kind)
            if kind in NO_TARGET
            else target_loss_spec(net, name, layer, kind)
        )
    if not specs:
        raise TrainError(
            "no layer has a `loss`: nothing to train (set e.g. `loss: ce` and "
            "`target: classes` on the output layer)"
        )
    return specs


def output_loss_spec(net, name: str, layer, kind: str) -> LossSpec:
    """The LossSpec of a loss whose output is the loss (`as_is`): no target is read."""
    from netcompiler.core.dims import BATCH

    out = net.inferred.shapes[name]
    if layer.scope.in_rec:  # stacked over the loop: [B, T(loop), ...]
        axes = (0, 1)
    else:
        axes = (
            next((i for i, d in enumerate(out.dims) if d.kind == BATCH), None),
            out.index(out.time) if out.time is not None else None,
        )
    return LossSpec(
        name,
        kind,
        "",
        float(layer.opts.get("loss_scale", 1.0)),
        dict(layer.opts.get("loss_opts") or {}),
        False,
        "",
        *axes,
    )


def target_loss_spec(net, name: str, layer, kind: str) -> LossSpec:
    """The LossSpec of a loss against a target (an extern data key, or a layer's output
    registered as one)."""
    from netcompiler.layers import traits

    target = layer.opts.get("target") or "classes"
    shapes = net.inferred.extern  # extern data and keys registered by layers
    if target not in shapes:
        raise TrainError(f"layer `{name}`: target `{target}` is not an extern_data key")
    opts, source = dict(layer.opts.get("loss_opts") or {}), ""
    if traits(layer.layer_class).chooses_labels:
        from netcompiler.frontend.shape_checks import choice_loss_source

        ref = choice_loss_source(net.graph, layer)
        if ref is None:
            raise TrainError(
                f"layer `{name}`: the loss of a `choice` needs one input layer (its distribution)"
            )
        source = ref.target.name
        if layer.opts.get("input_type") == "log_prob":  # log_softmax(log p) = log p
            opts["from_logits"] = True
    return LossSpec(
        name,
        kind,
        target,
        float(layer.opts.get("loss_scale", 1.0)),
        opts,
        bool(shapes[target].sparse),
        source,
    )


def main_loss_index(specs: list[LossSpec]) -> int:
    """The loss whose error is reported: `output`'s if it has one, else the first."""
    return next((i for i, s in enumerate(specs) if s.layer == "output"), 0)


def l2_terms(net) -> list[tuple[str, float]]:
    """(layer, factor) of every layer with `L2: factor` that has parameters."""
    return [
        (name, float(layer.opts["L2"]))
        for name, layer in net.network.layers.items()
        if layer.opts.get("L2") and name in net.layer_params
    ]


def step_input_keys(net, specs: list[LossSpec]) -> tuple[str, ...]:
    """The extern data keys a step reads (sorted): those the loss layers need, and targets."""
    needed = net.needed_layers(tuple(s.source or s.layer for s in specs))
    return tuple(
        sorted(
            k
            for k in net.extern_shapes
            if f"data:{k}" in needed or any(s.target == k for s in specs)
        )
    )


# -- adding the statistics up -----------------------------------------------------------------------
class Accumulator:
    """The loss statistics of the steps of an epoch (or a dataset's evaluation), summed."""

    def __init__(self, losses: list[LossSpec]):
        self.losses = losses
        self.stats = np.zeros((len(losses), 4), np.float64)

    def add(self, stats) -> None:
        self.stats += np.asarray(stats, np.float64)

    def loss(self) -> float:
        """The scaled per-frame loss summed over the loss layers (no L2; NaN without losses)."""
        if not self.losses:
            return float("nan")
        return step_loss(self.losses, self.stats)

    def error(self, main: int) -> float:
        _, _, e, n = self.stats[main]
        return float(e / n) if n else float("nan")

    def per_layer(self) -> dict[str, tuple[float, float]]:
        return {
            spec.layer: (float(s / n) if n else float("nan"), float(e / en) if en else float("nan"))
            for spec, (s, n, e, en) in zip(self.losses, self.stats)
        }


def step_loss(losses: list[LossSpec], stats) -> float:
    """The scaled per-frame loss of one step's (or summed) statistics."""
    total = 0.0
    for spec, (s, n, _, _) in zip(losses, np.asarray(stats, np.float64)):
        total += spec.scale * (s / n if n else 0.0)
    return float(total)
