"""Moving unit layers out *after* a decoder loop (netcompiler/loop.py): with teacher forcing,
layers the recurrence does not need (e.g. the `output_prob` softmax) are computed once over the
stacked in-loop outputs. Outputs, losses and gradients equal the step-by-step loop
(`optimize_move_layers_out: false`); searching keeps them in the loop."""

import copy
import os

import numpy as np
import pytest
import yaml

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402
from netcompiler.backend.loop.plan import unit_placement  # noqa: E402
from netcompiler.training.losses import compute_loss  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("reverse_dot_attention", "base_convert_attention", "copy_gauss_window")


def load(name: str) -> dict:
    with open(os.path.join(HERE, "..", "configs", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def compile_cfg(cfg: dict, move_out: bool):
    cfg = copy.deepcopy(cfg)
    cfg["network"]["output"]["optimize_move_layers_out"] = move_out
    return compile_network(cfg, seed=7)


def batch(cfg: dict, seed: int = 0):
    rng = np.random.default_rng(seed)
    ext = cfg["extern_data"]
    x_len = np.array([7, 3, 5, 1], np.int32)
    y_len = np.array([6, 4, 1, 5], np.int32)
    x = rng.integers(0, ext["data"]["dim"], size=(4, int(x_len.max())))
    y = rng.integers(0, ext["classes"]["dim"], size=(4, int(y_len.max())))
    return {"data": x, "classes": y}, {"data": x_len, "classes": y_len}


def unit_layers(cfg: dict) -> list[str]:
    return [f"output/{k}" for k in cfg["network"]["output"]["unit"]]


def loss_and_grads(net, inputs, lengths):
    tensors, lens = net.prepare_inputs(inputs, lengths)
    with tf.GradientTape() as tape:
        out = net.forward(tensors, lens, training=True, fetch=("output/output_prob",))
        values, vlens = out["output/output_prob"]
        lv = compute_loss("ce", values, vlens, tensors["classes"], lens["classes"])
    names = sorted(net.variables_by_name)
    grads = tape.gradient(lv.loss, [net.variables_by_name[n] for n in names])
    return float(lv.loss), {
        n: tf.convert_to_tensor(g).numpy() for n, g in zip(names, grads) if g is not None
    }


def assert_same_valid_frames(a, b, lens, name):
    assert a.shape == b.shape, name
    for i, n in enumerate(lens):
        np.testing.assert_allclose(a[i, :n], b[i, :n], atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("name", CONFIGS)
def test_training_outputs_and_gradients_equal_the_step_by_step_loop(name):
    cfg = load(name)
    on, off = compile_cfg(cfg, True), compile_cfg(cfg, False)
    for k, var in on.variables_by_name.items():
        np.testing.assert_array_equal(var.numpy(), off.variable(k).numpy())
    # where the layers run: the softmax after the loop while training, inside while searching
    train_place = unit_placement(on, "output", fetch=["output_prob"])
    assert "output/output_prob" in train_place.after
    assert "output/s" in train_place.in_loop and "output/att" in train_place.in_loop
    assert not train_place.after & train_place.in_loop
    search_place = unit_placement(on, "output", search=True)
    assert "output/output_prob" in search_place.in_loop and not search_place.after
    off_place = unit_placement(off, "output", fetch=["output_prob"])
    assert not off_place.after and not off_place.before
    assert "output/output_prob" in off_place.in_loop

    inputs, lengths = batch(cfg)
    fetch = unit_layers(cfg)
    a = on(inputs, lengths, training=True, fetch=fetch)
    b = off(inputs, lengths, training=True, fetch=fetch)
    for layer in fetch:
        np.testing.assert_array_equal(a[layer][1].numpy(), lengths["classes"])
        np.testing.assert_array_equal(b[layer][1].numpy(), lengths["classes"])
        assert_same_valid_frames(
            a[layer][0].numpy(), b[layer][0].numpy(), lengths["classes"], layer
        )
    # the trainer's fetch (only the loss layer) and its gradients
    ce_on, g_on = loss_and_grads(on, inputs, lengths)
    ce_off, g_off = loss_and_grads(off, inputs, lengths)
    np.testing.assert_allclose(ce_on, ce_off, rtol=1e-6, atol=1e-5)
    assert g_on.keys() == g_off.keys() and g_on
    for k in g_on:
        np.testing.assert_allclose(g_on[k], g_off[k], atol=1e-5, rtol=0, err_msg=k)


@pytest.mark.parametrize("name", CONFIGS)
def test_search_hypotheses_unchanged(name):
    cfg = load(name)
    cfg["network"]["output"]["max_seq_len"] = 12
    on, off = compile_cfg(cfg, True), compile_cfg(cfg, False)
    rng = np.random.default_rng(3)
    for k, var in on.variables_by_name.items():  # sharper distributions than the init
        w = (rng.standard_normal(var.shape) * 1.5).astype(np.float32)
        var.assign(w)
        off.variable(k).assign(w)
    inputs, lengths = batch(cfg, seed=1)
    inputs, lengths = {"data": inputs["data"]}, {"data": lengths["data"]}
    h_on = on.search(inputs, lengths, beam_size=3, n_best=2)
    h_off = off.search(inputs, lengths, beam_size=3, n_best=2)
    assert len(h_on) == len(h_off) == 4
    for seq_on, seq_off in zip(h_on, h_off):
        assert len(seq_on) == len(seq_off) == 2
        for x, y in zip(seq_on, seq_off):
            np.testing.assert_array_equal(x["labels"], y["labels"])
            assert x["length"] == y["length"]
            np.testing.assert_allclose(x["score"], y["score"], atol=1e-5)


# -- a unit with a chain of after-loop layers: prev: of an in-loop layer, prev: of an after-loop
# layer, a moved-out-before input and an encoder (base:) input --------------------------------
CHAIN = {
    "extern_data": {"data": {"dim": 5, "sparse": True}, "classes": {"dim": 6, "sparse": True}},
    "network": {
        "enc": {"class": "linear", "from": "data", "n_out": 8, "activation": "tanh"},
        "enc_last": {"class": "reduce", "from": "enc", "mode": "mean", "axis": "T"},
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": 12,
            "unit": {
                "emb": {"class": "linear", "from": "prev:output", "n_out": 4, "with_bias": False},
                "s": {"class": "rnn_cell", "unit": "lstm", "from": ["emb", "prev:att"], "n_out": 7},
                "att": {
                    "class": "linear",
                    "from": ["s", "base:enc_last"],
                    "n_out": 5,
                    "activation": "tanh",
                },
                "h": {
                    "class": "linear",
                    "from": ["s", "prev:att", "emb", "base:enc_last"],
                    "n_out": 6,
                    "activation": "tanh",
                },
                "h2": {"class": "combine", "kind": "add", "from": ["h", "prev:h"]},
                "h3": {"class": "layer_norm", "from": "h2"},
                "output_prob": {
                    "class": "softmax",
                    "from": ["h3", "att"],
                    "loss": "ce",
                    "target": "classes",
                },
                "output": {
                    "class": "choice",
                    "from": "output_prob",
                    "target": "classes",
                    "beam_size": 3,
                },
                "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
            },
        },
    },
}


def test_chain_of_after_loop_layers():
    cfg = CHAIN
    on, off = compile_cfg(cfg, True), compile_cfg(cfg, False)
    place = unit_placement(on, "output", fetch=["output_prob"])
    assert place.after == {"output/h", "output/h2", "output/h3", "output/output_prob"}
    assert place.in_loop == {"output/s", "output/att"}
    assert place.before == {"output/output", "output/emb"}
    inputs, lengths = batch({"extern_data": cfg["extern_data"]}, seed=5)
    fetch = unit_layers(cfg)
    a = on(inputs, lengths, training=True, fetch=fetch)
    b = off(inputs, lengths, training=True, fetch=fetch)
    for layer in fetch:
        assert_same_valid_frames(
            a[layer][0].numpy(), b[layer][0].numpy(), lengths["classes"], layer
        )
    ce_on, g_on = loss_and_grads(on, inputs, lengths)
    ce_off, g_off = loss_and_grads(off, inputs, lengths)
    np.testing.assert_allclose(ce_on, ce_off, rtol=1e-6, atol=1e-5)
    assert g_on.keys() == g_off.keys()
    for k in g_on:
        np.testing.assert_allclose(g_on[k], g_off[k], atol=1e-5, rtol=0, err_msg=k)
