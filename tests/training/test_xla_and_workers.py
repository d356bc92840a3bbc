"""`train.jit_compile` (XLA) and multi-worker training over loopback (issue 12, parts 4 and 6).

- the option validates (a bad value is a schema error, without TensorFlow);
- a short training with XLA equals one without (the XLA path pads the time axis up to a
  multiple of `jit_time_multiple` frames: masking must keep the results exact);
- two worker processes (`multi_worker_mirrored`, `TF_CONFIG` on 127.0.0.1) train like one
  process with the same global batch: the same scores and weights after the same steps.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 16, with_bias: false}
  lstm: {class: rec, unit: lstm, from: embed, n_out: 16}
  att: {class: self_attention, from: lstm, n_out: 16, num_heads: 2, total_key_dim: 16}
  output: {class: softmax, from: att, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 12, min_len: 5, max_len: 16}
  batch_size: 1000
  max_seqs: 4
  num_epochs: 1
  learning_rate: 0.01
  optimizer: {class: adam}
  random_seed: 3
"""


def write(tmp_path, text, name="c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def messages(result) -> str:
    return "\n".join(f"{d.path} {d.message}" for d in result.errors)


# -- the option ------------------------------------------------------------------------------------
def test_jit_compile_option_validates(tmp_path):
    cfg = write(tmp_path, CONFIG)
    assert not validate(cfg, ["train.jit_compile=true"]).errors
    assert not validate(cfg, ["train.jit_compile=false", "train.jit_time_multiple=8"]).errors
    bad = validate(cfg, ["train.jit_compile=fast"])
    assert bad.errors and "jit_compile" in messages(bad), messages(bad)
    bad = validate(cfg, ["train.jit_time_multiple=0"])
    assert bad.errors and "jit_time_multiple" in messages(bad), messages(bad)


# -- XLA trains like the plain step ----------------------------------------------------------------
def _train(tmp_path, jit: bool, name: str):
    from netcompiler.training.trainer import Trainer

    result = validate(write(tmp_path, CONFIG), [f"train.jit_compile={str(jit).lower()}"])
    assert not result.errors, messages(result)
    t = Trainer(result, model_dir=tmp_path / name, out=io.StringIO())
    t.initial = {k: v.numpy() for k, v in t.net.variables_by_name.items()}
    t.train()
    row = (tmp_path / name / "scores.tsv").read_text().splitlines()[1].split("\t")
    weights = {k: v.numpy() for k, v in t.net.variables_by_name.items()}
    return t, [float(x) for x in row[2:4]], weights


@pytest.mark.tf
def test_jit_compile_trains_like_the_plain_step(tmp_path):
    plain, plain_scores, plain_w = _train(tmp_path, False, "plain")
    xla, xla_scores, xla_w = _train(tmp_path, True, "xla")
    # 12 sequences in batches of 4: three optimizer steps, each depending on the one before
    assert int(xla.optimizer.iterations.numpy()) == 3 == int(plain.optimizer.iterations.numpy())
    assert xla.trace_counts["train"] == 1 and plain.jit_shapes == set()
    # every time axis was padded up to 16 frames (lengths 5..16): one shape, one XLA compilation
    assert xla.jit_shapes == {(("classes", (4, 16)), ("data", (4, 16)))}, xla.jit_shapes
    np.testing.assert_allclose(xla_scores, plain_scores, rtol=1e-5, atol=1e-6)
    for k, w in plain_w.items():
        np.testing.assert_allclose(xla_w[k], w, rtol=1e-4, atol=1e-5, err_msg=k)
        assert not np.allclose(w, plain.initial[k], rtol=0, atol=1e-4), k  # it did train


@pytest.mark.tf
def test_jit_compile_refuses_several_replicas(tmp_path):
    from netcompiler.training.command_support import TrainError
    from netcompiler.training.trainer import Trainer

    class TwoReplicas:  # only asked for its replica count before the refusal
        num_replicas_in_sync = 2

    result = validate(
        write(tmp_path, CONFIG), ["train.jit_compile=true", "train.distribution=mirrored"]
    )
    with pytest.raises(TrainError, match=r"train.jit_compile needs one device .*2 replicas"):
        Trainer(result, model_dir=tmp_path / "m", strategy=TwoReplicas(), out=io.StringIO())


@pytest.mark.tf
def test_xla_benchmark_configs_validate(tmp_path):
    # benchmarks/xla_train_step.py's networks (its encoder is selfatt_encoder's): valid configs
    # with the option set, the padding it times the one the Trainer applies
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "xla_train_step", REPO / "benchmarks" / "xla_train_step.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for blocks in (0, 1):  # 0: the LSTM network
        cfg = bench.config(blocks, 32, True)
        path = tmp_path / f"b{blocks}.json"
        path.write_text(json.dumps(cfg))
        result = validate(str(path))
        assert not result.errors, messages(result)
        assert cfg["train"]["jit_compile"] is True
        classes = {layer["class"] for layer in cfg["network"].values()}
        assert ("rec" in classes) == (blocks == 0) and ("self_attention" in classes) == bool(blocks)


# -- two workers over loopback == one process -----------------------------------------------------
WORKER = r"""
import io, json, os, sys
cfg, model_dir, dist, out = sys.argv[1:5]
from netcompiler.frontend.validate import validate
from netcompiler.training.trainer import Trainer
t = Trainer(validate(cfg, [f"train.distribution={dist}"]), model_dir=model_dir, out=io.StringIO())
t.train()
json.dump({"replicas": t.num_replicas, "chief": t._is_chief(),
           "steps": int(t.optimizer.iterations.numpy()),
           "weights": {k: v.numpy().tolist() for k, v in t.net.variables_by_name.items()}},
          open(out, "w"))
"""

WORKER_CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 16, activation: tanh}
  hidden: {class: linear, from: embed, n_out: 16, activation: relu}
  output: {class: softmax, from: hidden, loss: ce, target: classes}
