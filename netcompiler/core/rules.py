"""Every diagnostic rule id, explained in one place: `netcompiler explain RULE` prints the entry.

A diagnostic (`diagnostics.Diagnostic`) names the rule that produced it, e.g.
`[schema.unknown-option]` at the end of a `validate` line. `RULES` maps each rule id to one
paragraph: what the rule checks, why, and an example of the fix. The families (`load`, `schema`,
`graph`, `shape`, `expr`) have an entry too (`FAMILIES`), used for a rule id that has no entry of
its own (e.g. the `schema.<validator>` ids of rare JSON Schema keywords).

`tests/test_errors.py` scans the package's source for rule ids and checks that each has an entry.
Plain data, no imports: `explain` must stay instant (no TensorFlow, no NumPy).
"""

from __future__ import annotations

FAMILIES: dict[str, str] = {
    "load": "Reading the config file: the file, its encoding and its YAML/JSON syntax, before "
    "any of its content is looked at. Fix the file so that it parses as plain YAML or "
    "JSON data.",
    "schema": "The config against its JSON Schema (`netcompiler schema` prints it): known keys, "
    "option types, ranges and enumerations, per layer class. Fix the option named in "
    "the message; `netcompiler schema` shows what each class accepts.",
    "graph": "The layer graph: references between layers (`from`, `prev:`, `base:`, "
    "`data:KEY`), cycles, outputs and unused layers. Fix the reference named in the "
    "message.",
    "shape": "Shape inference: the axes, sizes and dtypes each layer gets and produces, checked "
    "without running anything. Fix the option named in the message, or the input's "
    "shape (`netcompiler validate --shapes` prints every layer's output axes).",
    "expr": "The expression language of `eval` and friends: a small, safe subset of "
    "TensorFlow-style expressions over `source(i)`, never Python code.",
}

