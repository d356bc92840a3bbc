"""`FusedAdam` (issue 12): Keras's Adam with the per-variable update as `ResourceApplyAdam`.

- the updates equal a NumPy Adam (the formula of the module docstring, in float64) and Keras's
  own Adam, eagerly and traced, over steps of varying gradients on variables of two shapes;
- the step constants cached per traced graph do not leak into another trace;
- `amsgrad=True` is Keras's update exactly;
- the checkpoints have Keras's layout: a FusedAdam checkpoint restores into a Keras Adam and
  back, with every value matched and no extra dependency;
- `make_optimizer({"class": "adam"}, lr)` gives a FusedAdam with the options asked for.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.training.fused_adam import FusedAdam  # noqa: E402
from netcompiler.training.step import make_optimizer  # noqa: E402

pytestmark = pytest.mark.tf

SHAPES = ((3, 4), (5,))
#: not Keras's defaults, so that an option the fused kernel ignored would show
OPTIONS = {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-3}
STEPS = 5
RTOL = 1e-6


def initial_values(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]


def gradient_steps(steps: int = STEPS, seed: int = 1) -> list[list[np.ndarray]]:
    """Per step one gradient per variable, of varying size and sign."""
    rng = np.random.default_rng(seed)
    return [
        [(rng.normal(size=shape) * (1 + step)).astype(np.float32) for shape in SHAPES]
        for step in range(steps)
    ]


def numpy_adam(values, steps, learning_rate, beta_1, beta_2, epsilon):
    """The variables after Adam's updates with these gradients, in float64:
    alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t), m <- m + (g - m)(1 - beta_1),
    v <- v + (g^2 - v)(1 - beta_2), var <- var - alpha m / (sqrt(v) + epsilon)."""
    values = [np.asarray(x, np.float64) for x in values]
    m = [np.zeros_like(x) for x in values]
    v = [np.zeros_like(x) for x in values]
    for t, grads in enumerate(steps, 1):
        alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            m[i] = m[i] + (g - m[i]) * (1 - beta_1)
            v[i] = v[i] + (g * g - v[i]) * (1 - beta_2)
            values[i] = values[i] - alpha * m[i] / (np.sqrt(v[i]) + epsilon)
    return values


def new_variables(seed: int = 0) -> list:
    return [tf.Variable(x) for x in initial_values(seed)]


def apply_function(optimizer, variables, traced: bool):
    """A function applying one step of gradients (a list of arrays) to `variables`."""

    def apply(*grads):
        optimizer.apply_gradients(zip(grads, variables))

    return tf.function(apply) if traced else apply


def train(optimizer, steps, traced: bool, seed: int = 0) -> list[np.ndarray]:
    variables = new_variables(seed)
    apply = apply_function(optimizer, variables, traced)
    for grads in steps:
        apply(*[tf.constant(g) for g in grads])
    assert int(optimizer.iterations.numpy()) == len(steps)
    return [v.numpy() for v in variables]


def assert_all_close(got, want, rtol=RTOL):
    """Equal within `rtol` of each array's largest value: a value that the steps brought near
    zero keeps the float32 rounding errors of its larger neighbours' scale."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


# -- the update ----------------------------------------------------------------------------------
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
def test_matches_numpy_adam_and_keras_adam(traced):
    steps = gradient_steps()
    want = numpy_adam(initial_values(), steps, **OPTIONS)
    got = train(FusedAdam(**OPTIONS), steps, traced)
    # the variables did move: several learning rates away from where they started
    assert all(np.abs(a - b).max() > 0.1 for a, b in zip(got, initial_values()))
    assert_all_close(got, want)
    keras = train(tf.keras.optimizers.Adam(**OPTIONS), steps, traced)
    assert_all_close(got, keras)


def test_defaults_match_keras_adam():
    steps = gradient_steps(seed=4)
    got = train(FusedAdam(learning_rate=0.01), steps, traced=True)
    assert_all_close(got, train(tf.keras.optimizers.Adam(learning_rate=0.01), steps, True))
    assert_all_close(got, numpy_adam(initial_values(), steps, 0.01, 0.9, 0.999, 1e-7))


