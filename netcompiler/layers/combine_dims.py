"""`combine_dims`: merges static axes into the feature axis (one feature axis of the product).

`axes` is a list of axes, or `static` (all static non-feature axes); the feature axis is always
part of the merge, in input order (the first axis outermost): `[B, S=3, F=32]` with
`axes: static` -> `[B, F=96]`.
"""

from __future__ import annotations

from netcompiler.core.dims import FEATURE, SPATIAL, Shape
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import src_desc
from netcompiler.layers.merge_dims import MergeDimsRule


class CombineDimsRule(MergeDimsRule):
    """`merge_dims` whose axes always include the feature axis."""

    layer_class = "combine_dims"

    @staticmethod
    def axes(ctx, src: Shape) -> list[int]:
        if src.feature is None:
            raise ctx.error(
                f"`combine_dims` merges into the feature axis, but {src_desc(ctx)} has none",
                "from",
                "shape.no-feature",
                hint="use `merge_dims` for data without a feature axis",
            )
        desc = ctx.opt("axes")
        if isinstance(desc, str) and desc.lower() == "static":
            found = [i for i, d in enumerate(src.dims) if d.kind == SPATIAL]
        else:
            found = resolve_axes(ctx, src, desc, "axes")
        feat = next(i for i, d in enumerate(src.dims) if d.kind == FEATURE)
        return sorted(set(found) | {feat})
