"""`choice`: the chosen label from a distribution over the target's classes.

Inside a rec unit: `[B] sparse(<classes>)` per step (the target while training, beam search
otherwise); outside over time: the input's axes without the feature axis, sparse. The input
(probabilities, or log-probabilities with `input_type: log_prob`) must have as many features as
the target has classes.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH_DIM, Shape
from netcompiler.core.layer_rule import LayerRule


def target_classes(ctx) -> int | None:
    target = ctx.opt("target")
    shape = ctx.extern(target) if isinstance(target, str) else None
    return shape.feature_size if shape is not None else None


class ChoiceRule(LayerRule):
    layer_class = "choice"
    layer_options = ("explicit_search_source",)
    chooses_labels = True
    supports_apply_zero = False

    def infer(self, ctx) -> Shape:
        cheating = ctx.opts.get("cheating", False)
        if cheating:
            raise ctx.error(
                f"`cheating: {str(cheating).lower()}` is not supported: netcompiler's beam "
                f"search does not force the target label into the beam",
                "cheating",
                "shape.unsupported",
                hint="remove `cheating` (or set it to false)",
            )
        src = ctx.source
        name = ", ".join(ctx.source_names)
        target = ctx.opt("target")
        shape = ctx.extern(target) if isinstance(target, str) else None
        if shape is None:
            raise ctx.error(
                f"`choice` needs `target` naming extern data (the label space), got `{target}`",
                "target",
                "shape.choice-target",
            )
        if not shape.sparse:
            raise ctx.error(
                f"`target` `{target}` {shape} is not sparse: `choice` picks class labels",
                "target",
                "shape.choice-target",
            )
        classes = shape.sparse_dim
        if src.sparse or src.feature is None:
            raise ctx.error(
                f"`choice` needs a distribution over classes, but `{name}` {src}",
                "from",
                "shape.no-feature",
            )
        if src.feature_size != classes:
            raise ctx.error(
                f"input `{name}` {src} has {src.feature_size} features, but target `{target}` "
                f"{shape} has {classes} classes",
                "from",
                "shape.choice-classes",
                hint="the input must be a distribution over the target's classes",
            )
        return Shape(src.non_feature_dims, classes, "int32")

    def guess_step_shape(self, ctx):
        classes = target_classes(ctx)
        if classes is None:
            return None
        return Shape((BATCH_DIM,), classes, "int32")
