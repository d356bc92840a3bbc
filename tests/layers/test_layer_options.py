"""Layer options as RETURNN configs write them: initialisers (names, calls, dicts), `param_device`,
`dropout_noise_shape`, `cheating`, `conv` `groups`, `batch_norm` -- validation without TensorFlow,
built variables and outputs against hand-computed values and NumPy re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

import netcompiler
from netcompiler.frontend.initializers import InitSpec, check_initializer, parse_initializer


def cfg(network: dict, extern: dict | None = None) -> dict:
    return {"extern_data": extern or {"data": {"dim": 6}}, "network": network}


def errors(config: dict):
    return [d for d in netcompiler.validate(config).diagnostics if d.severity == "error"]


# -- initialisers: parsing (no TensorFlow) ---------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("glorot_uniform", InitSpec("glorot_uniform", {})),
        ("glorot_uniform_initializer()", InitSpec("glorot_uniform", {})),
        ("xavier", InitSpec("xavier", {"uniform": True})),
        ("xavier_initializer()", InitSpec("xavier", {"uniform": True})),
        ("zeros", InitSpec("zeros", {})),
        (0, InitSpec("constant", {"value": 0.0})),
        (0.25, InitSpec("constant", {"value": 0.25})),
        ("orthogonal_initializer()", InitSpec("orthogonal", {"gain": 1.0})),
        (
            "variance_scaling_initializer(mode='fan_in', distribution='uniform', scale=0.78)",
            InitSpec(
                "variance_scaling", {"scale": 0.78, "mode": "fan_in", "distribution": "uniform"}
            ),
        ),
        (
            "variance_scaling_initializer()",  # TF1's defaults
            InitSpec(
                "variance_scaling",
                {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
            ),
        ),
        (
            "random_normal_initializer(mean=0, stddev=0.1)",
            InitSpec("random_normal", {"mean": 0, "stddev": 0.1}),
        ),
        ("random_normal", InitSpec("random_normal", {"mean": 0.0, "stddev": 1.0})),
        (
            "truncated_normal_initializer(stddev=0.01)",
            InitSpec("truncated_normal", {"mean": 0.0, "stddev": 0.01}),
        ),
        (
            "random_uniform_initializer(-0.5, 1.0/4)",  # positional, arithmetic
            InitSpec("random_uniform", {"minval": -0.5, "maxval": 0.25}),
        ),
        (
            "variance_scaling_initializer(scale=sqrt(4.0), seed=7)",
            InitSpec(
                "variance_scaling",
                {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": 7},
            ),
        ),
        (
            {
                "class": "variance_scaling",
                "scale": 0.5,
                "mode": "fan_avg",
                "distribution": "uniform",
            },
            InitSpec(
                "variance_scaling", {"scale": 0.5, "mode": "fan_avg", "distribution": "uniform"}
            ),
        ),
        (
            {"class": "VarianceScaling", "scale": 2},
            InitSpec(
                "variance_scaling",
                {"scale": 2, "mode": "fan_in", "distribution": "truncated_normal"},
            ),
        ),
    ],
)
def test_initializer_parsing(value, expected):
    assert parse_initializer(value) == expected


@pytest.mark.parametrize(
    "value, message, hint",
    [
        (
            "glorot_unifrom",
            "unknown initialiser `glorot_unifrom`",
            "did you mean `glorot_uniform`?",
        ),
        (
            "variance_scaling_initializer(scael=1)",
            "has no argument `scael`",
            "did you mean `scale`?",
        ),
        (
            "variance_scaling_initializer(distribution='unifrom')",
            "is not one of",
            "did you mean `uniform`?",
        ),
        ("variance_scaling_initializer(mode='fan')", "`mode='fan'` is not one of", None),
        ("load_txt_file_initializer('weights.txt')", "not supported: it reads a file", None),
        (
            "random_normal_initializer(stddev=__import__('os').getpid())",
            "is not a literal",
            "arguments must be numbers",
        ),
        ("random_normal_initializer(stddev=x)", "`x` is not a literal", None),
        ("open('f')", "unknown initialiser `open`", None),
        ("glorot_uniform(", "is not a valid call", None),
        ("random_normal_initializer(0, 1, 2, 3)", "at most 3 positional arguments", None),
        ({"scale": 1}, "needs `class`", None),
    ],
)
def test_initializer_errors(value, message, hint):
    got = check_initializer(value)
    assert got is not None and message in got[0]
    if hint is not None:
        assert got[1] is not None and hint in got[1]


def test_initializer_errors_are_located_validation_errors():
    errs = errors(
        cfg(
            {
                "output": {
                    "class": "linear",
                    "from": "data",
                    "n_out": 3,
                    "forward_weights_init": "xaviar",
                    "bias_init": "load_txt_file_initializer('b.txt')",
                }
            }
        )
    )
    got = {(d.path, d.rule) for d in errs}
    assert got == {
        (("network", "output", "forward_weights_init"), "schema.initializer"),
        (("network", "output", "bias_init"), "schema.initializer"),
    }
    assert any(d.hint == "did you mean `xavier`?" for d in errs)
    # valid forms of every kind pass
    ok = cfg(
        {
            "output": {
                "class": "linear",
                "from": "data",
                "n_out": 3,
                "forward_weights_init": "variance_scaling_initializer(scale=0.78)",
                "bias_init": {"class": "constant", "value": 0.5},
            }
        }
    )
    assert errors(ok) == []


# -- initialisers: statistics of built variables ---------------------------------------------------
tf = pytest.importorskip("tensorflow")
N_IN, N_OUT = 400, 500


def built_weights(init, n_in=N_IN, n_out=N_OUT, cls="linear", extra=None):
    layer = {"class": cls, "from": "data", "n_out": n_out, "forward_weights_init": init}
    layer.update(extra or {})
    net = netcompiler.compile(cfg({"output": layer}, {"data": {"dim": n_in}}))
    return net.variable("output/W").numpy().astype(np.float64)


@pytest.mark.tf
@pytest.mark.parametrize(
    "scale, mode, fan",
    [(0.78, "fan_in", N_IN), (2.0, "fan_out", N_OUT), (1.0, "fan_avg", (N_IN + N_OUT) / 2)],
)
def test_variance_scaling_uniform_bounds(scale, mode, fan):
    W = built_weights(
        f"variance_scaling_initializer(mode='{mode}', distribution='uniform', scale={scale})"
    )
    limit = math.sqrt(3 * scale / fan)
    assert W.min() >= -limit and W.max() <= limit
    assert W.min() < -0.99 * limit and W.max() > 0.99 * limit
    np.testing.assert_allclose(W.var(), limit**2 / 3, rtol=0.02)  # uniform: limit^2 / 3
    assert abs(W.mean()) < 0.01 * limit


@pytest.mark.tf
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal"])
def test_variance_scaling_truncated_normal(distribution):
    # TF1: "normal" is the truncated normal, its stddev corrected to sqrt(scale / fan)
    W = built_weights(f"variance_scaling_initializer(scale=2.0, distribution='{distribution}')")
    std = math.sqrt(2.0 / N_IN)
    np.testing.assert_allclose(W.std(), std, rtol=0.02)
    assert np.abs(W).max() <= 2 * std / 0.87962566103423978 + 1e-6  # cut at 2 sigma


@pytest.mark.tf
def test_variance_scaling_untruncated_normal():
    W = built_weights("variance_scaling_initializer(scale=2.0, distribution='untruncated_normal')")
    std = math.sqrt(2.0 / N_IN)
    np.testing.assert_allclose(W.std(), std, rtol=0.02)
    assert np.abs(W).max() > 3.5 * std  # 200k samples: a normal has values beyond 3.5 sigma


@pytest.mark.tf
@pytest.mark.parametrize(
    "init",
    [
        "glorot_uniform",
        "xavier",
        "xavier_initializer()",
        "glorot_uniform_initializer()",
        {"class": "glorot_uniform"},
    ],
)
def test_glorot_uniform_forms(init):
    W = built_weights(init)
    limit = math.sqrt(6 / (N_IN + N_OUT))
    assert W.min() >= -limit and W.max() <= limit and W.max() > 0.99 * limit
    np.testing.assert_allclose(W.var(), limit**2 / 3, rtol=0.02)


@pytest.mark.tf
def test_normal_initializers_use_tf1_defaults_and_arguments():
    W = built_weights("random_normal_initializer(mean=0, stddev=0.1)")
    np.testing.assert_allclose([W.mean(), W.std()], [0, 0.1], atol=2e-3)
    W = built_weights("random_normal")  # TF1 default stddev 1 (not Keras' 0.05)
    np.testing.assert_allclose([W.mean(), W.std()], [0, 1.0], atol=0.01)
    W = built_weights("truncated_normal_initializer(stddev=0.01)")
    assert np.abs(W).max() <= 0.02 + 1e-7
    np.testing.assert_allclose(W.std(), 0.01 * 0.87962566103423978, rtol=0.02)
    W = built_weights("random_uniform_initializer(minval=-0.5, maxval=0.25)")
    assert W.min() >= -0.5 and W.max() <= 0.25 and W.min() < -0.49 and W.max() > 0.24


@pytest.mark.tf
def test_orthogonal_constant_dict_and_conv_fans():
    W = built_weights("orthogonal_initializer(gain=2.0)", n_in=30, n_out=40)
    np.testing.assert_allclose(W @ W.T, 4 * np.eye(30), atol=1e-4)  # rows orthogonal, gain 2
    assert np.all(built_weights(0.5, n_in=3, n_out=4) == 0.5)
    assert np.all(built_weights("ones", n_in=3, n_out=4) == 1.0)
    # conv W [3, n_in, n_out]: fan_in = 3 * n_in, fan_out = 3 * n_out (receptive field)
    W = built_weights(
        {"class": "variance_scaling", "scale": 3.0, "mode": "fan_avg", "distribution": "uniform"},
        n_in=40,
        n_out=80,
        cls="conv",
        extra={"filter_size": [3]},
    )
    limit = math.sqrt(3 * 3.0 / (3 * (40 + 80) / 2))
    assert W.shape == (3, 40, 80) and W.max() <= limit and W.max() > 0.99 * limit


@pytest.mark.tf
def test_explicit_seed_wins_over_the_per_variable_seed():
    init = "random_normal_initializer(stddev=0.1, seed=11)"
    net = netcompiler.compile(
        cfg(
            {
                "a": {"class": "linear", "from": "data", "n_out": 5, "forward_weights_init": init},
                "output": {
                    "class": "linear",
                    "from": "data",
                    "n_out": 5,
                    "forward_weights_init": init,
                    "bias_init": "random_normal_initializer(stddev=0.1)",
                },
            }
        )
    )
    np.testing.assert_array_equal(net.variable("a/W").numpy(), net.variable("output/W").numpy())
    assert np.std(net.variable("output/b").numpy()) > 0


# -- param_device ----------------------------------------------------------------------------------
def test_param_device_validates():
    for device in ("CPU", "cpu", "gpu", "GPU:0", "/device:CPU:0", None):
        assert (
            errors(
                cfg(
                    {
                        "output": {
                            "class": "linear",
                            "from": "data",
                            "n_out": 3,
                            "param_device": device,
                        }
                    }
                )
            )
            == []
        ), device
    errs = errors(
        cfg({"output": {"class": "linear", "from": "data", "n_out": 3, "param_device": "tpu"}})
    )
    assert [d.path for d in errs] == [("network", "output", "param_device")]


@pytest.mark.tf
def test_param_device_places_variables():
    net = netcompiler.compile(
        cfg(
            {
                "h": {"class": "linear", "from": "data", "n_out": 3, "param_device": "cpu"},
                "output": {"class": "linear", "from": "h", "n_out": 2, "param_device": "GPU"},
            }
        )
    )
    assert "CPU" in net.variable("h/W").device and "CPU" in net.variable("h/b").device
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    # soft placement: without a GPU the variables go to the CPU, and the network runs
    assert ("GPU" if has_gpu else "CPU") in net.variable("output/W").device
    out = net(inputs={"data": np.ones((2, 4, 6), np.float32)})
    assert out["output"][0].shape == (2, 4, 2)


# -- dropout_noise_shape ---------------------------------------------------------------------------
NB, NT, NF = 16, 12, 64
EXT = {"data": {"dim": NF}}


def dropout_mask(noise_shape, seed=5, step=3):
    """The dropout layer's mask (ones input: each entry 0 or 1/keep) while training."""
    layer = {"class": "dropout", "from": "data", "dropout": 0.5}
    if noise_shape is not False:
        layer["dropout_noise_shape"] = noise_shape
    net = netcompiler.compile(cfg({"output": layer}, EXT), seed=seed)
    x = tf.ones((NB, NT, NF))
    out = net.forward(
        {"data": x},
        {"data": tf.fill([NB], NT)},
        training=True,
        fetch=("output",),
        step_seed=tf.constant(step, tf.int64),
    )
    m = out["output"][0].numpy()
    assert set(np.unique(m)) <= {0.0, 2.0}
    return m


