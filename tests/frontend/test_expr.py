"""The restricted `eval` expression language (netcompiler/expr.py): accepted expressions evaluate
correctly (the NumPy evaluator of tests/expr_numpy.py here; TensorFlow in the `tf`-marked
tests), and everything else is rejected with an error naming the offending token, without
executing anything."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from netcompiler.backend.expr_eval import to_tf
from netcompiler.frontend import expr_tree, expr_types
from netcompiler.frontend.expr import ExprError, parse_expression
from netcompiler.frontend.expr_types import infer_dtype

from expr_numpy import to_numpy

RNG = np.random.default_rng(0)
X = RNG.uniform(0.1, 2.0, size=(2, 3, 4)).astype(np.float32)
Y = RNG.normal(size=(2, 3, 4)).astype(np.float32)
IDX = np.array([[0, 3, 1], [2, 4, 0]], dtype=np.int32)


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


ACCEPTED = [
    ("2 * tf.sigmoid(source(0))", lambda x, y: 2 * sig(x)),
    ("source(0) + source(1)", lambda x, y: x + y),
    ("source(0) - 2.5 * source(1)", lambda x, y: x - 2.5 * y),
    ("-source(0) / (1 + source(1) ** 2)", lambda x, y: -x / (1 + y**2)),
    ("+source(0) ** 0.5", lambda x, y: np.sqrt(x)),
    ("tf.tanh(source(1)) * tf.nn.relu(source(1))", lambda x, y: np.tanh(y) * np.maximum(y, 0)),
    (
        "tf.exp(source(1)) + tf.math.log(source(0)) + tf.log(source(0))",
        lambda x, y: np.exp(y) + 2 * np.log(x),
    ),
    ("tf.sqrt(source(0)) + tf.math.sqrt(source(0))", lambda x, y: 2 * np.sqrt(x)),
    ("tf.abs(source(1)) + tf.square(source(1))", lambda x, y: np.abs(y) + y * y),
    ("tf.nn.softplus(source(1))", lambda x, y: np.log1p(np.exp(y))),
    ("tf.nn.sigmoid(source(1)) - tf.nn.tanh(source(1))", lambda x, y: sig(y) - np.tanh(y)),
    (
        "tf.minimum(source(0), source(1)) + tf.maximum(source(0), 0.5)",
        lambda x, y: np.minimum(x, y) + np.maximum(x, 0.5),
    ),
    ("tf.clip_by_value(source(1), -0.5, 0.5)", lambda x, y: np.clip(y, -0.5, 0.5)),
    (
        "tf.clip_by_value(source(1), clip_value_min=-0.5, clip_value_max=0.5)",
        lambda x, y: np.clip(y, -0.5, 0.5),
    ),
    ("tf.cast(source(0), tf.float32) * 3", lambda x, y: 3 * x),
    ("1 / 4 + source(0)", lambda x, y: 0.25 + x),
]


@pytest.mark.parametrize("text,ref", ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_accepted_expressions_evaluate_with_numpy(text, ref):
    tree = parse_expression(text, 2)
    assert infer_dtype(tree, ["float32", "float32"]) == "float32"
    got = to_numpy(tree, [X, Y])
    np.testing.assert_allclose(
        got, ref(X.astype(np.float64), Y.astype(np.float64)), rtol=1e-5, atol=1e-6
    )
    assert got.dtype == np.float32


def test_integer_expressions():
    tree = parse_expression("source(0) + 1", 1)
    assert infer_dtype(tree, ["int32"]) == "int32"
    np.testing.assert_array_equal(to_numpy(tree, [IDX]), IDX + 1)
    tree = parse_expression("tf.cast(source(0), tf.float32) * 0.5", 1)
    assert infer_dtype(tree, ["int32"]) == "float32"
    np.testing.assert_allclose(to_numpy(tree, [IDX]), IDX * 0.5)
    tree = parse_expression("source(0) / 2", 1)  # true division of ints is float
    assert infer_dtype(tree, ["int32"]) == "float32"
    np.testing.assert_allclose(to_numpy(tree, [IDX]), IDX / 2)


def test_broadcasting_sources():
    tree = parse_expression("source(0) * source(1)", 2)
    a = X[:, :1, :]  # [B, 1, F]
    np.testing.assert_allclose(to_numpy(tree, [a, Y]), a * Y, rtol=1e-6)


@pytest.mark.parametrize(
    "text,dtypes,message",
    [
        ("tf.sigmoid(source(0))", ["int32"], "float argument"),
        ("source(0) * 0.5", ["int32"], "mixes int32 and a float number"),
        ("source(0) + source(1)", ["int32", "float32"], "mixes"),
        ("-source(0)", ["bool"], "bool"),
    ],
)
def test_dtype_errors(text, dtypes, message):
    tree = parse_expression(text, len(dtypes))
    with pytest.raises(ExprError, match=message):
        infer_dtype(tree, dtypes)


REJECTED = [
    # (expression, token that must appear in the message)
    ("__import__('os')", "__import__"),
    ("__import__('os').system('touch /tmp/pwned')", "__import__"),
    ("source(0).__class__.__bases__", "__class__"),
    ("tf.__dict__", "tf.__dict__"),
    ("os.system('ls')", "os.system"),
    ("tf.io.write_file('x', 'y')", "tf.io.write_file"),
    ("np.exp(source(0))", "np.exp"),
    ("open('/etc/passwd')", "open"),
    ("eval('1')", "eval"),
    ("exec('x=1')", "exec"),
    ("getattr(tf, 'sigmoid')", "getattr"),
    ("source", "source"),
    ("source(0).numpy()", "source(0).numpy"),
    ("source(i)", "source(i)"),
    ("source(0, 1)", "auto_convert"),
    ("source(0, as_data=True)", "as_data=True"),
    ("source(0, as_layer=True)", "as_layer=True"),
    ("source(0, foo=True)", "foo"),
    ("source(-1)", "-1"),
    ("source(5)", "source(5)"),
    ("x", "x"),
    ("lambda: 1", "lambda"),
    ("(lambda x: x)(source(0))", "lambda"),
    ("[x for x in range(3)]", "for x in"),
    ("{x: 1 for x in 'ab'}", "for x in"),
    ("sum(x for x in (1, 2))", "sum"),
    ("source(0)[0]", "source(0)[0]"),
    ("source(0)[::2]", "source(0)[::2]"),
    ("'abc'", "'abc'"),
    ("b'abc'", "b'abc'"),
    ("f'{source(0)}'", "f'"),
    ("source(0) if 1 else 2", "source(0) if 1 else 2"),
    ("source(0) is 1", "Is"),
    ("tf.reduce_sum(source(0))", "`reduce` layer"),
    ("tf.reduce_sum(source(0), axis=1)", "axis=-1"),
    ("tf.nn.softmax(source(0), axis=0)", "softmax_over_spatial"),
    ("tf.reduce_sum(source(0), axis=-1, keepdims=1)", "keepdims"),
    ("tf.cast(source(0), tf.int64)", "tf.int64"),
    ("tf.cast(source(0), 'float64')", "'float64'"),
    ("source(0) and 1", "source(0) and 1"),
    ("source(0) @ source(0)", "source(0) @ source(0)"),
    ("~source(0)", "~source(0)"),
    ("not source(0)", "not source(0)"),
    ("[1, 2]", "[1, 2]"),
    ("(1, 2)", "(1, 2)"),
    ("True", "True"),
    ("None", "None"),
    ("...", "Ellipsis"),
    ("tf.sigmoid(source(0), name='x')", "name"),
    ("tf.sigmoid(*[source(0)])", "*[source(0)]"),
    ("tf.sigmoid(**{'x': 1})", "**"),
    ("tf.sigmoid()", "missing argument"),
    ("tf.sigmoid(source(0), source(0))", "takes 1 argument"),
    ("tf.cast(source(0), tf.string)", "tf.string"),
    ("tf.float32", "tf.float32"),
    ("(x := 1)", "x := 1"),
    ("source(0) +", "syntax error"),
    ("import os", "syntax error"),
    ("source(0); source(0)", "syntax error"),
    ("", "empty"),
    ("1" * 20, "int32 range"),
    ("-" * 500 + "1", "nested"),
    ("x" * 5000, "longer than"),
]


@pytest.mark.parametrize("text,token", REJECTED, ids=[t[:40] for t, _ in REJECTED])
def test_rejected_expressions(text, token, monkeypatch):
    called = []

    def forbidden(*args, **kwargs):  # nothing may be executed
        called.append(args)
        raise AssertionError("executed")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "__import__", _guarded_import(called))
    with pytest.raises(ExprError) as info:
        parse_expression(text, 2)
    monkeypatch.undo()
    assert called == []
    assert token in str(info.value), str(info.value)


def _guarded_import(called):
    real = builtins.__import__

    def imp(name, *args, **kwargs):
        if name in ("os", "subprocess", "sys", "shutil"):
            called.append(name)
        return real(name, *args, **kwargs)

    return imp


def test_rejection_reports_column():
    with pytest.raises(ExprError) as info:
        parse_expression("2 * os.getcwd()", 1)
    assert info.value.col == 4 and info.value.token == "os.getcwd"
    assert "column 5" in str(info.value)


def test_non_string_expression():
    with pytest.raises(ExprError, match="must be a string"):
        parse_expression(42, 1)  # type: ignore[arg-type]


def test_sources_used():
    tree = parse_expression("source(2) * tf.exp(source(0))", 3)
    assert expr_tree.sources_used(tree) == {0, 2}


@pytest.mark.tf
@pytest.mark.parametrize("text,ref", ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_accepted_expressions_evaluate_with_tensorflow(text, ref):
    tf = pytest.importorskip("tensorflow")
    tree = parse_expression(text, 2)
    got = to_tf(tree, [tf.constant(X), tf.constant(Y)]).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(
        got, ref(X.astype(np.float64), Y.astype(np.float64)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.tf
def test_integer_expressions_with_tensorflow():
    tf = pytest.importorskip("tensorflow")
    got = to_tf(parse_expression("source(0) + 1", 1), [tf.constant(IDX)]).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, IDX + 1)
    got = to_tf(parse_expression("source(0) / 2", 1), [tf.constant(IDX)]).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, IDX / 2)


# -- the RETURNN idioms: comparisons, where, casts, safe_log, last-axis functions ----------------


def _np_erf(x):
    import math

    return np.vectorize(math.erf)(x)


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


A = RNG.normal(size=(3, 4, 5)).astype(np.float32)
P = RNG.uniform(0.0, 1.0, size=(3, 4, 5)).astype(np.float32)
P[0, 0, :2] = 0.0  # safe_log of exact zeros
N = RNG.integers(-7, 8, size=(3, 4, 5)).astype(np.int32)
M = RNG.integers(1, 5, size=(3, 4, 5)).astype(np.int32)

# (expression, inputs (A float, P float in [0, 1], N int, M positive int), reference, dtype)
IDIOMS = [
    (
        "tf.where(source(0) > 0.0, source(0), source(1))",
        lambda a, p, n, m: np.where(a > 0, a, p),
        "float32",
    ),
    (
        "where_bc(tf.less(source(0), source(1)), 1.0, 2.0)",
        lambda a, p, n, m: np.where(a < p, 1.0, 2.0),
        "float32",
    ),
    ("source(0) < source(1)", lambda a, p, n, m: a < p, "bool"),
    ("source(0) <= 0", lambda a, p, n, m: a <= 0, "bool"),
    ("source(0) >= 0.5", lambda a, p, n, m: a >= 0.5, "bool"),
    ("source(2) == 3", lambda a, p, n, m: n == 3, "bool"),
    ("source(2) != source(3)", lambda a, p, n, m: n != m, "bool"),
    ("0 < source(1) < 0.5", lambda a, p, n, m: (p > 0) & (p < 0.5), "bool"),
    ("tf.greater(source(0), source(1))", lambda a, p, n, m: a > p, "bool"),
    ("tf.greater_equal(source(2), 0)", lambda a, p, n, m: n >= 0, "bool"),
    ("tf.less_equal(source(2), source(3))", lambda a, p, n, m: n <= m, "bool"),
    ("tf.equal(source(2) % 2, 1)", lambda a, p, n, m: n % 2 == 1, "bool"),
    ("tf.not_equal(source(2), 0)", lambda a, p, n, m: n != 0, "bool"),
    (
        "tf.logical_and(tf.not_equal(source(2), 0), source(0) > 0)",
        lambda a, p, n, m: (n != 0) & (a > 0),
        "bool",
    ),
    (
        "tf.logical_or(source(2) > 2, tf.logical_not(source(0) > 0))",
        lambda a, p, n, m: (n > 2) | ~(a > 0),
        "bool",
    ),
    ("tf.equal(source(0) > 0, source(1) > 0.5)", lambda a, p, n, m: (a > 0) == (p > 0.5), "bool"),
    ("tf.to_float(source(2)) * 0.5", lambda a, p, n, m: n * 0.5, "float32"),
    ("tf.to_int32(source(0) * 3)", lambda a, p, n, m: np.trunc(a * 3), "int32"),
    ("tf.cast(source(0) > 0, tf.float32)", lambda a, p, n, m: (a > 0).astype(float), "float32"),
    ("tf.cast(source(2), 'float32') / 4", lambda a, p, n, m: n / 4, "float32"),
    ('tf.cast(source(2), "bool")', lambda a, p, n, m: n != 0, "bool"),
    ("tf.cast(source(2), tf.bool)", lambda a, p, n, m: n != 0, "bool"),
    ("tf.cast(source(0), dtype=tf.int32)", lambda a, p, n, m: np.trunc(a), "int32"),
    ("safe_log(source(1))", lambda a, p, n, m: np.log(np.maximum(p, 1e-20)), "float32"),
    (
        "safe_log(source(1)) - 0.22 * safe_log(source(0) ** 2)",
        lambda a, p, n, m: np.log(np.maximum(p, 1e-20)) - 0.22 * np.log(np.maximum(a * a, 1e-20)),
        "float32",
    ),
    ("safe_log(tf.exp(source(0) * 100.0))", lambda a, p, n, m: a * 100.0, "float32"),
    (
        "safe_log(tf.nn.softmax(source(0) * 50.0))",
        lambda a, p, n, m: _log_softmax(a * 50.0),
        "float32",
    ),
    ("safe_log(tf.sigmoid(source(0)))", lambda a, p, n, m: -np.logaddexp(0, -a), "float32"),
    (
        "safe_exp(source(0) * 100.0)",
        lambda a, p, n, m: np.exp(np.clip(a * 100, np.log(1e-20), np.log(1e20))),
        "float32",
    ),
    ("safe_exp(tf.math.log(source(1)))", lambda a, p, n, m: p, "float32"),
    (
        "tf.zeros_like(source(0)) + tf.ones_like(source(1))",
        lambda a, p, n, m: np.ones_like(a),
        "float32",
    ),
    ("tf.zeros_like(source(2))", lambda a, p, n, m: np.zeros_like(n), "int32"),
    ("tf.stop_gradient(source(0)) * tf.identity(source(1))", lambda a, p, n, m: a * p, "float32"),
    (
        "tf.sign(source(0)) + tf.floor(source(0)) + tf.round(source(0) * 2)",
        lambda a, p, n, m: np.sign(a) + np.floor(a) + np.round(a * 2),
        "float32",
    ),
    ("tf.math.ceil(source(0))", lambda a, p, n, m: np.ceil(a), "float32"),
    ("tf.sign(source(2))", lambda a, p, n, m: np.sign(n), "int32"),
    ("tf.math.reciprocal(source(1) + 1)", lambda a, p, n, m: 1 / (p + 1), "float32"),
    (
        "source(0) * tf.minimum(tf.math.rsqrt(source(1) + 0.5), 1./1e-8)",
        lambda a, p, n, m: a * np.minimum(1 / np.sqrt(p + 0.5), 1e8),
        "float32",
    ),
    ("tf.nn.softmax(source(0))", lambda a, p, n, m: np.exp(_log_softmax(a)), "float32"),
    ("tf.nn.log_softmax(source(0), axis=-1)", lambda a, p, n, m: _log_softmax(a), "float32"),
    (
        "tf.nn.softmax(-20. * tf.cast(source(2), tf.float32))",
        lambda a, p, n, m: np.exp(_log_softmax(-20.0 * n)),
        "float32",
    ),
    (
        "tf.reduce_sum(source(0), axis=-1, keepdims=True)",
        lambda a, p, n, m: a.sum(-1, keepdims=True),
        "float32",
    ),
    ("tf.reduce_mean(source(0), -1)", lambda a, p, n, m: a.mean(-1), "float32"),
    (
        "source(0) - tf.reduce_max(source(0), axis=-1, keepdims=True)",
        lambda a, p, n, m: a - a.max(-1, keepdims=True),
        "float32",
    ),
    ("tf.reduce_min(source(2), axis=-1)", lambda a, p, n, m: n.min(-1), "int32"),
    ("tf.reduce_mean(source(2), axis=-1)", lambda a, p, n, m: np.trunc(n.sum(-1) / 5), "int32"),
    (
        "tf.math.reduce_logsumexp(source(0), axis=-1, keepdims=True)",
        lambda a, p, n, m: np.log(np.exp(a).sum(-1, keepdims=True)),
        "float32",
    ),
    ("tf.nn.elu(source(0))", lambda a, p, n, m: np.where(a > 0, a, np.expm1(a)), "float32"),
    (
        "tf.nn.gelu(source(0))",
        lambda a, p, n, m: 0.5 * a * (1 + _np_erf(a / np.sqrt(2))),
        "float32",
    ),
    (
        "tf.nn.gelu(source(0), approximate=True)",
        lambda a, p, n, m: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
        "float32",
    ),
    ("tf.math.erf(source(0))", lambda a, p, n, m: _np_erf(a), "float32"),
    (
        "tf.math.log1p(source(1)) + tf.math.expm1(source(0)) + tf.math.log_sigmoid(source(0))",
        lambda a, p, n, m: np.log1p(p) + np.expm1(a) - np.logaddexp(0, -a),
        "float32",
    ),
    (
        "tf.pow(source(1), 1.5) + tf.cast(tf.math.pow(source(3), 2), tf.float32)",
        lambda a, p, n, m: p**1.5 + m**2,
        "float32",
    ),
    ("tf.pow(source(3), 2)", lambda a, p, n, m: m**2, "int32"),
    (
        "source(2) % source(3) + source(2) // source(3)",
        lambda a, p, n, m: np.mod(n, m) + np.floor_divide(n, m),
        "int32",
    ),
    (
        "source(0) % 0.7 + source(0) // 0.7",
        lambda a, p, n, m: np.mod(a, 0.7) + np.floor(a / 0.7),
        "float32",
    ),
    (
        "source(2) % tf.maximum(source(3) - 1, 1)",
        lambda a, p, n, m: np.mod(n, np.maximum(m - 1, 1)),
        "int32",
    ),
    (
        "tf.add(source(0), 1.0) - tf.subtract(source(1), 2.0) * tf.multiply(source(0), 2.0)"
        " / tf.divide(source(1) + 1.0, 2.0)",
        lambda a, p, n, m: (a + 1) - (p - 2) * (a * 2) / ((p + 1) / 2),
        "float32",
    ),
    (
        "tf.math.floormod(source(2), 3) + tf.math.floordiv(source(2), 3)",
        lambda a, p, n, m: np.mod(n, 3) + n // 3,
        "int32",
    ),
    (
        "source(0, auto_convert=False) * source(1, auto_convert=False, as_data=False)",
        lambda a, p, n, m: a * p,
        "float32",
    ),
    (
        "source(0, enforce_batch_major=True) + source(1, as_layer=False)",
        lambda a, p, n, m: a + p,
        "float32",
    ),
]
DTYPES4 = ["float32", "float32", "int32", "int32"]
NP_DTYPE = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


@pytest.mark.parametrize("text,ref,dtype", IDIOMS, ids=[t for t, _, _ in IDIOMS])
def test_returnn_idioms_with_numpy(text, ref, dtype):
    tree = parse_expression(text, 4)
    assert infer_dtype(tree, DTYPES4) == dtype
    got = to_numpy(tree, [A, P, N, M])
    assert got.dtype == NP_DTYPE[dtype]
    want = ref(A.astype(np.float64), P.astype(np.float64), N, M)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.tf
@pytest.mark.parametrize("text,ref,dtype", IDIOMS, ids=[t for t, _, _ in IDIOMS])
def test_returnn_idioms_with_tensorflow(text, ref, dtype):
    tf = pytest.importorskip("tensorflow")
    tree = parse_expression(text, 4)
    got = to_tf(tree, [tf.constant(A), tf.constant(P), tf.constant(N), tf.constant(M)]).numpy()
    assert got.dtype == NP_DTYPE[dtype]
    want = ref(A.astype(np.float64), P.astype(np.float64), N, M)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


def test_safe_log_is_finite_and_uses_returnns_epsilon():
    got = to_numpy(
        parse_expression("safe_log(source(0))", 1), [np.array([0.0, -1.0, 1e-30], np.float32)]
    )
    np.testing.assert_allclose(got, np.log(np.float32(1e-20)) * np.ones(3), rtol=1e-6)
    got = to_numpy(parse_expression("safe_exp(source(0))", 1), [np.array([1e4, -1e4], np.float32)])
    assert np.all(np.isfinite(got)) and np.all(got > 0)


@pytest.mark.tf
def test_safe_log_and_safe_exp_gradients_pass_the_clamp():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant([0.0, 0.5, 2.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = to_tf(parse_expression("safe_log(source(0))", 1), [x])
        z = to_tf(parse_expression("safe_exp(source(0) * 100.0)", 1), [x])
    np.testing.assert_allclose(y.numpy(), np.log([1e-20, 0.5, 2.0]), rtol=1e-5)
    g = tape.gradient(y, x).numpy()
    # identity gradient through the clamp: d log(m)/dm = 1/m, also where x < eps
    np.testing.assert_allclose(g, [1e20, 2.0, 0.5], rtol=1e-5)
    gz = tape.gradient(z, x).numpy()
    assert np.all(np.isfinite(gz)) and gz[0] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "text,dtypes,message",
    [
        ("tf.where(source(0), source(0), 0.0)", ["float32"], "condition of `where` must be bool"),
        ("tf.where(source(0) > 0, source(1), 1.0)", ["float32", "int32"], "mixes int32"),
        ("tf.where(source(0) > 0, source(0) > 1, 1.0)", ["float32"], "mixes bool"),
        ("tf.logical_and(source(0), source(0) > 1)", ["float32"], "needs bool arguments"),
        ("source(0) < source(1)", ["float32", "int32"], "mixes"),
        ("(source(0) > 0) < (source(0) > 1)", ["float32"], "of bool"),
        ("(source(0) > 0) + 1", ["float32"], "of bool"),
        ("tf.floor(source(0))", ["int32"], "float argument"),
        ("safe_log(source(0))", ["int32"], "float argument"),
        ("tf.nn.softmax(source(0) > 0)", ["float32"], "float argument"),
        ("tf.sign(source(0) > 0)", ["float32"], "bool"),
    ],
)
def test_dtype_errors_of_the_idioms(text, dtypes, message):
    tree = parse_expression(text, len(dtypes))
    with pytest.raises(ExprError, match=message):
        infer_dtype(tree, dtypes)


@pytest.mark.parametrize(
    "text,has,state",
    [
        ("source(0) > 0", [True], expr_types.FULL),
        ("source(0) * source(1)", [False, True], expr_types.FULL),
        ("source(0) + 1", [False], expr_types.BROADCAST),
        ("tf.nn.softmax(source(0))", [True], expr_types.FULL),
        (
            "tf.reduce_sum(source(0), axis=-1, keepdims=True) * source(1)",
            [True, False],
            expr_types.KEPT,
        ),
        ("source(0) - tf.reduce_max(source(0), axis=-1, keepdims=True)", [True], expr_types.FULL),
        ("tf.reduce_sum(source(0), axis=-1) + source(1)", [True, False], expr_types.REMOVED),
    ],
)
def test_feature_axis_through_the_expression(text, has, state):
    assert expr_types.infer_feature(parse_expression(text, len(has)), has) == state


@pytest.mark.parametrize(
    "text,has,message",
    [
        ("tf.nn.softmax(source(0))", [False], "has none"),
        ("tf.reduce_sum(tf.reduce_sum(source(0), axis=-1), axis=-1)", [True], "already reduced"),
        ("source(0) - tf.reduce_max(source(0), axis=-1)", [True], "keepdims=True"),
    ],
)
def test_feature_axis_errors(text, has, message):
    with pytest.raises(ExprError, match=message):
        expr_types.infer_feature(parse_expression(text, len(has)), has)


def test_aligned_evaluation_squeezes_a_removed_feature_axis():
    b = A[:, :, :1] * 0 + 2  # an input without the feature axis, aligned as size 1
    tree = parse_expression("tf.reduce_sum(source(0), axis=-1) * source(1)", 2)
    got = to_numpy(tree, [A, b], aligned=True)
    np.testing.assert_allclose(got, A.sum(-1) * 2, rtol=1e-5)


# -- Python from the config ------------------------------------------------------------------------

SPEC_AUGMENT_HOOK = (
    "self.network.get_config().typed_value('transform')"
    "(source(0, as_data=True), network=self.network)"
)


@pytest.mark.parametrize(
    "text,token,spec",
    [
        (SPEC_AUGMENT_HOOK, "self.network.get_config()", True),
        ("self.network.get_config().typed_value('specaug')(source(0))", "typed_value", True),
        (
            "tf.equal(self.network.global_train_step % 2, 0)",
            "self.network.global_train_step",
            False,
        ),
        ("tf.less(self.network.get_rec_step_index(), 3)", "self.network.get_rec_step_index", False),
        ("source(0) * network", "network", False),
        ("get_config().typed_value('f')(source(0))", "get_config", False),
        ("source(0) + typed_value", "typed_value", False),
    ],
)
def test_python_from_the_config_is_its_own_error(text, token, spec, monkeypatch):
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("executed"))
    with pytest.raises(ExprError) as info:
        parse_expression(text, 1)
    monkeypatch.undo()
    err = info.value
    assert err.rule == "expr.python-call"
    assert token in err.message and "never runs Python from a config" in err.message
    if spec:
        assert "spec_augment" in err.hint and "{class: spec_augment" in err.hint
    else:
        assert "spec_augment" not in err.hint and "layers" in err.hint


# -- the eval layer: shapes, out_type, Python calls (validation, no TensorFlow) --------------------

EXTERN = {
    "data": {"dim": 8},  # [B, T(data), F=8]
    "vec": {"shape": [8]},  # [B, F=8]
    "classes": {"dim": 5, "sparse": True},  # [B, T(classes)] sparse(5)
    "target": {"dim": 5, "sparse": True},  # rec target
}


def _validate(network: dict):
    from netcompiler.frontend.validate import validate

    net = dict(network)
    net.setdefault("output", {"class": "copy", "from": next(iter(network))})
    return validate({"extern_data": EXTERN, "network": net})


def _shape(network: dict, name: str | None = None) -> str:
    result = _validate(network)
    assert result.errors == [], [(d.rule, d.message) for d in result.errors]
    return str(result.inferred.shapes[name or next(iter(network))])


def _error(network: dict):
    errors = _validate(network).errors
    assert len(errors) == 1, [(d.rule, d.message, d.path) for d in errors]
    return errors[0]


@pytest.mark.parametrize(
    "text,src,shape",
    [
        ("source(0) > 0", "data", "[B, T(data), F=8] bool"),
        ("tf.equal(source(0) % 2, 1)", "data:classes", "[B, T(classes)] bool"),
        ("tf.where(source(0) > 0, source(0), 0.0)", "data", "[B, T(data), F=8]"),
        ("tf.cast(source(0) > 0, tf.int32)", "data", "[B, T(data), F=8] int32"),
        ("tf.to_int32(source(0))", "data:classes", "[B, T(classes)] sparse(5)"),
        ("tf.cast(source(0), tf.bool)", "data:classes", "[B, T(classes)] bool"),
        ("tf.nn.softmax(source(0))", "data", "[B, T(data), F=8]"),
        ("tf.reduce_sum(source(0), axis=-1)", "data", "[B, T(data)]"),
        ("tf.reduce_max(source(0), axis=-1, keepdims=True)", "data", "[B, T(data), F=1]"),
        ("safe_log(source(0))", "data", "[B, T(data), F=8]"),
    ],
)
def test_eval_layer_shapes_and_dtypes(text, src, shape):
    assert _shape({"e": {"class": "eval", "from": src, "eval": text}}) == shape


def test_eval_layer_python_call_is_a_located_error_with_its_rule():
    d = _error({"e": {"class": "eval", "from": "data", "eval": SPEC_AUGMENT_HOOK}})
    assert d.rule == "expr.python-call" and d.path == ("network", "e", "eval")
    assert "never runs Python from a config" in d.message
    assert "spec_augment" in d.hint
    d = _error(
        {
            "c": {
                "class": "combine",
                "kind": "eval",
                "from": ["data", "data"],
                "eval": "source(0) * self.network.global_train_step",
            }
        }
    )
    assert d.rule == "expr.python-call" and d.path == ("network", "c", "eval")


def test_eval_layer_last_axis_error():
    d = _error(
        {
            "e": {
                "class": "eval",
                "from": "data:classes",
                "eval": "tf.nn.softmax(tf.to_float(source(0)))",
            }
        }
    )
    assert d.rule == "shape.eval" and "feature axis" in d.message


@pytest.mark.parametrize(
    "out_type,shape",
    [
        ({"dim": 8}, "[B, T(data), F=8]"),
        ({"dim": 8, "shape": [None, 8]}, "[B, T(data), F=8]"),
        (
            {"shape": [None, 8], "dtype": "float32", "batch_dim_axis": 0, "time_dim_axis": 1},
            "[B, T(data), F=8]",
        ),
        ({"shape": [8, None], "batch_dim_axis": 1, "time_dim_axis": 2, "dim": 8}, None),
        ({"dtype": "float32"}, "[B, T(data), F=8]"),
    ],
)
def test_eval_out_type_matching(out_type, shape):
    net = {"e": {"class": "eval", "from": "data", "eval": "source(0) * 2", "out_type": out_type}}
    if shape is None:  # axes in another order than netcompiler's (batch-major, feature last)
        assert _error(net).rule == "shape.out-type"
    else:
        assert _shape(net) == shape


def test_eval_out_type_gives_the_classes_of_a_sparse_result():
    net = {
        "e": {
            "class": "eval",
            "from": "data:classes",
            "eval": "source(0) % 3",
            "out_type": {"sparse": True, "dim": 3, "dtype": "int32"},
        }
    }
    assert _shape(net) == "[B, T(classes)] sparse(3)"
    # an int result of dense inputs has no classes unless out_type says so
    net = {
        "e": {
            "class": "eval",
            "from": "data",
            "eval": "tf.reduce_sum(tf.to_int32(source(0)), axis=-1)",
            "out_type": {"sparse": True, "dim": 10},
        }
    }
    assert _shape(net) == "[B, T(data)] sparse(10)"


@pytest.mark.parametrize(
    "out_type,message",
    [
        ({"dtype": "int32"}, "declares dtype int32"),
        ({"dim": 1, "shape": [None, 1]}, "declares [B, T, F=1]"),
        ({"shape": [8]}, "declares [B, F=8]"),
        ({"shape": [], "batch_dim_axis": None}, "declares []"),
        ({"dim": 4}, "declares `dim: 4`"),
        ({"sparse": True, "dim": 5}, "sparse class indices"),
        ({"dim": 3, "shape": [None, 8]}, "differs from the last entry"),
        ({"shape": [None, 8], "time_dim_axis": 2}, "time_dim_axis"),
    ],
)
def test_eval_out_type_mismatch_is_an_error(out_type, message):
    d = _error(
        {"e": {"class": "eval", "from": "data", "eval": "source(0) + 1.0", "out_type": out_type}}
    )
    assert d.rule == "shape.out-type" and d.path == ("network", "e", "out_type")
    assert message in d.message


def test_eval_out_type_schema():
    d = _error(
        {"e": {"class": "eval", "from": "data", "eval": "source(0)", "out_type": {"dims": [1]}}}
    )
    assert d.rule.startswith("schema.")


def _rec_net(out_type, extra=None):
    unit = {
        # accumulated attention weights, read as `prev:` before their inputs are known
        "proj": {
            "class": "reduce",
            "mode": "sum",
            "axes": "F",
            "keep_dims": True,
            "from": ["base:enc", "prev:acc"],
        },  # no `prev:` guess of its own
        "energy": {"class": "eval", "from": ["proj", "prev:acc"], "eval": "source(0) + source(1)"},
        "w": {"class": "eval", "from": "energy", "eval": "tf.sigmoid(source(0))"},
        "acc": {"class": "eval", "from": ["prev:acc", "w"], "eval": "source(0) + source(1)"},
        "output": {"class": "linear", "from": "prev:s", "n_out": 5},
        "s": {"class": "reduce", "mode": "sum", "axes": "T(data)", "from": "acc"},
    }
    if out_type is not None:
        unit["acc"]["out_type"] = out_type
    unit.update(extra or {})
    from netcompiler.frontend.validate import validate

    return validate(
        {
            "extern_data": {"data": {"dim": 8}, "target": {"dim": 5, "sparse": True}},
            "network": {
                "enc": {"class": "copy", "from": "data"},
                "output": {"class": "rec", "from": [], "target": "target", "unit": unit},
            },
        }
    )


def test_eval_out_type_breaks_a_prev_cycle():
    result = _rec_net(None)
    assert any(d.rule == "shape.prev" for d in result.errors), result.errors
    result = _rec_net({"dim": 1, "shape": [None, 1]})
    assert not any(
        d.rule in ("shape.prev", "shape.out-type", "shape.eval") for d in result.errors
    ), [(d.rule, d.message) for d in result.errors]
    assert str(result.inferred.shapes["output/acc"]) == "[B, T(data), F=1]"


@pytest.mark.tf
def test_eval_layer_builds_the_idioms():
    tf = pytest.importorskip("tensorflow")
    from netcompiler.backend.build import compile_network

    b, t, f = 2, 5, 4
    x = RNG.normal(size=(b, t, f)).astype(np.float32)
    c = RNG.integers(0, 6, size=(b, t)).astype(np.int32)
    lens = np.array([5, 3], np.int32)
    extern = {"data": {"dim": f}, "classes": {"dim": 6, "sparse": True, "same_time_as": "data"}}
    net = {
        "pos": {"class": "eval", "from": "data", "eval": "source(0) > 0"},
        "sel": {
            "class": "eval",
            "from": ["data", "data:classes"],
            "eval": "tf.where(tf.equal(source(1) % 2, 0), source(0), tf.nn.softmax(source(0)))",
        },
        "sum": {"class": "eval", "from": "data", "eval": "tf.reduce_sum(source(0), axis=-1)"},
        "kept": {
            "class": "eval",
            "from": ["data", "data:classes"],
            "eval": "tf.reduce_max(source(0), axis=-1, keepdims=True) * tf.to_float(source(1))",
        },
        "centred": {
            "class": "eval",
            "from": "data",
            "eval": "source(0) - tf.reduce_mean(source(0), axis=-1, keepdims=True)",
        },
        "mod": {
            "class": "eval",
            "from": "data:classes",
            "eval": "source(0) % 3",
            "out_type": {"sparse": True, "dim": 3},
        },
        "lp": {"class": "eval", "from": "data", "eval": "safe_log(tf.nn.softmax(source(0)))"},
        "output": {"class": "copy", "from": "data"},
    }
    compiled = compile_network({"extern_data": extern, "network": net})
    assert str(compiled.shape("kept")) == "[B, T(data), F=1]"
    assert str(compiled.shape("mod")) == "[B, T(data)] sparse(3)"
    fetch = [k for k in net if k != "output"]
    out = compiled(
        inputs={"data": tf.constant(x), "classes": tf.constant(c)},
        lengths={"data": tf.constant(lens), "classes": tf.constant(lens)},
        training=False,
        fetch=fetch,
    )
    got = {k: v.numpy() for k, (v, _) in out.items()}
    valid = np.arange(t)[None, :] < lens[:, None]
    sm = np.exp(_log_softmax(x.astype(np.float64)))
    refs = {
        "pos": x > 0,
        "sel": np.where((c % 2 == 0)[..., None], x, sm),
        "sum": x.sum(-1),
        "kept": x.max(-1, keepdims=True) * c[..., None],
        "centred": x - x.mean(-1, keepdims=True),
        "mod": c % 3,
        "lp": _log_softmax(x.astype(np.float64)),
    }
    for k, want in refs.items():
        assert got[k].shape == want.shape, k
        if got[k].dtype == np.float32:
            np.testing.assert_allclose(got[k][valid], want[valid], rtol=1e-5, atol=1e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(got[k][valid], want[valid], err_msg=k)
    assert got["pos"].dtype == np.bool_ and got["mod"].dtype == np.int32
