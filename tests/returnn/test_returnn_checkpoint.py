"""Loading RETURNN checkpoints (`netcompiler.returnn.checkpoint`): the fixtures RETURNN itself
saved (tests/fixtures/returnn-checkpoints/, see its README) reproduce RETURNN's outputs; missing,
extra and misshapen tensors are errors that load nothing; the gate layouts against NumPy LSTM /
GRU steps written from RETURNN's and TF's formulas; `import_returnn_checkpoint` writes a model
dir that forward, search, compile and train accept."""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.build import compile_network  # noqa: E402
from netcompiler.cli import app as cli
from netcompiler.frontend.validate import validate  # noqa: E402
from netcompiler.layers._rnn_cells import gru_step, lstm_step  # noqa: E402
from netcompiler.returnn.checkpoint import (  # noqa: E402
    ReturnnCheckpointError,
    gru_cell_to_netcompiler,
    lstm_cell_to_netcompiler,
    native_lstm_to_netcompiler,
    returnn_epoch,
    returnn_rules,
)
from netcompiler.returnn.checkpoint_import import import_returnn_checkpoint  # noqa: E402
from netcompiler.training.checkpoints import list_checkpoints, restore_network  # noqa: E402
from netcompiler.training.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.tf
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "returnn-checkpoints"
#: saved by RETURNN 1.20261022 (README) and by RETURNN's source at b46ff5f0f337
#: (make_more_checkpoints.py)
NAMES = ("selfatt_encoder", "lstm_dot_attention", "cells_conv", "gru_decoder", "conv_masked")
TOL = 1e-5
#: RETURNN's conv (padding same, filter 3) reads the input's padding frames (random values in
#: the fixtures) at a shorter sequence's last valid frame, netcompiler reads zeros: these layers
#: are compared where the filter window lies inside the sequence (all valid frames but the last)
CONV_EDGE = {("cells_conv", "conv_var"): 1, ("conv_masked", "c2m"): 1}


def load_config(name: str) -> dict:
    return yaml.safe_load((FIXTURES / name / "network.yaml").read_text())


def reference(name: str):
    ref = np.load(FIXTURES / name / "reference.npz")
    meta = json.loads((FIXTURES / name / "reference.json").read_text())
    fed = [k for k, v in meta["inputs"].items() if v["fed_to_returnn"]]
    inputs = {k: ref[f"in_{k}"] for k in fed}
    lengths = {k: ref[f"len_{k}"] for k in fed}
    return ref, meta["fetch"], inputs, lengths


def max_diffs(net, name: str) -> dict[str, float]:
    """Max abs difference to RETURNN's output on the valid frames, per fetched layer (the
    lengths must agree too)."""
    ref, fetch, inputs, lengths = reference(name)
    out = net(inputs=inputs, lengths=lengths, fetch=fetch)
    diffs = {}
    for layer in fetch:
        values, lens = out[layer]
        expected, mask = ref[f"out_{layer}"], ref[f"mask_{layer}"].copy()
        assert values.shape == expected.shape, layer
        edge = CONV_EDGE.get((name, layer), 0)
        for b, n in enumerate(ref[f"outlen_{layer}"]):
            mask[b, max(int(n) - edge, 0) :] = False
        np.testing.assert_array_equal(lens.numpy(), ref[f"outlen_{layer}"])
        diffs[layer] = float(np.abs(values.numpy() - expected)[mask].max())
    return diffs


