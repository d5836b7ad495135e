"""Jobs and schedules: incremental ingestion at 02:00 and the downstream refresh at 04:00 by
default, and the automation that refreshes everything downstream when its inputs change."""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    ScheduleDefinition,
    define_asset_job,
)

from cdp_assets.config.models import LoadedConfig

INGESTION_JOB = "cdp_ingestion"
DOWNSTREAM_JOB = "cdp_refresh_downstream"
DOWNSTREAM_GROUPS = ("hist_union", "staging", "unification", "report")


def downstream_condition() -> AutomationCondition:
    """Refresh when an input was updated, but never on top of a failed blocking check."""
    return AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()


def build_jobs() -> list:
    return [
        define_asset_job(INGESTION_JOB, selection=AssetSelection.groups("ingestion"), description="Load new source data."),
        define_asset_job(
            DOWNSTREAM_JOB,
            selection=AssetSelection.groups(*DOWNSTREAM_GROUPS),
            description="Hist-union, staging, unification and the report, from the loaded data.",
        ),
    ]


def build_schedules(loaded: LoadedConfig) -> list:
    cfg = loaded.pipeline.schedules
    return [
        ScheduleDefinition(
            name="daily_ingestion",
            job_name=INGESTION_JOB,
            cron_schedule=cfg.ingestion_cron,
            execution_timezone=cfg.timezone,
            default_status=DefaultScheduleStatus.RUNNING,
            description=f"Incremental ingestion ({cfg.ingestion_cron}, {cfg.timezone}).",
        ),
        ScheduleDefinition(
            name="daily_unification",
            job_name=DOWNSTREAM_JOB,
            cron_schedule=cfg.unification_cron,
            execution_timezone=cfg.timezone,
            default_status=DefaultScheduleStatus.RUNNING,
            description=f"Hist-union, staging, unification and report ({cfg.unification_cron}, {cfg.timezone}).",
        ),
    ]


def build_automation_sensor() -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        "cdp_automation",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Refreshes every asset downstream of new data, once its blocking checks passed.",
    )
