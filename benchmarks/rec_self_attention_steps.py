"""Per-step time of in-loop self-attention (keys/values as loop state, one row more a step).

Runs the unit of configs/12ax_rec_self_attention.yaml step by step (optimize_move_layers_out:
false, so the self_attention runs inside the tf.while_loop) at 100, 1000 and 4000 steps and
prints the time per step; for comparison the same network with the unit moved out of the loop
(full-sequence causal self-attention, no loop). Then a beam search (`--beam`, 0: none) with a
self-attention decoder of the same sizes whose end label never wins, so that it runs exactly
that many steps: there the state is also reordered by the beam's parent indices every step.

    python benchmarks/rec_self_attention_steps.py [--batch 8] [--repeats 3] [--beam 4]
                                                  [--steps 100 1000 4000]
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


def build_decoder(steps: int, beam: int):
    """A decoder whose memory is a self-attention over its earlier labels (4 heads, 32 dims)."""
    unit = {
        "emb": {"class": "linear", "from": "prev:output", "n_out": 32, "with_bias": False},
        "att": {
            "class": "self_attention",
            "from": "emb",
            "n_out": 32,
            "num_heads": 4,
            "total_key_dim": 32,
            "attention_left_only": True,
        },
        "output_prob": {"class": "softmax", "from": ["att", "emb"], "target": "classes"},
        "output": {
            "class": "choice",
            "from": "output_prob",
            "target": "classes",
            "beam_size": beam,
        },
        "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
    }
    net = compile_network(
        {
            "extern_data": {"data": {"dim": 2}, "classes": {"dim": 9, "sparse": True}},
            "network": {
                "output": {
                    "class": "rec",
                    "from": [],
                    "target": "classes",
                    "max_seq_len": steps,
                    "unit": unit,
                }
            },
        }
    )
    bias = net.variable("output/output_prob/b")
    bias.assign(np.concatenate([[-1e4], np.zeros(8)]).astype(np.float32))  # never ends
    return net


def time_search(net, batch: int, beam: int, repeats: int) -> float:
    x = np.zeros((batch, 1, 2), np.float32)
    net.search({"data": x}, beam_size=beam)  # trace + warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.search({"data": x}, beam_size=beam)
        best = min(best, time.perf_counter() - t0)
    return best


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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beam", type=int, default=4, help="beam size of the search (0: none)")
    p.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 4000])
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
        print(
            f"{steps:5d} steps: loop {t_loop * 1e3:9.2f} ms total, "
            f"{t_loop / steps * 1e6:8.1f} us/step | moved out (no loop) "
            f"{t_out * 1e3:8.2f} ms total, {t_out / steps * 1e6:7.1f} us/frame"
        )
    if args.beam:
        print(
            f"beam search, beam {args.beam}, batch {args.batch}: self-attention decoder "
            f"(4 heads, 32 dims)"
        )
        for steps in args.steps:
            t = time_search(build_decoder(steps, args.beam), args.batch, args.beam, args.repeats)
            print(
                f"{steps:5d} steps: search {t * 1e3:9.2f} ms total, {t / steps * 1e6:8.1f} us/step"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