def _same_along(m, axis) -> bool:
    return bool(np.all(m == np.take(m, [0], axis=axis)))


@pytest.mark.tf
def test_dropout_default_noise_shape_is_one_mask_per_feature():
    # RETURNN's default: broadcast over batch and time, own noise per feature
    m = dropout_mask(False)
    assert _same_along(m, 0) and _same_along(m, 1)
    assert 0.3 < (m[0, 0] > 0).mean() < 0.7
    np.testing.assert_array_equal(m, dropout_mask(None))  # null = the default


@pytest.mark.tf
def test_dropout_noise_shape_every_entry_its_own():
    m = dropout_mask({"*": None})
    assert not _same_along(m, 0) and not _same_along(m, 1) and not _same_along(m, 2)
    kept = (m > 0).mean()
    assert 0.45 < kept < 0.55
    # independent entries: agreement between two batch entries is about 1/2, not 1
    assert 0.4 < (m[0] == m[1]).mean() < 0.6 and 0.4 < (m[:, 0] == m[:, 1]).mean() < 0.6


@pytest.mark.tf
@pytest.mark.parametrize(
    "noise, same, differ",
    [
        ({"T": 1}, (0, 1), (2,)),  # T explicit; B keeps the default (broadcast)
        ({"T": 1, "B": None}, (1,), (0, 2)),  # the same mask over time, own per sequence
        ({"B": None}, (1,), (0, 2)),  # batch own noise; time keeps the default
        ({"*": None, "B": "x"}, (0,), (1, 2)),  # explicit keys win over `*`
        ({"*": 1, "F": -1}, (0, 1), (2,)),
    ],
)
def test_dropout_noise_shape_broadcast_axes(noise, same, differ):
    m = dropout_mask(noise)
    for axis in same:
        assert _same_along(m, axis), axis
    for axis in differ:
        assert not _same_along(m, axis), axis