def test_two_traces_and_eager_steps_in_turn_are_each_correct():
    # the beta powers are cached per traced graph: a second trace (another function, or the
    # same one retraced for a new input signature) must build its own, not reuse the first's
    steps = gradient_steps(steps=7, seed=2)
    optimizer = FusedAdam(**OPTIONS)
    variables = new_variables()
    first = apply_function(optimizer, variables, traced=True)
    second = apply_function(optimizer, variables, traced=True)
    eager = apply_function(optimizer, variables, traced=False)

    @tf.function
    def retraced(*grads):  # traced once per gradient dtype
        optimizer.apply_gradients(zip([tf.cast(g, tf.float32) for g in grads], variables))

    order = [first, second, first, eager, second, retraced, retraced]
    for t, (apply, grads) in enumerate(zip(order, steps), 1):
        dtype = np.float64 if t == len(steps) else np.float32  # the last step: a new trace
        apply(*[tf.constant(g.astype(dtype)) for g in grads])
        want = numpy_adam(initial_values(), steps[:t], **OPTIONS)
        assert_all_close([v.numpy() for v in variables], want)
    assert retraced.experimental_get_tracing_count() == 2
    assert int(optimizer.iterations.numpy()) == len(steps)


def test_two_steps_in_one_trace_are_each_correct():
    steps = gradient_steps(steps=2, seed=8)
    optimizer = FusedAdam(**OPTIONS)
    variables = new_variables()

    @tf.function
    def two_steps(first, second):
        optimizer.apply_gradients(zip(first, variables))
        optimizer.apply_gradients(zip(second, variables))

    two_steps(*steps)
    assert int(optimizer.iterations.numpy()) == 2
    assert_all_close([v.numpy() for v in variables], numpy_adam(initial_values(), steps, **OPTIONS))


def test_learning_rate_changed_between_steps_is_used():
    # the learning rate is a variable read at each step (the trainer's learning-rate control
    # assigns it between epochs), not a constant of the trace
    steps = gradient_steps(steps=2, seed=3)
    optimizer = FusedAdam(**OPTIONS)
    variables = new_variables()
    apply = apply_function(optimizer, variables, traced=True)
    apply(*steps[0])
    optimizer.learning_rate.assign(0.2)
    apply(*steps[1])
    values = numpy_adam(initial_values(), steps[:1], **OPTIONS)
    # the second step by hand, with the first step's moments
    reference = tf.keras.optimizers.Adam(**OPTIONS)
    keras_variables = new_variables()
    keras_apply = apply_function(reference, keras_variables, traced=True)
    keras_apply(*steps[0])
    assert_all_close([v.numpy() for v in keras_variables], values)
    reference.learning_rate.assign(0.2)
    keras_apply(*steps[1])
    assert_all_close([v.numpy() for v in variables], [v.numpy() for v in keras_variables])
    with_old_rate = numpy_adam(initial_values(), steps, **OPTIONS)
    assert not np.allclose(variables[0].numpy(), with_old_rate[0], rtol=1e-3)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
def test_amsgrad_is_keras_update_exactly(traced):
    steps = gradient_steps(seed=5)
    got = train(FusedAdam(amsgrad=True, **OPTIONS), steps, traced)
    want = train(tf.keras.optimizers.Adam(amsgrad=True, **OPTIONS), steps, traced)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # and amsgrad does change the result here (the velocity falls in some steps)
    plain = numpy_adam(initial_values(), steps, **OPTIONS)
    assert any(not np.allclose(a, b, rtol=1e-4) for a, b in zip(got, plain))


# -- checkpoints ---------------------------------------------------------------------------------
def trained_optimizer(cls, steps):
    """(an optimizer of class `cls` after `steps`, its variables)."""
    optimizer = cls(**OPTIONS)
    variables = new_variables()
    apply = apply_function(optimizer, variables, traced=True)
    for grads in steps:
        apply(*grads)
    return optimizer, variables


