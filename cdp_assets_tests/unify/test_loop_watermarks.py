"""An incremental loop reads its new rows once and compares a typed incremental column as it is
(docs/unification.md, "Incremental runs"), on real DuckDB against networkx and a full refresh.

The incremental column is typed (TIMESTAMP, DATE, epoch seconds or milliseconds as BIGINT) or text
(ISO strings, epoch digits), some rows without a position, with or without a rest column breaking
ties of the first; every load is appended after the previous one (the SPEC's incremental_columns).
Each incremental run's graph, lookup, key values and watermarks equal a full refresh's on the same
rows, the partition equals networkx's, and the watermarks equal the newest row of each table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef, get_dialect
from cdp_assets.unify.runner import config_fingerprint, prepare_inputs, run_loop, with_incremental_kinds
from cdp_assets_tests.unify.test_loop import KEYS, _sorted, lookup_partition, make_unify, oracle_partition, random_row

BASE = dt.datetime(2024, 1, 1)
EPOCH = int(BASE.replace(tzinfo=dt.timezone.utc).timestamp())

# The incremental column's form: (pandas dtype of the column, the tick's value, the kind the
# DuckDB dialect gives its described type: None for text, normalized per row).
FORMS = {
    "timestamp": ("datetime64[us]", lambda t: BASE + dt.timedelta(minutes=t), "timestamp"),
    "date": ("datetime64[us]", lambda t: BASE + dt.timedelta(days=t), "date"),  # cast to DATE below
    "epoch_seconds": ("Int64", lambda t: EPOCH + 60 * t, "integer"),
    "epoch_ms": ("Int64", lambda t: (EPOCH + 60 * t) * 1000, "integer"),
    "iso_text": ("string", lambda t: (BASE + dt.timedelta(minutes=t)).isoformat(sep=" "), None),
    "epoch_text": ("string", lambda t: str(EPOCH + 60 * t), None),
}


def _write_source(wh: DuckDBWarehouse, rows: list[dict], form: str) -> TableRef:
    dtype, value, _ = FORMS[form]
    df = pd.DataFrame(rows, columns=list(KEYS)).astype("string")
    df["at"] = pd.Series([None if r["tick"] is None else value(r["tick"]) for r in rows], dtype=dtype)
    df["seq"] = pd.Series([r["seq"] for r in rows], dtype="Int64")
    source = TableRef("src", "rows")
    wh.drop(source)
    wh.write_dataframe(source, df)
    if form == "date":
        wh.run(
            f'CREATE OR REPLACE TABLE {source.sql} AS SELECT * REPLACE (CAST("at" AS DATE) AS "at") FROM {source.sql}'
        )
    return source


def _plan(source: TableRef, with_rest: bool) -> tuple:
    unify = make_unify()
    table = u.SourceTablePlan(1, "rows", source, tuple((k, k) for k in KEYS), "at", "at", ("seq",) if with_rest else ())
    plan = u.IdPlan(
        cid=unify.all_ids[0], persistent=False, schema=unify.schema, catalog=None, keys=KEYS, tables=(table,)
    )
    return unify, plan


def _run(wh: DuckDBWarehouse, rows: list[dict], form: str, with_rest: bool):
    unify, plan = _plan(_write_source(wh, rows, form), with_rest)
    prepare_inputs(wh, plan, unify)
    result = run_loop(wh, plan, fingerprint=config_fingerprint(plan, unify))
    schema = unify.schema

    def table(name: str, order: list[str]) -> pd.DataFrame:
        frame = wh.fetch(f"SELECT * FROM {TableRef(schema, f'unified_id_{name}').sql}")
        return frame.sort_values(order).reset_index(drop=True)

    state = {
        "lookup": _sorted(wh.fetch(f"SELECT * FROM {plan.ref('lookup').sql}")),
        "graph": table("graph", ["follower_key_type", "follower_id"]),
        "key_values": table("key_values", ["table_id", "key_type", "value", "inc_at", "inc_rest"]),
        "watermarks": table("watermarks", ["table_id"]),
    }
    return state, result, plan


def _loads(draw_rows: list[list[dict]], null_every: int, ties: bool) -> list[list[dict]]:
    """Each load's rows get positions after every earlier load's: ticks rise by load; with
    ``ties`` a load may start at the tick the previous one ended on (its rows are after it by
    their seq, the rest column); some rows have no position (always read again)."""
    loads, tick, seq = [], 0, 0
    for n, rows in enumerate(draw_rows):
        out = []
        if n and not ties:
            tick += 1
        for i, row in enumerate(rows):
            seq += 1
            if i % 3 == 2:
                tick += 1
            no_position = null_every and seq % null_every == 0
            out.append(dict(row, tick=None if no_position else tick, seq=seq))
        loads.append(out)
    return loads


@pytest.mark.slow
@settings(max_examples=24, deadline=None)
@given(
    form=st.sampled_from(sorted(FORMS)),
    with_rest=st.booleans(),
    draw_rows=st.lists(st.lists(random_row, min_size=0, max_size=12), min_size=2, max_size=3),
    null_every=st.sampled_from([0, 5]),
)
def test_incremental_runs_over_typed_and_text_columns_equal_a_full_refresh(form, with_rest, draw_rows, null_every):
    loads = _loads(draw_rows, null_every, ties=with_rest)
    if not loads[0]:  # a first run with rows (an empty table has no watermark to start from)
        loads[0] = [{"email": "e0", "tick": 0, "seq": 0}]
    seen: list[dict] = []
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        for n, load in enumerate(loads):
            seen = seen + load
            incremental, result, plan = _run(wh, seen, form, with_rest)
            assert result.mode == ("full" if n == 0 else "incremental"), result.full_refresh_reason
            # The dialect's one decision: a typed column is compared as it is, text per row.
            kind = with_incremental_kinds(wh, plan).tables[0].incremental_kind
            assert kind == FORMS[form][2]
            full_wh = DuckDBWarehouse(path=":memory:")
            with full_wh.session():
                full, full_result, _ = _run(full_wh, seen, form, with_rest)
            assert full_result.mode == "full"
            for name in ("lookup", "graph", "key_values", "watermarks"):
                pd.testing.assert_frame_equal(incremental[name], full[name], obj=f"{name} after load {n + 1}")
            partition, _ = oracle_partition(seen)
            assert lookup_partition(incremental["lookup"]) == partition


def test_the_dialect_decides_which_column_types_are_compared_as_they_are():
    duck, trino, spark = get_dialect("duckdb"), get_dialect("trino"), get_dialect("spark")
    assert [duck.incremental_kind(t) for t in ("TIMESTAMP", "DATE", "BIGINT", "INTEGER", "VARCHAR")] == [
        "timestamp",
        "date",
        "integer",
        "integer",
        None,
    ]
    # Types whose text round trip is not the identity, or that do not fit a BIGINT, stay per row.
    for other in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "HUGEINT", "UBIGINT", "DOUBLE", "DECIMAL(18,3)"):
        assert duck.incremental_kind(other) is None
    # Treasure Data stores text; local Spark's engine describes no types: both keep time_expr.
    assert trino.incremental_kind("bigint") is None and spark.incremental_kind("timestamp") is None


def test_a_typed_filter_reads_no_row_as_text():
    """The new rows' filter over a typed column casts no row to text; over a text column it does."""
    source = TableRef("src", "rows")
    _, plan = _plan(source, with_rest=False)
    since = plan.ref("watermarks")
    typed = u.new_rows_sql(replace(plan, tables=(replace(plan.tables[0], incremental_kind="timestamp"),)), since)
    generic = u.new_rows_sql(plan, since)
    assert 'CAST(s."at" AS VARCHAR)' in generic and 'CAST(s."at" AS VARCHAR)' not in typed
    assert 's."at" >= (SELECT MAX(CAST(w.watermark AS TIMESTAMP))' in typed
