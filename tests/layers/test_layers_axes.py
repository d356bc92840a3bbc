"""Phase 1 (front end) of the axis-manipulating and time layers: output shapes, shape errors
(rule id, message naming layer and shape, config path) and parameter shapes of reduce,
split_dims, merge_dims, combine_dims, expand_dims, squeeze, slice, window, postfix_in_time,
prefix_in_time, conv and pool."""

from __future__ import annotations

import sys

import pytest

from netcompiler.frontend.validate import validate

EXTERN = {
    "data": {"dim": 32},  # [B, T(data), F=32]
    "cls": {"dim": 5, "sparse": True},  # [B, T(cls)] sparse(5)
    "img": {"shape": [None, 12, 3]},  # [B, T(img), S=12, F=3]
    "vec": {"shape": [6]},  # [B, F=6]
    "grid": {"shape": [None, 3, 4, 8]},  # [B, T(grid), S=3, S=4, F=8]
}


def infer(network: dict, extern: dict | None = None):
    extern = dict(extern or EXTERN)
    extern.setdefault("out", {"shape": [2]})
    network = dict(network)
    network.setdefault("output", {"class": "linear", "from": "data:out", "n_out": 1})
    return validate({"extern_data": extern, "network": network})


def shapes_of(network: dict, extern: dict | None = None) -> dict[str, str]:
    result = infer(network, extern)
    assert result.errors == [], [d.full_message() for d in result.errors]
    return {name: str(s) for name, s in result.inferred.shapes.items()}


def shape(layer: dict, extern: dict | None = None) -> str:
    return shapes_of({"x": layer}, extern)["x"]


def error(network: dict, extern: dict | None = None):
    """The one error of a config."""
    result = infer(network, extern)
    assert len(result.errors) == 1, [d.full_message() for d in result.errors]
    return result.errors[0]


def params(layer: dict, extern: dict | None = None) -> dict[str, tuple]:
    result = infer({"x": layer}, extern)
    assert result.errors == [], [d.full_message() for d in result.errors]
    return {k: tuple(p.shape) for k, p in result.inferred.params["x"].items()}


# -- reduce ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"mode": "mean", "axes": "T"}, "[B, F=32]"),
        ({"mode": "sum", "axis": "T"}, "[B, F=32]"),
        ({"mode": "max", "axes": "F"}, "[B, T(data)]"),
        ({"mode": "logsumexp", "axes": ["T", "F"]}, "[B]"),
        ({"mode": "min", "axes": "T", "keep_dims": True}, "[B, S=1, F=32]"),
        ({"mode": "mean", "axes": "F", "keep_dims": True}, "[B, T(data), F=1]"),
        ({"mode": "sum", "axes": "B"}, "[T(data), F=32]"),
        ({"mode": "sum", "axes": "stag:data"}, "[B, F=32]"),
    ],
)
def test_reduce_shapes(layer, expected):
    assert shape({"class": "reduce", **layer}) == expected


def test_reduce_static_axes_and_param_free():
    # `static` is every static axis, the feature axis included (RETURNN)
    assert (
        shape({"class": "reduce", "mode": "mean", "axes": "static", "from": "data:grid"})
        == "[B, T(grid)]"
    )
    assert (
        shape(
            {"class": "reduce", "mode": "mean", "axes": "spatial_except_time", "from": "data:grid"}
        )
        == "[B, T(grid), F=8]"
    )
    assert (
        shape({"class": "reduce", "mode": "sum", "axes": "dim:4", "from": "data:grid"})
        == "[B, T(grid), S=3, F=8]"
    )
    assert params({"class": "reduce", "mode": "sum", "axes": "T"}) == {}


def test_reduce_errors():
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": "T", "axis": "F"}})
    assert e.rule == "shape.reduce-axes" and e.path == ("network", "x", "axis")
    e = error({"x": {"class": "reduce", "mode": "sum"}})
    assert e.rule == "shape.missing-option" and "`data` [B, T(data), F=32]" in e.message
    assert e.path == ("network", "x")
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": "T", "from": "data:cls"}})
    assert e.rule == "shape.sparse-input" and "`data:cls` [B, T(cls)] sparse(5)" in e.message
    assert e.path == ("network", "x", "from")
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": "T", "from": "data:vec"}})
    assert e.rule == "shape.axis" and "[B, F=6]" in e.message and e.path[-1] == "axes"
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": "B", "keep_dims": True}})
    assert e.rule == "shape.reduce-axes" and e.path == ("network", "x", "keep_dims")
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": "T", "n_out": 3}})
    assert e.rule == "shape.n-out" and "[B, F=32]" in e.message and e.path[-1] == "n_out"
    e = error({"x": {"class": "reduce", "mode": "sum", "axes": []}})
    assert e.rule == "shape.axis" and e.path == ("network", "x", "axes")
    e = error({"x": {"class": "reduce", "mode": "median", "axes": "T"}})
    assert e.rule.startswith("schema.") and e.path == ("network", "x", "mode")


