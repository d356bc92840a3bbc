"""One exception base (`netcompiler.core.errors`), user vs internal errors, and the rule ids explained
in one place (`netcompiler.core.rules`, `netcompiler explain RULE`).

Front-end tests (no TensorFlow) except the one marked `tf`, which checks the exception classes of
the modules that import TensorFlow.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from netcompiler.cli import main
from netcompiler.cli import schema as schema_command
from netcompiler.core.errors import (
    InternalError,
    NetCompilerError,
    Unsupported,
    UsageError,
    UserError,
    internal_message,
)
from netcompiler.core.rules import FAMILIES, RULES, explain

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "netcompiler"

# -- the classification of every exception class of the package ------------------------------------
# by class name (unique in the package), so that moving a class to another module changes nothing
#: user errors: reported as one line, exit 1 (or 2 for usage errors)
USER = {
    "UserError",
    "UsageError",
    "Unsupported",
    "ConfigError",
    "OverrideError",
    "RenderError",
    "ReturnnConfigError",
    "ReturnnImportError",
    "ReturnnCheckpointError",
    "ChunkingError",
    "LearningRateError",
    "ExprError",
    "InitializerError",
    "SeqLenExprError",
    "DatasetError",
    "ShapeError",
    "TrainError",
    "NonFiniteLoss",
    "NonFiniteWeights",
    "ModelDirBusy",
}
#: bugs (control-flow signals that should never escape their module are bugs when they do)
INTERNAL = {"InternalError", "_Unknown", "_Skip", "Refusal"}
#: were ValueErrors before the common base, and still are (callers catch ValueError)
STILL_VALUE_ERRORS = {
    "OverrideError",
    "ChunkingError",
    "LearningRateError",
    "ExprError",
    "InitializerError",
    "SeqLenExprError",
    "DatasetError",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def _sources() -> dict[str, ast.Module]:
    return {
        _module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def _imports_tensorflow(tree: ast.Module) -> bool:
    """Whether the module imports TensorFlow at module level."""
    for node in tree.body:
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "tensorflow" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorflow":
            return True
    return False


def _exception_classes(module) -> dict[str, type]:
    """The exception classes a module defines (`Name` -> class)."""
    return {
        obj.__name__: obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    }


def _check(found: dict[str, type]) -> None:
    for name, cls in found.items():
        assert issubclass(cls, NetCompilerError), f"{name} does not derive from NetCompilerError"
        if name in USER:
            assert issubclass(cls, UserError) and not issubclass(cls, InternalError), name
        elif name in INTERNAL:
            assert issubclass(cls, InternalError) and not issubclass(cls, UserError), name
        else:
            assert cls is NetCompilerError, f"{name}: classify it in USER or INTERNAL"


def _ast_exception_names(trees: dict[str, ast.Module]) -> set[str]:
    """`module.Class` of every class whose bases are (transitively, by name) exceptions."""
    exc_names = {
        name
        for name, obj in vars(builtins).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    classes = [
        (mod, node)
        for mod, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for mod, node in classes:
            bases = {
                b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                for b in node.bases
            }
            if bases & exc_names and f"{mod}.{node.name}" not in found:
                found.add(f"{mod}.{node.name}")
                exc_names.add(node.name)
                changed = True
    return found


def test_every_exception_class_derives_from_netcompiler_error():
    trees = _sources()
    tf_before = "tensorflow" in sys.modules  # (another test module may have imported it)
    found: dict[str, type] = {}
    for mod, tree in trees.items():
        if _imports_tensorflow(tree) or mod == "netcompiler.__main__":
            continue  # test_tf_modules_exception_classes; __main__ runs the command line
        for name, cls in _exception_classes(importlib.import_module(mod)).items():
            assert found.setdefault(name, cls) is cls, f"two exception classes named {name}"
    assert tf_before or "tensorflow" not in sys.modules  # a front-end test
    _check(found)
    # the walk found every class the source defines as an exception (outside TF modules) ...
    tf_modules = {m for m, t in trees.items() if _imports_tensorflow(t)}
    in_source = {
        q.rsplit(".", 1)[1]
        for q in _ast_exception_names(trees)
        if q.rsplit(".", 1)[0] not in tf_modules
    }
    assert in_source <= set(found) and len(found) >= 20
    # ... and the classification names no class that does not exist
    assert (USER | INTERNAL) - {"NetCompilerError"} <= set(found)


@pytest.mark.tf
def test_tf_modules_exception_classes():
    trees = _sources()
    tf_modules = {m for m, t in trees.items() if _imports_tensorflow(t)}
    assert "netcompiler.backend.build" in tf_modules
    found: dict[str, type] = {}
    for mod in sorted(tf_modules):
        found.update(_exception_classes(importlib.import_module(mod)))
    _check(found)
    assert {
        q.rsplit(".", 1)[1]
        for q in _ast_exception_names(trees)
        if q.rsplit(".", 1)[0] in tf_modules
    } <= set(found)


def test_user_and_internal_errors_are_told_apart():
    from netcompiler.core.diagnostics import ERROR, ConfigError, Diagnostic
    from netcompiler.frontend.loader import OverrideError
    from netcompiler.training.command_support import TrainError
    from netcompiler.training.finiteness import NonFiniteWeights
    from netcompiler.training.model_dir import ModelDirBusy

    assert not issubclass(UserError, InternalError) and not issubclass(InternalError, UserError)
    assert issubclass(NonFiniteWeights, TrainError) and issubclass(ModelDirBusy, UserError)
    # exit codes: 1 for a user error, 2 for a usage error and for an unreadable config
    assert TrainError("x").exit_code == 1 and UsageError("x").exit_code == 2
    assert OverrideError("x").exit_code == 2
    assert ConfigError(Diagnostic(ERROR, "no such file", "load.missing")).exit_code == 2
    assert ConfigError(Diagnostic(ERROR, "bad YAML", "load.syntax")).exit_code == 1
    # compatibility: the former ValueErrors still are, Unsupported is a NotImplementedError
    from netcompiler.frontend.chunk_spec import ChunkingError
    from netcompiler.frontend.expr import ExprError
    from netcompiler.frontend.initializers import InitializerError
    from netcompiler.frontend.seq_len_expr import SeqLenExprError
    from netcompiler.training.datasets import DatasetError
    from netcompiler.training.lr_control import LearningRateError

    for cls in (
        OverrideError,
        ChunkingError,
        LearningRateError,
        ExprError,
        InitializerError,
        SeqLenExprError,
        DatasetError,
    ):
        assert issubclass(cls, ValueError) and cls.__name__ in STILL_VALUE_ERRORS
    assert issubclass(Unsupported, NotImplementedError) and issubclass(Unsupported, UserError)
    # constructors kept: ConfigError takes diagnostics, ShapeError its option, rule and hint
    from netcompiler.core.layer_rule import ShapeError

    e = ShapeError("bad axis", "axis", "shape.axis", hint="use T")
    assert (str(e), e.option, e.rule, e.hint) == ("bad axis", "axis", "shape.axis", "use T")
    d = Diagnostic(ERROR, "m", "load.syntax", (), "a.yaml", 3, 4)
    assert str(ConfigError(d)) == "a.yaml:3:4: error: m [load.syntax]"


def test_override_errors_are_usage_errors():
    from netcompiler.frontend.loader import OverrideError, parse_override

    for text, message in [
        ("novalue", "--set expects KEY=VALUE, got `novalue`"),
        ("a..b=1", "--set: bad key `a..b`"),
    ]:
        with pytest.raises(OverrideError) as info:
            parse_override(text)
        assert str(info.value) == message
        assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


# -- raise and except sites -----------------------------------------------------------------------
def _function_of(tree: ast.Module, target: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
            child is target for child in ast.walk(node)
        ):
            inner = [
                n
                for n in ast.walk(node)
                if n is not node
                and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                and any(c is target for c in ast.walk(n))
            ]
            if not inner:
                return node
    return None


def _names(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    return {
        n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
        for n in items
    }


def test_not_implemented_error_only_for_abstract_methods():
    """`raise NotImplementedError` is the whole body of a method (a default for subclasses to
    override); nothing catches NotImplementedError as a user error."""
    for mod, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if _names(exc) != {"NotImplementedError"}:
                    continue
                fn = _function_of(tree, node)
                assert fn is not None, f"{mod}:{node.lineno}"
                body = [
                    s
                    for s in fn.body
                    if not (
                        isinstance(s, ast.Expr)
                        and isinstance(s.value, ast.Constant)
                        and isinstance(s.value.value, str)
                    )
                ]
                assert body == [node], (
                    f"{mod}:{node.lineno}: raise Unsupported (a user "
                    f"error) or InternalError (a bug) instead"
                )
            if isinstance(node, ast.ExceptHandler):
                assert "NotImplementedError" not in _names(node.type), (
                    f"{mod}:{node.lineno}: catch UserError instead"
                )


def test_unsupported_is_raised_where_a_config_asks_for_too_much():
    """The former `raise NotImplementedError(...)` of config features are Unsupported now,
    the engine's internal dispatch checks InternalError."""
    raised = {}
    for mod, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = _names(node.exc.func)
                if name & {"Unsupported", "InternalError"}:
                    raised.setdefault(mod, set()).update(name)
    assert "Unsupported" in raised["netcompiler.backend.loop.plan"]  # a rec unit inside a rec unit
    assert raised["netcompiler.layers.rnn_cell"] == {"InternalError"}


