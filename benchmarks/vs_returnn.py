#!/usr/bin/env python3
"""netcompiler vs RETURNN, end to end: training epoch times and beam-search decoding speed.

Set-up (once; RETURNN lives in a venv of its own, never a dependency of netcompiler):

    python3 -m venv benchmarks/.venv-returnn
    benchmarks/.venv-returnn/bin/pip install returnn==1.20261022.211313 tensorflow==2.21.0 \\
        h5py numpy dm-tree

(the TensorFlow version is the one of netcompiler's own venv, so both tools run the same TF).
Then, with netcompiler's venv active:

    python benchmarks/vs_returnn.py                 # full run: 6 epochs each + decoding
    python benchmarks/vs_returnn.py --quick         # smoke run: tiny training, 2 epochs each
    python benchmarks/vs_returnn.py --quick --search  # ... and a tiny decoding run
    python benchmarks/vs_returnn.py --skip-returnn  # netcompiler only
    python benchmarks/vs_returnn.py --skip-search --epochs 10
    python benchmarks/vs_returnn.py --skip-search --epochs 10 --precision float32,mixed_bfloat16

What it does, in a fresh work directory (`--workdir`, default a temporary one; kept with --keep):

1. Training. Writes the data as RETURNN HDF files (h5py, the layout of RETURNN's
   `SimpleHDFWriter`): 320 sequences of 200 frames of 40 features, frame labels of 100 classes.
   The network, one dict for both tools: 6 pre-norm self-attention blocks (D=256, 4 heads,
   FF 1024), a softmax with CE loss. Batches of 16 sequences (3200 frames), 20 steps an epoch,
   Adam at 1e-4, no dev set. Writes a RETURNN config (Python, `network = {...}`) and a
   netcompiler YAML config from that dict, then runs `python -m returnn CONFIG` (RETURNN's venv)
   and `netcompiler train CONFIG.yaml` one after the other as subprocesses. Every line of their
   output is time-stamped as it arrives (PYTHONUNBUFFERED). Per-epoch times:
   RETURNN from its `start epoch N` line to its `train epoch N, finished after ...` line (its own
   `elapsed` figure has whole seconds only; it is printed as a cross-check); netcompiler its own
   `wall_time` column of `scores.tsv` (the epoch's steps, checkpoint saving excluded, as for
   RETURNN). Printed: per-epoch times, the steady median (epochs 2..N), the first-epoch overhead
   (epoch 1 minus the steady median, and the time from launching the process to the end of
   epoch 1, i.e. imports, graph construction/tracing and epoch 1 together) and the ratios
   netcompiler / RETURNN.
2. Decoding. An LSTM dot-attention encoder-decoder both build (the network of
   `tests/fixtures/returnn-checkpoints/lstm_dot_attention/network.yaml` scaled up: 256 units,
   vocabularies of 1000, bidirectional NativeLSTM2 encoder, LSTMBlock decoder state, beam 12,
   max_seq_len 60). Each tool trains it one tiny epoch (so that both have a model file to load),
   then runs beam search as its users do: RETURNN `task = "search"` with `search_output_file`,
   `netcompiler search CONFIG --checkpoint DIR --data ...`. Start-up (imports, graph building,
   tracing, loading) is removed by running each search twice, on 20 of the sequences (every
   5th: the same mix of lengths) and on all 100 (batches of 20 sequences): sequences per second
   = 80 / (t(100) - t(20)). Each search process runs `--search-repeats` times (default 3), the
   two tools alternating, and the fastest of each counts: one process's time varies by a few
   tenths of a second with the machine, which a difference of two such times would double. The whole process times, RETURNN's own search loop time (its
   `Search with network` to `Search done` lines) and the mean best-hypothesis lengths (EOS is
   label 0; an untrained model seldom ends early, so nearly all hypotheses run to max_seq_len in
   both tools: the same work) are printed too.
   RETURNN's native LSTM op is compiled on first use; on a machine without CUDA it builds only
   with `returnn.tf.native_op.OpMaker.with_cuda = False`, which the generated RETURNN config sets
   (two lines at its top). The compilation (cached by RETURNN) falls into the tiny train run.

`--precision float32,mixed_bfloat16` trains netcompiler once per precision (`train.precision`,
the same data, seed and initial weights), one after the other; the report then also gives each
mixed-precision run's epoch times, its ratio to RETURNN's (float32) and to netcompiler's float32
run, and its final train loss against float32's (issue 12's goal: within 2 %).

Figures vary with the load of the machine: run on a quiet machine, and read `uptime` (printed
at the start and the end).
"""

from __future__ import annotations

import argparse
import os
import pprint
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RETURNN_PYTHON = ROOT / "benchmarks" / ".venv-returnn" / "bin" / "python"


