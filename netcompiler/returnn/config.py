"""Reading a RETURNN config file: as data (default, nothing is run) or by running it (`--exec`).

RETURNN configs are Python files (first line `#!rnn.py` / `#!returnn.py`, or a `.py` name),
JSON files (starting with `{`), or the old line-based `key value` format (not supported here).

Safe mode (`read_config(path)`) parses the file with `ast` and evaluates only data, statement by
statement, the way the module's globals would come out:

- literals (numbers, strings, `True`/`False`/`None`), dict/list/tuple literals (also `**d`,
  `*l`), names bound to data earlier in the file, `__file__` (the path as given);
- `+ - * / // % **` (sizes bounded), unary `- + not ~`, comparisons, `and`/`or`, `x if c else
  y`, subscripts and slices, f-strings, `%`-formatting;
- top-level `=` (also tuple unpacking), augmented `+=` etc., `d["k"] = v`, `del`, and
  `if`/`elif`/`else` whose condition is data (the branch taken is read, the other ignored);
- calls only of this allow-list, pure functions of data (`PURE_BUILTINS`): `dict list tuple int
  float str bool len min max abs round sorted sum range` (range at most 10**6 items), methods
  of data values `copy get keys values items format join replace split strip lower upper
  startswith endswith`, the statements `d.update(...)`, `l.append(x)`, `l.extend(...)`, and
  RETURNN's own config getters `config.value/typed_value/int/float/bool/has/is_true(key,
  default)`: with no command-line overrides they return the value bound earlier in the file,
  else the default (as RETURNN, whose config object is the file's globals).

`print(...)` statements and `config = globals()["config"]` are skipped. Anything else
(imports, calls, attribute access, functions, lambdas, comprehensions, sets, loops, `with`,
`try`) is never run: the names it binds, the dicts/lists it might change in place (call
arguments, `x[...] =` targets) and, for a statement with a call, the names the file's functions
declare `global` become `NotData` with the line and the reason. Whether that matters is the
importer's call: a needed value (the network, extern data, training options) that is `NotData`
is an error suggesting `--exec`; any other one is only listed as not imported.

The Python-config rule is RETURNN's (`#!` first, or `.py`), except that a `#!` line after other
leading comment lines counts too (the copies in tests/returnn_demos/ start with a source line).

Exec mode (`read_config(path, exec_mode=True)`) runs the file in a child process
(`sys.executable`), as RETURNN loads it: the source executed with the module globals `config`
(a stand-in of RETURNN's config object whose getters read those globals), `__file__` and
`__name__ = "__returnn_config__"`, in the current directory, with a timeout. The child writes
its globals as JSON (plain data as is, anything else as a `NotData` marker); the parent only
reads that JSON, so nothing the child does can make the parent run code.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcompiler.core.errors import InternalError, UserError

PURE_BUILTINS = ("dict", "list", "tuple", "int", "float", "str", "bool", "len", "min", "max",
                 "abs", "round", "sorted", "sum", "range")
PURE_METHODS = ("copy", "get", "keys", "values", "items", "format", "join", "replace", "split",
                "strip", "lower", "upper", "startswith", "endswith")
MUTATING_METHODS = ("update", "append", "extend")
CONFIG_GETTERS = ("value", "typed_value", "int", "float", "bool", "has", "is_true",
                  "bool_or_other", "opt_typed_value")
MAX_ITEMS = 10 ** 6  # largest string/list/range the evaluator builds
MAX_INT_BITS = 100_000
DEFAULT_TIMEOUT = 60.0
MAX_EXEC_OUTPUT = 64 * 1024 * 1024  # bytes of JSON accepted from the child
NOT_DATA_KEY = "__netcompiler_not_data__"
#: globals RETURNN puts into every Python config (not config values)
RETURNN_GLOBALS = ("config", "__file__", "__name__", "__builtins__")


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


# -- reading the file ------------------------------------------------------------------------------
def _read_text(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ReturnnConfigError(f"{path}: error: no such file", usage=True) from None
    except IsADirectoryError:
        raise ReturnnConfigError(f"{path}: error: is a directory", usage=True) from None
    except OSError as exc:
        raise ReturnnConfigError(f"{path}: error: cannot read: {exc.strerror}",
                                 usage=True) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReturnnConfigError(f"{path}:{line}: error: not UTF-8 text") from None


def config_kind(path: str, text: str) -> str:
    """RETURNN's rule: `#!` first or a `.py` name: Python; `{` first: JSON; else line-based.
    Here a `#!` line anywhere among the leading comment lines counts too (e.g. after a comment
    naming where the file was copied from)."""
    stripped = text.strip()
    if path.endswith(".py"):
        return "python"
    for line in stripped.splitlines():
        line = line.strip()
        if line.startswith("#!"):
            return "python"
        if line and not line.startswith("#"):
            break
    if stripped.startswith("{"):
        return "json"
    return "lines"


def read_config(path: str, exec_mode: bool = False, timeout: float = DEFAULT_TIMEOUT) -> ReadConfig:
    """Read a RETURNN config; raises ReturnnConfigError for a file that cannot be read."""
    text = _read_text(path)
    kind = config_kind(path, text)
    if kind == "lines":
        raise ReturnnConfigError(
            f"{path}:1:1: error: RETURNN's old line-based config format (`key value` lines) is not "
            f"supported; only Python configs (first line `#!rnn.py`, as RETURNN requires) and "
            f"JSON configs")
    if kind == "json":
        try:
            values = json.loads(text, object_pairs_hook=dict)
        except json.JSONDecodeError as exc:
            raise ReturnnConfigError(
                f"{path}:{exc.lineno}:{exc.colno}: error: invalid JSON: {exc.msg}") from None
        if not isinstance(values, dict):
            raise ReturnnConfigError(f"{path}:1:1: error: a JSON config must be an object")
        return ReadConfig(path, "json", values)
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        hint = " (RETURNN configs are Python 3)" if "print" in (exc.text or "") else ""
        raise ReturnnConfigError(f"{path}:{exc.lineno}:{exc.offset or 1}: error: Python syntax "
                                 f"error: {exc.msg}{hint}") from None
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if exec_mode:
        result = _exec_config(path, timeout)
        result.lines = _binding_lines(tree)
    else:
        reader = _SafeReader(path)
        reader.run(tree.body)
        result = reader.result
    result.used = used
    return result


def _binding_lines(tree: ast.Module) -> dict[str, int]:
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            lines.setdefault(node.id, node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines.setdefault(node.name, node.lineno)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                lines.setdefault((alias.asname or alias.name).split(".")[0], node.lineno)
    return lines


# -- safe mode -------------------------------------------------------------------------------------
class _Refuse(InternalError):  # control flow, caught in this module
    """Evaluation hit something that is not data: the reason and the node."""

    def __init__(self, reason: str, node: ast.AST):
        super().__init__(reason)
        self.reason = reason
        self.node = node

    def not_data(self) -> NotData:
        return NotData(self.reason + " (needs Python)", getattr(self.node, "lineno", None),
                       getattr(self.node, "col_offset", -1) + 1 or None)


def _describe(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - ast.unparse handles every expression
        text = type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b, ast.Pow: lambda a, b: a ** b,
    ast.BitOr: lambda a, b: a | b,
}
_CMPOPS = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}
_DATA_TYPES = (type(None), bool, int, float, str, list, tuple, dict)


def _size(value) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 1


class _SafeReader:
    def __init__(self, path: str):
        self.result = ReadConfig(path, "safe")
        self.env = self.result.values
        self.star_import: int | None = None
        self.global_names: set[str] = set()  # declared `global` in the file's functions

    # -- statements ---------------------------------------------------------------------------
    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.statement(stmt)

    def bind(self, name: str, value, node: ast.AST) -> None:
        self.env[name] = value
        self.result.lines[name] = node.lineno

    def poison(self, names, reason: str, node: ast.AST) -> None:
        for name in names:
            self.bind(name, NotData(reason, node.lineno, node.col_offset + 1), node)

    def mutable(self, names) -> set[str]:
        """The names bound to dicts/lists (data a statement could change in place)."""
        return {n for n in names if isinstance(self.env.get(n), (dict, list))}

    def statement(self, stmt: ast.stmt) -> None:
        if _is_config_alias(stmt):
            return  # `config = globals()["config"]`: RETURNN's config object, as before
        try:
            self._statement(stmt)
        except _Refuse as exc:
            bad = exc.not_data()
            names = _assigned_names(stmt) | self.mutable(_mutated_names(stmt))
            for name in sorted(names):
                self.bind(name, bad, stmt)
            if _has_call(stmt):  # a call might run a function that sets globals
                self.poison(sorted(self.global_names - names),
                            f"may be set by `{_describe(stmt)}` (line {stmt.lineno})", stmt)

    def _statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            value = self.expr(stmt.value)
            for target in stmt.targets:
                self.assign(target, value, stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.expr(stmt.value), stmt)
        elif isinstance(stmt, ast.AugAssign):
            op = _BINOPS.get(type(stmt.op))
            if op is None:
                raise _Refuse(f"the operator of `{_describe(stmt)}`", stmt)
            load = _as_load(stmt.target)
            current = self.expr(load)
            self.assign(stmt.target, self.binop(op, current, self.expr(stmt.value), stmt), stmt)
        elif isinstance(stmt, ast.Expr):
            self.expression_statement(stmt)
        elif isinstance(stmt, ast.If):
            try:
                test = self.expr(stmt.test)
            except _Refuse:
                self.unknown_branch(stmt, "assigned under an `if` whose condition needs Python")
                return
            self.run(stmt.body if test else stmt.orelse)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.delete(target)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                self.poison([name], f"the imported module `{alias.name}`", stmt)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.module == "__future__":
                return
            for alias in stmt.names:
                if alias.name == "*":
                    self.star_import = stmt.lineno
                    continue
                name = alias.asname or alias.name
                self.poison([name], f"`{alias.name}` imported from `{stmt.module}`", stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(stmt, ast.ClassDef) else "function"
            self.poison([stmt.name], f"the {kind} `{stmt.name}`", stmt)
            # names it declares `global`: a later call may set them
            for node in ast.walk(stmt):
                if isinstance(node, ast.Global):
                    self.global_names.update(node.names)
        elif isinstance(stmt, (ast.Pass, ast.Global, ast.Nonlocal, ast.Assert)):
            return  # no effect on data (an assert is not checked)
        else:
            kind = {ast.For: "a `for` loop", ast.While: "a `while` loop", ast.With: "a `with`",
                    ast.Try: "a `try`"}.get(type(stmt), f"a `{type(stmt).__name__}` statement")
            self.unknown_branch(stmt, f"assigned in {kind}")

    def unknown_branch(self, stmt: ast.stmt, reason: str) -> None:
        names = _assigned_names(stmt) | self.mutable(_mutated_names(stmt))
        names |= self.global_names if _has_call(stmt) else set()
        self.poison(sorted(names), reason + f" (line {stmt.lineno})", stmt)

    def expression_statement(self, stmt: ast.Expr) -> None:
        node = stmt.value
        if isinstance(node, ast.Constant):
            return  # a docstring or a string block
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in MUTATING_METHODS and isinstance(node.func.value, ast.Name):
            name = node.func.value.id
            target = self.env.get(name, None)
            if name in self.env and not isinstance(target, NotData):
                args = [self.expr(a) for a in node.args]
                if node.keywords or len(args) != 1:
                    raise _Refuse(f"the call `{_describe(node)}`", node)
                method, arg = node.func.attr, args[0]
                if method == "update" and isinstance(target, dict) and isinstance(arg, dict):
                    target.update(_copy(arg))
                elif method == "append" and isinstance(target, list):
                    target.append(_copy(arg))
                elif method == "extend" and isinstance(target, list) \
                        and isinstance(arg, (list, tuple)):
                    target.extend(_copy(arg))
                else:
                    raise _Refuse(f"the call `{_describe(node)}`", node)
                self.result.lines[name] = stmt.lineno
                return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "print" and "print" not in self.env:
            return  # output only; not run
        # any other call is not run: the data it might change is no longer known
        names = self.mutable(_mutated_names(stmt)) | self.global_names
        self.poison(sorted(names), f"may be changed by `{_describe(node)}` (line "
                                   f"{stmt.lineno})", stmt)

    def assign(self, target: ast.expr, value, stmt: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            self.bind(target.id, value, stmt)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if any(isinstance(t, ast.Starred) for t in target.elts):
                raise _Refuse(f"the starred assignment `{_describe(target)}`", target)
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                raise _Refuse(f"the unpacking `{_describe(target)} = ...`", target)
            for t, v in zip(target.elts, value):
                self.assign(t, _copy(v), stmt)
        elif isinstance(target, ast.Subscript):
            container = self.ref(target.value)
            key = self.expr(target.slice)
            if isinstance(container, dict) and isinstance(key, (str, int, float, bool, type(None))):
                container[key] = _copy(value)
            elif isinstance(container, list) and isinstance(key, int) \
                    and not isinstance(key, bool) and -len(container) <= key < len(container):
                container[key] = _copy(value)
            else:
                raise _Refuse(f"the assignment to `{_describe(target)}`", target)
            base = _base_name(target)
            if base:
                self.result.lines[base] = stmt.lineno
        else:
            raise _Refuse(f"the assignment to `{_describe(target)}`", target)

    def ref(self, node: ast.expr):
        """The container a store target names, itself (not a copy): `d`, `d["k"]`, `l[0]`."""
        if isinstance(node, ast.Name):
            self.expr(node)  # refuses names that are not data
            return self.env[node.id] if node.id in self.env else None
        if isinstance(node, ast.Subscript):
            container = self.ref(node.value)
            key = self.expr(node.slice)
            try:
                return container[key]
            except Exception:
                raise _Refuse(f"`{_describe(node)}`", node) from None
        raise _Refuse(f"the assignment to `{_describe(node)}`", node)

    def delete(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.env.pop(target.id, None)
        elif isinstance(target, ast.Subscript):
            container = self.ref(target.value)
            key = self.expr(target.slice)
            try:
                del container[key]
            except (TypeError, KeyError, IndexError):
                raise _Refuse(f"`del {_describe(target)}`", target) from None
        else:
            raise _Refuse(f"`del {_describe(target)}`", target)

    # -- expressions --------------------------------------------------------------------------
    def expr(self, node: ast.expr):
        method = getattr(self, "e_" + type(node).__name__, None)
        if method is None:
            kind = {"Lambda": "a lambda", "ListComp": "a comprehension",
                    "DictComp": "a comprehension", "SetComp": "a comprehension",
                    "GeneratorExp": "a generator", "Await": "`await`", "Yield": "`yield`",
                    "NamedExpr": "`:=`", "Attribute": f"the attribute `{_describe(node)}`"}
            raise _Refuse(kind.get(type(node).__name__, f"`{_describe(node)}`"), node)
        return method(node)

    def e_Attribute(self, node: ast.Attribute):
        base = _base_name(node)
        value = self.env.get(base) if base else None
        if isinstance(value, NotData):
            raise _Refuse(f"the attribute `{_describe(node)}` (`{base}` is "
                          f"{_strip(value.reason)}, line {value.line})", node)
        raise _Refuse(f"the attribute `{_describe(node)}`", node)

    def e_Constant(self, node: ast.Constant):
        if isinstance(node.value, (bytes, complex)) or node.value is Ellipsis:
            raise _Refuse(f"the constant `{_describe(node)}`", node)
        return node.value

    def e_Name(self, node: ast.Name):
        name = node.id
        if name in self.env:
            value = self.env[name]
            if isinstance(value, NotData):
                raise _Refuse(f"`{name}`, which is {_strip(value.reason)} (line {value.line})",
                              node)
            return _copy(value)
        if name == "__file__":
            return self.result.path
        if name == "__name__":
            return "__returnn_config__"
        if name == "config":
            raise _Refuse("RETURNN's config object (only its getters `config.int(\"key\", "
                          "default)` etc. are read as data)", node)
        if self.star_import is not None:
            raise _Refuse(f"`{name}` (maybe from the `import *` on line {self.star_import})", node)
        raise _Refuse(f"`{name}`, which is not defined before this line", node)

    def e_List(self, node):
        return self._items(node.elts)

    def e_Tuple(self, node):
        return tuple(self._items(node.elts))

    def e_Set(self, node):
        raise _Refuse("a set (not data)", node)

    def _items(self, elts) -> list:
        out: list = []
        for e in elts:
            if isinstance(e, ast.Starred):
                value = self.expr(e.value)
                if not isinstance(value, (list, tuple, str)):
                    raise _Refuse(f"`{_describe(e)}`", e)
                out.extend(value)
            else:
                out.append(self.expr(e))
            self._check_size(out, node=e)
        return out

    def e_Dict(self, node: ast.Dict):
        out: dict = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                value = self.expr(v)
                if not isinstance(value, dict):
                    raise _Refuse(f"`**{_describe(v)}`", v)
                out.update(value)
                continue
            key = self.expr(k)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise _Refuse(f"the key `{_describe(k)}`", k)
            out[key] = self.expr(v)
        return out

    def e_UnaryOp(self, node: ast.UnaryOp):
        value = self.expr(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if not (isinstance(value, bool) and isinstance(node.op, (ast.USub, ast.UAdd))):
                raise _Refuse(f"`{_describe(node)}` on {type(value).__name__}", node)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(node.op, ast.Invert) and isinstance(value, int):
            return ~value
        raise _Refuse(f"`{_describe(node)}`", node)

    def e_BinOp(self, node: ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _Refuse(f"the operator in `{_describe(node)}`", node)
        return self.binop(op, self.expr(node.left), self.expr(node.right), node)

    def binop(self, op, left, right, node):
        for v in (left, right):
            if not isinstance(v, _DATA_TYPES):
                raise _Refuse(f"`{_describe(node)}`", node)
        if op is _BINOPS[ast.Pow] and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right * max(1, abs(left).bit_length()) > MAX_INT_BITS:
            raise _Refuse(f"`{_describe(node)}` (too large)", node)
        if op is _BINOPS[ast.Mult]:
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) \
                    and len(seq) * max(n, 0) > MAX_ITEMS:
                raise _Refuse(f"`{_describe(node)}` (too large)", node)
        if op is _BINOPS[ast.Mod] and isinstance(left, str):
            if not isinstance(right, (tuple, dict)) and not isinstance(right, _DATA_TYPES):
                raise _Refuse(f"`{_describe(node)}`", node)
        try:
            value = op(left, right)
        except Exception as exc:
            raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__}: {exc})", node) from None
        self._check_size(value, node)
        return value

    def _check_size(self, value, node):
        if _size(value) > MAX_ITEMS or (isinstance(value, int) and not isinstance(value, bool)
                                        and value.bit_length() > MAX_INT_BITS):
            raise _Refuse(f"`{_describe(node)}` (too large)", node)

    def e_BoolOp(self, node: ast.BoolOp):
        value = None
        for v in node.values:
            value = self.expr(v)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def e_Compare(self, node: ast.Compare):
        left = self.expr(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.expr(comp)
            if isinstance(op, (ast.Is, ast.IsNot)) and not (left is None or right is None
                                                           or isinstance(left, bool)
                                                           or isinstance(right, bool)):
                raise _Refuse(f"`{_describe(node)}`", node)
            try:
                ok = _CMPOPS[type(op)](left, right)
            except Exception as exc:
                raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__})", node) from None
            if not ok:
                return False
            left = right
        return True

    def e_IfExp(self, node: ast.IfExp):
        return self.expr(node.body) if self.expr(node.test) else self.expr(node.orelse)

    def e_Subscript(self, node: ast.Subscript):
        container = self.expr(node.value)
        key = self.expr(node.slice)
        if not isinstance(container, (dict, list, tuple, str)):
            raise _Refuse(f"`{_describe(node)}`", node)
        try:
            return _copy(container[key])
        except Exception as exc:
            raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__}: {exc})", node) from None

    def e_Slice(self, node: ast.Slice):
        parts = [None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)]
        if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
            raise _Refuse(f"the slice `{_describe(node)}`", node)
        return slice(*parts)

    def e_JoinedStr(self, node: ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                out.append(self.e_FormattedValue(part))
        value = "".join(out)
        self._check_size(value, node)
        return value

    def e_FormattedValue(self, node: ast.FormattedValue):
        value = self.expr(node.value)
        if not isinstance(value, _DATA_TYPES):
            raise _Refuse(f"`{_describe(node)}`", node)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self.expr(node.format_spec) if node.format_spec is not None else ""
        try:
            return format(value, spec)
        except Exception as exc:
            raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__}: {exc})", node) from None

    def e_Call(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in PURE_BUILTINS and func.id not in self.env:
            args, kwargs = self._args(node)
            return self._builtin(func.id, args, kwargs, node)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id == "config" and "config" not in self.env \
                and func.attr in CONFIG_GETTERS:
            args, kwargs = self._args(node)
            return self._config_getter(func.attr, args, kwargs, node)
        if isinstance(func, ast.Attribute) and func.attr in PURE_METHODS:
            target = self.expr(func.value)
            args, kwargs = self._args(node)
            return self._method(target, func.attr, args, kwargs, node)
        raise _Refuse(f"the call `{_describe(node)}`", node)

    def _args(self, node: ast.Call):
        args = self._items(node.args)
        kwargs = {}
        for kw in node.keywords:
            value = self.expr(kw.value)
            if kw.arg is None:
                if not isinstance(value, dict):
                    raise _Refuse(f"`**{_describe(kw.value)}`", kw.value)
                kwargs.update(value)
            else:
                kwargs[kw.arg] = value
        return args, kwargs

    def _builtin(self, name: str, args, kwargs, node):
        if name == "range":
            if kwargs or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                raise _Refuse(f"`{_describe(node)}`", node)
            try:
                r = range(*args)
            except Exception as exc:
                raise _Refuse(f"`{_describe(node)}` ({exc})", node) from None
            if len(r) > MAX_ITEMS:
                raise _Refuse(f"`{_describe(node)}` (too large)", node)
            return list(r)
        if name in ("int", "float", "str", "bool", "len", "abs", "round") and any(
                not isinstance(a, _DATA_TYPES) for a in args):
            raise _Refuse(f"`{_describe(node)}`", node)
        fn = {"dict": dict, "list": list, "tuple": tuple, "int": int, "float": float, "str": str,
              "bool": bool, "len": len, "min": min, "max": max, "abs": abs, "round": round,
              "sorted": sorted, "sum": sum}[name]
        if name in ("min", "max", "sorted") and set(kwargs) - {"default", "reverse"}:
            raise _Refuse(f"`{_describe(node)}` (a key function)", node)
        if name == "str" and len(args) > 1:
            raise _Refuse(f"`{_describe(node)}`", node)
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__}: {exc})", node) from None
        self._check_size(value, node)
        return value

    def _method(self, target, method: str, args, kwargs, node):
        allowed = {dict: ("copy", "get", "keys", "values", "items"),
                   list: ("copy",),
                   str: ("format", "join", "replace", "split", "strip", "lower", "upper",
                         "startswith", "endswith")}
        kind = next((t for t in allowed if isinstance(target, t)), None)
        if kind is None or method not in allowed[kind]:
            raise _Refuse(f"the call `{_describe(node)}`", node)
        if method == "join" and not all(isinstance(a, (list, tuple)) for a in args):
            raise _Refuse(f"`{_describe(node)}`", node)
        if method == "format" and any(not isinstance(a, _DATA_TYPES)
                                      for a in list(args) + list(kwargs.values())):
            raise _Refuse(f"`{_describe(node)}`", node)
        if method == "format" and "{" in target and "." in target.split("{", 1)[1].split("}")[0]:
            raise _Refuse(f"`{_describe(node)}` (attribute access in the format)", node)
        try:
            value = getattr(target, method)(*args, **kwargs)
        except Exception as exc:
            raise _Refuse(f"`{_describe(node)}` ({type(exc).__name__}: {exc})", node) from None
        if method in ("keys", "values", "items"):
            value = [tuple(v) if isinstance(v, tuple) else v for v in value]
        self._check_size(value, node)
        return _copy(value)

    def _config_getter(self, method: str, args, kwargs, node):
        """RETURNN's `config.<getter>(key, default)` without command-line overrides: the value
        bound earlier in the file (RETURNN's config object is the file's globals), else the
        default."""
        if not args or not isinstance(args[0], str) or set(kwargs) - {"default"}:
            raise _Refuse(f"`{_describe(node)}`", node)
        key = args[0]
        default = kwargs.get("default", args[1] if len(args) > 1 else None)
        present = key in self.env and not isinstance(self.env[key], NotData)
        if key in self.env and isinstance(self.env[key], NotData):
            raise _Refuse(f"`{_describe(node)}`: `{key}` is {_strip(self.env[key].reason)}", node)
        if method == "has":
            return present
        if not present:
            return default if method != "is_true" else bool(default)
        value = _copy(self.env[key])
        try:
            if method in ("typed_value", "opt_typed_value", "bool_or_other"):
                return value
            if method == "value":
                if value is None:
                    return default
                if isinstance(value, (list, tuple)):
                    return ",".join(str(v) for v in value)
                return str(value)
            if method == "int":
                return value if isinstance(value, int) else int(value)
            if method == "float":
                return float(value)
            if method in ("bool", "is_true"):
                if isinstance(value, str):
                    return value.strip().lower() in ("true", "1", "yes", "on")
                return bool(value)
        except (TypeError, ValueError) as exc:
            raise _Refuse(f"`{_describe(node)}` ({exc})", node) from None
        raise _Refuse(f"`{_describe(node)}`", node)  # pragma: no cover


def _is_config_alias(stmt: ast.stmt) -> bool:
    """`config = globals()["config"]` (or `.get("config")`): an idiom that keeps RETURNN's config
    object under its own name."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "config"):
        return False
    return ast.unparse(stmt.value).replace("'", '"') in (
        'globals()["config"]', 'globals().get("config")')


