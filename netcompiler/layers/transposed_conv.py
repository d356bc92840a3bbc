"""`transposed_conv`: transposed convolution ("deconvolution", RETURNN's TransposedConvLayer),
upsampling the input's time and static axes, with length bookkeeping.

The spatial axes are those of `conv` (every non-batch, non-feature axis, in order, or as
`in_spatial_dims` orders them); `filter_size` has one entry per spatial axis, `strides` defaults
to `filter_size` (RETURNN). Per spatial axis with n input frames, filter f, stride s, optional
`output_padding` p and `remove_padding` r, the output has

    n * s + c - 2 * r   frames, where   c = max(f - s, 0)            (valid, p absent)
                                        c = 0                        (same,  p absent)
                                        c = f - s + p                (valid, p given)
                                        c = f - s - 2 * (f // 2) + p (same,  p given)

(RETURNN's `calc_transposed_conv_out_length`, the same formula for the per-sequence lengths of a
time axis, at least 0). Values are those of TF's `conv2d_transpose` (the gradient of a
convolution of that output size), which RETURNN calls: input frame i adds `x[i] @ W[k]^T` to
output frame `i*s + k - left - r`, where left = 0 (valid) or max(f - s - c, 0) // 2 (same:
TF's left padding), and the first and last r frames are cut off (`remove_padding`). TF accepts
only sizes whose forward convolution gives back n frames: ceil((n*s + c) / s) == n (same),
ceil((n*s + c - f + 1) / s) == n (valid); other `output_padding` values fail at run time in
RETURNN and are a validation error here.

A time axis keeps its identity only when its lengths stay the same (s = 1, c = 2r); otherwise it
becomes a new time axis `T(<layer>)`. Frames after each sequence's end are zero at the input (so
padding never reaches a valid output frame; RETURNN does not mask the input by default) and at
the output (after bias and activation).

Variables: `W: [*filter_size, n_out, n_in]` (RETURNN's layout of `W_native_transposed_conv`,
TF's `conv2d_transpose` filter: output channels before input channels), `b: [n_out]`
(`with_bias`; RETURNN calls it `bias`). The `filter` / `bias` layer options (weights from other
layers) are not supported.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import ParamSpec
from netcompiler.layers._util import src_desc
from netcompiler.layers.conv import SpatialRule


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def out_offset(f: int, s: int, padding: str, output_padding: int | None) -> int:
    """c of `n * s + c` (before `remove_padding`), RETURNN's formula."""
    if output_padding is None:
        return max(f - s, 0) if padding == "valid" else 0
    pad = f // 2 if padding == "same" else 0
    return f - s - 2 * pad + int(output_padding)


def left_crop(f: int, s: int, padding: str, c: int) -> int:
    """Frames of the full transposed convolution (length (n-1)*s + f) before output frame 0."""
    if padding == "same":
        return max(f - s - c, 0) // 2
    return 0


def tf_accepts(f: int, s: int, padding: str, c: int) -> bool:
    """Whether TF's conv2d_transpose accepts the output size n*s + c (for every n >= 1): the
    forward convolution of that size gives n frames."""
    low = c if padding == "same" else c - f + 1
    return -s < low <= 0


def out_length(
    n: int, f: int, s: int, padding: str, output_padding: int | None, remove: int
) -> int:
    """Frames of one spatial axis of size n."""
    return n * s + out_offset(f, s, padding, output_padding) - 2 * remove


