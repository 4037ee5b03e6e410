"""The suite's own layout: fixtures come from conftest.py (found by pytest, never imported), plain helpers from
helpers.py, and no test module imports another (which would run its tests twice and hide where a fixture lives)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_FILES = sorted(
    [p for p in (ROOT / "tests").rglob("*.py") if "data" not in p.relative_to(ROOT / "tests").parts[:-1]]
    + list(ROOT.glob("plugins/*/tests/*.py"))
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` in the file names (top level or not), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def offenders(rule) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}:{line}: {module}"
        for p in TEST_FILES
        for line, module in imported_modules(p)
        if rule(module.split(".")[0])
    ]


def test_the_layout_finds_the_files() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in TEST_FILES}
    assert {"tests/conftest.py", "tests/helpers.py", "tests/test_suite_layout.py"} <= names
    assert any(n.startswith("plugins/") for n in names)
    assert imported_modules(Path(__file__))  # the parser sees this file's own imports


def test_no_module_imports_conftest() -> None:
    assert offenders(lambda top: top == "conftest") == []


def test_no_module_imports_a_test_module() -> None:
    assert offenders(lambda top: top.startswith("test_")) == []


def test_no_unused_import_or_redefinition_is_silenced() -> None:
    """Sharing a fixture by importing it needed ``noqa: F401``/``F811``; nothing in the suite needs either now."""
    silenced = re.compile(r"#\s*noqa:[^\n]*\bF(401|811)\b")
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in TEST_FILES
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if silenced.search(line)
    ]
    assert hits == []
