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
generic error) and `source(i, as_data=True)` / `source(i, as_layer=True)`
(`netcompiler.frontend.expr_python_call` finds them). This check runs
first, so such an expression is reported as a Python call even where it also has other
forbidden parts (subscripts, tuples). The validator checks every expression once, in the graph
phase (`graph._check_eval`), independently of shape inference.
Anything else outside the language (other names, attribute access, subscripts, strings,
lambdas, comprehensions, keyword arguments other than the functions' own parameter names, ...)
raises `ExprError` naming the offending token. The accepted tree is turned into small `Node`
values (`netcompiler.frontend.expr_tree`) that `netcompiler.backend.expr_eval` evaluates with TensorFlow (`to_tf`; the tests evaluate
them with NumPy too, `tests/expr_numpy.py`); this module imports neither.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence

from netcompiler.core.errors import UserError
from netcompiler.frontend.expr_functions import (
    ALLOWED_TEXT,
    DTYPES,
    FUNCTIONS,
    LAST_AXIS_FUNCTIONS,
    OP_FUNCTIONS,
    PYTHON_CALL_RULE,
)
from netcompiler.frontend.expr_python_call import PythonCallUse, find_python_call, node_text
from netcompiler.frontend.expr_tree import BinOp, Call, Cast, Neg, Node, Num, Source

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


class _Parser:
    def __init__(self, text: str, n_sources: int | None):
        self.text = text
        self.n_sources = n_sources

    def fail(self, node: ast.AST, what: str, hint: str | None = None) -> ExprError:
        """An error at `node`; `hint` defaults to the list of what is allowed ("" for none)."""
        token = node_text(self.text, node)
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
        name = self._function_name(node, depth)
        if name == "source":
            return self.source(node)
        canonical, params = FUNCTIONS[name]
        values = self._arguments(node, name, params)
        if canonical in ("to_float", "to_int32", "cast"):
            return self._cast(node, name, canonical, params, values, depth)
        options, tensor_params = self._options(node, name, canonical, params, values)
        self._need(node, name, tensor_params, values)
        args = tuple(self.walk(values[p], depth) for p in tensor_params)
        if canonical in OP_FUNCTIONS:
            return BinOp(OP_FUNCTIONS[canonical], *args)
        return Call(canonical, args, tuple(options))

    def _function_name(self, node: ast.Call, depth: int) -> str:
        """The written name of the called function, `source` or one of `FUNCTIONS`; an error for
        any other callee."""
        name = _dotted(node.func)
        if name is None:
            if isinstance(node.func, ast.Attribute):
                # e.g. `__import__('os').system(...)`: report the inner offender first
                self.walk(node.func.value, depth)
                raise self.fail(node.func, "method calls are not allowed")
            raise self.fail(node.func, "only named functions may be called")
        if name != "source" and name not in FUNCTIONS:
            if "__" in name:
                raise self.fail(node.func, f"dunder name `{name}` is not allowed")
            raise self.fail(node.func, f"function `{name}` is not allowed")
        return name

    def _arguments(self, node: ast.Call, name: str, params: tuple[str, ...]) -> dict[str, ast.AST]:
        """The arguments of a call of a function with parameters `params`, by parameter name
        (positional and keyword ones; missing ones are checked where they are needed)."""
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "`*` unpacking is not allowed")
        if len(node.args) > len(params):
            raise self.fail(
                node,
                f"`{name}` takes {len(params)} argument"
                f"{'s' if len(params) != 1 else ''}, got {len(node.args)}",
                "",
            )
        values: dict[str, ast.AST] = dict(zip(params, node.args))
        self._bind_keywords(node, name, params, values, "parameters")
        return values

    def _cast(
        self,
        node: ast.Call,
        name: str,
        canonical: str,
        params: tuple[str, ...],
        values: dict[str, ast.AST],
        depth: int,
    ) -> Cast:
        """`tf.cast(x, dtype)`, `tf.to_float(x)` or `tf.to_int32(x)`."""
        self._need(node, name, params, values)
        if canonical == "cast":
            dtype = self._cast_dtype(values["dtype"])  # (checked before the operand)
        else:
            dtype = "float32" if canonical == "to_float" else "int32"
        return Cast(self.walk(values["x"], depth), dtype)

    def _cast_dtype(self, dt_node: ast.AST) -> str:
        """The dtype argument of `tf.cast`, written `tf.float32` or `"float32"`."""
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
        return DTYPES[dt]

    def _options(
        self,
        node: ast.Call,
        name: str,
        canonical: str,
        params: tuple[str, ...],
        values: dict[str, ast.AST],
    ) -> tuple[list[tuple[str, object]], tuple[str, ...]]:
        """The literal parameters of a call (`Call.options`) and the names of its tensor
        parameters."""
        if canonical in LAST_AXIS_FUNCTIONS:
            self._check_last_axis(node, name, canonical, values)
            keepdims = self._flag(
                values, name, "keepdims", f"`keepdims` of `{name}` must be True or False"
            )
            options: list[tuple[str, object]] = []
            if canonical.startswith("reduce_"):
                options.append(("keepdims", keepdims))
            return options, params[:1]
        if canonical == "gelu":
            approximate = self._flag(
                values, name, "approximate", "`approximate` of `tf.nn.gelu` must be True or False"
            )
            return [("approximate", approximate)], params[:1]
        return [], params

    def _check_last_axis(
        self, node: ast.Call, name: str, canonical: str, values: dict[str, ast.AST]
    ) -> None:
        """A softmax or reduction works over the last axis only: `axis` must be -1 (the default
        of softmax and log_softmax; a reduction must say it)."""
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

    def _flag(self, values: dict[str, ast.AST], name: str, key: str, message: str) -> bool:
        """The True/False literal parameter `key` of `name` (False when not given); `message`
        for another literal."""
        if key not in values:
            return False
        flag = self.literal(values[key], name, key)
        if not isinstance(flag, bool):
            raise self.fail(values[key], message, "")
        return flag

    def _need(
        self, node: ast.AST, name: str, params: Sequence[str], values: dict[str, ast.AST]
    ) -> None:
        missing = [p for p in params if p not in values]
        if missing:
            raise self.fail(node, f"`{name}` is missing argument `{missing[0]}`", "")


def _python_call_error(use: PythonCallUse) -> ExprError:
    """The error for an expression that reaches into RETURNN's Python objects."""
    return ExprError(
        f"`{use.token}` at column {use.col + 1} uses {use.what}, which calls Python from "
        f"the config; netcompiler never runs Python from a config",
        use.token,
        use.col,
        use.hint,
        PYTHON_CALL_RULE,
    )


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
        use = find_python_call(text.strip(), tree.body)
    except RecursionError:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels") from None
    if use is not None:
        raise _python_call_error(use)
    parser = _Parser(text.strip(), n_sources)
    try:
        return parser.walk(tree.body)
    except RecursionError:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels") from None
