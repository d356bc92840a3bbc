"""Writing files so that a crash never leaves a half-written one: write a temporary file in
the target's directory, flush it to disk, then rename it over the target.

The new file keeps the mode of the file it replaces (a 0600 file stays private); a new file
gets the mode `open()` would give it (0666 less the umask). After the rename the directory is
flushed too, so the new name survives a power cut."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Union

#: a file or directory name as the callers hold it
PathArg = Union[str, "os.PathLike[str]"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (not atomic, hence the lock)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def fsync_dir(path: PathArg) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: PathArg, write_fn: Callable[[str], None], suffix: str = ".tmp", make_parents: bool = True
) -> Path:
    """Call `write_fn(tmp_path)` on a temporary file next to `path`, then replace `path`.
    Without `make_parents`, a missing directory is an error (e.g. a mistyped `-o` path)."""
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(target.parent)
    return target


def atomic_write_text(path: PathArg, text: str, make_parents: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write, make_parents=make_parents)
