"""`register_as_extern_data`: a layer's output read as `data:KEY` and used as a `target`
(RETURNN's demo-tf-enc-dec appends EOS to the labels this way)."""

from __future__ import annotations

import numpy as np
import pytest

from netcompiler.frontend.validate import validate


def enc_dec() -> dict:
    return {
        "extern_data": {"data": {"dim": 5, "sparse": True}, "classes": {"dim": 4, "sparse": True}},
        "network": {
            "enc": {"class": "linear", "from": "data", "n_out": 6},
            "pooled": {"class": "reduce", "mode": "max", "axis": "T", "from": "enc"},
            "labels_": {
                "class": "reinterpret_data",
                "from": "data:classes",
                "increase_sparse_dim": 1,
            },
            "labels": {
                "class": "postfix_in_time",
                "from": "labels_",
                "postfix": 4,
                "register_as_extern_data": "classes0",
            },
            "output": {
                "class": "rec",
                "from": [],
                "target": "classes0",
                "unit": {
                    "emb": {"class": "linear", "from": "prev:output", "n_out": 6},
                    "s": {
                        "class": "rnn_cell",
                        "unit": "lstm",
                        "from": ["emb", "base:pooled"],
                        "n_out": 6,
                    },
                    "prob": {"class": "softmax", "from": "s", "target": "classes0", "loss": "ce"},
                    "output": {
                        "class": "choice",
                        "from": "prob",
                        "target": "classes0",
                        "beam_size": 2,
                    },
                    "end": {"class": "compare", "from": "output", "value": 4},
                },
            },
        },
    }


def test_registered_key_is_extern_data_made_by_a_layer():
    result = validate(enc_dec())
    assert not result.errors, [d.full_message() for d in result.errors]
    ext = result.inferred.extern
    assert str(ext["classes0"]) == "[B, T(labels)] sparse(5)"  # one more class: EOS
    assert ext["classes0"] is result.inferred.shapes["labels"]
    assert str(result.inferred.shapes["output"]) == "[B, T(labels)] sparse(5)"
    assert "data:classes0" in result.graph.g.successors("labels")


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"register_as_extern_data": "classes"}, "graph.register-extern"),  # exists already
        ({"target": "classes1"}, "graph.unknown-data"),
    ],
)
def test_register_errors(change, rule):
    cfg = enc_dec()
    if "target" in change:
        cfg["network"]["output"]["unit"]["prob"].update(change)
    else:
        cfg["network"]["labels"].update(change)
    assert rule in [d.rule for d in validate(cfg).errors]


def test_forward_and_training_read_the_registered_target(tmp_path):
    pytest.importorskip("tensorflow")
    import netcompiler

    net = netcompiler.compile(enc_dec())
    assert set(net.extern_shapes) == {"data", "classes"}  # what a caller feeds
    x = np.array([[1, 2, 3], [4, 1, 0]], np.int32)
    y = np.array([[1, 2], [3, 0]], np.int32)
    out = net(
        inputs={"data": x, "classes": y},
        lengths={"data": [3, 2], "classes": [2, 1]},
        fetch=["labels", "output"],
    )
    labels, label_lens = out["labels"]
    assert np.asarray(label_lens).tolist() == [3, 2]
    assert np.asarray(labels)[0].tolist() == [1, 2, 4] and np.asarray(labels)[1, :2].tolist() == [
        3,
        4,
    ]
    decoded, lens = out["output"]  # teacher forcing: the registered labels
    assert np.asarray(lens).tolist() == [3, 2]
    np.testing.assert_array_equal(np.asarray(decoded)[0], [1, 2, 4])

    from netcompiler.training.trainer import Trainer

    cfg = enc_dec()
    cfg["train"] = {
        "train_data": {"class": "copy", "num_seqs": 20, "num_symbols": 4, "max_len": 4},
        "num_epochs": 1,
        "batch_size": 200,
    }
    cfg["extern_data"]["data"]["dim"] = 4
    import io

    trainer = Trainer(validate(cfg), model_dir=tmp_path / "m", out=io.StringIO())
    assert trainer.input_keys == ("classes", "data")
    trainer.train()
    header, row = (tmp_path / "m" / "scores.tsv").read_text().splitlines()
    scores = dict(zip(header.split("\t"), map(float, row.split("\t"))))
    assert 0 < scores["train_loss"] < 10  # a CE over 5 classes of the registered labels
