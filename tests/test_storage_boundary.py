"""A test over the source tree: SQL lives in storage/, and nothing under bot/ reaches
a database connection or writes a query (the core goes through storage.ports)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SQL = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(TABLE|INDEX)|PRAGMA)\b",
    re.DOTALL,
)
_EXECUTE = ("execute", "executemany", "executescript", "execute_fetchall")


def _storage_access(path: Path) -> list[str]:
    """Where a module uses a database connection or holds a query."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in ("conn", *_EXECUTE):
            found.append(f"{where} .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL.search(node.value):
                found.append(f"{where} {node.value[:40]!r}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if any(n.split(".")[0] in ("sqlite3", "aiosqlite") for n in [*names, module or ""]):
                found.append(f"{where} import {module or names}")
    return found


def test_nothing_under_bot_reaches_the_database_itself() -> None:
    modules = sorted((ROOT / "bot").rglob("*.py"))
    assert len(modules) > 30
    assert [hit for path in modules for hit in _storage_access(path)] == []


def test_the_check_finds_queries_and_connections() -> None:
    hits = _storage_access(ROOT / "storage" / "moderation.py")
    assert any(".conn" in hit for hit in hits)
    assert any("'SELECT" in hit for hit in hits)
    assert any("'UPDATE users SET" in hit for hit in hits)
    assert any("import" in hit for hit in _storage_access(ROOT / "storage" / "database.py"))
