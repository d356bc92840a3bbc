"""`rec`: a recurrent layer over a time axis.

With `unit` naming a cell (lstm family, gru) it runs that cell over its input's time axis:
[B, T, n_in] -> [B, T, n_out] (`direction: -1` runs backwards within each sequence's length).
With `unit` a sub-network dict it runs the sub-network step by step (a decoder): its output is
the unit's `output` layer stacked over the loop: [B, T_loop, ...].
"""

from __future__ import annotations

from typing import Any

from netcompiler.core.dims import BATCH, Dim, Shape
from netcompiler.core.errors import InternalError
from netcompiler.core.layer_rule import LayerRule, NoStepGuess, ParamSpec
from netcompiler.layers._util import input_features

# Cell names as RETURNN's RecLayer.get_rnn_cell_class accepts them (case-insensitive), by what
# they compute under TF 2 (weights are laid out as `run_cell_over_time` describes):
#: LSTMs without a forget bias: RETURNN's default `lstm`/`lstmp` is NativeLSTM2, the native
#: kernels and VanillaLSTM compute the same cell
NATIVE_LSTM_UNITS = (
    "lstm",
    "lstmp",
    "nativelstm",
    "nativelstm2",
    "nativelstmlowmem",
    "vanillalstm",
)
#: TF's LSTMCell (RETURNN's StandardLSTM; BasicLSTM is StandardLSTM on TF 2): adds
#: `unit_opts: {forget_bias: 1.0}` (the default) to the forget gate's pre-activation
STANDARD_LSTM_UNITS = ("standardlstm", "basiclstm")
#: LSTMBlock(Fused), gone in TF 2: RETURNN runs NativeLSTM2 over time (`rec`) and StandardLSTM
#: as a cell (`rnn_cell`)
BLOCK_LSTM_UNITS = ("lstmblock", "lstmblockfused")
LSTM_UNITS = NATIVE_LSTM_UNITS + STANDARD_LSTM_UNITS + BLOCK_LSTM_UNITS
GRU_UNITS = ("gru",)  # TF's GRUCell
CELL_UNITS = LSTM_UNITS + GRU_UNITS
#: the running sum (RETURNN's test cell `cumsum`, registered by its test suite): state h' = h + x,
#: output h'; no variables, `n_out` = the input's features
CUMSUM_UNITS = ("cumsum",)
UNITS = CELL_UNITS + CUMSUM_UNITS


def is_cumsum(unit) -> bool:
    return str(unit).lower() in CUMSUM_UNITS


def is_gru(unit) -> bool:
    """True for a GRU cell unit, False for the LSTM family."""
    return str(unit).lower() in GRU_UNITS


def standard_lstm(unit, cell_only: bool) -> bool:
    """Whether `unit` names RETURNN's standard LSTM (for a cell, also the block LSTMs), whose
    options and parameter layout netcompiler's `lstm` reproduces."""
    name = str(unit).lower()
    return name in STANDARD_LSTM_UNITS or (cell_only and name in BLOCK_LSTM_UNITS)


def lstm_forget_bias(unit, unit_opts, cell_only: bool) -> float:
    """The constant added to the forget gate: `unit_opts.forget_bias` (default 1.0) for TF's
    LSTMCell (StandardLSTM, BasicLSTM; LSTMBlock as `rnn_cell`), else 0."""
    if is_gru(unit) or not standard_lstm(unit, cell_only):
        return 0.0
    return float((unit_opts or {}).get("forget_bias", 1.0))


