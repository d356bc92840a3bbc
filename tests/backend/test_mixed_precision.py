"""`train.precision` / `--precision` / `netcompiler.compile(precision=)` (issue 12, part 3).

- mixed_bfloat16 outputs (linear + self-attention + LSTM) match float32 within bfloat16's
  precision, the products really run in bfloat16, and padding stays masked exactly;
- variables and checkpoints stay float32, and runs in one precision resume the checkpoints of
  another (mixed_bfloat16 <-> float32, and on to mixed_float16);
- mixed_float16 trains with a dynamic loss scale;
- an unknown precision is refused (schema, `compile`, CLI) with the choices named.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from netcompiler.frontend.validate import validate

pytestmark = pytest.mark.tf

NETWORK = """
extern_data:
  data: {dim: 8}
network:
  enc: {class: linear, from: data, n_out: 32, activation: tanh}
  att: {class: self_attention, from: enc, n_out: 32, num_heads: 4, total_key_dim: 32}
  lstm: {class: rec, unit: lstm, from: att, n_out: 24}
  output: {class: linear, from: lstm, n_out: 5, activation: null}
"""

TRAIN = """
extern_data:
  data: {dim: 9, sparse: true}
  classes: {dim: 2, sparse: true, same_time_as: data}
network:
  embed: {class: linear, from: data, n_out: 16, activation: tanh}
  att: {class: self_attention, from: embed, n_out: 16, num_heads: 2, total_key_dim: 16}
  output: {class: softmax, from: att, loss: ce, target: classes}
train:
  train_data: {class: 12ax, num_seqs: 16, min_len: 5, max_len: 16}
  batch_size: 1000
  max_seqs: 8
  num_epochs: 1
  learning_rate: 0.01
  optimizer: {class: adam}
  random_seed: 3
