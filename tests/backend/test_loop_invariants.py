"""Loop-invariant work hoisted out of decoder loops (issue 12): `built_before_loop`, dot
attention zeroing a loop-invariant base's padding once before the loop, and the LSTM cell step
as one GEMM on [x, h] with the weights stacked before the loop."""

from collections import Counter

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.backend.loop.tensors import built_before_loop  # noqa: E402

RNG = np.random.default_rng(2026)


# -- built_before_loop ----------------------------------------------------------------------------
def loop_sum(v1, v2, steps, hoist):
    """sum over `steps` steps of sum(concat([v1, v2]) * (i + 1)), the concat per step or hoisted."""

    def body(i, acc):
        make = lambda: tf.concat([v1, v2], 0)  # noqa: E731
        both = built_before_loop(make) if hoist else make()
        return i + 1, acc + tf.reduce_sum(both * tf.cast(i + 1, tf.float32))

    return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]


def ops_by_place(graph_def):
    """(op types of the function's own graph, op types inside its library functions)."""
    top = [n.op for n in graph_def.node]
    inner = [n.op for f in graph_def.library.function for n in f.node_def]
    return top, inner


def test_built_before_loop_builds_in_the_outer_graph_and_computes_right():
    v1 = tf.Variable([1.0, 2.0])
    v2 = tf.Variable([3.0, -4.0, 5.0])
    fn = tf.function(lambda: loop_sum(v1, v2, tf.constant(3), hoist=True))
    np.testing.assert_allclose(fn().numpy(), 7.0 * (1 + 2 + 3), rtol=1e-6)
    top, inner = ops_by_place(fn.get_concrete_function().graph.as_graph_def())
    assert "ConcatV2" in top and "ConcatV2" not in inner
    assert any(op in ("While", "StatelessWhile") for op in top)
    # without hoisting the concat is in the body's function (so the check above can fail)
    plain = tf.function(lambda: loop_sum(v1, v2, tf.constant(3), hoist=False))
    top, inner = ops_by_place(plain.get_concrete_function().graph.as_graph_def())
    assert "ConcatV2" in inner and "ConcatV2" not in top


def test_built_before_loop_outside_a_loop_just_calls_make():
    calls = []

    def make():
        calls.append(tf.compat.v1.get_default_graph())
        return tf.constant(5.0)

    assert built_before_loop(make).numpy() == 5.0  # eager
    graph_fn = tf.function(lambda: built_before_loop(make))
    assert graph_fn().numpy() == 5.0
    fn_graph = graph_fn.get_concrete_function().graph
    assert calls[-1] is fn_graph  # built in the function's own graph, not an outer one
    assert "Const" in ops_by_place(fn_graph.as_graph_def())[0]


def test_built_before_loop_gradients_equal_the_unhoisted_loop():
    v1 = tf.Variable([0.5, -1.5])
    v2 = tf.Variable([2.0, 1.0, -3.0])

    @tf.function
    def grads(hoist):
        with tf.GradientTape() as tape:
            total = loop_sum(v1, v2, tf.constant(4), hoist)
            loss = total * total
        return loss, tape.gradient(loss, [v1, v2])

    (l_h, g_h), (l_p, g_p) = grads(True), grads(False)
    np.testing.assert_allclose(l_h.numpy(), l_p.numpy(), rtol=1e-6)
    # total = sum(v) * (1 + 2 + 3 + 4) = -10, so d(total^2)/dv = 2 total * 10 for every element
    total = (0.5 - 1.5 + 2.0 + 1.0 - 3.0) * 10.0
    np.testing.assert_allclose(l_h.numpy(), total**2, rtol=1e-6)
    expected = 2 * total * 10.0
    for a, b in zip(g_h, g_p):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
        np.testing.assert_allclose(a.numpy(), np.full(a.shape, expected), rtol=1e-5)


# -- dot attention over a poisoned base padding inside a decoder loop ------------------------------
def att_decoder_cfg(beam_size=3):
    """A tiny LSTM + dot-attention decoder whose `base` is exp(data W) (a linear layer keeps
    its padded frames as computed): input padding of 1e30 becomes inf there."""
    return {
        "extern_data": {"data": {"dim": 4}, "classes": {"dim": 6, "sparse": True}},
        "network": {
            "encoder": {
                "class": "linear",
                "from": "data",
                "n_out": 4,
                "activation": "exp",
                "with_bias": False,
            },
            "enc_ctx": {"class": "linear", "from": "data", "n_out": 4, "activation": "tanh"},
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "max_seq_len": 7,
                "unit": {
                    "output": {
                        "class": "choice",
                        "target": "classes",
                        "beam_size": beam_size,
                        "from": "output_prob",
                        "initial_output": 0,
                    },
                    "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
                    "embed": {"class": "linear", "from": "prev:output", "n_out": 8},
                    "s": {
                        "class": "rnn_cell",
                        "unit": "LSTMBlock",
                        "from": ["embed", "prev:att"],
                        "n_out": 4,
                    },
                    "att": {
                        "class": "dot_attention",
                        "from": "s",
                        "base": "base:encoder",
                        "base_ctx": "base:enc_ctx",
                    },
                    "output_prob": {
                        "class": "softmax",
                        "from": ["s", "att"],
                        "target": "classes",
                        "loss": "ce",
                    },
                },
            },
        },
    }


