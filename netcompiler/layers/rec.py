"""`rec`: a recurrent layer over a time axis.

With `unit` naming a cell (lstm family, gru) it runs that cell over its input's time axis:
[B, T, n_in] -> [B, T, n_out] (`direction: -1` runs backwards within each sequence's length).
With `unit` a sub-network dict it runs the sub-network step by step (a decoder): its output is
the unit's `output` layer stacked over the loop: [B, T_loop, ...].
"""
from __future__ import annotations

from ..dims import BATCH, Shape
from .base import LayerRule, ParamSpec
from ._util import input_features

LSTM_UNITS = ("lstm", "lstmp", "nativelstm", "nativelstm2", "standardlstm", "basiclstm",
              "lstmblock")
GRU_UNITS = ("gru",)


def cell_gates(unit: str) -> int:
    """Gate blocks of a cell's weight matrices: 4 for the LSTM family, 3 for GRU."""
    return 3 if unit.lower() in GRU_UNITS else 4


def cell_params(unit: str, n_in: int, n_out: int, init, bias_init=0.0) -> dict[str, ParamSpec]:
    """Cell variables: input weights `W: [n_in, G*n]`, recurrent `W_re: [n, G*n]`, `b: [G*n]`."""
    g = cell_gates(unit)
    return {
        "W": ParamSpec((n_in, g * n_out), init),
        "W_re": ParamSpec((n_out, g * n_out), init),
        "b": ParamSpec((g * n_out,), bias_init),
    }


class RecRule(LayerRule):
    layer_class = "rec"

    def infer(self, ctx) -> Shape:
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            return self._infer_subnetwork(ctx)
        src = ctx.source
        input_features(ctx, src)
        if src.time is None:
            raise ctx.error(f"`rec` with `unit: {unit}` needs an input with a time axis, got "
                            f"`{', '.join(ctx.source_names)}` {src}", "from", "shape.no-time")
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(f"`rec` with `unit: {unit}` needs `n_out`", None,
                            "shape.missing-option")
        return src.with_feature(n_out)

    def _infer_subnetwork(self, ctx) -> Shape:
        step = ctx.unit_shape("output")
        if step is None:
            raise ctx.error(f"the unit of `{ctx.name}` has no usable `output` layer", "unit",
                            "shape.rec-output")
        loop = ctx.rec_loop_dim
        if step.has(loop):
            # the output layer was already over the whole loop axis (moved out of the loop)
            return step
        dims = list(step.dims)
        at = 1 if dims and dims[0].kind == BATCH else 0
        dims.insert(at, loop)
        return Shape(tuple(dims), step.sparse_dim, step.dtype)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            return {}
        n_in = input_features(ctx, ctx.source)
        return cell_params(unit, n_in, out.feature_size, ctx.opt("forward_weights_init"))

    def guess_step_shape(self, ctx):
        return None
