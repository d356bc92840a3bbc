"""A hand-weighted decoder whose beam search can be checked by hand (shared by the loop and
`netcompiler search` tests).

p(y_t | y_{t-1}) is a Markov chain over {0 = EOS, 1, 2}, start state 0 (initial_output).
Greedy: 1 (0.6), then EOS (0.34) -> 0.204. Beam 2: 2 (0.4), then EOS (0.9) -> 0.36.
"""

from __future__ import annotations

import numpy as np

MARKOV = {
    "extern_data": {"data": {"dim": 2}, "classes": {"dim": 3, "sparse": True}},
    "network": {
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": 6,
            "unit": {
                "output_prob": {"class": "softmax", "from": "prev:output", "n_out": 3},
                "output": {
                    "class": "choice",
                    "from": "output_prob",
                    "target": "classes",
                    "beam_size": 2,
                },
                "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
            },
        }
    },
}
TRANSITIONS = np.array(
    [
        [1e-6, 0.6, 0.4],  # start
        [0.34, 0.33, 0.33],  # after 1
        [0.9, 0.05, 0.05],
    ]
)  # after 2


def markov_net():
    """The chain compiled, its transition log-probabilities as the softmax weights."""
    from netcompiler.backend.build import compile_network

    net = compile_network(MARKOV)
    net.variable("output/output_prob/W").assign(np.log(TRANSITIONS).astype(np.float32))
    net.variable("output/output_prob/b").assign(np.zeros(3, np.float32))
    return net