# -- split_dims --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"axis": "F", "dims": [4, 8]}, "[B, T(data), S=4, F=8]"),
        ({"axis": "F", "dims": [4, -1]}, "[B, T(data), S=4, F=8]"),
        ({"axis": "F", "dims": [-1, 2, 4]}, "[B, T(data), S=4, S=2, F=4]"),
        ({"axis": "F", "dims": [32]}, "[B, T(data), F=32]"),
        ({"axis": "T", "dims": [-1, 3]}, "[B, T(x), S=3, F=32]"),
    ],
)
def test_split_dims_shapes(layer, expected):
    assert shape({"class": "split_dims", **layer}) == expected


def test_split_dims_static_and_sparse():
    assert (
        shape({"class": "split_dims", "axis": "dim:12", "dims": [3, 4], "from": "data:img"})
        == "[B, T(img), S=3, S=4, F=3]"
    )
    assert (
        shape({"class": "split_dims", "axis": "T", "dims": [-1, 2], "from": "data:cls"})
        == "[B, T(x), S=2] sparse(5)"
    )
    assert params({"class": "split_dims", "axis": "F", "dims": [4, 8]}) == {}


def test_split_dims_errors():
    e = error({"x": {"class": "split_dims", "axis": "F", "dims": [5, 7]}})
    assert e.rule == "shape.split-dims" and e.path == ("network", "x", "dims")
    assert "`data` [B, T(data), F=32]" in e.message and "35" in e.message
    e = error({"x": {"class": "split_dims", "axis": "F", "dims": [5, -1]}})
    assert e.rule == "shape.split-dims" and "not divisible by 5" in e.message
    e = error({"x": {"class": "split_dims", "axis": "F", "dims": [-1, -1]}})
    assert e.rule == "shape.split-dims" and "at most once" in e.message
    e = error({"x": {"class": "split_dims", "axis": "T", "dims": [2, -1]}})
    assert e.rule == "shape.split-dims" and "T(data)" in e.message and e.path[-1] == "dims"
    e = error({"x": {"class": "split_dims", "axis": "B", "dims": [2, -1]}})
    assert e.rule == "shape.split-dims" and e.path[-1] == "axis"
    e = error({"x": {"class": "split_dims", "axis": "F", "dims": [4, 8], "from": "data:cls"}})
    assert e.rule == "shape.axis" and "sparse(5)" in e.message


# -- merge_dims / combine_dims -----------------------------------------------------------------


def test_merge_dims_shapes():
    g = {"from": "data:grid"}
    # `static` includes the feature axis (RETURNN): all static axes into the feature axis
    assert shape({"class": "merge_dims", "axes": "static", **g}) == "[B, T(grid), F=96]"
    assert (
        shape({"class": "merge_dims", "axes": "spatial_except_time", **g})
        == "[B, T(grid), S=12, F=8]"
    )
    assert (
        shape({"class": "merge_dims", "axes": ["static:0", "static:1"], **g})
        == "[B, T(grid), S=12, F=8]"
    )
    assert shape({"class": "merge_dims", "axes": ["dim:4", "F"], **g}) == "[B, T(grid), S=3, F=32]"
    assert shape({"class": "merge_dims", "axes": ["static", "F"], **g}) == "[B, T(grid), F=96]"
    assert shape({"class": "merge_dims", "axes": "dim:3", **g}) == "[B, T(grid), S=3, S=4, F=8]"
    # split then merge back
    assert (
        shapes_of(
            {
                "s": {"class": "split_dims", "axis": "F", "dims": [4, 8]},
                "x": {"class": "merge_dims", "from": "s", "axes": ["static", "F"]},
            }
        )["x"]
        == "[B, T(data), F=32]"
    )
    assert params({"class": "merge_dims", "axes": "static", **g}) == {}


def test_merge_dims_errors():
    e = error({"x": {"class": "merge_dims", "axes": ["T", "F"]}})
    assert e.rule == "shape.merge-dynamic" and e.path == ("network", "x", "axes")
    assert "T(data)" in e.message and "`data` [B, T(data), F=32]" in e.message
    e = error({"x": {"class": "merge_dims", "axes": "spatial_except_time"}})
    assert e.rule == "shape.axis" and e.path == ("network", "x", "axes")
    e = error({"x": {"class": "merge_dims", "axes": []}})
    assert e.rule == "shape.axis" and "`data` [B, T(data), F=32]" in e.message


