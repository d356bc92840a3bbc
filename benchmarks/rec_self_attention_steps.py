"""Per-step time of in-loop self-attention (keys/values as loop state in preallocated buffers).

Runs the unit of configs/12ax_rec_self_attention.yaml step by step (optimize_move_layers_out:
false, so the self_attention runs inside the tf.while_loop) at 100 and 1000 steps and prints the
time per step; for comparison the same network with the unit moved out of the loop (full-sequence
causal self-attention, no loop).

    python benchmarks/rec_self_attention_steps.py [--batch 8] [--repeats 5] [--steps 100 1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from netcompiler.backend.build import compile_network  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "12ax_rec_self_attention.yaml")


def build(move_out: bool):
    import yaml

    with open(CONFIG) as f:
        cfg = yaml.safe_load(f)
    cfg["network"]["rec_att"]["optimize_move_layers_out"] = move_out
    return compile_network(cfg)


def time_run(net, x, lengths, repeats: int) -> float:
    inputs, lens = {"data": x}, {"data": lengths}
    net(inputs, lens, fetch=["rec_att"])  # trace + warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = net(inputs, lens, fetch=["rec_att"])
        out["rec_att"][0].numpy()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    args = p.parse_args(argv)
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    rng = np.random.default_rng(0)
    loop_net, out_net = build(False), build(True)
    print(f"in-loop self_attention (12ax unit, 4 heads, 32 dims), batch {args.batch}, {device}")
    for steps in args.steps:
        x = rng.integers(0, 9, size=(args.batch, steps))
        lengths = np.full([args.batch], steps)
        t_loop = time_run(loop_net, x, lengths, args.repeats)
        t_out = time_run(out_net, x, lengths, args.repeats)
        print(f"{steps:5d} steps: loop {t_loop * 1e3:9.2f} ms total, "
              f"{t_loop / steps * 1e6:8.1f} us/step | moved out (no loop) "
              f"{t_out * 1e3:8.2f} ms total, {t_out / steps * 1e6:7.1f} us/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
