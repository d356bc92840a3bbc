"""Decoder loops (`rec` with a unit dict): teacher forcing, move-out, in-loop self-attention,
attention decoders, beam search (netcompiler/loop.py)."""

import copy
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402

from markov_chain import markov_net  # noqa: E402

RNG = np.random.default_rng(1234)


def compile_cfg(cfg, move_out=True, rec="output"):
    cfg = copy.deepcopy(cfg)
    if not move_out:
        cfg["network"][rec]["optimize_move_layers_out"] = False
    return compile_network(cfg)


def while_ops(net, inputs, lengths, training, fetch):
    fn = net.get_function(tuple(sorted(inputs)), tuple(fetch), training)
    tensors, lens = net.prepare_inputs(inputs, lengths)
    graph = fn.get_concrete_function(tensors, lens).graph

    def count(g):
        n = 0
        for op in g.get_operations():
            if op.type in ("While", "StatelessWhile"):
                n += 1
        for f in getattr(g, "_functions", {}).values():
            n += count(f.graph) if hasattr(f, "graph") else 0
        return n

    return count(graph)


# -- a small attention encoder-decoder (generic attention formulation) ----------------------------
ATT_DEC = {
    "extern_data": {"data": {"dim": 5, "sparse": True}, "classes": {"dim": 6, "sparse": True}},
    "network": {
        "enc": {"class": "linear", "from": "data", "n_out": 8, "activation": "tanh"},
        "enc_ctx": {"class": "linear", "from": "enc", "n_out": 7, "with_bias": False},
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": 12,
            "unit": {
                "emb": {"class": "linear", "from": "prev:output", "n_out": 4, "with_bias": False},
                "s": {"class": "rnn_cell", "unit": "lstm", "from": ["emb", "prev:att"], "n_out": 7},
                "energy": {
                    "class": "dot",
                    "from": ["base:enc_ctx", "s"],
                    "red1": "F",
                    "red2": "F",
                    "var1": "T",
                    "var2": None,
                },
                "att_weights": {
                    "class": "softmax_over_spatial",
                    "from": "energy",
                    "energy_factor": 0.5,
                },
                "att": {
                    "class": "generic_attention",
                    "from": [],
                    "weights": "att_weights",
                    "base": "base:enc",
                },
                "output_prob": {
                    "class": "softmax",
                    "from": ["s", "att"],
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


def att_batch():
    B, Te, Td = 3, 6, 5
    x = RNG.integers(0, 5, size=(B, Te))
    xl = np.array([6, 4, 2])
    y = RNG.integers(0, 6, size=(B, Td))
    yl = np.array([5, 3, 4])
    return x, xl, y, yl


def np_softmax(e, axis=-1):
    e = e - e.max(axis=axis, keepdims=True)
    p = np.exp(e)
    return p / p.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def unrolled_att_decoder(net, x, xl, y):
    """The decoder, unrolled in Python/NumPy with the network's weights."""
    v = {k: var.numpy() for k, var in net.variables_by_name.items()}
    enc = np.tanh(v["enc/W"][x] + v["enc/b"])  # [B, Te, 8]
    enc_ctx = enc @ v["enc_ctx/W"]
    B, Te = x.shape
    Td = y.shape[1]
    n = 7
    c = np.zeros((B, n))
    h = np.zeros((B, n))
    att = np.zeros((B, 8))
    prev_label = np.zeros(B, int)
    mask = np.arange(Te)[None] < xl[:, None]
    probs, weights = [], []
    for t in range(Td):
        emb = v["output/emb/W"][prev_label]
        inp = np.concatenate([emb, att], -1)
        gates = inp @ v["output/s/W"] + v["output/s/b"] + h @ v["output/s/W_re"]
        i, j, f, o = np.split(gates, 4, -1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        energy = np.einsum("bjd,bd->bj", enc_ctx, h) * 0.5
        energy = np.where(mask, energy, -1e30)
        w = np_softmax(energy) * mask
        att = np.einsum("bj,bjv->bv", w, enc)
        logits = (
            np.concatenate([h, att], -1) @ v["output/output_prob/W"] + v["output/output_prob/b"]
        )
        probs.append(np_softmax(logits))
        weights.append(w)
        prev_label = y[:, t]
    return np.stack(probs, 1), np.stack(weights, 1)


@pytest.mark.parametrize("move_out", [True, False])
def test_attention_decoder_equals_unrolled_loop(move_out):
    net = compile_cfg(ATT_DEC, move_out)
    x, xl, y, yl = att_batch()
    out = net(
        {"data": x, "classes": y},
        {"data": xl, "classes": yl},
        training=True,
        fetch=["output", "output/output_prob", "output/att_weights"],
    )
    probs, lens = out["output/output_prob"]
    np.testing.assert_array_equal(lens.numpy(), yl)
    ref_probs, ref_w = unrolled_att_decoder(net, x, xl, y)
    w = out["output/att_weights"][0].numpy()
    assert w.shape == (3, 5, 6)
    for b in range(3):
        L = yl[b]
        np.testing.assert_allclose(probs.numpy()[b, :L], ref_probs[b, :L], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(w[b, :L], ref_w[b, :L], rtol=1e-4, atol=1e-5)
        assert np.all(w[b, :L, xl[b] :] == 0)  # encoder padding masked
    # teacher forcing: the choice's stacked output is the target
    np.testing.assert_array_equal(out["output"][0].numpy(), y)


def test_move_out_same_outputs_and_gradients():
    x, xl, y, yl = att_batch()
    results = []
    for move_out in (True, False):
        net = compile_cfg(ATT_DEC, move_out)
        with tf.GradientTape() as tape:
            tensors, lens = net.prepare_inputs(
                {"data": x, "classes": y}, {"data": xl, "classes": yl}
            )
            out = net.forward(tensors, lens, training=True, fetch=["output/output_prob"])
            p, _ = out["output/output_prob"]
            mask = tf.sequence_mask(yl, 5, dtype=tf.float32)
            ce = -tf.reduce_sum(tf.math.log(tf.gather(p, y, batch_dims=2)) * mask)
        names = sorted(net.variables_by_name)
        grads = tape.gradient(ce, [net.variables_by_name[n] for n in names])
        results.append(
            (ce.numpy(), dict(zip(names, [tf.convert_to_tensor(g).numpy() for g in grads])))
        )
    (ce1, g1), (ce2, g2) = results
    np.testing.assert_allclose(ce1, ce2, rtol=1e-5)
    assert g1.keys() == g2.keys()
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-6, err_msg=k)


# -- in-loop self-attention (12ax-like unit without recurrence) -----------------------------------
SA_UNIT = {
    "extern_data": {
        "data": {"dim": 9, "sparse": True},
        "classes": {"dim": 2, "sparse": True, "same_time_as": "data"},
    },
    "network": {
        "embed": {"class": "linear", "from": "data", "n_out": 16, "with_bias": False},
        "rec_att": {
            "class": "rec",
            "from": "embed",
            "unit": {
                "pos": {
                    "class": "positional_encoding",
                    "from": "data:source",
                    "add_to_input": True,
                },
                "att": {
                    "class": "self_attention",
                    "from": "pos",
                    "n_out": 16,
                    "num_heads": 2,
                    "total_key_dim": 8,
                    "attention_left_only": True,
                },
                "att_res": {"class": "combine", "kind": "add", "from": ["att", "pos"]},
                "output": {"class": "linear", "from": "att_res", "n_out": 8, "activation": "tanh"},
            },
        },
        "output": {"class": "softmax", "from": "rec_att", "loss": "ce", "target": "classes"},
    },
}


def test_in_loop_self_attention_equals_full_sequence_causal():
    B, T = 4, 9
    x = RNG.integers(0, 9, size=(B, T))
    xl = np.array([9, 6, 3, 1])
    inputs, lengths = {"data": x}, {"data": xl}
    full = compile_cfg(SA_UNIT, True, rec="rec_att")  # moved out: full-sequence causal layer
    step = compile_cfg(SA_UNIT, False, rec="rec_att")  # step by step, k/v buffers as state
    fetch = ["rec_att", "rec_att/att"]
    a = full(inputs, lengths, fetch=fetch)
    b = step(inputs, lengths, fetch=fetch)
    for name in fetch:
        va, vb = a[name][0].numpy(), b[name][0].numpy()
        assert va.shape == vb.shape == (B, T, 16 if name.endswith("/att") else 8)
        np.testing.assert_array_equal(b[name][1].numpy(), xl)
        for i in range(B):
            np.testing.assert_allclose(va[i, : xl[i]], vb[i, : xl[i]], rtol=1e-4, atol=1e-5)
    # a unit without recurrence builds no while loop; the step-by-step one does
    assert while_ops(full, inputs, lengths, False, ("rec_att",)) == 0
    assert while_ops(step, inputs, lengths, False, ("rec_att",)) >= 1


def test_in_loop_self_attention_gradients_match():
    B, T = 3, 7
    x = RNG.integers(0, 9, size=(B, T))
    xl = np.array([7, 4, 2])
    grads = []
    for move_out in (True, False):
        net = compile_cfg(SA_UNIT, move_out, rec="rec_att")
        with tf.GradientTape() as tape:
            tensors, lens = net.prepare_inputs({"data": x}, {"data": xl})
            y, _ = net.forward(tensors, lens, training=True, fetch=["rec_att"])["rec_att"]
            loss = tf.reduce_sum(y * tf.sequence_mask(xl, T, dtype=tf.float32)[:, :, None])
        names = sorted(net.variables_by_name)
        g = tape.gradient(loss, [net.variables_by_name[n] for n in names])
        grads.append(
            {n: tf.convert_to_tensor(v).numpy() for n, v in zip(names, g) if v is not None}
        )
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-5, err_msg=k)


# -- rnn_cell steps = rec LSTM over time ----------------------------------------------------------
@pytest.mark.parametrize("unit", ["lstm", "gru"])
def test_rnn_cell_steps_equal_rec_over_time(unit):
    cfg = {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "whole": {"class": "rec", "unit": unit, "from": "data", "n_out": 5},
            "loop": {
                "class": "rec",
                "from": "data",
                "optimize_move_layers_out": False,
                "unit": {
                    "output": {"class": "rnn_cell", "unit": unit, "from": "data:source", "n_out": 5}
                },
            },
            "output": {"class": "copy", "from": ["whole", "loop"]},
        },
    }
    net = compile_network(cfg)
    for p in ("W", "W_re", "b"):
        net.variable(f"loop/output/{p}").assign(net.variable(f"whole/{p}"))
    net.variable("whole/b").assign(RNG.normal(size=net.variable("whole/b").shape))
    net.variable("loop/output/b").assign(net.variable("whole/b"))
    x = RNG.normal(size=(3, 6, 3)).astype(np.float32)
    xl = np.array([6, 4, 1])
    out = net({"data": x}, {"data": xl}, fetch=["whole", "loop"])
    a, b = out["whole"][0].numpy(), out["loop"][0].numpy()
    for i in range(3):
        np.testing.assert_allclose(a[i, : xl[i]], b[i, : xl[i]], rtol=1e-5, atol=1e-6)


# -- beam search on a hand-built model (tests/markov_chain.py) ---------------------------------
def test_beam_search_finds_better_sequence_than_greedy():
    net = markov_net()
    x = np.zeros((2, 3, 2), np.float32)
    greedy = net.search({"data": x}, beam_size=1)
    beam = net.search({"data": x}, beam_size=2, n_best=2)
    assert len(greedy) == len(beam) == 2
    for g, bm in zip(greedy, beam):
        assert len(g) == 1 and list(g[0]["labels"]) == [1] and g[0]["length"] == 1
        assert math.isclose(g[0]["log_prob"], math.log(0.6 * 0.34), rel_tol=1e-4)
        assert [list(h["labels"]) for h in bm] == [[2], [1]]  # best first
        assert math.isclose(bm[0]["log_prob"], math.log(0.4 * 0.9), rel_tol=1e-4)
        assert math.isclose(bm[1]["log_prob"], math.log(0.6 * 0.34), rel_tol=1e-4)
        assert bm[0]["score"] >= bm[1]["score"]
    # a plain forward without the target searches with the layer's beam_size (2)
    out = net({"data": x}, fetch=["output"])
    labels, lens = out["output"]
    np.testing.assert_array_equal(lens.numpy(), [1, 1])
    np.testing.assert_array_equal(labels.numpy()[:, :2], [[2, 0], [2, 0]])


def test_search_stops_at_max_seq_len_and_keeps_ended():
    net = markov_net()
    # never end: EOS impossible after 1 and 2
    t = np.array([[1e-6, 0.6, 0.4], [1e-9, 0.5, 0.5], [1e-9, 0.5, 0.5]])
    net.variable("output/output_prob/W").assign(np.log(t).astype(np.float32))
    res = net.search({"data": np.zeros((1, 2, 2), np.float32)}, beam_size=2, n_best=2)
    assert [h["length"] for h in res[0]] == [6, 6]


# -- every example decoder config: training (teacher forcing) and search ---------------------------
DECODERS = [
    "reverse_dot_attention",
    "reverse_concat_attention",
    "base_convert_attention",
    "copy_gauss_window",
    "12ax_rec_self_attention",
]


@pytest.mark.parametrize("name", DECODERS)
def test_example_decoder_configs_train_and_search(name):
    net = compile_network(f"configs/{name}.yaml")
    B = 3
    n_in = net.extern_shapes["data"].sparse_dim
    n_cls = net.extern_shapes["classes"].sparse_dim
    x = RNG.integers(1, n_in, size=(B, 7))
    xl = np.array([7, 5, 3])
    if name.startswith("12ax"):
        y = RNG.integers(0, n_cls, size=(B, 7))
        out = net(
            {"data": x, "classes": y},
            {"data": xl, "classes": xl},
            training=True,
            fetch=["output", "rec_att", "rec_att/att"],
        )
        assert out["rec_att"][0].shape == (B, 7, 32)
        assert out["rec_att/att"][0].shape == (B, 7, 32)
        np.testing.assert_array_equal(out["rec_att"][1].numpy(), xl)
        out = net({"data": x}, {"data": xl}, training=False, fetch=["output"])
        assert np.all(np.isfinite(out["output"][0].numpy()))
        return
    y = RNG.integers(1, n_cls, size=(B, 5))
    y[:, -1] = 0
    yl = np.array([5, 4, 2])
    out = net(
        {"data": x, "classes": y},
        {"data": xl, "classes": yl},
        training=True,
        fetch=["output", "output/output_prob"],
    )
    probs, lens = out["output/output_prob"]
    assert probs.shape == (B, 5, n_cls)
    np.testing.assert_array_equal(lens.numpy(), yl)
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["output"][0].numpy(), y)
    # search: end layer or max_seq_len
    out = net({"data": x}, {"data": xl}, training=False, fetch=["output"])
    labels, lens = out["output"]
    max_len = net.network.layers["output"].opts["max_seq_len"]
    assert labels.shape[0] == B and labels.shape[1] <= max_len
    assert np.all(lens.numpy() <= max_len)
    hyps = net.search({"data": x}, {"data": xl}, beam_size=2, n_best=2)
    assert len(hyps) == B and all(len(h) == 2 for h in hyps)
    assert all(h[0]["score"] >= h[1]["score"] for h in hyps)


def test_fetch_attention_weights_stacked_base_convert():
    net = compile_network("configs/base_convert_attention.yaml")
    x = RNG.integers(1, 10, size=(2, 6))
    xl = np.array([6, 3])
    y = np.array([[1, 2, 1, 0], [2, 0, 0, 0]])
    yl = np.array([4, 2])
    out = net(
        {"data": x, "classes": y},
        {"data": xl, "classes": yl},
        training=True,
        fetch=["output/att_weights", "output/att"],
    )
    w, lens = out["output/att_weights"]
    assert w.shape == (2, 4, 6)
    np.testing.assert_array_equal(lens.numpy(), yl)
    w = w.numpy()
    np.testing.assert_allclose(w[1, :2, :3].sum(-1), 1.0, rtol=1e-5)
    assert np.all(w[1, :2, 3:] == 0)


def test_move_out_plan():
    from netcompiler.backend.loop.plan import plan_unit

    net = compile_network(ATT_DEC)
    rec = net.network.layers["output"]
    names = lambda ls: sorted(layer.local_name for layer in ls)  # noqa: E731
    train = plan_unit(net, rec, {"output", "output_prob"}, search=False)
    # teacher forcing: the choice (= the target) and its embedding leave the loop
    assert names(train.moved_out) == ["emb", "output"]
    assert names(train.in_loop) == ["att", "att_weights", "energy", "output_prob", "s"]
    assert train.prev_needed == {"output/att"}  # prev:output is the shifted target, outside
    search = plan_unit(net, rec, {"output", "end"}, search=True)
    assert search.moved_out == [] and search.search_choice.local_name == "output"
    off = compile_cfg(ATT_DEC, move_out=False)
    assert plan_unit(off, off.network.layers["output"], {"output"}, search=False).moved_out == []


def test_search_fetches_sub_layers_backtracked():
    net = compile_network(ATT_DEC)
    x, xl, _, _ = att_batch()
    out = net(
        {"data": x}, {"data": xl}, fetch=["output", "output/att_weights", "output/output_prob"]
    )
    labels, lens = out["output"]
    w, wl = out["output/att_weights"]
    p, _ = out["output/output_prob"]
    np.testing.assert_array_equal(lens.numpy(), wl.numpy())
    T = labels.shape[1]
    assert w.shape == (3, T, 6) and p.shape == (3, T, 6)
    lab, pn = labels.numpy(), p.numpy()
    for b in range(3):
        for t in range(int(lens[b])):
            # the chosen label of the best hypothesis is scored by its own (backtracked) step
            assert pn[b, t, lab[b, t]] > 0


@pytest.mark.parametrize("move_out", [True, False])
def test_base_data_in_a_unit_is_the_whole_sequence(move_out):
    """`base:data` inside a rec unit reads extern `data` as the enclosing network sees it (the
    whole sequence), unlike `data:data` (the current frame); a masked mean over its time axis
    is the same at every step."""
    cfg = {
        "extern_data": {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}},
        "network": {
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "unit": {
                    "att": {"class": "reduce", "mode": "mean", "axis": "T", "from": "base:data"},
                    "s": {
                        "class": "linear",
                        "from": ["att", "prev:s"],
                        "n_out": 4,
                        "activation": "tanh",
                    },
                    "output": {"class": "softmax", "from": "s", "target": "classes", "loss": "ce"},
                },
            }
        },
    }
    net = compile_cfg(cfg, move_out)
    x = RNG.normal(size=(2, 7, 6)).astype(np.float32)
    x[1, 3:] = 1e3  # padding: must not be read
    xl, yl = np.array([7, 3], np.int32), np.array([4, 2], np.int32)
    y = RNG.integers(0, 5, size=(2, 4)).astype(np.int32)
    out = net(
        inputs={"data": x, "classes": y},
        lengths={"data": xl, "classes": yl},
        training=True,
        fetch=["output/s"],
    )
    got = out["output/s"][0].numpy()
    W, b = net.variable("output/s/W").numpy(), net.variable("output/s/b").numpy()
    for i in range(2):
        mean = x[i, : xl[i]].mean(axis=0)
        s = np.zeros(4, np.float32)
        for t in range(yl[i]):
            s = np.tanh(np.concatenate([mean, s]) @ W + b)
            np.testing.assert_allclose(got[i, t], s, rtol=1e-5, atol=1e-5)
