"""The `spec_augment` layer: validation without TensorFlow; at run time the identity when not
training, and in training masks checked with NumPy on the output against the documented limits
(contiguous spans inside the valid frames, counts and widths in range, padding untouched) and
drawn reproducibly from (layer seed, training step)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import netcompiler
from netcompiler.frontend.expr_python_call import SPEC_AUGMENT_EXAMPLE


def cfg(layer: dict, dim: int = 20, extra: dict | None = None) -> dict:
    net = {"output": dict({"class": "spec_augment", "from": "data"}, **layer)}
    net.update(extra or {})
    return {"extern_data": {"data": {"dim": dim}}, "network": net}


def errors(config: dict):
    return [
        (d.rule, d.dotted_path)
        for d in netcompiler.validate(config).diagnostics
        if d.severity == "error"
    ]


# -- validation (no TensorFlow) --------------------------------------------------------------------
def test_valid_configs():
    assert errors(cfg({})) == []
    # the rwth-i6 setup's `transform` after its warm-up
    assert (
        errors(
            cfg(
                {
                    "min_num_time_masks": 2,
                    "max_num_time_masks": 8,
                    "time_mask_frames_per_mask": 25,
                    "max_time_mask_width": 20,
                    "min_num_feature_masks": 2,
                    "max_num_feature_masks": 5,
                    "mask_value": -1.0,
                }
            )
        )
        == []
    )
    shapes = netcompiler.validate(cfg({})).inferred.shapes
    assert str(shapes["output"]) == "[B, T(data), F=20]"


def test_the_python_call_hint_shows_a_valid_layer():
    hook = (
        "self.network.get_config().typed_value('transform')(source(0, as_data=True), "
        "network=self.network)"
    )
    diags = netcompiler.validate(
        cfg({}, extra={"output": {"class": "eval", "from": "data", "eval": hook}})
    ).diagnostics
    hints = [d.hint for d in diags if d.rule == "expr.python-call"]
    assert len(hints) == 1 and SPEC_AUGMENT_EXAMPLE in hints[0]
    layer = yaml.safe_load(SPEC_AUGMENT_EXAMPLE)
    config = {"extern_data": {"data": {"dim": 40}}, "network": {"output": layer}}
    assert errors(config) == []


@pytest.mark.parametrize(
    "layer, extern, rule, path",
    [
        (
            {"min_num_time_masks": 3, "max_num_time_masks": 2},
            None,
            "shape.spec-augment",
            "network.output.min_num_time_masks",
        ),
        (
            {"min_num_feature_masks": 1, "max_num_feature_masks": 0},
            None,
            "shape.spec-augment",
            "network.output.min_num_feature_masks",
        ),
        (
            {"max_feature_mask_width": 21},
            None,
            "shape.spec-augment",
            "network.output.max_feature_mask_width",
        ),
        ({}, {"data": {"dim": 9, "sparse": True}}, "shape.dtype", "network.output.from"),
        ({}, {"data": {"dim": 4, "shape": [4]}}, "shape.no-time", "network.output.from"),
        ({"max_time_mask_width": 0}, None, None, "network.output.max_time_mask_width"),
        ({"time_warp": True}, None, None, "network.output.time_warp"),
    ],
)
def test_invalid_configs(layer, extern, rule, path):
    config = cfg(layer)
    if extern is not None:
        config["extern_data"] = extern
    errs = errors(config)
    assert len(errs) == 1, errs
    if rule is not None:
        assert errs[0] == (rule, path)
    else:  # a schema error
        assert errs[0][0].startswith("schema.") and errs[0][1] == path


def test_inside_a_rec_unit_is_an_error():
    unit = {
        "sa": {"class": "spec_augment", "from": "base:data"},
        "output": {"class": "copy", "from": "data:source"},
    }
    config = {
        "extern_data": {"data": {"dim": 6}},
        "network": {
            "r": {"class": "rec", "from": "data", "unit": unit},
            "output": {"class": "copy", "from": "r"},
        },
    }
    rules = [r for r, _ in errors(config)]
    assert rules and set(rules) <= {"shape.unsupported"}


# -- run time --------------------------------------------------------------------------------------
B, T, F = 24, 40, 20
LENGTHS = np.array([40, 10, 25, 12, 33, 17, 40, 11] * 3, np.int32)


def inputs(seed: int = 0, lengths=LENGTHS, t: int = T):
    """Values in [5, 6) at valid frames (never 0 or the mask value), 0 at padding."""
    rng = np.random.default_rng(seed)
    x = 5 + rng.random((len(lengths), t, F)).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    return x


def run(layer: dict, step: int = 3, seed: int = 5, x=None, lengths=LENGTHS, training=True):
    import tensorflow as tf

    net = netcompiler.compile(cfg(layer), seed=seed)
    x = inputs(lengths=lengths) if x is None else x
    out = net.forward(
        {"data": tf.constant(x)},
        {"data": tf.constant(lengths)},
        training=training,
        fetch=("output",),
        step_seed=tf.constant(step, tf.int64),
    )
    return x, out["output"][0].numpy()


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The contiguous True runs of a 1-D bool array as (start, stop)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def decompose(x, y, lengths=LENGTHS):
    """Per sequence: masked frames (every feature masked) and masked features (masked at every
    valid frame); checks that the masked entries are exactly their union and that padding is
    untouched."""
    out = []
    for b, n in enumerate(lengths):
        changed = y[b] != x[b]
        assert not changed[n:].any(), "padded frames changed"
        np.testing.assert_array_equal(y[b, n:], 0.0)
        rows = changed[:n].all(axis=1)
        cols = changed[:n].all(axis=0)
        np.testing.assert_array_equal(changed[:n], rows[:, None] | cols[None, :])
        out.append((rows, cols))
    return out


@pytest.mark.tf
def test_identity_when_not_training():
    x, y = run({"min_num_time_masks": 2, "min_num_feature_masks": 2}, training=False)
    np.testing.assert_array_equal(y, x)
    net = netcompiler.compile(cfg({}))
    y = net(inputs={"data": x}, lengths={"data": LENGTHS})["output"][0].numpy()
    np.testing.assert_array_equal(y, x)


@pytest.mark.tf
@pytest.mark.parametrize("step", [1, 2, 3])
def test_one_mask_each_is_one_contiguous_span_within_the_limits(step):
    x, y = run(
        {
            "min_num_time_masks": 1,
            "max_num_time_masks": 1,
            "max_time_mask_width": 5,
            "min_num_feature_masks": 1,
            "max_num_feature_masks": 1,
            "max_feature_mask_width": 4,
        },
        step=step,
    )
    for b, (rows, cols) in enumerate(decompose(x, y)):
        ((t0, t1),) = runs(rows)
        assert 1 <= t1 - t0 <= 5 and t1 <= LENGTHS[b]
        ((f0, f1),) = runs(cols)
        assert 1 <= f1 - f0 <= 4
        assert np.all(y[b][: LENGTHS[b]][rows] == 0.0)
        assert np.all(y[b][: LENGTHS[b]][:, cols] == 0.0)


@pytest.mark.tf
def test_counts_of_masked_frames_and_features_are_within_bounds():
    layer = {
        "min_num_time_masks": 1,
        "max_num_time_masks": 3,
        "max_time_mask_width": 3,
        "min_num_feature_masks": 0,
        "max_num_feature_masks": 2,
        "max_feature_mask_width": 3,
    }
    n_runs_t, n_runs_f, frames = [], [], []
    for step in range(4):
        x, y = run(layer, step=step)
        for rows, cols in decompose(x, y):
            r = runs(rows)
            assert 1 <= len(r) <= 3 and 1 <= rows.sum() <= 3 * 3
            assert all(stop - start <= 3 * 3 for start, stop in r)
            c = runs(cols)
            assert len(c) <= 2 and cols.sum() <= 2 * 3
            n_runs_t.append(len(r))
            n_runs_f.append(len(c))
            frames.append(rows.sum())
    # the whole ranges are drawn: no feature mask, and several masks
    assert min(n_runs_f) == 0 and max(n_runs_f) == 2
    assert max(n_runs_t) >= 2 and max(frames) > 3


@pytest.mark.tf
def test_number_of_time_masks_scales_with_the_length():
    # width 1 and distinct starts: the number of masked frames is the number of masks
    lengths = np.array([200, 15, 200, 15] * 4, np.int32)
    x = inputs(lengths=lengths, t=200)
    counts = {200: [], 15: []}
    for step in range(5):
        _, y = run(
            {
                "min_num_time_masks": 0,
                "max_num_time_masks": 1,
                "time_mask_frames_per_mask": 10,
                "max_time_mask_width": 1,
                "min_num_feature_masks": 0,
                "max_num_feature_masks": 0,
            },
            step=step,
            x=x,
            lengths=lengths,
        )
        for b, (rows, cols) in enumerate(decompose(x, y, lengths)):
            assert not cols.any()
            counts[int(lengths[b])].append(int(rows.sum()))
    assert max(counts[15]) <= 1 and max(counts[200]) <= 20
    assert max(counts[200]) > 5  # uniform in [0, 20] over 40 draws


@pytest.mark.tf
def test_a_short_sequence_gets_at_most_one_mask_per_frame():
    lengths = np.array([3, 40], np.int32)
    x = inputs(lengths=lengths)
    _, y = run(
        {
            "min_num_time_masks": 5,
            "max_num_time_masks": 5,
            "max_time_mask_width": 1,
            "min_num_feature_masks": 0,
            "max_num_feature_masks": 0,
        },
        x=x,
        lengths=lengths,
    )
    (rows3, _), (rows40, _) = decompose(x, y, lengths)
    assert rows3.all() and rows40.sum() == 5


@pytest.mark.tf
def test_mask_value():
    x, y = run(
        {
            "mask_value": -1.5,
            "min_num_time_masks": 2,
            "max_num_time_masks": 2,
            "max_time_mask_width": 4,
        }
    )
    changed = y != x
    assert changed.any() and np.all(y[changed] == -1.5)
    for b, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(y[b, n:], 0.0)


@pytest.mark.tf
def test_masks_are_reproducible_from_seed_and_step():
    layer = {"max_num_time_masks": 3, "max_time_mask_width": 6}
    _, a = run(layer, step=7)
    _, b = run(layer, step=7)
    np.testing.assert_array_equal(a, b)
    _, c = run(layer, step=8)
    _, d = run(layer, step=7, seed=6)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


@pytest.mark.tf
def test_masked_entries_get_no_gradient():
    import tensorflow as tf

    config = cfg(
        {"min_num_time_masks": 2},
        extra={
            "sa": {"class": "spec_augment", "from": "data", "min_num_time_masks": 2},
            "output": {"class": "linear", "from": "sa", "n_out": 3},
        },
    )
    net = netcompiler.compile(config, seed=1)
    x = tf.constant(inputs())
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = net.forward(
            {"data": x},
            {"data": tf.constant(LENGTHS)},
            training=True,
            fetch=("output", "sa"),
            step_seed=tf.constant(1, tf.int64),
        )
        loss = tf.reduce_sum(out["output"][0])
    grad = tape.gradient(loss, x).numpy()
    masked = out["sa"][0].numpy() != x.numpy()
    assert masked.any()
    assert np.all(grad[masked] == 0) and np.all(grad[~masked & (x.numpy() != 0)] != 0)


TRAIN_CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 10, with_bias: false}
  sa: {class: spec_augment, from: embed, max_num_time_masks: 2, max_time_mask_width: 3}
  lstm: {class: rec, unit: lstm, from: sa, n_out: 8}
  output: {class: softmax, from: lstm, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 60}
  dev_data: {class: 12ax, num_seqs: 10}
  batch_size: 200
  num_epochs: 2
  learning_rate: 0.01
  optimizer: {class: adam}
  random_seed: 3
"""


@pytest.mark.tf
def test_training_masks_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    import os

    from netcompiler.training.trainer import Trainer

    def train(model_dir, epochs, text=TRAIN_CONFIG):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        result = netcompiler.validate(str(path), [f"train.num_epochs={epochs}"])
        assert not result.errors, result.errors
        with open(os.devnull, "w") as out:
            Trainer(result, model_dir=tmp_path / model_dir, out=out).train()
        lines = (tmp_path / model_dir / "scores.tsv").read_text().splitlines()
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    ref = train("ref", 2)
    train("run", 1)
    got = train("run", 2)  # resumes at epoch 2
    assert [r["epoch"] for r in got] == ["1", "2"]
    for g, w in zip(got, ref):
        for col in ("train_loss", "dev_loss"):
            assert float(g[col]) == pytest.approx(float(w[col]), rel=1e-5), (col, g, w)
    # the masks are applied in training: without them the training loss differs
    plain = train(
        "plain",
        1,
        TRAIN_CONFIG.replace("from: sa", "from: embed").replace(
            "  sa: {class: spec_augment", "  # sa: {class: spec_augment"
        ),
    )
    assert float(plain[0]["train_loss"]) != pytest.approx(float(ref[0]["train_loss"]), rel=1e-6)
