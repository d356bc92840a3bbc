"""Options every layer has that change what happens around its builder (RETURNN's LayerBase):

- `dropout_noise_shape`: which axes the dropout mask of the `dropout` option broadcasts over.
  RETURNN's default (no option, or an axis the mapping does not name): one mask entry per
  feature, shared over the batch and every other axis (`Data.get_bc_spatial_batch_shape`);
  `{"*": None}` gives every entry its own noise; `{"T": 1}` shares the mask over time. Inside a
  rec unit the per-step shape has no loop axis, but `T` still names it: a mask broadcast over the
  loop axis (the default) is the same at every step, else it is drawn per step.
- `batch_norm`: batch normalisation of the layer's output (after its activation), see
  `batch_norm_params` / `apply_batch_norm` (reusable by a `batch_norm` layer class).

The shape-time half (`check_common_options`, `noise_broadcast`) runs without TensorFlow.
"""

from __future__ import annotations

from typing import Any

from netcompiler.core.dims import FEATURE, Shape
from netcompiler.core.layer_rule import ParamSpec
from netcompiler.layers._axes import resolve_axes

#: batch_norm defaults (RETURNN's current behaviour version: momentum 0.1, statistics updated
#: only in training, the update delayed, param_version 2; netcompiler masks padding by default)
BATCH_NORM_DEFAULTS = {
    "use_shift": True,
    "use_std": True,
    "use_sample": 0.0,
    "force_sample": False,
    "momentum": 0.1,
    "epsilon": 1e-3,
    "update_sample_only_in_training": True,
    "delay_sample_update": True,
    "param_version": 2,
    "gamma_init": 1.0,
    "beta_init": 0.0,
    "masked_time": True,
}


def _stacked(shape: Shape, loop_dim) -> tuple[Shape, int | None]:
    """A per-step shape with the loop axis put back after the batch axis (its index)."""
    if loop_dim is None or shape.has(loop_dim):
        return shape, None
    dims = list(shape.dims)
    at = 1 if dims and dims[0].kind == "batch" else 0
    dims.insert(at, loop_dim)
    return Shape(tuple(dims), shape.sparse_dim, shape.dtype), at


def noise_broadcast(ctx, shape: Shape, opts: dict | None, loop_dim=None) -> tuple[list[bool], bool]:
    """Per axis of `shape`: True where the dropout mask is broadcast (size 1); and whether it is
    broadcast over the loop axis (inside a rec unit, `loop_dim` given; True elsewhere)."""
    full, loop_at = _stacked(shape, loop_dim)
    n = len(full.dims)
    default = [d.kind != FEATURE for d in full.dims]
    explicit: dict[int, bool] = {}
    for key, value in (opts or {}).items():
        bc = value in (1, "x")
        if key == "*":
            default = [bc] * n
            continue
        for i in resolve_axes(ctx, full, key, "dropout_noise_shape"):
            if i in explicit:
                raise ctx.error(
                    f"`dropout_noise_shape`: axis {full.dims[i]} of {full} is named twice",
                    "dropout_noise_shape",
                    "shape.axis",
                )
            explicit[i] = bc
    flags = [explicit.get(i, default[i]) for i in range(n)]
    if loop_at is None:
        return flags, True
    loop_bc = flags.pop(loop_at)
    return flags, loop_bc


def batch_norm_opts(value: Any) -> dict | None:
    """The batch_norm options (defaults filled in), or None when off."""
    if not value:
        return None
    opts = dict(BATCH_NORM_DEFAULTS)
    if isinstance(value, dict):
        opts.update(value)
    return opts


def batch_norm_params(
    n_features: int, opts: dict, prefix: str = "batch_norm/"
) -> dict[str, ParamSpec]:
    """Variables of a batch norm over `n_features` features: moving `mean`/`variance` (not
    trained), `gamma` (use_std) and `beta` (use_shift)."""
    params = {
        f"{prefix}mean": ParamSpec((n_features,), 0.0, trainable=False),
        f"{prefix}variance": ParamSpec((n_features,), 1.0, trainable=False),
    }
    if opts["use_std"]:
        params[f"{prefix}gamma"] = ParamSpec((n_features,), opts["gamma_init"])
    if opts["use_shift"]:
        params[f"{prefix}beta"] = ParamSpec((n_features,), opts["beta_init"])
    return params


