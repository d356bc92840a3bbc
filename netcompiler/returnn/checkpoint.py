"""Load a checkpoint saved by RETURNN (TF backend) into a compiled network, and turn it into a
netcompiler model directory.

    net = netcompiler.compile("net.yaml")
    net.load_returnn_checkpoint("returnn/models/model.080")     # -> LoadReport

    # the model directory (`netcompiler.returnn.checkpoint_import`):
    import_returnn_checkpoint(config_dict, "model.080", "out/model")
    # -> "loaded 16 variables from model.080 (global_step 100) into out/model/ckpt-080"

A RETURNN checkpoint is a TF "V2" bundle (`PREFIX.index`, `PREFIX.data-*`) written by
`TFNetwork.save_params_to_file`: one tensor per variable, under the TF variable name, plus the
int64 `global_step` (the training-step counter; not a weight: reported, not loaded).

Names (RETURNN -> netcompiler; `P` is a layer's RETURNN scope: `name` at the top level,
`P(rec)/rec/name` inside a rec unit, `P(sub)/name` inside a subnetwork, and the masked
computation's own name `P(mc)` for its unit, which netcompiler calls `mc/unit`):

- `P/W`, `P/b` (linear, softmax), `P/scale`, `P/bias` (layer_norm), `P/QKV` (self_attention),
  `P/encoding_matrix` (relative_positional_encoding), `P/v` (concat_attention), `P/<name>`
  (variable): the same name and layout;
- conv: `P/W` [*filter, n_in/groups, n_out] (same), `P/bias` -> `b`;
- transposed_conv: `P/W_native_transposed_conv` [*filter, n_out, n_in] -> `W` (RETURNN stores a
  1-D filter as [f, 1, n_out, n_in]), `P/bias` -> `b`;
- batch_norm (class or option): `P/batch_norm/v2_{mean,variance,gamma,beta}` [F]
  (`param_version: 2`), also `P/batch_norm/{mean,...}` (version 1) and
  `P/batch_norm/<layer>_<data>_{mean,...}` (version 0), stored [1, ..., 1, F];
- NativeLSTM2 (`rec` with unit lstm/nativelstm2/lstmp/..., and LSTMBlock as `rec`):
  `P/rec/{W, W_re, b}`, gate blocks (j, i, f, o) -> netcompiler's (i, j, f, o), no forget bias;
- TF's LSTMCell (`rnn_cell` LSTMBlock/standardlstm, `rec` standardlstm) `P/rec/lstm_cell/kernel`
  [n_in + n, 4n] rows [x; h] -> `W` (first n_in rows), `W_re` (last n rows); `bias` -> `b`
  (blocks (i, j, f, o) as netcompiler's; the forget bias +1 is added at run time by both);
  peepholes `w_i_diag`, `w_f_diag`, `w_o_diag`; basiclstm: `basic_lstm_cell/...`;
- TF's GRUCell (`gru`): `P/rec/gru_cell/gates/{kernel,bias}` (blocks (r, u)) and
  `P/rec/gru_cell/candidate/{kernel,bias}` -> `W`, `W_re`, `b` with netcompiler's blocks
  (z = u, r, candidate); both apply the reset gate to h before the candidate's matmul;
- `initial_state: var`: `P/rec/initial_{c,h}` outside a rec unit, `P/initial_{c,h}` inside
  (GRU: `initial_var` -> `initial_h`); `initial_output: var`: `P/init_<name>_var` ->
  `<layer>/initial_output`.

What is checked against RETURNN itself (tests/test_returnn_checkpoint.py): outputs of
checkpoints RETURNN saved (tests/fixtures/returnn-checkpoints/) match to < 1e-6 for linear,
softmax, layer_norm, self_attention (+ relative_positional_encoding), NativeLSTM2 (both
directions, in and outside a rec unit, `initial_state: var`), TF LSTMCell (rnn_cell LSTMBlock
and standardlstm, in and outside a unit, `use_peepholes`, `initial_state: var`), BasicLSTM,
GRU (rec and rnn_cell), conv (1-D, 2-D), transposed_conv (1-D), variable, subnetwork (also
inside a unit), masked_computation, concat_attention and `initial_output: var`. Checked by
name and shape only (RETURNN's variable list): batch_norm (param_version 0, 1, 2, layer and
option) and GRU's `initial_var`. Not checked: `rnn_cell` with a NativeLSTM unit (RETURNN on TF 2
refuses it; mapped like `rec`), conv `groups` (assumed TF's layout, as RETURNN's [*, n_in/G,
n_out]).

Every variable of the network must come from the checkpoint and every tensor of the checkpoint
(but `global_step`) must go into the network, with the expected shape; otherwise a
`ReturnnCheckpointError` lists every problem and nothing is loaded (all values are built and
checked before the first assignment). Variables shared through `reuse_params` are one variable
in both. Layers' run-time state (`self_attention` with `keep_over_epoch`) is not saved by
RETURNN and is left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from netcompiler.core.errors import UserError

#: RETURNN's training-step counter, saved with every model; reported, not loaded
GLOBAL_STEP = "global_step"
#: files a user may name instead of the prefix
_BUNDLE_SUFFIXES = (".index", ".meta", ".data-00000-of-00001")
_EPOCH_RE = re.compile(r"\.(\d+)$")


class ReturnnCheckpointError(UserError):
    """A user-facing problem with a RETURNN checkpoint (unreadable, does not fit the network)."""


@dataclass
class LoadReport:
    """What `load_returnn_checkpoint` did."""

    prefix: str
    loaded: list[str] = field(default_factory=list)  # netcompiler variable names assigned
    tensors: list[str] = field(default_factory=list)  # RETURNN tensors read
    global_step: int | None = None

    def summary(self) -> str:
        step = f" (global_step {self.global_step})" if self.global_step is not None else ""
        return (
            f"loaded {len(self.loaded)} variables ({len(self.tensors)} RETURNN tensors) "
            f"from {self.prefix}{step}"
        )


# -- the name and layout map -------------------------------------------------------------------
@dataclass
class _Rule:
    """netcompiler variables `outputs` computed from RETURNN tensors `inputs` (name -> expected
    shape) by `convert(dict name -> array) -> dict output name -> array`."""

    layer: str
    inputs: dict[str, tuple]
    outputs: list[str]
    convert: Callable[[dict], dict]
    #: alternative input sets (batch_norm's param versions): the first one fully present wins
    alternatives: list[dict] = field(default_factory=list)
    #: said once at the end of the error when an input is missing
    hint: str | None = None


def _permute_native_lstm(a: np.ndarray) -> np.ndarray:
    """NativeLSTM2's gate blocks (j, i, f, o) on the last axis -> netcompiler's (i, j, f, o)."""
    j, i, f, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, j, f, o], axis=-1)


def native_lstm_to_netcompiler(W, W_re, b):
    """RETURNN NativeLSTM2 weights -> netcompiler's `W`, `W_re`, `b` (blocks reordered)."""
    return _permute_native_lstm(W), _permute_native_lstm(W_re), _permute_native_lstm(b)


