"""The package's layout rules: no module reaches into another module's private names."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tasklib"

# The public API of named tuples, underscored only so it cannot clash with fields.
NAMEDTUPLE_API = {"_make", "_fields", "_asdict", "_replace", "_field_defaults"}


def defined_private_names(tree: ast.Module) -> set[str]:
    """The private names a module defines: functions, classes, methods and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_")}


def foreign_private_accesses(path: pathlib.Path) -> list[str]:
    """``obj._name`` in ``path`` where ``_name`` is not this module's own (nor self's, cls's, super()'s)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = defined_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue  # a subclass extending its base's hooks
        if node.attr in NAMEDTUPLE_API or node.attr in own:
            continue
        found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """Every ``x._name`` in tasklib names something its own module defines."""
    found = [access for path in sorted(PACKAGE.rglob("*.py")) for access in foreign_private_accesses(path)]
    assert found == []


def test_the_check_finds_a_foreign_private_access(tmp_path: pathlib.Path) -> None:
    """The check is not vacuous: a call of another module's private method is reported."""
    module = tmp_path / "pool.py"
    module.write_text("class Pool:\n    def run(self):\n        self.tracker._transition(1)\n        self._own = 1\n")
    assert foreign_private_accesses(module) == ["pool.py:3: self.tracker._transition"]
