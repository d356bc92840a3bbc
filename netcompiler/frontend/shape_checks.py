"""Checks that follow a layer's inferred shape: its `loss` against the `target`,
`initial_output`, `apply(0)`, a `choice` read on another time axis, `reuse_params`; and
`report`, which turns a ShapeError into a located diagnostic. No TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netcompiler.core.diagnostics import ERROR, Diagnostic
from netcompiler.core.dims import Dim, Shape, same_axes
from netcompiler.layers import ParamSpec, ShapeError, traits

if TYPE_CHECKING:  # pragma: no cover
    from netcompiler.frontend.graph import Graph
    from netcompiler.frontend.network import Layer, Ref
    from netcompiler.frontend.shapes import InferredNetwork, ShapeContext


def check_shared_params(inferred: InferredNetwork) -> None:
    """`reuse_params`: the layer's variables must be those of the owner (names and shapes)."""
    for name, owner in inferred.graph.param_owner.items():
        layer = inferred.network.layers[name]
        value = layer.opts.get("reuse_params")
        if isinstance(value, dict) and set(value) - {"reuse_layer"}:
            report(
                inferred,
                layer,
                ShapeError(
                    f"`reuse_params` with {', '.join(sorted(set(value) - {'reuse_layer'}))}: only "
                    f"sharing all variables of one layer is supported",
                    "reuse_params",
                    "shape.reuse-params",
                    hint="write `reuse_params: LAYER`",
                ),
            )
            continue
        if name not in inferred.params or owner not in inferred.params:
            continue  # a shape error was reported
        mine = {k: v.shape for k, v in inferred.params[name].items()}
        theirs = {k: v.shape for k, v in inferred.params[owner].items()}
        if mine != theirs:
            report(
                inferred,
                layer,
                ShapeError(
                    f"`reuse_params: {owner}`: `{name}` needs the variables {mine or 'none'}, "
                    f"`{owner}` has {theirs or 'none'}",
                    "reuse_params",
                    "shape.reuse-params",
                ),
            )


def check_apply_zero(ctx: ShapeContext) -> None:
    """`initial_output: apply(0)` (RETURNN: the layer applied to zeroed `from` inputs) for a
    layer without a state and without other options that read layers of the unit."""
    cls = ctx.layer.layer_class
    rule = traits(cls)
    if not rule.supports_apply_zero:
        raise ShapeError(
            f"`initial_output: apply(0)` is not supported for a `{cls}` layer "
            f"(netcompiler applies only stateless layers to zeroed inputs)",
            "initial_output",
            "shape.initial-output",
            hint="use `zeros`, a number or `var`",
        )
    for option in rule.layer_options:  # the class's own options that name layers
        value = ctx.opts.get(option)
        texts = value if isinstance(value, list) else [value]
        inner = [
            t
            for t in texts
            if isinstance(t, str) and not t.startswith(("base:", "data:")) and t != "data"
        ]
        if inner:
            raise ShapeError(
                f"`initial_output: apply(0)` with `{option}: {inner[0]}`, a layer of "
                f"the unit, is not supported (its value before the first step is "
                f"not defined; only the `from` inputs are zeroed)",
                "initial_output",
                "shape.initial-output",
                hint="use `zeros`, a number or `var`",
            )


def check_initial_output(ctx: ShapeContext, step: Shape, params: dict[str, ParamSpec]) -> None:
    """`initial_output` (what `prev:` reads at step 0) must fit the layer's per-step shape."""
    value = ctx.opts["initial_output"]
    if not ctx.in_rec:
        raise ShapeError(
            "`initial_output` only applies inside a rec unit",
            "initial_output",
            "shape.initial-output",
        )
    if value == "apply(0)":
        check_apply_zero(ctx)
    init = ctx.ref("initial_output")
    if init is not None and (
        not same_axes(init.dims, step.dims) or init.sparse_dim != step.sparse_dim
    ):
        raise ShapeError(
            f"`initial_output` `{ctx.ref_name('initial_output')}` is {init}, but "
            f"`{ctx.name}` is {step} per step",
            "initial_output",
            "shape.initial-output",
        )
    if value == "var":
        sizes = [d.size for d in step.dims if d.kind != "batch"]
        static = [size for size in sizes if size is not None]
        if len(static) != len(sizes) or step.sparse:
            raise ShapeError(
                f"`initial_output: var` needs a dense per-step shape with static "
                f"axes besides the batch, `{ctx.name}` is {step}",
                "initial_output",
                "shape.initial-output",
            )
        params["initial_output"] = ParamSpec(tuple(static), 0.0)


