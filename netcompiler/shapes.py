"""Shape inference: every layer's output shape, with the identity of each time axis.

Runs the shape rule of each layer class (`netcompiler.layers`) in dependency order, without
TensorFlow. Errors are collected as diagnostics; a layer whose inputs failed is skipped silently
so one mistake is reported once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diagnostics import ERROR, WARNING, Diagnostic
from .dims import BATCH_DIM, Dim, Shape, feature_dim, same_axes, spatial_dim, time_dim
from .graph import Graph
from .layers import ParamSpec, ShapeError, get_rule
from .network import Layer, Network, Ref
from .schema import option_default


@dataclass
class InferredNetwork:
    """What shape inference found."""

    network: Network
    graph: Graph
    shapes: dict[str, Shape] = field(default_factory=dict)
    params: dict[str, dict[str, ParamSpec]] = field(default_factory=dict)
    extern: dict[str, Shape] = field(default_factory=dict)
    loop_dims: dict[str, Dim] = field(default_factory=dict)  # rec layer name -> loop axis
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def param_count(self, name: str) -> int:
        return sum(p.size for p in self.params.get(name, {}).values())

    @property
    def total_params(self) -> int:
        return sum(self.param_count(n) for n in self.params)


def extern_shapes(extern: dict) -> tuple[dict[str, Shape], list[Diagnostic]]:
    """Shapes of the `extern_data` entries (batch-major, with their own time axes)."""
    shapes: dict[str, Shape] = {}
    diags: list[Diagnostic] = []
    pending = dict(extern)
    # entries with same_time_as need the other entry first
    for _ in range(len(pending) + 1):
        for key in list(pending):
            spec = pending[key] if isinstance(pending[key], dict) else {}
            other = spec.get("same_time_as")
            if other is not None and other not in shapes:
                if other in extern and other not in pending:
                    pending.pop(key)  # `other` failed and was reported; nothing to add
                    continue
                if other not in extern:
                    diags.append(Diagnostic(ERROR, f"`same_time_as: {other}`: no such extern data",
                                            "shape.extern", ("extern_data", key, "same_time_as")))
                    pending.pop(key)
                continue
            pending.pop(key)
            try:
                shapes[key] = _extern_shape(key, spec, shapes.get(other) if other else None)
            except ShapeError as exc:
                path = ("extern_data", key) + ((exc.option,) if exc.option else ())
                diags.append(Diagnostic(ERROR, exc.message, exc.rule, path))
    for key in pending:
        diags.append(Diagnostic(ERROR, "`same_time_as` forms a cycle", "shape.extern",
                                ("extern_data", key, "same_time_as")))
    return shapes, diags


def _extern_shape(key: str, spec: dict, same_as: Shape | None) -> Shape:
    sparse = bool(spec.get("sparse", False))
    dim = spec.get("dim")
    shape = spec.get("shape")
    if shape is None:
        if dim is None:
            raise ShapeError(f"extern data `{key}` needs `dim` or `shape`", "dim", "shape.extern")
        shape = [None] if sparse else [None, dim]
    elif not sparse:
        if not shape or shape[-1] is None:
            raise ShapeError(f"dense extern data `{key}` needs a static feature size last in `shape`",
                             "shape", "shape.extern")
        if dim is not None and dim != shape[-1]:
            raise ShapeError(f"`dim: {dim}` differs from the last entry of `shape: {shape}`",
                             "dim", "shape.extern")
        dim = shape[-1]
    elif dim is None:
        raise ShapeError(f"sparse extern data `{key}` needs `dim` (the number of classes)", "dim",
                         "shape.extern")
    entries = list(shape) if sparse else list(shape[:-1])
    dims: list[Dim] = [BATCH_DIM]
    n_time = 0
    for entry in entries:
        if entry is None:
            if n_time == 0 and same_as is not None and same_as.time is not None:
                dims.append(same_as.time)
            else:
                dims.append(time_dim(key if n_time == 0 else f"{key}#{n_time + 1}"))
            n_time += 1
        else:
            dims.append(spatial_dim(entry))
    if not sparse:
        dims.append(feature_dim(dim))
    dtype = spec.get("dtype") or ("int32" if sparse else "float32")
    return Shape(tuple(dims), dim if sparse else None, dtype)


_MISSING = object()
_GUESSING: set[str] = set()  # layers whose shape is being guessed (guards against recursion)


class ShapeContext:
    """What a shape rule sees of one layer: options, input shapes, helpers for errors."""

    def __init__(self, inferred: InferredNetwork, layer: Layer, sources: list[Shape],
                 source_names: list[str], refs: dict[str, list[tuple[Ref, Shape]]]):
        self._inferred = inferred
        self.layer = layer
        self.name = layer.name
        self.opts = layer.opts
        self.sources = sources
        self.source_names = source_names
        self._refs = refs
        self.in_rec = layer.scope.in_rec
        self.loop_dim = inferred.loop_dims.get(layer.scope.rec_layer.name) if self.in_rec else None
        self.warnings: list[Diagnostic] = []

    # -- options and inputs ---------------------------------------------------------------------
    def opt(self, name: str, default: Any = _MISSING) -> Any:
        """An option's value; if absent, `default`, else the default in the class's schema."""
        if name in self.opts:
            return self.opts[name]
        if default is not _MISSING:
            return default
        return option_default(self.layer.layer_class, name)

    @property
    def source(self) -> Shape:
        """The single input (a list in `from` is already concatenated on the feature axis)."""
        if len(self.sources) != 1:
            raise self.error(f"`{self.layer.layer_class}` needs exactly one input, got "
                             f"{len(self.sources)}", "from", "shape.inputs")
        return self.sources[0]

    @property
    def source_shape(self) -> Shape:
        """`source`, under the name a builder's CallContext gives it (for shared helpers)."""
        return self.source

    def ref(self, option: str) -> Shape | None:
        """Shape of the layer named by a layer-valued option, or None if the option is absent."""
        got = self._refs.get(option)
        return got[0][1] if got else None

    def ref_name(self, option: str) -> str:
        got = self._refs.get(option)
        return got[0][0].text if got else str(self.opts.get(option))

    def require_ref(self, option: str) -> Shape:
        shape = self.ref(option)
        if shape is None:
            raise self.error(f"`{self.layer.layer_class}` needs `{option}`", option,
                             "shape.missing-option")
        return shape

    def extern(self, key: str) -> Shape | None:
        return self._inferred.extern.get(key)

    def unit_shape(self, local_name: str) -> Shape | None:
        """Inside the rule of a rec layer: the per-step shape of a layer of its unit."""
        return self._inferred.shapes.get(f"{self.name}/{local_name}")

    @property
    def rec_loop_dim(self) -> Dim | None:
        """Inside the rule of a rec layer: the axis its loop runs over."""
        return self._inferred.loop_dims.get(self.name)

    # -- guessing shapes (to break `prev:` cycles) ----------------------------------------------
    def known_ref(self, option: str) -> Shape | None:
        """The shape of a layer-valued option if that layer is already inferred (or extern
        data), without inputs being gathered; for `guess_step_shape`."""
        got = self.ref(option)
        if got is not None:
            return got
        for sub, ref in self._inferred.graph.refs.get(self.name, []):
            if sub[0] == option and not ref.prev:
                return self._known_shape(ref)
        return None

    def guess_from_inputs(self, rule) -> Shape | None:
        """`rule.infer` run on the input shapes known so far (inferred, or guessed in turn),
        skipping the layer's own `prev:` output; None when some input is unknown."""
        layer = self.layer
        if layer.name in _GUESSING:
            return None
        _GUESSING.add(layer.name)
        try:
            shapes, names = [], []
            for sub, ref in self._inferred.graph.refs.get(layer.name, []):
                if sub[0] != "from" or (ref.kind == "layer" and ref.target is layer):
                    continue
                shape = self._known_shape(ref)
                if shape is None:
                    return None
                shapes.append(shape)
                names.append(ref.text)
            try:
                if rule.concat_sources and len(shapes) > 1:
                    shapes, names = [concat_features(shapes, names)], ["+".join(names)]
                return rule.infer(ShapeContext(self._inferred, layer, shapes, names, {}))
            except ShapeError:
                return None
        finally:
            _GUESSING.discard(layer.name)

    def _known_shape(self, ref: Ref) -> Shape | None:
        inferred = self._inferred
        if ref.kind == "extern":
            shape = inferred.extern.get(ref.target)
            if shape is not None and ref.frame:
                loop = inferred.loop_dims.get(self.layer.scope.rec_layer.name)
                return shape.without(loop) if loop is not None and shape.has(loop) else None
            return shape
        if ref.kind != "layer":
            return None
        target = ref.target
        if target.name in inferred.shapes:
            return inferred.shapes[target.name]
        rule = get_rule(target.layer_class)
        if rule is None:
            return None
        try:
            return rule.guess_step_shape(ShapeContext(inferred, target, [], [], {}))
        except ShapeError:
            return None

    # -- building shapes ------------------------------------------------------------------------
    def batch_shape(self, n_out: int) -> Shape:
        return Shape((BATCH_DIM, feature_dim(n_out)))

    def new_time_dim(self, tag: str | None = None) -> Dim:
        return time_dim(tag or self.name)

    @staticmethod
    def describe(name: str, shape: Shape) -> str:
        return f"`{name}` {shape}"

    # -- reporting ------------------------------------------------------------------------------
    def error(self, message: str, option: str | None = None, rule: str = "shape",
              hint: str | None = None) -> ShapeError:
        """Usage: `raise ctx.error(...)`."""
        return ShapeError(message, option, rule, hint)

    def warn(self, message: str, option: str | None = None, rule: str = "shape",
             hint: str | None = None) -> None:
        path = self.layer.path + ((option,) if option else ())
        self.warnings.append(Diagnostic(WARNING, message, rule, path, hint=hint))


