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
values that are evaluated with TensorFlow (`to_tf`, imported lazily) or NumPy (`to_numpy`).
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .activations import np_sigmoid, np_softplus

if TYPE_CHECKING:  # pragma: no cover - NumPy is imported where it is used
    import numpy as np

MAX_LENGTH = 4000
MAX_DEPTH = 64

#: RETURNN's `safe_log`/`safe_exp` epsilon
SAFE_EPS = 1e-20

# written name -> (canonical function, parameter names)
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {}


def _register(canonical: str, params: tuple[str, ...], *names: str) -> None:
    for n in names:
        FUNCTIONS[n] = (canonical, params)


_register("sigmoid", ("x",), "tf.sigmoid", "tf.nn.sigmoid", "tf.math.sigmoid")
_register("tanh", ("x",), "tf.tanh", "tf.nn.tanh", "tf.math.tanh")
_register("relu", ("features",), "tf.nn.relu")
_register("elu", ("features",), "tf.nn.elu")
_register("gelu", ("features", "approximate"), "tf.nn.gelu")
_register("exp", ("x",), "tf.exp", "tf.math.exp")
_register("log", ("x",), "tf.log", "tf.math.log")
_register("log1p", ("x",), "tf.log1p", "tf.math.log1p")
_register("expm1", ("x",), "tf.expm1", "tf.math.expm1")
_register("log_sigmoid", ("x",), "tf.math.log_sigmoid", "tf.log_sigmoid")
_register("safe_log", ("x",), "safe_log")
_register("safe_exp", ("x",), "safe_exp")
_register("sqrt", ("x",), "tf.sqrt", "tf.math.sqrt")
_register("rsqrt", ("x",), "tf.rsqrt", "tf.math.rsqrt")
_register("reciprocal", ("x",), "tf.reciprocal", "tf.math.reciprocal")
_register("erf", ("x",), "tf.math.erf", "tf.erf")
_register("abs", ("x",), "tf.abs", "tf.math.abs")
_register("square", ("x",), "tf.square", "tf.math.square")
_register("sign", ("x",), "tf.sign", "tf.math.sign")
_register("floor", ("x",), "tf.floor", "tf.math.floor")
_register("ceil", ("x",), "tf.ceil", "tf.math.ceil")
_register("round", ("x",), "tf.round", "tf.math.round")
_register("softplus", ("features",), "tf.nn.softplus", "tf.math.softplus")
_register("minimum", ("x", "y"), "tf.minimum", "tf.math.minimum")
_register("maximum", ("x", "y"), "tf.maximum", "tf.math.maximum")
_register("clip", ("t", "clip_value_min", "clip_value_max"), "tf.clip_by_value")
_register("cast", ("x", "dtype"), "tf.cast", "tf.dtypes.cast")
_register("to_float", ("x",), "tf.to_float")
_register("to_int32", ("x",), "tf.to_int32")
_register("zeros_like", ("input",), "tf.zeros_like")
_register("ones_like", ("input",), "tf.ones_like")
_register("stop_gradient", ("input",), "tf.stop_gradient")
_register("identity", ("input",), "tf.identity")
_register("where", ("condition", "x", "y"), "tf.where", "tf.compat.v2.where", "where_bc")
_register("softmax", ("logits", "axis"), "tf.nn.softmax", "tf.math.softmax")
_register("log_softmax", ("logits", "axis"), "tf.nn.log_softmax", "tf.math.log_softmax")
for _r in ("sum", "mean", "max", "min", "logsumexp"):
    _register(f"reduce_{_r}", ("input_tensor", "axis", "keepdims"), f"tf.reduce_{_r}",
              f"tf.math.reduce_{_r}")
# binary operators written as functions -> BinOp
_OP_FUNCTIONS = {"pow": "**", "add": "+", "subtract": "-", "multiply": "*", "divide": "/",
                 "floormod": "%", "floordiv": "//"}
_register("pow", ("x", "y"), "tf.pow", "tf.math.pow")
_register("add", ("x", "y"), "tf.add", "tf.math.add")
_register("subtract", ("x", "y"), "tf.subtract", "tf.math.subtract")
_register("multiply", ("x", "y"), "tf.multiply", "tf.math.multiply")
_register("divide", ("x", "y"), "tf.divide", "tf.math.divide", "tf.truediv", "tf.math.truediv")
_register("floormod", ("x", "y"), "tf.math.floormod", "tf.floormod", "tf.math.mod", "tf.mod")
_register("floordiv", ("x", "y"), "tf.math.floordiv", "tf.floordiv")
# comparisons (bool results)
COMPARISONS = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=",
               "equal": "==", "not_equal": "!="}
for _c in COMPARISONS:
    _register(_c, ("x", "y"), f"tf.{_c}", f"tf.math.{_c}")
