"""Choose the warehouse resource from the config (the one place that maps engine kind -> class)."""

from __future__ import annotations

import os

from dagster import EnvVar

from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.treasure_data import TreasureDataWarehouse


def build_warehouse(loaded: LoadedConfig) -> WarehouseResource:
    engine = loaded.pipeline.engine
    if engine.kind == "duckdb":
        return DuckDBWarehouse(
            path=str(loaded.duckdb_path),
            memory_limit=engine.duckdb.memory_limit,
            threads=engine.duckdb.threads,
            statement_timeout_seconds=engine.statement_timeout_seconds,
        )
    if engine.kind == "databricks":
        return build_databricks(loaded)
    return build_treasure_data(loaded)


def build_treasure_data(loaded: LoadedConfig) -> TreasureDataWarehouse:
    """The API key is an EnvVar: loading definitions and rendering SQL need none; a run
    without it fails at start naming the variable."""
    engine = loaded.pipeline.engine
    td = engine.treasure_data
    return TreasureDataWarehouse(
        apikey=EnvVar(td.apikey_env),
        apikey_env=td.apikey_env,
        # TD_ENDPOINT (not a secret) points a config at another region or a proxy.
        endpoint=td.endpoint or os.environ.get("TD_ENDPOINT") or td.api_endpoint,
        query_engine=td.query_engine,
        database=loaded.pipeline.src_schema,
        job_poll_seconds=td.poll_seconds,
        max_concurrent_steps=td.concurrent_steps,
        statement_timeout_seconds=engine.statement_timeout_seconds,
    )


def build_databricks(loaded: LoadedConfig) -> DatabricksWarehouse:
    """Secrets are EnvVar fields: loading definitions and rendering SQL need none; a run without
    the variable fails at start naming it."""
    engine = loaded.pipeline.engine
    db = engine.databricks
    if db.connection == "local_spark":
        # Local tables are parquet, not Delta: no OPTIMIZE (a capability), open-source Spark SQL.
        return DatabricksWarehouse(
            local_spark_dir=str((loaded.config_path.parent / db.local_spark_dir).resolve()),
            sql_dialect="spark",
            table_format="parquet",
            optimize_tables=False,
            use_catalog=False,
            catalog=None,
            statement_timeout_seconds=engine.statement_timeout_seconds,
        )
    secrets = (
        {"access_token": EnvVar(db.token_env)}
        if db.auth == "pat"
        else {"client_id": EnvVar(db.client_id_env), "client_secret": EnvVar(db.client_secret_env)}
    )
    settings = dict(
        server_hostname=EnvVar(db.host_env),
        http_path=EnvVar(db.http_path_env),
        auth=db.auth,
        catalog=db.catalog,
        use_catalog=db.use_catalog,
        optimize_tables=db.optimize,
        max_concurrent_steps=db.concurrent_steps,
        read_cloud_files=db.read_s3_in_warehouse,
        token_env=db.token_env if db.auth == "pat" else db.client_secret_env,
        statement_timeout_seconds=engine.statement_timeout_seconds,
        **secrets,
    )
    if db.staging_volume is not None:
        from cdp_assets.resources.databricks_workspace import build_volume_warehouse

        return build_volume_warehouse(db, settings)
    return DatabricksWarehouse(**settings)


def unset_secret_variables(warehouse: WarehouseResource) -> list[str]:
    """The environment variables the warehouse's secrets come from (its ``EnvVar`` fields) that
    are not set: what a user must set before anything can connect."""
    return sorted(
        {
            v.env_var_name
            for v in warehouse.__dict__.values()
            if isinstance(v, EnvVar) and not os.environ.get(v.env_var_name)
        }
    )


def connected_warehouse(loaded: LoadedConfig):
    """A context manager giving the config's warehouse with its ``EnvVar`` secrets read from the
    environment, for use outside a Dagster run (``cdp-assets explain``). Check
    ``unset_secret_variables`` first: a missing variable fails here with Dagster's config error."""
    return build_warehouse(loaded).process_config_and_initialize_cm()