def lstm_cell_to_netcompiler(kernel, bias, n_in: int):
    """TF LSTMCell `kernel` [n_in + n, 4n] (rows [x; h]), `bias` -> `W`, `W_re`, `b`."""
    return kernel[:n_in], kernel[n_in:], bias


def gru_cell_to_netcompiler(gates_kernel, gates_bias, cand_kernel, cand_bias, n_in: int):
    """TF GRUCell (gates: blocks (r, u); candidate) -> netcompiler's `W`, `W_re`, `b` with
    blocks (z, r, h), z = u."""
    n = cand_kernel.shape[-1]
    r_k, u_k = gates_kernel[:, :n], gates_kernel[:, n:]
    r_b, u_b = gates_bias[:n], gates_bias[n:]
    full = np.concatenate([u_k, r_k, cand_kernel], axis=-1)  # [n_in + n, 3n]
    return full[:n_in], full[n_in:], np.concatenate([u_b, r_b, cand_bias])


def _returnn_name(layer) -> str:
    """A layer's RETURNN scope name (see the module doc)."""
    scope = layer.scope
    local = str(layer.path[-1])
    sub = scope.subnet_layer
    if sub is not None and sub.layer_class == "masked_computation":
        if local == "unit":  # RETURNN creates the unit under the masked computation's name
            return _returnn_name(sub)
        return _returnn_name(sub) + "/" + local
    if sub is not None:
        return _returnn_name(sub) + "/" + local
    if scope.rec_layer is not None:
        return _returnn_name(scope.rec_layer) + "/rec/" + local
    return local


