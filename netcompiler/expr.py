"""The restricted expression language of `eval` (the `eval` layer and `combine` with `kind: eval`).

An expression is what RETURNN configs write, e.g. `2 * tf.sigmoid(source(0))`, but it is never
executed as Python: the text is *parsed* with `ast.parse` and the syntax tree is walked, allowing
only these node types and names:

- `source(i)` with an integer literal i (the i-th input),
- int and float literals,
- `+ - * / **`, unary minus/plus, parentheses,
- the element-wise functions of `FUNCTIONS` (`tf.sigmoid`, `tf.nn.relu`, `tf.math.log`, ...),
- `tf.cast(x, tf.float32)` (or `tf.int32`).

Anything else (other names, attribute access, subscripts, strings, lambdas, comprehensions,
keyword arguments other than the functions' own parameter names, ...) raises `ExprError`
naming the offending token. The accepted tree is turned into small `Node` values that are
evaluated with TensorFlow (`to_tf`, imported lazily) or NumPy (`to_numpy`).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .activations import np_sigmoid, np_softplus

if TYPE_CHECKING:  # pragma: no cover - NumPy is imported where it is used
    import numpy as np

MAX_LENGTH = 4000
MAX_DEPTH = 64

# written name -> (canonical function, parameter names)
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {}


def _register(canonical: str, params: tuple[str, ...], *names: str) -> None:
    for n in names:
        FUNCTIONS[n] = (canonical, params)


_register("sigmoid", ("x",), "tf.sigmoid", "tf.nn.sigmoid", "tf.math.sigmoid")
_register("tanh", ("x",), "tf.tanh", "tf.nn.tanh", "tf.math.tanh")
_register("relu", ("features",), "tf.nn.relu")
_register("exp", ("x",), "tf.exp", "tf.math.exp")
_register("log", ("x",), "tf.log", "tf.math.log")
_register("sqrt", ("x",), "tf.sqrt", "tf.math.sqrt")
_register("abs", ("x",), "tf.abs", "tf.math.abs")
_register("square", ("x",), "tf.square", "tf.math.square")
_register("softplus", ("features",), "tf.nn.softplus", "tf.math.softplus")
_register("minimum", ("x", "y"), "tf.minimum", "tf.math.minimum")
_register("maximum", ("x", "y"), "tf.maximum", "tf.math.maximum")
_register("clip", ("t", "clip_value_min", "clip_value_max"), "tf.clip_by_value")
_register("cast", ("x", "dtype"), "tf.cast", "tf.dtypes.cast")

#: functions of one float argument
FLOAT_FUNCTIONS = ("sigmoid", "tanh", "exp", "log", "sqrt", "softplus")
#: `tf.cast` targets
DTYPES = {"tf.float32": "float32", "tf.int32": "int32"}

ALLOWED_TEXT = ("allowed are source(i), numbers, + - * / **, parentheses and tf.sigmoid, tf.tanh, "
                "tf.nn.relu, tf.exp, tf.math.log, tf.sqrt, tf.abs, tf.square, tf.nn.softplus, "
                "tf.minimum, tf.maximum, tf.clip_by_value, tf.cast(x, tf.float32) (also as "
                "tf.math.*/tf.nn.* where TensorFlow has them)")


class ExprError(ValueError):
    """An expression that is not in the language; `token` is the offending text."""

    def __init__(self, message: str, token: str | None = None, col: int | None = None,
                 hint: str | None = None):
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message = message
        self.token = token
        self.col = col
        self.hint = hint


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
    op: str  # + - * / **
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
    func: str  # canonical name (sigmoid, minimum, clip, ...)
    args: tuple[Node, ...]

    def __str__(self):
        return f"{self.func}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Cast(Node):
    operand: Node
    dtype: str  # float32 | int32

    def __str__(self):
        return f"cast({self.operand}, {self.dtype})"


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


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
    ast.Subscript: "subscripts", ast.Compare: "comparisons", ast.BoolOp: "`and`/`or`",
    ast.IfExp: "conditional expressions", ast.List: "lists", ast.Tuple: "tuples",
    ast.Dict: "dicts", ast.Set: "sets", ast.JoinedStr: "f-strings", ast.Starred: "`*` unpacking",
    ast.NamedExpr: "`:=`", ast.Await: "`await`", ast.Yield: "`yield`", ast.YieldFrom: "`yield`",
    ast.Slice: "slices", ast.FormattedValue: "f-strings",
}


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

    def call(self, node: ast.Call, depth: int) -> Node:
        name = _dotted(node.func)
        if name is None:
            if isinstance(node.func, ast.Attribute):
                # e.g. `__import__('os').system(...)`: report the inner offender first
                self.walk(node.func.value, depth)
                raise self.fail(node.func, "method calls are not allowed")
            raise self.fail(node.func, "only named functions may be called")
        if name == "source":
            if node.keywords or len(node.args) != 1:
                raise self.fail(node, "`source` takes exactly one integer argument", "")
            arg = node.args[0]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, int)
                    and not isinstance(arg.value, bool)):
                raise self.fail(arg, "the argument of `source(i)` must be an integer literal", "")
            i = arg.value
            if i < 0 or (self.n_sources is not None and i >= self.n_sources):
                have = "no inputs" if self.n_sources == 0 else (
                    f"{self.n_sources} input{'s' if self.n_sources != 1 else ''}"
                    if self.n_sources is not None else "inputs from 0")
                raise self.fail(node, f"out of range, the layer has {have}", "")
            return Source(i)
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
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in params:
                raise self.fail(kw.value if kw.arg is None else kw,
                                f"keyword `{kw.arg or '**'}` is not allowed for `{name}`",
                                f"parameters of `{name}`: {', '.join(params)}")
            if kw.arg in values:
                raise self.fail(kw, f"`{kw.arg}` given twice", "")
            values[kw.arg] = kw.value
        missing = [p for p in params if p not in values]
        if missing:
            raise self.fail(node, f"`{name}` is missing argument `{missing[0]}`", "")
        if canonical == "cast":
            dt = _dotted(values["dtype"])
            if dt not in DTYPES:
                raise self.fail(values["dtype"], "the dtype of `tf.cast` must be one of "
                                f"{', '.join(DTYPES)}", "")
            return Cast(self.walk(values["x"], depth), DTYPES[dt])
        return Call(canonical, tuple(self.walk(values[p], depth) for p in params))


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


# -- dtypes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Type:
    dtype: str  # float32 | int32 | bool
    weak: bool = False  # a Python number literal: adopts the other operand's dtype


def infer_dtype(node: Node, input_dtypes: Sequence[str]) -> str:
    """The dtype of the expression's result (float32, int32 or bool); ExprError on mixing."""
    return _infer(node, input_dtypes, {}).dtype


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
            raise ExprError(f"`-` of bool `{node.operand}`; cast it with tf.cast(x, tf.float32)")
    elif isinstance(node, BinOp) or (isinstance(node, Call) and node.func in
                                     ("minimum", "maximum", "clip")):
        args = (node.left, node.right) if isinstance(node, BinOp) else node.args
        what = f"`{node.op}`" if isinstance(node, BinOp) else f"`{node.func}`"
        t = _unify([_infer(a, dts, memo) for a in args], args, what)
        if isinstance(node, BinOp) and node.op == "/" and t.dtype == "int32":
            t = _Type("float32", t.weak)
    elif isinstance(node, Call):
        (arg,) = node.args
        at = _infer(arg, dts, memo)
        if node.func in FLOAT_FUNCTIONS and at.dtype != "float32" and not at.weak:
            raise ExprError(f"`{node.func}` needs a float argument, but `{arg}` is {at.dtype}; "
                            f"cast it with tf.cast(x, tf.float32)")
        if at.dtype == "bool":
            raise ExprError(f"`{node.func}` of bool `{arg}`; cast it with tf.cast(x, tf.float32)")
        t = _Type("float32", at.weak) if node.func in FLOAT_FUNCTIONS else at
    else:  # pragma: no cover
        raise ExprError(f"unknown node {node!r}")
    memo[key] = t
    return t


