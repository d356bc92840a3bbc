"""`rec` options as RETURNN configs write them: `max_seq_len` expressions, `size_target`, and the
hint for a decoder that reads its own label of the current step."""

from __future__ import annotations

import numpy as np
import pytest

from netcompiler.frontend.seq_len_expr import SeqLenExprError, evaluate, parse, references
from netcompiler.frontend.validate import validate

# -- max_seq_len expressions (parsed, never executed) ----------------------------------------------


@pytest.mark.parametrize(
    "text, lengths, expected",
    [
        ("max_len_from('base:encoder') * 3", {"base:encoder": 7}, 21),
        ('max_len_from("data:data") + 10', {"data:data": 4}, 14),
        ("int(max_len_from('base:enc') / 2) + 1", {"base:enc": 5}, 3),
        ("max_len_from('base:enc') // 2", {"base:enc": 5}, 2),
        ("min(max_len_from('base:a'), 100) - -1", {"base:a": 30}, 31),
        ("max(max_len_from('base:a'), max_len_from('base:b'))", {"base:a": 3, "base:b": 8}, 8),
        ("1.5 * max_len_from('base:a')", {"base:a": 3}, 4),
        ("40", {}, 40),
    ],
)
def test_max_seq_len_expressions(text, lengths, expected):
    tree = parse(text)
    assert references(tree) == list(lengths)
    assert evaluate(tree, lengths.__getitem__) == expected


@pytest.mark.parametrize(
    "text, part",
    [
        ("__import__('os').system('true')", "__import__"),
        ("max_len_from(encoder)", "string literal"),
        ("max_len_from('base:enc') ** 2", "**"),
        ("open('x')", "open"),
        ("[1][0]", "[1][0]"),
        ("", "empty"),
    ],
)
def test_max_seq_len_rejects_anything_else(text, part):
    with pytest.raises(SeqLenExprError, match="not allowed|string literal|empty|not an expr") as e:
        parse(text)
    assert part in str(e.value) or part in ("**",)


def decoder(max_seq_len, **rec_opts) -> dict:
    return {
        "extern_data": {"data": {"dim": 6, "sparse": True}, "classes": {"dim": 6, "sparse": True}},
        "network": {
            "enc": {"class": "linear", "from": "data", "n_out": 8},
            "pooled": {"class": "reduce", "mode": "max", "axis": "T", "from": "enc"},
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes",
                "max_seq_len": max_seq_len,
                **rec_opts,
                "unit": {
                    "emb": {"class": "linear", "from": "prev:output", "n_out": 8},
                    "s": {"class": "rnn_cell", "unit": "lstm", "from": "emb", "n_out": 8},
                    "prob": {"class": "softmax", "from": "s", "target": "classes", "loss": "ce"},
                    "output": {
                        "class": "choice",
                        "from": "prob",
                        "target": "classes",
                        "beam_size": 2,
                    },
                    "end": {"class": "compare", "from": "output", "kind": "equal", "value": 0},
                },
            },
        },
    }


def test_max_seq_len_expression_validates_with_its_references():
    result = validate(decoder("max_len_from('base:enc') * 2"))
    assert not result.errors, [d.full_message() for d in result.errors]
    assert "enc" in result.graph.g.predecessors("output")


@pytest.mark.parametrize(
    "text, rule",
    [
        ("max_len_from('base:encoder') * 2", "graph.unknown-layer"),
        ("max_len_from('base:enc') ** 2", "graph.max-seq-len"),
        ("max_len_from('base:pooled')", "shape.max-seq-len"),  # [B, F=8]: no time axis
    ],
)
def test_max_seq_len_expression_errors(text, rule):
    result = validate(decoder(text))
    assert [(d.rule, d.dotted_path) for d in result.errors] == [
        (rule, "network.output.max_seq_len")
    ]


def test_search_stops_at_the_max_seq_len_expression():
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(decoder("max_len_from('base:enc') + 2"), seed=3)
    x = np.array([[1, 2, 3, 4, 5], [2, 3, 1, 0, 0]], np.int32)
    hyps = net.search(inputs={"data": x}, lengths={"data": [5, 3]}, beam_size=2)
    lengths = [h[0]["length"] for h in hyps]
    # the batch's longest input is 5 frames: at most 7 steps, whatever the (untrained) net does
    assert max(lengths) <= 7
    net = netcompiler.compile(decoder(3), seed=3)
    hyps = net.search(inputs={"data": x}, lengths={"data": [5, 3]}, beam_size=2)
    assert max(h[0]["length"] for h in hyps) <= 3


