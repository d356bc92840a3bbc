"""RETURNN's training options in netcompiler's `train:` section: `learning_rates` (per-epoch
list/mapping), the `newbob_multi_epoch` learning-rate control, `gradient_clip_value` (per entry),
`gradient_noise` and `max_seq_length`. Expectations are computed by hand (the comments give the
arithmetic) or with NumPy, never read off netcompiler's output."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from netcompiler.training.lr_control import LearningRateControl, LearningRateError

# -- learning_rates (no TensorFlow needed) ---------------------------------------------------------


def run_epochs(ctl: LearningRateControl, scores, errors=None) -> list[float]:
    """The rate of each epoch 1..len(scores), feeding the scores after each epoch."""
    rates = []
    for epoch, score in enumerate(scores, start=1):
        rates.append(ctl.begin_epoch(epoch))
        ctl.end_epoch(score, None if errors is None else errors[epoch - 1])
    return rates


def test_learning_rates_list_then_constant_keeps_the_last_rate():
    ctl = LearningRateControl("constant", 1.0, {}, learning_rates=[0.1, 0.2])
    assert ctl.rate(0) == 0.1  # the optimizer is built with epoch 1's rate
    assert run_epochs(ctl, [5.0, 4.0, 3.0, 2.0]) == [0.1, 0.2, 0.2, 0.2]
    assert ctl.rate(12345) == 0.2  # per epoch, not per step


def test_learning_rates_mapping_fixes_only_the_listed_epochs():
    ctl = LearningRateControl("constant", 1.0, {}, learning_rates={1: 0.1, "3": 0.3})
    assert run_epochs(ctl, [1.0] * 5) == [0.1, 0.1, 0.3, 0.3, 0.3]


def test_learning_rates_then_newbob_continues_from_the_last_listed_rate():
    # newbob (netcompiler's: relative to the previous score), decay 0.5, threshold -0.01
    ctl = LearningRateControl("newbob", 1.0, {"decay": 0.5}, learning_rates=[0.1, 0.2, 0.4])
    rates = run_epochs(ctl, [10.0, 9.0, 8.99, 8.98, 7.0, 6.0])
    # epochs 1-3 listed; after epoch 3: (8.99 - 9)/9 = -0.0011 > -0.01 -> 0.4 * 0.5 = 0.2;
    # after 4: (8.98 - 8.99)/8.99 > -0.01 -> 0.1; after 5: -0.22 -> keep 0.1
    assert rates == [0.1, 0.2, 0.4, 0.2, 0.1, 0.1]


@pytest.mark.parametrize(
    "bad, words",
    [
        ([0.1, 0.0], "epoch 2 must be a number > 0"),
        ({"x": 0.1}, "not an epoch number"),
        ({0: 0.1}, "not an epoch number >= 1"),
        ("0.1", "must be a list"),
    ],
)
def test_learning_rates_bad_values_are_one_line_errors(bad, words):
    with pytest.raises(LearningRateError, match=words):
        LearningRateControl("constant", 1.0, {}, learning_rates=bad)


def test_learning_rates_need_a_per_epoch_control():
    with pytest.raises(LearningRateError, match="per-epoch learning_rate_control"):
        LearningRateControl("warmup", 1.0, {}, learning_rates=[0.1])


# -- newbob_multi_epoch: RETURNN's rule, by hand ---------------------------------------------------
def test_newbob_multi_epoch_decisions_by_hand():
    ctl = LearningRateControl(
        "newbob_multi_epoch",
        1.0,
        {"num_epochs": 2, "update_interval": 1, "decay": 0.5, "min_num_epochs_per_new_lr": 2},
        learning_rates=[0.25, 0.5],
    )
    scores = [10.0, 8.0, 7.0, 6.99, 6.98, 6.0, 6.0, 6.0]
    rates = run_epochs(ctl, scores)
    # e1, e2: listed.
    # e3: the last 2 epochs used 2 different rates (0.25, 0.5) -> keep 0.5
    # e4: last rates (0.5, 0.5): window e1..e3: (8-10)/8 = -0.25, (7-8)/7 = -0.1429;
    #     mean -0.196 <= -0.01 -> keep 0.5
    # e5: window e2..e4: -0.1429, (6.99-7)/6.99 = -0.00143; mean -0.0721 -> keep 0.5
    # e6: window e3..e5: -0.00143, (6.98-6.99)/6.98 = -0.00143; mean > -0.01 -> 0.25
    # e7: last rates (0.5, 0.25) differ -> keep 0.25
    # e8: window e5..e7: (6-6.98)/6 = -0.1633, (6-6)/6 = 0; mean -0.0817 -> keep 0.25
    assert rates == [0.25, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert ctl.relative_error(3, 4) == pytest.approx((6.99 - 7.0) / 6.99)  # / |new|, not old


def test_newbob_multi_epoch_update_interval_and_defaults():
    # defaults: decay 0.5 (RETURNN's), threshold -0.01; update_interval 2: decide only before
    # epochs 3, 5, ... (e % 2 == 1); flat scores: relative error 0 > -0.01 -> decay
    ctl = LearningRateControl("newbob_multi_epoch", 1.0, {"num_epochs": 2, "update_interval": 2})
    assert run_epochs(ctl, [3.0] * 6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    # update_interval defaults to num_epochs (3): decisions before epochs 4, 7
    ctl = LearningRateControl("newbob_multi_epoch", 1.0, {"num_epochs": 3})
    assert run_epochs(ctl, [3.0] * 7) == [1.0] * 3 + [0.5] * 3 + [0.25]


def test_newbob_multi_epoch_relative_lr_growth_min_rate_and_error_measure():
    # relative_error_relative_lr: e3's relative error (9.95-10)/9.95 = -0.005025 is divided by
    # (epoch 2's rate 0.1 / learning_rate 1.0) -> -0.05025 < -0.01: no decay
    opts = {"num_epochs": 1, "update_interval": 1}
    with_lr = LearningRateControl(
        "newbob_multi_epoch",
        1.0,
        {**opts, "relative_error_relative_lr": True},
        learning_rates=[0.1],
    )
    assert run_epochs(with_lr, [10.0, 9.95, 9.0]) == [0.1, 0.1, 0.1]
    plain = LearningRateControl("newbob_multi_epoch", 1.0, opts, learning_rates=[0.1])
    assert run_epochs(plain, [10.0, 9.95, 9.0]) == [0.1, 0.1, 0.05]
    # growth: (5-10)/5 = -1 < grow threshold -0.1 -> 1.0 * 2
    grow = LearningRateControl(
        "newbob_multi_epoch", 1.0, {**opts, "relative_error_grow_threshold": -0.1, "growth": 2.0}
    )
    assert run_epochs(grow, [10.0, 5.0, 5.0]) == [1.0, 1.0, 2.0]
    # min_learning_rate bounds the decay: 1.0 -> 0.5 -> max(0.25, 0.3)
    low = LearningRateControl("newbob_multi_epoch", 1.0, {**opts, "min_learning_rate": 0.3})
    assert run_epochs(low, [1.0] * 4) == [1.0, 1.0, 0.5, 0.3]
    # error_measure error: the losses fall, the errors stay -> decay
    err = LearningRateControl("newbob_multi_epoch", 1.0, {**opts, "error_measure": "error"})
    assert run_epochs(err, [9.0, 8.0, 7.0], [0.2, 0.2, 0.2]) == [1.0, 1.0, 0.5]
    # relative_error_div_by_old: (9.95-10)/10 = -0.005 (> -0.01 as well) -> decay
    old = LearningRateControl(
        "newbob_multi_epoch", 1.0, {**opts, "relative_error_div_by_old": True}
    )
    run_epochs(old, [10.0, 9.95])
    assert old.relative_error(1, 2) == pytest.approx(-0.005)


def test_newbob_multi_epoch_missing_score_keeps_the_rate():
    ctl = LearningRateControl("newbob_multi_epoch", 1.0, {"num_epochs": 1, "update_interval": 1})
    assert run_epochs(ctl, [1.0, float("nan"), 1.0]) == [1.0, 1.0, 1.0]


def test_newbob_multi_epoch_bad_options():
    with pytest.raises(LearningRateError, match="must not be above"):
        LearningRateControl("newbob_multi_epoch", 1.0, {"relative_error_grow_threshold": 0.1})
    with pytest.raises(LearningRateError, match="num_epochs must be an integer >= 1"):
        LearningRateControl("newbob_multi_epoch", 1.0, {"num_epochs": 0})
    with pytest.raises(LearningRateError, match="not used by `newbob`"):
        LearningRateControl("newbob", 1.0, {"num_epochs": 3})


def test_state_round_trip_continues_like_an_uninterrupted_run():
    opts = {
        "num_epochs": 2,
        "update_interval": 1,
        "min_num_epochs_per_new_lr": 2,
        "relative_error_relative_lr": True,
    }
    scores = [10.0, 9.0, 8.99, 8.98, 8.97, 8.0, 7.99, 7.98]
    full = LearningRateControl("newbob_multi_epoch", 0.5, opts, learning_rates=[0.1, 0.3])
    expected = run_epochs(full, scores)
    first = LearningRateControl("newbob_multi_epoch", 0.5, opts, learning_rates=[0.1, 0.3])
    rates = run_epochs(first, scores[:4])
    state = json.loads(json.dumps(first.state()))  # as meta.json holds it
    second = LearningRateControl("newbob_multi_epoch", 0.5, opts, learning_rates=[0.1, 0.3])
    second.load_state(state)
    for epoch, score in enumerate(scores[4:], start=5):
        rates.append(second.begin_epoch(epoch))
        second.end_epoch(score)
    assert rates == expected
    assert len(set(expected)) >= 3  # the sequence really changes the rate


# -- max_seq_length in batching --------------------------------------------------------------------
def _dataset(lengths, classes_lengths=None):
    from netcompiler.training.datasets.base import ArrayDataset, KeyInfo

    lengths = np.asarray(lengths)
    cl = np.asarray(classes_lengths if classes_lengths is not None else lengths)
    data = np.zeros((int(lengths.sum()), 3), np.float32)
    data[:, 0] = np.arange(len(data))  # frame numbers, to see where a chunk comes from
    classes = np.arange(int(cl.sum()), dtype=np.int32)
    info = {"data": KeyInfo(dim=3, sparse=False), "classes": KeyInfo(dim=2, sparse=True)}
    return ArrayDataset(
        "train", info, {"data": data, "classes": classes}, {"data": lengths, "classes": cl}
    )


def test_max_seq_length_skips_long_training_sequences():
    from netcompiler.training.datasets import DatasetError
    from netcompiler.training.datasets.pipeline import batches

    ds = _dataset([5, 12, 8, 30, 10, 11], classes_lengths=[2, 3, 9, 1, 4, 5])
    for batching in ("random", "sorted", "laplace:2"):
        groups = batches(ds, 100, None, batching, 1, 1, max_seq_length=10)
        kept = sorted(i for g in groups for i in g)
        assert kept == [0, 2, 4], batching  # lengths 5, 8, 10 (<= 10 in every key)
    groups = batches(ds, 100, None, "random", 1, 1, max_seq_length={"classes": 4})
    assert sorted(i for g in groups for i in g) == [0, 1, 3, 4]  # classes lengths <= 4
    # the complete data without the option
    assert sorted(i for g in batches(ds, 100, None, "random", 1, 1) for i in g) == list(range(6))
    with pytest.raises(DatasetError, match="all 6 sequences"):
        batches(ds, 100, None, "random", 1, 1, max_seq_length=2)
    with pytest.raises(DatasetError, match="key `labels` is not a key"):
        batches(ds, 100, None, "random", 1, 1, max_seq_length={"labels": 4})


# -- chunking -------------------------------------------------------------------------------------
def test_chunking_cuts_sequences_like_returnn():
    from netcompiler.training.datasets import DatasetError
    from netcompiler.training.datasets.chunking import ChunkedDataset, parse_chunking

    assert parse_chunking("4:2") == (4, 2) and parse_chunking("5") == (5, 5)
    assert parse_chunking([3, 1]) == (3, 1) and parse_chunking("0") is None
    with pytest.raises(DatasetError, match="same for every key"):
        parse_chunking({"data": 4})
    flat = np.arange(13, dtype=np.float32)
    chunks = ChunkedDataset(_dataset([10, 3]), 4, 2)
    # sequence 0 (10 frames): starts 0, 2, 4, 6, 8 -> [0,4) [2,6) [4,8) [6,10) [8,10);
    # sequence 1 (3 frames): starts 0, 2 -> [0,3) [2,3)
    spans = [(0, 0, 4), (0, 2, 6), (0, 4, 8), (0, 6, 10), (0, 8, 10), (1, 0, 3), (1, 2, 3)]
    assert chunks.num_seqs == len(spans)
    offsets = [0, 10]
    for j, (s, a, b) in enumerate(spans):
        seq = chunks.get_seq(j)
        np.testing.assert_array_equal(seq["data"][:, 0], flat[offsets[s] + a : offsets[s] + b])
        np.testing.assert_array_equal(
            seq["classes"], np.arange(13)[offsets[s] + a : offsets[s] + b]
        )
    np.testing.assert_array_equal(chunks.seq_lengths(None), [b - a for _, a, b in spans])
    with pytest.raises(DatasetError, match="same length"):
        ChunkedDataset(_dataset([10, 3], classes_lengths=[9, 3]), 4, 2)
    # a key of length 1 (one label per sequence) is given whole to every chunk
    whole = ChunkedDataset(_dataset([10, 3], classes_lengths=[1, 1]), 4, 4)
    assert [len(whole.get_seq(j)["classes"]) for j in range(whole.num_seqs)] == [1] * 4
    assert [len(whole.get_seq(j)["data"]) for j in range(whole.num_seqs)] == [4, 4, 2, 3]


def test_chunking_keeps_a_sequence_in_its_partition():
    from netcompiler.training.datasets.chunking import ChunkedDataset
    from netcompiler.training.datasets.pipeline import batches, epoch_seq_indices

    ds = _dataset([6, 6, 6, 6])
    ds.partition = 2  # epoch 1: sequences 0, 1; epoch 2: sequences 2, 3
    chunks = ChunkedDataset(ds, 3, 3)  # 2 chunks per sequence
    np.testing.assert_array_equal(epoch_seq_indices(chunks, 1), [0, 1, 2, 3])
    np.testing.assert_array_equal(epoch_seq_indices(chunks, 2), [4, 5, 6, 7])
    groups = batches(chunks, 100, None, "random", 1, 2)
    assert sorted(i for g in groups for i in g) == [4, 5, 6, 7]


# -- gradients: per-entry clip and noise (TensorFlow) ----------------------------------------------
tf = pytest.importorskip("tensorflow")

from netcompiler.frontend.validate import validate  # noqa: E402
from netcompiler.training.command_support import TrainError  # noqa: E402
from netcompiler.training.gradients import gradient_post_process  # noqa: E402
from netcompiler.training.trainer import Trainer  # noqa: E402


def test_gradient_clip_value_clips_every_entry():
    g = np.array([[-3.0, -0.5, 0.0], [0.2, 0.75, 9.0]], np.float32)
    h = np.array([1.5, -1.5], np.float32)
    out = gradient_post_process([tf.constant(g), tf.constant(h)], 0.0, 0.7, 1, tf.constant(0))
    np.testing.assert_array_equal(out[0].numpy(), np.clip(g, np.float32(-0.7), np.float32(0.7)))
    np.testing.assert_array_equal(out[1].numpy(), np.array([0.7, -0.7], np.float32))


def test_gradient_noise_statistics_and_seeds():
    zeros = [tf.zeros([200_000]), tf.zeros([200_000])]
    a = gradient_post_process(zeros, 0.1, None, 7, tf.constant(3, tf.int64))
    noise = a[0].numpy()
    # a normal truncated at 2 standard deviations: |x| <= 0.2, mean 0, std 0.1 * 0.8796
    z = 2.0
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(z / math.sqrt(2))
    std = 0.1 * math.sqrt(1 - 2 * z * pdf / mass)
    assert np.abs(noise).max() <= 0.2 + 1e-6
    assert abs(noise.mean()) < 5 * std / math.sqrt(noise.size)
    assert noise.std() == pytest.approx(std, rel=0.01)
    again = gradient_post_process(zeros, 0.1, None, 7, tf.constant(3, tf.int64))
    np.testing.assert_array_equal(again[0].numpy(), noise)  # same (seed, variable, step)
    assert not np.array_equal(a[1].numpy(), noise)  # another variable
    other_step = gradient_post_process(zeros, 0.1, None, 7, tf.constant(4, tf.int64))
    other_seed = gradient_post_process(zeros, 0.1, None, 8, tf.constant(3, tf.int64))
    assert not np.array_equal(other_step[0].numpy(), noise)
    assert not np.array_equal(other_seed[0].numpy(), noise)
    # noise, then the clip (RETURNN's order): every entry within the clip
    both = gradient_post_process([tf.fill([1000], 0.04)], 0.1, 0.05, 7, tf.constant(0))
    assert both[0].numpy().max() <= 0.05 and both[0].numpy().min() >= -0.05


CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 8, with_bias: false}
  output: {class: softmax, from: embed, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 40, min_len: 4, max_len: 30}
  dev_data: {class: 12ax, num_seqs: 10, min_len: 4, max_len: 30}
  batch_size: 300
  num_epochs: 4
  learning_rate: 0.05
  optimizer: {class: adam}
  random_seed: 3
"""