def _unify(types: list[_Type], args, what: str) -> _Type:
    for t, a in zip(types, args):
        if t.dtype == "bool":
            raise ExprError(f"{what} of bool `{a}`; cast it with tf.cast(x, tf.float32)")
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

def _operand_dtype(node: BinOp | Call, dtype: str) -> str:
    """The dtype the operands of `node` are evaluated in, for a result of `dtype`: float32 for
    `/` and the float functions, else the result's dtype."""
    if isinstance(node, BinOp):
        return "float32" if node.op == "/" else dtype
    return "float32" if node.func in FLOAT_FUNCTIONS else dtype


def to_numpy(node: Node, sources: Sequence[np.ndarray]) -> np.ndarray:
    """Evaluate with NumPy (sources already broadcast-compatible); dtypes as `infer_dtype`."""
    import numpy as np  # lazy: validation does not need NumPy
    dts = [_np_dtype_name(s) for s in sources]
    memo: dict = {}
    _infer(node, dts, memo)
    return np.asarray(_np_eval(node, sources, memo, None))


def _np_dtype_name(x) -> str:
    import numpy as np  # lazy: validation does not need NumPy
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return "bool"
    return "int32" if np.issubdtype(x.dtype, np.integer) else "float32"


def _np_eval(node: Node, sources, memo, want: str | None):
    import numpy as np  # lazy: validation does not need NumPy
    t = memo[id(node)]
    dtype = want or t.dtype
    npd = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}[dtype]
    if isinstance(node, Num):
        return np.asarray(node.value, dtype=npd)
    if isinstance(node, Source):
        return np.asarray(sources[node.index]).astype(npd)
    with np.errstate(all="ignore"):
        if isinstance(node, Cast):
            return np.asarray(_np_eval(node.operand, sources, memo, None)).astype(npd)
        if isinstance(node, Neg):
            return -_np_eval(node.operand, sources, memo, dtype)
        if isinstance(node, BinOp):
            inner = _operand_dtype(node, dtype)
            a = _np_eval(node.left, sources, memo, inner)
            b = _np_eval(node.right, sources, memo, inner)
            if node.op == "+":
                r = a + b
            elif node.op == "-":
                r = a - b
            elif node.op == "*":
                r = a * b
            elif node.op == "/":
                r = a / b
            else:
                r = np.power(a, b)
            return np.asarray(r).astype(npd)
        args = [_np_eval(a, sources, memo, _operand_dtype(node, dtype)) for a in node.args]
        f = node.func
        if f == "sigmoid":
            r = np_sigmoid(args[0])
        elif f == "tanh":
            r = np.tanh(args[0])
        elif f == "relu":
            r = np.maximum(args[0], 0)
        elif f == "exp":
            r = np.exp(args[0])
        elif f == "log":
            r = np.log(args[0])
        elif f == "sqrt":
            r = np.sqrt(args[0])
        elif f == "abs":
            r = np.abs(args[0])
        elif f == "square":
            r = args[0] * args[0]
        elif f == "softplus":
            r = np_softplus(args[0])
        elif f == "minimum":
            r = np.minimum(args[0], args[1])
        elif f == "maximum":
            r = np.maximum(args[0], args[1])
        elif f == "clip":
            r = np.minimum(np.maximum(args[0], args[1]), args[2])
        else:  # pragma: no cover
            raise ExprError(f"unknown function {f}")
        return np.asarray(r).astype(npd)


