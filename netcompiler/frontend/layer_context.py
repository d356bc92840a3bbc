"""`LayerContext`: what a layer rule sees of one layer, in either phase.

A rule's `infer` (shape inference, no TensorFlow) gets a `netcompiler.frontend.shapes.ShapeContext`; its
`call` (building, TensorFlow) gets a `netcompiler.backend.runtime.CallContext`. Both derive from
`LayerContext`, which holds what the two phases share: `opt` (an option, with the schema's
default), `describe` and `error` (so shape-time helpers that a builder re-runs, e.g. resolving
`axis`, work with either context).

Layer-valued options (`base`, `weights`, `position`, ...) read differently in the two phases,
and the names say so:

- `ref_shape(option)`: the `Shape` of the layer the option names, in both contexts;
- `ref(option)`: what the phase works with -- the `Shape` while inferring shapes
  (`ShapeContext.ref`, the same as `ref_shape`), the *tensor* while building
  (`CallContext.ref`).

Light: no TensorFlow."""

from __future__ import annotations

from typing import Any

from netcompiler.core.config_types import LayerOptions
from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import ShapeError
from netcompiler.frontend.schema import option_default

#: `opt`'s marker for "no default given": fall back to the schema's default
MISSING: Any = object()


class LayerContext:
    """The base of `ShapeContext` and `CallContext`. Subclasses set `name` (the layer's full
    name), `layer_class` and `opts` (its config dict) and implement `ref` and `ref_shape`."""

    name: str
    layer_class: str
    opts: LayerOptions

    # -- options --------------------------------------------------------------------------------
    def opt(self, name: str, default: Any = MISSING) -> Any:
        """An option's value; if absent, `default`, else the default in the class's schema."""
        if name in self.opts:
            return self.opts[name]
        if default is not MISSING:
            return default
        return option_default(self.layer_class, name)

    # -- layer-valued options (see the module docstring) ----------------------------------------
    def ref(self, option: str) -> Any:
        """The layer a layer-valued option names, as the phase sees it (a Shape while inferring
        shapes, a tensor while building); None if the option is absent."""
        raise NotImplementedError

    def ref_shape(self, option: str) -> Shape | None:
        """The Shape of the layer a layer-valued option names; None if the option is absent."""
        raise NotImplementedError

    # -- messages -------------------------------------------------------------------------------
    @staticmethod
    def describe(name: str, shape: Shape) -> str:
        """A layer (or input) and its shape, as messages write it: "`name` [B,T,F:3]"."""
        return f"`{name}` {shape}"

    @staticmethod
    def error(
        message: str, option: str | None = None, rule: str = "shape", hint: str | None = None
    ) -> ShapeError:
        """The ShapeError to raise (`raise ctx.error(...)`); the shape driver locates it at the
        layer (and `option`) and reports it as a diagnostic with rule id `rule`."""
        return ShapeError(message, option, rule, hint)
