"""The network structure of a config: layers by full name, scopes (rec units), references.

Pure data, no TensorFlow. A layer's full name is `name` at the top level and `rec/name` inside
the unit of the `rec` layer `rec` (nested units: `outer/inner/name`).

A `subnetwork` layer `sub` is inlined: its layers are ordinary layers of the enclosing network
(the top level or a rec unit, its *host*) named `sub/name`, resolved in a `Scope` of their own
(`data` is the subnetwork's input, `base:x` a layer of the enclosing network); the `subnetwork`
layer itself reads `sub/output`. From outside, `sub/name` names a layer of the subnetwork and
`rec/name` a layer of a rec unit (stacked over its loop: `Ref.stacked`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from netcompiler.core.config_types import ConfigData, ConfigPath, LayerOptions
from netcompiler.core.diagnostics import ERROR, Diagnostic, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from netcompiler.core.layer_rule import LayerRule

# Which options of a layer name layers is a trait of its class's rule (`reference_options`);
# `target` names extern data.
# values of `initial_output` that are keywords, not layer references
INITIAL_OUTPUT_KEYWORDS = ("zeros", "ones", "var", "apply(0)")
# values of `initial_state` of a cell (`rnn_cell`, `rec`) that are keywords, not references
INITIAL_STATE_KEYWORDS = (
    "zeros",
    "ones",
    "var",
    "keep_over_epoch",
    "keep_over_epoch_no_init",
    "placeholder",
)


@dataclass
class Scope:
    """One network: the top-level `network`, the `unit` of a `rec` layer, or the `subnetwork` of
    a `subnetwork` layer (`subnet_layer`; its layers also belong to the enclosing scopes, named
    `sub/name`, up to the host scope that runs them)."""

    prefix: str  # "" at top level, "dec/" inside rec layer "dec"
    path: ConfigPath  # config path of the layer dict, e.g. ("network",) or ("network","dec","unit")
    layers: dict[str, Layer] = field(default_factory=dict)
    rec_layer: Layer | None = None
    parent: Scope | None = None
    subnet_layer: Layer | None = None  # the `subnetwork` layer whose sub-network this is

    @property
    def in_rec(self) -> bool:
        return self.rec_layer is not None

    @property
    def outer(self) -> Scope:
        """The enclosing scope; asked only of a rec unit or a subnetwork (the top level has
        none)."""
        assert self.parent is not None, "the top-level network has no enclosing scope"
        return self.parent

    @property
    def loop_layer(self) -> Layer:
        """The rec layer whose loop runs this scope's layers; asked only where `in_rec`."""
        assert self.rec_layer is not None, f"scope `{self.prefix}` is not in a rec unit"
        return self.rec_layer

    @property
    def host(self) -> Scope:
        """The top-level network or rec unit whose layers this scope's layers are."""
        scope = self
        while scope.subnet_layer is not None:
            scope = scope.outer
        return scope


@dataclass
class Layer:
    name: str  # full name
    local_name: str
    opts: LayerOptions
    path: ConfigPath  # config path of this layer's dict
    scope: Scope
    unit: Scope | None = None  # the sub-network of a rec layer with a unit dict
    subnet: Scope | None = None  # the inlined sub-network of a `subnetwork` layer
    #: made by netcompiler, not in the config (a subnetwork's `data:data`): its `path` is that
    #: of the layer it stands for
    synthetic: bool = False

    @property
    def layer_class(self) -> str:
        """The `class` option: a str once the schema check passed (before that, whatever the
        config says: the rule look-ups take any value and find no rule for a wrong one)."""
        layer_class: str = self.opts.get("class", "")
        return layer_class


@dataclass(frozen=True)
class Ref:
    """A resolved reference.

    kind: "layer" (target is a Layer), "extern" (target is an extern data key), "source" (the
    current frame of the enclosing rec layer's input), "step" (`:i`, the step index of the
    enclosing rec layer's loop: an int32 scalar per step). `prev` for `prev:x`. `frame` is True
    for `data:KEY` inside a rec unit (the current frame of extern data).
    """

    kind: str
    target: Any
    prev: bool = False
    frame: bool = False
    text: str = ""
    #: a layer of a rec unit read from outside its loop (`rec/name`): its values stacked over
    #: the loop ([B, T_loop, ...], `netcompiler.layers.rec.stacked_shape`)
    stacked: bool = False

    @property
    def node(self) -> str:
        if self.kind == "layer":
            layer: Layer = self.target
            return layer.name
        if self.kind == "extern":
            return f"data:{self.target}"
        if self.kind == "step":
            return f"{self.target.name}:i"
        return f"{self.target.name}:source"


