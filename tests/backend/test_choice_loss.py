"""A loss on a `choice` layer (RETURNN configs put `loss: ce` on the decoder's choice): the
cross entropy of the choice's input distribution (the softmax feeding it) against the choice's
target, checked against a NumPy CE of that distribution."""

import io

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

EXTERN = {"data": {"dim": 4, "sparse": True}, "classes": {"dim": 4, "sparse": True}}


def decoder(choice_extra=None, log_prob=False):
    unit = {
        "embed": {"class": "linear", "from": "prev:output", "n_out": 3},
        "output": {
            "class": "choice",
            "from": "prob",
            "target": "classes",
            "beam_size": 3,
            "loss": "ce",
            **(choice_extra or {}),
        },
        "end": {"class": "compare", "from": "output", "value": 0},
    }
    if log_prob:
        unit["lin"] = {"class": "linear", "from": "embed", "n_out": 4}
        unit["prob"] = {"class": "eval", "from": "lin", "eval": "tf.nn.log_softmax(source(0))"}
        unit["output"]["input_type"] = "log_prob"
    else:
        unit["prob"] = {"class": "softmax", "from": "embed", "target": "classes"}
    return {
        "extern_data": EXTERN,
        "network": {"output": {"class": "rec", "from": [], "target": "classes", "unit": unit}},
    }


def _rules(r):
    return [(d.rule, d.dotted_path) for d in r.errors]


def test_choice_loss_validates():
    assert not validate(decoder()).errors, _rules(validate(decoder()))
    # outside a rec unit: over time
    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}},
        "network": {
            "prob": {"class": "softmax", "from": "data", "n_out": 4},
            "output": {
                "class": "choice",
                "from": "prob",
                "target": "classes",
                "beam_size": 2,
                "loss": "ce",
            },
        },
    }
    r = validate(cfg)
    assert not r.errors, _rules(r)


def test_choice_loss_errors():
    r = validate(decoder({"loss": "mse"}))
    assert ("shape.loss-target", "network.output.unit.output.loss") in _rules(r)
    # the input distribution must fit the target (checked on the distribution)
    cfg = {
        "extern_data": {"data": {"dim": 4}, "classes": {"dim": 4, "sparse": True}},
        "network": {
            "output": {
                "class": "choice",
                "from": "data",
                "target": "classes",
                "beam_size": 2,
                "loss": "ce",
            }
        },
    }
    r = validate(cfg)
    assert ("shape.loss-target", "network.output.from") in _rules(r)


def _np_ce(logp, labels, lens):
    total, frames = 0.0, 0
    for b, n in enumerate(lens):
        for t in range(n):
            total -= logp[b, t, labels[b, t]]
            frames += 1
    return total, frames


@pytest.mark.parametrize("log_prob", [False, True])
def test_choice_loss_is_ce_of_its_input(tmp_path, log_prob):
    pytest.importorskip("tensorflow")
    from netcompiler.training.trainer import Trainer

    cfg = decoder(log_prob=log_prob)
    cfg["train"] = {
        "train_data": {"class": "copy", "num_seqs": 8, "num_symbols": 4, "max_len": 4},
        "num_epochs": 1,
        "batch_size": 200,
    }
    trainer = Trainer(validate(cfg), model_dir=tmp_path / "m", out=io.StringIO())
    (spec,) = trainer.losses
    assert (spec.layer, spec.source) == ("output/output", "output/prob")
    assert trainer.input_keys == ("classes",)
    labels = np.array([[1, 3, 2, 0], [2, 1, 0, 0], [3, 0, 0, 0]], np.int32)
    lens = np.array([4, 2, 1], np.int32)
    stats = trainer._replica_losses({"classes": labels}, {"classes": lens}, 1.0, False).numpy()
    prob, _ = trainer.net(
        inputs={"classes": labels}, lengths={"classes": lens}, fetch=["output/prob"]
    )["output/prob"]
    prob = prob.numpy().astype(np.float64)
    logp = prob if log_prob else np.log(prob)
    total, frames = _np_ce(logp, labels, lens)
    np.testing.assert_allclose(stats[0, 0], total, rtol=1e-5)
    assert stats[0, 1] == frames == 7
    errors = sum(
        int(np.argmax(logp[b, t]) != labels[b, t]) for b, n in enumerate(lens) for t in range(n)
    )
    assert stats[0, 2] == errors
