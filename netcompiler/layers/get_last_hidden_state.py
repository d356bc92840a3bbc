"""`get_last_hidden_state`: the last hidden state of its inputs: `[B, F=n_out]`.

For a cell run over time (`rec` with a cell unit such as `lstm`, `nativelstm2`,
`standardlstm`, `gru`; `rnn_cell` outside a rec unit) this is the cell's final state, as
RETURNN's `RnnCellLayer.get_state_by_key` gives it: the state after each sequence's last valid
frame (`direction: -1`: after frame 0). The state of an LSTM is TF's `LSTMStateTuple(c, h)`, so
`key: "*"` (the default; also `flat` or null) is the concatenation c‖h [B, 2·n_out], `key: c`
the cell state, `key: h` the output; a GRU's state is its output h (`*` or `h`).
For any other input over time this is its output at the last frame it processed (the last valid
frame of each sequence, or frame 0 for a `rec` layer with `direction: -1`); an input without a
time axis is taken as it is. Several inputs are combined by `combine` (concat or add).

Inside a rec unit the state of an LSTM cell (`*`, `c`) is not available (a cell in the unit
carries its state in the loop, or is moved out of it): a validation error; its output (`h`) is.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule

#: keys meaning the whole state (RETURNN: `*`, `flat`; null as in older netcompiler configs)
WHOLE_KEYS = (None, "*", "flat")
#: keys of one part of an LSTM state (`output`: netcompiler's older alias of `h`)
PART_KEYS = ("c", "h", "output")


def cell_unit(opts: dict) -> str | None:
    """The cell unit (lower case) of a cell layer's options (`rnn_cell`, `rec` with a cell
    unit name), else None."""
    from netcompiler.layers._rnn_cells import CELL_UNITS

    if opts.get("class") not in ("rec", "rnn_cell"):
        return None
    unit = opts.get("unit")
    if not isinstance(unit, str) or unit.lower() not in CELL_UNITS:
        return None
    return unit.lower()


def state_part(key, unit: str | None) -> str | None:
    """What `key` selects of an input: `c`, `h`, `c+h` (the whole LSTM state), None for an
    invalid key."""
    from netcompiler.layers._rnn_cells import is_gru

    if key == "output":
        key = "h"
    lstm = unit is not None and not is_gru(unit)
    if key in WHOLE_KEYS:
        return "c+h" if lstm else "h"
    if key == "h":
        return "h"
    if key == "c" and lstm:
        return "c"
    return None


class GetLastHiddenStateRule(LayerRule):
    layer_class = "get_last_hidden_state"
    concat_sources = False

    def infer(self, ctx) -> Shape:
        if not ctx.sources:
            raise ctx.error(
                "`get_last_hidden_state` needs an input (a rec layer) in `from`",
                "from",
                "shape.inputs",
            )
        key = ctx.opt("key")
        refs = ctx.source_refs()
        sizes = []
        for i, (name, s) in enumerate(zip(ctx.source_names, ctx.sources)):
            if (
                not s.has_batch
                or s.feature is None
                or len(s.non_feature_dims) - len(s.time_dims[:1]) != 1
            ):
                raise ctx.error(
                    f"input `{name}` {s} must be [B, F] or [B, T, F]", "from", "shape.inputs"
                )
            ref = refs[i] if i < len(refs) else None
            unit = cell_unit(ref.target.opts) if ref is not None and ref.kind == "layer" else None
            part = state_part(key, unit)
            if part is None:
                what = (
                    f"the LSTM cell `{name}` (`unit: {unit}`) has the state parts `c`, `h` "
                    f"(`*`: both, c‖h)"
                    if state_part("c", unit) == "c"
                    else f"`{name}` has only the hidden state `h` (its output)"
                )
                raise ctx.error(
                    f"`key: {key}`: {what}",
                    "key",
                    "shape.state-key",
                    hint='`key: "*"` (the whole state), `c` or `h`',
                )
            if part != "h" and (ctx.in_rec or s.time is None):
                what = "its cell state c" if part == "c" else "c‖h, its whole state"
                raise ctx.error(
                    f"`key: {key}` of the LSTM cell `{name}` ({what}) is not available inside "
                    f"a rec unit (only the output `h` is)",
                    "key",
                    "shape.state-key",
                    hint="use `key: h`, or take the state of a cell run over a sequence outside "
                    "the unit",
                )
            sizes.append(2 * s.feature.size if part == "c+h" else s.feature.size)
        combine = ctx.opt("combine")
        if combine == "add" and len(set(sizes)) > 1:
            raise ctx.error(
                f"`combine: add` needs inputs of one size, got {sizes} from "
                f"{', '.join(ctx.source_names)}",
                "combine",
                "shape.inputs",
            )
        total = sizes[0] if combine == "add" else sum(sizes)
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(
                "`get_last_hidden_state` needs `n_out` (the state size)",
                None,
                "shape.missing-option",
            )
        if n_out != total:
            raise ctx.error(
                f"`n_out: {n_out}` differs from the state size {total} of "
                f"{', '.join(ctx.source_names)}"
                + (
                    f" (`key: {key}` of an LSTM: c‖h, 2·n_out)"
                    if any(
                        state_part(key, cell_unit(r.target.opts)) == "c+h"
                        for r in refs
                        if r.kind == "layer"
                    )
                    else ""
                ),
                "n_out",
                "shape.n-out",
            )
        return ctx.batch_shape(n_out)

    def call(self, ctx):
        import tensorflow as tf

        key = ctx.opt("key")
        finals = getattr(ctx, "final_states", None) or {}
        layers = getattr(ctx, "source_layers", None) or [None] * len(ctx.sources)
        states = []
        for x, shape, opts, layer in zip(ctx.sources, ctx.source_shapes, ctx.source_opts, layers):
            unit = cell_unit(opts)
            part = state_part(key, unit)
            final = finals.get(layer) if unit is not None and shape.time is not None else None
            if final is not None:  # (c, h) / (h,)
                parts = dict(zip(("h",) if len(final) == 1 else ("c", "h"), final))
                states.append(
                    tf.concat([parts["c"], parts["h"]], axis=-1) if part == "c+h" else parts[part]
                )
                continue
            if part != "h":
                raise ValueError(f"{ctx.name}: the final state of `{layer}` was not recorded")
            if shape.time is None:
                states.append(x)
            elif opts.get("class") == "rec" and opts.get("direction") == -1:
                states.append(x[:, 0])
            else:
                last = tf.maximum(ctx.lengths(shape.time) - 1, 0)
                states.append(tf.gather(x, last, axis=1, batch_dims=1))
        if ctx.opt("combine") == "add":
            return tf.add_n(states)
        return tf.concat(states, axis=-1)
