"""`positional_encoding`: sinusoidal encoding of the frame position (tensor2tensor layout:
first half sin, second half cos; see tests/numpy_reference.py `fixed_relative_encoding_matrix`).

Same axes as the input; features: the input's with `add_to_input` (the encoding is added),
else `n_out`. Position: the frame index over the time axis (inside a rec unit: the step),
plus `offset` (a layer giving one offset per sequence); `constant` > -1 uses that position for
every frame.
"""
from __future__ import annotations

from ..dims import BATCH, Shape
from .base import LayerRule


class PositionalEncodingRule(LayerRule):
    layer_class = "positional_encoding"
    layer_options = ("offset",)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        name = ", ".join(ctx.source_names)
        n_out = ctx.opt("n_out")
        if src.time is None and not ctx.in_rec and ctx.opt("constant") == -1:
            raise ctx.error(f"`positional_encoding` needs an input with a time axis (or to be "
                            f"inside a rec unit), but `{name}` {src}", "from",
                            "shape.no-time")
        offset = ctx.ref("offset")
        if offset is not None and not (offset.has_batch and all(
                d.kind == BATCH or d.size == 1 for d in offset.dims)):
            raise ctx.error(f"`offset` `{ctx.ref_name('offset')}` {offset}, but "
                            f"`{ctx.name}` needs one offset per sequence: [B] or [B, F=1]",
                            "offset", "shape.positional-offset")
        if ctx.opt("add_to_input"):
            if src.sparse or src.feature is None:
                raise ctx.error(f"`add_to_input` needs dense input with a feature axis, but "
                                f"`{name}` {src}", "from", "shape.no-feature")
            if n_out is not None and n_out != src.feature_size:
                raise ctx.error(f"`n_out: {n_out}` differs from the features of `{name}` {src}; "
                                f"with `add_to_input` the output has the input's features",
                                "n_out", "shape.n-out")
            return src
        if n_out is None:
            raise ctx.error("`positional_encoding` without `add_to_input` needs `n_out`", None,
                            "shape.missing-option")
        return src.with_feature(n_out)

    def guess_step_shape(self, ctx):
        if ctx.opt("add_to_input"):
            return None
        return super().guess_step_shape(ctx)
