"""Every example config compiles and runs forward (training mode: teacher forcing), and every
layer's run-time shape equals its inferred shape (rec sub-layers: stacked over the loop)."""

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.core.dims import BATCH, TIME  # noqa: E402
from netcompiler.layers.rec import stacked_shape  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _inputs(net, batch=3, seed=0):
    """Random inputs; every extern key's own time axis gets its own ragged lengths."""
    rng = np.random.default_rng(seed)
    values, lengths, time_sizes = {}, {}, {}
    for key, shape in net.extern_shapes.items():
        t = shape.time
        if t is not None and t not in time_sizes:
            time_sizes[t] = np.array([7] + list(rng.integers(2, 8, batch - 1)), np.int32)
        dims = [
            batch if d.kind == BATCH else int(time_sizes[d].max()) if d.kind == TIME else d.size
            for d in shape.dims
        ]
        if shape.sparse:
            # labels 1.. (0 is EOS in the decoder tasks)
            values[key] = rng.integers(1, shape.sparse_dim, dims).astype(np.int32)
        else:
            values[key] = rng.standard_normal(dims).astype(np.float32)
        if t is not None:
            lengths[key] = time_sizes[t]
    return values, lengths


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_layer_runs_with_its_inferred_shape(path):
    net = netcompiler.compile(path)
    inputs, lengths = _inputs(net)
    names = list(net.inferred.shapes)
    out = net(inputs=inputs, lengths=lengths, training=True, fetch=names)
    for name in names:
        layer = net.network.layers[name]
        shape = net.shape(name)
        if layer.scope.in_rec:
            shape = stacked_shape(shape, net.inferred.loop_dims[layer.scope.rec_layer.name])
        values, lens = out[name]
        assert values.shape.rank == len(shape.dims), (name, values.shape, shape)
        for size, dim in zip(values.shape, shape.dims):
            if dim.kind == BATCH:
                assert size == 3, (name, values.shape, shape)
            elif dim.kind != TIME:
                assert size == dim.size, (name, values.shape, shape)
        if lens is not None:
            axis = shape.index(shape.time) if not layer.scope.in_rec else 1
            assert values.shape[axis] >= int(np.max(lens.numpy())), (name, values.shape)
        if values.dtype.is_floating:
            assert np.all(np.isfinite(values.numpy())), name


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if "choice" in p.read_text()], ids=lambda p: p.stem
)
def test_decoder_examples_search(path):
    net = netcompiler.compile(path)
    inputs, lengths = _inputs(net, seed=1)
    keys = {k for k in inputs if net.inferred.extern[k] is not None}
    results = net.search(
        inputs={k: inputs[k] for k in keys if k != "classes"},
        lengths={k: lengths[k] for k in keys if k != "classes"},
        beam_size=3,
        n_best=2,
    )
    assert len(results) == 3
    for hyps in results:
        assert len(hyps) == 2
        assert hyps[0]["score"] >= hyps[1]["score"]
        for h in hyps:
            assert len(h["labels"]) == h["length"]
