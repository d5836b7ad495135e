"""The checks' per-asset queries (cdp_assets/sql/checks.py) as text, without a database: each
renders for every dialect, binds as many values as it documents, and asks only for the tables
and columns it was told exist. Their results are proven by the runs in test_check_results.py and
test_checks_native.py."""

from __future__ import annotations

import pytest
import sqlglot

from cdp_assets.sql.checks import (
    LOAD_COLUMNS,
    coverage_measures_sql,
    excluded_measures_sql,
    hist_union_measures_sql,
    ingestion_measures_sql,
    largest_component_sql,
    lookup_measures_sql,
    measures_with_description_sql,
)
from cdp_assets.sql.dialects import DIALECTS, TableRef
from cdp_assets.sql.engine_meta import row_counts_sql

RAW, LOG, REJECTED = TableRef("src", "shop_customers"), TableRef("src", "ingestion_log"), TableRef("src", "rej")
HIST = TableRef("src", "shop_customers_hist_union")
INPUTS = [(TableRef("src", "shop_customers_hist"), ["customer_id"]), (RAW, ["customer_id"])]
MODES = ["historical", "incremental"]
ENRICHED = [TableRef("cdp", "enriched_a"), TableRef("cdp", "enriched_b")]


def _every_query() -> list[str]:
    return [
        ingestion_measures_sql(MODES, LOG, {"mode", *LOAD_COLUMNS}, REJECTED, True),
        ingestion_measures_sql(MODES, None, set(), None, False),
        hist_union_measures_sql(HIST, ["customer_id"], INPUTS),
        lookup_measures_sql(TableRef("cdp", "unified_id_lookup"), "unified_id"),
        coverage_measures_sql(ENRICHED[0], ["unified_id", "household_id"]),
        excluded_measures_sql(TableRef("cdp", "unified_id_excluded_values")),
        largest_component_sql("unified_id", ENRICHED),
        row_counts_sql([RAW, HIST]),
    ]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_per_asset_query_renders_as_one_statement_in_every_dialect(dialect):
    for sql in _every_query():
        rendered = DIALECTS[dialect].render(sql)
        assert len(sqlglot.parse(rendered, read=DIALECTS[dialect].sqlglot_name)) == 1, rendered


def test_the_raw_tables_query_binds_each_mode_then_source_and_object():
    sql = ingestion_measures_sql(MODES, LOG, {"mode", *LOAD_COLUMNS}, REJECTED, True)
    assert sql.count("?") == 4 and sql.count("mode = ?") == 2  # both raw tables of the object in one query
    assert sql.rindex("mode = ?") < sql.index("l.source = ?") < sql.index("l.object = ?")
    assert "rejected_0" in sql and "rejected_1" in sql and 'l."mode" AS "mode"' in sql
    assert "superseded_at IS NULL" in sql and "ORDER BY l.loaded_at" in sql
    # without a rejected table, only the log's source and object are bound
    assert ingestion_measures_sql(MODES, LOG, {"mode", *LOAD_COLUMNS}, None, False).count("?") == 2


def test_an_older_log_without_the_skip_columns_reads_them_as_null():
    sql = ingestion_measures_sql(MODES[:1], LOG, {"mode", *LOAD_COLUMNS[:5]}, None, False)
    assert 'CAST(NULL AS BIGINT) AS "records_skipped_duplicate"' in sql
    assert 'l."records_skipped_duplicate"' not in sql and 'l."status" AS "status"' in sql


def test_missing_tables_are_never_read_and_what_the_build_knows_is_not_queried():
    only = ingestion_measures_sql(MODES, None, set(), None, False)
    assert "FROM" not in only and only.count("?") == 0
    assert RAW.sql not in ingestion_measures_sql(MODES, LOG, {"mode", *LOAD_COLUMNS}, REJECTED, True)
    hist = hist_union_measures_sql(HIST, ["customer_id"], INPUTS)
    assert "duplicate_keys" in hist and "input_0" in hist and "input_1" in hist
    assert "table_rows" not in hist  # the build's row count


def test_coverage_counts_every_id_in_one_scan():
    sql = coverage_measures_sql(ENRICHED[0], ["unified_id", "household_id"])
    assert sql.count("FROM") == 1
    assert 'COUNT("unified_id") AS with_id_0' in sql and 'COUNT("household_id") AS with_id_1' in sql


def test_a_steps_measures_and_its_description_are_one_query_binding_the_measures_first():
    measures = hist_union_measures_sql(HIST, ["customer_id"], INPUTS)
    sql = measures_with_description_sql("SELECT ? AS tag, " + measures[len("SELECT ") :], 2)
    assert sql.count("?") == 1 + 2 * 2 and sql.index("AS tag") < sql.index("information_schema.columns")
    assert sql.endswith("ORDER BY d.table_schema, d.table_name, d.ordinal_position")
    assert len(sqlglot.parse(sql, read="duckdb")) == 1
