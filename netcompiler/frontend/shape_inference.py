"""Shape inference: every layer's output shape, with the identity of each time axis.

Runs the shape rule of each layer class (`netcompiler.layers`) in dependency order, without
TensorFlow, in passes when `prev:` reads a layer computed later. Errors are collected as
diagnostics; a layer whose inputs failed is skipped silently so one mistake is reported once.
What a rule sees and what inference finds are `netcompiler.frontend.shapes`.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.diagnostics import ERROR, WARNING, Diagnostic
from netcompiler.core.dims import BATCH_DIM, Dim, Shape, same_shape, time_dim
from netcompiler.core.errors import InternalError
from netcompiler.frontend.feature_concat import concat_features
from netcompiler.frontend.graph import Graph
from netcompiler.frontend.network import Layer, Ref
from netcompiler.frontend.shape_checks import (
    check_choice_target_axis,
    check_initial_output,
    check_loss,
    check_shared_params,
    check_sizes,
    report,
)
from netcompiler.frontend.shapes import InferredNetwork, ShapeContext, read_shape
from netcompiler.layers import LayerRule, ShapeError, get_rule, traits

#: lenient passes before the final strict one, when `prev:` reads a layer computed later
MAX_PASSES = 8


@dataclass
class _Pass:
    """The state of one inference pass over the network.

    Lenient passes (RETURNN's template construction) find the shapes that `prev:` cycles settle
    on: `prev:x` reads x's shape from the previous pass (or x's own guess), an input not known
    yet makes a layer unknown instead of failing (broadcasting layers ignore it), and nothing is
    reported. The final strict pass starts from the shapes they settled on and reports.
    """

    lenient: bool
    prev_shapes: dict[str, Shape]
    unknown: set[str] = field(default_factory=set)
    #: prev: targets read before being computed: name -> (assumed shape, reader)
    assumed: dict[str, tuple[Shape, str]] = field(default_factory=dict)
    #: prev: targets whose shape nothing could tell: name -> (reader, config path of the ref)
    unresolved: dict[str, tuple[str, ConfigPath]] = field(default_factory=dict)
    #: strict pass: layers that read an unresolved `prev:` and stand in with their guess, so
    #: that the layers after them are still checked (and report the real blocker)
    stand_in: set[str] = field(default_factory=set)


class _Unknown(InternalError):  # control flow, caught in this module
    """An input whose shape is not known in this lenient pass."""


def infer_shapes(
    graph: Graph, extern: dict[str, Shape], failed_layers: Set[str] = frozenset()
) -> InferredNetwork:
    """Infer all layer shapes. `failed_layers` (e.g. with schema errors) are skipped."""
    network = graph.network
    inferred = InferredNetwork(network, graph, extern=extern)
    failed: set[str] = set(failed_layers)
    # extern data that failed to parse counts as failed
    failed.update(f"data:{k}" for k in network.extern if k not in extern)
    order = graph.order()
    prev_shapes: dict[str, Shape] = {}
    unsettled: dict[str, tuple[Shape, Shape]] = {}
    if _reads_prev_ahead(graph, order):
        history: list[dict[str, Shape]] = []
        for _ in range(MAX_PASSES):
            trial = InferredNetwork(
                network,
                graph,
                extern=extern,
                loop_dims=inferred.loop_dims,
                created_dims=inferred.created_dims,
            )
            _run_pass(trial, order, set(failed), _Pass(True, prev_shapes))
            history.append(trial.shapes)
            if len(history) > 1 and _same_shapes(history[-2], history[-1]):
                break
            prev_shapes = trial.shapes
        else:
            unsettled = {
                n: (history[-2][n], s)
                for n, s in history[-1].items()
                if n in history[-2] and not same_shape(history[-2][n], s)
            }
        prev_shapes = history[-1]
    final = _Pass(False, prev_shapes)
    _run_pass(inferred, order, failed, final)
    for name, (before, after) in unsettled.items():
        layer = network.layers[name]
        report(
            inferred,
            layer,
            ShapeError(
                f"the shape of `{name}` does not settle: it is {before} in one pass over the "
                f"`prev:` cycle and {after} in the next",
                "from",
                "shape.prev-diverges",
                hint="a layer on the cycle grows its input; set `n_out` or cut the growth",
            ),
        )
    _report_unresolved(inferred, final)
    check_shared_params(inferred)
    return inferred


def _reads_prev_ahead(graph: Graph, order: list[str]) -> bool:
    """True if some `prev:x` is read before x is computed (a cycle through `prev:`)."""
    position = {name: i for i, name in enumerate(order)}
    for name, refs in graph.refs.items():
        for _, ref in refs:
            if (
                ref.prev
                and ref.kind == "layer"
                and position.get(ref.target.name, -1) >= position.get(name, -1)
            ):
                return True
    return False


def _same_shapes(a: dict[str, Shape], b: dict[str, Shape]) -> bool:
    return a.keys() == b.keys() and all(same_shape(a[k], b[k]) for k in a)


def _report_unresolved(inferred: InferredNetwork, final: _Pass) -> None:
    """`prev:x` that no pass could give a shape: report it unless the layers of that unit
    already have an error (then that error is the real blocker)."""
    errors = [d.path for d in inferred.diagnostics if d.severity == ERROR]
    for name, (_reader, path) in final.unresolved.items():
        layer = inferred.network.layers[name]
        scope_path = layer.scope.path
        if any(p[: len(scope_path)] == scope_path for p in errors):
            continue
        inferred.diagnostics.append(
            Diagnostic(
                ERROR,
                f"cannot infer the shape of `prev:{layer.local_name}`: every layer it "
                f"depends on in the cycle through `prev:` depends on it in turn, and none of them "
                f"has a size of its own",
                "shape.prev",
                path,
                hint=f"set `n_out` on `{name}` (or on a layer of the cycle) to break it",
            )
        )


def _run_pass(inferred: InferredNetwork, order: list[str], failed: set[str], state: _Pass) -> None:
    network = inferred.network
    for key in network.registered:  # set again when their layer is inferred in this pass
        inferred.extern.pop(key, None)
    for name in order:
        layer = network.layers[name]
        if name in failed:
            continue
        rule = get_rule(layer.layer_class)
        if rule is None:
            failed.add(name)
            continue
        inputs = _read_inputs(inferred, layer, rule, failed, state)
        if inputs is None:
            continue
        try:
            shape = _infer_layer(inferred, layer, rule, inputs, state.lenient)
        except ShapeError as exc:
            if state.lenient:
                inferred.shapes.pop(name, None)
                _guess_or_unknown(inferred, layer, rule, state, failed)
                continue
            report(inferred, layer, exc)
            failed.add(name)
            continue
        _check_assumed(inferred, layer, shape, state)


@dataclass
class _Inputs:
    """A layer's inputs as its shape rule reads them: the `from` shapes with their reference
    texts, and the shapes of its layer-valued options."""

    sources: list[Shape]
    names: list[str]
    refs: dict[str, list[tuple[Ref, Shape]]]


def _read_inputs(
    inferred: InferredNetwork, layer: Layer, rule: LayerRule, failed: set[str], state: _Pass
) -> _Inputs | None:
    """The inputs of `layer` in this pass; None when they are not all there (the layer then
    took its guess, stays unknown, or failed: recorded here)."""
    try:
        sources, names, refs = _gather_inputs(inferred, layer, failed, state)
    except _Skip:
        failed.add(layer.name)
        return None
    except _Unknown:
        _guess_or_unknown(inferred, layer, rule, state, failed)
        return None
    except ShapeError as exc:
        if state.lenient:
            _guess_or_unknown(inferred, layer, rule, state, failed)
        else:
            report(inferred, layer, exc)
            failed.add(layer.name)
        return None
    known = [s for s in sources if s is not None]
    if len(known) < len(sources) and not (rule.broadcasts_sources and known):
        _guess_or_unknown(inferred, layer, rule, state, failed)
        return None
    # an input not known yet is neutral for a broadcasting layer
    return _Inputs([known[0] if s is None else s for s in sources], names, refs)


def _infer_layer(
    inferred: InferredNetwork, layer: Layer, rule: LayerRule, inputs: _Inputs, lenient: bool
) -> Shape:
    """Run the rule of `layer` on its inputs and record its shape (the strict pass: also its
    parameters and checks); raises ShapeError."""
    name = layer.name
    sources, names = inputs.sources, inputs.names
    in_shapes = list(sources) + [s for got in inputs.refs.values() for _, s in got]
    if rule.concat_sources and len(sources) > 1:
        sources = [concat_features(sources, names)]
        names = ["+".join(names)]
    ctx = ShapeContext(inferred, layer, sources, names, inputs.refs)
    shape = _on_input_batch(layer, in_shapes, rule.infer(ctx))
    inferred.shapes[name] = shape
    registers = layer.opts.get("register_as_extern_data")
    if isinstance(registers, str) and inferred.network.registered.get(registers) is layer:
        inferred.extern[registers] = shape
    if not lenient:
        _check_layer(inferred, layer, rule, ctx, shape)
    return shape


def _check_layer(
    inferred: InferredNetwork, layer: Layer, rule: LayerRule, ctx: ShapeContext, shape: Shape
) -> None:
    """The strict pass, once a layer's shape is known: its parameters, the checks that follow
    its shape, its rule's warnings, and a note if its class is deprecated; raises ShapeError."""
    name = layer.name
    inferred.params[name] = rule.params(ctx, shape)
    check_sizes(layer, shape, inferred.params[name])
    if layer.opts.get("loss"):
        check_loss(inferred, layer, shape)
    if rule.chooses_labels and layer.scope.in_rec:
        check_choice_target_axis(inferred, layer)
    if "initial_output" in layer.opts:
        check_initial_output(ctx, shape, inferred.params[name])
    if any(layer.opts.get(k) for k in ("dropout_noise_shape", "batch_norm")):
        from netcompiler.layers._common_opts import check_common_options

        check_common_options(ctx, shape, inferred.params[name])
    inferred.diagnostics.extend(ctx.warnings)
    if rule.deprecated:
        inferred.diagnostics.append(
            Diagnostic(
                WARNING,
                f"`{layer.layer_class}` is deprecated",
                "deprecated",
                layer.path + ("class",),
                hint=f"use the explicit formulation: {rule.deprecated}",
            )
        )


