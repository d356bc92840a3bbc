"""Faults in training, checkpoints and export (issue 11, items 2, 3, 4, 6, 7, 8): non-finite
weights are never saved, `compile --checkpoint` refuses another network's checkpoint, the
model_dir lock, scores.tsv after a SIGKILL, fsync order, a full disk / read-only / file
model_dir, out of memory, the loss-growth warning, file modes of atomic writes and the
SavedModel's signature and length checks.

Each test calls the trainer in-process with a tiny network (one linear layer on 12ax) except
where a second process is the point (the lock, SIGKILL)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.cli import app as cli
from netcompiler.core import atomic
from netcompiler.frontend.validate import validate  # noqa: E402
from netcompiler.training.checkpoints import list_checkpoints  # noqa: E402
from netcompiler.training.command_support import TrainError  # noqa: E402
from netcompiler.training.fault_injection import DIE_ENV, NAN_ENV, STOP_ENV  # noqa: E402
from netcompiler.training.scores import SCORE_COLUMNS  # noqa: E402
from netcompiler.training.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.tf
REPO = Path(__file__).resolve().parents[2]

# 20 sequences, all in one batch: one step per epoch
CONFIG = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 8, activation: tanh}
  output: {class: softmax, from: embed, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 20}
  batch_size: 100000
  num_epochs: 2
  learning_rate: 0.1
  optimizer: {class: sgd}
  random_seed: 3
"""


def write_config(tmp_path, text=CONFIG, name="c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def make_trainer(tmp_path, overrides=(), model_dir="model", text=CONFIG) -> Trainer:
    result = validate(write_config(tmp_path, text), list(overrides))
    assert not result.errors, result.errors
    return Trainer(result, model_dir=tmp_path / model_dir, out=open(os.devnull, "w"))


def ckpt_values(prefix, what="network/") -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k.startswith(what) and not k.startswith("_CHECKPOINTABLE")
    }


def read_scores(model_dir) -> list[dict]:
    lines = (Path(model_dir) / "scores.tsv").read_text().splitlines()
    assert tuple(lines[0].split("\t")) == SCORE_COLUMNS
    return [dict(zip(SCORE_COLUMNS, line.split("\t"))) for line in lines[1:]]