train:
  # 13 sequences in batches of at most 3: one batch of one sequence leaves a worker without
  # a sequence of its own (it runs a dummy with weight 0)
  train_data: {class: 12ax, num_seqs: 13}
  dev_data: {class: 12ax, num_seqs: 6}
  batch_size: 400
  max_seqs: 3
  num_epochs: 2
  learning_rate: 0.01
  optimizer: {class: adam}
  gradient_clip: 1.0
  random_seed: 5
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.tf
def test_two_workers_over_loopback_train_like_one_process(tmp_path):
    cfg = write(tmp_path, WORKER_CONFIG)
    script = write(tmp_path, WORKER, "worker.py")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    base = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    base.pop("TF_CONFIG", None)
    procs = {}
    for i in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
        # both workers share one model_dir, as on a shared file system; the chief writes it
        procs[f"w{i}"] = subprocess.Popen(
            [
                sys.executable,
                script,
                cfg,
                str(tmp_path / "multi"),
                "multi_worker_mirrored",
                str(tmp_path / f"w{i}.json"),
            ],
            env=dict(base, TF_CONFIG=json.dumps(tf_config)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.time() + 170
    try:
        # meanwhile, the reference: one process, one device, the same global batches
        from netcompiler.training.trainer import Trainer

        ref = Trainer(validate(cfg, []), model_dir=tmp_path / "single", out=io.StringIO())
        ref.train()
        logs = {
            n: p.communicate(timeout=max(1.0, deadline - time.time()))[0] for n, p in procs.items()
        }
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}:\n{logs[name][-3000:]}"
    res = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in procs}
    res["single"] = {
        "replicas": ref.num_replicas,
        "steps": int(ref.optimizer.iterations.numpy()),
        "weights": {k: v.numpy() for k, v in ref.net.variables_by_name.items()},
    }
    assert res["single"]["replicas"] == 1
    assert res["w0"]["replicas"] == res["w1"]["replicas"] == 2
    assert res["w0"]["chief"] and not res["w1"]["chief"]
    # the same global batches: as many optimizer steps as one process (5 batches x 2 epochs)
    assert res["single"]["steps"] == res["w0"]["steps"] == res["w1"]["steps"] == 10
    single = (tmp_path / "single" / "scores.tsv").read_text().splitlines()
    multi = (tmp_path / "multi" / "scores.tsv").read_text().splitlines()
    assert len(single) == len(multi) == 3
    for a, b in zip(single[1:], multi[1:]):  # train/dev loss and error per epoch
        np.testing.assert_allclose(
            [float(x) for x in a.split("\t")[2:6]],
            [float(x) for x in b.split("\t")[2:6]],
            rtol=1e-5,
            atol=1e-6,
        )
    assert sorted(p.name for p in (tmp_path / "multi").glob("ckpt-*")) == ["ckpt-001", "ckpt-002"]
    for k, w in res["single"]["weights"].items():
        for worker in ("w0", "w1"):
            np.testing.assert_allclose(
                res[worker]["weights"][k], w, rtol=1e-5, atol=1e-6, err_msg=f"{worker} {k}"
            )