# -- sizes ------------------------------------------------------------------------------------------
@dataclass
class TrainSizes:
    blocks: int = 6
    dim: int = 256
    heads: int = 4
    ff: int = 1024
    features: int = 40
    classes: int = 100
    num_seqs: int = 320
    frames: int = 200
    batch_seqs: int = 16
    learning_rate: float = 1e-4
    epochs: int = 6

    @property
    def batch_frames(self) -> int:
        return self.batch_seqs * self.frames


@dataclass
class SearchSizes:
    units: int = 256
    vocab: int = 1000
    num_seqs: int = 100
    small_seqs: int = 20  # the start-up run (one batch)
    batch_seqs: int = 20
    min_len: int = 20
    max_len: int = 40
    max_seq_len: int = 60
    beam: int = 12
    train_seqs: int = 40  # the tiny train epoch


QUICK_TRAIN = TrainSizes(
    blocks=1, dim=64, heads=2, ff=128, num_seqs=32, frames=50, batch_seqs=8, epochs=2
)
QUICK_SEARCH = SearchSizes(
    units=32,
    vocab=50,
    num_seqs=8,
    small_seqs=0,
    batch_seqs=8,
    min_len=5,
    max_len=10,
    max_seq_len=12,
    beam=4,
    train_seqs=8,
)


# -- data -------------------------------------------------------------------------------------------
def write_returnn_hdf(
    path,
    inputs: list[np.ndarray],
    input_dim: int,
    targets: dict[str, tuple[list[np.ndarray], int]] | None = None,
    tags: list[str] | None = None,
) -> Path:
    """Write sequences in RETURNN's HDF layout (as its SimpleHDFWriter does; written here with
    h5py so the netcompiler side does not write its own input). `inputs`: per sequence
    float32 [T, input_dim] (dense) or int32 [T] (sparse, class indices < input_dim);
    `targets`: key -> (per-sequence int32 [T_key] class indices, dim)."""
    import h5py

    path = Path(path)
    targets = dict(targets or {})
    n = len(inputs)
    tags = tags or [f"seq-{i}" for i in range(n)]
    keys = sorted(targets)
    lengths = np.zeros((n, 2 if not keys else 1 + len(keys)), np.int32)
    lengths[:, 0] = [len(x) for x in inputs]
    for j, k in enumerate(keys, start=1):
        seqs, _ = targets[k]
        assert len(seqs) == n, f"target {k}: {len(seqs)} sequences, inputs {n}"
        lengths[:, j] = [len(y) for y in seqs]
    flat = np.concatenate(inputs, axis=0)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["inputPattSize"] = input_dim
        f.attrs["numDims"] = 1
        f.attrs["numLabels"] = input_dim
        f.attrs["numSeqs"] = n
        f.attrs["numTimesteps"] = int(lengths[:, 0].sum())
        f.create_dataset("labels", (0,), dtype="S5")
        f.create_dataset("inputs", data=flat.astype(np.int32 if flat.ndim == 1 else np.float32))
        f.create_dataset("seqLengths", data=lengths)
        f.create_dataset(
            "seqTags", data=np.array(tags, dtype=object), dtype=h5py.special_dtype(vlen=str)
        )
        if keys:
            f.create_group("targets/data")
            f.create_group("targets/size")
            f.create_group("targets/labels")
            for k in keys:
                seqs, dim = targets[k]
                f["targets/data"].create_dataset(k, data=np.concatenate(seqs).astype(np.int32))
                f["targets/size"].attrs[k] = np.array([dim, 1], np.int64)
                f["targets/labels"].create_dataset(k, data=np.array([b"dummy-label"]))
    os.replace(tmp, path)
    return path


def train_data(s: TrainSizes, seed: int = 1):
    """Dense features [T, F] and frame labels [T] (every sequence s.frames long)."""
    rng = np.random.default_rng(seed)
    feats = [
        rng.standard_normal((s.frames, s.features)).astype(np.float32) for _ in range(s.num_seqs)
    ]
    labels = [rng.integers(0, s.classes, s.frames).astype(np.int32) for _ in range(s.num_seqs)]
    return feats, labels


def search_data(s: SearchSizes, num_seqs: int, seed: int = 2):
    """Token sequences (1..vocab-1, no EOS) and target sequences ending with EOS 0, sorted by
    input length (so both tools form the same batches)."""
    rng = np.random.default_rng(seed)
    lens = sorted(int(x) for x in rng.integers(s.min_len, s.max_len + 1, num_seqs))
    src = [rng.integers(1, s.vocab, n).astype(np.int32) for n in lens]
    tgt = [np.concatenate([rng.integers(1, s.vocab, n), [0]]).astype(np.int32) for n in lens]
    return src, tgt


