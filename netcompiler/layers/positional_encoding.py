"""`positional_encoding`: sinusoidal encoding of the frame position (tensor2tensor layout:
first half sin, second half cos; see tests/numpy_reference.py `fixed_relative_encoding_matrix`).

Same axes as the input; features: the input's with `add_to_input` (the encoding is added),
else `n_out`. Position: the frame index over the time axis (inside a rec unit: the step),
plus `offset` (a layer giving one offset per sequence); `constant` > -1 uses that position for
every frame.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, Shape
from netcompiler.core.layer_rule import LayerRule


class PositionalEncodingRule(LayerRule):
    layer_class = "positional_encoding"
    layer_options = ("offset",)
    step_indexed = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        name = ", ".join(ctx.source_names)
        n_out = ctx.opt("n_out")
        if src.time is None and not ctx.in_rec and ctx.opt("constant") == -1:
            raise ctx.error(
                f"`positional_encoding` needs an input with a time axis (or to be "
                f"inside a rec unit), but `{name}` {src}",
                "from",
                "shape.no-time",
            )
        offset = ctx.ref("offset")
        if offset is not None and not (
            offset.has_batch and all(d.kind == BATCH or d.size == 1 for d in offset.dims)
        ):
            raise ctx.error(
                f"`offset` `{ctx.ref_name('offset')}` {offset}, but "
                f"`{ctx.name}` needs one offset per sequence: [B] or [B, F=1]",
                "offset",
                "shape.positional-offset",
            )
        if ctx.opt("add_to_input"):
            if src.sparse or src.feature is None:
                raise ctx.error(
                    f"`add_to_input` needs dense input with a feature axis, but `{name}` {src}",
                    "from",
                    "shape.no-feature",
                )
            if n_out is not None and n_out != src.feature_size:
                raise ctx.error(
                    f"`n_out: {n_out}` differs from the features of `{name}` {src}; "
                    f"with `add_to_input` the output has the input's features",
                    "n_out",
                    "shape.n-out",
                )
            return src
        if n_out is None:
            raise ctx.error(
                "`positional_encoding` without `add_to_input` needs `n_out`",
                None,
                "shape.missing-option",
            )
        return src.with_feature(n_out)

    def guess_step_shape(self, ctx):
        if ctx.opt("add_to_input"):
            return None
        return super().guess_step_shape(ctx)

    def call(self, ctx):
        import math

        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        n_out = ctx.out_shape.feature_size
        n_ts = n_out // 2
        log_inc = math.log(1.0e4) / max(n_ts - 1, 1)
        inv = tf.exp(tf.range(n_ts, dtype=tf.float32) * -log_inc)  # [n_ts]
        rank = len(shape.non_feature_dims)
        batch_axis = shape.batch_axis
        if ctx.opt("constant") > -1:
            pos = tf.reshape(tf.cast(ctx.opt("constant"), tf.float32), [1] * rank)
        elif shape.time is None:  # one decoder step: the position is the step number
            if ctx.step is None:
                raise ValueError(
                    f"{ctx.name}: a per-step positional_encoding runs inside a decoder loop"
                )
            pos = tf.reshape(tf.cast(ctx.step, tf.float32), [1] * rank)
        else:
            t_axis = shape.index(shape.time)
            new_shape = [1] * rank
            new_shape[t_axis] = -1
            pos = tf.reshape(tf.range(tf.shape(x)[t_axis], dtype=tf.float32), new_shape)
        offset = ctx.ref("offset")
        if offset is not None:
            new_shape = [1] * rank
            new_shape[batch_axis] = -1
            pos = pos + tf.reshape(tf.cast(offset, tf.float32), new_shape)
        scaled = pos[..., None] * inv
        enc = tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=-1)
        if n_out % 2:
            enc = tf.pad(enc, [[0, 0]] * rank + [[0, 1]])
        target = tf.concat([tf.shape(x)[:rank], [n_out]], axis=0)
        enc = tf.broadcast_to(enc, target)
        if ctx.opt("add_to_input"):
            return x + enc
        return enc
