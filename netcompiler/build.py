"""The TensorFlow back end: a validated config -> `CompiledNetwork` (a `tf.Module`).

    net = netcompiler.compile("configs/transformer_encoder.yaml")
    out = net(inputs={"data": x}, lengths={"data": x_len}, fetch=["output", "att"])
    values, lengths = out["output"]

The forward pass runs as a `tf.function` whose signature has a dynamic batch and time size, so
changing the batch size or the lengths does not retrace. One function is traced per
(input keys, fetched layers, training flag).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import networkx as nx
import tensorflow as tf

from .diagnostics import ConfigError
from .dims import Dim, Shape
from .layers import ParamSpec, get_rule
from .network import Layer
from .runtime import CallContext
from .shapes import InferredNetwork
from .validate import ValidationResult, validate

_KERAS_INITIALIZERS = {
    "glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal",
    "he_normal": "HeNormal", "he_uniform": "HeUniform", "lecun_normal": "LecunNormal",
    "lecun_uniform": "LecunUniform", "zeros": "Zeros", "ones": "Ones", "constant": "Constant",
    "random_normal": "RandomNormal", "random_uniform": "RandomUniform",
    "truncated_normal": "TruncatedNormal", "orthogonal": "Orthogonal",
    "variance_scaling": "VarianceScaling",
}
_SEEDLESS = {"zeros", "ones", "constant"}


def _seed_for(base_seed: int, name: str) -> int:
    """A per-variable seed, stable across runs and independent of creation order."""
    digest = hashlib.sha256(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def initial_value(spec: ParamSpec, name: str, base_seed: int, dtype=tf.float32):
    """The initial value of a variable from its `ParamSpec.init` (name, number or dict)."""
    init = spec.init
    shape = tuple(int(s) for s in spec.shape)
    if init is None:
        init = "glorot_uniform"
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return tf.fill(shape, tf.cast(init, dtype))
    if isinstance(init, str):
        cls_name, kwargs = init, {}
    else:
        kwargs = {k: v for k, v in dict(init).items() if k != "class"}
        cls_name = init["class"]
    keras_cls = getattr(tf.keras.initializers, _KERAS_INITIALIZERS[cls_name])
    if cls_name not in _SEEDLESS:
        kwargs["seed"] = _seed_for(base_seed, name)
    if not shape or 0 in shape:
        # glorot & co. need a fan; scalars and empty tensors start at zero
        return tf.zeros(shape, dtype)
    return tf.convert_to_tensor(keras_cls(**kwargs)(shape, dtype=dtype))


class CompiledNetwork(tf.Module):
    """A compiled network: variables by `<layer>/<param>` name and a traced forward pass."""

    def __init__(self, result: ValidationResult, seed: int | None = None):
        super().__init__(name="netcompiler_network")
        result.raise_for_errors()
        self.result = result
        self.inferred: InferredNetwork = result.inferred
        self.network = self.inferred.network
        self.graph = self.inferred.graph
        data = result.config.data
        train = data.get("train") if isinstance(data.get("train"), dict) else {}
        self.seed = int(seed if seed is not None else train.get("random_seed", 42))
        self._order = [n for n in self.graph.order()]
        # rec layers with a unit dict run their unit in a loop (netcompiler.loop); the unit's
        # layers are skipped by the top-level walk of `forward`
        # variables, created once, named <layer>/<param>
        self.variables_by_name: dict[str, tf.Variable] = {}
        self.layer_params: dict[str, dict[str, tf.Variable]] = {}
        for name in self._order:
            layer = self.network.layers[name]
            trainable = bool(layer.opts.get("trainable", True))
            params = {}
            for pname, spec in self.inferred.params.get(name, {}).items():
                full = f"{name}/{pname}"
                if spec.dynamic:  # state kept across calls, its shape changes
                    var = tf.Variable(tf.zeros(spec.shape, spec.dtype), name=full,
                                      trainable=False, shape=tf.TensorShape(None))
                else:
                    var = tf.Variable(initial_value(spec, full, self.seed, tf.as_dtype(spec.dtype)),
                                      name=full, trainable=trainable and spec.trainable)
                params[pname] = var
                self.variables_by_name[full] = var
            self.layer_params[name] = params
        self._functions: dict[tuple, Any] = {}

    # -- public API -------------------------------------------------------------------------------
    @property
    def output_name(self) -> str:
        return "output"

    @property
    def extern_shapes(self) -> dict[str, Shape]:
        return self.inferred.extern

    def shape(self, name: str) -> Shape:
        return self.inferred.shapes[name]

    def variable(self, name: str) -> tf.Variable:
        """A variable by its `<layer>/<param>` name (`<rec>/<sub>/<param>` inside a unit)."""
        try:
            return self.variables_by_name[name]
        except KeyError:
            import difflib
            close = difflib.get_close_matches(name, self.variables_by_name, n=3)
            raise KeyError(f"no variable `{name}`" + (f"; did you mean {close}?" if close else "")
                           ) from None

    def reset_state(self) -> None:
        """Forget the state layers keep across calls (`initial_state: keep_over_epoch`)."""
        for name, specs in self.inferred.params.items():
            for pname, spec in specs.items():
                if spec.dynamic:
                    self.variables_by_name[f"{name}/{pname}"].assign(tf.zeros(spec.shape, spec.dtype))

    def __call__(self, inputs: Mapping[str, Any], lengths: Mapping[str, Any] | None = None,
                 training: bool = False, fetch: Iterable[str] | str | None = None
                 ) -> dict[str, tuple[tf.Tensor, tf.Tensor | None]]:
        fetch = self._normalise_fetch(fetch)
        keys = tuple(sorted(inputs))
        fn = self.get_function(keys, fetch, bool(training))
        return fn(*self._prepare_inputs(inputs, lengths))

    def search(self, inputs: Mapping[str, Any], lengths: Mapping[str, Any] | None = None,
               beam_size: int | None = None, n_best: int = 1) -> list[list[dict]]:
        """Beam search over the rec unit with a `choice` (the target inputs are ignored).
        Per sequence the `n_best` hypotheses, best first: dicts with `labels` (int array of
        `length` labels), `length`, `score` (ranking score), `log_prob`. See netcompiler.loop."""
        from . import loop
        return loop.search(self, inputs, lengths, beam_size=beam_size, n_best=n_best)

    def _prepare_inputs(self, inputs: Mapping[str, Any], lengths: Mapping[str, Any] | None):
        keys = tuple(sorted(inputs))
        lengths = dict(lengths or {})
        tensors = {}
        for key in keys:
            shape = self.inferred.extern[key]
            tensors[key] = tf.convert_to_tensor(inputs[key], dtype=shape.dtype)
        lens = {}
        for key in keys:
            if self.inferred.extern[key].time is not None:
                if key in lengths and lengths[key] is not None:
                    lens[key] = tf.convert_to_tensor(lengths[key], tf.int32)
                else:
                    t = tensors[key]
                    axis = self.inferred.extern[key].index(self.inferred.extern[key].time)
                    lens[key] = tf.fill([tf.shape(t)[0]], tf.shape(t)[axis])
        return tensors, lens

    def input_signature(self, keys) -> tuple[dict, dict]:
        """TensorSpecs of these extern inputs and of their lengths, every axis dynamic (so a
        function traced with them serves any batch size and length)."""
        ext = self.inferred.extern
        return ({k: tf.TensorSpec([None] * len(ext[k].dims), tf.as_dtype(ext[k].dtype), name=k)
                 for k in keys},
                {k: tf.TensorSpec([None], tf.int32, name=f"{k}_lengths")
                 for k in keys if ext[k].time is not None})

    def get_function(self, keys: tuple[str, ...], fetch: tuple[str, ...], training: bool):
        """The traced forward function for these input keys, fetched layers and mode."""
        cache_key = (keys, fetch, training)
        fn = self._functions.get(cache_key)
        if fn is None:
            signature = list(self.input_signature(keys))

            def forward(inputs, lengths, _fetch=fetch, _training=training):
                return self.forward(inputs, lengths, training=_training, fetch=_fetch)

            fn = tf.function(forward, input_signature=signature, autograph=False)
            self._functions[cache_key] = fn
        return fn

    # -- the forward pass (eager or traced) ---------------------------------------------------
    def _normalise_fetch(self, fetch) -> tuple[str, ...]:
        if fetch is None:
            fetch = [self.output_name]
        elif isinstance(fetch, str):
            fetch = [fetch]
        fetch = tuple(fetch)
        for name in fetch:
            if name not in self.inferred.shapes:
                import difflib
                close = difflib.get_close_matches(name, list(self.inferred.shapes), n=1)
                raise KeyError(f"cannot fetch `{name}`: no such layer"
                               + (f"; did you mean `{close[0]}`?" if close else ""))
        return fetch

    def needed_layers(self, fetch: Iterable[str]) -> set[str]:
        sg = self.graph.static_graph()
        needed = set()
        for name in fetch:
            needed.add(name)
            needed.update(nx.ancestors(sg, name))
        return needed

    @tf.autograph.experimental.do_not_convert
    def forward(self, inputs: Mapping[str, Any], lengths: Mapping[str, Any], training: bool,
                fetch: Iterable[str], search: dict | None = None, step_seed=None
                ) -> dict[str, tuple[Any, Any]]:
        """The forward pass, eager or inside the caller's `tf.function` (no AutoGraph needed:
        loops are explicit `tf.while_loop`s). `step_seed` (an int scalar tensor that changes
        every training step, e.g. the optimizer's iteration count) makes dropout
        reproducible."""
        fetch = tuple(fetch)
        values: dict[str, Any] = {}
        dim_lengths: dict[Dim, Any] = {}
        for key, t in inputs.items():
            values[f"data:{key}"] = t
            shape = self.inferred.extern[key]
            for d in shape.time_dims[:1]:
                if key in lengths and d not in dim_lengths:
                    dim_lengths[d] = tf.cast(lengths[key], tf.int32)
        needed = self.needed_layers(fetch)
        # fetched sub-layers of rec units (`rec/sub`) come from their rec layer's loop;
        # `search`: None (a decoder searches when its choice's target is not an input) or
        # options forcing beam search (netcompiler.loop.run_rec)
        unit_fetch: dict[str, set[str]] = {}
        for name in fetch:
            layer = self.network.layers[name]
            if layer.scope.in_rec:
                rec = layer.scope.rec_layer
                unit_fetch.setdefault(rec.name, set()).add(layer.local_name)
                needed |= self.needed_layers([rec.name])
        for node in needed:
            if node.startswith("data:") and node not in values:
                raise ValueError(f"input `{node[5:]}` is needed for {list(fetch)} but was not given")
        for name in self._order:
            if name not in needed:
                continue
            layer = self.network.layers[name]
            if layer.scope.in_rec:
                continue  # run by its rec layer's loop
            if layer.unit is not None:
                from . import loop
                values[name] = loop.run_rec(self, layer, values, dim_lengths, training,
                                            unit_fetch.get(name, ()), search=search,
                                            step_seed=step_seed)
            else:
                values[name] = self._call_layer(layer, values, dim_lengths, training, step_seed)
        out = {}
        for name in fetch:
            layer = self.network.layers[name]
            if layer.scope.in_rec:  # stacked over the loop, with the loop lengths
                t = self.inferred.loop_dims[layer.scope.rec_layer.name]
            else:
                t = self.inferred.shapes[name].time
            out[name] = (values[name], dim_lengths.get(t) if t is not None else None)
        return out

    def _input_shape(self, ref) -> Shape:
        if ref.kind == "extern":
            return self.inferred.extern[ref.target]
        return self.inferred.shapes[ref.target.name]

    def _call_layer(self, layer: Layer, values: dict, dim_lengths: dict, training: bool,
                    step_seed=None):
        inputs = [(sub, values[ref.node], self._input_shape(ref))
                  for sub, ref in self.graph.refs.get(layer.name, [])]
        ctx, rule = self.make_context(layer, inputs, self.inferred.shapes[layer.name],
                                      dim_lengths, training, step_seed=step_seed)
        with tf.name_scope(layer.name.replace("/", "_")):
            return rule.call(ctx)

    def make_context(self, layer: Layer, inputs: list, out_shape: Shape, lengths: dict,
                     training: bool, in_rec: bool = False, loop_dim: Dim | None = None,
                     step_seed=None):
        """The CallContext of one layer call from its inputs [(option sub-path, value, shape)]:
        the `dropout` option applied to the inputs while training, a `from` list concatenated
        on the feature axis (unless the rule takes its inputs apart). Returns (ctx, rule)."""
        rule = get_rule(layer.layer_class)
        sources, shapes, refs = [], [], {}
        for sub, value, shape in inputs:
            if sub[0] == "from":
                sources.append(value)
                shapes.append(shape)
            else:
                refs[sub[0]] = (value, shape)
        from_refs = [ref for sub, ref in self.graph.refs.get(layer.name, []) if sub[0] == "from"]
        ctx = CallContext(layer.name, layer.layer_class, layer.opts, sources, shapes, out_shape,
                          refs, self.layer_params[layer.name], training, lengths, in_rec=in_rec,
                          loop_dim=loop_dim, seed=_seed_for(self.seed, layer.name),
                          source_opts=[r.target.opts if r.kind == "layer" else {}
                                       for r in from_refs],
                          step_seed=step_seed, source_names=[r.text for r in from_refs])
        dropout = layer.opts.get("dropout") or 0.0
        if training and dropout:
            ctx.sources = [ctx.dropout(x, dropout) for x in ctx.sources]
        if rule.concat_sources and len(ctx.sources) > 1:
            ctx.sources = [tf.concat(ctx.sources, axis=-1)]
            ctx.source_shapes = [_concat_shape(shapes)]
            ctx.source_names = ["+".join(ctx.source_names)]
        return ctx, rule


def _concat_shape(shapes: list[Shape]) -> Shape:
    from .shapes import concat_features
    return concat_features(shapes, [str(s) for s in shapes])


def compile_network(config, overrides: list[str] | None = None, seed: int | None = None
                    ) -> CompiledNetwork:
    """Validate and compile a config (path, YAML text, dict or Config); raises ConfigError."""
    result = config if isinstance(config, ValidationResult) else validate(config, overrides)
    if result.errors:
        raise ConfigError(result.errors)
    return CompiledNetwork(result, seed=seed)
