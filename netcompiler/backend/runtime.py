"""What a layer's builder sees when it runs: `CallContext`.

Every tensor has exactly the axes of its inferred `Shape`, batch-major; sparse data is int32
without a feature axis. Lengths of dynamic axes are looked up by `Dim` identity.
TensorFlow is imported lazily (this module is imported only when compiling).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from netcompiler.core.dims import BATCH, Dim, Shape, time_dim
from netcompiler.frontend.layer_context import LayerContext


class CallContext(LayerContext):
    """Inputs, options, variables and lengths of one layer call. `ref(option)` is the tensor
    of the layer an option names, `ref_shape(option)` its Shape (see `netcompiler.frontend.layer_context`).

    Attributes:
      name: the layer's full name; opts: its config dict; out_shape: its inferred Shape.
      sources / source_shapes: the `from` inputs (a list already concatenated on the feature
        axis unless the rule set `concat_sources = False`).
      params: variables by parameter name (`W`, `b`, `QKV`, ...).
      training: Python bool (the forward pass is traced once per value).
    """

    def __init__(
        self,
        name: str,
        layer_class: str,
        opts: dict,
        sources: list,
        source_shapes: list[Shape],
        out_shape: Shape,
        refs: dict[str, tuple[Any, Shape]],
        params: dict[str, tf.Variable],
        training: bool,
        lengths: dict[Dim, Any],
        in_rec: bool = False,
        loop_dim: Dim | None = None,
        state: dict | None = None,
        seed: int | None = None,
        source_opts: list[dict] | None = None,
        step_seed=None,
        source_names: list[str] | None = None,
    ):
        self.name = name
        self.layer_class = layer_class
        self.opts = opts
        self.sources = sources
        self.source_shapes = source_shapes
        self.out_shape = out_shape
        self._refs = refs
        self.params = params
        self.training = training
        self._lengths = lengths
        self.in_rec = in_rec
        self.loop_dim = loop_dim
        self.state = state if state is not None else {}
        #: inside a decoder loop: the step index (int32 scalar tensor) and the loop's maximum
        #: number of steps (the size of preallocated buffers); None elsewhere
        self.step = None
        self.max_steps = None
        self.seed = seed
        #: int64 scalar tensor that changes every training step (None: draw dropout masks
        #: from the global RNG); with the layer's `seed` it makes dropout reproducible
        self.step_seed = step_seed
        #: the references of the `from` inputs as written (`enc`, `base:enc`, `data:classes`)
        self.source_names = source_names if source_names is not None else ["input"] * len(sources)
        #: the options of each `from` input's layer ({} for extern data)
        self.source_opts = source_opts if source_opts is not None else [{} for _ in sources]
        #: the full layer name of each `from` input (None for extern data); set by make_context
        self.source_layers: list[str | None] = [None] * len(sources)
        #: the forward pass's final cell states ((c, h) / (h,) by layer name, recorded by cells
        #: run over time, read by `get_last_hidden_state`); None where not recorded (in a loop)
        self.final_states: dict | None = None

    # -- options and inputs (`opt`: LayerContext) -----------------------------------------------
    @property
    def source(self):
        if len(self.sources) != 1:
            raise ValueError(f"{self.name}: expected one input, got {len(self.sources)}")
        return self.sources[0]

    @property
    def source_shape(self) -> Shape:
        return self.source_shapes[0]

    # what shape-time helpers (plans a builder re-runs, e.g. resolving `axis`) use of a
    # ShapeContext (`source_names`, LayerContext's `describe` and `error`); the layer was
    # validated, so their errors are not expected here

    def new_time_dim(self, tag: str | None = None) -> Dim:
        """A fresh time axis (for a re-run plan; the layer's real output axes are `out_shape`)."""
        return time_dim(tag or self.name)

    def ref(self, option: str):
        """The tensor of the layer a layer-valued option names; None if the option is absent."""
        got = self._refs.get(option)
        return None if got is None else got[0]

    def ref_shape(self, option: str) -> Shape | None:
        """The Shape of the layer a layer-valued option names; None if the option is absent."""
        got = self._refs.get(option)
        return None if got is None else got[1]

    def dropout(
        self,
        x,
        rate: float,
        salt: int = 0,
        broadcast: list[bool] | None = None,
        loop_broadcast: bool = False,
    ):
        """Dropout while training (identity otherwise). With a `step_seed` the mask is a pure
        function of (layer seed, salt, step seed, and inside a loop the step `self.step` unless
        `loop_broadcast`): a resumed run draws the same masks. `broadcast` (per axis of `x`):
        True where the mask has size 1, i.e. is the same along that axis (see
        `layers._common_opts.noise_broadcast`); None: every entry its own noise."""
        if not self.training or not rate or not x.dtype.is_floating:
            return x
        noise_shape = None
        if broadcast is not None and any(broadcast):
            dyn = tf.shape(x)
            noise_shape = tf.stack([1 if bc else dyn[i] for i, bc in enumerate(broadcast)])
        if self.step_seed is None:
            return tf.nn.dropout(x, rate=rate, noise_shape=noise_shape)
        return tf.nn.experimental.stateless_dropout(
            x, rate=rate, seed=self.random_seed(salt, loop_broadcast), noise_shape=noise_shape
        )

    def random_seed(self, salt: int = 0, loop_broadcast: bool = False):
        """The int64 [2] seed of a stateless random op (`tf.random.stateless_*`), drawn as
        dropout masks are: a pure function of (layer seed, salt, step seed, and inside a loop
        the step unless `loop_broadcast`), so a resumed run draws the same numbers. Without a
        `step_seed` (e.g. `net(..., training=True)`) a fresh seed from the global RNG."""
        if self.step_seed is None:
            return tf.random.uniform([2], maxval=2**62, dtype=tf.int64)
        step_seed = tf.cast(self.step_seed, tf.int64)
        if self.step is not None and not loop_broadcast:
            step_seed = step_seed * 1000003 + tf.cast(self.step, tf.int64)
        return tf.stack([tf.constant((self.seed or 0) + 7919 * salt, tf.int64), step_seed])

    # -- lengths and masks ----------------------------------------------------------------------
    def lengths(self, dim: Dim):
        """int32 [B] lengths of a dynamic axis."""
        try:
            return self._lengths[dim]
        except KeyError:
            raise KeyError(f"{self.name}: no lengths known for axis {dim}") from None

    def batch_size(self):
        """The run-time batch size (from an input with a batch axis, else any known lengths)."""
        for x, shape in zip(self.sources, self.source_shapes):
            for i, d in enumerate(shape.dims):
                if d.kind == BATCH:
                    return tf.shape(x)[i]
        for lengths in self._lengths.values():
            return tf.shape(lengths)[0]
        raise ValueError(f"{self.name}: no input with a batch axis to take the batch size from")

    def has_lengths(self, dim: Dim) -> bool:
        return dim in self._lengths

    def set_lengths(self, dim: Dim, lengths) -> None:
        """Register the lengths of a time axis this layer creates."""
        self._lengths[dim] = tf.cast(lengths, tf.int32)

    def time_mask(self, shape: Shape, dim: Dim, tensor=None, axis: int | None = None):
        """bool mask, rank len(shape.dims): True at valid frames of `dim`; size 1 on all axes
        except batch and `dim` (broadcasts against a tensor of that shape). `axis` picks one
        of repeated axes (e.g. the second T of a [T, T, F] table); default the first."""
        return time_mask(shape, dim, self.lengths(dim), tensor, axis)

    def valid_mask(self, shape: Shape, tensor=None):
        """bool mask of the frames valid on every dynamic time axis of `shape` (or None)."""
        mask = None
        for axis, d in enumerate(shape.dims):
            if d.kind != "time" or d not in self._lengths:
                continue
            m = self.time_mask(shape, d, tensor, axis)
            mask = m if mask is None else tf.logical_and(mask, m)
        return mask


def time_mask(shape: Shape, dim: Dim, lengths, tensor=None, axis: int | None = None):
    """See `CallContext.time_mask`. `tensor` (optional) gives the run-time size of the axis."""
    if axis is None:
        axis = shape.index(dim)
    maxlen = tf.shape(tensor)[axis] if tensor is not None else tf.reduce_max(lengths)
    mask = tf.sequence_mask(lengths, maxlen=maxlen)  # [B, T]
    batch_axis = shape.batch_axis
    new_shape = [1] * len(shape.dims)
    if batch_axis is None:
        # no batch axis (e.g. a [T, T, F] table): valid where any sequence is valid
        new_shape[axis] = -1
        return tf.reshape(tf.reduce_any(mask, axis=0), new_shape)
    if batch_axis == 0 and axis == 1:  # [B, T, ...]: the common layout, in the fewest ops
        for _ in range(len(shape.dims) - 2):
            mask = tf.expand_dims(mask, -1)
        return mask
    if batch_axis > axis:
        mask = tf.transpose(mask)
    new_shape[batch_axis] = -1
    new_shape[axis] = maxlen
    return tf.reshape(mask, tf.stack(new_shape))