def _extern_time_keys(inferred: InferredNetwork) -> dict[Dim, str]:
    """The time axis of each extern data key that has its own (not `same_time_as`)."""
    out: dict[Dim, str] = {}
    for key, shape in inferred.extern.items():
        if key in inferred.network.registered:
            continue  # its axes are a layer's
        for d in shape.time_dims[:1]:
            out.setdefault(d, key)
    return out


def _unifiable_time_axes(
    inferred: InferredNetwork, out_dims: Sequence[Dim], target_dims: Sequence[Dim]
) -> list[tuple[str, str]]:
    """A frame-wise loss between two extern time axes that nobody declared the same: RETURNN
    matches them by position. The pairs (output's key, target's key) that would make the axes
    agree, or [] when they differ otherwise (e.g. an axis a layer created)."""
    if len(out_dims) != len(target_dims):
        return []
    keys = _extern_time_keys(inferred)
    pairs: list[tuple[str, str]] = []
    for a, b in zip(out_dims, target_dims):
        if a.matches(b):
            continue
        if a in keys and b in keys and a.kind == b.kind == "time":
            pairs.append((keys[a], keys[b]))
        else:
            return []
    return pairs


def check_choice_target_axis(inferred: InferredNetwork, layer: Layer) -> None:
    """Teacher-forced, a `choice` reads its target frame by frame of the loop: when the loop
    runs over another extern time axis (the rec layer's input), the two are one axis, as in
    RETURNN; unified like a frame-wise loss (a note, lengths checked when data is fed)."""
    key = layer.opts.get("target")
    target = inferred.extern.get(key) if isinstance(key, str) else None
    loop = inferred.loop_dims.get(layer.scope.loop_layer.name)
    if target is None or target.time is None or loop is None or target.has(loop):
        return
    pairs = _unifiable_time_axes(inferred, (loop,), (target.time,))
    for pair in pairs:
        inferred.unify.setdefault(pair, layer.path + ("target",))


def check_loss(inferred: InferredNetwork, layer: Layer, out: Shape) -> None:
    """The `target` of a layer's `loss` must fit the layer's output."""
    loss = layer.opts["loss"]
    if loss == "as_is":  # the output is the loss: no target (a given one is not read)
        _check_as_is_loss(layer, out)
        return
    key = layer.opts.get("target")
    if not isinstance(key, str):
        raise ShapeError(
            f"`loss: {loss}` needs a `target` (an extern data key; RETURNN's "
            f"default, the config's `target` or `classes`, is not one)",
            "loss",
            "shape.loss-target",
        )
    target = inferred.extern.get(key)  # an unknown key was reported by the graph check
    if target is None:
        return
    if traits(layer.layer_class).chooses_labels:
        out = _choice_loss_input(inferred, layer, out)
    if layer.scope.in_rec:
        loop = inferred.loop_dims.get(layer.scope.loop_layer.name)
        if loop is not None and target.has(loop):
            target = target.without(loop)
    what = f"`{layer.name}` {out} does not fit `target: {key}` {target}"
    if loss == "edit_distance":
        _check_edit_distance_loss(out, target, what)
    elif loss == "ctc":
        _check_ctc_loss(out, target, what)
    else:
        _check_framewise_loss(inferred, layer, out, target, what)


def _check_as_is_loss(layer: Layer, out: Shape) -> None:
    """`loss: as_is`: the output is the loss, so it must hold values."""
    if out.sparse:
        raise ShapeError(
            f"`loss: as_is`: the output of `{layer.name}` {out} is the loss, "
            f"so it must be values, not class indices",
            "loss",
            "shape.loss-target",
        )


def _check_edit_distance_loss(out: Shape, target: Shape, what: str) -> None:
    """`loss: edit_distance` compares label sequences, each with its own length."""
    if not (
        out.sparse
        and target.sparse
        and out.time is not None
        and target.time is not None
        and len(out.dims) == len(target.dims)
    ):
        raise ShapeError(
            f"`loss: edit_distance`: {what} (needs label sequences, [B, T] sparse, on both sides)",
            "target",
            "shape.loss-target",
        )


def _check_ctc_loss(out: Shape, target: Shape, what: str) -> None:
    """`loss: ctc`: a sparse target over time, one more output feature than classes (the
    blank)."""
    ok = (
        target.sparse_dim is not None
        and out.feature_size == target.sparse_dim + 1
        and out.time is not None
        and target.time is not None
    )
    if not ok:
        raise ShapeError(
            f"`loss: ctc`: {what} (needs a sparse target over time and "
            f"{(target.sparse_dim or 0) + 1} output features: classes + blank)",
            "target",
            "shape.loss-target",
        )


