"""`self_attention`: multi-head dot-product self-attention over the time axis (semantics.md).

One variable `QKV: [n_in, 2*Dk + Dv]`, columns per head first: [q0 k0 v0 | q1 k1 v1 | ...].
Over a sequence: [B, T, n_in] -> [B, T, Dv]. Inside a rec unit (one frame per step, requires
`attention_left_only`): [B, n_in] -> [B, Dv], keys and values kept as loop state.
"""
from __future__ import annotations

from ..dims import SPATIAL, Shape
from .base import LayerRule, ParamSpec
from ._util import input_features


class SelfAttentionRule(LayerRule):
    layer_class = "self_attention"
    layer_options = ("key_shift",)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        heads = ctx.opt("num_heads")
        key_dim = ctx.opt("total_key_dim")
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`self_attention` needs `n_out` (the value dimension Dv)", None,
                            "shape.missing-option")
        if key_dim % heads:
            raise ctx.error(f"`total_key_dim` {key_dim} is not divisible by `num_heads` {heads}",
                            "total_key_dim", "shape.num-heads")
        if n_out % heads:
            raise ctx.error(f"`n_out` {n_out} is not divisible by `num_heads` {heads}", "n_out",
                            "shape.num-heads")
        time = src.time
        if time is None:
            if not ctx.in_rec:
                raise ctx.error(
                    f"`self_attention` needs a time axis, but input "
                    f"`{', '.join(ctx.source_names)}` is {src}", "from", "shape.no-time",
                    hint="over a sequence the input needs a time axis; per step use it inside a "
                         "rec unit with `attention_left_only: true`")
            if not ctx.opt("attention_left_only"):
                raise ctx.error(
                    "`self_attention` inside a rec unit (input without time axis "
                    f"{src}) needs `attention_left_only: true`", "attention_left_only",
                    "shape.rec-self-attention")
        key_shift = ctx.ref("key_shift")
        if key_shift is not None:
            self._check_key_shift(ctx, key_shift, time, key_dim // heads)
        return src.with_feature(n_out)

    @staticmethod
    def _check_key_shift(ctx, ks: Shape, time, dk: int) -> None:
        name = ctx.ref_name("key_shift")
        if time is not None:
            expected = f"[{time}, {time}, F={dk}]"
            ok = (len(ks.dims) == 3 and not ks.has_batch and ks.dims[0] is time
                  and ks.dims[1] is time and ks.feature_size == dk)
        else:
            expected = f"[S=1, {ctx.loop_dim}, F={dk}]"
            ok = (len(ks.dims) == 3 and ks.dims[0].kind == SPATIAL and ks.dims[0].size == 1
                  and ks.dims[1] is ctx.loop_dim and ks.feature_size == dk)
        if not ok:
            raise ctx.error(
                f"`key_shift` `{name}` is {ks}, but `{ctx.name}` needs {expected} "
                f"(queries x keys x key dim per head = total_key_dim / num_heads)", "key_shift",
                "shape.key-shift")

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        width = 2 * ctx.opt("total_key_dim") + ctx.opt("n_out")
        return {"QKV": ParamSpec((n_in, width), ctx.opt("forward_weights_init"))}

    def call(self, ctx):
        import tensorflow as tf

        shape = ctx.source_shape
        time = shape.time
        if time is None:
            raise NotImplementedError("self_attention inside a rec unit (one step) is run by "
                                      "the decoder loop")
        if ctx.opt("initial_state") is not None or ctx.opts.get("state_var_lengths"):
            raise NotImplementedError("self_attention state across calls (`initial_state`, "
                                      "`state_var_lengths`) is not supported by the back end yet")
        if [d.kind for d in shape.dims[:2]] != ["batch", "time"] or len(
                shape.non_feature_dims) != 2:
            raise NotImplementedError(f"self_attention over {shape}: expected [B, T, F]")
        x = ctx.source
        qkv = ctx.params["QKV"]
        heads = int(ctx.opt("num_heads"))
        key_dim, value_dim = int(ctx.opt("total_key_dim")), int(ctx.opt("n_out"))
        dk, dv = key_dim // heads, value_dim // heads
        if shape.sparse:
            y = tf.gather(qkv, x)  # = one-hot(x) @ QKV
        else:
            y = tf.tensordot(x, qkv, axes=[[2], [0]])
        batch, length = tf.shape(y)[0], tf.shape(y)[1]
        # columns per head first: [q0 k0 v0 | q1 k1 v1 | ...]
        y = tf.transpose(tf.reshape(y, [batch, length, heads, 2 * dk + dv]), [0, 2, 1, 3])
        q, k, v = y[..., :dk], y[..., dk:2 * dk], y[..., 2 * dk:]  # [B, H, T, d]
        q = q * (dk ** -0.5)
        energy = tf.einsum("bhid,bhjd->bhij", q, k)
        key_shift = ctx.ref("key_shift")
        if key_shift is not None:
            energy = energy + tf.einsum("bhid,ijd->bhij", q, key_shift)
        if ctx.opt("attention_left_only"):
            pos = tf.range(length)
            mask = (pos[None, :] <= pos[:, None])[None, None]  # [1, 1, Tq, Tk]
        else:
            mask = tf.sequence_mask(ctx.lengths(time), maxlen=length)[:, None, None, :]
        mask = tf.broadcast_to(mask, tf.shape(energy))
        energy = tf.where(mask, energy, tf.constant(energy.dtype.min, energy.dtype))
        weights = tf.where(mask, tf.nn.softmax(energy, axis=-1), tf.zeros_like(energy))
        rate = float(ctx.opt("attention_dropout") or 0.0)
        if ctx.training and rate > 0:
            weights = tf.nn.dropout(weights, rate=rate, seed=ctx.seed)
        out = tf.einsum("bhij,bhjd->bihd", weights, v)  # [B, T, H, dv]
        return tf.reshape(out, [batch, length, value_dim])
