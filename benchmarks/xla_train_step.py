"""Train-step time with and without XLA (`train.jit_compile`), and what a new batch shape costs.

    python benchmarks/xla_train_step.py [--network encoder|lstm] [--blocks 6] [--dim 256]
                                        [--batch 16] [--time 200]
                                        [--steps 10] [--ragged 20] [--run-ragged]

The network is the encoder of `benchmarks/selfatt_encoder.py` (pre-norm self-attention blocks,
softmax CE), or with `--network lstm` one LSTM layer, trained by netcompiler's Trainer (its
real train step: loss, gradients, Adam).
For `jit_compile` false and true it prints
- the first step on a [B, T] batch (tracing, and with XLA the compilation),
- the median of `--steps` further steps on that shape (the steady step time, wall and CPU),
- the first step on a new shape [B, T + 16] (no new trace without XLA; with XLA a compilation),
- `--ragged` batches of random lengths in [T/2, T] as the Trainer forms them: the number of
  distinct shapes XLA compiles with `jit_time_multiple` 1 (no bucketing) and 16, and with
  `--run-ragged` the total time of those batches with bucketing 16 (compilations included).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def config(blocks: int, dim: int, jit: bool) -> dict:
    import selfatt_encoder as enc

    enc.BLOCKS, enc.D, enc.FF = blocks, dim, 4 * dim
    cfg = enc.encoder_config()
    if blocks == 0:  # --network lstm: one LSTM layer (a loop of small ops per frame)
        cfg["network"] = {
            "input": {"class": "linear", "from": "data", "n_out": dim},
            "final_ln": {"class": "rec", "unit": "lstm", "from": "input", "n_out": dim},
        }
    cfg["network"]["output"] = {
        "class": "softmax",
        "from": "final_ln",
        "n_out": enc.CLASSES,
        "loss": "ce",
        "target": "classes",
    }
    cfg["train"] = {
        "train_data": "copy",
        "batch_size": 100000,
        "learning_rate": 1e-4,
        "optimizer": {"class": "adam"},
        "jit_compile": jit,
    }
    return cfg


def batch(trainer, b: int, t: int, rng, lengths=None):
    import tensorflow as tf

    lengths = np.full([b], t, np.int32) if lengths is None else np.asarray(lengths, np.int32)
    data = rng.integers(0, 64, size=(b, t)).astype(np.int32)
    classes = rng.integers(0, 32, size=(b, t)).astype(np.int32)
    ins = trainer._bucket_time({"data": tf.constant(data), "classes": tf.constant(classes)})
    lens = {k: tf.constant(lengths) for k in ("data", "classes")}
    return [(ins, lens, tf.constant(1.0))]


def timed(fn, arg, cpu: list | None = None) -> float:
    """Wall seconds of one step; appends its CPU seconds (all threads of this process) to
    `cpu`: on a shared machine the CPU time is the steadier measure of the work done."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn(arg).numpy()
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0


def run(args, jit: bool) -> dict:
    from netcompiler.frontend.validate import validate
    from netcompiler.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_text(json.dumps(config(args.blocks, args.dim, jit)))
        result = validate(str(path))
        result.raise_for_errors()
        trainer = Trainer(result, model_dir=Path(tmp) / "m", out=io.StringIO())
    rng = np.random.default_rng(0)
    fn, b, t = trainer._train_fn, args.batch, args.time
    out = {"first_step_s": timed(fn, batch(trainer, b, t, rng))}
    cpu: list[float] = []
    steps = [timed(fn, batch(trainer, b, t, rng), cpu) for _ in range(args.steps)]
    out["steady_step_ms"] = 1000 * statistics.median(steps)
    out["steady_step_cpu_ms"] = 1000 * statistics.median(cpu)
    out["new_shape_step_s"] = timed(fn, batch(trainer, b, t + 16, rng))
    if jit and args.ragged:
        ragged = []
        for _ in range(args.ragged):
            lens = rng.integers(t // 2, t + 1, size=b)
            ragged.append(lens)
        for multiple in (1, 16):
            trainer.opts.jit_time_multiple = multiple
            shapes = {int(-int(lens.max()) % multiple + int(lens.max())) for lens in ragged}
            out[f"ragged_shapes_multiple_{multiple}"] = len(shapes)
        trainer.opts.jit_time_multiple = 16
        if args.run_ragged:
            t0 = time.perf_counter()
            for lens in ragged:
                fn(batch(trainer, b, int(lens.max()), rng, lens)).numpy()
            out["ragged_batches_s_multiple_16"] = time.perf_counter() - t0
    out["traces"] = dict(trainer.trace_counts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--network",
        choices=("encoder", "lstm"),
        default="encoder",
        help="encoder: the self-attention encoder; lstm: one LSTM layer of --dim",
    )
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--time", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ragged", type=int, default=20)
    ap.add_argument(
        "--run-ragged",
        action="store_true",
        help="also run the ragged batches (compilations included)",
    )
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if args.network == "lstm":
        args.blocks = 0
    res = {jit: run(args, jit) for jit in (False, True)}
    for jit, r in res.items():
        print(
            f"jit_compile={str(jit).lower()}: "
            + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
            )
        )
    print(
        f"steady step, XLA / plain: wall "
        f"{res[True]['steady_step_ms'] / res[False]['steady_step_ms']:.2f}, CPU time "
        f"{res[True]['steady_step_cpu_ms'] / res[False]['steady_step_cpu_ms']:.2f}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
