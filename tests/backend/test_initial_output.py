"""`initial_output`: what `prev:x` reads at step 0 of a rec unit (number, zeros/ones, var, or a
layer of the enclosing network)."""

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

EXTERN = {"data": {"dim": 4}}


def _config(init, n=3, extra=None):
    network = {
        "init": {"class": "linear", "from": "last", "n_out": n, "activation": "tanh"},
        "last": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
        "dec": {
            "class": "rec",
            "from": "data",
            "unit": {
                "s": {
                    "class": "linear",
                    "from": ["prev:s", "data:source"],
                    "n_out": n,
                    "activation": "tanh",
                    "initial_output": init,
                },
                "output": {"class": "copy", "from": "s"},
            },
        },
        "output": {"class": "copy", "from": "dec"},
    }
    network.update(extra or {})
    return {"extern_data": EXTERN, "network": network}


def test_initial_output_layer_must_fit_the_step_shape():
    result = validate(
        _config("base:init", n=3, extra={"init": {"class": "linear", "from": "last", "n_out": 5}})
    )
    [d] = result.errors
    assert d.rule == "shape.initial-output"
    assert "`base:init` is [B, F=5]" in d.message and "[B, F=3] per step" in d.message
    assert d.dotted_path == "network.dec.unit.s.initial_output"
    result = validate(_config("base:nope"))
    assert [d.rule for d in result.errors] == ["graph.unknown-layer"]


def test_initial_output_var_is_a_parameter():
    result = validate(_config("var"))
    assert not result.errors
    assert result.inferred.params["dec/s"]["initial_output"].shape == (3,)


tf = pytest.importorskip("tensorflow")


def _unrolled(net, x, lens, s0):
    """The unit's loop written out in NumPy: s_t = tanh([s_{t-1}, x_t] W + b)."""
    W, b = net.variable("dec/s/W").numpy(), net.variable("dec/s/b").numpy()
    out = np.zeros((x.shape[0], x.shape[1], W.shape[1]))
    for i in range(x.shape[0]):
        s = s0[i]
        for t in range(lens[i]):
            s = np.tanh(np.concatenate([s, x[i, t]]) @ W + b)
            out[i, t] = s
    return out


@pytest.mark.parametrize("init", ["base:init", "var", 0.5, "ones"])
def test_loop_starts_from_the_initial_output(init):
    import netcompiler

    cfg = _config(init)
    # every layer of the unit reads prev:, so it stays in the loop either way
    net = netcompiler.compile(cfg, seed=3)
    if init == "var":
        net.variable("dec/s/initial_output").assign([0.3, -0.2, 0.1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    lens = np.array([5, 3, 1], np.int32)
    got = net(inputs={"data": x}, lengths={"data": lens}, fetch=["output", "init"])
    if init == "base:init":
        s0 = got["init"][0].numpy()
    elif init == "var":
        s0 = np.tile([0.3, -0.2, 0.1], (3, 1))
    else:
        s0 = np.full((3, 3), 1.0 if init == "ones" else init)
    want = _unrolled(net, x, lens, s0)
    values = got["output"][0].numpy()
    for i, n in enumerate(lens):
        np.testing.assert_allclose(values[i, :n], want[i, :n], atol=1e-5)
