"""`linear` and `softmax`: y = act(x @ W + b); sparse input = rows of W (embedding lookup)."""
from __future__ import annotations

from ..dims import Shape
from .base import LayerRule, ParamSpec
from ._util import input_features, n_out_or_target


class LinearRule(LayerRule):
    """[..., n_in] -> [..., n_out]; sparse [...] (n_in classes) -> [..., n_out]."""

    layer_class = "linear"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        return src.with_feature(n_out_or_target(ctx))

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        n_out = out.feature_size
        params = {"W": ParamSpec((n_in, n_out), ctx.opt("forward_weights_init"))}
        if ctx.opt("with_bias"):
            params["b"] = ParamSpec((n_out,), ctx.opt("bias_init"))
        return params


class SoftmaxRule(LinearRule):
    """As `linear`, with a softmax over the features; `n_out` defaults to the target's classes."""

    layer_class = "softmax"