def one_line_error(err: str) -> str:
    """The error output is one line and no traceback; returns it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for key in (DIE_ENV, NAN_ENV, STOP_ENV):
        env.pop(key, None)
    env.update(extra)
    return env


def start_cli(*args, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "netcompiler", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def _process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


# -- item 2: non-finite weights are never saved ----------------------------------------------------
def test_inf_weights_after_the_last_step_are_not_saved(tmp_path, capsys):
    # one step per epoch; learning rate 1e39 is inf in float32: the step's loss is finite, the
    # weights after it are not (before: exit 0 with a checkpoint full of NaN)
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    code = cli.main(
        [
            "train",
            cfg,
            "--model-dir",
            str(model),
            "--set",
            "train.learning_rate=1.0e+39",
            "--set",
            "train.num_epochs=1",
        ]
    )
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "epoch 1, step 1" in line and "NaN or inf" in line and "network/embed/" in line
    assert "No checkpoint was written yet" in line
    assert list_checkpoints(model) == []
    assert not list(model.glob(".tmp-*"))


def test_nan_weights_stop_names_the_last_finite_checkpoint(tmp_path, capsys):
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    # epoch 1 at a sane rate: a finite ckpt-001
    assert cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=1"]) == 0
    good = ckpt_values(model / "ckpt-001" / "ckpt")
    capsys.readouterr()
    # epochs 2, 3 at rate 1e39: epoch 2's only step makes the weights inf. Before: ckpt-002
    # (NaN) was saved and epoch 3's NaN loss called it "the last good checkpoint"
    code = cli.main(
        [
            "train",
            cfg,
            "--model-dir",
            str(model),
            "--set",
            "train.learning_rate=1.0e+39",
            "--set",
            "train.num_epochs=3",
        ]
    )
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "epoch 2, step 1" in line
    assert f"The last good checkpoint {model / 'ckpt-001'} is kept" in line
    assert [e for e, _ in list_checkpoints(model)] == [1]
    after = ckpt_values(model / "ckpt-001" / "ckpt")
    for k, v in good.items():
        np.testing.assert_array_equal(after[k], v)
        assert np.all(np.isfinite(v))
    # a NaN checkpoint written by something else is never resumed from nor called good
    t = make_trainer(tmp_path, ["train.num_epochs=3"], model_dir="m")
    t.restore()
    t.net.variables_by_name["embed/W"].assign(
        tf.fill(t.net.variables_by_name["embed/W"].shape, float("nan"))
    )
    bad_dir = model / "ckpt-002"
    bad_dir.mkdir()
    t.ckpt.write(str(bad_dir / "ckpt"))
    (bad_dir / "meta.json").write_text(json.dumps({"epoch": 2}))
    assert [e for e, _ in list_checkpoints(model)] == [1, 2]
    code = cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=3"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert f"{bad_dir / 'ckpt'} holds NaN or inf" in line and "network/embed/W" in line
    assert f"resume from {model / 'ckpt-001'}" in line


def test_nan_loss_after_a_good_epoch_names_the_good_checkpoint(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    monkeypatch.setenv(NAN_ENV, "2:1")
    code = cli.main(["train", cfg, "--model-dir", str(model)])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and "epoch 2, step 1" in line
    assert f"The last good checkpoint {model / 'ckpt-001'} is kept" in line


# -- item 3: compile --checkpoint ------------------------------------------------------------------
def test_compile_checkpoint_of_another_network_is_refused(tmp_path, capsys):
    make_trainer(tmp_path, ["train.num_epochs=1"]).train()
    ckpt = tmp_path / "model" / "ckpt-001"
    other = write_config(
        tmp_path,
        CONFIG.replace("n_out: 8", "n_out: 6").replace(
            "output: {class: softmax, from: embed",
            "extra: {class: linear, from: embed, n_out: 3}\n"
            "  output: {class: softmax, from: [embed, extra]",
        ),
        "other.yaml",
    )
    out = tmp_path / "export"
    # the same shapes under other names: before, exit 0 and a SavedModel with random weights
    renamed = write_config(tmp_path, CONFIG.replace("embed", "enc"), "renamed.yaml")
    code = cli.main(["compile", renamed, "-o", str(out), "--checkpoint", str(ckpt / "ckpt")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "does not fit this network: `enc/W` is missing; `enc/b` is missing" in line
    assert not out.exists() and not list(tmp_path.glob(".export*"))
    # other shapes and a variable more (before: a traceback)
    code = cli.main(["compile", other, "-o", str(out), "--checkpoint", str(ckpt / "ckpt")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "does not fit this network" in line
    assert "`embed/W` has shape [9, 8] in the checkpoint but [9, 6] in this network" in line
    assert "`extra/W` is missing" in line
    assert not out.exists() and not list(tmp_path.glob(".export*"))
    # a missing path: one line, no traceback (before: a TensorFlow traceback)
    code = cli.main(["compile", other, "-o", str(out), "--checkpoint", str(tmp_path / "nope")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and "no such checkpoint" in line and str(tmp_path / "nope") in line
    assert not out.exists()
    # -o on a file, or below one: one line, the file untouched
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for target, want in (
        (afile, f"-o {afile} exists and is not a directory"),
        (afile / "sub", f"cannot write -o {afile / 'sub'} ("),
    ):
        code = cli.main(["compile", write_config(tmp_path), "-o", str(target)])
        line = one_line_error(capsys.readouterr().err)
        assert code == 1 and want in line, line
    assert afile.read_text() == "keep me"
    # the right network: the checkpoint's weights are exported (a model dir works too)
    code = cli.main(
        ["compile", write_config(tmp_path), "-o", str(out), "--checkpoint", str(tmp_path / "model")]
    )
    assert code == 0, capsys.readouterr().err
    loaded = tf.saved_model.load(str(out))
    want = ckpt_values(ckpt / "ckpt")
    for name in ("embed/W", "embed/b", "output/W", "output/b"):
        np.testing.assert_array_equal(
            loaded.params[name].numpy(), want[f"network/{name}/.ATTRIBUTES/VARIABLE_VALUE"]
        )


# -- item 4: the model_dir lock --------------------------------------------------------------------
def test_second_run_on_a_locked_model_dir_fails_at_once(tmp_path, capsys):
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    # the holder stops itself (SIGSTOP) with epoch 2's checkpoint in its temporary directory
    holder = start_cli("train", cfg, "--model-dir", str(model), NETCOMPILER_TEST_STOP_AT="2:save")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _process_state(holder.pid) != "T":
            assert holder.poll() is None, holder.communicate()
            time.sleep(0.2)
        assert _process_state(holder.pid) == "T"
        tmp_dirs = list(model.glob(".tmp-ckpt-002-*"))
        assert len(tmp_dirs) == 1 and (tmp_dirs[0] / "meta.json").is_file()
        assert (model / ".lock").read_text().strip() == str(holder.pid)
        # a second run: refused at once, naming the holder; the live run's files untouched
        t0 = time.time()
        code = cli.main(["train", cfg, "--model-dir", str(model)])
        captured = capsys.readouterr()
        line = one_line_error(captured.err)
        assert code == 1
        assert time.time() - t0 < 20
        assert f"process {holder.pid}" in line and str(model) in line and "in use" in line
        assert "epoch" not in captured.out
        assert tmp_dirs[0].is_dir() and (tmp_dirs[0] / "meta.json").is_file()
        assert [e for e, _ in list_checkpoints(model)] == [1]
    finally:
        holder.kill()  # SIGKILL (also ends a stopped process)
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    # the lock died with the holder: a new run takes it, cleans up and resumes
    code = cli.main(["train", cfg, "--model-dir", str(model)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "at epoch 2" in captured.out
    assert (model / ".lock").read_text().strip() == str(os.getpid())
    assert [e for e, _ in list_checkpoints(model)] == [1, 2]
    assert not list(model.glob(".tmp-*"))


def test_lock_is_released_after_a_run_and_two_trainers_exclude_each_other(tmp_path):
    a = make_trainer(tmp_path, ["train.num_epochs=1"])
    b = make_trainer(tmp_path, ["train.num_epochs=1"])
    a._prepare_model_dir()  # holds the lock, as train() does
    with pytest.raises(TrainError, match=f"process {os.getpid()} holds the lock"):
        b.train()
    a._release_lock()
    assert b.train() == 1
    assert a.train() == 1  # b released it when it ended


# -- item 6: scores.tsv after a SIGKILL, fsync before rename and prune -----------------------------
def test_scores_row_restored_after_kill_between_rename_and_scores(tmp_path):
    cfg = write_config(tmp_path)
    ref = make_trainer(tmp_path, ["train.num_epochs=3"], model_dir="ref")
    ref.train()
    model = tmp_path / "run"
    p = start_cli(
        "train",
        cfg,
        "--model-dir",
        str(model),
        "--set",
        "train.num_epochs=3",
        NETCOMPILER_TEST_DIE_AT="2:saved",
    )
    out, err = p.communicate(timeout=180)
    assert p.returncode == -signal.SIGKILL, err
    assert [e for e, _ in list_checkpoints(model)] == [1, 2]
    assert [r["epoch"] for r in read_scores(model)] == ["1"]  # epoch 2's row not written
    # a stray temporary file of an interrupted scores write
    (model / ".scores.tsv.abc123.tmp").write_text("partial")
    t = make_trainer(tmp_path, ["train.num_epochs=3"], model_dir="run")
    assert t.train() == 3
    got, want = read_scores(model), read_scores(tmp_path / "ref")
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    for g, w in zip(got, want):
        for col in ("learning_rate", "train_loss", "train_error"):
            assert float(g[col]) == pytest.approx(float(w[col]), rel=1e-4, abs=1e-6), (col, g, w)
    assert not [p.name for p in model.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_scores_write_failure_is_one_line_and_the_row_comes_back(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    import netcompiler.training.scores as scores_mod

    real = scores_mod.atomic_write_text
    calls = []

    def full(path, text, **kw):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's scores
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text, **kw)

    monkeypatch.setattr(scores_mod, "atomic_write_text", full)
    code = cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=3"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert f"cannot write {model / 'scores.tsv'} (No space left on device)" in line
    assert [e for e, _ in list_checkpoints(model)] == [1, 2]
    monkeypatch.setattr(scores_mod, "atomic_write_text", real)
    assert cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=3"]) == 0
    assert [r["epoch"] for r in read_scores(model)] == ["1", "2", "3"]


def test_save_fsyncs_before_rename_and_prune(tmp_path, monkeypatch):
    import shutil

    events = []
    real_fsync, real_replace, real_rmtree = os.fsync, os.replace, shutil.rmtree

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, **kw)

    def rmtree(path, *a, **kw):
        events.append(("rmtree", str(path)))
        return real_rmtree(path, *a, **kw)

    t = make_trainer(tmp_path, ["train.num_epochs=2", "train.keep_last_n=1"])
    model = tmp_path / "model"
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    t.train()
    monkeypatch.undo()
    renames = [
        i for i, e in enumerate(events) if e[0] == "replace" and Path(e[2]).name.startswith("ckpt-")
    ]
    assert len(renames) == 2
    for i in renames:
        tmp = events[i][1]
        synced = {e[1] for e in events[:i] if e[0] == "fsync"}
        # every file of the checkpoint and its directory, before the rename
        for name in ("ckpt.index", "meta.json"):
            assert str(Path(tmp) / name) in synced, (name, events[:i])
        assert any(Path(s).name.startswith("ckpt.data-") and s.startswith(tmp) for s in synced)
        assert tmp in synced
        # the model directory after the rename
        after = events[i + 1]
        assert after == ("fsync", str(model)), events[i : i + 3]
    prune = next(i for i, e in enumerate(events) if e == ("rmtree", str(model / "ckpt-001")))
    assert prune > renames[1] + 1 and events[renames[1] + 1] == ("fsync", str(model))
    assert [e for e, _ in list_checkpoints(model)] == [2]


# -- item 7: environmental faults ------------------------------------------------------------------
def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def test_full_disk_at_save_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys):
    """A 4 MiB tmpfs filled up after epoch 1 where mounting is allowed (root), else a patched
    checkpoint writer failing as TensorFlow does on a full disk (ENOSPC)."""
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "4m")
    try:
        model = disk / "m"
        cfg = write_config(tmp_path)
        assert (
            cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=1"]) == 0
        )
        good = ckpt_values(model / "ckpt-001" / "ckpt")
        capsys.readouterr()
        if mounted:  # fill the disk
            with open(disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            # leave room for the lock/probe files (a few bytes), not for a checkpoint
            os.truncate(disk / "filler", os.path.getsize(disk / "filler") - 8192)
        else:

            def write_full(self, prefix, options=None):
                Path(str(prefix) + ".index").write_bytes(b"partial")
                raise tf.errors.ResourceExhaustedError(
                    None, None, f"{prefix}_temp/part-00000; No space left on device"
                )

            monkeypatch.setattr(tf.train.Checkpoint, "write", write_full)
        code = cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=2"])
        line = one_line_error(capsys.readouterr().err)
        assert code == 1
        assert "No space left on device" in line and str(model) in line
        assert "epoch 2" in line and f"{model / 'ckpt-001'} is kept" in line
        assert [e for e, _ in list_checkpoints(model)] == [1]
        assert not list(model.glob(".tmp-*"))
        after = ckpt_values(model / "ckpt-001" / "ckpt")
        for k, v in good.items():
            np.testing.assert_array_equal(after[k], v)
    finally:
        if mounted:
            _umount(disk)


def _read_only(path: Path, monkeypatch) -> callable:
    """Make a directory read-only for this process: chmod for a normal user; root ignores
    permissions, so a read-only bind mount (or, where mounting is not allowed, failing
    file creation there with EROFS). Returns the undo function."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    p = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if p.returncode == 0:
        q = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True)
        if q.returncode == 0:
            return lambda: _umount(path)
        _umount(path)
    import tempfile

    def refuse(real):
        def fn(*args, dir=None, **kw):
            if dir is not None and Path(dir) == path:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*args, dir=dir, **kw)

        return fn

    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp))
    return monkeypatch.undo


