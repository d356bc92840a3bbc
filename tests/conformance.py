"""The conformance registry: one small example network per layer class (Sonnet style).

Every layer class of the registry must appear here (`test_conformance.py` fails otherwise, except
for the classes in its `EXEMPT` list); each example runs through one battery: inferred shape ==
run-time shape, padding invariance, no retracing, SavedModel round trip, XLA compilation (where
`xla`), golden checkpoint.

An example is a config whose layer under test is `output` (fetched); its inputs are generated
from `extern_data`: dense -> normal noise, sparse -> random class indices. `classes` (sparse, its
own time axis) is the usual second input: its time axis is a different axis from `data`'s with
other lengths (see `make_inputs`), so it plays a decoder's time axis outside a loop.

The output may have several time axes, a time axis other than the input's, no batch axis, or a
bool/int dtype: the battery masks every time axis with the lengths of that axis (from the network
run: the fetched layer's first time axis, or the extern data / a layer the axis comes from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Example:
    name: str
    config: dict
    classes: tuple[str, ...]  # layer classes this example covers
    xla: bool = True  # also compiled with XLA (`jit_compile`)
    # the extern data the output depends on: the inputs of the SavedModel's serving signature
    inputs: tuple[str, ...] = ("data",)
    rtol: float = 1e-5


def _cfg(network: dict, data: dict | None = None, **extern) -> dict:
    ext = {"data": data or {"dim": 5}}
    ext.update(extern)
    return {"extern_data": ext, "network": network}


#: the second input: labels over their own time axis `T(classes)` (a "decoder" axis)
CLASSES = {"dim": 6, "sparse": True}


def _cls(network: dict, data: dict | None = None) -> dict:
    return _cfg(network, data, classes=dict(CLASSES))


EXAMPLES: list[Example] = [
    # -- the first examples (golden files pin them) -------------------------------------------
    Example(
        "linear",
        _cfg({"output": {"class": "linear", "n_out": 6, "activation": "tanh"}}),
        ("linear",),
    ),
    Example(
        "linear_sparse",
        _cfg({"output": {"class": "linear", "n_out": 4}}, {"dim": 7, "sparse": True}),
        ("linear",),
    ),
    Example("softmax", _cfg({"output": {"class": "softmax", "n_out": 3}}), ("softmax",)),
    Example("rec_lstm", _cfg({"output": {"class": "rec", "unit": "lstm", "n_out": 4}}), ("rec",)),
    Example(
        "rec_lstm_backward",
        _cfg({"output": {"class": "rec", "unit": "lstm", "n_out": 4, "direction": -1}}),
        ("rec",),
    ),
    Example("rec_gru", _cfg({"output": {"class": "rec", "unit": "gru", "n_out": 3}}), ("rec",)),
    Example(
        "self_attention",
        _cfg(
            {"output": {"class": "self_attention", "n_out": 6, "num_heads": 2, "total_key_dim": 4}}
        ),
        ("self_attention",),
    ),
    Example(
        "self_attention_causal_rel_pos",
        _cfg(
            {
                "rel": {"class": "relative_positional_encoding", "n_out": 2, "clipping": 3},
                "output": {
                    "class": "self_attention",
                    "n_out": 6,
                    "num_heads": 2,
                    "total_key_dim": 4,
                    "attention_left_only": True,
                    "key_shift": "rel",
                },
            }
        ),
        ("self_attention", "relative_positional_encoding"),
    ),
    # -- element-wise ---------------------------------------------------------------------------
    Example(
        "activation_2sigmoid",
        _cfg({"output": {"class": "activation", "activation": "2*sigmoid"}}),
        ("activation",),
    ),
    Example(
        "copy_concat",
        _cfg(
            {
                "lin": {"class": "linear", "n_out": 2},
                "output": {"class": "copy", "from": ["data", "lin"]},
            }
        ),
        ("copy",),
    ),
    Example("dropout", _cfg({"output": {"class": "dropout", "dropout": 0.3}}), ("dropout",)),
    # not training (as the battery runs): the identity; masking: tests/layers/test_spec_augment.py
    Example(
        "spec_augment",
        _cfg(
            {
                "output": {
                    "class": "spec_augment",
                    "min_num_time_masks": 1,
                    "max_num_time_masks": 2,
                    "time_mask_frames_per_mask": 4,
                    "max_time_mask_width": 2,
                    "max_num_feature_masks": 1,
                }
            }
        ),
        ("spec_augment",),
    ),
    Example("layer_norm", _cfg({"output": {"class": "layer_norm"}}), ("layer_norm",)),
    # [B, T, F] + [B, F] (a reduce over T: mean, masked): broadcast over the time axis
    Example(
        "combine_broadcast_time",
        _cfg(
            {
                "mean": {"class": "reduce", "mode": "mean", "axes": "T"},
                "output": {
                    "class": "combine",
                    "kind": "sub",
                    "from": ["data", "mean"],
                    "activation": "tanh",
                },
            }
        ),
        ("combine", "reduce"),
    ),
    # two different time axes broadcast: [B, T(data), F] * [B, T(classes), F]
    Example(
        "combine_two_time_axes",
        _cls(
            {
                "enc": {"class": "linear", "n_out": 3},
                "dec": {"class": "linear", "n_out": 3, "from": "data:classes"},
                "output": {"class": "combine", "kind": "mul", "from": ["enc", "dec"]},
            }
        ),
        ("combine", "linear"),
        inputs=("data", "classes"),
    ),
    # [B, T, F] with [B, T] (a reduce max over F) in an expression
    Example(
        "eval_expression",
        _cfg(
            {
                "mx": {"class": "reduce", "mode": "max", "axes": "F"},
                "output": {
                    "class": "eval",
                    "from": ["data", "mx"],
                    "eval": "tf.tanh(source(0)) * source(1) + 0.5",
                },
            }
        ),
        ("eval", "reduce"),
    ),
    Example(
        "combine_kind_eval",
        _cfg(
            {
                "lin": {"class": "linear", "n_out": 5},
                "output": {
                    "class": "combine",
                    "kind": "eval",
                    "from": ["data", "lin"],
                    "eval": "tf.maximum(source(0), source(1)) - tf.nn.relu(source(0))",
                },
            }
        ),
        ("combine",),
    ),
    # int output, sparse, from `classes` only (the serving signature takes only `classes`)
    Example(
        "eval_sparse_int",
        _cls({"output": {"class": "eval", "from": "data:classes", "eval": "source(0) + 1"}}),
        ("eval",),
        inputs=("classes",),
    ),
    Example(
        "compare_value",
        _cfg({"output": {"class": "compare", "kind": "greater", "value": 0.0}}),
        ("compare",),
    ),
    # int scalar constant [] against sparse labels [B, T(classes)] -> bool
    Example(
        "compare_constant_labels",
        _cls(
            {
                "two": {"class": "constant", "value": 2},
                "output": {"class": "compare", "kind": "less", "from": ["data:classes", "two"]},
            }
        ),
        ("compare", "constant"),
        inputs=("classes",),
    ),
    Example(
        "constant_broadcast",
        _cfg(
            {
                "c": {"class": "constant", "value": [0.5, -1.0, 2.0, 0.0, 1.5]},
                "output": {"class": "combine", "kind": "add", "from": ["data", "c"]},
            }
        ),
        ("constant", "combine"),
    ),
    # a trained variable [S=2, F=5] (RETURNN's name `v/v`) times the input [B, T, F=5]
    Example(
        "variable_broadcast",
        _cfg(
            {
                "v": {
                    "class": "variable",
                    "shape": [2, 5],
                    "init": "random_normal_initializer(stddev=0.5)",
                },
                "output": {"class": "combine", "kind": "mul", "from": ["data", "v"]},
            }
        ),
        ("variable", "combine"),
    ),
    # with a batch axis [B, F=5] (the batch size taken from the input), plus the input
    Example(
        "variable_batch_axis",
        _cfg(
            {
                "v": {
                    "class": "variable",
                    "shape": [5],
                    "add_batch_axis": True,
                    "init": "glorot_uniform",
                },
                "output": {"class": "combine", "kind": "add", "from": ["data", "v"]},
            }
        ),
        ("variable", "combine"),
    ),
    # -- reductions and normalisation over time -------------------------------------------------
    Example(
        "reduce_mean_time",
        _cfg({"output": {"class": "reduce", "mode": "mean", "axes": "T"}}),
        ("reduce",),
    ),
    Example(
        "reduce_max_feature",
        _cfg({"output": {"class": "reduce", "mode": "max", "axes": "F"}}),
        ("reduce",),
    ),
    Example(
        "reduce_logsumexp_time_keep",
        _cfg({"output": {"class": "reduce", "mode": "logsumexp", "axis": "T", "keep_dims": True}}),
        ("reduce",),
    ),
    Example(
        "softmax_over_spatial_window",
        _cfg(
            {
                "e": {"class": "linear", "n_out": 1},
                "output": {
                    "class": "softmax_over_spatial",
                    "from": "e",
                    "window_start": 1,
                    "window_size": 3,
                },
            }
        ),
        ("softmax_over_spatial",),
    ),
    # a per-sequence window start from a layer, energy factor, log space
    Example(
        "softmax_over_spatial_log_window_layer",
        _cfg(
            {
                "e": {"class": "linear", "n_out": 2},
                "len": {"class": "length"},
                "start": {"class": "eval", "from": "len", "eval": "source(0) - 2"},
                "output": {
                    "class": "softmax_over_spatial",
                    "from": "e",
                    "window_start": "start",
                    "window_size": 2,
                    "energy_factor": 0.5,
                    "log_space": True,
                },
            }
        ),
        ("softmax_over_spatial", "length", "eval"),
    ),
    Example("length", _cfg({"output": {"class": "length"}}), ("length",)),
    Example(
        "length_classes",
        _cls({"output": {"class": "length", "from": "data:classes"}}),
        ("length",),
        inputs=("classes",),
    ),
    # -- dot and attention ----------------------------------------------------------------------
    # red/var over T: [B, T, F=5] x [B, T, F=3] summed over T -> [B, S=5, F=3]
    Example(
        "dot_reduce_time",
        _cfg(
            {
                "lin": {"class": "linear", "n_out": 3},
                "output": {
                    "class": "dot",
                    "from": ["data", "lin"],
                    "red1": "T",
                    "red2": "T",
                    "var1": "F",
                    "var2": "F",
                },
            }
        ),
        ("dot",),
    ),
    # energies over two time axes [B, T(data), T(classes)], softmax over T(data), attention:
    # the output's time axis is T(classes), not the input's
    Example(
        "generic_attention_decoder_axis",
        _cls(
            {
                "enc": {"class": "linear", "n_out": 4},
                "query": {"class": "linear", "n_out": 4, "from": "data:classes"},
                "energy": {
                    "class": "dot",
                    "from": ["enc", "query"],
                    "red1": "F",
                    "red2": "F",
                    "var1": "T",
                    "var2": "T",
                },
                "weights": {"class": "softmax_over_spatial", "from": "energy", "axis": "stag:data"},
                "output": {"class": "generic_attention", "weights": "weights", "base": "enc"},
            }
        ),
        ("generic_attention", "dot", "softmax_over_spatial"),
        inputs=("data", "classes"),
    ),
    # weights [B, T, F=1] (auto-squeezed) -> [B, F=V]
    Example(
        "generic_attention_pooling",
        _cfg(
            {
                "e": {"class": "linear", "n_out": 1},
                "weights": {"class": "softmax_over_spatial", "from": "e"},
                "output": {"class": "generic_attention", "weights": "weights", "base": "data"},
            }
        ),
        ("generic_attention", "softmax_over_spatial"),
    ),
    # source without the encoder's time axis (a reduce over T): [B, D] -> [B, V]
    Example(
        "dot_attention_reduced_source",
        _cfg(
            {
                "base": {"class": "linear", "n_out": 4},
                "ctx": {"class": "linear", "n_out": 3},
                "s": {"class": "reduce", "mode": "mean", "axes": "T", "from": "ctx"},
                "output": {
                    "class": "dot_attention",
                    "from": "s",
                    "base": "base",
                    "base_ctx": "ctx",
                    "energy_factor": 0.5,
                },
            }
        ),
        ("dot_attention",),
    ),
    # source over a decoder time axis: [B, T(classes), D] -> [B, T(classes), V]
    Example(
        "dot_attention_decoder_axis",
        _cls(
            {
                "base": {"class": "linear", "n_out": 4},
                "ctx": {"class": "linear", "n_out": 3},
                "s": {"class": "linear", "n_out": 3, "from": "data:classes"},
                "output": {
                    "class": "dot_attention",
                    "from": "s",
                    "base": "base",
                    "base_ctx": "ctx",
                },
            }
        ),
        ("dot_attention",),
        inputs=("data", "classes"),
    ),
    Example(
        "concat_attention_reduced_source",
        _cfg(
            {
                "base": {"class": "linear", "n_out": 4},
                "ctx": {"class": "linear", "n_out": 3},
                "s": {"class": "reduce", "mode": "max", "axes": "T", "from": "ctx"},
                "output": {
                    "class": "concat_attention",
                    "from": "s",
                    "base": "base",
                    "base_ctx": "ctx",
                },
            }
        ),
        ("concat_attention",),
    ),
    Example(
        "concat_attention_decoder_axis",
        _cls(
            {
                "base": {"class": "linear", "n_out": 4},
                "ctx": {"class": "linear", "n_out": 3},
                "s": {"class": "linear", "n_out": 3, "from": "data:classes"},
                "output": {
                    "class": "concat_attention",
                    "from": "s",
                    "base": "base",
                    "base_ctx": "ctx",
                },
            }
        ),
        ("concat_attention",),
        inputs=("data", "classes"),
    ),
    # one location per sequence [B] (from the lengths)
    Example(
        "gauss_window_attention_reduced_source",
        _cfg(
            {
                "base": {"class": "linear", "n_out": 3},
                "len": {"class": "length"},
                "loc": {
                    "class": "eval",
                    "from": "len",
                    "eval": "tf.cast(source(0), tf.float32) * 0.6",
                },
                "output": {
                    "class": "gauss_window_attention",
                    "from": "loc",
                    "base": "base",
                    "window_size": 3,
                },
            }
        ),
        ("gauss_window_attention",),
    ),
    # a location per decoder frame [B, T(classes)], with an inner window
    Example(
        "gauss_window_attention_decoder_axis",
        _cls(
            {
                "base": {"class": "linear", "n_out": 3},
                "loc": {
                    "class": "eval",
                    "from": "data:classes",
                    "eval": "tf.cast(source(0), tf.float32) * 0.7",
                },
                "output": {
                    "class": "gauss_window_attention",
                    "from": "loc",
                    "base": "base",
                    "window_size": 4,
                    "inner_size": 2,
                    "std": 1.5,
                },
            }
        ),
        ("gauss_window_attention",),
        inputs=("data", "classes"),
    ),
    # [T, T, F] without a batch axis
    Example(
        "relative_positional_encoding",
        _cfg({"output": {"class": "relative_positional_encoding", "n_out": 3, "clipping": 2}}),
        ("relative_positional_encoding",),
    ),
    Example(
        "relative_positional_encoding_fixed",
        _cfg(
            {
                "output": {
                    "class": "relative_positional_encoding",
                    "n_out": 5,
                    "clipping": 3,
                    "fixed": True,
                }
            }
        ),
        ("relative_positional_encoding",),
    ),
    Example(
        "self_attention_key_shift",
        _cfg(
            {
                "rel": {"class": "relative_positional_encoding", "n_out": 3, "clipping": 2},
                "output": {
                    "class": "self_attention",
                    "n_out": 4,
                    "num_heads": 2,
                    "total_key_dim": 6,
                    "key_shift": "rel",
                },
            }
        ),
        ("self_attention", "relative_positional_encoding"),
    ),
    Example(
        "positional_encoding",
        _cfg({"output": {"class": "positional_encoding", "n_out": 7}}),
        ("positional_encoding",),
    ),
    # added to the input, positions shifted by each sequence's length
    Example(
        "positional_encoding_add_offset",
        _cfg(
            {
                "len": {"class": "length"},
                "output": {"class": "positional_encoding", "add_to_input": True, "offset": "len"},
            }
        ),
        ("positional_encoding", "length"),
    ),
    # -- recurrent ------------------------------------------------------------------------------
    # an LSTM's final state (`key: "*"`) is c‖h: [c_fw, h_fw, c_bw, h_bw]
    Example(
        "get_last_hidden_state_fw_bw",
        _cfg(
            {
                "fw": {"class": "rec", "unit": "lstm", "n_out": 3},
                "bw": {"class": "rec", "unit": "lstm", "n_out": 2, "direction": -1},
                "output": {"class": "get_last_hidden_state", "from": ["fw", "bw"], "n_out": 10},
            }
        ),
        ("get_last_hidden_state", "rec"),
    ),
    Example(
        "get_last_hidden_state_add",
        _cfg(
            {
                "fw": {"class": "rec", "unit": "gru", "n_out": 3},
                "bw": {"class": "rec", "unit": "gru", "n_out": 3, "direction": -1},
                "output": {
                    "class": "get_last_hidden_state",
                    "from": ["fw", "bw"],
                    "n_out": 3,
                    "combine": "add",
                    "key": "h",
                },
            }
        ),
        ("get_last_hidden_state", "rec"),
    ),
    Example(
        "rnn_cell_lstm_over_time",
        _cfg({"output": {"class": "rnn_cell", "unit": "lstm", "n_out": 3}}),
        ("rnn_cell",),
    ),
    # sparse input (one-hot), from `classes` only
    Example(
        "rnn_cell_gru_sparse",
        _cls({"output": {"class": "rnn_cell", "unit": "gru", "n_out": 3, "from": "data:classes"}}),
        ("rnn_cell",),
        inputs=("classes",),
    ),
    # -- conv / pool ----------------------------------------------------------------------------
    # stride 2: a new time axis T(output) with lengths ceil(len / 2)
    Example(
        "conv_stride",
        _cfg(
            {
                "output": {
                    "class": "conv",
                    "filter_size": [3],
                    "n_out": 4,
                    "strides": 2,
                    "padding": "same",
                    "activation": "relu",
                }
            }
        ),
        ("conv",),
    ),
    Example(
        "conv_valid_dilated",
        _cfg(
            {
                "output": {
                    "class": "conv",
                    "filter_size": [2],
                    "n_out": 3,
                    "dilation_rate": 2,
                    "padding": "valid",
                    "with_bias": False,
                }
            }
        ),
        ("conv",),
    ),
    # 2-D over [B, T, S=3, F=2] (stride 2 over time: new time axis)
    Example(
        "conv_2d",
        _cfg(
            {
                "split": {"class": "split_dims", "axis": "F", "dims": [3, 2], "from": "lin"},
                "lin": {"class": "linear", "n_out": 6},
                "output": {
                    "class": "conv",
                    "from": "split",
                    "filter_size": [3, 2],
                    "n_out": 2,
                    "strides": [2, 1],
                },
            }
        ),
        ("conv", "split_dims"),
    ),
    Example(
        "pool_max_stride",
        _cfg({"output": {"class": "pool", "mode": "max", "pool_size": [2]}}),
        ("pool",),
    ),
    Example(
        "pool_avg_same",
        _cfg(
            {
                "output": {
                    "class": "pool",
                    "mode": "avg",
                    "pool_size": [3],
                    "strides": 1,
                    "padding": "same",
                }
            }
        ),
        ("pool",),
    ),
    # upsampling: a new time axis T(output) with lengths 2 * len + 2 - 2 * 1
    Example(
        "transposed_conv",
        _cfg(
            {
                "output": {
                    "class": "transposed_conv",
                    "filter_size": [4],
                    "n_out": 3,
                    "strides": 2,
                    "padding": "valid",
                    "remove_padding": 1,
                    "activation": "tanh",
                }
            }
        ),
        ("transposed_conv",),
    ),
    # -- axes -----------------------------------------------------------------------------------
    Example(
        "slice_time",
        _cfg({"output": {"class": "slice", "axis": "T", "slice_start": 1, "slice_step": 2}}),
        ("slice",),
    ),
    Example(
        "slice_time_negative",
        _cfg({"output": {"class": "slice", "axis": "T", "slice_start": -3, "slice_end": -1}}),
        ("slice",),
    ),
    Example(
        "slice_feature",
        _cfg(
            {
                "output": {
                    "class": "slice",
                    "axis": "F",
                    "slice_start": 1,
                    "slice_end": 5,
                    "slice_step": 2,
                }
            }
        ),
        ("slice",),
    ),
    Example("window_same", _cfg({"output": {"class": "window", "window_size": 3}}), ("window",)),
    Example(
        "window_valid",
        _cfg({"output": {"class": "window", "window_size": 2, "padding": "valid"}}),
        ("window",),
    ),
    Example(
        "split_dims_feature",
        _cfg({"output": {"class": "split_dims", "axis": "F", "dims": [-1, 2]}}, {"dim": 6}),
        ("split_dims",),
    ),
    # the time axis into (new time axis, S=2)
    Example(
        "split_dims_time",
        _cfg({"output": {"class": "split_dims", "axis": "T", "dims": [-1, 2]}}),
        ("split_dims",),
    ),
    Example(
        "merge_dims",
        _cfg(
            {
                "split": {"class": "split_dims", "axis": "F", "dims": [2, 3, 2]},
                "output": {"class": "merge_dims", "from": "split", "axes": "spatial_except_time"},
            },
            {"dim": 12},
        ),
        ("merge_dims", "split_dims"),
    ),
    Example(
        "combine_dims",
        _cfg(
            {
                "split": {"class": "split_dims", "axis": "F", "dims": [2, 3]},
                "output": {"class": "combine_dims", "from": "split", "axes": "static"},
            },
            {"dim": 6},
        ),
        ("combine_dims", "split_dims"),
    ),
    Example(
        "expand_dims_feature",
        _cfg({"output": {"class": "expand_dims", "axis": "F"}}),
        ("expand_dims",),
    ),
    Example(
        "expand_dims_int_tiled",
        _cfg({"output": {"class": "expand_dims", "axis": 1, "dim": 2}}),
        ("expand_dims",),
    ),
    Example(
        "squeeze",
        _cfg(
            {
                "r": {"class": "reduce", "mode": "sum", "axes": "F", "keep_dims": True},
                "output": {"class": "squeeze", "from": "r", "axis": "F"},
            }
        ),
        ("squeeze", "reduce"),
    ),
    Example(
        "postfix_in_time",
        _cfg({"output": {"class": "postfix_in_time", "postfix": 0.5, "repeat": 2}}),
        ("postfix_in_time",),
    ),
    # sparse labels (int output), from `classes` only
    Example(
        "prefix_in_time_labels",
        _cls(
            {
                "output": {
                    "class": "prefix_in_time",
                    "from": "data:classes",
                    "prefix": 0,
                    "repeat": 1,
                }
            }
        ),
        ("prefix_in_time",),
        inputs=("classes",),
    ),
    # class indices -> plain int32 data
    Example(
        "reinterpret_data_unsparse",
        _cls(
            {"output": {"class": "reinterpret_data", "from": "data:classes", "set_sparse": False}}
        ),
        ("reinterpret_data",),
        inputs=("classes",),
    ),
    # a static axis made the first time axis: [B, T(new), T(data), F=2] (all 3 frames valid)
    Example(
        "reinterpret_data_set_time_axis",
        _cfg(
            {
                "split": {"class": "split_dims", "axis": "F", "dims": [3, 2]},
                "output": {
                    "class": "reinterpret_data",
                    "from": "split",
                    "set_axes": {"T": "dim:3"},
                },
            },
            {"dim": 6},
        ),
        ("reinterpret_data", "split_dims"),
    ),
    # a sliced time axis (new axis, same lengths) given back the data's time axis
    Example(
        "reinterpret_data_size_base",
        _cfg(
            {
                "sl": {"class": "slice", "axis": "T", "slice_start": 0},
                "output": {"class": "reinterpret_data", "from": "sl", "size_base": "data"},
            }
        ),
        ("reinterpret_data", "slice"),
    ),
    Example(
        "reinterpret_data_set_sparse",
        _cls(
            {
                "twice": {"class": "eval", "from": "data:classes", "eval": "source(0) * 2"},
                "plain": {"class": "reinterpret_data", "from": "twice", "set_sparse": False},
                "output": {
                    "class": "reinterpret_data",
                    "from": "plain",
                    "set_sparse": True,
                    "set_sparse_dim": 11,
                    "increase_sparse_dim": 1,
                },
            }
        ),
        ("reinterpret_data", "eval"),
        inputs=("classes",),
    ),
    Example(
        "expand_dims_sparse",
        _cls(
            {
                "output": {
                    "class": "expand_dims",
                    "from": "data:classes",
                    "axis": "spatial",
                    "dim": 2,
                }
            }
        ),
        ("expand_dims",),
        inputs=("classes",),
    ),
    # -- layers over an axis other than the first time axis, and over repeated axes ------------
    # window over the second time axis of [B, T(data), T(classes), F]
    Example(
        "window_second_time_axis",
        _cls(
            {
                "both": {"class": "combine", "kind": "add", "from": ["data", "dec"]},
                "dec": {"class": "linear", "n_out": 5, "from": "data:classes"},
                "output": {
                    "class": "window",
                    "from": "both",
                    "axis": "stag:classes",
                    "window_size": 2,
                },
            }
        ),
        ("window", "combine"),
        inputs=("data", "classes"),
    ),
    # 2-D pooling over two time axes (both kept)
    Example(
        "pool_two_time_axes",
        _cls(
            {
                "both": {"class": "combine", "kind": "add", "from": ["data", "dec"]},
                "dec": {"class": "linear", "n_out": 5, "from": "data:classes"},
                "output": {
                    "class": "pool",
                    "from": "both",
                    "mode": "max",
                    "pool_size": [2, 2],
                    "strides": 1,
                    "padding": "same",
                },
            }
        ),
        ("pool",),
        inputs=("data", "classes"),
    ),
    # softmax over the *second* T(data) of a [T, T, F] table (no batch axis)
    Example(
        "softmax_over_spatial_repeated_axis",
        _cfg(
            {
                "r": {"class": "relative_positional_encoding", "n_out": 2, "clipping": 2},
                "output": {"class": "softmax_over_spatial", "from": "r", "axis": 1},
            }
        ),
        ("softmax_over_spatial", "relative_positional_encoding"),
    ),
    Example(
        "reduce_repeated_axis",
        _cfg(
            {
                "r": {"class": "relative_positional_encoding", "n_out": 2, "clipping": 2},
                "output": {"class": "reduce", "from": "r", "mode": "mean", "axes": 1},
            }
        ),
        ("reduce", "relative_positional_encoding"),
    ),
    # the last valid frame of a non-recurrent input
    Example(
        "get_last_hidden_state_linear",
        _cfg(
            {
                "lin": {"class": "linear", "n_out": 3},
                "output": {"class": "get_last_hidden_state", "from": "lin", "n_out": 3},
            }
        ),
        ("get_last_hidden_state",),
    ),
    # over [B, T, S=3, F] (time axis not last-but-one)
    Example(
        "postfix_in_time_4d",
        _cfg(
            {
                "w": {"class": "window", "window_size": 3},
                "output": {"class": "postfix_in_time", "from": "w", "postfix": 1.0, "repeat": 2},
            }
        ),
        ("postfix_in_time", "window"),
    ),
    # -- classes of RETURNN's corpus networks ----------------------------------------------------
    Example(
        "decide_labels",
        _cls({"output": {"class": "decide", "from": "data:classes"}}),
        ("decide",),
        inputs=("classes",),
    ),
    Example(
        "reduce_out_maxout",
        _cfg({"output": {"class": "reduce_out", "mode": "max", "num_pieces": 2}}, {"dim": 6}),
        ("reduce_out",),
    ),
    Example(
        "switch_mask_const",
        _cfg(
            {
                "c": {"class": "compare", "from": "data", "kind": "greater", "value": 0.0},
                "output": {
                    "class": "switch",
                    "condition": "c",
                    "true_from": "data",
                    "false_from": -1.0,
                },
            }
        ),
        ("switch", "compare"),
    ),
    Example(
        "swap_axes_time_static",
        _cfg(
            {"output": {"class": "swap_axes", "axis1": "T", "axis2": "dim:3"}},
            {"shape": [None, 3, 4]},
        ),
        ("swap_axes",),
    ),
    Example(
        "pad_time",
        _cfg({"output": {"class": "pad", "axes": "T", "padding": [1, 2], "value": 0.5}}),
        ("pad",),
    ),
    Example(
        "pad_feature_reflect",
        _cfg({"output": {"class": "pad", "axes": "F", "padding": 2, "mode": "reflect"}}),
        ("pad",),
    ),
    Example("gating", _cfg({"output": {"class": "gating"}}, {"dim": 6}), ("gating",)),
    # the sub-network's layers are `output/h`, `output/output` (variables `output/h/W`, ...)
    Example(
        "subnetwork",
        _cfg(
            {
                "pre": {"class": "linear", "n_out": 3, "activation": "relu"},
                "output": {
                    "class": "subnetwork",
                    "from": ["data", "pre"],
                    "subnetwork": {
                        "h": {"class": "linear", "n_out": 4, "activation": "tanh"},
                        "output": {"class": "linear", "from": ["h", "base:pre"], "n_out": 3},
                    },
                },
            }
        ),
        ("subnetwork",),
    ),
    Example(
        "reduce_argmax_feature",
        _cfg({"output": {"class": "reduce", "mode": "argmax", "axes": "F"}}),
        ("reduce",),
    ),
    Example(
        "batch_norm",
        _cfg({"output": {"class": "batch_norm", "gamma_init": 1.5, "beta_init": 0.25}}),
        ("batch_norm",),
    ),
    # the frames where the first feature is positive, packed into a new time axis (its lengths:
    # the number of such frames), an LSTM over them (`masked/unit/W`, ...); `unmask` maps the
    # packed axis back onto T(data). Not XLA: the packed axis's size depends on the data.
    Example(
        "masked_computation",
        _cfg(
            {
                "first": {"class": "slice", "axis": "F", "slice_start": 0, "slice_end": 1},
                "mask3": {"class": "compare", "from": "first", "kind": "greater", "value": 0.0},
                "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
                "output": {
                    "class": "masked_computation",
                    "mask": "mask",
                    "unit": {"class": "rec", "unit": "lstm", "n_out": 3},
                },
            }
        ),
        ("masked_computation", "compare", "squeeze"),
        xla=False,
    ),
    Example(
        "unmask",
        _cfg(
            {
                "first": {"class": "slice", "axis": "F", "slice_start": 0, "slice_end": 1},
                "mask3": {"class": "compare", "from": "first", "kind": "greater", "value": 0.0},
                "mask": {"class": "squeeze", "from": "mask3", "axis": "F"},
                "masked": {
                    "class": "masked_computation",
                    "mask": "mask",
                    "unit": {"class": "rec", "unit": "cumsum", "n_out": 5},
                },
                "output": {"class": "unmask", "from": "masked", "mask": "mask"},
            }
        ),
        ("unmask", "masked_computation"),
        xla=False,
    ),
    Example(
        "cast",
        _cfg({"output": {"class": "cast", "dtype": "float32"}}, {"dim": 7, "sparse": True}),
        ("cast",),
    ),
    # overlapping chunks of 3 frames every 2 on a batch of chunks, an LSTM over each chunk,
    # unchunked (overlapping frames averaged) back onto [B, T(data)]; the chunks themselves are
    # not the output: their number follows the padded length (not padding-invariant)
    Example(
        "time_chunking_unchunking",
        _cfg(
            {
                "chunked": {"class": "time_chunking", "chunk_size": 3, "chunk_step": 2},
                "lstm": {"class": "rec", "unit": "lstm", "n_out": 4, "from": "chunked"},
                "output": {"class": "time_unchunking", "from": "lstm", "chunking_layer": "chunked"},
            }
        ),
        ("time_chunking", "time_unchunking", "rec"),
    ),
    # the frames of `data` at the label values: a new time axis T(classes); positions beyond a
    # sequence's length give zeros (never a padded frame)
    Example(
        "gather_time_by_labels",
        _cls(
            {
                "lin": {"class": "linear", "n_out": 3},
                "output": {
                    "class": "gather",
                    "from": "lin",
                    "axis": "T",
                    "position": "data:classes",
                },
            }
        ),
        ("gather",),
        inputs=("data", "classes"),
    ),
    # the last valid frame of every sequence: a position [B]
    Example(
        "gather_last_frame",
        _cfg(
            {
                "len": {"class": "length"},
                "last": {"class": "eval", "from": "len", "eval": "source(0) - 1"},
                "output": {"class": "gather", "axis": "T", "position": "last"},
            }
        ),
        ("gather",),
    ),
    # [T(data)] int32, no batch axis, the lengths of `data`
    Example(
        "range_in_axis_time",
        _cfg({"output": {"class": "range_in_axis", "axis": "T"}}),
        ("range_in_axis",),
    ),
    # causal self-attention written out of layers in a rec unit: keys and values of frames
    # 0..t on the shared new axis `kv` (length t + 1), energies, softmax over it, weighted sum
    Example(
        "cum_concat_self_attention",
        _cfg(
            {
                "output": {
                    "class": "rec",
                    "from": "data",
                    "unit": {
                        "q": {"class": "linear", "from": "data:source", "n_out": 4},
                        "k": {"class": "linear", "from": "data:source", "n_out": 4},
                        "v": {"class": "linear", "from": "data:source", "n_out": 3},
                        "k_acc": {"class": "cum_concat", "from": "k", "out_spatial_dim": "kv"},
                        "v_acc": {"class": "cum_concat", "from": "v", "out_spatial_dim": "kv"},
                        "energy": {
                            "class": "dot",
                            "from": ["q", "k_acc"],
                            "red1": "F",
                            "red2": "F",
                            "var1": None,
                            "var2": "stag:kv",
                        },
                        "w": {"class": "softmax_over_spatial", "from": "energy", "axis": "stag:kv"},
                        "output": {
                            "class": "dot",
                            "from": ["w", "v_acc"],
                            "red1": "stag:kv",
                            "red2": "stag:kv",
                            "var1": None,
                            "var2": "F",
                        },
                    },
                }
            }
        ),
        ("cum_concat", "rec", "dot", "softmax_over_spatial"),
    ),
    # the parts of a split feature axis, read as sub-outputs `split/0`, `split/1`: swapped
    Example(
        "split_feature_parts",
        _cfg(
            {
                "split": {"class": "split", "size_splits": [2, 3]},
                "output": {"class": "copy", "from": ["split/1", "split/0"]},
            }
        ),
        ("split", "copy"),
    ),
]


def make_inputs(
    example_shapes: dict,
    batch: int,
    time: int,
    rng: np.random.Generator,
    lengths: list[int] | None = None,
):
    """Random inputs for the extern data shapes: (values by key, lengths by key).

    The first time axis gets `time` frames and `lengths`; every other time axis (e.g. the own
    time axis of `classes`) gets other lengths, derived from these without drawing random
    numbers (`time + 2 - len`, so long sequences of one axis are short on the other), and as
    many frames as its longest sequence. Keys declared `same_time_as` share their axis.
    """
    values, lens = {}, {}
    if lengths is None:
        lengths = [time] + list(rng.integers(1, time + 1, size=batch - 1))
    lengths = [int(v) for v in lengths]
    by_dim: list[tuple[object, int, list[int]]] = []  # (time Dim, frames, lengths)

    def frames_of(dim):
        for d, n, ls in by_dim:
            if d is dim:
                return n, ls
        if not by_dim:
            n, ls = time, lengths
        else:
            ls = [time + 2 - v for v in lengths]
            n = max(ls)
        by_dim.append((dim, n, ls))
        return n, ls

    for key, shape in example_shapes.items():
        dims = []
        key_lengths = None
        for d in shape.dims:
            if d.kind == "batch":
                dims.append(batch)
            elif d.kind == "time":
                n, ls = frames_of(d)
                dims.append(n)
                if key_lengths is None:
                    key_lengths = ls
            else:
                dims.append(d.size)
        if shape.sparse:
            values[key] = rng.integers(0, shape.sparse_dim, size=dims).astype(np.int32)
        else:
            values[key] = rng.standard_normal(dims).astype(np.float32)
        if shape.time is not None:
            lens[key] = np.asarray(key_lengths, np.int32)
    return values, lens
