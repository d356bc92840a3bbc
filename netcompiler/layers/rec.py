"""`rec`: a recurrent layer over a time axis.

With `unit` naming a cell (lstm family, gru) it runs that cell over its input's time axis:
[B, T, n_in] -> [B, T, n_out] (`direction: -1` runs backwards within each sequence's length).
With `unit` a sub-network dict it runs the sub-network step by step (a decoder): its output is
the unit's `output` layer stacked over the loop: [B, T_loop, ...].
The cells themselves (unit names, steps, the run over time) are in `netcompiler.layers._rnn_cells`.
"""

from __future__ import annotations

from typing import Any

from netcompiler.core.dims import BATCH, Dim, Shape
from netcompiler.core.errors import InternalError
from netcompiler.core.layer_rule import LayerRule, NoStepGuess, ParamSpec
from netcompiler.layers._rnn_cells import (
    CUMSUM_UNITS,
    PEEPHOLE_PARAMS,
    UNITS,
    cell_gates,
    cell_step,
    is_cumsum,
    is_gru,
    lstm_forget_bias,
    run_cell_over_time,
    standard_lstm,
)
from netcompiler.layers._util import input_features


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


def peephole_params(ctx, n_out: int) -> dict[str, ParamSpec]:
    """`unit_opts: {use_peepholes: true}` (TF's LSTMCell): w_i_diag, w_f_diag, w_o_diag [n_out],
    initialised like the other cell weights (`forward_weights_init`)."""
    if not (ctx.opts.get("unit_opts") or {}).get("use_peepholes"):
        return {}
    return {k: ParamSpec((n_out,), ctx.opt("forward_weights_init")) for k in PEEPHOLE_PARAMS}


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


def store_final_state(ctx, state: tuple) -> None:
    """Record a cell's final state ((c, h) / (h,)) in the forward pass's `ctx.final_states`
    (by layer name; read by `get_last_hidden_state`). A context without it (a cell run inside
    a decoder loop) records nothing."""
    states = getattr(ctx, "final_states", None)
    if states is not None:
        states[ctx.name] = state
