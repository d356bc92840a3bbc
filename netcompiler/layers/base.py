"""The interface every layer class implements: its shape rule and its parameters.

A layer class is one module in `netcompiler/layers/` holding a `LayerRule` subclass (found
automatically by the registry) and one schema file `schemas/layers/<class>.schema.json`.
The shape rule runs without TensorFlow; the builder (see `netcompiler.build`) imports
TensorFlow only when a network is compiled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..dims import Shape

if TYPE_CHECKING:  # pragma: no cover
    from ..shapes import ShapeContext


@dataclass(frozen=True)
class ParamSpec:
    """A variable of a layer: `<layer>/<name>` with this shape and initialiser."""

    shape: tuple[int, ...]
    init: Any = "glorot_uniform"
    trainable: bool = True
    dtype: str = "float32"
    #: a state variable whose shape changes between calls (`shape` is its initial shape);
    #: never trained, not counted as a parameter
    dynamic: bool = False

    @property
    def size(self) -> int:
        if self.dynamic:
            return 0
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


class ShapeError(Exception):
    """Raised by a shape rule; the driver turns it into a located diagnostic."""

    def __init__(self, message: str, option: str | None = None, rule: str = "shape",
                 hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.option = option
        self.rule = rule
        self.hint = hint


class LayerRule:
    """Base class of the per-class rules. Subclasses set `layer_class` and implement `infer`."""

    layer_class: ClassVar[str] = ""
    #: concatenate a list in `from` on the feature axis before `infer` sees it (`ctx.source`);
    #: False for layers whose inputs play different roles (combine, dot, eval, ...).
    concat_sources: ClassVar[bool] = True
    #: the inputs are broadcast against each other (combine, eval, compare): while `prev:`
    #: cycles are resolved, an input whose shape is not known yet is neutral
    broadcasts_sources: ClassVar[bool] = False
    #: options (besides `from`) whose values name layers, e.g. ("base", "base_ctx").
    layer_options: ClassVar[tuple[str, ...]] = ()
    #: for deprecated classes: the explicit formulation that replaces them.
    deprecated: ClassVar[str | None] = None
    #: the input when `from` is absent (None: no input, e.g. `generic_attention`).
    default_from: ClassVar[str | None] = "data"
    #: True if the layer may appear only inside a `rec` unit (e.g. `choice` with search).
    rec_only: ClassVar[bool] = False

    def infer(self, ctx: "ShapeContext") -> Shape:
        """Output shape of the layer from its inputs' shapes and options."""
        raise NotImplementedError

    def params(self, ctx: "ShapeContext", out: Shape) -> dict[str, ParamSpec]:
        """The layer's variables by parameter name (`W`, `b`, `QKV`, ...)."""
        return {}

    def guess_step_shape(self, ctx: "ShapeContext") -> Shape | None:
        """A shape known without inputs, used to break `prev:` cycles; None if unknown."""
        n_out = ctx.opts.get("n_out")
        if isinstance(n_out, int) and not isinstance(n_out, bool):
            return ctx.batch_shape(n_out)
        return None


class NoStepGuess:
    """Mixin: no `prev:` shape guess (an `n_out` option only checks the output's feature size,
    it does not give the shape of a step); put it before `LayerRule` in the bases."""

    def guess_step_shape(self, ctx: "ShapeContext") -> Shape | None:
        return None


class GuessIsInfer:
    """Mixin for layers without inputs (`constant`, `variable`): the `prev:` guess is the shape
    itself; put it before `LayerRule` in the bases."""

    def guess_step_shape(self, ctx: "ShapeContext") -> Shape | None:
        try:
            return self.infer(ctx)
        except ShapeError:
            return None