class TransposedConvRule(SpatialRule):
    layer_class = "transposed_conv"
    size_option = "filter_size"

    def per_axis(self, ctx, option: str, n: int, default, allow_none: bool = False) -> list:
        value = ctx.opt(option)
        if value is None and not allow_none:
            value = default
        if value is None or _is_int(value):
            return [value] * n
        value = [None if v is None else int(v) for v in value]
        if len(value) != n:
            raise ctx.error(
                f"`{option}: {value}` has {len(value)} entries for {n} spatial axes "
                f"(one per entry of `filter_size`)",
                option,
                "shape.conv-dims",
            )
        return value

    def tplan(self, ctx, src: Shape):
        """(spatial axis indices, filter sizes, strides, padding, output paddings, removes)."""
        if src.sparse or src.feature is None:
            raise ctx.error(
                f"`transposed_conv` needs dense input with a feature axis, but "
                f"{src_desc(ctx)} has none",
                "from",
                "shape.no-feature",
                hint="embed sparse labels first (`linear`), or add a feature axis "
                "(`expand_dims` with `axis: F`)",
            )
        if not src.has_batch or src.dims[0].kind != BATCH:
            raise ctx.error(
                f"`transposed_conv` needs a batch axis first, got {src_desc(ctx)}",
                "from",
                "shape.no-batch",
            )
        spatial = [i for i, d in enumerate(src.dims) if d.kind not in (BATCH, FEATURE)]
        sizes = [int(v) for v in ctx.opt("filter_size")]
        if len(spatial) != len(sizes):
            raise ctx.error(
                f"`filter_size: {sizes}` has {len(sizes)} entries, but {src_desc(ctx)} has "
                f"{len(spatial)} spatial axes",
                "filter_size",
                "shape.conv-dims",
                hint="one entry per time/static axis; `split_dims`/`expand_dims` add static "
                "axes, `merge_dims` removes them",
            )
        n = len(sizes)
        strides = self.per_axis(ctx, "strides", n, sizes)
        strides = [f if s is None else int(s) for s, f in zip(strides, sizes)]
        padding = str(ctx.opt("padding")).lower()
        out_pad = self.per_axis(ctx, "output_padding", n, None, allow_none=True)
        remove = [int(r or 0) for r in self.per_axis(ctx, "remove_padding", n, 0)]
        for f, s, p in zip(sizes, strides, out_pad):
            c = out_offset(f, s, padding, p)
            if p is not None and not tf_accepts(f, s, padding, c):
                ok = [
                    q
                    for q in range(0, s + 1)
                    if tf_accepts(f, s, padding, out_offset(f, s, padding, q))
                ]
                raise ctx.error(
                    f"`output_padding: {p}` does not fit filter {f}, stride {s} with "
                    f"`padding: {padding}`: the output would have n*{s}{c:+d} frames, whose "
                    f"convolution does not give back the n input frames (TF's conv2d_transpose "
                    f"rejects it)",
                    "output_padding",
                    "shape.conv-padding",
                    hint=f"here `output_padding` can be {' or '.join(map(str, ok))}"
                    if ok
                    else "leave `output_padding` out",
                )
        return spatial, sizes, strides, padding, out_pad, remove

    def infer(self, ctx) -> Shape:
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                "`transposed_conv` needs `n_out` (the output channels)",
                None,
                "shape.missing-option",
            )
        src = self.prepared(ctx, ctx.source)[0]
        spatial, sizes, strides, padding, out_pad, remove = self.tplan(ctx, src)
        dims = list(src.dims)
        new_times = 0
        for i, f, s, p, r in zip(spatial, sizes, strides, out_pad, remove):
            dim = src.dims[i]
            if dim.kind == TIME:
                if s == 1 and out_offset(f, s, padding, p) == 2 * r:
                    continue
                new_times += 1
                dims[i] = ctx.new_time_dim(
                    ctx.name if new_times == 1 else f"{ctx.name}#{new_times}"
                )
            else:
                size = out_length(dim.size, f, s, padding, p, r)
                if size < 1:
                    raise ctx.error(
                        f"`remove_padding: {r}` leaves no frame of axis {dim} of "
                        f"{src_desc(ctx)} ({size + 2 * r} frames before removing)",
                        "remove_padding",
                        "shape.conv-size",
                    )
                dims[i] = spatial_dim(size)
        dims[-1] = feature_dim(int(n_out))
        return Shape(tuple(dims))

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = self.prepared(ctx, ctx.source)[0].feature_size
        sizes = tuple(int(v) for v in ctx.opt("filter_size"))
        params = {"W": ParamSpec(sizes + (out.feature_size, n_in), ctx.opt("forward_weights_init"))}
        if ctx.opt("with_bias"):
            params["b"] = ParamSpec((out.feature_size,), ctx.opt("bias_init"))
        return params

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend.activations import apply_activation

        x, shape = self.prepared_input(ctx)
        spatial, sizes, strides, padding, out_pad, remove = self.tplan(ctx, shape)
        mask = ctx.valid_mask(shape, x)
        if mask is not None:
            x = tf.where(mask, x, tf.zeros_like(x))
        W = ctx.params["W"]
        n_out = int(W.shape[-2])
        # [B, *spatial, F] (checked by `tplan`; the feature axis is last, as in `conv`)
        dyn = tf.shape(x)
        full_shape = [dyn[0]]
        for i, f, s in zip(spatial, sizes, strides):
            full_shape.append((dyn[i] - 1) * s + f)
        full_shape.append(n_out)
        # the whole transposed convolution (every frame any input frame reaches), then per axis
        # the frames RETURNN's output keeps
        from netcompiler.backend.compute import convolve

        y = convolve(
            tf.nn.conv_transpose, x, W, tf.stack(full_shape), strides=strides, padding="VALID"
        )
        pads, begin, size = [[0, 0]], [0], [-1]
        for k, (i, f, s, p, r) in enumerate(zip(spatial, sizes, strides, out_pad, remove)):
            c = out_offset(f, s, padding, p)
            start = left_crop(f, s, padding, c) + r
            n_frames = tf.maximum(dyn[i] * s + c - 2 * r, 0)
            pads.append([0, tf.maximum(start + n_frames - full_shape[k + 1], 0)])
            begin.append(start)
            size.append(n_frames)
        pads.append([0, 0])
        begin.append(0)
        size.append(-1)
        y = tf.pad(
            y, tf.stack([tf.stack([tf.cast(a, tf.int32), tf.cast(b, tf.int32)]) for a, b in pads])
        )
        y = tf.slice(
            y,
            tf.stack([tf.cast(v, tf.int32) for v in begin]),
            tf.stack([tf.cast(v, tf.int32) for v in size]),
        )
        out = ctx.out_shape
        for i, f, s, p, r in zip(spatial, sizes, strides, out_pad, remove):
            dim = shape.dims[i]
            if dim.kind == TIME and out.dims[i] is not dim:
                c = out_offset(f, s, padding, p)
                ctx.set_lengths(out.dims[i], tf.maximum(ctx.lengths(dim) * s + c - 2 * r, 0))
        if "b" in ctx.params:
            y = y + ctx.params["b"]
        y = apply_activation(ctx.opt("activation"), y)
        omask = ctx.valid_mask(out, y)
        if omask is not None:
            y = tf.where(omask, y, tf.zeros_like(y))
        return y