def _has_call(stmt: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(stmt))


def _strip(reason: str) -> str:
    return reason.replace(" (needs Python)", "")


def _copy(value):
    """Deep copy of data (dicts/lists are mutable; names must not alias)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


def _as_load(target: ast.expr) -> ast.expr:
    node = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(node, target)


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _assigned_names(stmt: ast.AST) -> set[str]:
    """Names a statement (with its nested blocks, not function bodies) may bind."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                               ast.GeneratorExp)):
            return  # their own scope
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return names


def _mutated_names(stmt: ast.AST) -> set[str]:
    """Data names a statement may change in place: targets of `x[...] = `/`x.attr = `, and the
    receivers and arguments of calls (`x.update(...)`, `f(x)`)."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(
                node.ctx, (ast.Store, ast.Del)):
            base = _base_name(node)
            if base:
                names.add(base)
        if isinstance(node, ast.Call):
            is_print = isinstance(node.func, ast.Name) and node.func.id == "print"
            if isinstance(node.func, ast.Attribute):
                base = _base_name(node.func.value)
                if base:
                    names.add(base)
            if not is_print:
                for arg in list(node.args) + [k.value for k in node.keywords]:
                    if isinstance(arg, ast.Starred):
                        arg = arg.value
                    base = _base_name(arg)
                    if base:
                        names.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return names


# -- exec mode -------------------------------------------------------------------------------------
# Runs in the child (`python -c`): stdlib only. argv: config path, output JSON path.
_RUNNER = r'''
import json, math, sys, traceback

NOT_DATA_KEY = "__netcompiler_not_data__"
path, out_path = sys.argv[1], sys.argv[2]


class _Config:
    """Stand-in for RETURNN's config object during loading: the getters read the config's
    own globals (RETURNN's config object is those globals); there are no command-line
    overrides."""

    def __init__(self, ns):
        self.typed_dict = ns

    def has(self, key):
        return key in self.typed_dict

    def is_typed(self, key):
        return key in self.typed_dict

    def typed_value(self, key, default=None, index=None):
        value = self.typed_dict.get(key, default)
        if index is not None and isinstance(value, (list, tuple)):
            value = value[index]
        return value

    opt_typed_value = typed_value
    bool_or_other = typed_value

    def value(self, key, default=None, index=None, list_join_str=","):
        if key not in self.typed_dict:
            return default
        v = self.typed_dict[key]
        if index is not None:
            return str(v[index])
        if isinstance(v, (list, tuple)):
            return list_join_str.join(str(x) for x in v)
        return default if v is None else str(v)

    def int(self, key, default, index=0):
        if key not in self.typed_dict:
            return default
        v = self.typed_dict[key]
        return v if isinstance(v, int) else int(self.value(key, default, index))

    def float(self, key, default, index=0):
        if key not in self.typed_dict:
            return default
        v = self.typed_dict[key]
        return float(v) if not isinstance(v, str) else float(v)

    def bool(self, key, default, index=0):
        if key not in self.typed_dict:
            return default
        v = self.typed_dict[key]
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1", "yes", "on")
        return bool(v)

    def is_true(self, key, default=False):
        return self.bool(key, default)


def encode(value, depth=0, active=None):
    active = set() if active is None else active
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {NOT_DATA_KEY: "float", "repr": repr(value), "value": repr(value)}
    if depth > 100 or id(value) in active:
        return {NOT_DATA_KEY: "recursive", "repr": "a recursive structure"}
    if type(value) in (list, tuple):
        active.add(id(value))
        try:
            return [encode(v, depth + 1, active) for v in value]
        finally:
            active.discard(id(value))
    if type(value) is dict:
        if not all(isinstance(k, str) for k in value):
            return {NOT_DATA_KEY: "dict", "repr": "a dict with non-string keys"}
        active.add(id(value))
        try:
            return {k: encode(v, depth + 1, active) for k, v in value.items()}
        finally:
            active.discard(id(value))
    kind = type(value).__name__
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if kind == "module":
        text = "the module `%s`" % value.__name__
    elif isinstance(name, str) and (callable(value) or isinstance(value, type)):
        text = "the %s `%s`" % ("class" if isinstance(value, type) else kind, name)
    else:
        text = "a `%s` object" % kind
    return {NOT_DATA_KEY: kind, "repr": text}


def main():
    with open(path, encoding="utf-8-sig") as f:
        source = f.read()
    ns = {}
    ns.update({"config": _Config(ns), "__file__": path, "__name__": "__returnn_config__"})
    result = {"ok": True}
    try:
        exec(compile(source, path, "exec"), ns, ns)
    except BaseException as exc:
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == path:
                line = lineno
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
        result = {"ok": False, "error": msg[-1] if msg else type(exc).__name__, "line": line}
    else:
        values = {}
        for k, v in list(ns.items()):
            if k in ("config", "__file__", "__name__", "__builtins__"):
                continue
            values[k] = encode(v)
        result["values"] = values
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


main()
'''


def _decode(value):
    if isinstance(value, dict):
        if NOT_DATA_KEY in value:
            kind = value.get(NOT_DATA_KEY)
            if kind == "float":
                return float(value.get("value", "nan"))
            return NotData(f"Python: {value.get('repr', kind)}")
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _exec_config(path: str, timeout: float) -> ReadConfig:
    with tempfile.TemporaryDirectory(prefix="netcompiler-returnn-") as tmp:
        out_path = os.path.join(tmp, "values.json")
        log_path = os.path.join(tmp, "output.log")
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen([sys.executable, "-c", _RUNNER, path, out_path],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
            except OSError as exc:
                raise ReturnnConfigError(
                    f"{path}: error: --exec: cannot start Python: {exc}") from None
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise ReturnnConfigError(
                    f"{path}: error: --exec: running the config did not finish within "
                    f"{timeout:g} s (stopped; a longer limit: --timeout SECONDS)") from None
            except BaseException:
                _kill_group(proc)
                raise
        _kill_group(proc)  # anything the config left running in the background
        try:
            size = os.path.getsize(out_path)
        except OSError:
            size = -1
        if size < 0 or size > MAX_EXEC_OUTPUT:
            tail = _tail(log_path)
            why = "wrote no result" if size < 0 else "wrote too much data"
            raise ReturnnConfigError(
                f"{path}: error: --exec: running the config {why} (exit status {proc.returncode})"
                + (f": {tail}" if tail else ""))
        with open(out_path, encoding="utf-8") as f:
            try:
                result = json.load(f)
            except (ValueError, RecursionError):
                raise ReturnnConfigError(
                    f"{path}: error: --exec: unreadable result from the child") from None
    if not isinstance(result, dict) or not result.get("ok"):
        error = result.get("error", "failed") if isinstance(result, dict) else "failed"
        line = result.get("line") if isinstance(result, dict) else None
        where = f"{path}:{line}" if isinstance(line, int) else path
        raise ReturnnConfigError(f"{where}: error: --exec: running the config failed: {error}")
    values = result.get("values")
    try:
        if not isinstance(values, dict):
            raise TypeError
        return ReadConfig(path, "exec", {str(k): _decode(v) for k, v in values.items()})
    except (TypeError, ValueError, RecursionError):
        raise ReturnnConfigError(f"{path}: error: --exec: unreadable result from the child") \
            from None


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the child and what it started (its own process group)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:  # pragma: no cover - no process groups (Windows)
            proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


__all__ = ["ReadConfig", "NotData", "ReturnnConfigError", "read_config", "find_not_data",
           "is_not_data", "config_kind", "DEFAULT_TIMEOUT", "PURE_BUILTINS", "PURE_METHODS"]