def check_cell_unit(ctx, cell_only: bool) -> None:
    """The cell name and its `unit_opts` (raises ShapeError): only options that netcompiler
    computes faithfully are accepted (`forget_bias`, `use_peepholes` of TF's LSTMCell)."""
    unit = ctx.opt("unit")
    name = str(unit).lower()
    if name not in UNITS:
        raise ctx.error(
            f"unknown cell `unit: {unit}`",
            "unit",
            "shape.cell-unit",
            hint="one of " + ", ".join(UNITS) + " (case-insensitive)",
        )
    if name in CUMSUM_UNITS:
        src = ctx.source
        if src.sparse or src.feature_size != ctx.opts.get("n_out", src.feature_size):
            raise ctx.error(
                f"`unit: {unit}` sums its input: `n_out` must equal the input's "
                f"features, input {src}",
                "n_out",
                "shape.cell-unit",
            )
    opts = ctx.opts.get("unit_opts") or {}
    allowed = ("forget_bias", "use_peepholes") if standard_lstm(unit, cell_only) else ()
    for key, value in opts.items():
        if key not in allowed:
            what = (
                f"`unit: {unit}` takes only `forget_bias` and `use_peepholes`"
                if allowed
                else f"`unit: {unit}` takes none"
            )
            raise ctx.error(
                f"`unit_opts`: option `{key}` is not supported ({what})",
                "unit_opts",
                "shape.cell-unit",
            )
        if key == "use_peepholes":
            if not isinstance(value, bool):
                raise ctx.error(
                    f"`unit_opts: use_peepholes` must be true or false, got {value!r}",
                    "unit_opts",
                    "shape.cell-unit",
                )
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(
                f"`unit_opts: forget_bias` must be a number, got {value!r}",
                "unit_opts",
                "shape.cell-unit",
            )


def stacked_shape(shape: Shape, loop_dim: Dim) -> Shape:
    """A per-step shape with the loop axis inserted after the batch axis (unchanged if it
    already has the loop axis, e.g. an output layer moved out of the loop)."""
    if shape.has(loop_dim):
        return shape
    dims = list(shape.dims)
    at = 1 if dims and dims[0].kind == BATCH else 0
    dims.insert(at, loop_dim)
    return Shape(tuple(dims), shape.sparse_dim, shape.dtype)


def cell_gates(unit: str) -> int:
    """Gate blocks of a cell's weight matrices: 4 for the LSTM family, 3 for GRU."""
    return 3 if is_gru(unit) else 4


def lstm_step(xp, c, h, W_re, forget_bias: float = 0.0, peepholes: tuple | None = None):
    """One LSTM step from the projected input xp = x W + b: (c', h'); gate blocks (i, j, f, o);
    `forget_bias` is added to f (TF's LSTMCell). `peepholes`: TF's LSTMCell `use_peepholes`,
    diagonal weights (w_i_diag, w_f_diag, w_o_diag), each [n]: i += w_i_diag * c,
    f += w_f_diag * c (the previous state), o += w_o_diag * c' (the new state)."""
    import tensorflow as tf

    from netcompiler.backend.compute import matmul

    i, j, f, o = tf.split(xp + matmul(h, W_re), 4, axis=-1)
    if forget_bias:
        f = f + forget_bias
    if peepholes is not None:
        w_i, w_f, w_o = peepholes
        i = i + w_i * c
        f = f + w_f * c
    c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(j)
    if peepholes is not None:
        o = o + w_o * c_new
    h_new = tf.sigmoid(o) * tf.tanh(c_new)
    return c_new, h_new


#: TF's LSTMCell peephole variables, in the order `lstm_step` takes them
PEEPHOLE_PARAMS = ("w_i_diag", "w_f_diag", "w_o_diag")


def peepholes_of(params) -> tuple | None:
    """The peephole weights of a cell's variables (None without `use_peepholes`)."""
    if PEEPHOLE_PARAMS[0] not in params:
        return None
    return tuple(params[k] for k in PEEPHOLE_PARAMS)


def peephole_params(ctx, n_out: int) -> dict[str, ParamSpec]:
    """`unit_opts: {use_peepholes: true}` (TF's LSTMCell): w_i_diag, w_f_diag, w_o_diag [n_out],
    initialised like the other cell weights (`forward_weights_init`)."""
    if not (ctx.opts.get("unit_opts") or {}).get("use_peepholes"):
        return {}
    return {k: ParamSpec((n_out,), ctx.opt("forward_weights_init")) for k in PEEPHOLE_PARAMS}


def gru_step(xp, h, W_re):
    """One GRU step from the projected input xp = x W + b: h'; gate blocks (z, r, h)."""
    import tensorflow as tf

    from netcompiler.backend.compute import matmul

    xz, xr, xh = tf.split(xp, 3, axis=-1)
    uz, ur, uh = tf.split(W_re, 3, axis=-1)
    z = tf.sigmoid(xz + matmul(h, uz))
    r = tf.sigmoid(xr + matmul(h, ur))
    cand = tf.tanh(xh + matmul(r * h, uh))
    return z * h + (1 - z) * cand