@pytest.mark.tf
def test_dropout_masks_reproducible_from_the_step_seed():
    np.testing.assert_array_equal(
        dropout_mask({"*": None}, step=4), dropout_mask({"*": None}, step=4)
    )
    assert not np.array_equal(dropout_mask({"*": None}, step=4), dropout_mask({"*": None}, step=5))


def _rec_dropout_mask(noise):
    unit = {
        "d": {"class": "copy", "from": "data:source", "dropout": 0.5},
        "output": {"class": "copy", "from": "d"},
    }
    if noise is not False:
        unit["d"]["dropout_noise_shape"] = noise
    net = netcompiler.compile(
        cfg(
            {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": unit,
                    "optimize_move_layers_out": False,
                }
            },
            EXT,
        )
    )
    out = net.forward(
        {"data": tf.ones((NB, NT, NF))},
        {"data": tf.fill([NB], NT)},
        training=True,
        fetch=("output",),
        step_seed=tf.constant(2, tf.int64),
    )
    return out["output"][0].numpy()


@pytest.mark.tf
def test_dropout_noise_shape_inside_a_loop():
    m = _rec_dropout_mask(False)  # default: the same mask at every step (and sequence)
    assert _same_along(m, 1) and _same_along(m, 0) and not _same_along(m, 2)
    m = _rec_dropout_mask({"*": None})  # drawn per step
    assert not _same_along(m, 1) and not _same_along(m, 0)
    m = _rec_dropout_mask({"T": 1, "B": None})  # `T` names the loop axis
    assert _same_along(m, 1) and not _same_along(m, 0)


