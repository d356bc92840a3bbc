"""`self_attention` step by step inside a decoder loop whose keys/values grow by one row a step:
under beam search (the state is reordered by the beam's parent indices at every step), with
ragged lengths, against NumPy; and inside a masked computation (keys of the masked steps only)."""

import copy
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.backend.build import compile_network  # noqa: E402

import numpy_reference as ref  # noqa: E402

V, EMB, H, DK, DV, MAX_LEN = 4, 6, 2, 4, 6, 7

# a decoder whose only memory is the self-attention over the embeddings of its earlier labels
DECODER = {
    "extern_data": {"data": {"dim": 2}, "classes": {"dim": V, "sparse": True}},
    "network": {
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": MAX_LEN,
            "unit": {
                "emb": {"class": "linear", "from": "prev:output", "n_out": EMB, "with_bias": False},
                "att": {
                    "class": "self_attention",
                    "from": "emb",
                    "n_out": DV,
                    "num_heads": H,
                    "total_key_dim": DK,
                    "attention_left_only": True,
                },
                "output_prob": {"class": "softmax", "from": "att", "target": "classes"},
                "output": {
                    "class": "choice",
                    "from": "output_prob",
                    "target": "classes",
                    "beam_size": 3,
                },
                "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
            },
        }
    },
}


def _decoder(seed):
    """The decoder with random weights scaled so that its distributions stay spread (the
    beam's hypotheses differ, several of them end early) and an end label (0) that is rarer
    than the others. Kept in the loop (teacher forcing would otherwise move the unit out of
    it: it has no recurrence but the labels)."""
    cfg = copy.deepcopy(DECODER)
    cfg["network"]["output"]["optimize_move_layers_out"] = False
    net = compile_network(cfg)
    rng = np.random.default_rng(seed)
    weights = {
        "emb/W": rng.standard_normal((V, EMB)),
        "att/QKV": rng.standard_normal((EMB, 2 * DK + DV)) * 0.7,
        "output_prob/W": rng.standard_normal((DV, V)) * 0.5,
        "output_prob/b": np.array([-1.5] + [0.0] * (V - 1)),
    }
    for name, value in weights.items():
        net.variable(f"output/{name}").assign(value.astype(np.float32))
    return net, weights


def _log_probs(weights, labels):
    """NumPy: log p(labels[t] | labels[:t]) for every t (the step-0 input is label 0, the
    choice's initial output), through the causal self-attention over the whole prefix."""
    inputs = np.concatenate([[0], labels[:-1]]).astype(np.int64)
    emb = weights["emb/W"][inputs][None]  # [1, T, EMB]
    att = ref.self_attention(emb, [len(labels)], weights["att/QKV"], H, DK, DV, left_only=True)[0]
    logits = att @ weights["output_prob/W"] + weights["output_prob/b"]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp[np.arange(len(labels)), labels]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_hypotheses_score_as_numpy_along_their_labels(seed):
    """Each n-best hypothesis' log-prob is NumPy's along its own labels: a hypothesis that
    attended to another one's keys/values (a wrong reorder by the parent indices) would not
    be, nor would one that continued from a corrupted row."""
    net, weights = _decoder(seed)
    hyps = net.search({"data": np.zeros((2, 3, 2), np.float32)}, beam_size=3, n_best=3)
    for per_seq in hyps:
        assert len(per_seq) == 3
        assert len({tuple(h["labels"]) for h in per_seq}) == 3  # distinct hypotheses
        for h in per_seq:
            labels = [int(y) for y in h["labels"]]
            assert len(labels) == h["length"] and 0 not in labels
            # an ended hypothesis also scored its end label (not part of `labels`)
            seq = labels + [0] if h["length"] < MAX_LEN else labels
            want = _log_probs(weights, np.array(seq)).sum()
            assert math.isclose(h["log_prob"], want, rel_tol=1e-4, abs_tol=1e-4), (labels, seed)


