"""`netcompiler import-returnn`: RETURNN config files -> netcompiler YAML.

The configs under tests/returnn_demos/ are RETURNN's own demos (rwth-i6/returnn demos/ at
b46ff5f0f337, each with a first comment line naming its source). Every expectation below is
read off the demo's text by hand, not from the importer's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from netcompiler.cli import main
from netcompiler.frontend.loader import load
from netcompiler.frontend.validate import validate
from netcompiler.returnn.config import read_config
from netcompiler.returnn.config_values import NotData, ReturnnConfigError
from netcompiler.returnn.convert import import_returnn
from netcompiler.returnn.import_result import ReturnnImportError
from netcompiler.returnn.yaml_out import dump_yaml

DEMOS = Path(__file__).resolve().parents[1] / "returnn_demos"
REPO = Path(__file__).resolve().parents[2]


def demo(name: str) -> str:
    return str(DEMOS / f"demo-{name}.config")


# -- the demos that import in safe mode ------------------------------------------------------------
X12 = {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}
TRAIN_12AX = {"class": "12ax", "num_seqs": 1000, "min_len": 10, "max_len": 100}
DEV_12AX_1 = {"class": "12ax", "num_seqs": 100, "seed": 1, "min_len": 10, "max_len": 100}
DEV_12AX_42 = {"class": "12ax", "num_seqs": 100, "seed": 42, "min_len": 10, "max_len": 100}
ADAM = {"class": "adam", "epsilon": 1e-16}
NEWBOB = {"decay": 0.5, "relative_error_threshold": round(-0.01 / 1.01, 12)}

# name: (extern_data, number of top-level layers, train section, validation error or None)
SAFE = {
    "fwd": (
        {"data": {"dim": 2}, "classes": {"dim": 3, "sparse": True}},
        1,
        {"optimizer": {"class": "sgd"}, "learning_rate": 1.0},
        None,
    ),
    "tf-att-copy": (
        {"data": {"dim": 10, "sparse": True}, "classes": {"dim": 10, "sparse": True}},
        3,
        {
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "gradient_noise": 0.3,
            "gradient_clip_value": 2,
        },
        None,
    ),
    "tf-attention": (
        {"data": {"dim": 12}, "classes": {"dim": 12, "sparse": True}},
        7,
        {
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 40,
            "optimizer": ADAM,
            "learning_rate": 0.0005,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 20,
            "gradient_noise": 0.3,
        },
        None,
    ),
    "tf-chunking-blstm.12ax": (
        X12,
        9,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 1,
        },
        None,
    ),
    "tf-contribrnn-lstm.12ax": (
        X12,
        2,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 1,
        },
        None,
    ),
    "tf-enc-dec": (
        {"data": {"sparse": True, "dim": 8}, "classes": {"sparse": True, "dim": 2}},
        6,
        {
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 40,
            "optimizer": ADAM,
            "learning_rate": 0.0005,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 20,
        },
        None,
    ),
    "tf-maxgradnorm-lstm.12ax": (
        X12,
        2,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 1,
        },
        None,
    ),
    "tf-native-lstm-lowmem.12ax": (
        X12,
        2,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 1,
        },
        None,
    ),
    "tf-native-lstm.12ax": (
        X12,
        2,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 5,
        },
        None,
    ),
    "tf-native-lstm2.12ax": (
        X12,
        2,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 5,
        },
        None,
    ),
    "tf-native-lstm2.12ax.tuned": (
        X12,
        2,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": {"class": "adam", "epsilon": 5e-15},
            "learning_rate": 0.127,
            "num_epochs": 100,
            "save_interval": 1,
            "gradient_clip_value": 10.0,
            "gradient_noise": 0.3,
        },
        None,
    ),
    "tf-rec-explicit-lstm": (
        X12,
        2,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_42,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 40,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 20,
            "gradient_noise": 0.3,
        },
        None,
    ),
    "tf-rec-explicit-rnn": (
        X12,
        2,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_42,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 40,
            "optimizer": ADAM,
            "learning_rate": 0.0005,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 20,
            "gradient_noise": 0.3,
        },
        None,
    ),
    "tf-rec-self-att": (
        X12,
        2,
        {
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_42,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 40,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 20,
        },
        None,
    ),
    "tf-vanilla-lstm.12ax": (
        X12,
        2,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 1,
        },
        None,
    ),
    # imported, but netcompiler lacks a layer class or unit they use
    "lua-torch-layer": (
        {"data": {"dim": 12}, "classes": {"dim": 12, "sparse": True}},
        2,
        {
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 10,
            "optimizer": ADAM,
            "learning_rate": 0.01,
            "num_epochs": 100,
            "save_interval": 20,
            "chunking": "200:200",
        },
        "unknown layer class `torch`",
    ),
    "tf-neural-transducer.12ax": (
        X12,
        5,
        {
            "chunking": "200:200",
            "train_data": TRAIN_12AX,
            "dev_data": DEV_12AX_1,
            "batching": "random",
            "batch_size": 5000,
            "max_seqs": 5,
            "optimizer": ADAM,
            "learning_rate": 0.0005,
            "learning_rate_control": "newbob",
            "learning_rate_control_opts": NEWBOB,
            "num_epochs": 100,
            "save_interval": 1,
            "gradient_clip_value": 10,
            "gradient_noise": 0.3,
        },
        "unknown layer class `neural_transducer`",
    ),
    "rhn-enwik8": (
        {"data": {"sparse": True, "dim": 205}, "classes": {"sparse": True, "dim": 205}},
        3,
        {
            "batching": "random",
            "max_seqs": 10,
            "num_epochs": 150,
            "optimizer": {"class": "adam", "epsilon": 1e-8},
            "learning_rate": 0.001,
        },
        'unknown value "rhn"',
    ),
}


@pytest.mark.parametrize("name", sorted(SAFE))
def test_demo_imports_in_safe_mode(name):
    extern, n_layers, train, error = SAFE[name]
    result = import_returnn(demo(name))
    config = result.config
    assert result.mode == "safe"
    assert config["extern_data"] == extern
    assert len(config["network"]) == n_layers
    assert config["train"] == train
    assert list(config) == ["extern_data", "network", "train"]
    text = result.to_yaml("netcompiler import-returnn x")
    # round trip: the YAML loads back (netcompiler's loader) to the same config
    assert load(text, "out.yaml").data == config
    check = validate(text, name="out.yaml")
    if error is None:
        assert check.ok, [d.message for d in check.errors]
    else:
        assert not check.ok and any(error in d.message for d in check.errors)


def test_imported_train_section_is_accepted_by_training():
    """The datasets and learning-rate options build with netcompiler's own (TF-free) code."""
    from netcompiler.training.datasets import make_dataset
    from netcompiler.training.lr_control import LearningRateControl
    from netcompiler.training.options import TrainOptions

    config = import_returnn(demo("tf-rec-explicit-rnn")).config
    opts = TrainOptions.from_config(config)
    assert (opts.batch_size, opts.max_seqs, opts.num_epochs) == (5000, 40, 100)
    dev = make_dataset(opts.dev_data, config["extern_data"], name="dev")
    lengths = dev.seq_lengths("data")
    assert len(dev) == 100 and lengths.min() >= 10 and lengths.max() <= 100
    assert dev.get_seq(0)["data"].shape == (lengths[0], 9)  # one-hot, as RETURNN's num_inputs
    ctl = LearningRateControl(
        opts.learning_rate_control, opts.learning_rate, opts.learning_rate_control_opts
    )
    ctl.end_epoch(1.0)
    assert ctl.end_epoch(0.995) == 0.0005 * 0.5  # improved by < 1%: RETURNN's decay 0.5