def test_dropout_noise_shape_validation():
    bad = errors(
        cfg(
            {
                "output": {
                    "class": "linear",
                    "from": "data",
                    "n_out": 3,
                    "dropout": 0.1,
                    "dropout_noise_shape": {"stag:nope": None},
                }
            }
        )
    )
    assert [(d.path, d.rule) for d in bad] == [
        (("network", "output", "dropout_noise_shape"), "shape.axis")
    ]
    bad = errors(
        cfg(
            {
                "output": {
                    "class": "dropout",
                    "from": "data",
                    "dropout": 0.1,
                    "dropout_noise_shape": {"T": 2},
                }
            }
        )
    )
    assert bad and bad[0].path[:3] == ("network", "output", "dropout_noise_shape")


# -- cheating -----------------------------------------------------------------------------------
def _decoder(choice_opts: dict, rec_opts: dict | None = None) -> dict:
    unit = {
        "emb": {"class": "linear", "from": "prev:output", "n_out": 4},
        "prob": {"class": "softmax", "from": "emb", "target": "classes"},
        "output": dict(
            {"class": "choice", "from": "prob", "target": "classes", "beam_size": 2}, **choice_opts
        ),
    }
    return cfg(
        {
            "output": dict(
                {"class": "rec", "from": [], "unit": unit, "target": "classes"}, **(rec_opts or {})
            )
        },
        {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}},
    )