@dataclass
class Network:
    top: Scope
    layers: dict[str, Layer]  # all layers by full name
    extern: dict[str, Any]  # extern_data config
    #: `register_as_extern_data: KEY`: extern data made by a layer, KEY -> that layer
    registered: dict[str, Layer] = field(default_factory=dict)

    def data_keys(self) -> set[str]:
        """Every key `data:KEY` and `target` may name: extern data and registered layers."""
        return set(self.extern) | set(self.registered)

    def iter_scopes(self) -> Iterator[Scope]:
        stack = [self.top]
        while stack:
            s = stack.pop(0)
            yield s
            stack.extend(layer.unit for layer in s.layers.values() if layer.unit is not None)


def build_network(data: ConfigData) -> Network:
    """Collect layers and scopes from config data (assumed schema-checked where it matters)."""
    extern_data, network = data.get("extern_data"), data.get("network")
    extern: dict[str, Any] = extern_data if isinstance(extern_data, dict) else {}
    net: dict[str, Any] = network if isinstance(network, dict) else {}
    top = Scope("", ("network",))
    collector = _LayerCollector()
    collector.fill(top, net)
    registered: dict[str, Layer] = {}
    for layer in collector.layers.values():
        key = layer.opts.get("register_as_extern_data")
        if isinstance(key, str) and key not in extern and key not in registered:
            registered[key] = layer  # clashes are reported by the graph check
    return Network(top, collector.layers, extern, registered)


@dataclass
class _LayerCollector:
    """Collects the layers of a network dict, its rec units and sub-networks into their scopes
    and into `layers` (by full name, in config order)."""

    layers: dict[str, Layer] = field(default_factory=dict)

    def add(self, scope: Scope, local: str, layer: Layer) -> None:
        """Register `layer` as `local` in `scope` and by its full name in `layers`."""
        # a layer of a sub-network also belongs to the enclosing scopes, as `sub/name`
        scope.layers[local] = layer
        while scope.subnet_layer is not None:
            local = f"{scope.subnet_layer.path[-1]}/{local}"
            scope = scope.outer
            scope.layers[local] = layer
        layer.local_name = local  # relative to the host scope (the unit's layers are by it)
        self.layers[layer.name] = layer

    def fill(self, scope: Scope, layer_dicts: dict[str, Any]) -> None:
        """The layers of `layer_dicts` (a network dict) into `scope`, with what they hold."""
        for local, opts in layer_dicts.items():
            if not isinstance(opts, dict):
                continue
            layer = Layer(scope.prefix + str(local), str(local), opts, scope.path + (local,), scope)
            self.add(scope, str(local), layer)
            # the class's structure traits (`netcompiler.core.layer_rule.LayerRule`): a network
            # of its own (`sub_network_kind`), synthetic sub-outputs (`sub_outputs`)
            rule = _rule(opts.get("class"))
            if rule is None:
                continue
            held = rule.sub_network(opts)
            kind = rule.sub_network_kind if held is not None else None
            if held is None or kind is None:
                self._add_sub_outputs(scope, str(local), layer, rule)
            elif kind == "loop":
                sub_path, sub_layers = held
                layer.unit = Scope(
                    layer.name + "/", layer.path + sub_path, rec_layer=layer, parent=scope
                )
                self.fill(layer.unit, sub_layers)
            else:
                self._add_sub_network(scope, layer, rule, held, kind)

    def _add_sub_outputs(self, scope: Scope, local: str, layer: Layer, rule: LayerRule) -> None:
        """The sub-outputs of `layer` (`split`: `NAME/0`, `NAME/1`, ...): synthetic layers
        reading it."""
        for part_local, part_opts in rule.sub_outputs(local, layer.opts):
            part = Layer(
                scope.prefix + part_local,
                part_local,
                part_opts,
                layer.path,
                scope,
                synthetic=True,
            )
            self.add(scope, part_local, part)

    def _add_sub_network(
        self,
        scope: Scope,
        layer: Layer,
        rule: LayerRule,
        held: tuple[ConfigPath, dict[str, LayerOptions]],
        kind: str,
    ) -> None:
        """The inlined sub-network of `layer` (`kind` "masked" or "inline"), in a scope of its
        own."""
        sub_path, sub_layers = held
        subnet = layer.subnet = Scope(
            layer.name + "/",
            layer.path + sub_path,
            rec_layer=scope.rec_layer,
            parent=scope,
            subnet_layer=layer,
        )
        if kind == "masked":
            # its `unit` is inlined as the layer `NAME/unit` of a sub-network scope whose
            # `data` is the masked input, the synthetic layer `NAME/data:data`
            # (`netcompiler.layers.masked_computation`)
            self._add_input(layer, subnet, scope, rule.sub_network_input(layer.opts))
            self.fill(subnet, sub_layers)
            return
        self.fill(subnet, sub_layers)  # "inline"
        if (
            _reads_subnet_data(layer)
            and subnet_inputs(layer)
            and layer.opts.get("concat_sources", True) is not False
        ):
            # RETURNN's `data:data` of the sub-network: its inputs concatenated (and
            # dropped out); a layer `sub/data:data` read by `data` inside
            self._add_input(layer, subnet, scope, rule.sub_network_input(layer.opts))

    def _add_input(
        self, layer: Layer, subnet: Scope, scope: Scope, data_opts: LayerOptions | None
    ) -> None:
        """The synthetic layer `NAME/data:data` (`data` inside `subnet`, the network of
        `layer`)."""
        if data_opts is None:
            return
        data_layer = Layer(
            subnet.prefix + "data:data", "data:data", data_opts, layer.path, scope, synthetic=True
        )
        self.add(subnet, "data:data", data_layer)


