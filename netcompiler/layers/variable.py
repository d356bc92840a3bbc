"""`variable`: a variable of the network as a layer output (RETURNN's `VariableLayer`).

`shape` is the variable's shape without batch: `[]` a scalar, `[5]` -> `[F=5]`, `[3, 5]` ->
`[S=3, F=5]` (the last axis is the feature axis, the others static axes, as in RETURNN).
`add_time_axis: true` puts a time axis of size 1 in front (a static axis here, as RETURNN's
`dummy-time` axis has the static size 1), `add_batch_axis: true` a batch axis in front of all
(the variable repeated per sequence; RETURNN's default is false since 2021, before it was
true). `dtype` (float32, int32, bool) is that of the variable; `init` is an initialiser as
everywhere (netcompiler.frontend.initializers), RETURNN's default 0. The variable is
`<layer>/<layer name>` (RETURNN names it after the layer, inside the layer's scope, so
`sub/var` has `sub/var/var`; `param_name` renames it) and is trained unless `trainable: false`
(a variable of an int or bool dtype never is). The layer reads no input.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH_DIM, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import GuessIsInfer, LayerRule, ParamSpec
from netcompiler.layers._util import check_n_out

FLOAT_DTYPES = ("float32",)
#: initialisers that fit a variable of an int or bool dtype (no random ones)
_EXACT_INITS = ("zeros", "ones", "constant")


def param_name(ctx) -> str:
    """The variable's name inside the layer's scope: `param_name`, else the layer's own name
    (the last part of `sub/name`), as RETURNN names it."""
    return ctx.opt("param_name") or ctx.name.rsplit("/", 1)[-1]


class VariableRule(GuessIsInfer, LayerRule):
    layer_class = "variable"
    default_from = None  # as in RETURNN: a variable has no input

    def infer(self, ctx) -> Shape:
        if ctx.sources:
            raise ctx.error(
                f"`variable` reads no input, got `from: {ctx.opts.get('from')!r}`",
                "from",
                "shape.variable",
                hint="remove `from` (or write `from: []`)",
            )
        sizes = ctx.opt("shape")
        if not isinstance(sizes, (list, tuple)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes
        ):
            raise ctx.error(
                f"`shape` must be a list of positive integers (without the batch "
                f"axis), got {sizes!r}",
                "shape",
                "shape.variable",
            )
        dtype = ctx.opt("dtype") or "float32"
        if dtype not in FLOAT_DTYPES:
            _check_exact_init(ctx, dtype)
        dims = []
        if ctx.opt("add_batch_axis"):
            dims.append(BATCH_DIM)
        if ctx.opt("add_time_axis"):
            dims.append(spatial_dim(1, "dummy-time", f"{ctx.name}:dummy-time"))
        for i, n in enumerate(sizes):
            if i < len(sizes) - 1:
                dims.append(spatial_dim(n, f"{ctx.name}:static:{i}", f"{ctx.name}:static:{i}"))
            else:
                dims.append(feature_dim(n))
        out = Shape(tuple(dims), None, dtype)
        check_n_out(ctx, out)
        return out

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        shape = tuple(int(n) for n in ctx.opt("shape"))
        dtype = out.dtype
        init = ctx.opt("init")
        return {
            param_name(ctx): ParamSpec(
                shape, 0 if init is None else init, trainable=dtype in FLOAT_DTYPES, dtype=dtype
            )
        }

    def call(self, ctx):
        import tensorflow as tf

        (var,) = ctx.params.values()
        y = tf.convert_to_tensor(var)  # a read of the variable: gradients reach it
        if ctx.opt("add_time_axis"):
            y = y[tf.newaxis]
        if ctx.opt("add_batch_axis"):
            try:
                batch = ctx.batch_size()
            except ValueError:
                raise ValueError(
                    f"{ctx.name}: `add_batch_axis: true` needs extern data with a "
                    f"batch axis to take the batch size from"
                ) from None
            y = tf.tile(
                y[tf.newaxis],
                tf.concat([tf.reshape(batch, [1]), tf.ones([len(y.shape)], tf.int32)], axis=0),
            )
        return y


def _check_exact_init(ctx, dtype: str) -> None:
    """A variable of an int or bool dtype starts from a constant (a number, zeros, ones)."""
    init = ctx.opt("init")
    if init is None or (isinstance(init, (int, float)) and not isinstance(init, bool)):
        return
    from netcompiler.frontend.initializers import InitializerError, parse_initializer

    try:
        name = parse_initializer(init).name
    except InitializerError:
        return  # reported by the initialiser check
    if name not in _EXACT_INITS:
        raise ctx.error(
            f"`init: {init}` draws random values, which a variable of `dtype: {dtype}` cannot hold",
            "init",
            "shape.variable",
            hint="use a number, `zeros` or `ones`, or `dtype: float32`",
        )
