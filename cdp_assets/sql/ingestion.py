"""SQL of ingestion from warehouse tables (``connector: table``)."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


def source_table_rows_sql(table: TableRef, incremental_field: str, since: bool) -> str:
    """The table's rows, or (``since``) those newer than a watermark bound as the one parameter."""
    where = f" WHERE CAST({quote(incremental_field)} AS TIMESTAMP) > CAST(? AS TIMESTAMP)" if since else ""
    return f"SELECT * FROM {table.sql}{where}"


def source_table_watermark_sql(table: TableRef, incremental_field: str) -> str:
    """The newest incremental value of a source table (what the watermark sensor compares)."""
    return f"SELECT CAST(MAX(CAST({quote(incremental_field)} AS TIMESTAMP)) AS VARCHAR) AS w FROM {table.sql}"


# ---------------------------------------------------------------- per-file bookkeeping

def file_versions_sql(files_log: TableRef) -> str:
    """Every recorded load of a file of one source object (source and object bound as the two
    parameters); the loader keeps the newest version per mode and file."""
    return (
        f"SELECT mode, file, file_version, loaded_at FROM {files_log.sql} "
        f"WHERE source = ? AND object = ? ORDER BY loaded_at"
    )


def rows_in_range_sql(table: TableRef, incremental_field: str) -> str:
    """The rows a raw table holds with a watermark between two bounds (bound as the two
    parameters, inclusive): where an exact copy of a new file's row could be."""
    col = quote(incremental_field)
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
