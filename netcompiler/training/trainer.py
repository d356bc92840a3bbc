"""Training end to end (`netcompiler train`): the `Trainer` runs the epoch loop over the
pieces of its sibling modules: `step` (strategy, optimizer, the compiled steps), `data` (datasets
and batches), `loss_specs` (what is optimised and reported), `model_dir` (lock, atomic
checkpoints), `scores` (scores.tsv, TensorBoard, the epoch line), `progress`, `finiteness` (NaN
guards) and `fault_injection` (test hooks). `netcompiler forward` is `forward.py`,
`netcompiler search` `search.py`.

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

Losses (`losses.py`, `loss_specs.py`): per loss layer `loss_scale * sum(loss over valid frames) / frames`, plus
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

import math
import os
import sys
import time
from pathlib import Path

from netcompiler.core.errors import UserError
from netcompiler.training.checkpoints import (
    check_checkpoint_fits,
    checkpoint,
    checkpoint_prefix,
    newest_checkpoint,
    tf_errors,
)
from netcompiler.training.command_support import (
    EXIT_ERROR,
    EXIT_OK,
    TrainError,
    oom_types,
    out_of_memory_error,
    user_error,
    validated_config,
)
from netcompiler.training.data import BatchFeeder, batch_description, epoch_batches, load_datasets
from netcompiler.training.fault_injection import NAN_ENV, die_or_stop_if_asked, hook_set_for
from netcompiler.training.finiteness import (
    FiniteCheck,
    LossGrowthWatch,
    NonFiniteLoss,
    NonFiniteWeights,
    check_step_loss,
    check_step_variables,
    checked_variables,
    last_finite_checkpoint,
    listed,
    stopping,
)
from netcompiler.training.loss_specs import (
    Accumulator,
    l2_terms,
    loss_specs,
    main_loss_index,
    step_input_keys,
    step_loss,
)
from netcompiler.training.model_dir import (
    ModelDirLock,
    os_reason,
    prepare_model_dir,
    publish_checkpoint,
    remove_leftovers,
)
from netcompiler.training.options import TrainOptions
from netcompiler.training.progress import Progress
from netcompiler.training.scores import (
    SCORE_COLUMNS,
    EpochScores,
    TensorBoardLog,
    read_scores,
    write_scores,
)
from netcompiler.training.search import search_dataset
from netcompiler.training.step import StepFunctions, is_chief, make_optimizer, make_strategy


def learning_rate_control(opts):
    """The LearningRateControl of the options (a TrainError for bad options)."""
    from netcompiler.training.lr_control import LearningRateControl, LearningRateError

    try:
        return LearningRateControl(
            opts.learning_rate_control,
            float(opts.learning_rate),
            dict(opts.learning_rate_control_opts or {}),
            learning_rates=opts.learning_rates,
        )
    except LearningRateError as exc:
        raise TrainError(str(exc)) from None


def training_state(seed: int, lr_control, trainable: list, accum_steps: int):
    """The checkpointed training counters (`tf.Module` `train_state`): epoch, data order seed,
    the learning-rate control's state and, with accum_grad_multiple_step N > 1, RETURNN's
    gradient accumulation (the step counter and the summed gradients). Create it inside the
    strategy's scope."""
    import tensorflow as tf

    state = tf.Module(name="train_state")
    state.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    state.seed = tf.Variable(seed, dtype=tf.int64, trainable=False, name="seed")
    state.lr_current = tf.Variable(
        float(lr_control.current), dtype=tf.float64, trainable=False, name="lr_current"
    )
    state.lr_previous_score = tf.Variable(
        float("nan"), dtype=tf.float64, trainable=False, name="lr_prev_score"
    )
    if accum_steps > 1:  # RETURNN's accum_grad_multiple_step (checkpointed)
        agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
        state.accum_step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="accum_step", aggregation=agg
        )
        state.accum_grads = [
            tf.Variable(
                tf.zeros(v.shape, v.dtype), trainable=False, aggregation=agg, name=f"accum_grad_{i}"
            )
            for i, v in enumerate(trainable)
        ]
    return state


