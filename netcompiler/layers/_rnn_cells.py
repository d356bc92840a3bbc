"""The recurrent cells of `rec` and `rnn_cell`: which `unit` names exist and what each computes
under TF 2 (one step, and a whole cell run over a time axis).

Gate layout of every cell's variables: input weights `W: [n_in, G*n]`, recurrent
`W_re: [n, G*n]`, bias `b: [G*n]`, the columns in G gate blocks (see `run_cell_over_time`).
"""

from __future__ import annotations

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


def cell_gates(unit: str) -> int:
    """Gate blocks of a cell's weight matrices: 4 for the LSTM family, 3 for GRU."""
    return 3 if is_gru(unit) else 4


def lstm_step(xp, c, h, W_re, forget_bias: float = 0.0, peepholes: tuple | None = None):
    """One LSTM step from the projected input xp = x W + b: (c', h'); gate blocks (i, j, f, o);
    `forget_bias` is added to f (TF's LSTMCell). `peepholes`: TF's LSTMCell `use_peepholes`,
    diagonal weights (w_i_diag, w_f_diag, w_o_diag), each [n]: i += w_i_diag * c,
    f += w_f_diag * c (the previous state), o += w_o_diag * c' (the new state)."""

    from netcompiler.backend.compute import matmul

    return lstm_from_gates(xp + matmul(h, W_re), c, forget_bias, peepholes)


def lstm_from_gates(gates, c, forget_bias: float = 0.0, peepholes: tuple | None = None):
    """The rest of `lstm_step` once the gate pre-activations x W + h W_re + b are known."""
    import tensorflow as tf

    i, j, f, o = tf.split(gates, 4, axis=-1)
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
    if not sparse and not is_gru(unit):
        from netcompiler.backend.loop.tensors import built_before_loop

        # one product [x, h] [W; W_re] instead of two: a single, larger GEMM per step (the
        # stacked weights are built once, before the decoder loop)
        c, h = state
        stacked = built_before_loop(lambda: tf.concat([W, W_re], axis=0))
        gates = tf.nn.bias_add(matmul(tf.concat([tf.cast(x, h.dtype), h], axis=-1), stacked), b)
        c_new, h_new = lstm_from_gates(gates, c, forget_bias, peepholes_of(params))
        return h_new, (c_new, h_new)
    xp = (lookup_rows(W, x) if sparse else matmul(x, W)) + b
    if is_gru(unit):
        (h,) = state
        h_new = gru_step(xp, h, W_re)
        return h_new, (h_new,)
    c, h = state
    c_new, h_new = lstm_step(xp, c, h, W_re, forget_bias, peepholes_of(params))
    return h_new, (c_new, h_new)


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


def _project_frames(x, shape, W, b):
    """x W + b for all frames at once: [B, T, G*n] (sparse x [B, T] of labels: the rows of W,
    equal to one-hot x @ W)."""
    if shape.sparse:
        return lookup_rows(W, x) + b
    from netcompiler.backend.compute import matmul_last_axis

    return matmul_last_axis(x, W, bias=b)


def _masked_scan_step(unit, W_re, forget_bias: float, peepholes: tuple | None):
    """The `tf.scan` step of a cell over time-major frames: carry (c, h, y), input (xp, m) with
    m the frame's mask [B, 1]. At a padded frame (m = 0) the state is kept and y is 0. (GRU
    has no c: its carry holds h twice.)"""

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

    return masked_gru_step if is_gru(unit) else masked_lstm_step


def _initial_carry(unit, initial_state: tuple | None, zeros) -> tuple:
    """The scan's carry (c, h, y) at step 0 from the cell's initial state (c, h) / (h,) (default
    zeros), cast to the dtype of `zeros` [B, n]."""
    import tensorflow as tf

    if initial_state is None:
        return (zeros, zeros, zeros)
    if is_gru(unit):
        return (zeros, tf.cast(initial_state[0], zeros.dtype), zeros)
    return tuple(tf.cast(v, zeros.dtype) for v in initial_state) + (zeros,)


def _final_state(unit, cs, hs, init: tuple, steps) -> tuple:
    """The cell state after the scan: (c, h) / (h,), each [B, n]; `init` for zero `steps`."""
    import tensorflow as tf

    # padded frames do not update the carry: its last entry is the state at each sequence's
    # last valid frame (of the reversed sequence for `direction: -1`, i.e. original frame 0)
    nonempty = steps > 0
    c_fin, h_fin = (
        tf.cond(nonempty, lambda v=v: v[-1], lambda i=i: i)
        for v, i in ((cs, init[0]), (hs, init[1]))
    )
    return (h_fin,) if is_gru(unit) else (c_fin, h_fin)


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
    n = W_re.shape[0]
    if direction == -1:
        x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    x_proj = _project_frames(x, shape, W, b)
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1], dtype=x_proj.dtype)  # [B, T]
    xs = tf.transpose(x_proj, [1, 0, 2])  # time-major for the scan
    ms = tf.transpose(mask, [1, 0])[:, :, None]
    zeros = tf.zeros([tf.shape(x)[0], n], x_proj.dtype)
    step = _masked_scan_step(unit, W_re, forget_bias, peepholes_of(params))
    init = _initial_carry(unit, initial_state, zeros)
    cs, hs, ys = tf.scan(step, (xs, ms), initializer=init)
    y = tf.transpose(ys, [1, 0, 2])
    if direction == -1:
        y = tf.reverse_sequence(y, lengths, seq_axis=1, batch_axis=0)
    if not return_state:
        return y
    return y, _final_state(unit, cs, hs, init, tf.shape(xs)[0])