def test_cheating():
    assert errors(_decoder({"cheating": False})) == []
    errs = errors(_decoder({"cheating": True}))
    assert [(d.path, d.rule) for d in errs] == [
        (("network", "output", "unit", "output", "cheating"), "shape.unsupported")
    ]
    assert "not supported" in errs[0].message
    assert errors(_decoder({"cheating": "exclusive"}))
    # on rec: accepted (RETURNN ignores it there), a warning says it has no effect
    result = netcompiler.validate(_decoder({}, {"cheating": True}))
    assert result.errors == [] and [d.path for d in result.warnings] == [
        ("network", "output", "cheating")
    ]
    assert not netcompiler.validate(_decoder({}, {"cheating": False})).warnings


# -- conv groups --------------------------------------------------------------------------------
def conv1d_grouped_reference(x, lengths, W, b, groups):
    """NumPy: 'same' 1-D convolution per group, frames outside each sequence read as zero."""
    Bn, Tn, Fin = x.shape
    k, cin, n_out = W.shape
    x = x.copy()
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    pad = (k - 1) // 2
    xp = np.pad(x, [(0, 0), (pad, k - 1 - pad), (0, 0)])
    y = np.zeros((Bn, Tn, n_out))
    per_group = n_out // groups
    for o in range(n_out):
        g = o // per_group
        for t in range(Tn):
            window = xp[:, t : t + k, g * cin : (g + 1) * cin]  # [B, k, cin]
            y[:, t, o] = np.einsum("bkc,kc->b", window, W[:, :, o]) + b[o]
    return y


@pytest.mark.tf
@pytest.mark.parametrize(
    "n_in,n_out,groups",
    [
        (6, 9, 3),  # few groups: one convolution per group
        (8, 8, 8),  # depthwise (a conformer's conv module): one depthwise convolution
        (8, 12, 4),  # 2 inputs and 3 outputs per group: depthwise, then a sum within the group
    ],
)
def test_conv_groups_against_numpy(n_in, n_out, groups):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 7, n_in)).astype(np.float32)
    lengths = np.array([7, 5, 2], np.int32)
    layer = {"class": "conv", "from": "data", "n_out": n_out, "filter_size": [3], "groups": groups}
    net = netcompiler.compile(cfg({"output": layer}, {"data": {"dim": n_in}}))
    W = net.variable("output/W")
    cin = n_in // groups
    assert tuple(W.shape) == (3, cin, n_out)  # [filter, n_in / groups, n_out]
    W.assign(rng.normal(size=(3, cin, n_out)).astype(np.float32))
    net.variable("output/b").assign(rng.normal(size=n_out).astype(np.float32))
    got = net(inputs={"data": x}, lengths={"data": lengths})["output"][0].numpy()
    want = conv1d_grouped_reference(x, lengths, W.numpy(), net.variable("output/b").numpy(), groups)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-5, atol=1e-5)
    assert (
        netcompiler.validate(cfg({"output": layer}, {"data": {"dim": n_in}})).inferred.param_count(
            "output"
        )
        == 3 * cin * n_out + n_out
    )