def test_read_only_model_dir_fails_at_once(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path)
    model = tmp_path / "m"
    assert cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=1"]) == 0
    capsys.readouterr()
    good = ckpt_values(model / "ckpt-001" / "ckpt")
    undo = _read_only(model, monkeypatch)
    try:
        code = cli.main(["train", cfg, "--model-dir", str(model), "--set", "train.num_epochs=2"])
        captured = capsys.readouterr()
    finally:
        undo()
    line = one_line_error(captured.err)
    assert code == 1
    assert f"train.model_dir {model} is not writable" in line
    assert "epoch" not in captured.out  # failed before training
    assert [e for e, _ in list_checkpoints(model)] == [1]
    after = ckpt_values(model / "ckpt-001" / "ckpt")
    for k, v in good.items():
        np.testing.assert_array_equal(after[k], v)


def test_model_dir_that_is_a_file(tmp_path, capsys):
    cfg = write_config(tmp_path)
    f = tmp_path / "afile"
    f.write_text("keep me")
    for target, want in (
        (f, f"train.model_dir {f} exists and is not a directory"),
        (f / "sub", f"train.model_dir {f / 'sub'}: cannot create the directory (Not a directory)"),
    ):
        code = cli.main(["train", cfg, "--model-dir", str(target)])
        line = one_line_error(capsys.readouterr().err)
        assert code == 1 and want in line
    assert f.read_text() == "keep me"