def test_combine_dims_shapes():
    assert (
        shape({"class": "combine_dims", "axes": "static", "from": "data:grid"})
        == "[B, T(grid), F=96]"
    )
    assert (
        shape({"class": "combine_dims", "axes": ["dim:4"], "from": "data:grid"})
        == "[B, T(grid), S=3, F=32]"
    )
    assert shape({"class": "combine_dims", "axes": "static"}) == "[B, T(data), F=32]"
    # as in copy_gauss_window: [B, S=3, F=32] -> [B, F=96]
    assert (
        shapes_of(
            {
                "s": {"class": "split_dims", "axis": "F", "dims": [3, 32], "from": "data:w"},
                "x": {"class": "combine_dims", "from": "s", "axes": "static"},
            },
            {"w": {"shape": [96]}},
        )["x"]
        == "[B, F=96]"
    )


def test_combine_dims_errors():
    e = error({"x": {"class": "combine_dims", "axes": "static", "from": "data:cls"}})
    assert e.rule == "shape.no-feature" and "`data:cls` [B, T(cls)] sparse(5)" in e.message
    assert e.path == ("network", "x", "from")
    e = error({"x": {"class": "combine_dims", "axes": ["T"]}})
    assert e.rule == "shape.merge-dynamic" and "T(data)" in e.message
    e = error({"x": {"class": "combine_dims", "axes": "static", "n_out": 5, "from": "data:grid"}})
    assert e.rule == "shape.n-out" and "F=96" in e.message


# -- expand_dims / squeeze ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"axis": "F"}, "[B, T(data), S=32, F=1]"),
        ({"axis": "T"}, "[B, T(data), S=1, F=32]"),
        ({"axis": "spatial", "dim": 3}, "[B, T(data), S=3, F=32]"),
        ({"axis": 0}, "[B, S=1, T(data), F=32]"),
        ({"axis": 1}, "[B, T(data), S=1, F=32]"),
        ({"axis": -1}, "[B, T(data), S=32, F=1]"),
        ({"axis": 0, "from": "data:cls"}, "[B, S=1, T(cls)] sparse(5)"),
        ({"axis": "T", "from": "data:cls"}, "[B, T(cls), S=1] sparse(5)"),
        ({"axis": "F", "from": "data:vec", "dim": 2}, "[B, S=6, F=2]"),
    ],
)
def test_expand_dims_shapes(layer, expected):
    assert shape({"class": "expand_dims", **layer}) == expected


def test_expand_dims_errors():
    e = error({"x": {"class": "expand_dims", "axis": "F", "from": "data:cls"}})
    assert e.rule == "shape.sparse-input" and "`data:cls` [B, T(cls)] sparse(5)" in e.message
    assert e.path == ("network", "x", "axis")
    e = error({"x": {"class": "expand_dims", "axis": 5}})
    assert e.rule == "shape.axis" and "[B, T(data), F=32]" in e.message
    e = error({"x": {"class": "expand_dims", "axis": "B"}})
    assert e.rule == "shape.axis" and e.path == ("network", "x", "axis")


def test_squeeze_shapes():
    net = {
        "e": {"class": "expand_dims", "axis": "T"},
        "f": {"class": "expand_dims", "axis": "F"},
        "x1": {"class": "squeeze", "from": "e", "axis": "static"},
        "x2": {"class": "squeeze", "from": "e", "axis": "dim:1"},
        "x3": {"class": "reduce", "from": "data", "mode": "sum", "axes": "F", "keep_dims": True},
        "x4": {"class": "squeeze", "from": "x3", "axis": "F"},
        "x5": {"class": "squeeze", "from": "data:grid", "axis": "static", "allow_no_op": True},
    }
    s = shapes_of(net)
    assert s["x1"] == s["x2"] == "[B, T(data), F=32]"
    assert s["x4"] == "[B, T(data)]"
    assert s["x5"] == "[B, T(grid), S=3, S=4, F=8]"
    assert (
        params({"class": "squeeze", "axis": "F", "from": "data:one"}, {"one": {"shape": [None, 1]}})
        == {}
    )