def snapshot(net) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in net.variables_by_name.items()}


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> str:
    """A TF V2 checkpoint bundle with exactly these tensors (as RETURNN's Saver writes one)."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return str(prefix)


def fixture_tensors(name: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(FIXTURES / name / "model.001"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


# -- RETURNN's own checkpoints -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_fixture_reproduces_returnn_outputs(name):
    net = compile_network(load_config(name))
    before = snapshot(net)
    report = net.load_returnn_checkpoint(FIXTURES / name / "model.001")
    assert report.global_step == 100
    stored = json.loads((FIXTURES / name / "reference.json").read_text())["checkpoint"]
    assert sorted(report.tensors) == sorted(
        v["name"] for v in stored["variables"] if v["name"] != "global_step"
    )
    assert sorted(report.loaded) == sorted(net.variables_by_name)
    after = snapshot(net)
    assert all(not np.array_equal(before[k], after[k]) for k in before)  # every one assigned
    diffs = max_diffs(net, name)
    print(name, diffs)  # the figures (pytest -s)
    assert max(diffs.values()) < TOL, diffs


def test_names_and_layouts_of_the_lstm_fixture():
    """The decoder's LSTMCell kernel is split into W (x rows) and W_re (h rows); the encoder's
    NativeLSTM2 blocks are reordered; plain names lose RETURNN's `rec/`."""
    net = compile_network(load_config("lstm_dot_attention"))
    # the prefix, a file of the bundle, or a directory with the Saver's `checkpoint` file
    net.load_returnn_checkpoint(str(FIXTURES / "lstm_dot_attention" / "model.001.index"))
    assert net.load_returnn_checkpoint(FIXTURES / "lstm_dot_attention").prefix.endswith(
        "lstm_dot_attention/model.001"
    )
    t = fixture_tensors("lstm_dot_attention")
    kernel = t["output/rec/s/rec/lstm_cell/kernel"]
    np.testing.assert_array_equal(net.variable("output/s/W").numpy(), kernel[:24])
    np.testing.assert_array_equal(net.variable("output/s/W_re").numpy(), kernel[24:])
    np.testing.assert_array_equal(
        net.variable("output/s/b").numpy(), t["output/rec/s/rec/lstm_cell/bias"]
    )
    W = t["lstm0_fw/rec/W"]
    np.testing.assert_array_equal(net.variable("lstm0_fw/W").numpy()[:, :8], W[:, 8:16])  # i
    np.testing.assert_array_equal(net.variable("lstm0_fw/W").numpy()[:, 8:16], W[:, :8])  # j
    np.testing.assert_array_equal(net.variable("lstm0_fw/W").numpy()[:, 16:], W[:, 16:])  # f, o
    np.testing.assert_array_equal(net.variable("output/embed/W").numpy(), t["output/rec/embed/W"])


# -- errors: every problem listed, nothing loaded ---------------------------------------------------
def _broken(tmp_path, drop=(), add=None, reshape=None) -> str:
    tensors = fixture_tensors("lstm_dot_attention")
    for k in drop:
        del tensors[k]
    tensors.update(add or {})
    for k, shape in (reshape or {}).items():
        tensors[k] = np.zeros(shape, np.float32)
    return write_bundle(tmp_path / "model.002", tensors)


@pytest.mark.parametrize(
    "case, expected",
    [
        (
            {"drop": ["embed/W", "output/rec/s/rec/lstm_cell/kernel"]},
            [
                "missing in the checkpoint",
                "`embed/W` [10, 8]",
                "`output/rec/s/rec/lstm_cell/kernel` [32, 32] (for `output/s/W, output/s/W_re, "
                "output/s/b`)",
            ],
        ),
        (
            {
                "add": {
                    "lstm1_fw/rec/W": np.zeros((16, 32), np.float32),
                    "output/rec/readout/b": np.zeros(3, np.float32),
                }
            },
            ["not in the network: `lstm1_fw/rec/W` [16, 32], `output/rec/readout/b` [3]"],
        ),
        (
            {"reshape": {"enc_ctx/W": (16, 9), "lstm0_bw/rec/b": (28,)}},
            [
                "wrong shape",
                "`enc_ctx/W` is [16, 9], expected [16, 8]",
                "`lstm0_bw/rec/b` is [28], expected [32]",
            ],
        ),
        (
            {
                "drop": ["embed/b"],
                "add": {"x/W": np.zeros(2, np.float32)},
                "reshape": {"enc_ctx/b": (9,)},
            },
            [
                "missing in the checkpoint: `embed/b` [8]",
                "not in the network: `x/W` [2]",
                "wrong shape: `enc_ctx/b` is [9], expected [8]",
            ],
        ),
    ],
    ids=["missing", "extra", "shape", "all-three"],
)
def test_mismatch_lists_everything_and_loads_nothing(tmp_path, case, expected):
    prefix = _broken(tmp_path, **case)
    net = compile_network(load_config("lstm_dot_attention"))
    before = snapshot(net)
    with pytest.raises(ReturnnCheckpointError) as err:
        net.load_returnn_checkpoint(prefix)
    msg = str(err.value)
    assert "\n" not in msg and prefix in msg
    for part in expected:
        assert part in msg, msg
    after = snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_conv_without_bias_gets_a_hint(tmp_path):
    tensors = fixture_tensors("cells_conv")
    del tensors["conv/bias"]
    net = compile_network(load_config("cells_conv"))
    with pytest.raises(ReturnnCheckpointError) as err:
        net.load_returnn_checkpoint(write_bundle(tmp_path / "model.001", tensors))
    assert str(err.value).endswith(
        "missing in the checkpoint: `conv/bias` [5] (for `conv/b`); "
        "hint: RETURNN's conv layers have no bias before "
        "behavior_version 10: set `with_bias: false` on them in the "
        "config"
    )


