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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
import tensorflow as tf

from netcompiler.backend.compute import check_precision, precision_scope
from netcompiler.backend.graph_rewrites import CpuTunedFunction
from netcompiler.backend.runtime import CallContext
from netcompiler.core.diagnostics import ConfigError
from netcompiler.core.dims import Dim, Shape
from netcompiler.frontend.network import Layer
from netcompiler.frontend.shapes import InferredNetwork
from netcompiler.frontend.validate import ValidationResult, validate
from netcompiler.layers import ParamSpec, get_rule


def _seed_for(base_seed: int, name: str) -> int:
    """A per-variable seed, stable across runs and independent of creation order."""
    digest = hashlib.sha256(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def initial_value(spec: ParamSpec, name: str, base_seed: int, dtype=tf.float32):
    """The initial value of a variable from its `ParamSpec.init` (a number, a name, a call
    such as `variance_scaling_initializer(scale=0.78)` or a dict; see netcompiler.frontend.initializers)."""
    from netcompiler.backend.initializers import make_initial_value

    shape = tuple(int(s) for s in spec.shape)
    return make_initial_value(spec.init, shape, _seed_for(base_seed, name), dtype)


def _param_device(device: str | None) -> str | None:
    """`param_device` (`CPU`, `gpu`, `GPU:1`, `/device:CPU:0`) as a TF device name, with soft
    placement: a device type this machine lacks (no GPU) falls back to the CPU (as TF's soft
    placement does for ops). None: TF's default placement."""
    if not device:
        return None
    text = device[len("/device:") :] if device.startswith("/device:") else device
    kind, _, index = text.partition(":")
    kind = kind.upper()
    available = tf.config.list_logical_devices(kind)
    if not available:
        return "/device:CPU:0"
    if index in ("", "*"):
        return available[0].name
    names = {d.name.rsplit(":", 1)[-1]: d.name for d in available}
    return names.get(index, available[0].name)


class CompiledNetwork(tf.Module):
    """A compiled network: variables by `<layer>/<param>` name and a traced forward pass."""

    def __init__(
        self, result: ValidationResult, seed: int | None = None, precision: str | None = None
    ):
        super().__init__(name="netcompiler_network")
        result.raise_for_errors()
        self.result = result
        self.inferred: InferredNetwork = result.inferred
        self.network = self.inferred.network
        self.graph = self.inferred.graph
        data = result.config.data
        train = data.get("train") if isinstance(data.get("train"), dict) else {}
        self.seed = int(seed if seed is not None else train.get("random_seed", 42))
        #: `float32`, `mixed_bfloat16` or `mixed_float16` (netcompiler.backend.compute): the
        #: dtype matmuls, einsums and convolutions run in; variables are float32 in every one
        self.precision = check_precision(precision or train.get("precision") or "float32")
        #: the layer names in dependency order (a layer after every layer it reads, `prev:` aside)
        self.order: list[str] = [n for n in self.graph.order()]
        # rec layers with a unit dict run their unit in a loop (netcompiler.backend.loop.runner); the unit's
        # layers are skipped by the top-level walk of `forward`
        # variables, created once, named <layer>/<param>
        self.variables_by_name: dict[str, tf.Variable] = {}
        self.layer_params: dict[str, dict[str, tf.Variable]] = {}
        owners = self.graph.param_owner  # reuse_params: layer -> owner of its variables
        for name in self.order:
            if name in owners:
                continue
            layer = self.network.layers[name]
            trainable = bool(layer.opts.get("trainable", True))
            params = {}
            with tf.device(_param_device(layer.opts.get("param_device"))):
                self._create_params(name, trainable, params)
            self.layer_params[name] = params
        for name in self.order:
            if name in owners:  # the same variables (checked to fit by shape inference)
                self.layer_params[name] = self.layer_params[owners[name]]
        self._functions: dict[tuple, Any] = {}
        self._search_functions: dict[tuple, Any] = {}

    def _create_params(self, name: str, trainable: bool, params: dict) -> None:
        """Variables of one layer, `<layer>/<param>`, into `params`."""
        for pname, spec in self.inferred.params.get(name, {}).items():
            full = f"{name}/{pname}"
            if spec.dynamic:  # state kept across calls, its shape changes
                var = tf.Variable(
                    tf.zeros(spec.shape, spec.dtype),
                    name=full,
                    trainable=False,
                    shape=tf.TensorShape(None),
                )
            else:
                var = tf.Variable(
                    initial_value(spec, full, self.seed, tf.as_dtype(spec.dtype)),
                    name=full,
                    trainable=trainable and spec.trainable,
                )
            params[pname] = var
            self.variables_by_name[full] = var

    # -- public API -------------------------------------------------------------------------------
    @property
    def output_name(self) -> str:
        """`output`, else (as RETURNN) the first layer with a loss or `is_output_layer`."""
        if "output" in self.network.top.layers:
            return "output"
        from netcompiler.frontend.graph import output_layers

        return output_layers(self.network)[0].name

    @property
    def extern_shapes(self) -> dict[str, Shape]:
        """The extern data a caller feeds (without keys registered by layers)."""
        return {k: v for k, v in self.inferred.extern.items() if k not in self.network.registered}

    def shape(self, name: str) -> Shape:
        return self.inferred.shapes[name]

    def variable(self, name: str) -> tf.Variable:
        """A variable by its `<layer>/<param>` name (`<rec>/<sub>/<param>` inside a unit)."""
        try:
            return self.variables_by_name[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, self.variables_by_name, n=3)
            raise KeyError(
                f"no variable `{name}`" + (f"; did you mean {close}?" if close else "")
            ) from None

    def load_returnn_checkpoint(self, prefix):
        """Load a checkpoint saved by RETURNN (`models/model.080`): names and layouts mapped as
        `netcompiler.returnn.checkpoint` describes, all variables or none (a
        `ReturnnCheckpointError` lists what is missing, extra or misshapen). Returns a
        `LoadReport` (`.summary()`, `.global_step`)."""
        from netcompiler.returnn.checkpoint import load_returnn_checkpoint

        return load_returnn_checkpoint(self, prefix)

    def reset_state(self) -> None:
        """Forget the state layers keep across calls (`initial_state: keep_over_epoch`)."""
        for name, specs in self.inferred.params.items():
            for pname, spec in specs.items():
                if spec.dynamic:
                    self.variables_by_name[f"{name}/{pname}"].assign(
                        tf.zeros(spec.shape, spec.dtype)
                    )

    def __call__(
        self,
        inputs: Mapping[str, Any],
        lengths: Mapping[str, Any] | None = None,
        training: bool = False,
        fetch: Iterable[str] | str | None = None,
    ) -> dict[str, tuple[tf.Tensor, tf.Tensor | None]]:
        fetch = self.normalise_fetch(fetch)
        keys = tuple(sorted(inputs))
        fn = self.get_function(keys, fetch, bool(training))
        return fn(*self.prepare_inputs(inputs, lengths))

    def search(
        self,
        inputs: Mapping[str, Any],
        lengths: Mapping[str, Any] | None = None,
        beam_size: int | None = None,
        n_best: int = 1,
    ) -> list[list[dict]]:
        """Beam search over the rec unit with a `choice` (the target inputs are ignored).
        Per sequence the `n_best` hypotheses, best first: dicts with `labels` (int array of
        `length` labels), `length`, `score` (ranking score), `log_prob`. See netcompiler.backend.loop.decode."""
        from netcompiler.backend.loop import decode

        return decode.search(self, inputs, lengths, beam_size=beam_size, n_best=n_best)

    def prepare_inputs(self, inputs: Mapping[str, Any], lengths: Mapping[str, Any] | None):
        """(tensors, lengths) for a call: the inputs as tensors of their extern dtype and the
        lengths of those with a time axis (the full time size where `lengths` has none);
        inputs that share a time axis must have equal lengths."""
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
        _check_shared_lengths(self.inferred.extern, lens)
        return tensors, lens

    def input_signature(self, keys) -> tuple[dict, dict]:
        """TensorSpecs of these extern inputs and of their lengths, every axis dynamic (so a
        function traced with them serves any batch size and length)."""
        ext = self.inferred.extern
        return (
            {
                k: tf.TensorSpec([None] * len(ext[k].dims), tf.as_dtype(ext[k].dtype), name=k)
                for k in keys
            },
            {
                k: tf.TensorSpec([None], tf.int32, name=f"{k}_lengths")
                for k in keys
                if ext[k].time is not None
            },
        )

    def get_function(self, keys: tuple[str, ...], fetch: tuple[str, ...], training: bool):
        """The traced forward function for these input keys, fetched layers and mode."""
        cache_key = (keys, fetch, training)
        fn = self._functions.get(cache_key)
        if fn is None:
            signature = list(self.input_signature(keys))

            def forward(inputs, lengths, _fetch=fetch, _training=training):
                return self.forward(inputs, lengths, training=_training, fetch=_fetch)

            fn = CpuTunedFunction(tf.function(forward, input_signature=signature, autograph=False))
            self._functions[cache_key] = fn
        return fn

    def search_function(self, key: tuple, make: Callable[[], Any]):
        """The traced beam-search function for `key` (input keys, beam size, n-best): made by
        `make()` on first use, then kept with the network for later calls, as `get_function`
        keeps the forward functions (used by `netcompiler.backend.loop.decode.search`)."""
        fn = self._search_functions.get(key)
        if fn is None:
            fn = self._search_functions[key] = make()
        return fn

    # -- the forward pass (eager or traced) ---------------------------------------------------
    def normalise_fetch(self, fetch) -> tuple[str, ...]:
        """`fetch` (None: the output layer; a layer name; names) as a tuple of layer names;
        KeyError (with a close match) for a name that is not a layer."""
        if fetch is None:
            fetch = [self.output_name]
        elif isinstance(fetch, str):
            fetch = [fetch]
        fetch = tuple(fetch)
        for name in fetch:
            if name not in self.inferred.shapes:
                import difflib

                close = difflib.get_close_matches(name, list(self.inferred.shapes), n=1)
                raise KeyError(
                    f"cannot fetch `{name}`: no such layer"
                    + (f"; did you mean `{close[0]}`?" if close else "")
                )
        return fetch

    def needed_layers(self, fetch: Iterable[str]) -> set[str]:
        sg = self.graph.static_graph()
        needed = set()
        for name in fetch:
            needed.add(name)
            needed.update(nx.ancestors(sg, name))
        return needed

    @tf.autograph.experimental.do_not_convert
    def forward(
        self,
        inputs: Mapping[str, Any],
        lengths: Mapping[str, Any],
        training: bool,
        fetch: Iterable[str],
        search: dict | None = None,
        step_seed=None,
    ) -> dict[str, tuple[Any, Any]]:
        """The forward pass, eager or inside the caller's `tf.function` (no AutoGraph needed:
        loops are explicit `tf.while_loop`s). `step_seed` (an int scalar tensor that changes
        every training step, e.g. the optimizer's iteration count) makes dropout
        reproducible. Products run in the network's `precision`."""
        with precision_scope(self.precision):
            return self._forward_pass(inputs, lengths, training, fetch, search, step_seed)

    def _forward_pass(self, inputs, lengths, training: bool, fetch, search, step_seed):
        """`forward` inside the network's precision scope."""
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
        # the final state of each cell run over time in this pass ((c, h) / (h,) by layer
        # name; filled by the cell builders, read by `get_last_hidden_state`); also what each
        # `time_chunking` did in this pass (under `("time_chunking", its chunk batch Dim)`,
        # read by `time_unchunking`)
        final_states: dict[str, tuple] = {}
        # fetched sub-layers of rec units (`rec/sub`) come from their rec layer's loop;
        # `search`: None (a decoder searches when its choice's target is not an input) or
        # options forcing beam search (netcompiler.backend.loop.runner.run_rec)
        unit_fetch: dict[str, set[str]] = {}
        for name in fetch:
            layer = self.network.layers[name]
            if layer.scope.in_rec:
                rec = layer.scope.rec_layer
                unit_fetch.setdefault(rec.name, set()).add(layer.local_name)
                needed |= self.needed_layers([rec.name])
        # `rec/name` read from outside the loop: the rec layer's run stacks it too
        for name in needed:
            for _, ref in self.graph.refs.get(name, []):
                if ref.stacked:
                    rec = ref.target.scope.rec_layer
                    unit_fetch.setdefault(rec.name, set()).add(ref.target.local_name)
        registered = self.network.registered
        for node in needed:
            if node.startswith("data:") and node not in values and node[5:] not in registered:
                raise ValueError(
                    f"input `{node[5:]}` is needed for {list(fetch)} but was not given"
                )
        for name in self.order:
            if name not in needed:
                continue
            layer = self.network.layers[name]
            if layer.scope.in_rec:
                continue  # run by its rec layer's loop
            if layer.unit is not None:
                from netcompiler.backend.loop import runner as loop

                values[name] = loop.run_rec(
                    self,
                    layer,
                    values,
                    dim_lengths,
                    training,
                    unit_fetch.get(name, ()),
                    search=search,
                    step_seed=step_seed,
                )
            else:
                values[name] = self._call_layer(
                    layer, values, dim_lengths, training, step_seed, final_states
                )
            key = layer.opts.get("register_as_extern_data")
            if registered.get(key) is layer:  # `data:KEY` reads this layer
                values[f"data:{key}"] = values[name]
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
        from netcompiler.frontend.shapes import read_shape

        return read_shape(self.inferred, ref)

    def _call_layer(
        self,
        layer: Layer,
        values: dict,
        dim_lengths: dict,
        training: bool,
        step_seed=None,
        final_states: dict | None = None,
    ):
        inputs = [
            (sub, values[ref.node], self._input_shape(ref))
            for sub, ref in self.graph.refs.get(layer.name, [])
        ]
        ctx, rule = self.make_context(
            layer,
            inputs,
            self.inferred.shapes[layer.name],
            dim_lengths,
            training,
            step_seed=step_seed,
            final_states=final_states,
        )
        with tf.name_scope(layer.name.replace("/", "_").replace(":", "_")):
            y = rule.call(ctx)
            if layer.opts.get("batch_norm"):  # RETURNN: on the output, after the activation
                from netcompiler.layers._common_opts import apply_batch_norm, batch_norm_opts

                y = apply_batch_norm(
                    ctx, y, ctx.out_shape, batch_norm_opts(layer.opts["batch_norm"])
                )
            return y

    def make_context(
        self,
        layer: Layer,
        inputs: list,
        out_shape: Shape,
        lengths: dict,
        training: bool,
        in_rec: bool = False,
        loop_dim: Dim | None = None,
        step_seed=None,
        step=None,
        final_states: dict | None = None,
    ):
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
                refs[tuple(sub)] = (value, shape)  # by sub-path: list / dict options
        from_refs = [ref for sub, ref in self.graph.refs.get(layer.name, []) if sub[0] == "from"]
        ctx = CallContext(
            layer.name,
            layer.layer_class,
            layer.opts,
            sources,
            shapes,
            out_shape,
            refs,
            self.layer_params[layer.name],
            training,
            lengths,
            in_rec=in_rec,
            loop_dim=loop_dim,
            seed=_seed_for(self.seed, layer.name),
            source_opts=[r.target.opts if r.kind == "layer" else {} for r in from_refs],
            step_seed=step_seed,
            source_names=[r.text for r in from_refs],
        )
        ctx.step = step  # inside a loop: the step (dropout masks drawn per step)
        # the forward pass's final cell states by layer name (None inside a decoder loop) and
        # the full layer name of each `from` input (None for extern data)
        ctx.final_states = final_states
        ctx.source_layers = [r.target.name if r.kind == "layer" else None for r in from_refs]
        dropout = layer.opts.get("dropout") or 0.0
        if training and dropout:
            # RETURNN's noise shape: one mask per feature unless `dropout_noise_shape` says
            from netcompiler.layers._common_opts import noise_broadcast

            noise = layer.opts.get("dropout_noise_shape")
            dropped = []
            for x, shape in zip(ctx.sources, ctx.source_shapes):
                if shape.sparse or not x.dtype.is_floating:
                    dropped.append(x)
                    continue
                bc, loop_bc = noise_broadcast(ctx, shape, noise, loop_dim if in_rec else None)
                dropped.append(ctx.dropout(x, dropout, broadcast=bc, loop_broadcast=loop_bc))
            ctx.sources = dropped
        if rule.concat_sources and len(ctx.sources) > 1:
            ctx.sources = [tf.concat(ctx.sources, axis=-1)]
            ctx.source_shapes = [_concat_shape(shapes)]
            ctx.source_names = ["+".join(ctx.source_names)]
        return ctx, rule


def _concat_shape(shapes: list[Shape]) -> Shape:
    from netcompiler.frontend.feature_concat import concat_features

    return concat_features(shapes, [str(s) for s in shapes])


def compile_network(
    config,
    overrides: list[str] | None = None,
    seed: int | None = None,
    precision: str | None = None,
) -> CompiledNetwork:
    """Validate and compile a config (path, YAML text, dict or Config); raises ConfigError.
    `precision` (None: the config's `train.precision`, float32 by default) see
    netcompiler.backend.compute."""
    if precision is not None:
        check_precision(
            precision
        )  # before validating: a typo here is the caller's, not the config's
    result = config if isinstance(config, ValidationResult) else validate(config, overrides)
    if result.errors:
        raise ConfigError(result.errors)
    return CompiledNetwork(result, seed=seed, precision=precision)


def _check_shared_lengths(extern, lens) -> None:
    """Extern keys that share a time axis (`same_time_as`, or unified by a frame-wise loss)
    must come with equal lengths; checked here where the lengths are concrete."""
    from netcompiler.frontend.extern_data import shared_time_keys

    for keys in shared_time_keys(extern):
        given = [k for k in keys if k in lens]
        for other in given[1:]:
            a, b = lens[given[0]], lens[other]
            if not (tf.executing_eagerly() and hasattr(a, "numpy") and hasattr(b, "numpy")):
                continue
            if a.shape != b.shape or not bool(tf.reduce_all(tf.equal(a, b))):
                raise ValueError(
                    f"extern data `{given[0]}` and `{other}` share a time axis, but their lengths "
                    f"differ: {a.numpy().tolist()} and {b.numpy().tolist()}"
                )