def test_squeeze_errors():
    e = error({"x": {"class": "squeeze", "axis": "T"}})
    assert e.rule == "shape.squeeze" and "T(data)" in e.message and e.path[-1] == "axis"
    e = error({"x": {"class": "squeeze", "axis": "F"}})
    assert e.rule == "shape.squeeze" and "`data` [B, T(data), F=32]" in e.message
    e = error({"x": {"class": "squeeze", "axis": "static", "from": "data:grid"}})
    assert e.rule == "shape.squeeze" and "allow_no_op" in (e.hint or "")


# -- slice -------------------------------------------------------------------------------------


def test_slice_shapes():
    assert shape({"class": "slice", "axis": "T", "slice_start": 1}) == "[B, T(x), F=32]"
    assert (
        shape({"class": "slice", "axis": "T", "slice_end": -1, "slice_step": 2, "from": "data:cls"})
        == "[B, T(x)] sparse(5)"
    )
    assert (
        shape({"class": "slice", "axis": "F", "slice_start": 2, "slice_end": 10})
        == "[B, T(data), F=8]"
    )
    assert shape({"class": "slice", "axis": "F", "slice_step": 3}) == "[B, T(data), F=11]"
    assert shape({"class": "slice", "axis": "F", "slice_start": -4}) == "[B, T(data), F=4]"
    assert (
        shape(
            {
                "class": "slice",
                "axis": "dim:12",
                "slice_start": 2,
                "slice_step": 5,
                "from": "data:img",
            }
        )
        == "[B, T(img), S=2, F=3]"
    )
    # the new time axis is a different axis from the input's
    result = infer({"x": {"class": "slice", "axis": "T", "slice_start": 1}})
    assert result.inferred.shapes["x"].time is not result.inferred.extern["data"].time
    assert params({"class": "slice", "axis": "F", "slice_end": 4}) == {}


def test_slice_errors():
    e = error({"x": {"class": "slice", "axis": "F", "slice_start": 40}})
    assert e.rule == "shape.slice-empty" and "`data` [B, T(data), F=32]" in e.message
    assert e.path == ("network", "x", "slice_start")
    e = error({"x": {"class": "slice", "axis": "B", "slice_start": 1}})
    assert e.rule == "shape.axis" and e.path[-1] == "axis"
    e = error({"x": {"class": "slice", "axis": "T", "slice_step": 0}})
    assert e.rule.startswith("schema.") and e.path == ("network", "x", "slice_step")


# -- window ------------------------------------------------------------------------------------


def test_window_shapes():
    assert shape({"class": "window", "window_size": 5}) == "[B, T(data), S=5, F=32]"
    assert (
        shape({"class": "window", "window_size": 3, "padding": "valid"}) == "[B, T(x), S=3, F=32]"
    )
    assert (
        shape({"class": "window", "window_size": 3, "from": "data:cls"})
        == "[B, T(cls), S=3] sparse(5)"
    )
    assert (
        shape(
            {
                "class": "window",
                "window_size": 4,
                "axis": "dim:12",
                "padding": "valid",
                "from": "data:img",
            }
        )
        == "[B, T(img), S=9, S=4, F=3]"
    )
    result = infer({"x": {"class": "window", "window_size": 3}})
    assert result.inferred.shapes["x"].time is result.inferred.extern["data"].time
    assert params({"class": "window", "window_size": 3}) == {}


def test_window_errors():
    e = error({"x": {"class": "window", "window_size": 3, "window_left": 2, "window_right": 2}})
    assert e.rule == "shape.window" and e.path == ("network", "x", "window_left")
    e = error({"x": {"class": "window", "window_size": 3, "window_left": 5}})
    assert e.rule == "shape.window" and e.path == ("network", "x", "window_right")
    e = error({"x": {"class": "window", "window_size": 3, "axis": "F"}})
    assert e.rule == "shape.axis" and "`data` [B, T(data), F=32]" in e.message
    e = error(
        {
            "x": {
                "class": "window",
                "window_size": 13,
                "axis": "dim:12",
                "padding": "valid",
                "from": "data:img",
            }
        }
    )
    assert e.rule == "shape.window" and "S=12" in e.message and e.path[-1] == "window_size"
    e = error({"x": {"class": "window", "window_size": 3, "from": "data:vec"}})
    assert e.rule == "shape.axis" and "[B, F=6]" in e.message


# -- postfix_in_time / prefix_in_time ----------------------------------------------------------


def test_time_extend_shapes():
    s = shapes_of(
        {
            "post": {"class": "postfix_in_time", "postfix": 1.0, "repeat": 2},
            "pre": {"class": "prefix_in_time", "from": "data:cls", "prefix": 0},
            "pre2": {"class": "prefix_in_time", "from": "data:grid"},
        }
    )
    assert s["post"] == "[B, T(post), F=32]"
    assert s["pre"] == "[B, T(pre)] sparse(5)"
    assert s["pre2"] == "[B, T(pre2), S=3, S=4, F=8]"
    assert params({"class": "postfix_in_time"}) == {}


