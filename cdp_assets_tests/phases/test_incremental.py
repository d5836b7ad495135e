"""Incremental hist-union and staging equal a full refresh on the same data (cdp_assets/incremental.py).

The oracle is the full build: the same builders' SELECTs over every input row. Sequences of
loads mix new keys, updated keys (newer and older timestamps: late files), rows without a
primary key value, exact duplicates and historical reloads, on real in-memory DuckDB.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.config.models import StagingRule
from cdp_assets.engines.base import WarehouseError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.incremental import build_hist_union, build_staging
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.hist_union import hist_union_sql
from cdp_assets.sql.staging import staging_sql

SRC, STG = "acme_src", "acme_stg"
HIST = TableRef(SRC, "shop_customers_hist")
INCR = TableRef(SRC, "shop_customers")
HU = TableRef(SRC, "shop_customers_hist_union")
STAGED = TableRef(STG, "shop_customers_stg")
RULES = {"email": StagingRule(rule="email", columns=["email"]), "name": StagingRule(rule="name", columns=["name"])}
COLUMNS = ["customer_id", "email", "name", "updated_at"]


def memory_warehouse() -> DuckDBWarehouse:
    wh = DuckDBWarehouse(path=":memory:")
    wh.setup_for_execution(None)  # one in-memory database shared by the sessions (cursors)
    return wh


def frame(rows: list[tuple], file: str, loaded_at: pd.Timestamp) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("customer_id", "email", "name"):
        df[c] = df[c].astype("string")
    days = pd.to_timedelta(df["updated_at"].astype("int64"), unit="D")
    df["updated_at"] = (pd.Timestamp("2024-01-01") + days).astype("datetime64[us]")
    df["_cdp_file"] = pd.array([file] * len(df), dtype="string")
    df["_cdp_loaded_at"] = pd.Series([loaded_at] * len(df), dtype="datetime64[us]")
    return df


def apply_load(wh: DuckDBWarehouse, n: int, kind: str, rows: list[tuple]) -> None:
    """What ingestion does: an incremental file is appended, historical files replace ``_hist``."""
    loaded_at = pd.Timestamp("2024-06-01") + pd.Timedelta(hours=n)
    if kind == "incremental":
        wh.append_frames([(INCR, frame(rows, f"shop_customers_{n:03d}.csv", loaded_at))])
    else:
        wh.replace_with_dataframe(HIST, frame(rows, f"historical_{n:03d}.csv", loaded_at))


def inputs(wh: DuckDBWarehouse) -> list[tuple[TableRef, list[str]]]:
    return [(ref, wh.columns(ref)) for ref in (HIST, INCR) if wh.table_exists(ref)]


def render(ref: TableRef, columns: list[str]) -> str:
    return staging_sql(ref, columns, RULES)


def sorted_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rows and columns in one order (Treasure Data keeps its ``time`` column last), values as text."""
    df = df[sorted(df.columns)].astype("string").fillna("<NULL>")
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def run_and_compare(wh: DuckDBWarehouse, primary_key: list[str], full_refresh: bool = False) -> tuple[str, str]:
    hu = build_hist_union(wh, HU, inputs(wh), "updated_at", primary_key, full_refresh=full_refresh)
    stg = build_staging(wh, STAGED, HU, wh.columns(HU), render, primary_key, full_refresh=full_refresh)
    return assert_built_equal_full_builds(wh, primary_key, hu, stg)


def assert_built_equal_full_builds(wh, primary_key: list[str], hu, stg) -> tuple[str, str]:
    """The hist-union and staged tables as ``hu`` and ``stg`` (their builds' results) left them
    equal their full builds over the inputs as they stand; returns the builds' modes."""
    ins = inputs(wh)
    hu_columns = wh.columns(HU)
    oracle_hu = wh.fetch(hist_union_sql(ins, "updated_at", primary_key))
    got_hu = wh.fetch(f"SELECT * FROM {HU.sql}")
    assert list(got_hu.columns) == list(oracle_hu.columns)
    pd.testing.assert_frame_equal(sorted_frame(got_hu), sorted_frame(oracle_hu), obj=f"hist-union ({hu.mode})")
    oracle_stg = wh.fetch(render(HU, hu_columns))
    got_stg = wh.fetch(f"SELECT * FROM {STAGED.sql}")
    pd.testing.assert_frame_equal(sorted_frame(got_stg), sorted_frame(oracle_stg), obj=f"staging ({stg.mode})")
    assert hu.rows == len(oracle_hu) and stg.rows == len(oracle_stg)
    return hu.mode, stg.mode


