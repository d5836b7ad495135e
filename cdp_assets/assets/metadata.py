"""Metadata every asset attaches the same way, whatever the engine: its engine jobs, Dagster's
``kinds`` (the engine and, for loads, where the data comes from) and table metadata
(``dagster/table_name`` where the asset is defined, ``dagster/column_schema`` from the engine's
description of the table when it is built)."""

from __future__ import annotations

from dagster import MetadataValue, TableColumn, TableSchema

from cdp_assets.config.models import LoadedConfig, SourceConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef

TABLE_NAME, COLUMN_SCHEMA = "dagster/table_name", "dagster/column_schema"
# The icon Dagster shows for a connector (kinds it knows: s3, csv, parquet, json, ...).
CONNECTOR_KINDS = {"s3": "s3", "sql_database": "sql", "rest_api": "api"}
FORMAT_KINDS = {"csv": "csv", "parquet": "parquet", "jsonl": "json", "json": "json"}


def engine_jobs_metadata(warehouse: WarehouseResource) -> dict:
    """The engine's job or statement ids of this step (Treasure Data jobs with console links,
    Databricks query ids); nothing for engines without job ids (DuckDB)."""
    jobs = warehouse.take_jobs()
    if not jobs:
        return {}
    rows = "\n".join(f"| {j.job_id} | {f'[open]({j.url})' if j.url else ''} |" for j in jobs)
    return {
        "engine_job_ids": MetadataValue.json([j.job_id for j in jobs]),
        "engine_jobs": MetadataValue.md(f"| job id | link |\n|---|---|\n{rows}"),
    }


def engine_kinds(loaded: LoadedConfig) -> set[str]:
    """``duckdb``, ``databricks`` or ``treasure_data``: the engine every table asset lives in."""
    return {loaded.pipeline.engine.kind}


def source_kinds(loaded: LoadedConfig, source: SourceConfig) -> set[str]:
    """The engine, and where a load reads from: ``s3``, a file format, ``sql``, ``api`` (Dagster
    shows at most three kinds)."""
    connector = source.connector
    kinds = engine_kinds(loaded) | ({CONNECTOR_KINDS[connector.kind]} if connector.kind in CONNECTOR_KINDS else set())
    fmt = getattr(connector, "format", "auto")
    if fmt in FORMAT_KINDS:
        kinds.add(FORMAT_KINDS[fmt])
    return kinds


def table_name_metadata(ref: TableRef) -> dict:
    """Definition metadata of a table asset: which warehouse table it is."""
    return {TABLE_NAME: ref.display}


def column_schema(description: list[tuple[str, str]] | None) -> dict:
    """``dagster/column_schema`` from the engine's description of a table (nothing for a
    table that does not exist)."""
    if description is None:
        return {}
    return {COLUMN_SCHEMA: TableSchema(columns=[TableColumn(name, type or "unknown") for name, type in description])}


def table_metadata(warehouse: WarehouseResource, *refs: TableRef) -> dict[TableRef, dict]:
    """Materialization metadata of the tables a step built: the name and the column schema of
    each, from one description of them all (one catalog query on DuckDB, an API call on TD)."""
    described = warehouse.describe_tables(list(refs))
    return {ref: {**table_name_metadata(ref), **column_schema(described[ref])} for ref in refs}