def make_trainer(tmp_path, overrides=(), model_dir="model") -> Trainer:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    result = validate(str(path), list(overrides))
    assert not result.errors, [d.message for d in result.errors]
    return Trainer(result, model_dir=tmp_path / model_dir, out=open(os.devnull, "w"))


def test_one_step_with_per_entry_clip_moves_every_weight_by_at_most_the_clip(tmp_path):
    trainer = make_trainer(
        tmp_path,
        [
            "train.optimizer={class: sgd}",
            "train.learning_rate=1.0",
            "train.gradient_clip_value=0.0001",
        ],
    )
    trainer.load_data()
    before = {n: v.numpy().copy() for n, v in trainer.net.variables_by_name.items()}
    groups = trainer._groups(trainer.train_data, 1)
    batch = next(iter(trainer._iterate(trainer.train_data, groups[:1])))
    trainer._train_fn(batch)
    deltas = np.concatenate(
        [np.abs(v.numpy() - before[n]).ravel() for n, v in trainer.net.variables_by_name.items()]
    )
    # SGD with rate 1: the step is the clipped gradient; the larger entries sit at the clip
    # (up to float32 rounding of w - 1e-4 for |w| < 1: 1e-3 relative)
    assert deltas.max() <= 1e-4 * (1 + 1e-3)
    assert np.count_nonzero(np.isclose(deltas, 1e-4, rtol=1e-3)) >= 10
    assert np.count_nonzero(deltas > 1e-4 * 1.01) == 0


