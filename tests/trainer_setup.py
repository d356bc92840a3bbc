"""Small Trainer set-ups the tests share: a Trainer from a YAML text, and its first batch."""

from __future__ import annotations

import os

from netcompiler.frontend.validate import validate
from netcompiler.training.trainer import Trainer


def trainer_from_yaml(tmp_path, text: str, name: str = "model") -> Trainer:
    """A Trainer of the config `text` (written to `tmp_path/<name>.yaml`; it must validate),
    with its model directory `tmp_path/<name>` and its output discarded."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    result = validate(str(path))
    assert not result.errors, result.errors
    return Trainer(result, model_dir=tmp_path / name, out=open(os.devnull, "w"))


def first_train_batch(trainer: Trainer):
    """The first batch of epoch 1 of the trainer's training data (loaded here)."""
    trainer.load_data()
    groups = trainer._groups(trainer.train_data, 1)
    return next(iter(trainer._iterate(trainer.train_data, groups)))
