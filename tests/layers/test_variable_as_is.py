"""The `variable` layer class (RETURNN's VariableLayer) and the `as_is` loss (RETURNN's AsIsLoss):
shapes and variable names without TensorFlow; values, the loss against NumPy and one SGD step
against the hand-computed update."""

from __future__ import annotations

import os

import numpy as np
import pytest

from netcompiler.frontend.validate import validate


def _cfg(network: dict, extern: dict | None = None, **top) -> dict:
    cfg = {"extern_data": extern or {"data": {"dim": 3}}, "network": network}
    cfg.update(top)
    return cfg


def _ok(cfg):
    result = validate(cfg)
    assert not result.errors, [str(d) for d in result.errors]
    return result


def _errors(cfg):
    result = validate(cfg)
    assert result.errors
    return result.errors


# -- shape rules and variable names (no TensorFlow) -----------------------------------------------


@pytest.mark.parametrize(
    "opts, expected",
    [
        ({"shape": []}, "[]"),
        ({"shape": [4]}, "[F=4]"),
        ({"shape": [2, 4]}, "[S=2, F=4]"),
        ({"shape": [4], "add_batch_axis": True}, "[B, F=4]"),
        ({"shape": [4], "add_time_axis": True}, "[S=1, F=4]"),
        ({"shape": [2, 4], "add_batch_axis": True, "add_time_axis": True}, "[B, S=1, S=2, F=4]"),
        ({"shape": [4], "dtype": "int32"}, "[F=4] int32"),
    ],
)
def test_shape(opts, expected):
    result = _ok(
        _cfg({"v": {"class": "variable", **opts}, "output": {"class": "copy", "from": "data"}})
    )
    assert str(result.inferred.shapes["v"]) == expected


def test_default_add_batch_axis_is_false_as_in_current_returnn():
    result = _ok(_cfg({"output": {"class": "variable", "shape": [3]}}))
    assert not result.inferred.shapes["output"].has_batch


def test_variable_named_after_the_layer_as_in_returnn():
    result = _ok(
        _cfg(
            {
                "v": {"class": "variable", "shape": [2, 4], "init": "glorot_uniform"},
                "w": {"class": "variable", "shape": [4], "param_name": "bias"},
                "sub": {
                    "class": "subnetwork",
                    "from": [],
                    "subnetwork": {
                        "var": {"class": "variable", "shape": [1]},
                        "output": {"class": "copy", "from": "var"},
                    },
                },
                "output": {"class": "copy", "from": "data"},
            }
        )
    )
    params = result.inferred.params
    assert list(params["v"]) == ["v"] and params["v"]["v"].shape == (2, 4)
    assert params["v"]["v"].init == "glorot_uniform"
    assert list(params["w"]) == ["bias"]
    assert list(params["sub/var"]) == ["var"]
    assert params["sub/var"]["var"].init == 0  # RETURNN's default init
    assert params["sub/var"]["var"].trainable


def test_variable_errors():
    errs = _errors(_cfg({"output": {"class": "variable", "shape": [3], "from": "data"}}))
    assert any(e.rule == "shape.variable" and "reads no input" in e.message for e in errs)
    errs = _errors(_cfg({"output": {"class": "variable", "shape": [0]}}))
    assert errs[0].rule.startswith("schema.")
    errs = _errors(_cfg({"output": {"class": "variable"}}))  # shape is required
    assert errs[0].rule.startswith("schema.")
    errs = _errors(
        _cfg(
            {
                "output": {
                    "class": "variable",
                    "shape": [3],
                    "dtype": "int32",
                    "init": "glorot_uniform",
                }
            }
        )
    )
    assert [e.rule for e in errs] == ["shape.variable"]
    errs = _errors(_cfg({"output": {"class": "variable", "shape": [3], "init": "glorot_unform"}}))
    assert [e.rule for e in errs] == ["schema.initializer"]
    errs = _errors(_cfg({"output": {"class": "variable", "shape": [3], "n_out": 4}}))
    assert [e.rule for e in errs] == ["shape.n-out"]


