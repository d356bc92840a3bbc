"""RETURNN's per-entry gradient options (`train.gradient_noise`, `train.gradient_clip_value`).

Applied by the trainer to the gradient of the whole batch (summed over replicas), in RETURNN's
order: noise first, then the per-entry clip; the global-norm `train.gradient_clip` comes after.
"""

from __future__ import annotations

#: mixes the variable index into the noise seed
_VARIABLE_SALT = 1000003
_NOISE_SALT = 0x6E6F697365  # "noise": keeps the noise seeds apart from the dropout seeds


def noise_seed(random_seed: int, index: int, step):
    """The stateless seed [2] of the noise of variable `index` at optimizer step `step`."""
    import tensorflow as tf

    first = (int(random_seed) * _VARIABLE_SALT + _NOISE_SALT + 7919 * int(index)) % (2**63)
    return tf.stack([tf.constant(first, tf.int64), tf.cast(step, tf.int64)])


def gradient_post_process(
    grads, noise: float | None, clip_value: float | None, random_seed: int, step
):
    """Add truncated-normal noise (stddev `noise`, cut at 2 stddev as tf.truncated_normal;
    0/None: none) to every gradient, then clip every entry to [-clip_value, clip_value]
    (0/None: no clip). The noise is a pure function of (random_seed, variable index, step)."""
    import tensorflow as tf

    out = []
    for i, g in enumerate(grads):
        if noise:
            g = g + tf.random.stateless_truncated_normal(
                tf.shape(g),
                seed=noise_seed(random_seed, i, step),
                stddev=float(noise),
                dtype=g.dtype,
            )
        if clip_value:
            g = tf.clip_by_value(g, -float(clip_value), float(clip_value))
        out.append(g)
    return out
