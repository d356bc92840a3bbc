"""Layer classes real RETURNN networks use: decide, reduce_out, switch, swap_axes, pad, gating,
batch_norm, and reduce's argmax/argmin/avg -- shapes and errors (no TensorFlow), and results
against NumPy re-implementations of RETURNN's documented semantics."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from netcompiler.frontend.validate import validate

ROOT = Path(__file__).resolve().parents[2]
EXT = {"data": {"dim": 6}, "cls": {"dim": 5, "sparse": True}, "img": {"shape": [None, 4, 6]}}
B, T = 3, 5
LENGTHS = np.array([5, 3, 1], np.int32)
CLS_LENGTHS = np.array([4, 2, 3], np.int32)


def cfg(network, extern=None):
    return {"extern_data": copy.deepcopy(extern or EXT), "network": network}


def out_shape(network, extern=None) -> str:
    r = validate(cfg(network, extern))
    assert r.errors == [], [d.full_message() for d in r.errors]
    return str(r.inferred.shapes["output"])


def errors(network, extern=None):
    return validate(cfg(network, extern)).errors


def inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, 6)).astype(np.float32)
    img = rng.normal(size=(B, T, 4, 6)).astype(np.float32)
    for i, n in enumerate(LENGTHS):  # padding that would show up
        x[i, n:] = 1e3
        img[i, n:] = 1e3
    cls = rng.integers(0, 5, size=(B, 4)).astype(np.int32)
    return (
        {"data": x, "cls": cls, "img": img},
        {"data": LENGTHS, "cls": CLS_LENGTHS, "img": LENGTHS},
    )


def run(network, fetch="output", training=False, extern=None):
    import netcompiler

    net = netcompiler.compile(cfg(network, extern))
    inp, lens = inputs()
    keys = {k for k in inp if k in (extern or EXT)}
    value, lengths = net(
        inputs={k: inp[k] for k in keys},
        lengths={k: lens[k] for k in keys},
        training=training,
        fetch=[fetch],
    )[fetch]
    return net, value.numpy(), None if lengths is None else lengths.numpy()


# -- shapes and errors (no TensorFlow) -----------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"class": "decide"}, "[B, T(data), F=6]"),
        (
            {"class": "decide", "from": "data:cls", "length_normalization": True},
            "[B, T(cls)] sparse(5)",
        ),
        ({"class": "reduce_out", "mode": "max", "num_pieces": 2}, "[B, T(data), F=3]"),
        ({"class": "reduce_out", "mode": "sum", "num_pieces": 3}, "[B, T(data), F=2]"),
        ({"class": "gating"}, "[B, T(data), F=3]"),
        (
            {"class": "swap_axes", "from": "data:img", "axis1": "T", "axis2": "dim:4"},
            "[B, S=4, T(img), F=6]",
        ),
        (
            {"class": "swap_axes", "from": "data:img", "axis1": "F", "axis2": "dim:4"},
            "[B, T(img), S=6, F=4]",
        ),
        ({"class": "pad", "axes": "F", "padding": [1, 2]}, "[B, T(data), F=9]"),
        (
            {
                "class": "pad",
                "from": "data:img",
                "axes": ["dim:4", "F"],
                "padding": [[1, 0], [0, 2]],
            },
            "[B, T(img), S=5, F=8]",
        ),
        ({"class": "pad", "axes": "T", "padding": 2}, "[B, T(output), F=6]"),
        (
            {"class": "pad", "from": "data:cls", "axes": "T", "padding": 1, "value": 3},
            "[B, T(output)] sparse(5)",
        ),
        ({"class": "reduce", "mode": "argmax", "axes": "F"}, "[B, T(data)] sparse(6)"),
        ({"class": "reduce", "mode": "argmin", "axes": "T"}, "[B, F=6] int32"),
        ({"class": "reduce", "mode": "avg", "axes": "T"}, "[B, F=6]"),
        ({"class": "batch_norm"}, "[B, T(data), F=6]"),
    ],
)
def test_shapes(layer, expected):
    assert out_shape({"output": layer}) == expected


def test_switch_shapes():
    base = {
        "c": {"class": "compare", "from": "data", "kind": "greater", "value": 0.0},
        "m": {"class": "reduce", "mode": "max", "axes": "F"},
    }
    net = dict(
        base, output={"class": "switch", "condition": "c", "true_from": "data", "false_from": -1.0}
    )
    assert out_shape(net) == "[B, T(data), F=6]"
    # [B, T] condition, [B, T, F] and [B, F] values: broadcast
    cond = {"class": "compare", "from": "m", "kind": "greater", "value": 0.0}
    mean = {"class": "reduce", "mode": "mean", "axes": "T"}
    net = dict(
        base,
        c2=cond,
        mean=mean,
        output={"class": "switch", "condition": "c2", "true_from": "data", "false_from": "mean"},
    )
    assert out_shape(net) == "[B, T(data), F=6]"
    # a constant condition picks one value
    assert (
        out_shape({"output": {"class": "switch", "condition": False, "false_from": "data:cls"}})
        == "[B, T(cls)] sparse(5)"
    )
    # layer-valued options are references: the graph sees them (unused-layer check, unknown)
    errs = errors(
        {"output": {"class": "switch", "condition": "nope", "true_from": "data", "false_from": 0}}
    )
    assert errs and "nope" in errs[0].message
    errs = errors(
        {"output": {"class": "switch", "condition": "data", "true_from": 1, "false_from": 0}}
    )
    assert [e.rule for e in errs] == ["shape.dtype"] and errs[0].path[-1] == "condition"


@pytest.mark.parametrize(
    "layer, option, rule",
    [
        ({"class": "reduce_out", "mode": "max", "num_pieces": 4}, "num_pieces", "shape.reduce-out"),
        ({"class": "gating", "from": "data:img", "n_out": 4}, "n_out", "shape.n-out"),
        ({"class": "pad", "axes": "T", "padding": 1, "mode": "reflect"}, "mode", "shape.pad"),
        ({"class": "pad", "axes": "F", "padding": [[1, 1], [1, 1]]}, "padding", "shape.pad"),
        ({"class": "pad", "axes": "F", "padding": 6, "mode": "reflect"}, "padding", "shape.pad"),
        ({"class": "reduce", "mode": "argmax", "axes": ["T", "F"]}, "axes", "shape.reduce-axes"),
        ({"class": "batch_norm", "from": "data:cls"}, "from", "shape.no-feature"),
        ({"class": "swap_axes", "axis1": "B", "axis2": "T"}, "axis1", "shape.axis"),
    ],
)
def test_shape_errors(layer, option, rule):
    errs = errors({"output": layer})
    assert [(e.rule, e.path[-1]) for e in errs] == [(rule, option)], [
        e.full_message() for e in errs
    ]


def test_gating_odd_features():
    errs = errors(
        {"output": {"class": "gating", "from": "data:img"}}, dict(EXT, img={"shape": [None, 4, 5]})
    )
    assert [e.rule for e in errs] == ["shape.gating"]


# -- results against NumPy -----------------------------------------------------------------------


def _valid(v, lengths, fn):
    for i, n in enumerate(lengths):
        fn(i, n)


@pytest.mark.tf
def test_decide_is_identity_without_beam():
    x = inputs()[0]
    _, got, lens = run({"output": {"class": "decide"}})
    np.testing.assert_array_equal(got, x["data"])
    np.testing.assert_array_equal(lens, LENGTHS)
    _, got, lens = run({"output": {"class": "decide", "from": "data:cls"}})
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, x["cls"])
    np.testing.assert_array_equal(lens, CLS_LENGTHS)


@pytest.mark.tf
@pytest.mark.parametrize("mode", ["max", "sum", "mean"])
def test_reduce_out_against_numpy(mode):
    x = inputs()[0]["data"]
    _, got, _ = run({"output": {"class": "reduce_out", "mode": mode, "num_pieces": 3}})
    # consecutive pieces: features (0, 1, 2) -> 0, (3, 4, 5) -> 1
    groups = np.stack([x[..., 0:3], x[..., 3:6]], axis=-2)
    want = {"max": groups.max(-1), "sum": groups.sum(-1), "mean": groups.mean(-1)}[mode]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (B, T, 2)


@pytest.mark.tf
def test_gating_against_numpy():
    x = inputs()[0]["data"]
    _, got, _ = run({"output": {"class": "gating"}})
    want = np.tanh(x[..., :3]) / (1 + np.exp(-x[..., 3:]))
    _valid(
        got,
        LENGTHS,
        lambda i, n: np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-5, atol=1e-6),
    )
    # two inputs: the first is a, the second b; other activations
    net, got, _ = run(
        {
            "a": {"class": "linear", "n_out": 2, "with_bias": False},
            "b": {"class": "linear", "n_out": 2, "with_bias": False},
            "output": {
                "class": "gating",
                "from": ["a", "b"],
                "activation": "relu",
                "gate_activation": "tanh",
            },
        }
    )
    a = x @ net.variable("a/W").numpy()
    b = x @ net.variable("b/W").numpy()
    want = np.maximum(a, 0) * np.tanh(b)
    _valid(
        got,
        LENGTHS,
        lambda i, n: np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-5),
    )


@pytest.mark.tf
def test_swap_axes_against_numpy():
    img = inputs()[0]["img"]
    _, got, lens = run(
        {"output": {"class": "swap_axes", "from": "data:img", "axis1": "T", "axis2": "dim:4"}}
    )
    np.testing.assert_array_equal(got, np.swapaxes(img, 1, 2))
    np.testing.assert_array_equal(lens, LENGTHS)  # the time axis keeps its lengths
    _, got, _ = run(
        {"output": {"class": "swap_axes", "from": "data:img", "axis1": "F", "axis2": "dim:4"}}
    )
    np.testing.assert_array_equal(got, np.swapaxes(img, 2, 3))


@pytest.mark.tf
def test_switch_against_numpy():
    x = inputs()[0]["data"]
    _, got, _ = run(
        {
            "c": {"class": "compare", "from": "data", "kind": "greater", "value": 0.0},
            "output": {
                "class": "switch",
                "condition": "c",
                "true_from": "data",
                "false_from": -1.5,
            },
        }
    )
    want = np.where(x > 0, x, np.float32(-1.5))
    _valid(got, LENGTHS, lambda i, n: np.testing.assert_array_equal(got[i, :n], want[i, :n]))
    # [B, T] condition against [B, T, F] and [B, F]
    net, got, _ = run(
        {
            "m": {"class": "reduce", "mode": "max", "axes": "F"},
            "c": {"class": "compare", "from": "m", "kind": "greater", "value": 0.5},
            "mean": {"class": "reduce", "mode": "mean", "axes": "T"},
            "output": {
                "class": "switch",
                "condition": "c",
                "true_from": "data",
                "false_from": "mean",
            },
        }
    )
    mean = np.stack([x[i, :n].mean(0) for i, n in enumerate(LENGTHS)])
    want = np.where((x.max(-1) > 0.5)[..., None], x, mean[:, None, :])
    _valid(
        got, LENGTHS, lambda i, n: np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-5)
    )
    _, got, _ = run({"output": {"class": "switch", "condition": True, "true_from": "data"}})
    np.testing.assert_array_equal(got, x)


def _pad_time_numpy(x, lengths, before, after, value):
    """RETURNN's pad of a time axis (handle_dynamic_dims): value, the sequence, value."""
    new = lengths + before + after
    out = np.full((x.shape[0], x.shape[1] + before + after) + x.shape[2:], value, x.dtype)
    for i, n in enumerate(lengths):
        out[i, before : before + n] = x[i, :n]
    return out, new


