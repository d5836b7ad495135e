"""One source of every statement: SQL text is built in cdp_assets/sql/, nowhere else.

An AST scan of every module outside cdp_assets/sql/: no string constant (plain or the start of
an f-string) begins with a SQL statement keyword. Engines, assets and commands call builders.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cdp_assets"  # read as text: nothing imported
STATEMENT = re.compile(
    r"\s*(SELECT|INSERT|CREATE|DROP|ALTER|MERGE|DELETE|UPDATE|WITH|EXPLAIN|SHOW|DESCRIBE|TRUNCATE|OPTIMIZE)\s"
)
# Modules that still build SQL of their own, each with the work that moves it into cdp_assets/sql/.
ALLOWED: dict[str, str] = {}


def statement_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant, or f-string start, that begins a SQL statement
    (docstrings are prose: left out)."""
    tree = ast.parse(source)
    skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
    skip |= {id(part) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for part in n.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if STATEMENT.match(text):
            found.append((node.lineno, text.strip().splitlines()[0][:80]))
    return found


def test_the_scan_finds_statement_literals():
    """The scan itself can fail: plain strings, f-strings and indented SQL are caught."""
    source = 'a = "SELECT 1"\nb = f"INSERT INTO {t} VALUES (1)"\nc = """\n  WITH x AS (SELECT 1) SELECT * FROM x"""\n'
    assert [line for line, _ in statement_literals(source)] == [1, 2, 3]
    # Prose, lower-case words and docstrings are not statements.
    assert (
        statement_literals('d = "Select the rows"\ne = "select 1"\nf = "SELECTED"\n"""DROP the old table."""\n') == []
    )


def test_no_sql_statement_is_written_outside_cdp_assets_sql():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("sql/") or any(rel.startswith(prefix) for prefix in ALLOWED):
            continue
        offenders += [
            f"cdp_assets/{rel}:{line}: {text}" for line, text in statement_literals(path.read_text(encoding="utf-8"))
        ]
    assert not offenders, "SQL built outside cdp_assets/sql/ (add a builder there):\n" + "\n".join(offenders)


def test_the_allow_list_names_only_modules_that_still_need_it():
    """An entry is removed once its module has no statement left (the list only shrinks)."""
    for prefix in ALLOWED:
        paths = sorted(PACKAGE.glob(prefix + "**/*.py")) if prefix.endswith("/") else [PACKAGE / prefix]
        assert any(statement_literals(p.read_text(encoding="utf-8")) for p in paths if p.exists()), prefix
