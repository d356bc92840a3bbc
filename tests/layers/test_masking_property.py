"""Masking property (hypothesis): for random batch sizes, lengths and padding, the outputs at
valid frames do not change when the padding holds other values or the batch is padded further.
The conformance battery checks every layer class on fixed cases; this draws the cases."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402

NETWORKS = {
    "self_attention": {
        "output": {
            "class": "self_attention",
            "from": "data",
            "n_out": 4,
            "num_heads": 2,
            "total_key_dim": 4,
        }
    },
    "causal_self_attention_rel_pos": {
        "rel": {"class": "relative_positional_encoding", "from": "data", "n_out": 2},
        "output": {
            "class": "self_attention",
            "from": "data",
            "n_out": 4,
            "num_heads": 2,
            "total_key_dim": 4,
            "attention_left_only": True,
            "key_shift": "rel",
        },
    },
    "generic_attention": {
        "energy": {"class": "linear", "from": "data", "n_out": 1},
        "weights": {"class": "softmax_over_spatial", "from": "energy"},
        "output": {"class": "generic_attention", "weights": "weights", "base": "data"},
    },
    "reduce_mean_lstm": {
        "lstm": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 3, "direction": -1},
        "output": {"class": "reduce", "mode": "mean", "axes": "T", "from": "lstm"},
    },
    "layer_norm_conv": {
        "ln": {"class": "layer_norm", "from": "data"},
        "output": {
            "class": "conv",
            "from": "ln",
            "filter_size": [3],
            "padding": "same",
            "n_out": 2,
        },
    },
}
_NETS: dict = {}


def _net(name):
    if name not in _NETS:
        _NETS[name] = netcompiler.compile(
            {"extern_data": {"data": {"dim": 3}}, "network": NETWORKS[name]}, seed=0
        )
    return _NETS[name]


@pytest.mark.parametrize("name", sorted(NETWORKS))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_valid_frames_ignore_the_padding(name, data):
    net = _net(name)
    lengths = np.array(data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)), np.int32)
    extra = data.draw(st.integers(0, 4))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    T = int(lengths.max())
    x = rng.standard_normal((len(lengths), T, 3)).astype(np.float32)
    valid = np.arange(T)[None, :] < lengths[:, None]
    x[~valid] = 0.0
    # other values in the padding, and `extra` more padded frames
    y = rng.standard_normal((len(lengths), T + extra, 3)).astype(np.float32) * 100
    y[:, :T][valid] = x[valid]
    a, la = net(inputs={"data": x}, lengths={"data": lengths})["output"]
    b, lb = net(inputs={"data": y}, lengths={"data": lengths})["output"]
    a, b = a.numpy(), b.numpy()
    assert np.all(np.isfinite(b))
    shape = net.shape("output")
    if shape.time is not None:
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
        for i, n in enumerate(lengths):
            np.testing.assert_allclose(a[i, :n], b[i, :n], rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