def att_batches():
    """(clean, poisoned, lengths, labels, label lengths): the same valid frames, padding 0 in the
    clean batch and 1e30 in the poisoned one (the base: exp(0 W) = 1 and exp(1e30 W) = inf)."""
    B, Te = 3, 5
    xl = np.array([5, 3, 1])
    valid = np.arange(Te)[None, :] < xl[:, None]
    x = RNG.uniform(0.5, 2.0, size=(B, Te, 4)).astype(np.float32)
    clean = np.where(valid[..., None], x, 0.0).astype(np.float32)
    poisoned = np.where(valid[..., None], x, 1e30).astype(np.float32)
    y = RNG.integers(1, 6, size=(B, 4))
    yl = np.array([4, 2, 3])
    return clean, poisoned, xl, y, yl


@pytest.fixture(scope="module")
def att_net():
    net = netcompiler.compile(att_decoder_cfg())
    W = net.variable("encoder/W")
    W.assign(np.abs(RNG.normal(scale=0.3, size=W.shape)).astype(np.float32) + 0.01)  # all > 0
    return net


def test_dot_attention_in_loop_ignores_non_finite_base_padding(att_net):
    clean, poisoned, xl, y, yl = att_batches()
    fetch = ["output/att", "output/output_prob"]
    outs = [
        att_net({"data": x, "classes": y}, {"data": xl, "classes": yl}, True, fetch)
        for x in (clean, poisoned)
    ]
    base = att_net({"data": poisoned}, {"data": xl}, fetch=["encoder"])["encoder"][0].numpy()
    assert np.isposinf(base[2, 1:]).all() and np.isfinite(base[0]).all()  # the poison is there
    for name in fetch:
        a, b = outs[0][name][0].numpy(), outs[1][name][0].numpy()
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), name
        for i, n in enumerate(yl):
            np.testing.assert_allclose(a[i, :n], b[i, :n], rtol=1e-5, atol=1e-6, err_msg=name)


def test_decoder_loop_body_keeps_only_per_step_work(att_net):
    """Inside the while body: one sequence_mask (the energy's; the base's padding mask is built
    before the loop), one MatMul (the LSTM's single [x, h] product; the stacked weights are
    concatenated before the loop) and no Exp (the base itself is outside)."""
    clean, _, xl, y, yl = att_batches()
    inputs, lengths = {"data": clean, "classes": y}, {"data": xl, "classes": yl}
    fn = att_net.get_function(("classes", "data"), ("output/att",), True)
    concrete = fn.get_concrete_function(*att_net.prepare_inputs(inputs, lengths))
    graph_def = concrete.graph.as_graph_def()
    bodies = [f for f in graph_def.library.function if "body" in f.signature.name.lower()]
    assert len(bodies) == 1, [f.signature.name for f in graph_def.library.function]
    in_body = Counter(n.op for n in bodies[0].node_def)
    top = Counter(n.op for n in graph_def.node)
    assert in_body["Exp"] == 0 and top["Exp"] == 1
    assert in_body["Range"] == 1, in_body  # sequence_mask's Range: the energy mask only
    assert in_body["MatMul"] == 1, in_body  # [x, h] @ [W; W_re]
    assert in_body["BatchMatMulV2"] == 2, in_body  # energy and weighted sum
    assert top["ConcatV2"] >= 1 and top["While"] == 1


