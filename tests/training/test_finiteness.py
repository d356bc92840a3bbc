"""The NaN/inf guard of a training step: the flag computed in the step (`all_finite`, one sum
per variable) and how the trainer uses it: a flag that is only conservative (a sum that
overflows although every value is finite) does not stop a run; a real NaN does, by name."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer_setup import first_train_batch, tiny_12ax_config, trainer_from_yaml  # noqa: E402

from netcompiler.training.finiteness import NonFiniteWeights, all_finite  # noqa: E402

pytestmark = pytest.mark.tf

CONFIG = tiny_12ax_config(
    """
  embed: {class: linear, from: data, n_out: 8, with_bias: false}
  hidden: {class: linear, from: embed, n_out: 8, activation: tanh}
  output: {class: softmax, from: hidden, loss: ce, target: classes}
"""
)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([[1.0, -2.0], [3.0]], True),
        ([[1.0, np.nan], [3.0]], False),
        ([[1.0, 2.0], [-np.inf]], False),
        ([[np.inf], [-np.inf]], False),  # inf - inf: NaN, still not finite
        ([[3e38, 3e38], [1.0]], False),  # finite, but the sum overflows: conservative
        ([[3e38], [-3e38]], True),  # sums of the variables cancel: no overflow
    ],
)
def test_all_finite_flag(values, expected):
    variables = [tf.Variable(np.array(v, np.float32)) for v in values]
    assert bool(tf.function(lambda: all_finite(variables))()) is expected
    assert bool(all_finite(variables)) is expected


def test_all_finite_of_no_variables_and_of_mixed_dtypes():
    assert bool(all_finite([]))
    mixed = [tf.Variable([1.0, 2.0], dtype=tf.float64), tf.Variable([3.0], dtype=tf.float32)]
    assert bool(all_finite(mixed))


def test_a_step_sets_the_flag_and_a_conservative_flag_does_not_stop(tmp_path):
    trainer = trainer_from_yaml(tmp_path, CONFIG)
    batch = first_train_batch(trainer)
    trainer._train_step(batch, 1, 1)
    assert bool(trainer.variables_finite.numpy())
    # huge but finite weights: the step's flag is false (the sum overflows), the exact check
    # finds nothing, and the run goes on
    big = next(v for v in trainer.trainable if v.shape.rank == 2)
    saved = big.numpy()
    big.assign(np.full(big.shape, 3e37, np.float32))
    trainer.variables_finite.assign(bool(all_finite([big])))
    assert not bool(trainer.variables_finite.numpy())
    assert trainer.nonfinite_variables() == []
    big.assign(saved)
    trainer._train_step(batch, 1, 2)  # runs and does not raise
    # a NaN in a weight after a step with a finite loss stops the run and names it
    nan_weights = saved.copy()
    nan_weights[0, 0] = np.nan
    step_fn = trainer._train_fn

    def step_then_poison(b):
        stats = step_fn(b)
        big.assign(nan_weights)
        trainer.variables_finite.assign(False)
        return stats

    trainer._train_fn = step_then_poison
    with pytest.raises(NonFiniteWeights) as err:
        trainer._train_step(batch, 1, 3)
    name = next(n for n, v in trainer.checked_variables if v is big)
    assert name in str(err.value)
    assert "epoch 1, step 3" in str(err.value)


def test_all_finite_over_variables_of_every_rank():
    """One reduction-axes constant per rank: scalars, vectors, matrices and rank-3 variables
    each summed whole."""
    shapes = [(), (3,), (2, 2), (2, 1, 3)]
    for bad in range(len(shapes)):
        variables = [tf.Variable(np.ones(s, np.float32)) for s in shapes]
        assert bool(all_finite(variables))
        poisoned = np.ones(shapes[bad], np.float32)
        poisoned.flat[-1] = np.nan
        variables[bad].assign(poisoned)
        assert not bool(tf.function(lambda v=variables: all_finite(v))())
