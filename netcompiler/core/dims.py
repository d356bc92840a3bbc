"""Axes with identity, and shapes built from them (no TensorFlow here).

A `Dim` is one axis. Dynamic axes (time axes) have an identity: the time axis of `data` and the
time axis of `classes` are different `Dim` objects unless declared the same, even when they happen
to have the same length. Static axes are matched by size. Shapes are always reasoned about with
these identities, never by position alone.

At run time a tensor has exactly the axes of its `Shape`, in that order (batch-major); the
lengths of each dynamic axis are looked up by its `Dim`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

BATCH = "batch"
TIME = "time"  # dynamic axis with per-sequence lengths
SPATIAL = "spatial"  # static non-feature axis
FEATURE = "feature"


@dataclass(frozen=True, eq=False)
class Dim:
    """One axis. Compared by identity (`is`); use `matches` for the matching rule."""

    kind: str
    size: int | None = None
    tag: str = ""
    #: RETURNN's description of the axis (`time:var:extern_data:data`), matched by `stag:NAME`;
    #: empty: derived from kind, size and tag (see `layers._axes.returnn_description`)
    description: str = ""

    def matches(self, other: Dim) -> bool:
        """Same axis: the same object; static axes of the same kind also match by size."""
        if self is other:
            return True
        if self.kind != other.kind:
            return False
        if self.kind == BATCH:
            return True
        if self.kind in (SPATIAL, FEATURE):
            return self.size == other.size
        return False

    @property
    def dynamic(self) -> bool:
        return self.kind in (BATCH, TIME)

    def __str__(self) -> str:
        if self.kind == BATCH:  # another batch: `B(in:chunks)`, the chunks of `time_chunking`
            return "B" if self.tag in ("batch", "") else f"B({self.tag})"
        if self.kind == TIME:
            return f"T({self.tag})"
        if self.kind == FEATURE:
            return f"F={self.size}"
        return f"S={self.size}"

    __repr__ = __str__


BATCH_DIM = Dim(BATCH, None, "batch")


def time_dim(tag: str, description: str = "") -> Dim:
    return Dim(TIME, None, tag, description)


def feature_dim(size: int) -> Dim:
    return Dim(FEATURE, int(size), "F")


def spatial_dim(size: int, tag: str = "S", description: str = "") -> Dim:
    return Dim(SPATIAL, int(size), tag, description)


@dataclass(frozen=True)
class Shape:
    """The output of a layer: its axes (batch-major), and sparse/dtype information.

    Dense data ends with a feature axis (`F=n`); sparse data (class indices, int32) has no
    feature axis and `sparse_dim` classes.
    """

    dims: tuple[Dim, ...]
    sparse_dim: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))

    # -- queries ------------------------------------------------------------------------------
    @property
    def sparse(self) -> bool:
        return self.sparse_dim is not None

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def has_batch(self) -> bool:
        return any(d.kind == BATCH for d in self.dims)

    @property
    def batch_axis(self) -> int | None:
        """The index of the (first) batch axis; None without one."""
        return next((i for i, d in enumerate(self.dims) if d.kind == BATCH), None)

    @property
    def feature(self) -> Dim | None:
        if self.dims and self.dims[-1].kind == FEATURE:
            return self.dims[-1]
        return None

    @property
    def feature_size(self) -> int | None:
        """Features of dense data; number of classes of sparse data."""
        if self.sparse:
            return self.sparse_dim
        f = self.feature
        return f.size if f is not None else None

    @property
    def time_dims(self) -> list[Dim]:
        return [d for d in self.dims if d.kind == TIME]

    @property
    def time(self) -> Dim | None:
        """The first dynamic time axis, if any."""
        t = self.time_dims
        return t[0] if t else None

    @property
    def non_feature_dims(self) -> tuple[Dim, ...]:
        return self.dims[:-1] if self.feature is not None else self.dims

    def index(self, dim: Dim) -> int:
        for i, d in enumerate(self.dims):
            if d is dim:
                return i
        for i, d in enumerate(self.dims):
            if d.matches(dim):
                return i
        raise ValueError(f"{dim} not in {self}")

    def has(self, dim: Dim) -> bool:
        return any(d is dim for d in self.dims)

    # -- derived shapes -----------------------------------------------------------------------
    def with_feature(self, size: int) -> Shape:
        """Same non-feature axes, a dense feature axis of `size` (sparse input -> dense)."""
        return Shape(self.non_feature_dims + (feature_dim(size),), None, "float32")

    def without(self, dim: Dim) -> Shape:
        return replace(self, dims=tuple(d for d in self.dims if d is not dim))

    def with_dtype(self, dtype: str) -> Shape:
        return replace(self, dtype=dtype)

    def dense(self) -> Shape:
        return self if self.sparse_dim is None else self.with_feature(self.sparse_dim)

    def __str__(self) -> str:
        text = "[" + ", ".join(str(d) for d in self.dims) + "]"
        if self.sparse:
            text += f" sparse({self.sparse_dim})"
            if self.dtype not in ("int32",):
                text += f" {self.dtype}"
        elif self.dtype != "float32":
            text += f" {self.dtype}"
        return text

    __repr__ = __str__


def same_axes(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    return len(a) == len(b) and all(x.matches(y) for x, y in zip(a, b))


def same_shape(a: Shape, b: Shape) -> bool:
    """The same axes (matched as `same_axes` does), sparse classes and dtype."""
    return same_axes(a.dims, b.dims) and a.sparse_dim == b.sparse_dim and a.dtype == b.dtype


def broadcast_dims(shapes: Iterable[Shape]) -> tuple[Dim, ...] | None:
    """Union of the non-feature axes of several shapes, matched by identity (order of first
    appearance, batch first). Returns None if two static axes conflict."""
    out: list[Dim] = []
    for s in shapes:
        for d in s.non_feature_dims:
            if not any(o.matches(d) for o in out):
                out.append(d)
    out.sort(key=lambda d: 0 if d.kind == BATCH else 1)
    return tuple(out)