def test_bad_prefixes_are_one_line_errors(tmp_path):
    net = compile_network(load_config("selfatt_encoder"))
    missing = tmp_path / "models" / "model.007"
    with pytest.raises(ReturnnCheckpointError, match=r"no such RETURNN checkpoint") as err:
        net.load_returnn_checkpoint(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ReturnnCheckpointError, match="directory without a checkpoint"):
        net.load_returnn_checkpoint(tmp_path)
    # a netcompiler checkpoint is not a RETURNN one
    from netcompiler.backend.export import checkpoint

    own = checkpoint(net).write(str(tmp_path / "own" / "ckpt"))
    with pytest.raises(ReturnnCheckpointError, match="not one saved by RETURNN"):
        net.load_returnn_checkpoint(own)


def test_epoch_from_the_model_name():
    assert returnn_epoch("net-model/model.080") == 80
    assert returnn_epoch("model.pretrain.003.index") == 3
    assert returnn_epoch("/x/model") == 0


# -- gate layouts against NumPy steps from the formulas ---------------------------------------------
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_native_lstm_blocks_and_lstm_cell_kernel_split():
    rng = np.random.RandomState(3)
    n_in, n, B = 5, 4, 3
    x, c, h = rng.randn(B, n_in), rng.randn(B, n), rng.randn(B, n)
    # NativeLSTM2 (README): z = x W + h W_re + b, blocks (j, i, f, o), no forget bias
    W, W_re, b = rng.randn(n_in, 4 * n), rng.randn(n, 4 * n), rng.randn(4 * n)
    j, i, f, o = np.split(x @ W + h @ W_re + b, 4, axis=-1)
    c_ref = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
    h_ref = sigmoid(o) * np.tanh(c_ref)
    W2, W_re2, b2 = native_lstm_to_netcompiler(W, W_re, b)
    c_new, h_new = lstm_step(
        tf.constant(x @ W2 + b2), tf.constant(c), tf.constant(h), tf.constant(W_re2)
    )
    np.testing.assert_allclose(c_new.numpy(), c_ref, atol=1e-12)
    np.testing.assert_allclose(h_new.numpy(), h_ref, atol=1e-12)
    # TF LSTMCell: [x; h] kernel, blocks (i, j, f, o), forget bias 1 added at run time
    kernel, bias = rng.randn(n_in + n, 4 * n), rng.randn(4 * n)
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ kernel + bias, 4, axis=-1)
    c_ref = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
    h_ref = sigmoid(o) * np.tanh(c_ref)
    W2, W_re2, b2 = lstm_cell_to_netcompiler(kernel, bias, n_in)
    c_new, h_new = lstm_step(
        tf.constant(x @ W2 + b2),
        tf.constant(c),
        tf.constant(h),
        tf.constant(W_re2),
        forget_bias=1.0,
    )
    np.testing.assert_allclose(c_new.numpy(), c_ref, atol=1e-12)
    np.testing.assert_allclose(h_new.numpy(), h_ref, atol=1e-12)