def cell_params(unit: str, n_in: int, n_out: int, init, bias_init=0.0) -> dict[str, ParamSpec]:
    """Cell variables: input weights `W: [n_in, G*n]`, recurrent `W_re: [n, G*n]`, `b: [G*n]`
    (none for `cumsum`)."""
    if is_cumsum(unit):
        return {}
    g = cell_gates(unit)
    return {
        "W": ParamSpec((n_in, g * n_out), init),
        "W_re": ParamSpec((n_out, g * n_out), init),
        "b": ParamSpec((g * n_out,), bias_init),
    }


# -- the initial cell state (`initial_state` of `rnn_cell` and of `rec` with a cell unit) -------
#: accepted by RETURNN, not supported here (state kept across calls / fed from outside)
UNSUPPORTED_INITIAL_STATES = ("keep_over_epoch", "keep_over_epoch_no_init", "placeholder")
INITIAL_STATE_FORMS = (
    "`zeros`, `ones`, a number, `var` (trained), a layer [B, n_out] "
    "(`base:NAME` inside a rec unit), or a list / dict per state part"
)


def state_keys(unit) -> tuple[str, ...]:
    """The parts of a cell's state: (c, h) for the LSTM family, (h,) for GRU and cumsum."""
    return ("h",) if is_gru(unit) or is_cumsum(unit) else ("c", "h")


def initial_state_parts(ctx) -> dict[str, tuple[Any, tuple]]:
    """`initial_state` per state part: {key: (value, option sub-path of a reference)}. One value
    applies to every part; a list gives the parts in order (c, h); a dict by key."""
    init = ctx.opts.get("initial_state")
    unit = ctx.opt("unit")
    keys = state_keys(unit)
    if isinstance(init, dict):
        for k in init:
            if k not in keys:
                raise ctx.error(
                    f"`initial_state`: `unit: {unit}` has no state part `{k}` "
                    f"(its parts: {', '.join(keys)})",
                    "initial_state",
                    "shape.initial-state",
                )
        return {k: (init.get(k), ("initial_state", k)) for k in keys}
    if isinstance(init, list):
        if len(init) != len(keys):
            raise ctx.error(
                f"`initial_state`: a list needs one entry per state part of "
                f"`unit: {unit}` ({', '.join(keys)}), got {len(init)}",
                "initial_state",
                "shape.initial-state",
            )
        return {k: (v, ("initial_state", i)) for i, (k, v) in enumerate(zip(keys, init))}
    return {k: (init, ("initial_state",)) for k in keys}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_initial_state(ctx, n_out: int) -> dict[str, ParamSpec]:
    """Shape check of `initial_state` (raises ShapeError); the `var` parameters
    (`initial_c`, `initial_h`: [n_out], zeros)."""
    from netcompiler.core.dims import FEATURE

    params = {}
    refs = {r.text: (r, s) for r, s in ctx.option_refs("initial_state")}
    for key, (value, _) in initial_state_parts(ctx).items():
        if value is None or value in ("zeros", "ones", "var") or _is_number(value):
            if value == "var":
                params[f"initial_{key}"] = ParamSpec((n_out,), 0.0)
            continue
        if value in UNSUPPORTED_INITIAL_STATES:
            raise ctx.error(
                f"`initial_state: {value}` is not supported for a cell (supported: "
                f"{INITIAL_STATE_FORMS})",
                "initial_state",
                "shape.initial-state",
            )
        if not isinstance(value, str):
            raise ctx.error(
                f"`initial_state`: invalid value {value!r} for state part `{key}` "
                f"(supported: {INITIAL_STATE_FORMS})",
                "initial_state",
                "shape.initial-state",
            )
        got = refs.get(value)
        if got is None:  # an unresolved reference: reported by the reference check
            continue
        ref, shape = got
        if ctx.in_rec and (ref.kind != "layer" or ref.prev or ref.target.scope is ctx.layer.scope):
            raise ctx.error(
                f"`initial_state: {value}`: inside a rec unit the initial state is "
                f"a layer of the enclosing network (`base:NAME`)",
                "initial_state",
                "shape.initial-state",
            )
        ok = (
            not shape.sparse
            and len(shape.dims) == 2
            and shape.dims[0].kind == BATCH
            and shape.dims[1].kind == FEATURE
            and shape.feature_size == n_out
        )
        if not ok:
            raise ctx.error(
                f"`initial_state: {value}` is {shape}, but the state part `{key}` "
                f"of `{ctx.name}` is [B, F={n_out}]",
                "initial_state",
                "shape.initial-state",
            )
    return params


