"""Time `netcompiler validate` on a generated 1000-layer config, as a fresh process.

    python benchmarks/validate_speed.py [--blocks 80] [--repeat 5]

Prints the wall time of each run and the median; the goal is under 1 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def transformer_config(blocks: int, dim: int = 256, heads: int = 4, ff: int = 1024) -> dict:
    net = {"input": {"class": "linear", "from": "data", "n_out": dim}}
    prev = "input"
    for i in range(blocks):
        b = f"b{i}"
        net[f"{b}_ln1"] = {"class": "layer_norm", "from": prev}
        net[f"{b}_att"] = {
            "class": "self_attention",
            "from": f"{b}_ln1",
            "n_out": dim,
            "num_heads": heads,
            "total_key_dim": dim,
        }
        net[f"{b}_att_out"] = {
            "class": "linear",
            "from": f"{b}_att",
            "n_out": dim,
            "with_bias": False,
        }
        net[f"{b}_res1"] = {"class": "combine", "kind": "add", "from": [prev, f"{b}_att_out"]}
        net[f"{b}_ln2"] = {"class": "layer_norm", "from": f"{b}_res1"}
        net[f"{b}_ff1"] = {"class": "linear", "from": f"{b}_ln2", "n_out": ff, "activation": "relu"}
        net[f"{b}_ff2"] = {"class": "linear", "from": f"{b}_ff1", "n_out": dim}
        net[f"{b}_drop"] = {"class": "dropout", "from": f"{b}_ff2", "dropout": 0.1}
        net[f"{b}_res2"] = {"class": "combine", "kind": "add", "from": [f"{b}_res1", f"{b}_drop"]}
        prev = f"{b}_res2"
    net["final_ln"] = {"class": "layer_norm", "from": prev}
    net["output"] = {"class": "softmax", "from": "final_ln", "loss": "ce", "target": "classes"}
    return {
        "extern_data": {
            "data": {"dim": 80},
            "classes": {"dim": 500, "sparse": True, "same_time_as": "data"},
        },
        "network": net,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=111, help="9 layers per block")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = transformer_config(args.blocks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        n_layers = len(config["network"])
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "netcompiler", "validate", "--quiet", str(path)],
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr)
                return 1
        print(f"layers: {n_layers}  runs: " + " ".join(f"{t:.3f}s" for t in times))
        print(
            f"median wall time of `netcompiler validate` (fresh process): "
            f"{statistics.median(times):.3f} s  (goal < 1 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