# -- networks (one dict for both tools) ------------------------------------------------------------
def encoder_network(s: TrainSizes) -> dict:
    net = {"input": {"class": "linear", "from": "data", "n_out": s.dim, "with_bias": False}}
    prev = "input"
    for i in range(s.blocks):
        b = f"b{i}"
        net.update(
            {
                f"{b}_ln1": {"class": "layer_norm", "from": prev},
                f"{b}_att": {
                    "class": "self_attention",
                    "from": f"{b}_ln1",
                    "n_out": s.dim,
                    "num_heads": s.heads,
                    "total_key_dim": s.dim,
                },
                f"{b}_proj": {
                    "class": "linear",
                    "from": f"{b}_att",
                    "n_out": s.dim,
                    "with_bias": False,
                },
                f"{b}_res1": {"class": "combine", "kind": "add", "from": [prev, f"{b}_proj"]},
                f"{b}_ln2": {"class": "layer_norm", "from": f"{b}_res1"},
                f"{b}_ff1": {
                    "class": "linear",
                    "from": f"{b}_ln2",
                    "n_out": s.ff,
                    "activation": "relu",
                },
                f"{b}_ff2": {"class": "linear", "from": f"{b}_ff1", "n_out": s.dim},
                f"{b}_res2": {"class": "combine", "kind": "add", "from": [f"{b}_res1", f"{b}_ff2"]},
            }
        )
        prev = f"{b}_res2"
    net["final_ln"] = {"class": "layer_norm", "from": prev}
    net["output"] = {"class": "softmax", "from": "final_ln", "loss": "ce", "target": "classes"}
    return net


def decoder_network(s: SearchSizes) -> dict:
    u = s.units
    return {
        "embed": {"class": "linear", "from": "data", "n_out": u, "activation": None},
        "lstm0_fw": {
            "class": "rec",
            "unit": "nativelstm2",
            "from": "embed",
            "n_out": u,
            "direction": 1,
        },
        "lstm0_bw": {
            "class": "rec",
            "unit": "nativelstm2",
            "from": "embed",
            "n_out": u,
            "direction": -1,
        },
        "encoder": {"class": "copy", "from": ["lstm0_fw", "lstm0_bw"]},
        "enc_ctx": {"class": "linear", "from": "encoder", "n_out": u, "activation": "tanh"},
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": s.max_seq_len,
            "unit": {
                "output": {
                    "class": "choice",
                    "target": "classes",
                    "beam_size": s.beam,
                    "from": "output_prob",
                    "initial_output": 0,
                },
                "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
                "embed": {"class": "linear", "from": "prev:output", "n_out": u, "activation": None},
                "s": {
                    "class": "rnn_cell",
                    "unit": "LSTMBlock",
                    "from": ["embed", "prev:att"],
                    "n_out": u,
                },
                "att": {
                    "class": "dot_attention",
                    "from": "s",
                    "base": "base:encoder",
                    "base_ctx": "base:enc_ctx",
                },
                "output_prob": {
                    "class": "softmax",
                    "from": ["s", "att"],
                    "target": "classes",
                    "loss": "ce",
                },
            },
        },
    }


# -- configs ----------------------------------------------------------------------------------------
def netcompiler_train_config(
    s: TrainSizes, hdf: Path, model_dir: Path, precision: str = "float32"
) -> dict:
    return {
        "extern_data": {
            "data": {"dim": s.features},
            "classes": {"dim": s.classes, "sparse": True, "same_time_as": "data"},
        },
        "network": encoder_network(s),
        "train": {
            "train_data": {"class": "hdf", "files": [str(hdf)]},
            "batch_size": s.batch_frames,
            "max_seqs": s.batch_seqs,
            "batching": "random",
            "num_epochs": s.epochs,
            "optimizer": {"class": "adam"},
            "learning_rate": s.learning_rate,
            "learning_rate_control": "constant",
            "model_dir": str(model_dir),
            "keep_last_n": 1,
            "precision": precision,
        },
    }


#: the report's name of netcompiler's run in each precision
PRECISION_TOOLS = {
    "float32": "netcompiler",
    "mixed_bfloat16": "nc-bf16",
    "mixed_float16": "nc-fp16",
}


def netcompiler_search_config(s: SearchSizes, hdf: Path, model_dir: Path) -> dict:
    return {
        "extern_data": {
            "data": {"dim": s.vocab, "sparse": True},
            "classes": {"dim": s.vocab, "sparse": True},
        },
        "network": decoder_network(s),
        "train": {
            "train_data": {"class": "hdf", "files": [str(hdf)]},
            "batch_size": s.batch_seqs * (s.max_len + 1) * 4,
            "max_seqs": s.batch_seqs,
            "num_epochs": 1,
            "optimizer": {"class": "adam"},
            "learning_rate": 1e-4,
            "model_dir": str(model_dir),
            "keep_last_n": 1,
        },
    }


