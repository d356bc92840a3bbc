"""`conv` and `pool`: 1-D/2-D (up to 3-D) convolution and pooling over the input's time and
static axes, with length bookkeeping.

The spatial axes are all non-batch, non-feature axes of the input, in order; there must be as
many as entries in `filter_size` / `pool_size`. Per spatial axis, with filter f, dilation d,
stride s and effective size e = (f - 1) * d + 1:
- `padding: same`: ceil(n / s) frames; output frame i covers input frames
  `i*s - (e-1)//2 + k*d` (the stride-1 "same" result taken at every s-th frame), zeros (conv,
  avg: not counted; max: never chosen) outside each sequence's valid frames.
- `padding: valid`: `max(0, ceil((n - e + 1) / s))` frames; frame i covers `i*s + k*d`.
A time axis keeps its identity only with `padding: same` and stride 1; otherwise it becomes a new
time axis `T(<layer>)` with the lengths computed per sequence by the same formulas.

`conv` variables: `W: [*filter_size, n_in / groups, n_out]`, `b: [n_out]` (`with_bias`). With
`groups: G` (grouped convolution, TF's layout) the input features are split into G consecutive
blocks and output channel o sees only block `o // (n_out / G)`; both sizes must divide by G.
`pool` has no variables; `strides` defaults to `pool_size`; padded frames never win a max and
never count in an average.

`conv` input options (RETURNN's): `in_spatial_dims` lists the convolved axes in the order of
`filter_size`; they must be all time/static axes of the input (RETURNN would fold further axes
into the batch: a validation error here), and a different order moves them into that order
(the output keeps it). `input_add_feature_dim` appends a feature axis of size 1; the input's
feature axis (if any) becomes the last spatial axis (after those of `in_spatial_dims`).
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess, ParamSpec
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import src_desc


def _per_axis(ctx, option: str, value, n: int, default) -> list[int]:
    if value is None:
        value = default
    if isinstance(value, int) and not isinstance(value, bool):
        return [int(value)] * n
    value = [int(v) for v in value]
    if len(value) == 1 and n > 1:
        return value * n
    if len(value) != n:
        raise ctx.error(
            f"`{option}: {value}` has {len(value)} entries for {n} spatial axes",
            option,
            "shape.conv-dims",
        )
    return value


def out_size(n: int, f: int, d: int, s: int, padding: str) -> int:
    """Frames of one spatial axis of size n (the same formula as the per-sequence lengths)."""
    e = (f - 1) * d + 1
    if padding == "same":
        return -(-n // s)
    return max(0, -(-(n - e + 1) // s))


class SpatialRule(NoStepGuess, LayerRule):
    """What conv and pool share: the spatial axes and their sizes/lengths."""

    size_option = ""
    # they convolve every non-batch, non-feature axis: moved out of a loop, the loop axis would
    # be convolved too, where per step only the step's own axes are
    loop_only = True

    def prepared(self, ctx, src: Shape) -> tuple[Shape, list[int] | None, bool]:
        """The input as convolved: (its shape, the axis permutation applied or None, whether a
        feature axis of size 1 is appended), from `in_spatial_dims` / `input_add_feature_dim`."""
        add = bool(ctx.opts.get("input_add_feature_dim"))
        listed = ctx.opts.get("in_spatial_dims")
        if (not add and not listed) or src.sparse:
            return src, None, False
        perm = None
        if listed:
            axes: list[int] = []
            for desc in listed:
                found = resolve_axes(ctx, src, desc, "in_spatial_dims")
                if len(found) != 1:
                    raise ctx.error(
                        f"`in_spatial_dims`: {desc!r} names {len(found)} axes of "
                        f"{src_desc(ctx)}, not one",
                        "in_spatial_dims",
                        "shape.conv-dims",
                    )
                if found[0] in axes:
                    raise ctx.error(
                        f"`in_spatial_dims`: axis {src.dims[found[0]]} of "
                        f"{src_desc(ctx)} is named twice",
                        "in_spatial_dims",
                        "shape.conv-dims",
                    )
                if src.dims[found[0]].kind in (BATCH, FEATURE):
                    raise ctx.error(
                        f"`in_spatial_dims`: {desc!r} is the "
                        f"{src.dims[found[0]].kind} axis of {src_desc(ctx)}",
                        "in_spatial_dims",
                        "shape.conv-dims",
                        hint="with `input_add_feature_dim: true` the feature axis "
                        "is convolved over after the listed axes",
                    )
                axes.append(found[0])
            spatial = [i for i, d in enumerate(src.dims) if d.kind not in (BATCH, FEATURE)]
            rest = [str(src.dims[i]) for i in spatial if i not in axes]
            if rest:
                raise ctx.error(
                    f"`in_spatial_dims` leaves out axis {', '.join(rest)} of {src_desc(ctx)}: "
                    f"not supported (netcompiler convolves over every time/static axis; RETURNN "
                    f"would treat the others as further batch axes)",
                    "in_spatial_dims",
                    "shape.conv-dims",
                    hint="merge the other axes away first (`merge_dims`), or list them all",
                )
            if axes != sorted(axes):  # RETURNN moves them into the listed order
                perm = list(range(src.ndim))
                for at, a in zip(sorted(axes), axes):
                    perm[at] = a
                src = Shape(tuple(src.dims[i] for i in perm), src.sparse_dim, src.dtype)
        if add:
            dims = [spatial_dim(d.size) if d.kind == FEATURE else d for d in src.dims]
            src = Shape(tuple(dims) + (feature_dim(1),), None, src.dtype)
        return src, perm, add

    def prepared_input(self, ctx):
        """(value, shape) of the input as convolved (see `prepared`)."""
        import tensorflow as tf

        x = ctx.source
        shape, perm, add = self.prepared(ctx, ctx.source_shape)
        if perm is not None:
            x = tf.transpose(x, perm)
        if add:
            x = tf.expand_dims(x, -1)
        return x, shape

    def plan(self, ctx, src: Shape):
        """(spatial axis indices, sizes, dilations, strides, padding)."""
        cls = self.layer_class
        if src.sparse or src.feature is None:
            raise ctx.error(
                f"`{cls}` needs dense input with a feature axis, but {src_desc(ctx)} has none",
                "from",
                "shape.no-feature",
                hint="embed sparse labels first (`linear`), or add a feature axis "
                "(`expand_dims` with `axis: F`)",
            )
        if not src.has_batch:
            raise ctx.error(
                f"`{cls}` needs a batch axis, got {src_desc(ctx)}", "from", "shape.no-batch"
            )
        spatial = [i for i, d in enumerate(src.dims) if d.kind not in (BATCH, FEATURE)]
        sizes = [int(v) for v in ctx.opt(self.size_option)]
        if len(spatial) != len(sizes):
            raise ctx.error(
                f"`{self.size_option}: {sizes}` has {len(sizes)} entries, but {src_desc(ctx)} "
                f"has {len(spatial)} spatial axes",
                self.size_option,
                "shape.conv-dims",
                hint="one entry per time/static axis; `split_dims`/`expand_dims` add static "
                "axes, `merge_dims` removes them",
            )
        n = len(sizes)
        dilation = _per_axis(ctx, "dilation_rate", ctx.opt("dilation_rate"), n, 1)
        strides = _per_axis(ctx, "strides", ctx.opt("strides"), n, self.default_strides(sizes))
        padding = str(ctx.opt("padding")).lower()
        return spatial, sizes, dilation, strides, padding

    def default_strides(self, sizes):
        return 1

    def out_dims(self, ctx, src: Shape, n_features: int) -> Shape:
        spatial, sizes, dilation, strides, padding = self.plan(ctx, src)
        dims = list(src.dims)
        new_times = 0
        for i, f, d, s in zip(spatial, sizes, dilation, strides):
            dim = src.dims[i]
            if dim.kind == TIME:
                if padding == "same" and s == 1:
                    continue
                new_times += 1
                dims[i] = ctx.new_time_dim(
                    ctx.name if new_times == 1 else f"{ctx.name}#{new_times}"
                )
            else:
                size = out_size(dim.size, f, d, s, padding)
                if size < 1:
                    raise ctx.error(
                        f"`{self.size_option}` {f} (dilation {d}) does not fit axis {dim} of "
                        f"{src_desc(ctx)} with `padding: valid`",
                        self.size_option,
                        "shape.conv-size",
                    )
                dims[i] = spatial_dim(size)
        dims[-1] = feature_dim(n_features)
        return Shape(tuple(dims))

    # -- builder (shared) -----------------------------------------------------------------------
    def run(self, ctx, op):
        """Pads each spatial axis explicitly (masking padded frames with `fill`), applies
        `op(x, mask, strides, dilations)` with VALID padding, sets the new lengths."""
        import tensorflow as tf

        x, shape = self.prepared_input(ctx)
        spatial, sizes, dilation, strides, padding = self.plan(ctx, shape)
        mask = ctx.valid_mask(shape, x)
        if mask is None:
            mask = tf.ones([1] * len(shape.dims), tf.bool)
        mask = tf.cast(tf.broadcast_to(mask, tf.concat([tf.shape(x)[:-1], [1]], 0)), x.dtype)
        dyn = tf.shape(x)
        pads = [[0, 0] for _ in shape.dims]
        out_n = {}
        for i, f, d, s in zip(spatial, sizes, dilation, strides):
            n = dyn[i]
            e = (f - 1) * d + 1
            if padding == "same":
                left = (e - 1) // 2
                m = (n + s - 1) // s
            else:
                left = 0
                m = tf.maximum((n - e + 1 + s - 1) // s, 0)
            # enough frames for m outputs (and at least one full window)
            right = tf.maximum((tf.maximum(m, 1) - 1) * s + e - n - left, 0)
            pads[i] = [left, right]
            out_n[i] = m
        paddings = tf.stack(
            [tf.stack([tf.cast(a, tf.int32), tf.cast(b, tf.int32)]) for a, b in pads]
        )
        y = op(tf.pad(x, paddings), tf.pad(mask, paddings), strides, dilation)
        # crop to the computed sizes (a window was added for empty outputs)
        begin = [0] * len(shape.dims)
        size = [-1] * len(shape.dims)
        for i in spatial:
            size[i] = out_n[i]
        y = tf.slice(y, begin, tf.stack([tf.cast(v, tf.int32) for v in size]))
        out = ctx.out_shape
        for i, f, d, s in zip(spatial, sizes, dilation, strides):
            dim = shape.dims[i]
            if dim.kind == TIME and out.dims[i] is not dim:
                lengths = ctx.lengths(dim)
                e = (f - 1) * d + 1
                if padding == "same":
                    new = (lengths + s - 1) // s
                else:
                    new = tf.maximum((lengths - e + 1 + s - 1) // s, 0)
                ctx.set_lengths(out.dims[i], new)
        omask = ctx.valid_mask(out, y)
        if omask is not None:
            y = tf.where(omask, y, tf.zeros_like(y))
        return y


def _strided(fn, x, strides, dilations):
    """Applies `fn(x, strides, dilations)`; TF rejects strides > 1 together with dilations > 1,
    so then the stride-1 result is subsampled."""
    if any(s > 1 for s in strides) and any(d > 1 for d in dilations):
        y = fn(x, [1] * len(strides), dilations)
        index = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)
        return y[index]
    return fn(x, strides, dilations)


#: from this many groups on, a grouped convolution runs as one depthwise convolution (a
#: conformer's depthwise conv has groups = channels: one op instead of hundreds)
_DEPTHWISE_MIN_GROUPS = 4


def _depthwise_fits(strides) -> bool:
    """`tf.nn.depthwise_conv2d` takes 1 or 2 spatial axes, with equal strides on both."""
    return len(strides) == 1 or (len(strides) == 2 and strides[0] == strides[1])


def _grouped_as_depthwise(x, W, groups: int, strides, dilations):
    """A grouped convolution as one depthwise convolution, then a sum within each group.

    x: [B, *spatial, groups*ci]; W: [*filter, ci, groups*co] (group g's output channels
    g*co..(g+1)*co-1 read its input channels g*ci..(g+1)*ci-1). The depthwise filter gives input
    channel g*ci+c the co multipliers W[..., c, g*co:(g+1)*co]; summing the ci products of
    each group gives the grouped result, in the same channel order."""
    import tensorflow as tf

    from netcompiler.backend.compute import convolve

    *filt, ci, out = W.shape
    co = out // groups
    w = tf.reshape(W, filt + [ci, groups, co])
    perm = list(range(len(filt))) + [len(filt) + 1, len(filt), len(filt) + 2]
    w = tf.reshape(tf.transpose(w, perm), filt + [groups * ci, co])
    one_d = len(filt) == 1
    if one_d:  # a 1-row image: height 1, the spatial axis as width
        x = tf.expand_dims(x, 1)
        w = tf.expand_dims(w, 0)
    s, d = int(strides[-1]), int(dilations[-1])
    y = convolve(
        tf.nn.depthwise_conv2d,
        x,
        w,
        strides=[1, s, s, 1],
        padding="VALID",
        dilations=[d, d] if not one_d else [1, d],
    )
    if one_d:
        y = tf.squeeze(y, 1)
    if ci > 1:
        y_shape = tf.shape(y)
        y = tf.reshape(y, tf.concat([y_shape[:-1], [groups, ci, co]], 0))
        y = tf.reduce_sum(y, axis=-2)
    return tf.reshape(y, tf.concat([tf.shape(y)[: -2 if ci > 1 else -1], [groups * co]], 0))


class ConvRule(SpatialRule):
    layer_class = "conv"
    size_option = "filter_size"

    def infer(self, ctx) -> Shape:
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                "`conv` needs `n_out` (the output channels)", None, "shape.missing-option"
            )
        src = self.prepared(ctx, ctx.source)[0]
        out = self.out_dims(ctx, src, int(n_out))
        groups = int(ctx.opt("groups", 1) or 1)
        n_in = src.feature_size
        if groups > 1 and (n_in % groups or int(n_out) % groups):
            raise ctx.error(
                f"`groups: {groups}` must divide the input features ({n_in}, {src_desc(ctx)}) "
                f"and `n_out` ({n_out})",
                "groups",
                "shape.conv-groups",
            )
        return out

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = self.prepared(ctx, ctx.source)[0].feature_size // int(ctx.opt("groups", 1) or 1)
        sizes = tuple(int(v) for v in ctx.opt("filter_size"))
        params = {"W": ParamSpec(sizes + (n_in, out.feature_size), ctx.opt("forward_weights_init"))}
        if ctx.opt("with_bias"):
            params["b"] = ParamSpec((out.feature_size,), ctx.opt("bias_init"))
        return params

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend.activations import apply_activation
        from netcompiler.backend.compute import convolve

        W = ctx.params["W"]
        groups = int(ctx.opt("groups", 1) or 1)

        def conv(v, s, d):
            if groups == 1:
                return convolve(tf.nn.convolution, v, W, strides=s, padding="VALID", dilations=d)
            if groups >= _DEPTHWISE_MIN_GROUPS and _depthwise_fits(s):
                return _grouped_as_depthwise(v, W, groups, s, d)
            # few groups: one convolution per block of input features and output channels
            # (TF's grouped kernels are not available on every device)
            return tf.concat(
                [
                    convolve(tf.nn.convolution, vg, Wg, strides=s, padding="VALID", dilations=d)
                    for vg, Wg in zip(tf.split(v, groups, axis=-1), tf.split(W, groups, axis=-1))
                ],
                axis=-1,
            )

        def op(x, mask, strides, dilations):
            x = x * mask
            return _strided(conv, x, strides, dilations)

        y = self.run(ctx, op)
        if "b" in ctx.params:
            y = y + ctx.params["b"]
        y = apply_activation(ctx.opt("activation"), y)
        omask = ctx.valid_mask(ctx.out_shape, y)
        if omask is not None:
            y = tf.where(omask, y, tf.zeros_like(y))
        return y


class PoolRule(SpatialRule):
    layer_class = "pool"
    size_option = "pool_size"

    def default_strides(self, sizes):
        return list(sizes)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        mode = ctx.opt("mode")
        if mode not in ("max", "avg"):
            raise ctx.error(f"`mode: {mode}` is not max or avg", "mode", "shape.pool-mode")
        out = self.out_dims(ctx, src, src.feature_size if src.feature is not None else 1)
        n_out = ctx.opts.get("n_out")
        if n_out is not None and n_out != out.feature_size:
            raise ctx.error(
                f"`n_out: {n_out}` differs from the output of `{ctx.name}` {out} "
                f"(pooling keeps the features of {src_desc(ctx)})",
                "n_out",
                "shape.n-out",
            )
        return out

    def call(self, ctx):
        import tensorflow as tf

        window = [int(v) for v in ctx.opt("pool_size")]
        mode = ctx.opt("mode")

        def pool(v, s, d):
            return tf.nn.pool(
                v,
                window,
                "MAX" if mode == "max" else "AVG",
                strides=s,
                padding="VALID",
                dilations=d,
            )

        def op(x, mask, strides, dilations):
            count = _strided(pool, mask, strides, dilations)  # fraction of valid frames
            if mode == "max":
                low = tf.fill(tf.shape(x), tf.constant(x.dtype.min, x.dtype))
                y = _strided(pool, tf.where(mask > 0, x, low), strides, dilations)
            else:
                total = _strided(pool, x * mask, strides, dilations)
                y = total / tf.where(count > 0, count, tf.ones_like(count))
            # a window without any valid frame (possible with an even dilated window) gives 0
            return tf.where(count > 0, y, tf.zeros_like(y))

        return self.run(ctx, op)
