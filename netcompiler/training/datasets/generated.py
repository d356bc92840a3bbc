"""Built-in generated tasks: `copy`, `reverse`, `12ax`, `number_base_convert`.

Every task is generated completely (all `num_seqs` sequences) when the dataset is made, with
`numpy.random.default_rng(seed)` (`seed` taken modulo 2**63), so a dataset is a pure function of
its options: same seed -> identical sequences. `make_dataset` picks `seed = default_seed` for
`train_data` and `default_seed + DEV_SEED_OFFSET` (other names: + a CRC32 of the name) when the
spec gives no seed, so dev != train. Default `num_seqs`: 1000 for train, 100 otherwise.
Every task has keys `data` (input) and `classes` (target), both sparse (int32 class indices).
Lengths are drawn uniformly from [min_len, max_len] (both inclusive) per sequence.

copy (defaults: num_symbols=10, min_len=3, max_len=10)
    data:    x_1..x_T, each x_t uniform in 1..num_symbols-1           (sparse dim num_symbols)
    classes: x_1..x_T, 0                   (0 = EOS; length T+1)      (sparse dim num_symbols)

reverse (same options and defaults as copy)
    data:    x_1..x_T as for copy
    classes: x_T..x_1, 0                   (length T+1)

12ax (defaults: min_len=8, max_len=20; 9 input symbols, 2 classes; num_symbols must be 9)
    Symbols -> ids: '1'->0, '2'->1, 'A'->2, 'B'->3, 'C'->4, 'X'->5, 'Y'->6, 'Z'->7, and the
    distractor '3'->8.
    Generation of one sequence of length T:
        seq = []
        while len(seq) < T:                          # one outer loop
            d = uniform choice of '1', '2';  append d
            repeat k times, k uniform in 1..4:       # inner loops
                with probability 0.1 append the distractor '3'
                with probability 0.5: append the target pair of d ('A','X' if d == '1',
                                      else 'B','Y')
                otherwise:            append a uniform choice of 'A','B','C', then a uniform
                                      choice of 'X','Y','Z' (may also be the target pair)
        seq = seq[:T]                                # truncate to exactly T symbols
    So every sequence starts with a context digit, and about 56% of the pairs are target pairs.
    Target (classes, same length as data, sparse dim 2), by this state machine:
        context = none; for every t: if seq[t] is '1' or '2': context = seq[t]
        classes[t] = 1 ("R") if (context == '1' and seq[t] == 'X' and seq[t-1] == 'A')
                             or (context == '2' and seq[t] == 'Y' and seq[t-1] == 'B')
                     0 ("L") otherwise (also for t = 0).
    The distractor '3' does not change the context (it only appears before a pair, never inside).

number_base_convert (defaults: base_in=10, base_out=2, min_len=1, max_len=6)
    A random number n with L digits in base base_in, L uniform in [min_len, max_len], the
    leading digit uniform in 1..base_in-1 (no leading zero), the others uniform in 0..base_in-1.
    data:    the base_in digits of n, most significant first, id = digit value
             (sparse dim base_in)
    classes: the base_out digits of n, most significant first, id = digit + 1, then 0 (EOS)
             (sparse dim base_out + 1). E.g. base 10 -> 2: 6 -> data [6], classes [2, 2, 1, 0].
"""

from __future__ import annotations

import numpy as np

from netcompiler.training.datasets.base import ArrayDataset, Dataset, DatasetError, KeyInfo

SYMBOLS_12AX = ("1", "2", "A", "B", "C", "X", "Y", "Z", "3")
ID_12AX = {s: i for i, s in enumerate(SYMBOLS_12AX)}

TASK_DEFAULTS = {
    "copy": {"num_symbols": 10, "min_len": 3, "max_len": 10},
    "reverse": {"num_symbols": 10, "min_len": 3, "max_len": 10},
    "12ax": {"min_len": 8, "max_len": 20},
    "number_base_convert": {"base_in": 10, "base_out": 2, "min_len": 1, "max_len": 6},
}
TASKS = tuple(TASK_DEFAULTS)


def make_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed) % (2**63))


def _lengths(rng, n, min_len, max_len):
    return rng.integers(min_len, max_len + 1, size=n)


def gen_copy_reverse(rng, n, num_symbols, min_len, max_len, reverse):
    lens = _lengths(rng, n, min_len, max_len)
    flat = rng.integers(1, num_symbols, size=int(lens.sum())).astype(np.int32)
    offs = np.concatenate([[0], np.cumsum(lens)])
    data, classes = [], []
    for i in range(n):
        x = flat[offs[i] : offs[i + 1]]
        data.append(x)
        y = x[::-1] if reverse else x
        classes.append(np.concatenate([y, [0]]).astype(np.int32))
    return data, classes


def targets_12ax(seq) -> np.ndarray:
    """The 12-AX targets (see module docstring) of a sequence of symbol ids."""
    one, two, a, b, x, y = (ID_12AX[s] for s in ("1", "2", "A", "B", "X", "Y"))
    out = np.zeros(len(seq), dtype=np.int32)
    context = None
    prev = None
    for t, s in enumerate(seq):
        s = int(s)
        if s in (one, two):
            context = s
        if (context == one and s == x and prev == a) or (context == two and s == y and prev == b):
            out[t] = 1
        prev = s
    return out


