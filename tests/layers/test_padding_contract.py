"""The padding contract of position-wise layers (semantics.md: values at padded frames must be
finite, and nothing at a valid frame may depend on them).

`layer_norm`, `combine` (add/sub/mul/maximum/minimum/average), `activation` and `gating` with
activations that keep finite values finite do not zero their padded frames (issue 12: a pass
over the output and another over its gradient, for nothing the contract asks). Checked here:

- their padded frames are what the formula gives there (no mask: NumPy on the padded input
  frames), and finite;
- where a finite input can give NaN or inf (`truediv`, `eval`, `exp`/`log`/`sqrt`), the padded
  frames are still set to 0;
- a pre-norm self-attention block gives the same valid frames and the same gradients of a
  loss over its valid frames whether the input's padding holds zeros or large random values.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402

import numpy_reference as ref  # noqa: E402

pytestmark = pytest.mark.tf

F = 6
LENGTHS = np.array([5, 2, 4], np.int32)
T = 6  # > max(LENGTHS): every sequence has padding


def padded_input(seed: int, scale: float, positive: bool = False) -> np.ndarray:
    """[B, T, F] normal values; the padded frames `scale` times larger (or zero for 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(LENGTHS), T, F)).astype(np.float32)
    padding = ~ref.valid_mask(LENGTHS, T)
    x[padding] = rng.normal(size=(int(padding.sum()), F)).astype(np.float32) * scale
    return np.abs(x) + 0.5 if positive else x


def compile_net(network: dict, inputs=("data",)):
    extern = {key: {"dim": F} for key in inputs}
    for key in inputs[1:]:
        extern[key]["same_time_as"] = inputs[0]  # one time axis, not a broadcast of two
    return netcompiler.compile({"extern_data": extern, "network": network}, seed=3)


def run(net, feeds: dict) -> np.ndarray:
    lengths = {key: LENGTHS for key in feeds}
    values, _ = net(inputs=feeds, lengths=lengths, fetch=["output"])["output"]
    return values.numpy()


PADDING = ~ref.valid_mask(LENGTHS, T)


def test_layer_norm_leaves_padding_as_computed():
    net = compile_net({"output": {"class": "layer_norm", "from": "data"}})
    x = padded_input(0, 50.0)
    got = run(net, {"data": x})
    scale, bias = net.variable("output/scale").numpy(), net.variable("output/bias").numpy()
    want = ref.layer_norm(x, scale, bias)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # padded frames included
    assert np.isfinite(got).all()
    assert np.abs(got[PADDING]).max() > 0.1  # not zeroed


