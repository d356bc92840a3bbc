"""`import_returnn_checkpoint`: a RETURNN checkpoint as a netcompiler model directory
(`import-returnn --checkpoint`): the config compiled, the checkpoint loaded
(`netcompiler.returnn.checkpoint`) and saved as `MODEL_DIR/ckpt-NNN` with what the trainer's
checkpoints hold, so that `train` resumes from it. Imports TensorFlow."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from netcompiler.backend.build import CompiledNetwork
from netcompiler.core.atomic import atomic_write_text
from netcompiler.core.diagnostics import format_text
from netcompiler.core.errors import UserError
from netcompiler.frontend.validate import validate
from netcompiler.returnn.checkpoint import (
    ReturnnCheckpointError,
    load_returnn_checkpoint,
    read_returnn_checkpoint,
    returnn_epoch,
)
from netcompiler.training.checkpoints import checkpoint, list_checkpoints
from netcompiler.training.command_support import TrainError
from netcompiler.training.trainer import Trainer

__all__ = ["ReturnnCheckpointError", "import_returnn_checkpoint"]


def import_returnn_checkpoint(config: dict, prefix: str, model_dir: str | None) -> str:
    """Compile `config` (a netcompiler config dict), load the RETURNN checkpoint `prefix` and
    write it as the netcompiler checkpoint `MODEL_DIR/ckpt-NNN`, which `forward`, `search`,
    `compile --checkpoint` and `train` accept. `model_dir` None: the config's
    `train.model_dir`.

    NNN is RETURNN's epoch from the file name (`model.080` -> 80, `model.pretrain.003` -> 3,
    else 0), so `train` on MODEL_DIR resumes at epoch NNN + 1 (fine-tuning) as if netcompiler
    had trained the first NNN epochs, with a fresh optimizer state (RETURNN does not save its
    optimizer's slots) and a fresh learning-rate control state; RETURNN's `global_step` is kept
    in `meta.json` (`imported_from`). The checkpoint holds what the trainer's checkpoints hold
    (network, optimizer built for the config's `train.optimizer`, epoch, ...). A config that the
    trainer cannot train (no loss, a loss it lacks) gets the network's variables only: enough
    for forward, search and compile; the summary says why.
    Returns a one-line summary; ReturnnCheckpointError for user errors (nothing written)."""
    if model_dir is None:
        train = config.get("train") if isinstance(config, dict) else None
        model_dir = train.get("model_dir") if isinstance(train, dict) else None
        if not model_dir:
            raise ReturnnCheckpointError(
                "no --model-dir given and the config has no "
                "train.model_dir: where should the checkpoint go?"
            )
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ReturnnCheckpointError(f"--model-dir {model_dir}: exists and is not a directory")
    existing = list_checkpoints(model_dir)
    if existing:
        raise ReturnnCheckpointError(
            f"--model-dir {model_dir} already holds checkpoints "
            f"({', '.join(p.name for _, p in existing)}); give an empty or new directory"
        )
    prefix = read_returnn_checkpoint(prefix)[0]  # a bad prefix is reported before compiling
    result = validate(config)
    if result.errors:
        more = len(result.errors) - 1
        raise ReturnnCheckpointError(
            f"the config does not validate: "
            f"{format_text(result.errors[0])}"
            + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        )
    epoch = returnn_epoch(prefix)
    imported = {"returnn_checkpoint": os.path.abspath(prefix), "returnn_epoch": epoch}
    note = ""
    try:
        try:
            trainer = Trainer(
                result,
                model_dir=model_dir,
                out=io.StringIO(),
                strategy=tf.distribute.get_strategy(),
            )
        except TrainError as exc:  # not trainable as it is: the network's variables only
            trainer = None
            note = (
                f" (network variables only, `train` cannot resume from it: "
                f"{str(exc).strip().splitlines()[0]})"
            )
        net = trainer.net if trainer is not None else CompiledNetwork(result)
        report = load_returnn_checkpoint(net, prefix)
        imported["returnn_global_step"] = report.global_step
        if trainer is not None:
            final = trainer.save(epoch)
            _add_meta(final, {"imported_from": imported})
        else:
            final = _save_network_only(net, model_dir, epoch, {"imported_from": imported})
    except ReturnnCheckpointError:
        raise
    except UserError as exc:  # ConfigError, TrainError, Unsupported, ...
        raise ReturnnCheckpointError(str(exc).strip().splitlines()[0]) from None
    step = f" (global_step {report.global_step})" if report.global_step is not None else ""
    return f"loaded {len(report.loaded)} variables from {prefix}{step} into {final}{note}"


def _add_meta(ckpt_dir: Path, extra: dict) -> None:
    path = Path(ckpt_dir) / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(extra)
    atomic_write_text(path, json.dumps(meta, indent=1) + "\n")


def _save_network_only(net, model_dir: Path, epoch: int, extra: dict) -> Path:
    """`model_dir/ckpt-NNN` with the network's variables and meta.json, written into a
    temporary directory and renamed when complete (as the trainer does)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / f"ckpt-{epoch:03d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=model_dir))
    try:
        checkpoint(net).write(str(tmp / "ckpt"))
        meta = {"epoch": epoch, "seed": net.seed, "global_step": 0, "time": time.time()}
        meta.update(extra)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
