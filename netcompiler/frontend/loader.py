"""Loading configs from YAML, JSON or Python dicts into one internal form.

The internal form is plain data (dicts, lists, scalars) plus a `SourceMap` that remembers where
every key and value came from, so later phases can report `file:line:col` for any config path.

Only safe YAML is accepted: no python tags, no custom tags. Anchors, aliases and merge keys (`<<`)
work. A duplicate key in a mapping is an error (plain PyYAML silently keeps the last one).

The loader bounds its work, so a hostile file cannot exhaust memory or time:
- only regular files are read (not FIFOs or devices), at most `MAX_FILE_BYTES` (16 MiB);
- nesting is at most `MAX_DEPTH` levels, counted after alias expansion (`load.too-deep`);
- aliases (and `<<` merges, which are aliases) may add at most `MAX_ALIAS_NODES` nodes in all,
  each alias weighted by the size of the subtree it copies (`load.alias-limit`; this refuses
  "billion laughs" files while a normal config that reuses anchors loads as before).
Both limits are checked on the parser's event stream before anything is composed.

Plain numbers with an exponent but no dot (`1e-3`, `2E5`) are floats, as users mean; YAML 1.1
would read them as strings.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from netcompiler.core.config_types import ConfigPath
from netcompiler.core.diagnostics import ERROR, ConfigError, Diagnostic, format_path
from netcompiler.core.errors import UsageError

MERGE_TAG = "tag:yaml.org,2002:merge"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
# Scalar tags SafeLoader knows how to build; anything else (e.g. !!python/object) is rejected.
SAFE_SCALAR_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "timestamp", "binary", "merge", "value")
}
MAX_DEPTH = 200
MAX_ALIAS_NODES = 100_000
MAX_FILE_BYTES = 16 * 1024 * 1024
#: YAML 1.1 floats need a dot (`1.0e-3`) and a signed exponent; also accept `1e-3`, `1e5`, `1.5e5`
EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class SourceMap:
    """Positions of keys and values by config path."""

    file: str | None = None
    keys: dict[ConfigPath, Mark] = field(default_factory=dict)
    values: dict[ConfigPath, Mark] = field(default_factory=dict)
    # paths set from the command line: path -> the `--set` text
    overrides: dict[ConfigPath, str] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int]) -> tuple[str | None, int | None, int | None]:
        """File, line and column for a path; falls back to the nearest enclosing known path."""
        at: ConfigPath = tuple(path)
        # an override of the path or of a parent replaced what the file had there
        for n in range(len(at), -1, -1):
            if at[:n] in self.overrides:
                return f"<--set {self.overrides[at[:n]]}>", None, None
        while True:
            mark = self.keys.get(at) or self.values.get(at)
            if mark is not None:
                return self.file, mark.line, mark.col
            if not at:
                return self.file, None, None
            at = at[:-1]


@dataclass
class Config:
    """A loaded config: its data and where each part came from."""

    data: Any
    source: SourceMap

    @property
    def file(self) -> str | None:
        return self.source.file

    def locate(self, diagnostic: Diagnostic) -> Diagnostic:
        if diagnostic.line is not None:
            return diagnostic
        file, line, col = self.source.locate(diagnostic.path)
        return diagnostic.located(file or diagnostic.file, line, col)


class _Loader(yaml.SafeLoader):
    """Safe loader used only to compose nodes and construct scalars."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXP_FLOAT, list("-+.0123456789"))


#: either parser's loader (same nodes, marks and methods; not subclasses of one another)
YamlLoader = yaml.SafeLoader | yaml.CSafeLoader