def concat_features(shapes: list[Shape], names: list[str]) -> Shape:
    """Inputs of a `from` list, concatenated on the feature axis (other axes must match)."""
    if len(shapes) == 1:
        return shapes[0]
    first = shapes[0]
    for name, s in zip(names, shapes):
        if s.sparse or s.feature is None:
            raise ShapeError(f"cannot concatenate `{name}` {s} on the feature axis: it has no "
                             f"feature axis", "from", "shape.concat")
    total = 0
    for name, s in zip(names, shapes):
        if not same_axes(s.non_feature_dims, first.non_feature_dims):
            raise ShapeError(
                f"cannot concatenate inputs whose axes differ: `{names[0]}` {first} and "
                f"`{name}` {s}", "from", "shape.concat")
        total += s.feature.size
    return Shape(first.non_feature_dims + (feature_dim(total),))


def infer_shapes(graph: Graph, extern: dict[str, Shape], failed_layers: set[str] = frozenset()
                 ) -> InferredNetwork:
    """Infer all layer shapes. `failed_layers` (e.g. with schema errors) are skipped."""
    network = graph.network
    inferred = InferredNetwork(network, graph, extern=extern)
    failed: set[str] = set(failed_layers)
    guesses: dict[str, tuple[Shape, str]] = {}  # prev: targets used before being inferred
    # extern data that failed to parse counts as failed
    failed.update(f"data:{k}" for k in network.extern if k not in extern)

    for name in graph.order():
        layer = network.layers[name]
        if name in failed:
            continue
        rule = get_rule(layer.layer_class)
        if rule is None:
            failed.add(name)
            continue
        try:
            sources, names, refs = _gather_inputs(inferred, layer, failed, guesses)
        except _Skip:
            failed.add(name)
            continue
        except ShapeError as exc:
            _report(inferred, layer, exc)
            failed.add(name)
            continue
        try:
            if rule.concat_sources and len(sources) > 1:
                sources = [concat_features(sources, names)]
                names = ["+".join(names)]
            ctx = ShapeContext(inferred, layer, sources, names, refs)
            shape = rule.infer(ctx)
            inferred.shapes[name] = shape
            inferred.params[name] = rule.params(ctx, shape)
            if layer.opts.get("loss"):
                _check_loss(inferred, layer, shape)
            if "initial_output" in layer.opts:
                _check_initial_output(ctx, shape, inferred.params[name])
            inferred.diagnostics.extend(ctx.warnings)
            if rule.deprecated:
                inferred.diagnostics.append(Diagnostic(
                    WARNING, f"`{layer.layer_class}` is deprecated", "deprecated",
                    layer.path + ("class",), hint=f"use the explicit formulation: {rule.deprecated}"))
        except ShapeError as exc:
            _report(inferred, layer, exc)
            failed.add(name)
            continue
        if name in guesses:
            guess, user = guesses.pop(name)
            if not same_axes(guess.dims, shape.dims) or guess.sparse_dim != shape.sparse_dim:
                _report(inferred, layer, ShapeError(
                    f"`prev:{layer.local_name}` was assumed to be {guess} when `{user}` read it, "
                    f"but `{name}` is {shape}", "n_out", "shape.prev"))
    return inferred