# -- the as_is loss: validation --------------------------------------------------------------------


def test_as_is_needs_no_target_and_gets_none_filled_in():
    # `classes` exists, so a loss without target would get `target: classes` by convention
    extern = {"data": {"dim": 3}, "classes": {"dim": 2, "sparse": True}}
    result = _ok(
        _cfg(
            {
                "v": {"class": "variable", "shape": [1]},
                "output": {"class": "copy", "from": "v", "loss": "as_is"},
            },
            extern,
        )
    )
    assert "target" not in result.config.data["network"]["output"]
    # without any extern target key it validates too
    _ok(_cfg({"output": {"class": "variable", "shape": [], "loss": "as_is"}}))


def test_as_is_on_class_indices_is_an_error():
    extern = {"data": {"dim": 5, "sparse": True}}
    errs = _errors(_cfg({"output": {"class": "copy", "from": "data", "loss": "as_is"}}, extern))
    assert [e.rule for e in errs] == ["shape.loss-target"]
    assert "class indices" in errs[0].message


def test_returnn_corpus_subnet_loss_validates():
    from pathlib import Path

    result = _ok(
        str(Path(__file__).resolve().parents[1] / "returnn_corpus" / "layer_subnet_loss.yaml")
    )
    assert str(result.inferred.shapes["sub/var"]) == "[F=1]"
    assert "target" not in result.config.data["network"]["sub"]["subnetwork"]["loss"]


# -- TensorFlow: values, the loss, training ---------------------------------------------------------

tf_only = pytest.mark.tf


@tf_only
def test_variable_values_and_axes():
    tf = pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(
        _cfg(
            {
                "zero": {"class": "variable", "shape": [2, 3]},
                "c": {
                    "class": "variable",
                    "shape": [3],
                    "init": 0.5,
                    "add_batch_axis": True,
                    "add_time_axis": True,
                },
                "n": {"class": "variable", "shape": [2], "dtype": "int32", "init": 7},
                "output": {"class": "copy", "from": "data"},
            }
        )
    )
    x = np.zeros((4, 5, 3), np.float32)
    out = net(
        inputs={"data": x},
        lengths={"data": np.array([5, 4, 2, 1], np.int32)},
        fetch=["zero", "c", "n"],
    )
    np.testing.assert_array_equal(out["zero"][0].numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(out["c"][0].numpy(), np.full((4, 1, 3), 0.5))
    assert out["n"][0].dtype == tf.int32
    np.testing.assert_array_equal(out["n"][0].numpy(), [7, 7])
    assert net.variable("c/c").trainable and not net.variable("n/n").trainable
    # the output is the variable: assigning it changes the output
    net.variable("c/c").assign([1.0, 2.0, 3.0])
    out = net(inputs={"data": x}, lengths={"data": np.array([5, 4, 2, 1], np.int32)}, fetch=["c"])
    np.testing.assert_array_equal(out["c"][0].numpy(), np.tile([[[1.0, 2.0, 3.0]]], (4, 1, 1)))


@tf_only
def test_variable_trainable_false():
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(
        _cfg({"output": {"class": "variable", "shape": [2], "trainable": False}})
    )
    assert not net.variable("output/output").trainable


@tf_only
def test_as_is_loss_against_numpy():
    pytest.importorskip("tensorflow")
    from netcompiler.training.losses import compute_loss

    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5, 2)).astype(np.float32)
    lengths = np.array([5, 2, 3], np.int32)
    lv = compute_loss("as_is", values, lengths, None, None)
    mask = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_allclose(lv.loss.numpy(), values[mask].sum(), rtol=1e-5)
    assert lv.frames.numpy() == 10.0  # RETURNN: 1 / sum(seq_lens)
    # batch, no time axis: normalised per sequence
    lv = compute_loss("as_is", values[:, 0], None, None, None, time_axis=None)
    np.testing.assert_allclose(lv.loss.numpy(), values[:, 0].sum(), rtol=1e-5)
    assert lv.frames.numpy() == 3.0
    # neither: the sum itself, an int output cast to float
    lv = compute_loss(
        "as_is",
        np.array([[1, 2], [3, 4]], np.int32),
        None,
        None,
        None,
        batch_axis=None,
        time_axis=None,
    )
    assert lv.loss.numpy() == 10.0 and lv.frames.numpy() == 1.0


