"""Shape inference of `prev:` cycles the way RETURNN's template construction resolves them, and
RETURNN's config conventions (num_inputs/num_outputs, the default target, unified time axes).

Expected shapes are worked out by hand from the layer definitions in each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from netcompiler.core.dims import Dim
from netcompiler.frontend.conventions import extern_from_num_io
from netcompiler.frontend.shapes import InferredNetwork, ShapeContext
from netcompiler.frontend.validate import validate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO = CONFIGS / "returnn_demo_rec_self_att.yaml"


def shapes(result) -> dict[str, str]:
    return {name: str(shape) for name, shape in result.inferred.shapes.items()}


def errors(result) -> list[tuple[str, str]]:
    return [(d.rule, d.dotted_path) for d in result.errors]


def unit(layers: dict, **extern) -> dict:
    return {
        "extern_data": extern or {"data": {"dim": 3}},
        "network": {
            "rec": {"class": "rec", "from": "data", "unit": layers},
            "output": {"class": "copy", "from": "rec"},
        },
    }


def test_demo_cycle_resolves_without_n_out_on_the_cycle():
    result = validate(DEMO)
    assert not result.errors, [d.full_message() for d in result.errors]
    got = shapes(result)
    # data has 9 features; prev:output is the eval of two [B, 10] inputs
    assert got["rnn/output"] == "[B, F=10]"
    assert got["rnn/c"] == "[B, F=10]"
    assert got["rnn/self_att"] == "[B, F=20]"
    assert got["rnn/input"] == "[B, F=39]"  # 10 (prev:output) + 20 (self_att) + 9 (frame)
    assert got["rnn"] == "[B, T(data), F=10]"
    assert got["output"] == "[B, T(data), F=2]"
    # self_att reads prev:output (10) + the frame (9): QKV is [19, 2*20 + 20]
    assert tuple(result.inferred.params["rnn/self_att"]["QKV"].shape) == (19, 60)


def test_prev_of_a_layer_without_own_size_takes_the_next_pass():
    # `acc` has no size of its own: pass 1 sees only the frame, pass 2 reads acc's shape
    result = validate(
        unit(
            {
                "lin": {"class": "linear", "from": "data:source", "n_out": 4},
                "acc": {"class": "combine", "kind": "add", "from": ["prev:acc", "lin"]},
                "output": {"class": "copy", "from": "acc"},
            }
        )
    )
    assert not result.errors, errors(result)
    assert shapes(result)["rec/acc"] == "[B, F=4]"
    assert shapes(result)["rec"] == "[B, T(data), F=4]"


def test_guess_from_initial_output_layer():
    cfg = unit(
        {
            "s": {"class": "copy", "from": ["prev:s"], "initial_output": "base:init"},
            "output": {"class": "copy", "from": "s"},
        }
    )
    cfg["network"]["init"] = {"class": "reduce", "mode": "max", "axis": "T", "from": "data"}
    result = validate(cfg)
    # init is [B, F=3]: prev:s takes that shape, s copies it
    assert not result.errors, errors(result)
    assert shapes(result)["rec/s"] == "[B, F=3]"


def test_growing_cycle_is_reported_as_not_settling():
    # prev:x starts as init [B, 3]; then x = [prev:x; frame] gains 3 features every pass
    cfg = unit(
        {
            "x": {
                "class": "copy",
                "from": ["prev:x", "data:source"],
                "initial_output": "base:init",
            },
            "output": {"class": "copy", "from": "x"},
        }
    )
    cfg["network"]["init"] = {"class": "reduce", "mode": "max", "axis": "T", "from": "data"}
    result = validate(cfg)
    rules = [r for r, _ in errors(result)]
    assert "shape.prev-diverges" in rules
    diag = next(d for d in result.errors if d.rule == "shape.prev-diverges")
    assert "does not settle" in diag.message and diag.dotted_path.startswith("network.rec.unit.x")


def test_cycle_with_no_size_names_prev_and_suggests_n_out():
    result = validate(
        unit(
            {
                "a": {"class": "copy", "from": "prev:output"},
                "output": {"class": "copy", "from": "a"},
            }
        )
    )
    diags = [d for d in result.errors if d.rule == "shape.prev"]
    assert len(diags) == 1
    assert "prev:output" in diags[0].message and "n_out" in diags[0].hint


def test_final_pass_reports_the_real_blocker():
    # the cycle would resolve through `lin`'s n_out, but `lin` has an input of the wrong kind:
    # that is what the user must see, not "cannot infer prev:output"
    result = validate(
        unit(
            {
                "lin": {"class": "linear", "from": ["prev:output", "data:source"], "n_out": 4},
                "att": {"class": "dot", "from": ["lin", "lin"], "red1": "T", "red2": "T"},
                "output": {"class": "copy", "from": "att"},
            }
        )
    )
    rules = [r for r, _ in errors(result)]
    assert rules, "expected an error"
    assert "shape.prev" not in rules, [d.full_message() for d in result.errors]
    assert any(p.startswith("network.rec.unit.att") for _, p in errors(result))


def test_created_axes_keep_their_identity_between_passes():
    result = validate(unit({"output": {"class": "copy", "from": "data:source"}}))
    layer = result.inferred.network.layers["rec/output"]
    inferred = InferredNetwork(
        result.inferred.network,
        result.graph,
        extern=result.inferred.extern,
        created_dims=result.inferred.created_dims,
    )
    first = ShapeContext(inferred, layer, [], [], {})
    a1, a2 = first.new_time_dim(), first.new_time_dim("other")
    second = ShapeContext(inferred, layer, [], [], {})  # the next pass over the same layer
    assert second.new_time_dim() is a1 and second.new_time_dim("other") is a2
    assert isinstance(a1, Dim) and a1 is not a2
    other = ShapeContext(inferred, result.inferred.network.layers["rec"], [], [], {})
    assert other.new_time_dim() is not a1


# -- RETURNN's config conventions -----------------------------------------------------------------


def test_num_inputs_num_outputs_make_extern_data():
    assert extern_from_num_io({"num_inputs": 9, "num_outputs": 2}) == {
        "data": {"dim": 9},
        "classes": {"dim": 2, "sparse": True},
    }
    assert extern_from_num_io({"num_outputs": {"classes": [10, 1], "data": [40, 2]}}) == {
        "classes": {"dim": 10, "sparse": True},
        "data": {"dim": 40},
    }
    assert extern_from_num_io({"num_inputs": 3, "num_outputs": 4, "target": "orth"}) == {
        "data": {"dim": 3},
        "orth": {"dim": 4, "sparse": True},
    }
    # extern_data wins, as in RETURNN
    assert extern_from_num_io({"extern_data": {"x": {"dim": 1}}, "num_inputs": 3}) is None


def test_loss_without_target_uses_the_config_target():
    cfg = {
        "extern_data": {
            "data": {"dim": 3},
            "classes": {"dim": 5, "sparse": True, "same_time_as": "data"},
        },
        "network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}},
    }
    result = validate(cfg)
    assert not result.errors, errors(result)
    assert shapes(result)["output"] == "[B, T(data), F=5]"  # n_out from the default target
    cfg = {
        "target": "orth",
        "extern_data": {
            "data": {"dim": 3},
            "orth": {"dim": 7, "sparse": True, "same_time_as": "data"},
        },
        "network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}},
    }
    result = validate(cfg)
    assert not result.errors, errors(result)
    assert shapes(result)["output"] == "[B, T(data), F=7]"


def test_frame_loss_unifies_undeclared_extern_time_axes_with_a_note():
    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}},
        "network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}},
    }
    result = validate(cfg)
    assert not result.errors, errors(result)
    notes = [d for d in result.notes if d.rule == "shape.unified-time"]
    assert len(notes) == 1 and "`data`" in notes[0].message and "`classes`" in notes[0].message
    ext = result.inferred.extern
    assert ext["classes"].time is ext["data"].time
    # a note is not a warning: --strict does not fail on it
    assert not validate(cfg, strict=True).errors


def test_axis_created_by_a_layer_is_not_unified():
    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}},
        "network": {
            "ext": {"class": "slice", "from": "data", "axis": "T", "slice_step": 2},
            "output": {"class": "softmax", "loss": "ce", "from": "ext"},
        },
    }
    result = validate(cfg)
    assert ("shape.loss-target", "network.output.target") in errors(result)
    assert not result.notes


def test_unified_axes_check_lengths_when_fed():
    pytest.importorskip("tensorflow")
    import numpy as np

    import netcompiler

    cfg = {
        "extern_data": {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}},
        "network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}},
    }
    net = netcompiler.compile(cfg)
    x = np.zeros((2, 4, 3), np.float32)
    y = np.zeros((2, 4), np.int32)
    out = net(inputs={"data": x, "classes": y}, lengths={"data": [4, 3], "classes": [4, 3]})
    assert out["output"][0].shape == (2, 4, 5)
    with pytest.raises(ValueError, match="`classes`.*share a time axis|`data`.*`classes`"):
        net(inputs={"data": x, "classes": y}, lengths={"data": [4, 3], "classes": [4, 2]})


def test_misaligned_dataset_is_refused(tmp_path):
    import numpy as np

    from netcompiler.training.datasets import (
        ArrayDataset,
        DatasetError,
        KeyInfo,
        check_shared_time_axes,
    )

    info = {"data": KeyInfo(3, False), "classes": KeyInfo(5, True)}
    flat = {"data": np.zeros((7, 3), np.float32), "classes": np.zeros(6, np.int32)}
    ds = ArrayDataset("train", info, flat, {"data": [4, 3], "classes": [4, 2]}, seq_tags=["a", "b"])
    with pytest.raises(DatasetError, match="`data` and `classes` share a time axis.*'b'"):
        check_shared_time_axes(ds, [("data", "classes")])
    check_shared_time_axes(ds, [("data",)])  # nothing shared: nothing to check
