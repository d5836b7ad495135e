"""SQL of ingestion from warehouse tables (``connector: table``)."""

from __future__ import annotations

from cdp_assets.sql.dialects import Dialect, TableRef, quote


def source_table_rows_sql(table: TableRef, incremental_field: str, since: bool) -> str:
    """The table's rows, or (``since``) those newer than a watermark bound as the one parameter."""
    where = f" WHERE CAST({quote(incremental_field)} AS TIMESTAMP) > CAST(? AS TIMESTAMP)" if since else ""
    return f"SELECT * FROM {table.sql}{where}"


def source_table_watermark_sql(table: TableRef, incremental_field: str) -> str:
    """The newest incremental value of a source table (what the watermark sensor compares)."""
    return f"SELECT CAST(MAX(CAST({quote(incremental_field)} AS TIMESTAMP)) AS VARCHAR) AS w FROM {table.sql}"


# ---------------------------------------------------------------- per-file bookkeeping


FILE_STATUS = "file_status"  # the per-file records' column of a file's status (local_files.file_status)


def file_versions_sql(files_log: TableRef, with_status: bool = False) -> str:
    """Every recorded load of a file of one source object (source and object bound as the two
    parameters); the loader keeps the newest version per mode and file. ``with_status``: the
    records keep the file's status beside its version (a log written before they did: NULL)."""
    status = f"f.{FILE_STATUS}" if with_status else "CAST(NULL AS VARCHAR)"
    return (
        f"SELECT f.mode, f.file, f.file_version, {status} AS {FILE_STATUS}, f.loaded_at FROM {files_log.sql} AS f "
        f"WHERE f.source = ? AND f.object = ? ORDER BY f.loaded_at"
    )


def rows_in_range_sql(table: TableRef, incremental_field: str, dialect: Dialect) -> str:
    """The rows a raw table holds with a watermark between two bounds (bound as the two
    parameters, inclusive): where an exact copy of a new file's row could be. The raw table's
    watermark is compared as the engine stores it: a TIMESTAMP on DuckDB, Spark and Databricks,
    text on Treasure Data (``Dialect.stored_timestamp``)."""
    col = dialect.stored_timestamp(quote(incremental_field))
    return f"SELECT * FROM {table.sql} WHERE {col} >= CAST(? AS TIMESTAMP) AND {col} <= CAST(? AS TIMESTAMP)"


def rejection_keys_sql(rejected: TableRef, with_version: bool) -> str:
    """What identifies a recorded rejection: file, version of the file, row and reason."""
    version = ", file_version" if with_version else ""
    return f"SELECT file, row, reason{version} FROM {rejected.sql}"


def open_rejections_sql(rejected: TableRef) -> str:
    """The rejections no later version of their file has superseded."""
    return f"SELECT mode, file, file_version FROM {rejected.sql} WHERE superseded_at IS NULL"


def all_rows_sql(table: TableRef) -> str:
    return f"SELECT * FROM {table.sql}"


# ---------------------------------------------------------------- DuckDB's native file readers
#
# The file's path and the reader's column list are values: they are bound as parameters (DuckDB
# takes parameters in a table function's arguments), never pasted into the SQL text. Column names
# are identifiers: validated and quoted. Every column is read as text (raw tables keep what the
# file said); only the watermark column is parsed, by ``watermark_expr``.

# Only unambiguous ISO 8601 values are parsed in SQL, to the same instant pandas' mixed-format
# parser gives them: without an offset the value is UTC already, with one it is converted. Any
# other value (empty, day/month order, words, out of range) makes the loader read the file in
# Python, which rejects such rows with their row number or asks for date_order.
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
_ISO_NAIVE = f"{_ISO_DATE}({_ISO_TIME})?"
_ISO_OFFSET = _ISO_DATE + _ISO_TIME + r" ?(Z|[+-]\d{2}(:?\d{2})?)"
# pandas' nanosecond timestamps span 1677-09-22 .. 2262-04-11: the range a watermark takes on
# every path (loading.TIMESTAMP_RANGE); a value outside it goes to the Python reader to be rejected.
WATERMARK_LOW, WATERMARK_HIGH = "1677-09-22", "2262-04-11"


