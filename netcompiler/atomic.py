"""Writing files so that a crash never leaves a half-written one: write a temporary file in
the target's directory, flush it to disk, then rename it over the target."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path, write_fn: Callable[[str], None], suffix: str = ".tmp",
                 make_parents: bool = True) -> Path:
    """Call `write_fn(tmp_path)` on a temporary file next to `path`, then replace `path`.
    Without `make_parents`, a missing directory is an error (e.g. a mistyped `-o` path)."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str, make_parents: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write, make_parents=make_parents)