# A row: key (or none), email, name, days after 2024-01-01 (older days in a later file: late data).
ROW = st.tuples(
    st.sampled_from(["C1", "C2", "C3", "C4", "C5", None]),
    st.sampled_from(["a@x.com", "B@Y.ORG", "not-an-email", None]),
    st.sampled_from(["  ann  lee", "BOB", None]),
    st.integers(0, 6),
)
# Within one file a key has one row per timestamp: a tie on every order column would make even
# a full refresh pick either row.
FILE = st.lists(ROW, min_size=0, max_size=6, unique_by=lambda r: (r[0], r[3]) if r[0] is not None else object())
LOAD = st.tuples(st.sampled_from(["incremental", "incremental", "incremental", "historical"]), FILE)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=FILE, loads=st.lists(LOAD, min_size=1, max_size=4), with_key=st.booleans())
def test_incremental_runs_equal_a_full_refresh_after_every_load(first, loads, with_key):
    primary_key = ["customer_id"] if with_key else []
    wh = memory_warehouse()
    try:
        apply_load(wh, 0, "historical", first)
        assert run_and_compare(wh, primary_key) == ("full", "full")
        for n, (kind, rows) in enumerate(loads, start=1):
            new_input = kind == "incremental" and not wh.table_exists(INCR)
            reload = kind == "historical" and wh.row_count(HIST) > 0
            apply_load(wh, n, kind, rows)
            hu_mode, stg_mode = run_and_compare(wh, primary_key)
            if reload or new_input:
                # A reload may drop rows; a new input changes the union: both are rebuilt.
                assert (hu_mode, stg_mode) == ("full", "full")
            elif kind == "historical":
                assert hu_mode == ("incremental" if rows else "unchanged")  # the empty _hist had nothing to lose
            elif rows:
                assert hu_mode == "incremental" and stg_mode in ("incremental", "unchanged")
            else:
                assert (hu_mode, stg_mode) == ("unchanged", "unchanged")
    finally:
        wh.teardown_after_execution(None)


def test_an_incremental_run_reads_only_new_rows_and_keeps_its_watermark_as_data():
    wh = memory_warehouse()
    apply_load(wh, 0, "historical", [(f"C{i}", f"c{i}@x.com", "ann", 1) for i in range(50)])
    apply_load(wh, 1, "incremental", [("C1", "new@x.com", "ann", 3)])
    run_and_compare(wh, ["customer_id"])
    apply_load(wh, 2, "incremental", [("C2", "newer@x.com", "bob", 4), ("C99", "z@x.com", "cy", 0)])
    ins = inputs(wh)
    hu = build_hist_union(wh, HU, ins, "updated_at", ["customer_id"])
    assert (hu.mode, hu.rows_read, hu.changed_keys, hu.rows) == ("incremental", 2, 2, 51)
    stg = build_staging(wh, STAGED, HU, wh.columns(HU), render, ["customer_id"])
    assert (stg.mode, stg.rows_read, stg.changed_keys) == ("incremental", 2, 2)
    state = wh.fetch(f"SELECT * FROM {inc.state_ref(HU).sql} ORDER BY input_rank")
    assert list(state["input_table"]) == [HIST.display, INCR.display]
    assert list(state["rows_through"]) == [50, 3]
    assert state["watermark"].iloc[1] == pd.Timestamp("2024-06-01 02:00:00")
    assert set(state["mode"]) == {"incremental"}
    # Nothing new: nothing rebuilt, the state stays.
    assert build_hist_union(wh, HU, ins, "updated_at", ["customer_id"]).mode == "unchanged"
    # A full refresh is one argument away, and says why.
    full = build_hist_union(wh, HU, ins, "updated_at", ["customer_id"], full_refresh=True)
    assert (full.mode, full.reason, full.rows) == ("full", "full refresh requested", 51)
    wh.teardown_after_execution(None)