def test_demo_train_keys_keep_the_config_order():
    # demo-tf-chunking-blstm: train/dev, batching, batch_size, max_seqs, optimizer,
    # learning_rate, model (Python), num_epochs, save_interval
    train = import_returnn(demo("tf-chunking-blstm.12ax")).config["train"]
    assert list(train) == [
        "train_data",
        "dev_data",
        "batching",
        "batch_size",
        "max_seqs",
        "optimizer",
        "learning_rate",
        "num_epochs",
        "save_interval",
    ]


def test_demo_not_imported_and_ignored_lists():
    result = import_returnn(demo("tf-native-lstm2.12ax.tuned"))
    warned = {e.key: e for e in result.warnings}
    # options without an equivalent (line numbers in the copy: the demo's + 1)
    assert warned["gradient_clip_norm"].line == 35
    # RETURNN's per-entry gradient_clip and gradient_noise are imported (gradient_clip_value)
    assert "gradient_clip" not in warned and "gradient_noise" not in warned
    assert warned["decouple_constraints"].line == 33
    # Python that was not run
    assert "get_login_username()" in warned["model"].text and warned["model"].line == 37
    assert warned["os"].line == 8 and "module" in warned["os"].text
    assert {"demo_name", "get_login_username"} <= set(warned)
    ignored = {e.key for e in result.ignored}
    assert {"use_tensorflow", "task", "chunking", "log_verbosity"} == ignored
    header = result.header("netcompiler import-returnn x")
    assert header.splitlines()[:4] == [
        "# Imported from the RETURNN config (read as data, nothing run):",
        "#   " + demo("tf-native-lstm2.12ax.tuned"),
        "# by:",
        "#   netcompiler import-returnn x",
    ]
    assert all(line.startswith("#") for line in header.splitlines())
    assert "gradient_clip_norm (line 35): 0.07: per-variable norm clipping" in header


def test_hdf_datasets_and_training_options(tmp_path):
    cfg = tmp_path / "hdf.config"
    cfg.write_text(
        textwrap.dedent("""\
        #!rnn.py
        prefix = "/data/corpus"
        train = {"class": "HDFDataset", "files": [prefix + "/train.1.hdf", prefix + "/train.2.hdf"],
                 "partition_epoch": 4, "seq_ordering": "laplace:.100"}
        dev = "/data/corpus/dev.hdf"
        extern_data = {"data": {"dim": 40, "shape": (None, 40)},
                       "classes": {"dim": 61, "sparse": True, "same_dim_tags_as": {}}}
        network = {"output": {"class": "softmax", "loss": "ce", "from": "data"}}
        batching = "laplace:.1000"
        optimizer = {"class": "Adam", "beta1": 0.8, "epsilon": 1e-8}
        learning_rate = 1e-3
        learning_rate_control = "newbob_multi_epoch"
        newbob_multi_num_epochs = 1
        newbob_multi_update_interval = 1
        newbob_learning_rate_decay = 0.7
        newbob_relative_error_threshold = -0.02
        min_learning_rate = 1e-5
        gradient_clip_global_norm = 5.0
        random_seed = 7
        model = "/exp/net-model/network"
        device = "gpu"
        """)
    )
    result = import_returnn(str(cfg))
    config = result.config
    assert config["extern_data"] == {
        "data": {"dim": 40, "shape": [None, 40]},
        "classes": {"dim": 61, "sparse": True},
    }
    assert config["train"] == {
        "train_data": {
            "class": "hdf",
            "files": ["/data/corpus/train.1.hdf", "/data/corpus/train.2.hdf"],
            "partition": 4,
        },
        "dev_data": {"class": "hdf", "files": "/data/corpus/dev.hdf"},
        "batching": "laplace:1000",
        "optimizer": {"class": "adam", "beta_1": 0.8, "epsilon": 1e-8},
        "learning_rate": 1e-3,
        # RETURNN's rule as is (its threshold keeps RETURNN's meaning: relative to the new score)
        "learning_rate_control": "newbob_multi_epoch",
        "learning_rate_control_opts": {
            "decay": 0.7,
            "relative_error_threshold": -0.02,
            "num_epochs": 1,
            "update_interval": 1,
            "min_learning_rate": 1e-5,
        },
        "gradient_clip": 5.0,
        "random_seed": 7,
        "model_dir": "/exp/net-model",
    }
    warned = {e.key for e in result.warnings}
    assert {"train.seq_ordering", "extern_data.classes.same_dim_tags_as"} <= warned
    assert "device" in {e.key for e in result.ignored}
    assert validate(result.to_yaml(), name="hdf.yaml").ok


