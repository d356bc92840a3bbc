"""Dynamic loss scaling for `train.precision: mixed_float16`.

float16 has a small exponent range: gradients of small losses underflow to zero in the float16
products of the backward pass. So the objective is multiplied by a loss scale before the
gradients are taken, and the gradients divided by it afterwards; Keras's `LossScaleOptimizer`
keeps the scale (halved, and the update skipped, when a gradient is not finite; doubled after
a run of finite steps). bfloat16 has float32's exponent range and float32 needs nothing: for
them the optimizer stays as it is and every function here is the identity.

The trainer's gradient handling (accumulation, noise, clipping) works on true gradients, so
they are unscaled right after `tape.gradient` (`unscaled_gradients`) and scaled again just
before the update (`rescaled_gradients`), which Keras's optimizer divides by the scale once
more. The scale is a power of two, so both are exact. Checkpoints hold the wrapped optimizer
(`checkpointed_optimizer`), so they have the same layout in every precision. TensorFlow is
imported lazily.
"""

from __future__ import annotations


def with_loss_scaling(optimizer, precision: str):
    """The optimizer to train with in `precision`: wrapped in a dynamically scaled
    `LossScaleOptimizer` for mixed_float16, else `optimizer` itself."""
    import tensorflow as tf

    from netcompiler.backend.compute import uses_loss_scaling

    if not uses_loss_scaling(precision):
        return optimizer
    return tf.keras.mixed_precision.LossScaleOptimizer(optimizer)


def loss_scale(optimizer):
    """The current loss scale (a float32 variable), None without loss scaling."""
    import tensorflow as tf

    if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


def scaled_objective(optimizer, objective):
    """The objective to differentiate: times the loss scale where there is one."""
    scale = loss_scale(optimizer)
    return objective if scale is None else objective * scale


def unscaled_gradients(optimizer, grads):
    """Gradients of `scaled_objective` divided by the loss scale (the true gradients)."""
    scale = loss_scale(optimizer)
    return grads if scale is None else [g / scale for g in grads]


def rescaled_gradients(optimizer, grads):
    """True gradients multiplied by the loss scale again, as `LossScaleOptimizer`'s update
    expects them (it divides by the scale and skips the update if any is not finite)."""
    scale = loss_scale(optimizer)
    return grads if scale is None else [g * scale for g in grads]


def checkpointed_optimizer(optimizer):
    """The optimizer as checkpoints hold it: under a loss scale, the optimizer it wraps. So
    checkpoints of every precision have one layout, and float32, mixed_bfloat16 and
    mixed_float16 runs resume each other's. The loss scale itself is not saved: a resumed
    mixed_float16 run starts again at Keras's initial scale (2**15) and adapts as before (halved,
    and the step skipped, on the first non-finite gradient)."""
    return optimizer.inner_optimizer if loss_scale(optimizer) is not None else optimizer
