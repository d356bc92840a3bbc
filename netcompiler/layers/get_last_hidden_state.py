"""`get_last_hidden_state`: the last hidden state of its inputs (rec layers): `[B, F=n_out]`;
several inputs are combined by `combine` (concat or add)."""
from __future__ import annotations

from ..dims import Shape
from .base import LayerRule


class GetLastHiddenStateRule(LayerRule):
    layer_class = "get_last_hidden_state"
    concat_sources = False

    def infer(self, ctx) -> Shape:
        if not ctx.sources:
            raise ctx.error("`get_last_hidden_state` needs an input (a rec layer) in `from`",
                            "from", "shape.inputs")
        for name, s in zip(ctx.source_names, ctx.sources):
            if not s.has_batch:
                raise ctx.error(f"input `{name}` {s} has no batch axis", "from",
                                "shape.inputs")
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`get_last_hidden_state` needs `n_out` (the state size)", None,
                            "shape.missing-option")
        return ctx.batch_shape(n_out)