def _trainer(tmp_path, network: dict, extern: dict | None = None):
    from netcompiler.training.trainer import Trainer

    cfg = _cfg(
        network,
        extern,
        train={
            "train_data": {"class": "12ax", "num_seqs": 10},
            "batch_size": 100,
            "num_epochs": 1,
            "learning_rate": 0.1,
            "optimizer": {"class": "sgd"},
        },
    )
    return Trainer(_ok(cfg), model_dir=tmp_path / "m", out=open(os.devnull, "w"))


@tf_only
def test_sgd_step_on_as_is_of_the_squared_variable(tmp_path):
    tf = pytest.importorskip("tensorflow")

    trainer = _trainer(
        tmp_path,
        {
            "v": {"class": "variable", "shape": [2], "init": 0.0},
            "sq": {"class": "combine", "kind": "mul", "from": ["v", "v"], "loss": "as_is"},
        },
    )
    assert trainer.input_keys == ()  # nothing is read from the data
    v = trainer.net.variable("v/v")
    v.assign([3.0, -2.0])
    stats = trainer._train_fn([({}, {}, tf.constant(1.0))]).numpy()
    # loss = sum(v^2) = 13 over 1 (no batch, no time); grad 2v; v' = v - 0.1 * 2v = 0.8 v
    np.testing.assert_allclose(stats[0, :2], [13.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(v.numpy(), [2.4, -1.6], rtol=1e-6)


@tf_only
def test_sgd_step_on_as_is_over_padded_frames(tmp_path):
    tf = pytest.importorskip("tensorflow")

    # loss = sum over the valid frames of x * v, per frame: dL/dv = mean of the valid x
    trainer = _trainer(
        tmp_path,
        {
            "v": {"class": "variable", "shape": [1], "init": 1.0},
            "xv": {"class": "combine", "kind": "mul", "from": ["data", "v"], "loss": "as_is"},
        },
        {"data": {"dim": 1}},
    )
    x = np.array([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]], np.float32)[..., None]  # padded: 100
    lengths = np.array([3, 1], np.int32)
    stats = trainer._train_fn(
        [({"data": tf.constant(x)}, {"data": tf.constant(lengths)}, tf.constant(1.0))]
    ).numpy()
    np.testing.assert_allclose(stats[0, :2], [10.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(
        trainer.net.variable("v/v").numpy(), [1.0 - 0.1 * 10.0 / 4.0], rtol=1e-6
    )


@tf_only
def test_returnn_corpus_subnet_loss_trains(tmp_path):
    """RETURNN's test_subnet_loss network: its only loss is `as_is` on a variable [F=1];
    loss = v, so each SGD step lowers v by the learning rate."""
    tf = pytest.importorskip("tensorflow")
    from pathlib import Path

    import yaml

    text = (
        Path(__file__).resolve().parents[1] / "returnn_corpus" / "layer_subnet_loss.yaml"
    ).read_text()
    cfg = yaml.safe_load(text)
    trainer = _trainer(tmp_path, cfg["network"], cfg["extern_data"])
    assert [s.layer for s in trainer.losses] == ["sub/loss"]
    assert trainer.net.variable("sub/var/var").numpy().tolist() == [0.0]
    assert trainer.input_keys == ()  # the loss reads no data
    for step in range(1, 4):
        stats = trainer._train_fn([({}, {}, tf.constant(1.0))]).numpy()
        np.testing.assert_allclose(stats[0, :2], [-0.1 * (step - 1), 1.0], atol=1e-6)
        np.testing.assert_allclose(
            trainer.net.variable("sub/var/var").numpy(), [-0.1 * step], rtol=1e-5
        )
