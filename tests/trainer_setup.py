"""Small Trainer set-ups the tests share: a Trainer from a YAML text, and its first batch."""

from __future__ import annotations

import os

from netcompiler.frontend.validate import validate
from netcompiler.training.trainer import Trainer


def tiny_12ax_config(network: str) -> str:
    """A YAML config training `network` (its lines, indented by two spaces) on 20 sequences of
    the 12AX task (9 input classes, 2 targets), all in one batch of 200 frames, Adam 0.01."""
    return f"""
extern_data:
  data: {{dim: 9, sparse: true}}
  classes: {{dim: 2, sparse: true, same_time_as: data}}
network:
{network.strip(chr(10))}
train:
  train_data: {{class: 12ax, num_seqs: 20}}
  batch_size: 200
  learning_rate: 0.01
  optimizer: {{class: adam}}
"""


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