_register("logical_and", ("x", "y"), "tf.logical_and", "tf.math.logical_and")
_register("logical_or", ("x", "y"), "tf.logical_or", "tf.math.logical_or")
_register("logical_not", ("x",), "tf.logical_not", "tf.math.logical_not")

#: functions of one float argument with a float result
FLOAT_FUNCTIONS = ("sigmoid", "tanh", "exp", "log", "sqrt", "softplus", "elu", "gelu", "log1p",
                   "expm1", "log_sigmoid", "safe_log", "safe_exp", "rsqrt", "reciprocal", "erf",
                   "floor", "ceil", "softmax", "log_softmax", "reduce_logsumexp")
#: functions of one numeric (int or float) argument, result of the same dtype
NUMERIC_FUNCTIONS = ("relu", "abs", "square", "sign", "round", "reduce_sum", "reduce_mean",
                     "reduce_max", "reduce_min")
#: functions of one argument of any dtype (bool too), result of the same dtype
ANY_FUNCTIONS = ("zeros_like", "ones_like", "stop_gradient", "identity")
#: functions over the last (feature) axis
LAST_AXIS_FUNCTIONS = ("softmax", "log_softmax", "reduce_sum", "reduce_mean", "reduce_max",
                       "reduce_min", "reduce_logsumexp")
#: parameters that take a literal (int, bool), not a tensor
_STATIC_PARAMS = {"axis", "keepdims", "approximate"}
#: `tf.cast` targets
DTYPES = {"tf.float32": "float32", "tf.int32": "int32", "tf.bool": "bool",
          "tf.dtypes.float32": "float32", "tf.dtypes.int32": "int32", "tf.dtypes.bool": "bool",
          "float32": "float32", "int32": "int32", "bool": "bool"}
#: names that reach into RETURNN's Python objects or helpers (never run)
PYTHON_NAMES = ("self", "network", "get_config", "typed_value", "py_print")
#: attributes that reach into RETURNN's Python objects wherever they appear (`Data.placeholder`)
PYTHON_ATTRIBUTES = ("placeholder",)
#: keywords of `source(i, ...)` that hand the expression a RETURNN Python object
PYTHON_SOURCE_KEYWORDS = {"as_data": "a RETURNN `Data` object",
                          "as_layer": "a RETURNN layer object"}
PYTHON_CALL_RULE = "expr.python-call"

ALLOWED_TEXT = ("allowed are source(i), numbers, + - * / ** % //, comparisons, parentheses, "
                "tf.sigmoid, tf.tanh, tf.nn.relu/elu/gelu/softplus, tf.exp, tf.math.log, "
                "safe_log, safe_exp, tf.sqrt, tf.abs, tf.square, tf.sign, tf.floor, tf.round, "
                "tf.math.reciprocal/rsqrt/erf, tf.minimum, tf.maximum, tf.clip_by_value, tf.pow, "
                "tf.where, tf.equal/less/greater/..., tf.logical_and/or/not, tf.cast(x, "
                "tf.float32|tf.int32|tf.bool), tf.to_float, tf.to_int32, tf.zeros_like, "
                "tf.ones_like, tf.stop_gradient, tf.nn.softmax/log_softmax and "
                "tf.reduce_sum/mean/max/min(x, axis=-1, keepdims=...) (also as tf.math.* where "
                "TensorFlow has them)")


class ExprError(ValueError):
    """An expression that is not in the language; `token` is the offending text, `rule` a rule
    id of its own where the error has one (`expr.python-call`), else None."""

    def __init__(self, message: str, token: str | None = None, col: int | None = None,
                 hint: str | None = None, rule: str | None = None):
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

    def __str__(self):
        return repr(self.value)


@dataclass(frozen=True)
class Source(Node):
    index: int

    def __str__(self):
        return f"source({self.index})"


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / ** % //
    left: Node
    right: Node

    def __str__(self):
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Neg(Node):
    operand: Node

    def __str__(self):
        return f"(-{self.operand})"


@dataclass(frozen=True)
class Call(Node):
    """A function: element-wise (sigmoid, minimum, clip, less, logical_and, where, ...) or over
    the last axis (softmax, reduce_sum, ...); `options` are its literal parameters (axis,
    keepdims, approximate) as (name, value) pairs."""
    func: str  # canonical name
    args: tuple[Node, ...]
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def __str__(self):
        parts = [str(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.options]
        return f"{self.func}({', '.join(parts)})"


@dataclass(frozen=True)
class Cast(Node):
    operand: Node
    dtype: str  # float32 | int32 | bool

    def __str__(self):
        return f"cast({self.operand}, {self.dtype})"


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
           ast.Mod: "%", ast.FloorDiv: "//"}
