"""The safe reader's expression evaluator: the value of a Python expression of a RETURNN config
when it is plain data, computed without running any of the file's code.

`DataEvaluator.expr(node)` evaluates literals, names bound to data earlier in the file,
operators (sizes bounded by `MAX_ITEMS` and `MAX_INT_BITS`), subscripts, f-strings and calls of
the allow-list (`PURE_BUILTINS`, `PURE_METHODS` of data values, RETURNN's `config` getters
`CONFIG_GETTERS`). Anything else raises `Refusal`, which says what was not data and where; the
statement reader (`netcompiler.returnn.config_safe`) turns it into a `NotData` value.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any, cast

from netcompiler.core.errors import InternalError
from netcompiler.returnn.config_values import NEEDS_PYTHON, NotData

PURE_BUILTINS = (
    "dict",
    "list",
    "tuple",
    "int",
    "float",
    "str",
    "bool",
    "len",
    "min",
    "max",
    "abs",
    "round",
    "sorted",
    "sum",
    "range",
)
PURE_METHODS = (
    "copy",
    "get",
    "keys",
    "values",
    "items",
    "format",
    "join",
    "replace",
    "split",
    "strip",
    "lower",
    "upper",
    "startswith",
    "endswith",
)
CONFIG_GETTERS = (
    "value",
    "typed_value",
    "int",
    "float",
    "bool",
    "has",
    "is_true",
    "bool_or_other",
    "opt_typed_value",
)
MAX_ITEMS = 10**6  # largest string/list/range the evaluator builds
MAX_INT_BITS = 100_000


class Refusal(InternalError):  # control flow, caught by the safe reader
    """Evaluation hit something that is not data: the reason and the node."""

    def __init__(self, reason: str, node: ast.AST):
        super().__init__(reason)
        self.reason = reason
        self.node = node

    def not_data(self) -> NotData:
        return NotData(
            self.reason + NEEDS_PYTHON,
            getattr(self.node, "lineno", None),
            getattr(self.node, "col_offset", -1) + 1 or None,
        )


def describe_node(node: ast.AST) -> str:
    """The source of a node, shortened to 60 characters (for messages)."""
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - ast.unparse handles every expression
        text = type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


BINARY_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
    ast.BitOr: lambda a, b: a | b,
}
_CMPOPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
}
_DATA_TYPES = (type(None), bool, int, float, str, list, tuple, dict)


def _size(value) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 1


class DataEvaluator:
    """Evaluates expressions against `env`, the config's names bound so far (data or NotData)."""

    def __init__(self, path: str, env: dict):
        self.path = path  # the config's path as given: the value of `__file__`
        self.env = env
        self.star_import: int | None = None  # line of an `import *` (names may come from it)

    def expr(self, node: ast.expr):
        method = getattr(self, "e_" + type(node).__name__, None)
        if method is None:
            kind = {
                "Lambda": "a lambda",
                "ListComp": "a comprehension",
                "DictComp": "a comprehension",
                "SetComp": "a comprehension",
                "GeneratorExp": "a generator",
                "Await": "`await`",
                "Yield": "`yield`",
                "NamedExpr": "`:=`",
                "Attribute": f"the attribute `{describe_node(node)}`",
            }
            raise Refusal(kind.get(type(node).__name__, f"`{describe_node(node)}`"), node)
        return method(node)

    def e_Attribute(self, node: ast.Attribute):
        base = base_name(node)
        value = self.env.get(base) if base else None
        if isinstance(value, NotData):
            raise Refusal(
                f"the attribute `{describe_node(node)}` (`{base}` is "
                f"{value.plain_reason()}, line {value.line})",
                node,
            )
        raise Refusal(f"the attribute `{describe_node(node)}`", node)

    def e_Constant(self, node: ast.Constant):
        if isinstance(node.value, (bytes, complex)) or node.value is Ellipsis:
            raise Refusal(f"the constant `{describe_node(node)}`", node)
        return node.value

    def e_Name(self, node: ast.Name):
        name = node.id
        if name in self.env:
            value = self.env[name]
            if isinstance(value, NotData):
                raise Refusal(
                    f"`{name}`, which is {value.plain_reason()} (line {value.line})", node
                )
            return copy_data(value)
        if name == "__file__":
            return self.path
        if name == "__name__":
            return "__returnn_config__"
        if name == "config":
            raise Refusal(
                'RETURNN\'s config object (only its getters `config.int("key", '
                "default)` etc. are read as data)",
                node,
            )
        if self.star_import is not None:
            raise Refusal(f"`{name}` (maybe from the `import *` on line {self.star_import})", node)
        raise Refusal(f"`{name}`, which is not defined before this line", node)

    def e_List(self, node):
        return self._items(node.elts)

    def e_Tuple(self, node):
        return tuple(self._items(node.elts))

    def e_Set(self, node):
        raise Refusal("a set (not data)", node)

    def _items(self, elts) -> list:
        out: list = []
        for e in elts:
            if isinstance(e, ast.Starred):
                value = self.expr(e.value)
                if not isinstance(value, (list, tuple, str)):
                    raise Refusal(f"`{describe_node(e)}`", e)
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
                    raise Refusal(f"`**{describe_node(v)}`", v)
                out.update(value)
                continue
            key = self.expr(k)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise Refusal(f"the key `{describe_node(k)}`", k)
            out[key] = self.expr(v)
        return out

    def e_UnaryOp(self, node: ast.UnaryOp):
        value = self.expr(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if not (isinstance(value, bool) and isinstance(node.op, (ast.USub, ast.UAdd))):
                raise Refusal(f"`{describe_node(node)}` on {type(value).__name__}", node)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(node.op, ast.Invert) and isinstance(value, int):
            return ~value
        raise Refusal(f"`{describe_node(node)}`", node)

    def e_BinOp(self, node: ast.BinOp):
        op = BINARY_OPERATORS.get(type(node.op))
        if op is None:
            raise Refusal(f"the operator in `{describe_node(node)}`", node)
        return self.binop(op, self.expr(node.left), self.expr(node.right), node)

    def binop(self, op, left, right, node):
        for v in (left, right):
            if not isinstance(v, _DATA_TYPES):
                raise Refusal(f"`{describe_node(node)}`", node)
        if (
            op is BINARY_OPERATORS[ast.Pow]
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * max(1, abs(left).bit_length()) > MAX_INT_BITS
        ):
            raise Refusal(f"`{describe_node(node)}` (too large)", node)
        if op is BINARY_OPERATORS[ast.Mult]:
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(n, int)
                and len(seq) * max(n, 0) > MAX_ITEMS
            ):
                raise Refusal(f"`{describe_node(node)}` (too large)", node)
        if op is BINARY_OPERATORS[ast.Mod] and isinstance(left, str):
            if not isinstance(right, (tuple, dict)) and not isinstance(right, _DATA_TYPES):
                raise Refusal(f"`{describe_node(node)}`", node)
        try:
            value = op(left, right)
        except Exception as exc:
            raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__}: {exc})", node) from None
        self._check_size(value, node)
        return value

    def _check_size(self, value, node):
        if _size(value) > MAX_ITEMS or (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value.bit_length() > MAX_INT_BITS
        ):
            raise Refusal(f"`{describe_node(node)}` (too large)", node)

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
            if isinstance(op, (ast.Is, ast.IsNot)) and not (
                left is None or right is None or isinstance(left, bool) or isinstance(right, bool)
            ):
                raise Refusal(f"`{describe_node(node)}`", node)
            try:
                ok = _CMPOPS[type(op)](left, right)
            except Exception as exc:
                raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__})", node) from None
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
            raise Refusal(f"`{describe_node(node)}`", node)
        try:
            return copy_data(container[key])
        except Exception as exc:
            raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__}: {exc})", node) from None

    def e_Slice(self, node: ast.Slice):
        parts = [None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)]
        if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
            raise Refusal(f"the slice `{describe_node(node)}`", node)
        return slice(*parts)

    def e_JoinedStr(self, node: ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:  # the other parts of an f-string are FormattedValue nodes
                out.append(self.e_FormattedValue(cast(ast.FormattedValue, part)))
        value = "".join(out)
        self._check_size(value, node)
        return value

    def e_FormattedValue(self, node: ast.FormattedValue):
        value = self.expr(node.value)
        if not isinstance(value, _DATA_TYPES):
            raise Refusal(f"`{describe_node(node)}`", node)
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
            raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__}: {exc})", node) from None

    def e_Call(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in PURE_BUILTINS and func.id not in self.env:
            args, kwargs = self._args(node)
            return self._builtin(func.id, args, kwargs, node)
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "config"
            and "config" not in self.env
            and func.attr in CONFIG_GETTERS
        ):
            args, kwargs = self._args(node)
            return self._config_getter(func.attr, args, kwargs, node)
        if isinstance(func, ast.Attribute) and func.attr in PURE_METHODS:
            target = self.expr(func.value)
            args, kwargs = self._args(node)
            return self._method(target, func.attr, args, kwargs, node)
        raise Refusal(f"the call `{describe_node(node)}`", node)

    def _args(self, node: ast.Call):
        args = self._items(node.args)
        kwargs = {}
        for kw in node.keywords:
            value = self.expr(kw.value)
            if kw.arg is None:
                if not isinstance(value, dict):
                    raise Refusal(f"`**{describe_node(kw.value)}`", kw.value)
                kwargs.update(value)
            else:
                kwargs[kw.arg] = value
        return args, kwargs

    def _builtin(self, name: str, args, kwargs, node):
        if name == "range":
            if kwargs or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                raise Refusal(f"`{describe_node(node)}`", node)
            try:
                r = range(*args)
            except Exception as exc:
                raise Refusal(f"`{describe_node(node)}` ({exc})", node) from None
            if len(r) > MAX_ITEMS:
                raise Refusal(f"`{describe_node(node)}` (too large)", node)
            return list(r)
        if name in ("int", "float", "str", "bool", "len", "abs", "round") and any(
            not isinstance(a, _DATA_TYPES) for a in args
        ):
            raise Refusal(f"`{describe_node(node)}`", node)
        fn: Callable[..., Any] = {
            "dict": dict,
            "list": list,
            "tuple": tuple,
            "int": int,
            "float": float,
            "str": str,
            "bool": bool,
            "len": len,
            "min": min,
            "max": max,
            "abs": abs,
            "round": round,
            "sorted": sorted,
            "sum": sum,
        }[name]
        if name in ("min", "max", "sorted") and set(kwargs) - {"default", "reverse"}:
            raise Refusal(f"`{describe_node(node)}` (a key function)", node)
        if name == "str" and len(args) > 1:
            raise Refusal(f"`{describe_node(node)}`", node)
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__}: {exc})", node) from None
        self._check_size(value, node)
        return value

    def _method(self, target, method: str, args, kwargs, node):
        allowed = {
            dict: ("copy", "get", "keys", "values", "items"),
            list: ("copy",),
            str: (
                "format",
                "join",
                "replace",
                "split",
                "strip",
                "lower",
                "upper",
                "startswith",
                "endswith",
            ),
        }
        kind = next((t for t in allowed if isinstance(target, t)), None)
        if kind is None or method not in allowed[kind]:
            raise Refusal(f"the call `{describe_node(node)}`", node)
        if method == "join" and not all(isinstance(a, (list, tuple)) for a in args):
            raise Refusal(f"`{describe_node(node)}`", node)
        if method == "format" and any(
            not isinstance(a, _DATA_TYPES) for a in list(args) + list(kwargs.values())
        ):
            raise Refusal(f"`{describe_node(node)}`", node)
        if method == "format" and "{" in target and "." in target.split("{", 1)[1].split("}")[0]:
            raise Refusal(f"`{describe_node(node)}` (attribute access in the format)", node)
        try:
            value = getattr(target, method)(*args, **kwargs)
        except Exception as exc:
            raise Refusal(f"`{describe_node(node)}` ({type(exc).__name__}: {exc})", node) from None
        if method in ("keys", "values", "items"):
            value = [tuple(v) if isinstance(v, tuple) else v for v in value]
        self._check_size(value, node)
        return copy_data(value)

    def _config_getter(self, method: str, args, kwargs, node):
        """RETURNN's `config.<getter>(key, default)` without command-line overrides: the value
        bound earlier in the file (RETURNN's config object is the file's globals), else the
        default."""
        if not args or not isinstance(args[0], str) or set(kwargs) - {"default"}:
            raise Refusal(f"`{describe_node(node)}`", node)
        key = args[0]
        default = kwargs.get("default", args[1] if len(args) > 1 else None)
        present = key in self.env and not isinstance(self.env[key], NotData)
        if key in self.env and isinstance(self.env[key], NotData):
            raise Refusal(
                f"`{describe_node(node)}`: `{key}` is {self.env[key].plain_reason()}", node
            )
        if method == "has":
            return present
        if not present:
            return default if method != "is_true" else bool(default)
        value = copy_data(self.env[key])
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
            raise Refusal(f"`{describe_node(node)}` ({exc})", node) from None
        raise Refusal(f"`{describe_node(node)}`", node)  # pragma: no cover


def copy_data(value):
    """Deep copy of data (dicts/lists are mutable; names must not alias)."""
    if isinstance(value, dict):
        return {k: copy_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(copy_data(v) for v in value)
    return value


def base_name(node: ast.expr) -> str | None:
    """The name a subscript/attribute chain starts from (`d` of `d["k"].x`), if any."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


__all__ = [
    "DataEvaluator",
    "Refusal",
    "describe_node",
    "copy_data",
    "base_name",
    "BINARY_OPERATORS",
    "PURE_BUILTINS",
    "PURE_METHODS",
    "CONFIG_GETTERS",
    "MAX_ITEMS",
    "MAX_INT_BITS",
]
