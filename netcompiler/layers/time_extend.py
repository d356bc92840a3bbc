"""`postfix_in_time` / `prefix_in_time`: extend each sequence by `repeat` frames of a constant.

The time axis becomes a new time axis `T(<layer>)` with lengths `len + repeat`:
- postfix: frames `len[b] .. len[b] + repeat - 1` of sequence b are `postfix`;
- prefix: the first `repeat` frames are `prefix`, then the sequence.
Every element of an added frame (all features, all static axes) is the constant. Sparse data
(labels) needs an integer constant.
"""

from __future__ import annotations

import math

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._util import check_n_out, src_desc


class _TimeExtendRule(NoStepGuess, LayerRule):
    value_option = ""

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.time is None:
            raise ctx.error(
                f"`{ctx.layer.layer_class}` needs a time axis, but {src_desc(ctx)} has none",
                "from",
                "shape.no-time",
            )
        if not src.has_batch:
            raise ctx.error(
                f"`{ctx.layer.layer_class}` needs a batch axis, got {src_desc(ctx)}",
                "from",
                "shape.no-batch",
            )
        value = ctx.opt(self.value_option)
        if src.sparse and not (math.isfinite(value) and float(value) == int(value)):
            raise ctx.error(
                f"`{self.value_option}: {value}` must be an integer label for sparse "
                f"{src_desc(ctx)}",
                self.value_option,
                "shape.sparse-value",
            )
        if src.sparse and not 0 <= int(value) < src.sparse_dim:
            ctx.warn(
                f"`{self.value_option}: {value}` is not one of the {src.sparse_dim} classes "
                f"of {src_desc(ctx)}",
                self.value_option,
                "shape.sparse-value",
            )
        new = ctx.new_time_dim()
        dims = tuple(new if d is src.time else d for d in src.dims)
        out = Shape(dims, src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        time = shape.time
        axis = shape.index(time)
        repeat = int(ctx.opt("repeat"))
        value = tf.cast(ctx.opt(self.value_option), x.dtype)
        lengths = ctx.lengths(time)
        n = tf.shape(x)[axis]
        new_len = lengths + repeat
        t_out = n + repeat
        t = tf.range(t_out)
        if self.value_option == "postfix":
            src_pos = t[None, :] + tf.zeros_like(lengths)[:, None]  # [B, T']
            is_value = (t[None, :] >= lengths[:, None]) & (t[None, :] < new_len[:, None])
            from_src = t[None, :] < lengths[:, None]
        else:
            src_pos = t[None, :] - repeat + tf.zeros_like(lengths)[:, None]
            is_value = t[None, :] < repeat
            from_src = (t[None, :] >= repeat) & (t[None, :] < new_len[:, None])
        src_pos = tf.clip_by_value(src_pos, 0, tf.maximum(n - 1, 0))
        # gather along time per sequence (batch axis first)
        perm = [0, axis] + [i for i in range(len(shape.dims)) if i not in (0, axis)]
        xt = tf.transpose(x, perm) if perm != list(range(len(perm))) else x
        xt = tf.concat([xt, tf.zeros_like(xt[:, :1])], axis=1)
        y = tf.gather(xt, src_pos, axis=1, batch_dims=1)
        extra = tf.ones([len(shape.dims) - 2], tf.int32)

        def expand(m):
            return tf.reshape(m, tf.concat([tf.shape(m), extra], 0))

        y = tf.where(expand(from_src), y, tf.zeros_like(y))
        y = tf.where(expand(is_value), tf.fill(tf.shape(y), value), y)
        inverse = [perm.index(i) for i in range(len(perm))]
        if inverse != list(range(len(inverse))):
            y = tf.transpose(y, inverse)
        ctx.set_lengths(ctx.out_shape.dims[axis], new_len)
        return y


class PostfixInTimeRule(_TimeExtendRule):
    layer_class = "postfix_in_time"
    value_option = "postfix"


class PrefixInTimeRule(_TimeExtendRule):
    layer_class = "prefix_in_time"
    value_option = "prefix"
