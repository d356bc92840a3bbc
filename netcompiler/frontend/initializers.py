"""Initialisers as RETURNN configs write them (`forward_weights_init`, `bias_init`, ...).

Accepted forms (RETURNN's `get_initializer`, TF1 semantics and defaults):

- a number: that constant (`0`, `0.1`);
- a name: `glorot_uniform`, `xavier`, `zeros`, ... or the same with `_initializer`;
- a call, written as a string: `variance_scaling_initializer(mode='fan_in',
  distribution='uniform', scale=0.78)`, `random_normal_initializer(mean=0, stddev=0.1)`,
  `orthogonal_initializer()`. The string is parsed with `ast` into (function name, literal
  arguments): numbers, strings, booleans, None, and arithmetic on numbers (`1.0/3`,
  `sqrt(2)`); it is never evaluated as Python;
- a dict `{class: variance_scaling, scale: 0.5, mode: fan_avg, distribution: uniform}` (the
  class may also be TF's class name, `VarianceScaling`).

Each name maps onto TF1's initialiser of that name (`tf.compat.v1.*_initializer`), so the
defaults are TF1's: `random_normal` has stddev 1, `random_uniform` is [0, 1),
`variance_scaling` is scale 1, mode `fan_in`, distribution `truncated_normal` (`normal` is TF1's
alias of `truncated_normal`; `untruncated_normal` is the plain normal), `glorot_normal` is a
truncated normal, `xavier` = `xavier_initializer(uniform=True)` = glorot uniform.

This module parses and checks (no TensorFlow; validation uses it);
`netcompiler.backend.initializers.make_initial_value` makes the values.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any

from netcompiler.core.diagnostics import did_you_mean
from netcompiler.core.errors import UserError


class InitializerError(UserError, ValueError):
    """An initialiser that cannot be used; `hint` says what would be accepted."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


_FAN_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal", "normal")

#: canonical name -> (positional parameters in TF1's order, defaults)
_SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "zeros": ((), {}),
    "ones": ((), {}),
    "constant": (("value",), {"value": 0.0}),
    "random_normal": (("mean", "stddev", "seed"), {"mean": 0.0, "stddev": 1.0}),
    "truncated_normal": (("mean", "stddev", "seed"), {"mean": 0.0, "stddev": 1.0}),
    "random_uniform": (("minval", "maxval", "seed"), {"minval": 0.0, "maxval": 1.0}),
    "orthogonal": (("gain", "seed"), {"gain": 1.0}),
    "variance_scaling": (
        ("scale", "mode", "distribution", "seed"),
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    ),
    "glorot_uniform": (("seed",), {}),
    "glorot_normal": (("seed",), {}),
    "he_uniform": (("seed",), {}),
    "he_normal": (("seed",), {}),
    "lecun_uniform": (("seed",), {}),
    "lecun_normal": (("seed",), {}),
    "xavier": (("uniform", "seed"), {"uniform": True}),
}
#: other spellings RETURNN configs use -> canonical name
_ALIASES = {
    "zero": "zeros",
    "one": "ones",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "normal": "random_normal",
    "uniform": "random_uniform",
}
#: names RETURNN understands that netcompiler refuses, with the reason
_UNSUPPORTED = {
    "load_txt_file": "it reads a file when the variable is created; load the values with a "
    "checkpoint instead",
    "gammatone_filterbank": "it needs RETURNN's signal-processing code",
    "variance_scaling_non_zero": "RETURNN's own variant is not implemented",
    "identity": "not implemented",
    "uniform_unit_scaling": "deprecated in TF1 and not implemented",
}
_MATH = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp}


