"""`get_last_hidden_state`: the last hidden state of its inputs: `[B, F=n_out]`.

For an input over time this is its output at the last frame it processed: the last valid frame
of each sequence, or frame 0 for a `rec` layer with `direction: -1`. For a cell this is its `h`
(the output); `key: h` may say so explicitly; the cell's `c` is not exposed. Several inputs are
combined by `combine` (concat or add).
"""
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
        key = ctx.opt("key")
        if key not in (None, "h", "output"):
            raise ctx.error(f"`key: {key}`: only the hidden state `h` (the cell's output) is "
                            f"available", "key", "shape.state-key")
        sizes = []
        for name, s in zip(ctx.source_names, ctx.sources):
            if not s.has_batch or s.feature is None or len(s.non_feature_dims) - len(s.time_dims[:1]) != 1:
                raise ctx.error(f"input `{name}` {s} must be [B, F] or [B, T, F]", "from",
                                "shape.inputs")
            sizes.append(s.feature.size)
        combine = ctx.opt("combine")
        if combine == "add" and len(set(sizes)) > 1:
            raise ctx.error(f"`combine: add` needs inputs of one size, got {sizes} from "
                            f"{', '.join(ctx.source_names)}", "combine", "shape.inputs")
        total = sizes[0] if combine == "add" else sum(sizes)
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`get_last_hidden_state` needs `n_out` (the state size)", None,
                            "shape.missing-option")
        if n_out != total:
            raise ctx.error(f"`n_out: {n_out}` differs from the state size {total} of "
                            f"{', '.join(ctx.source_names)}", "n_out", "shape.n-out")
        return ctx.batch_shape(n_out)

    def call(self, ctx):
        import tensorflow as tf

        states = []
        for x, shape, backward in zip(ctx.sources, ctx.source_shapes, self._backward(ctx)):
            if shape.time is None:
                states.append(x)
                continue
            if backward:
                states.append(x[:, 0])
            else:
                last = tf.maximum(ctx.lengths(shape.time) - 1, 0)
                states.append(tf.gather(x, last, axis=1, batch_dims=1))
        if ctx.opt("combine") == "add":
            return tf.add_n(states)
        return tf.concat(states, axis=-1)

    @staticmethod
    def _backward(ctx) -> list[bool]:
        """Which inputs are rec layers running backwards (their last state is at frame 0)."""
        return [opts.get("class") == "rec" and opts.get("direction") == -1
                for opts in ctx.source_opts]
