"""`time_chunking` / `time_unchunking` (RETURNN's TimeChunkingLayer / TimeUnChunkingLayer)
against NumPy on ragged batches: the chunks are NumPy's slices of each sequence (RETURNN's chunk
boundaries and batch order), chunking then unchunking is the identity on the valid frames, an
(B)LSTM over the chunks is a NumPy LSTM per chunk, and unchunking averages overlapping frames.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.backend.build import compile_network  # noqa: E402
from tests import numpy_reference as ref  # noqa: E402

F, N = 3, 4
RNG = np.random.default_rng(11)


def _batch(T=9, lens=(9, 5, 1, 7)):
    lens = np.array(lens, np.int32)
    x = RNG.normal(size=(len(lens), T, F)).astype(np.float32)
    x[np.arange(T)[None, :] >= lens[:, None]] = 99.0  # padding must never leak in
    return x, lens


def _np_chunks(x, lens, size, step):
    """RETURNN's chunking written out: n_chunks from the padded length, sequence-major."""
    B, T = x.shape[:2]
    n_chunks = max(T - size + step - 1, 0) // step + 1
    out = np.zeros((B * n_chunks, size) + x.shape[2:], x.dtype)
    out_lens = np.zeros(B * n_chunks, np.int32)
    for b in range(B):
        for k in range(n_chunks):
            piece = x[b, k * step : min(k * step + size, lens[b])]
            out[b * n_chunks + k, : len(piece)] = piece
            out_lens[b * n_chunks + k] = len(piece)
    return out, out_lens, n_chunks


def _np_unchunk(y, chunk_lens, B, T, size, step):
    n_chunks = y.shape[0] // B
    total = np.zeros((B, T) + y.shape[2:])
    count = np.zeros((B, T))
    for b in range(B):
        for k in range(n_chunks):
            n = chunk_lens[b * n_chunks + k]
            total[b, k * step : k * step + n] += y[b * n_chunks + k, :n]
            count[b, k * step : k * step + n] += 1
    return total / np.maximum(count, 1)[(...,) + (None,) * (y.ndim - 2)]


def _net(network, extern=None):
    return compile_network({"extern_data": extern or {"data": {"dim": F}}, "network": network})


def _run(net, x, lens, fetch):
    out = net(inputs={"data": x}, lengths={"data": lens}, fetch=fetch)
    return {k: (v.numpy(), None if n is None else n.numpy()) for k, (v, n) in out.items()}


SIZES = [(4, 2), (3, 3), (5, 1), (2, 3), (22, 11), (1, 1), (9, 4)]


@pytest.mark.parametrize("size,step", SIZES)
def test_chunks_are_numpy_slices(size, step):
    net = _net(
        {
            "output": {
                "class": "time_chunking",
                "from": "data",
                "chunk_size": size,
                "chunk_step": step,
            }
        }
    )
    x, lens = _batch()
    got, got_lens = _run(net, x, lens, ["output"])["output"]
    want, want_lens, _ = _np_chunks(x, lens, size, step)
    np.testing.assert_array_equal(got_lens, want_lens)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("size,step", SIZES)
@pytest.mark.parametrize("T,lens", [(9, (9, 5, 1, 7)), (12, (3, 12)), (1, (1, 1, 0))])
def test_chunk_then_unchunk_is_identity(size, step, T, lens):
    net = _net(
        {
            "in": {
                "class": "time_chunking",
                "from": "data",
                "chunk_size": size,
                "chunk_step": step,
            },
            "output": {"class": "time_unchunking", "from": "in", "chunking_layer": "in"},
        }
    )
    x, lens = _batch(T, lens)
    got, got_lens = _run(net, x, lens, ["output"])["output"]
    assert got.shape == x.shape
    np.testing.assert_array_equal(got_lens, lens)
    valid = np.arange(T)[None, :] < lens[:, None]
    covered = valid.copy()
    if step > size:  # frames between chunks belong to no chunk: 0, as in RETURNN
        covered &= (np.arange(T) % step < size)[None, :]
    np.testing.assert_allclose(got[covered], x[covered], rtol=1e-6)
    assert np.all(got[~covered] == 0)


def test_padded_input_keeps_its_padded_length():
    """The padded length decides the number of chunks (RETURNN: from the tensor's shape) and
    the unchunked output has the input's padded length."""
    net = _net(
        {
            "in": {"class": "time_chunking", "from": "data", "chunk_size": 3, "chunk_step": 2},
            "output": {"class": "time_unchunking", "from": "in", "chunking_layer": "in"},
        }
    )
    x, lens = _batch(T=10, lens=(4, 2))
    out = _run(net, x, lens, ["in", "output"])
    assert out["in"][0].shape[0] == 2 * 5
    assert out["output"][0].shape == x.shape


