"""TensorFlow builders of the attention family vs the NumPy reference (batch C, phase 2).

Ragged batches with random (not zero) values in the padding; valid frames compared with
max abs error < 1e-5 (float32). Gradients of self_attention and concat_attention vs central
differences of the float64 reference.
"""

import os
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from netcompiler.backend.build import compile_network  # noqa: E402

import numpy_reference as ref  # noqa: E402

pytestmark = pytest.mark.tf

ATOL = 1e-5
LENS = np.array([5, 2, 6, 3], np.int32)  # max 6 < T = 7: every sequence has padding
DEC_LENS = np.array([3, 4, 1, 2], np.int32)
B, T, TD = 4, 7, 5


def rng(seed=0):
    return np.random.RandomState(seed)


def floats(r, *shape, scale=1.0):
    return (r.randn(*shape) * scale).astype(np.float32)


def build(network, extern, seed=1):
    if "output" not in network:
        network = {**network, "output": {"class": "copy", "from": next(iter(network))}}
    return compile_network({"extern_data": extern, "network": network}, seed=seed)


def fetch(net, name, inputs, lengths, training=False):
    values, _ = net(inputs=inputs, lengths=lengths, fetch=[name], training=training)[name]
    return values.numpy()


def assert_valid_close(got, want, lens, time_axis=1, atol=ATOL):
    """Compare on valid frames (t < lens[b]) of the axis `time_axis` (batch axis 0)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got))
    mask = ref.valid_mask(lens, got.shape[time_axis])  # [B, T]
    shape = [1] * got.ndim
    shape[0], shape[time_axis] = got.shape[0], got.shape[time_axis]
    mask = np.broadcast_to(mask.reshape(shape), got.shape)
    err = np.max(np.abs(np.where(mask, got - want, 0.0)))
    assert err < atol, err


# ---------------------------------------------------------------------------------------------
# self_attention (+ relative_positional_encoding as key_shift)
# ---------------------------------------------------------------------------------------------

SA = {"num_heads": 2, "total_key_dim": 8, "n_out": 6}


@pytest.mark.parametrize("left_only", [False, True])
def test_self_attention_dense(left_only):
    r = rng(1)
    x = floats(r, B, T, 5)
    net = build(
        {
            "att": {
                "class": "self_attention",
                "from": "data",
                **SA,
                "attention_left_only": left_only,
            }
        },
        {"data": {"dim": 5}},
    )
    got = fetch(net, "att", {"data": x}, {"data": LENS})
    qkv = net.variable("att/QKV").numpy()
    assert qkv.shape == (5, 2 * 8 + 6)
    want = ref.self_attention(x, LENS, qkv, 2, 8, 6, left_only=left_only)
    assert got.shape == (B, T, 6)
    assert_valid_close(got, want, LENS)
    # padded frames do not influence valid frames
    x2 = x.copy()
    x2[~ref.valid_mask(LENS, T)] = 1e3
    assert_valid_close(fetch(net, "att", {"data": x2}, {"data": LENS}), want, LENS)


def test_self_attention_sparse_input():
    r = rng(2)
    x = r.randint(0, 7, size=(B, T)).astype(np.int32)
    net = build(
        {
            "att": {
                "class": "self_attention",
                "from": "data",
                "num_heads": 3,
                "total_key_dim": 6,
                "n_out": 9,
            }
        },
        {"data": {"dim": 7, "sparse": True}},
    )
    got = fetch(net, "att", {"data": x}, {"data": LENS})
    want = ref.self_attention(x, LENS, net.variable("att/QKV").numpy(), 3, 6, 9)
    assert_valid_close(got, want, LENS)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("left_only", [False, True])
def test_self_attention_key_shift_relative_positional_encoding(fixed, left_only):
    r = rng(3)
    x = floats(r, B, T, 5)
    net = build(
        {
            "rel": {
                "class": "relative_positional_encoding",
                "from": "data",
                "n_out": 4,
                "clipping": 2,
                "fixed": fixed,
                "forward_weights_init": "random_normal",
            },
            "att": {
                "class": "self_attention",
                "from": "data",
                **SA,
                "key_shift": "rel",
                "attention_left_only": left_only,
            },
        },
        {"data": {"dim": 5}},
    )
    got = fetch(net, "att", {"data": x}, {"data": LENS})
    matrix = None if fixed else net.variable("rel/encoding_matrix").numpy()
    ks = ref.relative_positional_encoding(T, T, matrix, clipping=2, fixed=fixed, n_out=4)
    want = ref.self_attention(
        x, LENS, net.variable("att/QKV").numpy(), 2, 8, 6, key_shift=ks, left_only=left_only
    )
    assert_valid_close(got, want, LENS)


def test_self_attention_dropout_only_when_training():
    r = rng(4)
    x = floats(r, B, T, 5)
    net = build(
        {"att": {"class": "self_attention", "from": "data", **SA, "attention_dropout": 0.5}},
        {"data": {"dim": 5}},
    )
    want = ref.self_attention(x, LENS, net.variable("att/QKV").numpy(), 2, 8, 6)
    assert_valid_close(fetch(net, "att", {"data": x}, {"data": LENS}), want, LENS)
    trained = fetch(net, "att", {"data": x}, {"data": LENS}, training=True)
    assert np.all(np.isfinite(trained))
    valid = ref.valid_mask(LENS, T)
    assert np.max(np.abs(trained - want)[valid]) > 1e-3


def test_self_attention_initial_state_zeros_starts_every_call_empty():
    """`initial_state: zeros`: no keys are carried between calls (keep_over_epoch carries them,
    see test_self_attention_state.py)."""
    net = build(
        {
            "att": {
                "class": "self_attention",
                "from": "data",
                **SA,
                "initial_state": "zeros",
                "attention_left_only": True,
            }
        },
        {"data": {"dim": 5}},
    )
    x = floats(rng(), B, T, 5)
    first = fetch(net, "att", {"data": x}, {"data": LENS})
    second = fetch(net, "att", {"data": x}, {"data": LENS})
    np.testing.assert_array_equal(first, second)
    want = ref.self_attention(
        x,
        LENS,
        net.variable("att/QKV").numpy(),
        SA["num_heads"],
        SA["total_key_dim"],
        SA["n_out"],
        left_only=True,
    )
    for b, n in enumerate(LENS):
        np.testing.assert_allclose(first[b, :n], want[b, :n], atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# relative_positional_encoding alone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixed,n_out", [(False, 6), (True, 6), (True, 5)])
def test_relative_positional_encoding(fixed, n_out):
    net = build(
        {
            "rel": {
                "class": "relative_positional_encoding",
                "from": "data",
                "n_out": n_out,
                "clipping": 3,
                "fixed": fixed,
            }
        },
        {"data": {"dim": 2}},
    )
    got = fetch(net, "rel", {"data": floats(rng(), B, T, 2)}, {"data": LENS})
    matrix = None if fixed else net.variable("rel/encoding_matrix").numpy()
    want = ref.relative_positional_encoding(T, T, matrix, clipping=3, fixed=fixed, n_out=n_out)
    assert got.shape == (T, T, n_out)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    if fixed:
        assert net.variables_by_name.get("rel/encoding_matrix") is None


# ---------------------------------------------------------------------------------------------
# dot_attention / concat_attention / gauss_window_attention
# ---------------------------------------------------------------------------------------------

ENC_EXTERN = {
    "enc": {"shape": [None, 6]},  # base [B, Te, V=6]
    "ctx": {"shape": [None, 4], "same_time_as": "enc"},  # base_ctx [B, Te, D=4]
    "dec": {"shape": [None, 4]},  # decoder sequence [B, Td, 4]
    "s": {"shape": [4]},  # one step [B, 4]
}


def enc_inputs(seed):
    r = rng(seed)
    return (
        {
            "enc": floats(r, B, T, 6),
            "ctx": floats(r, B, T, 4),
            "dec": floats(r, B, TD, 4),
            "s": floats(r, B, 4),
        },
        {"enc": LENS, "ctx": LENS, "dec": DEC_LENS},
    )


@pytest.mark.parametrize("source", ["s", "dec"])
@pytest.mark.parametrize("factor", [None, 0.5])
def test_dot_attention(source, factor):
    opts = {} if factor is None else {"energy_factor": factor}
    net = build(
        {
            "att": {
                "class": "dot_attention",
                "from": f"data:{source}",
                "base": "data:enc",
                "base_ctx": "data:ctx",
                **opts,
            }
        },
        ENC_EXTERN,
    )
    inputs, lengths = enc_inputs(5)
    got = fetch(net, "att", inputs, lengths)
    want = ref.dot_attention(
        inputs[source], inputs["ctx"], inputs["enc"], LENS, energy_factor=factor
    )
    if source == "s":
        assert got.shape == (B, 6)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    else:
        assert_valid_close(got, want, DEC_LENS)


@pytest.mark.parametrize("source", ["s", "dec"])
def test_concat_attention(source):
    net = build(
        {
            "att": {
                "class": "concat_attention",
                "from": f"data:{source}",
                "base": "data:enc",
                "base_ctx": "data:ctx",
            }
        },
        ENC_EXTERN,
    )
    inputs, lengths = enc_inputs(6)
    got = fetch(net, "att", inputs, lengths)
    v = net.variable("att/v").numpy()
    assert v.shape == (4,)
    want = ref.concat_attention(inputs[source], inputs["ctx"], inputs["enc"], LENS, v)
    if source == "s":
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    else:
        assert_valid_close(got, want, DEC_LENS)


GAUSS_EXTERN = {
    "enc": {"shape": [None, 6]},
    "loc": {"shape": [1]},
    "loc_dec": {"shape": [None, 1]},
    "loc_dec_nf": {"shape": [None, 1]},
}


@pytest.mark.parametrize("inner", [None, 3, 4])
@pytest.mark.parametrize("decoder", [False, True])
def test_gauss_window_attention(inner, decoder):
    r = rng(7)
    base = floats(r, B, T, 6)
    # locations around and outside the sequences, including exact halves (round half to even)
    loc = np.array([[2.5], [-1.2], [5.5], [9.0]], np.float32)
    loc_dec = (r.rand(B, TD, 1) * 9 - 2).astype(np.float32)
    loc_dec[0, :2, 0] = [0.5, 3.5]
    opts = {"window_size": 4, "std": 1.5}
    if inner is not None:
        opts.update(inner_size=inner, inner_size_step=0.5)
    src = "data:loc_dec" if decoder else "data:loc"
    net = build(
        {"att": {"class": "gauss_window_attention", "from": src, "base": "data:enc", **opts}},
        GAUSS_EXTERN,
    )
    got = fetch(
        net,
        "att",
        {"enc": base, "loc": loc, "loc_dec": loc_dec},
        {"enc": LENS, "loc_dec": DEC_LENS},
    )
    want = ref.gauss_window_attention(
        loc_dec[..., 0] if decoder else loc,
        base,
        LENS,
        4,
        std=1.5,
        inner_size=inner,
        inner_size_step=0.5,
        has_decoder_axis=decoder,
    )
    if decoder:
        assert_valid_close(got, want, DEC_LENS)
    else:
        assert got.shape == ((B, 6) if inner is None else (B, inner, 6))
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# softmax_over_spatial / generic_attention / dot
# ---------------------------------------------------------------------------------------------

SM_EXTERN = {"e": {"shape": [None, 3]}, "start": {"shape": [1]}}


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"energy_factor": 0.3},
        {"use_time_mask": False},
        {"window_start": 1, "window_size": 3},
        {"window_start": "data:start", "window_size": 2},
        {"log_space": True},
    ],
)
def test_softmax_over_spatial(opts):
    r = rng(8)
    e = floats(r, B, T, 3, scale=3.0)
    start = np.array([[0.0], [1.7], [3.0], [1.0]], np.float32)
    net = build({"sm": {"class": "softmax_over_spatial", "from": "data:e", **opts}}, SM_EXTERN)
    got = fetch(net, "sm", {"e": e, "start": start}, {"e": LENS})
    ws = opts.get("window_start")
    want = ref.softmax_over_spatial(
        e,
        LENS,
        axis=1,
        energy_factor=opts.get("energy_factor"),
        use_time_mask=opts.get("use_time_mask", True),
        window_start=(start if ws == "data:start" else None if ws is None else np.full(B, ws)),
        window_size=opts.get("window_size"),
    )
    if opts.get("log_space"):
        valid = ref.valid_mask(LENS, T)
        np.testing.assert_allclose(got[valid], np.log(want[valid]), atol=ATOL, rtol=0)
        return
    if opts.get("use_time_mask") is False:
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
        return
    # masked entries come out exactly 0, valid ones sum to 1
    assert np.all(got[~ref.valid_mask(LENS, T)] == 0.0)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_attention_pipeline_dot_softmax_generic_equals_dot_attention():
    """The documented replacement of dot_attention, over a decoder sequence."""
    net = build(
        {
            "energy": {
                "class": "dot",
                "from": ["data:ctx", "data:dec"],
                "red1": "F",
                "red2": "F",
                "var1": "T",
                "var2": None,
            },  # [B, T(dec), T(enc)]
            "w": {"class": "softmax_over_spatial", "from": "energy", "energy_factor": 0.5},
            "att": {"class": "generic_attention", "weights": "w", "base": "data:enc"},
        },
        ENC_EXTERN,
    )
    assert str(net.shape("energy")) == "[B, T(dec), T(enc)]"
    assert str(net.shape("att")) == "[B, T(dec), F=6]"
    inputs, lengths = enc_inputs(9)
    e = fetch(net, "energy", inputs, lengths)
    want_e = np.einsum("bjd,btd->btj", inputs["ctx"], inputs["dec"])
    valid = ref.valid_mask(DEC_LENS, TD)[:, :, None] & ref.valid_mask(LENS, T)[:, None, :]
    np.testing.assert_allclose(e[valid], want_e[valid], atol=ATOL, rtol=0)
    got = fetch(net, "att", inputs, lengths)
    want = ref.dot_attention(inputs["dec"], inputs["ctx"], inputs["enc"], LENS, energy_factor=0.5)
    assert_valid_close(got, want, DEC_LENS)


def test_generic_attention_heads_and_squeeze():
    extern = {
        "w": {"shape": [None, 4]},
        "base": {"shape": [None, 4, 6], "same_time_as": "w"},
        "w1": {"shape": [None, 1], "same_time_as": "w"},
        "v": {"shape": [None, 6], "same_time_as": "w"},
    }
    net = build(
        {
            "sm": {"class": "softmax_over_spatial", "from": "data:w"},  # [B, T, F=4] heads
            "att": {"class": "generic_attention", "weights": "sm", "base": "data:base"},
            "sm1": {"class": "softmax_over_spatial", "from": "data:w1"},
            "att1": {"class": "generic_attention", "weights": "sm1", "base": "data:v"},
        },
        extern,
    )
    assert str(net.shape("att")) == "[B, S=4, F=6]"
    assert str(net.shape("att1")) == "[B, F=6]"
    r = rng(10)
    inputs = {
        "w": floats(r, B, T, 4),
        "base": floats(r, B, T, 4, 6),
        "w1": floats(r, B, T, 1),
        "v": floats(r, B, T, 6),
    }
    lengths = {k: LENS for k in inputs}
    w = ref.softmax_over_spatial(inputs["w"], LENS)
    np.testing.assert_allclose(
        fetch(net, "att", inputs, lengths),
        ref.generic_attention(w, inputs["base"]),
        atol=ATOL,
        rtol=0,
    )
    w1 = ref.softmax_over_spatial(inputs["w1"], LENS)
    np.testing.assert_allclose(
        fetch(net, "att1", inputs, lengths),
        ref.generic_attention(w1, inputs["v"]),
        atol=ATOL,
        rtol=0,
    )


def test_dot_masks_reduced_time_axis_and_keeps_features():
    extern = {"a": {"shape": [None, 2]}, "b": {"shape": [None, 3, 6], "same_time_as": "a"}}
    net = build(
        {
            "d": {
                "class": "dot",
                "from": ["data:a", "data:b"],
                "red1": "T",
                "red2": "T",
                "var1": "F",
                "var2": "F",
            }
        },
        extern,
    )
    # b's S=3 is neither reduced nor kept: broadcast, placed before the var1/var2 axes
    assert str(net.shape("d")) == "[B, S=3, S=2, F=6]"
    r = rng(11)
    a, b = floats(r, B, T, 2), floats(r, B, T, 3, 6)
    got = fetch(net, "d", {"a": a, "b": b}, {"a": LENS, "b": LENS})
    m = ref.valid_mask(LENS, T).astype(np.float64)
    want = np.einsum("bti,btsf,bt->bsif", a, b, m)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# gradients vs central differences of the float64 reference
# ---------------------------------------------------------------------------------------------


def central_diff(f, x, eps=1e-6):
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def test_self_attention_gradients():
    r = rng(12)
    lens = np.array([4, 2, 3], np.int32)
    x = floats(r, 3, 5, 3)
    net = build(
        {
            "att": {
                "class": "self_attention",
                "from": "data",
                "num_heads": 2,
                "total_key_dim": 4,
                "n_out": 4,
            }
        },
        {"data": {"dim": 3}},
    )
    qkv = net.variable("att/QKV")
    weight = r.randn(3, 5, 4) * ref.valid_mask(lens, 5)[:, :, None]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out, _ = net(inputs={"data": xt}, lengths={"data": lens}, fetch=["att"])["att"]
        loss = tf.reduce_sum(tf.cast(out, tf.float64) * weight)
    g_qkv, g_x = tape.gradient(loss, [qkv, xt])

    def loss_ref(q, xx=x):
        return np.sum(ref.self_attention(xx, lens, q, 2, 4, 4) * weight)

    q0 = qkv.numpy().astype(np.float64)
    np.testing.assert_allclose(g_qkv.numpy(), central_diff(loss_ref, q0), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(
        g_x.numpy(), central_diff(lambda xx: loss_ref(q0, xx), x), atol=1e-4, rtol=1e-3
    )
    # no gradient flows into padded input frames
    assert np.all(g_x.numpy()[~ref.valid_mask(lens, 5)] == 0.0)


def test_concat_attention_gradients():
    inputs, lengths = enc_inputs(13)
    net = build(
        {
            "att": {
                "class": "concat_attention",
                "from": "data:dec",
                "base": "data:enc",
                "base_ctx": "data:ctx",
            }
        },
        ENC_EXTERN,
    )
    v = net.variable("att/v")
    r = rng(14)
    weight = r.randn(B, TD, 6) * ref.valid_mask(DEC_LENS, TD)[:, :, None]
    tensors = {k: tf.constant(x) for k, x in inputs.items()}
    with tf.GradientTape() as tape:
        tape.watch([tensors["ctx"], tensors["dec"]])
        out, _ = net(inputs=tensors, lengths=lengths, fetch=["att"])["att"]
        loss = tf.reduce_sum(tf.cast(out, tf.float64) * weight)
    g_v, g_ctx, g_dec = tape.gradient(loss, [v, tensors["ctx"], tensors["dec"]])

    def loss_ref(vv, ctx=inputs["ctx"], dec=inputs["dec"]):
        return np.sum(ref.concat_attention(dec, ctx, inputs["enc"], LENS, vv) * weight)

    v0 = v.numpy().astype(np.float64)
    np.testing.assert_allclose(g_v.numpy(), central_diff(loss_ref, v0), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(
        g_ctx.numpy(),
        central_diff(lambda c: loss_ref(v0, ctx=c), inputs["ctx"]),
        atol=1e-4,
        rtol=1e-3,
    )
    np.testing.assert_allclose(
        g_dec.numpy(),
        central_diff(lambda d: loss_ref(v0, dec=d), inputs["dec"]),
        atol=1e-4,
        rtol=1e-3,
    )
    assert np.all(g_ctx.numpy()[~ref.valid_mask(LENS, T)] == 0.0)


def test_get_last_hidden_state_takes_the_last_processed_frame():
    net = build(
        {
            "fw": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 3},
            "bw": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 3, "direction": -1},
            "last": {
                "class": "get_last_hidden_state",
                "from": ["fw", "bw"],
                "n_out": 6,
                "key": "h",
            },
            "sum": {
                "class": "get_last_hidden_state",
                "from": ["fw", "bw"],
                "n_out": 3,
                "combine": "add",
                "key": "h",
            },
        },
        {"data": {"dim": 5}},
    )
    x = floats(rng(), B, T, 5)
    fw = fetch(net, "fw", {"data": x}, {"data": LENS})
    bw = fetch(net, "bw", {"data": x}, {"data": LENS})
    last = fetch(net, "last", {"data": x}, {"data": LENS})
    total = fetch(net, "sum", {"data": x}, {"data": LENS})
    for b, n in enumerate(LENS):
        # forward: the state after the last valid frame; backward: after frame 0
        np.testing.assert_allclose(last[b], np.concatenate([fw[b, n - 1], bw[b, 0]]), atol=ATOL)
        np.testing.assert_allclose(total[b], fw[b, n - 1] + bw[b, 0], atol=ATOL)
