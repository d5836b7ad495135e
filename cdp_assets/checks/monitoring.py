"""Monitoring checks (warnings): freshness and volume of the raw loads, the coverage trend, and
the share of the largest identity cluster (a symptom of over-merging)."""

from datetime import datetime, timezone

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.assets.unification import enrich_tables, enriched_ref
from cdp_assets.checks import check_result
from cdp_assets.checks.ingestion import object_loads
from cdp_assets.config.models import LoadedConfig
from cdp_assets.connectors.loading import LOG_TABLE
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef, quote

HISTORY = 7  # loads of trailing history the volume check compares against
# Below this many rows with an id, one person's records are a large share by nature.
MIN_ROWS_FOR_SHARE = 1000


def volume_anomaly(loaded_rows: list[int], factor: float) -> tuple[bool, dict]:
    """The latest non-empty load against the mean of up to HISTORY earlier non-empty loads:
    whether it is anomalous, and the check's measurement (see ``check_result``)."""
    loads = [n for n in loaded_rows if n > 0]
    if len(loads) < 4:
        return False, {"measured": None, "reason": f"not judged: {len(loads)} non-empty load(s), 4 needed for a trailing mean"}
    latest, trailing = loads[-1], loads[-1 - HISTORY : -1]
    mean = sum(trailing) / len(trailing)
    ratio = latest / mean  # mean > 0: only non-empty loads are kept
    details = {"latest_rows": latest, "trailing_mean_rows": round(mean, 1)}
    return (ratio > factor or ratio < 1 / factor), {"measured": round(ratio, 3), **details}


def build_monitoring_checks(loaded: LoadedConfig) -> list:
    cfg = loaded.pipeline.checks
    log = TableRef(loaded.pipeline.src_schema, LOG_TABLE)
    checks = []
    for source, obj in loaded.pipeline.source_objects():
        for mode, ref in ingestion_refs(loaded, source, obj).items():

            def _make(ref=ref, mode=mode, source=source, obj=obj):
                @asset_check(asset=table_key(ref), name="fresh", description=f"A successful load within {cfg.freshness_hours} hours.")
                def fresh(warehouse: WarehouseResource) -> AssetCheckResult:
                    loads = object_loads(warehouse, log, source.name, obj.name, mode)
                    ok = loads[loads["status"] == "success"]
                    hours = {"threshold": cfg.freshness_hours, "unit": "hours since the last successful load", "comparison": "at_most"}
                    if ok.empty:
                        return check_result(False, measured=None, **hours, severity=AssetCheckSeverity.WARN, reason="never loaded successfully")
                    last = pd.Timestamp(ok["loaded_at"].max())
                    age = (datetime.now(timezone.utc).replace(tzinfo=None) - last.to_pydatetime()).total_seconds() / 3600
                    return check_result(age <= cfg.freshness_hours, measured=round(age, 2), **hours, severity=AssetCheckSeverity.WARN)

                @asset_check(asset=table_key(ref), name="volume_anomaly", description=f"The latest load is within {cfg.volume_anomaly_factor}x of the trailing loads.")
                def volume(warehouse: WarehouseResource) -> AssetCheckResult:
                    loads = object_loads(warehouse, log, source.name, obj.name, mode)
                    rows = [int(n) for n in loads[loads["status"] == "success"]["records_loaded"]]
                    anomalous, measurement = volume_anomaly(rows, cfg.volume_anomaly_factor)
                    return check_result(
                        not anomalous,
                        threshold=cfg.volume_anomaly_factor,
                        unit="x the trailing mean of loaded rows",
                        comparison="within_factor",
                        severity=AssetCheckSeverity.WARN,
                        **measurement,
                    )

                return [fresh, volume]

            checks.extend(_make())

    if loaded.unification is None:
        return checks
    plans = u.build_id_plans(loaded)
    for alias in enrich_tables(plans):
        target = enriched_ref(loaded.unification.schema, alias)

        def _trend(target=target):
            @asset_check(
                asset=table_key(target),
                name="coverage_trend",
                description=f"Coverage did not drop more than {cfg.coverage_drop_max_points} points since the previous run.",
            )
            def coverage_trend(context: AssetCheckExecutionContext) -> AssetCheckResult:
                records = context.instance.fetch_materializations(table_key(target), limit=2).records
                series = [r.asset_materialization.metadata.get("coverage_pct") for r in records if r.asset_materialization]
                values = [s.value for s in series if s is not None]
                points = {"threshold": cfg.coverage_drop_max_points, "unit": "points of coverage lost", "comparison": "at_most"}
                if len(values) < 2:
                    return check_result(True, measured=None, **points, severity=AssetCheckSeverity.WARN, reason="not judged: no previous run to compare")
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

            return coverage_trend

        checks.append(_trend())

    for plan in plans:

        def _largest(plan=plan):
            # On the result statistics: they are built after every enriched table, which this
            # check reads.
            stats = plan.ref("result_key_stats")

            @asset_check(
                asset=table_key(stats),
                name="largest_component_share",
                description=f"No canonical id holds more than {cfg.largest_component_max_pct}% of the rows with an id.",
            )
            def largest_component_share(warehouse: WarehouseResource) -> AssetCheckResult:
                counts = []
                for t in plan.tables:
                    enriched = enriched_ref(plan.schema, t.alias)
                    if warehouse.table_exists(enriched):
                        counts.append(f"SELECT {quote(plan.name)} AS cid FROM {enriched.sql} WHERE {quote(plan.name)} IS NOT NULL")
                share_of = {"threshold": cfg.largest_component_max_pct, "unit": "% of the rows with an id", "comparison": "at_most"}
                if not counts:
                    return check_result(False, measured=None, **share_of, severity=AssetCheckSeverity.WARN, reason="no enriched table exists")
                row = warehouse.fetch(
                    "SELECT MAX(n) AS largest, SUM(n) AS total FROM (SELECT cid, COUNT(*) AS n FROM ("
                    + " UNION ALL ".join(counts)
                    + ") AS r GROUP BY cid) AS c"
                ).iloc[0]
                # No row with an id gives one row of NULLs (pandas NA, whose truth value raises).
                largest, total = (0 if pd.isna(row[c]) else int(row[c]) for c in ("largest", "total"))
                share = round(100.0 * largest / total, 3) if total else 0.0
                judged = total >= MIN_ROWS_FOR_SHARE
                return check_result(
                    share <= cfg.largest_component_max_pct or not judged,
                    measured=share,
                    **share_of,
                    severity=AssetCheckSeverity.WARN,
                    reason="" if judged else f"not judged: {total} row(s) with an id, {MIN_ROWS_FOR_SHARE} needed",
                    largest_component_rows=largest,
                    rows_with_id=total,
                )

            return largest_component_share

        checks.append(_largest())
    return checks
