"""Layer traits live on the rules (`netcompiler.core.layer_rule.LayerRule`), not in the engine.

- the engine modules name no layer class: no comparison of a class with a class-name literal,
  no `{class: NAME}` literal, no list of class names (checked on their syntax tree);
- every rule's traits have the declared types, and the option names of `layer_options` are
  options of the class's schema;
- the engine honours a trait it reads from a rule: a class given `loop_only` stays in the
  decoder loop, and one given `stateful` (with `initial_state` / `call_step`) carries a state
  from step to step (a running sum, checked against NumPy).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from netcompiler.frontend.schema import layer_options as schema_options
from netcompiler.layers import COMMON_LAYER_OPTIONS, LayerRule, get_rule, registry, traits


def module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} moved: update this test"
    return Path(spec.origin).read_text(encoding="utf-8")


#: modules that must not name layer classes: what a class is, its rule says (their source is
#: read, not imported: some import TensorFlow)
LOOP_MODULES = tuple(
    f"netcompiler.backend.loop.{m}"
    for m in (
        "runner",
        "plan",
        "unit_traits",
        "setup",
        "outer",
        "initial",
        "moved_out",
        "step_inputs",
        "step_loop",
        "beam",
        "max_len",
        "tensors",
        "decode",
    )
)
ENGINE_MODULES = LOOP_MODULES + (
    "netcompiler.frontend.network",
    "netcompiler.frontend.graph",
    "netcompiler.frontend.shapes",
    "netcompiler.frontend.shape_inference",
    "netcompiler.frontend.shape_checks",
    "netcompiler.backend.build",
    "netcompiler.training.trainer",
    "netcompiler.training.loss_specs",
    "netcompiler.training.step",
    "netcompiler.training.search",
)

BOOL_TRAITS = (
    "concat_sources",
    "broadcasts_sources",
    "stateful",
    "step_indexed",
    "loop_only",
    "position_wise",
    "chooses_labels",
    "masked_step",
    "supports_apply_zero",
    "unchunks",
)
SUB_NETWORK_KINDS = (None, "loop", "masked", "inline")


def _strings(node: ast.AST) -> list[str]:
    """String constants of a literal: a string, or a tuple / list / set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def _mentions_class(node: ast.AST) -> bool:
    """An expression that reads a layer's class: `x.layer_class`, `opts.get("class")`,
    `opts["class"]`."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "layer_class":
            return True
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "get"
            and sub.args
            and _strings(sub.args[0]) == ["class"]
        ):
            return True
        if isinstance(sub, ast.Subscript) and _strings(sub.slice) == ["class"]:
            return True
    return False


def class_name_uses(source: str, classes: set[str]) -> list[tuple[int, str]]:
    """(line, text) of every place where the source names a layer class: a comparison of a
    layer's class with a class-name literal, a `{"class": NAME}` literal, or a tuple / list /
    set of string literals holding a class name assigned to a name (a list of classes)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left] + list(node.comparators)
            if any(_mentions_class(s) for s in sides):
                for s in sides:
                    found += [(node.lineno, v) for v in _strings(s) if v in classes]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if key is not None and _strings(key) == ["class"]:
                    found += [(node.lineno, v) for v in _strings(value) if v in classes]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # frozenset((...)), set([...])
                value = value.args[0]
            if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
                names = _strings(value)
                if names and len(names) == len(value.elts):
                    found += [(node.lineno, v) for v in names if v in classes]
    return sorted(found)


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_modules_name_no_layer_class(module):
    uses = class_name_uses(module_source(module), set(registry()))
    assert not uses, f"{module} names layer classes (make them traits of the rule): {uses}"


