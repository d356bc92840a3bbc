"""The model directory on disk: its exclusive lock, checking that it can be written before any
training, removing what killed runs left behind, and publishing a checkpoint atomically
(written into a temporary directory, fsynced, renamed; older ones pruned). Faults (a file in
the way, no permission, a full disk) become one-line TrainErrors naming the directory.

TensorFlow is not imported here: the checkpoint files are written by the caller's function."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from netcompiler.core.atomic import current_umask, fsync_dir
from netcompiler.training.checkpoints import list_checkpoints, newest_checkpoint, tf_errors
from netcompiler.training.command_support import TrainError
from netcompiler.training.fault_injection import die_or_stop_if_asked

LOCK_NAME = ".lock"


class ModelDirBusy(TrainError):
    """Another process holds the lock of the model directory."""


def os_reason(exc: BaseException) -> str:
    """The short reason of an OS or TensorFlow error ("No space left on device")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    message = str(getattr(exc, "message", "") or exc).strip()
    # TensorFlow: "/path/part-00000...tempstate123; No space left on device"
    return message.rsplit("; ", 1)[-1].splitlines()[0] if message else type(exc).__name__


# -- the lock ---------------------------------------------------------------------------------------
class ModelDirLock:
    """An exclusive `flock` on `model_dir/.lock` with the holder's PID in the file; released
    by `release()` or when the process dies (the kernel drops it with the file descriptor)."""

    def __init__(self, model_dir):
        self.path = Path(model_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no lock
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise TrainError(
                f"train.model_dir {self.path.parent} is not writable: cannot "
                f"create {self.path} ({os_reason(exc)})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self.holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ModelDirBusy(
                    f"train.model_dir {self.path.parent} is in use by another run (process "
                    f"{holder or 'unknown'} holds the lock {self.path}); wait for it to end or "
                    f"use another --model-dir"
                ) from None
            raise TrainError(
                f"train.model_dir {self.path.parent}: cannot lock {self.path} ({os_reason(exc)})"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the lock holds without the PID
        self.fd = fd

    @staticmethod
    def holder(fd: int) -> str:
        """The PID the lock file names ("" if it cannot be read)."""
        try:
            return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # drops the flock
            self.fd = None


def prepare_model_dir(model_dir: Path, chief: bool = True) -> ModelDirLock | None:
    """Create `model_dir`, take its lock (the chief only: a shared model_dir has one holder)
    and check that it is writable: a TrainError naming the directory otherwise (before any
    training, so no work is lost). Returns the lock held (None for a non-chief worker)."""
    if model_dir.exists() and not model_dir.is_dir():
        raise TrainError(f"train.model_dir {model_dir} exists and is not a directory")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(
            f"train.model_dir {model_dir}: cannot create the directory ({os_reason(exc)})"
        ) from None
    if not chief:
        return None
    lock = ModelDirLock(model_dir)
    lock.acquire()
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=model_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        lock.release()
        raise TrainError(
            f"train.model_dir {model_dir} is not writable ({os_reason(exc)})"
        ) from None
    return lock


def remove_leftovers(model_dir: Path) -> None:
    """Remove the temporary checkpoint and scores files killed runs left behind (call it only
    under the model_dir lock: never a live run's)."""
    for pattern in (".tmp-ckpt-*", ".old-ckpt-*"):
        for p in model_dir.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)
    for p in model_dir.glob(".scores.tsv.*.tmp"):  # atomic_write's temporary file
        try:
            p.unlink()
        except OSError:
            pass


# -- publishing a checkpoint ------------------------------------------------------------------------
def fsync_tree(root) -> None:
    """fsync every file below `root`, then the directories (deepest first)."""
    root = Path(root)
    dirs = []
    for dirpath, _, files in os.walk(root):
        dirs.append(dirpath)
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in reversed(dirs):
        fsync_dir(d)


def publish_checkpoint(
    model_dir: Path, epoch: int, write: Callable[[str], object], meta: dict, keep_last_n: int
) -> Path:
    """Publish `model_dir/ckpt-NNN` for `epoch`: `write(prefix)` writes the checkpoint files
    into a temporary directory, `meta` goes to its `meta.json`; fsynced before the rename, the
    directory after it; then prune to the newest `keep_last_n`. A write that fails (disk full,
    permissions) is a TrainError and leaves no temporary directory, the earlier checkpoints
    intact."""
    final = model_dir / f"ckpt-{epoch:03d}"
    tmp = None
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=model_dir))
        write(str(tmp / "ckpt"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        fsync_tree(tmp)
        die_or_stop_if_asked(epoch, "save")
        os.chmod(tmp, 0o777 & ~current_umask())
        replace_checkpoint_dir(tmp, final)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, tf_errors())):
            kept = newest_checkpoint(model_dir)
            raise TrainError(
                f"cannot write the checkpoint of epoch {epoch} into train.model_dir "
                f"{model_dir} ({os_reason(exc)}); "
                + (
                    f"the earlier checkpoint {kept} is kept"
                    if kept
                    else "no checkpoint was written"
                )
            ) from None
        raise
    for _, path in list_checkpoints(model_dir)[: -int(keep_last_n)]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def replace_checkpoint_dir(tmp: Path, final: Path) -> None:
    """Rename the complete checkpoint `tmp` to `final`; an existing `final` is moved aside
    first and removed only after the rename (and the directory's fsync)."""
    model_dir = final.parent
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=model_dir))
        os.replace(final, old / "x")
        os.replace(tmp, final)
        fsync_dir(model_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
        fsync_dir(model_dir)