_CMPOPS = {ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal",
           ast.Eq: "equal", ast.NotEq: "not_equal"}
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
    ast.Lambda: "lambdas", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.Subscript: "subscripts", ast.BoolOp: "`and`/`or`",
    ast.IfExp: "conditional expressions", ast.List: "lists", ast.Tuple: "tuples",
    ast.Dict: "dicts", ast.Set: "sets", ast.JoinedStr: "f-strings", ast.Starred: "`*` unpacking",
    ast.NamedExpr: "`:=`", ast.Await: "`await`", ast.Yield: "`yield`", ast.YieldFrom: "`yield`",
    ast.Slice: "slices", ast.FormattedValue: "f-strings",
}

_SPEC_AUGMENT_WORDS = ("transform", "spec", "augment", "mask")
#: the layer the hint of a SpecAugment hook shows (modelled on the rwth-i6 setups' `transform`;
#: `tests/test_spec_augment.py` checks that it validates)
SPEC_AUGMENT_EXAMPLE = ("{class: spec_augment, from: data, max_num_time_masks: 2, "
                        "time_mask_frames_per_mask: 100, max_time_mask_width: 20, "
                        "max_num_feature_masks: 2}")


def _is_source_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "source")


def _python_hit(node: ast.AST) -> str | None:
    """What `node` uses of RETURNN's Python objects (for the message), else None."""
    if isinstance(node, ast.Name) and node.id in PYTHON_NAMES:
        return f"`{node.id}`"
    if not isinstance(node, ast.Attribute):
        if _is_source_call(node):
            for kw in node.keywords:
                if (kw.arg in PYTHON_SOURCE_KEYWORDS and isinstance(kw.value, ast.Constant)
                        and kw.value.value is True):
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
    hit = None
    for node in ast.walk(tree):
        name = _python_hit(node)
        if name is None:
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
        if isinstance(cand, (ast.Call, ast.Attribute)) and _contains(cand, node) \
                and _chain(cand, node):
            if len(_segment(text, cand)) > len(_segment(text, outer)):
                outer = cand
    token = _segment(text, outer)
    lowered = text.lower()
    strings = [n.value.lower() for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    spec = "typed_value" in lowered and any(w in s for s in strings for w in _SPEC_AUGMENT_WORDS)
    if spec:
        hint = ("for SpecAugment use the `spec_augment` layer, which is data only and masks "
                "only in training, e.g. `" + SPEC_AUGMENT_EXAMPLE + "` (options: "
                "schemas/layers/spec_augment.schema.json)")
    else:
        hint = ("write it as layers (e.g. `compare`, `reduce`, `length`) or as an expression "
                "over source(i), which are data only")
    col = node.col_offset
    return ExprError(f"`{token}` at column {col + 1} uses {name}, which calls Python from "
                     f"the config; netcompiler never runs Python from a config", token, col,
                     hint, PYTHON_CALL_RULE)


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
        import numpy as np  # lazy: validation does not need NumPy
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nested deeper than {MAX_DEPTH} levels", "")
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                kind = "strings" if isinstance(v, (str, bytes)) else f"constant {v!r}"
                raise self.fail(node, f"{kind} are not allowed" if kind == "strings"
                                else f"{kind} is not allowed")
            if isinstance(v, int) and abs(v) > 2 ** 31 - 1:
                raise self.fail(node, "integer literal out of int32 range", "")
            if isinstance(v, float) and not np.isfinite(v):
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
            for op, a, b in zip(node.ops, operands, operands[1:]):
                func = _CMPOPS.get(type(op))
                if func is None:
                    raise self.fail(node, f"comparison `{type(op).__name__}` is not allowed")
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

    def literal(self, node: ast.AST, name: str, what: str):
        """A literal parameter (int, bool, None), e.g. `axis=-1`, `keepdims=True`."""
        v = node
        neg = False
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub):
            neg, v = True, v.operand
        if isinstance(v, ast.Constant) and (v.value is None or isinstance(v.value, (int, bool))):
            if neg and (isinstance(v.value, bool) or v.value is None):
                raise self.fail(node, f"`{what}` of `{name}` must be a literal", "")
            return -v.value if neg else v.value
        raise self.fail(node, f"`{what}` of `{name}` must be a literal (a number, True or "
                        f"False)", "")

    def source(self, node: ast.Call) -> Node:
        if not node.args:
            raise self.fail(node, "`source` takes an integer argument", "")
        if len(node.args) > 1 + len(_SOURCE_KEYWORDS):
            raise self.fail(node, "`source` takes one integer argument and the keywords "
                            + ", ".join(_SOURCE_KEYWORDS), "")
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "`*` unpacking is not allowed")
        arg = node.args[0]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, int)
                and not isinstance(arg.value, bool)):
            raise self.fail(arg, "the argument of `source(i)` must be an integer literal", "")
        flags: dict[str, ast.AST] = dict(zip(_SOURCE_KEYWORDS, node.args[1:]))
        self._bind_keywords(node, "source", _SOURCE_KEYWORDS, flags, "keywords")
        for key, value_node in flags.items():
            v = value_node.value if isinstance(value_node, ast.Constant) else None
            if not isinstance(v, bool):
                raise self.fail(value_node, f"`{key}` of `source` must be True or False", "")
            if key in ("as_data", "as_layer") and v:
                raise self.fail(value_node, f"`source(i, {key}=True)` gives RETURNN's Python "
                                f"{'Data' if key == 'as_data' else 'layer'} object, which "
                                f"netcompiler does not have", "use `source(i)`, the values")
        i = arg.value
        if i < 0 or (self.n_sources is not None and i >= self.n_sources):
            have = "no inputs" if self.n_sources == 0 else (
                f"{self.n_sources} input{'s' if self.n_sources != 1 else ''}"
                if self.n_sources is not None else "inputs from 0")
            raise self.fail(node, f"out of range, the layer has {have}", "")
        return Source(i)

    def _bind_keywords(self, node: ast.Call, name: str, allowed, values: dict,
                       what: str) -> None:
        """The keyword arguments of a call into `values` (positional ones are there already);
        only `allowed` names, each once."""
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in allowed:
                raise self.fail(kw.value if kw.arg is None else kw,
                                f"keyword `{kw.arg or '**'}` is not allowed for `{name}`",
                                f"{what} of `{name}`: {', '.join(allowed)}")
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
            raise self.fail(node, f"`{name}` takes {len(params)} argument"
                            f"{'s' if len(params) != 1 else ''}, got {len(node.args)}", "")
        for p, a in zip(params, node.args):
            values[p] = a
        self._bind_keywords(node, name, params, values, "parameters")
        if canonical in ("to_float", "to_int32"):
            self._need(node, name, params, values)
            return Cast(self.walk(values["x"], depth),
                        "float32" if canonical == "to_float" else "int32")
        if canonical == "cast":
            self._need(node, name, params, values)
            dt_node = values["dtype"]
            if isinstance(dt_node, ast.Constant) and isinstance(dt_node.value, str):
                dt = dt_node.value
            else:
                dt = _dotted(dt_node)
            if dt not in DTYPES:
                raise self.fail(dt_node, "the dtype of `tf.cast` must be one of tf.float32, "
                                "tf.int32, tf.bool (or \"float32\", \"int32\", \"bool\")", "")
            return Cast(self.walk(values["x"], depth), DTYPES[dt])
        options: list[tuple[str, object]] = []
        if canonical in LAST_AXIS_FUNCTIONS:
            axis = self.literal(values["axis"], name, "axis") if "axis" in values else (
                -1 if canonical in ("softmax", "log_softmax") else None)
            if axis != -1:
                where = values.get("axis", node)
                hint = ("a reduction over other axes is the `reduce` layer ({class: reduce, "
                        "mode: ..., axes: ...}), which leaves padding out"
                        if canonical.startswith("reduce_") else
                        "over a time axis use the `softmax_over_spatial` layer")
                raise self.fail(where, f"`{name}` works over the last (feature) axis only, "
                                f"with axis=-1", hint)
            keepdims = False
            if "keepdims" in values:
                keepdims = self.literal(values["keepdims"], name, "keepdims")
                if not isinstance(keepdims, bool):
                    raise self.fail(values["keepdims"], f"`keepdims` of `{name}` must be True "
                                    f"or False", "")
            if canonical.startswith("reduce_"):
                options.append(("keepdims", keepdims))
            tensor_params = params[:1]
        elif canonical == "gelu":
            approximate = False
            if "approximate" in values:
                approximate = self.literal(values["approximate"], name, "approximate")
                if not isinstance(approximate, bool):
                    raise self.fail(values["approximate"], "`approximate` of `tf.nn.gelu` must "
                                    "be True or False", "")
            options.append(("approximate", approximate))
            tensor_params = params[:1]
        else:
            tensor_params = params
        self._need(node, name, tensor_params, values)
        args = tuple(self.walk(values[p], depth) for p in tensor_params)
        if canonical in _OP_FUNCTIONS:
            return BinOp(_OP_FUNCTIONS[canonical], *args)
        return Call(canonical, args, tuple(options))

    def _need(self, node, name, params, values) -> None:
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
            token = exc.text.strip()[col:col + 10] or None
        where = f" at column {col + 1}" if col is not None else ""
        near = f" near `{token}`" if token else (" (end of the expression)" if col is not None
                                                  and col >= len(text.strip()) else "")
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
    for child in _children(node):
        out |= sources_used(child)
    return out


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, BinOp):
        return (node.left, node.right)
    if isinstance(node, (Neg, Cast)):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args
    return ()


