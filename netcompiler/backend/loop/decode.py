"""`net.search`: beam search with a compiled network, one `tf.function` per input signature
(kept by the network), returning the n-best hypotheses of every sequence as NumPy values."""

from __future__ import annotations

import tensorflow as tf

from netcompiler.backend.graph_rewrites import CpuTunedFunction
from netcompiler.backend.loop.unit_traits import choice_targets, search_rec_layer


def search(net, inputs, lengths=None, beam_size=None, n_best=1):
    """Beam search; per sequence the n best hypotheses, best first:
    [[{"labels": int array [len], "length": int, "score": float, "log_prob": float}, ...], ...].
    `score` is what hypotheses are ranked by (log-prob / length with length_normalization)."""
    import numpy as np

    rec = search_rec_layer(net)
    targets = choice_targets(rec)
    inputs = {k: v for k, v in inputs.items() if k not in targets}
    lengths = {k: v for k, v in (lengths or {}).items() if k in inputs}
    keys = tuple(sorted(inputs))

    def make():
        signature = list(net.input_signature(keys))

        def run(inp, lens):
            opts = {"beam_size": beam_size, "n_best": int(n_best), "results": {}}
            net.forward(inp, lens, training=False, fetch=(rec.name,), search=opts)
            return opts["results"][rec.name]

        return CpuTunedFunction(tf.function(run, input_signature=signature, autograph=False))

    fn = net.search_function((keys, beam_size, int(n_best)), make)
    tensors, lens = net.prepare_inputs(inputs, lengths)
    res = {k: np.asarray(v) for k, v in fn(tensors, lens).items()}
    return [_hypotheses(res, b) for b in range(res["labels"].shape[0])]


def _hypotheses(res: dict, b: int) -> list[dict]:
    """The n-best hypotheses of sequence `b` from the search results (NumPy)."""
    hyps = []
    for n in range(res["labels"].shape[1]):
        L = int(res["lengths"][b, n])
        hyps.append(
            {
                "labels": res["labels"][b, n, :L],
                "length": L,
                "score": float(res["scores"][b, n]),
                "log_prob": float(res["log_probs"][b, n]),
            }
        )
    return hyps