@pytest.mark.parametrize("size,step", [(4, 2), (5, 3), (22, 11)])
def test_blstm_over_chunks_equals_numpy_per_chunk(size, step):
    net = _net(
        {
            "in": {
                "class": "time_chunking",
                "from": "data",
                "chunk_size": size,
                "chunk_step": step,
            },
            "fw": {"class": "rec", "unit": "lstm", "n_out": N, "from": "in"},
            "bw": {"class": "rec", "unit": "lstm", "n_out": N, "from": "in", "direction": -1},
            "out": {"class": "time_unchunking", "chunking_layer": "in", "from": ["fw", "bw"]},
            "output": {"class": "copy", "from": "out"},
        }
    )
    x, lens = _batch(T=13, lens=(13, 6, 1, 9))
    got = _run(net, x, lens, ["fw", "bw", "output"])
    chunks, chunk_lens, _ = _np_chunks(x, lens, size, step)
    parts = []
    for name, direction in (("fw", 1), ("bw", -1)):
        W = np.concatenate(
            [net.variable(f"{name}/W").numpy(), net.variable(f"{name}/W_re").numpy()]
        )
        want = ref.lstm_sequence(
            chunks, chunk_lens, W, net.variable(f"{name}/b").numpy(), N, direction=direction
        )
        np.testing.assert_array_equal(got[name][1], chunk_lens)
        mask = np.arange(size)[None, :] < chunk_lens[:, None]
        np.testing.assert_allclose(got[name][0][mask], want[mask], rtol=1e-4, atol=1e-5)
        parts.append(want)
    # overlapping frames: the mean over the chunks that hold them
    want = _np_unchunk(np.concatenate(parts, -1), chunk_lens, len(lens), x.shape[1], size, step)
    valid = np.arange(x.shape[1])[None, :] < lens[:, None]
    np.testing.assert_allclose(got["output"][0][valid], want[valid], rtol=1e-4, atol=1e-5)


def test_static_axis_and_sparse_input():
    """A static axis chunks as a sequence of that length; class indices chunk as well."""
    net = _net(
        {
            "output": {
                "class": "time_chunking",
                "from": "data",
                "chunk_size": 3,
                "chunk_step": 2,
                "axis": "T",
            }
        },
        {"data": {"dim": 7, "sparse": True}},
    )
    idx = RNG.integers(0, 7, size=(2, 6)).astype(np.int32)
    lens = np.array([6, 3], np.int32)
    got, got_lens = _run(net, idx, lens, ["output"])["output"]
    want, want_lens, _ = _np_chunks(idx, lens, 3, 2)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_lens, want_lens)
    # a static axis S=5: every sequence has 5 frames there
    extern = {"data": {"shape": [5, F]}}
    net = _net(
        {
            "in": {
                "class": "time_chunking",
                "from": "data",
                "chunk_size": 2,
                "chunk_step": 2,
                "axis": "static:0",
            },
            "output": {"class": "time_unchunking", "from": "in", "chunking_layer": "in"},
        },
        extern,
    )
    x = RNG.normal(size=(2, 5, F)).astype(np.float32)
    out = net(inputs={"data": x}, fetch=["in", "output"])
    want, want_lens, _ = _np_chunks(x, np.array([5, 5]), 2, 2)
    np.testing.assert_array_equal(out["in"][0].numpy(), want)
    np.testing.assert_array_equal(out["in"][1].numpy(), want_lens)
    np.testing.assert_allclose(out["output"][0].numpy(), x, rtol=1e-6)
    shapes = {
        k: str(v)
        for k, v in netcompiler.validate(
            {
                "extern_data": extern,
                "network": net.network.top.layers
                and {
                    "in": {
                        "class": "time_chunking",
                        "from": "data",
                        "chunk_size": 2,
                        "chunk_step": 2,
                        "axis": "static:0",
                    },
                    "output": {"class": "time_unchunking", "from": "in", "chunking_layer": "in"},
                },
            }
        ).inferred.shapes.items()
    }
    assert shapes["in"] == f"[B(in:chunks), T(in:chunking), F={F}]"
    assert shapes["output"] == f"[B, S=5, F={F}]"


def test_shapes():
    r = netcompiler.validate(
        {
            "extern_data": {"data": {"dim": F}},
            "network": {
                "in": {"class": "time_chunking", "from": "data", "chunk_size": 4, "chunk_step": 2},
                "fw": {"class": "rec", "unit": "lstm", "n_out": N, "from": "in"},
                "n": {"class": "length", "from": "in", "is_output_layer": True},
                "output": {"class": "time_unchunking", "chunking_layer": "in", "from": "fw"},
            },
        }
    )
    assert not r.errors, r.errors
    shapes = {k: str(v) for k, v in r.inferred.shapes.items()}
    assert shapes["in"] == f"[B(in:chunks), T(in:chunking), F={F}]"
    assert shapes["fw"] == f"[B(in:chunks), T(in:chunking), F={N}]"
    assert shapes["n"] == "[B(in:chunks)] int32"
    assert shapes["output"] == f"[B, T(data), F={N}]"


