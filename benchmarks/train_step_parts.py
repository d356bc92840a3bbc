#!/usr/bin/env python3
"""Where a training step's time goes: netcompiler's Trainer step taken apart, next to the same
network's train step written by hand in TF2, on the data and network of `vs_returnn.py`.

    python benchmarks/train_step_parts.py [--rounds 5] [--steps 10] [--blocks 6] [--dim 256]

It builds a real `Trainer` from the YAML config `vs_returnn.py` writes (6 pre-norm
self-attention blocks, D=256, 4 heads, FF 1024, softmax CE; batches of 16 x 200 frames of 40
features), then times, in rounds that alternate so that a change in the machine's speed falls
on all of them alike (medians per step are printed):

- `trainer step`: what the epoch loop runs per step (`Trainer._train_step`: learning rate,
  the compiled step, the loss and variable checks);
- `compiled step`: the compiled `tf.function` alone, on a batch already fetched;
- `finite check (eager)`: the NaN/inf check of every variable and optimizer slot by name, as
  run when a checkpoint is saved (in a step, one fused flag is computed in the graph);
- `lr + iterations`: the learning rate set from the optimizer's step counter;
- `next batch`: one batch from the `tf.data` pipeline;
- `hand-written step`: the same network and loss written directly in TF2 (`tf.function`,
  Adam), sharing the compiled network's initial weights (same initial loss, printed);
- `forward only`: the compiled network's forward pass with the loss, no gradients.

The difference between `trainer step` and `compiled step` is the host's work per step; the
ratio `compiled step / hand-written step` is the cost of the compiled graph itself.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_trainer(work: Path, blocks: int, dim: int):
    import vs_returnn as vr

    import netcompiler
    from netcompiler.training.progress import Progress
    from netcompiler.training.trainer import Trainer

    sizes = vr.TrainSizes(blocks=blocks, dim=dim, ff=4 * dim)
    feats, labels = vr.train_data(sizes)
    hdf = vr.write_returnn_hdf(
        work / "train.hdf", feats, sizes.features, {"classes": (labels, sizes.classes)}
    )
    config = vr.netcompiler_train_config(sizes, hdf, work / "model")
    result = netcompiler.validate(config)
    out = io.StringIO()
    trainer = Trainer(result, out=out, progress=Progress(out))
    trainer.load_data()
    return trainer, sizes


def hand_step(trainer, sizes):
    """The network of vs_returnn.encoder_network in plain TF2, on copies of the weights."""
    import tensorflow as tf

    v = {k: tf.Variable(x) for k, x in trainer.net.variables_by_name.items()}
    heads, d, blocks = sizes.heads, sizes.dim, sizes.blocks
    dk = d // heads
    eps = 1e-6

    def layer_norm(x, name):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + eps) * v[f"{name}/scale"] + v[f"{name}/bias"]

    def logits(feats, lengths):
        x = feats @ v["input/W"]
        t = tf.shape(feats)[1]
        key_mask = tf.sequence_mask(lengths, t)[:, None, None, :]
        for i in range(blocks):
            b = f"b{i}"
            h = layer_norm(x, f"{b}_ln1")
            y = tf.transpose(
                tf.reshape(h @ v[f"{b}_att/QKV"], [-1, t, heads, 3 * dk]), [0, 2, 1, 3]
            )
            q, k, w = y[..., :dk] * dk**-0.5, y[..., dk : 2 * dk], y[..., 2 * dk :]
            e = tf.where(key_mask, tf.matmul(q, k, transpose_b=True), tf.float32.min)
            a = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(e), w), [0, 2, 1, 3]), [-1, t, d])
            x = x + a @ v[f"{b}_proj/W"]
            h = tf.nn.relu(layer_norm(x, f"{b}_ln2") @ v[f"{b}_ff1/W"] + v[f"{b}_ff1/b"])
            x = x + h @ v[f"{b}_ff2/W"] + v[f"{b}_ff2/b"]
        return layer_norm(x, "final_ln") @ v["output/W"] + v["output/b"]

    def loss_fn(feats, lengths, targets):
        mask = tf.sequence_mask(lengths, tf.shape(targets)[1], dtype=tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=targets, logits=logits(feats, lengths)
        )
        return tf.reduce_sum(ce * mask) / tf.reduce_sum(mask)

    variables = [v[k] for k in sorted(v)]
    opt = tf.keras.optimizers.Adam(sizes.learning_rate)
    opt.build(variables)

    @tf.function
    def step(feats, lengths, targets):
        with tf.GradientTape() as tape:
            loss = loss_fn(feats, lengths, targets)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss

    return step, loss_fn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per part and round")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        trainer, sizes = build_trainer(Path(tmp), args.blocks, args.dim)

        from netcompiler.training.data import epoch_batches

        batch_groups = epoch_batches(trainer.train_data, trainer.opts, trainer.seed, 1)
        batches = list(trainer.feeder.iterate(trainer.train_data, batch_groups))
        batch = batches[0]
        (inputs, lengths, _weight) = batch[0]
        feats, lens = inputs["data"], lengths["data"]
        targets = inputs["classes"]
        step, loss_fn = hand_step(trainer, sizes)
        fwd = trainer.steps.make(training=False)

        print(
            f"initial loss: compiled {float(fwd(batch)[0, 0] / fwd(batch)[0, 1]):.6f}  "
            f"hand-written {float(loss_fn(feats, lens, targets)):.6f}"
        )

        def trainer_step():
            trainer._train_step(batch, 1, 1)

        def compiled_step():
            trainer._train_fn(batch).numpy()

        def finite_check():
            trainer.nonfinite_variables()

        def lr_iterations():
            trainer.optimizer.learning_rate = trainer.lr_control.rate(
                int(trainer.optimizer.iterations.numpy())
            )

        pipeline = iter(())

        def next_batch():
            nonlocal pipeline
            try:
                next(pipeline)
            except StopIteration:
                pipeline = iter(trainer.feeder.iterate(trainer.train_data, batch_groups))
                next(pipeline)

        def hand():
            step(feats, lens, targets).numpy()

        def forward_only():
            fwd(batch).numpy()

        parts = {
            "trainer step": trainer_step,
            "compiled step": compiled_step,
            "hand-written step": hand,
            "forward only": forward_only,
            "finite check (eager)": finite_check,
            "lr + iterations": lr_iterations,
            "next batch": next_batch,
        }
        for fn in parts.values():  # trace and warm up
            fn()
            fn()
        times: dict[str, list[float]] = {k: [] for k in parts}
        for _ in range(args.rounds):
            for name, fn in parts.items():
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        print(
            f"TF {tf.__version__}, {args.rounds} rounds x {args.steps} steps, "
            f"batch {len(lens)} x {feats.shape[1]} frames, {args.blocks} blocks, D={args.dim}"
        )
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, t in med.items():
            spread = f"{min(times[name]) * 1e3:8.2f} .. {max(times[name]) * 1e3:8.2f}"
            print(f"  {name:<20} {t * 1e3:9.2f} ms  (min .. max {spread} ms)")
        print(
            f"  host work per step (trainer step - compiled step): "
            f"{(med['trainer step'] - med['compiled step']) * 1e3:.2f} ms; "
            f"compiled / hand-written step: {med['compiled step'] / med['hand-written step']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
