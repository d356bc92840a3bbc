"""Exec mode: a RETURNN config run in a child process (`sys.executable`), as RETURNN loads it.

The source is executed with the module globals `config` (a stand-in of RETURNN's config object
whose getters read those globals), `__file__` and `__name__ = "__returnn_config__"`, in the
current directory, in a process group of its own (stopped at the timeout, and afterwards with
whatever it left running). The child writes its globals as JSON (plain data as is, anything else
as a `NotData` marker); the parent only reads that JSON, so nothing the child does can make the
parent run code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

from netcompiler.returnn.config_values import NotData, ReadConfig, ReturnnConfigError

DEFAULT_TIMEOUT = 60.0
MAX_EXEC_OUTPUT = 64 * 1024 * 1024  # bytes of JSON accepted from the child
NOT_DATA_KEY = "__netcompiler_not_data__"
#: globals RETURNN puts into every Python config (not config values)
RETURNN_GLOBALS = ("config", "__file__", "__name__", "__builtins__")

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


def run_config(path: str, timeout: float = DEFAULT_TIMEOUT) -> ReadConfig:
    """Run the config in a child process and read the globals it leaves (mode "exec"); raises
    ReturnnConfigError when it cannot start, fails, runs past `timeout` or writes no result."""
    with tempfile.TemporaryDirectory(prefix="netcompiler-returnn-") as tmp:
        out_path = os.path.join(tmp, "values.json")
        log_path = os.path.join(tmp, "output.log")
        returncode = _run_child(path, out_path, log_path, timeout)
        result = _read_child_result(path, out_path, log_path, returncode)
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
        raise ReturnnConfigError(
            f"{path}: error: --exec: unreadable result from the child"
        ) from None


def _run_child(path: str, out_path: str, log_path: str, timeout: float) -> int | None:
    """Run the child to its end (or stop it at the timeout); its exit status."""
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _RUNNER, path, out_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        except OSError as exc:
            raise ReturnnConfigError(f"{path}: error: --exec: cannot start Python: {exc}") from None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ReturnnConfigError(
                f"{path}: error: --exec: running the config did not finish within "
                f"{timeout:g} s (stopped; a longer limit: --timeout SECONDS)"
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
    _kill_group(proc)  # anything the config left running in the background
    return proc.returncode


def _read_child_result(path: str, out_path: str, log_path: str, returncode: int | None):
    """The JSON the child wrote (not yet checked); an error when there is none or too much."""
    try:
        size = os.path.getsize(out_path)
    except OSError:
        size = -1
    if size < 0 or size > MAX_EXEC_OUTPUT:
        tail = _tail(log_path)
        why = "wrote no result" if size < 0 else "wrote too much data"
        raise ReturnnConfigError(
            f"{path}: error: --exec: running the config {why} (exit status {returncode})"
            + (f": {tail}" if tail else "")
        )
    with open(out_path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (ValueError, RecursionError):
            raise ReturnnConfigError(
                f"{path}: error: --exec: unreadable result from the child"
            ) from None


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
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


__all__ = ["run_config", "DEFAULT_TIMEOUT", "MAX_EXEC_OUTPUT", "NOT_DATA_KEY", "RETURNN_GLOBALS"]
