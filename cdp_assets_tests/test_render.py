"""cdp-assets render-sql: every phase's SQL per dialect, without a database."""

from __future__ import annotations

import logging

import pytest
import sqlglot

from cdp_assets.cli import main
from cdp_assets.config import load_config
from cdp_assets.render import render
from cdp_assets.sql.dialects import _transpile


@pytest.mark.parametrize("dialect", ["duckdb", "spark", "databricks", "trino", "hive"])
def test_render_sql_writes_one_parseable_file_per_statement(tmp_path, dialect, capsys):
    assert main(["render-sql", "--dialect", dialect, "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.rglob("*.sql"))
    assert {p.parent.name for p in files} == {"hist_union", "staging", "unification"}
    expected = render(load_config(), _dialect(dialect))
    assert len(files) == len(expected) > 20
    for path in files:
        text = path.read_text()
        body = text.split("\n", 1)[1].rstrip().rstrip(";")
        sqlglot.parse_one(body, read=dialect)
    assert f"wrote {len(files)} statement(s) for {dialect}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "dialect",
    [
        "duckdb",
        "spark",
        "databricks",
        "trino",
        pytest.param(
            "hive",
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "sqlglot 30.30 warns that Hive's SORT_ARRAY sorts NULLs first, for unification's "
                    "LIST_SORT(LIST_DISTINCT(LIST(table_id))) in cdp_assets/sql/unification.py; no dialect hook yet"
                ),
            ),
        ),
    ],
)
def test_render_sql_logs_no_sqlglot_warning(tmp_path, dialect, caplog):
    """render-sql no longer silences sqlglot: a warning means something was dropped or guessed."""
    _transpile.cache_clear()
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        assert main(["render-sql", "--dialect", dialect, "--out", str(tmp_path)]) == 0
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlglot")] == []


def test_render_reads_columns_from_the_source_files():
    files = {f.name: f.sql for f in render(load_config(), _dialect("duckdb"))}
    staging = next(sql for name, sql in files.items() if name.endswith("shop_customers_stg.sql"))
    assert '"standardized_email"' in staging and '"standardized_phone"' in staging
    union = next(sql for name, sql in files.items() if name.endswith("shop_customers_hist_union.sql"))
    for column in ("customer_id", "email", "updated_at", "_cdp_file"):
        assert f'"{column}"' in union


def test_render_sql_names_an_unknown_dialect(tmp_path, capsys):
    assert main(["render-sql", "--dialect", "oracle", "--out", str(tmp_path)]) == 2
    assert "unknown SQL dialect 'oracle'" in capsys.readouterr().err


def _dialect(name):
    from cdp_assets.sql.dialects import get_dialect

    return get_dialect(name)


@pytest.mark.parametrize("dialect", ["spark", "trino", "hive"])
def test_regexp_replace_keeps_its_meaning_or_is_refused(dialect):
    from cdp_assets.sql.dialects import get_dialect

    d = get_dialect(dialect)
    assert "'g'" not in d.render("SELECT regexp_replace(x, '[^0-9]', '', 'g') FROM t")
    assert "REGEXP_REPLACE" in d.render("SELECT regexp_replace(x, '^00', '') FROM t").upper()
    with pytest.raises(ValueError, match=f"for {dialect}.*replaces every match"):
        d.render("SELECT regexp_replace(x, '0', '') FROM t")
