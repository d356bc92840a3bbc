"""The package's architecture rules, checked on the source (ast; nothing is imported):

- no private name crosses a module boundary: no `from .x import _name`, no `x._name` on a module,
  no `obj._attr` (or `getattr(obj, "_attr")`) of a private attribute that only another module
  defines. Private *modules* (`layers/_util.py`) are fine: the rule is about names;
- the import graph of `netcompiler/` has no cycles: neither at module level nor counting the
  imports inside functions (those exist to keep TensorFlow out of validation, never to dodge a
  circle); imports under `if TYPE_CHECKING:` are for annotations only and do not count;
- no module is over 600 lines and no function (method, nested function) over 80, from its `def`
  to its last line (a short, commented allow-list holds the modules still being split).

That validation never imports TensorFlow (or NumPy) is checked where it runs:
tests/core/test_light_install.py (TensorFlow and NumPy made unimportable) and
tests/cli/test_cli.py::test_validate_does_not_import_tensorflow.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "netcompiler"


# -- reading a package ----------------------------------------------------------------------------
def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


@functools.cache
def _parsed(root: Path) -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package at `root`, parsed once (the tests share it)."""
    return {m: (p, ast.parse(p.read_text(encoding="utf-8"))) for m, p in _modules(root).items()}


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, module_level: bool):
    """Import statements that run: not under `if TYPE_CHECKING:`; with `module_level`, not
    inside a function either."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if module_level and isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def _base(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module a `from ... import` statement imports from."""
    if not node.level:
        return node.module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def import_graph(root: Path, module_level: bool) -> nx.DiGraph:
    """Modules of the package and the imports between them (importing `a.b.c` also runs the
    packages `a.b`: an edge to each, except to the importer's own packages)."""
    modules = _parsed(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, (path, tree) in modules.items():
        for node in _import_nodes(tree, module_level):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(module, path, node)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    if dep in modules and dep != module and not module.startswith(dep + "."):
                        graph.add_edge(module, dep, line=node.lineno)
    return graph


def cycles(root: Path, module_level: bool) -> list[str]:
    """Every import cycle, as `a:LINE -> b:LINE -> a` (LINE: where the module imports the next)."""
    graph = import_graph(root, module_level)
    out = []
    found = []
    for cycle in nx.simple_cycles(graph):
        first = cycle.index(min(cycle))  # the same cycle reads the same every run
        found.append(cycle[first:] + cycle[:first])
    for cycle in sorted(found, key=lambda c: (len(c), c)):
        steps = [f"{a}:{graph.edges[a, b]['line']}" for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        out.append(" -> ".join(steps + [cycle[0]]))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module and class variables, and
    attributes it sets on objects (`self._x = ...`, `obj._x = ...`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if _private(n)}


def private_crossings(root: Path) -> list[str]:
    """Private names used in a module other than the one that defines them."""
    modules = {m: p for m, (p, _) in _parsed(root).items()}
    trees = {m: t for m, (_, t) in _parsed(root).items()}
    defined = {m: _defined_private_names(t) for m, t in trees.items()}
    owners: dict[str, set[str]] = {}
    for m, names in defined.items():
        for name in names:
            owners.setdefault(name, set()).add(m)
    elsewhere = {m: {n for n, o in owners.items() if o - {m}} for m in trees}
    found = []
    for module, tree in trees.items():
        where = f"{modules[module].relative_to(root.parent)}"
        module_aliases = set()  # names bound to modules of the package (`from . import expr`)
        for node in _import_nodes(tree, module_level=False):
            if isinstance(node, ast.ImportFrom):
                base = _base(module, modules[module], node)
                if base is None or (base != root.name and not base.startswith(root.name + ".")):
                    continue
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{where}:{node.lineno}: from {base} import {alias.name}")
                    if f"{base}.{alias.name}" in modules:
                        module_aliases.add(alias.asname or alias.name)
            else:
                for alias in node.names:
                    if alias.name.split(".")[0] == root.name:
                        module_aliases.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                value = node.value
                if isinstance(value, ast.Name) and value.id in module_aliases:
                    found.append(
                        f"{where}:{node.lineno}: {ast.unparse(node)} (a private name "
                        f"of another module)"
                    )
                elif node.attr not in defined[module] and node.attr in elsewhere[module]:
                    found.append(
                        f"{where}:{node.lineno}: {ast.unparse(node)} (private; set "
                        f"only by another module)"
                    )
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
                and node.args[1].value not in defined[module]
                and node.args[1].value in elsewhere[module]
            ):
                found.append(
                    f"{where}:{node.lineno}: {ast.unparse(node)} (private; set only "
                    f"by another module)"
                )
    return found


# -- the package -----------------------------------------------------------------------------------
def test_no_private_name_crosses_a_module_boundary():
    assert private_crossings(PACKAGE) == []


def test_module_level_imports_have_no_cycle():
    assert cycles(PACKAGE, module_level=True) == []


def test_imports_inside_functions_add_no_cycle():
    assert cycles(PACKAGE, module_level=False) == []


def test_the_graph_sees_the_package():
    """The checks above read the real package: its modules and known edges are there."""
    graph = import_graph(PACKAGE, module_level=True)
    assert {
        "netcompiler.training.trainer",
        "netcompiler.training.search",
        "netcompiler.core.layer_rule",
        "netcompiler.training.command_support",
    } <= set(graph)
    assert graph.has_edge("netcompiler.training.trainer", "netcompiler.training.search")
    assert graph.has_edge(
        "netcompiler.frontend.shapes", "netcompiler.layers"
    )  # `from .layers import`
    assert graph.has_edge("netcompiler.layers.rec", "netcompiler.core.layer_rule")
    # inside a function only: `export` is imported by `forward` where TensorFlow is needed
    assert not graph.has_edge("netcompiler.training.forward", "netcompiler.backend.export")
    assert import_graph(PACKAGE, module_level=False).has_edge(
        "netcompiler.training.forward", "netcompiler.backend.export"
    )


#: what each package of the house may import (besides itself and the standard library and
#: pure-Python dependencies): the front end and the core never reach TensorFlow or NumPy, not even
#: inside a function; the core stands on nothing else of netcompiler
LAYERS_OF_THE_HOUSE = {
    "netcompiler.core": {"netcompiler.core"},
    "netcompiler.frontend": {"netcompiler.core", "netcompiler.frontend", "netcompiler.layers"},
}
HEAVY = {"tensorflow", "numpy", "h5py", "keras", "tensorboard"}


def layering_violations(root: Path, rules: dict[str, set[str]], heavy: set[str]) -> list[str]:
    """Imports (at any level, outside `if TYPE_CHECKING:`) that a package's rule forbids."""
    found = []
    for module, (path, tree) in _parsed(root).items():
        package = next((p for p in rules if module == p or module.startswith(p + ".")), None)
        if package is None:
            continue
        for node in _import_nodes(tree, module_level=False):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                targets = [_base(module, path, node) or ""]
            for target in targets:
                top = target.split(".")[0]
                inside = top == root.name
                allowed = any(target == a or target.startswith(a + ".") for a in rules[package])
                if top in heavy or (inside and not allowed and target != root.name):
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno}: {package} imports {target}")
    return found


