"""`netcompiler train` end to end: learning, one trace, checkpoints, resume after SIGKILL,
NaN stop, mirrored strategy == one device, scores.tsv / TensorBoard, learning-rate control."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.cli import app as cli
from netcompiler.frontend.validate import validate  # noqa: E402
from netcompiler.training.checkpoints import list_checkpoints  # noqa: E402
from netcompiler.training.command_support import TrainError  # noqa: E402
from netcompiler.training.fault_injection import DIE_ENV, NAN_ENV  # noqa: E402
from netcompiler.training.lr_control import LearningRateControl, LearningRateError  # noqa: E402
from netcompiler.training.scores import SCORE_COLUMNS  # noqa: E402
from netcompiler.training.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.tf
REPO = Path(__file__).resolve().parents[2]

CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 16, with_bias: false, L2: 0.0001}
  # dropout: the resume test then also proves that dropout masks are reproducible
  lstm: {class: rec, unit: lstm, from: embed, n_out: 32, dropout: 0.1}
  output: {class: softmax, from: lstm, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 200}
  dev_data: {class: 12ax, num_seqs: 50}
  batch_size: 400
  num_epochs: 4
  learning_rate: 0.01
  optimizer: {class: adam}
  random_seed: 7
"""


def write_config(tmp_path, text=CONFIG, name="c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def make_trainer(tmp_path, overrides=(), model_dir="model", **kwargs) -> Trainer:
    result = validate(write_config(tmp_path), list(overrides))
    assert not result.errors, result.errors
    return Trainer(
        result,
        model_dir=tmp_path / model_dir,
        out=kwargs.pop("out", None) or open(os.devnull, "w"),
        **kwargs,
    )


def read_scores(model_dir) -> list[dict]:
    lines = (Path(model_dir) / "scores.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert tuple(header) == SCORE_COLUMNS
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def ckpt_values(prefix, what="network/") -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k.startswith(what) and not k.startswith("_CHECKPOINTABLE")
    }


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(DIE_ENV, None)
    env.pop(NAN_ENV, None)
    env.update(extra)
    return env


def run_cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "netcompiler", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=120,
    )