def gen_12ax_symbols(rng, length) -> list[int]:
    seq: list[int] = []
    while len(seq) < length:
        d = ("1", "2")[rng.integers(2)]
        seq.append(ID_12AX[d])
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.1:
                seq.append(ID_12AX["3"])
            if rng.random() < 0.5:
                pair = ("A", "X") if d == "1" else ("B", "Y")
            else:
                pair = ("ABC"[rng.integers(3)], "XYZ"[rng.integers(3)])
            seq.extend(ID_12AX[p] for p in pair)
    return seq[:length]


def gen_12ax(rng, n, min_len, max_len):
    lens = _lengths(rng, n, min_len, max_len)
    data, classes = [], []
    for i in range(n):
        seq = np.array(gen_12ax_symbols(rng, int(lens[i])), dtype=np.int32)
        data.append(seq)
        classes.append(targets_12ax(seq))
    return data, classes


def to_digits(value: int, base: int) -> list[int]:
    """Digits of a non-negative int in `base`, most significant first."""
    if value == 0:
        return [0]
    out = []
    while value:
        value, d = divmod(value, base)
        out.append(d)
    return out[::-1]


def gen_number_base_convert(rng, n, base_in, base_out, min_len, max_len):
    lens = _lengths(rng, n, min_len, max_len)
    data, classes = [], []
    for i in range(n):
        num_digits = int(lens[i])
        digits = [int(rng.integers(1, base_in))]
        digits += [int(d) for d in rng.integers(0, base_in, size=num_digits - 1)]
        value = 0
        for d in digits:
            value = value * base_in + d
        data.append(np.array(digits, dtype=np.int32))
        classes.append(np.array([d + 1 for d in to_digits(value, base_out)] + [0], dtype=np.int32))
    return data, classes


def _int_opt(task, opts, key, minimum):
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise DatasetError(f"dataset {task!r}: option {key!r} must be an integer, got {v!r}")
    if v < minimum:
        raise DatasetError(f"dataset {task!r}: option {key!r} must be >= {minimum}, got {v}")
    return int(v)


class GeneratedDataset(ArrayDataset):
    """One of the built-in tasks (see module docstring)."""

    def __init__(
        self,
        task: str,
        num_seqs: int,
        seed: int,
        name: str = "train",
        partition: int = 1,
        **options,
    ):
        if task not in TASK_DEFAULTS:
            raise DatasetError(f"unknown generated task {task!r} (known: {', '.join(TASKS)})")
        opts = dict(TASK_DEFAULTS[task])
        if task == "12ax" and "num_symbols" in options:
            if options.pop("num_symbols") != len(SYMBOLS_12AX):
                raise DatasetError(f"dataset '12ax': num_symbols is fixed to {len(SYMBOLS_12AX)}")
        unknown = set(options) - set(opts)
        if unknown:
            raise DatasetError(
                f"dataset {task!r}: unknown option(s) {', '.join(sorted(unknown))} "
                f"(allowed: {', '.join(sorted(opts))})"
            )
        opts.update(options)
        n = _int_opt(task, {"num_seqs": num_seqs}, "num_seqs", 0)
        for k in opts:
            minimum = 2 if k in ("num_symbols", "base_in", "base_out") else 1
            opts[k] = _int_opt(task, opts, k, minimum)
        if opts["min_len"] > opts["max_len"]:
            raise DatasetError(
                f"dataset {task!r}: min_len {opts['min_len']} > max_len {opts['max_len']}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise DatasetError(f"dataset {task!r}: seed must be an integer, got {seed!r}")
        self.task = task
        self.seed = int(seed)
        self.options = opts
        rng = make_rng(seed)
        if task in ("copy", "reverse"):
            data, classes = gen_copy_reverse(
                rng,
                n,
                opts["num_symbols"],
                opts["min_len"],
                opts["max_len"],
                reverse=task == "reverse",
            )
            info = {
                "data": KeyInfo(opts["num_symbols"], True),
                "classes": KeyInfo(opts["num_symbols"], True),
            }
        elif task == "12ax":
            data, classes = gen_12ax(rng, n, opts["min_len"], opts["max_len"])
            info = {"data": KeyInfo(len(SYMBOLS_12AX), True), "classes": KeyInfo(2, True)}
        else:
            data, classes = gen_number_base_convert(
                rng, n, opts["base_in"], opts["base_out"], opts["min_len"], opts["max_len"]
            )
            info = {
                "data": KeyInfo(opts["base_in"], True),
                "classes": KeyInfo(opts["base_out"] + 1, True),
            }
        seqs = [{"data": d, "classes": c} for d, c in zip(data, classes)]
        tags = [f"{task}-{name}-{i}" for i in range(n)]
        tmp = ArrayDataset.from_seqs(name, info, seqs, seq_tags=tags)
        super().__init__(
            name,
            info,
            {k: tmp.flat(k) for k in info},
            {k: tmp.seq_lengths(k) for k in info},
            seq_tags=tags,
            partition=partition,
            source=f"({task})",
        )

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{Dataset.describe(self)}; task {self.task} (seed {self.seed}, {opts})"
