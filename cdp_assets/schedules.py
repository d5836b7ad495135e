"""Jobs, schedules and automation, and who owns the downstream refresh.

- Ingestion: the `daily_ingestion` schedule (02:00 by default), and the file-drop / watermark
  sensors when data lands.
- Everything downstream of ingestion (hist-union, staging, unification, the report): automation
  (`cdp_automation`, ``eager() & all_deps_blocking_checks_passed()``), as soon as new data is
  loaded (SPEC §6: new data starts a refresh of everything downstream).
- The `daily_unification` schedule (04:00 by default) is the backstop, not a second owner: it
  starts the downstream refresh only when some loaded data is newer than the unification's
  tables (automation stopped, or its refresh failed). So a day with new data gives one
  unification run, not one from automation and one from the schedule.
"""

from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from cdp_assets.config.models import LoadedConfig

INGESTION_JOB = "cdp_ingestion"
DOWNSTREAM_JOB = "cdp_refresh_downstream"
DOWNSTREAM_GROUPS = ("hist_union", "staging", "unification", "report")


def build_jobs() -> list:
    return [
        define_asset_job(
            INGESTION_JOB, selection=AssetSelection.groups("ingestion"), description="Load new source data."
        ),
        define_asset_job(
            DOWNSTREAM_JOB,
            selection=AssetSelection.groups(*DOWNSTREAM_GROUPS),
            description="Hist-union, staging, unification and the report, from the loaded data.",
        ),
    ]


def unification_is_behind(instance, loaded_keys: Sequence[AssetKey], unified_keys: Sequence[AssetKey]) -> str | None:
    """Why the unification should run now (some loaded data is newer than one of its tables,
    or one was never built), or None when automation already refreshed it after the latest load."""

    def latest(key: AssetKey) -> float | None:
        event = instance.get_latest_materialization_event(key)
        return event.timestamp if event else None

    loads = [t for t in map(latest, loaded_keys) if t is not None]
    if not loads:
        return None
    built = {key: latest(key) for key in unified_keys}
    never = [k.to_user_string() for k, t in built.items() if t is None]
    if never:
        return f"never built: {', '.join(never[:3])}"
    stale = [k.to_user_string() for k, t in built.items() if t < max(loads)]
    return f"older than the latest load: {', '.join(stale[:3])}" if stale else None


def build_schedules(loaded: LoadedConfig, loaded_keys: Sequence[AssetKey], unified_keys: Sequence[AssetKey]) -> list:
    """``loaded_keys``: the ingestion tables; ``unified_keys``: the unification's and the report's."""
    cfg = loaded.pipeline.schedules
    status = DefaultScheduleStatus(cfg.default_status.upper())

    @schedule(
        name="daily_unification",
        job_name=DOWNSTREAM_JOB,
        cron_schedule=cfg.unification_cron,
        execution_timezone=cfg.timezone,
        default_status=status,
        description=f"Hist-union, staging, unification and report ({cfg.unification_cron}, {cfg.timezone}), "
        "when automation has not already refreshed them after the latest load.",
    )
    def daily_unification(context: ScheduleEvaluationContext):
        why = unification_is_behind(context.instance, loaded_keys, unified_keys)
        if why is None:
            return SkipReason(
                "the unification is up to date: automation refreshed it after the latest load (or nothing is loaded)"
            )
        context.log.info(f"starting the downstream refresh: {why}")
        return RunRequest(tags={"cdp/reason": why[:200]})

    return [
        ScheduleDefinition(
            name="daily_ingestion",
            job_name=INGESTION_JOB,
            cron_schedule=cfg.ingestion_cron,
            execution_timezone=cfg.timezone,
            default_status=status,
            description=f"Incremental ingestion ({cfg.ingestion_cron}, {cfg.timezone}).",
        ),
        daily_unification,
    ]


def build_automation_sensor(loaded: LoadedConfig) -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        "cdp_automation",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus(loaded.pipeline.sensors.default_status.upper()),
        minimum_interval_seconds=30,
        description="Refreshes every asset downstream of new data, once its blocking checks passed.",
    )
