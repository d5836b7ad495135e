"""A master table's incremental apply on DuckDB (``inc.with_same_flag_sql``,
``inc.replace_changed_rows_statements``): only the touched ids' rows that differ are deleted and
inserted, and the table ends as replacing every touched id's rows would leave it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.dialects import TableRef

SCHEMA = "cdp_unification_t"
TARGET = TableRef(SCHEMA, "customer_master")
COLUMNS = ["unified_id", "email", "emails"]
IDS = ["A", "B", "C", "D", "E"]

# (id, email, emails): few values, NULLs and lists with NULLs, so equal and unequal rows both happen.
_ROW = st.tuples(
    st.sampled_from(IDS),
    st.sampled_from(["a@x", "b@x", None]),
    st.one_of(st.none(), st.lists(st.sampled_from(["a@x", "b@x", None]), max_size=2)),
)


def _write(wh: DuckDBWarehouse, ref: TableRef, rows: list[tuple]) -> None:
    values = ", ".join("(?, ?, ?::VARCHAR[])" for _ in rows)
    wh.run(f"CREATE OR REPLACE TABLE {ref.sql} (unified_id VARCHAR, email VARCHAR, emails VARCHAR[])")
    if rows:
        wh.query(f"INSERT INTO {ref.sql} VALUES {values}", [v for r in rows for v in r])


def _rows(wh: DuckDBWarehouse, ref: TableRef) -> list[tuple]:
    """The table's rows, each list as its JSON text (``_norm``)."""
    frame = wh.fetch(f"SELECT unified_id, email, CAST(TO_JSON(emails) AS VARCHAR) AS emails FROM {ref.sql}")
    return sorted(
        (
            (r.unified_id, None if pd.isna(r.email) else r.email, None if pd.isna(r.emails) else r.emails)
            for r in frame.itertuples()
        ),
        key=repr,
    )


def _norm(rows: list[tuple]) -> list[tuple]:
    return sorted(
        ((i, e, None if l is None else json.dumps(list(l), separators=(",", ":"))) for i, e, l in rows), key=repr
    )


def _apply(wh: DuckDBWarehouse, published: list[tuple], new: list[tuple], touched: list[str]) -> list[int]:
    """Publish ``published``, then apply ``new`` (the recomputed rows of ``touched``); answer the
    DELETE's and the INSERT's row counts."""
    keys, fresh, changes = (TableRef(SCHEMA, n) for n in ("touched", "fresh", "changes"))
    wh.run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    _write(wh, TARGET, published)
    _write(wh, fresh, new)
    wh.query(f"CREATE OR REPLACE TABLE {keys.sql} AS SELECT unnest(?::VARCHAR[]) AS unified_id", [touched])
    flagged = inc.with_same_flag_sql(f"SELECT * FROM {fresh.sql}", TARGET, keys, "unified_id", COLUMNS)
    wh.run(f"CREATE OR REPLACE TABLE {changes.sql} AS {flagged}")
    return [wh.scalar(s) for s in inc.replace_changed_rows_statements(TARGET, changes, keys, "unified_id", COLUMNS)]


def test_only_rows_that_differ_are_written(tmp_path: Path):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    with wh.session():
        published = [
            ("A", "a@x", ["a@x", None]),  # recomputed the same: kept
            ("B", "a@x", None),  # recomputed with another email: replaced
            ("C", "c@x", None),  # touched, no longer an id: deleted
            ("D", "d@x", ["d@x"]),  # not touched: kept
            ("E", "e@x", None),  # twice, both equal to its new row: replaced by one row
            ("E", "e@x", None),
        ]
        new = [("A", "a@x", ["a@x", None]), ("B", "b@x", None), ("E", "e@x", None), ("F", None, None)]
        deleted, inserted = _apply(wh, published, new, ["A", "B", "C", "E", "F"])
        assert (deleted, inserted) == (4, 3)  # B, C and E twice; B, E and the new F
        assert _rows(wh, TARGET) == _norm(
            [
                ("A", "a@x", ["a@x", None]),
                ("B", "b@x", None),
                ("D", "d@x", ["d@x"]),
                ("E", "e@x", None),
                ("F", None, None),
            ]
        )


@settings(max_examples=60, deadline=None)
@given(
    published=st.lists(_ROW, max_size=8),
    new=st.lists(_ROW, max_size=5, unique_by=lambda r: r[0]),
    extra=st.lists(st.sampled_from(IDS), max_size=3),
)
def test_the_apply_equals_replacing_every_touched_id(published, new, extra):
    """Against the plain replacement (every touched id's rows deleted, its new rows inserted):
    the same table, and no more rows written."""
    touched = sorted({r[0] for r in new} | set(extra))
    expected = _norm([r for r in published if r[0] not in touched] + new)
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(path=str(Path(tmp) / "wh.duckdb"))
        with wh.session():
            deleted, inserted = _apply(wh, published, new, touched)
            got = _rows(wh, TARGET)
    assert got == expected
    assert deleted <= sum(r[0] in touched for r in published) and inserted <= len(new)
    assert deleted - inserted == sum(r[0] in touched for r in published) - len(new)
