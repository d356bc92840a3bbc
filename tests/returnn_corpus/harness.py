"""Run one RETURNN corpus network the way a new user would (no test functions here).

`run_network(path)`:
  1. `netcompiler.validate(path)`; errors -> `CorpusFailure("validate", ...)`;
  2. `netcompiler.compile(path)`;
  3. a forward pass with teacher forcing (`training=True`, targets fed) on a ragged random
     batch, fetching every top-level layer, checking that each output is finite and that its
     rank and static sizes equal the inferred shape;
  4. if a `rec` unit holds a `choice` layer: `net.search(..., beam_size=3)`, checking the
     labels are ints in the range of the choice's classes.
Each stage's failure raises `CorpusFailure(stage, message)`.

A corpus file may declare, on line 2, `# expect-error: <rule-id> <why>` (networks that call
Python from the config); then validation must report that rule id, and nothing else runs.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

CORPUS_DIR = Path(__file__).resolve().parent
BATCH = 3
MAX_LEN = 7
BEAM = 3
SOURCE_RE = re.compile(
    r"^# source: github\.com/rwth-i6/(?P<repo>returnn|returnn-experiments)@(?P<commit>[0-9a-f]{12}) "
    r"(?P<path>\S+?)"
    r"(?:::(?P<func>\w+))?$"
)
EXPECT_RE = re.compile(r"^# expect-error: (?P<rule>[\w.-]+) (?P<why>.+)$")


class CorpusFailure(Exception):
    """A corpus network failed at `stage` (validate, compile, inputs, forward, shapes, search,
    expect-error); `details` holds further lines (e.g. every validation error)."""

    def __init__(self, stage: str, message: str, details: list[str] | None = None):
        super().__init__(f"[{stage}] {message}")
        self.stage = stage
        self.message = message
        self.details = details or []


def corpus_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.yaml"))


def header(path) -> dict:
    """The source line (commit, path, func) and the optional expected error (rule, why)."""
    lines = Path(path).read_text().splitlines()
    m = SOURCE_RE.match(lines[0]) if lines else None
    info = {"source": m.groupdict() if m else None, "expect": None}
    if len(lines) > 1:
        e = EXPECT_RE.match(lines[1])
        if e:
            info["expect"] = e.groupdict()
    return info


def format_diagnostic(d) -> str:
    loc = ":".join(str(x) for x in (d.file, d.line, d.col) if x is not None)
    return f"{loc}: {d.full_message()} [{d.rule}]"


def _first(lines: list[str]) -> str:
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    return (lines[0] if lines else "?") + more


def _registered_keys(obj) -> set[str]:
    """Extern keys a layer creates with `register_as_extern_data` (no inputs for those)."""
    keys = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "register_as_extern_data" and isinstance(v, str):
                keys.add(v)
            else:
                keys |= _registered_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            keys |= _registered_keys(v)
    return keys


def make_inputs(net, seed: int, registered: set[str] = frozenset()):
    """Random ragged inputs for every extern key: each dynamic axis (shared by identity, e.g.
    `same_time_as`) gets its own lengths in 1..MAX_LEN and as many frames as the longest one;
    dense values are normal noise, sparse ones random ints in [0, dim)."""
    from netcompiler.core.dims import BATCH as B
    from netcompiler.core.dims import TIME as T

    rng = np.random.default_rng(seed)
    values, lengths = {}, {}
    time_lengths: dict = {}
    for key, shape in net.extern_shapes.items():
        if shape is None or key in registered:
            continue
        dims = []
        for d in shape.dims:
            if d.kind == B:
                dims.append(BATCH)
            elif d.kind == T:
                if d not in time_lengths:
                    time_lengths[d] = rng.integers(1, MAX_LEN + 1, size=BATCH).astype(np.int32)
                dims.append(int(time_lengths[d].max()))
            else:
                dims.append(int(d.size))
        if shape.sparse:
            values[key] = rng.integers(0, shape.sparse_dim, size=dims).astype(np.int32)
        else:
            values[key] = rng.standard_normal(dims).astype(np.float32)
        if shape.time is not None:
            lengths[key] = time_lengths[shape.time]
    return values, lengths


def _check_output(name, shape, values, lens):
    from netcompiler.core.dims import BATCH as B
    from netcompiler.core.dims import BATCH_DIM
    from netcompiler.core.dims import TIME as T

    got = tuple(values.shape)
    want = " ".join(str(d) for d in shape.dims) if hasattr(shape, "dims") else str(shape)
    if len(got) != len(shape.dims):
        raise CorpusFailure(
            "shapes",
            f"layer `{name}`: run-time shape {got} has rank {len(got)}, "
            f"inferred {shape} has rank {len(shape.dims)}",
        )
    for axis, (size, d) in enumerate(zip(got, shape.dims)):
        if d.kind == B:
            # a batch of chunks (time_chunking) holds a multiple of the batch's sequences
            if size != BATCH if d is BATCH_DIM else size % BATCH:
                raise CorpusFailure(
                    "shapes",
                    f"layer `{name}`: axis {axis} (batch) has size "
                    f"{size}, expected {BATCH} ({want})",
                )
        elif d.kind == T:
            continue
        elif d.size is not None and size != d.size:
            raise CorpusFailure(
                "shapes", f"layer `{name}`: axis {axis} has size {size}, inferred {d} ({shape})"
            )
    if lens is not None and shape.time is not None:
        axis = shape.dims.index(shape.time)
        if got[axis] < int(np.max(np.asarray(lens))):
            raise CorpusFailure(
                "shapes",
                f"layer `{name}`: time axis {axis} has {got[axis]} "
                f"frames, fewer than its longest length",
            )
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise CorpusFailure("forward", f"layer `{name}`: output is not finite")


def _choice_layers(net):
    return [
        layer
        for layer in net.network.layers.values()
        if layer.layer_class == "choice" and layer.scope.rec_layer is not None
    ]


def run_network(path) -> dict:
    """Validate, compile, run forward (and search) one corpus network; see the module doc."""
    import netcompiler

    path = Path(path)
    info = header(path)
    result = {"name": path.stem, "status": None}

    # (a) validate
    try:
        report = netcompiler.validate(str(path))
    except Exception as exc:  # validate must never raise for a config problem
        raise CorpusFailure("validate", f"validate raised {type(exc).__name__}: {exc}") from exc
    errors = [format_diagnostic(d) for d in report.errors]
    if info["expect"]:
        rule = info["expect"]["rule"]
        if not any(d.rule == rule for d in report.diagnostics):
            raise CorpusFailure(
                "expect-error",
                f"validation does not report `{rule}`; "
                f"it reports: {_first(errors) if errors else 'no errors'}",
                errors,
            )
        result["status"] = f"expected-error {rule}"
        return result
    if errors:
        raise CorpusFailure("validate", _first(errors), errors)

    # (b) compile
    try:
        net = netcompiler.compile(str(path))
    except netcompiler.ConfigError as exc:
        lines = [format_diagnostic(d) for d in exc.diagnostics]
        raise CorpusFailure("compile", _first(lines), lines) from exc
    except Exception as exc:
        raise CorpusFailure("compile", f"{type(exc).__name__}: {exc}") from exc

    # (c) forward with teacher forcing, every top-level layer
    seed = zlib.crc32(path.stem.encode())
    try:
        registered = _registered_keys(netcompiler.load(str(path)).data)
        inputs, lengths = make_inputs(net, seed, registered)
    except Exception as exc:
        raise CorpusFailure("inputs", f"{type(exc).__name__}: {exc}") from exc
    top = list(net.network.top.layers)
    missing = [n for n in top if n not in net.inferred.shapes]
    if missing:
        raise CorpusFailure("shapes", f"no inferred shape for top-level layers {missing}")
    try:
        out = net(inputs=inputs, lengths=lengths, training=True, fetch=top)
    except Exception as exc:
        raise CorpusFailure("forward", f"{type(exc).__name__}: {_short(exc)}") from exc
    for name in top:
        if name not in out:
            raise CorpusFailure("forward", f"layer `{name}` was fetched but not returned")
        values, lens = out[name]
        _check_output(
            name,
            net.shape(name),
            values.numpy() if hasattr(values, "numpy") else values,
            None if lens is None else (lens.numpy() if hasattr(lens, "numpy") else lens),
        )
    result["layers"] = len(top)

    # (d) beam search when a rec unit holds a choice
    choices = _choice_layers(net)
    if choices:
        layer = next((c for c in choices if c.local_name == "output"), choices[0])
        n_classes = net.shape(layer.name).sparse_dim
        try:
            hyps = net.search(inputs=inputs, lengths=lengths, beam_size=BEAM)
        except Exception as exc:
            raise CorpusFailure("search", f"{type(exc).__name__}: {_short(exc)}") from exc
        if len(hyps) != BATCH:
            raise CorpusFailure("search", f"{len(hyps)} results for a batch of {BATCH}")
        for b, seq_hyps in enumerate(hyps):
            if not seq_hyps:
                raise CorpusFailure("search", f"no hypothesis for sequence {b}")
            labels = np.asarray(seq_hyps[0]["labels"])
            if labels.size and not np.issubdtype(labels.dtype, np.integer):
                raise CorpusFailure(
                    "search", f"labels of sequence {b} are {labels.dtype}, not ints"
                )
            if labels.size and (labels.min() < 0 or (n_classes and labels.max() >= n_classes)):
                raise CorpusFailure(
                    "search",
                    f"labels of sequence {b} out of range [0, {n_classes}): {labels.tolist()}",
                )
        result["search"] = True
    result["status"] = "ok"
    return result


def _short(exc: Exception, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