def test_time_extend_errors():
    e = error({"x": {"class": "postfix_in_time", "from": "data:vec"}})
    assert e.rule == "shape.no-time" and "`data:vec` [B, F=6]" in e.message
    assert e.path == ("network", "x", "from")
    e = error({"x": {"class": "prefix_in_time", "from": "data:cls", "prefix": 0.5}})
    assert e.rule == "shape.sparse-value" and "sparse(5)" in e.message
    assert e.path == ("network", "x", "prefix")
    e = error({"x": {"class": "prefix_in_time", "repeat": 0}})
    assert e.rule.startswith("schema.") and e.path == ("network", "x", "repeat")
    result = infer({"x": {"class": "postfix_in_time", "from": "data:cls", "postfix": 7}})
    assert result.errors == []
    assert [w.rule for w in result.warnings if w.rule.startswith("shape")] == ["shape.sparse-value"]


# -- conv / pool -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"filter_size": [3], "n_out": 8}, "[B, T(data), F=8]"),
        ({"filter_size": [3], "n_out": 8, "dilation_rate": 2}, "[B, T(data), F=8]"),
        ({"filter_size": [3], "n_out": 8, "padding": "valid"}, "[B, T(x), F=8]"),
        ({"filter_size": [3], "n_out": 8, "strides": 2}, "[B, T(x), F=8]"),
        ({"filter_size": [3, 3], "n_out": 4, "from": "data:img"}, "[B, T(img), S=12, F=4]"),
        (
            {"filter_size": [3, 3], "n_out": 4, "from": "data:img", "padding": "valid"},
            "[B, T(x), S=10, F=4]",
        ),
        (
            {"filter_size": [3, 3], "n_out": 4, "from": "data:img", "strides": [1, 2]},
            "[B, T(img), S=6, F=4]",
        ),
        (
            {"filter_size": [3, 3], "n_out": 4, "from": "data:img", "strides": [1, 5]},
            "[B, T(img), S=3, F=4]",
        ),
        (
            {
                "filter_size": [1, 3],
                "n_out": 4,
                "from": "data:img",
                "padding": "valid",
                "dilation_rate": [1, 4],
                "strides": 2,
            },
            "[B, T(x), S=2, F=4]",
        ),
    ],
)
def test_conv_shapes(layer, expected):
    assert shape({"class": "conv", **layer}) == expected


def test_conv_params():
    assert params({"class": "conv", "filter_size": [3], "n_out": 8}) == {"W": (3, 32, 8), "b": (8,)}
    assert params(
        {"class": "conv", "filter_size": [3, 5], "n_out": 4, "from": "data:img", "with_bias": False}
    ) == {"W": (3, 5, 3, 4)}
    result = infer({"x": {"class": "conv", "filter_size": [3], "n_out": 8}})
    assert result.inferred.param_count("x") == 3 * 32 * 8 + 8


def test_conv_errors():
    e = error({"x": {"class": "conv", "filter_size": [3, 3], "n_out": 8}})
    assert e.rule == "shape.conv-dims" and "`data` [B, T(data), F=32]" in e.message
    assert e.path == ("network", "x", "filter_size")
    e = error({"x": {"class": "conv", "filter_size": [3], "n_out": 8, "from": "data:cls"}})
    assert e.rule == "shape.no-feature" and "`data:cls` [B, T(cls)] sparse(5)" in e.message
    assert e.path == ("network", "x", "from")
    e = error(
        {
            "x": {
                "class": "conv",
                "filter_size": [3, 3],
                "n_out": 8,
                "from": "data:img",
                "strides": [1, 2, 2],
            }
        }
    )
    assert e.rule == "shape.conv-dims" and e.path == ("network", "x", "strides")
    e = error(
        {
            "x": {
                "class": "conv",
                "filter_size": [3, 13],
                "n_out": 8,
                "from": "data:img",
                "padding": "valid",
            }
        }
    )
    assert e.rule == "shape.conv-size" and "S=12" in e.message
    e = error({"x": {"class": "conv", "filter_size": [3]}})
    assert e.rule == "schema.missing-option" and "n_out" in e.message


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"mode": "max", "pool_size": [2]}, "[B, T(x), F=32]"),
        ({"mode": "avg", "pool_size": [3], "padding": "same", "strides": 1}, "[B, T(data), F=32]"),
        ({"mode": "max", "pool_size": [2, 3], "from": "data:img"}, "[B, T(x), S=4, F=3]"),
        # strides default to pool_size: 1 on the time axis, so with `same` it keeps its identity
        (
            {"mode": "avg", "pool_size": [1, 5], "from": "data:img", "padding": "same"},
            "[B, T(img), S=3, F=3]",
        ),
        (
            {
                "mode": "max",
                "pool_size": [1, 2],
                "from": "data:img",
                "padding": "same",
                "strides": [1, 2],
            },
            "[B, T(img), S=6, F=3]",
        ),
    ],
)
def test_pool_shapes(layer, expected):
    assert shape({"class": "pool", **layer}) == expected