def _check_assumed(inferred: InferredNetwork, layer: Layer, shape: Shape, state: _Pass) -> None:
    """A layer that `prev:` read before it was computed must have the shape assumed then."""
    name = layer.name
    if name in state.assumed:
        guess, user = state.assumed.pop(name)
        if not same_shape(guess, shape):
            report(
                inferred,
                layer,
                ShapeError(
                    f"`prev:{layer.local_name}` was assumed to be {guess} when `{user}` read it, "
                    f"but `{name}` is {shape}",
                    "n_out",
                    "shape.prev",
                ),
            )


def _on_input_batch(layer: Layer, in_shapes: list[Shape], shape: Shape) -> Shape:
    """A layer on the batch of chunks of a `time_chunking` layer (a batch axis of its own) stays
    on it: its inputs may not mix it with another batch (`time_unchunking` maps it back), and an
    output built on the plain batch `B` is on the chunks' batch. Not checked inside rec units
    (their per-step shapes are guessed on `B`)."""
    if layer.scope.in_rec or traits(layer.layer_class).unchunks:
        return shape
    batches: list[Dim] = []
    for s in in_shapes:
        for d in s.dims:
            if d.kind == "batch" and not any(d is b for b in batches):
                batches.append(d)
    if not any(b is not BATCH_DIM for b in batches):
        return shape
    if len(batches) > 1:
        raise ShapeError(
            f"`{layer.name}` mixes the batch axes {' and '.join(str(b) for b in batches)}: a "
            f"batch of chunks (`time_chunking`) has other entries than the batch it was cut "
            f"from",
            "from",
            "shape.chunk-batch",
            hint="bring the chunks back with `time_unchunking` first",
        )
    return Shape(
        tuple(batches[0] if d is BATCH_DIM else d for d in shape.dims),
        shape.sparse_dim,
        shape.dtype,
    )


