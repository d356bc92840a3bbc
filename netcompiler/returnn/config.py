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
- calls only of this allow-list, pure functions of data (`PURE_BUILTINS` of
  `netcompiler.returnn.config_eval`): `dict list tuple int float str bool len min max abs round
  sorted sum range` (range at most 10**6 items), methods of data values `copy get keys values
  items format join replace split strip lower upper startswith endswith`, the statements
  `d.update(...)`, `l.append(x)`, `l.extend(...)`, and RETURNN's own config getters
  `config.value/typed_value/int/float/bool/has/is_true(key, default)`: with no command-line
  overrides they return the value bound earlier in the file, else the default (as RETURNN,
  whose config object is the file's globals).

`print(...)` statements and `config = globals()["config"]` are skipped. Anything else
(imports, calls, attribute access, functions, lambdas, comprehensions, sets, loops, `with`,
`try`) is never run: the names it binds, the dicts/lists it might change in place (call
arguments, `x[...] =` targets) and, for a statement with a call, the names the file's functions
declare `global` become `NotData` with the line and the reason. Whether that matters is the
importer's call: a needed value (the network, extern data, training options) that is `NotData`
is an error suggesting `--exec`; any other one is only listed as not imported.

The Python-config rule is RETURNN's (`#!` first, or `.py`), except that a `#!` line after other
leading comment lines counts too (the copies in tests/returnn_demos/ start with a source line).

The statements are read by `netcompiler.returnn.config_safe`, the expressions evaluated by
`netcompiler.returnn.config_eval`.

Exec mode (`read_config(path, exec_mode=True)`: `netcompiler.returnn.config_exec`) runs the file
in a child process (`sys.executable`), as RETURNN loads it: the source executed with the module
globals `config` (a stand-in of RETURNN's config object whose getters read those globals),
`__file__` and `__name__ = "__returnn_config__"`, in the current directory, with a timeout. The
child writes its globals as JSON (plain data as is, anything else as a `NotData` marker); the
parent only reads that JSON, so nothing the child does can make the parent run code.

What is read (`ReadConfig`, `NotData`, `ReturnnConfigError`) is defined in
`netcompiler.returnn.config_values`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from netcompiler.returnn.config_exec import DEFAULT_TIMEOUT, run_config
from netcompiler.returnn.config_safe import SafeReader
from netcompiler.returnn.config_values import ReadConfig, ReturnnConfigError


def _read_text(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ReturnnConfigError(f"{path}: error: no such file", usage=True) from None
    except IsADirectoryError:
        raise ReturnnConfigError(f"{path}: error: is a directory", usage=True) from None
    except OSError as exc:
        raise ReturnnConfigError(
            f"{path}: error: cannot read: {exc.strerror}", usage=True
        ) from None
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
            f"JSON configs"
        )
    if kind == "json":
        try:
            values = json.loads(text, object_pairs_hook=dict)
        except json.JSONDecodeError as exc:
            raise ReturnnConfigError(
                f"{path}:{exc.lineno}:{exc.colno}: error: invalid JSON: {exc.msg}"
            ) from None
        if not isinstance(values, dict):
            raise ReturnnConfigError(f"{path}:1:1: error: a JSON config must be an object")
        return ReadConfig(path, "json", values)
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        hint = " (RETURNN configs are Python 3)" if "print" in (exc.text or "") else ""
        raise ReturnnConfigError(
            f"{path}:{exc.lineno}:{exc.offset or 1}: error: Python syntax error: {exc.msg}{hint}"
        ) from None
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if exec_mode:
        result = run_config(path, timeout)
        result.lines = _binding_lines(tree)
    else:
        reader = SafeReader(path)
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


__all__ = ["read_config", "config_kind"]
