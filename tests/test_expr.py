"""The restricted `eval` expression language (netcompiler/expr.py): accepted expressions evaluate
correctly (NumPy evaluator here; TensorFlow in the `tf`-marked tests), and everything else is
rejected with an error naming the offending token, without executing anything."""
from __future__ import annotations

import builtins

import numpy as np
import pytest

from netcompiler import expr
from netcompiler.expr import ExprError, infer_dtype, parse_expression, to_numpy

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
    ("-source(0) / (1 + source(1) ** 2)", lambda x, y: -x / (1 + y ** 2)),
    ("+source(0) ** 0.5", lambda x, y: np.sqrt(x)),
    ("tf.tanh(source(1)) * tf.nn.relu(source(1))", lambda x, y: np.tanh(y) * np.maximum(y, 0)),
    ("tf.exp(source(1)) + tf.math.log(source(0)) + tf.log(source(0))",
     lambda x, y: np.exp(y) + 2 * np.log(x)),
    ("tf.sqrt(source(0)) + tf.math.sqrt(source(0))", lambda x, y: 2 * np.sqrt(x)),
    ("tf.abs(source(1)) + tf.square(source(1))", lambda x, y: np.abs(y) + y * y),
    ("tf.nn.softplus(source(1))", lambda x, y: np.log1p(np.exp(y))),
    ("tf.nn.sigmoid(source(1)) - tf.nn.tanh(source(1))", lambda x, y: sig(y) - np.tanh(y)),
    ("tf.minimum(source(0), source(1)) + tf.maximum(source(0), 0.5)",
     lambda x, y: np.minimum(x, y) + np.maximum(x, 0.5)),
    ("tf.clip_by_value(source(1), -0.5, 0.5)", lambda x, y: np.clip(y, -0.5, 0.5)),
    ("tf.clip_by_value(source(1), clip_value_min=-0.5, clip_value_max=0.5)",
     lambda x, y: np.clip(y, -0.5, 0.5)),
    ("tf.cast(source(0), tf.float32) * 3", lambda x, y: 3 * x),
    ("1 / 4 + source(0)", lambda x, y: 0.25 + x),
]


@pytest.mark.parametrize("text,ref", ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_accepted_expressions_evaluate_with_numpy(text, ref):
    tree = parse_expression(text, 2)
    assert infer_dtype(tree, ["float32", "float32"]) == "float32"
    got = to_numpy(tree, [X, Y])
    np.testing.assert_allclose(got, ref(X.astype(np.float64), Y.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)
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


@pytest.mark.parametrize("text,dtypes,message", [
    ("tf.sigmoid(source(0))", ["int32"], "float argument"),
    ("source(0) * 0.5", ["int32"], "mixes int32 and a float number"),
    ("source(0) + source(1)", ["int32", "float32"], "mixes"),
    ("-source(0)", ["bool"], "bool"),
])
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
    ("source(0, 1)", "source(0, 1)"),
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
    ("source(0) < 1", "source(0) < 1"),
    ("source(0) and 1", "source(0) and 1"),
    ("source(0) % 2", "source(0) % 2"),
    ("source(0) // 2", "source(0) // 2"),
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
    ("tf.cast(source(0), 'float32')", "'float32'"),
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
    assert expr.sources_used(tree) == {0, 2}


@pytest.mark.tf
@pytest.mark.parametrize("text,ref", ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_accepted_expressions_evaluate_with_tensorflow(text, ref):
    tf = pytest.importorskip("tensorflow")
    tree = parse_expression(text, 2)
    got = expr.to_tf(tree, [tf.constant(X), tf.constant(Y)]).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref(X.astype(np.float64), Y.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.tf
def test_integer_expressions_with_tensorflow():
    tf = pytest.importorskip("tensorflow")
    got = expr.to_tf(parse_expression("source(0) + 1", 1), [tf.constant(IDX)]).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, IDX + 1)
    got = expr.to_tf(parse_expression("source(0) / 2", 1), [tf.constant(IDX)]).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, IDX / 2)
