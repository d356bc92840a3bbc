"""`eval` expressions are checked once, in the graph phase, independently of shape inference;
an expression error keeps its own rule (`expr.python-call` for reaching into RETURNN's Python
objects) and is reported exactly once, at `network.<layer>.eval`."""

import pytest

from netcompiler.frontend.expr import PYTHON_CALL_RULE, ExprError, parse_expression
from netcompiler.frontend.validate import validate

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


@pytest.mark.parametrize(
    "text,token",
    [
        ("py_print(source(0), ['x', tf.shape(source(0))])", "py_print"),
        ("source(0) + py_print", "py_print"),
        (
            "tf.not_equal(source(0, auto_convert=False, as_data=True).copy_as_batch_major()"
            ".placeholder, 0)",
            ".placeholder",
        ),
        ("source(0).placeholder * 2", ".placeholder"),
        ("tf.minimum(source(0), source(0, as_data=True).time_dimension() - 1)", ".time_dimension"),
        ("tf.less(3, source(0).get_sequence_lengths())", ".get_sequence_lengths"),
        ("source(0, as_data=True) + 1", "as_data=True"),
        ("source(0, as_layer=True)", "as_layer=True"),
        ("self.network.get_rec_step_index()", "self"),
        ("source(0) * network", "network"),
    ],
)
def test_reaching_into_returnn_objects_is_a_python_call(text, token):
    with pytest.raises(ExprError) as info:
        parse_expression(text, 1)
    assert info.value.rule == PYTHON_CALL_RULE
    assert token in info.value.message
    assert "never runs Python from a config" in info.value.message


@pytest.mark.parametrize(
    "text",
    ["source(0).__class__", "foo(source(0))", "source(0)[0]", "source(0, as_data=False) + 1"],
)
def test_other_expressions_keep_the_generic_error(text):
    try:
        parse_expression(text, 1)
    except ExprError as exc:
        assert exc.rule is None
    else:
        assert text == "source(0, as_data=False) + 1"  # allowed: the values


def _errors(network):
    r = validate({"extern_data": EXTERN, "network": network})
    return [(d.rule, d.dotted_path) for d in r.errors]


def test_an_eval_error_is_found_when_its_input_fails():
    errors = _errors(
        {
            "l": {"class": "rec", "unit": "lstm", "from": "data", "n_out": 4},
            "g": {"class": "get_last_hidden_state", "from": "l", "n_out": 5},  # state size 8
            "e": {"class": "eval", "from": "g", "eval": "py_print(source(0), [1])"},
            "output": {"class": "copy", "from": "e"},
        }
    )
    assert sorted(errors) == [
        ("expr.python-call", "network.e.eval"),
        ("shape.n-out", "network.g.n_out"),
    ]


def test_an_eval_error_is_reported_once_with_its_rule():
    errors = _errors(
        {
            "e": {"class": "eval", "from": "data", "eval": "source(0).placeholder"},
            "output": {"class": "copy", "from": "e"},
        }
    )
    assert errors == [("expr.python-call", "network.e.eval")]
    errors = _errors(
        {
            "e": {"class": "eval", "from": "data", "eval": "source(0) +"},
            "output": {"class": "copy", "from": "e"},
        }
    )
    assert errors == [("shape.eval", "network.e.eval")]
    # the number of inputs is a shape check (once too)
    errors = _errors(
        {
            "e": {"class": "eval", "from": "data", "eval": "source(1)"},
            "output": {"class": "copy", "from": "e"},
        }
    )
    assert errors == [("shape.eval", "network.e.eval")]


def test_eval_errors_without_shape_inference():
    # a dependency cycle stops shape inference; the expressions are still checked
    errors = _errors(
        {
            "a": {"class": "copy", "from": "b"},
            "b": {"class": "eval", "from": "a", "eval": "self.network.global_train_step"},
            "output": {"class": "copy", "from": "b"},
        }
    )
    assert ("expr.python-call", "network.b.eval") in errors
    assert any(rule == "graph.cycle" for rule, _ in errors)


def test_combine_eval_and_rec_units():
    errors = _errors(
        {
            "c": {
                "class": "combine",
                "kind": "eval",
                "from": ["data", "data"],
                "eval": "source(0, as_data=True).time_dimension() * source(1)",
            },
            "d": {
                "class": "combine",
                "kind": "add",
                "from": ["data", "data"],
                "eval": "py_print(1)",
            },  # ignored (a warning): not checked
            "output": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "x": {
                        "class": "eval",
                        "from": "data:source",
                        "eval": "source(0) * py_print(source(0), [])",
                    },
                    "output": {"class": "copy", "from": "x"},
                },
            },
            "o2": {"class": "combine", "kind": "add", "from": ["c", "d"], "is_output_layer": True},
        }
    )
    assert sorted(errors) == [
        ("expr.python-call", "network.c.eval"),
        ("expr.python-call", "network.output.unit.x.eval"),
    ]
