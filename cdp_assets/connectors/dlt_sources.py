"""Databases and REST APIs as sources, extracted with dlt and loaded by the ingestion contract.

dlt does what a connector framework does: SQLAlchemy reflection and chunked reads for
databases (``dlt.sources.sql_database``), pagination, auth and the incremental cursor for
REST APIs (``dlt.sources.rest_api``). Its resources are iterated here, outside a dlt pipeline,
and their records become the same text frames a file gives: the loaders then filter by the
watermark, reject rows without a usable one, and append the rows and the ``ingestion_log``
row in one unit, on whichever engine the config names.

The incremental cursor starts at the raw table's watermark, so a second run asks the source
only for newer rows (the database's WHERE clause, the API's ``cursor_param``).

dagster-dlt is not used: its ``@dlt_assets`` load through a dlt destination and name assets
after dlt's tables, while our raw tables must land through the engine resource (DuckDB,
Databricks, Treasure Data, for which dlt has no destination) with their log row in the same
unit. Secrets come from the environment variables the config names and never reach a message.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd

from cdp_assets.config.models import RestApiConnector, SourceConfig, SourceObject, SqlDatabaseConnector
from cdp_assets.connectors.readers import ROW_COLUMN, FileRead, SourceFileError, _json_text, normalize_column
from cdp_assets.engines.base import mask_secret


def _secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SourceFileError(
            f"{what}: set the environment variable {name} (the config names it; the secret never goes in the file)"
        )
    return value


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, mask_secret(s))
    return text


def records_frame(records: list[dict], where: str) -> FileRead:
    """Records as text columns (nested values as JSON text, as JSON-lines files are read)."""
    rows = [
        {
            normalize_column(k): _json_text(v if not isinstance(v, datetime) else v.isoformat(sep=" "))
            for k, v in r.items()
        }
        for r in records
    ]
    names = [normalize_column(k) for r in records[:1] for k in r]
    if len(set(names)) != len(names):
        raise SourceFileError(
            f"{where}: field names {sorted(names)} are the same after normalising; rename them at the source"
        )
    frame = pd.DataFrame.from_records(rows).astype("string") if rows else pd.DataFrame()
    frame[ROW_COLUMN] = pd.Series(range(1, len(rows) + 1), dtype="int64")
    return FileRead(frame, [])


def _start(watermark: str | None, source: SourceConfig) -> datetime | None:
    """Where the cursor starts: the raw table's watermark, else start_date, else the beginning."""
    if watermark is not None:
        return pd.Timestamp(watermark).to_pydatetime()
    if source.start_date is not None:
        ts = pd.Timestamp(source.start_date)
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()
    return None


def sql_database_rows(
    source: SourceConfig, obj: SourceObject, watermark: str | None, limit: int | None = None
) -> FileRead:
    import dlt
    from dlt.sources.sql_database import sql_table

    conn = source.connector
    assert isinstance(conn, SqlDatabaseConnector)
    where = f"source {source.name!r} (sql_database, table {conn.schema_ + '.' if conn.schema_ else ''}{obj.name})"
    url = _secret(conn.credentials_env, where)
    start = _start(watermark, source)
    try:
        resource = sql_table(
            credentials=url,
            table=obj.name,
            schema=conn.schema_,
            chunk_size=conn.chunk_size,
            incremental=dlt.sources.incremental(source.incremental_field, initial_value=start)
            if start is not None
            else None,
        )
        records = list(resource.add_limit(limit) if limit else resource)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and dlt raise many kinds; the step names the source
        raise SourceFileError(f"{where}: cannot be read: {_scrub(_root_message(exc), [url])}") from None
    return records_frame(records, where)


def rest_api_rows(
    source: SourceConfig, obj: SourceObject, watermark: str | None, max_pages: int | None = None
) -> FileRead:
    from dlt.sources.rest_api import rest_api_source

    conn = source.connector
    assert isinstance(conn, RestApiConnector)
    endpoint = conn.endpoints[obj.name]
    where = f"source {source.name!r} (rest_api, {conn.base_url.rstrip('/')}/{endpoint.path})"
    secrets: list[str] = []
    client: dict = {"base_url": conn.base_url}
    if conn.auth is not None:
        a = conn.auth
        if a.type == "bearer":
            secrets.append(_secret(a.token_env, where))
            client["auth"] = {"type": "bearer", "token": secrets[-1]}
        elif a.type == "api_key":
            secrets.append(_secret(a.key_env, where))
            client["auth"] = {"type": "api_key", "name": a.name, "api_key": secrets[-1], "location": a.location}
        else:
            secrets.append(_secret(a.password_env, where))
            client["auth"] = {"type": "http_basic", "username": a.username or "", "password": secrets[-1]}
    if conn.paginator is not None:
        client["paginator"] = conn.paginator
    spec: dict = {"path": endpoint.path, "params": dict(endpoint.params)}
    if endpoint.data_selector:
        spec["data_selector"] = endpoint.data_selector
    if endpoint.paginator is not None:
        spec["paginator"] = endpoint.paginator
    start = _start(watermark, source)
    if endpoint.cursor_param and start is not None:
        spec["incremental"] = {
            "start_param": endpoint.cursor_param,
            "cursor_path": source.incremental_field,
            "initial_value": start.strftime(conn.cursor_format),
        }
    config = {"client": client, "resources": [{"name": obj.name, "endpoint": spec}]}
    try:
        resource = rest_api_source(config, name=f"cdp_{source.name}").resources[obj.name]
        records = list(resource.add_limit(max_pages) if max_pages else resource)
    except Exception as exc:  # noqa: BLE001 - requests and dlt raise many kinds; the step names the endpoint
        raise SourceFileError(f"{where}: cannot be read: {_scrub(_root_message(exc), secrets)}") from None
    return records_frame(records, where)


def _root_message(exc: BaseException) -> str:
    """dlt wraps the source's error in pipeline-step errors: the innermost says what happened."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def dlt_inputs(source: SourceConfig, obj: SourceObject, watermark: str | None) -> list[tuple[Path, object]]:
    """One input for the loaders: a name for lineage (``_cdp_file``) and how to read the rows."""
    if isinstance(source.connector, SqlDatabaseConnector):
        name = f"sql_database:{source.connector.schema_ + '.' if source.connector.schema_ else ''}{obj.name}"
        return [(Path(name), lambda: sql_database_rows(source, obj, watermark))]
    endpoint = source.connector.endpoints[obj.name]
    return [(Path(f"rest_api:{endpoint.path}"), lambda: rest_api_rows(source, obj, watermark))]


def source_columns(source: SourceConfig, obj: SourceObject) -> list[str]:
    """The columns an object will load, without loading it: the database table's reflected
    columns, or the fields of the API's first page. Raises SourceFileError naming the source."""
    if isinstance(source.connector, SqlDatabaseConnector):
        from dlt.sources.sql_database import sql_table

        conn = source.connector
        where = f"source {source.name!r} (sql_database, table {conn.schema_ + '.' if conn.schema_ else ''}{obj.name})"
        url = _secret(conn.credentials_env, where)
        try:
            schema = sql_table(credentials=url, table=obj.name, schema=conn.schema_).compute_table_schema()
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy and dlt raise many kinds
            raise SourceFileError(f"{where}: cannot be read: {_scrub(_root_message(exc), [url])}") from None
        return [normalize_column(c) for c in schema["columns"]]
    read = rest_api_rows(source, obj, None, max_pages=1)
    return [c for c in read.frame.columns if c != ROW_COLUMN]