# -- size_target ----------------------------------------------------------------------------------


def sized(**rec_opts) -> dict:
    return {
        "extern_data": {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}},
        "network": {
            "output": {
                "class": "rec",
                "from": [],
                **rec_opts,
                "unit": {
                    "acc": {
                        "class": "linear",
                        "from": ["prev:acc"],
                        "n_out": 3,
                        "activation": "tanh",
                        "bias_init": 0.5,
                    },
                    "output": {"class": "copy", "from": "acc"},
                },
            }
        },
    }


def test_size_target_sets_the_loop_axis():
    result = validate(sized(size_target="classes"))
    assert not result.errors, [d.full_message() for d in result.errors]
    assert str(result.inferred.shapes["output"]) == "[B, T(classes), F=3]"
    assert [d.rule for d in validate(sized(size_target="clases")).errors] == ["graph.unknown-data"]


def test_size_target_gives_the_loop_length_at_run_time():
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(sized(size_target="classes"))
    y = np.zeros((2, 6), np.int32)
    values, lengths = net(inputs={"classes": y}, lengths={"classes": [6, 2]})["output"]
    assert values.shape[:2] == (2, 6)
    assert list(np.asarray(lengths)) == [6, 2]
    # every step applies tanh(W acc + 0.5) to the previous one, the same for every sequence
    v = np.asarray(values)
    np.testing.assert_allclose(v[1, :2], v[0, :2], rtol=1e-6)


# -- a cycle through the decoder's own choice -----------------------------------------------------


def test_cycle_through_choice_suggests_prev():
    cfg = decoder(10)
    cfg["network"]["output"]["unit"]["emb"]["from"] = "output"  # should be prev:output
    result = validate(cfg)
    cycles = [d for d in result.errors if d.rule == "graph.cycle"]
    assert len(cycles) == 1
    assert cycles[0].hint == "did you mean `prev:output`?"
    assert cycles[0].dotted_path == "network.output.unit.emb"


# -- `:i`, the step index ---------------------------------------------------------------------------


def step_index_net(move_out: bool) -> dict:
    return {
        "extern_data": {"data": {"dim": 3, "sparse": True}},
        "network": {
            "output": {
                "class": "rec",
                "from": "data",
                "optimize_move_layers_out": move_out,
                "unit": {
                    "i": {"class": "copy", "from": ":i"},
                    "x": {
                        "class": "eval",
                        "from": [":i", "data:source"],
                        "eval": "tf.cast(source(0) * source(1), tf.float32)",
                    },
                    "acc": {"class": "combine", "kind": "add", "from": ["prev:acc", "i"]},
                    "output": {"class": "copy", "from": "acc"},
                },
            }
        },
    }


def test_step_index_shapes():
    result = validate(step_index_net(True))
    assert not result.errors, [d.full_message() for d in result.errors]
    got = {k: str(v) for k, v in result.inferred.shapes.items()}
    assert got["output/i"] == "[] int32"  # a scalar per step, no batch axis (as in RETURNN)
    assert got["output/x"] == "[B]"
    assert got["output"] == "[T(data)] int32"
    bad = validate(
        {
            "extern_data": {"data": {"dim": 3}},
            "network": {"output": {"class": "copy", "from": ":i"}},
        }
    )
    assert [d.rule for d in bad.errors] == ["graph.step-outside-rec"]


@pytest.mark.parametrize("move_out", [True, False])
def test_step_index_values(move_out):
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(step_index_net(move_out))
    data = np.array([[1, 2, 0, 1, 2], [2, 2, 1, 0, 0]], np.int32)
    out = net(
        inputs={"data": data}, lengths={"data": [5, 3]}, fetch=["output", "output/i", "output/x"]
    )
    assert np.asarray(out["output/i"][0]).tolist() == [0, 1, 2, 3, 4]
    assert np.asarray(out["output"][0]).tolist() == [0, 1, 3, 6, 10]  # running sum of i
    x = np.asarray(out["output/x"][0])
    expected = np.arange(5)[None, :] * data  # i * label, per frame
    for b, n in enumerate([5, 3]):
        np.testing.assert_allclose(x[b, :n], expected[b, :n])