RETURNN_HEADER = """#!rnn.py
# Generated by netcompiler's benchmarks/vs_returnn.py. Run: python -m returnn THIS_FILE
import returnn.tf.native_op
returnn.tf.native_op.OpMaker.with_cuda = False  # the native LSTM op builds without CUDA here
from returnn.tensor import Dim, batch_dim

use_tensorflow = True
device = "cpu"
log_verbosity = 5
"""


def _py(value) -> str:
    return pprint.pformat(value, indent=1, width=100, sort_dicts=False)


def returnn_train_config(s: TrainSizes, hdf: Path, model: Path) -> str:
    return (
        RETURNN_HEADER
        + f"""
task = "train"
time_dim = Dim(None, name="time")
extern_data = {{
    "data": {{"dim_tags": [batch_dim, time_dim, Dim({s.features}, name="feature")]}},
    "classes": {{"dim_tags": [batch_dim, time_dim],
                "sparse_dim": Dim({s.classes}, name="classes"), "sparse": True}},
}}
train = {{"class": "HDFDataset", "files": [{str(hdf)!r}], "seq_ordering": "random",
         "use_cache_manager": False}}
batch_size = {s.batch_frames}
max_seqs = {s.batch_seqs}
num_epochs = {s.epochs}
optimizer = {{"class": "adam"}}
learning_rate = {s.learning_rate!r}
learning_rate_control = "constant"
model = {str(model)!r}
network = {_py(encoder_network(s))}
"""
    )


def write_returnn_vocab(path: Path, size: int) -> Path:
    """RETURNN's vocabulary file (a dict literal label -> index; labels "0".."size-1"): its
    search writes sparse outputs to `search_output_file` only through a vocabulary."""
    path.write_text("{\n" + "".join(f"{str(i)!r}: {i},\n" for i in range(size)) + "}\n")
    return path


def returnn_search_config(
    s: SearchSizes, task: str, hdf: Path, model: Path, vocab: Path, output: Path | None = None
) -> str:
    common = (
        RETURNN_HEADER
        + f"""
task = {task!r}
extern_data = {{
    "data": {{"dim": {s.vocab}, "sparse": True}},
    "classes": {{"dim": {s.vocab}, "sparse": True, "available_for_inference": False,
                "vocab": {{"vocab_file": {str(vocab)!r}, "unknown_label": None}}}},
}}
batch_size = {s.batch_seqs * (s.max_len + 1) * 4}
max_seqs = {s.batch_seqs}
num_epochs = 1
optimizer = {{"class": "adam"}}
learning_rate = 1e-4
model = {str(model)!r}
network = {_py(decoder_network(s))}
"""
    )
    data = {"class": "HDFDataset", "files": [str(hdf)], "use_cache_manager": False}
    if task == "train":
        return common + f"train = {_py(dict(data, seq_ordering='random'))}\n"
    return (
        common
        + f"""search_data = {_py(data)}
load_epoch = 1
search_do_eval = False
search_output_layer = "output"
search_output_file = {str(output)!r}
search_output_file_format = "txt"
"""
    )


def write_yaml(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(
        "# generated by benchmarks/vs_returnn.py\n"
        + yaml.safe_dump(config, sort_keys=False, width=100)
    )
    return path


# -- running ----------------------------------------------------------------------------------------
@dataclass
class Run:
    cmd: list[str]
    rc: int
    total: float  # seconds from launch to exit
    lines: list[tuple[float, str]]  # (seconds since launch, line)
    log: Path

    def first(self, pattern: str) -> tuple[float, re.Match] | None:
        rx = re.compile(pattern)
        for t, line in self.lines:
            m = rx.search(line)
            if m:
                return t, m
        return None

    def all(self, pattern: str) -> list[tuple[float, re.Match]]:
        rx = re.compile(pattern)
        return [(t, m) for t, line in self.lines for m in [rx.search(line)] if m]


def run_logged(cmd: list[str], log: Path, cwd: Path, echo: bool = False) -> Run:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)  # each tool from its own environment
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.monotonic() - t0
            lines.append((t, line.rstrip("\n")))
            out.write(f"{t:9.3f} {line}")
            out.flush()
            if echo:
                print(f"    {t:8.2f}s | {line}", end="")
        rc = proc.wait()
    return Run(cmd, rc, time.monotonic() - t0, lines, log)


def check(run: Run, what: str) -> None:
    if run.rc != 0:
        tail = "\n".join(f"    {line}" for _, line in run.lines[-25:])
        raise SystemExit(f"{what} failed (exit {run.rc}; log {run.log}):\n{tail}")


