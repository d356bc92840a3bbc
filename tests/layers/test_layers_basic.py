"""Shape rules, errors and params of the basic layers: activation, copy, combine, eval, dropout,
layer_norm, constant, compare, length, reinterpret_data (no TensorFlow)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netcompiler.frontend.activations import ACTIVATIONS, parse_activation
from netcompiler.frontend.validate import validate

ROOT = Path(__file__).resolve().parents[2]

EXTERN = {
    "data": {"dim": 8},  # [B, T(data), F=8]
    "feat4": {"dim": 4, "same_time_as": "data"},  # [B, T(data), F=4]
    "other": {"dim": 8},  # [B, T(other), F=8]
    "classes": {"dim": 5, "sparse": True},  # [B, T(classes)] sparse(5)
    "vec": {"shape": [8]},  # [B, F=8]
    "grid": {"shape": [None, 3, 8]},  # [B, T(grid), S=3, F=8]
}


def run(network: dict, extern: dict | None = None):
    net = dict(network)
    net.setdefault("output", {"class": "copy", "from": next(iter(network))})
    return validate({"extern_data": extern or EXTERN, "network": net})


def shape_of(network: dict, name: str | None = None, extern=None) -> str:
    result = run(network, extern)
    assert result.errors == [], [(d.rule, d.message) for d in result.errors]
    name = name or next(iter(network))
    return str(result.inferred.shapes[name])


def error_of(network: dict, extern=None):
    result = run(network, extern)
    errors = result.errors
    assert len(errors) == 1, [(d.rule, d.message, d.path) for d in errors]
    return errors[0]


# -- activation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act", ["relu", "tanh", "2*sigmoid", "0.5*gelu", "softmax", "log_softmax", "swish", "identity"]
)
def test_activation_same_shape(act):
    assert (
        shape_of({"a": {"class": "activation", "from": "data", "activation": act}})
        == "[B, T(data), F=8]"
    )


def test_activation_of_list_is_concatenated():
    assert (
        shape_of(
            {"a": {"class": "activation", "from": ["data", "data:feat4"], "activation": "relu"}}
        )
        == "[B, T(data), F=12]"
    )


def test_activation_requires_activation():
    d = error_of({"a": {"class": "activation", "from": "data"}})
    assert d.rule == "schema.missing-option" and "activation" in d.message
    assert d.path == ("network", "a")


def test_activation_unknown_name():
    d = error_of({"a": {"class": "activation", "from": "data", "activation": "3*sigmod"}})
    assert d.rule == "schema.enum" and "sigmod" in d.message
    assert d.path == ("network", "a", "activation")
    assert "sigmoid" in (d.hint or "")


def test_activation_of_sparse_input_is_an_error():
    d = error_of({"a": {"class": "activation", "from": "data:classes", "activation": "tanh"}})
    assert d.rule == "shape.dtype"
    assert "data:classes" in d.message and "[B, T(classes)] sparse(5)" in d.message
    assert d.path == ("network", "a", "from")


def test_activation_softmax_needs_feature_axis():
    net = {
        "a": {"class": "activation", "from": "c", "activation": "softmax"},
        "c": {"class": "constant", "from": "data", "value": 1.0, "with_batch_dim": True},
    }
    d = error_of(net)
    assert d.rule == "shape.activation" and "[B]" in d.message
    assert d.path == ("network", "a", "activation")


def test_activation_names_match_schema_pattern():
    common = json.loads((ROOT / "schemas" / "common.schema.json").read_text())
    pattern = common["$defs"]["activation"]["anyOf"][1]["pattern"]
    names = re.search(r"\)\?\((.*)\)\$$", pattern).group(1).split("|")
    assert sorted(names) == sorted(ACTIVATIONS)
    for name in ACTIVATIONS:
        assert re.match(pattern, name) and re.match(pattern, "2*" + name)


def test_parse_activation():
    assert parse_activation("2*sigmoid") == (2.0, "sigmoid")
    assert parse_activation("0.5*relu") == (0.5, "relu")
    assert parse_activation(None) == (1.0, "identity")
    with pytest.raises(ValueError, match="sigmod"):
        parse_activation("sigmod")


def test_numpy_reference_covers_every_activation():
    """The NumPy references of the activation builders' tests (tests/numpy_reference.py) know
    every name the configs may use, and compute it as defined (hand-computed values)."""
    import numpy as np

    import numpy_reference as ref

    assert set(ref.ACTIVATIONS) == set(ACTIVATIONS)
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(ref.activation("2*sigmoid", x), 2 / (1 + np.exp(-x)))
    np.testing.assert_allclose(ref.activation("relu", x), [0, 0, 0, 0.5, 3])
    np.testing.assert_allclose(ref.activation("0.5*relu", x), [0, 0, 0, 0.25, 1.5])
    np.testing.assert_allclose(ref.activation("softmax", x).sum(), 1.0)
    np.testing.assert_allclose(ref.activation("swish", x), x / (1 + np.exp(-x)))
    np.testing.assert_allclose(ref.activation("log_sigmoid", x), np.log(1 / (1 + np.exp(-x))))
    np.testing.assert_allclose(ref.activation("hard_sigmoid", x), [1 / 6, 2.5 / 6, 0.5, 3.5 / 6, 1])
    np.testing.assert_allclose(ref.activation("leaky_relu", x), [-0.4, -0.1, 0, 0.5, 3])
    # gelu(1) with the tanh approximation: 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841192
    np.testing.assert_allclose(ref.activation("gelu", np.array([1.0])), [0.8411920], rtol=1e-6)
    np.testing.assert_array_equal(ref.activation(None, x), x)


# -- copy ------------------------------------------------------------------------------------------


def test_copy_single_input():
    assert shape_of({"c": {"class": "copy", "from": "data"}}) == "[B, T(data), F=8]"


def test_copy_of_list_concatenates_features():
    assert (
        shape_of({"c": {"class": "copy", "from": ["data", "data:feat4"]}}) == "[B, T(data), F=12]"
    )


def test_copy_of_sparse_stays_sparse():
    assert shape_of({"c": {"class": "copy", "from": "data:classes"}}) == "[B, T(classes)] sparse(5)"


def test_copy_of_list_with_different_time_axes():
    d = error_of({"c": {"class": "copy", "from": ["data", "data:other"]}})
    assert d.rule == "shape.concat"
    assert "[B, T(data), F=8]" in d.message and "[B, T(other), F=8]" in d.message
    assert d.path == ("network", "c", "from")


def test_copy_n_out_must_match():
    d = error_of({"c": {"class": "copy", "from": "data", "n_out": 7}})
    assert d.rule == "shape.n-out" and "[B, T(data), F=8]" in d.message
    assert d.path == ("network", "c", "n_out")


# -- combine ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "truediv", "maximum", "minimum", "average"])
def test_combine_same_axes(kind):
    net = {
        "c": {"class": "combine", "kind": kind, "from": ["data", "x"]},
        "x": {"class": "activation", "from": "data", "activation": "tanh"},
    }
    assert shape_of(net) == "[B, T(data), F=8]"


def test_combine_broadcasts_missing_time_axis():
    assert (
        shape_of({"c": {"class": "combine", "kind": "add", "from": ["data:vec", "data"]}})
        == "[B, T(data), F=8]"
    )


def test_combine_two_time_axes_broadcast():
    assert (
        shape_of({"c": {"class": "combine", "kind": "mul", "from": ["data", "data:other"]}})
        == "[B, T(data), T(other), F=8]"
    )


def test_combine_static_axis_kept():
    assert (
        shape_of({"c": {"class": "combine", "kind": "add", "from": ["data:vec", "data:grid"]}})
        == "[B, T(grid), S=3, F=8]"
    )


def test_combine_scalar_constant_broadcasts():
    net = {
        "c": {"class": "combine", "kind": "mul", "from": ["data", "k"]},
        "k": {"class": "constant", "from": [], "value": 2.0},
    }
    assert shape_of(net) == "[B, T(data), F=8]"


def test_combine_feature_mismatch_names_both_layers():
    net = {
        "c": {"class": "combine", "kind": "add", "from": ["data", "x"]},
        "x": {"class": "linear", "from": "data", "n_out": 16},
    }
    d = error_of(net)
    assert d.rule == "shape.broadcast"
    assert "`data` [B, T(data), F=8]" in d.message and "`x` [B, T(data), F=16]" in d.message
    assert d.path == ("network", "c", "from")


def test_combine_activation():
    net = {"c": {"class": "combine", "kind": "add", "from": ["data", "data"], "activation": "relu"}}
    assert shape_of(net) == "[B, T(data), F=8]"


def test_combine_of_sparse_is_an_error():
    d = error_of({"c": {"class": "combine", "kind": "add", "from": ["data:classes", "data"]}})
    assert d.rule == "shape.sparse" and "[B, T(classes)] sparse(5)" in d.message
    assert d.path == ("network", "c", "from")


def test_combine_int_lengths():
    net = {
        "c": {"class": "combine", "kind": "add", "from": ["l", "l"]},
        "l": {"class": "length", "from": "data"},
    }
    assert shape_of(net) == "[B] int32"
    net["c"]["kind"] = "truediv"
    assert shape_of(net) == "[B]"


def test_combine_mixed_dtypes_is_an_error():
    net = {
        "c": {"class": "combine", "kind": "add", "from": ["l", "k"]},
        "l": {"class": "length", "from": "data"},
        "k": {"class": "constant", "from": [], "value": 1.5},
    }
    d = error_of(net)
    assert d.rule == "shape.dtype" and "`l` [B] int32" in d.message and "`k` []" in d.message


def test_combine_kind_required_and_checked():
    d = error_of({"c": {"class": "combine", "from": ["data", "data"]}})
    assert d.rule == "schema.missing-option" and "kind" in d.message
    d = error_of({"c": {"class": "combine", "kind": "plus", "from": ["data", "data"]}})
    assert d.rule == "schema.enum" and d.path == ("network", "c", "kind")


def test_combine_kind_eval():
    net = {
        "c": {
            "class": "combine",
            "kind": "eval",
            "from": ["data", "data:vec"],
            "eval": "source(0) * tf.sigmoid(source(1))",
        }
    }
    assert shape_of(net) == "[B, T(data), F=8]"


def test_combine_kind_eval_without_expression():
    d = error_of({"c": {"class": "combine", "kind": "eval", "from": ["data", "data"]}})
    assert d.rule == "shape.eval" and d.path == ("network", "c", "eval")


def test_combine_eval_ignored_warns():
    result = run(
        {"c": {"class": "combine", "kind": "add", "from": ["data", "data"], "eval": "source(0)"}}
    )
    assert result.errors == []
    assert any(
        w.rule == "shape.eval" and w.path == ("network", "c", "eval") for w in result.warnings
    )


def test_combine_in_rec_with_prev_of_itself():
    """The gauss-window decoder pattern: location = prev:location + step (guess of prev:)."""
    net = {
        "dec": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "max_seq_len": 10,
            "unit": {
                "peek": {"class": "copy", "from": "prev:location"},
                "step_logit": {"class": "linear", "from": "data:classes", "n_out": 1},
                "step": {
                    "class": "eval",
                    "from": "step_logit",
                    "eval": "2 * tf.sigmoid(source(0))",
                },
                "location": {
                    "class": "combine",
                    "kind": "add",
                    "from": ["prev:location", "step"],
                    "initial_output": 0,
                },
                "output": {"class": "combine", "kind": "add", "from": ["peek", "location"]},
            },
        }
    }
    result = run(net)
    assert result.errors == [], [(d.rule, d.message) for d in result.errors]
    shapes = result.inferred.shapes
    assert str(shapes["dec/location"]) == "[B, F=1]"
    assert str(shapes["dec/peek"]) == "[B, F=1]"
    assert str(shapes["dec"]) == "[B, T(classes), F=1]"


# -- eval ------------------------------------------------------------------------------------------


def test_eval_one_source():
    assert (
        shape_of({"e": {"class": "eval", "from": "data", "eval": "2 * tf.sigmoid(source(0))"}})
        == "[B, T(data), F=8]"
    )


def test_eval_broadcast_of_all_inputs():
    net = {
        "e": {
            "class": "eval",
            "from": ["data:vec", "data:other"],
            "eval": "tf.maximum(source(0), 0.0) + source(1) ** 2",
        }
    }
    assert shape_of(net) == "[B, T(other), F=8]"


def test_eval_cast_of_sparse_is_float_without_feature():
    net = {"e": {"class": "eval", "from": "data:classes", "eval": "tf.cast(source(0), tf.float32)"}}
    assert shape_of(net) == "[B, T(classes)]"


def test_eval_int_result_of_sparse_stays_sparse():
    net = {"e": {"class": "eval", "from": "data:classes", "eval": "source(0) + 1"}}
    assert shape_of(net) == "[B, T(classes)] sparse(5)"


def test_eval_source_out_of_range():
    d = error_of(
        {"e": {"class": "eval", "from": ["data", "data"], "eval": "source(0) + source(2)"}}
    )
    assert d.rule == "shape.eval" and "source(2)" in d.message and "2 inputs" in d.message
    assert d.path == ("network", "e", "eval")


@pytest.mark.parametrize(
    "text,token",
    [
        ("__import__('os')", "__import__"),
        ("source(0).__class__", "__class__"),
        ("os.system('ls')", "os.system"),
        ("[x for x in source(0)]", "for x in"),
        ("source(0)[0]", "source(0)[0]"),
        ("lambda: 1", "lambda"),
        ("'abc'", "'abc'"),
        ("np.exp(source(0))", "np.exp"),
        ("source(0) +", "syntax error"),
    ],
)
def test_eval_rejected_expressions_are_located_errors(text, token):
    d = error_of({"e": {"class": "eval", "from": "data", "eval": text}})
    assert d.rule == "shape.eval" and d.path == ("network", "e", "eval")
    assert token in d.message


def test_eval_float_function_of_int_is_an_error():
    d = error_of({"e": {"class": "eval", "from": "data:classes", "eval": "tf.sigmoid(source(0))"}})
    assert d.rule == "shape.eval" and "int32" in d.message and "tf.cast" in d.message


def test_eval_feature_mismatch():
    d = error_of(
        {"e": {"class": "eval", "from": ["data", "data:feat4"], "eval": "source(0) + source(1)"}}
    )
    assert d.rule == "shape.broadcast"
    assert "[B, T(data), F=8]" in d.message and "[B, T(data), F=4]" in d.message


def test_eval_is_required():
    d = error_of({"e": {"class": "eval", "from": "data"}})
    assert d.rule == "schema.missing-option" and "eval" in d.message


# -- dropout ---------------------------------------------------------------------------------------


def test_dropout_same_shape():
    assert (
        shape_of({"d": {"class": "dropout", "from": "data", "dropout": 0.1}}) == "[B, T(data), F=8]"
    )


def test_dropout_rate_range():
    d = error_of({"d": {"class": "dropout", "from": "data", "dropout": 1.5}})
    assert d.rule == "schema.range" and d.path == ("network", "d", "dropout")


def test_dropout_of_sparse_is_an_error():
    d = error_of({"d": {"class": "dropout", "from": "data:classes", "dropout": 0.1}})
    assert d.rule == "shape.dtype" and "sparse(5)" in d.message


# -- layer_norm ------------------------------------------------------------------------------------


def test_layer_norm_shape_and_params():
    result = run({"ln": {"class": "layer_norm", "from": "data:grid"}})
    assert result.errors == []
    assert str(result.inferred.shapes["ln"]) == "[B, T(grid), S=3, F=8]"
    params = result.inferred.params["ln"]
    assert set(params) == {"scale", "bias"}
    assert params["scale"].shape == (8,) and params["scale"].init == 1.0
    assert params["bias"].shape == (8,) and params["bias"].init == 0.0
    assert result.inferred.param_count("ln") == 16


def test_layer_norm_of_sparse_is_an_error():
    d = error_of({"ln": {"class": "layer_norm", "from": "data:classes"}})
    assert d.rule == "shape.no-feature" and "sparse(5)" in d.message
    assert d.path == ("network", "ln", "from")


def test_layer_norm_epsilon_must_be_positive():
    d = error_of({"ln": {"class": "layer_norm", "from": "data", "epsilon": 0}})
    assert d.rule == "schema.range" and d.path == ("network", "ln", "epsilon")


# -- constant --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opts,expected",
    [
        ({"value": 3}, "[] int32"),
        ({"value": 1.5}, "[]"),
        ({"value": True}, "[] bool"),
        ({"value": 3, "dtype": "float32"}, "[]"),
        ({"value": 0.0, "with_batch_dim": True}, "[B]"),
        ({"value": [1.0, 2.0, 3.0]}, "[F=3]"),
        ({"value": [[1, 2, 3], [4, 5, 6]]}, "[S=2, F=3] int32"),
        (
            {"value": [[1, 2, 3], [4, 5, 6]], "with_batch_dim": True, "dtype": "float32"},
            "[B, S=2, F=3]",
        ),
    ],
)
def test_constant_shapes(opts, expected):
    assert shape_of({"k": {"class": "constant", "from": [], **opts}}) == expected


def test_constant_ragged_list():
    d = error_of({"k": {"class": "constant", "from": [], "value": [[1, 2], [3]]}})
    assert d.rule == "shape.constant" and "value[1]" in d.message
    assert d.path == ("network", "k", "value")


def test_constant_float_value_with_int_dtype():
    d = error_of({"k": {"class": "constant", "from": [], "value": 1.5, "dtype": "int32"}})
    assert d.rule == "shape.constant" and "1.5" in d.message
    assert d.path == ("network", "k", "dtype")


def test_constant_no_params():
    result = run({"k": {"class": "constant", "from": [], "value": [1.0, 2.0]}})
    assert result.inferred.params["k"] == {}


# -- compare ---------------------------------------------------------------------------------------


def test_compare_sparse_with_value_is_bool():
    net = {"c": {"class": "compare", "from": "data:classes", "kind": "equal", "value": 0}}
    assert shape_of(net) == "[B, T(classes)] bool"


def test_compare_two_inputs_broadcast():
    net = {"c": {"class": "compare", "from": ["data", "data:vec"], "kind": "greater"}}
    assert shape_of(net) == "[B, T(data), F=8] bool"


def test_compare_one_input_without_value():
    d = error_of({"c": {"class": "compare", "from": "data", "kind": "less"}})
    assert d.rule == "shape.inputs" and "[B, T(data), F=8]" in d.message
    assert d.path == ("network", "c", "value")


def test_compare_feature_mismatch():
    d = error_of({"c": {"class": "compare", "from": ["data", "data:feat4"]}})
    assert d.rule == "shape.broadcast"
    assert "`data` [B, T(data), F=8]" in d.message and "`data:feat4` [B, T(data), F=4]" in d.message


def test_compare_kind_enum():
    d = error_of({"c": {"class": "compare", "from": "data", "kind": "equals", "value": 0}})
    assert d.rule == "schema.enum" and d.path == ("network", "c", "kind")


# -- length ----------------------------------------------------------------------------------------


def test_length():
    assert shape_of({"l": {"class": "length", "from": "data"}}) == "[B] int32"
    assert (
        shape_of({"l": {"class": "length", "from": "data:classes", "axis": "stag:classes"}})
        == "[B] int32"
    )


def test_length_of_feature_axis_is_an_error():
    d = error_of({"l": {"class": "length", "from": "data", "axis": "F"}})
    assert d.rule == "shape.axis" and "F=8" in d.message and d.path == ("network", "l", "axis")


def test_length_without_time_axis():
    d = error_of({"l": {"class": "length", "from": "data:vec"}})
    assert d.rule == "shape.no-time" and "`data:vec` [B, F=8]" in d.message
    assert d.path == ("network", "l", "from")


# -- reinterpret_data ------------------------------------------------------------------------------


def test_reinterpret_set_sparse_false():
    assert (
        shape_of({"r": {"class": "reinterpret_data", "from": "data:classes", "set_sparse": False}})
        == "[B, T(classes)] int32"
    )


def test_reinterpret_sparse_dims():
    assert (
        shape_of({"r": {"class": "reinterpret_data", "from": "data:classes", "set_sparse_dim": 7}})
        == "[B, T(classes)] sparse(7)"
    )
    assert (
        shape_of(
            {"r": {"class": "reinterpret_data", "from": "data:classes", "increase_sparse_dim": 2}}
        )
        == "[B, T(classes)] sparse(7)"
    )


def test_reinterpret_set_sparse_true_on_int_data():
    net = {
        "r": {"class": "reinterpret_data", "from": "l", "set_sparse": True, "set_sparse_dim": 10},
        "l": {"class": "length", "from": "data"},
    }
    assert shape_of(net) == "[B] sparse(10)"


def test_reinterpret_set_sparse_true_errors():
    d = error_of(
        {
            "r": {
                "class": "reinterpret_data",
                "from": "data",
                "set_sparse": True,
                "set_sparse_dim": 3,
            }
        }
    )
    assert d.rule == "shape.sparse" and "[B, T(data), F=8]" in d.message
    assert d.path == ("network", "r", "set_sparse")
    net = {
        "r": {"class": "reinterpret_data", "from": "l", "set_sparse": True},
        "l": {"class": "length", "from": "data"},
    }
    d = error_of(net)
    assert d.rule == "shape.sparse" and d.path == ("network", "r", "set_sparse_dim")


def test_reinterpret_sparse_dim_on_dense_input():
    d = error_of({"r": {"class": "reinterpret_data", "from": "data", "increase_sparse_dim": 1}})
    assert d.rule == "shape.sparse" and "`data` [B, T(data), F=8]" in d.message
    assert d.path == ("network", "r", "increase_sparse_dim")


def test_reinterpret_size_base():
    net = {"r": {"class": "reinterpret_data", "from": "data:classes", "size_base": "data"}}
    assert shape_of(net) == "[B, T(data)] sparse(5)"


def test_reinterpret_size_base_without_time():
    d = error_of(
        {"r": {"class": "reinterpret_data", "from": "data:classes", "size_base": "data:vec"}}
    )
    assert d.rule == "shape.size-base" and "`data:vec` [B, F=8]" in d.message
    assert d.path == ("network", "r", "size_base")


def test_reinterpret_set_axes():
    assert (
        shape_of({"r": {"class": "reinterpret_data", "from": "data:grid", "set_axes": {"F": None}}})
        == "[B, T(grid), S=3, S=8]"
    )
    assert (
        shape_of(
            {"r": {"class": "reinterpret_data", "from": "data:grid", "set_axes": {"F": "dim:3"}}}
        )
        == "[B, T(grid), S=8, F=3]"
    )
    net = {
        "r": {"class": "reinterpret_data", "from": "k", "set_axes": {"T": "dim:2"}},
        "k": {
            "class": "constant",
            "from": [],
            "value": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
            "with_batch_dim": True,
        },
    }
    assert shape_of(net) == "[B, T(r), F=3]"


def test_reinterpret_set_axes_errors():
    d = error_of({"r": {"class": "reinterpret_data", "from": "data:grid", "set_axes": {"T": "F"}}})
    assert d.rule == "shape.set-axes" and "F=8" in d.message
    assert d.path == ("network", "r", "set_axes")
    d = error_of({"r": {"class": "reinterpret_data", "from": "data", "set_axes": {"X": 1}}})
    assert d.rule == "schema.unknown-option" or d.rule.startswith("schema")


# -- the front end does not import TensorFlow ------------------------------------------------------


def test_validation_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from netcompiler.frontend.validate import validate\n"
        "r = validate({'extern_data': {'data': {'dim': 3}, 'c': {'dim': 4, 'sparse': True}},\n"
        "  'network': {'a': {'class': 'activation', 'activation': 'relu'},\n"
        "    'e': {'class': 'eval', 'from': ['a', 'data'], 'eval': 'tf.tanh(source(0)) * source(1)'},\n"
        "    'k': {'class': 'constant', 'from': [], 'value': [1.0, 2.0, 3.0]},\n"
        "    'm': {'class': 'combine', 'kind': 'mul', 'from': ['e', 'k'], 'activation': 'relu'},\n"
        "    'ln': {'class': 'layer_norm', 'from': 'm'},\n"
        "    'd': {'class': 'dropout', 'from': 'ln', 'dropout': 0.1},\n"
        "    'q': {'class': 'compare', 'from': 'data:c', 'value': 0},\n"
        "    'l': {'class': 'length', 'from': 'data:c'},\n"
        "    'r': {'class': 'reinterpret_data', 'from': 'data:c', 'size_base': 'data'},\n"
        "    'output': {'class': 'copy', 'from': 'd'}}})\n"
        "assert r.errors == [], r.errors\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- n_out from the target: + 1 blank with `loss: ctc` (RETURNN's CtcLoss) --------------------------


def test_ctc_output_size_from_target_adds_blank():
    ext = {"data": {"dim": 8}, "classes": {"dim": 5, "sparse": True}}
    for cls in ("softmax", "linear"):
        got = shape_of(
            {"out": {"class": cls, "from": "data", "loss": "ctc", "target": "classes"}}, extern=ext
        )
        assert got == "[B, T(data), F=6]", cls  # 5 classes + blank (last)
        got = shape_of(
            {"out": {"class": cls, "from": "data", "loss": "ce", "target": "classes", "n_out": 5}},
            extern={**ext, "classes": {"dim": 5, "sparse": True, "same_time_as": "data"}},
        )
        assert got == "[B, T(data), F=5]", cls
    # without a loss (or with ce) the target's classes, as before
    ext_same = {**ext, "classes": {"dim": 5, "sparse": True, "same_time_as": "data"}}
    assert (
        shape_of(
            {"out": {"class": "softmax", "from": "data", "loss": "ce", "target": "classes"}},
            extern=ext_same,
        )
        == "[B, T(data), F=5]"
    )
    # an explicit n_out is kept (and checked by the loss)
    e = error_of(
        {
            "out": {
                "class": "softmax",
                "from": "data",
                "loss": "ctc",
                "target": "classes",
                "n_out": 5,
            }
        },
        extern=ext,
    )
    assert e.rule == "shape.loss-target" and "6 output features" in e.message


# -- rec / rnn_cell unit names as RETURNN accepts them ----------------------------------------------


@pytest.mark.parametrize(
    "unit",
    [
        "lstm",
        "LSTM",
        "NativeLstm2",
        "nativelstm2",
        "NativeLSTM",
        "nativelstm",
        "NativeLstmLowMem",
        "VanillaLSTM",
        "lstmp",
        "StandardLSTM",
        "standardlstm",
        "BasicLSTM",
        "LSTMBlock",
        "lstmblock",
        "LSTMBlockFused",
        "GRU",
        "gru",
    ],
)
@pytest.mark.parametrize("cls", ["rec", "rnn_cell"])
def test_cell_unit_names_case_insensitive(unit, cls):
    gates = 3 if unit.lower() == "gru" else 4
    result = run({"r": {"class": cls, "unit": unit, "n_out": 6, "from": "data"}})
    assert result.errors == [], [d.full_message() for d in result.errors]
    assert str(result.inferred.shapes["r"]) == "[B, T(data), F=6]"
    params = {k: tuple(p.shape) for k, p in result.inferred.params["r"].items()}
    assert params == {"W": (8, gates * 6), "W_re": (6, gates * 6), "b": (gates * 6,)}


@pytest.mark.parametrize(
    "unit",
    [
        "zoneoutlstm",
        "BasicRNN",
        "rhn",
        "LSTMCell",
        "cudnngru",
        "GRUBlock",
        "layernormvariantslstm",
        "twodnativelstm",
    ],
)
@pytest.mark.parametrize("cls", ["rec", "rnn_cell"])
def test_unsupported_cell_units_are_errors(unit, cls):
    e = error_of({"r": {"class": cls, "unit": unit, "n_out": 6, "from": "data"}})
    assert e.path == ("network", "r", "unit") and unit in e.message and "nativelstm2" in e.message


def test_cell_unit_opts():
    # TF's LSTMCell (StandardLSTM / BasicLSTM) takes `forget_bias`; LSTMBlock as a cell too
    for cls, unit in (("rec", "StandardLSTM"), ("rec", "basiclstm"), ("rnn_cell", "LSTMBlock")):
        assert (
            run(
                {
                    "r": {
                        "class": cls,
                        "unit": unit,
                        "n_out": 6,
                        "from": "data",
                        "unit_opts": {"forget_bias": 0.0},
                    }
                }
            ).errors
            == []
        )
    # anything else would change what is computed without saying so: an error
    for cls, unit, opts in (
        ("rec", "nativelstm2", {"forget_bias": 1.0}),
        ("rec", "LSTMBlock", {"forget_bias": 1.0}),  # NativeLSTM2 over time
        ("rec", "nativelstm2", {"use_peepholes": True}),
        ("rnn_cell", "gru", {"forget_bias": 1.0}),
        ("rec", "basiclstm", {"forget_bias": "one"}),
    ):
        e = error_of(
            {"r": {"class": cls, "unit": unit, "n_out": 6, "from": "data", "unit_opts": opts}}
        )
        assert e.rule == "shape.cell-unit" and e.path == ("network", "r", "unit_opts"), (unit, e)
