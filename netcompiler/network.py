"""The network structure of a config: layers by full name, scopes (rec units), references.

Pure data, no TensorFlow. A layer's full name is `name` at the top level and `rec/name` inside
the unit of the `rec` layer `rec` (nested units: `outer/inner/name`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from .diagnostics import ERROR, Diagnostic, did_you_mean

# Options that may name layers (besides `from`). `target` names extern data.
LAYER_OPTIONS = ("from", "base", "base_ctx", "weights", "key_shift", "size_base", "reuse_params", "state_var_lengths", "window_start", "offset",
                 "initial_output", "initial_state", "condition", "true_from", "false_from")
# values of `initial_output` that are keywords, not layer references
INITIAL_OUTPUT_KEYWORDS = ("zeros", "ones", "var")
# values of `initial_state` of a cell (`rnn_cell`, `rec`) that are keywords, not references
INITIAL_STATE_KEYWORDS = ("zeros", "ones", "var", "keep_over_epoch", "keep_over_epoch_no_init",
                          "placeholder")


@dataclass
class Scope:
    """One network: the top-level `network`, or the `unit` of a `rec` layer."""

    prefix: str  # "" at top level, "dec/" inside rec layer "dec"
    path: tuple  # config path of the layer dict, e.g. ("network",) or ("network","dec","unit")
    layers: dict[str, "Layer"] = field(default_factory=dict)
    rec_layer: "Layer | None" = None
    parent: "Scope | None" = None

    @property
    def in_rec(self) -> bool:
        return self.rec_layer is not None


@dataclass
class Layer:
    name: str  # full name
    local_name: str
    opts: dict
    path: tuple  # config path of this layer's dict
    scope: Scope
    unit: Scope | None = None  # the sub-network of a rec layer with a unit dict

    @property
    def layer_class(self) -> str:
        return self.opts.get("class", "")


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

    @property
    def node(self) -> str:
        if self.kind == "layer":
            return self.target.name
        if self.kind == "extern":
            return f"data:{self.target}"
        if self.kind == "step":
            return f"{self.target.name}:i"
        return f"{self.target.name}:source"


@dataclass
class Network:
    top: Scope
    layers: dict[str, Layer]  # all layers by full name
    extern: dict  # extern_data config
    #: `register_as_extern_data: KEY`: extern data made by a layer, KEY -> that layer
    registered: dict[str, Layer] = field(default_factory=dict)

    def data_keys(self) -> set:
        """Every key `data:KEY` and `target` may name: extern data and registered layers."""
        return set(self.extern) | set(self.registered)

    def iter_scopes(self) -> Iterator[Scope]:
        stack = [self.top]
        while stack:
            s = stack.pop(0)
            yield s
            stack.extend(layer.unit for layer in s.layers.values() if layer.unit is not None)


def build_network(data: dict) -> Network:
    """Collect layers and scopes from config data (assumed schema-checked where it matters)."""
    extern = data.get("extern_data") if isinstance(data.get("extern_data"), dict) else {}
    net = data.get("network") if isinstance(data.get("network"), dict) else {}
    all_layers: dict[str, Layer] = {}
    top = Scope("", ("network",))

    def fill(scope: Scope, layer_dicts: dict):
        for local, opts in layer_dicts.items():
            if not isinstance(opts, dict):
                continue
            layer = Layer(scope.prefix + str(local), str(local), opts, scope.path + (local,), scope)
            scope.layers[str(local)] = layer
            all_layers[layer.name] = layer
            if opts.get("class") == "rec" and isinstance(opts.get("unit"), dict):
                layer.unit = Scope(layer.name + "/", layer.path + ("unit",), rec_layer=layer,
                                   parent=scope)
                fill(layer.unit, opts["unit"])

    fill(top, net)
    registered = {}
    for layer in all_layers.values():
        key = layer.opts.get("register_as_extern_data")
        if isinstance(key, str) and key not in extern and key not in registered:
            registered[key] = layer  # clashes are reported by the graph check
    return Network(top, all_layers, extern, registered)


def reference_values(opts: dict, option: str) -> list[tuple[tuple, str]]:
    """The reference strings of a layer option with their sub-paths: [((option, i), text)]."""
    value = opts.get(option)
    if option == "initial_output" and value in INITIAL_OUTPUT_KEYWORDS:
        return []
    if option == "initial_state":  # cells: one value, or a list / dict per state part
        if opts.get("class") not in ("rnn_cell", "rec"):
            return []
        items = (value.items() if isinstance(value, dict) else enumerate(value)
                 if isinstance(value, list) else [(None, value)])
        return [((option,) if k is None else (option, k), v) for k, v in items
                if isinstance(v, str) and v not in INITIAL_STATE_KEYWORDS]
    if option == "reuse_params" and isinstance(value, dict):
        # RETURNN's dict form: only {reuse_layer: NAME} (the other keys are refused by the
        # shape check)
        value = value.get("reuse_layer")
    if isinstance(value, str):
        return [((option,), value)]
    if isinstance(value, list):
        return [((option, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    return []


def layer_references(layer: Layer) -> list[tuple[tuple, str]]:
    """All reference strings of a layer: `from` (default `data`) and layer-valued options
    (and the `max_len_from('...')` of a `max_seq_len` expression, seen from the unit)."""
    refs = max_seq_len_references(layer)
    for option in LAYER_OPTIONS:
        if option == "from" and "from" not in layer.opts:
            default = _default_from(layer.layer_class)
            if default is not None:
                refs.append((("from",), default))
            continue
        refs.extend(reference_values(layer.opts, option))
    return refs


def max_seq_len_references(layer: Layer) -> list[tuple[tuple, str]]:
    """References in a rec layer's `max_seq_len` expression (none if it does not parse: that
    is reported by the graph check)."""
    from .seq_len_expr import SeqLenExprError, parse, references

    text = layer.opts.get("max_seq_len")
    if not isinstance(text, str):
        return []
    try:
        return [(("max_seq_len", i), ref) for i, ref in enumerate(references(parse(text)))]
    except SeqLenExprError:
        return []


def _default_from(layer_class: str) -> str | None:
    """`from` when absent: `data`, unless the class's rule sets `default_from = None`."""
    from .layers import get_rule  # lazy: the registry imports every layer module

    rule = get_rule(layer_class) if isinstance(layer_class, str) else None
    return getattr(rule, "default_from", "data") if rule is not None else "data"