def _errors(network, extern=None):
    r = netcompiler.validate({"extern_data": extern or {"data": {"dim": F}}, "network": network})
    return [(d.rule, ".".join(map(str, d.dotted_path.split(".")[1:]))) for d in r.errors]


CHUNK = {"class": "time_chunking", "from": "data", "chunk_size": 4, "chunk_step": 2}


def test_mixing_the_batch_of_chunks_is_an_error():
    errs = _errors(
        {"in": CHUNK, "output": {"class": "combine", "kind": "add", "from": ["in", "data"]}}
    )
    assert errs == [("shape.chunk-batch", "output.from")]
    # a per-sequence vector [B, F] broadcast over the chunks [B', C, F]
    errs = _errors(
        {
            "in": CHUNK,
            "mean": {"class": "reduce", "mode": "mean", "axis": "T", "from": "data"},
            "output": {"class": "combine", "kind": "add", "from": ["in", "mean"]},
        }
    )
    assert errs == [("shape.chunk-batch", "output.from")]


def test_unchunking_errors():
    # not a time_chunking layer
    errs = _errors(
        {
            "in": {"class": "copy", "from": "data"},
            "output": {"class": "time_unchunking", "from": "in", "chunking_layer": "in"},
        }
    )
    assert errs == [("shape.chunking", "output.chunking_layer")]
    # the input is not on the chunks
    errs = _errors(
        {
            "in": CHUNK,
            "output": {"class": "time_unchunking", "from": "data", "chunking_layer": "in"},
        }
    )
    assert errs == [("shape.chunk-batch", "output.from")]
    # unknown layer
    errs = _errors(
        {"output": {"class": "time_unchunking", "from": "data", "chunking_layer": "nope"}}
    )
    assert errs and errs[0][0] == "graph.unknown-layer"


def test_chunking_inside_a_rec_unit_is_an_error():
    errs = _errors(
        {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "c": dict(CHUNK, **{"from": "data:source"}),
                    "output": {"class": "copy", "from": "prev:output", "n_out": F},
                },
            }
        }
    )
    assert ("shape.chunking", "output.unit.c.class") in errs


def test_gradient_flows_through_chunking():
    import tensorflow as tf

    net = _net(
        {
            "in": {"class": "time_chunking", "from": "data", "chunk_size": 3, "chunk_step": 2},
            "lin": {"class": "linear", "from": "in", "n_out": 2},
            "output": {"class": "time_unchunking", "from": "lin", "chunking_layer": "in"},
        }
    )
    x, lens = _batch()
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y, _ = net(inputs={"data": xt}, lengths={"data": lens}, fetch=["output"])["output"]
        loss = tf.reduce_sum(y)
    grad = tape.gradient(loss, xt).numpy()
    valid = np.arange(x.shape[1])[None, :] < lens[:, None]
    # d sum(mean over chunks of x W) / dx = sum_j W[:, j] at every valid frame
    w = net.variable("lin/W").numpy().sum(1)
    np.testing.assert_allclose(grad[valid], np.broadcast_to(w, grad[valid].shape), rtol=1e-5)
    assert np.all(grad[~valid] == 0)


def test_rec_unit_loop_runs_on_the_batch_of_chunks():
    """A rec unit (a loop) over the chunks equals the same unit over NumPy's chunks fed as a
    plain batch: the loop takes its batch size from the chunks, not from `data`."""
    unit = {
        "s": {
            "class": "linear",
            "from": ["data:source", "prev:output"],
            "n_out": N,
            "activation": "tanh",
        },
        "output": {"class": "copy", "from": "s"},
    }
    chunked = _net(
        {
            "in": {"class": "time_chunking", "from": "data", "chunk_size": 4, "chunk_step": 3},
            "output": {"class": "rec", "from": "in", "unit": unit},
        }
    )
    plain = _net({"output": {"class": "rec", "from": "data", "unit": unit}})
    for name in ("output/s/W", "output/s/b"):
        plain.variable(name).assign(chunked.variable(name))
    x, lens = _batch(T=10, lens=(10, 4, 7))
    got, got_lens = _run(chunked, x, lens, ["output"])["output"]
    chunks, chunk_lens, _ = _np_chunks(x, lens, 4, 3)
    want, _ = _run(plain, chunks, chunk_lens, ["output"])["output"]
    np.testing.assert_array_equal(got_lens, chunk_lens)
    mask = np.arange(4)[None, :] < chunk_lens[:, None]
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-5, atol=1e-6)