@pytest.mark.tf
@pytest.mark.parametrize(
    "filt,strides,dilations,cin,co,groups",
    [
        ([3], [2], [1], 1, 1, 6),
        ([3], [1], [2], 2, 3, 4),
        ([2, 3], [2, 2], [1, 1], 2, 1, 4),
        ([3, 3], [1, 1], [2, 2], 1, 2, 5),
    ],
)
def test_grouped_conv_as_depthwise_matches_per_group_convolutions(
    filt, strides, dilations, cin, co, groups
):
    import tensorflow as tf

    from netcompiler.layers.conv import _grouped_as_depthwise

    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=[2] + [9] * len(filt) + [groups * cin]), tf.float32)
    W = tf.constant(rng.normal(size=filt + [cin, groups * co]), tf.float32)
    want = tf.concat(
        [
            tf.nn.convolution(xg, Wg, strides=strides, padding="VALID", dilations=dilations)
            for xg, Wg in zip(tf.split(x, groups, -1), tf.split(W, groups, -1))
        ],
        -1,
    )
    got = _grouped_as_depthwise(x, W, groups, strides, dilations)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_conv_groups_must_divide():
    errs = errors(
        cfg(
            {
                "output": {
                    "class": "conv",
                    "from": "data",
                    "n_out": 8,
                    "filter_size": [3],
                    "groups": 4,
                }
            }
        )
    )  # 6 inputs
    assert [(d.path, d.rule) for d in errs] == [
        (("network", "output", "groups"), "shape.conv-groups")
    ]
    errs = errors(
        cfg(
            {
                "output": {
                    "class": "conv",
                    "from": "data",
                    "n_out": 8,
                    "filter_size": [3],
                    "groups": 0,
                }
            }
        )
    )
    assert errs and errs[0].rule == "schema.range"


# -- batch_norm --------------------------------------------------------------------------------
BN_B, BN_T, BN_F = 4, 6, 5


def _bn_net(bn, activation="tanh"):
    config = cfg(
        {
            "output": {
                "class": "linear",
                "from": "data",
                "n_out": BN_F,
                "activation": activation,
                "batch_norm": bn,
            }
        },
        {"data": {"dim": 3}},
    )
    return netcompiler.compile(config)


def _bn_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(BN_B, BN_T, 3)).astype(np.float32)
    lengths = np.array([6, 4, 2, 5], np.int32)
    for i, n in enumerate(lengths):
        x[i, n:] = rng.uniform(-30, 30, size=x[i, n:].shape)  # padding that would show up
    return x, lengths


def _masked_moments(h, lengths):
    valid = np.concatenate([h[i, :n] for i, n in enumerate(lengths)], axis=0)  # [N, F]
    return valid.mean(0), valid.var(0)


@pytest.mark.tf
def test_batch_norm_training_and_inference_against_numpy():
    net = _bn_net({"masked_time": True, "momentum": 0.3, "epsilon": 1e-3})
    assert {
        "output/batch_norm/mean",
        "output/batch_norm/variance",
        "output/batch_norm/gamma",
        "output/batch_norm/beta",
    } <= set(net.variables_by_name)
    trainable = {v.name.split(":")[0] for v in net.trainable_variables}
    assert "output/batch_norm/mean" not in trainable and "output/batch_norm/gamma" in trainable
    rng = np.random.default_rng(1)
    gamma, beta = rng.uniform(0.5, 2, BN_F), rng.normal(size=BN_F)
    net.variable("output/batch_norm/gamma").assign(gamma.astype(np.float32))
    net.variable("output/batch_norm/beta").assign(beta.astype(np.float32))
    x, lengths = _bn_data()
    h = np.tanh(
        x.astype(np.float64) @ net.variable("output/W").numpy() + net.variable("output/b").numpy()
    )  # the activation comes first
    mean, var = _masked_moments(h, lengths)

    got = net(inputs={"data": x}, lengths={"data": lengths}, training=True)["output"][0].numpy()
    want = (h - mean) / np.sqrt(var + 1e-3) * gamma + beta  # batch statistics in training
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-4)
    moving_mean = 0 + (mean - 0) * 0.3
    moving_var = 1 + (var - 1) * 0.3
    np.testing.assert_allclose(
        net.variable("output/batch_norm/mean").numpy(), moving_mean, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        net.variable("output/batch_norm/variance").numpy(), moving_var, rtol=1e-5, atol=1e-6
    )

    # inference: the moving statistics, which stay as they are
    got = net(inputs={"data": x}, lengths={"data": lengths})["output"][0].numpy()
    want = (h - moving_mean) / np.sqrt(moving_var + 1e-3) * gamma + beta
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(
        net.variable("output/batch_norm/mean").numpy(), moving_mean, rtol=1e-5, atol=1e-6
    )