@pytest.mark.tf
def test_pad_time_axis_new_lengths():
    inp = inputs()[0]
    _, got, lens = run({"output": {"class": "pad", "axes": "T", "padding": [1, 2], "value": 0.5}})
    want, want_len = _pad_time_numpy(inp["data"], LENGTHS, 1, 2, np.float32(0.5))
    np.testing.assert_array_equal(lens, want_len)
    _valid(got, want_len, lambda i, n: np.testing.assert_array_equal(got[i, :n], want[i, :n]))
    # labels, and a layer after the pad sees the new lengths (mean over the new time axis)
    _, got, lens = run(
        {"output": {"class": "pad", "from": "data:cls", "axes": "T", "padding": 1, "value": 4}}
    )
    want, want_len = _pad_time_numpy(inp["cls"], CLS_LENGTHS, 1, 1, 4)
    np.testing.assert_array_equal(lens, want_len)
    _valid(got, want_len, lambda i, n: np.testing.assert_array_equal(got[i, :n], want[i, :n]))
    _, got, _ = run(
        {
            "p": {"class": "pad", "axes": "T", "padding": [0, 2], "value": 3.0},
            "output": {"class": "reduce", "mode": "mean", "axes": "T", "from": "p"},
        }
    )
    want, want_len = _pad_time_numpy(inp["data"], LENGTHS, 0, 2, np.float32(3.0))
    np.testing.assert_allclose(
        got, np.stack([want[i, :n].mean(0) for i, n in enumerate(want_len)]), rtol=1e-5
    )


