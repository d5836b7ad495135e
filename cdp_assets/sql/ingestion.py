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
