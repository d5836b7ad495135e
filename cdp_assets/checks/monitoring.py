"""Monitoring checks (warnings): freshness, volume and schema drift of the raw loads, the coverage
trend, and the share of the largest identity cluster (a
symptom of over-merging).

Freshness and schema drift are Dagster's own checks (``build_last_update_freshness_checks``,
``build_column_schema_change_checks`` over the ``dagster/column_schema`` each build records): no
warehouse statement. Volume is evaluated with the raw table's other checks in its ingestion step
(checks/ingestion.py) from the same measured loads, the coverage trend with the enriched table's
(checks/unification.py) from the build's metadata; the largest share is its own step on the
result statistics."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    BetaWarning,
    DefaultSensorStatus,
    SupersessionWarning,
    build_column_schema_change_checks,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
)

from cdp_assets.assets.keys import ingestion_refs, table_key
from cdp_assets.checks import Check, _plain, asset_checks, build_metadata_this_run, check_result, described
from cdp_assets.config.models import LoadedConfig
from cdp_assets.sql import unification as u
from cdp_assets.sql.checks import largest_component_sql
from cdp_assets.sql.unification_pipeline import enriched_ref

HISTORY = 7  # loads of trailing history the volume check compares against
# Below this many rows with an id, one person's records are a large share by nature.
MIN_ROWS_FOR_SHARE = 1000
# The largest-share check's measures, as the build of the result statistics records them.
LARGEST_ROWS, WITH_ID_ROWS = "largest_component_rows", "rows_with_an_id"


def volume_anomaly(loaded_rows: list[int], factor: float) -> tuple[bool, dict]:
    """The latest non-empty load against the mean of up to HISTORY earlier non-empty loads:
    whether it is anomalous, and the check's measurement (see ``check_result``)."""
    loads = [n for n in loaded_rows if n > 0]
    if len(loads) < 4:
        return False, {
            "measured": None,
            "reason": f"not judged: {len(loads)} non-empty load(s), 4 needed for a trailing mean",
        }
    latest, trailing = loads[-1], loads[-1 - HISTORY : -1]
    mean = sum(trailing) / len(trailing)
    ratio = latest / mean  # mean > 0: only non-empty loads are kept
    details = {"latest_rows": latest, "trailing_mean_rows": round(mean, 1)}
    return (ratio > factor or ratio < 1 / factor), {"measured": round(ratio, 3), **details}


def raw_table_checks(cfg) -> list[Check]:
    return [Check("volume_anomaly", f"The latest load is within {cfg.volume_anomaly_factor}x of the trailing loads.")]


def raw_table_results(loads: pd.DataFrame, cfg) -> dict[str, AssetCheckResult]:
    """volume_anomaly of a raw table, from its loads (oldest first) as its ingestion step
    measured them for its checks."""
    ok = loads[loads["status"] == "success"]
    rows = [0 if pd.isna(n) else int(n) for n in ok["records_loaded"]]
    anomalous, measurement = volume_anomaly(rows, cfg.volume_anomaly_factor)
    volume = check_result(
        not anomalous,
        threshold=cfg.volume_anomaly_factor,
        unit="x the trailing mean of loaded rows",
        comparison="within_factor",
        severity=AssetCheckSeverity.WARN,
        **measurement,
    )
    return {"volume_anomaly": volume}


def coverage_trend_check(cfg) -> Check:
    return Check(
        "coverage_trend",
        f"Coverage did not drop more than {cfg.coverage_drop_max_points} points since the previous run.",
    )


def coverage_trend(context: AssetCheckExecutionContext, key: AssetKey, cfg) -> AssetCheckResult:
    """The coverage of the latest two materializations of an enriched table (the build's metadata)."""
    records = context.instance.fetch_materializations(key, limit=2).records
    series = [r.asset_materialization.metadata.get("coverage_pct") for r in records if r.asset_materialization]
    values = [s.value for s in series if s is not None]
    points = {"threshold": cfg.coverage_drop_max_points, "unit": "points of coverage lost", "comparison": "at_most"}
    if len(values) < 2:
        return check_result(
            True,
            measured=None,
            **points,
            severity=AssetCheckSeverity.WARN,
            reason="not judged: no previous run to compare",
        )
    now, before = values[0], values[1]
    drops = {cid: round(before[cid] - now.get(cid, 0.0), 3) for cid in before}
    worst = max(drops.values(), default=0.0)
    return check_result(
        worst <= cfg.coverage_drop_max_points,
        measured=worst,
        **points,
        severity=AssetCheckSeverity.WARN,
        coverage_pct=now,
        previous_coverage_pct=before,
    )


def raw_keys(loaded: LoadedConfig) -> list[AssetKey]:
    return [
        table_key(ref) for s, o in loaded.pipeline.source_objects() for ref in ingestion_refs(loaded, s, o).values()
    ]