"""

FETCH = ("enc", "att", "lstm", "output")


def write(tmp_path, text, name="c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def ragged_batch(poison: float | None = None):
    """Three sequences of 7, 4 and 2 frames; padding zeros, or `poison` where given."""
    rng = np.random.default_rng(0)
    lengths = np.array([7, 4, 2], np.int32)
    x = rng.normal(size=(3, 7, 8)).astype(np.float32)
    valid = np.arange(7)[None, :] < lengths[:, None]
    x[~valid] = 0.0 if poison is None else poison
    return x, lengths, valid


def run(net, x, lengths):
    out = net(inputs={"data": x}, lengths={"data": lengths}, fetch=FETCH)
    return {k: v.numpy() for k, (v, _) in out.items()}


def product_dtypes(net, fetch=FETCH) -> set[str]:
    """The dtypes the traced forward pass computes its matrix products in."""
    graph = net.get_function(("data",), fetch, False).get_concrete_function().graph
    found = set()
    for g in [graph] + [
        f.graph for f in getattr(graph, "_functions", {}).values() if hasattr(f, "graph")
    ]:
        for op in g.get_operations():
            if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"):
                found.add(op.outputs[0].dtype.name)
    return found


# -- forward ---------------------------------------------------------------------------------------
def test_bfloat16_matches_float32_and_masks_padding_exactly(tmp_path):
    import netcompiler

    cfg = write(tmp_path, NETWORK)
    fp32 = netcompiler.compile(cfg, seed=1)
    bf16 = netcompiler.compile(cfg, seed=1, precision="mixed_bfloat16")
    assert (fp32.precision, bf16.precision) == ("float32", "mixed_bfloat16")
    # master weights: float32, the same initial values
    for name, var in bf16.variables_by_name.items():
        assert var.dtype.name == "float32", name
        np.testing.assert_array_equal(var.numpy(), fp32.variable(name).numpy())
    assert product_dtypes(fp32) == {"float32"}
    assert product_dtypes(bf16) == {"bfloat16"}

    x, lengths, valid = ragged_batch()
    want, got = run(fp32, x, lengths), run(bf16, x, lengths)
    for name in FETCH:
        assert got[name].dtype == np.float32, name
        a, b = want[name][valid], got[name][valid]
        # bfloat16 keeps 8 bits of mantissa (relative step 2**-8 = 0.4 %); a few products
        # deep, the outputs (of size ~1) agree to a few 1e-2, and they do differ
        np.testing.assert_allclose(b, a, rtol=0.05, atol=0.03, err_msg=name)
        assert not np.array_equal(a, b), name

    # padding frames do not reach the valid frames, whatever they hold
    poisoned, _, _ = ragged_batch(poison=1e4)
    again = run(bf16, poisoned, lengths)
    for name in FETCH:
        np.testing.assert_array_equal(again[name][valid], got[name][valid], err_msg=name)


def test_compile_refuses_an_unknown_precision(tmp_path):
    import netcompiler

    with pytest.raises(
        ValueError,
        match=r"unknown precision `bfloat16`.*did you mean "
        r"`mixed_bfloat16`",
    ):
        netcompiler.compile(write(tmp_path, NETWORK), precision="bfloat16")


def test_schema_rejects_an_unknown_precision_with_a_hint(tmp_path):
    from netcompiler.backend.compute import PRECISIONS
    from netcompiler.frontend.schema import load_schema

    cfg = write(tmp_path, TRAIN)
    for name in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert not validate(cfg, [f"train.precision={name}"]).errors
    bad = validate(cfg, ["train.precision=mixed_bfloat"])
    assert [d.path for d in bad.errors] == [("train", "precision")]
    assert "mixed_bfloat16" in bad.errors[0].message  # the choices are listed
    assert bad.errors[0].hint == "did you mean `mixed_bfloat16`?"
    # the schema and the back end offer the same choices
    assert tuple(load_schema("train.schema.json")["properties"]["precision"]["enum"]) == PRECISIONS


def test_the_cli_flag_reaches_the_network(tmp_path):
    import netcompiler
    from netcompiler.cli.app import build_parser

    cfg = write(tmp_path, NETWORK)
    parser = build_parser()
    for command in (
        ["compile", cfg, "-o", str(tmp_path / "out")],
        ["forward", cfg, "--checkpoint", "ckpt"],
        ["search", cfg, "--checkpoint", "ckpt", "--data", "dev"],
    ):
        args = parser.parse_args(
            command + ["--precision", "mixed_bfloat16", "--set", "train.random_seed=5"]
        )
        assert args.set == ["train.precision=mixed_bfloat16", "train.random_seed=5"], command
        net = netcompiler.compile(args.config, overrides=args.set)
        assert net.precision == "mixed_bfloat16" and product_dtypes(net) == {"bfloat16"}
        assert parser.parse_args(command).set == []  # without the flag: the config's choice
    with pytest.raises(SystemExit):
        parser.parse_args(["forward", cfg, "--precision", "fp8"])


# -- training and checkpoints ----------------------------------------------------------------------
def trainer(tmp_path, precision: str, model_dir: str, epochs: int = 1):
    from netcompiler.training.trainer import Trainer

    result = validate(
        write(tmp_path, TRAIN), [f"train.precision={precision}", f"train.num_epochs={epochs}"]
    )
    assert not result.errors, result.errors
    return Trainer(result, model_dir=tmp_path / model_dir, out=io.StringIO())


def checkpoint_dtypes(model_dir) -> dict[str, str]:
    import tensorflow as tf

    from netcompiler.training.checkpoints import newest_checkpoint

    reader = tf.train.load_checkpoint(str(newest_checkpoint(model_dir) / "ckpt"))
    return {
        k: v.name for k, v in reader.get_variable_to_dtype_map().items() if k.startswith("network/")
    }


def test_checkpoints_are_float32_and_resume_across_precisions(tmp_path):
    # each epoch resumes the checkpoint of the one before, written in another precision
    previous = None
    precisions = ("mixed_bfloat16", "float32", "mixed_bfloat16", "mixed_float16")
    for epoch, precision in enumerate(precisions, 1):
        t = trainer(tmp_path, precision, "m", epochs=epoch)
        assert t.net.precision == precision
        if previous is not None:
            assert t.restore() == epoch - 1
            for name, w in previous.items():  # restored exactly, still float32
                var = t.net.variable(name)
                assert var.dtype.name == "float32"
                np.testing.assert_array_equal(var.numpy(), w, err_msg=name)
        t.train()
        dtypes = checkpoint_dtypes(tmp_path / "m")
        assert dtypes and set(dtypes.values()) == {"float32"}, dtypes
        previous = {k: v.numpy() for k, v in t.net.variables_by_name.items()}
    rows = (tmp_path / "m" / "scores.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["1", "2", "3", "4"]
    assert np.isfinite([float(r.split("\t")[2]) for r in rows]).all()


def test_float16_trains_with_a_dynamic_loss_scale(tmp_path):
    from netcompiler.training.loss_scaling import loss_scale

    t = trainer(tmp_path, "mixed_float16", "m16", epochs=3)
    assert product_dtypes(t.net, ("output",)) == {"float16"}
    scale = loss_scale(t.optimizer)
    assert scale is not None and float(scale.numpy()) == 2.0**15
    t.train()
    steps = int(t.optimizer.iterations.numpy())
    assert steps == 6 and int(t.optimizer.step_counter.numpy()) == steps  # all finite, applied
    rows = (tmp_path / "m16" / "scores.tsv").read_text().splitlines()[1:]
    losses = [float(r.split("\t")[2]) for r in rows]
    assert len(losses) == 3 and np.isfinite(losses).all() and losses[-1] < losses[0], losses
    # the scale is still a power of two (halved on overflow, doubled after finite runs)
    value = float(scale.numpy())
    assert value >= 1 and np.log2(value) == int(np.log2(value))
    # bfloat16 and float32 need no loss scale
    assert loss_scale(trainer(tmp_path, "mixed_bfloat16", "mbf").optimizer) is None