def watermark_expr(column: str) -> str:
    """The watermark column's text as a TIMESTAMP in UTC without zone, or NULL when it is not an
    ISO date/time (the range is checked by ``file_rows_sql``)."""
    col = f"CAST({quote(column)} AS VARCHAR)"
    return (
        f"CASE WHEN regexp_full_match({col}, '{_ISO_NAIVE}') THEN TRY_CAST({col} AS TIMESTAMP) "
        f"WHEN regexp_full_match({col}, '{_ISO_OFFSET}') THEN timezone('UTC', TRY_CAST({col} AS TIMESTAMPTZ)) END"
    )


def csv_select_sql(max_line_bytes: int) -> str:
    """A CSV file's rows, every column as text. Bound: the file's path, the columns (a name ->
    'VARCHAR' map, in file order, names already normalised) and the names of the reject tables
    DuckDB writes each refused line to (line, byte position, error type, the line's text). The
    dialect is fixed to what the Python reader takes (comma, double quote, doubled quote as
    escape): a semicolon file is one column, as before, not re-sniffed."""
    return (
        "SELECT * FROM read_csv(?, header = true, auto_detect = false, columns = ?, delim = ',', quote = '\"', "
        "escape = '\"', ignore_errors = true, store_rejects = true, rejects_table = ?, rejects_scan = ?, "
        f"max_line_size = {int(max_line_bytes)})"
    )


def csv_rejects_sql(rejects: TableRef) -> str:
    """The lines DuckDB's CSV reader refused: line (counting records, not lines), the 1-based
    byte where the record starts, the error type and the record's text."""
    return (
        f"SELECT line, line_byte_position, CAST(error_type AS VARCHAR) AS error_type, csv_line "
        f"FROM {rejects.sql} ORDER BY line"
    )


def json_keys_sql() -> str:
    """Every key of a JSON-lines file's objects, and how many lines are not objects (bound: the
    path). A line that is not JSON fails the query (the loader then reads the file in Python)."""
    return (
        "SELECT list_distinct(flatten(list(json_keys(j)))) AS keys, "
        "count(*) FILTER (WHERE json_type(j) <> 'OBJECT') AS not_objects FROM read_ndjson_objects(?) AS t(j)"
    )


# JSON values whose text DuckDB gives back exactly as the file wrote it; numbers with a fraction
# or exponent (3.50 -> 3.5) and nested values (other separators) are read in Python instead.
_JSON_EXACT_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN', 'NULL')"


# A JSON read's column saying whether a row has a value whose text DuckDB would change: the
# checks count it; it stays in the read's temporary table and is never copied out of it
# (``read_rows_sql``), instead of being dropped by a statement of its own.
INEXACT_COLUMN = "_cdp_inexact"


def json_select_sql(columns: list[str]) -> str:
    """A JSON-lines file's rows: one text column per key, and ``INEXACT_COLUMN``, true for a row
    with a value whose text would not be the file's. Bound: each key twice (its text, then its
    type check), in ``columns`` order, then the path."""
    values = ", ".join(f"json_extract_string(j, ?) AS {quote(c)}" for c in columns)
    inexact = " OR ".join(f"coalesce(json_type(j, ?), 'NULL') NOT IN {_JSON_EXACT_TYPES}" for _ in columns) or "false"
    return f"SELECT {values}, ({inexact}) AS {INEXACT_COLUMN} FROM read_ndjson_objects(?) AS t(j)"


def read_rows_sql(rows: TableRef) -> str:
    """A read's temporary table as it is loaded: every column but ``INEXACT_COLUMN`` (which only
    a JSON read has; DuckDB's column lambda selects by name, whether the table has it or not)."""
    return f"SELECT COLUMNS(lambda c: c <> '{INEXACT_COLUMN}') FROM {rows.sql}"


