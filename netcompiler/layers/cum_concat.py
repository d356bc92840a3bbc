"""`cum_concat`: inside a rec unit, the current frame concatenated to all earlier frames of the
loop (RETURNN's CumConcatLayer), the building block of decoder self-attention written out of
layers (`dot`, `softmax_over_spatial` over the new axis, `dot` again).

Per step t the input [B, ...] (batch and static axes) becomes [B, T(new), ...]: frames 0..t of
the input on a new time axis whose length is t + 1 in every sequence. `out_spatial_dim` names
that axis (RETURNN's option takes a dim tag; here its name): cum_concat layers of one unit with
the same name share the axis (keys and values of an attention), and `stag:NAME` finds it in
other layers' axis options. Without it every cum_concat layer makes its own axis, named after
the layer.

It always runs step by step inside the loop (netcompiler.backend.loop.runner keeps it there with a buffer of
the loop's maximum number of steps as its state; the steps not reached yet are zeros and lie
beyond the axis' length t + 1, so masked layers such as `softmax_over_spatial` ignore them).
RETURNN moves it out of the loop as an identity with per-step lengths ([T]-shaped lengths);
netcompiler's lengths are one per sequence, so it is never moved out: the results are the same.
Outside a rec unit it is an error, as in RETURNN.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, Shape, time_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._util import src_desc


def new_axis(ctx):
    """The new axis: one per (rec layer, `out_spatial_dim`) or per layer, the same object in
    every shape-inference pass."""
    name = ctx.opts.get("out_spatial_dim")
    rec = ctx.layer.scope.rec_layer.name
    key = ("cum_concat", rec, name) if name else ("cum_concat", ctx.name)
    dims = ctx.inferred.created_dims
    if key not in dims:
        tag = f"{rec}/{name}" if name else ctx.name
        dims[key] = time_dim(tag, f"time:var:cum_concat:{tag}")
    return dims[key]


class CumConcatRule(NoStepGuess, LayerRule):
    layer_class = "cum_concat"
    stateful = True
    # the frames so far on a new axis whose length is the step + 1: no sequence form here
    loop_only = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if not ctx.in_rec:
            raise ctx.error(
                "`cum_concat` concatenates the frames of a rec loop: it must be in "
                "the `unit` of a `rec` layer",
                None,
                "shape.rec-only",
                hint="outside a loop the whole sequence is already there: use the "
                "layer it reads directly",
            )
        if not src.has_batch or any(d.kind not in (BATCH, SPATIAL, FEATURE) for d in src.dims):
            raise ctx.error(
                f"`cum_concat` needs a per-step input with a batch axis and static "
                f"axes only, got {src_desc(ctx)}",
                "from",
                "shape.cum-concat",
                hint="a per-step frame [B, F] (the loop's input frame, or a layer of the unit)",
            )
        readers = sorted(
            name
            for name, refs in ctx.inferred.graph.refs.items()
            for _, ref in refs
            if ref.kind == "layer" and ref.prev and ref.target is ctx.layer
        )
        if readers:
            raise ctx.error(
                f"`prev:{ctx.layer.local_name}` (read by `{readers[0]}`) is not "
                f"supported: the frames before step t are not kept apart from the "
                f"frames up to t",
                None,
                "shape.cum-concat",
                hint="read the cum_concat itself (frames 0..t), or make one of "
                "a `prev:` input (`from: prev:x`)",
            )
        dims = list(src.dims)
        at = next(i for i, d in enumerate(dims) if d.kind == BATCH) + 1
        dims.insert(at, new_axis(ctx))
        return Shape(tuple(dims), src.sparse_dim, src.dtype)

    # -- one step inside a rec unit (run by netcompiler.backend.loop.runner) ------------------------------------
    def carries_state(self, opts: dict, step_shape: Shape) -> bool:
        """Always: its output has its own (new) time axis, the frames so far."""
        return True

    def initial_state(self, ctx, batch_size, max_steps):
        """A buffer [B, T_max, ...] of zeros; step t writes row t."""
        import tensorflow as tf

        dims = [batch_size, max_steps] + [d.size for d in ctx.out_shape.dims[2:]]
        return (tf.zeros(tf.stack(dims), tf.as_dtype(ctx.out_shape.dtype)),)

    def call_step(self, ctx, state):
        """Frame x_t [B, ...] -> (the buffer with row t = x_t, [B, T_max, ...]; the new axis'
        lengths t + 1)."""
        import tensorflow as tf

        t = ctx.step
        (buf,) = state
        x = tf.cast(ctx.source, buf.dtype)
        batch = tf.shape(x)[0]
        idx = tf.stack([tf.range(batch), tf.fill([batch], t)], axis=1)  # [B, 2]
        buf = tf.tensor_scatter_nd_update(buf, idx, x)
        ctx.set_lengths(ctx.out_shape.dims[1], tf.fill([batch], t + 1))
        return buf, (buf,)

    def call(self, ctx):
        raise ValueError(f"{ctx.name}: `cum_concat` runs only step by step inside a rec loop")