def netcompiler_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "netcompiler"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "netcompiler"]


# -- parsing ----------------------------------------------------------------------------------------
def returnn_epochs(run: Run) -> list[dict]:
    """Per epoch: time from RETURNN's `start epoch N` line to `train epoch N, finished after`,
    its own (whole-second) `elapsed`, and the time since launch at the end of the epoch."""
    starts = {int(m.group(1)): t for t, m in run.all(r"^start epoch (\d+)\b")}
    out = []
    for t, m in run.all(
        r"^train epoch (\d+), finished after (\d+) steps, (\d+):(\d\d):(\d\d) "
        r"elapsed"
    ):
        ep = int(m.group(1))
        reported = int(m.group(3)) * 3600 + int(m.group(4)) * 60 + int(m.group(5))
        out.append(
            {
                "epoch": ep,
                "time": t - starts[ep],
                "reported": float(reported),
                "steps": int(m.group(2)),
                "end": t,
            }
        )
    return out


def netcompiler_epochs(run: Run, model_dir: Path) -> list[dict]:
    """Per epoch: scores.tsv's wall_time and the time since launch of the `epoch N/M:` line."""
    ends = {int(m.group(1)): t for t, m in run.all(r"^epoch (\d+)/\d+: .*\(([\d.]+)s\)$")}
    rows = (model_dir / "scores.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    out = []
    for row in rows[1:]:
        rec = dict(zip(head, row.split("\t")))
        ep = int(rec["epoch"])
        out.append(
            {
                "epoch": ep,
                "time": float(rec["wall_time"]),
                "reported": float(rec["wall_time"]),
                "end": ends.get(ep, float("nan")),
                "loss": float(rec["train_loss"]),
            }
        )
    return out


def summarize(epochs: list[dict]) -> dict:
    times = [e["time"] for e in epochs]
    steady = statistics.median(times[1:]) if len(times) > 1 else float("nan")
    return {
        "times": times,
        "steady": steady,
        "first": times[0],
        "overhead": times[0] - steady,
        "to_end_of_1": epochs[0]["end"],
    }


def search_lengths_returnn(path: Path) -> list[int]:
    """Best-hypothesis lengths from RETURNN's `txt` search output: one line per sequence,
    `[(score, 'l1 l2 ...'), ...]` (n-best, best first)."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            m = re.search(r"'([^']*)'", line)
            if m is None:
                raise ValueError(f"{path}: no hypothesis in line {line[:80]!r}")
            out.append(len(m.group(1).split()))
    return out


def search_lengths_netcompiler(path: Path) -> list[int]:
    rows = path.read_text().splitlines()[1:]
    return [int(r.split("\t")[3]) for r in rows if r.split("\t")[1] == "1"]


# -- the benchmarks ---------------------------------------------------------------------------------
def fmt(x: float) -> str:
    return f"{x:6.2f}s"


def machine_speed(n: int = 1024, reps: int = 15) -> float:
    """GFLOP/s of a float32 [n, n] matrix product in NumPy (median of `reps`): a probe of the
    machine's speed, taken before and after each tool's run. On a shared virtual machine the
    host's other tenants change it from one minute to the next; a ratio of two runs is only as
    good as the agreement of their probes."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def bench_train(
    s: TrainSizes,
    work: Path,
    returnn_py: Path | None,
    echo: bool,
    precisions: tuple[str, ...] = ("float32",),
) -> dict:
    d = work / "train"
    d.mkdir(parents=True, exist_ok=True)
    feats, labels = train_data(s)
    hdf = write_returnn_hdf(d / "train.hdf", feats, s.features, {"classes": (labels, s.classes)})
    print(
        f"training: {s.blocks} pre-norm self-attention blocks (D={s.dim}, {s.heads} heads, "
        f"FF {s.ff}), {s.num_seqs} seqs x {s.frames} frames x {s.features} features, "
        f"{s.classes} classes, batches of {s.batch_seqs} seqs ({s.batch_frames} frames), "
        f"{s.num_seqs // s.batch_seqs} steps/epoch, Adam {s.learning_rate:g}, "
        f"{s.epochs} epochs",
        flush=True,
    )
    res = {}
    if returnn_py is not None:
        cfg = d / "returnn_train.config"
        cfg.write_text(returnn_train_config(s, hdf, d / "returnn-model" / "model"))
        (d / "returnn-model").mkdir(exist_ok=True)
        print(f"  RETURNN: {returnn_py} -m returnn {cfg}", flush=True)
        probe = machine_speed()
        run = run_logged(
            [str(returnn_py), "-m", "returnn", str(cfg)], d / "returnn_train.log", d, echo
        )
        check(run, "RETURNN training")
        eps = returnn_epochs(run)
        if len(eps) != s.epochs:
            raise SystemExit(
                f"RETURNN: found {len(eps)} epoch lines in {run.log}, expected {s.epochs}"
            )
        res["returnn"] = dict(
            summarize(eps), total=run.total, epochs=eps, probes=(probe, machine_speed())
        )
    for precision in precisions:
        tool = PRECISION_TOOLS[precision]
        model_dir = d / f"{tool}-model"
        cfg = write_yaml(
            d / f"{tool}_train.yaml", netcompiler_train_config(s, hdf, model_dir, precision)
        )
        cmd = netcompiler_cmd() + ["train", str(cfg)]
        print(f"  netcompiler ({precision}): {' '.join(cmd)}", flush=True)
        probe = machine_speed()
        run = run_logged(cmd, d / f"{tool}_train.log", d, echo)
        check(run, f"netcompiler training ({precision})")
        eps = netcompiler_epochs(run, model_dir)
        res[tool] = dict(
            summarize(eps), total=run.total, epochs=eps, probes=(probe, machine_speed())
        )
    return res


