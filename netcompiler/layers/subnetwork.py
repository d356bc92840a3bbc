"""`subnetwork`: a whole network as one layer (RETURNN's SubnetworkLayer).

    sub: {class: subnetwork, from: x, subnetwork: {h: {class: linear, ...}, output: {...}}}

The sub-network is inlined (`netcompiler.frontend.network`): its layers are ordinary layers of the
enclosing network named `sub/name` (variables `sub/name/W`), so graph, shape inference, loop
planning and the builder see nothing new; inside a rec unit they run per step like any unit
layer. Inside, `data` (= `data:data`) is the layer's input: its `from` concatenated on the
feature axis (with `dropout` applied), the layer `sub/data:data`; with `concat_sources: false`
`data:NAME` / `data:i` is the input `NAME` / the i-th input and `data` the first. `base:x` is a
layer of the enclosing network, any other `data:KEY` is `data:KEY` as the enclosing network reads
it. The layer's output is its sub-network's `output` (reference `("subnetwork", "output")`);
layers with a `loss` inside count as losses of the network.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out


class SubnetworkRule(LayerRule):
    layer_class = "subnetwork"
    concat_sources = False  # its own inputs are read inside (they are not its sources)
    sub_network_kind = "inline"

    def sub_network(self, opts: dict) -> tuple[tuple, dict] | None:
        sub = opts.get("subnetwork")
        return (("subnetwork",), sub) if isinstance(sub, dict) else None

    def sub_network_input(self, opts: dict) -> dict | None:
        """`NAME/data:data` (made when a layer inside reads `data` and the inputs are
        concatenated): a `copy` of its inputs, with its `dropout`."""
        data_opts = {"class": "copy", "from": opts.get("from", "data")}
        for key in ("dropout", "dropout_noise_shape"):
            if key in opts:
                data_opts[key] = opts[key]
        return data_opts

    def infer(self, ctx) -> Shape:
        out = ctx.ref("subnetwork")
        if out is None:  # no `output` layer: reported by the graph check
            raise ctx.error(
                f"the subnetwork of `{ctx.name}` has no usable `output` layer",
                "subnetwork",
                "shape.subnetwork-output",
            )
        if ctx.opts.get("dropout") and ctx.opts.get("concat_sources", True) is False:
            raise ctx.error(
                "`dropout` with `concat_sources: false` is not supported (the "
                "dropout applies to the concatenated input `data:data`)",
                "dropout",
                "shape.unsupported",
            )
        check_n_out(ctx, out)
        return out

    def guess_step_shape(self, ctx) -> Shape | None:
        """Inside a rec unit (`prev:sub` read before `sub/output` is inferred): the shape of its
        `output` layer if that is known or has a guess of its own."""
        return ctx.known_ref("subnetwork")

    def call(self, ctx):
        import tensorflow as tf

        return tf.identity(ctx.ref("subnetwork"))
