"""What shape inference finds and what a shape rule sees: every layer's output shape, with the
identity of each time axis (`InferredNetwork`), and the `ShapeContext` a rule's `infer` gets.

No TensorFlow. The passes that run the rules in dependency order are
`netcompiler.frontend.shape_inference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.diagnostics import WARNING, Diagnostic
from netcompiler.core.dims import BATCH_DIM, Dim, Shape, feature_dim, time_dim
from netcompiler.frontend.feature_concat import concat_features
from netcompiler.frontend.graph import Graph
from netcompiler.frontend.layer_context import LayerContext
from netcompiler.frontend.network import Layer, Network, Ref
from netcompiler.layers import LayerRule, ParamSpec, ShapeError, get_rule


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
    #: axes created by layers, by (layer, tag, n): the same object in every inference pass, so
    #: that a shape read through `prev:` in one pass matches the one computed in the next
    created_dims: dict[tuple[str | int, ...], Dim] = field(default_factory=dict)
    #: extern time axes a frame-wise loss compares, (output's key, target's key) -> config path
    #: of the loss's `target`: `validate` makes them one axis (see `unify_extern_time`)
    unify: dict[tuple[str, str], ConfigPath] = field(default_factory=dict)

    def param_count(self, name: str) -> int:
        if name in self.graph.param_owner:  # shares another layer's variables
            return 0
        return sum(p.size for p in self.params.get(name, {}).values())

    @property
    def total_params(self) -> int:
        return sum(self.param_count(n) for n in self.params)


_GUESSING: set[str] = set()  # layers whose shape is being guessed (guards against recursion)


class ShapeContext(LayerContext):
    """What a shape rule sees of one layer: options, input shapes, helpers for errors.
    `ref(option)` is a Shape here (see `netcompiler.frontend.layer_context`)."""

    def __init__(
        self,
        inferred: InferredNetwork,
        layer: Layer,
        sources: list[Shape],
        source_names: list[str],
        refs: dict[str, list[tuple[Ref, Shape]]],
    ):
        self._inferred = inferred
        self.layer = layer
        self.name = layer.name
        self.layer_class = layer.layer_class
        self.opts = layer.opts
        self.sources = sources
        self.source_names = source_names
        self._refs = refs
        self.in_rec = layer.scope.in_rec
        self.loop_dim = inferred.loop_dims.get(layer.scope.loop_layer.name) if self.in_rec else None
        self.warnings: list[Diagnostic] = []
        self._n_created = 0

    # -- options and inputs (`opt`: LayerContext) -----------------------------------------------
    @property
    def source(self) -> Shape:
        """The single input (a list in `from` is already concatenated on the feature axis)."""
        if len(self.sources) != 1:
            raise self.error(
                f"`{self.layer.layer_class}` needs exactly one input, got {len(self.sources)}",
                "from",
                "shape.inputs",
            )
        return self.sources[0]

    @property
    def source_shape(self) -> Shape:
        """`source`, under the name a builder's CallContext gives it (for shared helpers)."""
        return self.source

    def ref(self, option: str) -> Shape | None:
        """Shape of the layer named by a layer-valued option, or None if the option is absent."""
        got = self._refs.get(option)
        return got[0][1] if got else None

    def ref_shape(self, option: str) -> Shape | None:
        """The same as `ref` here (while building, `ref` is the tensor and `ref_shape` this)."""
        return self.ref(option)

    def option_refs(self, option: str) -> list[tuple[Ref, Shape]]:
        """Every (reference, shape) a layer-valued option names, in order (an option such as
        `initial_state` may name several layers); [] if the option names none."""
        return list(self._refs.get(option, []))

    @property
    def inferred(self) -> InferredNetwork:
        """The network's inference so far (shapes, `created_dims`, the graph's references), for
        rules that look beyond their own inputs and options."""
        return self._inferred

    def ref_name(self, option: str) -> str:
        got = self._refs.get(option)
        return got[0][0].text if got else str(self.opts.get(option))

    def require_ref(self, option: str) -> Shape:
        shape = self.ref(option)
        if shape is None:
            raise self.error(
                f"`{self.layer.layer_class}` needs `{option}`", option, "shape.missing-option"
            )
        return shape

    def extern(self, key: str) -> Shape | None:
        return self._inferred.extern.get(key)

    def source_refs(self) -> list[Ref]:
        """The references of the `from` inputs, in order (`ref.target.opts`: a layer input's
        options, e.g. the `unit` of a cell)."""
        return [
            ref for sub, ref in self._inferred.graph.refs.get(self.name, []) if sub[0] == "from"
        ]

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

    def guess_from_inputs(self, rule: LayerRule) -> Shape | None:
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
                loop = inferred.loop_dims.get(self.layer.scope.loop_layer.name)
                return shape.without(loop) if loop is not None and shape.has(loop) else None
            return shape
        if ref.kind != "layer":
            return None
        target = ref.target
        if target.name in inferred.shapes:
            return read_shape(inferred, ref)
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
        """A time axis this layer creates; the same object in every pass (see `created_dims`)."""
        tag = tag or self.name
        key = (self.name, tag, self._n_created)
        self._n_created += 1
        dims = self._inferred.created_dims
        if key not in dims:
            dims[key] = time_dim(tag)
        return dims[key]

    # -- reporting (`describe`, `error`: LayerContext) ----------------------------------------------
    def warn(
        self, message: str, option: str | None = None, rule: str = "shape", hint: str | None = None
    ) -> None:
        path = self.layer.path + ((option,) if option else ())
        self.warnings.append(Diagnostic(WARNING, message, rule, path, hint=hint))


def read_shape(inferred: InferredNetwork, ref: Ref) -> Shape:
    """The shape a resolved layer or extern reference reads (once inferred): `rec/name` from
    outside the loop of `rec` reads the per-step shape of `name` stacked over the loop."""
    if ref.kind == "extern":
        return inferred.extern[ref.target]
    shape = inferred.shapes[ref.target.name]
    if ref.stacked:
        from netcompiler.layers.rec import stacked_shape

        return stacked_shape(shape, inferred.loop_dims[ref.target.scope.rec_layer.name])
    return shape
