"""The shape of a `from` list of several inputs: concatenated on the feature axis. Shared by
shape inference (`netcompiler.frontend.shapes`) and the builders. No TensorFlow."""

from __future__ import annotations

from netcompiler.core.dims import Shape, feature_dim, same_axes
from netcompiler.core.layer_rule import ShapeError


def concat_features(shapes: list[Shape], names: list[str]) -> Shape:
    """Inputs of a `from` list, concatenated on the feature axis (other axes must match)."""
    if len(shapes) == 1:
        return shapes[0]
    first = shapes[0]
    sizes: list[int] = []
    for name, s in zip(names, shapes):
        size = None if s.sparse else s.feature_size  # (a feature axis always has a size)
        if size is None:
            raise ShapeError(
                f"cannot concatenate `{name}` {s} on the feature axis: it has no feature axis",
                "from",
                "shape.concat",
            )
        sizes.append(size)
    for name, s in zip(names, shapes):
        if not same_axes(s.non_feature_dims, first.non_feature_dims):
            raise ShapeError(
                f"cannot concatenate inputs whose axes differ: `{names[0]}` {first} and "
                f"`{name}` {s}",
                "from",
                "shape.concat",
            )
    total = sum(sizes)
    return Shape(first.non_feature_dims + (feature_dim(total),))
