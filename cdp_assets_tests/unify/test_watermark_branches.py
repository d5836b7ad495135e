"""The watermark filters of an incremental run written as UNION ALL branches of plain range and
NULL tests (``Dialect.skips_row_groups``: DuckDB skips the row groups they rule out) select
exactly the rows of the single-read form every other engine runs, on real DuckDB: the new rows
of a typed incremental column (timestamp, date, epoch seconds) and the values of the previous
key values an incremental run does not keep. Rows without a position, positions tied with the
watermark (broken by a rest column or not), tables without a watermark or with a NULL one, and
rows of a table that is not incremental are drawn on purpose; the row groups read are checked
on a table ordered as the pipeline appends it.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef, get_dialect
from cdp_assets_tests.row_groups import row_groups_read
from cdp_assets_tests.unify.test_loop import KEYS, make_unify

BASE = dt.datetime(2024, 1, 1)
WATERMARKS = TableRef("cdp", "unified_id_watermarks")
KEY_VALUES = TableRef("cdp", "unified_id_key_values")
SOURCE = TableRef("src", "rows")

# A position: a tick (minutes after BASE; days for a DATE column), or None (no position).
tick = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
rest = st.one_of(st.none(), st.sampled_from(["", "1", "2", "3"]))
# A table's watermark: absent (no row), a row without a position, or a tick and its rest.
watermark = st.one_of(st.just("absent"), st.just("null"), st.tuples(st.integers(0, 6), rest))


def _plan(tables: list[u.SourceTablePlan]) -> u.IdPlan:
    unify = make_unify()
    return u.IdPlan(cid=unify.all_ids[0], persistent=False, schema="cdp", catalog=None, keys=KEYS, tables=tuple(tables))


def _write_watermarks(wh: DuckDBWarehouse, marks: dict[int, object], days: bool = False) -> None:
    rows = []
    for table_id, mark in marks.items():
        if mark == "absent":
            continue
        at, rest_ = (None, None) if mark == "null" else mark
        step = dt.timedelta(days=at) if days and at is not None else dt.timedelta(minutes=at or 0)
        rows.append((table_id, None if at is None else BASE + step, rest_, "f"))
    df = pd.DataFrame(rows, columns=["table_id", "watermark", "watermark_rest", "fingerprint"])
    df = df.astype({"table_id": "int64", "watermark": "datetime64[us]", "watermark_rest": "string"})
    wh.drop(WATERMARKS)
    wh.write_dataframe(WATERMARKS, df)


def _both(plan: u.IdPlan) -> tuple[u.IdPlan, u.IdPlan]:
    """The plan as every engine runs it (one read) and as DuckDB does (branches)."""
    branched = u.for_dialect(plan, get_dialect("duckdb"))
    assert branched.skips_row_groups and not plan.skips_row_groups
    return plan, branched


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([1, 2, 3]), tick, rest, st.sampled_from(["a", "b", "c", "d"])), max_size=25
    ),
    marks=st.fixed_dictionaries({1: watermark, 2: watermark}),
)
def test_removed_key_values_of_the_branches_equal_the_single_read(rows, marks):
    # Tables 1 and 2 are incremental; table 3 is read whole, so its previous rows all go.
    tables = [
        u.SourceTablePlan(i, f"t{i}", TableRef("src", f"t{i}"), (("email", "email"),), "at", "at" if i < 3 else None)
        for i in (1, 2, 3)
    ]
    single, branched = _both(_plan(tables))
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        _write_watermarks(wh, marks)
        kv = pd.DataFrame(
            [(t, 1, v, None, None if at is None else BASE + dt.timedelta(minutes=at), r) for t, at, r, v in rows],
            columns=list(u.KEY_VALUE_COLUMNS),
        ).astype({"table_id": "int32", "key_type": "int32", "value": "string", "inc_rest": "string"})
        kv["seen_at"] = pd.Series([None] * len(kv), dtype="datetime64[us]")
        kv["inc_at"] = pd.to_datetime(kv["inc_at"]).astype("datetime64[us]")
        wh.write_dataframe(KEY_VALUES, kv)
        one = wh.fetch(u.removed_key_values_sql(single, KEY_VALUES, WATERMARKS))
        split_sql = u.removed_key_values_sql(branched, KEY_VALUES, WATERMARKS)
        assert "UNION ALL" in split_sql
        split = wh.fetch(split_sql)
    as_set = lambda f: set(map(tuple, f[["key_type", "value"]].astype(str).values.tolist()))  # noqa: E731
    assert as_set(split) == as_set(one)
    assert len(split) == len(as_set(split))  # DISTINCT: each value once
    # Every row of the table read whole goes: the branches keep that branch too.
    assert {("1", v) for t, _, _, v in rows if t == 3} <= as_set(split)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["timestamp", "date", "integer"]),
    with_rest=st.booleans(),
    rows=st.lists(st.tuples(tick, st.sampled_from(["1", "2", "3", None])), max_size=25),
    mark=watermark,
)
def test_new_rows_of_the_branches_equal_the_single_read(kind, with_rest, rows, mark):
    epoch = int(BASE.replace(tzinfo=dt.timezone.utc).timestamp())
    value = {
        "timestamp": lambda t: BASE + dt.timedelta(minutes=t),
        "date": lambda t: (BASE + dt.timedelta(days=t)).date(),
        "integer": lambda t: epoch + 60 * t,
    }[kind]
    table = u.SourceTablePlan(
        1, "rows", SOURCE, (("email", "email"),), "at", "at", ("seq",) if with_rest else (), incremental_kind=kind
    )
    single, branched = _both(_plan([table]))
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        _write_watermarks(wh, {1: mark}, days=kind == "date")
        df = pd.DataFrame(
            {
                "email": [f"e{i}" for i in range(len(rows))],
                "at": [None if t is None else value(t) for t, _ in rows],
                "seq": [s for _, s in rows],
            }
        )
        sql_type = {"timestamp": "TIMESTAMP", "date": "DATE", "integer": "BIGINT"}[kind]
        wh.write_dataframe(SOURCE, df.astype({"email": "string", "seq": "string", "at": "object"}))
        wh.run(
            f"CREATE OR REPLACE TABLE {SOURCE.sql} AS "
            f'SELECT * REPLACE (CAST("at" AS {sql_type}) AS "at") FROM {SOURCE.sql}'
        )
        one = wh.fetch(u.new_rows_sql(single, WATERMARKS))
        split_sql = u.new_rows_sql(branched, WATERMARKS)
        assert split_sql.count("UNION ALL") == 2  # three disjoint branches
        split = wh.fetch(split_sql)
    key = lambda f: sorted(map(str, f.astype(str).values.tolist()))  # noqa: E731 - a multiset of rows
    assert key(split) == key(one)


def test_the_branches_read_only_the_row_groups_after_the_watermark():
    """On a table appended in time order (as the pipeline appends its key values), DuckDB reads
    the row groups the watermark's range leaves, not every one: the point of the branches."""
    table = u.SourceTablePlan(1, "t1", TableRef("src", "t1"), (("email", "email"),), "at", "at")
    single, branched = _both(_plan([table]))
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        n = 600_000  # about five row groups of 122,880 rows
        _write_watermarks(wh, {1: (0, "")})  # (its schema first)
        wh.run(
            f"CREATE TABLE {KEY_VALUES.sql} AS SELECT 1 AS table_id, 1 AS key_type, CAST(i AS VARCHAR) AS value, "
            "CAST(NULL AS TIMESTAMP) AS seen_at, TIMESTAMP '2024-01-01' + TO_SECONDS(i) AS inc_at, '' AS inc_rest "
            f"FROM range({n}) AS r(i) ORDER BY i"
        )
        last = pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=n - 10)
        wh.run(f"UPDATE {WATERMARKS.sql} SET watermark = TIMESTAMP '{last}'")

        assert len(wh.fetch(u.removed_key_values_sql(branched, KEY_VALUES, WATERMARKS))) == 9
        single_read = row_groups_read(wh, u.removed_key_values_sql(single, KEY_VALUES, WATERMARKS))
        branch_reads = row_groups_read(wh, u.removed_key_values_sql(branched, KEY_VALUES, WATERMARKS))
        assert single_read and all(a == b for a, b in single_read)  # every row group
        # (Written in parallel, unordered: a row group or two of the table's last rows per branch.)
        assert branch_reads and all(a <= 2 < b for a, b in branch_reads), branch_reads
