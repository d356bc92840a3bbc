"""`self_attention`: multi-head dot-product self-attention over the time axis (semantics.md).

One variable `QKV: [n_in, 2*Dk + Dv]`, columns per head first: [q0 k0 v0 | q1 k1 v1 | ...].
Over a sequence: [B, T, n_in] -> [B, T, Dv]. Inside a rec unit (one frame per step, requires
`attention_left_only`): [B, n_in] -> [B, Dv], keys and values kept as loop state.
"""

from __future__ import annotations

from netcompiler.core.dims import SPATIAL, Shape
from netcompiler.core.errors import InternalError, Unsupported
from netcompiler.core.layer_rule import LayerRule, ParamSpec
from netcompiler.layers._util import input_features


def _head_dims(ctx) -> tuple[int, int, int]:
    """(heads, key dim per head, value dim per head)."""
    heads = int(ctx.opt("num_heads"))
    return heads, int(ctx.opt("total_key_dim")) // heads, int(ctx.opt("n_out")) // heads


def _enclosing_masked_computation(layer):
    """The `masked_computation` whose unit holds `layer` (through nested subnetworks), or
    None."""
    scope = layer.scope
    while scope.subnet_layer is not None:
        if scope.subnet_layer.layer_class == "masked_computation":
            return scope.subnet_layer
        scope = scope.outer
    return None