def _cell_rules(name, layer, P, specs, in_rec: bool) -> list[_Rule]:
    from netcompiler.layers._rnn_cells import is_cumsum, is_gru, standard_lstm

    unit = str(layer.opts.get("unit"))
    rules: list[_Rule] = []
    cell_only = layer.layer_class == "rnn_cell"
    if is_cumsum(unit):
        pass
    elif "W" in specs:
        n_in, g = (int(s) for s in specs["W"].shape)
        n = int(specs["W_re"].shape[0])
        out = [f"{name}/W", f"{name}/W_re", f"{name}/b"]
        if is_gru(unit):
            c = f"{P}/rec/gru_cell"
            rules.append(
                _Rule(
                    name,
                    {
                        f"{c}/gates/kernel": (n_in + n, 2 * n),
                        f"{c}/gates/bias": (2 * n,),
                        f"{c}/candidate/kernel": (n_in + n, n),
                        f"{c}/candidate/bias": (n,),
                    },
                    out,
                    lambda t, c=c, n_in=n_in: dict(
                        zip(
                            out,
                            gru_cell_to_netcompiler(
                                t[f"{c}/gates/kernel"],
                                t[f"{c}/gates/bias"],
                                t[f"{c}/candidate/kernel"],
                                t[f"{c}/candidate/bias"],
                                n_in,
                            ),
                        )
                    ),
                )
            )
        elif standard_lstm(unit, cell_only):
            cell = "basic_lstm_cell" if unit.lower() == "basiclstm" else "lstm_cell"
            c = f"{P}/rec/{cell}"
            rules.append(
                _Rule(
                    name,
                    {f"{c}/kernel": (n_in + n, g), f"{c}/bias": (g,)},
                    out,
                    lambda t, c=c, n_in=n_in: dict(
                        zip(out, lstm_cell_to_netcompiler(t[f"{c}/kernel"], t[f"{c}/bias"], n_in))
                    ),
                )
            )
            for k in ("w_i_diag", "w_f_diag", "w_o_diag"):
                if k in specs:
                    rules.append(_plain(name, f"{name}/{k}", f"{c}/{k}", specs[k].shape))
        else:  # NativeLSTM2 (rec: lstm family and LSTMBlock; rnn_cell with a native unit)
            c = f"{P}/rec"
            rules.append(
                _Rule(
                    name,
                    {f"{c}/W": (n_in, g), f"{c}/W_re": (n, g), f"{c}/b": (g,)},
                    out,
                    lambda t, c=c: dict(
                        zip(
                            out,
                            native_lstm_to_netcompiler(t[f"{c}/W"], t[f"{c}/W_re"], t[f"{c}/b"]),
                        )
                    ),
                )
            )
    for key in ("c", "h"):
        pname = f"initial_{key}"
        if pname in specs:
            where = f"{P}/" if in_rec else f"{P}/rec/"
            stored = "initial_var" if is_gru(unit) else pname
            rules.append(_plain(name, f"{name}/{pname}", where + stored, specs[pname].shape))
    return rules


def _plain(layer: str, nc_name: str, rt_name: str, shape, reshape=None) -> _Rule:
    shape = tuple(int(s) for s in shape)
    stored = tuple(reshape) if reshape is not None else shape
    return _Rule(
        layer, {rt_name: stored}, [nc_name], lambda t: {nc_name: np.reshape(t[rt_name], shape)}
    )


def _batch_norm_rules(name, P, specs, data_name: str) -> list[_Rule]:
    rules = []
    for what in ("mean", "variance", "gamma", "beta"):
        pname = f"batch_norm/{what}"
        if pname not in specs:
            continue
        (n,) = (int(s) for s in specs[pname].shape)
        nc = f"{name}/{pname}"
        # param_version 2 ([F]), 1 and 0 (broadcast shape [1, ..., 1, F]: any leading ones)
        rules.append(
            _Rule(
                name,
                {f"{P}/batch_norm/v2_{what}": (n,)},
                [nc],
                lambda t, k=nc: {k: np.reshape(next(iter(t.values())), (-1,))},
                alternatives=[
                    {f"{P}/batch_norm/{what}": ("*", n)},
                    {f"{P}/batch_norm/{data_name}_{what}": ("*", n)},
                ],
            )
        )
    return rules


