"""The shapes of `extern_data` (batch-major, each key with its own time axis unless declared
`same_time_as`), and the unification of extern time axes that a frame-wise loss or a decoder's
target reads together (RETURNN matches them by position; here with a note, and a length check
where data is fed). No TensorFlow."""

from __future__ import annotations

from typing import Any

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.diagnostics import ERROR, NOTE, Diagnostic
from netcompiler.core.dims import BATCH_DIM, Dim, Shape, feature_dim, spatial_dim, time_dim
from netcompiler.layers import ShapeError


def extern_shapes(
    extern: dict[str, Any], same_time: dict[str, str] | None = None
) -> tuple[dict[str, Shape], list[Diagnostic]]:
    """Shapes of the `extern_data` entries (batch-major, with their own time axes).
    `same_time` adds `same_time_as` relations found by unification (key -> other key)."""
    shapes: dict[str, Shape] = {}
    diags: list[Diagnostic] = []
    if same_time:
        extern = {
            k: (dict(v, same_time_as=same_time[k]) if k in same_time and isinstance(v, dict) else v)
            for k, v in extern.items()
        }
    pending = dict(extern)
    # entries with same_time_as need the other entry first
    for _ in range(len(pending) + 1):
        for key in list(pending):
            spec = pending[key] if isinstance(pending[key], dict) else {}
            other = spec.get("same_time_as")
            if other is not None and other not in shapes:
                if other in extern and other not in pending:
                    pending.pop(key)  # `other` failed and was reported; nothing to add
                    continue
                if other not in extern:
                    diags.append(
                        Diagnostic(
                            ERROR,
                            f"`same_time_as: {other}`: no such extern data",
                            "shape.extern",
                            ("extern_data", key, "same_time_as"),
                        )
                    )
                    pending.pop(key)
                continue
            pending.pop(key)
            try:
                shapes[key] = _extern_shape(key, spec, shapes.get(other) if other else None)
            except ShapeError as exc:
                path = ("extern_data", key) + ((exc.option,) if exc.option else ())
                diags.append(Diagnostic(ERROR, exc.message, exc.rule, path))
    for key in pending:
        diags.append(
            Diagnostic(
                ERROR,
                "`same_time_as` forms a cycle",
                "shape.extern",
                ("extern_data", key, "same_time_as"),
            )
        )
    return shapes, diags


def shared_time_keys(extern: dict[str, Shape]) -> list[tuple[str, ...]]:
    """Groups of extern data keys whose (first) time axis is one axis."""
    groups: dict[Dim, list[str]] = {}
    for key, shape in extern.items():  # (the extern data given as input, see extern_shapes)
        if shape.time is not None:
            groups.setdefault(shape.time, []).append(key)
    return [tuple(keys) for keys in groups.values() if len(keys) > 1]


def unify_extern_time(
    pairs: dict[tuple[str, str], ConfigPath], extern: dict[str, Any]
) -> tuple[dict[str, str], list[Diagnostic]]:
    """`same_time_as` relations (key -> key whose time axis it takes) for the extern time axes
    that frame-wise losses compare, with a note for each; the lengths of the two are checked
    when data is fed (`netcompiler.backend.build`, the training pipeline)."""
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while k in parent:
            k = parent[k]
        return k

    notes: list[Diagnostic] = []
    for (a, b), path in pairs.items():
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        # the input keeps its axis; the target takes it (a target with same_time_as declared
        # already points elsewhere, so the other one follows)
        if isinstance(extern.get(rb), dict) and extern[rb].get("same_time_as"):
            ra, rb = rb, ra
        parent[rb] = ra
        notes.append(
            Diagnostic(
                NOTE,
                f"frames of `{a}` and `{b}` are read together (by a frame-wise loss, or a "
                f"choice's target read per step of a loop over the other), but their time axes "
                f"were not declared the same: they are taken as one axis (as RETURNN does), and "
                f"the lengths of the two are checked to be equal when data is fed",
                "shape.unified-time",
                path,
                hint=f"declare it with `same_time_as: {ra}` on extern data `{rb}`",
            )
        )
    return {k: root(k) for k in parent}, notes


def _extern_shape(key: str, spec: dict[str, Any], same_as: Shape | None) -> Shape:
    sparse = bool(spec.get("sparse", False))
    dim = spec.get("dim")
    shape = spec.get("shape")
    if shape is None:
        if dim is None:
            raise ShapeError(f"extern data `{key}` needs `dim` or `shape`", "dim", "shape.extern")
        shape = [None] if sparse else [None, dim]
    elif not sparse:
        if not shape or shape[-1] is None:
            raise ShapeError(
                f"dense extern data `{key}` needs a static feature size last in `shape`",
                "shape",
                "shape.extern",
            )
        if dim is not None and dim != shape[-1]:
            raise ShapeError(
                f"`dim: {dim}` differs from the last entry of `shape: {shape}`",
                "dim",
                "shape.extern",
            )
        dim = shape[-1]
    elif dim is None:
        raise ShapeError(
            f"sparse extern data `{key}` needs `dim` (the number of classes)", "dim", "shape.extern"
        )
    entries = list(shape) if sparse else list(shape[:-1])
    dims: list[Dim] = [BATCH_DIM]
    n_time = 0
    for entry in entries:
        # descriptions as RETURNN names extern data's axes (matched by `stag:NAME`)
        if entry is None:
            if n_time == 0 and same_as is not None and same_as.time is not None:
                dims.append(same_as.time)
            elif n_time == 0:
                dims.append(time_dim(key, f"time:var:extern_data:{key}"))
            else:
                dims.append(
                    time_dim(f"{key}#{n_time + 1}", f"spatial{len(dims)}:var:extern_data:{key}")
                )
            n_time += 1
        else:
            dims.append(
                spatial_dim(entry, description=f"spatial{len(dims) - 1}:static{entry}:{key}")
            )
    if not sparse:
        dims.append(feature_dim(dim))
    dtype = spec.get("dtype") or ("int32" if sparse else "float32")
    return Shape(tuple(dims), dim if sparse else None, dtype)
