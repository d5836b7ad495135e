"""The code location: assets, checks and resources assembled from the loaded config.

``CDP_CONFIG`` names the config file (default: the example in ``examples/``).
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, definitions

from cdp_assets.sensors.alerts import build_check_failure_sensor, build_run_failure_sensor
from cdp_assets.assets.hist_union import build_hist_union_assets
from cdp_assets.assets.ingestion import build_ingestion_assets
from cdp_assets.assets.io import TableNameIOManager
from cdp_assets.assets.pools import executor_for
from cdp_assets.assets.report import build_report_asset
from cdp_assets.assets.staging import build_staging_assets
from cdp_assets.assets.unification import IO_MANAGER, build_unification_assets
from cdp_assets.checks.monitoring import build_freshness_sensor, build_monitoring_checks
from cdp_assets.checks.unification import build_unification_checks
from cdp_assets.config import LoadedConfig, load_config
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.schedules import build_automation_sensor, build_jobs, build_schedules
from cdp_assets.sensors.file_drop import build_file_drop_sensors
from cdp_assets.sensors.watermark import build_watermark_sensors

PIPELINE_JOB = "cdp_pipeline"


def build_definitions(loaded: LoadedConfig, warehouse: WarehouseResource | None = None) -> Definitions:
    """Everything of one config; ``warehouse`` replaces the engine the config names (tests wrap
    the real engine to inject faults)."""
    assets = [
        *build_ingestion_assets(loaded),
        *build_hist_union_assets(loaded),
        *build_staging_assets(loaded),
        *build_unification_assets(loaded),
    ]
    upstream = [key for a in assets for key in a.keys]
    assets.append(build_report_asset(loaded, upstream))
    groups = {key: a.group_names_by_key[key] for a in assets for key in a.keys}
    # The checks of ingestion, hist-union, staging and the master tables are on their assets,
    # evaluated in their steps; these are the ones with steps of their own (docs/checks.md).
    checks = [
        *build_unification_checks(loaded),
        *build_monitoring_checks(loaded),
    ]
    warehouse = warehouse or build_warehouse(loaded)
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[
            # Its own assets, not all: as a Component it shares a code location with a team's
            # assets. Existing warehouse tables (external assets) are inputs, not steps.
            define_asset_job(
                PIPELINE_JOB,
                selection=AssetSelection.assets(*(a for a in assets if a.is_executable)),
                description="The whole pipeline, every phase.",
            ),
            *build_jobs(),
        ],
        schedules=build_schedules(
            loaded,
            loaded_keys=[k for k, g in groups.items() if g == "ingestion"],
            unified_keys=[k for k, g in groups.items() if g in ("unification", "report")],
        ),
        sensors=[
            *build_file_drop_sensors(loaded),
            *build_watermark_sensors(loaded),
            build_automation_sensor(loaded),
            build_check_failure_sensor(loaded),
            build_run_failure_sensor(loaded),
            build_freshness_sensor(loaded),
        ],
        resources={"warehouse": warehouse, IO_MANAGER: TableNameIOManager()},
        # DuckDB: one writer, steps one after another; Databricks, TD: concurrent steps.
        executor=executor_for(warehouse),
    )


@definitions
def defs() -> Definitions:
    """The code location of ``$CDP_CONFIG``, built when Dagster loads it, not on import: the
    Component (cdp_assets/components.py) imports this module for build_definitions alone."""
    return build_definitions(load_config())