def fresh_optimizer(cls):
    """An optimizer of class `cls` with its slots built for new variables (other values)."""
    optimizer = cls(**OPTIONS)
    variables = new_variables(seed=9)
    optimizer.build(variables)
    return optimizer, variables


def optimizer_values(optimizer) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in optimizer.variables]


@pytest.mark.parametrize(
    "source, target",
    [(FusedAdam, tf.keras.optimizers.Adam), (tf.keras.optimizers.Adam, FusedAdam)],
    ids=["fused-to-keras", "keras-to-fused"],
)
def test_checkpoint_restores_across_keras_adam(tmp_path, source, target):
    steps = gradient_steps(steps=4, seed=6)
    written, written_vars = trained_optimizer(source, steps[:3])
    path = tf.train.Checkpoint(optimizer=written).save(str(tmp_path / "ckpt"))

    restored, restored_vars = fresh_optimizer(target)
    before = optimizer_values(restored)
    tf.train.Checkpoint(optimizer=restored).restore(path).assert_consumed()
    # iterations, learning rate, both slots of both variables (and the variables): equal
    after, want = optimizer_values(restored), optimizer_values(written)
    assert len(after) == len(want) == 2 + 2 * len(SHAPES)
    assert any(not np.array_equal(a, b) for a, b in zip(before, want))
    for a, b in zip(after, want):
        np.testing.assert_array_equal(a, b)
    assert int(restored.iterations.numpy()) == 3
    for a, b in zip(restored_vars, written_vars):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    # and the restored optimizer carries on as the original would (step 4, t = 4)
    apply_function(restored, restored_vars, traced=True)(*steps[3])
    want = numpy_adam(initial_values(), steps, **OPTIONS)
    assert_all_close([v.numpy() for v in restored_vars], want)


def test_checkpoint_has_keras_adam_layout(tmp_path):
    steps = gradient_steps(steps=2, seed=7)
    keys = {}
    for cls in (FusedAdam, tf.keras.optimizers.Adam):
        optimizer, _ = trained_optimizer(cls, steps)
        path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / cls.__name__))
        keys[cls] = dict(tf.train.list_variables(path))
    fused, keras = keys[FusedAdam], keys[tf.keras.optimizers.Adam]
    assert fused == keras  # the same keys with the same shapes: no extra dependency
    slots = [k for k in fused if k.startswith("optimizer/_variables/")]
    assert len(slots) == 2 * len(SHAPES)


def test_traced_step_leaves_no_tracked_attribute(tmp_path):
    # the per-graph cache is set during tracing; Keras must not track (and checkpoint) it
    optimizer, _ = trained_optimizer(FusedAdam, gradient_steps(steps=1))
    assert optimizer.__dict__.get("_step_constant_cache") is not None
    path = tf.train.Checkpoint(optimizer=optimizer).save(str(tmp_path / "ckpt"))
    assert not [k for k in dict(tf.train.list_variables(path)) if "cache" in k.lower()]
    reference, _ = fresh_optimizer(tf.keras.optimizers.Adam)
    tf.train.Checkpoint(optimizer=reference).restore(path).assert_consumed()


# -- make_optimizer ------------------------------------------------------------------------------
def test_make_optimizer_gives_fused_adam_with_the_options():
    optimizer = make_optimizer({"class": "adam"}, 1e-3)
    assert type(optimizer) is FusedAdam
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    defaults = tf.keras.optimizers.Adam()
    assert (optimizer.epsilon, optimizer.beta_1, optimizer.beta_2) == (
        defaults.epsilon,
        defaults.beta_1,
        defaults.beta_2,
    )
    assert type(make_optimizer(None, 0.1)) is FusedAdam  # adam is the default
    spec = {"class": "adam", "epsilon": 1e-8, "beta_1": 0.85, "beta_2": 0.98}
    optimizer = make_optimizer(spec, 0.02)
    assert type(optimizer) is FusedAdam
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.02)
    assert (optimizer.epsilon, optimizer.beta_1, optimizer.beta_2) == (1e-8, 0.85, 0.98)
    assert not optimizer.amsgrad
    assert type(make_optimizer({"class": "nadam"}, 0.1)) is tf.keras.optimizers.Nadam
