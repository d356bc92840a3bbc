"""`time_chunking` (RETURNN's TimeChunkingLayer): every sequence cut into chunks that become
sequences of their own. `[B, T, F]` -> `[B', C, F]`.

As RETURNN's `chunk` op: with T the *padded* length of the chunked axis, every sequence gets
`n_chunks = max(T - chunk_size + chunk_step - 1, 0) // chunk_step + 1` chunks (the same number
for all sequences); chunk k of sequence b holds frames `k * chunk_step + c`, c < chunk_size, of
b, zeros past b's length. The chunks go on the batch axis sequence-major (chunk k of sequence b
is entry `b * n_chunks + k` of B'); the new time axis C (padded size `chunk_size`) has the
valid frames of each chunk as its lengths, `clip(len_b - k * chunk_step, 0, chunk_size)`
(0 for a chunk that starts past its sequence's end).

The batch of chunks is its own batch axis `B(<layer>:chunks)`: layers after this one run on it
(any layer that works on a batch), mixing it with the original batch is a validation error
(`shape.chunk-batch`), and `time_unchunking` (`chunking_layer: <layer>`) maps it back. At run
time the chunking layer records (padded T, B, n_chunks, chunk_step) for this forward pass
(`CallContext.final_states`, keyed by the chunk batch axis) for its `time_unchunking`.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, SPATIAL, TIME, Dim, Shape
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, src_desc

#: created_dims keys (with the chunking layer's name first): the chunk batch axis, and the
#: batch and the axis it chunks (read by `time_unchunking`)
CHUNK_BATCH, ORIG_BATCH, ORIG_AXIS = "#chunk_batch", "#unchunked_batch", "#unchunked_axis"


def pass_key(chunk_batch: Dim) -> tuple:
    """The key of a chunking's run-time facts in the forward pass's dict."""
    return ("time_chunking", chunk_batch)


def not_in_rec(ctx, cls: str) -> None:
    if ctx.in_rec:
        raise ctx.error(
            f"`{cls}` changes the batch axis and cannot run inside a rec unit",
            "class",
            "shape.chunking",
            hint="chunk outside the rec layer",
        )


class TimeChunkingRule(NoStepGuess, LayerRule):
    layer_class = "time_chunking"

    @staticmethod
    def plan(ctx, src: Shape) -> tuple[int, int, list[int]]:
        """(batch axis, chunked axis, the other axes in order)."""
        axis = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        dim = src.dims[axis]
        if dim.kind not in (TIME, SPATIAL):
            raise ctx.error(
                f"`time_chunking` chunks a time or static axis, but `axis: "
                f"{ctx.opt('axis')}` is {dim} of {src_desc(ctx)}",
                "axis",
                "shape.axis",
            )
        batch = [i for i, d in enumerate(src.dims) if d.kind == BATCH]
        if not batch:
            raise ctx.error(
                f"`time_chunking` needs a batch axis, got {src_desc(ctx)}", "from", "shape.chunking"
            )
        rest = [i for i in range(len(src.dims)) if i not in (axis, batch[0])]
        for i in rest:
            if src.dims[i].kind == TIME:
                raise ctx.error(
                    f"`time_chunking` of {src_desc(ctx)}: the other time axis {src.dims[i]} "
                    f"cannot be chunked along (its lengths are per sequence)",
                    "from",
                    "shape.chunking",
                )
        return batch[0], axis, rest

    def infer(self, ctx) -> Shape:
        not_in_rec(ctx, "time_chunking")
        src = ctx.source
        b, axis, rest = self.plan(ctx, src)
        created = ctx.inferred.created_dims  # the same axes in every inference pass
        key = (ctx.name, CHUNK_BATCH)
        if key not in created:
            created[key] = Dim(BATCH, None, f"{ctx.name}:chunks", f"{ctx.name}:chunked_batch")
        created[(ctx.name, ORIG_BATCH)] = src.dims[b]
        created[(ctx.name, ORIG_AXIS)] = src.dims[axis]
        chunk_time = ctx.new_time_dim(f"{ctx.name}:chunking")
        out = Shape(
            (created[key], chunk_time) + tuple(src.dims[i] for i in rest), src.sparse_dim, src.dtype
        )
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x, shape = ctx.source, ctx.source_shape
        b, axis, rest = self.plan(ctx, shape)
        perm = [b, axis] + rest
        if perm != list(range(len(perm))):
            x = tf.transpose(x, perm)
        size, step = int(ctx.opt("chunk_size")), int(ctx.opt("chunk_step"))
        n_batch, n_time = tf.shape(x)[0], tf.shape(x)[1]
        dim = shape.dims[axis]
        lens = ctx.lengths(dim) if dim.kind == TIME else tf.fill([n_batch], n_time)
        n_chunks = tf.maximum(n_time - size + step - 1, 0) // step + 1
        starts = tf.range(n_chunks) * step
        frames = starts[:, None] + tf.range(size)[None, :]  # [N, C], < T + size
        paddings = [[0, 0], [0, size]] + [[0, 0]] * len(rest)
        y = tf.gather(tf.pad(x, paddings), frames, axis=1)  # [B, N, C, ...]
        chunk_lens = tf.clip_by_value(lens[:, None] - starts[None, :], 0, size)  # [B, N]
        mask = tf.sequence_mask(chunk_lens, size)
        mask = tf.reshape(mask, tf.concat([tf.shape(mask), [1] * len(rest)], 0))
        y = tf.where(mask, y, tf.zeros_like(y))
        rest_sizes = [shape.dims[i].size for i in rest]
        y = tf.reshape(y, tf.concat([[n_batch * n_chunks, size], tf.shape(y)[3:]], 0))
        y.set_shape([None, size] + rest_sizes)
        ctx.set_lengths(ctx.out_shape.dims[1], tf.reshape(chunk_lens, [-1]))
        if ctx.final_states is not None:
            ctx.final_states[pass_key(ctx.out_shape.dims[0])] = (n_time, n_batch, n_chunks, step)
        return y