def build_freshness_checks(loaded: LoadedConfig) -> list:
    """Dagster's freshness check on every raw table: a materialization (a successful load)
    within ``checks.freshness_hours`` (a warning; its alert reads Dagster's metadata under the
    convention, ``cdp_assets.checks``). One step for all raw tables, no warehouse statement."""
    with warnings.catch_warnings():  # "superseded" by FreshnessPolicy, which gives no check result to alert on
        warnings.simplefilter("ignore", SupersessionWarning)
        return list(
            build_last_update_freshness_checks(
                assets=raw_keys(loaded),
                lower_bound_delta=timedelta(hours=loaded.pipeline.checks.freshness_hours),
                severity=AssetCheckSeverity.WARN,
            )
        )


def build_freshness_sensor(loaded: LoadedConfig):
    """Evaluates the freshness checks between runs (a table goes stale when no run comes):
    Dagster's sensor for them. It starts runs (of the checks), so it follows
    ``sensors.default_status`` like the other run-starting sensors."""
    with warnings.catch_warnings():  # "superseded" by FreshnessPolicy, which raises no check result to alert on
        warnings.simplefilter("ignore", SupersessionWarning)
        return build_sensor_for_freshness_checks(
            freshness_checks=build_freshness_checks(loaded),
            name="cdp_freshness",
            default_status=DefaultSensorStatus(loaded.pipeline.sensors.default_status.upper()),
        )


def build_schema_change_checks(loaded: LoadedConfig) -> list:
    """Dagster's column_schema_change check (a warning) on the raw tables: a column added, removed
    or retyped between their latest two loads (their ``dagster/column_schema``). The raw tables'
    columns come from the sources, so a change there is drift; the staged tables' columns come
    from the staging rules in cdp.yml, so a change there is the user's own edit, not drift, and
    would warn on the first run of every edited config (docs/checks.md)."""
    with warnings.catch_warnings():  # beta in Dagster 1.13; pinned with the dagster family
        warnings.simplefilter("ignore", BetaWarning)
        return list(build_column_schema_change_checks(assets=raw_keys(loaded), severity=AssetCheckSeverity.WARN))


def build_monitoring_checks(loaded: LoadedConfig) -> list:
    """Freshness and schema drift (Dagster's), and the checks of assets no other phase checks:
    the largest share, on the result statistics (built after every enriched table, which it
    reads)."""
    cfg = loaded.pipeline.checks
    checks = [*build_freshness_checks(loaded), *build_schema_change_checks(loaded)]
    if loaded.unification is None:
        return checks
    for plan in u.build_id_plans(loaded):
        share_check = Check(
            "largest_component_share",
            f"No canonical id holds more than {cfg.largest_component_max_pct}% of the rows with an id.",
        )

        def evaluate(context, warehouse, plan=plan):
            enriched = [enriched_ref(plan.schema, t.alias) for t in plan.tables]
            have = described(warehouse, *enriched, context=context)
            present = [ref for ref in enriched if have[ref] is not None]
            share_of = {
                "threshold": cfg.largest_component_max_pct,
                "unit": "% of the rows with an id",
                "comparison": "at_most",
            }
            if not present:
                return {
                    "largest_component_share": check_result(
                        False,
                        measured=None,
                        **share_of,
                        severity=AssetCheckSeverity.WARN,
                        reason="no enriched table exists",
                    )
                }
            # Measured with the enriched tables' coverage by this run's build of the statistics
            # (assets/unification.py, every enriched table then built), else one query.
            built = build_metadata_this_run(context, plan.ref("result_key_stats"))
            if LARGEST_ROWS in built and WITH_ID_ROWS in built:
                largest, total = (int(_plain(built[k])) for k in (LARGEST_ROWS, WITH_ID_ROWS))
            else:
                row = warehouse.fetch(largest_component_sql(plan.name, present)).iloc[0]
                # No row with an id gives one row of NULLs (pandas NA, whose truth value raises).
                largest, total = (0 if pd.isna(row[c]) else int(row[c]) for c in ("largest", "total"))
            share = round(100.0 * largest / total, 3) if total else 0.0
            judged = total >= MIN_ROWS_FOR_SHARE
            return {
                "largest_component_share": check_result(
                    share <= cfg.largest_component_max_pct or not judged,
                    measured=share,
                    **share_of,
                    severity=AssetCheckSeverity.WARN,
                    reason="" if judged else f"not judged: {total} row(s) with an id, {MIN_ROWS_FOR_SHARE} needed",
                    largest_component_rows=largest,
                    rows_with_id=total,
                )
            }

        checks.append(asset_checks(table_key(plan.ref("result_key_stats")), [share_check], evaluate))
    return checks
