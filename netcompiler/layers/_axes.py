"""Axis descriptions in options (`axis`, `axes`, `red1`, `var1`, ...), resolved against a Shape,
as RETURNN's `Data.get_axes_from_description` defines them (case-insensitive):

- `B` / `batch`: the batch axis. `*`: every axis, batch included.
- `T` / `time`: the time axis (the first dynamic axis); an error without one (inside a rec unit
  shapes are per step and have no time axis). `T?`: the time axis if there is one, else none.
- `F` / `feature` / `non_spatial`: the feature axis (sparse data has none).
- A combination of the letters b, t, f (`BT`, `TF`, `BTF`): those axes.
- `spatial`: every axis but batch and feature (time axes and static non-feature axes);
  `spatial:i` / `s:i`: the i-th of them (negative counts from the end);
  `spatial_except_time`: those without the time axis.
- `dyn` / `dynamic`: every dynamic axis but batch; `dyn:i` / `d:i`: the i-th of them.
- `static`: every static axis, the feature axis included; `static:i`: the i-th of them.
- `except_batch`: every axis but batch; `except_batch:i`: the i-th of them;
  `except_time`: every axis but batch and time.
- `stag:NAME`: the time axis tagged NAME (an extern data key or the layer that made the axis),
  else the one time/static non-feature axis whose RETURNN description contains NAME
  (`time:var:extern_data:KEY`, `spatial2:static3:KEY`); `T(NAME)`: the time axis tagged NAME.
  `tag:NAME`: as `stag:` but any axis (`feature` matches the feature axis).
- `dim:N`: the one static axis of size N.
- an integer: a position counted without the batch axis (negative from the end).
"""

from __future__ import annotations

import re

from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, TIME, Dim, Shape

_INDEXED = re.compile(r"^(s|spatial|d|dyn|dynamic|static|except_batch):(-?\d+)$")


def returnn_description(dim: Dim) -> str:
    """RETURNN's description of an axis (what `stag:NAME` matches by substring)."""
    if dim.description:
        return dim.description
    if dim.kind == BATCH:
        return "batch"
    if dim.kind == TIME:
        return f"time:var:{dim.tag}"
    if dim.kind == FEATURE:
        return "feature"
    tag = "" if dim.tag in ("", "S") else f":{dim.tag}"
    return f"spatial:static{dim.size}{tag}"


def _by_tag_name(ctx, shape: Shape, name: str, option: str, desc, spatial_only: bool) -> list[int]:
    dims = shape.dims
    candidates = [
        i
        for i, d in enumerate(dims)
        if d.kind in ((TIME, SPATIAL) if spatial_only else (TIME, SPATIAL, FEATURE))
    ]
    exact = [i for i in candidates if dims[i].kind == TIME and dims[i].tag == name]
    if exact:
        return exact[:1]
    low = name.lower()
    found = [i for i in candidates if low in returnn_description(dims[i]).lower()]
    if len(found) > 1:
        names = ", ".join(f"{dims[i]} (`{returnn_description(dims[i])}`)" for i in found)
        raise ctx.error(
            f"`{option}: {desc}` is ambiguous in {shape}: it matches {names}",
            option,
            "shape.axis",
            hint="write more of the axis description",
        )
    return found


def _pick(ctx, shape: Shape, axes: list[int], index: int, option: str, desc) -> list[int]:
    if -len(axes) <= index < len(axes):
        return [axes[index]]
    raise ctx.error(f"`{option}: {desc}`: {shape} has {len(axes)} such axes", option, "shape.axis")


