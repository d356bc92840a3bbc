"""The interface every layer class implements: its shape rule and its parameters.

A layer class is one module in `netcompiler/layers/` holding a `LayerRule` subclass (found
automatically by the registry) and one schema file `schemas/layers/<class>.schema.json`.
The shape rule runs without TensorFlow; the builder (see `netcompiler.backend.build`) imports
TensorFlow only when a network is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from netcompiler.core.config_types import ConfigPath, LayerOptions
from netcompiler.core.dims import Shape
from netcompiler.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from netcompiler.frontend.shapes import ShapeContext


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


class ShapeError(UserError):
    """Raised by a shape rule; the driver turns it into a located diagnostic."""

    def __init__(
        self, message: str, option: str | None = None, rule: str = "shape", hint: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.option = option
        self.rule = rule
        self.hint = hint


#: options every layer class may use to name layers: `from` (default `default_from`),
#: `reuse_params` (shares variables) and `initial_output` (what `prev:` reads at step 0)
COMMON_LAYER_OPTIONS: tuple[str, ...] = ("from", "reuse_params", "initial_output")


class LayerRule:
    """Base class of the per-class rules. Subclasses set `layer_class` and implement `infer`
    (shape rule, no TensorFlow) and `call` (builder).

    The class attributes below are the layer class's *traits*: what the front end (references,
    shapes) and the decoder loop (`netcompiler.backend.loop.runner`) need to know about a class. Each has a
    default that fits a plain stateless layer, so a new class sets only the traits it has; the
    engine reads them from the rule (`get_rule(cls).stateful`), never from lists of class names.
    """

    layer_class: ClassVar[str] = ""
    #: concatenate a list in `from` on the feature axis before `infer` sees it (`ctx.source`);
    #: False for layers whose inputs play different roles (combine, dot, eval, ...).
    concat_sources: ClassVar[bool] = True
    #: the inputs are broadcast against each other (combine, eval, compare): while `prev:`
    #: cycles are resolved, an input whose shape is not known yet is neutral
    broadcasts_sources: ClassVar[bool] = False
    #: options besides the common ones (`COMMON_LAYER_OPTIONS`) whose string values name layers
    #: (`base`, `weights`, `position`, ...), in the order they are resolved. Only these (and the
    #: common ones) become references and graph edges of a layer of this class.
    layer_options: ClassVar[tuple[str, ...]] = ()
    #: for deprecated classes: the explicit formulation that replaces them.
    deprecated: ClassVar[str | None] = None
    #: the input when `from` is absent (None: no input, e.g. `generic_attention`).
    default_from: ClassVar[str | None] = "data"
    #: inside a rec unit the layer carries a state from step to step: it implements
    #: `initial_state` and `call_step` (`rnn_cell`, `self_attention`, `cum_concat`, `rec` with a
    #: cell unit); whether a given layer does is `carries_state` (default: only when its
    #: per-step output has no time axis)
    stateful: ClassVar[bool] = False
    #: its per-step output depends on the step number (`positional_encoding`): moved out of a
    #: loop it varies over the loop axis even when its inputs do not
    step_indexed: ClassVar[bool] = False
    #: always stays inside a decoder loop: its per-step form has no equivalent over the whole
    #: loop axis (`cum_concat`; `conv` / `pool` convolve every spatial axis, the loop axis too)
    loop_only: ClassVar[bool] = False
    #: position-wise (or element-wise) over every axis but the feature axis, no options naming
    #: axes, no per-step state: its output over stacked [B, T_loop, ...] inputs is, frame by
    #: frame, its per-step output, so the loop may compute it once *after* the loop
    position_wise: ClassVar[bool] = False
    #: the label decision of a beam search (`choice`): while searching it prunes the beam; in
    #: teacher forcing its value is the target frame (`target`), its inputs are not read
    chooses_labels: ClassVar[bool] = False
    #: inside a rec unit the layer runs its `unit` per step and keeps its previous output (and
    #: the unit's state) where `mask` is false: the loop calls `call_masked_step`
    #: (`masked_computation`)
    masked_step: ClassVar[bool] = False
    #: a `stateful` class whose state grows by a row each step (its `initial_state` is empty):
    #: inside a masked computation the loop cannot select the previous state where the mask is
    #: false (it has a row fewer) and asks `keep_state` instead
    state_grows: ClassVar[bool] = False
    #: `initial_output: apply(0)` (the layer applied to zeroed inputs) is supported; False for
    #: layers with a state or a search decision (`choice`, cells, `self_attention`)
    supports_apply_zero: ClassVar[bool] = True
    #: how the network a layer holds (`sub_network`) is built and run (`netcompiler.frontend.network`):
    #: "loop" (`rec`: a unit of its own, run step by step; read from outside as `rec/name`,
    #: stacked), "masked" (`masked_computation`: the one layer `NAME/unit`, run on the masked
    #: frames of the synthetic input `NAME/data:data`, see `sub_network_input`) or "inline"
    #: (`subnetwork`: its layers are layers `NAME/...` of the enclosing network, `data` their
    #: input); None: the class holds no network
    sub_network_kind: ClassVar[Literal["loop", "masked", "inline"] | None] = None
    #: maps a batch of chunks (`time_chunking`) back to the sequences' batch
    #: (`time_unchunking`): its output is not on its inputs' batch axis
    unchunks: ClassVar[bool] = False

    def infer(self, ctx: ShapeContext) -> Shape:
        """Output shape of the layer from its inputs' shapes and options."""
        raise NotImplementedError

    def params(self, ctx: ShapeContext, out: Shape) -> dict[str, ParamSpec]:
        """The layer's variables by parameter name (`W`, `b`, `QKV`, ...)."""
        return {}

    def guess_step_shape(self, ctx: ShapeContext) -> Shape | None:
        """A shape known without inputs, used to break `prev:` cycles; None if unknown."""
        n_out = ctx.opts.get("n_out")
        if isinstance(n_out, int) and not isinstance(n_out, bool):
            return ctx.batch_shape(n_out)
        return None

    # -- traits that depend on the layer ---------------------------------------------------------
    def carries_state(self, opts: LayerOptions, step_shape: Shape) -> bool:
        """Whether a layer of this class with these options and per-step output shape carries a
        state from step to step inside a rec unit: `stateful` classes over a per-step input
        without a time axis (over an input with a time axis the layer runs over that axis in
        every step, no state carried)."""
        return self.stateful and step_shape.time is None

    # -- structure (`netcompiler.frontend.network`) ------------------------------------------------------
    def sub_network(self, opts: LayerOptions) -> tuple[ConfigPath, dict[str, LayerOptions]] | None:
        """The network a layer with these options holds (`sub_network_kind`): (its config path
        below the layer's path, its layer dicts by name); None if it holds none (the default;
        e.g. `rec` with a cell `unit`)."""
        return None

    def sub_network_input(self, opts: LayerOptions) -> LayerOptions | None:
        """The options of the synthetic layer `NAME/data:data`, `data` inside the layer's
        network (its input), or None (no such layer, the default)."""
        return None

    def expression_option(self, opts: LayerOptions) -> str | None:
        """The option holding an `eval` expression (parsed once by the graph check), or None
        (the default)."""
        return None

    def sub_outputs(self, local: str, opts: LayerOptions) -> list[tuple[str, LayerOptions]]:
        """Synthetic layers of the same network that read this one, its sub-outputs (`split`:
        `NAME/0`, `NAME/1`, ...): [(local name, options)]; none by default."""
        return []

    # -- building (TensorFlow; the `CallContext` is `netcompiler.backend.runtime.CallContext`) --------
    def call(self, ctx: Any) -> Any:
        """The layer's output tensor from `ctx.sources`, `ctx.ref(option)` and `ctx.params`;
        inside a rec unit, one step of it (unless the layer `carries_state`)."""
        raise NotImplementedError(f"layer class `{self.layer_class}` has no builder")

    def initial_state(self, ctx: Any, batch_size: Any, max_steps: Any) -> Any:
        """`stateful` classes: the state before the first step of a decoder loop (a tensor or a
        nest of tensors on the batch `batch_size`; `max_steps` bounds preallocated buffers)."""
        raise NotImplementedError(f"layer class `{self.layer_class}` is not stateful")

    def call_step(self, ctx: Any, state: Any) -> tuple[Any, Any]:
        """`stateful` classes: one step inside a decoder loop, (output, new state)."""
        raise NotImplementedError(f"layer class `{self.layer_class}` is not stateful")

    def keep_state(self, keep: Any, new_state: Any, old_state: Any) -> Any:
        """`state_grows` classes inside a masked computation: the state after a step where
        `keep` ([B] bool, the mask) is true, and where it is false a state that acts as
        `old_state` (the state before the step) in the steps that follow."""
        raise NotImplementedError(f"layer class `{self.layer_class}` has no growing state")

    def call_masked_step(self, ctx: Any, prev: Any) -> Any:
        """`masked_step` classes: the step's output from `ctx` where the mask is true, else
        `prev` (the previous step's output)."""
        raise NotImplementedError(f"layer class `{self.layer_class}` has no masked step")


class NoStepGuess:
    """Mixin: no `prev:` shape guess (an `n_out` option only checks the output's feature size,
    it does not give the shape of a step); put it before `LayerRule` in the bases."""

    def guess_step_shape(self, ctx: ShapeContext) -> Shape | None:
        return None


class InfersShape(Protocol):
    """What `GuessIsInfer` needs of the rule it is mixed into: its shape rule."""

    def infer(self, ctx: ShapeContext) -> Shape: ...


class GuessIsInfer:
    """Mixin for layers without inputs (`constant`, `variable`): the `prev:` guess is the shape
    itself; put it before `LayerRule` in the bases."""

    def guess_step_shape(self: InfersShape, ctx: ShapeContext) -> Shape | None:
        try:
            return self.infer(ctx)
        except ShapeError:
            return None