@dataclass(frozen=True)
class InitSpec:
    """A parsed initialiser: canonical `name` and its keyword arguments (defaults filled in)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def allowed_names() -> list[str]:
    return sorted(_SIGNATURES)


def _canonical(name: str) -> str:
    """`VarianceScaling` -> variance_scaling, `xavier_initializer` -> xavier, aliases."""
    raw = name
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    if name.startswith("tf."):
        name = name.split(".")[-1]
    if name.endswith("_initializer"):
        name = name[: -len("_initializer")]
    name = _ALIASES.get(name, name)
    if name in _UNSUPPORTED:
        raise InitializerError(f"initialiser `{raw}` is not supported: {_UNSUPPORTED[name]}")
    if name not in _SIGNATURES:
        choices = allowed_names() + [f"{n}_initializer" for n in allowed_names()]
        raise InitializerError(
            f"unknown initialiser `{raw}` (one of: {', '.join(allowed_names())}, each also "
            f"with `_initializer`; a number; or a call such as "
            f"`variance_scaling_initializer(scale=1.0, mode='fan_in', distribution='uniform')`)",
            did_you_mean(raw, choices),
        )
    return name


def _literal(node: ast.AST, text: str) -> Any:
    """A literal argument: numbers, strings, True/False/None, arithmetic on numbers."""
    if isinstance(node, ast.Constant) and isinstance(
        node.value, (int, float, str, bool, type(None))
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, text)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and isinstance(
        node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
    ):
        a, b = _literal(node.left, text), _literal(node.right, text)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            try:
                if isinstance(node.op, ast.Add):
                    return a + b
                if isinstance(node.op, ast.Sub):
                    return a - b
                if isinstance(node.op, ast.Mult):
                    return a * b
                if isinstance(node.op, ast.Div):
                    return a / b
                return a**b
            except (ZeroDivisionError, OverflowError) as exc:
                raise InitializerError(f"initialiser `{text}`: {exc}") from None
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
        fname = _dotted(node.func)
        short = (
            fname.split(".")[-1]
            if fname and fname.startswith(("math.", "numpy.", "np."))
            else fname
        )
        if short in _MATH:
            v = _literal(node.args[0], text)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                try:
                    return _MATH[short](v)
                except (ValueError, OverflowError) as exc:
                    raise InitializerError(f"initialiser `{text}`: {exc}") from None
    segment = ast.get_source_segment(text, node) or ast.dump(node)
    raise InitializerError(
        f"initialiser `{text}`: argument `{segment}` is not a literal",
        "arguments must be numbers, strings, True/False/None or arithmetic on numbers "
        "(`1.0/3`, `sqrt(2)`)",
    )


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _bind(name: str, raw: str, args: list[Any], kwargs: dict[str, Any], text: str) -> InitSpec:
    params, defaults = _SIGNATURES[name]
    if len(args) > len(params):
        raise InitializerError(
            f"initialiser `{text}`: `{raw}` takes at most {len(params)} "
            f"positional arguments ({', '.join(params) or 'none'}), got "
            f"{len(args)}"
        )
    bound = dict(zip(params, args))
    for key, value in kwargs.items():
        if key == "dtype" and value in (None, "float32", "tf.float32"):
            continue
        if key not in params:
            raise InitializerError(
                f"initialiser `{text}`: `{raw}` has no argument `{key}` (its arguments: "
                f"{', '.join(params) or 'none'})",
                did_you_mean(key, params),
            )
        if key in bound:
            raise InitializerError(f"initialiser `{text}`: argument `{key}` given twice")
        bound[key] = value
    out = dict(defaults)
    out.update(bound)
    _check_values(name, out, text)
    return InitSpec(name, out)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_values(name: str, kw: dict[str, Any], text: str) -> None:
    for key, v in kw.items():
        if key in ("mode", "distribution"):
            allowed = _FAN_MODES if key == "mode" else _DISTRIBUTIONS
            if v not in allowed:
                raise InitializerError(
                    f"initialiser `{text}`: `{key}={v!r}` is not one of {', '.join(allowed)}",
                    did_you_mean(str(v), allowed),
                )
        elif key == "uniform":
            if not isinstance(v, bool):
                raise InitializerError(f"initialiser `{text}`: `uniform` must be True or False")
        elif key == "seed":
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
                raise InitializerError(f"initialiser `{text}`: `seed` must be an integer")
        elif not _is_number(v):
            raise InitializerError(f"initialiser `{text}`: `{key}` must be a number, got {v!r}")
    if kw.get("scale", 1.0) <= 0 and name == "variance_scaling":
        raise InitializerError(f"initialiser `{text}`: `scale` must be > 0")
    if kw.get("stddev", 1.0) < 0:
        raise InitializerError(f"initialiser `{text}`: `stddev` must be >= 0")


def parse_initializer(value: Any) -> InitSpec:
    """The InitSpec of an option value; raises InitializerError (message + hint)."""
    if _is_number(value):
        return InitSpec("constant", {"value": float(value)})
    if isinstance(value, dict):
        cls = value.get("class")
        if not isinstance(cls, str):
            raise InitializerError(
                "an initialiser dict needs `class` (a name such as `variance_scaling`)"
            )
        name = _canonical(cls)
        kwargs = {k: v for k, v in value.items() if k != "class"}
        return _bind(name, cls, [], kwargs, f"{{class: {cls}, ...}}")
    if not isinstance(value, str):
        raise InitializerError(
            f"an initialiser is a number, a name, a call or a dict, got {type(value).__name__}"
        )
    text = value.strip()
    if "(" not in text:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", text):
            try:
                return parse_initializer(float(text))
            except ValueError:
                pass
        return _bind(_canonical(text), text, [], {}, text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise InitializerError(f"initialiser `{text}` is not a valid call: {exc.msg}") from None
    call = tree.body
    raw = _dotted(call.func) if isinstance(call, ast.Call) else None
    if not isinstance(call, ast.Call) or raw is None:
        raise InitializerError(
            f"initialiser `{text}` must be one call `name(args)`",
            "e.g. `variance_scaling_initializer(scale=0.78, mode='fan_in', "
            "distribution='uniform')`",
        )
    name = _canonical(raw)
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        raise InitializerError(f"initialiser `{text}`: `*args`/`**kwargs` are not allowed")
    args = [_literal(a, text) for a in call.args]
    kwargs = {k.arg: _literal(k.value, text) for k in call.keywords}
    return _bind(name, raw, args, kwargs, text)


def check_initializer(value: Any) -> tuple[str, str | None] | None:
    """None if `value` is a usable initialiser, else (message, hint)."""
    try:
        parse_initializer(value)
    except InitializerError as exc:
        return exc.message, exc.hint
    return None
