"""Training end to end: `netcompiler train`, `netcompiler forward`, `netcompiler search`.

    trainer = Trainer(validate("my.yaml"), model_dir="runs/a")
    trainer.train()            # resumes from the newest checkpoint in model_dir

The train step is one `tf.function` with dynamic batch/time sizes (one trace per run; see
`Trainer.trace_counts`), run through a `tf.distribute` strategy (`train.distribution`: `default`,
`mirrored` over all GPUs or else all logical CPUs, `multi_worker_mirrored`). Each replica gets
its own slice of the global batch (a contiguous split of the batch's sequences); losses are
summed over valid frames and divided by the global frame count, so the loss and the gradients
are the same as on one device for the same global batch. `train.jit_compile` compiles the steps
with XLA (one device only); the time axis of every batch is then padded up to a multiple of
`train.jit_time_multiple` frames, so XLA compiles once per distinct padded shape
(`Trainer.jit_shapes`).

Losses (`losses.py`): per loss layer `loss_scale * sum(loss over valid frames) / frames`, plus
for every layer with `L2: f` the term `f * sum of squares of its trainable variables`. The
reported scores (train/dev loss in `scores.tsv`, the summary line and TensorBoard) are the
scaled per-frame losses without the L2 term, accumulated over the epoch; the error is the
frame error rate of the main loss layer (`output` if it has a loss, else the first one; label
error rate for ctc).

Model directory (`train.model_dir` or `--model-dir`):
    ckpt-NNN/          one checkpoint per saved epoch (`ckpt.index`, `ckpt.data-*`, `meta.json`)
                       with the network variables (`network/<layer>/<param>`), the optimizer
                       state, the epoch counter, the learning-rate control state and the data
                       order seed. Written into `.tmp-ckpt-NNN-*` first and renamed when
                       complete, so a crash never leaves a half-written newest checkpoint; only
                       the newest `keep_last_n` are kept.
    scores.tsv         epoch, learning_rate, train_loss, train_error, dev_loss, dev_error,
                       dev_seq_error (beam search on dev, for networks that search),
                       wall_time (seconds of that epoch), rewritten atomically every epoch.
    tensorboard/       tf.summary scalars per epoch.
Running `netcompiler train` again on a model_dir resumes at the epoch after the newest checkpoint
(with the data order, learning-rate state and optimizer state of an uninterrupted run).

A non-finite training loss, or network/optimizer variables that are no longer finite after a
step (checked after every step), stop the run (exit code 1) with a message naming the epoch and
step; a checkpoint is only written from finite variables, so the checkpoints written so far (the
message names the newest finite one) stay untouched and usable. A step loss above
`LOSS_GROWTH_WARNING` (1000) times the run's first step loss (at least 1.0) prints one warning
(the learning rate is probably too high).

Faults: `train` holds an exclusive OS lock on `model_dir/.lock` (`fcntl.flock`, the holder's
PID written into the file) for the whole run, so a second run on the same directory stops at once
naming the holder, and the lock goes away with the process (also on SIGKILL). Temporary
checkpoint directories are cleaned up only under that lock, so never a live run's. A model_dir
that is a file, not writable, or a disk that fills up, and running out of (device) memory, stop
with one line naming the directory or the batch (exit code 1); finished checkpoints stay intact.
Checkpoint files and the directories are fsynced before the rename that publishes a checkpoint
and before older ones are pruned. Each checkpoint's `meta.json` holds its epoch's scores row, so
a run killed between the checkpoint's rename and the `scores.tsv` write gets the row back when
it resumes.

Test hook: the environment variable NETCOMPILER_TEST_DIE_AT="EPOCH:STEP" makes the process kill
itself with SIGKILL just before step STEP (1-based) of epoch EPOCH, "EPOCH:save" just after
the checkpoint of that epoch was written to its temporary directory, before the rename (tests of
resuming and atomic checkpoints use it), and "EPOCH:saved" after the rename, before scores.tsv is
written. NETCOMPILER_TEST_STOP_AT takes the same values and stops the process with SIGSTOP
instead (it keeps its lock: tests of concurrent runs). NETCOMPILER_TEST_NAN_AT="EPOCH:STEP"
replaces the training loss of that step by NaN.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netcompiler.core.atomic import atomic_write_text, current_umask, fsync_dir
# the checkpoint helpers, the options and the commands' shared pieces live in their own modules
# (search imports them too); names other modules took from here before are still importable here
from netcompiler.training.checkpoints import (check_checkpoint_fits, checkpoint, checkpoint_prefix, list_checkpoints,
                          newest_checkpoint, restore_network, tf_errors)
from netcompiler.training.command_support import (EXIT_ERROR, EXIT_OK, TrainError, oom_types, out_of_memory_error,
                              parse_data_spec, user_error, validated_config)
from netcompiler.core.errors import UserError
from netcompiler.training.search import search_dataset
from netcompiler.training.options import TrainOptions

DIE_ENV = "NETCOMPILER_TEST_DIE_AT"
NAN_ENV = "NETCOMPILER_TEST_NAN_AT"
STOP_ENV = "NETCOMPILER_TEST_STOP_AT"
LOCK_NAME = ".lock"
#: a step loss above this many times the run's first step loss (at least 1.0) prints a warning
LOSS_GROWTH_WARNING = 1e3
SCORE_COLUMNS = ("epoch", "learning_rate", "train_loss", "train_error", "dev_loss", "dev_error",
                 "dev_seq_error", "wall_time")



class NonFiniteLoss(TrainError):
    pass


class NonFiniteWeights(NonFiniteLoss):
    """The loss was finite but the variables are no longer (e.g. a huge learning rate)."""


class ModelDirBusy(TrainError):
    """Another process holds the lock of the model directory."""


# -- strategies and optimizers ---------------------------------------------------------------------
def make_strategy(name: str):
    import tensorflow as tf

    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainError(f"unknown train.distribution `{name}` (default, mirrored, "
                     f"multi_worker_mirrored)")


def make_optimizer(spec: dict | None, learning_rate: float):
    import tensorflow as tf

    spec = dict(spec or {"class": "adam"})
    cls = spec.pop("class", "adam")
    kwargs: dict[str, Any] = {"learning_rate": float(learning_rate)}
    for key in ("epsilon", "beta_1", "beta_2", "weight_decay"):
        if key in spec and spec[key] is not None:
            kwargs[key] = float(spec[key])
    momentum = spec.get("momentum")
    if cls == "adam":
        return tf.keras.optimizers.Adam(**kwargs)
    if cls == "nadam":
        return tf.keras.optimizers.Nadam(**kwargs)
    if cls == "adamw":
        kwargs.setdefault("weight_decay", 0.004)
        return tf.keras.optimizers.AdamW(**kwargs)
    if cls == "sgd":
        for key in ("epsilon", "beta_1", "beta_2"):
            kwargs.pop(key, None)
        return tf.keras.optimizers.SGD(momentum=float(momentum or 0.0), **kwargs)
    raise TrainError(f"unknown optimizer class `{cls}` (adam, nadam, sgd, adamw)")


def _test_hook(env: str, epoch: int, step) -> bool:
    spec = os.environ.get(env)
    if not spec:
        return False
    e, _, s = spec.partition(":")
    try:
        return int(e) == epoch and s.strip() == str(step)
    except ValueError:
        return False


def _die_if(epoch: int, step) -> None:
    if _test_hook(DIE_ENV, epoch, step):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if _test_hook(STOP_ENV, epoch, step):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)


# -- faults: locks, disks, memory ------------------------------------------------------------------
def os_reason(exc: BaseException) -> str:
    """The short reason of an OS or TensorFlow error ("No space left on device")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    message = str(getattr(exc, "message", "") or exc).strip()
    # TensorFlow: "/path/part-00000...tempstate123; No space left on device"
    return message.rsplit("; ", 1)[-1].splitlines()[0] if message else type(exc).__name__


