"""The restricted expression language of `eval` (the `eval` layer and `combine` with `kind: eval`).

An expression is what RETURNN configs write, e.g. `2 * tf.sigmoid(source(0))`, but it is never
executed as Python: the text is *parsed* with `ast.parse` and the syntax tree is walked, allowing
only these node types and names:

- `source(i)` with an integer literal i (the i-th input), also with RETURNN's keywords
  `auto_convert=True|False`, `enforce_batch_major=True|False`, `as_data=False`, `as_layer=False`
  (netcompiler always hands the expression the input aligned to the output's axes by identity,
  so `auto_convert=False` gives the same values; `as_data=True`/`as_layer=True`, which give
  RETURNN's Python objects, are `expr.python-call` errors, see below),
- int and float literals,
- `+ - * / ** % //` (`%` and `//` floor, as Python and TensorFlow), unary minus/plus,
  parentheses, the comparisons `< <= > >= == !=` (a chain `a < b < c` is `a < b and b < c`),
- the functions of `FUNCTIONS`:
  element-wise `tf.sigmoid`, `tf.tanh`, `tf.nn.relu`, `tf.nn.elu`, `tf.nn.gelu(x,
  approximate=False)`, `tf.nn.softplus`, `tf.exp`, `tf.math.log`, `tf.math.log1p`,
  `tf.math.expm1`, `tf.math.log_sigmoid`, `tf.sqrt`, `tf.math.rsqrt`, `tf.math.reciprocal`,
  `tf.math.erf`, `tf.abs`, `tf.square`, `tf.sign`, `tf.floor`, `tf.math.ceil`, `tf.round`
  (half to even), `tf.minimum`, `tf.maximum`, `tf.clip_by_value`, `tf.pow`, `tf.add`,
  `tf.subtract`, `tf.multiply`, `tf.divide`, `tf.math.floormod`, `tf.math.floordiv`;
  `safe_log(x)` = log(max(x, 1e-20)) with the gradient of log passed through the clamp, and
  `safe_exp(x)` = exp(clip(x, log 1e-20, log 1e20)) (RETURNN's, so they never give inf; as in
  RETURNN `safe_log(tf.exp(x))` is `x`, `safe_log(tf.nn.softmax(x))` is
  `tf.nn.log_softmax(x)`, `safe_log(tf.sigmoid(x))` is `tf.math.log_sigmoid(x)` and
  `safe_exp` undoes the log forms the same way);
  comparisons `tf.less`, `tf.less_equal`, `tf.greater`, `tf.greater_equal`, `tf.equal`,
  `tf.not_equal`, `tf.logical_and`, `tf.logical_or`, `tf.logical_not`, `tf.where(cond, x, y)`
  (also RETURNN's `where_bc`);
  casts `tf.cast(x, tf.float32|tf.int32|tf.bool)` (or the dtype as a string `"float32"`),
  `tf.to_float`, `tf.to_int32`; `tf.zeros_like`, `tf.ones_like`, `tf.stop_gradient`,
  `tf.identity`;
  over the last (feature) axis: `tf.nn.softmax(x)`, `tf.nn.log_softmax(x)` (`axis=-1` only) and
  `tf.reduce_sum/mean/max/min/logsumexp(x, axis=-1, keepdims=False|True)` (a reduction over
  other axes, or all of them, is the `reduce` layer, which leaves padding out).

Result dtypes follow TensorFlow: comparisons and logical functions give bool, casts their
dtype, `/` of ints float32, the float functions float32 (an int argument is an error).
`infer_feature` tells how the feature axis goes through the expression (kept, reduced to 1 with
`keepdims=True`, or removed).

Reaching into RETURNN's Python objects counts as calling Python from the config and is an
`ExprError` with `rule` `expr.python-call` (netcompiler never runs Python from a config):
the config's functions (`self.network.get_config().typed_value(...)`, the usual SpecAugment
hook), any use of the names `self`, `network`, `get_config`, `typed_value`, RETURNN's helper
`py_print`, the attribute `.placeholder` (of a `Data` or layer object) anywhere, any attribute
or method of `source(...)` (`source(0, as_data=True).time_dimension()`,
`.get_sequence_lengths()`, `.copy_as_batch_major()`; dunder attributes excepted, which are the
generic error) and `source(i, as_data=True)` / `source(i, as_layer=True)`. This check runs
first, so such an expression is reported as a Python call even where it also has other
forbidden parts (subscripts, tuples). The validator checks every expression once, in the graph
phase (`graph._check_eval`), independently of shape inference.
Anything else outside the language (other names, attribute access, subscripts, strings,
lambdas, comprehensions, keyword arguments other than the functions' own parameter names, ...)
raises `ExprError` naming the offending token. The accepted tree is turned into small `Node`
values that `netcompiler.backend.expr_eval` evaluates with TensorFlow (`to_tf`; the tests evaluate
them with NumPy too, `tests/expr_numpy.py`); this module imports neither.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from netcompiler.core.errors import UserError
from netcompiler.frontend.expr_functions import (
    ALLOWED_TEXT,
    DTYPES,
    FUNCTIONS,
    LAST_AXIS_FUNCTIONS,
    OP_FUNCTIONS,
    PYTHON_ATTRIBUTES,
    PYTHON_CALL_RULE,
    PYTHON_NAMES,
    PYTHON_SOURCE_KEYWORDS,
)

MAX_LENGTH = 4000
MAX_DEPTH = 64


class ExprError(UserError, ValueError):
    """An expression that is not in the language; `token` is the offending text, `rule` a rule
    id of its own where the error has one (`expr.python-call`), else None."""

    def __init__(
        self,
        message: str,
        token: str | None = None,
        col: int | None = None,
        hint: str | None = None,
        rule: str | None = None,
    ):
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message = message
        self.token = token
        self.col = col
        self.hint = hint
        self.rule = rule


# -- the accepted tree -----------------------------------------------------------------------------


class Node:
    pass


@dataclass(frozen=True)
class Num(Node):
    value: int | float

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Source(Node):
    index: int

    def __str__(self) -> str:
        return f"source({self.index})"


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / ** % //
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Neg(Node):
    operand: Node

    def __str__(self) -> str:
        return f"(-{self.operand})"


@dataclass(frozen=True)
class Call(Node):
    """A function: element-wise (sigmoid, minimum, clip, less, logical_and, where, ...) or over
    the last axis (softmax, reduce_sum, ...); `options` are its literal parameters (axis,
    keepdims, approximate) as (name, value) pairs."""

    func: str  # canonical name
    args: tuple[Node, ...]
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def __str__(self) -> str:
        parts = [str(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.options]
        return f"{self.func}({', '.join(parts)})"


@dataclass(frozen=True)
class Cast(Node):
    operand: Node
    dtype: str  # float32 | int32 | bool

    def __str__(self) -> str:
        return f"cast({self.operand}, {self.dtype})"


_BINOPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.Mod: "%",
    ast.FloorDiv: "//",
}
_CMPOPS = {
    ast.Lt: "less",
    ast.LtE: "less_equal",
    ast.Gt: "greater",
    ast.GtE: "greater_equal",
    ast.Eq: "equal",
    ast.NotEq: "not_equal",
}
#: source(i, ...) keywords in RETURNN's order, and the values netcompiler accepts
_SOURCE_KEYWORDS = ("auto_convert", "enforce_batch_major", "as_data", "as_layer")


def _dotted(node: ast.AST) -> str | None:
    """`tf.nn.relu` for a chain of Name/Attribute nodes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _segment(text: str, node: ast.AST) -> str:
    try:
        seg = ast.get_source_segment(text, node)
    except Exception:  # pragma: no cover - defensive
        seg = None
    if not seg:
        seg = type(node).__name__
    return seg if len(seg) <= 60 else seg[:57] + "..."


