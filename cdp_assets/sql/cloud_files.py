"""Ingestion SQL for files that already sit in cloud storage, read by the warehouse itself.

On Databricks an S3 source is read with ``read_files`` (Databricks SQL's table-valued function
over a storage path, Unity Catalog credentials on the warehouse side): no object is downloaded to
Python and uploaded again. Used when the engine has the ``reads_cloud_files`` capability
(``connectors/s3_in_warehouse.py``); other engines fetch the objects and load them as local files.

Written in Databricks SQL directly: ``read_files``, ``_metadata`` and ``try_cast`` have no DuckDB
spelling to transpile from. The storage path is configuration (a validated bucket, prefix and
object name), rendered as a quoted string literal; data values (watermark, start date) are bound
``?`` parameters.
"""

from __future__ import annotations

import re

from sqlglot import exp

from cdp_assets.config.identifiers import check_identifier

# Files of each format, as ``read_files`` takes them: CSV and JSON lines as text (every column
# STRING, as the Python readers load them), Parquet with its own types.
FORMAT_OPTIONS = {
    "csv": {"format": "csv", "header": True, "inferColumnTypes": False, "pathGlobFilter": "*.csv"},
    "jsonl": {"format": "json", "inferColumnTypes": False, "pathGlobFilter": "*.{jsonl,ndjson,json}"},
    "parquet": {"format": "parquet", "pathGlobFilter": "*.{parquet,pq}"},
}
RESCUED = "_rescued_data"  # what read_files could not parse in a row, kept instead of dropped

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()\-/]*$")  # S3's safe key characters


def s3_folder_uri(bucket: str, prefix: str, obj: str, historical: bool) -> str:
    """``s3://bucket/prefix/obj/`` (or ``.../obj/historical/``): the object's folder."""
    if not _BUCKET.match(bucket):
        raise ValueError(f"S3 bucket {bucket!r} is not a valid bucket name")
    prefix = prefix.strip("/")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/"):
        raise ValueError(f"S3 prefix {prefix!r} has characters outside S3's safe set (letters, digits, !_.*'()-/)")
    check_identifier(obj, "object")
    parts = [p for p in (prefix, obj, "historical" if historical else "") if p]
    return f"s3://{bucket}/" + "/".join(parts) + "/"


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return exp.Literal.string(str(value)).sql(dialect="databricks")


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="databricks")


def read_files_sql(uri: str, fmt: str) -> str:
    """``read_files(uri, format => ..., ...)``: the folder's files of one format, its subfolders
    left out (the historical folder of the incremental one)."""
    if fmt not in FORMAT_OPTIONS:
        raise ValueError(f"format {fmt!r}: use one of {sorted(FORMAT_OPTIONS)}")
    options = {**FORMAT_OPTIONS[fmt], "recursiveFileLookup": False, "rescuedDataColumn": RESCUED}
    args = ", ".join(f"{k} => {_literal(v)}" for k, v in options.items())
    return f"read_files({_literal(uri)}, {args})"


def file_rows_sql(uri: str, fmt: str, incremental_field: str, since: bool, start_date: bool) -> str:
    """The loadable rows of the folder's files, with the loaders' lineage columns (``_cdp_file``,
    ``_cdp_loaded_at``) and the watermark column as a TIMESTAMP. ``since``: only rows newer than
    the watermark (a ``?``); ``start_date``: and not before it (the next ``?``)."""
    field = _ident(check_identifier(incremental_field, "incremental_field"))
    stamp = f"try_cast({field} AS TIMESTAMP)"
    where = [f"{stamp} IS NOT NULL", f"{RESCUED} IS NULL"]
    if since:
        where.append(f"{stamp} > CAST(? AS TIMESTAMP)")
    if start_date:
        where.append(f"{stamp} >= CAST(? AS TIMESTAMP)")
    return (
        f"SELECT * EXCEPT ({field}, {RESCUED}), {stamp} AS {field}, "
        f"_metadata.file_name AS `_cdp_file`, current_timestamp() AS `_cdp_loaded_at`\n"
        f"FROM {read_files_sql(uri, fmt)}\n"
        f"WHERE " + " AND ".join(where)
    )


def rejected_rows_sql(uri: str, fmt: str, incremental_field: str) -> str:
    """The rows of the folder's files that cannot be loaded, with the file and the reason (the
    warehouse does not report a row's number in its file: ``row`` is NULL)."""
    field = _ident(check_identifier(incremental_field, "incremental_field"))
    reason = (
        f"CASE WHEN {RESCUED} IS NOT NULL THEN concat('values that do not fit the file''s "
        f"columns: ', {RESCUED}) WHEN {field} IS NULL THEN "
        f"{_literal(f'{incremental_field} is empty; every row needs one, in ISO format like 2024-06-01 12:00:00')} "
        f"ELSE concat({_literal(incremental_field + ' ')}, {field}, ' is not a date/time') END"
    )
    return (
        f"SELECT _metadata.file_name AS `file`, CAST(NULL AS BIGINT) AS `row`, {reason} AS `reason`, "
        f"left(to_json(struct(*)), 1000) AS `raw`\n"
        f"FROM {read_files_sql(uri, fmt)}\n"
        f"WHERE {RESCUED} IS NOT NULL OR try_cast({field} AS TIMESTAMP) IS NULL"
    )


# ---------------------------------------------------------------------------- the statements
# ``table_sql`` is the engine's quoted table name (``Dialect.table_name``).


def create_empty_from_files_sql(table_sql: str, uri: str, fmt: str, incremental_field: str) -> str:
    """The table with the files' columns and no row (parameter markers are not allowed in DDL:
    the table is created empty, then filled by ``insert_file_rows_sql``)."""
    return (
        f"CREATE TABLE {table_sql} AS SELECT * FROM "
        f"({file_rows_sql(uri, fmt, incremental_field, False, False)}) LIMIT 0"
    )


def insert_file_rows_sql(
    table_sql: str, uri: str, fmt: str, incremental_field: str, since: bool, start_date: bool
) -> str:
    """Append the loadable rows by column name (``since``/``start_date``: see ``file_rows_sql``)."""
    return f"INSERT INTO {table_sql} BY NAME\n{file_rows_sql(uri, fmt, incremental_field, since, start_date)}"


def create_from_files_sql(table_sql: str, uri: str, fmt: str, incremental_field: str) -> str:
    """A table holding every loadable row of the folder's files."""
    return f"CREATE TABLE {table_sql} AS\n{file_rows_sql(uri, fmt, incremental_field, False, False)}"


def record_rejections_sql(table_sql: str, uri: str, fmt: str, incremental_field: str) -> str:
    """Append the rejected rows not recorded yet (by file, reason and text); the mode and the
    run id are the two ``?`` parameters."""
    return (
        f"INSERT INTO {table_sql} (`file`, `row`, `reason`, `raw`, `mode`, `run_id`, `rejected_at`)\n"
        f"SELECT r.`file`, r.`row`, r.`reason`, r.`raw`, ?, ?, current_timestamp()\n"
        f"FROM ({rejected_rows_sql(uri, fmt, incremental_field)}) AS r\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM {table_sql} AS x "
        f"WHERE x.`file` = r.`file` AND x.`reason` = r.`reason` AND x.`raw` <=> r.`raw`)"
    )
