"""The compile API, `netcompiler compile`, checkpoints by `<layer>/<param>` name."""

from pathlib import Path

import numpy as np
import pytest
import yaml

tf = pytest.importorskip("tensorflow")

import netcompiler  # noqa: E402
from netcompiler.backend.export import checkpoint  # noqa: E402
from netcompiler.cli import main  # noqa: E402
from netcompiler.core.diagnostics import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

CONFIG = {
    "extern_data": {
        "data": {"dim": 7, "sparse": True},
        "classes": {"dim": 4, "sparse": True, "same_time_as": "data"},
    },
    "network": {
        "emb": {"class": "linear", "n_out": 8, "with_bias": False},
        "att": {
            "class": "self_attention",
            "from": "emb",
            "n_out": 8,
            "num_heads": 2,
            "total_key_dim": 8,
        },
        "lstm": {"class": "rec", "unit": "lstm", "from": "att", "n_out": 6},
        "output": {"class": "softmax", "from": "lstm", "loss": "ce", "target": "classes"},
    },
}


def _inputs(batch=3, time=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 7, (batch, time)).astype(np.int32)
    lengths = np.array([time] + list(rng.integers(1, time + 1, batch - 1)), np.int32)
    return {"data": x}, {"data": lengths}


def test_dict_and_yaml_routes_give_the_same_network():
    a = netcompiler.compile(CONFIG, seed=5)
    b = netcompiler.compile(yaml.safe_dump(CONFIG), seed=5)
    assert sorted(a.variables_by_name) == sorted(b.variables_by_name)
    for name, var in a.variables_by_name.items():
        np.testing.assert_array_equal(var.numpy(), b.variable(name).numpy())
    inputs, lengths = _inputs()
    np.testing.assert_array_equal(
        a(inputs=inputs, lengths=lengths)["output"][0].numpy(),
        b(inputs=inputs, lengths=lengths)["output"][0].numpy(),
    )


def test_variables_by_layer_and_param_name_with_their_initialisers():
    net = netcompiler.compile(CONFIG)
    assert sorted(net.variables_by_name) == [
        "att/QKV",
        "emb/W",
        "lstm/W",
        "lstm/W_re",
        "lstm/b",
        "output/W",
        "output/b",
    ]
    assert net.variable("att/QKV").shape == (8, 24)
    np.testing.assert_array_equal(net.variable("output/b").numpy(), np.zeros(4))
    # glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out))
    assert np.abs(net.variable("att/QKV").numpy()).max() <= np.sqrt(6 / (8 + 24))
    with pytest.raises(KeyError, match="did you mean"):
        net.variable("att/QKVV")


def test_configured_initialisers_are_used():
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["network"]["output"]["forward_weights_init"] = 0.5
    cfg["network"]["output"]["bias_init"] = {"class": "constant", "value": 2.0}
    net = netcompiler.compile(cfg)
    np.testing.assert_array_equal(net.variable("output/W").numpy(), np.full((6, 4), 0.5))
    np.testing.assert_array_equal(net.variable("output/b").numpy(), np.full(4, 2.0))


def test_fetch_values_and_lengths_and_bad_fetch():
    net = netcompiler.compile(CONFIG)
    inputs, lengths = _inputs()
    out = net(inputs=inputs, lengths=lengths, fetch=["att", "output"])
    values, lens = out["att"]
    assert values.shape == (3, 6, 8)
    np.testing.assert_array_equal(lens.numpy(), lengths["data"])
    np.testing.assert_allclose(out["output"][0].numpy().sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(KeyError, match="did you mean `att`"):
        net(inputs=inputs, lengths=lengths, fetch=["atx"])


def test_invalid_config_raises_config_error_with_every_diagnostic():
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["network"]["att"]["num_heads"] = 3
    cfg["network"]["output"]["n_ot"] = 2  # a layer after `att`: both errors are reported
    with pytest.raises(ConfigError) as info:
        netcompiler.compile(cfg)
    rules = sorted(d.rule for d in info.value.diagnostics)
    assert rules == ["schema.unknown-option", "shape.num-heads"]


def test_no_retracing_when_batch_and_lengths_change():
    net = netcompiler.compile(CONFIG)
    for batch, time in [(2, 4), (5, 9), (1, 1), (3, 12)]:
        net(*_inputs(batch, time))
    fn = net.get_function(("data",), ("output",), False)
    assert fn.experimental_get_tracing_count() == 1


def test_checkpoint_keys_are_layer_and_param_names(tmp_path):
    net = netcompiler.compile(CONFIG, seed=1)
    path = checkpoint(net).write(str(tmp_path / "ckpt"))
    keys = {name for name, _ in tf.train.list_variables(path)}
    assert {
        "network/att/QKV/.ATTRIBUTES/VARIABLE_VALUE",
        "network/lstm/W_re/.ATTRIBUTES/VARIABLE_VALUE",
    } <= keys
    other = netcompiler.compile(CONFIG, seed=2)
    assert not np.allclose(other.variable("att/QKV").numpy(), net.variable("att/QKV").numpy())
    checkpoint(other).read(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(
        other.variable("att/QKV").numpy(), net.variable("att/QKV").numpy()
    )


def test_compile_cli_writes_a_saved_model_that_reloads_to_the_same_outputs(tmp_path, capsys):
    cfg_path = tmp_path / "net.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    net = netcompiler.compile(CONFIG, seed=9)
    ckpt = checkpoint(net).write(str(tmp_path / "ckpt"))
    out_dir = tmp_path / "model"
    code = main(["compile", str(cfg_path), "-o", str(out_dir), "--checkpoint", ckpt])
    assert code == 0
    assert "[B, T(data), F=8]" in capsys.readouterr().out
    assert "att\tself_attention\t[B, T(data), F=8]\t192" in (out_dir / "shapes.txt").read_text()
    loaded = tf.saved_model.load(str(out_dir))
    inputs, lengths = _inputs(4, 5, seed=3)
    got = loaded.signatures["serving_default"](
        data=tf.constant(inputs["data"]), data_lengths=tf.constant(lengths["data"])
    )
    want, want_len = net(inputs=inputs, lengths=lengths)["output"]
    np.testing.assert_allclose(got["output"].numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["output_lengths"].numpy(), want_len.numpy())


def test_compile_cli_invalid_config_exits_1_and_leaves_no_output(tmp_path, capsys):
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text("network:\n  output: {class: linear, n_out: 0}\n")
    out_dir = tmp_path / "model"
    assert main(["compile", str(cfg_path), "-o", str(out_dir)]) == 1
    assert "n_out" in capsys.readouterr().err
    assert not out_dir.exists()
    assert main(["compile", str(tmp_path / "missing.yaml"), "-o", str(out_dir)]) == 2


def test_cli_keeps_tensorflow_start_up_chatter_off_the_terminal(tmp_path):
    import subprocess
    import sys

    cfg_path = tmp_path / "net.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    proc = subprocess.run(
        [sys.executable, "-m", "netcompiler", "compile", str(cfg_path), "-o", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "NETCOMPILER_TF_LOGS"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "absl::InitializeLog" not in proc.stderr and "I0000" not in proc.stderr, proc.stderr
    assert "SavedModel written to" in proc.stdout
