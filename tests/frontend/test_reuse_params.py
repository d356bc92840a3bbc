"""`reuse_params` (one layer uses another's variables) and networks without an `output` layer,
as RETURNN allows them."""

from __future__ import annotations

import numpy as np
import pytest

from netcompiler.frontend.validate import validate


def net(**second) -> dict:
    return {
        "extern_data": {
            "data": {"dim": 4},
            "classes": {"dim": 3, "sparse": True, "same_time_as": "data"},
        },
        "network": {
            "a": {"class": "linear", "from": "data", "n_out": 4},
            "b": {"class": "linear", "from": "a", "n_out": 4, **second},
            "out": {"class": "softmax", "from": "b", "loss": "ce"},
        },
    }


def test_shared_variables_count_once():
    result = validate(net(reuse_params="a"))
    assert not result.errors, [d.full_message() for d in result.errors]
    assert result.inferred.param_count("b") == 0
    assert result.inferred.total_params == 4 * 4 + 4 + 4 * 3 + 3


@pytest.mark.parametrize(
    "second, fragment",
    [
        ({"n_out": 5, "reuse_params": "a"}, "needs the variables"),
        ({"reuse_params": {"reuse_layer": "a", "map": {"W": None}}}, "only sharing all variables"),
    ],
)
def test_unfit_reuse_is_an_error(second, fragment):
    result = validate(net(**second))
    [d] = result.errors
    assert d.rule == "shape.reuse-params" and d.dotted_path == "network.b.reuse_params"
    assert fragment in d.message


def test_reuse_of_a_later_layer_is_no_cycle():
    # `a` reuses the variables of `b`, which reads `a`: a dependency through variables only
    cfg = net()
    cfg["network"]["a"]["reuse_params"] = "b"
    result = validate(cfg)
    assert not result.errors, [d.full_message() for d in result.errors]


def test_no_output_layer_needed_when_a_layer_has_a_loss():
    result = validate(net())
    assert not result.errors  # `out` carries the loss
    bare = {
        "extern_data": {"data": {"dim": 4}},
        "network": {"a": {"class": "linear", "from": "data", "n_out": 4}},
    }
    assert [d.rule for d in validate(bare).errors] == ["graph.no-output"]


def test_shared_variables_at_run_time():
    pytest.importorskip("tensorflow")
    import netcompiler

    compiled = netcompiler.compile(net(reuse_params="a"))
    assert compiled.layer_params["b"]["W"] is compiled.layer_params["a"]["W"]
    assert "b/W" not in compiled.variables_by_name
    assert compiled.output_name == "out"
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    out = compiled(inputs={"data": x}, lengths={"data": [3, 2]}, fetch=["a", "b"])
    W = compiled.variables_by_name["a/W"].numpy()
    bias = compiled.variables_by_name["a/b"].numpy()
    a = x @ W + bias
    np.testing.assert_allclose(np.asarray(out["a"][0])[0], a[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["b"][0])[0], (a @ W + bias)[0], rtol=1e-5, atol=1e-6)