_NODE_WORDS = {
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Subscript: "subscripts",
    ast.BoolOp: "`and`/`or`",
    ast.IfExp: "conditional expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.Starred: "`*` unpacking",
    ast.NamedExpr: "`:=`",
    ast.Await: "`await`",
    ast.Yield: "`yield`",
    ast.YieldFrom: "`yield`",
    ast.Slice: "slices",
    ast.FormattedValue: "f-strings",
}

_SPEC_AUGMENT_WORDS = ("transform", "spec", "augment", "mask")
#: the layer the hint of a SpecAugment hook shows (modelled on the rwth-i6 setups' `transform`;
#: `tests/test_spec_augment.py` checks that it validates)
SPEC_AUGMENT_EXAMPLE = (
    "{class: spec_augment, from: data, max_num_time_masks: 2, "
    "time_mask_frames_per_mask: 100, max_time_mask_width: 20, "
    "max_num_feature_masks: 2}"
)


def _is_source_call(node: ast.AST) -> TypeGuard[ast.Call]:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "source"
    )


def _python_hit(node: ast.AST) -> str | None:
    """What `node` uses of RETURNN's Python objects (for the message), else None."""
    if isinstance(node, ast.Name) and node.id in PYTHON_NAMES:
        return f"`{node.id}`"
    if not isinstance(node, ast.Attribute):
        if _is_source_call(node):
            for kw in node.keywords:
                if (
                    kw.arg in PYTHON_SOURCE_KEYWORDS
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                ):
                    return f"`{kw.arg}=True` ({PYTHON_SOURCE_KEYWORDS[kw.arg]})"
        return None
    if node.attr in PYTHON_NAMES:
        return f"`{node.attr}`"
    if node.attr in PYTHON_ATTRIBUTES:
        return f"`.{node.attr}` (an attribute of a RETURNN object)"
    if _is_source_call(node.value) and not node.attr.startswith("__"):
        # source(0, as_data=True).time_dimension(): a method of RETURNN's Data / layer
        return f"`.{node.attr}` of `source(...)` (a RETURNN object's attribute)"
    return None


