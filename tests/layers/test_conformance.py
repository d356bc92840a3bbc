"""One battery over every layer class's conformance examples (see tests/conformance.py).

Outputs may have several time axes, a time axis other than the input's (a new one made by the
layer, or `T(classes)`), no batch axis (`[T, T, F]`), or a bool/int dtype. Every time axis of
the output is compared on its valid frames only: the lengths of the output's first time axis are
those the network returns for it; the lengths of any other time axis are those of the extern data
it belongs to, or those the network returns for a layer whose first time axis it is (fetched
along). Float outputs are compared with a tolerance, bool/int outputs exactly.

Each example is compiled once (`_net`) and shared by the tests that only run it; the golden test,
which loads a checkpoint into its network, compiles its own.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.backend.export import checkpoint, export_saved_model, inference_inputs  # noqa: E402
from netcompiler.core.dims import BATCH, TIME  # noqa: E402
from netcompiler.layers import registry  # noqa: E402

from conformance import EXAMPLES, make_inputs  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
IDS = [e.name for e in EXAMPLES]
BY_NAME = {e.name: e for e in EXAMPLES}

#: Layer classes without a conformance example, each with the reason. Only classes whose builder
#: runs inside a decoder loop (a `rec` unit) belong here; they get examples once the decoder
#: loops are covered by the battery.
EXEMPT: dict[str, str] = {
    "choice": "runs only inside a rec unit's decoder loop (teacher forcing / beam search); its "
    "rule has no builder outside a loop"
}


@functools.cache
def _compiled(name: str, seed: int):
    return netcompiler.compile(BY_NAME[name].config, seed=seed)


def _net(example, seed: int = 1):
    """The example's network, compiled once per (example, seed) and shared by the tests that
    only run it (every traced function is cached with it). A test that changes the variables
    (loads a checkpoint) compiles its own with `_fresh_net`."""
    return _compiled(example.name, seed)


def _fresh_net(example, seed: int):
    return netcompiler.compile(example.config, seed=seed)


# -- lengths and validity masks -------------------------------------------------------------------


def _length_sources(net, names=("output",)):
    """Per time axis of the named layers: where its lengths come from: ("extern", key) or
    ("layer", name) (a layer whose first time axis it is; fetched along)."""
    sources = {}
    for name in names:
        for d in net.shape(name).time_dims:
            if any(d is k for k in sources):
                continue
            key = next((k for k, s in net.extern_shapes.items() if s.time is d), None)
            if key is not None:
                sources[d] = ("extern", key)
                continue
            layer = next(
                (
                    n
                    for n in [name] + list(net.inferred.shapes)
                    if "/" not in n and net.shape(n).time is d
                ),
                None,
            )
            if layer is None:
                raise AssertionError(f"no lengths known for axis {d} of `{name}` {net.shape(name)}")
            sources[d] = ("layer", layer)
    return sources


def _run(net, inputs, lengths, name: str = "output"):
    """(values, {time Dim: lengths as NumPy}) of layer `name`, for every time axis of it."""
    sources = _length_sources(net, [name])
    aux = sorted({src for kind, src in sources.values() if kind == "layer"} - {name})
    out = net(inputs=inputs, lengths=lengths, fetch=[name] + aux)
    values, own = out[name]
    dim_lengths = {}
    for d, (kind, src) in sources.items():
        if kind == "extern":
            dim_lengths[d] = np.asarray(lengths[src])
        else:
            dim_lengths[d] = np.asarray(out[src][1])
    shape = net.shape(name)
    if shape.time is not None:
        assert own is not None, f"`{name}` {shape}: no lengths returned for {shape.time}"
        np.testing.assert_array_equal(own.numpy(), dim_lengths[shape.time])
    return values.numpy(), dim_lengths


def _valid_mask(values: np.ndarray, shape, dim_lengths: dict) -> np.ndarray:
    """bool, broadcastable to `values`: True where every time axis is at a valid frame (without
    a batch axis: valid for some sequence)."""
    mask = np.ones([1] * values.ndim, bool)
    batch_axis = next((i for i, d in enumerate(shape.dims) if d.kind == BATCH), None)
    for axis, d in enumerate(shape.dims):
        if d.kind != TIME:
            continue
        lens = np.asarray(dim_lengths[d])
        assert lens.max(initial=0) <= values.shape[axis], (
            f"axis {d}: lengths {lens} exceed the {values.shape[axis]} frames of {shape}"
        )
        idx = np.arange(values.shape[axis])
        expand = [1] * values.ndim
        if batch_axis is None:
            m = idx < lens.max(initial=0)
            expand[axis] = m.shape[0]
        else:
            m = idx[None, :] < lens[:, None]
            expand[batch_axis], expand[axis] = m.shape
            if batch_axis > axis:
                m = m.T
        mask = mask & m.reshape(expand)
    return mask


def _masked(values: np.ndarray, shape, dim_lengths: dict) -> np.ndarray:
    """Values with the padded frames of every time axis set to 0 (False for bool)."""
    values = np.asarray(values)
    return np.where(_valid_mask(values, shape, dim_lengths), values, np.zeros_like(values))


def _crop_time(values: np.ndarray, shape, sizes: dict) -> np.ndarray:
    for axis, d in enumerate(shape.dims):
        if d.kind == TIME and d in sizes:
            values = np.take(values, np.arange(sizes[d]), axis=axis)
    return values


def _assert_same(got, expected, rtol: float, atol: float, what: str = ""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    assert got.dtype == expected.dtype, (what, got.dtype, expected.dtype)
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)
    else:  # bool / int: exactly
        np.testing.assert_array_equal(got, expected, err_msg=what)


# -- the battery ----------------------------------------------------------------------------------


def test_every_layer_class_has_a_conformance_example():
    covered = {c for e in EXAMPLES for c in e.classes}
    classes = set(registry())
    missing = sorted(classes - covered - set(EXEMPT))
    assert not missing, f"layer classes without a conformance example: {missing}"
    unknown = sorted(covered - classes)
    assert not unknown, f"examples claim unknown layer classes: {unknown}"
    stale = sorted(set(EXEMPT) & covered)
    assert not stale, f"exempt classes that now have examples (drop them from EXEMPT): {stale}"
    assert not set(EXEMPT) - classes, f"EXEMPT names unknown classes: {set(EXEMPT) - classes}"
    assert all(reason.strip() for reason in EXEMPT.values())
    names = [e.name for e in EXAMPLES]
    assert len(names) == len(set(names)), "example names must be unique (golden dirs)"


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_covers_the_classes_it_claims(example):
    net = _net(example)
    used = {layer.layer_class for layer in net.network.layers.values()}
    assert net.network.layers["output"].layer_class in example.classes
    assert set(example.classes) <= used, (example.classes, used)
    assert inference_inputs(net, ["output"]) == tuple(sorted(example.inputs))


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_runtime_shape_equals_inferred(example):
    net = _net(example)
    rng = np.random.default_rng(0)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 7, rng, [7, 4, 1])
    fetch = [n for n in net.inferred.shapes if "/" not in n]
    out = net(inputs=inputs, lengths=lengths, fetch=fetch)
    # lengths of every time axis: extern data, and each fetched layer's first time axis
    known = {}
    for key, s in net.extern_shapes.items():
        if s.time is not None and key in lengths:
            known[s.time] = np.asarray(lengths[key])
    for name, (_, lens) in out.items():
        if lens is not None:
            known.setdefault(net.shape(name).time, lens.numpy())
    for name, (values, lens) in out.items():
        shape = net.shape(name)
        assert values.shape.rank == len(shape.dims), (name, values.shape, shape)
        assert (lens is None) == (shape.time is None), (name, shape, lens)
        batch = 3
        for size, dim in zip(values.shape, shape.dims):
            if dim.kind == BATCH and dim.tag != "batch":  # chunks (`time_chunking`): per sequence
                assert size % 3 == 0, (name, values.shape, shape)
                batch = size
            elif dim.kind == BATCH:
                assert size == 3, (name, values.shape, shape)
            elif dim.kind == TIME:
                assert dim in known, (name, f"no lengths for {dim}", shape)
                assert size >= int(np.max(known[dim], initial=0)), (name, values.shape, shape)
            else:
                assert size == dim.size, (name, values.shape, shape)
        if lens is not None:
            assert lens.shape.as_list() == [batch] and lens.dtype == tf.int32, (name, lens)
        assert values.dtype.name == shape.dtype or (shape.sparse and values.dtype.is_integer), (
            name,
            values.dtype,
            shape,
        )


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_padding_invariance(example):
    net = _net(example)
    rng = np.random.default_rng(1)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 6, rng, [6, 3, 2])
    ref, ref_lens = _run(net, inputs, lengths)
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
        noise = (
            rng.integers(0, ext.sparse_dim, size=big.shape).astype(np.int32)
            if ext.sparse
            else rng.standard_normal(big.shape).astype(np.float32) * 10
        )
        idx = np.arange(big.shape[axis])
        mask = idx[None, :] < lengths[key][:, None]
        expand = [1] * big.ndim
        expand[0], expand[axis] = mask.shape
        padded[key] = np.where(mask.reshape(expand), big, noise)
    vals, lens = _run(net, padded, lengths)
    for d in ref_lens:
        np.testing.assert_array_equal(lens[d], ref_lens[d], err_msg=f"lengths of {d}")
    if np.issubdtype(vals.dtype, np.floating):
        assert np.all(np.isfinite(vals)), "non-finite values (in the padding?)"
    a = _masked(ref, shape, ref_lens)
    b = _masked(vals, shape, lens)
    # compare on the frames of the reference run (the padded run has more)
    sizes = {d: ref.shape[i] for i, d in enumerate(shape.dims) if d.kind == TIME}
    b = _crop_time(b, shape, sizes)
    _assert_same(b, a, example.rtol, 1e-5, "padded run vs reference")


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
    expected, expected_lens = net(inputs=inputs, lengths=lengths)["output"]
    export_saved_model(net, tmp_path / "model")
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    serving = loaded.signatures["serving_default"]
    # feed only what the serving signature asks for (the inputs the output depends on)
    wanted = set(serving.structured_input_signature[1])
    feeds = {k: tf.constant(v) for k, v in inputs.items()}
    feeds.update({f"{k}_lengths": tf.constant(v) for k, v in lengths.items()})
    keys = {k for k in wanted if not k.endswith("_lengths")}
    assert keys == set(example.inputs), (wanted, example.inputs)
    assert set(feeds) >= wanted, (wanted, set(feeds))
    got = serving(**{k: v for k, v in feeds.items() if k in wanted})
    _assert_same(got["output"].numpy(), expected.numpy(), 1e-6, 1e-6, "SavedModel output")
    if expected_lens is not None:
        np.testing.assert_array_equal(got["output_lengths"].numpy(), expected_lens.numpy())
    else:
        assert "output_lengths" not in got


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.xla], ids=[e.name for e in EXAMPLES if e.xla]
)
def test_xla_compiles_to_the_same_outputs(example):
    net = _net(example)
    rng = np.random.default_rng(4)
    inputs, lengths = make_inputs(net.extern_shapes, 3, 6, rng, [6, 3, 5])
    expected, dim_lengths = _run(net, inputs, lengths)
    fn = tf.function(
        lambda i, lens: net.forward(i, lens, training=False, fetch=("output",)),
        jit_compile=True,
        autograph=False,
    )
    got, got_lens = fn(
        {k: tf.constant(v) for k, v in inputs.items()},
        {k: tf.constant(v) for k, v in lengths.items()},
    )["output"]
    shape = net.shape("output")
    if shape.time is not None:
        np.testing.assert_array_equal(got_lens.numpy(), dim_lengths[shape.time])
    _assert_same(
        _masked(got.numpy(), shape, dim_lengths),
        _masked(expected, shape, dim_lengths),
        1e-4,
        1e-5,
        "XLA vs. graph",
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_golden_checkpoint_still_loads_to_the_same_outputs(example):
    """Golden files (tests/golden/<example>/io.npz + ckpt) were written by an earlier version
    (`python tests/make_golden.py`); every later version must reproduce them."""
    path = GOLDEN / example.name
    if not (path / "io.npz").exists():
        pytest.fail(f"no golden files for `{example.name}`: run `python tests/make_golden.py`")
    io = np.load(path / "io.npz")
    net = _fresh_net(example, seed=12345)  # other initial values on purpose; loads the ckpt
    checkpoint(net).read(str(path / "ckpt")).assert_existing_objects_matched()
    inputs = {k[3:]: io[k] for k in io.files if k.startswith("in_")}
    lengths = {k[4:]: io[k] for k in io.files if k.startswith("len_")}
    got, dim_lengths = _run(net, inputs, lengths)
    shape = net.shape("output")
    if "out_lengths" in io.files:
        np.testing.assert_array_equal(dim_lengths[shape.time], io["out_lengths"])
    _assert_same(
        _masked(got, shape, dim_lengths),
        _masked(io["out"], shape, dim_lengths),
        1e-5,
        1e-6,
        "golden output",
    )