# -- learning, one trace, outputs ------------------------------------------------------------------
def test_learns_12ax_with_one_trace(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train()
    scores = read_scores(tmp_path / "model")
    assert [int(r["epoch"]) for r in scores] == [1, 2, 3, 4]
    first, last = float(scores[0]["dev_error"]), float(scores[-1]["dev_error"])
    assert last < first / 2, scores
    assert float(scores[-1]["train_loss"]) < float(scores[0]["train_loss"])
    # batches of different shapes went through one traced step function (and one eval function)
    assert trainer.trace_counts == {"train": 1, "eval": 1}
    # TensorBoard events, keep_last_n=2 checkpoints
    assert list((tmp_path / "model" / "tensorboard").glob("events.out.tfevents.*"))
    assert [e for e, _ in list_checkpoints(tmp_path / "model")] == [3, 4]
    assert not list((tmp_path / "model").glob(".tmp-*"))
    # checkpoint keys by layer/param name, plus optimizer and training state
    keys = ckpt_values(tmp_path / "model" / "ckpt-004" / "ckpt", "")
    assert "network/lstm/W_re/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert any(k.startswith("optimizer/") for k in keys)
    assert keys["train_state/epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    meta = json.loads((tmp_path / "model" / "ckpt-004" / "meta.json").read_text())
    assert meta["epoch"] == 4 and meta["seed"] == 7


def test_tensorboard_scalars_readable(tmp_path):
    trainer = make_trainer(tmp_path, ["train.num_epochs=1", "train.dev_data=null"])
    trainer.train()
    event_file = next((tmp_path / "model" / "tensorboard").glob("events.out.tfevents.*"))
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(str(event_file)):
        for value in event.summary.value:
            tags.add(value.tag)
            assert value.metadata.plugin_data.plugin_name == "scalars"
    assert {"train/loss", "train/error", "learning_rate"} <= tags
    row = read_scores(tmp_path / "model")[0]
    assert row["dev_loss"] == "nan"


def test_optimizer_state_restored(tmp_path):
    a = make_trainer(tmp_path, ["train.num_epochs=1"])
    a.train()
    before = [(v.name, v.numpy()) for v in a.optimizer.variables]
    assert int(a.optimizer.iterations.numpy()) > 0
    b = make_trainer(tmp_path, ["train.num_epochs=1"])
    fresh = [v.numpy() for v in b.optimizer.variables]
    assert b.restore() == 1
    after = [(v.name, v.numpy()) for v in b.optimizer.variables]
    assert [n for n, _ in before] == [n for n, _ in after] and len(before) > 2
    changed = 0
    for (name, x), (_, y), z in zip(before, after, fresh):
        np.testing.assert_array_equal(x, y, err_msg=name)
        changed += not np.array_equal(x, z)
    assert changed >= len(before) - 1  # moments and iterations (not the learning rate) moved
    for name, var in a.net.variables_by_name.items():
        np.testing.assert_array_equal(var.numpy(), b.net.variables_by_name[name].numpy())


# -- resume after SIGKILL, atomic checkpoints --------------------------------------------------------
def test_kill_and_resume_equals_uninterrupted(tmp_path):
    cfg = write_config(tmp_path)
    ref = make_trainer(tmp_path, ["train.num_epochs=3"], model_dir="ref")
    ref.train()

    model = str(tmp_path / "run")
    # 1) killed while writing the checkpoint of epoch 2: only epoch 1's checkpoint counts
    p = run_cli(
        "train",
        cfg,
        "--model-dir",
        model,
        "--set",
        "train.num_epochs=3",
        NETCOMPILER_TEST_DIE_AT="2:save",
    )
    assert p.returncode == -9, p.stderr
    assert [e for e, _ in list_checkpoints(model)] == [1]
    assert list(Path(model).glob(".tmp-ckpt-002-*"))  # the half-done one, never renamed
    # 2) resumes at epoch 2 and is killed in the middle of epoch 3
    p = run_cli(
        "train",
        cfg,
        "--model-dir",
        model,
        "--set",
        "train.num_epochs=3",
        NETCOMPILER_TEST_DIE_AT="3:4",
    )
    assert p.returncode == -9, p.stderr
    assert "resuming from" in p.stdout and "at epoch 2" in p.stdout
    assert "epoch 3/3" not in p.stdout
    assert [e for e, _ in list_checkpoints(model)] == [1, 2]
    # 3) resumes at epoch 3 and finishes
    p = run_cli("train", cfg, "--model-dir", model, "--set", "train.num_epochs=3")
    assert p.returncode == 0, p.stderr
    assert "at epoch 3" in p.stdout and "epoch 3/3" in p.stdout
    assert not list(Path(model).glob(".tmp-*"))

    got, want = read_scores(model), read_scores(tmp_path / "ref")
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    for g, w in zip(got, want):
        for col in ("learning_rate", "train_loss", "train_error", "dev_loss", "dev_error"):
            assert math.isclose(float(g[col]), float(w[col]), rel_tol=1e-4, abs_tol=1e-5), (
                col,
                g,
                w,
            )
    final = ckpt_values(Path(model) / "ckpt-003" / "ckpt", "")
    ref_final = ckpt_values(tmp_path / "ref" / "ckpt-003" / "ckpt", "")
    assert final.keys() == ref_final.keys()
    for k in final:  # network, optimizer slots and iteration count, training state
        np.testing.assert_allclose(final[k], ref_final[k], rtol=1e-4, atol=1e-6, err_msg=k)


# -- NaN stop ----------------------------------------------------------------------------------------
def test_nan_loss_stops_with_message(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path)
    model = tmp_path / "nan"
    monkeypatch.setenv(NAN_ENV, "2:3")
    code = cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=3"])
    err = capsys.readouterr().err
    assert code == 1
    assert "epoch 2, step 3" in err and "nan" in err
    assert "Traceback" not in err
    assert [e for e, _ in list_checkpoints(model)] == [1]
    # the last good checkpoint is intact and loadable
    values = ckpt_values(model / "ckpt-001" / "ckpt")
    assert values and all(np.all(np.isfinite(v)) for v in values.values())


def test_huge_learning_rate_stops(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code = cli.main(
        [
            "train",
            cfg,
            "--model-dir",
            str(tmp_path / "m"),
            "--set",
            "train.learning_rate=1.0e+30",
            "--set",
            "train.optimizer={class: sgd}",
            "--set",
            "train.num_epochs=2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "the training loss is" in err and "epoch 1, step" in err
    assert "No checkpoint was written yet" in err
    assert "Traceback" not in err


# -- mirrored strategy == one device ---------------------------------------------------------------
MIRRORED_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from netcompiler.frontend.validate import validate
from netcompiler.training.trainer import Trainer
import io
cfg, out = sys.argv[1], sys.argv[2]
res = {}
for name in ("default", "mirrored"):
    result = validate(cfg, [f"train.distribution={name}"])
    t = Trainer(result, model_dir=f"{out}/{name}", out=io.StringIO())
    t.train()
    res[name] = {"replicas": t.num_replicas, "traces": t.trace_counts,
                 "scores": open(f"{out}/{name}/scores.tsv").read().splitlines()[1:],
                 "weights": {k: v.numpy().tolist() for k, v in t.net.variables_by_name.items()}}
json.dump(res, open(f"{out}/res.json", "w"))
"""


def test_mirrored_two_cpus_same_loss_curve(tmp_path):
    # 7 sequences in batches of at most 3: a replica sometimes gets no sequence of its own
    # (no dropout: its masks depend on the replica, so they differ from one device's)
    text = CONFIG.replace("num_seqs: 200}", "num_seqs: 61}").replace(
        "num_epochs: 4", "num_epochs: 2"
    )
    text = text.replace(", dropout: 0.1}", "}")
    text += "  max_seqs: 3\n  gradient_clip: 1.0\n"
    cfg = write_config(tmp_path, text)
    script = tmp_path / "m.py"
    script.write_text(MIRRORED_SCRIPT)
    p = subprocess.run(
        [sys.executable, str(script), cfg, str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["default"]["replicas"] == 1 and res["mirrored"]["replicas"] == 2
    assert res["mirrored"]["traces"] == {"train": 1, "eval": 1}
    for a, b in zip(res["default"]["scores"], res["mirrored"]["scores"]):
        a, b = a.split("\t"), b.split("\t")
        np.testing.assert_allclose(
            [float(x) for x in a[2:6]], [float(x) for x in b[2:6]], rtol=1e-4, atol=1e-5
        )
    for k, w in res["default"]["weights"].items():
        np.testing.assert_allclose(
            w, res["mirrored"]["weights"][k], rtol=1e-3, atol=1e-5, err_msg=k
        )


# -- command line mistakes ---------------------------------------------------------------------------
def test_cli_user_mistakes(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert cli.main(["train", cfg]) == 1
    assert "model_dir is not set" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "train",
                cfg,
                "--model-dir",
                str(tmp_path / "m"),
                "--set",
                "train.train_data={class: 12ax, bogus: 1}",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "bad dataset" in err and "bogus" in err and "Traceback" not in err
    assert cli.main(["train", cfg, "--set", "train.num_epochs=0"]) == 1
    assert "num_epochs" in capsys.readouterr().err
    assert cli.main(["forward", cfg, "--checkpoint", str(tmp_path / "nope")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    # a model dir written for another network
    make_trainer(tmp_path, ["train.num_epochs=1"]).train()
    for cmd in (["train"], ["forward", "--checkpoint", str(tmp_path / "model")]):
        assert (
            cli.main(
                [
                    cmd[0],
                    cfg,
                    "--model-dir",
                    str(tmp_path / "model"),
                    *cmd[1:],
                    "--set",
                    "network.lstm.n_out=8",
                    "--set",
                    "train.num_epochs=2",
                ]
            )
            == 1
        )
        err = capsys.readouterr().err
        assert "does not fit this network" in err and "`lstm/W` has shape" in err
    bad = CONFIG.replace("loss: ce, target: classes", "n_out: 2")
    assert (
        cli.main(
            ["train", write_config(tmp_path, bad, "b.yaml"), "--model-dir", str(tmp_path / "m")]
        )
        == 1
    )
    assert "no layer has a `loss`" in capsys.readouterr().err


def test_forward_writes_hdf(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    trainer = make_trainer(tmp_path, ["train.num_epochs=1"])
    trainer.train()
    cfg = write_config(tmp_path)
    out = tmp_path / "fwd.hdf"
    code = cli.main(
        [
            "forward",
            cfg,
            "--checkpoint",
            str(tmp_path / "model"),
            "--data",
            "{class: 12ax, num_seqs: 6, seed: 3}",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    with h5py.File(out, "r") as f:
        lens = f["seqLengths"][:, 0]
        probs = f["inputs"][:]
    assert len(lens) == 6 and probs.shape == (lens.sum(), 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


# -- learning-rate control ---------------------------------------------------------------------------
def test_warmup_schedules():
    c = LearningRateControl("warmup", 1.0, {"warmup_steps": 10})
    assert c.rate(0) == pytest.approx(0.1) and c.rate(9) == pytest.approx(1.0)
    assert c.rate(39) == pytest.approx(math.sqrt(10 / 40))
    e = LearningRateControl(
        "warmup",
        1.0,
        {"warmup_steps": 10, "decay_type": "exponential", "decay_rate": 0.5, "decay_steps": 5},
    )
    assert e.rate(19) == pytest.approx(0.25)
    assert LearningRateControl("constant", 0.3).rate(1000) == 0.3
    with pytest.raises(LearningRateError, match="decay"):
        LearningRateControl("constant", 0.3, {"decay": 0.5})


def test_newbob():
    c = LearningRateControl("newbob", 1.0, {"decay": 0.5})
    assert c.end_epoch(10.0) == 1.0  # first score: nothing to compare
    assert c.end_epoch(8.0) == 1.0  # 20 % better
    assert c.end_epoch(7.99) == 0.5  # < 1 % better
    assert c.end_epoch(9.0) == 0.25  # worse
    state = c.state()
    d = LearningRateControl("newbob", 1.0, {"decay": 0.5})
    d.load_state(state)
    assert d.rate(0) == 0.25 and d.previous_score == 9.0


def test_trainer_errors(tmp_path):
    with pytest.raises(TrainError, match="learning_rate_control_opts"):
        make_trainer(
            tmp_path,
            [
                "train.learning_rate_control=newbob",
                "train.learning_rate_control_opts.warmup_steps=3",
            ],
        )