def test_values_netcompiler_rejects_are_listed(tmp_path):
    cfg = tmp_path / "c.config"
    cfg.write_text(
        "#!rnn.py\nnetwork = {'output': {'class': 'softmax', 'loss': 'ce'}}\n"
        "num_inputs = 2\nnum_outputs = 3\nbatching = 'laplace:.0'\n"
        "random_seed = -3\noptimizer = {'class': 'adam', 'beta1': 1.5}\n"
        "num_epochs = 4\n"
    )
    result = import_returnn(str(cfg))
    assert result.config["train"] == {"num_epochs": 4, "learning_rate": 1.0}
    rejected = {e.key for e in result.not_imported if "not accepted by netcompiler" in e.text}
    assert rejected == {"train.batching", "train.random_seed", "train.optimizer"}
    assert validate(result.to_yaml()).ok


@pytest.mark.parametrize("version,want_bias", [(None, False), (9, False), (10, None), (12, None)])
def test_conv_bias_follows_returnns_behavior_version(tmp_path, version, want_bias):
    """RETURNN's conv has no bias by default before behavior_version 10 (netcompiler's has):
    the importer writes `with_bias: false` there, and leaves explicit choices alone."""
    cfg = tmp_path / "c.config"
    head = "" if version is None else f"behavior_version = {version}\n"
    cfg.write_text(
        "#!rnn.py\n"
        + head
        + textwrap.dedent("""\
        num_inputs = 4
        num_outputs = 3
        network = {
            'c1': {'class': 'conv', 'filter_size': (3,), 'padding': 'same', 'n_out': 5},
            'c2': {'class': 'conv', 'filter_size': (3,), 'padding': 'same', 'n_out': 5,
                   'from': 'c1', 'with_bias': True},
            'output': {'class': 'softmax', 'loss': 'ce', 'from': 'c2'},
        }
        """)
    )
    result = import_returnn(str(cfg))
    layers = result.config["network"]
    assert layers["c1"].get("with_bias") is want_bias
    assert layers["c2"]["with_bias"] is True
    assert any("c1" in n and "behavior_version 10" in n for n in result.notes) == (
        want_bias is False
    )
    assert "behavior_version" not in {e.key for e in result.not_imported}
    assert validate(result.to_yaml()).ok


def test_newbob_threshold_mapping_decides_like_returnn():
    """netcompiler's newbob with the mapped threshold decays exactly when RETURNN's would
    ((new - old) / |new| > t), for positive scores; checked on a grid of score pairs."""
    from netcompiler.training.lr_control import LearningRateControl

    t = -0.01
    mapped = round(t / (1 - t), 12)
    for old in (0.5, 1.0, 3.7):
        for ratio in (0.95, 0.989, 0.9899, 0.99, 0.99009, 0.9901, 0.991, 1.0, 1.2):
            new = old * ratio
            returnn_decays = (new - old) / abs(new) > t
            ctl = LearningRateControl(
                "newbob", 1.0, {"decay": 0.5, "relative_error_threshold": mapped}
            )
            ctl.end_epoch(old)
            decayed = ctl.end_epoch(new) < 1.0
            assert decayed == returnn_decays, (old, ratio)


# -- demos that need Python, or that netcompiler cannot import ------------------------------------
def _error(path, **kw) -> str:
    with pytest.raises(ReturnnConfigError) as info:
        import_returnn(path, **kw)
    assert len(info.value.messages) >= 1
    return info.value.messages[0]


def test_demo_needing_python_stops_with_a_located_error():
    # demo-timit-lstm-ctc: "label_map": TimitDataset.get_label_map() on line 94 (+1)
    msg = _error(demo("timit-lstm-ctc"))
    assert msg.startswith(demo("timit-lstm-ctc") + ":95:77: error: network: ")
    assert "TimitDataset.get_label_map()" in msg and "run with --exec" in msg
    msg = _error(demo("hyper-param-tuning"))
    assert ":29:16: error: network:" in msg and "HyperParam(" in msg
    # hard-att-copy: a layer's eval is the config's function rel_embed (def on line 59 + 1)
    msg = _error(demo("tf-hard-att-copy"))
    assert "network: `rel_embed`, which is the function `rel_embed` (line 60)" in msg


def test_demos_netcompiler_cannot_import_say_why():
    assert "no `network` dict (a PyTorch-backend config" in _error(demo("torch"))
    assert "no `network` dict (a PyTorch-backend config" in _error(demo("rf"))  # RETURNN-frontend
    assert "old line-based config format" in _error(demo("pretrain"))
    msg = _error(demo("upd-mult-model.lstm.12ax"))
    assert ":7:1: error: Python syntax error" in msg and "Python 3" in msg


