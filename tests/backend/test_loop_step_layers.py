"""Step-indexed layers inside a decoder loop equal their whole-sequence form: the same unit
run step by step (`optimize_move_layers_out: false`) and with the loop optimisation (which moves
out what it can; a `relative_positional_encoding` key_shift keeps its self-attention in the
loop)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402


def _config(move_out: bool) -> dict:
    unit = {
        "pos": {"class": "positional_encoding", "from": "data:source", "add_to_input": True},
        "rel": {"class": "relative_positional_encoding", "from": "pos", "n_out": 2, "clipping": 2},
        "att": {
            "class": "self_attention",
            "from": "pos",
            "n_out": 4,
            "num_heads": 2,
            "total_key_dim": 4,
            "attention_left_only": True,
            "key_shift": "rel",
        },
        "output": {"class": "combine", "kind": "add", "from": ["att", "pos"]},
    }
    return {
        "extern_data": {"data": {"dim": 4}},
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": unit,
                "optimize_move_layers_out": move_out,
            }
        },
    }


def test_positional_encodings_and_self_attention_per_step_equal_the_sequence_form():
    stepwise = netcompiler.compile(_config(False), seed=4)
    whole = netcompiler.compile(_config(True), seed=4)
    for name, var in stepwise.variables_by_name.items():
        np.testing.assert_array_equal(var.numpy(), whole.variable(name).numpy())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 4)).astype(np.float32)
    lens = np.array([9, 5, 2], np.int32)
    a = stepwise(inputs={"data": x}, lengths={"data": lens})["output"][0].numpy()
    b = whole(inputs={"data": x}, lengths={"data": lens})["output"][0].numpy()
    for i, n in enumerate(lens):
        np.testing.assert_allclose(a[i, :n], b[i, :n], atol=1e-5)
    # the step-by-step network really runs a loop
    graph = stepwise.get_function(("data",), ("output",), False).get_concrete_function().graph
    assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
