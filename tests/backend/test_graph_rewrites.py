"""The options a training step runs with (`netcompiler.backend.graph_rewrites`): on a machine
without a GPU, Grappler's GPU-only passes are off for the step's calls only; the values are
those of the step run with TensorFlow's defaults."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2  # noqa: E402
from tensorflow.python.eager import context  # noqa: E402
from trainer_setup import first_train_batch, tiny_12ax_config, trainer_from_yaml  # noqa: E402

from netcompiler.backend import graph_rewrites  # noqa: E402
from netcompiler.backend.graph_rewrites import CpuTunedFunction, cpu_call_options  # noqa: E402

pytestmark = pytest.mark.tf

RC = rewriter_config_pb2.RewriterConfig


def current_config() -> config_pb2.ConfigProto:
    options = context.context().function_call_options
    return config_pb2.ConfigProto.FromString(options.config_proto_serialized)


def test_cpu_options_turn_off_the_gpu_passes_only():
    before = current_config()
    options = cpu_call_options()
    assert options is not None  # this machine has no GPU
    config = config_pb2.ConfigProto.FromString(options.config_proto_serialized)
    rewrites = config.graph_options.rewrite_options
    assert rewrites.layout_optimizer == RC.OFF
    assert rewrites.memory_optimization == RC.NO_MEM_OPT
    assert rewrites.implementation_selector == RC.OFF
    assert not rewrites.disable_meta_optimizer
    # everything else as the context has it
    for field in ("layout_optimizer", "memory_optimization", "implementation_selector"):
        config.graph_options.rewrite_options.ClearField(field)
        before.graph_options.rewrite_options.ClearField(field)
    assert config == before
    # building the options changes nothing outside them
    assert current_config().graph_options.rewrite_options.layout_optimizer != RC.OFF


def test_with_a_gpu_the_defaults_stay(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert cpu_call_options() is None
    step = CpuTunedFunction(lambda x: current_config())
    assert step(1) == current_config()


def test_the_options_hold_for_the_calls_only():
    seen = []

    def record(x):
        seen.append(current_config().graph_options.rewrite_options.layout_optimizer)
        if x == "fail":
            raise ValueError("boom")
        return x * 2

    step = CpuTunedFunction(record)
    outside = current_config()
    assert step(3) == 6
    with pytest.raises(ValueError):
        step("fail")
    assert seen == [RC.OFF, RC.OFF]
    assert current_config() == outside  # restored, also after the exception
    assert current_config().graph_options.rewrite_options.layout_optimizer != RC.OFF


def test_options_are_chosen_once(monkeypatch):
    calls = []
    real = graph_rewrites.cpu_call_options

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(graph_rewrites, "cpu_call_options", counted)
    step = CpuTunedFunction(lambda x: x)
    for i in range(3):
        step(i)
    assert len(calls) == 1


CONFIG = tiny_12ax_config(
    """
  embed: {class: linear, from: data, n_out: 8, with_bias: false}
  ln: {class: layer_norm, from: embed}
  hidden: {class: linear, from: ln, n_out: 8, activation: relu}
  output: {class: softmax, from: hidden, loss: ce, target: classes}
"""
)


def test_train_step_is_tuned_and_gives_the_values_of_the_default_step(tmp_path):
    tuned = trainer_from_yaml(tmp_path, CONFIG, "a")
    plain = trainer_from_yaml(tmp_path, CONFIG, "b")
    assert isinstance(tuned._train_fn, CpuTunedFunction) and isinstance(
        tuned._eval_fn, CpuTunedFunction
    )
    batch = first_train_batch(tuned)
    for _ in range(3):
        a = tuned._train_fn(batch).numpy()
        b = plain._train_fn.function(batch).numpy()  # TensorFlow's default options
        np.testing.assert_allclose(a, b, rtol=1e-6)
    for name, v in tuned.net.variables_by_name.items():
        np.testing.assert_allclose(
            v.numpy(), plain.net.variable(name).numpy(), rtol=1e-6, atol=1e-7, err_msg=name
        )


def test_xla_steps_are_not_wrapped(tmp_path):
    trainer = trainer_from_yaml(tmp_path, CONFIG + "  jit_compile: true\n", "x")
    assert not isinstance(trainer._train_fn, CpuTunedFunction)


def test_attributes_are_the_wrapped_functions():
    import copy

    fn = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([], tf.int32)])
    step = CpuTunedFunction(fn)
    assert int(step(tf.constant(1))) == 2
    assert step.experimental_get_tracing_count() == 1  # the wrapped function's
    assert copy.copy(step).function is fn