@pytest.mark.tf
@pytest.mark.parametrize(
    "mode, np_mode",
    [
        ("constant", "constant"),
        ("reflect", "reflect"),
        ("symmetric", "symmetric"),
        ("replication", "edge"),
    ],
)
def test_pad_static_axes_modes(mode, np_mode):
    img = inputs()[0]["img"]
    _, got, _ = run(
        {
            "output": {
                "class": "pad",
                "from": "data:img",
                "axes": ["dim:4", "F"],
                "padding": [[2, 1], [1, 3]],
                "mode": mode,
                "value": -2.0,
            }
        }
    )
    kw = {"constant_values": -2.0} if np_mode == "constant" else {}
    want = np.pad(img, [(0, 0), (0, 0), (2, 1), (1, 3)], mode=np_mode, **kw)
    _valid(got, LENGTHS, lambda i, n: np.testing.assert_array_equal(got[i, :n], want[i, :n]))


@pytest.mark.tf
def test_pad_time_before_only_reflect():
    x = inputs()[0]["data"]
    _, got, lens = run(
        {"output": {"class": "pad", "axes": "T", "padding": [1, 0], "mode": "reflect"}}
    )
    np.testing.assert_array_equal(lens, LENGTHS + 1)
    for i, n in enumerate(LENGTHS):
        if n > 1:
            np.testing.assert_array_equal(got[i, : n + 1], np.concatenate([x[i, 1:2], x[i, :n]]))


