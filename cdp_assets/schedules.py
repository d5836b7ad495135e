"""Jobs, schedules and automation, and who owns which refresh.

- Ingestion: the `daily_ingestion` schedule (02:00 by default), and the file-drop / watermark
  sensors when data lands.
- Hist-union and staging: automation (`cdp_automation`). They follow new raw data at once; they
  are per source and cheap.
- Unification and the report: the `daily_unification` schedule (04:00 by default), alone. The
  unification is the expensive step and reads every source: under eager automation every
  ingestion (one per object and file drop) would start another one, and the schedule would start
  one more. So a day with new data gives one unification run, at the schedule's time.
"""

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
# Refreshed by automation as soon as their inputs change.
AUTOMATED_GROUPS = ("hist_union", "staging")
# Refreshed by the daily_unification schedule only.
SCHEDULED_GROUPS = ("unification", "report")


def downstream_condition() -> AutomationCondition:
    """Refresh when an input was updated, but never on top of a failed blocking check."""
    return AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()


def build_jobs() -> list:
    return [
        define_asset_job(INGESTION_JOB, selection=AssetSelection.groups("ingestion"), description="Load new source data."),
        define_asset_job(
            DOWNSTREAM_JOB,
            selection=AssetSelection.groups(*SCHEDULED_GROUPS),
            description="Unification and the report, from the staged data (hist-union and staging follow new data by automation).",
        ),
    ]


def build_schedules(loaded: LoadedConfig) -> list:
    cfg = loaded.pipeline.schedules
    status = DefaultScheduleStatus(cfg.default_status.upper())
    return [
        ScheduleDefinition(
            name="daily_ingestion",
            job_name=INGESTION_JOB,
            cron_schedule=cfg.ingestion_cron,
            execution_timezone=cfg.timezone,
            default_status=status,
            description=f"Incremental ingestion ({cfg.ingestion_cron}, {cfg.timezone}).",
        ),
        ScheduleDefinition(
            name="daily_unification",
            job_name=DOWNSTREAM_JOB,
            cron_schedule=cfg.unification_cron,
            execution_timezone=cfg.timezone,
            default_status=status,
            description=f"Unification and report ({cfg.unification_cron}, {cfg.timezone}); the only starter of unification.",
        ),
    ]


def build_automation_sensor(loaded: LoadedConfig) -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        "cdp_automation",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus(loaded.pipeline.sensors.default_status.upper()),
        minimum_interval_seconds=30,
        description="Refreshes hist-union and staging when new data lands, once its blocking checks passed.",
    )