class YamlMark(Protocol):
    """A position in the text as either parser gives it (0-based line and column)."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


if hasattr(yaml, "CSafeLoader"):

    class _FastLoader(yaml.CSafeLoader):
        """libyaml's parser (C): the same nodes and marks, several times faster. Used for
        valid text; on any YAML error the text is parsed again with `_Loader`, whose
        messages are the ones we report."""

    _FastLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXP_FLOAT, list("-+.0123456789"))
    _FAST_LOADER: type[yaml.CSafeLoader] | None = _FastLoader
else:  # pragma: no cover - PyYAML without libyaml
    _FAST_LOADER = None


def _error(
    message: str, file: str | None, mark: YamlMark | None = None, rule: str = "load.yaml"
) -> ConfigError:
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    return ConfigError(Diagnostic(ERROR, message, rule, (), file, line, col))


def _convert(
    node: yaml.Node,
    loader: YamlLoader,
    path: ConfigPath,
    smap: SourceMap,
    depth: int,
    active: set[int],
) -> Any:
    """The plain data of `node` (at config `path`), recording where each value and key is in
    `smap`. `active` holds the collections being converted now: an alias back into one of
    them is a cycle."""
    file = smap.file
    if depth > MAX_DEPTH or id(node) in active:
        raise _error("recursive or too deeply nested YAML structure", file, node.start_mark)
    smap.values.setdefault(path, Mark(node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, loader, path, smap, depth, active)
    if isinstance(node, yaml.SequenceNode):
        return _convert_sequence(node, loader, path, smap, depth, active)
    return _convert_scalar(node, loader, file)


def _unsafe_tag_error(node: yaml.Node, file: str | None) -> ConfigError:
    return _error(
        f"unsupported YAML tag `{node.tag}` (only plain data is allowed)",
        file,
        node.start_mark,
        "load.unsafe-tag",
    )


def _convert_mapping(
    node: yaml.MappingNode,
    loader: YamlLoader,
    path: ConfigPath,
    smap: SourceMap,
    depth: int,
    active: set[int],
) -> dict[str, Any]:
    file = smap.file
    if node.tag != MAP_TAG:
        raise _unsafe_tag_error(node, file)
    _check_duplicate_keys(node, loader, path, file)
    active.add(id(node))
    try:
        flat = copy.copy(node)
        flat.value = list(node.value)
        loader.flatten_mapping(flat)
        # merged pairs come first, explicit ones last: the last pair of a key wins (as in
        # PyYAML). Convert only the winning value, so positions are those of the value kept.
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in flat.value:
            pairs[_scalar_key(key_node, loader, file)] = (key_node, value_node)
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in pairs.items():
            smap.keys[path + (key,)] = Mark(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            result[key] = _convert(value_node, loader, path + (key,), smap, depth + 1, active)
    except yaml.constructor.ConstructorError as exc:
        raise _error(f"invalid merge key: {exc.problem}", file, exc.problem_mark) from None
    finally:
        active.discard(id(node))
    return result


def _check_duplicate_keys(
    node: yaml.MappingNode, loader: YamlLoader, path: ConfigPath, file: str | None
) -> None:
    """A key written twice in one mapping is an error, reported at its second occurrence."""
    # Explicit keys only: keys brought in by `<<` may be overridden.
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = _scalar_key(key_node, loader, file)
        if key in seen:
            first = seen[key].start_mark
            raise ConfigError(
                Diagnostic(
                    ERROR,
                    f"duplicate key `{key}` (first defined at line {first.line + 1})",
                    "load.duplicate-key",
                    path + (key,),
                    file,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            )
        seen[key] = key_node


def _convert_sequence(
    node: yaml.SequenceNode,
    loader: YamlLoader,
    path: ConfigPath,
    smap: SourceMap,
    depth: int,
    active: set[int],
) -> list[Any]:
    if node.tag != SEQ_TAG:
        raise _unsafe_tag_error(node, smap.file)
    active.add(id(node))
    try:
        return [
            _convert(item, loader, path + (i,), smap, depth + 1, active)
            for i, item in enumerate(node.value)
        ]
    finally:
        active.discard(id(node))


def _convert_scalar(node: yaml.Node, loader: YamlLoader, file: str | None) -> Any:
    if node.tag not in SAFE_SCALAR_TAGS:
        raise _unsafe_tag_error(node, file)
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise _error(
            f"invalid value: {getattr(exc, 'problem', exc)}", file, node.start_mark
        ) from None
    except Exception:  # noqa: BLE001 - any failure of a safe scalar tag is unreadable text
        # an explicit tag on text it cannot read (`!!int ''`, `!!bool maybe`): PyYAML's
        # constructors raise plain Python errors there (IndexError, KeyError, ValueError)
        raise _error(
            f"invalid value {node.value!r} for the tag {node.tag.rsplit(':', 1)[-1]}",
            file,
            node.start_mark,
        ) from None
    if not isinstance(value, (str, int, float, bool, type(None))):
        # timestamps and binary: keep configs to JSON-compatible data
        value = str(node.value)
    return value


def _scalar_key(key_node: yaml.Node, loader: YamlLoader, file: str | None) -> str:
    """Mapping keys are kept as their text: option and layer names are strings (JSON Schema
    property names are too), and `yes:`/`1:` must not turn into `True`/`1`."""
    if not isinstance(key_node, yaml.ScalarNode):
        raise _error("mapping keys must be plain scalars", file, key_node.start_mark)
    if key_node.tag not in SAFE_SCALAR_TAGS:
        raise _error(
            f"unsupported YAML tag `{key_node.tag}` (only plain data is allowed)",
            file,
            key_node.start_mark,
            "load.unsafe-tag",
        )
    return str(key_node.value)


def _check_bounds(loader_cls: type[YamlLoader], text: str, file: str | None) -> None:
    """Walk the parser's events (no composing, no recursion) and refuse a document nested deeper
    than `MAX_DEPTH` or whose aliases would expand to more than `MAX_ALIAS_NODES` nodes. Each
    finished anchor remembers the size and height of its subtree (after expanding the aliases in
    it), so an alias costs what copying it costs. YAML errors propagate as raised by the parser."""
    loader = loader_cls(text)
    try:
        done: dict[str, tuple[int, int]] = {}  # anchor -> (size, height) of its finished node
        # open collections: [size so far, height of the tallest child, anchor]
        stack: list[list[Any]] = []
        node: tuple[int, int] | None  # (size, height) of the node the event finishes
        expanded = 0
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise _error(
                        f"the config is nested deeper than {MAX_DEPTH} levels",
                        file,
                        event.start_mark,
                        "load.too-deep",
                    )
                stack.append([1, 0, event.anchor])
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                size, height, anchor = stack.pop()
                node = (size, height + 1)
            elif isinstance(event, yaml.ScalarEvent):
                anchor, node = event.anchor, (1, 1)
            elif isinstance(event, yaml.AliasEvent):
                anchor = None
                node = done.get(event.anchor) if event.anchor is not None else None
                if node is None:
                    if any(frame[2] == event.anchor for frame in stack):
                        raise _error(
                            f"recursive alias `*{event.anchor}` (it refers to a node "
                            f"that contains it)",
                            file,
                            event.start_mark,
                        )
                    continue  # undefined alias: the composer reports it
                expanded += node[0]
                if expanded > MAX_ALIAS_NODES:
                    raise _error(
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (alias "
                        f"`*{event.anchor}` copies {node[0]}); refusing to expand "
                        f"them",
                        file,
                        event.start_mark,
                        "load.alias-limit",
                    )
                if len(stack) + node[1] > MAX_DEPTH:
                    raise _error(
                        f"the config is nested deeper than {MAX_DEPTH} levels once "
                        f"alias `*{event.anchor}` is expanded",
                        file,
                        event.start_mark,
                        "load.too-deep",
                    )
            else:  # stream/document start and end
                continue
            if anchor is not None:
                done[anchor] = node
            if stack:
                stack[-1][0] += node[0]
                stack[-1][1] = max(stack[-1][1], node[1])
    finally:
        loader.dispose()


def _compose(loader_cls: type[YamlLoader], text: str, file: str | None) -> Config:
    """Parse with one loader class; YAML errors propagate as raised by the parser."""
    _check_bounds(loader_cls, text, file)
    smap = SourceMap(file)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        if node is None or (
            isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and not node.value
        ):
            raise _error("the config is empty", file, None, "load.empty")
        return Config(_convert(node, loader, (), smap, 0, set()), smap)
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str | None = None) -> Config:
    """Parse YAML (or JSON) text into a `Config`; raises `ConfigError` for bad input."""
    if _FAST_LOADER is not None:
        try:
            return _compose(_FAST_LOADER, text, file)
        except yaml.YAMLError:
            pass  # parse again below: the pure-Python parser's messages are the ones we report
    try:
        return _compose(_Loader, text, file)
    except yaml.reader.ReaderError as exc:
        # unprintable characters, found by the reader before any parsing
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        raise ConfigError(
            Diagnostic(
                ERROR,
                f"YAML syntax error: character {exc.character:#06x} is not allowed",
                "load.syntax",
                (),
                file,
                line,
                col,
            )
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = "YAML syntax error: " + " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise _error(msg, file, mark, "load.syntax") from None
    except yaml.YAMLError as exc:
        raise _error(f"YAML error: {exc}", file, None, "load.syntax") from None


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _read_config_bytes(name: str) -> bytes:
    """The bytes of a regular file of at most `MAX_FILE_BYTES`. The file is opened without
    blocking (a FIFO with no writer would block `open`) and checked with `fstat` before reading,
    so a FIFO, a device (a symlink to /dev/zero) or a huge file fails at once."""

    def unreadable(message: str) -> ConfigError:
        return ConfigError(Diagnostic(ERROR, message, "load.unreadable", (), name))

    try:
        st = os.stat(name)
        if stat.S_ISDIR(st.st_mode):
            raise unreadable("is a directory")
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(Diagnostic(ERROR, "no such file", "load.missing", (), name)) from None
    except OSError as exc:
        raise unreadable(f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise unreadable(f"is {_file_kind(st.st_mode)}, not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise unreadable(
                f"the config file is too large ({st.st_size} bytes; at most "
                f"{MAX_FILE_BYTES} are read)"
            )
        chunks, total = [], 0
        while total <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_FILE_BYTES:  # it grew while being read
            raise unreadable(f"the config file is too large (more than {MAX_FILE_BYTES} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise unreadable(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def load_file(path: str | os.PathLike[str]) -> Config:
    """Load a YAML or JSON config file (a regular file of at most `MAX_FILE_BYTES`)."""
    name = str(path)
    p = Path(path)
    raw = _read_config_bytes(name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        # the column in characters (as YAML positions are), not in bytes
        line_start = before.rfind(b"\n") + 1
        prefix = raw[line_start : exc.start].decode("utf-8", errors="replace")
        col = len(prefix.lstrip("\ufeff") if line_start == 0 else prefix) + 1
        raise ConfigError(
            Diagnostic(
                ERROR,
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                "load.encoding",
                (),
                name,
                line,
                col,
            )
        ) from None
    if not text.strip():
        raise ConfigError(
            Diagnostic(ERROR, "the config file is empty", "load.empty", (), name, 1, 1)
        )
    # JSON is parsed by the same composer (YAML is a superset for configs), so JSON files get
    # the same positions and the same duplicate-key check. JSON allows tabs as whitespace, YAML
    # does not; valid JSON has no raw tab inside strings, so a tab -> space swap keeps the data
    # and the columns.
    if p.suffix.lower() == ".json":
        text = text.replace("\t", " ")
    return parse_yaml(text, name)


def from_dict(data: Mapping[Any, Any], name: str = "<dict>") -> Config:
    """Wrap a Python dict (a RETURNN-style network config) without positions."""
    return Config(_plain(copy.deepcopy(dict(data))), SourceMap(name))


def _plain(value: Any) -> Any:
    """Tuples to lists, so dict configs and YAML configs look the same to validation."""
    if isinstance(value, Mapping):
        # keys as text, as the YAML loader keeps them (`1:` is the key "1")
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load(source: object, name: str | None = None) -> Config:
    """Load a config from a path, YAML/JSON text, a dict, or return a `Config` as is."""
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        return from_dict(source, name or "<dict>")
    if isinstance(source, os.PathLike):
        return load_file(source)
    if isinstance(source, str):
        if "\n" not in source and (
            source.endswith((".yaml", ".yml", ".json")) or os.path.exists(source)
        ):
            return load_file(source)
        return parse_yaml(source, name or "<string>")
    raise TypeError(f"cannot load a config from {type(source).__name__}")


class OverrideError(UsageError, ValueError):
    """A malformed or inapplicable `--set KEY=VALUE` (also a ValueError, as it was before)."""


def parse_override(text: str) -> tuple[ConfigPath, Any]:
    """`network.att.num_heads=8` -> (("network", "att", "num_heads"), 8).

    The value is parsed as a YAML scalar (or flow collection), so `8` is an int, `true` a bool,
    `[a, b]` a list. A part of the path that is a whole number indexes a list.
    """
    if "=" not in text:
        raise OverrideError(f"--set expects KEY=VALUE, got `{text}`")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise OverrideError(f"--set: bad key `{key}`")
    try:
        value = parse_yaml(raw if raw.strip() else "''", "<--set>").data
    except ConfigError as exc:
        why = exc.diagnostics[0].message
        raise OverrideError(f"--set {key}: bad value `{raw}`: {why}") from None
    path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return path, value


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply `--set KEY=VALUE` overrides in order (before validation)."""
    for text in overrides:
        path, value = parse_override(text)
        node = config.data
        # the path as used: a number names a mapping key "N" in a mapping
        actual: list[str | int] = []
        for i, part in enumerate(path[:-1]):
            if isinstance(node, dict):
                part = str(part)
                if node.get(part) is None:  # missing: create the mapping
                    node[part] = {}
                elif not isinstance(node[part], (dict, list)):
                    raise OverrideError(
                        f"--set {text}: `{format_path(path[: i + 1])}` is not a mapping"
                    )
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                raise OverrideError(
                    f"--set {text}: `{format_path(path[: i + 1])}` is not a mapping"
                )
            actual.append(part)
        last = path[-1]
        if isinstance(node, dict):
            last = str(last)
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
        else:
            raise OverrideError(f"--set {text}: cannot set `{format_path(path)}`")
        config.source.overrides[tuple(actual) + (last,)] = text
    return config
