"""The safe reader: a RETURNN config's statements read in order as the module's globals would
come out, without running any of its code (`netcompiler.returnn.config` describes what is
read as data).

Assignments (also unpacking, augmented, `d["k"] = v`), `del`, `d.update(...)`,
`l.append/extend(...)` and `if` with a data condition are followed; the values come from the
expression evaluator (`netcompiler.returnn.config_eval`). Every other statement is not run: the
names it binds, the dicts/lists it might change in place and (for a statement with a call) the
names the file's functions declare `global` become `NotData` with the line and the reason.
"""

from __future__ import annotations

import ast

from netcompiler.returnn.config_eval import (
    BINARY_OPERATORS,
    DataEvaluator,
    Refusal,
    base_name,
    copy_data,
    describe_node,
)
from netcompiler.returnn.config_values import NotData, ReadConfig

MUTATING_METHODS = ("update", "append", "extend")


class SafeReader(DataEvaluator):
    """Reads a config's statements in order into `result` (a `ReadConfig`, mode "safe")."""

    def __init__(self, path: str):
        self.result = ReadConfig(path, "safe")
        super().__init__(path, self.result.values)
        self.global_names: set[str] = set()  # declared `global` in the file's functions

    def run(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.statement(stmt)

    def bind(self, name: str, value, node: ast.stmt) -> None:
        self.env[name] = value
        self.result.lines[name] = node.lineno

    def poison(self, names, reason: str, node: ast.stmt) -> None:
        for name in names:
            self.bind(name, NotData(reason, node.lineno, node.col_offset + 1), node)

    def mutable(self, names) -> set[str]:
        """The names bound to dicts/lists (data a statement could change in place)."""
        return {n for n in names if isinstance(self.env.get(n), (dict, list))}

    def statement(self, stmt: ast.stmt) -> None:
        if _is_config_alias(stmt):
            return  # `config = globals()["config"]`: RETURNN's config object, as before
        try:
            self._statement(stmt)
        except Refusal as exc:
            bad = exc.not_data()
            names = _assigned_names(stmt) | self.mutable(_mutated_names(stmt))
            for name in sorted(names):
                self.bind(name, bad, stmt)
            if _has_call(stmt):  # a call might run a function that sets globals
                self.poison(
                    sorted(self.global_names - names),
                    f"may be set by `{describe_node(stmt)}` (line {stmt.lineno})",
                    stmt,
                )

    def _statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            value = self.expr(stmt.value)
            for target in stmt.targets:
                self.assign(target, value, stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.expr(stmt.value), stmt)
        elif isinstance(stmt, ast.AugAssign):
            op = BINARY_OPERATORS.get(type(stmt.op))
            if op is None:
                raise Refusal(f"the operator of `{describe_node(stmt)}`", stmt)
            load = _as_load(stmt.target)
            current = self.expr(load)
            self.assign(stmt.target, self.binop(op, current, self.expr(stmt.value), stmt), stmt)
        elif isinstance(stmt, ast.Expr):
            self.expression_statement(stmt)
        elif isinstance(stmt, ast.If):
            try:
                test = self.expr(stmt.test)
            except Refusal:
                self.unknown_branch(stmt, "assigned under an `if` whose condition needs Python")
                return
            self.run(stmt.body if test else stmt.orelse)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.delete(target)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.import_statement(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.definition(stmt)
        elif isinstance(stmt, (ast.Pass, ast.Global, ast.Nonlocal, ast.Assert)):
            return  # no effect on data (an assert is not checked)
        else:
            kind = {
                ast.For: "a `for` loop",
                ast.While: "a `while` loop",
                ast.With: "a `with`",
                ast.Try: "a `try`",
            }.get(type(stmt), f"a `{type(stmt).__name__}` statement")
            self.unknown_branch(stmt, f"assigned in {kind}")

    def import_statement(self, stmt: ast.Import | ast.ImportFrom) -> None:
        """Imported names are modules or Python objects: never data."""
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                self.poison([name], f"the imported module `{alias.name}`", stmt)
            return
        if stmt.module == "__future__":
            return
        for alias in stmt.names:
            if alias.name == "*":
                self.star_import = stmt.lineno
                continue
            name = alias.asname or alias.name
            self.poison([name], f"`{alias.name}` imported from `{stmt.module}`", stmt)

    def definition(self, stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        kind = "class" if isinstance(stmt, ast.ClassDef) else "function"
        self.poison([stmt.name], f"the {kind} `{stmt.name}`", stmt)
        # names it declares `global`: a later call may set them
        for node in ast.walk(stmt):
            if isinstance(node, ast.Global):
                self.global_names.update(node.names)

    def unknown_branch(self, stmt: ast.stmt, reason: str) -> None:
        names = _assigned_names(stmt) | self.mutable(_mutated_names(stmt))
        names |= self.global_names if _has_call(stmt) else set()
        self.poison(sorted(names), reason + f" (line {stmt.lineno})", stmt)

    def expression_statement(self, stmt: ast.Expr) -> None:
        node = stmt.value
        if isinstance(node, ast.Constant):
            return  # a docstring or a string block
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATING_METHODS
            and isinstance(node.func.value, ast.Name)
        ):
            name = node.func.value.id
            target = self.env.get(name, None)
            if name in self.env and not isinstance(target, NotData):
                args = [self.expr(a) for a in node.args]
                if node.keywords or len(args) != 1:
                    raise Refusal(f"the call `{describe_node(node)}`", node)
                method, arg = node.func.attr, args[0]
                if method == "update" and isinstance(target, dict) and isinstance(arg, dict):
                    target.update(copy_data(arg))
                elif method == "append" and isinstance(target, list):
                    target.append(copy_data(arg))
                elif (
                    method == "extend"
                    and isinstance(target, list)
                    and isinstance(arg, (list, tuple))
                ):
                    target.extend(copy_data(arg))
                else:
                    raise Refusal(f"the call `{describe_node(node)}`", node)
                self.result.lines[name] = stmt.lineno
                return
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
            and "print" not in self.env
        ):
            return  # output only; not run
        # any other call is not run: the data it might change is no longer known
        names = self.mutable(_mutated_names(stmt)) | self.global_names
        self.poison(
            sorted(names), f"may be changed by `{describe_node(node)}` (line {stmt.lineno})", stmt
        )

    def assign(self, target: ast.expr, value, stmt: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            self.bind(target.id, value, stmt)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if any(isinstance(t, ast.Starred) for t in target.elts):
                raise Refusal(f"the starred assignment `{describe_node(target)}`", target)
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                raise Refusal(f"the unpacking `{describe_node(target)} = ...`", target)
            for t, v in zip(target.elts, value):
                self.assign(t, copy_data(v), stmt)
        elif isinstance(target, ast.Subscript):
            container = self.ref(target.value)
            key = self.expr(target.slice)
            if isinstance(container, dict) and isinstance(key, (str, int, float, bool, type(None))):
                container[key] = copy_data(value)
            elif (
                isinstance(container, list)
                and isinstance(key, int)
                and not isinstance(key, bool)
                and -len(container) <= key < len(container)
            ):
                container[key] = copy_data(value)
            else:
                raise Refusal(f"the assignment to `{describe_node(target)}`", target)
            base = base_name(target)
            if base:
                self.result.lines[base] = stmt.lineno
        else:
            raise Refusal(f"the assignment to `{describe_node(target)}`", target)

    def ref(self, node: ast.expr):
        """The container a store target names, itself (not a copy): `d`, `d["k"]`, `l[0]`."""
        if isinstance(node, ast.Name):
            self.expr(node)  # refuses names that are not data
            return self.env[node.id] if node.id in self.env else None
        if isinstance(node, ast.Subscript):
            container = self.ref(node.value)
            key = self.expr(node.slice)
            try:
                return container[key]
            except Exception:
                raise Refusal(f"`{describe_node(node)}`", node) from None
        raise Refusal(f"the assignment to `{describe_node(node)}`", node)

    def delete(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.env.pop(target.id, None)
        elif isinstance(target, ast.Subscript):
            container = self.ref(target.value)
            key = self.expr(target.slice)
            try:
                del container[key]
            except (TypeError, KeyError, IndexError):
                raise Refusal(f"`del {describe_node(target)}`", target) from None
        else:
            raise Refusal(f"`del {describe_node(target)}`", target)


def _is_config_alias(stmt: ast.stmt) -> bool:
    """`config = globals()["config"]` (or `.get("config")`): an idiom that keeps RETURNN's config
    object under its own name."""
    if not (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id == "config"
    ):
        return False
    return ast.unparse(stmt.value).replace("'", '"') in (
        'globals()["config"]',
        'globals().get("config")',
    )


def _has_call(stmt: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(stmt))


def _as_load(target: ast.expr) -> ast.expr:
    node = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(node, target)


def _assigned_names(stmt: ast.AST) -> set[str]:
    """Names a statement (with its nested blocks, not function bodies) may bind."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(
            node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
        ):
            return  # their own scope
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return names


def _mutated_names(stmt: ast.AST) -> set[str]:
    """Data names a statement may change in place: targets of `x[...] = `/`x.attr = `, and the
    receivers and arguments of calls (`x.update(...)`, `f(x)`)."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            base = base_name(node)
            if base:
                names.add(base)
        if isinstance(node, ast.Call):
            is_print = isinstance(node.func, ast.Name) and node.func.id == "print"
            if isinstance(node.func, ast.Attribute):
                base = base_name(node.func.value)
                if base:
                    names.add(base)
            if not is_print:
                for arg in list(node.args) + [k.value for k in node.keywords]:
                    if isinstance(arg, ast.Starred):
                        arg = arg.value
                    base = base_name(arg)
                    if base:
                        names.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return names


__all__ = ["SafeReader", "MUTATING_METHODS"]