def _check_initial_output(ctx: ShapeContext, step: Shape, params: dict) -> None:
    """`initial_output` (what `prev:` reads at step 0) must fit the layer's per-step shape."""
    value = ctx.opts["initial_output"]
    if not ctx.in_rec:
        raise ShapeError("`initial_output` only applies inside a rec unit", "initial_output",
                         "shape.initial-output")
    init = ctx.ref("initial_output")
    if init is not None and (not same_axes(init.dims, step.dims)
                             or init.sparse_dim != step.sparse_dim):
        raise ShapeError(f"`initial_output` `{ctx.ref_name('initial_output')}` is {init}, but "
                         f"`{ctx.name}` is {step} per step", "initial_output",
                         "shape.initial-output")
    if value == "var":
        if any(d.size is None for d in step.dims if d.kind != "batch") or step.sparse:
            raise ShapeError(f"`initial_output: var` needs a dense per-step shape with static "
                             f"axes besides the batch, `{ctx.name}` is {step}",
                             "initial_output", "shape.initial-output")
        params["initial_output"] = ParamSpec(
            tuple(d.size for d in step.dims if d.kind != "batch"), 0.0)


def _check_loss(inferred: InferredNetwork, layer: Layer, out: Shape) -> None:
    """The `target` of a layer's `loss` must fit the layer's output."""
    loss = layer.opts["loss"]
    key = layer.opts.get("target")
    if not isinstance(key, str):
        raise ShapeError(f"`loss: {loss}` needs a `target` (an extern data key)", "loss",
                         "shape.loss-target")
    target = inferred.extern.get(key)  # an unknown key was reported by the graph check
    if target is None:
        return
    if layer.scope.in_rec:
        loop = inferred.loop_dims.get(layer.scope.rec_layer.name)
        if loop is not None and target.has(loop):
            target = target.without(loop)
    what = f"`{layer.name}` {out} does not fit `target: {key}` {target}"
    if loss == "ctc":
        ok = (target.sparse and out.feature_size == target.sparse_dim + 1
              and out.time is not None and target.time is not None)
        if not ok:
            raise ShapeError(f"`loss: ctc`: {what} (needs a sparse target over time and "
                             f"{(target.sparse_dim or 0) + 1} output features: classes + blank)",
                             "target", "shape.loss-target")
        return
    if out.sparse or out.feature is None:
        raise ShapeError(f"`loss: {loss}`: {what} (the output needs a feature axis)", "loss",
                         "shape.loss-target")
    if target.sparse:
        axes_ok = same_axes(out.non_feature_dims, target.dims)
        feat_ok = out.feature_size == target.sparse_dim
    else:
        axes_ok = same_axes(out.non_feature_dims, target.non_feature_dims)
        feat_ok = out.feature_size == target.feature_size
    if not axes_ok:
        raise ShapeError(f"`loss: {loss}`: {what}: their axes differ", "target",
                         "shape.loss-target")
    if not feat_ok:
        raise ShapeError(f"`loss: {loss}`: {what}: {out.feature_size} output features for "
                         f"{target.feature_size} target classes/features", "target",
                         "shape.loss-target")