def make_initial_state(ctx, batch_size, n: int) -> tuple:
    """The initial cell state (c, h) / (h,), each [B, n], from a CallContext whose references
    include the `initial_state` layers (by option sub-path)."""
    import tensorflow as tf

    out = []
    for key, (value, sub) in initial_state_parts(ctx).items():
        if value == "var":
            var = ctx.params[f"initial_{key}"]
            out.append(tf.broadcast_to(var[None, :], tf.stack([batch_size, n])))
            continue
        if isinstance(value, str) and value not in ("zeros", "ones"):
            got = ctx.ref(sub)
            if got is None:
                raise ValueError(f"{ctx.name}: the value of `initial_state: {value}` is missing")
            out.append(tf.cast(got, tf.float32))
            continue
        fill = 1.0 if value == "ones" else float(value) if _is_number(value) else 0.0
        out.append(tf.fill(tf.stack([batch_size, n]), fill))
    return tuple(out)


def lookup_rows(W, labels):
    """Rows of W for int labels [...]: [..., W's columns], equal to one_hot(labels) @ W (a
    label outside [0, n_in), e.g. at a padded frame, gives a zero row, as one-hot does)."""
    import tensorflow as tf

    n_in = tf.shape(W, out_type=labels.dtype)[0]
    ok = tf.logical_and(labels >= 0, labels < n_in)
    rows = tf.gather(W, tf.where(ok, labels, tf.zeros_like(labels)))
    return rows * tf.cast(ok, W.dtype)[..., None]


def cell_step(unit, x, sparse: bool, params, state: tuple, forget_bias: float = 0.0):
    """One cell step: x [B, n_in] (sparse: [B] labels, rows of W looked up) -> (h [B, n_out],
    new state); the gate layout of `run_cell_over_time`."""
    import tensorflow as tf

    if is_cumsum(unit):
        (h,) = state
        h_new = h + tf.cast(x, h.dtype)
        return h_new, (h_new,)
    from netcompiler.backend.compute import matmul

    W, W_re, b = params["W"], params["W_re"], params["b"]
    xp = (lookup_rows(W, x) if sparse else matmul(x, W)) + b
    if is_gru(unit):
        (h,) = state
        h_new = gru_step(xp, h, W_re)
        return h_new, (h_new,)
    c, h = state
    c_new, h_new = lstm_step(xp, c, h, W_re, forget_bias, peepholes_of(params))
    return h_new, (c_new, h_new)


