"""Metadata every asset attaches the same way, whatever the engine."""

from __future__ import annotations

from dagster import MetadataValue

from cdp_assets.engines.base import WarehouseResource


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