@pytest.mark.tf
@pytest.mark.parametrize("mode", ["argmax", "argmin"])
def test_reduce_arg_modes_against_numpy(mode):
    x = inputs()[0]["data"]
    fn = np.argmax if mode == "argmax" else np.argmin
    _, got, _ = run({"output": {"class": "reduce", "mode": mode, "axes": "F"}})
    assert got.dtype == np.int32
    _valid(got, LENGTHS, lambda i, n: np.testing.assert_array_equal(got[i, :n], fn(x[i, :n], -1)))
    # over time: padded frames (1e3) are never chosen
    _, got, _ = run({"output": {"class": "reduce", "mode": mode, "axes": "T"}})
    np.testing.assert_array_equal(got, np.stack([fn(x[i, :n], 0) for i, n in enumerate(LENGTHS)]))
    _, got, _ = run({"output": {"class": "reduce", "mode": mode, "axes": "F", "keep_dims": True}})
    assert got.shape == (B, T, 1)


@pytest.mark.tf
def test_reduce_avg_is_masked_mean():
    x = inputs()[0]["data"]
    _, got, _ = run({"output": {"class": "reduce", "mode": "avg", "axes": "T"}})
    np.testing.assert_allclose(
        got, np.stack([x[i, :n].mean(0) for i, n in enumerate(LENGTHS)]), rtol=1e-5
    )