def test_core_and_frontend_never_import_tensorflow_or_the_back_end():
    assert layering_violations(PACKAGE, LAYERS_OF_THE_HOUSE, HEAVY) == []


def test_the_layering_check_finds_violations(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": "from pkg.front.x import y\n",
            "front/__init__.py": "",
            "front/x.py": """
            from typing import TYPE_CHECKING
            from pkg.core.a import z
            if TYPE_CHECKING:
                from pkg.back.b import T

            def f():
                import tensorflow as tf
                from ..back import b
            """,
            "back/__init__.py": "",
            "back/b.py": "import numpy\n",
        },
    )
    rules = {"pkg.core": {"pkg.core"}, "pkg.front": {"pkg.core", "pkg.front"}}
    assert layering_violations(root, rules, {"tensorflow", "numpy"}) == [
        "pkg/core/a.py:1: pkg.core imports pkg.front.x",
        "pkg/front/x.py:8: pkg.front imports tensorflow",
        "pkg/front/x.py:9: pkg.front imports pkg.back",
    ]


# -- sizes ---------------------------------------------------------------------------------------
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def long_modules(root: Path, max_lines: int) -> dict[str, int]:
    """`path` -> line count, for each module of the package at `root` over `max_lines`."""
    found = {}
    for path, _ in _parsed(root).values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > max_lines:
            found[str(path.relative_to(root.parent))] = n
    return found


