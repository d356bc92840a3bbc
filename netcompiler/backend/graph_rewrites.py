"""Which of Grappler's graph rewrites netcompiler's compiled functions get (the training and
evaluation steps, the forward functions, beam search): without those made for GPUs, on a
machine without one.

TensorFlow rewrites a function's graph (Grappler: constant folding, arithmetic simplification,
fusions, loop optimisation, ...) when it first runs it. Three of its passes work for GPUs only:
the layout optimiser (NCHW data formats for GPU convolutions), the memory optimiser (swapping
GPU memory to the host, recomputation to save GPU memory) and the implementation selector
(cuDNN or generic implementations of Keras RNN functions, which netcompiler does not use). On
a CPU they change nothing and cost time before the first step: on the 6-block encoder of
`benchmarks/vs_returnn.py` (2800 nodes) about 0.2 s of the 1.2 s Grappler spends, with the
same step time after. Measured pass by pass (`benchmarks/train_step_parts.py`, 2-core CPU):
turning Grappler off altogether saves 0.7 s on that first step and leaves that step's time as
it is, but costs 4 % per step on a small encoder (`configs/transformer_encoder.yaml`) and
5-23 % on decoders with loops (`configs/reverse_dot_attention.yaml`); so the other passes stay.

`CpuTunedFunction` calls its function with thread-local call options (the process's global
optimizer options are left alone, so other functions, and a process that sees a GPU, are
unaffected).
"""

from __future__ import annotations

import contextlib
from typing import Any


def cpu_call_options():
    """This thread's function-call options without Grappler's GPU-only passes, or None when a
    GPU is visible (or this TensorFlow does not offer these options)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return None
    try:
        from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - a TensorFlow without these modules
        return None
    current = context.context().function_call_options
    config = config_pb2.ConfigProto.FromString(current.config_proto_serialized)
    rewriter = rewriter_config_pb2.RewriterConfig
    options = config.graph_options.rewrite_options
    options.layout_optimizer = rewriter.OFF
    options.memory_optimization = rewriter.NO_MEM_OPT
    options.implementation_selector = rewriter.OFF
    return context.FunctionCallOptions(executor_type=current.executor_type, config_proto=config)


@contextlib.contextmanager
def function_call_options(options):
    """Run the body with `options` as this thread's function-call options."""
    from tensorflow.python.eager import context

    ctx = context.context()
    previous = ctx.function_call_options
    ctx.function_call_options = options
    try:
        yield
    finally:
        ctx.function_call_options = previous


class CpuTunedFunction:
    """A `tf.function`, called with `cpu_call_options` (chosen at its first call; always the
    same options after, so TensorFlow instantiates and rewrites it once). Everything else
    (e.g. `get_concrete_function`) is the wrapped function's: `function`."""

    def __init__(self, function):
        self.function = function
        self._options: Any = None
        self._chosen = False

    @property
    def call_options(self):
        """The options its calls run with (None: TensorFlow's); chosen at the first call."""
        if not self._chosen:
            self._options, self._chosen = cpu_call_options(), True
        return self._options

    def __call__(self, *args):
        options = self.call_options
        if options is None:
            return self.function(*args)
        with function_call_options(options):
            return self.function(*args)

    def __getattr__(self, name: str):
        if name == "function":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.function, name)