# -- the feature axis ------------------------------------------------------------------------------

#: how a value carries the broadcast's feature axis: F it has it, B it broadcasts over it (no
#: feature axis of its own), K reduced to size 1 (keepdims=True), - removed (keepdims=False)
FULL, BROADCAST, KEPT, REMOVED = "F", "B", "K", "-"


def infer_feature(node: Node, has_feature: Sequence[bool]) -> str:
    """How the result carries the feature axis (`FULL`, `BROADCAST`, `KEPT`, `REMOVED`), given
    which inputs have one; ExprError for a last-axis function of a value without a feature axis,
    or a value reduced with keepdims=False combined with one that has the feature axis."""
    return _feature(node, has_feature, {})


def _feature(node: Node, has: Sequence[bool], memo: dict) -> str:
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Num):
        s = BROADCAST
    elif isinstance(node, Source):
        s = FULL if has[node.index] else BROADCAST
    elif isinstance(node, Call) and node.func in LAST_AXIS_FUNCTIONS:
        (arg,) = node.args
        a = _feature(arg, has, memo)
        if a == BROADCAST:
            raise ExprError(f"`{node.func}` works over the feature axis (axis=-1), but `{arg}` "
                            f"has none")
        if a == REMOVED:
            raise ExprError(f"`{node.func}` works over the feature axis (axis=-1), but `{arg}` "
                            f"was already reduced over it")
        if node.func.startswith("reduce_"):
            s = KEPT if node.option("keepdims") else REMOVED
        else:
            s = a
    else:
        children = _children(node)
        states = [_feature(c, has, memo) for c in children]
        if REMOVED in states:
            for c, st in zip(children, states):
                if st in (FULL, KEPT):
                    removed = [str(x) for x, t in zip(children, states) if t == REMOVED][0]
                    raise ExprError(f"`{removed}` was reduced over the feature axis with "
                                    f"keepdims=False, but `{c}` has the feature axis; use "
                                    f"keepdims=True")
            s = REMOVED
        elif FULL in states:
            s = FULL
        elif KEPT in states:
            s = KEPT
        else:
            s = BROADCAST
    memo[key] = s
    return s


