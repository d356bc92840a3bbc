"""`masked_computation` and `unmask` (RETURNN's MaskedComputationLayer, UnmaskLayer).

    masked: {class: masked_computation, from: x, mask: m, unit: {class: rec, unit: lstm, ...}}
    full:   {class: unmask, from: masked, mask: m}

The `unit` (a layer dict, also a `subnetwork`) is inlined like a sub-network
(`netcompiler.frontend.network`): it is the layer `masked/unit` (variables `masked/unit/W`; the layers of
a `subnetwork` unit are `masked/unit/NAME`), and inside it `data` is the masked input, the
synthetic layer `masked/data:data` (a `masked_computation` layer with the internal option
`_frames`). `base:x` is a layer of the enclosing network (not masked).

Outside a rec unit (`mask` [B, T] bool, the input has the axis T): the frames where the mask is
true (within each sequence's length) are packed, in order, into a new time axis T' (its lengths:
the number of true frames per sequence); the unit runs over them and the output has T'.
`unmask` maps T' back to T: frame t takes the value of the last masked frame at or before t,
the unit's `initial_output` (a number, default 0) before the first one.

Inside a rec unit (`mask` [B] bool): the unit runs in every step, but where the mask is false
its output and its state (cells, `cumsum`) keep their previous values: the output is the
unit's output where the mask is true, else the previous output of the layer (at step 0 the
unit's `initial_output`). `unmask` of such a per-step value is the identity.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, Shape
from netcompiler.core.errors import InternalError
from netcompiler.core.layer_rule import LayerRule

#: the internal option of the synthetic input layer `<layer>/data:data`
FRAMES = "_frames"


def _mask_shape(ctx, in_rec: bool) -> Shape:
    mask = ctx.ref("mask")
    if mask is None:
        raise ctx.error(f"`{ctx.layer.layer_class}` needs `mask`", "mask", "shape.missing-option")
    want = (
        "[B] bool (inside a rec unit: one flag per sequence and step)"
        if in_rec
        else "[B, T] bool (a flag per frame)"
    )
    ok = (
        mask.dtype == "bool"
        and not mask.sparse
        and mask.dims
        and mask.dims[0].kind == BATCH
        and len(mask.dims) == (1 if in_rec else 2)
        and (in_rec or mask.dims[1].kind == "time")
    )
    if not ok:
        raise ctx.error(
            f"`mask: {ctx.ref_name('mask')}` is {mask}, expected {want}",
            "mask",
            "shape.masked-computation",
            hint="make the mask with `compare` or an `eval` with `out_type: {dtype: bool}`",
        )
    return mask


def unit_initial_output(opts: dict) -> float:
    """The initial output of a masked computation's unit as a number (`initial_output`: a
    number, `zeros` or `ones`; default 0)."""
    unit = opts.get("unit") if isinstance(opts.get("unit"), dict) else {}
    init = unit.get("initial_output", 0)
    if init == "ones":
        return 1.0
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return float(init)
    return 0.0


class MaskedComputationRule(LayerRule):
    layer_class = "masked_computation"
    masked_step = True
    sub_network_kind = "masked"

    def sub_network(self, opts: dict) -> tuple[tuple, dict] | None:
        """Its `unit` as the one layer `NAME/unit` (none for the synthetic input layer)."""
        unit = opts.get("unit")
        if not isinstance(unit, dict) or opts.get(FRAMES):
            return None
        return (), {"unit": unit}

    def sub_network_input(self, opts: dict) -> dict | None:
        """`NAME/data:data`: the masked frames of the layer's input."""
        return {
            "class": self.layer_class,
            "from": opts.get("from", "data"),
            "mask": opts.get("mask"),
            FRAMES: True,
        }

    layer_options = ("mask",)

    def infer(self, ctx) -> Shape:
        if ctx.opts.get(FRAMES):
            return self._infer_frames(ctx)
        in_rec = ctx.in_rec
        _mask_shape(ctx, in_rec)
        out = ctx.ref("unit")
        if out is None:
            raise ctx.error(
                f"`{ctx.name}` needs a `unit` (a layer dict)", "unit", "shape.missing-option"
            )
        if in_rec and out.time is not None:
            raise ctx.error(
                f"the unit of `{ctx.name}` has output {out} with a time axis; inside "
                f"a rec unit a masked computation runs one step per loop step",
                "unit",
                "shape.unsupported",
            )
        if not in_rec:
            mask = ctx.ref("mask")
            if mask.dims[1] in out.dims:
                raise ctx.error(
                    f"the unit of `{ctx.name}` has output {out} over the mask's time axis "
                    f"{mask.dims[1]}: only its input `data` is masked (a `base:` layer over that "
                    f"axis is not)",
                    "unit",
                    "shape.unsupported",
                )
        return out

    def _infer_frames(self, ctx) -> Shape:
        """The unit's input `data`: the masked frames."""
        src = ctx.source
        if ctx.in_rec:
            _mask_shape(ctx, True)
            if src.time is not None:
                raise ctx.error(
                    f"inside a rec unit the input of a masked computation is one "
                    f"frame per step, got {src}",
                    "from",
                    "shape.unsupported",
                )
            return src
        mask = _mask_shape(ctx, False)
        t = mask.dims[1]
        if not src.has(t):
            raise ctx.error(
                f"the input {src} of `{ctx.name}` lacks the mask's time axis {t} "
                f"(mask `{ctx.ref_name('mask')}` {mask})",
                "from",
                "shape.masked-computation",
            )
        if not src.dims or src.dims[0].kind != BATCH:
            raise ctx.error(
                f"the input of `{ctx.name}` needs a batch axis, got {src}", "from", "shape.no-batch"
            )
        new = ctx.new_time_dim(f"{ctx.name.rsplit('/', 1)[0]}:masked")
        return Shape(tuple(new if d is t else d for d in src.dims), src.sparse_dim, src.dtype)

    def guess_step_shape(self, ctx) -> Shape | None:
        if ctx.opts.get(FRAMES):
            return None
        return ctx.known_ref("unit")

    # -- building ---------------------------------------------------------------------------
    def call(self, ctx):
        import tensorflow as tf

        if not ctx.opts.get(FRAMES):
            if ctx.in_rec:
                raise InternalError(
                    "a masked computation inside a rec unit is run by the "
                    "decoder loop (`call_masked_step`)"
                )
            return tf.identity(ctx.ref("unit"))
        if ctx.in_rec:
            return tf.identity(ctx.source)
        return self._pack(ctx)

    @staticmethod
    def call_masked_step(ctx, prev):
        """Inside a rec unit: the unit's output where the mask is true, else `prev`."""
        import tensorflow as tf

        mask, unit = ctx.ref("mask"), ctx.ref("unit")
        m = tf.reshape(tf.cast(mask, tf.bool), [-1] + [1] * (len(ctx.out_shape.dims) - 1))
        return tf.where(m, unit, tf.cast(prev, unit.dtype))

    @staticmethod
    def _pack(ctx):
        """[B, ..., T, ...] -> [B, ..., T', ...]: the masked frames of each sequence in order."""
        import tensorflow as tf

        x, shape = ctx.source, ctx.source_shape
        mask_shape = ctx.ref_shape("mask")
        t = mask_shape.dims[1]
        axis = shape.index(t)
        m = tf.logical_and(
            tf.cast(ctx.ref("mask"), tf.bool),
            tf.sequence_mask(ctx.lengths(t), tf.shape(ctx.ref("mask"))[1]),
        )
        perm = [0, axis] + [i for i in range(1, len(shape.dims)) if i != axis]
        xt = tf.transpose(x, perm)  # [B, T, ...]
        m = m[:, : tf.shape(xt)[1]]
        pos = tf.cumsum(tf.cast(m, tf.int32), axis=1)  # [B, T]: 1 + index in T' where masked
        new_len = tf.reduce_sum(tf.cast(m, tf.int32), axis=1)
        t_new = tf.reduce_max(tf.concat([new_len, [0]], 0))
        target = tf.where(m, pos - 1, t_new)  # unmasked frames go to a dropped extra row
        b = tf.shape(xt)[0]
        bidx = tf.broadcast_to(tf.range(b)[:, None], tf.shape(target))
        idx = tf.stack([bidx, target], axis=-1)  # [B, T, 2]
        full = tf.concat([[b, t_new + 1], tf.shape(xt)[2:]], 0)
        y = tf.scatter_nd(idx, xt, full)[:, :t_new]
        inverse = [perm.index(i) for i in range(len(perm))]
        y = tf.transpose(y, inverse)
        ctx.set_lengths(ctx.out_shape.dims[axis], new_len)
        return y