def report_train(res: dict) -> None:
    tools = [t for t in ("returnn", *PRECISION_TOOLS.values()) if t in res]
    n = max(len(res[t]["times"]) for t in tools)
    print("\nper-epoch time (s):")
    print(
        "  epoch "
        + "".join(f"{t:>13}" for t in tools)
        + ("        RETURNN's own (whole s)" if "returnn" in res else "")
    )
    for i in range(n):
        row = "".join(
            f"{res[t]['times'][i]:13.2f}" if i < len(res[t]["times"]) else " " * 13 for t in tools
        )
        own = (
            f"{res['returnn']['epochs'][i]['reported']:13.0f}"
            if "returnn" in res and i < len(res["returnn"]["epochs"])
            else ""
        )
        print(f"  {i + 1:5d} {row}{own}")
    print()
    for label, key in (
        ("steady epoch (median of epochs 2..N)", "steady"),
        ("first epoch", "first"),
        ("first-epoch overhead (epoch 1 - steady)", "overhead"),
        ("launch to end of epoch 1", "to_end_of_1"),
        ("whole process (launch to exit)", "total"),
    ):
        vals = "  ".join(f"{t} {fmt(res[t][key])}" for t in tools)
        print(f"  {label:42s} {vals}{ratios(res, tools, key)}")
    if "returnn" in res:
        print(
            "  (RETURNN: from its `start epoch` to its `finished after` line; netcompiler: "
            "scores.tsv wall_time)"
        )
    probes = "  ".join(f"{t} {res[t]['probes'][0]:.0f} / {res[t]['probes'][1]:.0f}" for t in tools)
    print(f"  machine speed before / after (NumPy matmul GFLOP/s)  {probes}")
    for tool in tools[1 if "returnn" in res else 0 :]:
        losses = [e["loss"] for e in res[tool]["epochs"]]
        print(f"  {tool} train loss per epoch: {', '.join(f'{x:.4f}' for x in losses)}")
    base = res.get("netcompiler")
    for tool in (t for t in tools if t not in ("returnn", "netcompiler")):
        if base is None:
            continue
        a, b = base["epochs"][-1]["loss"], res[tool]["epochs"][-1]["loss"]
        print(
            f"  final train loss after {len(res[tool]['epochs'])} epochs: float32 {a:.4f}, "
            f"{tool} {b:.4f} ({100 * (b - a) / a:+.2f} %; goal: within 2 %)"
        )


def ratios(res: dict, tools: list[str], key: str) -> str:
    """`  ratio` texts of each netcompiler run to RETURNN's and of each mixed-precision run to
    netcompiler's float32 run, for one figure (`steady`, `first`, ...)."""
    out = []
    ours = [t for t in tools if t != "returnn"]
    if "returnn" in res and res["returnn"][key] > 0:
        out += [f"{t}/RETURNN {res[t][key] / res['returnn'][key]:.2f}x" for t in ours]
    if "netcompiler" in res and res["netcompiler"][key] > 0:
        out += [
            f"{t}/netcompiler {res[t][key] / res['netcompiler'][key]:.2f}x"
            for t in ours
            if t != "netcompiler"
        ]
    return "  ratio " + ", ".join(out) if out else ""


