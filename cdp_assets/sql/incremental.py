"""Incremental builds: the SQL that finds what changed since the last run and applies it to a
published table (docs/incremental.md).

What a run has read is kept as data, in one state table per published table
(``<table>_cdp_state``): per input, the newest ``_cdp_loaded_at`` read (the watermark) and how
many rows the input held up to it. Values never become SQL text: the statements read the
watermark from the state table by the input's rank, an integer of ours.

Changes replace the rows of their keys in the published table, in one of three forms chosen
by the engine's capability (``WarehouseResource.upsert_mode``), the way OPTIMIZE is:

- ``delete_insert``: DELETE the changed keys' rows and INSERT their new rows, in one
  transaction (DuckDB): a failure rolls back and leaves the table as it was.
- ``merge``: one ``MERGE INTO`` by key (Delta on Databricks), atomic by itself.
- ``rebuild``: the table's unchanged rows plus the new ones, built under a new name and swapped
  in (parquet tables on local Spark, Treasure Data): no full recomputation, but a full rewrite.
"""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote

LOADED_AT = "_cdp_loaded_at"  # when ingestion wrote a row: the watermark column of raw tables
STATE_SUFFIX = "_cdp_state"
STATE_COLUMNS = {
    "input_rank": "int64",
    "input_table": "string",
    "watermark": "datetime64[us]",
    "rows_through": "int64",
    "generation": "string",  # this table's last full build; a new one tells readers to rebuild
    "upstream_generation": "string",  # the input's generation this table was built from
    "fingerprint": "string",  # of the build's SQL: a config change forces a full build
    "mode": "string",
    "updated_at": "datetime64[us]",
}
UPSERT_MODES = ("delete_insert", "merge", "rebuild")


def state_ref(target: TableRef) -> TableRef:
    return target.sibling(f"{target.name}{STATE_SUFFIX}")


def read_state_sql(target: TableRef) -> str:
    """The state rows of ``target``'s last build, one per input, in input order."""
    return f"SELECT * FROM {state_ref(target).sql} ORDER BY input_rank"


def _watermark(state: TableRef, rank: int) -> str:
    return f"(SELECT MAX(s.watermark) FROM {state.sql} AS s WHERE s.input_rank = {int(rank)})"


def newer_than_watermark(state: TableRef, rank: int, alias: str = "i") -> str:
    """Rows of input ``rank`` loaded after the last run's watermark (every row when it had none)."""
    wm = _watermark(state, rank)
    return f"({wm} IS NULL OR {quote(alias)}.{quote(LOADED_AT)} > {wm})"


def input_progress_sql(ref: TableRef, state: TableRef, rank: int) -> str:
    """One row: the rows up to the previous watermark, the rows after it, all rows and the
    newest load time of input ``rank``."""
    wm = _watermark(state, rank)
    loaded = f"i.{quote(LOADED_AT)}"
    return (
        f"SELECT COUNT(*) FILTER (WHERE {loaded} <= {wm}) AS rows_through, "
        f"COUNT(*) FILTER (WHERE {newer_than_watermark(state, rank)}) AS rows_new, COUNT(*) AS rows_total, "
        f"MAX({loaded}) AS newest FROM {ref.sql} AS i"
    )


def input_totals_sql(ref: TableRef) -> str:
    """One row: all rows and the newest load time (the watermark after a full build)."""
    return f"SELECT COUNT(*) AS rows_total, MAX(i.{quote(LOADED_AT)}) AS newest FROM {ref.sql} AS i"


def inputs_totals_sql(inputs: list[tuple[TableRef, bool]]) -> str:
    """Every input's totals in one row: ``rows_<i>`` all rows of input ``i`` and ``newest_<i>`` its
    newest load time (NULL for an input without the column: ``inputs`` says which have it)."""
    parts = []
    for i, (ref, has_loaded_at) in enumerate(inputs):
        parts.append(f"(SELECT COUNT(*) FROM {ref.sql}) AS rows_{i}")
        newest = f"(SELECT MAX(i.{quote(LOADED_AT)}) FROM {ref.sql} AS i)" if has_loaded_at else "NULL"
        parts.append(f"{newest} AS newest_{i}")
    return "SELECT " + ", ".join(parts)