class RecRule(NoStepGuess, LayerRule):
    layer_class = "rec"
    layer_options = ("initial_state",)
    stateful = True  # with a cell unit (see `carries_state`)
    supports_apply_zero = False
    sub_network_kind = "loop"

    def infer(self, ctx) -> Shape:
        unit = ctx.opt("unit")
        if ctx.opts.get("cheating"):
            ctx.warn(
                "`cheating` on `rec` has no effect (as in RETURNN, where it moved to the "
                "`choice` layer)",
                "cheating",
                "shape.unused-option",
                hint="remove it; cheating is an option of `choice`",
            )
        limit = ctx.ref("max_seq_len")  # max_len_from('X') in a max_seq_len expression
        if limit is not None and limit.time is None:
            raise ctx.error(
                f"`max_seq_len`: `max_len_from('{ctx.ref_name('max_seq_len')}')` "
                f"needs a layer with a time axis, it is {limit}",
                "max_seq_len",
                "shape.max-seq-len",
            )
        if isinstance(unit, dict):
            return self._infer_subnetwork(ctx)
        src = ctx.source
        input_features(ctx, src)
        if src.time is None and not ctx.in_rec:
            raise ctx.error(
                f"`rec` with `unit: {unit}` needs an input with a time axis, got "
                f"`{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.no-time",
            )
        check_cell_unit(ctx, cell_only=False)
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                f"`rec` with `unit: {unit}` needs `n_out`", None, "shape.missing-option"
            )
        # inside a rec unit without a time axis: one step of the cell per loop step
        check_initial_state(ctx, n_out)
        return src.with_feature(n_out)

    def guess_step_shape(self, ctx) -> Shape | None:
        """Inside a rec unit, a cell rec is one step: [B, n_out]."""
        if isinstance(ctx.opts.get("unit"), str) and ctx.in_rec:
            return LayerRule.guess_step_shape(self, ctx)
        return None

    def _infer_subnetwork(self, ctx) -> Shape:
        if ctx.in_rec:
            raise ctx.error(
                "a `rec` layer with a sub-network `unit` inside the unit of another "
                "`rec` layer (nested loops) is not supported",
                None,
                "shape.nested-rec",
                hint="move the inner loop out of the unit, or "
                "use `rnn_cell` / `rec` with a cell unit for one step of a cell",
            )
        if "initial_state" in ctx.opts:
            raise ctx.error(
                "`initial_state` applies to a cell unit (lstm, gru); inside a "
                "sub-network unit use `initial_output` of its layers",
                "initial_state",
                "shape.initial-state",
            )
        step = ctx.unit_shape("output")
        if step is None:
            raise ctx.error(
                f"the unit of `{ctx.name}` has no usable `output` layer", "unit", "shape.rec-output"
            )
        return stacked_shape(step, ctx.rec_loop_dim)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            return {}
        n_in = input_features(ctx, ctx.source)
        params = cell_params(unit, n_in, out.feature_size, ctx.opt("forward_weights_init"))
        params.update(peephole_params(ctx, out.feature_size))
        params.update(check_initial_state(ctx, out.feature_size))
        return params

    # -- one step inside a rec unit (run by netcompiler.backend.loop.runner, like `rnn_cell`) ------------------
    def sub_network(self, opts: dict) -> tuple[tuple, dict] | None:
        """A unit dict: the decoder loop's layers (a cell name in `unit` holds none)."""
        unit = opts.get("unit")
        return (("unit",), unit) if isinstance(unit, dict) else None

    def carries_state(self, opts: dict, step_shape: Shape) -> bool:
        """A cell unit carries its state; a unit dict is a loop of its own (no state here)."""
        return not isinstance(opts.get("unit"), dict) and super().carries_state(opts, step_shape)

    def initial_state(self, ctx, batch_size, max_steps=None):
        """The cell state at step 0: (c, h) for the LSTM family, (h,) for GRU, [B, n_out]."""
        return make_initial_state(ctx, batch_size, ctx.out_shape.feature_size)

    def call_step(self, ctx, state):
        unit = ctx.opt("unit")
        return cell_step(
            unit,
            ctx.source,
            ctx.source_shape.sparse,
            ctx.params,
            state,
            lstm_forget_bias(unit, ctx.opt("unit_opts"), cell_only=False),
        )

    def call(self, ctx):
        import tensorflow as tf

        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            raise InternalError("rec units are run by the network's loop builder")
        x, shape = ctx.source, ctx.source_shape  # sparse: rows of W are looked up
        init = make_initial_state(ctx, tf.shape(x)[0], ctx.out_shape.feature_size)
        y, final = run_cell_over_time(
            unit,
            x,
            shape,
            ctx.lengths(shape.time),
            ctx.params,
            ctx.opt("direction"),
            init,
            lstm_forget_bias(unit, ctx.opt("unit_opts"), cell_only=False),
            return_state=True,
        )
        store_final_state(ctx, final)
        return y