def _oom(*_args, **_kw):
    raise tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[1,20000,20000,4]"
    )


def test_out_of_memory_in_forward_is_one_line(tmp_path, capsys, monkeypatch):
    from netcompiler.backend.build import CompiledNetwork

    make_trainer(tmp_path, ["train.num_epochs=1"]).train()
    cfg = write_config(tmp_path)
    out = tmp_path / "fwd.hdf"
    real = CompiledNetwork.get_function

    def get_function(self, *args, **kw):
        fn = real(self, *args, **kw)

        def run(inputs, lengths):  # the device runs out beyond 10 frames
            if max(int(np.max(v.numpy())) for v in lengths.values()) > 10:
                _oom()
            return fn(inputs, lengths)

        return run

    monkeypatch.setattr(CompiledNetwork, "get_function", get_function)
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
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "out of memory running `output` forward on a batch of 6 sequences of up to" in line
    assert "train.batch_size" in line
    assert not out.exists() and not list(tmp_path.glob(".fwd.hdf*"))


OOM_SCRIPT = r"""
import resource, sys
from netcompiler import cli
from netcompiler.training.command_support import import_tensorflow_quietly
import_tensorflow_quietly()  # first: TensorFlow's start-up maps much address space
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * 2 ** 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
sys.exit(cli.main(sys.argv[1:]))
"""