class UnmaskRule(LayerRule):
    layer_class = "unmask"
    layer_options = ("mask",)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        mask = _mask_shape(ctx, ctx.in_rec)
        if ctx.in_rec:
            if src.time is not None:
                raise ctx.error(
                    f"inside a rec unit `unmask` reads the per-step output of a "
                    f"`masked_computation` in the same unit; `{', '.join(ctx.source_names)}`"
                    f" {src} has a time axis (a masked computation outside the "
                    f"loop read per step is not supported)",
                    "from",
                    "shape.unsupported",
                )
            return src
        t = mask.dims[1]
        if src.has(t):  # already over the original frames
            return src
        packed = src.time
        if packed is None or not src.dims or src.dims[0].kind != BATCH:
            raise ctx.error(
                f"`unmask` needs an input with a batch and a (masked) time axis, got {src}",
                "from",
                "shape.masked-computation",
            )
        return Shape(tuple(t if d is packed else d for d in src.dims), src.sparse_dim, src.dtype)

    def guess_step_shape(self, ctx) -> Shape | None:
        return None

    def call(self, ctx):
        import tensorflow as tf

        x, shape = ctx.source, ctx.source_shape
        if ctx.in_rec or shape == ctx.out_shape:
            return tf.identity(x)
        t = ctx.ref_shape("mask").dims[1]
        packed = shape.time
        axis = shape.index(packed)
        mask = tf.cast(ctx.ref("mask"), tf.bool)
        m = tf.logical_and(mask, tf.sequence_mask(ctx.lengths(t), tf.shape(mask)[1]))
        pos = tf.cumsum(tf.cast(m, tf.int32), axis=1)  # [B, T]: masked frames so far
        perm = [0, axis] + [i for i in range(1, len(shape.dims)) if i != axis]
        xt = tf.transpose(x, perm)  # [B, T', ...]
        init = unit_initial_output(ctx.source_opts[0]) if ctx.source_opts else 0.0
        first = tf.fill(
            tf.concat([tf.shape(xt)[:1], [1], tf.shape(xt)[2:]], 0), tf.cast(init, xt.dtype)
        )
        xt = tf.concat([first, xt], axis=1)  # [B, 1 + T', ...]
        pos = tf.minimum(pos, tf.shape(xt)[1] - 1)
        y = tf.gather(xt, pos, axis=1, batch_dims=1)  # [B, T, ...]
        valid = tf.sequence_mask(ctx.lengths(t), tf.shape(mask)[1])
        valid = tf.reshape(
            valid, tf.concat([tf.shape(valid), tf.ones([len(shape.dims) - 2], tf.int32)], 0)
        )
        y = tf.where(valid, y, tf.zeros_like(y))
        inverse = [perm.index(i) for i in range(len(perm))]
        return tf.transpose(y, inverse)