def _guess(inferred: InferredNetwork, layer: Layer, rule: LayerRule) -> Shape | None:
    """A layer's shape known without its inputs: its rule's guess (`n_out`, `target`, ...),
    else the shape of its `initial_output` layer."""
    ctx = ShapeContext(inferred, layer, [], [], {})
    try:
        guess = rule.guess_step_shape(ctx)
    except ShapeError:
        guess = None
    if guess is None and isinstance(layer.opts.get("initial_output"), str):
        guess = ctx.known_ref("initial_output")
    return guess


def _guess_or_unknown(
    inferred: InferredNetwork, layer: Layer, rule: LayerRule, state: _Pass, failed: set[str]
) -> None:
    """A layer whose inputs are not all known takes its guess (inside a rec unit, where guesses
    are per-step shapes), else stays unknown for this pass (the strict pass: is skipped)."""
    guess = _guess(inferred, layer, rule) if layer.scope.in_rec else None
    if guess is not None:
        inferred.shapes[layer.name] = guess
        if not state.lenient:
            state.stand_in.add(layer.name)
    elif state.lenient:
        state.unknown.add(layer.name)
    else:
        failed.add(layer.name)


class _Skip(InternalError):  # control flow, caught in this module
    pass


def _loop_dim(inferred: InferredNetwork, rec: Layer, failed: set[str], state: _Pass) -> Dim:
    """The axis a rec unit loops over: its input's time axis, else the time axis of
    `size_target`, else its target's time axis, else a new axis (searching, ended by the `end`
    layer / `max_seq_len`)."""
    if rec.name in inferred.loop_dims:
        return inferred.loop_dims[rec.name]
    dim: Dim | None = None
    src = _rec_input_shape(inferred, rec, failed, state)  # _Unknown: decided in a later pass
    if src is not None and src.time is not None:
        dim = src.time
    for option in ("size_target", "target"):
        target = rec.opts.get(option)
        if (
            dim is None
            and isinstance(target, str)
            and target in inferred.extern
            and inferred.extern[target].time
        ):
            dim = inferred.extern[target].time
    if dim is None:
        dim = time_dim(rec.name)
    inferred.loop_dims[rec.name] = dim
    return dim