def test_forced_labels_equal_numpy_with_ragged_lengths():
    """Teacher forcing over ragged targets: every step's distribution is the NumPy one of its
    own prefix; frames past a sequence's end are not compared."""
    net, weights = _decoder(3)
    rng = np.random.default_rng(4)
    lens = np.array([7, 4, 1])
    targets = rng.integers(1, V, size=(3, 7)).astype(np.int32)
    out = net(
        {"data": np.zeros((3, 7, 2), np.float32), "classes": targets},
        {"data": [7, 7, 7], "classes": lens},
        fetch=["output/output_prob"],
    )
    probs, got_lens = out["output/output_prob"]
    np.testing.assert_array_equal(got_lens.numpy(), lens)
    probs = probs.numpy()
    for b, n in enumerate(lens):
        want = _log_probs(weights, targets[b, :n])
        got = np.log(probs[b, np.arange(n), targets[b, :n]])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


MASKED_UNIT = {
    "first": {
        "class": "slice",
        "from": "data:source",
        "axis": "F",
        "slice_start": 0,
        "slice_end": 1,
    },
    "mask3": {"class": "compare", "from": "first", "kind": "greater", "value": 0.0},
    "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
    "masked": {
        "class": "masked_computation",
        "from": "data:source",
        "mask": "mask",
        "unit": {
            "class": "self_attention",
            "n_out": 4,
            "num_heads": 2,
            "total_key_dim": 4,
            "attention_left_only": True,
        },
    },
    "output": {"class": "copy", "from": "masked"},
}


def _masked_config(unit=MASKED_UNIT):
    return {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "unit": copy.deepcopy(unit),
                "optimize_move_layers_out": False,
            }
        },
    }


def test_in_a_masked_computation_in_a_loop_attends_to_the_masked_frames_only():
    """RETURNN's masked computation runs its unit on the frames of the mask only: at a masked
    frame the self-attention reads the keys of the masked frames so far; elsewhere the output
    is the previous one (0 before the first masked frame)."""
    rng = np.random.default_rng(3)
    B, T = 3, 7
    x = rng.standard_normal((B, T, 3)).astype(np.float32)
    x[0, :, 0] = [1, -1, 1, 1, -1, -1, 1]  # mask: feature 0 > 0
    x[1, :, 0] = [-1, -1, 1, -1, 1, 1, -1]
    x[2, :, 0] = [1, 1, 1, 1, 1, -1, -1]
    lens = np.array([7, 6, 4], np.int32)
    net = compile_network(_masked_config())
    qkv = net.variables_by_name["output/masked/unit/QKV"].numpy()
    out, out_lens = net.forward(
        {"data": tf.constant(x)}, {"data": tf.constant(lens)}, training=False, fetch=("output",)
    )["output"]
    out = out.numpy()
    np.testing.assert_array_equal(out_lens.numpy(), lens)
    for b in range(B):
        frames = [t for t in range(lens[b]) if x[b, t, 0] > 0]
        packed = x[b, frames][None]
        want_packed = ref.self_attention(
            packed, np.array([len(frames)]), qkv, 2, 4, 4, left_only=True
        )[0]
        for t in range(lens[b]):
            seen = sum(1 for f in frames if f <= t)
            want = want_packed[seen - 1] if seen else np.zeros(4, np.float32)
            np.testing.assert_allclose(out[b, t], want, rtol=1e-5, atol=1e-6)


def test_with_key_shift_in_a_masked_computation_in_a_loop_is_a_clear_error():
    unit = copy.deepcopy(MASKED_UNIT)
    unit["rel"] = {
        "class": "relative_positional_encoding",
        "from": "data:source",
        "n_out": 2,
    }
    unit["masked"]["unit"]["key_shift"] = "base:rel"
    errors = netcompiler.validate(_masked_config(unit)).errors
    assert "shape.unsupported" in [e.rule for e in errors]
    err = next(e for e in errors if e.rule == "shape.unsupported")
    assert "output/masked" in err.message and "key_shift" in err.message
