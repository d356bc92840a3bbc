"""`relative_positional_encoding`: the `key_shift` table of `self_attention` (semantics.md).

`out[i, j] = encoding_matrix[clip(j - i, -c, c) + c]`: outside a rec unit `[T, T, F=n_out]`
(both axes the input's time axis, no batch); inside a rec unit at step t `[S=1, T(<loop>),
F=n_out]` (query i = t, keys 0..t). Variable `encoding_matrix: [2c+1, n_out]` unless `fixed`
(sinusoids, see tests/numpy_reference.py `fixed_relative_encoding_matrix`).
"""

from __future__ import annotations

from netcompiler.core.dims import Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess, ParamSpec


class RelativePositionalEncodingRule(NoStepGuess, LayerRule):
    layer_class = "relative_positional_encoding"
    step_indexed = True
    loop_only = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                "`relative_positional_encoding` needs `n_out` (the key dimension per "
                "head of the self_attention it feeds)",
                None,
                "shape.missing-option",
            )
        time = src.time
        if time is not None:
            return Shape((time, time, feature_dim(n_out)))
        if ctx.in_rec and ctx.loop_dim is not None:
            return Shape((spatial_dim(1), ctx.loop_dim, feature_dim(n_out)))
        raise ctx.error(
            f"`relative_positional_encoding` needs an input with a time axis (or to be inside a "
            f"rec unit), but `{', '.join(ctx.source_names)}` {src}",
            "from",
            "shape.no-time",
        )

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        if ctx.opt("fixed"):
            return {}
        c = ctx.opt("clipping")
        return {
            "encoding_matrix": ParamSpec(
                (2 * c + 1, out.feature_size), ctx.opt("forward_weights_init")
            )
        }

    def call(self, ctx):
        import tensorflow as tf

        c = int(ctx.opt("clipping"))
        matrix = encoding_matrix(ctx)
        if ctx.source_shape.time is None:
            # one decoder step t: [1, T_max, n_out], row i = t (keys j > t are masked by the
            # self-attention step that reads it)
            if ctx.step is None:
                raise ValueError(
                    f"{ctx.name}: a per-step relative_positional_encoding runs "
                    f"inside a decoder loop"
                )
            rel = tf.clip_by_value(tf.range(ctx.max_steps) - ctx.step, -c, c) + c
            return tf.gather(matrix, rel)[None]
        shape = ctx.source_shape
        length = tf.shape(ctx.source)[shape.index(shape.time)]
        pos = tf.range(length)
        rel = tf.clip_by_value(pos[None, :] - pos[:, None], -c, c) + c  # [Tq, Tk]: j - i
        return tf.gather(matrix, rel)  # [T, T, n_out]


def encoding_matrix(ctx):
    """The table `[2c+1, n_out]` at call time: fixed sinusoids (`fixed`) or the variable."""
    import tensorflow as tf

    if ctx.opt("fixed"):
        c = int(ctx.opt("clipping"))
        return tf.constant(fixed_encoding_matrix(c, ctx.out_shape.feature_size), tf.float32)
    return ctx.params["encoding_matrix"]


def sinusoids(positions, n_out: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4):
    """tensor2tensor layout: first half sin, second half cos, odd n_out: a last zero column.
    `positions`: NumPy float64 array; returns float64 [..., n_out]."""
    import math

    import numpy as np

    n_ts = n_out // 2
    log_inc = math.log(max_timescale / min_timescale) / max(n_ts - 1, 1)
    inv = min_timescale * np.exp(-np.arange(n_ts, dtype=np.float64) * log_inc)
    scaled = np.asarray(positions, np.float64)[..., None] * inv
    m = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=-1)
    if n_out % 2:
        m = np.concatenate([m, np.zeros(m.shape[:-1] + (1,))], axis=-1)
    return m


def fixed_encoding_matrix(clipping: int, n_out: int):
    """Rows p = 0 .. 2c: the sinusoids of the shifted clipped distance p (float64)."""
    import numpy as np

    return sinusoids(np.arange(2 * clipping + 1, dtype=np.float64), n_out)