def _rec_input_shape(
    inferred: InferredNetwork, rec: Layer, failed: set[str], state: _Pass
) -> Shape | None:
    shapes: list[Shape] = []
    names: list[str] = []
    for sub, ref in inferred.graph.refs.get(rec.name, []):
        if sub[0] != "from":
            continue
        s = _ref_shape(inferred, rec, ref, failed, state, None)
        if s is None:
            raise _Unknown()
        shapes.append(s)
        names.append(ref.text)
    if not shapes:
        return None
    return concat_features(shapes, names)


def _ref_shape(
    inferred: InferredNetwork,
    layer: Layer,
    ref: Ref,
    failed: set[str],
    state: _Pass,
    path: ConfigPath | None,
) -> Shape | None:
    """The shape a reference reads; None: not known in this lenient pass."""
    if ref.kind == "extern":
        if f"data:{ref.target}" in failed or ref.target not in inferred.extern:
            raise _Skip()
        shape = inferred.extern[ref.target]
        if ref.frame:
            loop = _loop_dim(inferred, layer.scope.loop_layer, failed, state)
            if shape.has(loop):
                return shape.without(loop)
            raise ShapeError(
                f"`{ref.text}` is read per step, but its time axis {shape.time} is not the axis "
                f"{loop} the loop of `{layer.scope.loop_layer.name}` runs over",
                "from",
                "shape.loop-axis",
            )
        return shape
    if ref.kind == "step":  # `:i`: a scalar per step, no batch axis (as in RETURNN)
        return Shape((), None, "int32")
    if ref.kind == "source":
        rec = ref.target
        src = _rec_input_shape(inferred, rec, failed, state)
        if src is None:
            raise ShapeError(
                f"`data:source`: rec layer `{rec.name}` has no input", "from", "shape.inputs"
            )
        loop = _loop_dim(inferred, rec, failed, state)
        return src.without(loop) if src.has(loop) else src
    target: Layer = ref.target
    if target.name in failed:
        raise _Skip()
    if target.name in inferred.shapes:
        return read_shape(inferred, ref)
    if ref.prev:
        guess = state.prev_shapes.get(target.name)
        if guess is None:
            rule = get_rule(target.layer_class)
            guess = _guess(inferred, target, rule) if rule is not None else None
        if guess is None:
            if not state.lenient:
                state.unresolved.setdefault(target.name, (layer.name, path or layer.path))
            return None
        state.assumed.setdefault(target.name, (guess, layer.name))
        return guess
    if state.lenient and target.name in state.unknown:
        return None
    raise _Skip()


def _gather_inputs(
    inferred: InferredNetwork, layer: Layer, failed: set[str], state: _Pass
) -> tuple[list[Shape | None], list[str], dict[str, list[tuple[Ref, Shape]]]]:
    """Input shapes (None where not known in a lenient pass) and layer-valued options."""
    if layer.scope.in_rec:
        _loop_dim(inferred, layer.scope.loop_layer, failed, state)
    sources: list[Shape | None] = []
    names: list[str] = []
    refs: dict[str, list[tuple[Ref, Shape]]] = {}
    for sub, ref in inferred.graph.refs.get(layer.name, []):
        shape = _ref_shape(inferred, layer, ref, failed, state, layer.path + sub)
        if sub[0] == "from":
            sources.append(shape)
            names.append(ref.text)
        elif shape is None:
            if not state.lenient:
                raise _Unknown()
            # lenient: try without it (e.g. `window_start` does not change the output's shape);
            # the strict pass checks the layer with all of its options
        else:
            refs.setdefault(str(sub[0]), []).append((ref, shape))
    if layer.unit is not None:
        _loop_dim(inferred, layer, failed, state)
        for sub_layer in layer.unit.layers.values():
            if sub_layer.name in failed:
                raise _Skip()
            if state.lenient and sub_layer.name in state.unknown:
                raise _Unknown()
    return sources, names, refs
