"""self_attention over a batch with a sequence of length 0 (issue 12: additive masking).

The energies of masked keys get the dtype's lowest value added. A query with no valid key at
all (only the frames of a sequence of length 0) then weighs every key alike: its output is the
mean of the values, finite padding, and neither it nor its gradient reaches the other
sequences. The valid frames equal the NumPy reference (tests/numpy_reference.py).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402

import numpy_reference as ref  # noqa: E402

pytestmark = pytest.mark.tf

H, DK, DV, N_IN = 2, 8, 6, 5
LENGTHS = np.array([0, 5, 3], np.int32)
T = 6  # > max(LENGTHS): every sequence has padding


def compile_attention(left_only: bool):
    layer = {
        "class": "self_attention",
        "from": "data",
        "num_heads": H,
        "total_key_dim": DK,
        "n_out": DV,
        "attention_left_only": left_only,
    }
    config = {"extern_data": {"data": {"dim": N_IN}}, "network": {"output": layer}}
    return netcompiler.compile(config, seed=4)


def ragged_input(seed: int = 0) -> np.ndarray:
    """[B, T, N_IN] with random values in the padding too (large ones: they must not leak)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(LENGTHS), T, N_IN)).astype(np.float32)
    padding = ~ref.valid_mask(LENGTHS, T)
    x[padding] = rng.normal(size=(int(padding.sum()), N_IN)).astype(np.float32) * 100
    return x


def attend(net, x, lengths) -> np.ndarray:
    values, _ = net(inputs={"data": x}, lengths={"data": lengths}, fetch=["output"])["output"]
    return values.numpy()


def valid_frames_sum_and_gradient(net, x, lengths):
    """(sum of the output over the valid frames, its gradient w.r.t. the QKV variable)."""
    qkv = net.variable("output/QKV")
    inputs, lens = net.prepare_inputs({"data": x}, {"data": lengths})
    with tf.GradientTape() as tape:
        out, _ = net.forward(inputs, lens, training=False, fetch=["output"])["output"]
        mask = tf.sequence_mask(lens["data"], tf.shape(out)[1], dtype=out.dtype)
        total = tf.reduce_sum(out * mask[:, :, None])
    return total.numpy(), tape.gradient(total, qkv).numpy()


@pytest.mark.parametrize("left_only", [False, True], ids=["full", "left_only"])
def test_length_zero_sequence_gives_finite_padding_and_exact_valid_frames(left_only):
    net = compile_attention(left_only)
    x = ragged_input()
    got = attend(net, x, LENGTHS)
    assert got.shape == (len(LENGTHS), T, DV)
    assert np.isfinite(got).all()

    qkv = net.variable("output/QKV").numpy()
    want = ref.self_attention(x, LENGTHS, qkv, H, DK, DV, left_only=left_only)
    valid = ref.valid_mask(LENGTHS, T)
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-5, atol=1e-5)

    # the other sequences do not see the empty one: alone in a batch they come out the same
    alone = attend(net, x[1:], LENGTHS[1:])
    np.testing.assert_allclose(got[1:][valid[1:]], alone[valid[1:]], rtol=1e-6, atol=1e-6)


def test_query_without_a_valid_key_gets_the_mean_of_the_values():
    net = compile_attention(left_only=False)
    x = ragged_input(seed=1)
    got = attend(net, x, LENGTHS)
    qkv = net.variable("output/QKV").numpy()
    _, _, v = ref.split_qkv_heads(x @ qkv, H, DK, DV)  # [B, H, T, dv]
    mean = v[0].mean(axis=1).reshape(H * (DV // H))  # every key alike, heads in order
    np.testing.assert_allclose(got[0], np.broadcast_to(mean, (T, DV)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("left_only", [False, True], ids=["full", "left_only"])
def test_gradients_through_a_batch_with_an_empty_sequence(left_only):
    net = compile_attention(left_only)
    x = ragged_input(seed=2)
    total, gradient = valid_frames_sum_and_gradient(net, x, LENGTHS)
    assert np.isfinite(total) and np.isfinite(gradient).all()
    assert np.abs(gradient).max() > 0
    # the empty sequence adds nothing, to the sum or to the gradient
    total_alone, gradient_alone = valid_frames_sum_and_gradient(net, x[1:], LENGTHS[1:])
    np.testing.assert_allclose(total, total_alone, rtol=1e-5)
    np.testing.assert_allclose(gradient, gradient_alone, rtol=1e-5, atol=1e-5)

    # and it is the reference's: central differences of the float64 sum over valid frames
    qkv = net.variable("output/QKV").numpy().astype(np.float64)
    valid = ref.valid_mask(LENGTHS, T)[:, :, None]

    def reference_sum(weights):
        return (
            ref.self_attention(x, LENGTHS, weights, H, DK, DV, left_only=left_only) * valid
        ).sum()

    step = 1e-4
    numeric = np.zeros_like(qkv)
    for index in np.ndindex(qkv.shape):
        shift = np.zeros_like(qkv)
        shift[index] = step
        numeric[index] = (reference_sum(qkv + shift) - reference_sum(qkv - shift)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-3)
