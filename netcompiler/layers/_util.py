"""Small helpers shared by shape rules."""
from __future__ import annotations

from ..dims import Shape


def n_out_or_target(ctx, option: str = "n_out") -> int:
    """`n_out`, or the number of classes of the `target` (as RETURNN infers it)."""
    n_out = ctx.opt(option)
    if n_out is not None:
        return int(n_out)
    target = ctx.opt("target")
    if isinstance(target, str):
        shape = ctx.extern(target)
        if shape is not None and shape.feature_size is not None:
            return int(shape.feature_size)
    raise ctx.error(f"`{ctx.layer.layer_class}` needs `n_out` (or a `target` to take it from)",
                    None, "shape.missing-option")


def input_features(ctx, shape: Shape, name: str = "from") -> int:
    """Feature size of an input (number of classes for sparse input, read as one-hot)."""
    size = shape.feature_size
    if size is None:
        raise ctx.error(f"input `{', '.join(ctx.source_names)}` {shape} has no feature axis",
                        name, "shape.no-feature")
    return int(size)