# -- the command line ------------------------------------------------------------------------------
def _raising(exc: BaseException):
    def handler(args, out, err):
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (UserError("the data is bad"), 1, "netcompiler schema: error: the data is bad"),
        (UsageError("--foo: bad"), 2, "netcompiler schema: error: --foo: bad"),
        (
            Unsupported("a rec unit inside a rec unit is not supported"),
            1,
            "netcompiler schema: error: a rec unit inside a rec unit is not supported",
        ),
        (
            InternalError("the plan lost a layer"),
            1,
            "netcompiler schema: internal error: InternalError: the plan lost a layer; please report",
        ),
        (KeyError("enc"), 1, "netcompiler schema: internal error: KeyError: 'enc'; please report"),
    ],
)
def test_cli_reports_errors_in_one_line(monkeypatch, capsys, exc, code, line):
    monkeypatch.delenv("NETCOMPILER_DEBUG", raising=False)
    monkeypatch.setattr(schema_command, "run", _raising(exc))
    assert main(["schema"]) == code
    out, err = capsys.readouterr()
    assert out == "" and err == line + "\n"


def test_cli_debug_reraises_internal_errors(monkeypatch, capsys):
    monkeypatch.setenv("NETCOMPILER_DEBUG", "1")
    monkeypatch.setattr(schema_command, "run", _raising(InternalError("boom")))
    with pytest.raises(InternalError, match="boom"):
        main(["schema"])
    monkeypatch.setattr(schema_command, "run", _raising(TrainErrorLike("user")))
    assert main(["schema"]) == 1  # user errors are not bugs: still one line
    assert capsys.readouterr().err == "netcompiler schema: error: user\n"