class Trainer:
    """Builds the network, optimizer and strategy from a validated config and trains it."""

    def __init__(
        self,
        result,
        model_dir: str | os.PathLike | None = None,
        strategy=None,
        out=None,
        progress: Progress | None = None,
    ):
        import tensorflow as tf

        from netcompiler.backend.build import CompiledNetwork
        from netcompiler.training.loss_scaling import checkpointed_optimizer, with_loss_scaling

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
            raise TrainError(
                f"train.jit_compile needs one device (train.distribution: "
                f"default); `{self.opts.distribution}` has {self.num_replicas} "
                f"replicas"
            )
        self.seed = int(self.opts.random_seed)
        self.lr_control = learning_rate_control(self.opts)
        with self.strategy.scope():
            self.net = CompiledNetwork(result, seed=self.seed)
            self.optimizer = with_loss_scaling(  # mixed_float16: a dynamic loss scale
                make_optimizer(self.opts.optimizer, self.lr_control.rate(0)), self.net.precision
            )
            self.trainable = [v for v in self.net.variables_by_name.values() if v.trainable]
            self.optimizer.build(self.trainable)
            self.accum_steps = int(self.opts.accum_grad_multiple_step or 1)
            self.state = training_state(
                self.seed, self.lr_control, self.trainable, self.accum_steps
            )
        # one checkpoint layout for every precision (mixed_float16: without the loss scale)
        self.ckpt = checkpoint(
            self.net, optimizer=checkpointed_optimizer(self.optimizer), train_state=self.state
        )
        self.losses = loss_specs(self.net)
        self.main_loss = main_loss_index(self.losses)
        self.l2 = l2_terms(self.net)
        self.input_keys = step_input_keys(self.net, self.losses)
        self.trace_counts = {"train": 0, "eval": 0}
        #: with train.jit_compile: the distinct padded input shapes seen (XLA compiles per shape)
        self.jit_shapes: set = set()
        self.feeder = BatchFeeder(
            self.net.extern_shapes, self.input_keys, self.num_replicas, self.opts, self.jit_shapes
        )
        #: the floating-point variables a checkpoint holds, and whether all were finite after
        #: the last step (set by the step itself; not checkpointed)
        self.checked_variables = checked_variables(self.net, self.optimizer)
        self.variables_finite = tf.Variable(True, trainable=False, name="variables_finite")
        self.steps = StepFunctions(self)
        self._train_fn = self.steps.make(training=True)
        #: with accum_grad_multiple_step N > 1: the step that only accumulates (N - 1 of N)
        self._accum_fn = (
            self.steps.make(training=True, apply=False) if self.accum_steps > 1 else None
        )
        self._eval_fn = self.steps.make(training=False)
        self.finite_check = FiniteCheck(self.net, self.optimizer)
        self.loss_watch = LossGrowthWatch()
        self._lock: ModelDirLock | None = None
        #: where warnings go (None: sys.stderr at the time of the warning)
        self.err = None
        self.scores: list[dict] = []

    # -- the step (built by StepFunctions) and the data (fed by BatchFeeder) ------------------------
    def _replica_losses(self, inputs, lengths, weight, training: bool):
        """[L, 4] stats (loss sum, frames, errors, error frames) of this replica's batch."""
        return self.steps.replica_losses(inputs, lengths, weight, training)

    def nonfinite_variables(self) -> list[str]:
        """Names of the network and optimizer variables holding NaN or inf now (one fused
        check per call, cheap next to a training step)."""
        return self.finite_check()

    def load_data(self):
        self.train_data, self.dev_data = load_datasets(
            self.opts, self.config, self.net.inferred.extern, self.input_keys, self.seed
        )

    def _groups(self, dataset, epoch: int, batching: str | None = None) -> list[list[int]]:
        return epoch_batches(dataset, self.opts, self.seed, epoch, batching)

    def _iterate(self, dataset, groups: list[list[int]]):
        """Per step: a list (one entry per replica) of (inputs, lengths, weight)."""
        return self.feeder.iterate(dataset, groups)

    def _bucket_time(self, inputs: dict) -> dict:
        """The inputs with their time axis padded for XLA (BatchFeeder.bucket_time)."""
        return self.feeder.bucket_time(inputs)

    # -- checkpoints ------------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        if not self.opts.model_dir:
            raise TrainError(
                "train.model_dir is not set (use --model-dir DIR or --set train.model_dir=DIR)"
            )
        return Path(self.opts.model_dir)

    def _is_chief(self) -> bool:
        return is_chief(self.strategy)

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
            raise NonFiniteWeights(
                f"the variables {listed(bad)} hold NaN or inf at the end of "
                f"epoch {epoch}: not saving them"
            )
        self.state.epoch.assign(epoch)
        self.state.seed.assign(self.seed)
        lr_state = self.lr_control.state()
        self.state.lr_current.assign(float(lr_state["current"]))
        prev = lr_state["previous_score"]
        self.state.lr_previous_score.assign(float("nan") if prev is None else float(prev))
        meta = {
            "epoch": epoch,
            "seed": self.seed,
            "learning_rate_control": lr_state,
            "global_step": int(self.optimizer.iterations.numpy()),
            "time": time.time(),
        }
        row = next((r for r in reversed(self.scores) if str(r.get("epoch")) == str(epoch)), None)
        if row is not None:
            meta["scores"] = {c: str(row[c]) for c in SCORE_COLUMNS if c in row}
        return publish_checkpoint(
            model_dir, epoch, self.ckpt.write, meta, int(self.opts.keep_last_n)
        )

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
            raise TrainError(
                f"checkpoint {prefix} does not fit this config (was it written "
                f"for another network or optimizer?): {exc}"
            ) from None
        bad = self.nonfinite_variables()
        if bad:
            good = last_finite_checkpoint(self.model_dir) if self.opts.model_dir else None
            raise NonFiniteWeights(
                f"checkpoint {prefix} holds NaN or inf (in {', '.join(bad[:3])}"
                f"{' and more' if len(bad) > 3 else ''}); it cannot be resumed: "
                + (
                    f"remove it to resume from {good}, the newest finite checkpoint"
                    if good
                    else "no finite checkpoint is left"
                )
            )
        epoch = int(self.state.epoch.numpy())
        self.seed = int(self.state.seed.numpy())
        prev = float(self.state.lr_previous_score.numpy())
        from netcompiler.training.lr_control import (
            checkpoint_state,  # the per-epoch history is in meta.json
        )

        self.lr_control.load_state(
            {
                **checkpoint_state(prefix),
                "current": float(self.state.lr_current.numpy()),
                "previous_score": None if math.isnan(prev) else prev,
            }
        )
        return epoch

    def _prepare_model_dir(self) -> Path:
        """Create model_dir, take its lock, check that it is writable: a TrainError naming the
        directory otherwise (before any training, so no work is lost)."""
        self._lock = prepare_model_dir(self.model_dir, self._is_chief())
        return self.model_dir

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _write_scores(self) -> None:
        if self._is_chief():
            write_scores(self.model_dir, self.scores)

    # -- running ----------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> Accumulator:
        acc = Accumulator(self.losses)
        # max_seq_length skips long training sequences (never dev data)
        groups = epoch_batches(
            self.train_data, self.opts, self.seed, epoch, max_seq_length=self.opts.max_seq_length
        )
        self.progress.start(epoch, len(groups))
        try:
            for step, batch in enumerate(self._iterate(self.train_data, groups), start=1):
                die_or_stop_if_asked(epoch, step)
                stats, lr = self._train_step(batch, epoch, step)
                acc.add(stats)
                self.progress.update(step, acc.loss(), lr)
        finally:
            self.progress.stop()
        return acc

    def _train_step(self, batch, epoch: int, step: int):
        """Run one training step; its stats and learning rate. Stops the run (NonFiniteLoss,
        NonFiniteWeights) when the loss or the variables are no longer finite."""
        lr = self.lr_control.rate(int(self.optimizer.iterations.numpy()))
        self.optimizer.learning_rate = lr
        try:
            fn = self._train_fn
            if (
                self.accum_steps > 1
                and int(self.state.accum_step.numpy()) % self.accum_steps != self.accum_steps - 1
            ):
                fn = self._accum_fn  # accumulate only (RETURNN's accum_grad_multiple_step)
            stats = fn(batch).numpy()
        except oom_types():
            raise out_of_memory_error(
                f"in training (epoch {epoch}, step {step})", batch_description(batch), self.opts
            ) from None
        loss = step_loss(self.losses, stats)
        if hook_set_for(NAN_ENV, epoch, step):
            loss = float("nan")
        global_step = int(self.optimizer.iterations.numpy())
        check_step_loss(stats, loss, epoch, step, global_step)
        if not bool(self.variables_finite.numpy()):
            check_step_variables(self.nonfinite_variables(), loss, epoch, step, global_step, lr)
        self.loss_watch.observe(loss, epoch, step, lr, self.err)
        return stats, lr

    def dev_search_error(self) -> float:
        """For a network that searches (a rec unit with a `choice`): the sequence error of beam
        search on the dev data (the best hypothesis against the target); else NaN."""
        from netcompiler.backend.loop.unit_traits import (
            choice_layer,
            search_rec_layer,
            search_rec_layers,
        )

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
                raise out_of_memory_error(
                    f"evaluating {dataset.describe().split(':')[0]} (epoch {epoch})",
                    batch_description(batch),
                    self.opts,
                ) from None
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
        self.load_data()
        if self._is_chief():  # only the chief holds the lock (a shared model_dir)
            remove_leftovers(self.model_dir)  # what killed runs left: never a live run's
        start = self.restore() + 1
        self.scores = read_scores(self.model_dir, start - 1)
        num_epochs = int(self.opts.num_epochs)
        if not self._announce_start(start, num_epochs):
            return start - 1
        log = TensorBoardLog(self.model_dir, self._is_chief())
        try:
            for epoch in range(start, num_epochs + 1):
                self._train_epoch(epoch, num_epochs, log)
        finally:
            log.close()
        return num_epochs

    def _announce_start(self, start: int, num_epochs: int) -> bool:
        """Print where the run starts (and its data); False when there is nothing to do."""
        if start > 1:
            print(
                f"resuming from {self.model_dir / f'ckpt-{start - 1:03d}'} at epoch {start}",
                file=self.out,
                flush=True,
            )
        if start > num_epochs:
            print(
                f"already trained {start - 1} epochs (num_epochs {num_epochs}): nothing to do",
                file=self.out,
                flush=True,
            )
            return False
        # describe() starts with the dataset's role ("train: ...", "dev: ...")
        print(
            self.train_data.describe()
            + (f"\n{self.dev_data.describe()}" if self.dev_data is not None else ""),
            file=self.out,
            flush=True,
        )
        return True

    def _train_epoch(self, epoch: int, num_epochs: int, log: TensorBoardLog) -> None:
        """Train and score one epoch, save it when due, and report it (scores.tsv,
        TensorBoard, the summary line)."""
        scores = self._scored_epoch(epoch)
        self.scores.append(scores.row())
        if epoch % int(self.opts.save_interval) == 0 or epoch == num_epochs:
            try:
                self.save(epoch)
            except NonFiniteWeights as exc:  # not expected: checked after every step
                raise stopping(exc, self.model_dir) from None
            die_or_stop_if_asked(epoch, "saved")
        self._write_scores()
        log.write(scores.scalars(), epoch)
        print(scores.summary(num_epochs), file=self.out, flush=True)

    def _scored_epoch(self, epoch: int) -> EpochScores:
        """Run the training epoch, evaluate on dev and advance the learning-rate control."""
        t0 = time.time()
        self.lr_control.begin_epoch(epoch)
        lr = self.lr_control.rate(int(self.optimizer.iterations.numpy()))
        try:
            train_acc = self.run_epoch(epoch)
        except NonFiniteLoss as exc:
            raise stopping(exc, self.model_dir) from None
        scores = EpochScores(
            epoch,
            lr,
            train_acc.loss(),
            train_acc.error(self.main_loss),
            has_dev=self.dev_data is not None,
            per_layer=train_acc.per_layer() if len(self.losses) > 1 else {},
        )
        if self.dev_data is not None:
            dev_acc = self.evaluate(self.dev_data, epoch)
            scores.dev_loss, scores.dev_error = dev_acc.loss(), dev_acc.error(self.main_loss)
            scores.dev_seq_error = self.dev_search_error()
            self.lr_control.end_epoch(scores.dev_loss, scores.dev_error)
        else:
            self.lr_control.end_epoch(scores.train_loss, scores.train_error)
        scores.wall_time = time.time() - t0
        return scores


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
        return user_error(
            "train", "out of memory (host RAM); use a smaller train.batch_size or smaller datasets"
        )
    except OSError as exc:  # an environmental fault not caught where it happened
        return user_error("train", f"{exc.filename + ': ' if exc.filename else ''}{os_reason(exc)}")
    except KeyboardInterrupt:
        print(
            "netcompiler train: interrupted; the checkpoints written so far are kept",
            file=sys.stderr,
        )
        return 130
    return EXIT_OK
