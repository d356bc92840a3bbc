"""RETURNN's `chunking` value, parsed without NumPy (used by import-returnn and the trainer)."""

from __future__ import annotations

from typing import Any

from netcompiler.core.errors import UserError


class ChunkingError(UserError, ValueError):
    pass


def parse_chunking(value: Any) -> tuple[int, int] | None:
    """RETURNN's `chunking` value ("size:step", "size", size, [size, step]) as (size, step);
    None for no chunking (0, "0", "", None). ChunkingError otherwise (e.g. per-key dicts)."""
    if value in (None, "", 0, "0"):
        return None
    size: int  # every branch below sets it or raises
    step: int | None = None
    if isinstance(value, str):
        head, _, tail = value.partition(":")
        try:
            size = int(head)
            step = int(tail) if tail else None
        except ValueError:
            raise ChunkingError(f'chunking {value!r} is not "size:step"') from None
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        size, step = value
    else:
        raise ChunkingError(
            f'chunking {value!r}: netcompiler takes "size:step", size or '
            f"[size, step] (the same for every key)"
        )
    step = size if not step else step
    if size < 1 or step < 1:
        raise ChunkingError(f"chunking {value!r}: size and step must be >= 1")
    return int(size), int(step)