def _removed(node: Node) -> bool:
    """Structurally: the result lost the last axis (a reduction with keepdims=False)."""
    if isinstance(node, Call) and node.func.startswith("reduce_"):
        return not node.option("keepdims")
    return any(_removed(c) for c in _children(node))


# -- dtypes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Type:
    dtype: str  # float32 | int32 | bool
    weak: bool = False  # a Python number literal: adopts the other operand's dtype


def infer_dtype(node: Node, input_dtypes: Sequence[str]) -> str:
    """The dtype of the expression's result (float32, int32 or bool); ExprError on mixing."""
    return _infer(node, input_dtypes, {}).dtype


_CAST_HINT = "cast it with tf.cast(x, tf.float32)"


def _infer(node: Node, dts: Sequence[str], memo: dict) -> _Type:
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Num):
        t = _Type("int32" if isinstance(node.value, int) else "float32", True)
    elif isinstance(node, Source):
        t = _Type(dts[node.index])
    elif isinstance(node, Cast):
        _infer(node.operand, dts, memo)
        t = _Type(node.dtype)
    elif isinstance(node, Neg):
        t = _infer(node.operand, dts, memo)
        if t.dtype == "bool":
            raise ExprError(f"`-` of bool `{node.operand}`; {_CAST_HINT}")
    elif isinstance(node, BinOp) or (isinstance(node, Call) and node.func in
                                     ("minimum", "maximum", "clip")):
        args = (node.left, node.right) if isinstance(node, BinOp) else node.args
        what = f"`{node.op}`" if isinstance(node, BinOp) else f"`{node.func}`"
        t = _unify([_infer(a, dts, memo) for a in args], args, what)
        if isinstance(node, BinOp) and node.op == "/" and t.dtype == "int32":
            t = _Type("float32", t.weak)
    elif isinstance(node, Call) and node.func in COMPARISONS:
        args = node.args
        allow_bool = node.func in ("equal", "not_equal")
        _unify([_infer(a, dts, memo) for a in args], args, f"`{node.func}`", allow_bool)
        t = _Type("bool")
    elif isinstance(node, Call) and node.func.startswith("logical_"):
        for a in node.args:
            at = _infer(a, dts, memo)
            if at.dtype != "bool":
                raise ExprError(f"`{node.func}` needs bool arguments, but `{a}` is {at.dtype}; "
                                f"compare it, e.g. tf.not_equal(x, 0)")
        t = _Type("bool")
    elif isinstance(node, Call) and node.func == "where":
        cond, x, y = node.args
        ct = _infer(cond, dts, memo)
        if ct.dtype != "bool":
            raise ExprError(f"the condition of `where` must be bool, but `{cond}` is "
                            f"{ct.dtype}; compare it, e.g. tf.greater(x, 0)")
        t = _unify([_infer(x, dts, memo), _infer(y, dts, memo)], (x, y), "`where`", True)
    elif isinstance(node, Call):
        (arg,) = node.args
        at = _infer(arg, dts, memo)
        if node.func in ANY_FUNCTIONS:
            t = at
        else:
            if node.func in FLOAT_FUNCTIONS and at.dtype != "float32" and not at.weak:
                raise ExprError(f"`{node.func}` needs a float argument, but `{arg}` is "
                                f"{at.dtype}; {_CAST_HINT}")
            if at.dtype == "bool":
                raise ExprError(f"`{node.func}` of bool `{arg}`; {_CAST_HINT}")
            t = _Type("float32", at.weak) if node.func in FLOAT_FUNCTIONS else at
    else:  # pragma: no cover
        raise ExprError(f"unknown node {node!r}")
    memo[key] = t
    return t