def reference_values(opts: LayerOptions, option: str) -> list[tuple[ConfigPath, str]]:
    """The reference strings of a layer option with their sub-paths: [((option, i), text)]."""
    value = opts.get(option)
    if option == "initial_output" and value in INITIAL_OUTPUT_KEYWORDS:
        return []
    if option == "initial_state":  # cells: one value, or a list / dict per state part
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else [(None, value)]
        )
        return [
            ((option,) if k is None else (option, k), v)
            for k, v in items
            if isinstance(v, str) and v not in INITIAL_STATE_KEYWORDS
        ]
    if option == "reuse_params" and isinstance(value, dict):
        # RETURNN's dict form: only {reuse_layer: NAME} (the other keys are refused by the
        # shape check)
        value = value.get("reuse_layer")
    if isinstance(value, str):
        return [((option,), value)]
    if isinstance(value, list):
        return [((option, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    return []


def layer_references(layer: Layer) -> list[tuple[ConfigPath, str]]:
    """All reference strings of a layer: `from` (default `data`) and layer-valued options
    (and the `max_len_from('...')` of a `max_seq_len` expression, seen from the unit)."""
    refs = max_seq_len_references(layer)
    rule = _rule(layer.layer_class)
    if layer.subnet is not None and rule is not None and rule.sub_network_kind == "masked":
        # its input is read by `NAME/data:data`, its output is its unit's
        refs.extend(reference_values(layer.opts, "mask"))
        refs.append((("unit",), f"{layer.path[-1]}/unit"))
        return refs
    if layer.subnet is not None:
        # its inputs are read inside (by `data`, through the layer `data:data` when that
        # exists); its output is the sub-network's `output` (missing: reported by the graph)
        if "data:data" not in layer.subnet.layers:
            refs.extend(subnet_inputs(layer))
        if "output" in layer.subnet.layers:
            refs.append((("subnetwork", "output"), f"{layer.path[-1]}/output"))
        return refs
    for option in reference_options(layer.layer_class):
        if option == "from" and "from" not in layer.opts:
            default = rule.default_from if rule is not None else "data"
            if default is not None:
                refs.append((("from",), default))
            continue
        refs.extend(reference_values(layer.opts, option))
    return refs


def reference_options(layer_class: str) -> tuple[str, ...]:
    """The options of a layer of this class whose values name layers, in the order they are
    resolved: `from`, the rule's `layer_options`, then the other common ones (`reuse_params`,
    `initial_output`); only the common ones for an unknown class (a schema error)."""
    from netcompiler.layers import COMMON_LAYER_OPTIONS

    rule = _rule(layer_class)
    own = tuple(o for o in rule.layer_options if o not in COMMON_LAYER_OPTIONS) if rule else ()
    return COMMON_LAYER_OPTIONS[:1] + own + COMMON_LAYER_OPTIONS[1:]


def _rule(layer_class: object) -> LayerRule | None:
    from netcompiler.layers import get_rule  # lazy: the registry imports every layer module

    return get_rule(layer_class) if isinstance(layer_class, str) else None


def subnet_inputs(layer: Layer) -> list[tuple[ConfigPath, str]]:
    """The inputs of a `subnetwork` layer: its `from` (default `data`) with sub-paths."""
    if "from" not in layer.opts:
        return [(("from",), "data")]
    return reference_values(layer.opts, "from")


def _reads_subnet_data(layer: Layer) -> bool:
    """True if a layer of the sub-network of `layer` reads `data` / `data:data` (its input)."""
    subnet = layer.subnet
    if subnet is None:
        return False
    for sub_layer in subnet.layers.values():
        if sub_layer.scope is subnet and any(
            text in ("data", "data:data") for _, text in layer_references(sub_layer)
        ):
            return True
    return False


def max_seq_len_references(layer: Layer) -> list[tuple[ConfigPath, str]]:
    """References in a rec layer's `max_seq_len` expression (none if it does not parse: that
    is reported by the graph check)."""
    from netcompiler.frontend.seq_len_expr import SeqLenExprError, parse, references

    text = layer.opts.get("max_seq_len")
    if not isinstance(text, str):
        return []
    try:
        return [(("max_seq_len", i), ref) for i, ref in enumerate(references(parse(text)))]
    except SeqLenExprError:
        return []


#: what resolving a reference gives: (the Ref, None), or (None, the error)
Resolved = tuple[Ref | None, Diagnostic | None]


def resolve(text: str, scope: Scope, network: Network, path: ConfigPath) -> Resolved:
    """Resolve one reference string seen in `scope`; returns (ref, None) or (None, error)."""
    prev = False
    rest = text
    if rest.startswith("prev:"):
        if not scope.in_rec:
            return _error(
                path, f"`{text}`: `prev:` is only valid inside a rec unit", "graph.prev-outside-rec"
            )
        prev = True
        rest = rest[len("prev:") :]
    if rest.startswith("base:"):
        return _resolve_base(text, rest, prev, scope, network, path)
    if rest == "data" or rest.startswith("data:"):
        if prev:
            return _error(
                path, f"`{text}`: `prev:` of data is not supported", "graph.bad-reference"
            )
        if scope.subnet_layer is not None:
            return _resolve_subnet_data(text, rest, scope, network, path)
        return _resolve_data(text, rest, scope, network, path)
    if rest == ":i":  # RETURNN's step index of the loop (RecStepInfoLayer)
        return _resolve_step_index(text, prev, scope, path)
    return _resolve_layer(text, rest, prev, scope, path)


def _error(path: ConfigPath, message: str, rule: str, hint: str | None = None) -> Resolved:
    """A reference that does not resolve: (None, the error at `path`)."""
    return None, Diagnostic(ERROR, message, rule, path, hint=hint)


def _resolve_base(
    text: str, rest: str, prev: bool, scope: Scope, network: Network, path: ConfigPath
) -> Resolved:
    """`base:x` (`rest`): x in the enclosing network of a rec unit or a subnetwork."""
    if not scope.in_rec and scope.subnet_layer is None:
        return _error(
            path,
            f"`{text}`: `base:` is only valid inside a rec unit or a subnetwork",
            "graph.base-outside-rec",
        )
    if prev:
        return _error(
            path, f"`{text}`: `prev:base:` is not a valid reference", "graph.bad-reference"
        )
    ref, diag = resolve(rest[len("base:") :], scope.outer, network, path)
    return (replace(ref, text=text) if ref is not None else None), diag


def _resolve_data(
    text: str, rest: str, scope: Scope, network: Network, path: ConfigPath
) -> Resolved:
    """`data` / `data:KEY` (`rest`) outside a subnetwork: extern data (inside a rec unit its
    current frame), and there `data` / `data:source` the current frame of the rec layer's
    input."""
    key = (
        rest[len("data:") :] if rest.startswith("data:") else ("source" if scope.in_rec else "data")
    )
    if key == "source":
        if not scope.in_rec:
            return _error(
                path,
                f"`{text}`: `data:source` is only valid inside a rec unit",
                "graph.source-outside-rec",
            )
        return Ref("source", scope.rec_layer, text=text), None
    if key not in network.data_keys():
        return _error(
            path,
            f"unknown extern data `{key}` in `{text}`",
            "graph.unknown-data",
            did_you_mean(key, network.data_keys()),
        )
    return Ref("extern", key, frame=scope.in_rec, text=text), None


def _resolve_step_index(text: str, prev: bool, scope: Scope, path: ConfigPath) -> Resolved:
    """`:i`, the step index of the loop of the enclosing rec layer."""
    if not scope.in_rec:
        return _error(
            path,
            f"`{text}`: the step index `:i` is only valid inside a rec unit",
            "graph.step-outside-rec",
        )
    if prev:
        return _error(
            path,
            f"`{text}`: `prev:` of the step index is not supported",
            "graph.bad-reference",
            hint="use `:i` and subtract 1 in an `eval`",
        )
    return Ref("step", scope.rec_layer, text=text), None


def _resolve_layer(text: str, rest: str, prev: bool, scope: Scope, path: ConfigPath) -> Resolved:
    """A layer name (`rest`): a layer of `scope`, or `rec/name` of a rec unit in it (stacked
    over its loop)."""
    if rest in scope.layers:
        return Ref("layer", scope.layers[rest], prev=prev, text=text), None
    unit_layer = _unit_layer(rest, scope)
    if unit_layer is not None:
        if prev:
            return _error(
                path,
                f"`{text}`: `prev:` of a layer of a rec unit read from outside its loop "
                f"is not supported",
                "graph.bad-reference",
            )
        return Ref("layer", unit_layer, text=text, stacked=True), None
    return _unknown_layer(text, rest, prev, scope, path)


def _unknown_layer(text: str, rest: str, prev: bool, scope: Scope, path: ConfigPath) -> Resolved:
    """The error for a layer name that names no layer, with the closest name as a hint."""
    candidates = list(scope.layers)
    nested = scope.in_rec or scope.subnet_layer is not None  # `base:` reads the parent
    if nested and not prev:
        candidates += [f"base:{n}" for n in scope.outer.layers]
    hint = did_you_mean(rest, candidates)
    if hint is None and nested and not prev:
        # `enc` written for `base:enc`: compare with the plain names of the enclosing network
        match = did_you_mean(rest, scope.outer.layers)
        if match is not None:
            hint = match.replace("`", "`base:", 1)
    where = (
        f" in the subnetwork of `{scope.subnet_layer.name}`"
        if scope.subnet_layer is not None
        else f" in the unit of `{scope.loop_layer.name}`"
        if scope.in_rec
        else ""
    )
    return _error(path, f"unknown layer `{rest}` in `{text}`{where}", "graph.unknown-layer", hint)


def _unit_layer(rest: str, scope: Scope) -> Layer | None:
    """`rec/name` seen in `scope`: the layer `name` of the unit of rec layer `rec` (a layer of
    `scope`), else None."""
    parts = rest.split("/")
    for i in range(1, len(parts)):
        head, tail = "/".join(parts[:i]), "/".join(parts[i:])
        rec = scope.layers.get(head)
        if rec is not None and rec.unit is not None and tail in rec.unit.layers:
            return rec.unit.layers[tail]
    return None


def _resolve_subnet_data(
    text: str, rest: str, scope: Scope, network: Network, path: ConfigPath
) -> Resolved:
    """`data` / `data:KEY` inside the sub-network of a `subnetwork` layer, as RETURNN defines
    them: `data` (= `data:data`) is its input (`from`, concatenated: the layer `sub/data:data`);
    with `concat_sources: false` `data:NAME` / `data:i` is the input `NAME` / the i-th input
    and `data` the first; any other `data:KEY` is `data:KEY` of the enclosing network."""
    sub = scope.subnet_layer
    assert sub is not None, "asked only inside a subnetwork"
    key = "data" if rest == "data" else rest[len("data:") :]
    if sub.opts.get("concat_sources", True) is not False:
        if key == "data":
            if "data:data" in scope.layers:
                return Ref("layer", scope.layers["data:data"], text=text), None
            return None, Diagnostic(
                ERROR,
                f"`{text}` inside subnetwork `{sub.name}`: it has no input (`from: []`)",
                "graph.unknown-data",
                path,
                hint="give the subnetwork a `from`, or read `base:NAME`",
            )
    else:
        inputs = subnet_inputs(sub)
        for i, (sub_path, name) in enumerate(inputs):
            if key in (name, str(i)) or (key == "data" and i == 0):
                ref, diag = resolve(name, scope.outer, network, sub.path + sub_path)
                return (replace(ref, text=text) if ref is not None else None), diag
        if key == "data":
            return None, Diagnostic(
                ERROR,
                f"`{text}` inside subnetwork `{sub.name}`: it has no input",
                "graph.unknown-data",
                path,
            )
    return resolve(rest, scope.outer, network, path)