@pytest.mark.parametrize(
    "kind, numpy_fn",
    [
        ("add", np.add),
        ("sub", np.subtract),
        ("mul", np.multiply),
        ("maximum", np.maximum),
        ("minimum", np.minimum),
        ("average", lambda a, b: (a + b) / 2),
    ],
)
def test_finite_combines_leave_padding_as_computed(kind, numpy_fn):
    net = compile_net(
        {"output": {"class": "combine", "kind": kind, "from": ["data:a", "data:b"]}},
        inputs=("a", "b"),
    )
    a, b = padded_input(1, 30.0), padded_input(2, 30.0)
    got = run(net, {"a": a, "b": b})
    np.testing.assert_allclose(got, numpy_fn(a, b), rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all() and np.abs(got[PADDING]).max() > 1.0


@pytest.mark.parametrize("name", ["relu", "tanh", "2*sigmoid", "gelu", "softplus", "square"])
def test_finite_activations_leave_padding_as_computed(name):
    net = compile_net({"output": {"class": "activation", "from": "data", "activation": name}})
    x = padded_input(3, 5.0)
    got = run(net, {"data": x})
    scale, base = (2.0, "sigmoid") if name == "2*sigmoid" else (1.0, name)
    np.testing.assert_allclose(got, scale * ref.activation(base, x), rtol=1e-4, atol=1e-5)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("name", ["sqrt", "log", "exp"])
def test_activations_that_can_leave_finite_values_are_masked(name):
    net = compile_net({"output": {"class": "activation", "from": "data", "activation": name}})
    x = padded_input(4, 200.0)  # negative padding (sqrt, log -> NaN), large (exp -> inf)
    valid = ~PADDING
    x[valid] = np.abs(x[valid]) + 0.5  # valid frames in the functions' domain
    got = run(net, {"data": x})
    np.testing.assert_allclose(got[valid], ref.activation(name, x[valid]), rtol=1e-5)
    assert (got[PADDING] == 0).all()


@pytest.mark.parametrize(
    "layer",
    [
        {"class": "combine", "kind": "truediv", "from": ["data:a", "data:b"]},
        {"class": "eval", "from": ["data:a", "data:b"], "eval": "source(0) / source(1)"},
    ],
    ids=["truediv", "eval"],
)
def test_divisions_are_masked(layer):
    net = compile_net({"output": layer}, inputs=("a", "b"))
    a, b = padded_input(5, 10.0, positive=True), padded_input(6, 10.0, positive=True)
    b[PADDING] = 0.0  # x / 0 at every padded frame
    got = run(net, {"a": a, "b": b})
    valid = ~PADDING
    np.testing.assert_allclose(got[valid], a[valid] / b[valid], rtol=1e-5)
    assert (got[PADDING] == 0).all()


def test_gating_leaves_padding_as_computed():
    net = compile_net({"output": {"class": "gating", "from": "data"}})
    x = padded_input(7, 20.0)
    got = run(net, {"data": x})
    a, g = x[..., : F // 2], x[..., F // 2 :]  # tanh(a) * sigmoid(g), the defaults
    want = ref.activation("tanh", a) * ref.activation("sigmoid", g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()


BLOCK = {
    "ln1": {"class": "layer_norm", "from": "data"},
    "att": {"class": "self_attention", "from": "ln1", "num_heads": 2, "total_key_dim": 8,
            "n_out": F},
    "res1": {"class": "combine", "kind": "add", "from": ["data", "att"]},
    "ln2": {"class": "layer_norm", "from": "res1"},
    "ff": {"class": "linear", "from": "ln2", "n_out": 12, "activation": "relu"},
    "ff2": {"class": "linear", "from": "ff", "n_out": F},
    "output": {"class": "combine", "kind": "add", "from": ["res1", "ff2"]},
}  # fmt: skip


def valid_loss_and_gradients(net, x):
    inputs, lengths = net.prepare_inputs({"data": x}, {"data": LENGTHS})
    variables = sorted(net.variables_by_name.items())
    with tf.GradientTape() as tape:
        out, _ = net.forward(inputs, lengths, training=False, fetch=["output"])["output"]
        mask = tf.sequence_mask(lengths["data"], tf.shape(out)[1], dtype=out.dtype)
        loss = tf.reduce_sum(tf.square(out) * mask[:, :, None])
    grads = tape.gradient(loss, [v for _, v in variables])
    return out.numpy(), {n: g.numpy() for (n, _), g in zip(variables, grads)}


def test_pre_norm_block_ignores_padding_values():
    net = compile_net(BLOCK)
    clean = padded_input(8, 0.0)  # zero padding
    noisy = clean.copy()
    noisy[PADDING] = padded_input(9, 1e4)[PADDING]
    out_clean, grads_clean = valid_loss_and_gradients(net, clean)
    out_noisy, grads_noisy = valid_loss_and_gradients(net, noisy)
    valid = ~PADDING
    assert np.isfinite(out_noisy).all()
    np.testing.assert_allclose(out_noisy[valid], out_clean[valid], rtol=1e-5, atol=1e-5)
    assert set(grads_clean) == set(grads_noisy) and len(grads_clean) >= 8
    for name, g in grads_clean.items():
        np.testing.assert_allclose(grads_noisy[name], g, rtol=1e-4, atol=1e-5, err_msg=name)