def _unify(types: list[_Type], args, what: str, allow_bool: bool = False) -> _Type:
    bools = [t.dtype == "bool" for t in types]
    if any(bools):
        if allow_bool and all(bools):
            return _Type("bool")
        for t, a in zip(types, args):
            if t.dtype == "bool":
                if allow_bool:
                    raise ExprError(f"{what} mixes bool `{a}` with numbers; {_CAST_HINT}")
                raise ExprError(f"{what} of bool `{a}`; {_CAST_HINT}")
    strong = {t.dtype for t in types if not t.weak}
    if len(strong) > 1:
        raise ExprError(f"{what} mixes " + " and ".join(
            f"{t.dtype} `{a}`" for t, a in zip(types, args)) +
            "; cast with tf.cast(x, tf.float32)")
    if strong:
        (dtype,) = strong
        if dtype == "int32" and any(t.weak and t.dtype == "float32" for t in types):
            raise ExprError(f"{what} mixes int32 and a float number: " + ", ".join(
                str(a) for a in args) + "; cast with tf.cast(x, tf.float32)")
        return _Type(dtype)
    return _Type("float32" if any(t.dtype == "float32" for t in types) else "int32", True)


# -- evaluation ------------------------------------------------------------------------------------

def _operand_dtype(node: Node, dtype: str, memo) -> str | None:
    """The dtype the operands of `node` are evaluated in, for a result of `dtype`: float32 for
    `/` and the float functions, the operands' own unified dtype for comparisons and `where`'s
    condition, else the result's dtype."""
    if isinstance(node, BinOp):
        return "float32" if node.op == "/" else dtype
    if node.func in FLOAT_FUNCTIONS:
        return "float32"
    if node.func in COMPARISONS:
        return _unify([memo[id(a)] for a in node.args], node.args, node.func, True).dtype
    return dtype


def _arg_dtypes(node: Call, dtype: str, memo) -> list[str | None]:
    if node.func == "where":
        return ["bool", dtype, dtype]
    if node.func.startswith("logical_"):
        return ["bool"] * len(node.args)
    return [_operand_dtype(node, dtype, memo)] * len(node.args)


def to_numpy(node: Node, sources: Sequence[np.ndarray], aligned: bool = False) -> np.ndarray:
    """Evaluate with NumPy (sources already broadcast-compatible); dtypes as `infer_dtype`.

    With `aligned` (the sources aligned to the broadcast with the feature axis last, as the
    `eval` layer hands them), reductions keep the last axis and the result loses it at the end
    if the expression reduced it with keepdims=False (else as TensorFlow: keepdims literal)."""
    import numpy as np  # lazy: validation does not need NumPy
    dts = [_np_dtype_name(s) for s in sources]
    memo: dict = {}
    _infer(node, dts, memo)
    y = np.asarray(_np_eval(node, sources, memo, None, aligned))
    if aligned and _removed(node):
        y = y[..., 0]
    return y


def _np_dtype_name(x) -> str:
    import numpy as np  # lazy: validation does not need NumPy
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return "bool"
    return "int32" if np.issubdtype(x.dtype, np.integer) else "float32"


