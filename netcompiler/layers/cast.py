"""`cast`: the input cast to `dtype` (RETURNN's CastLayer). The axes stay; sparse class indices
cast to a float type lose their sparsity (dense values, no feature axis), cast to an int type
they stay sparse."""

from __future__ import annotations

from dataclasses import replace

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers.combine import GuessFromInputs


class CastRule(GuessFromInputs, LayerRule):
    layer_class = "cast"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        dtype = ctx.opt("dtype")
        sparse_dim = src.sparse_dim if dtype == "int32" else None
        return replace(src, sparse_dim=sparse_dim, dtype=dtype)

    def call(self, ctx):
        import tensorflow as tf

        return tf.cast(ctx.source, tf.as_dtype(ctx.opt("dtype")))