def test_gru_cell_layout():
    """TF's GRUCell: r, u = split(sigmoid([x; h] G + g)); c = tanh([x; r*h] C + cb);
    h' = u h + (1 - u) c."""
    rng = np.random.RandomState(4)
    n_in, n, B = 3, 5, 2
    x, h = rng.randn(B, n_in), rng.randn(B, n)
    G, g = rng.randn(n_in + n, 2 * n), rng.randn(2 * n)
    C, cb = rng.randn(n_in + n, n), rng.randn(n)
    r, u = np.split(sigmoid(np.concatenate([x, h], 1) @ G + g), 2, axis=-1)
    cand = np.tanh(np.concatenate([x, r * h], 1) @ C + cb)
    h_ref = u * h + (1 - u) * cand
    W, W_re, b = gru_cell_to_netcompiler(G, g, C, cb, n_in)
    h_new = gru_step(tf.constant(x @ W + b), tf.constant(h), tf.constant(W_re))
    np.testing.assert_allclose(h_new.numpy(), h_ref, atol=1e-12)


# RETURNN's variable names for these layers, as RETURNN (mirror commit b46ff5f0f337) creates them
# for the equivalent network dict (listed with TFNetwork.get_saveable_params_list())
CELLS_CONFIG = {
    "extern_data": {"data": {"dim": 6}},
    "network": {
        "gru": {"class": "rec", "unit": "gru", "from": "data", "n_out": 5},
        "slstm": {
            "class": "rec",
            "unit": "standardlstm",
            "from": "data",
            "n_out": 4,
            "unit_opts": {"use_peepholes": True},
        },
        "blstm": {"class": "rec", "unit": "basiclstm", "from": "data", "n_out": 4},
        "nlstm": {
            "class": "rec",
            "unit": "nativelstm2",
            "from": "data",
            "n_out": 4,
            "initial_state": "var",
        },
        "cell_out": {"class": "rnn_cell", "unit": "LSTMBlock", "from": "data", "n_out": 3},
        "conv": {
            "class": "conv",
            "from": "data",
            "filter_size": [3],
            "n_out": 5,
            "padding": "same",
            "with_bias": True,
        },
        "tconv": {
            "class": "transposed_conv",
            "from": "conv",
            "filter_size": [2],
            "n_out": 3,
            "strides": [2],
        },
        "bn": {"class": "batch_norm", "from": "conv"},
        "var": {"class": "variable", "shape": [3, 2]},
        "sub": {
            "class": "subnetwork",
            "from": "data",
            "subnetwork": {
                "l": {"class": "linear", "from": "data", "n_out": 3},
                "output": {"class": "copy", "from": "l"},
            },
        },
        "shared": {"class": "linear", "from": "data", "n_out": 3, "reuse_params": "sub/l"},
        "output": {
            "class": "copy",
            "from": ["gru", "slstm", "blstm", "nlstm", "cell_out", "sub", "shared", "conv"],
        },
    },
}
CELLS_RETURNN_NAMES = {
    "gru/rec/gru_cell/candidate/bias": [5],
    "gru/rec/gru_cell/candidate/kernel": [11, 5],
    "gru/rec/gru_cell/gates/bias": [10],
    "gru/rec/gru_cell/gates/kernel": [11, 10],
    "slstm/rec/lstm_cell/bias": [16],
    "slstm/rec/lstm_cell/kernel": [10, 16],
    "slstm/rec/lstm_cell/w_f_diag": [4],
    "slstm/rec/lstm_cell/w_i_diag": [4],
    "slstm/rec/lstm_cell/w_o_diag": [4],
    "blstm/rec/basic_lstm_cell/bias": [16],
    "blstm/rec/basic_lstm_cell/kernel": [10, 16],
    "nlstm/rec/W": [6, 16],
    "nlstm/rec/W_re": [4, 16],
    "nlstm/rec/b": [16],
    "nlstm/rec/initial_c": [4],
    "nlstm/rec/initial_h": [4],
    "cell_out/rec/lstm_cell/bias": [12],
    "cell_out/rec/lstm_cell/kernel": [9, 12],
    "conv/W": [3, 6, 5],
    "conv/bias": [5],
    "tconv/W_native_transposed_conv": [2, 1, 3, 5],
    "tconv/bias": [3],
    "bn/batch_norm/v2_beta": [5],
    "bn/batch_norm/v2_gamma": [5],
    "bn/batch_norm/v2_mean": [5],
    "bn/batch_norm/v2_variance": [5],
    "var/var": [3, 2],
    "sub/l/W": [6, 3],
    "sub/l/b": [3],
}
INIT_STATE_CONFIG = {
    "extern_data": {"data": {"dim": 6}},
    "network": {
        "gru": {"class": "rec", "unit": "gru", "from": "data", "n_out": 5, "initial_state": "var"},
        "gcell": {
            "class": "rnn_cell",
            "unit": "gru",
            "from": "data",
            "n_out": 2,
            "initial_state": "var",
        },
        "sl": {
            "class": "rec",
            "unit": "standardlstm",
            "from": "data",
            "n_out": 2,
            "initial_state": "var",
        },
        "output": {"class": "copy", "from": ["gru", "gcell", "sl"]},
    },
}
INIT_STATE_RETURNN_NAMES = {
    "gcell/rec/gru_cell/candidate/bias": [2],
    "gcell/rec/gru_cell/candidate/kernel": [8, 2],
    "gcell/rec/gru_cell/gates/bias": [4],
    "gcell/rec/gru_cell/gates/kernel": [8, 4],
    "gcell/rec/initial_var": [2],
    "gru/rec/gru_cell/candidate/bias": [5],
    "gru/rec/gru_cell/candidate/kernel": [11, 5],
    "gru/rec/gru_cell/gates/bias": [10],
    "gru/rec/gru_cell/gates/kernel": [11, 10],
    "gru/rec/initial_var": [5],
    "sl/rec/initial_c": [2],
    "sl/rec/initial_h": [2],
    "sl/rec/lstm_cell/bias": [8],
    "sl/rec/lstm_cell/kernel": [8, 8],
}
DECODER_CONFIG = {
    "extern_data": {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}},
    "network": {
        "enc": {"class": "linear", "from": "data", "n_out": 4},
        "output": {
            "class": "rec",
            "from": [],
            "target": "classes",
            "unit": {
                "output": {
                    "class": "choice",
                    "target": "classes",
                    "beam_size": 2,
                    "from": "prob",
                    "initial_output": 0,
                },
                "end": {"class": "compare", "from": "output", "value": 0},
                "emb": {
                    "class": "linear",
                    "from": "prev:output",
                    "n_out": 3,
                    "initial_output": "var",
                },
                "pe": {"class": "linear", "from": "prev:emb", "n_out": 2},
                "g": {"class": "rnn_cell", "unit": "gru", "from": ["emb", "prev:c"], "n_out": 4},
                "sl": {
                    "class": "rnn_cell",
                    "unit": "standardlstm",
                    "from": "g",
                    "n_out": 4,
                    "initial_state": "var",
                },
                "ctx": {"class": "linear", "from": "sl", "n_out": 4},
                "ca": {
                    "class": "concat_attention",
                    "from": "ctx",
                    "base": "base:enc",
                    "base_ctx": "base:enc",
                },
                "c": {"class": "linear", "from": "sl", "n_out": 4},
                "sub": {
                    "class": "subnetwork",
                    "from": "c",
                    "subnetwork": {
                        "l": {"class": "linear", "from": "data", "n_out": 4},
                        "output": {"class": "copy", "from": "l"},
                    },
                },
                "prob": {"class": "softmax", "from": ["sub", "ca", "pe"], "target": "classes"},
            },
        },
    },
}
DECODER_RETURNN_NAMES = {
    "enc/W": [6, 4],
    "enc/b": [4],
    "output/rec/c/W": [4, 4],
    "output/rec/c/b": [4],
    "output/rec/ca/v": [4],
    "output/rec/ctx/W": [4, 4],
    "output/rec/ctx/b": [4],
    "output/rec/emb/W": [5, 3],
    "output/rec/emb/b": [3],
    "output/rec/emb/init_emb_var": [3],
    "output/rec/g/rec/gru_cell/candidate/bias": [4],
    "output/rec/g/rec/gru_cell/candidate/kernel": [11, 4],
    "output/rec/g/rec/gru_cell/gates/bias": [8],
    "output/rec/g/rec/gru_cell/gates/kernel": [11, 8],
    "output/rec/pe/W": [3, 2],
    "output/rec/pe/b": [2],
    "output/rec/prob/W": [10, 5],
    "output/rec/prob/b": [5],
    "output/rec/sl/initial_c": [4],
    "output/rec/sl/initial_h": [4],
    "output/rec/sl/rec/lstm_cell/bias": [16],
    "output/rec/sl/rec/lstm_cell/kernel": [8, 16],
    "output/rec/sub/l/W": [4, 4],
    "output/rec/sub/l/b": [4],
}


