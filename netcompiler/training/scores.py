"""What a training run reports per epoch: the `EpochScores`, their row of `scores.tsv`
(read back on resume, with the rows that only the checkpoints' `meta.json` kept), their
TensorBoard scalars, and the summary line printed after each epoch.

TensorFlow is imported by the functions that need it (TensorBoard), not by this module."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from netcompiler.core.atomic import atomic_write_text
from netcompiler.training.checkpoints import list_checkpoints
from netcompiler.training.command_support import TrainError
from netcompiler.training.model_dir import os_reason

SCORE_COLUMNS = (
    "epoch",
    "learning_rate",
    "train_loss",
    "train_error",
    "dev_loss",
    "dev_error",
    "dev_seq_error",
    "wall_time",
)
NAN = float("nan")


@dataclass
class EpochScores:
    """The scores of one epoch (NaN: not measured, e.g. no dev data or no search)."""

    epoch: int
    learning_rate: float
    train_loss: float
    train_error: float
    dev_loss: float = NAN
    dev_error: float = NAN
    #: beam search's sequence error on dev (networks that search)
    dev_seq_error: float = NAN
    #: seconds the epoch took
    wall_time: float = 0.0
    #: whether the run has dev data (its loss and error are reported, even if NaN)
    has_dev: bool = False
    #: with several loss layers: (loss, error) of each on the training data
    per_layer: dict[str, tuple[float, float]] = field(default_factory=dict)

    def row(self) -> dict:
        """The `scores.tsv` row (formatted cells)."""
        return {
            "epoch": self.epoch,
            "learning_rate": f"{self.learning_rate:.6g}",
            "train_loss": f"{self.train_loss:.6f}",
            "train_error": f"{self.train_error:.6f}",
            "dev_loss": f"{self.dev_loss:.6f}",
            "dev_error": f"{self.dev_error:.6f}",
            "dev_seq_error": f"{self.dev_seq_error:.6f}",
            "wall_time": f"{self.wall_time:.2f}",
        }

    def scalars(self) -> dict[str, float]:
        """The TensorBoard scalars, by tag."""
        out = {
            "learning_rate": self.learning_rate,
            "train/loss": self.train_loss,
            "train/error": self.train_error,
        }
        for layer, (loss, error) in self.per_layer.items():
            out[f"train/{layer}/loss"] = loss
            out[f"train/{layer}/error"] = error
        if self.has_dev:
            out.update({"dev/loss": self.dev_loss, "dev/error": self.dev_error})
            if not math.isnan(self.dev_seq_error):
                out["dev/sequence_error"] = self.dev_seq_error
        return out

    def summary(self, num_epochs: int) -> str:
        """The line printed after the epoch."""
        dev_text = (
            f", dev loss {self.dev_loss:.4f} error {self.dev_error:.2%}" if self.has_dev else ""
        )
        if not math.isnan(self.dev_seq_error):
            dev_text += f", dev sequence error {self.dev_seq_error:.2%} (search)"
        return (
            f"epoch {self.epoch}/{num_epochs}: lr {self.learning_rate:.3g}, train loss "
            f"{self.train_loss:.4f} error {self.train_error:.2%}{dev_text} "
            f"({self.wall_time:.1f}s)"
        )


# -- scores.tsv -------------------------------------------------------------------------------------
def read_scores(model_dir: Path, up_to_epoch: int) -> list[dict]:
    """scores.tsv's rows up to `up_to_epoch`, plus the rows of checkpoints whose row is
    missing (a run killed between the checkpoint's rename and the scores write)."""
    path = model_dir / "scores.tsv"
    rows: dict[int, dict] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(SCORE_COLUMNS):
            continue
        row = dict(zip(SCORE_COLUMNS, cells))
        try:
            if int(row["epoch"]) <= up_to_epoch:
                rows[int(row["epoch"])] = row
        except ValueError:
            continue
    for epoch, ckpt in list_checkpoints(model_dir):
        if epoch > up_to_epoch or epoch in rows:
            continue
        saved = checkpoint_scores(ckpt)
        if saved is not None:
            rows[epoch] = saved
    return [rows[e] for e in sorted(rows)]


def checkpoint_scores(ckpt: Path) -> dict | None:
    """The scores row a checkpoint's meta.json holds (None if it holds no complete one)."""
    try:
        saved = json.loads((ckpt / "meta.json").read_text(encoding="utf-8")).get("scores")
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and all(c in saved for c in SCORE_COLUMNS):
        return {c: str(saved[c]) for c in SCORE_COLUMNS}
    return None


def write_scores(model_dir: Path, rows: list[dict]) -> None:
    """Rewrite scores.tsv atomically with `rows`; a TrainError if that fails."""
    lines = ["\t".join(SCORE_COLUMNS)]
    lines += ["\t".join(str(row[c]) for c in SCORE_COLUMNS) for row in rows]
    path = model_dir / "scores.tsv"
    try:
        atomic_write_text(path, "\n".join(lines) + "\n")
    except OSError as exc:
        raise TrainError(
            f"cannot write {path} ({os_reason(exc)}); the checkpoints are kept "
            f"and the next run restores the missing rows"
        ) from None


# -- TensorBoard ------------------------------------------------------------------------------------
def write_scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar (what `tf.summary.scalar` writes, without needing the tensorboard
    package installed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


class TensorBoardLog:
    """The run's TensorBoard log in `model_dir/tensorboard` (a no-op writer on a worker that
    is not the chief); faults are TrainErrors naming the directory."""

    def __init__(self, model_dir: Path, chief: bool = True):
        import tensorflow as tf

        self.path = model_dir / "tensorboard"
        try:
            self.writer = (
                tf.summary.create_file_writer(str(self.path))
                if chief
                else tf.summary.create_noop_writer()
            )
        except (OSError, tf.errors.OpError) as exc:
            raise TrainError(
                f"cannot create the TensorBoard log in {self.path} ({os_reason(exc)})"
            ) from None

    def write(self, scalars: dict[str, float], epoch: int) -> None:
        import tensorflow as tf

        try:
            with self.writer.as_default(step=epoch):
                for tag, value in scalars.items():
                    write_scalar(tag, value, epoch)
            self.writer.flush()
        except tf.errors.OpError as exc:  # e.g. the disk is full
            raise TrainError(
                f"cannot write the TensorBoard log in {self.path} "
                f"({os_reason(exc)}); the checkpoints are kept"
            ) from None

    def close(self) -> None:
        """Close the log; a failure (e.g. a full disk) is ignored: an error that led here
        matters more."""
        import tensorflow as tf

        try:
            self.writer.close()
        except tf.errors.OpError:
            pass
