"""`switch`: `tf.where(condition, true_from, false_from)` (RETURNN's SwitchLayer).

`condition` is a layer (bool) or a bool constant; `true_from` / `false_from` are layers or
number constants. The output is the broadcast of the condition and the two values (axes matched
by identity, as `combine` broadcasts); its dtype (and sparse classes) those of the layer values.
A constant `condition` picks one of the two statically (the other may be left out).
No `from`: the inputs are these three options.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers.combine import align, broadcast_shape

VALUE_OPTIONS = ("true_from", "false_from")


def _is_const(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)


class SwitchRule(LayerRule):
    layer_class = "switch"
    concat_sources = False
    default_from = None
    layer_options = ("condition", "true_from", "false_from")

    @staticmethod
    def used(ctx) -> list[str]:
        """The options whose values make the output (the condition first unless constant)."""
        cond = ctx.opts.get("condition")
        if isinstance(cond, bool):
            return ["true_from" if cond else "false_from"]
        return ["condition", "true_from", "false_from"]

    def infer(self, ctx) -> Shape:
        if ctx.sources:
            raise ctx.error(
                "`switch` takes no `from`; give `condition`, `true_from` and `false_from`",
                "from",
                "shape.inputs",
            )
        cond = ctx.opts.get("condition")
        if cond is None:
            raise ctx.error(
                "`switch` needs `condition` (a layer or true/false)",
                "condition",
                "shape.missing-option",
            )
        if not isinstance(cond, bool):
            shape = ctx.require_ref("condition")
            if shape.dtype != "bool":
                raise ctx.error(
                    f"`condition` `{ctx.ref_name('condition')}` {shape} must be bool",
                    "condition",
                    "shape.dtype",
                    hint="compute it with `compare`, or `eval` with tf.cast(..., tf.bool)",
                )
        shapes, names = [], []
        if not isinstance(cond, bool):
            shapes.append(ctx.ref("condition"))
            names.append(ctx.ref_name("condition"))
        values = {}
        for opt in self.used(ctx):
            if opt == "condition":
                continue
            value = ctx.opts.get(opt)
            if value is None:
                raise ctx.error(
                    f"`switch` needs `{opt}` (a layer or a number)", opt, "shape.missing-option"
                )
            if isinstance(value, bool) or _is_const(value):
                continue
            shape = ctx.require_ref(opt)
            values[opt] = shape
            shapes.append(shape)
            names.append(ctx.ref_name(opt))
        layer_values = list(values.values())
        if not layer_values:
            dtype, sparse = "float32", None
            consts = [ctx.opts.get(o) for o in self.used(ctx) if o != "condition"]
            if all(isinstance(c, bool) for c in consts):
                dtype = "bool"
            elif all(isinstance(c, int) for c in consts):
                dtype = "int32"
        else:
            dtypes = {s.dtype for s in layer_values}
            if len(dtypes) > 1:
                raise ctx.error(
                    "`true_from` and `false_from` differ in dtype: "
                    + ", ".join(f"`{ctx.ref_name(o)}` {s}" for o, s in values.items()),
                    "false_from",
                    "shape.dtype",
                )
            dtype = dtypes.pop()
            sparse_dims = {s.sparse_dim for s in layer_values}
            sparse = sparse_dims.pop() if len(sparse_dims) == 1 else None
            for opt in self.used(ctx):
                c = ctx.opts.get(opt)
                if (
                    opt != "condition"
                    and _is_const(c)
                    and dtype in ("int32", "int64")
                    and float(c) != int(c)
                ):
                    raise ctx.error(
                        f"`{opt}: {c}` is not an integer, but the other value is {dtype}",
                        opt,
                        "shape.dtype",
                    )
        dims = broadcast_shape(ctx, shapes, names, "false_from") if shapes else ()
        if sparse is not None and any(d.kind == "feature" for d in dims):
            sparse = None
        return Shape(tuple(dims), sparse, dtype)

    def guess_step_shape(self, ctx):
        for opt in ("true_from", "false_from"):
            if isinstance(ctx.opts.get(opt), str):
                got = ctx.known_ref(opt)
                if got is not None:
                    return got
        return None

    def call(self, ctx):
        import tensorflow as tf

        out = ctx.out_shape
        dtype = tf.as_dtype(out.dtype)

        def value(opt):
            v = ctx.opts.get(opt)
            if isinstance(v, str):
                x = align(ctx.ref(opt), ctx.ref_shape(opt), out)
                return tf.cast(x, dtype) if x.dtype != dtype else x
            return tf.constant(v, dtype)

        used = self.used(ctx)
        if used[0] != "condition":
            y = value(used[0])
        else:
            cond = align(ctx.ref("condition"), ctx.ref_shape("condition"), out)
            y = tf.where(cond, value("true_from"), value("false_from"))
        target = []
        for d in out.dims:
            size = d.size if d.kind not in ("batch", "time") else None
            if size is None:
                for opt in ("condition", "true_from", "false_from"):
                    s = ctx.ref_shape(opt) if isinstance(ctx.opts.get(opt), str) else None
                    if s is not None and any(e is d or e.matches(d) for e in s.dims):
                        size = tf.shape(ctx.ref(opt))[s.index(d)]
                        break
            target.append(size)
        if target and all(t is not None for t in target):
            y = tf.broadcast_to(y, tf.stack(target))
        return y