class _Skip(Exception):
    pass


def _report(inferred: InferredNetwork, layer: Layer, exc: ShapeError) -> None:
    path = layer.path + ((exc.option,) if exc.option else ())
    inferred.diagnostics.append(Diagnostic(ERROR, exc.message, exc.rule, path, hint=exc.hint))


def _loop_dim(inferred: InferredNetwork, rec: Layer, failed: set[str]) -> Dim:
    """The axis a rec unit loops over: its input's time axis, else its target's time axis,
    else a new axis (searching, ended by the `end` layer / `max_seq_len`)."""
    if rec.name in inferred.loop_dims:
        return inferred.loop_dims[rec.name]
    dim = None
    src = _rec_input_shape(inferred, rec, failed)
    if src is not None and src.time is not None:
        dim = src.time
    if dim is None:
        target = rec.opts.get("target")
        if isinstance(target, str) and target in inferred.extern and inferred.extern[target].time:
            dim = inferred.extern[target].time
    if dim is None:
        dim = time_dim(rec.name)
    inferred.loop_dims[rec.name] = dim
    return dim


def _rec_input_shape(inferred: InferredNetwork, rec: Layer, failed: set[str]) -> Shape | None:
    shapes, names = [], []
    for sub, ref in inferred.graph.refs.get(rec.name, []):
        if sub[0] != "from":
            continue
        s = _ref_shape(inferred, rec, ref, failed, {}, None)
        shapes.append(s)
        names.append(ref.text)
    if not shapes:
        return None
    return concat_features(shapes, names)


