"""`time_unchunking` (RETURNN's TimeUnChunkingLayer): the inverse of `time_chunking`
(`chunking_layer`): `[B', C, F]` on that layer's batch of chunks -> `[B, T, F]` on the batch
and the axis it chunked (T keeps its identity and lengths, padded as the chunked input was).

As RETURNN's `unchunk` op: frame t of sequence b is the mean of frame `t - k * chunk_step` of
the chunks k of b that cover t with a valid frame (valid: within the chunk's lengths); a frame
no chunk covers validly (past b's length) is 0.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, TIME, Shape
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._util import check_n_out, src_desc
from netcompiler.layers.time_chunking import ORIG_AXIS, ORIG_BATCH, not_in_rec, pass_key


class TimeUnChunkingRule(NoStepGuess, LayerRule):
    layer_class = "time_unchunking"
    unchunks = True
    layer_options = ("chunking_layer",)

    @staticmethod
    def plan(ctx, src: Shape, chunked: Shape) -> tuple[int, int, list[int]]:
        """(batch axis, chunk axis, the other axes) of the input `src`; `chunked` is the
        output of the chunking layer."""
        chunk_batch, chunk_time = chunked.dims[0], chunked.dims[1]
        name = ctx.opts.get("chunking_layer")
        batch = [i for i, d in enumerate(src.dims) if d.kind == BATCH]
        if not batch or src.dims[batch[0]] is not chunk_batch:
            got = src.dims[batch[0]] if batch else "no batch axis"
            raise ctx.error(
                f"`time_unchunking` of {src_desc(ctx)}: the input is not on the "
                f"batch of chunks {chunk_batch} of `chunking_layer: {name}` "
                f"(it has {got})",
                "from",
                "shape.chunk-batch",
            )
        if not src.has(chunk_time):
            raise ctx.error(
                f"`time_unchunking` of {src_desc(ctx)}: the input lacks the chunk "
                f"axis {chunk_time} of `chunking_layer: {name}`",
                "from",
                "shape.chunking",
            )
        axis = next(i for i, d in enumerate(src.dims) if d is chunk_time)
        rest = [i for i in range(len(src.dims)) if i not in (batch[0], axis)]
        for i in rest:
            if src.dims[i].kind == TIME:
                raise ctx.error(
                    f"`time_unchunking` of {src_desc(ctx)}: another time axis "
                    f"{src.dims[i]} on the batch of chunks cannot be unchunked",
                    "from",
                    "shape.chunking",
                )
        return batch[0], axis, rest

    def infer(self, ctx) -> Shape:
        not_in_rec(ctx, "time_unchunking")
        chunked = ctx.require_ref("chunking_layer")
        ref = ctx.option_refs("chunking_layer")[0][0]
        if ref.kind != "layer" or ref.target.layer_class != "time_chunking":
            raise ctx.error(
                f"`chunking_layer: {ctx.ref_name('chunking_layer')}` must be a "
                f"`time_chunking` layer",
                "chunking_layer",
                "shape.chunking",
            )
        src = ctx.source
        if src.sparse or not src.dtype.startswith("float"):
            raise ctx.error(
                f"`time_unchunking` averages overlapping frames: it needs float "
                f"input, got {src_desc(ctx)}",
                "from",
                "shape.chunking",
            )
        _, _, rest = self.plan(ctx, src, chunked)
        created = ctx.inferred.created_dims
        name = ref.target.name
        out = Shape(
            (created[(name, ORIG_BATCH)], created[(name, ORIG_AXIS)])
            + tuple(src.dims[i] for i in rest),
            None,
            src.dtype,
        )
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x, shape = ctx.source, ctx.source_shape
        chunked = ctx.ref_shape("chunking_layer")
        b, axis, rest = self.plan(ctx, shape, chunked)
        perm = [b, axis] + rest
        if perm != list(range(len(perm))):
            x = tf.transpose(x, perm)
        facts = (ctx.final_states or {}).get(pass_key(chunked.dims[0]))
        if facts is None:
            raise ValueError(
                f"{ctx.name}: the chunking layer "
                f"`{ctx.opts.get('chunking_layer')}` did not run in this pass"
            )
        n_time, n_batch, n_chunks, step = facts
        size = tf.shape(x)[1]
        rank = len(perm)
        y = tf.reshape(x, tf.concat([[n_batch, n_chunks, size], tf.shape(x)[2:]], 0))
        chunk_lens = tf.reshape(ctx.lengths(chunked.dims[1]), [n_batch, n_chunks])
        mask = tf.sequence_mask(chunk_lens, size)  # [B, N, C]
        y = tf.where(
            tf.reshape(mask, tf.concat([tf.shape(mask), [1] * len(rest)], 0)), y, tf.zeros_like(y)
        )
        # [N, C, B, ...] -> one row per chunk frame, summed into its frame of the sequence
        y = tf.transpose(y, [1, 2, 0] + list(range(3, rank + 1)))
        y = tf.reshape(y, tf.concat([[n_chunks * size], tf.shape(y)[2:]], 0))
        frames = tf.reshape(tf.range(n_chunks)[:, None] * step + tf.range(size)[None, :], [-1])
        n_frames = (n_chunks - 1) * step + size
        total = tf.math.unsorted_segment_sum(y, frames, n_frames)[:n_time]  # [T, B, ...]
        count = tf.math.unsorted_segment_sum(
            tf.reshape(tf.cast(tf.transpose(mask, [1, 2, 0]), y.dtype), [-1, n_batch]),
            frames,
            n_frames,
        )[:n_time]  # [T, B]
        count = tf.reshape(tf.maximum(count, 1), tf.concat([tf.shape(count), [1] * len(rest)], 0))
        out = tf.transpose(total / count, [1, 0] + list(range(2, rank)))
        out.set_shape([None, None] + [shape.dims[i].size for i in rest])
        return out
