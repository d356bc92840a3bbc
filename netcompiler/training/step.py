"""The compiled training and evaluation steps, and what they run on: the `tf.distribute`
strategy (`train.distribution`), the optimizer (`train.optimizer`), and the gradient handling
between the loss and the update (L2, the all-reduce, `accum_grad_multiple_step`, gradient
noise and clipping).

A step is one `tf.function` with dynamic batch/time sizes over a list with one
(inputs, lengths, weight) per replica; it returns the [L, 4] loss statistics summed over the
replicas (`netcompiler.training.loss_specs`). Each replica's losses are sums over its valid
frames divided by the global frame count, so the loss and the gradients are those of one device
on the same global batch. TensorFlow is imported by the functions that need it."""

from __future__ import annotations

from typing import Any

from netcompiler.backend.graph_rewrites import CpuTunedFunction
from netcompiler.training.command_support import TrainError


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
    raise TrainError(
        f"unknown train.distribution `{name}` (default, mirrored, multi_worker_mirrored)"
    )


def is_chief(strategy) -> bool:
    """Whether this process writes the model directory: always, except on the workers of a
    multi-worker strategy other than the chief (or worker 0 without a chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief",) or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


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
        from netcompiler.training.fused_adam import FusedAdam

        return FusedAdam(**kwargs)
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


class StepFunctions:
    """Builds the step functions of a Trainer (`run`). It reads the trainer's network,
    losses, L2 terms, trainable variables, optimizer, training state (`accum_step`,
    `accum_grads`), strategy and options, and counts traces in `run.trace_counts`; the seed
    of the gradient noise is read when the step is traced (after `restore()` set it)."""

    def __init__(self, run):
        self.run = run

    def input_signature(self):
        import tensorflow as tf

        inputs, lengths = self.run.net.input_signature(self.run.input_keys)
        return (inputs, lengths, tf.TensorSpec([], tf.float32, name="weight"))

    def replica_losses(self, inputs, lengths, weight, training: bool):
        """[L, 4] stats (loss sum, frames, errors, error frames) of this replica's batch."""
        import tensorflow as tf

        from netcompiler.training.losses import compute_loss

        run = self.run
        registered = run.net.network.registered
        target_layers = tuple(
            registered[s.target].name for s in run.losses if s.target in registered
        )
        out = run.net.forward(
            inputs,
            lengths,
            training=training,
            fetch=tuple(s.source or s.layer for s in run.losses) + target_layers,
            step_seed=self.dropout_seed() if training else None,
        )
        rows = []
        for spec in run.losses:
            values, lens = out[spec.source or spec.layer]
            if not spec.target:  # a loss without target (`as_is`)
                target, target_lens = None, None
            elif spec.target in registered:  # a layer's output, registered as extern data
                target, target_lens = out[registered[spec.target].name]
            else:
                target, target_lens = inputs[spec.target], lengths.get(spec.target)
            lv = compute_loss(
                spec.kind,
                values,
                lens,
                target,
                target_lens,
                spec.opts,
                spec.target_sparse,
                spec.batch_axis,
                spec.time_axis,
            )
            rows.append(tf.stack([lv.loss, lv.frames, lv.errors, lv.error_frames]))
        return tf.stack(rows) * weight

    def dropout_seed(self):
        """The step seed of the dropout masks: a function of (step, replica), so a resumed
        run draws the same masks."""
        import tensorflow as tf

        run = self.run
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        counter = run.state.accum_step if run.accum_steps > 1 else run.optimizer.iterations
        return tf.cast(counter, tf.int64) * run.num_replicas + tf.cast(replica, tf.int64)

    def objective_gradients(self, inputs, lengths, weight):
        """This replica's loss statistics and the gradients of its share of the objective
        (scaled losses over the global frame count, plus its share of the L2 terms)."""
        import tensorflow as tf

        from netcompiler.training.loss_scaling import scaled_objective, unscaled_gradients
        from netcompiler.training.losses import l2_penalty

        run = self.run
        ctx = tf.distribute.get_replica_context()
        scales = tf.constant([s.scale for s in run.losses], tf.float32)
        with tf.GradientTape() as tape:
            stats = self.replica_losses(inputs, lengths, weight, True)
            frames = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats[:, 1])
            objective = tf.reduce_sum(scales * stats[:, 0] / tf.maximum(frames, 1.0))
            for name, factor in run.l2:
                params = [v for v in run.net.layer_params[name].values() if v.trainable]
                if params:
                    objective += factor * l2_penalty(params) / run.num_replicas
            objective = scaled_objective(run.optimizer, objective)  # mixed_float16 only
        grads = tape.gradient(objective, run.trainable)
        return stats, unscaled_gradients(
            run.optimizer,
            [
                tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                for g, v in zip(grads, run.trainable)
            ],
        )

    def processed_gradients(self, grads, apply: bool):
        """The gradients to apply, after the all-reduce, accumulation, noise and clipping that
        the options ask for (unchanged when they ask for none); None when this step only
        accumulates (`apply` False)."""
        import tensorflow as tf

        run, n, opts = self.run, self.run.num_replicas, self.run.opts
        accum = run.accum_steps
        if not (opts.gradient_clip or opts.gradient_clip_value or opts.gradient_noise or accum > 1):
            return grads
        ctx = tf.distribute.get_replica_context()
        if n > 1:  # clip the global (summed) gradient, exactly as on one device
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if accum > 1:  # RETURNN: the sum of the gradients of N steps, applied every N
            first = tf.equal(run.state.accum_step % accum, 0)
            grads = [tf.where(first, g, a + g) for a, g in zip(run.state.accum_grads, grads)]
            run.state.accum_step.assign_add(1)
            if not apply:
                for a, g in zip(run.state.accum_grads, grads):
                    a.assign(g)
                return None
        grads = self.post_process(grads)  # noise, per-entry clip (RETURNN's)
        if opts.gradient_clip:
            grads, _ = tf.clip_by_global_norm(grads, float(opts.gradient_clip))
        if n > 1:
            grads = [g / n for g in grads]  # the optimizer sums over replicas again
        return grads

    def post_process(self, grads):
        """RETURNN's per-entry gradient options, in its order: `gradient_noise` (a truncated
        normal, seeded by (random_seed, variable, optimizer step): a resumed run draws the same,
        every replica the same), then `gradient_clip_value` (clip every entry to +-value)."""
        from netcompiler.training.gradients import gradient_post_process

        run = self.run
        return gradient_post_process(
            grads,
            run.opts.gradient_noise,
            run.opts.gradient_clip_value,
            run.seed,
            run.optimizer.iterations,
        )

    def make(self, training: bool, apply: bool = True):
        """The step: training (gradients applied, or with `apply` False only accumulated) or
        evaluation; one trace, with train.jit_compile one XLA compilation per padded shape."""
        import tensorflow as tf

        from netcompiler.training.finiteness import all_finite
        from netcompiler.training.loss_scaling import rescaled_gradients

        run = self.run
        strategy, n = run.strategy, run.num_replicas
        kind = "train" if training else "eval"

        def replica_fn(inputs, lengths, weight):
            if not training:
                return self.replica_losses(inputs, lengths, weight, False)
            stats, grads = self.objective_gradients(inputs, lengths, weight)
            grads = self.processed_gradients(grads, apply)
            if grads is not None:
                grads = rescaled_gradients(run.optimizer, grads)  # mixed_float16 only
                run.optimizer.apply_gradients(zip(grads, run.trainable))
            return stats

        def step(per_replica):
            run.trace_counts[kind] += 1
            if n == 1:
                result = strategy.run(replica_fn, args=tuple(per_replica[0]))
            else:
                values = strategy.experimental_distribute_values_from_function(
                    lambda ctx: tuple(per_replica[ctx.replica_id_in_sync_group])
                )
                result = strategy.run(replica_fn, args=tuple(values))
            stats = strategy.reduce(tf.distribute.ReduceOp.SUM, result, axis=None)
            if training and apply:
                # the variables after the update, checked in the step itself (ordered after
                # the update: both touch the same resources); the trainer reads the flag
                run.variables_finite.assign(all_finite([v for _, v in run.checked_variables]))
            return stats

        compiled = tf.function(
            step,
            input_signature=[[self.input_signature()] * n],
            autograph=False,
            jit_compile=bool(run.opts.jit_compile) or None,
        )
        if run.opts.jit_compile or run.opts.distribution not in (None, "default"):
            return compiled  # XLA rewrites on its own; distributed graphs keep the defaults
        return CpuTunedFunction(compiled)  # without the GPU-only graph rewrites on a CPU