@pytest.fixture
def returnn_stub(tmp_path, monkeypatch):
    """A stand-in of the two RETURNN helpers the demos import (no RETURNN installed here)."""
    root = tmp_path / "stub"
    (root / "returnn" / "util").mkdir(parents=True)
    (root / "returnn" / "datasets").mkdir(parents=True)
    for d in ("returnn", "returnn/util", "returnn/datasets"):
        (root / d / "__init__.py").write_text("")
    (root / "returnn" / "util" / "basic.py").write_text(
        "def get_login_username():\n    return 'tester'\n"
    )
    (root / "returnn" / "datasets" / "generating.py").write_text(
        "class TimitDataset:\n    @staticmethod\n    def get_label_map():\n"
        "        return {'ao': 'aa', 'ax': 'ah'}\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    return root


# demos that run as Python with the stub: os.getlogin() (contribrnn, lowmem) needs a terminal
EXEC_SAME = sorted(set(SAFE) - {"tf-contribrnn-lstm.12ax", "tf-native-lstm-lowmem.12ax"})


def test_exec_mode_agrees_with_safe_mode(returnn_stub):
    """Running the demo (--exec) gives the same network, extern data and training options as
    reading it as data; only model_dir (computed from the user name) is new."""
    for name in EXEC_SAME:
        safe = import_returnn(demo(name)).config
        ran = import_returnn(demo(name), exec_mode=True, timeout=60).config
        model_dir = ran["train"].pop("model_dir", None)
        assert ran == safe, name
        if name == "lua-torch-layer":  # model = "/tmp/returnn.%s.network" % demo_name
            assert model_dir == f"/tmp/returnn.{DEMOS}"
        elif name != "fwd":  # demo-fwd's model uses pwd's user name
            assert model_dir == f"/tmp/tester/returnn/{DEMOS}/demo-{name}", name


def test_exec_mode_imports_the_python_demos(returnn_stub):
    result = import_returnn(demo("timit-lstm-ctc"), exec_mode=True)
    config = result.config
    assert config["extern_data"] == {"data": {"dim": 80}, "classes": {"dim": 61, "sparse": True}}
    assert config["network"]["ler_39"]["loss_opts"] == {
        "ctc_decode": True,
        "label_map": {"ao": "aa", "ax": "ah"},
    }
    assert len(config["network"]) == 8
    assert config["train"]["optimizer"] == {"class": "nadam", "epsilon": 1e-16}
    assert config["train"]["batch_size"] == 2000 and config["train"]["max_seqs"] == 64
    # lines 121-131: newbob over 6 epochs, relative to the rate, a new rate kept >= 3 epochs
    assert config["train"]["learning_rate_control"] == "newbob_multi_epoch"
    assert config["train"]["learning_rate_control_opts"] == {
        "decay": 0.8,
        "relative_error_threshold": -0.01,
        "num_epochs": 6,
        "update_interval": 1,
        "relative_error_relative_lr": True,
        "min_num_epochs_per_new_lr": 3,
    }
    assert config["train"]["gradient_noise"] == 0.1
    assert config["train"]["max_seq_length"] == 2000  # max_seq_length = batch_size
    warned = {e.key: e.text for e in result.warnings}
    assert "train" in warned  # NltkTimitDataset
    check = validate(result.to_yaml(), name="timit.yaml")
    assert {d.message for d in check.errors} == {
        "unknown option `darc1` for layer class `softmax`",
        "unknown option `only_on_eval` for layer class `copy`",
    }
    # hard-att-copy: Python functions inside the network are listed by layer and option
    result = import_returnn(demo("tf-hard-att-copy"), exec_mode=True)
    python = {e.key for e in result.python}
    assert {
        "network.output.unit.energy_in1.eval",
        "network.output.unit.energy_in1.out_type",
        "network.output.unit.att.eval",
        "network.output.unit.output_ce.eval",
        "network.t_cheat_target.eval",
    } <= python
    assert "eval" not in result.config["network"]["t_cheat_target"]
    assert result.config["network"]["output"]["unit"]["energy_in1"]["class"] == "eval"


def test_exec_mode_failures_are_clear():
    # no RETURNN here: a demo importing it is a clear, located error
    msg = _error(demo("tf-att-copy"), exec_mode=True)
    assert msg == (
        demo("tf-att-copy") + ":6: error: --exec: running the config failed: "
        "ModuleNotFoundError: No module named 'returnn'"
    )
    msg = _error(demo("hyper-param-tuning"), exec_mode=True)
    assert "No module named 'HyperParamTuning'" in msg


def test_exec_timeout_stops_the_child(tmp_path):
    cfg = tmp_path / "loop.config"
    marker = tmp_path / "after-loop"
    cfg.write_text(f"#!rnn.py\nnetwork = {{}}\nwhile True:\n    pass\nopen({str(marker)!r}, 'w')\n")
    start = time.monotonic()
    msg = _error(str(cfg), exec_mode=True, timeout=1.0)
    assert time.monotonic() - start < 15
    assert (
        msg == f"{cfg}: error: --exec: running the config did not finish within 1 s "
        f"(stopped; a longer limit: --timeout SECONDS)"
    )
    assert not marker.exists()
    assert main(["import-returnn", str(cfg), "--exec", "--timeout", "0.5"]) == 1


def test_exec_child_output_is_only_data(tmp_path):
    """The child's values come back as JSON data: objects become NotData, its printing does not
    reach the YAML, and nothing it writes can be run by the parent."""
    cfg = tmp_path / "objs.config"
    cfg.write_text(
        textwrap.dedent("""\
        #!rnn.py
        import sys
        print('{"ok": true, "values": {"network": "hijacked"}}')
        class Thing:
            pass
        n = config.int("n", 4)
        network = {"a": {"class": "linear", "from": "data", "n_out": n, "custom": Thing()},
                   "output": {"class": "softmax", "from": "a", "loss": "ce"}}
        extern_data = {"data": {"dim": 3}, "classes": {"dim": 2, "sparse": True}}
        """)
    )
    result = import_returnn(str(cfg), exec_mode=True)
    assert result.config["network"]["a"] == {"class": "linear", "from": "data", "n_out": 4}
    assert [e.key for e in result.warnings] == ["sys", "Thing", "network.a.custom"]
    assert isinstance(read_config(str(cfg), exec_mode=True).values["Thing"], NotData)


# -- the safe evaluator ----------------------------------------------------------------------------
def _read(tmp_path, body: str):
    cfg = tmp_path / "t.config"
    cfg.write_text("#!rnn.py\n" + textwrap.dedent(body))
    return read_config(str(cfg)).values


def test_safe_evaluator_computes_data(tmp_path):
    v = _read(
        tmp_path,
        """\
        a = 2 ** 3 + 7 // 2 - -1
        b = "x%03d" % 5 + "-%s" % ("y",)
        c = f"{b}/{a:04d}"
        d = "{}-{}".format(1, 2.5)
        e = [1] * 3 + [2]
        f = {"k": a, **{"m": 1}}
        f["j"] = [a / 4, a % 5]
        f.update({"n": None})
        e.append(-a)
        a += 1
        t1, t2 = (1, "two")
        g = max(e) if len(e) > 4 and not None else 0
        h = list(range(2, 8, 3)) + sorted([3, 1])
        i = config.int("a", 0) + config.int("missing", 100)
        j = config.value("missing_task", "train")
        if j == "train":
            k = "chosen"
        else:
            k = undefined_call()
        l = e[1:3] + [f.get("k"), dict(x=1)["x"]]
        del f["n"]
        """,
    )
    assert v["a"] == 13 and v["b"] == "x005-y" and v["c"] == "x005-y/0012"
    assert v["d"] == "1-2.5" and v["e"] == [1, 1, 1, 2, -12]
    assert v["f"] == {"k": 12, "m": 1, "j": [3.0, 2]}
    assert (v["t1"], v["t2"]) == (1, "two") and v["g"] == 2 and v["h"] == [2, 5, 1, 3]
    assert v["i"] == 113 and v["j"] == "train" and v["k"] == "chosen"
    assert v["l"] == [1, 1, 12, 1]


@pytest.mark.parametrize(
    "code, line, col, words",
    [
        ("x = open('f')", 2, 5, "the call `open('f')`"),
        ("import os as x", 2, 1, "the imported module `os`"),
        (
            "import os\nx = os.sep",
            3,
            5,
            "the attribute `os.sep` (`os` is the imported module `os`, line 2)",
        ),
        ("x = 'a'.upper", 2, 5, "the attribute `'a'.upper`"),
        ("x = lambda: 1", 2, 5, "a lambda"),
        ("x = [i for i in range(3)]", 2, 5, "a comprehension"),
        ("for i in range(3):\n    x = i", 2, 1, "assigned in a `for` loop"),
        ("def f():\n    return 1\nx = f()", 4, 5, "the call `f()`"),
        ("x = 'a' * 10 ** 9", 2, 5, "too large"),
        ("x = 10 ** 10 ** 9", 2, 5, "too large"),
        ("x = __import__('os')", 2, 5, "the call `__import__('os')`"),
        ("x = y", 2, 5, "`y`, which is not defined before this line"),
        ("x = {}\nsomething(x)", 3, 1, "may be changed by `something(x)`"),
    ],
)
def test_safe_evaluator_refuses_python(tmp_path, code, line, col, words):
    v = _read(tmp_path, code + "\n")
    x = v["x"]
    assert isinstance(x, NotData)
    assert (x.line, x.col) == (line, col)
    assert words in x.reason


def test_network_needing_python_is_an_error_with_the_location(tmp_path):
    cfg = tmp_path / "n.config"
    cfg.write_text(
        "#!rnn.py\nimport os\nn = 4\nnetwork = {\n  'out': {'class': 'softmax',\n"
        "          'n_out': int(os.environ['N'])}}\n"
    )
    with pytest.raises(ReturnnImportError) as info:
        import_returnn(str(cfg))
    assert info.value.messages == [
        f"{cfg}:6:24: error: network: the attribute `os.environ` (`os` is the imported module "
        f"`os`, line 2) (needs Python; run with --exec)"
    ]


@pytest.mark.parametrize(
    "code, message",
    [
        # a loop changing the network: the network is no longer known
        (
            "network = {'out': {'class': 'softmax', 'loss': 'ce'}}\nfor k in network:\n"
            "    network[k]['dropout'] = 0.1\n",
            ":3:1: error: network: assigned in a `for` loop (line 3) (needs Python; run with --exec)",
        ),
        # a function that sets the network as a global, called later
        (
            "def setup():\n    global network\n    network = {}\nsetup()\n",
            ":5:1: error: network: may be changed by `setup()` (line 5) (needs Python; run with "
            "--exec)",
        ),
        # a value changed in place by a call
        (
            "network = {}\nadd_layers(network)\n",
            ":3:1: error: network: may be changed by `add_layers(network)` (line 3) (needs Python; "
            "run with --exec)",
        ),
    ],
)
def test_network_changed_by_python_is_an_error(tmp_path, code, message):
    cfg = tmp_path / "c.config"
    cfg.write_text("#!rnn.py\n" + code)
    with pytest.raises(ReturnnImportError) as info:
        import_returnn(str(cfg))
    assert info.value.messages == [str(cfg) + message]


def test_safe_mode_never_runs_anything(tmp_path):
    """A config that would create files if run creates none in safe mode."""
    made = tmp_path / "made"
    cfg = tmp_path / "evil.config"
    cfg.write_text(
        textwrap.dedent(f"""\
        #!rnn.py
        import os
        open({str(made / "a")!r}, "w").write("x")
        os.makedirs({str(made)!r})
        __import__("os").system("touch " + {str(made / "b")!r})
        x = [open({str(made / "c")!r}, "w") for _ in range(1)]
        network = {{"output": {{"class": "softmax", "from": "data", "loss": "ce"}}}}
        extern_data = {{"data": {{"dim": 3}}, "classes": {{"dim": 2, "sparse": True}}}}
        """)
    )
    result = import_returnn(str(cfg))
    assert not made.exists() and sorted(os.listdir(tmp_path)) == ["evil.config"]
    assert result.config["network"] == {
        "output": {"class": "softmax", "from": "data", "loss": "ce"}
    }
    assert validate(result.to_yaml()).ok


# -- YAML layout and the command line --------------------------------------------------------------
def test_yaml_layout_is_what_a_person_writes():
    config = {
        "extern_data": {"data": {"dim": 9}},
        "network": {
            "embed": {"class": "linear", "from": "data", "n_out": 8},
            "rec": {
                "class": "rec",
                "from": "embed",
                "unit": {
                    "s": {
                        "class": "rnn_cell",
                        "unit": "lstm",
                        "n_out": 8,
                        "from": ["prev:output", "data:source"],
                    },
                    "output": {"class": "copy", "from": "s"},
                },
                "note": "a long text " * 10,
            },
        },
        "train": {"learning_rate": 1e-16, "num_epochs": 3},
    }
    text = dump_yaml(config)
    assert text == textwrap.dedent("""\
        extern_data:
          data: {dim: 9}

        network:
          embed: {class: linear, from: data, n_out: 8}
          rec:
            class: rec
            from: embed
            unit:
              s: {class: rnn_cell, unit: lstm, n_out: 8, from: ['prev:output', 'data:source']}
              output: {class: copy, from: s}
            note: 'a long text a long text a long text a long text a long text a long text a long text a long text a long text a long text '

        train:
          learning_rate: 1.0e-16
          num_epochs: 3
        """)
    assert load(text, "x.yaml").data == config


def test_cli_writes_validated_yaml(tmp_path, capsys):
    out = tmp_path / "demo.yaml"
    rc = main(["import-returnn", demo("tf-rec-self-att"), "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    text = out.read_text()
    command = f"netcompiler import-returnn {demo('tf-rec-self-att')} -o {out}"
    assert text.splitlines()[2:4] == ["# by:", "#   " + command]
    assert f"{demo('tf-rec-self-att')}:54: warning: not imported: model:" in captured.err
    assert main(["validate", str(out)]) == 0
    # without -o: the YAML on stdout, nothing else
    capsys.readouterr()
    assert main(["import-returnn", demo("tf-rec-self-att")]) == 0
    captured = capsys.readouterr()
    assert load(captured.out).data == load(text).data
    assert (
        captured.out.splitlines()[3] == f"#   netcompiler import-returnn {demo('tf-rec-self-att')}"
    )


def test_cli_exit_codes(tmp_path, capsys):
    out = tmp_path / "x.yaml"
    # does not validate: written anyway (for editing), exit 1, diagnostics located in it
    assert main(["import-returnn", demo("rhn-enwik8"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert out.exists() and f"{out}:" in err and 'unknown value "rhn"' in err
    out.unlink()
    # cannot be imported: exit 1, nothing written
    assert main(["import-returnn", demo("timit-lstm-ctc"), "-o", str(out)]) == 1
    assert not out.exists()
    assert "(needs Python; run with --exec)" in capsys.readouterr().err
    assert main(["import-returnn", str(tmp_path / "missing.config")]) == 2
    assert main(["import-returnn", demo("fwd"), "--checkpoint", "p"]) == 2
    assert main(["import-returnn", demo("fwd"), "--timeout", "5"]) == 2
    assert main(["import-returnn", demo("fwd"), "-o", str(tmp_path / "no" / "dir.yaml")]) == 2
    assert not (tmp_path / "no").exists()


def test_cli_checkpoint_flag_calls_the_converter(tmp_path, capsys, monkeypatch):
    """The --checkpoint wiring, with a stand-in of netcompiler.returnn.checkpoint_import."""
    calls = []

    class ReturnnCheckpointError(Exception):
        pass

    def import_returnn_checkpoint(config, prefix, model_dir):
        calls.append((config, prefix, model_dir))
        if prefix == "bad":
            raise ReturnnCheckpointError("missing variables: output/W")
        return "converted 4 variables"

    fake = types.ModuleType("netcompiler.returnn.checkpoint_import")
    fake.ReturnnCheckpointError = ReturnnCheckpointError
    fake.import_returnn_checkpoint = import_returnn_checkpoint
    monkeypatch.setitem(sys.modules, "netcompiler.returnn.checkpoint_import", fake)
    monkeypatch.setattr(
        "netcompiler.training.command_support.import_tensorflow_quietly", lambda: None
    )
    out = tmp_path / "x.yaml"
    args = [
        "import-returnn",
        demo("tf-native-lstm2.12ax"),
        "-o",
        str(out),
        "--checkpoint",
        "net-model/network.005",
        "--model-dir",
        str(tmp_path / "m"),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == "converted 4 variables"
    config, prefix, model_dir = calls[0]
    assert config == load(str(out)).data and prefix == "net-model/network.005"
    assert model_dir == str(tmp_path / "m")
    args[args.index("net-model/network.005")] = "bad"
    assert main(args) == 1
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "netcompiler import-returnn: error: missing variables: output/W"
    )


def test_import_returnn_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from netcompiler.cli.app import main; "
        f"rc = main(['import-returnn', {demo('tf-attention')!r}, "
        f"'-o', {str(tmp_path / 'a.yaml')!r}]); "
        "print(rc, 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.stdout.split() == ["0", "False"], proc.stderr


def test_demo_copies_are_unchanged_below_their_source_line():
    for path in DEMOS.glob("demo-*.config"):
        first = path.read_text().splitlines()[0]
        assert first == (
            f"# source: rwth-i6/returnn demos/{path.name} at commit b46ff5f0f337 "
            f"(copied unchanged below this line)"
        )
    assert len(list(DEMOS.glob("demo-*.config"))) == 25


def test_json_config(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "num_inputs": 3,
                "num_outputs": 2,
                "learning_rate": 0.1,
                "network": {"output": {"class": "softmax", "loss": "ce"}},
            }
        )
    )
    result = import_returnn(str(cfg))
    assert result.mode == "json"
    assert result.config["extern_data"] == {
        "data": {"dim": 3},
        "classes": {"dim": 2, "sparse": True},
    }
    assert result.config["train"] == {"optimizer": {"class": "sgd"}, "learning_rate": 0.1}


def test_yaml_round_trip_property():
    """Any JSON-like config dumps to YAML that netcompiler's loader reads back unchanged."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(
        st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs",)),
        max_size=30,
    )
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
        st.sampled_from(
            [
                "yes",
                "no",
                "on",
                "1.0",
                "0x10",
                "null",
                "~",
                "- a",
                "a: b",
                "#c",
                "prev:output",
                "1e-16",
                "",
                " x ",
            ]
        ),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=20,
    )

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(text.filter(bool), values, min_size=1, max_size=5))
    def check(config):
        assert load(dump_yaml(config), "x.yaml").data == config

    check()


@pytest.mark.tf
def test_cli_checkpoint_end_to_end(tmp_path, capsys):
    """A RETURNN config holding the network of the selfatt_encoder checkpoint fixture (as RETURNN
    built it, from reference.json), imported with --checkpoint: the netcompiler checkpoint is
    written (its contents are tested with the checkpoint converter)."""
    fixture = REPO / "tests" / "fixtures" / "returnn-checkpoints" / "selfatt_encoder"
    ref = json.loads((fixture / "reference.json").read_text())
    cfg = tmp_path / "selfatt.config"
    cfg.write_text(
        f"#!rnn.py\nextern_data = {ref['extern_data']!r}\nnetwork = {ref['net_dict']!r}\n"
    )
    model_dir = tmp_path / "model"
    rc = main(
        [
            "import-returnn",
            str(cfg),
            "-o",
            str(tmp_path / "selfatt.yaml"),
            "--checkpoint",
            str(fixture / "model.001"),
            "--model-dir",
            str(model_dir),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (model_dir / "ckpt-001").is_dir()
    assert len(captured.out.strip().splitlines()) == 1  # the converter's one-line summary
    assert load(str(tmp_path / "selfatt.yaml")).data["network"] == ref["net_dict"]


# -- RETURNN training options with netcompiler equivalents -----------------------------------------
PUBLISHED = DEMOS / "published"


def test_published_swb_conformer_training_options():
    """rwth-i6/returnn-experiments 2022-swb-conformer-hybrid-sat ln_instead_of_bn.config
    (copied under tests/returnn_demos/published/): lines 117-161 and 1744-1752 of the copy."""
    path = PUBLISHED / "swb-conformer-hybrid-ln.config"
    assert path.read_text().startswith("# source: github.com/rwth-i6/returnn-experiments@2283661")
    result = import_returnn(str(path))
    train = result.config["train"]
    rates = train["learning_rates"]  # 30 rates, 0.0002 -> 0.018 in equal steps
    assert len(rates) == 30 and rates[0] == 0.0002 and rates[-1] == 0.018
    assert rates[1] == 0.0008137931034482758
    assert train["learning_rate"] == 0.018
    assert train["learning_rate_control"] == "newbob_multi_epoch"
    assert train["learning_rate_control_opts"] == {
        "decay": 0.9,
        "relative_error_threshold": -0.01,
        "num_epochs": 3,
        "update_interval": 1,
        "relative_error_relative_lr": True,
        "min_num_epochs_per_new_lr": 3,
        "min_learning_rate": 2e-05,
        "error_measure": "error",
    }  # dev_error_output
    assert train["optimizer"] == {"class": "nadam", "epsilon": 1e-08}
    assert (train["num_epochs"], train["save_interval"], train["batch_size"]) == (200, 2, 10000)
    assert "gradient_clip_value" not in train and "gradient_noise" not in train
    ignored = {e.key: e.text for e in result.ignored}
    assert "RETURNN's default" in ignored["gradient_clip"]  # 0: off
    assert "RETURNN's default" in ignored["gradient_noise"]  # 0.0: off
    warned = {e.key: e.text for e in result.warnings}
    assert "ExternSprintDataset" in warned["train"] and "ExternSprintDataset" in warned["dev"]
    assert train["chunking"] == "500:250" and "chunking" not in warned
    assert not {
        "learning_rates",
        "learning_rate_control",
        "learning_rate_control_min_num_epochs_per_new_lr",
        "learning_rate_control_relative_error_relative_lr",
        "learning_rate_control_error_measure",
    } & set(warned)
    from netcompiler.frontend.schema import validate_config
    from netcompiler.training.lr_control import LearningRateControl
    from netcompiler.training.options import TrainOptions

    assert not [
        d for d in validate_config({"network": {}, "train": train}) if d.severity == "error"
    ]
    opts = TrainOptions.from_config(result.config)
    ctl = LearningRateControl(
        opts.learning_rate_control,
        opts.learning_rate,
        opts.learning_rate_control_opts,
        learning_rates=opts.learning_rates,
    )
    seen = []
    for epoch in range(1, 34):
        seen.append(ctl.begin_epoch(epoch))
        ctl.end_epoch(1.0, 0.5)
    # the warm-up, then 0.018 kept for 3 epochs (min_num_epochs_per_new_lr), then flat dev
    # errors: relative error 0 > -0.01 -> 0.018 * 0.9
    assert seen[:30] == rates and seen[30:32] == [0.018, 0.018]
    assert seen[32] == pytest.approx(0.018 * 0.9)


def test_published_swb_conformer_spec_augment_recipe(tmp_path, capsys):
    """The setup's SpecAugment is Python (an eval layer calling the config's `transform`):
    without --spec-augment the YAML does not validate and the command says how to fix it;
    with it, the layer is netcompiler's spec_augment with the recipe's widths, and the whole
    published setup validates."""
    path = PUBLISHED / "swb-conformer-hybrid-ln.config"
    out = tmp_path / "swb.yaml"
    assert main(["import-returnn", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "[expr.python-call]" in err
    assert "hint: network.source calls the config's Python function `transform`" in err
    assert "--spec-augment" in err

    assert main(["import-returnn", str(path), "-o", str(out), "--spec-augment"]) == 0
    config = load(str(out)).data
    assert config["network"]["source"] == {
        "class": "spec_augment",
        "from": "data",
        "max_num_time_masks": 2,
        "time_mask_frames_per_mask": 100,
        "max_time_mask_width": 20,
        "max_num_feature_masks": 2,
    }
    assert "--spec-augment" in out.read_text().splitlines()[3]  # the command in the header
    assert validate(str(out)).ok
    result = import_returnn(str(path), spec_augment=True)
    assert any("growth of the masks" in n for n in result.notes)


def test_gradient_options_max_seq_length_and_learning_rates_mapping(tmp_path):
    cfg = tmp_path / "c.config"
    base = (
        "#!rnn.py\nnetwork = {'output': {'class': 'softmax', 'loss': 'ce'}}\n"
        "num_inputs = 2\nnum_outputs = 3\n"
    )
    cfg.write_text(
        base + "gradient_clip = 0.5\ngradient_clip_global_norm = 3\n"
        "gradient_noise = 0.1\nmax_seq_length = -75\n"
        "learning_rates = {1: 0.1, 5: 0.2}\n"
    )
    result = import_returnn(str(cfg))
    train = result.config["train"]
    assert train["gradient_clip_value"] == 0.5  # RETURNN's per-entry clip
    assert train["gradient_clip"] == 3  # RETURNN's global-norm clip
    assert train["gradient_noise"] == 0.1
    assert train["max_seq_length"] == {"classes": 75}  # RETURNN: -n limits `classes`
    assert train["learning_rates"] == {1: 0.1, 5: 0.2}
    assert validate(result.to_yaml(), name="c.yaml").ok
    cfg.write_text(
        base + "gradient_clip = -1\nmax_seq_length = {'data': 300}\nlearning_rates = [0.1, 0]\n"
    )
    result = import_returnn(str(cfg))
    train = result.config["train"]
    assert train["max_seq_length"] == {"data": 300}
    warned = {e.key: e.text for e in result.warnings}
    assert "not a positive number" in warned["gradient_clip"]
    assert "not accepted by netcompiler" in warned["train.learning_rates"]
    assert "learning_rates" not in train and "gradient_clip_value" not in train
    assert validate(result.to_yaml(), name="c.yaml").ok


def test_accum_grad_multiple_step_mapping(tmp_path):
    cfg = tmp_path / "c.config"
    base = (
        "#!rnn.py\nnetwork = {'output': {'class': 'softmax', 'loss': 'ce'}}\n"
        "num_inputs = 2\nnum_outputs = 3\n"
    )
    cfg.write_text(base + "accum_grad_multiple_step = 4\n")
    assert import_returnn(str(cfg)).config["train"]["accum_grad_multiple_step"] == 4
    cfg.write_text(base + "accum_grad_multiple_step = 1\n")
    result = import_returnn(str(cfg))
    assert "accum_grad_multiple_step" not in result.config["train"]
    assert "accum_grad_multiple_step" in {e.key for e in result.ignored}  # 1: RETURNN's no-op
    # chunking: "size:step" as is, an int as a string ("size"), per-key dicts not imported
    cfg.write_text(base + "chunking = 100\n")
    assert import_returnn(str(cfg)).config["train"]["chunking"] == "100"
    cfg.write_text(base + "chunking = ({'data': 10, 'classes': 5}, {'data': 5, 'classes': 2})\n")
    result = import_returnn(str(cfg))
    assert "chunking" not in result.config["train"]
    assert "the same for every key" in {e.key: e.text for e in result.warnings}["chunking"]
