"""Finding where an `eval` expression reaches into RETURNN's Python objects (see
`netcompiler.frontend.expr`): the config's functions via `self.network.get_config().typed_value(...)`,
the names `self`, `network`, `get_config`, `typed_value`, RETURNN's helper `py_print`, an
attribute `.placeholder`, an attribute or method of `source(...)`
(`source(0, as_data=True).time_dimension()`) and `source(i, as_data=True)` / `as_layer=True`
(RETURNN's `Data` / layer objects). `find_python_call` describes the leftmost such use for the
error message, with the hint of what to write instead; it works on the syntax tree of
`ast.parse` and builds no error itself, so that `expr` (which owns `ExprError`) can use it
without an import cycle. Also `node_text`, the source text of a syntax node for messages."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TypeGuard

from netcompiler.frontend.expr_functions import (
    PYTHON_ATTRIBUTES,
    PYTHON_NAMES,
    PYTHON_SOURCE_KEYWORDS,
)

_SPEC_AUGMENT_WORDS = ("transform", "spec", "augment", "mask")
#: the layer the hint of a SpecAugment hook shows (modelled on the rwth-i6 setups' `transform`;
#: `tests/test_spec_augment.py` checks that it validates)
SPEC_AUGMENT_EXAMPLE = (
    "{class: spec_augment, from: data, max_num_time_masks: 2, "
    "time_mask_frames_per_mask: 100, max_time_mask_width: 20, "
    "max_num_feature_masks: 2}"
)


@dataclass(frozen=True)
class PythonCallUse:
    """A use of RETURNN's Python objects: `what` it uses (e.g. "`self`", for the message),
    `token` the widest call or attribute chain around it, `col` the use's 0-based column, and
    `hint` what to write instead."""

    what: str
    token: str
    col: int
    hint: str


def node_text(text: str, node: ast.AST) -> str:
    """The source text of `node` in `text` for a message (cut to 60 characters), or the name
    of its node type where the text is not known."""
    try:
        seg = ast.get_source_segment(text, node)
    except Exception:  # pragma: no cover - defensive
        seg = None
    if not seg:
        seg = type(node).__name__
    return seg if len(seg) <= 60 else seg[:57] + "..."


def _is_source_call(node: ast.AST) -> TypeGuard[ast.Call]:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "source"
    )


def _python_hit(node: ast.AST) -> str | None:
    """What `node` uses of RETURNN's Python objects (for the message), else None."""
    if isinstance(node, ast.Name) and node.id in PYTHON_NAMES:
        return f"`{node.id}`"
    if not isinstance(node, ast.Attribute):
        if _is_source_call(node):
            for kw in node.keywords:
                if (
                    kw.arg in PYTHON_SOURCE_KEYWORDS
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                ):
                    return f"`{kw.arg}=True` ({PYTHON_SOURCE_KEYWORDS[kw.arg]})"
        return None
    if node.attr in PYTHON_NAMES:
        return f"`{node.attr}`"
    if node.attr in PYTHON_ATTRIBUTES:
        return f"`.{node.attr}` (an attribute of a RETURNN object)"
    if _is_source_call(node.value) and not node.attr.startswith("__"):
        # source(0, as_data=True).time_dimension(): a method of RETURNN's Data / layer
        return f"`.{node.attr}` of `source(...)` (a RETURNN object's attribute)"
    return None


def find_python_call(text: str, tree: ast.AST) -> PythonCallUse | None:
    """The leftmost use of RETURNN's Python objects in the syntax tree `tree` of `text`, else
    None (may raise RecursionError for a deeply nested tree)."""
    hit = _leftmost_hit(tree)
    if hit is None:
        return None
    node, what = hit
    return PythonCallUse(what, _widest_chain(text, tree, node), node.col_offset, _hint(text, tree))


def _leftmost_hit(tree: ast.AST) -> tuple[ast.expr, str] | None:
    """The leftmost node that uses RETURNN's Python objects, with what it uses."""
    hit: tuple[ast.expr, str, tuple[int, int]] | None = None
    for node in ast.walk(tree):
        name = _python_hit(node) if isinstance(node, ast.expr) else None  # (hits are exprs)
        if name is None or not isinstance(node, ast.expr):
            continue
        # the leftmost use; `self` (a name) before the attributes that start at its column
        key = (node.col_offset, 0 if isinstance(node, ast.Name) else 1)
        if hit is None or key < hit[2]:
            hit = (node, name, key)
    return None if hit is None else (hit[0], hit[1])


def _widest_chain(text: str, tree: ast.AST, node: ast.expr) -> str:
    """The text of the widest expression around `node` that is a call or attribute chain, for
    the message."""
    outer: ast.AST = node
    for cand in ast.walk(tree):
        if (
            isinstance(cand, (ast.Call, ast.Attribute))
            and _contains(cand, node)
            and _chain(cand, node)
        ):
            if len(node_text(text, cand)) > len(node_text(text, outer)):
                outer = cand
    return node_text(text, outer)


def _hint(text: str, tree: ast.AST) -> str:
    """What to write instead: the `spec_augment` layer for the usual SpecAugment hook (a
    `typed_value` of a config function whose name says so), else layers or `source(i)`."""
    lowered = text.lower()
    strings = [
        n.value.lower()
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    spec = "typed_value" in lowered and any(w in s for s in strings for w in _SPEC_AUGMENT_WORDS)
    if spec:
        return (
            "for SpecAugment use the `spec_augment` layer, which is data only and masks "
            "only in training, e.g. `" + SPEC_AUGMENT_EXAMPLE + "` (options: "
            "schemas/layers/spec_augment.schema.json)"
        )
    return (
        "write it as layers (e.g. `compare`, `reduce`, `length`) or as an expression "
        "over source(i), which are data only"
    )


def _contains(outer: ast.AST, inner: ast.AST) -> bool:
    return any(n is inner for n in ast.walk(outer))


def _chain(outer: ast.AST, inner: ast.AST) -> bool:
    """`inner` is reached from `outer` through call functions and attribute values only
    (`a.b().c(x)` contains `a`, not the argument `x`)."""
    node = outer
    while node is not inner:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return False
    return True
