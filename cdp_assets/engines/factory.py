"""Choose the warehouse resource from the config (the one place that maps engine kind -> class)."""

from __future__ import annotations

from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.duckdb import DuckDBWarehouse


def build_warehouse(loaded: LoadedConfig) -> WarehouseResource:
    engine = loaded.pipeline.engine
    if engine.kind == "duckdb":
        return DuckDBWarehouse(
            path=str(loaded.duckdb_path),
            memory_limit=engine.duckdb.memory_limit,
            threads=engine.duckdb.threads,
            statement_timeout_seconds=engine.statement_timeout_seconds,
        )
    raise NotImplementedError(
        f"{loaded.config_path}: engine.kind {engine.kind!r} is not implemented in this version; use 'duckdb'"
    )