@pytest.mark.parametrize(
    "config, names",
    [
        (CELLS_CONFIG, CELLS_RETURNN_NAMES),
        (INIT_STATE_CONFIG, INIT_STATE_RETURNN_NAMES),
        (DECODER_CONFIG, DECODER_RETURNN_NAMES),
    ],
    ids=["cells-conv-bn", "initial-states", "decoder"],
)
def test_expected_names_are_returnns(tmp_path, config, names):
    """The tensors the loader asks for are exactly those RETURNN saves for these layers, and a
    bundle with random values under those names loads."""
    net = compile_network(copy.deepcopy(config))
    wanted = {}
    for rule in returnn_rules(net):
        for k, shape in rule.inputs.items():
            wanted[k] = [int(s) for s in shape]
    assert wanted == names
    rng = np.random.RandomState(0)
    prefix = write_bundle(
        tmp_path / "model.001",
        {
            **{k: rng.randn(*s).astype(np.float32) for k, s in names.items()},
            "global_step": np.int64(7),
        },
    )
    report = net.load_returnn_checkpoint(prefix)
    assert report.global_step == 7 and len(report.tensors) == len(names)


@pytest.mark.parametrize(
    "version, stored",
    [
        (2, lambda layer, what, n: (f"{layer}/batch_norm/v2_{what}", (n,))),
        (1, lambda layer, what, n: (f"{layer}/batch_norm/{what}", (1, 1, n))),
        (
            0,
            lambda layer, what, n: (f"{layer}/batch_norm/{layer}_{layer}_output_{what}", (1, 1, n)),
        ),
    ],
)
def test_batch_norm_param_versions(tmp_path, version, stored):
    """RETURNN's names and shapes of the batch norm variables (the layer and the option), by
    `param_version`, as RETURNN creates them (listed from RETURNN b46ff5f0f337)."""
    config = {
        "extern_data": {"data": {"dim": 3}},
        "network": {
            "bn": {"class": "batch_norm", "from": "data"},
            "lin": {"class": "linear", "from": "bn", "n_out": 2, "batch_norm": True},
            "output": {"class": "copy", "from": "lin"},
        },
    }
    net = compile_network(config)
    rng = np.random.RandomState(version)
    tensors, expected = {"lin/W": rng.randn(3, 2), "lin/b": rng.randn(2)}, {}
    for layer, n in (("bn", 3), ("lin", 2)):
        for what in ("mean", "variance", "gamma", "beta"):
            key, shape = stored(layer, what, n)
            tensors[key] = rng.randn(*shape)
            expected[f"{layer}/batch_norm/{what}"] = tensors[key].reshape(-1)
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    net.load_returnn_checkpoint(write_bundle(tmp_path / "model.004", tensors))
    for name, value in expected.items():
        np.testing.assert_allclose(net.variable(name).numpy(), value, rtol=1e-6)