def _np_erf(x):
    import numpy as np  # lazy: validation does not need NumPy
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _np_log_softmax(x):
    import numpy as np  # lazy: validation does not need NumPy
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _np_eval(node: Node, sources, memo, want: str | None, aligned: bool):
    import numpy as np  # lazy: validation does not need NumPy
    t = memo[id(node)]
    dtype = want or t.dtype
    npd = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}[dtype]
    if isinstance(node, Num):
        return np.asarray(node.value, dtype=npd)
    if isinstance(node, Source):
        return np.asarray(sources[node.index]).astype(npd)

    def ev(n, w=None):
        return _np_eval(n, sources, memo, w, aligned)

    with np.errstate(all="ignore"):
        if isinstance(node, Cast):
            return np.asarray(ev(node.operand)).astype(npd)
        if isinstance(node, Neg):
            return -ev(node.operand, dtype)
        if isinstance(node, BinOp):
            inner = _operand_dtype(node, dtype, memo)
            a = ev(node.left, inner)
            b = ev(node.right, inner)
            r = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                 "**": np.power, "%": np.mod, "//": np.floor_divide}[node.op](a, b)
            return np.asarray(r).astype(npd)
        f = node.func
        if f in ("safe_log", "safe_exp"):
            r = _np_safe(node, ev)
            return np.asarray(r).astype(npd)
        args = [ev(a, w) for a, w in zip(node.args, _arg_dtypes(node, dtype, memo))]
        x = args[0]
        keep = bool(node.option("keepdims")) or aligned
        if f == "sigmoid":
            r = np_sigmoid(x)
        elif f == "tanh":
            r = np.tanh(x)
        elif f == "relu":
            r = np.maximum(x, 0)
        elif f == "elu":
            r = np.where(x > 0, x, np.expm1(x))
        elif f == "gelu":
            if node.option("approximate"):
                r = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
            else:
                r = 0.5 * x * (1.0 + _np_erf(x / math.sqrt(2.0)))
        elif f == "exp":
            r = np.exp(x)
        elif f == "log":
            r = np.log(x)
        elif f == "log1p":
            r = np.log1p(x)
        elif f == "expm1":
            r = np.expm1(x)
        elif f == "log_sigmoid":
            r = -np_softplus(-x)
        elif f == "sqrt":
            r = np.sqrt(x)
        elif f == "rsqrt":
            r = 1.0 / np.sqrt(x)
        elif f == "reciprocal":
            r = 1.0 / x
        elif f == "erf":
            r = _np_erf(x)
        elif f == "abs":
            r = np.abs(x)
        elif f == "square":
            r = x * x
        elif f == "sign":
            r = np.sign(x)
        elif f == "floor":
            r = np.floor(x)
        elif f == "ceil":
            r = np.ceil(x)
        elif f == "round":
            r = np.round(x)  # half to even, as tf.round
        elif f == "softplus":
            r = np_softplus(x)
        elif f == "minimum":
            r = np.minimum(x, args[1])
        elif f == "maximum":
            r = np.maximum(x, args[1])
        elif f == "clip":
            r = np.minimum(np.maximum(x, args[1]), args[2])
        elif f in COMPARISONS:
            r = getattr(np, f)(x, args[1])
        elif f == "logical_and":
            r = np.logical_and(x, args[1])
        elif f == "logical_or":
            r = np.logical_or(x, args[1])
        elif f == "logical_not":
            r = np.logical_not(x)
        elif f == "where":
            r = np.where(x, args[1], args[2])
        elif f == "zeros_like":
            r = np.zeros_like(x)
        elif f == "ones_like":
            r = np.ones_like(x)
        elif f in ("stop_gradient", "identity"):
            r = x
        elif f == "softmax":
            r = np.exp(_np_log_softmax(x))
        elif f == "log_softmax":
            r = _np_log_softmax(x)
        elif f == "reduce_sum":
            r = np.sum(x, axis=-1, keepdims=keep)
        elif f == "reduce_mean":
            if dtype == "int32":  # as TensorFlow: integer sum / count, truncated
                r = np.fix(np.sum(x.astype(np.int64), axis=-1, keepdims=keep) / x.shape[-1])
            else:
                r = np.mean(x, axis=-1, keepdims=keep)
        elif f == "reduce_max":
            r = np.max(x, axis=-1, keepdims=keep)
        elif f == "reduce_min":
            r = np.min(x, axis=-1, keepdims=keep)
        elif f == "reduce_logsumexp":
            m = np.max(x, axis=-1, keepdims=True)
            r = m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
            if not keep:
                r = r[..., 0]
        else:  # pragma: no cover
            raise ExprError(f"unknown function {f}")
        return np.asarray(r).astype(npd)


def _np_safe(node: Call, ev):
    import numpy as np  # lazy: validation does not need NumPy
    (arg,) = node.args
    inner = arg.func if isinstance(arg, Call) else None
    if node.func == "safe_log":
        if inner == "exp":
            return ev(arg.args[0], "float32")
        if inner == "softmax":
            return _np_log_softmax(ev(arg.args[0], "float32"))
        if inner == "sigmoid":
            return -np_softplus(-ev(arg.args[0], "float32"))
        return np.log(np.maximum(ev(arg, "float32"), np.float32(SAFE_EPS)))
    if inner == "log":
        return ev(arg.args[0], "float32")
    if inner == "log_softmax":
        return np.exp(_np_log_softmax(ev(arg.args[0], "float32")))
    if inner == "log_sigmoid":
        return np_sigmoid(ev(arg.args[0], "float32"))
    lo, hi = math.log(SAFE_EPS), math.log(1.0 / SAFE_EPS)
    return np.exp(np.clip(ev(arg, "float32"), np.float32(lo), np.float32(hi)))