def _python_call(text: str, tree: ast.AST) -> ExprError | None:
    """The error for an expression that reaches into RETURNN's Python objects: the config's
    functions via `self.network.get_config().typed_value(...)`, the names `self`, `network`,
    `get_config`, `typed_value`, RETURNN's helper `py_print`, an attribute `.placeholder`, an
    attribute or method of `source(...)` (`source(0, as_data=True).time_dimension()`) and
    `source(i, as_data=True)` / `as_layer=True` (RETURNN's `Data` / layer objects)."""
    hit: tuple[ast.expr, str, tuple[int, int]] | None = None
    for node in ast.walk(tree):
        name = _python_hit(node) if isinstance(node, ast.expr) else None  # (hits are exprs)
        if name is None or not isinstance(node, ast.expr):
            continue
        # the leftmost use; `self` (a name) before the attributes that start at its column
        key = (node.col_offset, 0 if isinstance(node, ast.Name) else 1)
        if hit is None or key < hit[2]:
            hit = (node, name, key)
    if hit is None:
        return None
    node, name, _ = hit
    # the widest expression around the hit that is a call or attribute chain, for the message
    outer = node
    for cand in ast.walk(tree):
        if (
            isinstance(cand, (ast.Call, ast.Attribute))
            and _contains(cand, node)
            and _chain(cand, node)
        ):
            if len(_segment(text, cand)) > len(_segment(text, outer)):
                outer = cand
    token = _segment(text, outer)
    lowered = text.lower()
    strings = [
        n.value.lower()
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    spec = "typed_value" in lowered and any(w in s for s in strings for w in _SPEC_AUGMENT_WORDS)
    if spec:
        hint = (
            "for SpecAugment use the `spec_augment` layer, which is data only and masks "
            "only in training, e.g. `" + SPEC_AUGMENT_EXAMPLE + "` (options: "
            "schemas/layers/spec_augment.schema.json)"
        )
    else:
        hint = (
            "write it as layers (e.g. `compare`, `reduce`, `length`) or as an expression "
            "over source(i), which are data only"
        )
    col = node.col_offset
    return ExprError(
        f"`{token}` at column {col + 1} uses {name}, which calls Python from "
        f"the config; netcompiler never runs Python from a config",
        token,
        col,
        hint,
        PYTHON_CALL_RULE,
    )


def _contains(outer: ast.AST, inner: ast.AST) -> bool:
    return any(n is inner for n in ast.walk(outer))


def _chain(outer: ast.AST, inner: ast.AST) -> bool:
    """`inner` is reached from `outer` through call functions and attribute values only
    (`a.b().c(x)` contains `a`, not the argument `x`)."""
    node = outer
    while node is not inner:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return False
    return True


class _Parser:
    def __init__(self, text: str, n_sources: int | None):
        self.text = text
        self.n_sources = n_sources

    def fail(self, node: ast.AST, what: str, hint: str | None = None) -> ExprError:
        """An error at `node`; `hint` defaults to the list of what is allowed ("" for none)."""
        token = _segment(self.text, node)
        col = getattr(node, "col_offset", None)
        msg = f"{what}: `{token}`"
        if col is not None:
            msg += f" at column {col + 1}"
        return ExprError(msg, token, col, ALLOWED_TEXT if hint is None else (hint or None))

    def walk(self, node: ast.AST, depth: int = 0) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nested deeper than {MAX_DEPTH} levels", "")
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                kind = "strings" if isinstance(v, (str, bytes)) else f"constant {v!r}"
                raise self.fail(
                    node,
                    f"{kind} are not allowed" if kind == "strings" else f"{kind} is not allowed",
                )
            if isinstance(v, int) and abs(v) > 2**31 - 1:
                raise self.fail(node, "integer literal out of int32 range", "")
            if isinstance(v, float) and not math.isfinite(v):
                raise self.fail(node, "non-finite number", "")
            return Num(v)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail(node, f"operator `{type(node.op).__name__}` is not allowed")
            return BinOp(op, self.walk(node.left, d), self.walk(node.right, d))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Neg(self.walk(node.operand, d))
            if isinstance(node.op, ast.UAdd):
                return self.walk(node.operand, d)
            raise self.fail(node, f"operator `{type(node.op).__name__}` is not allowed")
        if isinstance(node, ast.Compare):
            operands = [self.walk(node.left, d)] + [self.walk(c, d) for c in node.comparators]
            parts = []
            for cmp, a, b in zip(node.ops, operands, operands[1:]):
                func = _CMPOPS.get(type(cmp))
                if func is None:
                    raise self.fail(node, f"comparison `{type(cmp).__name__}` is not allowed")
                parts.append(Call(func, (a, b)))
            out = parts[0]
            for p in parts[1:]:  # a < b < c: (a < b) and (b < c), as in Python
                out = Call("logical_and", (out, p))
            return out
        if isinstance(node, ast.Call):
            return self.call(node, d)
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise self.fail(node, f"dunder name `{node.id}` is not allowed")
            if node.id == "source":
                raise self.fail(node, "`source` must be called as `source(i)`", "")
            raise self.fail(node, f"name `{node.id}` is not allowed")
        if isinstance(node, ast.Attribute):
            name = _dotted(node) or node.attr
            if name in DTYPES:
                raise self.fail(node, f"`{name}` is only allowed as the dtype of `tf.cast`", "")
            if "__" in name:
                raise self.fail(node, f"dunder attribute `{name}` is not allowed")
            raise self.fail(node, f"attribute `{name}` is not allowed")
        word = _NODE_WORDS.get(type(node), f"`{type(node).__name__}` expressions")
        raise self.fail(node, f"{word} are not allowed")

    def literal(self, node: ast.AST, name: str, what: str) -> int | bool | None:
        """A literal parameter (int, bool, None), e.g. `axis=-1`, `keepdims=True`."""
        v = node
        neg = False
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub):
            neg, v = True, v.operand
        if isinstance(v, ast.Constant) and (v.value is None or isinstance(v.value, (int, bool))):
            if not neg:
                return v.value
            if isinstance(v.value, bool) or v.value is None:
                raise self.fail(node, f"`{what}` of `{name}` must be a literal", "")
            return -v.value
        raise self.fail(
            node, f"`{what}` of `{name}` must be a literal (a number, True or False)", ""
        )

    def source(self, node: ast.Call) -> Node:
        if not node.args:
            raise self.fail(node, "`source` takes an integer argument", "")
        if len(node.args) > 1 + len(_SOURCE_KEYWORDS):
            raise self.fail(
                node,
                "`source` takes one integer argument and the keywords "
                + ", ".join(_SOURCE_KEYWORDS),
                "",
            )
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "`*` unpacking is not allowed")
        arg = node.args[0]
        if not (
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, int)
            and not isinstance(arg.value, bool)
        ):
            raise self.fail(arg, "the argument of `source(i)` must be an integer literal", "")
        flags: dict[str, ast.AST] = dict(zip(_SOURCE_KEYWORDS, node.args[1:]))
        self._bind_keywords(node, "source", _SOURCE_KEYWORDS, flags, "keywords")
        for key, value_node in flags.items():
            v = value_node.value if isinstance(value_node, ast.Constant) else None
            if not isinstance(v, bool):
                raise self.fail(value_node, f"`{key}` of `source` must be True or False", "")
            if key in ("as_data", "as_layer") and v:
                raise self.fail(
                    value_node,
                    f"`source(i, {key}=True)` gives RETURNN's Python "
                    f"{'Data' if key == 'as_data' else 'layer'} object, which "
                    f"netcompiler does not have",
                    "use `source(i)`, the values",
                )
        i = arg.value
        if i < 0 or (self.n_sources is not None and i >= self.n_sources):
            have = (
                "no inputs"
                if self.n_sources == 0
                else (
                    f"{self.n_sources} input{'s' if self.n_sources != 1 else ''}"
                    if self.n_sources is not None
                    else "inputs from 0"
                )
            )
            raise self.fail(node, f"out of range, the layer has {have}", "")
        return Source(i)

    def _bind_keywords(
        self,
        node: ast.Call,
        name: str,
        allowed: Sequence[str],
        values: dict[str, ast.AST],
        what: str,
    ) -> None:
        """The keyword arguments of a call into `values` (positional ones are there already);
        only `allowed` names, each once."""
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in allowed:
                raise self.fail(
                    kw.value if kw.arg is None else kw,
                    f"keyword `{kw.arg or '**'}` is not allowed for `{name}`",
                    f"{what} of `{name}`: {', '.join(allowed)}",
                )
            if kw.arg in values:
                raise self.fail(kw, f"`{kw.arg}` given twice", "")
            values[kw.arg] = kw.value

    def call(self, node: ast.Call, depth: int) -> Node:
        name = _dotted(node.func)
        if name is None:
            if isinstance(node.func, ast.Attribute):
                # e.g. `__import__('os').system(...)`: report the inner offender first
                self.walk(node.func.value, depth)
                raise self.fail(node.func, "method calls are not allowed")
            raise self.fail(node.func, "only named functions may be called")
        if name == "source":
            return self.source(node)
        if name not in FUNCTIONS:
            if "__" in name:
                raise self.fail(node.func, f"dunder name `{name}` is not allowed")
            raise self.fail(node.func, f"function `{name}` is not allowed")
        canonical, params = FUNCTIONS[name]
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "`*` unpacking is not allowed")
        values: dict[str, ast.AST] = {}
        if len(node.args) > len(params):
            raise self.fail(
                node,
                f"`{name}` takes {len(params)} argument"
                f"{'s' if len(params) != 1 else ''}, got {len(node.args)}",
                "",
            )
        for p, a in zip(params, node.args):
            values[p] = a
        self._bind_keywords(node, name, params, values, "parameters")
        if canonical in ("to_float", "to_int32"):
            self._need(node, name, params, values)
            return Cast(
                self.walk(values["x"], depth), "float32" if canonical == "to_float" else "int32"
            )
        if canonical == "cast":
            self._need(node, name, params, values)
            dt_node = values["dtype"]
            dt: str | None = None
            if isinstance(dt_node, ast.Constant) and isinstance(dt_node.value, str):
                dt = dt_node.value
            else:
                dt = _dotted(dt_node)
            if dt is None or dt not in DTYPES:
                raise self.fail(
                    dt_node,
                    "the dtype of `tf.cast` must be one of tf.float32, "
                    'tf.int32, tf.bool (or "float32", "int32", "bool")',
                    "",
                )
            return Cast(self.walk(values["x"], depth), DTYPES[dt])
        options: list[tuple[str, object]] = []
        if canonical in LAST_AXIS_FUNCTIONS:
            axis = (
                self.literal(values["axis"], name, "axis")
                if "axis" in values
                else (-1 if canonical in ("softmax", "log_softmax") else None)
            )
            if axis != -1:
                where = values.get("axis", node)
                hint = (
                    "a reduction over other axes is the `reduce` layer ({class: reduce, "
                    "mode: ..., axes: ...}), which leaves padding out"
                    if canonical.startswith("reduce_")
                    else "over a time axis use the `softmax_over_spatial` layer"
                )
                raise self.fail(
                    where, f"`{name}` works over the last (feature) axis only, with axis=-1", hint
                )
            keepdims: int | bool | None = False
            if "keepdims" in values:
                keepdims = self.literal(values["keepdims"], name, "keepdims")
                if not isinstance(keepdims, bool):
                    raise self.fail(
                        values["keepdims"], f"`keepdims` of `{name}` must be True or False", ""
                    )
            if canonical.startswith("reduce_"):
                options.append(("keepdims", keepdims))
            tensor_params = params[:1]
        elif canonical == "gelu":
            approximate: int | bool | None = False
            if "approximate" in values:
                approximate = self.literal(values["approximate"], name, "approximate")
                if not isinstance(approximate, bool):
                    raise self.fail(
                        values["approximate"],
                        "`approximate` of `tf.nn.gelu` must be True or False",
                        "",
                    )
            options.append(("approximate", approximate))
            tensor_params = params[:1]
        else:
            tensor_params = params
        self._need(node, name, tensor_params, values)
        args = tuple(self.walk(values[p], depth) for p in tensor_params)
        if canonical in OP_FUNCTIONS:
            return BinOp(OP_FUNCTIONS[canonical], *args)
        return Call(canonical, args, tuple(options))

    def _need(
        self, node: ast.AST, name: str, params: Sequence[str], values: dict[str, ast.AST]
    ) -> None:
        missing = [p for p in params if p not in values]
        if missing:
            raise self.fail(node, f"`{name}` is missing argument `{missing[0]}`", "")