def _cumsum_over_time(x, lengths, direction, initial_state, return_state):
    """`unit: cumsum` over x [B, T, n]: y_t = h0 + x_0 + ... + x_t within each sequence (padded
    frames 0); the final state is the sum over the whole sequence."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1], dtype=x.dtype)[:, :, None]
    if direction == -1:
        x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    h0 = tf.zeros_like(x[:, 0]) if initial_state is None else tf.cast(initial_state[0], x.dtype)
    y = (tf.cumsum(x * mask, axis=1) + h0[:, None]) * mask
    final = h0 + tf.reduce_sum(x * mask, axis=1)
    if direction == -1:
        y = tf.reverse_sequence(y, lengths, seq_axis=1, batch_axis=0)
    return (y, (final,)) if return_state else y


def store_final_state(ctx, state: tuple) -> None:
    """Record a cell's final state ((c, h) / (h,)) in the forward pass's `ctx.final_states`
    (by layer name; read by `get_last_hidden_state`). A context without it (a cell run inside
    a decoder loop) records nothing."""
    states = getattr(ctx, "final_states", None)
    if states is not None:
        states[ctx.name] = state


def run_cell_over_time(
    unit: str,
    x,
    shape,
    lengths,
    params,
    direction: int = 1,
    initial_state: tuple | None = None,
    forget_bias: float = 0.0,
    return_state: bool = False,
):
    """Run an LSTM-family or GRU cell over the time axis of x [B, T, n_in] -> [B, T, n_out]
    (sparse x [B, T] of labels: the rows of `W` are looked up, equal to one-hot x @ W).

    LSTM: gate blocks of the columns of `W`/`W_re`/`b` are (i, j, f, o): input gate, new input,
    forget gate (plus `forget_bias`, 0 but for TF's LSTMCell), output gate; c' = sigmoid(f) c + sigmoid(i) tanh(j),
    h' = sigmoid(o) tanh(c'). GRU: blocks (z, r, h): z, r gates, candidate
    tanh(x W_h + (r h) U_h + b_h), h' = z h + (1 - z) candidate.
    At padded frames the state is not updated and the output is 0. `direction: -1` runs each
    sequence backwards within its own length (outputs stay at their frames).
    `initial_state`: (c, h) / (h,), each [B, n] (default zeros).
    `return_state`: also return the final state (c, h) / (h,), each [B, n]: the state after
    each sequence's last valid frame (`direction: -1`: after frame 0; the initial state for an
    empty sequence), as `(y, state)`.
    """
    import tensorflow as tf

    if shape.dims.index(shape.time) != 1 or len(shape.dims) != (2 if shape.sparse else 3):
        raise ValueError(f"cells run over [B, T, F] (or sparse [B, T]) inputs, got {shape}")
    if is_cumsum(unit):
        return _cumsum_over_time(x, lengths, direction, initial_state, return_state)
    W, W_re, b = params["W"], params["W_re"], params["b"]
    peepholes = peepholes_of(params)
    n = W_re.shape[0]
    if direction == -1:
        x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    if shape.sparse:  # rows of W (equal to one-hot x @ W)
        x_proj = lookup_rows(W, x) + b
    else:  # [B, T, G*n], all frames at once
        from netcompiler.backend.compute import tensordot

        x_proj = tensordot(x, W, axes=[[2], [0]]) + b
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1], dtype=x_proj.dtype)  # [B, T]
    xs = tf.transpose(x_proj, [1, 0, 2])  # time-major for the scan
    ms = tf.transpose(mask, [1, 0])[:, :, None]
    batch = tf.shape(x)[0]
    zeros = tf.zeros([batch, n], x_proj.dtype)

    def masked_lstm_step(carry, inp):
        c, h, _ = carry
        xp, m = inp
        c_new, h_new = lstm_step(xp, c, h, W_re, forget_bias, peepholes)
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        return c, h, h_new * m

    def masked_gru_step(carry, inp):
        _, h, _ = carry
        xp, m = inp
        h_new = gru_step(xp, h, W_re)
        h = m * h_new + (1 - m) * h
        return h, h, h_new * m

    step = masked_gru_step if is_gru(unit) else masked_lstm_step
    if initial_state is None:
        init = (zeros, zeros, zeros)
    elif is_gru(unit):
        init = (zeros, tf.cast(initial_state[0], x_proj.dtype), zeros)
    else:
        init = tuple(tf.cast(v, x_proj.dtype) for v in initial_state) + (zeros,)
    cs, hs, ys = tf.scan(step, (xs, ms), initializer=init)
    y = tf.transpose(ys, [1, 0, 2])
    if direction == -1:
        y = tf.reverse_sequence(y, lengths, seq_axis=1, batch_axis=0)
    if not return_state:
        return y
    # padded frames do not update the carry: its last entry is the state at each sequence's
    # last valid frame (of the reversed sequence for `direction: -1`, i.e. original frame 0)
    nonempty = tf.shape(xs)[0] > 0
    c_fin, h_fin = (
        tf.cond(nonempty, lambda v=v: v[-1], lambda i=i: i)
        for v, i in ((cs, init[0]), (hs, init[1]))
    )
    return y, ((h_fin,) if is_gru(unit) else (c_fin, h_fin))
