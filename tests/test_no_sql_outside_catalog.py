"""The catalog package is the one place that speaks SQL (issue 12): no other module of custodes or
of a bundled plugin runs a statement, opens the database or spells a query."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "python" / "custodes" / "catalog"
#: What a statement starts with; a sentence of prose that happens to begin with "Update" is not one.
_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN|COMMIT|ROLLBACK)\b[ A-Z(*]")
_RUNS_SQL = {"execute", "executemany", "executescript"}


def sql_uses(source: str) -> list[str]:
    """What in ``source`` speaks SQL: calls that run a statement, opening a database, SQL text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in _RUNS_SQL:
                found.append(f"line {node.lineno}: .{node.func.attr}(...)")
            elif node.func.attr == "connect" and getattr(node.func.value, "id", None) == "sqlite3":
                found.append(f"line {node.lineno}: sqlite3.connect(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.match(node.value):
            found.append(f"line {node.lineno}: SQL text {node.value[:40]!r}")
    return found


def product_modules() -> list[Path]:
    files = sorted((ROOT / "python" / "custodes").rglob("*.py")) + sorted(ROOT.glob("plugins/*/src/**/*.py"))
    assert len(files) > 30
    return files


def test_no_module_outside_the_catalog_speaks_sql() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in product_modules()
        if CATALOG not in path.parents and (uses := sql_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_catalog_does_and_the_check_sees_each_kind() -> None:
    # The rule can fail: it sees each way of speaking SQL, and the catalog is where they all are.
    assert sql_uses('conn.execute("SELECT 1")') == ["line 1: .execute(...)", "line 1: SQL text 'SELECT 1'"]
    assert sql_uses("c.executemany(q, rows)") == ["line 1: .executemany(...)"]
    assert sql_uses("import sqlite3\nsqlite3.connect(p)") == ["line 2: sqlite3.connect(...)"]
    assert sql_uses('q = "UPDATE objects SET purged_ns = ?"') == ["line 1: SQL text 'UPDATE objects SET purged_ns = ?'"]
    assert sql_uses('msg = "Update the archive, then verify it"') == []
    inside = [p for p in product_modules() if CATALOG in p.parents]
    assert {p.name for p in inside} >= {"__init__.py", "schema.py", "evidence.py", "ledger.py"}
    # Each of them speaks SQL, but codes.py: SQLite's result codes, the rest of what only the catalog knows of it.
    assert all(sql_uses(p.read_text(encoding="utf-8")) for p in inside if p.name != "codes.py")
    assert not sql_uses((CATALOG / "codes.py").read_text(encoding="utf-8"))
