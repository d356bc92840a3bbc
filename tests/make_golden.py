"""Write golden checkpoints for conformance examples that have none yet.

    python tests/make_golden.py [--force NAME ...]

Existing golden files are never overwritten unless named with --force: they pin the behaviour
(and the checkpoint layout) of earlier versions. `io.npz` holds the inputs (`in_<key>`), their
lengths (`len_<key>`), the output (`out`) and, for an output with a time axis, the lengths of its
first time axis (`out_lengths`; not in the oldest golden files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import netcompiler  # noqa: E402
from netcompiler.backend.export import checkpoint  # noqa: E402

from conformance import EXAMPLES, make_inputs  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--force", nargs="*", default=[])
    args = parser.parse_args()
    for example in EXAMPLES:
        path = GOLDEN / example.name
        if (path / "io.npz").exists() and example.name not in args.force:
            continue
        path.mkdir(parents=True, exist_ok=True)
        net = netcompiler.compile(example.config, seed=7)
        rng = np.random.default_rng(11)
        inputs, lengths = make_inputs(net.extern_shapes, 3, 6, rng, [6, 4, 2])
        out, out_lengths = net(inputs=inputs, lengths=lengths)["output"]
        checkpoint(net).write(str(path / "ckpt"))
        # the lengths of the output's first time axis too (it may be a new axis)
        extra = {} if out_lengths is None else {"out_lengths": out_lengths.numpy()}
        np.savez(
            path / "io.npz",
            out=out.numpy(),
            **extra,
            **{f"in_{k}": v for k, v in inputs.items()},
            **{f"len_{k}": v for k, v in lengths.items()},
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