def test_a_changed_config_or_new_column_builds_in_full_and_says_why():
    wh = memory_warehouse()
    apply_load(wh, 0, "historical", [("C1", "a@x.com", "ann", 1)])
    run_and_compare(wh, ["customer_id"])
    apply_load(wh, 1, "incremental", [("C1", "b@x.com", "ann", 2)])
    hu = build_hist_union(wh, HU, inputs(wh), "updated_at", ["customer_id"])
    assert hu.mode == "full" and "changed" in hu.reason  # a new input: the union's columns and ranks changed
    stg = build_staging(wh, STAGED, HU, wh.columns(HU), render, ["customer_id"])
    assert stg.mode == "full" and "rebuilt in full" in stg.reason
    wh.teardown_after_execution(None)


def test_a_failed_incremental_apply_leaves_the_published_table_and_state_as_they_were():
    wh = memory_warehouse()
    apply_load(wh, 0, "historical", [("C1", "a@x.com", "ann", 1), ("C2", "b@x.com", "bob", 1)])
    apply_load(wh, 1, "incremental", [("C3", "c@x.com", "cy", 1)])
    run_and_compare(wh, ["customer_id"])
    before = sorted_frame(wh.fetch(f"SELECT * FROM {HU.sql}"))
    state_before = wh.fetch(f"SELECT * FROM {inc.state_ref(HU).sql}")
    apply_load(wh, 2, "incremental", [("C1", "new@x.com", "ann", 5)])
    real_execute, real_query = wh.execute, wh.query

    # The DELETE has run inside the transaction; the INSERT fails, whichever way it is sent (a
    # statement, or a query answering its rows: DuckDB's apply_changes counts them).
    def failing_execute(sql: str) -> None:
        if sql.startswith("INSERT INTO"):
            raise WarehouseError("injected failure", sql)
        real_execute(sql)

    def failing_query(sql: str, params=None):
        if sql.startswith("INSERT INTO"):
            raise WarehouseError("injected failure", sql)
        return real_query(sql, params)

    object.__setattr__(wh, "execute", failing_execute)
    object.__setattr__(wh, "query", failing_query)
    with pytest.raises(WarehouseError, match="injected"):
        build_hist_union(wh, HU, inputs(wh), "updated_at", ["customer_id"])
    object.__setattr__(wh, "execute", real_execute)
    object.__setattr__(wh, "query", real_query)
    pd.testing.assert_frame_equal(sorted_frame(wh.fetch(f"SELECT * FROM {HU.sql}")), before)
    pd.testing.assert_frame_equal(wh.fetch(f"SELECT * FROM {inc.state_ref(HU).sql}"), state_before)
    assert [t for t in wh.list_tables(SRC) if "__cdp_new_" in t] == []
    # The next run picks the same rows up again.
    assert run_and_compare(wh, ["customer_id"])[0] == "incremental"
    wh.teardown_after_execution(None)


def test_each_engine_gets_the_statement_form_its_tables_allow():
    """MERGE for Delta (not runnable here: no Delta on this machine), DELETE + INSERT in one
    transaction on DuckDB, a rebuild on parquet and TD; every form renders for its dialect."""
    import sqlglot

    from cdp_assets.engines.databricks import DatabricksWarehouse
    from cdp_assets.sql.dialects import DIALECTS

    assert memory_warehouse().upsert_mode == "delete_insert"
    assert DatabricksWarehouse(host="h", http_path="p", token="t").upsert_mode == "merge"
    assert DatabricksWarehouse(host="h", http_path="p", token="t", table_format="parquet").upsert_mode == "rebuild"
    changes, changed = HU.sibling("changes"), HU.sibling("changed")
    (merge,) = inc.upsert_statements("merge", HU, changes, changed, COLUMNS, ["customer_id"], False)
    rendered = DIALECTS["databricks"].render(merge)
    tree = sqlglot.parse_one(rendered, read="databricks")
    assert isinstance(tree, sqlglot.exp.Merge)
    assert "WHEN MATCHED THEN UPDATE SET" in rendered and "WHEN NOT MATCHED THEN INSERT" in rendered
    assert "`c`" not in rendered and "`s`.`customer_id` = `t`.`customer_id`" in rendered
    # Without a primary key every business column is the key, NULLs equal.
    (null_safe,) = inc.upsert_statements("merge", HU, changes, changed, COLUMNS, ["email", "name"], True)
    assert "`s`.`email` IS NOT DISTINCT FROM `t`.`email`" in DIALECTS["databricks"].render(null_safe)
    with pytest.raises(ValueError, match="unknown upsert mode"):
        inc.upsert_statements("upsert", HU, changes, changed, COLUMNS, ["customer_id"], False)
