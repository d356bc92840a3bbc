"""`constant`: a fixed value. A number gives a scalar `[]` (`[B]` with `with_batch_dim`); a
(nested) list gives its shape, static axes with the last one the feature axis, e.g.
`[[1, 2], [3, 4], [5, 6]]` -> `[S=3, F=2]`. `dtype` defaults to the value's type (int32 for
integers, bool for booleans, float32 otherwise). The layer reads no input (use `from: []`).
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH_DIM, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import GuessIsInfer, LayerRule
from netcompiler.layers._util import check_n_out


def value_shape(value, path: str = "value") -> tuple[list[int], list]:
    """(shape, flat leaves) of a rectangular nested list; ValueError otherwise."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{path}` is an empty list")
        shapes, leaves = [], []
        for i, v in enumerate(value):
            s, sub_leaves = value_shape(v, f"{path}[{i}]")
            shapes.append(s)
            leaves.extend(sub_leaves)
        if any(s != shapes[0] for s in shapes):
            bad = next(i for i, s in enumerate(shapes) if s != shapes[0])
            raise ValueError(
                f"`{path}` is not rectangular: `{path}[0]` has shape {shapes[0]}, "
                f"`{path}[{bad}]` has shape {shapes[bad]}"
            )
        return [len(value)] + shapes[0], leaves
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return [], [value]
    raise ValueError(f"`{path}` must be a number, a boolean or a list, got {value!r}")


def value_dtype(leaves: list) -> str:
    if all(isinstance(v, bool) for v in leaves):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in leaves):
        return "int32"
    return "float32"


class ConstantRule(GuessIsInfer, LayerRule):
    layer_class = "constant"
    default_from = None  # as in RETURNN: a constant has no input unless `from` says so

    def infer(self, ctx) -> Shape:
        value = ctx.opt("value")
        try:
            sizes, leaves = value_shape(value)
        except ValueError as exc:
            raise ctx.error(str(exc), "value", "shape.constant") from None
        natural = value_dtype(leaves)
        dtype = ctx.opt("dtype") or natural
        if dtype in ("int32", "int64") and natural == "float32":
            bad = [v for v in leaves if isinstance(v, float) and not v.is_integer()]
            if bad:
                raise ctx.error(
                    f"`value` {bad[0]} is not an integer, but `dtype` is {dtype}",
                    "dtype",
                    "shape.constant",
                )
        if dtype == "bool" and natural != "bool":
            raise ctx.error(
                f"`dtype: bool` needs boolean values, got {value!r}", "dtype", "shape.constant"
            )
        dims = [BATCH_DIM] if ctx.opt("with_batch_dim") else []
        if sizes:
            dims += [spatial_dim(n) for n in sizes[:-1]] + [feature_dim(sizes[-1])]
        out = Shape(tuple(dims), None, dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        out = ctx.out_shape
        value = tf.constant(ctx.opt("value"), dtype=tf.as_dtype(out.dtype))
        if ctx.opt("with_batch_dim"):
            batch = _batch_size(ctx)
            value = tf.broadcast_to(
                value[tf.newaxis], tf.concat([tf.reshape(batch, [1]), tf.shape(value)], axis=0)
            )
        return value


def _batch_size(ctx):
    """The run-time batch size (see `CallContext.batch_size`)."""
    try:
        return ctx.batch_size()
    except ValueError:
        raise ValueError(
            f"{ctx.name}: `with_batch_dim: true` needs an input or extern data "
            f"with a batch axis to take the batch size from"
        ) from None