def parquet_schema_sql() -> str:
    """A Parquet file's columns and their types (bound: the path)."""
    return "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))"


def parquet_select_sql(columns: list[tuple[str, str]]) -> str:
    """A Parquet file's rows: each (file column, loaded name) as text. Bound: the path."""
    values = ", ".join(f"CAST({quote_any(src)} AS VARCHAR) AS {quote(name)}" for src, name in columns)
    return f"SELECT {values} FROM read_parquet(?)"


def quote_any(name: str) -> str:
    """Quote a column name as a file wrote it (any text): double quotes doubled. Used only for
    a source file's own column names, which are read from the file, not from configuration."""
    return '"' + name.replace('"', '""') + '"'


def file_rows_sql(target: TableRef, file_select: str, incremental_field: str) -> str:
    """Create the temporary ``target`` with a file's rows as the loader appends them: the
    watermark parsed (NULL where it is not an ISO date/time in range), the lineage columns added.
    Bound: the file's name, the load's time, then ``file_select``'s parameters."""
    wm = quote(incremental_field)
    in_range = f"_cdp_parsed >= TIMESTAMP '{WATERMARK_LOW}' AND _cdp_parsed < TIMESTAMP '{WATERMARK_HIGH}'"
    return (
        f"CREATE TEMP TABLE {target.sql} AS SELECT * EXCLUDE (_cdp_parsed) REPLACE "
        f"(CAST(CASE WHEN {in_range} THEN _cdp_parsed END AS TIMESTAMP) AS {wm}), "
        f"CAST(? AS VARCHAR) AS _cdp_file, CAST(? AS TIMESTAMP) AS _cdp_loaded_at "
        f"FROM (SELECT *, {watermark_expr(incremental_field)} AS _cdp_parsed FROM ({file_select}))"
    )


def file_checks_sql(
    rows: TableRef,
    columns: list[str],
    incremental_field: str,
    inexact: bool = False,
    null_checked: list[str] | None = None,
    since_start: bool = False,
    rejects: TableRef | None = None,
) -> str:
    """What decides whether a natively read file can be loaded as read, and its counts: rows,
    rows whose watermark did not parse, rows with a NUL character (DuckDB keeps them; the Python
    reader rejects them by row number), a JSON value whose text DuckDB would change
    (``inexact``) or a NULL in a ``null_checked`` column; the newest watermark;
    (``since_start``) the rows older than start_date (bound); and (``rejects``: a CSV read's
    reject table) how many lines the reader refused, so that their rows are fetched only when
    there are some."""
    wm = quote(incremental_field)
    unusable = [f"contains({quote(c)}, chr(0))" for c in columns if c != incremental_field]
    unusable += ([INEXACT_COLUMN] if inexact else []) + [f"{quote(c)} IS NULL" for c in null_checked or []]
    before = f"count(*) FILTER (WHERE {wm} < CAST(? AS TIMESTAMP))" if since_start else "0"
    refused = f"(SELECT count(*) FROM {rejects.sql})" if rejects is not None else "0"
    return (
        f"SELECT count(*) AS n, count(*) FILTER (WHERE {wm} IS NULL) AS bad_watermarks, "
        f"count(*) FILTER (WHERE {' OR '.join(unusable) or 'false'}) AS unusable, "
        f"CAST(max({wm}) AS VARCHAR) AS w, {before} AS before_start, {refused} AS refused FROM {rows.sql}"
    )


def files_checks_sql(checks: list[str]) -> str:
    """Several files' ``file_checks_sql`` in one query: one row per file, in the order given, its
    position in ``_cdp_file`` (each part's parameters, in order)."""
    parts = [f"SELECT {i} AS _cdp_file, c.* FROM ({sql}) AS c" for i, sql in enumerate(checks)]
    return "\nUNION ALL\n".join(parts) + "\nORDER BY _cdp_file"


