"""What an import of a RETURNN config yields (`ImportResult`): the netcompiler config, the keys
not imported (with why), the ignored ones, the helper values and notes; and its YAML, headed
by a comment saying all that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netcompiler.returnn.config_values import ReturnnConfigError
from netcompiler.returnn.yaml_out import NOWRAP, comment_block, dump_yaml


class ReturnnImportError(ReturnnConfigError):
    """The config cannot be imported (e.g. its network needs Python)."""


@dataclass
class Entry:
    """One listed key: why it was not imported (or ignored)."""

    key: str
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}{where}: {self.text}"


@dataclass
class ImportResult:
    """The imported netcompiler config and what the import says about the RETURNN config."""

    source: str
    mode: str
    config: dict
    not_imported: list[Entry] = field(default_factory=list)
    python: list[Entry] = field(default_factory=list)
    ignored: list[Entry] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[Entry]:
        """Everything not imported (options without an equivalent, Python values), by line."""
        return _by_line(self.not_imported + self.python)

    def header(self, command: str | None = None) -> str:
        how = {
            "safe": "read as data, nothing run",
            "exec": "run with --exec",
            "json": "a JSON config",
        }[self.mode]
        lines = [f"Imported from the RETURNN config ({how}): {NOWRAP}{self.source}"]
        if command:
            lines.append(f"by: {NOWRAP}{command}")
        blocks = [lines]
        if self.not_imported:
            blocks.append(
                ["Not imported (no equivalent in netcompiler):"]
                + [f"  - {e}" for e in _by_line(self.not_imported)]
            )
        if self.python:
            blocks.append(["Python, not imported:"] + [f"  - {e}" for e in _by_line(self.python)])
        if self.ignored:
            blocks.append(
                ["Ignored (no meaning here, or RETURNN's no-op default):"]
                + [f"  - {e}" for e in _by_line(self.ignored)]
            )
        if self.helpers:
            blocks.append(
                ["Helper values (used to compute the values below): " + ", ".join(self.helpers)]
            )
        if self.notes:
            blocks.append(["Notes:"] + [f"  - {n}" for n in self.notes])
        return comment_block(blocks)

    def to_yaml(self, command: str | None = None) -> str:
        return self.header(command) + dump_yaml(self.config)


def _by_line(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: e.line or 0)


__all__ = ["ImportResult", "Entry", "ReturnnImportError"]