def _describe(ctx, shape: Shape, text: str, option: str) -> list[int] | None:
    """Indices for one string description; None when it names no axis (the caller reports)."""
    dims = shape.dims
    low = text.lower()
    n = range(len(dims))
    batch = [i for i in n if dims[i].kind == BATCH]
    times = [i for i in n if dims[i].kind == TIME]
    spatial = [i for i in n if dims[i].kind in (TIME, SPATIAL)]
    static = [i for i in n if dims[i].kind in (SPATIAL, FEATURE)]
    except_batch = [i for i in n if dims[i].kind != BATCH]
    if low in ("b", "batch"):
        return batch
    if low in ("t", "time"):
        return times[:1]
    if low == "t?":
        return times[:1]
    if low in ("f", "feature", "non_spatial"):
        return [i for i in n if dims[i].kind == FEATURE]
    if low == "*":
        return list(n)
    if low == "spatial":
        return spatial
    if low == "spatial_except_time":
        return spatial[:] if not times else [i for i in spatial if i != times[0]]
    if low in ("dyn", "dynamic"):
        return times
    if low == "static":
        return static
    if low == "except_batch":
        return except_batch
    if low == "except_time":
        return [i for i in except_batch if i not in times[:1]]
    m = _INDEXED.match(low)
    if m:
        kind, index = m.group(1), int(m.group(2))
        axes = {
            "s": spatial,
            "spatial": spatial,
            "d": times,
            "dyn": times,
            "dynamic": times,
            "static": static,
            "except_batch": except_batch,
        }[kind]
        return _pick(ctx, shape, axes, index, option, text)
    if low.startswith("dim:"):
        try:
            size = int(text[4:])
        except ValueError:
            return None
        found = [i for i in n if dims[i].kind in (SPATIAL, FEATURE) and dims[i].size == size]
        if len(found) > 1:
            raise ctx.error(
                f"`{option}: {text}` is ambiguous: {shape} has {len(found)} axes of size {size}",
                option,
                "shape.axis",
                hint="name the axis another way (`F`, `static:i`, `stag:NAME`)",
            )
        return found
    if low.startswith("stag:"):
        return _by_tag_name(ctx, shape, text[5:], option, text, spatial_only=True)
    if low.startswith("tag:"):
        return _by_tag_name(ctx, shape, text[4:], option, text, spatial_only=False)
    if text.startswith("T(") and text.endswith(")"):
        return [i for i in times if dims[i].tag == text[2:-1]]
    if low and all(c in "btf" for c in low):
        out: list[int] = []
        for c in low:
            got = _describe(ctx, shape, c, option)
            if not got:
                return None
            out += [i for i in got if i not in out]
        return out
    return None


def resolve_axes(ctx, shape: Shape, desc, option: str) -> list[int]:
    """Axis indices (into `shape.dims`) that `desc` names; raises a ShapeError otherwise.
    Only `T?` may name no axis."""
    if isinstance(desc, (list, tuple)):
        out: list[int] = []
        for d in desc:
            for i in resolve_axes(ctx, shape, d, option):
                if i not in out:
                    out.append(i)
        return out
    dims = shape.dims
    found: list[int] | None
    if isinstance(desc, bool):
        found = None
    elif isinstance(desc, int):
        batch_at = next((i for i, d in enumerate(dims) if d.kind == BATCH), None)
        others = [i for i in range(len(dims)) if i != batch_at]
        found = [others[desc]] if -len(others) <= desc < len(others) else None
    else:
        text = str(desc).strip()
        if text.lower() == "t?":
            return _describe(ctx, shape, text, option)
        found = _describe(ctx, shape, text, option)
    if not found:
        low = str(desc).lower()
        hint = None
        if low in ("t", "time") and getattr(ctx, "in_rec", False):
            hint = (
                "inside a rec unit shapes are per step: the loop's time axis is not an axis "
                "here; use `T?` to allow no time axis"
            )
        elif low in ("t", "time"):
            hint = "use `T?` to allow data without a time axis"
        elif low in ("f", "feature") and shape.sparse:
            hint = (
                f"sparse data (class indices, {shape.sparse_dim} classes) has no feature "
                f"axis; `linear`/`activation` with `n_out` make dense data"
            )
        raise ctx.error(
            f"`{option}: {desc}` names no axis of {shape}", option, "shape.axis", hint=hint
        )
    return found


def resolve_axis(ctx, shape: Shape, desc, option: str) -> int:
    """Exactly one axis index."""
    found = resolve_axes(ctx, shape, desc, option)
    if len(found) != 1:
        raise ctx.error(
            f"`{option}: {desc}` must name one axis of {shape}, names {len(found)}",
            option,
            "shape.axis",
        )
    return found[0]