class TrainErrorLike(UserError):
    pass


def test_validate_reports_an_internal_error_as_a_diagnostic(monkeypatch, tmp_path, capsys):
    validate_module = importlib.import_module("netcompiler.frontend.validate")

    def boom(*a, **k):
        raise InternalError("lost")

    monkeypatch.delenv("NETCOMPILER_DEBUG", raising=False)
    monkeypatch.setattr(validate_module, "validate", boom)
    path = tmp_path / "a.yaml"
    path.write_text("network: {}\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: error: internal error: InternalError: lost; please report [internal]" in out
    assert (
        internal_message(InternalError("lost")) == "internal error: InternalError: lost; "
        "please report"
    )


def test_train_reports_user_errors_in_one_line(monkeypatch, tmp_path, capsys):
    """`train` prints a UserError raised while training (e.g. Unsupported, formerly a
    NotImplementedError) as one line, exit 1; a bare NotImplementedError (a bug) is not its to
    report."""
    import netcompiler.training.trainer as train

    path = tmp_path / "a.yaml"
    path.write_text(VALID)
    args = SimpleNamespace(config=str(path), set=[], model_dir=None)

    def trainer(exc):
        def make(result):
            assert result.config is not None  # validated for real
            raise exc

        return make

    monkeypatch.setitem(
        train.cli_train.__globals__,
        "Trainer",
        trainer(Unsupported("`dec`: a rec unit inside a rec unit is not supported")),
    )
    assert train.cli_train(args) == 1
    assert capsys.readouterr().err == (
        "netcompiler train: error: `dec`: a rec unit inside a rec unit is not supported\n"
    )
    monkeypatch.setitem(
        train.cli_train.__globals__, "Trainer", trainer(NotImplementedError("abstract"))
    )
    with pytest.raises(NotImplementedError):
        train.cli_train(args)


# -- rule ids --------------------------------------------------------------------------------------
_RULE_RE = re.compile(r"(load|schema|graph|shape|expr)\.[a-z][a-z0-9-]*")
_RULE_CALLS = {"Diagnostic", "error", "warn", "note", "ShapeError"}


def rules_in_source() -> dict[str, str]:
    """Every rule id the package uses -> where (module:line): string constants that look like a
    rule id (`shape.conv-groups`), and constants in the rule position of `Diagnostic(...)`,
    `ctx.error(...)`, `ShapeError(...)` and `rule=` arguments or defaults (`internal`)."""
    found: dict[str, str] = {}
    for mod, tree in _sources().items():
        for node in ast.walk(tree):
            values = []
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _RULE_RE.fullmatch(node.value)
            ):
                values.append(node.value)
            if isinstance(node, ast.Call):
                name = _names(node.func)
                if name & _RULE_CALLS and len(node.args) >= 3:
                    values.append(node.args[2])
                values += [kw.value for kw in node.keywords if kw.arg == "rule"]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = (
                    [None] * (len(node.args.args) - len(node.args.defaults))
                    + list(node.args.defaults)
                    + list(node.args.kw_defaults)
                )
                values += [d for a, d in zip(args, defaults) if a.arg == "rule" and d is not None]
            for v in values:
                v = v.value if isinstance(v, ast.Constant) else v
                if isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9.-]*", v):
                    found.setdefault(v, f"{mod}:{getattr(node, 'lineno', '?')}")
    return found