class SelfAttentionRule(LayerRule):
    layer_class = "self_attention"
    layer_options = ("key_shift", "state_var_lengths")
    stateful = True
    state_grows = True
    supports_apply_zero = False

    # -- one step inside a rec unit (run by netcompiler.backend.loop.runner) ------------------------------------
    def initial_state(self, ctx, batch_size, max_steps):
        """No keys or values yet: (keys [B, 0, H, dk], values [B, 0, H, dv], valid [B, 0]);
        step t appends its row, so the state holds the t + 1 rows its attention reads. `valid`
        marks the rows attended to: all of them, except inside a masked computation the rows
        of the steps where the mask was false (`keep_state`), which its unit does not see.

        Not a buffer of `max_steps` rows written in place: the loop reorders every state tensor
        by the beam's parent indices at each step (a gather of the whole buffer), so a step
        would cost O(max_steps) instead of O(t). The time axis is left statically unknown so
        that the state may grow from step to step of the `tf.while_loop`."""
        import tensorflow as tf

        heads, dk, dv = _head_dims(ctx)

        def empty(size):
            zeros = tf.zeros(tf.stack([batch_size, 0, heads, size]), tf.float32)
            return tf.compat.v1.placeholder_with_default(zeros, [None, None, heads, size])

        valid = tf.compat.v1.placeholder_with_default(
            tf.zeros(tf.stack([batch_size, 0]), tf.bool), [None, None]
        )
        return empty(dk), empty(dv), valid

    def keep_state(self, keep, new_state, old_state):
        """Where `keep` is false, this step's key and value row stays but is not attended to:
        the state acts as the one before the step (RETURNN's masked computation runs its unit
        only on the frames of the mask)."""
        import tensorflow as tf

        keys, values, valid = new_state
        valid = tf.concat([valid[:, :-1], tf.logical_and(valid[:, -1:], keep[:, None])], axis=1)
        return keys, values, valid

    def call_step(self, ctx, state):
        """Step t (`ctx.step`): x [B, n_in] -> ([B, Dv], the state with k_t, v_t appended);
        attends to keys 0..t (= the full-sequence causal layer, frame by frame). `key_shift`
        inside the loop: [1, T_k, dk] with T_k >= t + 1 (row i = t)."""
        import tensorflow as tf

        from netcompiler.backend import compute

        t = ctx.step
        x = ctx.source
        qkv = ctx.params["QKV"]
        heads, dk, dv = _head_dims(ctx)
        y = tf.gather(qkv, x) if ctx.source_shape.sparse else compute.matmul(x, qkv)
        batch = tf.shape(y)[0]
        y = tf.reshape(y, [batch, 1, heads, 2 * dk + dv])
        q = y[:, :, :, :dk] * (dk**-0.5)  # [B, 1, H, dk]
        keys_before, values_before, valid_before = state
        keys = tf.concat([keys_before, y[..., dk : 2 * dk]], axis=1)  # [B, t+1, H, dk]
        values = tf.concat([values_before, y[..., 2 * dk :]], axis=1)  # [B, t+1, H, dv]
        valid = tf.concat([valid_before, tf.ones([batch, 1], tf.bool)], axis=1)  # [B, t+1]
        # one query per step: matrix-vector products, written element-wise so that the state
        # is read in its own layout (einsum would transpose all t + 1 rows at every step)
        energy = tf.reduce_sum(q * keys, axis=-1)  # [B, t+1, H]
        key_shift = ctx.ref("key_shift")
        if key_shift is not None:
            energy = energy + tf.reduce_sum(q * key_shift[0, : t + 1, None, :], axis=-1)
        lowest = tf.constant(energy.dtype.min, energy.dtype)
        energy = energy + tf.where(valid, tf.zeros([], energy.dtype), lowest)[:, :, None]
        weights = tf.nn.softmax(energy, axis=1)
        rate = float(ctx.opt("attention_dropout") or 0.0)
        if ctx.training and rate > 0:
            # masks drawn on [B, H, t+1], the weights' layout in the sequence form
            weights = tf.transpose(
                ctx.dropout(tf.transpose(weights, [0, 2, 1]), rate, salt=1), [0, 2, 1]
            )
        out = tf.reduce_sum(weights[..., None] * values, axis=1)  # [B, H, dv]
        return tf.reshape(out, [batch, heads * dv]), (keys, values, valid)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        heads = ctx.opt("num_heads")
        key_dim = ctx.opt("total_key_dim")
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                "`self_attention` needs `n_out` (the value dimension Dv)",
                None,
                "shape.missing-option",
            )
        if key_dim % heads:
            raise ctx.error(
                f"`total_key_dim` {key_dim} is not divisible by `num_heads` {heads}",
                "total_key_dim",
                "shape.num-heads",
            )
        if n_out % heads:
            raise ctx.error(
                f"`n_out` {n_out} is not divisible by `num_heads` {heads}",
                "n_out",
                "shape.num-heads",
            )
        time = src.time
        if time is None:
            if not ctx.in_rec:
                raise ctx.error(
                    f"`self_attention` needs a time axis, but input "
                    f"`{', '.join(ctx.source_names)}` is {src}",
                    "from",
                    "shape.no-time",
                    hint="over a sequence the input needs a time axis; per step use it inside a "
                    "rec unit with `attention_left_only: true`",
                )
            if not ctx.opt("attention_left_only"):
                raise ctx.error(
                    "`self_attention` inside a rec unit (input without time axis "
                    f"{src}) needs `attention_left_only: true`",
                    "attention_left_only",
                    "shape.rec-self-attention",
                )
            masked = _enclosing_masked_computation(ctx.layer)
            if masked is not None and ctx.opt("key_shift") is not None:
                raise ctx.error(
                    f"`self_attention` with `key_shift` step by step inside the unit of the "
                    f"masked computation `{masked.name}` is not supported: the relative "
                    f"positions would count the steps where the mask is false",
                    "key_shift",
                    "shape.unsupported",
                    hint="apply the self_attention outside the masked_computation",
                )
        key_shift = ctx.ref("key_shift")
        if key_shift is not None:
            self._check_key_shift(ctx, key_shift, time, key_dim // heads)
            if ctx.opt("initial_state") == "keep_over_epoch":
                raise ctx.error(
                    "`key_shift` together with a state kept across calls "
                    "(`initial_state: keep_over_epoch`) is not supported",
                    "key_shift",
                    "shape.key-shift",
                )
        counts = ctx.ref("state_var_lengths")
        if counts is not None and (counts.dims != (src.dims[0],) or counts.feature is not None):
            raise ctx.error(
                f"`state_var_lengths` `{ctx.ref_name('state_var_lengths')}` is "
                f"{counts}, but must be one number per sequence: [B]",
                "state_var_lengths",
                "shape.state-lengths",
            )
        return src.with_feature(n_out)

    @staticmethod
    def _check_key_shift(ctx, ks: Shape, time, dk: int) -> None:
        name = ctx.ref_name("key_shift")
        if time is not None:
            expected = f"[{time}, {time}, F={dk}]"
            ok = (
                len(ks.dims) == 3
                and not ks.has_batch
                and ks.dims[0] is time
                and ks.dims[1] is time
                and ks.feature_size == dk
            )
        else:
            expected = f"[S=1, {ctx.loop_dim}, F={dk}]"
            ok = (
                len(ks.dims) == 3
                and ks.dims[0].kind == SPATIAL
                and ks.dims[0].size == 1
                and ks.dims[1] is ctx.loop_dim
                and ks.feature_size == dk
            )
        if not ok:
            raise ctx.error(
                f"`key_shift` `{name}` is {ks}, but `{ctx.name}` needs {expected} "
                f"(queries x keys x key dim per head = total_key_dim / num_heads)",
                "key_shift",
                "shape.key-shift",
            )

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        key_dim, value_dim, heads = ctx.opt("total_key_dim"), ctx.opt("n_out"), ctx.opt("num_heads")
        params = {
            "QKV": ParamSpec((n_in, 2 * key_dim + value_dim), ctx.opt("forward_weights_init"))
        }
        if ctx.opt("initial_state") == "keep_over_epoch" and not ctx.in_rec:
            # keys/values (per head, unscaled) of earlier calls and how many are valid per
            # sequence: the state a streaming call starts from
            params["keys_state"] = ParamSpec(
                (0, heads, 0, key_dim // heads), 0.0, False, dynamic=True
            )
            params["values_state"] = ParamSpec(
                (0, heads, 0, value_dim // heads), 0.0, False, dynamic=True
            )
            params["state_lengths"] = ParamSpec((0,), 0, False, dtype="int32", dynamic=True)
        return params

    @staticmethod
    def _with_carried_state(ctx, k, v, mask, lengths, batch, length):
        """Prepend the carried keys/values; update the state for the next call.

        Carried key p of sequence b is valid when p < n_carried[b] (`state_var_lengths` if
        given, else the count kept with the state); carried keys are all in the past, so the
        causal mask only applies to this call's keys. The next state is the valid carried keys
        followed by this call's valid keys, packed to the left (with
        `restrict_state_to_last_seq`: this call's keys only).
        """
        import tensorflow as tf

        keys_var, values_var = ctx.params["keys_state"], ctx.params["values_state"]
        lengths_var = ctx.params["state_lengths"]
        heads, dk, dv = k.shape[1], k.shape[3], v.shape[3]
        # a state kept for another batch size (or none yet) counts as empty
        same_batch = tf.equal(tf.shape(keys_var)[0], batch)
        prev_k = tf.cond(
            same_batch,
            lambda: tf.convert_to_tensor(keys_var),
            lambda: tf.zeros([batch, heads, 0, dk], k.dtype),
        )
        prev_v = tf.cond(
            same_batch,
            lambda: tf.convert_to_tensor(values_var),
            lambda: tf.zeros([batch, heads, 0, dv], v.dtype),
        )
        prev_k = tf.reshape(prev_k, [batch, heads, -1, dk])
        prev_v = tf.reshape(prev_v, [batch, heads, -1, dv])
        carried = tf.shape(prev_k)[2]
        n_carried = tf.cond(
            same_batch,
            lambda: tf.convert_to_tensor(lengths_var),
            lambda: tf.zeros([batch], tf.int32),
        )
        n_carried = tf.reshape(n_carried, [batch])
        given = ctx.ref("state_var_lengths")
        if given is not None:
            n_carried = tf.reshape(tf.cast(given, tf.int32), [batch])
        n_carried = tf.minimum(n_carried, carried)
        carried_valid = tf.sequence_mask(n_carried, maxlen=carried)  # [B, Tp]
        carried_mask = tf.broadcast_to(carried_valid[:, None, None, :], [batch, 1, length, carried])
        new_mask = tf.broadcast_to(mask, [batch, 1, length, length])
        full_mask = tf.concat([carried_mask, new_mask], axis=-1)
        full_k = tf.concat([prev_k, k], axis=2)
        full_v = tf.concat([prev_v, v], axis=2)
        new_valid = tf.sequence_mask(lengths, maxlen=length)  # [B, T]
        if ctx.opt("restrict_state_to_last_seq"):
            keep = tf.cast(new_valid, k.dtype)[:, None, :, None]
            next_k, next_v, next_len = k * keep, v * keep, lengths
        else:
            valid = tf.concat([carried_valid, new_valid], axis=1)  # [B, Tp + T]
            index = tf.range(carried + length)[None, :]
            order = tf.argsort(
                tf.where(valid, index, index + carried + length), axis=1, stable=True
            )
            next_len = n_carried + lengths
            keep = tf.cast(tf.sequence_mask(next_len, maxlen=carried + length), k.dtype)[
                :, None, :, None
            ]
            next_k = tf.gather(full_k, order, axis=2, batch_dims=1) * keep
            next_v = tf.gather(full_v, order, axis=2, batch_dims=1) * keep
        keys_var.assign(next_k)
        values_var.assign(next_v)
        lengths_var.assign(tf.cast(next_len, tf.int32))
        return full_k, full_v, full_mask

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute

        shape = ctx.source_shape
        time = shape.time
        if time is None:
            raise InternalError(
                "self_attention inside a rec unit (one step) is run by the decoder loop"
            )
        if [d.kind for d in shape.dims[:2]] != ["batch", "time"] or len(
            shape.non_feature_dims
        ) != 2:
            raise Unsupported(f"self_attention over {shape}: expected [B, T, F]")
        x = ctx.source
        qkv = ctx.params["QKV"]
        heads = int(ctx.opt("num_heads"))
        key_dim, value_dim = int(ctx.opt("total_key_dim")), int(ctx.opt("n_out"))
        dk, dv = key_dim // heads, value_dim // heads
        if shape.sparse:
            y = tf.gather(qkv, x)  # = one-hot(x) @ QKV
        else:
            y = compute.matmul_last_axis(x, qkv)
        batch, length = tf.shape(y)[0], tf.shape(y)[1]
        # columns per head first: [q0 k0 v0 | q1 k1 v1 | ...]
        y = tf.transpose(tf.reshape(y, [batch, length, heads, 2 * dk + dv]), [0, 2, 1, 3])
        # split, not sliced: the gradient of a split is one concat, while each slice's
        # gradient writes a zero tensor of y's full size (a quarter of a train step's time)
        q, k, v = tf.split(y, [dk, dk, dv], axis=-1)  # [B, H, T, d]
        q = q * (dk**-0.5)
        lengths = ctx.lengths(time)
        if ctx.opt("attention_left_only"):
            pos = tf.range(length)
            mask = (pos[None, :] <= pos[:, None])[None, None]  # [1, 1, Tq, Tk]
        else:
            mask = tf.sequence_mask(lengths, maxlen=length)[:, None, None, :]
        if "keys_state" in ctx.params:
            # streaming: also attend to the keys/values kept from earlier calls
            k, v, mask = self._with_carried_state(ctx, k, v, mask, lengths, batch, length)
        energy = compute.matmul(q, k, transpose_b=True)  # [B, H, Tq, Tk]
        key_shift = ctx.ref("key_shift")
        if key_shift is not None:
            energy = energy + compute.einsum("bhid,ijd->bhij", q, key_shift)
        # masked keys get the lowest energy, added (an addition's gradient is free, a
        # select's is another pass over [B, H, Tq, Tk]); exp() makes their weights exactly 0
        lowest = tf.constant(energy.dtype.min, energy.dtype)
        weights = tf.nn.softmax(energy + tf.where(mask, tf.zeros([], energy.dtype), lowest))
        rate = float(ctx.opt("attention_dropout") or 0.0)
        if ctx.training and rate > 0:
            weights = ctx.dropout(weights, rate, salt=1)
        # (a query without any valid key, only a frame of a sequence of length 0, gets the
        # mean of the values: finite, and padding)
        # a batched matmul and a transpose: the einsum with the transposed output has a
        # gradient twice as slow
        out = tf.transpose(compute.matmul(weights, v), [0, 2, 1, 3])  # [B, T, H, dv]
        return tf.reshape(out, [batch, length, value_dim])