@pytest.mark.tf
def test_batch_norm_defaults_and_update_options():
    x, lengths = _bn_data()
    net = _bn_net(True, activation=None)  # momentum 0.1
    h = x.astype(np.float64) @ net.variable("output/W").numpy()
    mean, var = _masked_moments(h, lengths)
    net(inputs={"data": x}, lengths={"data": lengths}, training=True)
    np.testing.assert_allclose(
        net.variable("output/batch_norm/mean").numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6
    )
    # update_sample_only_in_training false: inference updates too; without the delay it
    # normalises with the updated statistics
    net = _bn_net(
        {
            "update_sample_only_in_training": False,
            "delay_sample_update": False,
            "momentum": 0.5,
            "use_std": False,
            "use_shift": False,
        },
        activation=None,
    )
    assert "output/batch_norm/gamma" not in net.variables_by_name
    got = net(inputs={"data": x}, lengths={"data": lengths})["output"][0].numpy()
    m, v = 0.5 * mean, 1 + (var - 1) * 0.5
    np.testing.assert_allclose(
        net.variable("output/batch_norm/mean").numpy(), m, rtol=1e-5, atol=1e-6
    )
    want = (h - m) / np.sqrt(v + 1e-3)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-4)


@pytest.mark.tf
def test_batch_norm_statistics_are_checkpointed(tmp_path):
    x, lengths = _bn_data()
    net = _bn_net(True)
    net(inputs={"data": x}, lengths={"data": lengths}, training=True)
    saved = net.variable("output/batch_norm/variance").numpy()
    from netcompiler.backend.export import checkpoint
    from netcompiler.training.checkpoints import restore_network

    prefix = checkpoint(net).write(str(tmp_path / "ckpt"))
    other = _bn_net(True)
    restore_network(other, prefix)
    np.testing.assert_array_equal(other.variable("output/batch_norm/variance").numpy(), saved)


def test_batch_norm_validation():
    base = {"class": "linear", "from": "data", "n_out": 3}
    assert errors(cfg({"output": dict(base, batch_norm=False)})) == []
    assert errors(cfg({"output": dict(base, batch_norm={"masked_time": True})})) == []
    r = netcompiler.validate(cfg({"output": dict(base, batch_norm=True)}))
    assert r.inferred.param_count("output") == 6 * 3 + 3 + 4 * 3
    errs = errors(cfg({"output": dict(base, batch_norm={"momentun": 0.1})}))
    assert errs and errs[0].path[:3] == ("network", "output", "batch_norm")
    errs = errors(cfg({"output": dict(base, batch_norm={"param_version": 0})}))
    assert errs
    errs = errors(cfg({"output": dict(base, batch_norm={"gamma_init": "glorot_unifrom"})}))
    assert [(d.path, d.rule) for d in errs] == [
        (("network", "output", "batch_norm", "gamma_init"), "schema.initializer")
    ]
    unit = {
        "h": dict(base, **{"from": "data:source", "batch_norm": True}),
        "output": {"class": "copy", "from": "h"},
    }
    errs = errors(cfg({"output": {"class": "rec", "from": "data", "unit": unit}}))
    assert [(d.path, d.rule) for d in errs] == [
        (("network", "output", "unit", "h", "batch_norm"), "shape.unsupported")
    ]