def _ref_shape(inferred: InferredNetwork, layer: Layer, ref: Ref, failed: set[str],
               guesses: dict, user: str | None) -> Shape:
    if ref.kind == "extern":
        if f"data:{ref.target}" in failed or ref.target not in inferred.extern:
            raise _Skip()
        shape = inferred.extern[ref.target]
        if ref.frame:
            loop = _loop_dim(inferred, layer.scope.rec_layer, failed)
            if shape.has(loop):
                return shape.without(loop)
            raise ShapeError(
                f"`{ref.text}` is read per step, but its time axis {shape.time} is not the axis "
                f"{loop} the loop of `{layer.scope.rec_layer.name}` runs over", "from",
                "shape.loop-axis")
        return shape
    if ref.kind == "source":
        rec = ref.target
        src = _rec_input_shape(inferred, rec, failed)
        if src is None:
            raise ShapeError(f"`data:source`: rec layer `{rec.name}` has no input", "from",
                             "shape.inputs")
        loop = _loop_dim(inferred, rec, failed)
        return src.without(loop) if src.has(loop) else src
    target: Layer = ref.target
    if target.name in failed:
        raise _Skip()
    if target.name in inferred.shapes:
        return inferred.shapes[target.name]
    if ref.prev:
        rule = get_rule(target.layer_class)
        guess = None
        if rule is not None:
            ctx = ShapeContext(inferred, target, [], [], {})
            guess = rule.guess_step_shape(ctx)
        if guess is None:
            raise ShapeError(
                f"cannot infer the shape of `prev:{target.local_name}` before `{target.name}` "
                f"is computed", "from", "shape.prev",
                hint=f"set `n_out` on `{target.name}` to break the cycle")
        guesses.setdefault(target.name, (guess, user or layer.name))
        return guess
    raise _Skip()


def _gather_inputs(inferred: InferredNetwork, layer: Layer, failed: set[str], guesses: dict):
    if layer.scope.in_rec:
        _loop_dim(inferred, layer.scope.rec_layer, failed)
    sources, names = [], []
    refs: dict[str, list[tuple[Ref, Shape]]] = {}
    for sub, ref in inferred.graph.refs.get(layer.name, []):
        shape = _ref_shape(inferred, layer, ref, failed, guesses, layer.name)
        if sub[0] == "from":
            sources.append(shape)
            names.append(ref.text)
        else:
            refs.setdefault(sub[0], []).append((ref, shape))
    if layer.unit is not None:
        _loop_dim(inferred, layer, failed)
        for sub_layer in layer.unit.layers.values():
            if sub_layer.name in failed:
                raise _Skip()
    return sources, names, refs