def test_the_class_name_check_finds_each_kind_of_use():
    classes = {"rnn_cell", "choice", "copy", "rec"}
    source = (
        'STATEFUL = ("rnn_cell", "self_attention")\n'
        'LIST = frozenset(["choice"])\n'
        'if layer.layer_class == "choice": pass\n'
        'if opts.get("class") in ("rec", "x"): pass\n'
        'if opts["class"] != "copy": pass\n'
        'data = {"class": "copy", "from": "x"}\n'
        'KEYS = ("dropout", "from")\n'  # option names, not a class comparison: fine
        'if sub[0] == "rec": pass\n'  # not a layer's class: fine
    )
    assert class_name_uses(source, classes) == [
        (1, "rnn_cell"),
        (2, "choice"),
        (3, "choice"),
        (4, "rec"),
        (5, "copy"),
        (6, "copy"),
    ]


def test_every_rule_declares_its_traits_with_the_declared_types():
    rules = registry()
    assert rules
    for name, rule in rules.items():
        assert isinstance(rule, LayerRule)
        assert rule.layer_class == name
        for trait in BOOL_TRAITS:
            assert type(getattr(rule, trait)) is bool, (name, trait)
        assert rule.default_from is None or isinstance(rule.default_from, str), name
        assert rule.deprecated is None or isinstance(rule.deprecated, str), name
        assert rule.sub_network_kind in SUB_NETWORK_KINDS, name
        assert isinstance(rule.layer_options, tuple), name
        assert all(isinstance(o, str) and o for o in rule.layer_options), name
        assert len(set(rule.layer_options)) == len(rule.layer_options), name
        assert not set(rule.layer_options) & set(COMMON_LAYER_OPTIONS), name
        # every option that names layers is an option of the class
        accepted = schema_options(name)
        missing = [o for o in rule.layer_options + COMMON_LAYER_OPTIONS if o not in accepted]
        assert not missing, (name, missing)
        # a stateful class implements its per-step hooks; a masked one its masked step
        own = {k for cls in type(rule).__mro__ if cls is not LayerRule for k in vars(cls)}
        if rule.stateful:
            assert {"initial_state", "call_step"} <= own, name
        if rule.masked_step:
            assert "call_masked_step" in own, name
        if rule.sub_network_kind is not None:
            assert "sub_network" in own, name


def test_the_base_rule_documents_every_trait_and_hook():
    lines = module_source(LayerRule.__module__).splitlines()
    for trait in BOOL_TRAITS + ("layer_options", "default_from", "deprecated", "sub_network_kind"):
        # declared once on LayerRule, with a `#:` doc comment right above
        at = [i for i, line in enumerate(lines) if line.startswith(f"    {trait}: ClassVar[")]
        assert len(at) == 1, trait
        assert lines[at[0] - 1].strip().startswith("#:"), trait
    for hook in (
        "infer",
        "params",
        "guess_step_shape",
        "carries_state",
        "call",
        "initial_state",
        "call_step",
        "call_masked_step",
        "sub_network",
        "sub_network_input",
        "sub_outputs",
        "expression_option",
    ):
        assert callable(getattr(LayerRule, hook)), hook
        assert getattr(LayerRule, hook).__doc__, hook
    # the defaults fit a plain stateless layer without inputs of other roles
    base = LayerRule()
    assert (
        base.stateful,
        base.step_indexed,
        base.loop_only,
        base.position_wise,
        base.chooses_labels,
        base.masked_step,
    ) == (False,) * 6
    assert base.concat_sources and base.supports_apply_zero and base.default_from == "data"
    assert base.layer_options == () and base.sub_network_kind is None
    assert base.sub_network({"unit": {}}) is None and base.sub_outputs("x", {}) == []
    assert base.sub_network_input({}) is None and base.expression_option({"eval": "x"}) is None
    assert not base.unchunks
    for hook, args in (
        ("call", (None,)),
        ("initial_state", (None, 1, 1)),
        ("call_step", (None, None)),
        ("call_masked_step", (None, None)),
    ):
        with pytest.raises(NotImplementedError):
            getattr(base, hook)(*args)


def test_traits_of_an_unknown_class_are_the_defaults():
    assert traits("no_such_class") is traits(None)
    assert not traits("no_such_class").chooses_labels
    assert traits("choice") is get_rule("choice") and traits("choice").chooses_labels