class ModelDirLock:
    """An exclusive `flock` on `model_dir/.lock` with the holder's PID in the file; released
    by `release()` or when the process dies (the kernel drops it with the file descriptor)."""

    def __init__(self, model_dir):
        self.path = Path(model_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no lock
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise TrainError(f"train.model_dir {self.path.parent} is not writable: cannot "
                             f"create {self.path} ({os_reason(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ModelDirBusy(
                    f"train.model_dir {self.path.parent} is in use by another run (process "
                    f"{holder or 'unknown'} holds the lock {self.path}); wait for it to end or "
                    f"use another --model-dir") from None
            raise TrainError(f"train.model_dir {self.path.parent}: cannot lock {self.path} "
                             f"({os_reason(exc)})") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the lock holds without the PID
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # drops the flock
            self.fd = None


def fsync_tree(root) -> None:
    """fsync every file below `root`, then the directories (deepest first)."""
    root = Path(root)
    dirs = []
    for dirpath, _, files in os.walk(root):
        dirs.append(dirpath)
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in reversed(dirs):
        fsync_dir(d)


def nonfinite_checkpoint_variables(prefix) -> list[str]:
    """Names of the floating-point network and optimizer tensors of a checkpoint holding NaN
    or inf (not the training state: its NaN `lr_prev_score` means "none", nor the learning
    rate, which the learning-rate control sets anew)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    bad = []
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if not key.startswith(("network/", "optimizer/")) or "learning_rate" in key \
                or not dtype.is_floating:
            continue
        if not np.all(np.isfinite(reader.get_tensor(key))):
            bad.append(key.replace("/.ATTRIBUTES/VARIABLE_VALUE", ""))
    return sorted(bad)


def last_finite_checkpoint(model_dir) -> Path | None:
    """The newest checkpoint whose tensors are all finite (None if none is)."""
    for _, path in reversed(list_checkpoints(model_dir)):
        try:
            if not nonfinite_checkpoint_variables(path / "ckpt"):
                return path
        except Exception:  # unreadable: not a good checkpoint either
            continue
    return None


def batch_description(batch) -> str:
    """"a batch of 3 sequences of up to 20000 frames" for a step's replica inputs."""
    seqs, frames = 0, 0
    for inputs, lengths, _ in batch:
        n = 0
        for v in lengths.values():
            v = np.asarray(v)
            n = max(n, len(v))
            frames = max(frames, int(v.max()) if v.size else 0)
        if not lengths:
            for v in inputs.values():
                n = max(n, int(np.shape(v)[0]) if np.ndim(v) else 1)
        seqs += n
    return (f"a batch of {seqs} sequence{'s' if seqs != 1 else ''}"
            + (f" of up to {frames} frames" if frames else ""))


def write_scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar (what `tf.summary.scalar` writes, without needing the tensorboard
    package installed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """A rich progress bar per epoch on a terminal, plain lines otherwise."""

    def __init__(self, out=None, enabled: bool | None = None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if enabled is None else enabled
        self._bar = None
        self._task = None
        self._every = 1

    def start(self, epoch: int, total: int) -> None:
        if self.tty:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                           TextColumn, TimeElapsedColumn)
                self._bar = Bar(TextColumn(f"epoch {epoch}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                transient=True)
                self._bar.start()
                self._task = self._bar.add_task("train", total=total, info="")
                return
            except ImportError:
                self._bar = None
        self._epoch, self._total = epoch, total
        self._every = max(1, total // 5)

    def update(self, step: int, loss: float, lr: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=f"loss {loss:.4f}")
        elif step % self._every == 0 or step == self._total:
            print(f"epoch {self._epoch} step {step}/{self._total} loss {loss:.4f} lr {lr:.3g}",
                  file=self.out, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# -- the trainer -----------------------------------------------------------------------------------
@dataclass
class LossSpec:
    layer: str
    kind: str
    target: str
    scale: float
    opts: dict
    target_sparse: bool
    #: the layer whose output the loss is computed on ("": `layer`); for a `choice` layer its
    #: input distribution (RETURNN: a choice's `loss: ce` is the CE of the softmax feeding it)
    source: str = ""
    #: where the loss layer's output has its batch and (first) time axis (None: none); read
    #: by `as_is`, whose output may have any axes
    batch_axis: int | None = 0
    time_axis: int | None = 1


class Accumulator:
    def __init__(self, losses: list[LossSpec]):
        self.losses = losses
        self.stats = np.zeros((len(losses), 4), np.float64)

    def add(self, stats) -> None:
        self.stats += np.asarray(stats, np.float64)

    def loss(self) -> float:
        if not self.losses:
            return float("nan")
        total = 0.0
        for spec, (s, n, _, _) in zip(self.losses, self.stats):
            total += spec.scale * (s / n if n else 0.0)
        return float(total)

    def error(self, main: int) -> float:
        _, _, e, n = self.stats[main]
        return float(e / n) if n else float("nan")

    def per_layer(self) -> dict[str, tuple[float, float]]:
        return {spec.layer: (float(s / n) if n else float("nan"), float(e / en) if en else
                             float("nan"))
                for spec, (s, n, e, en) in zip(self.losses, self.stats)}


def step_loss(losses: list[LossSpec], stats) -> float:
    total = 0.0
    for spec, (s, n, _, _) in zip(losses, np.asarray(stats, np.float64)):
        total += spec.scale * (s / n if n else 0.0)
    return float(total)


class Trainer:
    """Builds the network, optimizer and strategy from a validated config and trains it."""

    def __init__(self, result, model_dir: str | os.PathLike | None = None, strategy=None,
                 out=None, progress: Progress | None = None):
        import tensorflow as tf

        from netcompiler.backend.build import CompiledNetwork
        from netcompiler.training.lr_control import LearningRateControl, LearningRateError

        result.raise_for_errors()
        self.result = result
        self.config = result.config.data
        self.opts = TrainOptions.from_config(self.config)
        if model_dir is not None:
            self.opts.model_dir = str(model_dir)
        self.out = out or sys.stdout
        self.progress = progress or Progress(self.out)
        self.strategy = strategy or make_strategy(self.opts.distribution)
        self.num_replicas = int(self.strategy.num_replicas_in_sync)
        if self.opts.jit_compile and self.num_replicas > 1:
            # XLA cannot compile a step whose variables live on several devices
            raise TrainError(f"train.jit_compile needs one device (train.distribution: "
                             f"default); `{self.opts.distribution}` has {self.num_replicas} "
                             f"replicas")
        self.seed = int(self.opts.random_seed)
        try:
            self.lr_control = LearningRateControl(self.opts.learning_rate_control,
                                                  float(self.opts.learning_rate),
                                                  dict(self.opts.learning_rate_control_opts or {}),
                                                  learning_rates=self.opts.learning_rates)
        except LearningRateError as exc:
            raise TrainError(str(exc)) from None
        with self.strategy.scope():
            self.net = CompiledNetwork(result, seed=self.seed)
            self.optimizer = make_optimizer(self.opts.optimizer, self.lr_control.rate(0))
            self.trainable = [v for v in self.net.variables_by_name.values() if v.trainable]
            self.optimizer.build(self.trainable)
            self.state = tf.Module(name="train_state")
            self.state.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.state.seed = tf.Variable(self.seed, dtype=tf.int64, trainable=False, name="seed")
            self.state.lr_current = tf.Variable(float(self.lr_control.current), dtype=tf.float64,
                                                trainable=False, name="lr_current")
            self.state.lr_previous_score = tf.Variable(float("nan"), dtype=tf.float64,
                                                       trainable=False, name="lr_prev_score")
            self.accum_steps = int(self.opts.accum_grad_multiple_step or 1)
            if self.accum_steps > 1:  # RETURNN's accum_grad_multiple_step (checkpointed)
                agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
                self.state.accum_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                    name="accum_step", aggregation=agg)
                self.state.accum_grads = [
                    tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, aggregation=agg,
                                name=f"accum_grad_{i}") for i, v in enumerate(self.trainable)]
        self.ckpt = checkpoint(self.net, optimizer=self.optimizer, train_state=self.state)
        self.losses = self._loss_specs()
        self.main_loss = next((i for i, s in enumerate(self.losses) if s.layer == "output"), 0)
        self.l2 = [(name, float(layer.opts["L2"]))
                   for name, layer in self.net.network.layers.items()
                   if layer.opts.get("L2") and name in self.net.layer_params]
        fetch = tuple(s.source or s.layer for s in self.losses)
        needed = self.net.needed_layers(fetch)
        self.input_keys = tuple(sorted(
            k for k in self.net.extern_shapes
            if f"data:{k}" in needed or any(s.target == k for s in self.losses)))
        self.trace_counts = {"train": 0, "eval": 0}
        #: with train.jit_compile: the distinct padded input shapes seen (XLA compiles per shape)
        self.jit_shapes: set = set()
        self._train_fn = self._make_step(training=True)
        #: with accum_grad_multiple_step N > 1: the step that only accumulates (N - 1 of N)
        self._accum_fn = self._make_step(training=True, apply=False) \
            if self.accum_steps > 1 else None
        self._eval_fn = self._make_step(training=False)
        self._finite_fn = None
        self._lock: ModelDirLock | None = None
        self._loss_reference: float | None = None
        self._loss_warned = False
        #: where warnings go (None: sys.stderr at the time of the warning)
        self.err = None
        self.scores: list[dict] = []

    # -- setup ------------------------------------------------------------------------------------
    def _loss_specs(self) -> list[LossSpec]:
        from netcompiler.core.dims import BATCH
        from netcompiler.layers import traits
        from netcompiler.training.losses import LOSSES, NO_TARGET

        specs = []
        for name, layer in self.net.network.layers.items():
            kind = layer.opts.get("loss")
            if not kind:
                continue
            if kind not in LOSSES:
                raise TrainError(f"layer `{name}`: loss `{kind}` is not supported by the trainer "
                                 f"yet (supported: {', '.join(LOSSES)})")
            if kind in NO_TARGET:  # the output is the loss (`as_is`): no target is read
                out = self.net.inferred.shapes[name]
                if layer.scope.in_rec:  # stacked over the loop: [B, T(loop), ...]
                    axes = (0, 1)
                else:
                    axes = (next((i for i, d in enumerate(out.dims) if d.kind == BATCH), None),
                            out.index(out.time) if out.time is not None else None)
                specs.append(LossSpec(name, kind, "", float(layer.opts.get("loss_scale", 1.0)),
                                      dict(layer.opts.get("loss_opts") or {}), False, "",
                                      *axes))
                continue
            target = layer.opts.get("target") or "classes"
            shapes = self.net.inferred.extern  # extern data and keys registered by layers
            if target not in shapes:
                raise TrainError(f"layer `{name}`: target `{target}` is not an extern_data key")
            opts, source = dict(layer.opts.get("loss_opts") or {}), ""
            if traits(layer.layer_class).chooses_labels:
                from netcompiler.frontend.shape_checks import choice_loss_source
                ref = choice_loss_source(self.net.graph, layer)
                if ref is None:
                    raise TrainError(f"layer `{name}`: the loss of a `choice` needs one input "
                                     f"layer (its distribution)")
                source = ref.target.name
                if layer.opts.get("input_type") == "log_prob":  # log_softmax(log p) = log p
                    opts["from_logits"] = True
            specs.append(LossSpec(name, kind, target, float(layer.opts.get("loss_scale", 1.0)),
                                  opts, bool(shapes[target].sparse), source))
        if not specs:
            raise TrainError("no layer has a `loss`: nothing to train (set e.g. `loss: ce` and "
                             "`target: classes` on the output layer)")
        return specs

    def _signature(self):
        import tensorflow as tf

        inputs, lengths = self.net.input_signature(self.input_keys)
        return (inputs, lengths, tf.TensorSpec([], tf.float32, name="weight"))

    def _replica_losses(self, inputs, lengths, weight, training: bool):
        """[L, 4] stats (loss sum, frames, errors, error frames) of this replica's batch."""
        import tensorflow as tf

        from netcompiler.training.losses import compute_loss

        step_seed = None
        if training:
            # dropout masks: a function of (step, replica), so a resumed run draws the same
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            counter = self.state.accum_step if self.accum_steps > 1 else self.optimizer.iterations
            step_seed = (tf.cast(counter, tf.int64) * self.num_replicas
                         + tf.cast(replica, tf.int64))
        registered = self.net.network.registered
        target_layers = tuple(registered[s.target].name for s in self.losses
                              if s.target in registered)
        out = self.net.forward(inputs, lengths, training=training,
                               fetch=tuple(s.source or s.layer for s in self.losses)
                               + target_layers,
                               step_seed=step_seed)
        rows = []
        for spec in self.losses:
            values, lens = out[spec.source or spec.layer]
            if not spec.target:  # a loss without target (`as_is`)
                target, target_lens = None, None
            elif spec.target in registered:  # a layer's output, registered as extern data
                target, target_lens = out[registered[spec.target].name]
            else:
                target, target_lens = inputs[spec.target], lengths.get(spec.target)
            lv = compute_loss(spec.kind, values, lens, target, target_lens, spec.opts,
                              spec.target_sparse, spec.batch_axis, spec.time_axis)
            rows.append(tf.stack([lv.loss, lv.frames, lv.errors, lv.error_frames]))
        return tf.stack(rows) * weight

    def _make_step(self, training: bool, apply: bool = True):
        import tensorflow as tf

        strategy, n = self.strategy, self.num_replicas
        kind = "train" if training else "eval"
        scales = tf.constant([s.scale for s in self.losses], tf.float32)
        clip = self.opts.gradient_clip
        clip_value, noise = self.opts.gradient_clip_value, self.opts.gradient_noise
        accum = self.accum_steps

        def replica_fn(inputs, lengths, weight):
            ctx = tf.distribute.get_replica_context()
            if not training:
                return self._replica_losses(inputs, lengths, weight, False)
            with tf.GradientTape() as tape:
                stats = self._replica_losses(inputs, lengths, weight, True)
                frames = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats[:, 1])
                objective = tf.reduce_sum(scales * stats[:, 0] / tf.maximum(frames, 1.0))
                for name, factor in self.l2:
                    params = [v for v in self.net.layer_params[name].values() if v.trainable]
                    if params:
                        from netcompiler.training.losses import l2_penalty
                        objective += factor * l2_penalty(params) / n
            grads = tape.gradient(objective, self.trainable)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, self.trainable)]
            if clip or clip_value or noise or accum > 1:
                if n > 1:  # clip the global (summed) gradient, exactly as on one device
                    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
                if accum > 1:  # RETURNN: the sum of the gradients of N steps, applied every N
                    first = tf.equal(self.state.accum_step % accum, 0)
                    grads = [tf.where(first, g, a + g)
                             for a, g in zip(self.state.accum_grads, grads)]
                    self.state.accum_step.assign_add(1)
                    if not apply:
                        for a, g in zip(self.state.accum_grads, grads):
                            a.assign(g)
                        return stats
                grads = self._post_process_grads(grads)  # noise, per-entry clip (RETURNN's)
                if clip:
                    grads, _ = tf.clip_by_global_norm(grads, float(clip))
                if n > 1:
                    grads = [g / n for g in grads]  # the optimizer sums over replicas again
            self.optimizer.apply_gradients(zip(grads, self.trainable))
            return stats

        def step(per_replica):
            self.trace_counts[kind] += 1
            if n == 1:
                result = strategy.run(replica_fn, args=tuple(per_replica[0]))
            else:
                values = strategy.experimental_distribute_values_from_function(
                    lambda ctx: tuple(per_replica[ctx.replica_id_in_sync_group]))
                result = strategy.run(replica_fn, args=tuple(values))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, result, axis=None)

        sig = self._signature()
        # train.jit_compile: XLA; one trace, one XLA compilation per distinct padded shape
        return tf.function(step, input_signature=[[sig] * n], autograph=False,
                           jit_compile=bool(self.opts.jit_compile) or None)

    def _post_process_grads(self, grads):
        """RETURNN's per-entry gradient options, in its order: `gradient_noise` (a truncated
        normal, seeded by (random_seed, variable, optimizer step): a resumed run draws the same,
        every replica the same), then `gradient_clip_value` (clip every entry to +-value)."""
        from netcompiler.training.gradients import gradient_post_process

        return gradient_post_process(grads, self.opts.gradient_noise,
                                     self.opts.gradient_clip_value, self.seed,
                                     self.optimizer.iterations)

    # -- finiteness -------------------------------------------------------------------------------
    def _checked_variables(self) -> list[tuple[str, Any]]:
        """(name, variable) of every floating-point variable a checkpoint holds: the network's,
        the optimizer's slots (not its learning rate)."""
        import tensorflow as tf

        def floating(v) -> bool:
            return tf.as_dtype(v.dtype).is_floating

        out = [(f"network/{n}", v) for n, v in self.net.variables_by_name.items() if floating(v)]
        seen = {id(v) for _, v in out}
        for v in self.optimizer.variables:
            name = str(getattr(v, "path", None) or v.name)
            if id(v) in seen or not floating(v) or "learning_rate" in name:
                continue
            seen.add(id(v))
            out.append((f"optimizer/{name}", v))
        return out

    def nonfinite_variables(self) -> list[str]:
        """Names of the network and optimizer variables holding NaN or inf now (one fused
        check per call, cheap next to a training step)."""
        import tensorflow as tf

        if self._finite_fn is None:
            checked = self._checked_variables()
            self._finite_names = [n for n, _ in checked]
            variables = [v for _, v in checked]

            def check():
                return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables])

            self._finite_fn = tf.function(check, autograph=False) if variables else (
                lambda: tf.zeros([0], tf.bool))
        flags = self._finite_fn().numpy()
        return [n for n, ok in zip(self._finite_names, flags) if not ok]

    def _warn(self, text: str) -> None:
        print(f"netcompiler train: warning: {text}", file=self.err or sys.stderr, flush=True)

    def _check_loss_growth(self, loss: float, epoch: int, step: int, lr: float) -> None:
        if self._loss_reference is None:
            self._loss_reference = abs(loss)
            return
        limit = LOSS_GROWTH_WARNING * max(self._loss_reference, 1.0)
        if not self._loss_warned and abs(loss) > limit:
            self._loss_warned = True
            self._warn(f"the training loss grew from {self._loss_reference:.4g} (first step) to "
                       f"{loss:.4g} at epoch {epoch}, step {step}: the learning rate ({lr:.3g}) "
                       f"is probably too high (or set train.gradient_clip)")

    # -- data -------------------------------------------------------------------------------------
    def load_data(self):
        from netcompiler.training.datasets import DatasetError, check_shared_time_axes, make_dataset
        from netcompiler.frontend.extern_data import shared_time_keys

        extern = self.config.get("extern_data") or {}
        if self.opts.train_data is None:
            raise TrainError("train.train_data is not set (e.g. `train_data: 12ax`)")
        try:
            self.train_data = make_dataset(self.opts.train_data, extern, default_seed=self.seed,
                                           name="train")
            self.dev_data = (make_dataset(self.opts.dev_data, extern, default_seed=self.seed,
                                          name="dev") if self.opts.dev_data is not None else None)
            for ds in (self.train_data, self.dev_data):
                if ds is not None:
                    check_shared_time_axes(ds, shared_time_keys(self.net.inferred.extern))
        except DatasetError as exc:
            raise TrainError(f"bad dataset: {exc}") from None
        if self.opts.chunking not in (None, "", 0, "0"):  # RETURNN's chunking (training only)
            from netcompiler.training.datasets.chunking import ChunkedDataset, parse_chunking

            try:
                size, step = parse_chunking(self.opts.chunking)
                if all(k in self.train_data.keys for k in self.input_keys):
                    self.train_data = ChunkedDataset(self.train_data, size, step,
                                                     keys=self.input_keys)
            except DatasetError as exc:
                raise TrainError(f"train.chunking: {exc}") from None
        for ds, what in ((self.train_data, "train_data"), (self.dev_data, "dev_data")):
            if ds is None:
                continue
            missing = [k for k in self.input_keys if k not in ds.keys]
            if missing:
                raise TrainError(f"train.{what}: the dataset has no key(s) "
                                 f"{', '.join(missing)} needed for training (it has "
                                 f"{', '.join(ds.keys)})")

    def _groups(self, dataset, epoch: int, batching: str | None = None) -> list[list[int]]:
        from netcompiler.training.datasets import batches

        return batches(dataset, int(self.opts.batch_size), self.opts.max_seqs,
                       batching or self.opts.batching, self.seed, epoch)

    def _pad(self, dataset, indices: list[int]):
        """Inputs/lengths of these sequences as padded numpy arrays (used for replica slices)."""
        from netcompiler.training.datasets import padded_batch

        inputs, lengths = padded_batch(dataset, indices, self.input_keys)
        return (inputs, {k: lengths[k] for k in self.input_keys
                         if self.net.extern_shapes[k].time is not None})

    def _iterate(self, dataset, groups: list[list[int]]):
        """Per step: a list (one entry per replica) of (inputs, lengths, weight)."""
        import tensorflow as tf

        n = self.num_replicas
        if n == 1:
            from netcompiler.training.datasets import tf_dataset

            for inputs, lengths in tf_dataset(dataset, groups):
                ins = self._bucket_time({k: inputs[k] for k in self.input_keys})
                lens = {k: tf.cast(lengths[k], tf.int32) for k in self.input_keys
                        if self.net.extern_shapes[k].time is not None}
                yield [(ins, lens, tf.constant(1.0))]
            return
        for group in groups:
            parts = np.array_split(np.asarray(group), n)
            per = []
            for part in parts:
                if len(part):
                    ins, lens = self._pad(dataset, [int(i) for i in part])
                    per.append((self._bucket_time(ins), lens, np.float32(1.0)))
                else:  # fewer sequences than replicas: a dummy sequence with weight 0
                    ins, lens = self._pad(dataset, [int(group[0])])
                    per.append((self._bucket_time(ins), lens, np.float32(0.0)))
            yield per

    def _bucket_time(self, inputs: dict) -> dict:
        """With train.jit_compile: pad the first time axis of every input up to a multiple of
        train.jit_time_multiple frames (zeros, lengths unchanged: masking keeps the results
        exact), so XLA sees fewer distinct shapes and compiles fewer times. Records the padded
        shapes in `jit_shapes` (XLA compiles once per distinct shape)."""
        if not self.opts.jit_compile:
            return inputs
        import tensorflow as tf

        multiple, out = int(self.opts.jit_time_multiple or 1), {}
        for k, x in inputs.items():
            shape = self.net.extern_shapes[k]
            if shape.time is not None and multiple > 1:
                axis = shape.index(shape.time)
                extra = -int(x.shape[axis]) % multiple
                if extra:
                    pad = [[0, 0]] * len(x.shape)
                    pad[axis] = [0, extra]
                    x = tf.pad(x, pad) if tf.is_tensor(x) else np.pad(x, pad)
            out[k] = x
        self.jit_shapes.add(tuple((k, tuple(int(d) for d in x.shape)) for k, x in out.items()))
        return out

    # -- checkpoints ------------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        if not self.opts.model_dir:
            raise TrainError("train.model_dir is not set (use --model-dir DIR or "
                             "--set train.model_dir=DIR)")
        return Path(self.opts.model_dir)

    def _is_chief(self) -> bool:
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not getattr(resolver, "task_type", None):
            return True
        return resolver.task_type in ("chief",) or (resolver.task_type == "worker"
                                                     and resolver.task_id == 0)

    def save(self, epoch: int) -> Path | None:
        """Write the checkpoint of `epoch` atomically (fsynced before the rename, the directory
        after it); prune to keep_last_n. Refuses non-finite variables (NonFiniteWeights); a
        write that fails (disk full, permissions) is a TrainError and leaves no temporary
        directory, the earlier checkpoints intact."""
        if not self._is_chief():
            return None
        model_dir = self.model_dir
        bad = self.nonfinite_variables()
        if bad:
            raise NonFiniteWeights(f"the variables {', '.join(bad[:3])}"
                                   f"{' (and more)' if len(bad) > 3 else ''} hold NaN or inf at "
                                   f"the end of epoch {epoch}: not saving them")
        self.state.epoch.assign(epoch)
        self.state.seed.assign(self.seed)
        lr_state = self.lr_control.state()
        self.state.lr_current.assign(float(lr_state["current"]))
        prev = lr_state["previous_score"]
        self.state.lr_previous_score.assign(float("nan") if prev is None else float(prev))
        final = model_dir / f"ckpt-{epoch:03d}"
        row = next((dict(r) for r in reversed(self.scores) if str(r.get("epoch")) == str(epoch)),
                   None)
        tmp = None
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=model_dir))
            self.ckpt.write(str(tmp / "ckpt"))
            meta = {"epoch": epoch, "seed": self.seed, "learning_rate_control": lr_state,
                    "global_step": int(self.optimizer.iterations.numpy()),
                    "time": time.time()}
            if row is not None:
                meta["scores"] = {c: str(row[c]) for c in SCORE_COLUMNS if c in row}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            fsync_tree(tmp)
            _die_if(epoch, "save")
            os.chmod(tmp, 0o777 & ~current_umask())
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=model_dir))
                os.replace(final, old / "x")
                os.replace(tmp, final)
                fsync_dir(model_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
                fsync_dir(model_dir)
        except BaseException as exc:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (OSError, tf_errors())):
                kept = newest_checkpoint(model_dir)
                raise TrainError(
                    f"cannot write the checkpoint of epoch {epoch} into train.model_dir "
                    f"{model_dir} ({os_reason(exc)}); "
                    + (f"the earlier checkpoint {kept} is kept" if kept else
                       "no checkpoint was written")) from None
            raise
        for _, path in list_checkpoints(model_dir)[:-int(self.opts.keep_last_n)]:
            shutil.rmtree(path, ignore_errors=True)
        return final

    def restore(self, path=None) -> int:
        """Restore the newest (or given) checkpoint; returns its epoch (0 if none)."""
        if path is None:
            if not self.opts.model_dir:
                return 0
            newest = newest_checkpoint(self.model_dir)
            if newest is None:
                return 0
            path = newest
        prefix = checkpoint_prefix(path)
        check_checkpoint_fits(prefix, self.net)
        try:
            status = self.ckpt.read(prefix)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf_errors()) as exc:
            raise TrainError(f"checkpoint {prefix} does not fit this config (was it written "
                             f"for another network or optimizer?): {exc}") from None
        bad = self.nonfinite_variables()
        if bad:
            good = last_finite_checkpoint(self.model_dir) if self.opts.model_dir else None
            raise NonFiniteWeights(
                f"checkpoint {prefix} holds NaN or inf (in {', '.join(bad[:3])}"
                f"{' and more' if len(bad) > 3 else ''}); it cannot be resumed: "
                + (f"remove it to resume from {good}, the newest finite checkpoint" if good
                   else "no finite checkpoint is left"))
        epoch = int(self.state.epoch.numpy())
        self.seed = int(self.state.seed.numpy())
        prev = float(self.state.lr_previous_score.numpy())
        from netcompiler.training.lr_control import checkpoint_state  # the per-epoch history is in meta.json

        self.lr_control.load_state({**checkpoint_state(prefix),
                                    "current": float(self.state.lr_current.numpy()),
                                    "previous_score": None if math.isnan(prev) else prev})
        return epoch

    def _cleanup_tmp(self) -> None:
        """Remove what killed runs left (only under the model_dir lock: never a live run's)."""
        if not self._is_chief():  # only the chief holds the lock (a shared model_dir)
            return
        for pattern in (".tmp-ckpt-*", ".old-ckpt-*"):
            for p in self.model_dir.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)
        for p in self.model_dir.glob(".scores.tsv.*.tmp"):  # atomic_write's temporary file
            try:
                p.unlink()
            except OSError:
                pass

    def _prepare_model_dir(self) -> Path:
        """Create model_dir, take its lock, check that it is writable: a TrainError naming the
        directory otherwise (before any training, so no work is lost)."""
        model_dir = self.model_dir
        if model_dir.exists() and not model_dir.is_dir():
            raise TrainError(f"train.model_dir {model_dir} exists and is not a directory")
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(f"train.model_dir {model_dir}: cannot create the directory "
                             f"({os_reason(exc)})") from None
        if not self._is_chief():
            return model_dir
        lock = ModelDirLock(model_dir)
        lock.acquire()
        self._lock = lock
        try:
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=model_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            self._release_lock()
            raise TrainError(f"train.model_dir {model_dir} is not writable "
                             f"({os_reason(exc)})") from None
        return model_dir

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- scores -----------------------------------------------------------------------------------
    def _load_scores(self, up_to_epoch: int) -> None:
        """scores.tsv's rows up to `up_to_epoch`, plus the rows of checkpoints whose row is
        missing (a run killed between the checkpoint's rename and the scores write)."""
        path = self.model_dir / "scores.tsv"
        rows: dict[int, dict] = {}
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        for line in lines[1:]:
            cells = line.split("\t")
            if len(cells) != len(SCORE_COLUMNS):
                continue
            row = dict(zip(SCORE_COLUMNS, cells))
            try:
                if int(row["epoch"]) <= up_to_epoch:
                    rows[int(row["epoch"])] = row
            except ValueError:
                continue
        for epoch, ckpt in list_checkpoints(self.model_dir):
            if epoch > up_to_epoch or epoch in rows:
                continue
            try:
                saved = json.loads((ckpt / "meta.json").read_text(encoding="utf-8")).get("scores")
            except (OSError, ValueError):
                continue
            if isinstance(saved, dict) and all(c in saved for c in SCORE_COLUMNS):
                rows[epoch] = {c: str(saved[c]) for c in SCORE_COLUMNS}
        self.scores = [rows[e] for e in sorted(rows)]

    def _write_scores(self) -> None:
        if not self._is_chief():
            return
        lines = ["\t".join(SCORE_COLUMNS)]
        lines += ["\t".join(str(row[c]) for c in SCORE_COLUMNS) for row in self.scores]
        path = self.model_dir / "scores.tsv"
        try:
            atomic_write_text(path, "\n".join(lines) + "\n")
        except OSError as exc:
            raise TrainError(f"cannot write {path} ({os_reason(exc)}); the checkpoints are kept "
                             f"and the next run restores the missing rows") from None

    # -- running ----------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> Accumulator:
        acc = Accumulator(self.losses)
        groups = self._groups(self.train_data, epoch)
        if self.opts.max_seq_length:  # skip long training sequences (never dev data)
            from netcompiler.training.datasets import DatasetError
            from netcompiler.training.datasets.pipeline import batches

            try:
                groups = batches(self.train_data, int(self.opts.batch_size), self.opts.max_seqs,
                                 self.opts.batching, self.seed, epoch,
                                 max_seq_length=self.opts.max_seq_length)
            except DatasetError as exc:
                raise TrainError(f"train.max_seq_length: {exc}") from None
        self.progress.start(epoch, len(groups))
        try:
            for step, batch in enumerate(self._iterate(self.train_data, groups), start=1):
                _die_if(epoch, step)
                lr = self.lr_control.rate(int(self.optimizer.iterations.numpy()))
                self.optimizer.learning_rate = lr
                try:
                    fn = self._train_fn
                    if self.accum_steps > 1 and int(self.state.accum_step.numpy()) \
                            % self.accum_steps != self.accum_steps - 1:
                        fn = self._accum_fn  # accumulate only (RETURNN's accum_grad_multiple_step)
                    stats = fn(batch).numpy()
                except oom_types():
                    raise out_of_memory_error(f"in training (epoch {epoch}, step {step})",
                                              batch_description(batch), self.opts) from None
                loss = step_loss(self.losses, stats)
                if _test_hook(NAN_ENV, epoch, step):
                    loss = float("nan")
                if not (np.all(np.isfinite(stats)) and math.isfinite(loss)):
                    raise NonFiniteLoss(
                        f"the training loss is {loss} at epoch {epoch}, step {step} (global step "
                        f"{int(self.optimizer.iterations.numpy())})")
                bad = self.nonfinite_variables()
                if bad:
                    raise NonFiniteWeights(
                        f"the training loss is {loss:.4g} but the variables "
                        f"{', '.join(bad[:3])}{' (and more)' if len(bad) > 3 else ''} hold NaN "
                        f"or inf after epoch {epoch}, step {step} (global step "
                        f"{int(self.optimizer.iterations.numpy())}): the learning rate "
                        f"({lr:.3g}) is too high or the gradients need clipping "
                        f"(train.gradient_clip)")
                self._check_loss_growth(loss, epoch, step, lr)
                acc.add(stats)
                self.progress.update(step, acc.loss(), lr)
        finally:
            self.progress.stop()
        return acc

    def dev_search_error(self) -> float:
        """For a network that searches (a rec unit with a `choice`): the sequence error of beam
        search on the dev data (the best hypothesis against the target); else NaN."""
        from netcompiler.backend.loop.runner import choice_layer, search_rec_layer, search_rec_layers

        if self.dev_data is None or not search_rec_layers(self.net.network):
            return float("nan")
        rec = search_rec_layer(self.net)
        beam = int(choice_layer(rec).opts.get("beam_size", 1) or 1)
        _, errors = search_dataset(self.net, rec, self.dev_data, beam, 1, self.opts)
        return errors.sequence_error

    def evaluate(self, dataset, epoch: int = 0) -> Accumulator:
        acc = Accumulator(self.losses)
        groups = self._groups(dataset, 0, batching="sorted")
        for batch in self._iterate(dataset, groups):
            try:
                acc.add(self._eval_fn(batch).numpy())
            except oom_types():
                raise out_of_memory_error(f"evaluating {dataset.describe().split(':')[0]} "
                                          f"(epoch {epoch})", batch_description(batch),
                                          self.opts) from None
        return acc

    def train(self) -> int:
        """Train (resuming if model_dir has checkpoints); returns the last epoch trained.
        Holds the model_dir lock meanwhile."""
        self._prepare_model_dir()
        try:
            return self._train_locked()
        finally:
            self._release_lock()

    def _train_locked(self) -> int:
        import tensorflow as tf

        self.load_data()
        model_dir = self.model_dir
        self._cleanup_tmp()
        start = self.restore() + 1
        self._load_scores(start - 1)
        num_epochs = int(self.opts.num_epochs)
        if start > 1:
            print(f"resuming from {model_dir / f'ckpt-{start - 1:03d}'} at epoch {start}",
                  file=self.out, flush=True)
        if start > num_epochs:
            print(f"already trained {start - 1} epochs (num_epochs {num_epochs}): nothing to do",
                  file=self.out, flush=True)
            return start - 1
        # describe() starts with the dataset's role ("train: ...", "dev: ...")
        print(self.train_data.describe() + (
            f"\n{self.dev_data.describe()}" if self.dev_data is not None else ""),
            file=self.out, flush=True)
        try:
            writer = tf.summary.create_file_writer(str(model_dir / "tensorboard")) \
                if self._is_chief() else tf.summary.create_noop_writer()
        except (OSError, tf.errors.OpError) as exc:
            raise TrainError(f"cannot create the TensorBoard log in {model_dir / 'tensorboard'} "
                             f"({os_reason(exc)})") from None
        last_saved = start - 1
        try:
            for epoch in range(start, num_epochs + 1):
                t0 = time.time()
                self.lr_control.begin_epoch(epoch)
                lr = self.lr_control.rate(int(self.optimizer.iterations.numpy()))
                try:
                    train_acc = self.run_epoch(epoch)
                except NonFiniteLoss as exc:
                    kept = last_finite_checkpoint(model_dir)
                    raise type(exc)(
                        f"{exc}; stopping. " + (f"The last good checkpoint {kept} is kept."
                                                if kept else "No checkpoint was written yet.")
                    ) from None
                dev_loss = dev_err = dev_seq_err = float("nan")
                if self.dev_data is not None:
                    dev_acc = self.evaluate(self.dev_data, epoch)
                    dev_loss, dev_err = dev_acc.loss(), dev_acc.error(self.main_loss)
                    dev_seq_err = self.dev_search_error()
                train_loss, train_err = train_acc.loss(), train_acc.error(self.main_loss)
                self.lr_control.end_epoch(dev_loss if self.dev_data is not None else train_loss,
                                          dev_err if self.dev_data is not None else train_err)
                wall = time.time() - t0
                self.scores.append({"epoch": epoch, "learning_rate": f"{lr:.6g}",
                                    "train_loss": f"{train_loss:.6f}",
                                    "train_error": f"{train_err:.6f}",
                                    "dev_loss": f"{dev_loss:.6f}", "dev_error": f"{dev_err:.6f}",
                                    "dev_seq_error": f"{dev_seq_err:.6f}",
                                    "wall_time": f"{wall:.2f}"})
                if epoch % int(self.opts.save_interval) == 0 or epoch == num_epochs:
                    try:
                        self.save(epoch)
                    except NonFiniteWeights as exc:  # not expected: checked after every step
                        kept = last_finite_checkpoint(model_dir)
                        raise NonFiniteWeights(
                            f"{exc}; stopping. " + (f"The last good checkpoint {kept} is kept."
                                                    if kept else "No checkpoint was written yet.")
                        ) from None
                    last_saved = epoch
                    _die_if(epoch, "saved")
                self._write_scores()
                scalars = {"learning_rate": lr, "train/loss": train_loss,
                           "train/error": train_err}
                if len(self.losses) > 1:
                    for layer, (l, e) in train_acc.per_layer().items():
                        scalars[f"train/{layer}/loss"] = l
                        scalars[f"train/{layer}/error"] = e
                if self.dev_data is not None:
                    scalars.update({"dev/loss": dev_loss, "dev/error": dev_err})
                    if not math.isnan(dev_seq_err):
                        scalars["dev/sequence_error"] = dev_seq_err
                try:
                    with writer.as_default(step=epoch):
                        for tag, value in scalars.items():
                            write_scalar(tag, value, epoch)
                    writer.flush()
                except tf.errors.OpError as exc:  # e.g. the disk is full
                    raise TrainError(f"cannot write the TensorBoard log in "
                                     f"{model_dir / 'tensorboard'} ({os_reason(exc)}); the "
                                     f"checkpoints are kept") from None
                dev_text = (f", dev loss {dev_loss:.4f} error {dev_err:.2%}"
                            if self.dev_data is not None else "")
                if not math.isnan(dev_seq_err):
                    dev_text += f", dev sequence error {dev_seq_err:.2%} (search)"
                print(f"epoch {epoch}/{num_epochs}: lr {lr:.3g}, train loss {train_loss:.4f} "
                      f"error {train_err:.2%}{dev_text} ({wall:.1f}s)", file=self.out, flush=True)
        finally:
            try:
                writer.close()
            except tf.errors.OpError:  # e.g. a full disk; the error that led here matters more
                pass
        del last_saved
        return num_epochs