def bench_search(
    s: SearchSizes, work: Path, returnn_py: Path | None, echo: bool, repeats: int = 3
) -> dict:
    d = work / "search"
    d.mkdir(parents=True, exist_ok=True)
    src, tgt = search_data(s, s.train_seqs, seed=3)
    train_hdf = write_returnn_hdf(d / "train.hdf", src, s.vocab, {"classes": (tgt, s.vocab)})
    src, _ = search_data(s, s.num_seqs, seed=4)
    sizes = [s.small_seqs, s.num_seqs] if s.small_seqs else [s.num_seqs]
    hdfs = {}
    for n in sizes:
        # the small run: every (num_seqs/n)-th sequence of the big one (the same mix of lengths)
        idx = (
            np.linspace(0, s.num_seqs - 1, n).round().astype(int)
            if n < s.num_seqs
            else np.arange(s.num_seqs)
        )
        hdfs[n] = write_returnn_hdf(
            d / f"search{n}.hdf", [src[i] for i in idx], s.vocab, tags=[f"seq-{i}" for i in idx]
        )
    print(
        f"\ndecoding: BLSTM encoder + LSTM dot-attention decoder, {s.units} units, vocab "
        f"{s.vocab}, beam {s.beam}, max_seq_len {s.max_seq_len}, {s.num_seqs} input sequences "
        f"of {s.min_len}..{s.max_len} tokens, batches of {s.batch_seqs}; each search process "
        f"{repeats}x, the fastest counted",
        flush=True,
    )
    searches = {}
    if returnn_py is not None:
        searches["returnn"] = returnn_searcher(s, d, train_hdf, hdfs, returnn_py, echo)
    searches["netcompiler"] = netcompiler_searcher(s, d, train_hdf, hdfs, echo)
    res: dict = {tool: {} for tool in searches}
    # the tools alternate within each round, so that a change in the machine's speed falls
    # on both alike; the fastest of the rounds is the least disturbed one
    for round_ in range(repeats):
        for n in sizes:
            for tool, search in searches.items():
                print(f"  {tool}: search {n} sequences (round {round_ + 1})", flush=True)
                run = search(n)
                if n not in res[tool] or run[0] < res[tool][n][0]:
                    res[tool][n] = run
    res["sizes"] = sizes
    return res


def returnn_searcher(s: SearchSizes, d: Path, train_hdf, hdfs, returnn_py: Path, echo: bool):
    """Trains RETURNN's decoder one tiny epoch; returns search(n) -> (process time, the
    hypothesis lengths, its own search loop time)."""
    model = d / "returnn-model" / "model"
    model.parent.mkdir(exist_ok=True)
    vocab = write_returnn_vocab(d / "returnn_vocab.txt", s.vocab)
    cfg = d / "returnn_train.config"
    cfg.write_text(returnn_search_config(s, "train", train_hdf, model, vocab))
    print(
        "  RETURNN: 1 tiny train epoch (the native LSTM op compiles here on first use)", flush=True
    )
    check(
        run_logged([str(returnn_py), "-m", "returnn", str(cfg)], d / "returnn_train.log", d, echo),
        "RETURNN decoder training",
    )

    def search(n: int):
        out = d / f"returnn_search{n}.txt"
        out.unlink(missing_ok=True)  # RETURNN refuses to overwrite it (an earlier round's)
        cfg = d / f"returnn_search{n}.config"
        cfg.write_text(returnn_search_config(s, "search", hdfs[n], model, vocab, out))
        run = run_logged(
            [str(returnn_py), "-m", "returnn", str(cfg)], d / f"returnn_search{n}.log", d, echo
        )
        check(run, f"RETURNN search ({n} sequences)")
        lens = search_lengths_returnn(out)
        if len(lens) != n:
            raise SystemExit(f"RETURNN search wrote {len(lens)} of {n} sequences to {out}")
        a, b = run.first(r"^Search with network on"), run.first(r"^Search done")
        return run.total, lens, b[0] - a[0] if a and b else float("nan")

    return search


def netcompiler_searcher(s: SearchSizes, d: Path, train_hdf, hdfs, echo: bool):
    """Trains netcompiler's decoder one tiny epoch; returns search(n) -> (process time, the
    hypothesis lengths, None)."""
    model_dir = d / "netcompiler-model"
    cfg = write_yaml(
        d / "netcompiler_search.yaml", netcompiler_search_config(s, train_hdf, model_dir)
    )
    print("  netcompiler: 1 tiny train epoch", flush=True)
    check(
        run_logged(netcompiler_cmd() + ["train", str(cfg)], d / "netcompiler_train.log", d, echo),
        "netcompiler decoder training",
    )

    def search(n: int):
        out = d / f"netcompiler_search{n}.tsv"
        out.unlink(missing_ok=True)  # an earlier round's
        data = f"{{class: hdf, files: [{hdfs[n]}]}}"
        command = ["search", str(cfg), "--checkpoint", str(model_dir), "--data", data]
        command += ["--beam-size", str(s.beam), "-o", str(out)]
        run = run_logged(netcompiler_cmd() + command, d / f"netcompiler_search{n}.log", d, echo)
        check(run, f"netcompiler search ({n} sequences)")
        lens = search_lengths_netcompiler(out)
        if len(lens) != n:
            raise SystemExit(f"netcompiler search wrote {len(lens)} of {n} sequences to {out}")
        return run.total, lens, None

    return search