def _check_framewise_loss(
    inferred: InferredNetwork, layer: Layer, out: Shape, target: Shape, what: str
) -> None:
    """A frame-wise loss (`ce`, `mse`, ...): the output's axes other than the feature axis are
    the target's, and its features the target's classes / features. Extern time axes nobody
    declared the same are unified (`InferredNetwork.unify`) instead of refused."""
    loss = layer.opts["loss"]
    if out.sparse or out.feature is None:
        raise ShapeError(
            f"`loss: {loss}`: {what} (the output needs a feature axis)", "loss", "shape.loss-target"
        )
    if target.sparse:
        axes_ok = same_axes(out.non_feature_dims, target.dims)
        feat_ok = out.feature_size == target.sparse_dim
    else:
        axes_ok = same_axes(out.non_feature_dims, target.non_feature_dims)
        feat_ok = out.feature_size == target.feature_size
    if not axes_ok:
        pairs = _unifiable_time_axes(
            inferred,
            out.non_feature_dims,
            target.dims if target.sparse else target.non_feature_dims,
        )
        if pairs:
            for pair in pairs:
                inferred.unify.setdefault(pair, layer.path + ("target",))
            return
        raise ShapeError(
            f"`loss: {loss}`: {what}: their axes differ", "target", "shape.loss-target"
        )
    if not feat_ok:
        raise ShapeError(
            f"`loss: {loss}`: {what}: {out.feature_size} output features for "
            f"{target.feature_size} target classes/features",
            "target",
            "shape.loss-target",
        )


def choice_loss_source(graph: Graph, layer: Layer) -> Ref | None:
    """The distribution a `choice` layer's loss is computed from: its single `from` layer (the
    softmax that feeds it); None when it has another input (extern data, several inputs)."""
    refs = [ref for sub, ref in graph.refs.get(layer.name, []) if sub[0] == "from"]
    if len(refs) != 1 or refs[0].kind != "layer" or refs[0].prev:
        return None
    return refs[0]


def _choice_loss_input(inferred: InferredNetwork, layer: Layer, out: Shape) -> Shape:
    """A `choice` layer's loss (RETURNN: `loss: ce` on the choice) is the loss of its input
    distribution against the choice's target; the shape the loss is checked on."""
    loss = layer.opts["loss"]
    if loss != "ce":
        raise ShapeError(
            f"`loss: {loss}` on a `choice` layer is not supported: its loss is the "
            f"cross entropy of its input distribution (`loss: ce`)",
            "loss",
            "shape.loss-target",
            hint="use `loss: ce`, or put the loss on the layer feeding the choice",
        )
    ref = choice_loss_source(inferred.graph, layer)
    shape = inferred.shapes.get(ref.target.name) if ref is not None else None
    if shape is None:
        raise ShapeError(
            "`loss: ce` on a `choice` layer needs exactly one input layer in "
            "`from` (the distribution the loss is computed from)",
            "from",
            "shape.loss-target",
        )
    return shape


def report(inferred: InferredNetwork, layer: Layer, exc: ShapeError) -> None:
    path = layer.path + ((exc.option,) if exc.option else ())
    inferred.diagnostics.append(Diagnostic(ERROR, exc.message, exc.rule, path, hint=exc.hint))


#: the largest static axis and the most elements of one parameter a network may have: 2**31 - 1,
#: the int32 index limit of many TensorFlow kernels (a float32 parameter that size is 8 GiB).
#: Larger sizes are refused at validation (`shape.too-large`) instead of failing at compile time.
MAX_SIZE = 2**31 - 1


def check_sizes(layer: Layer, shape: Shape, params: dict[str, ParamSpec]) -> None:
    """ShapeError when an axis of the output or a parameter is larger than `MAX_SIZE`."""
    option = next((k for k in ("n_out", "shape", "dim", "total_key_dim") if k in layer.opts), None)
    for d in shape.dims:
        if isinstance(d.size, (int, float)) and d.size > MAX_SIZE:
            raise ShapeError(
                f"`{layer.name}` would have an axis of size {d.size} {shape}; at "
                f"most {MAX_SIZE} (2**31-1) is supported",
                option,
                "shape.too-large",
            )
    for pname, spec in params.items():
        if spec.size > MAX_SIZE:
            raise ShapeError(
                f"`{layer.name}` would have a parameter `{pname}` of shape "
                f"{tuple(spec.shape)}, {spec.size} elements; at most {MAX_SIZE} "
                f"(2**31-1) per parameter are supported",
                option,
                "shape.too-large",
            )