OPTIONS = [
    "train.learning_rates=[0.002, 0.01]",
    "train.learning_rate=0.02",
    "train.learning_rate_control=newbob_multi_epoch",
    "train.learning_rate_control_opts={num_epochs: 1, update_interval: 1, "
    "relative_error_threshold: -100.0, decay: 0.5}",
    "train.gradient_clip_value=0.5",
    "train.gradient_noise=0.01",
    "train.gradient_clip=5",
    "train.max_seq_length=20",
]


def test_training_with_the_options_together_and_resume(tmp_path):
    full = make_trainer(tmp_path, OPTIONS, "full")
    seen: list[int] = []
    iterate = full._iterate

    def spy(dataset, groups):
        if dataset is full.train_data:
            seen.extend(i for g in groups for i in g)
        return iterate(dataset, groups)

    full._iterate = spy
    full.train()
    lengths = full.train_data.seq_lengths(None)
    assert seen and all(lengths[i] <= 20 for i in seen)  # max_seq_length 20
    long = {i for i in range(len(lengths)) if lengths[i] > 20}
    assert long and not long & set(seen)
    rows = (tmp_path / "full" / "scores.tsv").read_text().splitlines()[1:]
    rates = [float(r.split("\t")[1]) for r in rows]
    dev = [float(r.split("\t")[4]) for r in rows]
    assert all(math.isfinite(d) for d in dev)
    # epochs 1, 2 listed; then RETURNN's rule with threshold -100 (decay unless the dev loss
    # fell to below 1/101, i.e. always here): epoch 3 = 0.01 * 0.5, epoch 4 = 0.0025
    assert rates == [0.002, 0.01, 0.005, 0.0025]
    # resume: 2 epochs, then a new process-like trainer continues to 4
    first = make_trainer(tmp_path, OPTIONS + ["train.num_epochs=2"], "resumed")
    first.train()
    second = make_trainer(tmp_path, OPTIONS, "resumed")
    second.train()
    rows2 = (tmp_path / "resumed" / "scores.tsv").read_text().splitlines()[1:]
    assert [float(r.split("\t")[1]) for r in rows2] == rates
    meta = json.loads((tmp_path / "resumed" / "ckpt-004" / "meta.json").read_text())
    assert sorted(meta["learning_rate_control"]["history"]) == ["1", "2", "3", "4"]
    # the same noise and data: the resumed weights equal the uninterrupted ones
    for name, var in full.net.variables_by_name.items():
        np.testing.assert_allclose(
            second.net.variables_by_name[name].numpy(),
            var.numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def test_resume_uses_the_stored_history_for_the_multi_epoch_rule(tmp_path):
    """A decision right after the resume needs the scores of epochs before it (meta.json)."""
    opts = [
        "train.learning_rate_control=newbob_multi_epoch",
        "train.learning_rate_control_opts={num_epochs: 2, update_interval: 1, "
        "relative_error_threshold: -100.0, min_num_epochs_per_new_lr: 2}",
    ]
    first = make_trainer(tmp_path, opts + ["train.num_epochs=2"])
    first.train()
    second = make_trainer(tmp_path, opts + ["train.num_epochs=4"])
    second.train()
    rates = [
        float(r.split("\t")[1])
        for r in (tmp_path / "model" / "scores.tsv").read_text().splitlines()[1:]
    ]
    # e2: 1 epoch < min 2 -> keep; e3: window e1, e2 -> mean > -100 -> decay 0.05 * 0.5;
    # e4: last two rates differ -> keep 0.025 (needs epoch 2's stored rate)
    assert rates == [0.05, 0.05, 0.025, 0.025]


def test_max_seq_length_removing_everything_is_a_train_error(tmp_path):
    trainer = make_trainer(tmp_path, ["train.max_seq_length=2"])
    with pytest.raises(TrainError, match="train.max_seq_length: all 40 sequences"):
        trainer.train()


MIRRORED_SCRIPT = r"""
import io, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from netcompiler.frontend.validate import validate
from netcompiler.training.trainer import Trainer
cfg, out = sys.argv[1], sys.argv[2]
res = {}
for name in ("default", "mirrored"):
    result = validate(cfg, [f"train.distribution={name}", "train.num_epochs=1",
                            "train.max_seqs=3", "train.gradient_clip_value=0.05",
                            "train.gradient_noise=0.02", "train.gradient_clip=1.0",
                            "train.dev_data=null", "train.accum_grad_multiple_step=2"])
    t = Trainer(result, model_dir=f"{out}/{name}", out=io.StringIO())
    t.train()
    res[name] = {"replicas": t.num_replicas, "updates": int(t.optimizer.iterations.numpy()),
                 "batches": int(t.state.accum_step.numpy()),
                 "weights": {k: v.numpy().tolist() for k, v in t.net.variables_by_name.items()}}
json.dump(res, open(f"{out}/res.json", "w"))
"""


def test_mirrored_replicas_add_the_same_noise_and_clip_the_summed_gradient(tmp_path):
    """Two replicas == one device: the noise and the clips act on the summed gradient, also
    accumulated over 2 batches (accum_grad_multiple_step)."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "c.yaml").write_text(CONFIG.replace("num_seqs: 40", "num_seqs: 7"))
    script = tmp_path / "m.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c.yaml"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["default"]["replicas"] == 1 and res["mirrored"]["replicas"] == 2
    for name in ("default", "mirrored"):
        assert res[name]["batches"] >= 3 and res[name]["updates"] == res[name]["batches"] // 2
    for k, w in res["default"]["weights"].items():
        np.testing.assert_allclose(
            w, res["mirrored"]["weights"][k], rtol=1e-4, atol=1e-6, err_msg=k
        )


# -- accum_grad_multiple_step ---------------------------------------------------------------------
def _sgd_deltas(tmp_path, name, overrides, batches_used):
    """Weight changes after training steps on the given batches (SGD, rate 1, no momentum)."""
    trainer = make_trainer(
        tmp_path, ["train.optimizer={class: sgd}", "train.learning_rate=1.0"] + overrides, name
    )
    trainer.load_data()
    groups = trainer._groups(trainer.train_data, 1)[:2]
    before = {n: v.numpy().copy() for n, v in trainer.net.variables_by_name.items()}
    for batch in [
        b for i, b in enumerate(trainer._iterate(trainer.train_data, groups)) if i in batches_used
    ]:
        fn = trainer._train_fn
        if trainer.accum_steps > 1 and int(trainer.state.accum_step.numpy()) % 2 != 1:
            fn = trainer._accum_fn
        fn(batch)
    return trainer, {n: v.numpy() - before[n] for n, v in trainer.net.variables_by_name.items()}


def test_accum_grad_multiple_step_applies_the_sum_every_n_batches(tmp_path):
    # one batch each, from the same initial weights: the SGD step is -gradient
    _, d1 = _sgd_deltas(tmp_path, "b1", [], {0})
    _, d2 = _sgd_deltas(tmp_path, "b2", [], {1})
    trainer, after_one = _sgd_deltas(tmp_path, "a1", ["train.accum_grad_multiple_step=2"], {0})
    assert all(not np.any(d) for d in after_one.values())  # accumulated, not applied
    assert int(trainer.optimizer.iterations.numpy()) == 0
    trainer, both = _sgd_deltas(tmp_path, "a2", ["train.accum_grad_multiple_step=2"], {0, 1})
    assert int(trainer.optimizer.iterations.numpy()) == 1
    assert int(trainer.state.accum_step.numpy()) == 2
    for name in d1:  # one update with the sum of both batches' gradients (RETURNN's)
        assert np.abs(d1[name]).max() > 0
        np.testing.assert_allclose(
            both[name], d1[name] + d2[name], rtol=1e-4, atol=1e-6, err_msg=name
        )


def test_accum_grad_training_resumes_like_an_uninterrupted_run(tmp_path):
    opts = ["train.accum_grad_multiple_step=5", "train.num_epochs=2"]
    full = make_trainer(tmp_path, opts, "full")
    full.train()
    steps = int(full.state.accum_step.numpy())
    assert steps > 5 and steps % 5 != 0  # the accumulation runs across the epoch boundary
    assert int(full.optimizer.iterations.numpy()) == steps // 5
    make_trainer(
        tmp_path, ["train.accum_grad_multiple_step=5", "train.num_epochs=1"], "resumed"
    ).train()
    second = make_trainer(tmp_path, opts, "resumed")
    second.train()
    for name, var in full.net.variables_by_name.items():
        np.testing.assert_allclose(
            second.net.variables_by_name[name].numpy(),
            var.numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def test_training_on_chunks_keeps_dev_data_whole(tmp_path):
    from netcompiler.training.datasets.chunking import ChunkedDataset

    # unquoted, YAML 1.1 reads 5:3 as the integer 303 (base 60): rejected, not misread
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "  chunking: 5:3\n")
    assert any("chunking" in d.message for d in validate(str(path)).errors)
    trainer = make_trainer(tmp_path, ["train.chunking='5:3'", "train.num_epochs=1"])
    lengths_seen: list[int] = []
    iterate = trainer._iterate

    def spy(dataset, groups):
        if dataset is trainer.train_data:
            lengths_seen.extend(int(dataset.seq_length(i)) for g in groups for i in g)
        return iterate(dataset, groups)

    trainer._iterate = spy
    trainer.train()
    assert isinstance(trainer.train_data, ChunkedDataset)
    base = trainer.train_data.base.seq_lengths(None)
    # starts 0, 3, 6, ... < L: ceil(L / 3) chunks per sequence, each min(5, L - start) frames
    expected = sorted(min(5, int(n) - a) for n in base for a in range(0, int(n), 3))
    assert sorted(lengths_seen) == expected
    assert trainer.dev_data.num_seqs == 10  # dev data is not chunked
    row = (tmp_path / "model" / "scores.tsv").read_text().splitlines()[1].split("\t")
    assert math.isfinite(float(row[2])) and math.isfinite(float(row[4]))