# -- the command line ------------------------------------------------------------------------------
def cli_train(args) -> int:
    """`netcompiler train CONFIG [--model-dir DIR] [--set K=V]`."""
    result = validated_config(args)
    if result is None:
        return EXIT_ERROR
    try:
        trainer = Trainer(result)
        trainer.model_dir  # noqa: B018  (fail early without a model dir)
        trainer.train()
    except UserError as exc:  # TrainError, Unsupported, a dataset or config problem
        return user_error("train", exc)
    except MemoryError:
        return user_error("train", "out of memory (host RAM); use a smaller train.batch_size "
                                    "or smaller datasets")
    except OSError as exc:  # an environmental fault not caught where it happened
        return user_error("train", f"{exc.filename + ': ' if exc.filename else ''}"
                                    f"{os_reason(exc)}")
    except KeyboardInterrupt:
        print("netcompiler train: interrupted; the checkpoints written so far are kept",
              file=sys.stderr)
        return 130
    return EXIT_OK


def cli_forward(args) -> int:
    """`netcompiler forward CONFIG [--checkpoint CKPT] [--data SPEC] [--output OUT.hdf]
    [--layer NAME]`: run the network (inference mode) over a dataset and write the layer's output
    to a RETURNN-style HDF file (atomically)."""
    result = validated_config(args)
    if result is None:
        return EXIT_ERROR
    try:
        return _forward(args, result)
    except UserError as exc:  # TrainError, Unsupported, a dataset or config problem
        return user_error("forward", exc)


