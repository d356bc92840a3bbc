"""Zero-overhead check: a 6-block transformer encoder built from a config vs. written by hand.

    python benchmarks/selfatt_encoder.py [--steps 10] [--rounds 5]

Both networks have the same architecture and sizes (B=16, T=200, D=256, 4 heads, FF 1024,
pre-norm residual blocks, masked self-attention over ragged lengths, CE loss over the valid
frames, Adam). Train steps of the two are timed alternately in one run (rounds of `--steps`
steps each) and the medians compared: goal ratio (config / hand) <= 1.03. The achieved
GFLOP/s of a train step is compared with a plain `tf.matmul` measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

import netcompiler

B, T, D, HEADS, FF, BLOCKS, VOCAB_IN, CLASSES = 16, 200, 256, 4, 1024, 6, 64, 32


def encoder_config() -> dict:
    net = {"input": {"class": "linear", "from": "data", "n_out": D, "with_bias": False}}
    prev = "input"
    for i in range(BLOCKS):
        b = f"b{i}"
        net.update(
            {
                f"{b}_ln1": {"class": "layer_norm", "from": prev},
                f"{b}_att": {
                    "class": "self_attention",
                    "from": f"{b}_ln1",
                    "n_out": D,
                    "num_heads": HEADS,
                    "total_key_dim": D,
                },
                f"{b}_proj": {
                    "class": "linear",
                    "from": f"{b}_att",
                    "n_out": D,
                    "with_bias": False,
                },
                f"{b}_res1": {"class": "combine", "kind": "add", "from": [prev, f"{b}_proj"]},
                f"{b}_ln2": {"class": "layer_norm", "from": f"{b}_res1"},
                f"{b}_ff1": {
                    "class": "linear",
                    "from": f"{b}_ln2",
                    "n_out": FF,
                    "activation": "relu",
                },
                f"{b}_ff2": {"class": "linear", "from": f"{b}_ff1", "n_out": D},
                f"{b}_res2": {"class": "combine", "kind": "add", "from": [f"{b}_res1", f"{b}_ff2"]},
            }
        )
        prev = f"{b}_res2"
    net["final_ln"] = {"class": "layer_norm", "from": prev}
    net["output"] = {"class": "linear", "from": "final_ln", "n_out": CLASSES}  # logits
    return {
        "extern_data": {
            "data": {"dim": VOCAB_IN, "sparse": True},
            "classes": {"dim": CLASSES, "sparse": True, "same_time_as": "data"},
        },
        "network": net,
    }


class HandWrittenEncoder(tf.Module):
    """The same network in plain TF2 (the baseline a user would write by hand)."""

    def __init__(self, variables: dict[str, tf.Variable]):
        super().__init__()
        # share the compiled network's initial values so both compute the same function
        self.v = {k: tf.Variable(v) for k, v in variables.items()}

    def layer_norm(self, x, name):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-6) * self.v[f"{name}/scale"] + self.v[
            f"{name}/bias"
        ]

    def __call__(self, tokens, lengths):
        x = tf.gather(self.v["input/W"], tokens)
        t = tf.shape(tokens)[1]
        key_mask = tf.sequence_mask(lengths, t)[:, None, None, :]
        dk = D // HEADS
        for i in range(BLOCKS):
            b = f"b{i}"
            h = self.layer_norm(x, f"{b}_ln1")
            y = tf.reshape(h @ self.v[f"{b}_att/QKV"], [-1, t, HEADS, 3 * dk])
            y = tf.transpose(y, [0, 2, 1, 3])
            q, k, v = y[..., :dk] * dk**-0.5, y[..., dk : 2 * dk], y[..., 2 * dk :]
            e = tf.where(key_mask, tf.matmul(q, k, transpose_b=True), tf.float32.min)
            a = tf.matmul(tf.nn.softmax(e), v)
            a = tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [-1, t, D])
            x = x + a @ self.v[f"{b}_proj/W"]
            h = self.layer_norm(x, f"{b}_ln2")
            h = tf.nn.relu(h @ self.v[f"{b}_ff1/W"] + self.v[f"{b}_ff1/b"])
            x = x + h @ self.v[f"{b}_ff2/W"] + self.v[f"{b}_ff2/b"]
        x = self.layer_norm(x, "final_ln")
        return x @ self.v["output/W"] + self.v["output/b"]


def masked_ce(logits, targets, lengths):
    mask = tf.sequence_mask(lengths, tf.shape(targets)[1], dtype=tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(ce * mask) / tf.reduce_sum(mask)


def make_step(forward, variables):
    opt = tf.keras.optimizers.Adam(1e-4)
    spec = [
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
    ]

    @tf.function(input_signature=spec)
    def step(tokens, lengths, targets):
        with tf.GradientTape() as tape:
            loss = masked_ce(forward(tokens, lengths), targets, lengths)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss

    return step


def train_step_flops() -> float:
    """Forward matmul FLOPs of one step (x3 for forward + backward)."""
    n = B * T
    per_block = (
        2 * n * D * 3 * D  # QKV
        + 2 * 2 * B * T * T * D  # energies and weighted sum
        + 2 * n * D * D  # projection
        + 2 * 2 * n * D * FF
    )  # feed-forward
    return 3.0 * (BLOCKS * per_block + 2 * n * D * CLASSES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    net = netcompiler.compile(encoder_config(), seed=1)
    hand = HandWrittenEncoder(net.variables_by_name)
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.integers(0, VOCAB_IN, (B, T)), tf.int32)
    targets = tf.constant(rng.integers(0, CLASSES, (B, T)), tf.int32)
    lengths = tf.constant(rng.integers(T // 2, T + 1, B), tf.int32)

    def config_forward(tok, lens):
        return net.forward({"data": tok}, {"data": lens}, training=True, fetch=("output",))[
            "output"
        ][0]

    config_vars = [net.variables_by_name[k] for k in sorted(net.variables_by_name)]
    hand_vars = [hand.v[k] for k in sorted(hand.v)]
    steps = {"config": make_step(config_forward, config_vars), "hand": make_step(hand, hand_vars)}
    # same function: same loss before training
    l_cfg = masked_ce(config_forward(tokens, lengths), targets, lengths)
    l_hand = masked_ce(hand(tokens, lengths), targets, lengths)
    print(f"initial loss: config {float(l_cfg):.6f}  hand {float(l_hand):.6f}")

    a = tf.random.normal([2048, 2048])

    @tf.function
    def matmul_chain():
        return tf.reduce_sum(tf.matmul(a, a))

    for step in steps.values():  # trace and warm up
        for _ in range(2):
            step(tokens, lengths, targets).numpy()
    matmul_chain().numpy()

    times = {"config": [], "hand": []}
    for _ in range(args.rounds):
        for name in ("config", "hand"):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = steps[name](tokens, lengths, targets)
            loss.numpy()
            times[name].append((time.perf_counter() - t0) / args.steps)
    mm = []
    for _ in range(5):
        t0 = time.perf_counter()
        matmul_chain().numpy()
        mm.append(time.perf_counter() - t0)

    cfg, hnd = statistics.median(times["config"]), statistics.median(times["hand"])
    flops = train_step_flops()
    mm_gflops = 2 * 2048**3 / statistics.median(mm) / 1e9
    print(
        f"device: {tf.config.list_logical_devices()[0].device_type}, "
        f"threads: {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
    )
    print(
        f"train step (median of {args.rounds} rounds x {args.steps} steps): "
        f"config {cfg * 1e3:.1f} ms, hand-written {hnd * 1e3:.1f} ms, ratio {cfg / hnd:.3f} "
        f"(goal <= 1.03)"
    )
    print(
        f"achieved: config {flops / cfg / 1e9:.1f} GFLOP/s, hand {flops / hnd / 1e9:.1f} GFLOP/s;"
        f" plain tf.matmul 2048^3: {mm_gflops:.1f} GFLOP/s "
        f"({flops / cfg / 1e9 / mm_gflops:.0%} of matmul)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