def test_pool_errors_and_params():
    assert params({"class": "pool", "mode": "max", "pool_size": [2]}) == {}
    e = error({"x": {"class": "pool", "mode": "max", "pool_size": [2], "from": "data:vec"}})
    assert e.rule == "shape.conv-dims" and "`data:vec` [B, F=6]" in e.message
    assert e.path == ("network", "x", "pool_size")
    e = error({"x": {"class": "pool", "mode": "max", "pool_size": [2], "n_out": 3}})
    assert e.rule == "shape.n-out" and "[B, T(x), F=32]" in e.message
    e = error({"x": {"class": "pool", "mode": "sum", "pool_size": [2]}})
    assert e.rule.startswith("schema.") and e.path == ("network", "x", "mode")


def test_new_time_axes_are_distinct_and_chain():
    """A new time axis feeds the next layer by identity: reduce over it, window over it."""
    s = shapes_of(
        {
            "c": {"class": "conv", "filter_size": [3], "n_out": 8, "strides": 2},
            "p": {"class": "pool", "mode": "max", "pool_size": [2], "from": "c"},
            "w": {"class": "window", "window_size": 2, "from": "p"},
            "x": {"class": "reduce", "mode": "mean", "axes": "stag:p", "from": "w"},
            "post": {"class": "postfix_in_time", "from": "c"},
        }
    )
    assert s["c"] == "[B, T(c), F=8]" and s["p"] == "[B, T(p), F=8]"
    assert s["w"] == "[B, T(p), S=2, F=8]" and s["x"] == "[B, S=2, F=8]"
    assert s["post"] == "[B, T(post), F=8]"


def test_inside_rec_unit_per_step_shapes():
    """Inside a rec unit frames have no time axis: axis layers work on the per-step shape."""
    result = infer(
        {
            "r": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "s": {
                        "class": "split_dims",
                        "from": "data:source",
                        "axis": "F",
                        "dims": [4, 8],
                    },
                    "m": {"class": "reduce", "from": "s", "mode": "max", "axes": "static:0"},
                    "e": {"class": "expand_dims", "from": "m", "axis": "spatial"},
                    "output": {"class": "combine_dims", "from": "e", "axes": "static"},
                },
            }
        }
    )
    assert result.errors == [], [d.full_message() for d in result.errors]
    shapes = {k: str(v) for k, v in result.inferred.shapes.items()}
    assert shapes["r/s"] == "[B, S=4, F=8]" and shapes["r/m"] == "[B, F=8]"
    assert shapes["r/e"] == "[B, S=1, F=8]" and shapes["r/output"] == "[B, F=8]"
    assert shapes["r"] == "[B, T(data), F=8]"
    bad = infer(
        {
            "r": {
                "class": "rec",
                "from": "data",
                "unit": {"output": {"class": "window", "from": "data:source", "window_size": 3}},
            }
        }
    )
    assert [d.rule for d in bad.errors] == ["shape.axis"]
    assert bad.errors[0].path == ("network", "r", "unit", "output", "axis")
    # `T` names the time axis of the data, not the loop: per step it is an error with a hint,
    # `T?` names no axis (RETURNN), so `reduce` over it leaves the frame as it is
    bad = infer(
        {
            "r": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "output": {"class": "reduce", "mode": "sum", "from": "data:source", "axes": "T"}
                },
            }
        }
    )
    assert [d.rule for d in bad.errors] == ["shape.axis"] and "per step" in bad.errors[0].hint
    ok = infer(
        {
            "r": {
                "class": "rec",
                "from": "data",
                "unit": {
                    "output": {
                        "class": "reduce",
                        "mode": "sum",
                        "from": "data:source",
                        "axes": "T?",
                    }
                },
            }
        }
    )
    assert ok.errors == [] and str(ok.inferred.shapes["r/output"]) == "[B, F=32]"