ATTENTION = """
extern_data:
  data: {dim: 4}
network:
  att: {class: self_attention, from: data, n_out: 8, num_heads: 2, total_key_dim: 8}
  output: {class: copy, from: att}
"""


def test_real_out_of_memory_in_a_20000_frame_forward(tmp_path):
    """Not patched: self-attention over 20000 frames needs 2 x 20000^2 floats (3.2 GB) per
    score matrix; the process gets 2 GiB of address space beyond what TensorFlow mapped."""
    import netcompiler
    from netcompiler.backend.export import checkpoint
    from netcompiler.training.datasets import write_hdf

    cfg = write_config(tmp_path, ATTENTION)
    net = netcompiler.compile(validate(cfg))
    prefix = checkpoint(net).write(str(tmp_path / "ck" / "ckpt"))
    data = tmp_path / "long.hdf"
    write_hdf(data, [{"data": np.zeros((20000, 4), np.float32)}])
    script = tmp_path / "oom.py"
    script.write_text(OOM_SCRIPT)
    out = tmp_path / "fwd.hdf"
    p = subprocess.run(
        [
            sys.executable,
            str(script),
            "forward",
            cfg,
            "--checkpoint",
            prefix,
            "--data",
            f"{{class: hdf, files: [{data}]}}",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert p.returncode == 1, p.stderr[-3000:]
    line = one_line_error(p.stderr)
    assert (
        "out of memory running `output` forward on a batch of 1 sequence of up to 20000 "
        "frames; the sequence alone does not fit"
    ) in line
    assert not out.exists()


def test_out_of_memory_in_training_is_one_line(tmp_path, capsys):
    t = make_trainer(tmp_path, ["train.num_epochs=2"])
    t.train()
    t2 = make_trainer(tmp_path, ["train.num_epochs=3", "train.max_seqs=4"])
    t2._train_fn = _oom
    with pytest.raises(TrainError) as info:
        t2.train()
    msg = str(info.value)
    assert msg.startswith(
        "out of memory in training (epoch 3, step 1) on a batch of 4 sequences of up to"
    ), msg
    assert "--set train.batch_size=50000" in msg
    assert [e for e, _ in list_checkpoints(tmp_path / "model")] == [1, 2]


# -- item 8: minor ---------------------------------------------------------------------------------
def test_exploding_loss_warns_once(tmp_path, capsys):
    text = CONFIG.replace("batch_size: 100000", "batch_size: 40").replace(
        "optimizer: {class: sgd}", "optimizer: {class: adam}"
    )
    model = tmp_path / "m"
    code = cli.main(
        [
            "train",
            write_config(tmp_path, text),
            "--model-dir",
            str(model),
            "--set",
            "train.learning_rate=1.0e+6",
            "--set",
            "train.num_epochs=2",
        ]
    )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "the training loss grew from" in warnings[0]
    assert "learning rate (1e+06) is probably too high" in warnings[0]
    grown = float(warnings[0].split(" to ")[1].split(" at ")[0])
    first = float(warnings[0].split("grew from ")[1].split(" ")[0])
    assert grown > 1000 * max(first, 1.0)
    assert code == 0  # a warning, not an error: the loss stays finite
    # a sane run does not warn
    code = cli.main(["train", write_config(tmp_path, text), "--model-dir", str(tmp_path / "ok")])
    assert code == 0 and "warning" not in capsys.readouterr().err


def test_atomic_write_keeps_the_mode_and_respects_the_umask(tmp_path):
    private = tmp_path / "secret.txt"
    private.write_text("old")
    private.chmod(0o600)
    atomic.atomic_write_text(private, "new")
    assert private.read_text() == "new"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    old = os.umask(0o077)
    try:
        assert atomic.current_umask() == 0o077
        atomic.atomic_write_text(tmp_path / "new1.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new1.txt").stat().st_mode) == 0o600
    old = os.umask(0o022)
    try:
        atomic.atomic_write_text(tmp_path / "new2.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new2.txt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new1.txt", "new2.txt", "secret.txt"]


DENSE = {
    "extern_data": {"data": {"dim": 5}},
    "network": {
        "lstm": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
        "output": {"class": "linear", "from": "lstm", "n_out": 3},
    },
}


def test_saved_model_has_static_features_and_checks_lengths(tmp_path):
    import netcompiler
    from netcompiler.backend.export import export_saved_model

    net = netcompiler.compile(DENSE, seed=1)
    export_saved_model(net, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]
    assert spec["data"].shape.as_list() == [None, None, 5]
    assert spec["data_lengths"].shape.as_list() == [None]
    x = np.random.RandomState(0).randn(2, 6, 5).astype(np.float32)
    got = serve(data=tf.constant(x), data_lengths=tf.constant([6, 3], tf.int32))
    want, want_len = net(inputs={"data": x}, lengths={"data": np.array([6, 3], np.int32)})["output"]
    np.testing.assert_allclose(
        got["output"].numpy()[1, :3], want.numpy()[1, :3], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(got["output_lengths"].numpy(), [6, 3])
    for lengths, message in (
        ([7, 3], "larger than the time size of `data`"),
        ([6, -1], "a length is negative"),
        ([6, 3, 2], "one length per sequence"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(data=tf.constant(x), data_lengths=tf.constant(lengths, tf.int32))