def test_gru_network_against_numpy(tmp_path):
    """`rec` with `unit: gru` over a ragged batch with weights stored as TF's GRUCell stores
    them equals a NumPy GRUCell run."""
    config = {
        "extern_data": {"data": {"dim": 3}},
        "network": {"output": {"class": "rec", "unit": "gru", "from": "data", "n_out": 4}},
    }
    rng = np.random.RandomState(5)
    t = {
        "output/rec/gru_cell/gates/kernel": rng.randn(7, 8),
        "output/rec/gru_cell/gates/bias": rng.randn(8),
        "output/rec/gru_cell/candidate/kernel": rng.randn(7, 4),
        "output/rec/gru_cell/candidate/bias": rng.randn(4),
    }
    t = {k: (0.5 * v).astype(np.float32) for k, v in t.items()}
    net = compile_network(config)
    net.load_returnn_checkpoint(write_bundle(tmp_path / "model.001", t))
    x, lens = rng.randn(2, 5, 3).astype(np.float32), np.array([5, 3], np.int32)
    y = net(inputs={"data": x}, lengths={"data": lens})["output"][0].numpy()
    G, g = t["output/rec/gru_cell/gates/kernel"], t["output/rec/gru_cell/gates/bias"]
    C, cb = t["output/rec/gru_cell/candidate/kernel"], t["output/rec/gru_cell/candidate/bias"]
    for bi in range(2):
        h = np.zeros(4)
        for ti in range(lens[bi]):
            r, u = np.split(sigmoid(np.concatenate([x[bi, ti], h]) @ G + g), 2)
            cand = np.tanh(np.concatenate([x[bi, ti], r * h]) @ C + cb)
            h = u * h + (1 - u) * cand
            np.testing.assert_allclose(y[bi, ti], h, atol=1e-5)
        assert np.all(y[bi, lens[bi] :] == 0)


