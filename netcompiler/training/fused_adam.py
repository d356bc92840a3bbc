"""Adam with TensorFlow's fused update kernel.

Keras's Adam updates each variable with about ten element-wise operations (read the slots,
subtract, multiply, square, assign, ...): ten passes over the variable's memory per step, and
about twenty graph nodes per variable for the tracer and Grappler to process before the first
step. `FusedAdam` keeps Keras's optimizer (its slots, `iterations`, learning rate, loss scaling,
checkpoint layout) and replaces only the per-variable update with one `ResourceApplyAdam`, the
kernel of TensorFlow's own Adam (and of RETURNN's): the same formula,

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m <- m + (g - m) * (1 - beta_1)        v <- v + (g^2 - v) * (1 - beta_2)
    var <- var - alpha * m / (sqrt(v) + epsilon)

in one pass. `amsgrad` keeps Keras's update (the kernel has no `v_hat`).
"""

from __future__ import annotations

import tensorflow as tf


class FusedAdam(tf.keras.optimizers.Adam):
    def apply(self, grads, trainable_variables=None):
        # the step constants are shared by the variables of one update, never by two updates
        # (two steps traced into one function read `iterations` anew)
        self._step_constant_cache = None
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        beta1_power, beta2_power, beta_1, beta_2, epsilon = self._step_constants(dtype)
        if learning_rate.dtype != dtype:
            learning_rate = tf.cast(learning_rate, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(m),
            v=_handle(v),
            beta1_power=beta1_power,
            beta2_power=beta2_power,
            lr=learning_rate,
            beta1=beta_1,
            beta2=beta_2,
            epsilon=epsilon,
            grad=gradient if gradient.dtype == dtype else tf.cast(gradient, dtype),
        )

    def _step_constants(self, dtype):
        """(beta_1^t, beta_2^t, beta_1, beta_2, epsilon) of this step: computed once per
        traced step and dtype and shared by all variables (eagerly: at every call)."""
        if tf.executing_eagerly():
            return self._new_step_constants(dtype)
        cache = getattr(self, "_step_constant_cache", None)
        graph = tf.compat.v1.get_default_graph()
        if cache is None or cache.graph is not graph:
            cache = _StepConstantCache(graph)
            # a plain object: Keras does not track it (a dict attribute would be checkpointed)
            self._step_constant_cache = cache
        if dtype not in cache.by_dtype:
            cache.by_dtype[dtype] = self._new_step_constants(dtype)
        return cache.by_dtype[dtype]

    def _new_step_constants(self, dtype):
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        epsilon = tf.cast(self.epsilon, dtype)
        return tf.pow(beta_1, step), tf.pow(beta_2, step), beta_1, beta_2, epsilon


class _StepConstantCache:
    """The step constants of one traced graph, by dtype."""

    def __init__(self, graph):
        self.graph = graph
        self.by_dtype: dict = {}


def _handle(variable):
    """The resource handle of a tf.Variable, or of a Keras variable's tf.Variable."""
    if isinstance(variable, tf.keras.Variable):
        variable = variable.value
    return variable.handle