def _forward(args, result) -> int:
    import tensorflow as tf

    from netcompiler.backend.build import CompiledNetwork
    from netcompiler.training.datasets import (DatasetError, batches, check_shared_time_axes, make_dataset,
                           padded_batch)
    from netcompiler.frontend.extern_data import shared_time_keys
    opts = TrainOptions.from_config(result.config.data)
    ckpt_path = getattr(args, "checkpoint", None) or opts.model_dir
    if not ckpt_path:
        raise TrainError("no --checkpoint given and train.model_dir is not set")
    prefix = checkpoint_prefix(ckpt_path)
    net = CompiledNetwork(result, seed=int(opts.random_seed))
    restore_network(net, prefix)
    layer = getattr(args, "layer", None) or "output"
    try:
        fetch = net.normalise_fetch(layer)
    except KeyError as exc:
        raise TrainError(str(exc.args[0])) from None
    from netcompiler.backend.export import inference_inputs

    keys = inference_inputs(net, fetch)
    extern = result.config.data.get("extern_data") or {}
    spec = parse_data_spec(getattr(args, "data", None), opts.dev_data or opts.train_data)
    if spec is None:
        raise TrainError("no --data given and the config has no train.dev_data/train_data")
    try:
        dataset = make_dataset(spec, extern, default_seed=int(opts.random_seed), name="forward")
        check_shared_time_axes(dataset, shared_time_keys(net.inferred.extern))
    except DatasetError as exc:
        raise TrainError(f"bad dataset: {exc}") from None
    missing = [k for k in keys if k not in dataset.keys]
    if missing:
        raise TrainError(f"the dataset has no key(s) {', '.join(missing)} needed by `{layer}`")
    fn = net.get_function(keys, fetch, False)
    out_path = getattr(args, "output", None) or str(
        Path(opts.model_dir or ".") / f"forward-{layer.replace('/', '_')}.hdf")
    shape = net.shape(layer)
    seqs: list[dict] = []
    order: list[int] = []
    for group in batches(dataset, int(opts.batch_size), opts.max_seqs, "sorted",
                         int(opts.random_seed), 0):
        padded, lengths = padded_batch(dataset, group, keys)
        inputs = {k: tf.constant(v) for k, v in padded.items()}
        lens = {k: tf.constant(lengths[k]) for k in keys if net.extern_shapes[k].time is not None}
        try:
            values, out_lens = fn(inputs, lens)[layer]
        except oom_types():
            n = len(group)
            frames = max((int(np.max(np.asarray(v))) for v in lens.values()), default=0)
            raise out_of_memory_error(
                f"running `{layer}` forward",
                f"a batch of {n} sequence{'s' if n != 1 else ''}"
                + (f" of up to {frames} frames" if frames else ""), opts) from None
        values = values.numpy()
        out_lens = None if out_lens is None else out_lens.numpy()
        for j, i in enumerate(group):
            v = values[j]
            if out_lens is not None:
                v = v[: int(out_lens[j])]
            if v.ndim == 1:
                v = v[:, None] if shape.time is not None else v[None, :]
            elif v.ndim == 0:
                v = v.reshape(1, 1)
            elif v.ndim > 2:
                v = v.reshape(v.shape[0], -1)
            seqs.append({"data": v.astype(np.float32)})
            order.append(int(i))
    by_index = sorted(zip(order, seqs), key=lambda t: t[0])
    tags = [dataset.seq_tags[i] for i, _ in by_index] if hasattr(dataset, "seq_tags") else None
    try:
        from netcompiler.training.datasets import write_hdf
    except ImportError:
        from netcompiler.training.datasets.hdf import write_hdf
    try:
        write_hdf(out_path, [s for _, s in by_index], None, tags)
    except OSError as exc:
        raise TrainError(f"cannot write --output {out_path} ({os_reason(exc)})") from None
    print(f"wrote {len(by_index)} sequences of `{layer}` to {out_path}")
    return EXIT_OK
