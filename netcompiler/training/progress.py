"""The progress of a training epoch while it runs: a rich progress bar on a terminal, a few
plain lines otherwise (about five per epoch)."""

from __future__ import annotations

import sys


class Progress:
    """A rich progress bar per epoch on a terminal, plain lines otherwise."""

    def __init__(self, out=None, enabled: bool | None = None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if enabled is None else enabled
        self._bar = None
        self._task = None
        self._every = 1

    def start(self, epoch: int, total: int) -> None:
        if self.tty:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as Bar

                self._bar = Bar(
                    TextColumn(f"epoch {epoch}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                    transient=True,
                )
                self._bar.start()
                self._task = self._bar.add_task("train", total=total, info="")
                return
            except ImportError:
                self._bar = None
        self._epoch, self._total = epoch, total
        self._every = max(1, total // 5)

    def update(self, step: int, loss: float, lr: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=f"loss {loss:.4f}")
        elif step % self._every == 0 or step == self._total:
            print(
                f"epoch {self._epoch} step {step}/{self._total} loss {loss:.4f} lr {lr:.3g}",
                file=self.out,
                flush=True,
            )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
