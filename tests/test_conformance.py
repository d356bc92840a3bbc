"""One battery over every layer class's conformance examples (see tests/conformance.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.dims import BATCH, TIME  # noqa: E402
from netcompiler.export import checkpoint, export_saved_model  # noqa: E402
from netcompiler.layers import registry  # noqa: E402

from conformance import EXAMPLES, make_inputs  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"
IDS = [e.name for e in EXAMPLES]


def _net(example):
    return netcompiler.compile(example.config, seed=1)


def _valid_frames(values: np.ndarray, shape, lengths) -> np.ndarray:
    """Values with padded frames (on the first time axis) set to 0, for comparing."""
    values = np.array(values)
    t = shape.time
    if t is None or lengths is None or not shape.has_batch:
        return values
    axis = shape.index(t)
    lengths = np.asarray(lengths)
    idx = np.arange(values.shape[axis])
    mask = idx[None, :] < lengths[:, None]  # [B, T]
    expand = [1] * values.ndim
    expand[0], expand[axis] = mask.shape
    mask = mask.reshape(expand)
    return np.where(mask, values, np.zeros_like(values))


def test_every_layer_class_has_a_conformance_example():
    covered = {c for e in EXAMPLES for c in e.classes}
    missing = sorted(set(registry()) - covered)
    assert not missing, f"layer classes without a conformance example: {missing}"


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_runtime_shape_equals_inferred(example):
    net = _net(example)
    rng = np.random.default_rng(0)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 7, rng, [7, 4, 1])
    fetch = list(net.inferred.shapes)
    out = net(inputs=inputs, lengths=lengths, fetch=fetch)
    for name, (values, lens) in out.items():
        shape = net.shape(name)
        assert values.shape.rank == len(shape.dims), (name, values.shape, shape)
        for size, dim in zip(values.shape, shape.dims):
            if dim.kind == BATCH:
                assert size == 3, (name, values.shape, shape)
            elif dim.kind == TIME:
                if lens is not None and dim is shape.time:
                    assert size >= int(np.max(lens.numpy())), (name, values.shape, shape)
            else:
                assert size == dim.size, (name, values.shape, shape)
        assert values.dtype.name == shape.dtype or (shape.sparse and values.dtype.is_integer)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_padding_invariance(example):
    net = _net(example)
    rng = np.random.default_rng(1)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 6, rng, [6, 3, 2])
    ref_vals, ref_lens = net(inputs=inputs, lengths=lengths)["output"]
    shape = net.shape("output")
    # other values in the padding, and the batch padded further (more frames)
    padded = {}
    for key, x in inputs.items():
        ext = net.extern_shapes[key]
        if ext.time is None:
            padded[key] = x
            continue
        axis = ext.index(ext.time)
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, 4)
        big = np.pad(x, pad)
        noise = (rng.integers(0, ext.sparse_dim, size=big.shape).astype(np.int32) if ext.sparse
                 else rng.standard_normal(big.shape).astype(np.float32) * 10)
        idx = np.arange(big.shape[axis])
        mask = idx[None, :] < lengths[key][:, None]
        expand = [1] * big.ndim
        expand[0], expand[axis] = mask.shape
        padded[key] = np.where(mask.reshape(expand), big, noise)
    vals, lens = net(inputs=padded, lengths=lengths)["output"]
    a = _valid_frames(ref_vals.numpy(), shape, None if ref_lens is None else ref_lens.numpy())
    b = _valid_frames(vals.numpy(), shape, None if lens is None else lens.numpy())
    if shape.time is not None and shape.has_batch:
        axis = shape.index(shape.time)
        b = np.take(b, np.arange(a.shape[axis]), axis=axis)
    assert np.all(np.isfinite(vals.numpy())) if vals.dtype.is_floating else True
    np.testing.assert_allclose(a, b, rtol=example.rtol, atol=1e-5)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_no_retracing_across_batch_and_time(example):
    net = _net(example)
    rng = np.random.default_rng(2)
    for batch, time in [(2, 5), (4, 9), (1, 3)]:
        inputs, lengths = make_inputs(net.extern_shapes, batch, time, rng)
        net(inputs=inputs, lengths=lengths)
    fn = net.get_function(tuple(sorted(inputs)), ("output",), False)
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_saved_model_round_trip(example, tmp_path):
    net = _net(example)
    rng = np.random.default_rng(3)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 5, rng, [5, 2, 4])
    expected = net(inputs=inputs, lengths=lengths)["output"][0].numpy()
    export_saved_model(net, tmp_path / "model")
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    feeds = {k: tf.constant(v) for k, v in inputs.items()}
    feeds.update({f"{k}_lengths": tf.constant(v) for k, v in lengths.items()})
    got = loaded.signatures["serving_default"](**feeds)["output"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.xla], ids=[e.name for e in EXAMPLES if e.xla])
def test_xla_compiles_to_the_same_outputs(example):
    net = _net(example)
    rng = np.random.default_rng(4)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 6, rng, [6, 3, 5])
    expected = net(inputs=inputs, lengths=lengths)["output"][0].numpy()
    fn = tf.function(lambda i, l: net.forward(i, l, training=False, fetch=("output",)),
                     jit_compile=True, autograph=False)
    got = fn({k: tf.constant(v) for k, v in inputs.items()},
             {k: tf.constant(v) for k, v in lengths.items()})["output"][0].numpy()
    shape = net.shape("output")
    np.testing.assert_allclose(_valid_frames(got, shape, lengths.get("data")),
                               _valid_frames(expected, shape, lengths.get("data")),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_golden_checkpoint_still_loads_to_the_same_outputs(example):
    """Golden files (tests/golden/<example>.npz + checkpoint) were written by an earlier version
    (`python tests/make_golden.py`); every later version must reproduce them."""
    path = GOLDEN / example.name
    if not (path / "io.npz").exists():
        pytest.fail(f"no golden files for `{example.name}`: run `python tests/make_golden.py`")
    io = np.load(path / "io.npz")
    net = netcompiler.compile(example.config, seed=12345)  # other initial values on purpose
    checkpoint(net).read(str(path / "ckpt")).assert_existing_objects_matched()
    inputs = {k[3:]: io[k] for k in io.files if k.startswith("in_")}
    lengths = {k[4:]: io[k] for k in io.files if k.startswith("len_")}
    got = net(inputs=inputs, lengths=lengths)["output"][0].numpy()
    shape = net.shape("output")
    np.testing.assert_allclose(_valid_frames(got, shape, lengths.get("data")),
                               _valid_frames(io["out"], shape, lengths.get("data")),
                               rtol=1e-5, atol=1e-6)
