"""`rnn_cell`: one step of a recurrent cell inside a rec unit (`[B, n_in] -> [B, n_out]`, the
state carried from step to step), or, outside a rec unit, the cell run over the input's time
axis like `rec` with a cell unit (`[B, T, n_in] -> [B, T, n_out]`). Variables as `rec`.
`initial_state` (both forms): see `rec.check_initial_state`."""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.errors import InternalError
from netcompiler.core.layer_rule import LayerRule, ParamSpec
from netcompiler.layers._rnn_cells import cell_step, lstm_forget_bias, run_cell_over_time
from netcompiler.layers._util import input_features
from netcompiler.layers.rec import (
    cell_params,
    check_cell_unit,
    check_initial_state,
    make_initial_state,
    peephole_params,
    store_final_state,
)


class RnnCellRule(LayerRule):
    layer_class = "rnn_cell"
    layer_options = ("initial_state",)
    stateful = True
    supports_apply_zero = False

    # -- one step inside a rec unit (run by netcompiler.backend.loop.runner) ------------------------------------
    def initial_state(self, ctx, batch_size, max_steps=None):
        """The cell state at step 0: (c, h) for the LSTM family, (h,) for GRU, [B, n_out]."""
        return make_initial_state(ctx, batch_size, ctx.out_shape.feature_size)

    def call_step(self, ctx, state):
        """One step: x [B, n_in] (sparse: [B] labels) -> (h [B, n_out], new state); the same
        gate layout as `_rnn_cells.run_cell_over_time`."""
        unit = ctx.opt("unit")
        return cell_step(
            unit,
            ctx.source,
            ctx.source_shape.sparse,
            ctx.params,
            state,
            lstm_forget_bias(unit, ctx.opt("unit_opts"), cell_only=True),
        )

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        check_cell_unit(ctx, cell_only=True)
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`rnn_cell` needs `n_out`", None, "shape.missing-option")
        if src.time is None and not ctx.in_rec:
            raise ctx.error(
                f"`rnn_cell` outside a rec unit runs over a time axis, but input "
                f"`{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.no-time",
                hint="use it inside a rec unit for one step",
            )
        check_initial_state(ctx, n_out)
        return src.with_feature(n_out)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        params = cell_params(
            ctx.opt("unit"), n_in, out.feature_size, ctx.opt("forward_weights_init")
        )
        params.update(peephole_params(ctx, out.feature_size))
        params.update(check_initial_state(ctx, out.feature_size))
        return params

    def call(self, ctx):
        import tensorflow as tf

        shape = ctx.source_shape
        if shape.time is None:
            raise InternalError("rnn_cell inside a rec unit (one step) is run by the decoder loop")
        x = ctx.source  # sparse: rows of W are looked up
        unit = ctx.opt("unit")
        init = make_initial_state(ctx, tf.shape(x)[0], ctx.out_shape.feature_size)
        y, final = run_cell_over_time(
            unit,
            x,
            shape,
            ctx.lengths(shape.time),
            ctx.params,
            1,
            init,
            lstm_forget_bias(unit, ctx.opt("unit_opts"), cell_only=True),
            return_state=True,
        )
        store_final_state(ctx, final)
        return y
