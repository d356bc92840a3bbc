"""The vocabulary of `netcompiler.frontend.expr`: the functions an `eval` expression may call (as RETURNN
configs write them, each mapped to one canonical name with its parameter names), their groups
by type, and the names that reach into RETURNN's Python objects. Data only."""

from __future__ import annotations

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
    _register(
        f"reduce_{_r}",
        ("input_tensor", "axis", "keepdims"),
        f"tf.reduce_{_r}",
        f"tf.math.reduce_{_r}",
    )
# binary operators written as functions -> BinOp
OP_FUNCTIONS = {
    "pow": "**",
    "add": "+",
    "subtract": "-",
    "multiply": "*",
    "divide": "/",
    "floormod": "%",
    "floordiv": "//",
}
_register("pow", ("x", "y"), "tf.pow", "tf.math.pow")
_register("add", ("x", "y"), "tf.add", "tf.math.add")
_register("subtract", ("x", "y"), "tf.subtract", "tf.math.subtract")
_register("multiply", ("x", "y"), "tf.multiply", "tf.math.multiply")
_register("divide", ("x", "y"), "tf.divide", "tf.math.divide", "tf.truediv", "tf.math.truediv")
_register("floormod", ("x", "y"), "tf.math.floormod", "tf.floormod", "tf.math.mod", "tf.mod")
_register("floordiv", ("x", "y"), "tf.math.floordiv", "tf.floordiv")
# comparisons (bool results)
COMPARISONS = {
    "less": "<",
    "less_equal": "<=",
    "greater": ">",
    "greater_equal": ">=",
    "equal": "==",
    "not_equal": "!=",
}
for _c in COMPARISONS:
    _register(_c, ("x", "y"), f"tf.{_c}", f"tf.math.{_c}")
_register("logical_and", ("x", "y"), "tf.logical_and", "tf.math.logical_and")
_register("logical_or", ("x", "y"), "tf.logical_or", "tf.math.logical_or")
_register("logical_not", ("x",), "tf.logical_not", "tf.math.logical_not")

#: functions of one float argument with a float result
FLOAT_FUNCTIONS = (
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "sqrt",
    "softplus",
    "elu",
    "gelu",
    "log1p",
    "expm1",
    "log_sigmoid",
    "safe_log",
    "safe_exp",
    "rsqrt",
    "reciprocal",
    "erf",
    "floor",
    "ceil",
    "softmax",
    "log_softmax",
    "reduce_logsumexp",
)
#: functions of one argument of any dtype (bool too), result of the same dtype
ANY_FUNCTIONS = ("zeros_like", "ones_like", "stop_gradient", "identity")
#: functions over the last (feature) axis
LAST_AXIS_FUNCTIONS = (
    "softmax",
    "log_softmax",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "reduce_min",
    "reduce_logsumexp",
)
#: `tf.cast` targets
DTYPES = {
    "tf.float32": "float32",
    "tf.int32": "int32",
    "tf.bool": "bool",
    "tf.dtypes.float32": "float32",
    "tf.dtypes.int32": "int32",
    "tf.dtypes.bool": "bool",
    "float32": "float32",
    "int32": "int32",
    "bool": "bool",
}
#: names that reach into RETURNN's Python objects or helpers (never run)
PYTHON_NAMES = ("self", "network", "get_config", "typed_value", "py_print")
#: attributes that reach into RETURNN's Python objects wherever they appear (`Data.placeholder`)
PYTHON_ATTRIBUTES = ("placeholder",)
#: keywords of `source(i, ...)` that hand the expression a RETURNN Python object
PYTHON_SOURCE_KEYWORDS = {
    "as_data": "a RETURNN `Data` object",
    "as_layer": "a RETURNN layer object",
}
PYTHON_CALL_RULE = "expr.python-call"

ALLOWED_TEXT = (
    "allowed are source(i), numbers, + - * / ** % //, comparisons, parentheses, "
    "tf.sigmoid, tf.tanh, tf.nn.relu/elu/gelu/softplus, tf.exp, tf.math.log, "
    "safe_log, safe_exp, tf.sqrt, tf.abs, tf.square, tf.sign, tf.floor, tf.round, "
    "tf.math.reciprocal/rsqrt/erf, tf.minimum, tf.maximum, tf.clip_by_value, tf.pow, "
    "tf.where, tf.equal/less/greater/..., tf.logical_and/or/not, tf.cast(x, "
    "tf.float32|tf.int32|tf.bool), tf.to_float, tf.to_int32, tf.zeros_like, "
    "tf.ones_like, tf.stop_gradient, tf.nn.softmax/log_softmax and "
    "tf.reduce_sum/mean/max/min(x, axis=-1, keepdims=...) (also as tf.math.* where "
    "TensorFlow has them)"
)