def to_tf(node: Node, sources: Sequence):
    """Build the TensorFlow computation (sources already broadcast-compatible tensors)."""
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
    return _tf_eval(tf, node, sources, memo, None)


def _tf_eval(tf, node: Node, sources, memo, want: str | None):
    t = memo[id(node)]
    dtype = want or t.dtype
    tfd = {"float32": tf.float32, "int32": tf.int32, "bool": tf.bool}[dtype]

    def conv(x):
        return x if x.dtype == tfd else tf.cast(x, tfd)

    if isinstance(node, Num):
        return tf.constant(node.value, dtype=tfd)
    if isinstance(node, Source):
        return conv(sources[node.index])
    if isinstance(node, Cast):
        return conv(_tf_eval(tf, node.operand, sources, memo, None))
    if isinstance(node, Neg):
        return -_tf_eval(tf, node.operand, sources, memo, dtype)
    if isinstance(node, BinOp):
        inner = _operand_dtype(node, dtype)
        a = _tf_eval(tf, node.left, sources, memo, inner)
        b = _tf_eval(tf, node.right, sources, memo, inner)
        if node.op == "+":
            r = a + b
        elif node.op == "-":
            r = a - b
        elif node.op == "*":
            r = a * b
        elif node.op == "/":
            r = tf.math.truediv(a, b)
        else:
            r = tf.pow(a, b)
        return conv(r)
    args = [_tf_eval(tf, a, sources, memo, _operand_dtype(node, dtype)) for a in node.args]
    f = node.func
    fn = {
        "sigmoid": tf.sigmoid, "tanh": tf.tanh, "relu": tf.nn.relu, "exp": tf.exp,
        "log": tf.math.log, "sqrt": tf.sqrt, "abs": tf.abs, "square": tf.square,
        "softplus": tf.nn.softplus, "minimum": tf.minimum, "maximum": tf.maximum,
        "clip": lambda x, lo, hi: tf.minimum(tf.maximum(x, lo), hi),
    }[f]
    return conv(fn(*args))