def resolve(text: str, scope: Scope, network: Network, path: tuple
            ) -> tuple[Ref | None, Diagnostic | None]:
    """Resolve one reference string seen in `scope`; returns (ref, None) or (None, error)."""

    def err(message: str, rule: str, hint: str | None = None):
        return None, Diagnostic(ERROR, message, rule, path, hint=hint)

    prev = False
    rest = text
    if rest.startswith("prev:"):
        if not scope.in_rec:
            return err(f"`{text}`: `prev:` is only valid inside a rec unit", "graph.prev-outside-rec")
        prev = True
        rest = rest[len("prev:"):]
    if rest.startswith("base:"):
        if not scope.in_rec:
            return err(f"`{text}`: `base:` is only valid inside a rec unit", "graph.base-outside-rec")
        if prev:
            return err(f"`{text}`: `prev:base:` is not a valid reference", "graph.bad-reference")
        ref, diag = resolve(rest[len("base:"):], scope.parent, network, path)
        return (replace(ref, text=text) if ref is not None else None), diag
    if rest == "data" or rest.startswith("data:"):
        key = rest[len("data:"):] if rest.startswith("data:") else ("source" if scope.in_rec else "data")
        if prev:
            return err(f"`{text}`: `prev:` of data is not supported", "graph.bad-reference")
        if key == "source":
            if not scope.in_rec:
                return err(f"`{text}`: `data:source` is only valid inside a rec unit",
                           "graph.source-outside-rec")
            return Ref("source", scope.rec_layer, text=text), None
        if key not in network.data_keys():
            return err(f"unknown extern data `{key}` in `{text}`", "graph.unknown-data",
                       did_you_mean(key, network.data_keys()))
        return Ref("extern", key, frame=scope.in_rec, text=text), None
    if rest == ":i":  # RETURNN's step index of the loop (RecStepInfoLayer)
        if not scope.in_rec:
            return err(f"`{text}`: the step index `:i` is only valid inside a rec unit",
                       "graph.step-outside-rec")
        if prev:
            return err(f"`{text}`: `prev:` of the step index is not supported",
                       "graph.bad-reference", hint="use `:i` and subtract 1 in an `eval`")
        return Ref("step", scope.rec_layer, text=text), None
    if rest in scope.layers:
        return Ref("layer", scope.layers[rest], prev=prev, text=text), None
    candidates = list(scope.layers)
    if scope.in_rec and not prev:
        candidates += [f"base:{n}" for n in scope.parent.layers]
    hint = did_you_mean(rest, candidates)
    if hint is None and scope.in_rec and not prev:
        # `enc` written for `base:enc`: compare with the plain names of the enclosing network
        match = did_you_mean(rest, scope.parent.layers)
        if match is not None:
            hint = match.replace("`", "`base:", 1)
    where = f" in the unit of `{scope.rec_layer.name}`" if scope.in_rec else ""
    return err(f"unknown layer `{rest}` in `{text}`{where}", "graph.unknown-layer", hint)
