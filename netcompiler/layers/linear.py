"""`linear` and `softmax`: y = act(x @ W + b); sparse input = rows of W (embedding lookup)."""

from __future__ import annotations

from netcompiler.core.dims import BATCH, Shape
from netcompiler.core.layer_rule import LayerRule, ParamSpec, ShapeError
from netcompiler.layers._util import input_features, n_out_or_target


class LinearRule(LayerRule):
    """[..., n_in] -> [..., n_out]; sparse [...] (n_in classes) -> [..., n_out]."""

    layer_class = "linear"
    position_wise = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        return src.with_feature(n_out_or_target(ctx))

    def guess_step_shape(self, ctx) -> Shape | None:
        """`n_out`, else the target's classes (+1 blank with `loss: ctc`), as RETURNN's
        template construction takes it to break a `prev:` cycle."""
        try:
            return ctx.batch_shape(n_out_or_target(ctx))
        except ShapeError:
            return None

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        n_out = out.feature_size
        params = {"W": ParamSpec((n_in, n_out), ctx.opt("forward_weights_init"))}
        if ctx.opt("with_bias"):
            params["b"] = ParamSpec((n_out,), ctx.opt("bias_init"))
        return params

    def activation(self, ctx) -> str | None:
        return ctx.opt("activation")

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute
        from netcompiler.backend.activations import apply_activation

        x = ctx.source
        W = ctx.params["W"]
        if ctx.source_shape.sparse:
            y = tf.gather(W, x)  # embedding lookup: the same as a one-hot matmul
            if "b" in ctx.params:
                y = y + ctx.params["b"]
        else:
            y = compute.matmul_last_axis(x, W, bias=ctx.params.get("b"))
        if ctx.opt("grad_filter"):
            y = filter_grad(y, float(ctx.opt("grad_filter")), ctx.out_shape)
        activation = self.activation(ctx)
        return apply_activation(activation, y) if activation else y


def filter_grad(x, threshold: float, shape: Shape):
    """Identity in the forward pass; in the backward pass (RETURNN's `grad_filter`) the gradient
    of each batch entry whose largest squared value over every other axis is not below
    `threshold` is set to zero (kept where `max(g**2) < threshold`)."""
    import tensorflow as tf

    batch = next((i for i, d in enumerate(shape.dims) if d.kind == BATCH), None)
    axes = [i for i in range(len(shape.dims)) if i != batch]

    @tf.custom_gradient
    def identity(v):
        def grad(g):
            if not axes:
                return tf.where(g * g < threshold, g, tf.zeros_like(g))
            keep = tf.reduce_max(g * g, axis=axes, keepdims=True) < threshold
            return tf.where(keep, g, tf.zeros_like(g))

        return tf.identity(v), grad

    return identity(x)


class SoftmaxRule(LinearRule):
    """As `linear`, with a softmax over the features; `n_out` defaults to the target's classes."""

    layer_class = "softmax"

    def activation(self, ctx) -> str:
        return "softmax"