@pytest.mark.tf
def test_batch_norm_layer_against_numpy(tmp_path):
    import tensorflow as tf

    import netcompiler
    from netcompiler.backend.export import checkpoint

    net = netcompiler.compile(
        cfg(
            {"output": {"class": "batch_norm", "momentum": 0.3, "epsilon": 1e-3, "gamma_init": 2.0}}
        )
    )
    names = {
        "output/batch_norm/mean",
        "output/batch_norm/variance",
        "output/batch_norm/gamma",
        "output/batch_norm/beta",
    }
    assert names == set(net.variables_by_name)
    trainable = {v.name.split(":")[0] for v in net.trainable_variables}
    assert trainable == {"output/batch_norm/gamma", "output/batch_norm/beta"}
    inp, lens = inputs()
    x = inp["data"].astype(np.float64)
    valid = np.concatenate([x[i, :n] for i, n in enumerate(LENGTHS)])
    mean, var = valid.mean(0), valid.var(0)
    # inference before any training: moving statistics 0 / 1, nothing updated
    got = net(inputs={"data": inp["data"]}, lengths={"data": lens["data"]})["output"][0].numpy()
    _valid(
        got,
        LENGTHS,
        lambda i, n: np.testing.assert_allclose(
            got[i, :n], x[i, :n] / np.sqrt(1 + 1e-3) * 2.0, rtol=1e-5
        ),
    )
    np.testing.assert_array_equal(net.variable("output/batch_norm/mean").numpy(), 0.0)
    # training: the batch's statistics (padding excluded), moving ones updated
    got = net(inputs={"data": inp["data"]}, lengths={"data": lens["data"]}, training=True)[
        "output"
    ][0].numpy()
    want = (x - mean) / np.sqrt(var + 1e-3) * 2.0
    _valid(
        got,
        LENGTHS,
        lambda i, n: np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-5),
    )
    np.testing.assert_allclose(
        net.variable("output/batch_norm/mean").numpy(), 0.3 * mean, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        net.variable("output/batch_norm/variance").numpy(),
        1 + (var - 1) * 0.3,
        rtol=1e-5,
        atol=1e-6,
    )
    # the moving statistics are saved in checkpoints
    path = checkpoint(net).write(str(tmp_path / "ckpt"))
    other = netcompiler.compile(cfg({"output": {"class": "batch_norm", "momentum": 0.3}}))
    checkpoint(other).read(path).assert_consumed()
    np.testing.assert_allclose(
        other.variable("output/batch_norm/variance").numpy(), 1 + (var - 1) * 0.3, rtol=1e-5
    )
    assert isinstance(other.variable("output/batch_norm/mean"), tf.Variable)


# -- decide on a decoder: validate, compile, forward, search -----------------------------------


@pytest.mark.tf
def test_decide_on_decoder_forward_and_search():
    import netcompiler

    config = yaml.safe_load((ROOT / "configs" / "reverse_dot_attention.yaml").read_text())
    config.pop("train", None)
    plain = netcompiler.compile(copy.deepcopy(config))
    net_dict = config["network"]
    net_dict["dec"] = net_dict.pop("output")
    net_dict["output"] = {"class": "decide", "from": "dec"}
    result = validate(config)
    assert result.errors == [], [d.full_message() for d in result.errors]
    assert str(result.inferred.shapes["output"]) == str(result.inferred.shapes["dec"])
    net = netcompiler.compile(config)
    for name, var in plain.variables_by_name.items():  # the same weights under `dec/...`
        other = "dec" + name[len("output") :] if name.startswith("output/") else name
        net.variable(other).assign(var)
    rng = np.random.default_rng(3)
    x = rng.integers(1, 10, size=(2, 5)).astype(np.int32)
    xl = np.array([5, 3], np.int32)
    y = np.concatenate([x[:, ::-1], np.zeros((2, 1), np.int32)], 1)
    yl = xl + 1
    out = net(
        inputs={"data": x, "classes": y},
        lengths={"data": xl, "classes": yl},
        fetch=["output", "dec"],
    )
    np.testing.assert_array_equal(out["output"][0].numpy(), out["dec"][0].numpy())
    np.testing.assert_array_equal(out["output"][1].numpy(), out["dec"][1].numpy())
    hyps = net.search(inputs={"data": x}, lengths={"data": xl}, beam_size=3, n_best=2)
    want = plain.search(inputs={"data": x}, lengths={"data": xl}, beam_size=3, n_best=2)
    for h, w in zip(hyps, want):
        for a, b in zip(h, w):
            np.testing.assert_array_equal(a["labels"], b["labels"])
            assert a["score"] == pytest.approx(b["score"], rel=1e-5)