def test_reference_options_come_from_the_rule():
    from netcompiler.frontend.network import Layer, Scope, layer_references, reference_options

    assert reference_options("switch") == (
        "from",
        "condition",
        "true_from",
        "false_from",
        "reuse_params",
        "initial_output",
    )
    assert reference_options("linear") == ("from", "reuse_params", "initial_output")
    assert reference_options("no_such_class") == COMMON_LAYER_OPTIONS
    scope = Scope("", ("network",))

    def refs(opts):
        layer = Layer("x", "x", opts, ("network", "x"), scope)
        return layer_references(layer)

    # an option named by the rule is a reference; the same option on another class is not
    assert refs({"class": "gather", "from": "a", "position": "p", "axis": "T"}) == [
        (("from",), "a"),
        (("position",), "p"),
    ]
    assert refs({"class": "linear", "from": "a", "position": "p"}) == [(("from",), "a")]
    # `initial_state` names layers for cells only (a keyword is no reference)
    assert refs({"class": "rnn_cell", "from": "a", "initial_state": ["s", "zeros"]}) == [
        (("from",), "a"),
        (("initial_state", 0), "s"),
    ]
    assert refs({"class": "self_attention", "from": "a", "initial_state": "s"}) == [
        (("from",), "a")
    ]


# -- the loop engine honours the traits ----------------------------------------------------------
UNIT_CFG = {
    "extern_data": {"data": {"dim": 3}},
    "network": {
        "output": {
            "class": "rec",
            "from": "data",
            "unit": {
                "acc": {"class": "copy", "from": "data:source"},
                "output": {"class": "copy", "from": "acc"},
            },
        }
    },
}


def _compile(cfg):
    from netcompiler.backend.build import compile_network

    return compile_network(copy.deepcopy(cfg), seed=1)


@pytest.mark.tf
def test_loop_only_and_position_wise_traits_decide_where_a_layer_runs(monkeypatch):
    from netcompiler.backend.loop.plan import unit_placement
    from netcompiler.layers.copy import CopyRule

    both = {"output/acc", "output/output"}
    place = unit_placement(_compile(UNIT_CFG), "output")
    assert place.before == both and not place.in_loop  # moved out: per-frame copies
    # loop only: not before the loop; position-wise (copy is), so computed after it
    monkeypatch.setattr(CopyRule, "loop_only", True)
    place = unit_placement(_compile(UNIT_CFG), "output")
    assert place.after == both and not place.before and not place.in_loop
    # and not position-wise: step by step
    monkeypatch.setattr(CopyRule, "position_wise", False)
    place = unit_placement(_compile(UNIT_CFG), "output")
    assert place.in_loop == both and not place.before and not place.after


@pytest.mark.tf
def test_stateful_trait_makes_the_loop_carry_a_state(monkeypatch):
    """`copy` made stateful (test only): its step adds its input to the state, a running sum."""
    import tensorflow as tf

    from netcompiler.layers.copy import CopyRule

    cfg = copy.deepcopy(UNIT_CFG)
    cfg["network"]["output"]["optimize_move_layers_out"] = False  # every step in the loop
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    lengths = np.array([4, 2], np.int32)

    def run():
        values, _ = _compile(cfg)({"data": x}, {"data": lengths})["output"]
        return values.numpy()

    np.testing.assert_allclose(run(), x, rtol=1e-6)  # a plain copy: the input, frame by frame

    def initial_state(self, ctx, batch_size, max_steps):
        return tf.zeros([batch_size, ctx.out_shape.feature_size], tf.float32)

    def call_step(self, ctx, state):
        out = state + ctx.source
        return out, out

    monkeypatch.setattr(CopyRule, "stateful", True)
    monkeypatch.setattr(CopyRule, "initial_state", initial_state)
    monkeypatch.setattr(CopyRule, "call_step", call_step)
    got = run()
    # `acc` sums the frames so far; `output` copies it (its own state starts from the sum too)
    acc = np.cumsum(x, axis=1)
    want = np.cumsum(acc, axis=1)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(got[b, :n], want[b, :n], rtol=1e-5, atol=1e-5)