def to_tf(node: Node, sources: Sequence, aligned: bool = False):
    """Build the TensorFlow computation (sources already broadcast-compatible tensors);
    `aligned` as in `to_numpy`."""
    import tensorflow as tf

    dts = []
    for s in sources:
        if s.dtype == tf.bool:
            dts.append("bool")
        elif s.dtype.is_integer:
            dts.append("int32")
        else:
            dts.append("float32")
    memo: dict = {}
    _infer(node, dts, memo)
    y = _tf_eval(tf, node, sources, memo, None, aligned)
    if aligned and _removed(node):
        y = tf.squeeze(y, -1)
    return y


def _tf_identity_grad(tf, fn):
    """`fn(x)` whose gradient is the identity (RETURNN's clamps in safe_log/safe_exp)."""
    @tf.custom_gradient
    def f(x):
        def grad(dy):
            return dy
        return fn(x), grad
    return f


def _tf_eval(tf, node: Node, sources, memo, want: str | None, aligned: bool):
    t = memo[id(node)]
    dtype = want or t.dtype
    tfd = {"float32": tf.float32, "int32": tf.int32, "bool": tf.bool}[dtype]

    def conv(x):
        return x if x.dtype == tfd else tf.cast(x, tfd)

    def ev(n, w=None):
        return _tf_eval(tf, n, sources, memo, w, aligned)

    if isinstance(node, Num):
        return tf.constant(node.value, dtype=tfd)
    if isinstance(node, Source):
        return conv(sources[node.index])
    if isinstance(node, Cast):
        return conv(ev(node.operand))
    if isinstance(node, Neg):
        return -ev(node.operand, dtype)
    if isinstance(node, BinOp):
        inner = _operand_dtype(node, dtype, memo)
        a = ev(node.left, inner)
        b = ev(node.right, inner)
        r = {"+": tf.add, "-": tf.subtract, "*": tf.multiply, "/": tf.math.truediv,
             "**": tf.pow, "%": tf.math.floormod, "//": tf.math.floordiv}[node.op](a, b)
        return conv(r)
    f = node.func
    if f in ("safe_log", "safe_exp"):
        return conv(_tf_safe(tf, node, ev))
    args = [ev(a, w) for a, w in zip(node.args, _arg_dtypes(node, dtype, memo))]
    keep = bool(node.option("keepdims")) or aligned
    if f == "gelu":
        return conv(tf.nn.gelu(args[0], approximate=bool(node.option("approximate"))))
    if f.startswith("reduce_"):
        return conv(getattr(tf, f)(args[0], axis=-1, keepdims=keep))
    fn = {
        "sigmoid": tf.sigmoid, "tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu,
        "exp": tf.exp, "log": tf.math.log, "log1p": tf.math.log1p, "expm1": tf.math.expm1,
        "log_sigmoid": tf.math.log_sigmoid, "sqrt": tf.sqrt, "rsqrt": tf.math.rsqrt,
        "reciprocal": tf.math.reciprocal, "erf": tf.math.erf, "abs": tf.abs,
        "square": tf.square, "sign": tf.sign, "floor": tf.floor, "ceil": tf.math.ceil,
        "round": tf.round, "softplus": tf.nn.softplus, "minimum": tf.minimum,
        "maximum": tf.maximum, "clip": lambda x, lo, hi: tf.minimum(tf.maximum(x, lo), hi),
        "less": tf.less, "less_equal": tf.less_equal, "greater": tf.greater,
        "greater_equal": tf.greater_equal, "equal": tf.equal, "not_equal": tf.not_equal,
        "logical_and": tf.logical_and, "logical_or": tf.logical_or,
        "logical_not": tf.logical_not, "where": tf.where, "zeros_like": tf.zeros_like,
        "ones_like": tf.ones_like, "stop_gradient": tf.stop_gradient, "identity": tf.identity,
        "softmax": lambda x: tf.nn.softmax(x, axis=-1),
        "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    }[f]
    return conv(fn(*args))


def _tf_safe(tf, node: Call, ev):
    (arg,) = node.args
    inner = arg.func if isinstance(arg, Call) else None
    if node.func == "safe_log":
        if inner == "exp":
            return ev(arg.args[0], "float32")
        if inner == "softmax":
            return tf.nn.log_softmax(ev(arg.args[0], "float32"), axis=-1)
        if inner == "sigmoid":
            return tf.math.log_sigmoid(ev(arg.args[0], "float32"))
        clamp = _tf_identity_grad(tf, lambda x: tf.maximum(x, SAFE_EPS))
        return tf.math.log(clamp(ev(arg, "float32")))
    if inner == "log":
        return ev(arg.args[0], "float32")
    if inner == "log_softmax":
        return tf.nn.softmax(ev(arg.args[0], "float32"), axis=-1)
    if inner == "log_sigmoid":
        return tf.sigmoid(ev(arg.args[0], "float32"))
    lo, hi = math.log(SAFE_EPS), math.log(1.0 / SAFE_EPS)
    clip = _tf_identity_grad(tf, lambda x: tf.clip_by_value(x, lo, hi))
    return tf.exp(clip(ev(arg, "float32")))