RULES: dict[str, str] = {
    # -- fallbacks -----------------------------------------------------------------------------
    "internal": "netcompiler hit a bug while checking this config (an unexpected exception, "
    "reported instead of a traceback). Nothing is wrong with your config as far as "
    "anyone knows. Please file an issue with the config and the message; run again "
    "with NETCOMPILER_DEBUG=1 set to see the traceback.",
    "shape": "A shape problem without a more specific rule id: the layer's inputs or options do "
    "not fit together. Read the message for the option and the shapes involved; "
    "`netcompiler validate --shapes CONFIG` prints every layer's output axes. Example: "
    "give the input the axes the layer expects, e.g. a `linear` layer before it to set "
    "the feature size.",
    "deprecated": "The layer class is deprecated (in RETURNN too); it still works. The hint names "
    "the explicit formulation that replaces it. Example: replace the deprecated "
    "class by the layers the hint names, with the same options.",
    # -- load ----------------------------------------------------------------------------------
    "load.missing": "The config file does not exist (exit code 2). Example: check the path; "
    "`netcompiler validate configs/` checks every *.yaml, *.yml and *.json "
    "under a directory.",
    "load.unreadable": "The config file exists but cannot be read: a directory, no permission, "
    "an I/O error (exit code 2). Example: `chmod a+r net.yaml`.",
    "load.encoding": "The file is not UTF-8 text; the message names the first bad byte and its "
    "line and column. Example: re-save it as UTF-8 (`iconv -f latin1 -t utf-8 "
    "net.yaml > net.utf8.yaml`).",
    "load.empty": "The config file is empty (or only comments). Example: a config needs at least "
    "`network:` with an `output` layer and `extern_data`.",
    "load.syntax": "YAML (or JSON) syntax error at the given line and column, e.g. a bad "
    "indentation, a tab, an unclosed bracket or quote. Example: `from: [a, b` -> "
    "`from: [a, b]`.",
    "load.yaml": "The YAML is not plain config data, e.g. a mapping key that is itself a mapping "
    "or a list. Example: `{a: 1}: x` -> `a: x`.",
    "load.duplicate-key": "A mapping has the same key twice; YAML would silently keep the last "
    "one, netcompiler refuses. Example: remove or rename the second "
    "`n_out:` of the layer.",
    "load.unsafe-tag": "A YAML tag such as `!!python/object` asks for more than plain data; "
    "configs are data and are never executed. Example: `x: !!python/tuple "
    "[1, 2]` -> `x: [1, 2]`.",
    "load.too-deep": "The config is nested deeper than the loader allows (also counting expanded "
    "aliases), which protects against hostile files. Example: flatten the "
    "structure; real configs are a few levels deep.",
    "load.alias-limit": "YAML aliases (`*name`) expand to too many nodes (a 'billion laughs' "
    "file). Example: copy the repeated part explicitly, or use fewer nested "
    "aliases.",
    "load.override": "A `--set KEY=VALUE` could not be applied: no `=`, an empty key part, a "
    "value that is not YAML, or a path through something that is not a mapping "
    "or list. Example: `--set network.att.num_heads=8` (dots separate keys, a "
    "number indexes a list).",
    # -- schema --------------------------------------------------------------------------------
    "schema.unknown-class": "The layer `class` is not one netcompiler knows; the hint names the "
    "closest known class. Example: `class: linaer` -> `class: linear` "
    "(`netcompiler schema` lists the classes).",
    "schema.unknown-option": "The layer class (or the section) has no such option; often a typo, "
    "and the hint names the closest option. Example: `activaton: relu` "
    "-> `activation: relu`.",
    "schema.missing-option": "A required option is missing. Example: a `linear` layer needs "
    "`n_out` (`{class: linear, from: data, n_out: 128}`); `extern_data` "
    "entries need `dim` or `shape`.",
    "schema.type": "An option has the wrong type, e.g. a string where a number is expected, or a "
    'value that fits none of the accepted forms. Example: `n_out: "128"` -> '
    "`n_out: 128`.",
    "schema.enum": "An option takes one of a fixed set of values (an activation, a loss, a mode) "
    "and the value is not one of them; the hint names the closest. Example: "
    "`activation: rleu` -> `activation: relu`.",
    "schema.range": "A number (or a list or string length) is out of the allowed range. "
    "Example: `dropout: 1.5` -> `dropout: 0.1` (must be below 1); `n_out: 0` -> "
    "a positive size.",
    "schema.pattern": "A string does not have the expected form (e.g. an axis description or a "
    "size expression). Example: `axis: Tim` -> `axis: T`.",
    "schema.initializer": "A `forward_weights_init`/`bias_init`/`init` value is not an "
    "initializer netcompiler knows, or has bad arguments. Example: "
    "`glorot_uniform`, `zeros`, `0.1`, or `variance_scaling_initializer("
    "scale=2.0, mode='fan_in')`.",
    # -- graph ---------------------------------------------------------------------------------
    "graph.unknown-layer": "A reference (`from`, `target`, `base`, ...) names a layer that does "
    "not exist in this scope; the hint names the closest layer, or "
    "`base:NAME` for a layer outside the rec unit. Example: `from: enocder`"
    " -> `from: encoder`.",
    "graph.unknown-data": "A reference names extern data (`data:KEY`, a loss `target`) that is "
    "not declared in `extern_data`. Example: declare it (`extern_data: "
    "{classes: {dim: 10, sparse: true}}`) or fix the key.",
    "graph.bad-reference": "A reference is malformed, e.g. `prev:base:x` or `prev:` of extern "
    "data. Example: `prev:base:enc` -> `base:enc` (a layer outside the "
    "loop has no previous step).",
    "graph.prev-outside-rec": "`prev:NAME` (the previous step's output) exists only inside the "
    "`unit` of a `rec` layer. Example: outside a loop use `NAME`, or "
    "move the layer into the rec unit.",
    "graph.base-outside-rec": "`base:NAME` reaches the enclosing network and is valid only inside "
    "a rec unit or a subnetwork. Example: at the top level write "
    "`NAME`.",
    "graph.source-outside-rec": "`data:source` (the loop's current input frame) is valid only "
    "inside a rec unit. Example: at the top level write `data` or "
    "the input layer's name.",
    "graph.step-outside-rec": "`:i` (the loop's step index) is valid only inside a rec unit. "
    "Example: outside a loop use a `range_in_axis` layer.",
    "graph.cycle": "Layers depend on each other in a cycle that does not go through `prev:`. "
    "Only a rec unit may have cycles, and only through the previous step. "
    "Example: inside the unit `s: {from: [prev:s, data:source]}`, not `from: "
    "[s, ...]`.",
    "graph.no-output": "The network (or a subnetwork) has no `output` layer and no layer with a "
    "`loss` or `is_output_layer: true`. Example: name the final layer "
    "`output`.",
    "graph.unused": "Warning: the layer feeds no output and no loss, so it is never computed. "
    "Example: remove it, connect it, or mark it `is_output_layer: true`.",
    "graph.reuse-params": "`reuse_params` must name a layer whose variables this layer shares. "
    "Example: `reuse_params: encoder_proj`.",
    "graph.register-extern": "`register_as_extern_data: KEY` clashes: KEY is already extern "
    "data, another layer registers it, or the layer is inside a rec "
    "unit. Example: pick a new key, or register a layer at the top "
    "level.",
    "graph.max-seq-len": "The rec layer's `max_seq_len` is not a valid size expression. "
    "Example: `max_seq_len: max_len_from('base:encoder') * 2` or a "
    "number.",
    # -- expr ----------------------------------------------------------------------------------
    "expr.python-call": "The expression calls Python (a RETURNN config object, `as_data`, "
    "`as_layer`, a lambda); netcompiler never runs Python from a config. "
    "Example: rewrite it with the functions of the expression language, e.g. "
    "`tf.nn.relu(source(0)) * 2.0`, or use a layer class for it.",
    # -- shape ---------------------------------------------------------------------------------
    "shape.missing-option": "An option that the class needs in this situation is missing, "
    "typically `n_out` where it cannot be taken from a `target`. "
    "Example: add `n_out: 256`, or a `target` whose class count gives "
    "it.",
    "shape.n-out": "`n_out` contradicts the output size that follows from the inputs (for "
    "classes whose size is not a free choice). Example: remove `n_out`, or set "
    "it to the size the message names.",
    "shape.inputs": "The layer gets the wrong number or kind of inputs in `from`. Example: "
    "`combine` with `kind: add` needs at least one input: `from: [a, b]`.",
    "shape.no-feature": "The layer needs an input (or output) with a feature axis, but it has "
    "none (e.g. sparse class indices, or a reduced shape). Example: embed "
    "indices with a `linear` layer first, or `expand_dims` with `axis: F`.",
    "shape.no-time": "The layer needs an input with a time axis, but it has none. Example: feed "
    "it a sequence ([B, T, F]), or put it inside a rec unit where it runs per "
    "step.",
    "shape.no-batch": "The layer needs an input with a batch axis. Example: feed it data or a "
    "layer that carries the batch, or set `with_batch_dim: true` on a "
    "`constant`.",
    "shape.dtype": "The input has the wrong dtype, e.g. int32 or bool into a layer that "
    "multiplies with float weights. Example: a `cast` layer with `dtype: "
    "float32` in between.",
    "shape.sparse": "Sparse input (class indices) where dense values are needed, or a "
    "`set_sparse` that does not fit. Example: embed the indices with a `linear` "
    "layer, or compare them with a `compare` layer.",
    "shape.sparse-input": "The layer needs dense input but gets sparse class indices. Example: "
    "a `linear` (embedding) layer before it.",
    "shape.sparse-value": "A padding or extension value for sparse input must be a class label: "
    "an integer below the number of classes (a warning when it is out of "
    "range). Example: `value: 0`.",
    "shape.axis": "An axis description (`axis`, `axes`, `red1`, ...) names no axis of the "
    "input, or more than one. Example: `axis: T` for the time axis, `F` for the "
    "features, `stag:NAME` for a named axis; write more of the description when "
    "it is ambiguous.",
    "shape.broadcast": "The inputs' axes cannot be broadcast against each other (they differ in "
    "an axis other than size-1 ones). Example: bring them to the same axes "
    "first, e.g. `expand_dims`, or reduce one of them.",
    "shape.concat": "Inputs in one `from` list are concatenated on the feature axis, so they "
    "must have the same other axes and a feature axis each. Example: `from: "
    "[enc_fw, enc_bw]` with both [B, T, F]; project a sparse input first.",
    "shape.activation": "The activation does not fit the output: e.g. `softmax` without a "
    "feature axis, or an activation on int/bool output. Example: remove "
    "`activation`, or apply it to a float output with features.",
    "shape.extern": "An `extern_data` entry is inconsistent: no `dim`/`shape`, a `shape` that "
    "does not fit `sparse`, or `same_time_as` forming a cycle. Example: "
    "`data: {dim: 40}` or `classes: {dim: 10, sparse: true}`.",
    "shape.unified-time": "Warning: two extern data keys are used as if they shared a time axis "
    "(e.g. a choice's target read per step) but were not declared so; they "
    "are unified, as RETURNN does, and their lengths are checked at run "
    "time. Example: declare `same_time_as: data` on the other key.",
    "shape.too-large": "An axis or a parameter would exceed 2**31-1 elements. Example: reduce "
    "`n_out` or the sizes that multiply into it.",
    "shape.unsupported": "A valid RETURNN feature that netcompiler does not support in this "
    "situation, e.g. `batch_norm` inside a rec unit. Example: follow the "
    "hint, e.g. move the layer out of the rec unit.",
    "shape.unused-option": "Warning: an option has no effect here (e.g. `cheating` on `rec`, "
    "which moved to `choice` in RETURNN). Example: remove it.",
    "shape.variable": "A `variable` layer's options do not fit: it reads no input, its `shape` "
    "needs positive sizes, its `init` must suit its dtype. Example: `{class: "
    "variable, shape: [10], init: zeros}` without `from`.",
    "shape.constant": "A `constant` layer's `value` is not a number, a boolean or a rectangular "
    "list, or does not fit `dtype`. Example: `value: [[1, 2], [3, 4]]`.",
    "shape.eval": "An `eval` (or `combine` `kind: eval`) expression is missing, or does not "
    "fit the inputs' shapes or dtypes. Example: `eval: \"source(0) * "
    'tf.sigmoid(source(1))"` with inputs of the same axes; cast bool/int with '
    "`tf.cast(source(0), tf.float32)`.",
    "shape.out-type": "`out_type` (the declared output of `eval`) is inconsistent: axes out of "
    "range, a `time_dim_axis` that is not dynamic, a `dim` that does not fit "
    "the shape. Example: `out_type: {shape: [null, 10], time_dim_axis: 1}`.",
    "shape.loss-target": "A `loss` needs a `target` that fits the output: an extern data key, "
    "sparse labels for `ce` over a distribution, the same size for `mse`. "
    "Example: `{class: softmax, loss: ce, target: classes, n_out: 10}` "
    "with `classes: {dim: 10, sparse: true}`.",
    "shape.initial-output": "`initial_output` (the `prev:` value before the first step) applies "
    "only inside a rec unit and only in the supported forms. Example: "
    "`initial_output: zeros`, a number, or `apply(0)` for stateless "
    "layers.",
    "shape.initial-state": "A cell's `initial_state` is not a supported form or does not fit the "
    "cell's state parts. Example: `initial_state: zeros`, a layer name, "
    "or for an LSTM `{c: layer_c, h: layer_h}`.",
    "shape.cell-unit": "The `unit` of a `rec`/`rnn_cell` layer is not a known cell, or its "
    "options do not fit. Example: `unit: nativelstm2` (or `lstm`, `gru`, "
    "...); a summing unit needs `n_out` equal to the input features.",
    "shape.rec-output": "The `unit` of a `rec` layer has no usable `output` layer, so the loop "
    "produces nothing. Example: name the unit layer whose value is the step "
    "result `output`.",
    "shape.nested-rec": "A `rec` layer with a sub-network `unit` inside another rec unit "
    "(nested loops) is not supported. Example: move the inner loop out of "
    "the unit, or use `rnn_cell` for one step of a cell.",
    "shape.rec-only": "The layer exists only inside the `unit` of a `rec` layer (e.g. "
    "`cum_concat`). Example: outside a loop the whole sequence is already "
    "there: use the input directly.",
    "shape.loop-axis": "A layer read per step inside a rec unit has a time axis other than the "
    "one the loop runs over. Example: read the other sequence through "
    "`base:` as a whole (attention), or declare `same_time_as` in "
    "`extern_data`.",
    "shape.max-seq-len": "`max_seq_len: max_len_from(LAYER)` needs a layer with a time axis. "
    "Example: `max_len_from('base:encoder')`.",
    "shape.prev": "The shape of `prev:NAME` cannot be inferred (every layer of the cycle "
    "depends on it and none has a size of its own), or it differs from what was "
    "assumed. Example: set `n_out` on a layer of the cycle.",
    "shape.prev-diverges": "A `prev:` cycle does not settle: a layer on it grows its input at "
    "every pass. Example: set `n_out` on a layer of the cycle, or remove "
    "the growth (e.g. a concatenation with its own previous output).",
    "shape.state-key": "`get_last_hidden_state` `key` names a state part the cell does not have "
    "(or that is not available inside a rec unit). Example: `key: h`, `c`, "
    'or `"*"` for an LSTM.',
    "shape.rec-self-attention": "`self_attention` inside a rec unit (one step at a time) needs "
    "`attention_left_only: true`. Example: add it, or move the "
    "layer out of the loop.",
    "shape.key-shift": "`key_shift` of `self_attention` has the wrong shape, or is combined "
    "with a state kept across calls. Example: a layer of [T, T, "
    "total_key_dim / num_heads] (e.g. `relative_positional_encoding`).",
    "shape.state-lengths": "`state_var_lengths` of `self_attention` must be one number per "
    "sequence: [B]. Example: a `length` layer of the prefix.",
    "shape.num-heads": "`num_heads` must divide both `total_key_dim` and `n_out` of "
    "`self_attention`. Example: `n_out: 512, total_key_dim: 512, "
    "num_heads: 8`.",
    "shape.attention-base": "`base` (and `base_ctx`) of an attention layer must be an encoder "
    "sequence [B, T, F], with the same axes. Example: `base: "
    "base:encoder` with encoder [B, T, F].",
    "shape.attention-features": "The attention query (`from`) and `base_ctx` differ in their "
    "feature size. Example: project the decoder state with a "
    "`linear` layer of `n_out` equal to base_ctx's features.",
    "shape.attention-source": "The attention query must be one vector per step ([B, F]) or per "
    "decoder frame ([B, T(dec), F]). Example: feed it the decoder "
    "state, not the encoder.",
    "shape.generic-attention": "`generic_attention` needs dense `weights` containing `base`'s "
    "time axis and a `base` with features. Example: `weights` from "
    "`softmax_over_spatial` over the same encoder sequence as "
    "`base`.",
    "shape.gauss-location": "`gauss_window_attention` needs one float location per sequence: "
    "[B] or [B, F=1]. Example: a `linear` layer with `n_out: 1`.",
    "shape.window-start": "`window_start` of `softmax_over_spatial` must be one start frame "
    "per sequence: [B] or [B, F=1]. Example: a `reduce` with `mode: "
    "argmax` over the time axis.",
    "shape.positional-offset": "`offset` of `positional_encoding` must be one offset per "
    "sequence: [B] or [B, F=1]. Example: a `length` layer.",
    "shape.choice-target": "`choice` needs a `target` naming sparse extern data (the label "
    "space it picks from). Example: `target: classes` with `classes: "
    "{dim: 10, sparse: true}`.",
    "shape.choice-classes": "The `choice` input must be a distribution over the target's "
    "classes: its features equal the number of classes. Example: a "
    "`softmax` with `n_out` equal to the target's `dim` before it.",
    "shape.chunking": "`time_chunking`/`time_unchunking` options or placement do not fit: they "
    "change the batch axis, so they cannot run inside a rec unit, and need a "
    "batch and a time axis. Example: chunk outside the rec layer, "
    "`chunk_size: 50, chunk_step: 25`.",
    "shape.chunk-batch": "Layers on the batch of chunks (after `time_chunking`) are mixed with "
    "layers on the original batch. Example: bring the chunks back with "
    "`time_unchunking` before combining them.",
    "shape.masked-computation": "The `mask` of `masked_computation` must be bool [B, T] (or [B] "
    "per step) over the input's time axis. Example: make it with "
    "`compare` or an `eval` with `tf.greater(...)`.",
    "shape.subnetwork-output": "The `subnetwork` has no usable `output` layer. Example: name the "
    "subnetwork's final layer `output`.",
    "shape.batch-norm": "The `batch_norm` option adds variables whose names clash with the "
    "layer's own. Example: use a separate `batch_norm` layer after it.",
    "shape.reuse-params": "`reuse_params` shares all variables of one layer; the two layers "
    "must need the same variables with the same shapes. Example: "
    "`reuse_params: enc_proj` on a layer with the same `n_out` and input "
    "size.",
    "shape.conv-dims": "A `conv`/`pool` list option (`filter_size`, `strides`, `dilation_rate`, "
    "`pool_size`) has one entry per spatial axis of the input. Example: for "
    "[B, T, F] `filter_size: [3]`; add a static axis with `split_dims` for "
    "2D.",
    "shape.conv-size": "The filter (with dilation) does not fit the axis with `padding: valid`, "
    "or `remove_padding` leaves nothing. Example: `padding: same`, or a "
    "smaller `filter_size`.",
    "shape.conv-groups": "`groups` must divide both the input features and `n_out`. Example: "
    "64 input features, `n_out: 128`, `groups: 4`.",
    "shape.conv-padding": "`output_padding` of `transposed_conv` does not fit the filter, stride "
    "and padding (TensorFlow rejects it). Example: the value the hint "
    "names.",
    "shape.pool-mode": "`pool` `mode` must be `max` or `avg`. Example: `mode: max`.",
    "shape.pad": "`pad` `padding` or `mode` is malformed. Example: `padding: [2, 2]` (before, "
    "after), `mode: constant`.",
    "shape.window": "`window_size`, `window_left` and `window_right` of `window` do not add up "
    "(left + right + 1 = size). Example: `window_size: 5, window_left: 2`.",
    "shape.split": "`split` takes `num_splits` or `size_splits` (not both), and the sizes must "
    "add up to the axis. Example: `size_splits: [256, 256]` for 512 features.",
    "shape.split-dims": "`split_dims` `dims` must be positive (or one -1) and multiply to the "
    "axis size. Example: 40 features -> `dims: [-1, 1]` or `[8, 5]`.",
    "shape.merge-dynamic": "`merge_dims` merges static axes only, not the batch or a time axis. "
    "Example: merge the feature axes, and use `window`/`conv` to change a "
    "time axis.",
    "shape.squeeze": "`squeeze` removes static axes of size 1 only. Example: `axis: F` on [B, T, "
    "F=1], or `allow_no_op: true`.",
    "shape.slice": "`slice_step` must be positive. Example: `slice_step: 2`.",
    "shape.slice-empty": "The `slice` selects no entries of the axis. Example: check "
    "`slice_start`/`slice_end` against the axis size.",
    "shape.set-axes": "`reinterpret_data` `set_axes` supports the keys T and F, and F on dense "
    "input only. Example: `set_axes: {F: ...}` on a dense input; for class "
    "indices use `set_sparse` instead.",
    "shape.size-base": "`size_base` of `reinterpret_data` takes the time axis of another layer; "
    "both need a time axis. Example: `size_base: data` on a [B, T', F] input.",
    "shape.reduce-axes": "`reduce` takes `axes` or `axis` (one of them); argmin/argmax reduce "
    "exactly one axis. Example: `axes: T`.",
    "shape.reduce-mode": "`reduce`/`reduce_out` `mode` is not one they support. Example: `mode: "
    "mean` (or sum, max, min, ...).",
    "shape.reduce-out": "`reduce_out` `num_pieces` must be a positive integer dividing the "
    "features. Example: 512 features, `num_pieces: 2`.",
    "shape.dot-reduce": "`dot` `red1` and `red2` must name the same number of axes, of the same "
    "size. Example: `red1: F, red2: F` for two [B, T, F] inputs.",
    "shape.gather-position": "`gather` `position` must be a non-negative int or an int/sparse "
    "layer. Example: `position: 0` or a `reduce` with `mode: argmax`.",
    "shape.gating": "`gating` splits the features in two halves, so they must be even. Example: "
    "a `linear` with `n_out: 2 * size` before it.",
    "shape.cum-concat": "`cum_concat` needs a per-step input [B, F] inside a rec unit and cannot "
    "be read through `prev:`. Example: read the cum_concat itself (frames "
    "0..t).",
    "shape.spec-augment": "`spec_augment` mask counts and widths must fit the input's time and "
    "feature axes (min <= max, widths below the axis size). Example: "
    "`max_feature_mask_width: 5` for 40 features.",
}


def explain(rule: str) -> str | None:
    """The explanation of a rule id, or of a family (`shape`); a `schema.<keyword>` id for a
    JSON Schema keyword without an entry of its own (e.g. `schema.uniqueItems`) gets the `schema`
    family's; None for an unknown id."""
    if rule in RULES:
        return RULES[rule]
    if rule in FAMILIES:
        return FAMILIES[rule]
    family, _, keyword = rule.partition(".")
    if family == "schema" and keyword.isalpha():
        return f"(the JSON Schema keyword `{keyword}`) {FAMILIES['schema']}"
    return None


def summary(rule: str) -> str:
    """The first sentence of a rule's explanation."""
    import re

    return re.split(r"(?<!e\.g)(?<!i\.e)\. ", RULES[rule], maxsplit=1)[0].rstrip(".")


def explain_command(rule: str) -> str:
    """The command that explains a rule, for messages that point at it."""
    return f"netcompiler explain {rule}"