def report_search(res: dict) -> None:
    tools = [t for t in ("returnn", "netcompiler") if t in res]
    sizes = res["sizes"]
    print("\ndecoding (beam search):")
    rate = {}
    for t in tools:
        runs = res[t]
        parts = [
            f"{n} seqs {fmt(runs[n][0])} (mean hyp length {np.mean(runs[n][1]):.1f})" for n in sizes
        ]
        print(f"  {t:12s} whole process: " + ", ".join(parts))
        if runs[sizes[-1]][2] is not None:
            n = sizes[-1]
            print(
                f"  {'':12s} its own search loop (`Search with network` to `Search done`, "
                f"{n} seqs): {fmt(runs[n][2])}, {n / runs[n][2]:.2f} sequences/s"
            )
        if len(sizes) == 2:
            small, big = sizes
            dt = runs[big][0] - runs[small][0]
            rate[t] = (big - small) / dt if dt > 0 else float("nan")
            print(
                f"  {'':12s} sequences/s (start-up removed): {rate[t]:.2f} "
                f"({(big - small)} seqs in {dt:.2f}s)"
            )
        else:
            rate[t] = sizes[0] / runs[sizes[0]][0]
            print(f"  {'':12s} sequences/s (start-up included): {rate[t]:.2f}")
    if len(tools) == 2:
        print(
            f"  ratio netcompiler/RETURNN sequences/s: {rate['netcompiler'] / rate['returnn']:.2f}x"
        )


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load {os.getloadavg()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, help="training epochs of each tool (default 6)")
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes for a smoke run (figures mean nothing)"
    )
    ap.add_argument("--skip-returnn", action="store_true", help="run netcompiler only")
    ap.add_argument("--skip-search", action="store_true", help="no decoding benchmark")
    ap.add_argument(
        "--search",
        action="store_true",
        help="with --quick: also the (tiny) decoding benchmark (4 more processes)",
    )
    ap.add_argument("--skip-train", action="store_true", help="no training benchmark")
    ap.add_argument(
        "--search-repeats",
        type=int,
        default=3,
        metavar="N",
        help="run each search process N times, the tools alternating; the fastest counts "
        "(default %(default)s)",
    )
    ap.add_argument(
        "--returnn-python",
        default=str(DEFAULT_RETURNN_PYTHON),
        help="the Python of RETURNN's venv (default: %(default)s)",
    )
    ap.add_argument("--workdir", help="work directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--echo", action="store_true", help="show the tools' output as it comes")
    ap.add_argument(
        "--precision",
        default="float32",
        metavar="P[,P...]",
        help="train netcompiler in each of these precisions (float32, "
        "mixed_bfloat16, mixed_float16; default %(default)s), e.g. "
        "float32,mixed_bfloat16",
    )
    args = ap.parse_args(argv)
    precisions = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    unknown = [p for p in precisions if p not in PRECISION_TOOLS]
    if unknown or not precisions:
        ap.error(f"--precision: unknown {unknown} (one of {', '.join(PRECISION_TOOLS)})")

    if args.search_repeats < 1:
        ap.error("--search-repeats must be >= 1")
    ts = TrainSizes(**vars(QUICK_TRAIN)) if args.quick else TrainSizes()
    ss = SearchSizes(**vars(QUICK_SEARCH)) if args.quick else SearchSizes()
    if args.epochs is not None:
        if args.epochs < 1:
            ap.error("--epochs must be >= 1")
        ts.epochs = args.epochs
    returnn_py = None
    if not args.skip_returnn:
        returnn_py = Path(args.returnn_python)
        if not returnn_py.exists():
            print(
                f"vs_returnn: error: no RETURNN venv at {returnn_py} (see the set-up at the "
                f"top of {Path(__file__).name}, or --skip-returnn)",
                file=sys.stderr,
            )
            return 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vs_returnn-"))
    if work.exists() and any(work.iterdir()):
        # both tools would resume from the models of an earlier run and time nothing
        ap.error(f"--workdir {work} is not empty: give a new or an empty directory")
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    print(f"before: {uptime()}\nwork directory: {work}", flush=True)
    try:
        if not args.skip_train:
            report_train(bench_train(ts, work, returnn_py, args.echo, precisions))
        if not args.skip_search and (args.search or not args.quick):
            report_search(bench_search(ss, work, returnn_py, args.echo, args.search_repeats))
    finally:
        print(f"\nafter: {uptime()}")
        if not args.workdir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and configs kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