def parse_expression(text: str, n_sources: int | None = None) -> Node:
    """Parse an `eval` expression into a `Node` tree; `ExprError` for anything not allowed.

    With `n_sources`, `source(i)` must name one of that many inputs.
    """
    if not isinstance(text, str):
        raise ExprError(f"the expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExprError("the expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = (exc.offset - 1) if exc.offset else None
        token = None
        if exc.text and col is not None:
            token = exc.text.strip()[col : col + 10] or None
        where = f" at column {col + 1}" if col is not None else ""
        near = (
            f" near `{token}`"
            if token
            else (
                " (end of the expression)" if col is not None and col >= len(text.strip()) else ""
            )
        )
        raise ExprError(f"syntax error{where}{near}: {exc.msg}", token, col) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExprError(f"cannot parse the expression: {type(exc).__name__}") from None
    try:
        err = _python_call(text.strip(), tree.body)
    except RecursionError:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels") from None
    if err is not None:
        raise err
    parser = _Parser(text.strip(), n_sources)
    try:
        return parser.walk(tree.body)
    except RecursionError:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels") from None


def sources_used(node: Node) -> set[int]:
    if isinstance(node, Source):
        return {node.index}
    out: set[int] = set()
    for child in children(node):
        out |= sources_used(child)
    return out


def children(node: Node) -> tuple[Node, ...]:
    """The direct operands of an expression node (none for a number or a source)."""
    if isinstance(node, BinOp):
        return (node.left, node.right)
    if isinstance(node, (Neg, Cast)):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args
    return ()
