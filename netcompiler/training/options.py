"""The options of training (the config's `train` section) as a dataclass; their defaults come
from `schemas/train.schema.json`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainOptions:
    """The `train` section of a config with the schema's defaults filled in (`from_config`)."""

    train_data: Any = None
    dev_data: Any = None
    batch_size: int = 5000
    max_seqs: int | None = None
    batching: str = "random"
    num_epochs: int = 1
    optimizer: dict | None = None
    learning_rate: float = 1e-3
    learning_rate_control: str = "constant"
    learning_rate_control_opts: dict | None = None
    gradient_clip: float | None = None
    learning_rates: Any = None
    gradient_clip_value: float | None = None
    gradient_noise: float = 0.0
    max_seq_length: Any = None
    accum_grad_multiple_step: int = 1
    chunking: Any = None
    model_dir: str | None = None
    save_interval: int = 1
    keep_last_n: int = 2
    random_seed: int = 42
    distribution: str = "default"
    jit_compile: bool = False
    jit_time_multiple: int = 16
    precision: str = "float32"

    @classmethod
    def from_config(cls, data: dict) -> TrainOptions:
        train = data.get("train") if isinstance(data, dict) else None
        train = dict(train) if isinstance(train, dict) else {}
        known = set(cls.__dataclass_fields__)
        # defaults come from schemas/train.schema.json, the single source of truth
        from netcompiler.frontend.schema import load_schema

        props = load_schema("train.schema.json")["properties"]
        values = {k: p["default"] for k, p in props.items() if "default" in p}
        values.update(train)
        return cls(**{k: v for k, v in values.items() if k in known})
