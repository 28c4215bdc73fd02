"""Meta-tests: the architecture rules that keep Himalia a microkernel, checked on the source."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from himalia import hookspecs

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("himalia_"))
PLUGIN_DIRS = sorted(p for p in (REPO / "plugins").iterdir() if p.is_dir() and p.name.startswith("himalia_"))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file; relative imports are skipped (same package)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_hookspecs_are_documented():
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Called" in doc and "versionadded" in doc, f"{name}'s docstring must say when it is called"
        assert "Example::" in doc, f"{name}'s docstring must show an example implementation"
        example = doc.split("Example::", 1)[1]
        assert f"def {name}(" in example, f"{name}'s example must implement {name}"


def test_notification_hookspecs_say_their_return_value_is_ignored():
    notifications = [n for n in HOOKS if (inspect.getdoc(getattr(hookspecs, n)) or "").startswith("Notification")]
    assert len(notifications) >= 5
    for name in notifications:
        doc = " ".join((inspect.getdoc(getattr(hookspecs, name)) or "").split())
        assert "return value is ignored" in doc, f"{name}'s docstring must say its return value is ignored"


def test_every_hook_is_in_the_architecture_hooks_table():
    text = (REPO / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\|\s*`(himalia_\w+)`", text, re.M))
    assert rows == set(HOOKS), f"missing: {set(HOOKS) - rows}, stale: {rows - set(HOOKS)}"


def test_every_hook_is_exercised_by_a_test():
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py"))
    missing = [name for name in HOOKS if name not in tests and name.removeprefix("himalia_") + "(" not in tests]
    assert not missing, f"no test mentions {missing}"


def test_the_core_imports_no_plugin():
    for path in (REPO / "core").rglob("*.py"):
        for module, _ in imports(path):
            assert not module.startswith("himalia_"), f"{path.relative_to(REPO)} imports plugin {module}"


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugins_import_only_the_core_public_api(plugin):
    for path in plugin.rglob("*.py"):
        for module, _ in imports(path):
            where = path.relative_to(REPO)
            if module.startswith("himalia_"):
                assert module.split(".")[0] == plugin.name, f"{where} imports another plugin: {module}"
            if module == "himalia" or module.startswith("himalia."):
                assert module == "himalia", f"{where} imports core internals ({module}); use `from himalia import ...`"