def test_validation_does_not_import_tensorflow():
    import subprocess  # a fresh interpreter: other tests may have imported TensorFlow

    code = (
        "import sys; from netcompiler.frontend.validate import validate; "
        "r = validate({'extern_data': {'data': {'dim': 4}}, 'network': {"
        "'a': {'class': 'conv', 'filter_size': [3], 'n_out': 2, 'strides': 2},"
        "'b': {'class': 'pool', 'from': 'a', 'mode': 'avg', 'pool_size': [2]},"
        "'c': {'class': 'slice', 'from': 'b', 'axis': 'T', 'slice_start': 1},"
        "'d': {'class': 'window', 'from': 'c', 'window_size': 3},"
        "'output': {'class': 'reduce', 'from': 'd', 'mode': 'mean', 'axes': 'T'}}});"
        "assert r.errors == [], r.errors; assert 'tensorflow' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )


# -- axis descriptions (RETURNN's Data.get_axes_from_description) ------------------------------

from netcompiler.core.dims import BATCH_DIM, Shape, feature_dim, spatial_dim, time_dim  # noqa: E402
from netcompiler.core.layer_rule import ShapeError  # noqa: E402
from netcompiler.layers._axes import resolve_axes, resolve_axis  # noqa: E402


class _Ctx:
    in_rec = False

    @staticmethod
    def error(message, option=None, rule="shape", hint=None):
        return ShapeError(message, option, rule, hint)


_TD = time_dim("data", "time:var:extern_data:data")
_T2 = time_dim("data#2", "spatial3:var:extern_data:data")
_TE = time_dim("enc")  # a time axis a layer made
# [B, T(data), S=3, T(data#2), S=4, F=5]
GRID = Shape((BATCH_DIM, _TD, spatial_dim(3), _T2, spatial_dim(4), feature_dim(5)))
# [T(enc), B, F=4]
TBF = Shape((_TE, BATCH_DIM, feature_dim(4)))
NOTIME = Shape((BATCH_DIM, spatial_dim(2), feature_dim(6)))  # [B, S=2, F=6]
SPARSE = Shape((BATCH_DIM, _TD, spatial_dim(3)), sparse_dim=7)  # [B, T(data), S=3] sparse(7)


@pytest.mark.parametrize(
    "shape, desc, expected",
    [
        (GRID, "B", [0]),
        (GRID, "batch", [0]),
        (TBF, "b", [1]),
        (GRID, "T", [1]),
        (GRID, "time", [1]),
        (TBF, "T", [0]),
        (GRID, "T?", [1]),
        (NOTIME, "T?", []),
        (NOTIME, ["T?", "F"], [2]),
        (GRID, "F", [5]),
        (GRID, "feature", [5]),
        (GRID, "non_spatial", [5]),
        (GRID, "*", [0, 1, 2, 3, 4, 5]),
        (TBF, "*", [0, 1, 2]),
        (GRID, "BT", [0, 1]),
        (GRID, "tf", [1, 5]),
        (TBF, "BTF", [1, 0, 2]),
        (GRID, "spatial", [1, 2, 3, 4]),
        (SPARSE, "spatial", [1, 2]),
        (GRID, "spatial:0", [1]),
        (GRID, "spatial:-1", [4]),
        (GRID, "s:2", [3]),
        (GRID, "spatial_except_time", [2, 3, 4]),
        (GRID, "dyn", [1, 3]),
        (GRID, "dynamic", [1, 3]),
        (GRID, "dyn:-1", [3]),
        (GRID, "d:0", [1]),
        # `static`: every static axis, the feature axis included
        (GRID, "static", [2, 4, 5]),
        (GRID, "static:0", [2]),
        (GRID, "static:-1", [5]),
        (GRID, "static:1", [4]),
        (SPARSE, "static", [2]),
        (NOTIME, "static", [1, 2]),
        (GRID, "except_batch", [1, 2, 3, 4, 5]),
        (TBF, "except_batch", [0, 2]),
        (GRID, "except_batch:1", [2]),
        (GRID, "except_batch:-1", [5]),
        (GRID, "except_time", [2, 3, 4, 5]),
        (TBF, "except_time", [2]),
        (NOTIME, "except_time", [1, 2]),
        (GRID, "dim:4", [4]),
        (GRID, "dim:5", [5]),
        # stag: the exact tag first, else a unique substring of RETURNN's description
        (GRID, "stag:data", [1]),
        (GRID, "stag:data#2", [3]),
        (TBF, "stag:enc", [0]),
        (GRID, "stag:time:var:extern_data:data", [1]),
        (GRID, "stag:TIME", [1]),
        (GRID, "stag:spatial3", [3]),
        (GRID, "stag:static4", [4]),
        (GRID, "T(data)", [1]),
        (GRID, "T(data#2)", [3]),
        (GRID, "tag:feature", [5]),
        (GRID, 0, [1]),
        (GRID, -1, [5]),
        (TBF, 0, [0]),
        (TBF, 1, [2]),
        (GRID, ["F", "T", "F"], [5, 1]),
    ],
)
def test_axis_descriptions(shape, desc, expected):
    assert resolve_axes(_Ctx, shape, desc, "axes") == expected


@pytest.mark.parametrize(
    "shape, desc, words",
    [
        (NOTIME, "T", ["names no axis", "T?"]),
        (NOTIME, "time", ["names no axis"]),
        (SPARSE, "F", ["names no axis", "sparse data", "7 classes"]),
        (NOTIME, "dyn", ["names no axis"]),
        (GRID, "static:3", ["3 such axes"]),
        (GRID, "spatial:4", ["4 such axes"]),
        (GRID, "stag:enc", ["names no axis"]),
        # `data` is a substring of both time axes' descriptions, but `data` is an exact tag;
        # `extern_data` is not, and is ambiguous: the error names both candidates
        (
            GRID,
            "stag:extern_data",
            ["ambiguous", "T(data)", "T(data#2)", "spatial3:var:extern_data:data"],
        ),
        (GRID, "stag:var", ["ambiguous"]),
        (Shape((BATCH_DIM, spatial_dim(3), feature_dim(3))), "dim:3", ["ambiguous", "2 axes"]),
        (GRID, "dim:7", ["names no axis"]),
        (GRID, "X", ["names no axis"]),
        (GRID, 5, ["names no axis"]),
    ],
)
def test_axis_description_errors(shape, desc, words):
    with pytest.raises(ShapeError) as info:
        resolve_axes(_Ctx, shape, desc, "axes")
    text = info.value.message + " " + (info.value.hint or "")
    for w in words:
        assert w in text, text


def test_axis_description_one_axis():
    assert resolve_axis(_Ctx, GRID, "stag:data", "axis") == 1
    with pytest.raises(ShapeError, match="must name one axis"):
        resolve_axis(_Ctx, GRID, "dyn", "axis")
    with pytest.raises(ShapeError, match="must name one axis"):
        resolve_axis(_Ctx, NOTIME, "T?", "axis")


def test_extern_axes_have_returnn_descriptions():
    """`stag:` matches RETURNN's descriptions of extern data axes, e.g.
    `time:var:extern_data:KEY`, and the exact key of a time axis first."""
    ext = {
        "data": {"dim": 32},
        "grid": {"shape": [None, 3, None, 8]},
        "cls": {"dim": 5, "sparse": True, "same_time_as": "data"},
    }
    got = shapes_of(
        {
            "a": {
                "class": "reduce",
                "mode": "sum",
                "axes": "stag:time:var:extern_data:grid",
                "from": "data:grid",
            },
            "b": {
                "class": "reduce",
                "mode": "sum",
                "axes": "stag:spatial3:var",
                "from": "data:grid",
            },
            "c": {
                "class": "reduce",
                "mode": "sum",
                "axes": "stag:spatial1:static3",
                "from": "data:grid",
            },
            "d": {"class": "reduce", "mode": "sum", "axes": "stag:extern_data:data"},
            "e": {"class": "reduce", "mode": "sum", "axes": "T?", "from": "data:out"},
        },
        ext,
    )
    assert got["a"] == "[B, S=3, T(grid#2), F=8]"
    assert got["b"] == "[B, T(grid), S=3, F=8]"
    assert got["c"] == "[B, T(grid), T(grid#2), F=8]"
    assert got["d"] == "[B, F=32]"
    assert got["e"] == "[B, F=2]"  # no time axis: nothing reduced
    e = error(
        {"x": {"class": "reduce", "mode": "sum", "axes": "stag:extern_data", "from": "data:grid"}},
        ext,
    )
    assert e.rule == "shape.axis" and "ambiguous" in e.message and "T(grid#2)" in e.message


def test_merge_dims_static_merges_attention_heads():
    """RETURNN's Transformer decoders merge heads with `merge_dims axes: static`:
    [B, T, H=4, D/H=8] -> [B, T, D=32] (the heads axis outermost)."""
    got = shapes_of(
        {
            "s": {"class": "split_dims", "axis": "F", "dims": [4, 8]},
            "x": {"class": "merge_dims", "from": "s", "axes": "static"},
        }
    )
    assert got["s"] == "[B, T(data), S=4, F=8]" and got["x"] == "[B, T(data), F=32]"
