"""`gather`, `range_in_axis`, `cum_concat` and `split` (RETURNN's GatherLayer, RangeInAxisLayer,
CumConcatLayer, SplitLayer): shapes and located errors (no TensorFlow), and results on ragged batches (padding
filled with large garbage) against NumPy re-implementations of RETURNN's documented semantics."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

EXT = {"data": {"dim": 6}, "cls": {"dim": 5, "sparse": True}, "img": {"shape": [None, 4, 6]}}
B, T, T_CLS = 3, 7, 6
LENGTHS = np.array([7, 5, 2], np.int32)
CLS_LENGTHS = np.array([3, 6, 4], np.int32)


def cfg(network, extern=None):
    return {"extern_data": copy.deepcopy(extern or EXT), "network": network}


def out_shape(network, name="output", extern=None) -> str:
    r = validate(cfg(network, extern))
    assert r.errors == [], [d.full_message() for d in r.errors]
    return str(r.inferred.shapes[name])


def inputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, 6)).astype(np.float32)
    img = rng.normal(size=(B, T, 4, 6)).astype(np.float32)
    cls = rng.integers(0, 5, size=(B, T_CLS)).astype(np.int32)
    for i, n in enumerate(LENGTHS):  # garbage in the padding that would show up
        x[i, n:] = rng.uniform(1e3, 2e3, size=x[i, n:].shape)
        img[i, n:] = 1e3
    for i, n in enumerate(CLS_LENGTHS):
        cls[i, n:] = 4
    return (
        {"data": x, "cls": cls, "img": img},
        {"data": LENGTHS, "cls": CLS_LENGTHS, "img": LENGTHS},
    )


def run(network, fetch=("output",), extern=None, keys=None):
    import netcompiler

    net = netcompiler.compile(cfg(network, extern))
    inp, lens = inputs()
    keys = keys or [k for k in inp if k in (extern or EXT)]
    out = net(
        inputs={k: inp[k] for k in keys}, lengths={k: lens[k] for k in keys}, fetch=list(fetch)
    )
    return net, {k: (v.numpy(), None if n is None else n.numpy()) for k, (v, n) in out.items()}


# -- NumPy references ---------------------------------------------------------------------------


def np_gather_time(x, lengths, pos, clip=False):
    """x [B, T, ...], pos [B, ...] -> out[b, ...] = x[b, pos[b, ...]] for 0 <= pos < len[b],
    else zeros (clip: pos clipped into 0 .. len[b]-1)."""
    pos = np.asarray(pos)
    out = np.zeros(pos.shape + x.shape[2:], x.dtype)
    for b in range(x.shape[0]):
        for idx in np.ndindex(*pos.shape[1:]):
            p = int(pos[(b,) + idx])
            if clip:
                if lengths[b] == 0:
                    continue
                p = min(max(p, 0), lengths[b] - 1)
            if 0 <= p < lengths[b]:
                out[(b,) + idx] = x[b, p]
    return out


# -- shapes and errors (no TensorFlow) ----------------------------------------------------------

LAST = {
    "len": {"class": "length"},
    "last": {"class": "eval", "from": "len", "eval": "source(0) - 1"},
}


@pytest.mark.parametrize(
    "network, expected",
    [
        ({"output": {"class": "gather", "axis": "T", "position": 2}}, "[B, F=6]"),
        (dict(LAST, output={"class": "gather", "axis": "T", "position": "last"}), "[B, F=6]"),
        # a new time axis from the position, with its identity
        ({"output": {"class": "gather", "axis": "T", "position": "data:cls"}}, "[B, T(cls), F=6]"),
        # along the feature axis: the position's axes replace it
        (
            {"output": {"class": "gather", "axis": "F", "position": "data:cls"}},
            "[B, T(data), T(cls)]",
        ),
        # the shared time axis is gathered entry by entry: out[b, t] = img[b, t, cls..]
        (
            {"output": {"class": "gather", "from": "data:img", "axis": "dim:4", "position": 1}},
            "[B, T(img), F=6]",
        ),
        (
            {"output": {"class": "gather", "from": "data:cls", "axis": "T", "position": 0}},
            "[B] sparse(5)",
        ),
        ({"output": {"class": "range_in_axis", "axis": "T"}}, "[T(data)] int32"),
        ({"output": {"class": "range_in_axis", "axis": "F", "dtype": "float32"}}, "[F=6]"),
        (
            {"output": {"class": "range_in_axis", "from": "data:img", "axis": "dim:4"}},
            "[F=4] int32",
        ),
        (
            {
                "output": {
                    "class": "range_in_axis",
                    "from": "data:img",
                    "axis": "dim:4",
                    "sparse": True,
                }
            },
            "[S=4] sparse(4)",
        ),
        ({"output": {"class": "range_in_axis", "axis": "B"}}, "[B] int32"),
    ],
)
def test_shapes(network, expected):
    assert out_shape(network) == expected


def test_gather_shape_in_a_rec_unit():
    net = {
        "enc": {"class": "copy"},
        "output": {
            "class": "rec",
            "from": "data:cls",
            "unit": {
                "frame": {"class": "gather", "from": "base:enc", "axis": "T", "position": ":i"},
                "output": {"class": "copy", "from": "frame"},
            },
        },
    }
    assert out_shape(net, "output/frame") == "[B, F=6]"
    assert out_shape(net) == "[B, T(cls), F=6]"


@pytest.mark.parametrize(
    "layer, option, rule",
    [
        ({"class": "gather", "axis": "T", "position": "data"}, "position", "shape.dtype"),
        ({"class": "gather", "axis": "B", "position": 0}, "axis", "shape.axis"),
        ({"class": "gather", "axis": "dim:9", "position": 0}, "axis", "shape.axis"),
        ({"class": "gather", "axis": "T", "position": -1}, "position", "schema.range"),
        ({"class": "gather", "axis": "T"}, None, "schema.missing-option"),
        (
            {"class": "range_in_axis", "axis": "T", "unbroadcast": True},
            "unbroadcast",
            "shape.unsupported",
        ),
        ({"class": "range_in_axis", "axis": "T", "sparse": True}, "sparse", "shape.axis"),
        (
            {"class": "range_in_axis", "axis": "F", "sparse": True, "dtype": "float32"},
            "dtype",
            "shape.dtype",
        ),
        ({"class": "range_in_axis", "axis": "stag:nope"}, "axis", "shape.axis"),
        ({"class": "range_in_axis", "axis": "T", "dtype": "int8"}, "dtype", "schema.enum"),
    ],
)
def test_errors_are_located(layer, option, rule):
    r = validate(cfg({"output": layer}))
    got = [(e.rule, e.path[-1]) for e in r.errors]
    want_path = option if option is not None else "output"
    assert len(got) == 1 and got[0][1] == want_path and got[0][0].startswith(rule), [
        e.full_message() for e in r.errors
    ]


# -- results against NumPy ----------------------------------------------------------------------


@pytest.mark.tf
def test_gather_constant_and_per_sequence_positions():
    x = inputs()[0]["data"]
    # a constant: frame 3 (sequence 2 has only 2 frames: zeros, never its padding)
    _, out = run({"output": {"class": "gather", "axis": "T", "position": 3}})
    got, lens = out["output"]
    assert lens is None and got.shape == (B, 6)
    np.testing.assert_array_equal(got, np_gather_time(x, LENGTHS, [3, 3, 3]))
    assert not got[2].any()
    # the last valid frame of each sequence
    _, out = run(dict(LAST, output={"class": "gather", "axis": "T", "position": "last"}))
    np.testing.assert_array_equal(out["output"][0], x[np.arange(B), LENGTHS - 1])
    # clipped: frame 6 is each sequence's last frame
    _, out = run({"output": {"class": "gather", "axis": "T", "position": 6, "clip_to_valid": True}})
    np.testing.assert_array_equal(out["output"][0], x[np.arange(B), LENGTHS - 1])


@pytest.mark.tf
@pytest.mark.parametrize("clip", [False, True])
def test_gather_new_time_axis_against_numpy(clip):
    inp, _ = inputs()
    x, cls = inp["data"], inp["cls"]
    _, out = run(
        {"output": {"class": "gather", "axis": "T", "position": "data:cls", "clip_to_valid": clip}}
    )
    got, lens = out["output"]
    np.testing.assert_array_equal(lens, CLS_LENGTHS)  # the position's axis, its lengths
    want = np_gather_time(x, LENGTHS, cls, clip=clip)
    for b, n in enumerate(CLS_LENGTHS):
        np.testing.assert_array_equal(got[b, :n], want[b, :n])
    # positions 2..4 are out of range in sequence 2 (2 frames): zeros, or its frame 1 clipped
    assert (np.abs(got) < 100).all()  # never a padding frame


@pytest.mark.tf
def test_gather_feature_and_static_axes_against_numpy():
    inp, _ = inputs()
    x, cls, img = inp["data"], inp["cls"], inp["img"]
    _, out = run({"output": {"class": "gather", "axis": "F", "position": "data:cls"}})
    got = out["output"][0]  # [B, T(data), T(cls)]: out[b, t, t'] = x[b, t, cls[b, t']]
    want = np.take_along_axis(x, np.broadcast_to(cls[:, None, :], (B, T, T_CLS)), axis=2)
    for b in range(B):
        np.testing.assert_array_equal(
            got[b, : LENGTHS[b], : CLS_LENGTHS[b]], want[b, : LENGTHS[b], : CLS_LENGTHS[b]]
        )
    # a static axis; a position beyond it gives zeros
    _, out = run(
        {"output": {"class": "gather", "from": "data:img", "axis": "dim:4", "position": 2}}
    )
    np.testing.assert_array_equal(out["output"][0][:, : LENGTHS.min()], img[:, : LENGTHS.min(), 2])
    _, out = run(
        {"output": {"class": "gather", "from": "data:img", "axis": "dim:4", "position": 4}}
    )
    assert not out["output"][0].any()


@pytest.mark.tf
@pytest.mark.parametrize("move_out", [True, False])
def test_gather_inside_a_rec_unit(move_out):
    """Per step: the frame of the encoder at the step index `:i` and at a position counted
    through `prev:` (a recurrence: stays in the loop)."""
    x = inputs()[0]["data"]
    net = {
        "enc": {"class": "copy"},
        "output": {
            "class": "rec",
            "from": "data:cls",
            "optimize_move_layers_out": move_out,
            "unit": {
                "frame": {"class": "gather", "from": "base:enc", "axis": "T", "position": ":i"},
                "pos": {
                    "class": "eval",
                    "from": "prev:pos",
                    "eval": "source(0) + 2",
                    "out_type": {"shape": [], "dtype": "int32"},
                    "initial_output": 0,
                },
                "back": {
                    "class": "gather",
                    "from": "base:enc",
                    "axis": "T",
                    "position": "prev:pos",
                },
                "output": {"class": "copy", "from": ["frame", "back"]},
            },
        },
    }
    _, out = run(net, fetch=("output", "output/frame", "output/back"))
    steps = np.arange(T_CLS)
    got, lens = out["output"]
    np.testing.assert_array_equal(lens, CLS_LENGTHS)
    want_frame = np_gather_time(x, LENGTHS, np.broadcast_to(steps, (B, T_CLS)))
    want_back = np_gather_time(x, LENGTHS, np.broadcast_to(2 * steps, (B, T_CLS)))
    for b, n in enumerate(CLS_LENGTHS):
        np.testing.assert_array_equal(got[b, :n, :6], want_frame[b, :n])
        np.testing.assert_array_equal(got[b, :n, 6:], want_back[b, :n])


@pytest.mark.tf
def test_range_in_axis_against_numpy():
    _, out = run({"output": {"class": "range_in_axis", "axis": "T"}})
    got, lens = out["output"]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.arange(T))
    np.testing.assert_array_equal(lens, LENGTHS)  # T(data) keeps its lengths
    _, out = run(
        {
            "output": {
                "class": "range_in_axis",
                "from": "data:img",
                "axis": "dim:4",
                "dtype": "float32",
            }
        }
    )
    np.testing.assert_array_equal(out["output"][0], np.arange(4, dtype=np.float32))
    _, out = run({"output": {"class": "range_in_axis", "axis": "B"}})
    np.testing.assert_array_equal(out["output"][0], np.arange(B))
    # gathering every position of the axis (a position without batch axis) is the identity
    x = inputs()[0]["data"]
    _, out = run(
        {
            "r": {"class": "range_in_axis", "axis": "T"},
            "output": {"class": "gather", "axis": "T", "position": "r"},
        }
    )
    got, lens = out["output"]
    np.testing.assert_array_equal(lens, LENGTHS)
    for b, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(got[b, :n], x[b, :n])
        assert not got[b, n:].any()  # beyond the length: out of range, zeros
    # positions broadcast against the frames: x * t, masked frames excluded
    _, out = run(
        {
            "r": {"class": "range_in_axis", "axis": "T", "dtype": "float32"},
            "output": {"class": "combine", "kind": "mul", "from": ["data", "r"]},
        }
    )
    got = out["output"][0]
    want = x * np.arange(T, dtype=np.float32)[None, :, None]
    for b, n in enumerate(LENGTHS):
        np.testing.assert_allclose(got[b, :n], want[b, :n], rtol=1e-6)


# -- cum_concat ----------------------------------------------------------------------------------


def self_attention_unit(move_out: bool = True) -> dict:
    """Causal self-attention written out of layers (as newer RETURNN decoders do)."""
    return {
        "output": {
            "class": "rec",
            "from": "data",
            "optimize_move_layers_out": move_out,
            "unit": {
                "q": {"class": "linear", "from": "data:source", "n_out": 4},
                "k": {"class": "linear", "from": "data:source", "n_out": 4},
                "v": {"class": "linear", "from": "data:source", "n_out": 3},
                "k_acc": {"class": "cum_concat", "from": "k", "out_spatial_dim": "kv"},
                "v_acc": {"class": "cum_concat", "from": "v", "out_spatial_dim": "kv"},
                "energy": {
                    "class": "dot",
                    "from": ["q", "k_acc"],
                    "red1": "F",
                    "red2": "F",
                    "var1": None,
                    "var2": "stag:kv",
                },
                "w": {"class": "softmax_over_spatial", "from": "energy", "axis": "stag:kv"},
                "output": {
                    "class": "dot",
                    "from": ["w", "v_acc"],
                    "red1": "stag:kv",
                    "red2": "stag:kv",
                    "var1": None,
                    "var2": "F",
                },
            },
        }
    }


def test_cum_concat_shapes():
    r = validate(cfg(self_attention_unit()))
    assert r.errors == [], [d.full_message() for d in r.errors]
    got = {k: str(v) for k, v in r.inferred.shapes.items()}
    # keys and values share the new axis `kv` (one per step, length t + 1)
    assert got["output/k_acc"] == "[B, T(output/kv), F=4]"
    assert got["output/v_acc"] == "[B, T(output/kv), F=3]"
    assert got["output/w"] == "[B, T(output/kv)]"
    assert got["output"] == "[B, T(data), F=3]"
    # without out_spatial_dim: an axis of the layer's own
    net = {
        "output": {
            "class": "rec",
            "from": "data",
            "unit": {
                "acc": {"class": "cum_concat", "from": "data:source"},
                "output": {"class": "reduce", "from": "acc", "mode": "max", "axes": "stag:acc"},
            },
        }
    }
    assert out_shape(net, "output/acc") == "[B, T(output/acc), F=6]"
    assert out_shape(net) == "[B, T(data), F=6]"


@pytest.mark.parametrize(
    "network, option, rule",
    [
        ({"output": {"class": "cum_concat"}}, "output", "shape.rec-only"),
        # a per-step input with a time axis (the encoder) is not supported
        (
            {
                "output": {
                    "class": "rec",
                    "from": "data:cls",
                    "unit": {
                        "acc": {"class": "cum_concat", "from": "base:data"},
                        "output": {
                            "class": "reduce",
                            "from": "acc",
                            "mode": "max",
                            "axes": "stag:acc",
                        },
                    },
                }
            },
            "from",
            "shape.cum-concat",
        ),
        (
            {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": {"output": {"class": "cum_concat", "from": "data:source", "axis": "F"}},
                }
            },
            "axis",
            "schema.enum",
        ),
        # `prev:` of a cum_concat (frames 0..t-1 are not kept apart): located at the layer
        (
            {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": {
                        "acc": {"class": "cum_concat", "from": "data:source"},
                        "output": {
                            "class": "reduce",
                            "from": "prev:acc",
                            "mode": "max",
                            "axes": "stag:acc",
                        },
                    },
                }
            },
            "acc",
            "shape.cum-concat",
        ),
    ],
)
def test_cum_concat_errors(network, option, rule):
    r = validate(cfg(network))
    got = [(e.rule, e.path[-1]) for e in r.errors]
    assert got == [(rule, option)], [e.full_message() for e in r.errors]


def np_causal_attention(x, lengths, net):
    q, k, v = (
        x.astype(np.float64) @ net.variable(f"output/{n}/W").numpy()
        + net.variable(f"output/{n}/b").numpy()
        for n in "qkv"
    )
    out = np.zeros(x.shape[:2] + (3,))
    for b, n in enumerate(lengths):
        for t in range(n):
            e = k[b, : t + 1] @ q[b, t]
            w = np.exp(e - e.max())
            out[b, t] = (w / w.sum()) @ v[b, : t + 1]
    return out


@pytest.mark.tf
@pytest.mark.parametrize("move_out", [True, False])
def test_cum_concat_self_attention_against_numpy(move_out):
    net, out = run(self_attention_unit(move_out), keys=["data"])
    got, lens = out["output"]
    np.testing.assert_array_equal(lens, LENGTHS)
    want = np_causal_attention(inputs()[0]["data"], LENGTHS, net)
    for b, n in enumerate(LENGTHS):
        np.testing.assert_allclose(got[b, :n], want[b, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.tf
def test_cum_concat_in_beam_search_keeps_each_hypothesis_history():
    """The frames so far are loop state: reordered with the beam. The reported log-probability
    of every hypothesis equals NumPy's for its labels, which needs each hypothesis' own sum of
    earlier embeddings."""
    import netcompiler

    config = {
        "extern_data": {"data": {"dim": 4, "sparse": True}, "classes": {"dim": 3, "sparse": True}},
        "network": {
            "lin": {"class": "linear", "from": "data", "n_out": 4},
            "enc": {"class": "reduce", "from": "lin", "mode": "mean", "axes": "T"},
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "max_seq_len": 4,
                "unit": {
                    "emb": {"class": "linear", "from": "prev:output", "n_out": 4},
                    "acc": {"class": "cum_concat", "from": "emb"},
                    "s": {"class": "reduce", "from": "acc", "mode": "sum", "axes": "stag:acc"},
                    "h": {"class": "combine", "kind": "add", "from": ["s", "base:enc"]},
                    "prob": {"class": "softmax", "from": "h", "n_out": 3},
                    "output": {
                        "class": "choice",
                        "from": "prob",
                        "target": "classes",
                        "beam_size": 3,
                    },
                },
            },
        },
    }
    net = netcompiler.compile(config, seed=5)
    for name in ("output/emb/W", "output/prob/W"):  # bigger weights: beams that differ
        net.variable(name).assign(net.variable(name) * 3.0)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(2, 5)).astype(np.int32)
    xl = np.array([5, 3], np.int32)
    hyps = net.search(inputs={"data": x}, lengths={"data": xl}, beam_size=3, n_best=3)
    W, b = (net.variable(f"lin/{p}").numpy() for p in "Wb")
    enc = [(W[x[i, : xl[i]]] + b).mean(0) for i in range(2)]
    We, be, Wp, bp = (
        net.variable(n).numpy()
        for n in ("output/emb/W", "output/emb/b", "output/prob/W", "output/prob/b")
    )

    def log_prob(i, labels):
        total, s, prev = 0.0, np.zeros(4), 0
        for y in labels:
            s = s + We[prev] + be
            z = (s + enc[i]) @ Wp + bp
            total += z[y] - z.max() - np.log(np.exp(z - z.max()).sum())
            prev = y
        return total

    for i, seq_hyps in enumerate(hyps):
        assert len({tuple(h["labels"]) for h in seq_hyps}) == 3
        for h in seq_hyps:
            assert h["length"] == 4
            assert h["log_prob"] == pytest.approx(log_prob(i, h["labels"]), rel=1e-4, abs=1e-4)
        # the best hypothesis is at least as good as greedy decoding
        greedy, s, prev = [], np.zeros(4), 0
        for _ in range(4):
            s = s + We[prev] + be
            prev = int(np.argmax((s + enc[i]) @ Wp + bp))
            greedy.append(prev)
        assert seq_hyps[0]["log_prob"] >= log_prob(i, greedy) - 1e-4


# -- split ---------------------------------------------------------------------------------------

SPLIT3 = {"s": {"class": "split", "num_splits": 3}}


@pytest.mark.parametrize(
    "network, names, expected",
    [
        (
            dict(SPLIT3, output={"class": "copy", "from": ["s/2", "s/0"]}),
            ("s", "s/0", "output"),
            ["[B, T(data), F=6]", "[B, T(data), F=2]", "[B, T(data), F=4]"],
        ),
        (
            {
                "s": {"class": "split", "from": "data:img", "axis": "dim:4", "size_splits": [3, 1]},
                "output": {"class": "copy", "from": "s/0"},
            },
            ("s/1", "output"),
            ["[B, T(img), S=1, F=6]", "[B, T(img), S=3, F=6]"],
        ),
        # inside a rec unit, per step
        (
            {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": {
                        "s": {"class": "split", "from": "data:source", "size_splits": [4, 2]},
                        "output": {"class": "copy", "from": "s/1"},
                    },
                }
            },
            ("output/s/0", "output"),
            ["[B, F=4]", "[B, T(data), F=2]"],
        ),
    ],
)
def test_split_shapes(network, names, expected):
    assert [out_shape(network, n) for n in names] == expected


@pytest.mark.parametrize(
    "layer, ref, option, rule",
    [
        ({"class": "split", "num_splits": 4}, "s/0", "num_splits", "shape.split"),
        ({"class": "split", "size_splits": [2, 2]}, "s/1", "size_splits", "shape.split"),
        (
            {"class": "split", "num_splits": 2, "size_splits": [3, 3]},
            "s/1",
            "size_splits",
            "shape.split",
        ),
        ({"class": "split", "axis": "T", "num_splits": 2}, "s/0", "axis", "shape.axis"),
        ({"class": "split"}, "s", "s", "shape.missing-option"),
        ({"class": "split", "num_splits": 0}, "s", "num_splits", "schema.range"),
        ({"class": "split", "out_dims": ["a", "b"]}, "s", "out_dims", "schema.unknown-option"),
        # a part that does not exist: an unknown layer (with the parts as suggestions)
        ({"class": "split", "num_splits": 2}, "s/2", "from", "graph.unknown-layer"),
    ],
)
def test_split_errors(layer, ref, option, rule):
    r = validate(cfg({"s": layer, "output": {"class": "copy", "from": ref}}))
    got = [(e.rule, e.path[-1]) for e in r.errors]
    assert got == [(rule, option)], [e.full_message() for e in r.errors]


@pytest.mark.tf
def test_split_against_numpy():
    inp, _ = inputs()
    x, img = inp["data"], inp["img"]
    _, out = run(
        dict(SPLIT3, output={"class": "copy", "from": ["s/2", "s/0"]}), fetch=("output", "s", "s/1")
    )
    np.testing.assert_array_equal(
        out["output"][0], np.concatenate([x[..., 4:6], x[..., 0:2]], axis=-1)
    )
    np.testing.assert_array_equal(out["s"][0], x)  # the layer itself: its input
    np.testing.assert_array_equal(out["s/1"][0], x[..., 2:4])
    np.testing.assert_array_equal(out["output"][1], LENGTHS)
    _, out = run(
        {
            "s": {"class": "split", "from": "data:img", "axis": "dim:4", "size_splits": [1, 3]},
            "output": {"class": "reduce", "from": "s/1", "mode": "sum", "axes": "dim:3"},
        }
    )
    want = img[:, :, 1:].sum(axis=2)
    for b, n in enumerate(LENGTHS):
        np.testing.assert_allclose(out["output"][0][b, :n], want[b, :n], rtol=1e-6)