def returnn_rules(net) -> list[_Rule]:
    """How each variable of a compiled network is read from a RETURNN checkpoint."""
    rules: list[_Rule] = []
    layers = net.network.layers
    for name, specs in net.inferred.params.items():
        if name in net.graph.param_owner or name not in net.layer_params:
            continue  # shares the variables of its owner
        specs = {k: v for k, v in specs.items() if not v.dynamic}
        if not specs:
            continue
        layer = layers[name]
        P = _returnn_name(layer)
        cls = layer.layer_class
        done: set[str] = set()
        if cls in ("rec", "rnn_cell") and not isinstance(layer.opts.get("unit"), dict):
            rules += _cell_rules(name, layer, P, specs, layer.scope.in_rec)
            done |= {"W", "W_re", "b", "w_i_diag", "w_f_diag", "w_o_diag", "initial_c", "initial_h"}
        if any(k.startswith("batch_norm/") for k in specs):
            local = P.rsplit("/", 1)[-1]
            rules += _batch_norm_rules(name, P, specs, f"{local}_{local}_output")
            done |= {k for k in specs if k.startswith("batch_norm/")}
        for pname, spec in specs.items():
            if pname in done:
                continue
            shape = tuple(int(s) for s in spec.shape)
            nc = f"{name}/{pname}"
            if pname == "initial_output":
                rules.append(_plain(name, nc, f"{P}/init_{P.rsplit('/', 1)[-1]}_var", shape))
            elif cls in ("conv", "transposed_conv") and pname == "b":
                rule = _plain(name, nc, f"{P}/bias", shape)
                rule.hint = (
                    "RETURNN's conv layers have no bias before behavior_version 10: set "
                    "`with_bias: false` on them in the config"
                )
                rules.append(rule)
            elif cls == "transposed_conv" and pname == "W":
                stored = shape if len(shape) != 3 else (shape[0], 1) + shape[1:]
                rules.append(_plain(name, nc, f"{P}/W_native_transposed_conv", shape, stored))
            else:  # the same name and layout
                rules.append(_plain(name, nc, f"{P}/{pname}", shape))
    return rules


# -- reading and loading ------------------------------------------------------------------------
def _normalise_prefix(prefix) -> str:
    prefix = str(prefix)
    for suffix in _BUNDLE_SUFFIXES:
        if prefix.endswith(suffix):
            return prefix[: -len(suffix)]
    return prefix


def read_returnn_checkpoint(prefix) -> tuple[str, dict[str, tuple], object]:
    """(prefix, {tensor name: shape}, reader) of a RETURNN checkpoint; ReturnnCheckpointError
    if there is none."""
    import tensorflow as tf

    prefix = _normalise_prefix(prefix)
    if os.path.isdir(prefix):
        latest = tf.train.latest_checkpoint(prefix)
        if latest is None:
            raise ReturnnCheckpointError(
                f"{prefix}: a directory without a checkpoint (give the "
                f"prefix of the model, e.g. {prefix}/model.080)"
            )
        prefix = latest
    if not os.path.isfile(prefix + ".index"):
        raise ReturnnCheckpointError(
            f"{prefix}: no such RETURNN checkpoint ({prefix}.index "
            f"does not exist; give the prefix, e.g. models/model.080)"
        )
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReturnnCheckpointError(f"{prefix}: cannot read the checkpoint: {msg}") from None
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in shapes:
        raise ReturnnCheckpointError(
            f"{prefix}: this is a TF 2 object-based checkpoint (e.g. netcompiler's own), not one "
            f"saved by RETURNN; netcompiler's checkpoints are read by --checkpoint / model_dir"
        )
    return prefix, {k: tuple(int(s) for s in v) for k, v in shapes.items()}, reader


def _fits(stored: tuple, expected: tuple) -> bool:
    if expected and expected[0] == "*":  # leading ones, then the rest
        rest = expected[1:]
        lead = stored[: len(stored) - len(rest)]
        return tuple(stored[len(lead) :]) == rest and all(s == 1 for s in lead)
    return tuple(stored) == tuple(expected)