def fresh_rows_sql(
    target: TableRef,
    rows: TableRef,
    columns: list[str],
    incremental_field: str,
    since_start: bool,
    earlier: list[tuple[TableRef, set[str]]],
) -> str:
    """The rows of a file an incremental load appends (into the temporary ``target``): those
    not older than start_date (bound, when ``since_start``) and not exact copies of rows already
    loaded. ``earlier`` are the tables holding rows already loaded (the raw table, the rows this
    load takes from earlier files) with their columns; a column one lacks reads NULL. Copies are
    counted off one for one, the way ``loading.not_loaded_yet`` does: the n-th copy of a row in
    the file is fresh when fewer than n copies were loaded before."""
    wm = quote(incremental_field)
    cols = [quote(c) for c in columns]
    start = f" WHERE {wm} >= CAST(? AS TIMESTAMP)" if since_start else ""
    if not earlier:
        return f"CREATE TEMP TABLE {target.sql} AS {read_rows_sql(rows)}{start}"
    bounds = f"{wm} >= (SELECT min({wm}) FROM f) AND {wm} <= (SELECT max({wm}) FROM f)"
    loaded = " UNION ALL ".join(
        "SELECT "
        + ", ".join(q if c in have else f"CAST(NULL AS VARCHAR) AS {q}" for c, q in zip(columns, cols))
        + f" FROM {ref.sql} WHERE {bounds}"
        for ref, have in earlier
    )
    same = " AND ".join(f"n.{q} IS NOT DISTINCT FROM p.{q}" for q in cols)
    return (
        f"CREATE TEMP TABLE {target.sql} AS WITH f AS ({read_rows_sql(rows)}{start}), "
        f"n AS (SELECT *, row_number() OVER (PARTITION BY {', '.join(cols)}) AS _cdp_copy FROM f), "
        f"p AS (SELECT {', '.join(cols)}, count(*) AS _cdp_copies FROM ({loaded}) GROUP BY ALL) "
        f"SELECT n.* EXCLUDE (_cdp_copy) FROM n LEFT JOIN p ON {same} WHERE n._cdp_copy > coalesce(p._cdp_copies, 0)"
    )


def rows_summary_sql(rows: TableRef, incremental_field: str) -> str:
    """A table's row count and newest watermark, as text."""
    wm = quote(incremental_field)
    return f"SELECT count(*) AS n, CAST(max({wm}) AS VARCHAR) AS w FROM {rows.sql}"


def union_by_name_sql(parts: list[TableRef]) -> str:
    """Every row of the temporary tables, columns matched by name (a column one lacks is NULL)."""
    return " UNION ALL BY NAME ".join(read_rows_sql(p) for p in parts)


def append_by_name_sql(target: TableRef, parts: list[TableRef]) -> str:
    return f"INSERT INTO {target.sql} BY NAME {union_by_name_sql(parts)}"


def add_column_sql(target: TableRef, column: str, sql_type: str) -> str:
    if sql_type not in ("VARCHAR", "TIMESTAMP"):
        raise ValueError(f"unexpected column type {sql_type!r}")
    return f"ALTER TABLE {target.sql} ADD COLUMN {quote(column)} {sql_type}"


def drop_temp_sql(ref: TableRef) -> str:
    return f"DROP TABLE IF EXISTS {ref.sql}"


def max_watermark_sql(ref: TableRef, incremental_field: str) -> str:
    """The newest value of a table's incremental field (as ``w``)."""
    return f"SELECT MAX({quote(incremental_field)}) AS w FROM {ref.sql}"


def load_log_fingerprints_sql(log_ref: TableRef) -> str:
    """The ingestion log's rows, with what a historical load's skip decision needs."""
    return f"SELECT source, object, mode, status, files_fingerprint, loaded_at FROM {log_ref.sql}"