def _functions(body: list[ast.stmt], prefix: str = ""):
    """(qualified name, def node) of every function in `body`: methods as `Class.name`, nested
    functions as `outer.name`."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")
        else:  # functions defined under `if`, `try`, `with`, ...
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                yield from _functions(getattr(node, field, []), prefix)


def long_functions(root: Path, max_lines: int) -> dict[str, int]:
    """`path::qualname` -> lines from `def` to the function's last line (decorators not
    counted), for each function of the package at `root` over `max_lines`."""
    found = {}
    for path, tree in _parsed(root).values():
        for name, node in _functions(tree.body):
            n = node.end_lineno - node.lineno + 1
            if n > max_lines:
                found[f"{path.relative_to(root.parent)}::{name}"] = n
    return found


def test_no_module_is_over_600_lines():
    found = long_modules(PACKAGE, MAX_MODULE_LINES)
    assert found == {}, "split these modules by job (see README, Layout)"


def test_no_function_is_over_80_lines():
    found = long_functions(PACKAGE, MAX_FUNCTION_LINES)
    assert found == {}, "split these functions into named pieces"


def test_the_size_checks_find_long_modules_and_functions(tmp_path):
    def function(name: str, lines: int, indent: str = "") -> str:  # `lines` lines in all
        return indent + f"def {name}():\n" + f"{indent}    x = 1\n" * (lines - 1)

    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "short.py": "x = 1\n" * 600,
            "long.py": "x = 1\n" * 601,
            "funcs.py": "import functools\n\n"
            + function("fits", 80)
            + "@functools.cache\n"
            + function("decorated_fits", 80)
            + function("too_long", 81)
            + "class C:\n"
            + function("method", 81, "    ")
            + "if True:\n"
            + function("under_if", 81, "    ")
            + "def outer():\n"
            + function("inner", 81, "    "),
        },
    )
    assert long_modules(root, 600) == {"pkg/long.py": 601}
    assert long_functions(root, 80) == {
        "pkg/funcs.py::too_long": 81,
        "pkg/funcs.py::C.method": 81,
        "pkg/funcs.py::under_if": 81,
        "pkg/funcs.py::outer": 82,
        "pkg/funcs.py::outer.inner": 81,
    }


# -- the checks themselves, on a small package with every kind of violation -------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_the_checks_find_private_crossings(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": """
            from .b import _helper, public
            from . import b
            from .sub._impl import ok_from_private_module

            def f(net, ctx):
                b._CONST
                net._order              # set only in b
                getattr(ctx, "_refs")   # set only in b
                net._mine               # set here as well
                self_like = net
                self_like._mine = 1
            """,
            "b.py": """
            _CONST = 1

            def _helper(): pass
            def public(): pass

            class Net:
                def __init__(self):
                    self._order = []
                    self._refs = {}
                    self._mine = 0
            """,
            "sub/__init__.py": "",
            "sub/_impl.py": "def ok_from_private_module(): pass\n",
        },
    )
    found = private_crossings(root)
    assert [line.split(": ", 1)[1] for line in found] == [
        "from pkg.b import _helper",
        "b._CONST (a private name of another module)",
        "net._order (private; set only by another module)",
        "getattr(ctx, '_refs') (private; set only by another module)",
    ]
    assert found[0].startswith("pkg/a.py:2: ")


def test_the_checks_find_cycles(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
            "def f():\n    from .c import y\n",
            "c.py": "from .a import z\n",
            "d/__init__.py": "from .e import w\n",
            "d/e.py": "from .. import a\n",
            "f.py": "from .d.e import w\n",  # runs d/__init__ first
        },
    )
    assert cycles(root, module_level=True) == []  # b -> a only for annotations; b -> c lazy
    assert cycles(root, module_level=False) == ["pkg.a:1 -> pkg.b:5 -> pkg.c:1 -> pkg.a"]
    graph = import_graph(root, module_level=True)
    assert graph.has_edge("pkg.f", "pkg.d") and graph.has_edge("pkg.f", "pkg.d.e")
    assert graph.has_edge("pkg.d", "pkg.d.e") and not graph.has_edge("pkg.d.e", "pkg.d")
