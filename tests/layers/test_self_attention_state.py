"""self_attention state across calls: streaming a long input in chunks (semantics.md)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.frontend.validate import validate  # noqa: E402

import numpy_reference as ref  # noqa: E402

H, DK, DV, N_IN = 2, 4, 6, 5


def _net(**opts):
    layer = {
        "class": "self_attention",
        "n_out": DV,
        "num_heads": H,
        "total_key_dim": DK,
        "attention_left_only": True,
        "initial_state": "keep_over_epoch",
        **opts,
    }
    return netcompiler.compile(
        {"extern_data": {"data": {"dim": N_IN}}, "network": {"output": layer}}, seed=3
    )


def _chunks(x, lens, size):
    """Split each sequence of a ragged batch into consecutive chunks of at most `size` frames."""
    start = np.zeros_like(lens)
    while np.any(start < lens):
        n = np.clip(lens - start, 0, size)
        chunk = (
            np.random.default_rng(int(start.sum()))
            .standard_normal((x.shape[0], size, x.shape[2]))
            .astype(np.float32)
            * 5
        )  # random padding
        for b in range(x.shape[0]):
            chunk[b, : n[b]] = x[b, start[b] : start[b] + n[b]]
        yield chunk, n
        start = start + n


@pytest.mark.parametrize("size", [1, 3, 4])
def test_streaming_in_chunks_equals_the_full_causal_layer(size):
    net = _net()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 10, N_IN)).astype(np.float32)
    lens = np.array([10, 7, 4])
    full = ref.self_attention(
        x, lens, net.variable("output/QKV").numpy(), H, DK, DV, left_only=True
    )
    outs = [[] for _ in range(3)]
    for chunk, n in _chunks(x, lens, size):
        got = net(inputs={"data": chunk}, lengths={"data": n})["output"][0].numpy()
        for b in range(3):
            outs[b].append(got[b, : n[b]])
    for b in range(3):
        np.testing.assert_allclose(np.concatenate(outs[b]), full[b, : lens[b]], atol=1e-5)


def test_state_matches_the_numpy_reference_including_restrict_and_counts():
    for restrict in (False, True):
        net = _net(restrict_state_to_last_seq=restrict)
        qkv = net.variable("output/QKV").numpy()
        rng = np.random.default_rng(1)
        prev_k = prev_v = None
        counts = None
        for step in range(3):
            x = rng.standard_normal((2, 4, N_IN)).astype(np.float32)
            n = np.array([4, 2 + step % 2])
            got = net(inputs={"data": x}, lengths={"data": n})["output"][0].numpy()
            want, prev_k, prev_v, counts = ref.self_attention_with_state(
                x,
                n,
                qkv,
                H,
                DK,
                DV,
                prev_k=prev_k,
                prev_v=prev_v,
                state_var_lengths=counts,
                left_only=True,
                restrict_state_to_last_seq=restrict,
            )
            for b in range(2):
                np.testing.assert_allclose(got[b, : n[b]], want[b, : n[b]], atol=1e-5)
            np.testing.assert_array_equal(net.variable("output/state_lengths").numpy(), counts)


def test_reset_state_and_a_new_batch_size_start_from_an_empty_state():
    net = _net()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, N_IN)).astype(np.float32)
    first = net(inputs={"data": x}, lengths={"data": [3, 2]})["output"][0].numpy()
    second = net(inputs={"data": x}, lengths={"data": [3, 2]})["output"][0].numpy()
    assert not np.allclose(first, second)  # the second call also sees the first call's keys
    net.reset_state()
    again = net(inputs={"data": x}, lengths={"data": [3, 2]})["output"][0].numpy()
    np.testing.assert_allclose(again[0], first[0], atol=1e-6)
    other_batch = net(inputs={"data": x[:1]}, lengths={"data": [3]})["output"][0].numpy()
    np.testing.assert_allclose(other_batch[0], first[0], atol=1e-6)


def test_state_variables_are_not_trained_nor_counted():
    net = _net()
    names = {v.name.split(":")[0] for v in net.trainable_variables}
    assert not any("state" in n for n in names)
    assert net.inferred.param_count("output") == N_IN * (2 * DK + DV)


def test_state_options_are_validated():
    base = {
        "class": "self_attention",
        "n_out": DV,
        "num_heads": H,
        "total_key_dim": DK,
        "attention_left_only": True,
        "initial_state": "keep_over_epoch",
    }
    net = {
        "rel": {"class": "relative_positional_encoding", "n_out": DK // H},
        "output": dict(base, key_shift="rel"),
    }
    result = validate({"extern_data": {"data": {"dim": N_IN}}, "network": net})
    assert [d.rule for d in result.errors] == ["shape.key-shift"]
    net = {"n": {"class": "length", "from": "data"}, "output": dict(base, state_var_lengths="data")}
    result = validate({"extern_data": {"data": {"dim": N_IN}}, "network": net})
    assert any(d.rule == "shape.state-lengths" and "[B]" in d.message for d in result.errors)
    result = validate(
        {
            "extern_data": {"data": {"dim": N_IN}},
            "network": {"output": dict(base, initial_state="forever")},
        }
    )
    assert [d.rule for d in result.errors] == ["schema.enum"]