def test_every_rule_in_the_code_is_explained():
    used = rules_in_source()
    assert {
        "internal",
        "shape",
        "deprecated",
        "shape.conv-groups",
        "schema.unknown-class",
        "load.missing",
        "expr.python-call",
    } <= set(used)
    assert len(used) >= 100
    missing = {r: where for r, where in used.items() if r not in RULES}
    assert not missing, f"add these to netcompiler/rules.py: {missing}"
    stale = set(RULES) - set(used)
    assert not stale, f"rules.py explains ids no code uses: {stale}"
    # each explanation is one paragraph with an example of the fix (the bug report asks for one)
    for rule, text in RULES.items():
        assert "\n" not in text and len(text) > 40, rule
        assert "Example" in text or rule == "internal", rule
    assert "NETCOMPILER_DEBUG" in RULES["internal"]


def test_schema_rules_of_rare_keywords_fall_back_to_the_family():
    # schema.translate names rare JSON Schema keywords `schema.<keyword>`
    assert explain("schema.uniqueItems").endswith(FAMILIES["schema"])
    assert explain("shape") == RULES["shape"] and explain("graph") == FAMILIES["graph"]
    assert explain("shape.conv-grops") is None and explain("nonsense") is None


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_explain_prints_the_entry(capsys):
    assert main(["explain", "shape.conv-groups"]) == 0
    out, err = capsys.readouterr()
    head, *body = out.splitlines()
    assert head == "shape.conv-groups" and err == ""
    assert all(len(line) <= 79 and line.startswith("  ") for line in body)
    assert _normal(" ".join(body)) == _normal(RULES["shape.conv-groups"])
    # as copied from a diagnostic, with its brackets
    assert main(["explain", "[schema.unknown-option]"]) == 0
    assert _normal(capsys.readouterr().out) == _normal(
        "schema.unknown-option " + RULES["schema.unknown-option"]
    )


def test_explain_unknown_rule_is_a_usage_error(capsys):
    assert main(["explain", "shape.conv-grops"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "netcompiler explain: error: unknown rule `shape.conv-grops`; "
        "did you mean `shape.conv-groups`? (`netcompiler explain` "
        "lists them)\n"
    )


def test_explain_lists_every_rule(capsys):
    assert main(["explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(RULES)
    assert all(len(line) <= 100 for line in lines)


def test_explain_needs_no_tensorflow_or_numpy():
    code = textwrap.dedent("""
        import sys
        from netcompiler.cli.app import main
        assert main(["explain", "shape.axis"]) == 0
        heavy = sorted(m for m in ("tensorflow", "numpy") if m in sys.modules)
        assert not heavy, heavy
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("shape.axis\n")


# -- messages link to the explanation --------------------------------------------------------------
MISSPELT = """\
extern_data:
  data: {dim: 9}
network:
  output: {class: linear, from: data, n_out: 3, activaton: relu}
"""
VALID = """\
extern_data:
  data: {dim: 9}
network:
  output: {class: linear, from: data, n_out: 3, activation: relu}
"""


def test_validate_text_ends_with_the_explain_line(tmp_path, capsys):
    bad = tmp_path / "b.yaml"
    bad.write_text(MISSPELT)
    good = tmp_path / "a.yaml"
    good.write_text(VALID)
    assert main(["validate", str(good), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("[schema.unknown-option]")  # the diagnostic line is unchanged
    assert lines[-2] == "checked 2 configs: 1 error, 0 warnings"
    assert lines[-1] == "(netcompiler explain schema.unknown-option tells more)"
    # the first error's rule, before a warning's
    unused = tmp_path / "c.yaml"
    unused.write_text(VALID + "  unused: {class: linear, from: data, n_out: 2}\n")
    assert main(["validate", str(unused)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "(netcompiler explain graph.unused tells more)"
    assert main(["validate", str(unused), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "[graph.unused]" in lines[0]
    assert lines[-1] == "(netcompiler explain schema.unknown-option tells more)"
    # nothing to explain: no such line; --quiet: errors only, no summary, no pointer
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.splitlines() == ["checked 1 config: 0 errors, 0 warnings"]
    assert main(["validate", "--quiet", str(bad)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith("[schema.unknown-option]")


def test_validate_json_carries_help(tmp_path, capsys):
    import json

    bad = tmp_path / "b.yaml"
    bad.write_text(MISSPELT)
    assert main(["validate", "--format", "json", str(bad)]) == 1
    (d,) = json.loads(capsys.readouterr().out)["configs"][0]["diagnostics"]
    assert d["rule"] == "schema.unknown-option"
    assert d["help"] == "netcompiler explain schema.unknown-option"