def check_common_options(ctx, out: Shape, params: dict) -> None:
    """Shape-time checks of `dropout_noise_shape` and `batch_norm` (adds its variables)."""
    if ctx.opts.get("dropout_noise_shape"):
        for shape in ctx.sources:
            if shape.sparse or shape.dtype != "float32":
                continue  # no dropout on class indices
            noise_broadcast(ctx, shape, ctx.opts["dropout_noise_shape"], ctx.loop_dim)
    opts = batch_norm_opts(ctx.opts.get("batch_norm"))
    if opts is None:
        return
    if ctx.in_rec:
        raise ctx.error(
            "`batch_norm` inside a rec unit is not supported (its statistics would "
            "be updated at every step of the loop)",
            "batch_norm",
            "shape.unsupported",
            hint="put a `batch_norm` option on a layer outside the rec unit",
        )
    if out.sparse or out.feature is None or out.dtype != "float32":
        raise ctx.error(
            f"`batch_norm` needs a float output with a feature axis, `{ctx.name}` is {out}",
            "batch_norm",
            "shape.no-feature",
        )
    clash = [k for k in batch_norm_params(1, opts) if k in params]
    if clash:
        raise ctx.error(
            f"`batch_norm`: `{ctx.name}` already has a variable `{clash[0]}`",
            "batch_norm",
            "shape.batch-norm",
        )
    params.update(batch_norm_params(int(out.feature_size), opts))


# -- TensorFlow (build time) ----------------------------------------------------------------------
def apply_batch_norm(ctx, x, shape: Shape, opts: dict, prefix: str = "batch_norm/"):
    """Batch norm of `x` (axes of `shape`) with RETURNN's semantics; statistics over every axis
    but the feature axis, padded frames excluded with `masked_time`. Updates the moving
    statistics (`ctx.params[prefix + "mean"/"variance"]`) while training (or always with
    `update_sample_only_in_training: false`)."""
    import tensorflow as tf

    p = ctx.params
    mean_var, var_var = p[f"{prefix}mean"], p[f"{prefix}variance"]
    training = bool(ctx.training)
    momentum = float(opts["momentum"])
    use_sample = float(opts["use_sample"])
    force = bool(opts["force_sample"])
    update = (not opts["update_sample_only_in_training"]) or training
    need_cur = update or (use_sample != 1 and (force or training))
    f_axis = shape.index(shape.feature)
    axes = [i for i in range(len(shape.dims)) if i != f_axis]
    cur_mean = cur_var = None
    if need_cur:
        mask = ctx.valid_mask(shape, x) if opts["masked_time"] else None
        if mask is None:
            cur_mean, cur_var = tf.nn.moments(x, axes=axes)
        else:
            m = tf.cast(tf.broadcast_to(mask, tf.shape(x)), x.dtype)
            count = tf.maximum(tf.reduce_sum(m, axis=axes), 1.0)
            cur_mean = tf.reduce_sum(x * m, axis=axes) / count
            centred = (x - _bc(cur_mean, shape, f_axis)) * m
            cur_var = tf.reduce_sum(tf.square(centred), axis=axes) / count
    sample_mean, sample_var = mean_var.read_value(), var_var.read_value()
    if update:
        new_mean = sample_mean + (cur_mean - sample_mean) * momentum
        new_var = sample_var + (cur_var - sample_var) * momentum
        mean_var.assign(new_mean)
        var_var.assign(new_var)
        if not opts["delay_sample_update"]:
            sample_mean, sample_var = new_mean, new_var
    if force or training:
        if use_sample == 1:
            mean, var = sample_mean, sample_var
        elif use_sample == 0:
            mean, var = cur_mean, cur_var
        else:
            mean = (1.0 - use_sample) * cur_mean + use_sample * sample_mean
            var = (1.0 - use_sample) * cur_var + use_sample * sample_var
    else:
        mean, var = sample_mean, sample_var
    y = (x - _bc(mean, shape, f_axis)) * tf.math.rsqrt(
        _bc(var, shape, f_axis) + float(opts["epsilon"])
    )
    if f"{prefix}gamma" in p:
        y = y * _bc(p[f"{prefix}gamma"], shape, f_axis)
    if f"{prefix}beta" in p:
        y = y + _bc(p[f"{prefix}beta"], shape, f_axis)
    return y


def _bc(v, shape: Shape, f_axis: int):
    """A [F] vector broadcast against a tensor of `shape`."""
    import tensorflow as tf

    new = [1] * len(shape.dims)
    new[f_axis] = -1
    return tf.reshape(v, new)