def _for(rule: _Rule, tensor: str) -> str:
    """` (for `W, W_re, b`)` where the netcompiler variable is not the tensor of that name."""
    if rule.outputs == [tensor]:
        return ""
    return f" (for `{', '.join(rule.outputs)}`)"


def _fmt(shape) -> str:
    return "[" + ", ".join("1.." if s == "*" else str(s) for s in shape) + "]"


def returnn_values(net, prefix) -> tuple[dict[str, np.ndarray], LoadReport]:
    """The value of every network variable from a RETURNN checkpoint, checked (nothing is
    assigned). ReturnnCheckpointError lists every missing, extra and misshapen tensor."""
    prefix, stored, reader = read_returnn_checkpoint(prefix)
    rules = returnn_rules(net)
    used: set[str] = set()
    missing, misshapen, hints = [], [], []
    chosen: list[tuple[_Rule, dict]] = []
    for rule in rules:
        options = [rule.inputs] + rule.alternatives
        inputs = next((opt for opt in options if all(k in stored for k in opt)), rule.inputs)
        ok = True
        for k, shape in inputs.items():
            if k not in stored:
                missing.append(f"`{k}` {_fmt(shape)}{_for(rule, k)}")
                if rule.hint and rule.hint not in hints:
                    hints.append(rule.hint)
                ok = False
                continue
            used.add(k)
            if not _fits(stored[k], shape):
                misshapen.append(
                    f"`{k}` is {list(stored[k])}, expected {_fmt(shape)}{_for(rule, k)}"
                )
                ok = False
        if ok:
            chosen.append((rule, inputs))
    extra = sorted(k for k in stored if k not in used and k != GLOBAL_STEP)
    problems = []
    if missing:
        problems.append(f"missing in the checkpoint: {', '.join(missing)}")
    if extra:
        problems.append(
            "not in the network: " + ", ".join(f"`{k}` {list(stored[k])}" for k in extra)
        )
    if misshapen:
        problems.append(f"wrong shape: {', '.join(misshapen)}")
    if problems:
        if rules and not used:
            problems.insert(
                0,
                "none of its tensors belongs to this network (the checkpoint of another network?)",
            )
        problems += [f"hint: {h}" for h in hints]
        raise ReturnnCheckpointError(
            f"RETURNN checkpoint {prefix} does not fit this network: " + "; ".join(problems)
        )
    values: dict[str, np.ndarray] = {}
    for rule, inputs in chosen:
        tensors = {k: np.asarray(reader.get_tensor(k)) for k in inputs}
        for out, value in rule.convert(tensors).items():
            var = net.variables_by_name[out]
            value = np.asarray(value)
            if tuple(value.shape) != tuple(var.shape):  # a bug in a rule, not the user's
                raise AssertionError(f"{out}: converted to {value.shape}, variable {var.shape}")
            values[out] = value.astype(var.dtype.as_numpy_dtype)
    unset = [
        n for n, v in net.variables_by_name.items() if n not in values and not _is_dynamic(net, n)
    ]
    if unset:  # every variable has a rule; a layer class without one would end here
        raise ReturnnCheckpointError(
            f"RETURNN checkpoint {prefix}: no mapping for the variables {', '.join(unset)}"
        )
    step = None
    if GLOBAL_STEP in stored:
        step = int(np.asarray(reader.get_tensor(GLOBAL_STEP)))
    report = LoadReport(prefix, sorted(values), sorted(used), step)
    return values, report


def _is_dynamic(net, full: str) -> bool:
    """A layer's run-time state (not saved by RETURNN)."""
    layer, _, pname = full.rpartition("/")
    spec = net.inferred.params.get(layer, {}).get(pname)
    return bool(spec is not None and spec.dynamic)


def load_returnn_checkpoint(net, prefix) -> LoadReport:
    """Assign a RETURNN checkpoint's values to the network's variables, all or nothing."""
    values, report = returnn_values(net, prefix)
    for name, value in values.items():
        net.variables_by_name[name].assign(value)
    return report


# -- a netcompiler model directory from a RETURNN checkpoint --------------------------------------
def returnn_epoch(prefix: str) -> int:
    """The epoch of a RETURNN model file name: `model.080` -> 80, `model.pretrain.003` -> 3;
    0 without a number."""
    m = _EPOCH_RE.search(os.path.basename(_normalise_prefix(prefix)))
    return int(m.group(1)) if m else 0
