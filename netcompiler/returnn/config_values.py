"""What reading a RETURNN config yields: its top-level values (`ReadConfig`), the marker for a
value that is not plain data (`NotData`), and the error for a file that cannot be read.

Shared by the safe reader (`netcompiler.returnn.config_safe`), the `--exec` runner
(`netcompiler.returnn.config_exec`) and the importer (`netcompiler.returnn.convert`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netcompiler.core.errors import UserError

#: what the safe reader appends to the reason of a value it did not evaluate
NEEDS_PYTHON = " (needs Python)"


class ReturnnConfigError(UserError):
    """A config that cannot be read: one or more located, one-line messages."""

    def __init__(self, messages, usage: bool = False):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.usage = usage  # the file could not be read at all (exit 2, not 1)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class NotData:
    """A value that is not plain data (or could only be had by running Python)."""

    reason: str
    line: int | None = None
    col: int | None = None

    def where(self) -> str:
        if self.line is None:
            return ""
        return f"{self.line}:{self.col}" if self.col else str(self.line)

    def plain_reason(self) -> str:
        """The reason without the safe reader's "(needs Python)", for messages that say what
        to do about it themselves."""
        return self.reason.replace(NEEDS_PYTHON, "")


@dataclass
class ReadConfig:
    """The top-level values of a RETURNN config, in the order they were first bound."""

    path: str
    mode: str  # "safe", "exec" or "json"
    values: dict[str, Any] = field(default_factory=dict)  # data, or NotData (also nested)
    lines: dict[str, int] = field(default_factory=dict)  # line of the last binding
    used: set[str] = field(default_factory=set)  # names the file reads anywhere (helpers)

    def locate(self, key: str, value=None) -> str:
        """`PATH:LINE:COL` of a key (of its non-data cause when given)."""
        if isinstance(value, NotData) and value.line is not None:
            return f"{self.path}:{value.line}:{value.col or 1}"
        line = self.lines.get(key)
        return f"{self.path}:{line}:1" if line else self.path


def is_not_data(value) -> bool:
    return isinstance(value, NotData)


def find_not_data(value, path: tuple = ()):
    """(path, NotData) pairs inside a nested value."""
    if isinstance(value, NotData):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from find_not_data(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from find_not_data(v, path + (i,))


__all__ = [
    "ReturnnConfigError",
    "NotData",
    "ReadConfig",
    "is_not_data",
    "find_not_data",
    "NEEDS_PYTHON",
]