def key_match(left: str, right: str, key_columns: list[str], null_safe: bool) -> str:
    """``left`` and ``right`` hold the same key. A primary key with a NULL part matches nothing
    (such rows are separate records); without a primary key the key is every business column
    and NULLs compare equal, as GROUP BY and PARTITION BY treat them."""
    op = "IS NOT DISTINCT FROM" if null_safe else "="
    return " AND ".join(f"{quote(left)}.{quote(c)} {op} {quote(right)}.{quote(c)}" for c in key_columns)


def changed_keys_sql(
    deltas: list[tuple[TableRef, list[str], int]], state: TableRef, key_columns: list[str], null_safe: bool
) -> str:
    """The distinct keys of the rows each input gained since the watermark. ``deltas``: (input,
    its columns, rank); a key column an input lacks reads NULL there."""
    selects = []
    for ref, cols, rank in deltas:
        exprs = ", ".join(
            f"i.{quote(c)} AS {quote(c)}" if c in cols else f"CAST(NULL AS VARCHAR) AS {quote(c)}" for c in key_columns
        )
        selects.append(f"SELECT {exprs} FROM {ref.sql} AS i WHERE {newer_than_watermark(state, rank)}")
    keys = ", ".join(quote(c) for c in key_columns)
    present = "" if null_safe else " WHERE " + " AND ".join(f"{quote(c)} IS NOT NULL" for c in key_columns)
    return f"SELECT DISTINCT {keys} FROM (\n" + "\nUNION ALL\n".join(selects) + f"\n) AS d{present}"


def affected_rows_sql(
    ref: TableRef,
    cols: list[str],
    changed: TableRef,
    state: TableRef,
    rank: int,
    key_columns: list[str],
    null_safe: bool,
) -> str:
    """The rows of input ``rank`` to recompute: every row of a changed key, plus (with a primary
    key) the new rows whose key has a NULL part, which are records of their own."""

    def col(c: str) -> str:
        return f"i.{quote(c)}" if c in cols else "CAST(NULL AS VARCHAR)"

    op = "IS NOT DISTINCT FROM" if null_safe else "="
    match = " AND ".join(f"c.{quote(c)} {op} {col(c)}" for c in key_columns)
    where = f"EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE {match})"
    if not null_safe:
        null_key = " OR ".join(f"{col(c)} IS NULL" for c in key_columns)
        where += f" OR ({newer_than_watermark(state, rank)} AND ({null_key}))"
    return f"SELECT i.* FROM {ref.sql} AS i WHERE {where}"


def rows_since_sql(ref: TableRef, state: TableRef, rank: int = 0) -> str:
    return f"SELECT i.* FROM {ref.sql} AS i WHERE {newer_than_watermark(state, rank)}"


def upsert_statements(
    mode: str,
    target: TableRef,
    changes: TableRef,
    changed: TableRef,
    columns: list[str],
    key_columns: list[str],
    null_safe: bool,
) -> list[str]:
    """Canonical statements that replace the rows of the ``changed`` keys in ``target`` with the
    rows of ``changes`` (``delete_insert``, ``merge``); for ``rebuild``, the one SELECT of the new
    table, to build and swap in."""
    cols = ", ".join(quote(c) for c in columns)
    if mode == "delete_insert":
        return [
            f"DELETE FROM {target.sql} AS t WHERE EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE "
            f"{key_match('c', 't', key_columns, null_safe)})",
            f"INSERT INTO {target.sql} ({cols}) SELECT {cols} FROM {changes.sql}",
        ]
    if mode == "merge":
        # Each changed key has exactly one row in ``changes`` (the recomputed winner); rows whose
        # primary key has a NULL part match nothing and are inserted.
        sets = ", ".join(f"t.{quote(c)} = s.{quote(c)}" for c in columns)
        values = ", ".join(f"s.{quote(c)}" for c in columns)
        return [
            f"MERGE INTO {target.sql} AS t USING {changes.sql} AS s ON {key_match('s', 't', key_columns, null_safe)} "
            f"WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
        ]
    if mode == "rebuild":
        return [
            f"SELECT {cols} FROM {target.sql} AS t WHERE NOT EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE "
            f"{key_match('c', 't', key_columns, null_safe)})\nUNION ALL\nSELECT {cols} FROM {changes.sql}"
        ]
    raise ValueError(f"unknown upsert mode {mode!r}; use one of {UPSERT_MODES}")
