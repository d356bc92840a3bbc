"""Axis descriptions in options (`axis`, `axes`, `red1`, `var1`, ...), resolved against a Shape.

Accepted forms (as RETURNN configs write them):
- `B` / `batch`; `T` / `time` (the first dynamic time axis; `T2` / `T(2)`... not needed);
  `F` / `feature` (the feature axis); `spatial` (all time and static non-feature axes);
  `static` (static non-feature axes); `stag:NAME` or `T(NAME)` (the time axis tagged NAME, e.g.
  `stag:data`); `dim:N` (the static axis of size N); an integer (position counted without the
  batch axis, negative from the end).
"""
from __future__ import annotations

from ..dims import BATCH, FEATURE, SPATIAL, TIME, Shape


def resolve_axes(ctx, shape: Shape, desc, option: str) -> list[int]:
    """Axis indices (into `shape.dims`) that `desc` names; raises a ShapeError otherwise."""
    if isinstance(desc, (list, tuple)):
        out: list[int] = []
        for d in desc:
            for i in resolve_axes(ctx, shape, d, option):
                if i not in out:
                    out.append(i)
        return out
    dims = shape.dims
    found: list[int]
    if isinstance(desc, bool):
        found = []
    elif isinstance(desc, int):
        batch_at = next((i for i, d in enumerate(dims) if d.kind == BATCH), None)
        others = [i for i in range(len(dims)) if i != batch_at]
        found = [others[desc]] if -len(others) <= desc < len(others) else []
    else:
        text = str(desc)
        low = text.lower()
        if low in ("b", "batch"):
            found = [i for i, d in enumerate(dims) if d.kind == BATCH]
        elif low in ("t", "time"):
            found = [i for i, d in enumerate(dims) if d.kind == TIME][:1]
        elif low in ("f", "feature"):
            found = [i for i, d in enumerate(dims) if d.kind == FEATURE]
        elif low == "spatial":
            found = [i for i, d in enumerate(dims) if d.kind in (TIME, SPATIAL)]
        elif low == "static":
            found = [i for i, d in enumerate(dims) if d.kind == SPATIAL]
        elif low.startswith("stag:") or (text.startswith("T(") and text.endswith(")")):
            tag = text[5:] if low.startswith("stag:") else text[2:-1]
            found = [i for i, d in enumerate(dims) if d.kind == TIME and d.tag == tag]
        elif low.startswith("dim:"):
            try:
                size = int(text[4:])
            except ValueError:
                size = -1
            found = [i for i, d in enumerate(dims) if d.kind in (SPATIAL, FEATURE) and d.size == size][:1]
        else:
            found = []
    if not found:
        raise ctx.error(f"`{option}: {desc}` names no axis of {shape}", option, "shape.axis")
    return found


def resolve_axis(ctx, shape: Shape, desc, option: str) -> int:
    """Exactly one axis index."""
    found = resolve_axes(ctx, shape, desc, option)
    if len(found) != 1:
        raise ctx.error(f"`{option}: {desc}` must name one axis of {shape}, names {len(found)}",
                        option, "shape.axis")
    return found[0]
