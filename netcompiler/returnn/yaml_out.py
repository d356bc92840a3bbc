"""Writing the imported config as YAML a person would write: block style for the sections,
flow style for what fits on one line, and the comment block that heads the file.

Strings that netcompiler's loader would read as something else (it also reads `1e-3` as a
float) are quoted, so the YAML reads back as the same values.
"""

from __future__ import annotations

import textwrap

import yaml

from netcompiler.frontend.loader import EXP_FLOAT

LINE_WIDTH = 100
#: marks a comment line whose tail (a path, a command) goes on a line of its own, unbroken
NOWRAP = "\x00"


class _Dumper(yaml.SafeDumper):
    """Quotes every string that netcompiler's loader would read as something else (it also
    reads `1e-3` as a float), and double-quotes strings with YAML line breaks (NEL, LS, PS)."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", EXP_FLOAT, list("-+.0123456789"))
_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper, value: str):
    style = '"' if any(c in value for c in _BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _flow(value) -> str:
    text = yaml.dump(
        value if isinstance(value, (dict, list)) else [value],
        Dumper=_Dumper,
        default_flow_style=True,
        sort_keys=False,
        width=10**9,
        allow_unicode=True,
    ).strip()
    return text if isinstance(value, (dict, list)) else text[1:-1]


def _fits(indent: int, head: str, value) -> bool:
    text = _flow(value)
    return "\n" not in text and indent + len(head) + len(text) <= LINE_WIDTH


def _scalars(value) -> bool:
    return isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value)


def _block(value, indent: int, head: str) -> bool:
    """Whether a mapping/list goes in block style: it does not fit on the line (a list of
    scalars always stays one flow line)."""
    return (
        isinstance(value, (dict, list))
        and bool(value)
        and not _scalars(value)
        and not _fits(indent, head, value)
    )


def _emit(value, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            head = f"{_flow(str(k))}:"
            if _block(v, indent, head + " "):
                lines.append(pad + head)
                _emit(v, indent + 2, lines)
            else:
                lines.append(f"{pad}{head} {_flow(v)}")
    else:  # a list too long for one line: one item per line
        for v in value:
            if _block(v, indent, "- "):
                sub: list[str] = []
                _emit(v, indent + 2, sub)
                lines.append(pad + "- " + sub[0][indent + 2 :])
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_flow(v)}")


def dump_yaml(config: dict) -> str:
    """Block style for the sections, flow style for mappings and lists that fit on one line
    (~100 characters), keys in the given order, a blank line between top-level sections."""
    lines: list[str] = []
    for i, (key, value) in enumerate(config.items()):
        if i and isinstance(value, dict) or (i and isinstance(list(config.values())[i - 1], dict)):
            lines.append("")
        if isinstance(value, dict) and value:  # a section: always block style
            lines.append(f"{_flow(str(key))}:")
            _emit(value, 2, lines)
        else:
            _emit({key: value}, 0, lines)
    return "\n".join(lines) + "\n"


def comment_block(blocks: list[list[str]]) -> str:
    """Blocks of lines as `#` comments, wrapped at LINE_WIDTH, a `#` line between blocks; a
    line `  - ...` is a list item (its continuation indented under the text)."""
    out: list[str] = []
    for i, block in enumerate(blocks):
        if i:
            out.append("#")
        for line in block:
            if NOWRAP in line:  # a path or a command: on a line of its own, unbroken
                head, _, tail = line.partition(NOWRAP)
                out += ["# " + head.rstrip(), "#   " + tail]
                continue
            indent = "#     " if line.startswith("  - ") else "#   "
            wrapped = textwrap.wrap(
                line,
                LINE_WIDTH - 2,
                subsequent_indent="    ",
                break_long_words=False,
                break_on_hyphens=False,
            ) or [""]
            out.append("# " + wrapped[0])
            out += [indent + w.strip() for w in wrapped[1:]]
    return "\n".join(out) + "\n"


__all__ = ["dump_yaml", "comment_block", "LINE_WIDTH", "NOWRAP"]
