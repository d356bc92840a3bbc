"""The conformance registry: one small example network per layer class (Sonnet style).

Every layer class of the registry must appear here (`test_conformance.py` fails otherwise);
each example runs through one battery: inferred shape == run-time shape, padding invariance, no
retracing, SavedModel round trip, XLA compilation (where `xla`), golden checkpoint.

An example is a config whose layer under test is `output` (fetched); its inputs are generated
from `extern_data`: dense -> normal noise, sparse -> random class indices.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Example:
    name: str
    config: dict
    classes: tuple[str, ...]  # layer classes this example covers
    xla: bool = True
    inputs: tuple[str, ...] = ("data",)
    rtol: float = 1e-5


def _cfg(network: dict, data: dict | None = None, **extern) -> dict:
    ext = {"data": data or {"dim": 5}}
    ext.update(extern)
    return {"extern_data": ext, "network": network}


EXAMPLES: list[Example] = [
    Example("linear", _cfg({"output": {"class": "linear", "n_out": 6, "activation": "tanh"}}),
            ("linear",)),
    Example("linear_sparse", _cfg({"output": {"class": "linear", "n_out": 4}},
                                  {"dim": 7, "sparse": True}), ("linear",)),
    Example("softmax", _cfg({"output": {"class": "softmax", "n_out": 3}}), ("softmax",)),
    Example("rec_lstm", _cfg({"output": {"class": "rec", "unit": "lstm", "n_out": 4}}), ("rec",)),
    Example("rec_lstm_backward", _cfg({"output": {"class": "rec", "unit": "lstm", "n_out": 4,
                                                  "direction": -1}}), ("rec",)),
    Example("rec_gru", _cfg({"output": {"class": "rec", "unit": "gru", "n_out": 3}}), ("rec",)),
    Example("self_attention", _cfg({"output": {"class": "self_attention", "n_out": 6,
                                               "num_heads": 2, "total_key_dim": 4}}),
            ("self_attention",)),
    Example("self_attention_causal_rel_pos", _cfg({
        "rel": {"class": "relative_positional_encoding", "n_out": 2, "clipping": 3},
        "output": {"class": "self_attention", "n_out": 6, "num_heads": 2, "total_key_dim": 4,
                   "attention_left_only": True, "key_shift": "rel"}}),
            ("self_attention", "relative_positional_encoding")),
]


def make_inputs(example_shapes: dict, batch: int, time: int, rng: np.random.Generator,
                lengths: list[int] | None = None):
    """Random inputs for the extern data shapes: (values by key, lengths by key)."""
    values, lens = {}, {}
    if lengths is None:
        lengths = [time] + list(rng.integers(1, time + 1, size=batch - 1))
    for key, shape in example_shapes.items():
        dims = []
        for d in shape.dims:
            if d.kind == "batch":
                dims.append(batch)
            elif d.kind == "time":
                dims.append(time)
            else:
                dims.append(d.size)
        if shape.sparse:
            values[key] = rng.integers(0, shape.sparse_dim, size=dims).astype(np.int32)
        else:
            values[key] = rng.standard_normal(dims).astype(np.float32)
        if shape.time is not None:
            lens[key] = np.asarray(lengths, np.int32)
    return values, lens
