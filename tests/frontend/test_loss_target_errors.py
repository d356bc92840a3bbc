"""Shape check of `loss` against its `target`, with locations; deprecation warnings."""

import textwrap

import pytest

from netcompiler.frontend.validate import validate

HEAD = """\
extern_data:
  data: {dim: 5}
  classes: {dim: 4, sparse: true}
  aligned: {dim: 4, sparse: true, same_time_as: data}
  dense: {dim: 3, same_time_as: data}
network:
"""


def check(body: str, strict=False):
    return validate(
        HEAD + textwrap.indent(textwrap.dedent(body), "  "), name="net.yaml", strict=strict
    )


def test_valid_losses():
    result = check("""\
        h: {class: linear, from: data, n_out: 8}
        output: {class: softmax, from: h, loss: ce, target: aligned}
        reg: {class: linear, from: h, n_out: 3, loss: mse, target: dense}
        ctc: {class: softmax, from: h, n_out: 5, loss: ctc, target: classes}
        """)
    assert result.errors == []


@pytest.mark.parametrize(
    "body,line,fragment",
    [
        # ce on a time axis a layer created: T(sub) output vs T(data) target (two extern time
        # axes are unified instead, see test_prev_cycles.py)
        (
            "sub: {class: slice, from: data, axis: T, slice_step: 2}\n"
            "output: {class: softmax, from: sub, n_out: 4, loss: ce, target: aligned}\n",
            8,
            "`output` [B, T(sub), F=4] does not fit `target: aligned` [B, T(data)] sparse(4): "
            "their axes differ",
        ),
        # ce with the wrong number of classes
        (
            "output: {class: softmax, from: data, n_out: 3, loss: ce, target: aligned}\n",
            7,
            "3 output features for 4 target classes/features",
        ),
        # mse against dense data of another size
        (
            "output: {class: linear, from: data, n_out: 2, loss: mse, target: dense}\n",
            7,
            "2 output features for 3 target classes/features",
        ),
        # ctc needs classes + blank
        (
            "output: {class: softmax, from: data, n_out: 4, loss: ctc, target: classes}\n",
            7,
            "5 output features: classes + blank",
        ),
    ],
)
def test_loss_target_mismatch_is_located(body, line, fragment):
    result = check(body)
    [d] = result.errors
    assert d.rule == "shape.loss-target"
    assert fragment in d.message
    assert (d.file, d.line) == ("net.yaml", line)
    assert d.dotted_path.startswith("network.output.")


def test_loss_without_target_and_unknown_target():
    # RETURNN's default target `classes` (here on its own time axis: unified with a note)
    result = check("output: {class: softmax, from: data, n_out: 4, loss: ce}\n")
    assert result.errors == [] and [d.rule for d in result.notes] == ["shape.unified-time"]
    no_default = HEAD.replace("  classes: {dim: 4, sparse: true}\n", "")
    [d] = validate(
        no_default + "  output: {class: softmax, from: data, n_out: 4, loss: ce}\n", name="net.yaml"
    ).errors
    assert (d.rule, d.dotted_path) == ("shape.loss-target", "network.output.loss")
    assert "needs a `target`" in d.message and "`classes`" in d.message
    [d] = check("output: {class: softmax, from: data, n_out: 4, loss: ce, target: aligne}\n").errors
    assert (d.rule, d.dotted_path, d.hint) == (
        "graph.unknown-data",
        "network.output.target",
        "did you mean `aligned`?",
    )


def test_unknown_target_inside_a_rec_unit_is_reported_even_if_shapes_cannot_be_inferred():
    """A misspelt target is a reference error: found even when the layer's inputs failed."""
    body = """\
        dec:
          class: rec
          from: []
          target: classes
          unit:
            s: {class: linear, from: [prev:s, prev:nope], n_out: 4}
            output: {class: softmax, from: s, loss: ce, target: clases}
        output: {class: copy, from: dec}
        """
    rules = {(d.rule, d.dotted_path, d.hint) for d in check(body).errors}
    assert (
        "graph.unknown-data",
        "network.dec.unit.output.target",
        "did you mean `classes`?",
    ) in rules
    assert any(r[0] == "graph.unknown-layer" for r in rules)


def test_a_rec_layer_whose_unit_has_a_loss_is_used():
    body = """\
        dec:
          class: rec
          from: []
          target: classes
          unit:
            s: {class: linear, from: prev:s, n_out: 4}
            output: {class: softmax, from: s, loss: ce, target: classes}
        """
    result = check(body)
    assert not [d for d in result.diagnostics if d.rule == "graph.unused"]


def test_deprecated_layers_warn_with_the_explicit_formulation():
    body = """\
        enc: {class: linear, from: data, n_out: 6}
        s: {class: reduce, mode: mean, axes: T, from: enc}
        att: {class: dot_attention, from: s, base: enc, base_ctx: enc}
        output: {class: copy, from: att, is_output_layer: true}
        """
    result = check(body)
    assert result.errors == []
    [w] = [d for d in result.warnings if d.rule == "deprecated"]
    assert (w.line, w.col) == (9, 9) and w.dotted_path == "network.att.class"
    assert "generic_attention" in w.hint and "softmax_over_spatial" in w.hint
    strict = check(body, strict=True)
    assert [d.rule for d in strict.errors] == ["deprecated"]
