"""Diagnostics: errors and warnings as plain values with a location.

Every phase (load, schema, graph, shapes) reports problems as `Diagnostic` values instead of
raising, so `netcompiler validate` can report all of them at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.errors import EXIT_USAGE, UserError

ERROR = "error"
WARNING = "warning"
#: information that changes nothing the user wrote about, e.g. an assumption RETURNN makes too
NOTE = "note"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a config.

    `path` is the path in the config data (keys and list indices); `file`, `line`, `col` (both
    1-based) locate it in the source text when it came from a file.
    """

    severity: str
    message: str
    rule: str
    path: ConfigPath = ()
    file: str | None = None
    line: int | None = None
    col: int | None = None
    hint: str | None = None

    @property
    def dotted_path(self) -> str:
        return format_path(self.path)

    def located(self, file: str | None, line: int | None, col: int | None) -> Diagnostic:
        return replace(self, file=file, line=line, col=col)

    def as_error(self) -> Diagnostic:
        return replace(self, severity=ERROR)

    def full_message(self) -> str:
        text = self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
            "hint": self.hint,
            "path": self.dotted_path,
            "file": self.file,
            "line": self.line,
            "col": self.col,
        }


def format_path(path: Sequence[str | int]) -> str:
    """`("network", "att", "num_heads")` -> `network.att.num_heads`; list indices as `[i]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close."""
    candidates = [str(c) for c in candidates]
    matches = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        if str(word).lower() in lowered:
            matches = [lowered[str(word).lower()]]
    return f"did you mean `{matches[0]}`?" if matches else None


class ConfigError(UserError):
    """A user mistake that stops processing; carries its diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(format_text(d) for d in self.diagnostics))

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """2 when the config could not be read at all (`load.missing`, `load.unreadable`)."""
        unreadable = any(d.rule in ("load.missing", "load.unreadable") for d in self.diagnostics)
        return EXIT_USAGE if unreadable else super().exit_code


def format_text(d: Diagnostic) -> str:
    """gcc style: `path:line:col: error: message [rule]`, clickable in editors."""
    loc = d.file or "<config>"
    if d.line is not None:
        loc += f":{d.line}"
        if d.col is not None:
            loc += f":{d.col}"
    where = f"{d.dotted_path}: " if d.path else ""
    return f"{loc}: {d.severity}: {where}{d.full_message()} [{d.rule}]"


def _escape_github(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_github(d: Diagnostic) -> str:
    """GitHub workflow command: `::error file=F,line=L,col=C,title=RULE::message`."""
    props = []
    if d.file:
        props.append(f"file={_escape_github(d.file, True)}")
    if d.line is not None:
        props.append(f"line={d.line}")
    if d.col is not None:
        props.append(f"col={d.col}")
    props.append(f"title={_escape_github(d.rule, True)}")
    where = f"{d.dotted_path}: " if d.path else ""
    kind = "notice" if d.severity == NOTE else d.severity
    return f"::{kind} {','.join(props)}::{_escape_github(where + d.full_message())}"


@dataclass
class Report:
    """Diagnostics collected while processing one config (errors and warnings)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, d: Diagnostic) -> None:
        self.diagnostics.append(d)

    def extend(self, ds: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(ds)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == WARNING]

    @property
    def notes(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == NOTE]