# -- a netcompiler model directory ---------------------------------------------------------------
def test_import_then_forward_compile_and_refuse_a_second_time(tmp_path):
    name = "selfatt_encoder"
    config = load_config(name)
    model_dir = tmp_path / "model"
    summary = import_returnn_checkpoint(config, str(FIXTURES / name / "model.001"), str(model_dir))
    assert "\n" not in summary
    assert summary.startswith("loaded 23 variables from ") and "(global_step 100)" in summary
    assert str(model_dir / "ckpt-001") in summary
    assert summary.endswith(
        "(network variables only, `train` cannot resume from it: no layer "
        "has a `loss`: nothing to train (set e.g. `loss: ce` and `target: "
        "classes` on the output layer))"
    )
    assert [e for e, _ in list_checkpoints(model_dir)] == [1]
    meta = json.loads((model_dir / "ckpt-001" / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["imported_from"]["returnn_global_step"] == 100
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temp dirs left
    # what `netcompiler forward` does: restore into a fresh network
    net = compile_network(copy.deepcopy(config))
    restore_network(net, str(model_dir / "ckpt-001" / "ckpt"))
    assert max(max_diffs(net, name).values()) < TOL
    # netcompiler forward CONFIG --checkpoint MODEL_DIR (the reference batch as npz data)
    from netcompiler.training.datasets import read_hdf, write_npz

    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(config))
    ref, _, inputs, lengths = reference(name)
    data = write_npz(
        tmp_path / "ref.npz",
        [
            {"data": ref["in_data"][i, :n], "classes": ref["in_classes"][i, :n]}
            for i, n in enumerate(ref["len_data"])
        ],
        config["extern_data"],
    )
    assert (
        cli.main(
            [
                "forward",
                str(cfg),
                "--checkpoint",
                str(model_dir),
                "--data",
                f"{{class: npz, files: '{data}'}}",
                "-o",
                str(tmp_path / "out.hdf"),
            ]
        )
        == 0
    )
    _, frames, lens, _ = read_hdf(tmp_path / "out.hdf")
    np.testing.assert_array_equal(lens["data"], ref["len_data"])
    expected = np.concatenate([ref["out_output"][i, :n] for i, n in enumerate(ref["len_data"])])
    assert np.abs(frames["data"] - expected).max() < TOL
    # compile --checkpoint MODEL_DIR
    assert (
        cli.main(
            ["compile", str(cfg), "-o", str(tmp_path / "saved"), "--checkpoint", str(model_dir)]
        )
        == 0
    )
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    res = loaded.signatures["serving_default"](
        data=tf.constant(inputs["data"]), data_lengths=tf.constant(lengths["data"])
    )
    mask = ref["mask_output"]
    assert np.abs(res["output"].numpy() - ref["out_output"])[mask].max() < TOL
    # a second import into the same directory is refused, the checkpoint stays
    before = (model_dir / "ckpt-001" / "meta.json").read_text()
    with pytest.raises(ReturnnCheckpointError, match="already holds checkpoints"):
        import_returnn_checkpoint(config, str(FIXTURES / name / "model.001"), str(model_dir))
    assert (model_dir / "ckpt-001" / "meta.json").read_text() == before


def test_import_errors_leave_no_model_dir(tmp_path):
    config = load_config("selfatt_encoder")
    with pytest.raises(ReturnnCheckpointError, match="no such RETURNN checkpoint"):
        import_returnn_checkpoint(config, str(tmp_path / "nope.001"), str(tmp_path / "m"))
    with pytest.raises(
        ReturnnCheckpointError,
        match="does not fit this network: none of its tensors belongs to this network",
    ):
        import_returnn_checkpoint(
            config, str(FIXTURES / "lstm_dot_attention" / "model.001"), str(tmp_path / "m")
        )
    bad = copy.deepcopy(config)
    bad["network"]["output"]["from"] = "b3_out"
    with pytest.raises(ReturnnCheckpointError, match="the config does not validate: .*b3_out"):
        import_returnn_checkpoint(
            bad, str(FIXTURES / "selfatt_encoder" / "model.001"), str(tmp_path / "m")
        )
    with pytest.raises(ReturnnCheckpointError, match="no --model-dir given"):
        import_returnn_checkpoint(config, str(FIXTURES / "selfatt_encoder" / "model.001"), None)
    assert list_checkpoints(tmp_path / "m") == []
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    # the model dir may come from the config
    config["train"] = {"model_dir": str(tmp_path / "from_config")}
    summary = import_returnn_checkpoint(
        config, str(FIXTURES / "selfatt_encoder" / "model.001"), None
    )
    assert str(tmp_path / "from_config" / "ckpt-001") in summary


def _finetune_config(tmp_path) -> dict:
    """The lstm_dot_attention network with a loss and a tiny npz training set made of the
    reference batch."""
    from netcompiler.training.datasets import write_npz

    config = load_config("lstm_dot_attention")
    config["network"]["output"]["unit"]["output_prob"]["loss"] = "ce"
    ref, _, inputs, lengths = reference("lstm_dot_attention")
    seqs = [
        {
            "data": inputs["data"][i, : lengths["data"][i]],
            "classes": inputs["classes"][i, : lengths["classes"][i]],
        }
        for i in range(3)
    ]
    data = str(write_npz(tmp_path / "train.npz", seqs * 2, config["extern_data"]))
    config["train"] = {
        "train_data": {"class": "npz", "files": data},
        "batch_size": 100,
        "num_epochs": 2,
        "learning_rate": 0.001,
        "optimizer": {"class": "adam"},
    }
    return config


def test_import_then_train_resumes_from_it(tmp_path):
    config = _finetune_config(tmp_path)
    model_dir = tmp_path / "model"
    prefix = str(FIXTURES / "lstm_dot_attention" / "model.001")
    summary = import_returnn_checkpoint(copy.deepcopy(config), prefix, str(model_dir))
    assert summary.startswith("loaded 17 variables") and "network variables only" not in summary
    # the trainer resumes at epoch 2 from exactly the RETURNN weights
    out = io.StringIO()
    trainer = Trainer(validate(copy.deepcopy(config)), model_dir=model_dir, out=out)
    assert trainer.restore() == 1
    assert int(trainer.optimizer.iterations.numpy()) == 0
    assert max(max_diffs(trainer.net, "lstm_dot_attention").values()) < TOL
    imported = snapshot(trainer.net)
    assert trainer.train() == 2
    assert f"resuming from {model_dir / 'ckpt-001'} at epoch 2" in out.getvalue()
    assert [e for e, _ in list_checkpoints(model_dir)] == [1, 2]
    tuned = snapshot(trainer.net)
    changed = [k for k in imported if not np.array_equal(imported[k], tuned[k])]
    assert changed  # trained ...
    assert all(np.abs(imported[k] - tuned[k]).max() < 0.05 for k in imported)  # ... from them


def test_search_cli_accepts_the_imported_model(tmp_path):
    config = _finetune_config(tmp_path)
    model_dir = tmp_path / "model"
    import_returnn_checkpoint(
        copy.deepcopy(config), str(FIXTURES / "lstm_dot_attention" / "model.001"), str(model_dir)
    )
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out_tsv = tmp_path / "hyps.tsv"
    code = cli.main(
        [
            "search",
            str(cfg),
            "--checkpoint",
            str(model_dir),
            "--data",
            config["train"]["train_data"]["files"],
            "-o",
            str(out_tsv),
        ]
    )
    assert code == 0
    lines = [ln for ln in out_tsv.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) >= 6


def test_model_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReturnnCheckpointError, match="not a directory"):
        import_returnn_checkpoint(
            load_config("selfatt_encoder"),
            str(FIXTURES / "selfatt_encoder" / "model.001"),
            str(tmp_path / "f"),
        )
    assert os.path.isfile(tmp_path / "f")
