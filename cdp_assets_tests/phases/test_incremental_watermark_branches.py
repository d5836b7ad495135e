"""Hist-union's, staging's and the enrichments' "loaded after the watermark" filters written as
UNION ALL branches without an OR around the range test (``split``: an engine that
``skips_row_groups``, DuckDB, which then reads only the row groups after the watermark) select
exactly what the single-read form every other engine runs selects, on real DuckDB: the rows
since the watermark, an input's changed keys, the rows to recompute (changed keys' rows and new
rows with a NULL key part), an enrichment's changed keys and a hist-union's new distinct keys.
Inputs without a watermark row, with a NULL watermark, rows without a load time and keys with
NULL parts are drawn on purpose; the row groups read are checked on a table appended in load
order, as ingestion appends a raw table.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.checks import new_distinct_keys_sql
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.row_groups import row_groups_read

BASE = dt.datetime(2024, 1, 1)
RAW = TableRef("src", "raw")
STATE = TableRef("src", "raw_cdp_state")
CHANGED = TableRef("src", "changed_keys")
KEYS = ["k1", "k2"]

tick = st.one_of(st.none(), st.integers(min_value=0, max_value=6))  # a load time, or none
key_part = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))
# An input's watermark: no row for it, a NULL one, or a tick.
watermark = st.one_of(st.just("absent"), st.just("null"), st.integers(0, 6))


def _at(t: int | None) -> dt.datetime | None:
    return None if t is None else BASE + dt.timedelta(minutes=t)


def _load(wh: DuckDBWarehouse, rows: list[tuple], marks: list[object], changed: list[tuple]) -> None:
    raw = pd.DataFrame(
        [(k1, k2, f"v{i}", _at(t)) for i, (k1, k2, t) in enumerate(rows)],
        columns=[*KEYS, "v", inc.LOADED_AT],
    )
    raw = raw.astype({"k1": "string", "k2": "string", "v": "string", inc.LOADED_AT: "datetime64[us]"})
    state = pd.DataFrame(
        [(rank, None if m == "null" else _at(m)) for rank, m in enumerate(marks) if m != "absent"],
        columns=["input_rank", "watermark"],
    ).astype({"input_rank": "int64", "watermark": "datetime64[us]"})
    keys = pd.DataFrame(changed, columns=KEYS).astype("string")
    for ref, df in ((RAW, raw), (STATE, state), (CHANGED, keys)):
        wh.drop(ref)
        wh.write_dataframe(ref, df)


def _rows(df: pd.DataFrame) -> list[str]:
    """A multiset of rows, NULLs included."""
    return sorted(map(str, df.astype(str).values.tolist()))


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.tuples(key_part, key_part, tick), max_size=20),
    marks=st.lists(watermark, min_size=1, max_size=1),
    changed=st.lists(st.tuples(key_part, key_part), max_size=4),
    null_safe=st.booleans(),
)
def test_the_branches_select_what_the_single_read_selects(rows, marks, changed, null_safe):
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        _load(wh, rows, marks, changed)
        both = {}
        for split in (False, True):
            both[split] = (
                _rows(wh.fetch(inc.rows_since_sql(RAW, STATE, 0, split=split))),
                _rows(wh.fetch(inc.changed_keys_sql([(RAW, [*KEYS, "v"], 0)], STATE, KEYS, null_safe, split))),
                _rows(wh.fetch(inc.affected_rows_sql(RAW, [*KEYS, "v"], CHANGED, STATE, 0, KEYS, null_safe, split))),
                _rows(wh.fetch(inc.enriched_changed_keys_sql(RAW, [*KEYS, "v"], STATE, KEYS, [], split=split))),
                int(wh.scalar(new_distinct_keys_sql(RAW, KEYS, STATE, 0, split))),
            )
        split_sql = inc.rows_since_sql(RAW, STATE, 0, split=True)
        assert "UNION ALL" in split_sql and " OR " not in split_sql
    assert both[True] == both[False]
    # And the single read is what it says: every row after the watermark (all without one).
    mark = marks[0]
    expected = [r for r in rows if mark in ("absent", "null") or (r[2] is not None and r[2] > mark)]
    assert len(both[False][0]) == len(expected)


def test_the_branches_read_only_the_row_groups_after_the_watermark():
    """On a raw table appended in load order, DuckDB reads the row groups after the watermark
    through the branches, and every row group through the OR: the point of ``split``."""
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        n = 600_000  # about five row groups of 122,880 rows
        wh.run(
            f"CREATE SCHEMA IF NOT EXISTS src; CREATE TABLE {RAW.sql} AS SELECT CAST(i % 1000 AS VARCHAR) AS k1, "
            "CAST(i AS VARCHAR) AS k2, 'x' AS v, TIMESTAMP '2024-01-01' + TO_SECONDS(i) AS _cdp_loaded_at "
            f"FROM range({n}) AS r(i) ORDER BY i"
        )
        last = pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=n - 10)
        wh.run(f"CREATE TABLE {STATE.sql} AS SELECT 0 AS input_rank, TIMESTAMP '{last}' AS watermark")

        assert len(wh.fetch(inc.rows_since_sql(RAW, STATE, 0, split=True))) == 9
        single_read = row_groups_read(wh, inc.rows_since_sql(RAW, STATE, 0))
        branch_reads = row_groups_read(wh, inc.rows_since_sql(RAW, STATE, 0, split=True))
        assert single_read and all(a == b for a, b in single_read)  # every row group
        # The branch without a watermark reads nothing (its test is false); the range test reads
        # the table's last row group or two (written in parallel, unordered).
        assert branch_reads and all(a <= 2 < b for a, b in branch_reads), branch_reads