def test_beam_search_same_for_poisoned_and_clean_padding(att_net):
    clean, poisoned, xl, _, _ = att_batches()
    results = [
        att_net.search({"data": x}, {"data": xl}, beam_size=3, n_best=2) for x in (clean, poisoned)
    ]
    for hyps_clean, hyps_poisoned in zip(*results):
        assert len(hyps_clean) == len(hyps_poisoned) == 2
        for a, b in zip(hyps_clean, hyps_poisoned):
            np.testing.assert_array_equal(a["labels"], b["labels"])
            assert a["length"] == b["length"]
            assert np.isfinite(a["log_prob"]) and np.isfinite(b["log_prob"])
            np.testing.assert_allclose(a["log_prob"], b["log_prob"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-6)


# -- the LSTM cell step (one GEMM on [x, h]) against NumPy and a two-matmul TF reference ----------
#: units whose `rnn_cell` step takes the stacked-weights path, with their forget bias as a cell
LSTM_CELL_UNITS = [("LSTMBlock", 1.0), ("standardlstm", 1.0), ("lstm", 0.0), ("nativelstm2", 0.0)]


def lstm_cell_cfg(unit):
    return {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "optimize_move_layers_out": False,
                "unit": {
                    "output": {"class": "rnn_cell", "unit": unit, "from": "data:source", "n_out": 4}
                },
            },
        },
    }


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_lstm_cell_run(x, xl, W, W_re, b, forget_bias):
    """Steps of an LSTM cell (gates i, j, f, o; forget_bias added to f), padded frames 0."""
    B, T, _ = x.shape
    n = W_re.shape[0]
    c, h = np.zeros((B, n)), np.zeros((B, n))
    out = np.zeros((B, T, n))
    for t in range(T):
        i, j, f, o = np.split(x[:, t] @ W + h @ W_re + b, 4, axis=-1)
        c = np_sigmoid(f + forget_bias) * c + np_sigmoid(i) * np.tanh(j)
        h = np_sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out * (np.arange(T)[None, :] < xl[:, None])[..., None]


def set_random_cell_weights(net):
    params = {}
    for p in ("W", "W_re", "b"):
        var = net.variable(f"output/output/{p}")
        var.assign(RNG.normal(scale=0.5, size=var.shape).astype(np.float32))
        params[p] = var
    return params


@pytest.mark.parametrize("unit,forget_bias", LSTM_CELL_UNITS)
def test_lstm_cell_steps_equal_numpy(unit, forget_bias):
    net = netcompiler.compile(lstm_cell_cfg(unit))
    params = set_random_cell_weights(net)
    x = RNG.normal(size=(2, 3, 3)).astype(np.float32)
    xl = np.array([3, 2])
    out, lens = net({"data": x}, {"data": xl}, fetch=["output"])["output"]
    np.testing.assert_array_equal(lens.numpy(), xl)
    ref = np_lstm_cell_run(
        x, xl, *(params[p].numpy().astype(np.float64) for p in params), forget_bias
    )
    got = out.numpy() * (np.arange(3)[None, :] < xl[:, None])[..., None]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def tf_two_matmul_loss(x, xl, W, W_re, b, forget_bias, weights):
    """The loss of `cell_gradients` computed with separate x W and h W_re products (eager)."""
    B, T, _ = x.shape
    c = h = tf.zeros((B, W_re.shape[0]))
    loss = 0.0
    mask = tf.cast(np.arange(T)[None, :] < xl[:, None], tf.float32)
    for t in range(T):
        i, j, f, o = tf.split(tf.matmul(x[:, t], W) + tf.matmul(h, W_re) + b, 4, axis=-1)
        c = tf.sigmoid(f + forget_bias) * c + tf.sigmoid(i) * tf.tanh(j)
        h = tf.sigmoid(o) * tf.tanh(c)
        loss += tf.reduce_sum(h * weights[:, t] * mask[:, t, None])
    return loss


@pytest.mark.parametrize("unit,forget_bias", [LSTM_CELL_UNITS[0], LSTM_CELL_UNITS[2]])
def test_lstm_cell_training_gradients_equal_two_matmul_reference(unit, forget_bias):
    net = netcompiler.compile(lstm_cell_cfg(unit))
    params = set_random_cell_weights(net)
    x = RNG.normal(size=(2, 3, 3)).astype(np.float32)
    xl = np.array([3, 2])
    weights = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    variables = [params[p] for p in ("W", "W_re", "b")]

    @tf.function
    def net_grads(tensors, lens):
        with tf.GradientTape() as tape:
            out, _ = net.forward(tensors, lens, training=True, fetch=["output"])["output"]
            mask = tf.sequence_mask(lens["data"], 3, dtype=tf.float32)[..., None]
            loss = tf.reduce_sum(out * weights * mask)
        return loss, tape.gradient(loss, variables)

    tensors, lens = net.prepare_inputs({"data": x}, {"data": xl})
    loss, grads = net_grads(tensors, lens)
    copies = [tf.Variable(v.numpy()) for v in variables]
    with tf.GradientTape() as tape:
        ref_loss = tf_two_matmul_loss(x, xl, *copies, forget_bias, weights)
    ref_grads = tape.gradient(ref_loss, copies)
    np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=1e-5)
    for name, g, r in zip(("W", "W_re", "b"), grads, ref_grads):
        assert np.any(r.numpy() != 0), name
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
