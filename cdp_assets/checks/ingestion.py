"""Ingestion checks: the table exists and has rows, the latest load succeeded, the watermark
never moves backwards, no rejected row is still outstanding (a warning), the latest load
skipped no row (a warning: rows older than start_date or already loaded are counted, never
dropped silently). With the monitoring check of the same table (volume_anomaly) they
are one step per raw table, measured by one description and one query (``raw_table_measures``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.checks import Check, asset_checks, check_result, column_names, described
from cdp_assets.checks import monitoring
from cdp_assets.config.models import LoadedConfig
from cdp_assets.connectors.loading import LOG_TABLE, rejected_ref
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.checks import ingestion_measures_sql, outstanding_rejections_sql
from cdp_assets.sql.dialects import TableRef


@dataclass
class RawTableMeasures:
    """What one query measured of a raw table: its rows (None: no table), its outstanding
    rejected rows, and the loads of its object and mode, oldest first."""

    table: TableRef
    rows: int | None
    rejected: int
    rejected_table: TableRef
    rejected_superseded: bool
    loads: pd.DataFrame


def raw_table_measures(
    context, wh: WarehouseResource, ref: TableRef, log: TableRef, source: str, obj: str, mode: str
) -> RawTableMeasures:
    rejected = rejected_ref(ref)
    have = described(wh, ref, log, rejected, context=context)
    rejected_cols = column_names(have[rejected])
    sql = ingestion_measures_sql(
        ref if have[ref] is not None else None,
        log if have[log] is not None else None,
        set(column_names(have[log])),
        rejected if have[rejected] is not None else None,
        "superseded_at" in rejected_cols,
    )
    params = ([mode] if have[rejected] is not None else []) + ([source, obj, mode] if have[log] is not None else [])
    df = wh.fetch(sql, params)
    first = df.iloc[0]
    loads = df[df["status"].notna()] if "status" in df.columns else df.iloc[0:0]
    return RawTableMeasures(
        table=ref,
        rows=None if pd.isna(first["table_rows"]) else int(first["table_rows"]),
        rejected=0 if pd.isna(first["rejected_rows"]) else int(first["rejected_rows"]),
        rejected_table=rejected,
        rejected_superseded="superseded_at" in rejected_cols,
        loads=loads.reset_index(drop=True),
    )


def _int(value) -> int:
    return 0 if pd.isna(value) else int(value)


def has_rows(m: RawTableMeasures) -> AssetCheckResult:
    if m.rows is None:
        return check_result(
            False,
            measured=None,
            threshold=1,
            unit="rows",
            comparison="at_least",
            reason=f"{m.table.display} does not exist",
        )
    return check_result(
        m.rows > 0, measured=m.rows, threshold=1, unit="rows", comparison="at_least", severity=AssetCheckSeverity.WARN
    )


def latest_load_succeeded(m: RawTableMeasures) -> AssetCheckResult:
    if m.loads.empty:
        return check_result(
            False,
            measured=None,
            threshold="success",
            unit="",
            comparison="equals",
            reason="no load recorded in ingestion_log",
        )
    last = m.loads.iloc[-1]
    rows = m.rows or 0
    # A rerun with nothing new is a success; a success that left the table empty is not.
    ok = last["status"] == "success" and (_int(last["records_loaded"]) > 0 or rows > 0)
    return check_result(
        bool(ok),
        measured=str(last["status"]),
        threshold="success",
        unit="",
        comparison="equals",
        reason="" if ok or last["status"] != "success" else "the load succeeded but the table is empty",
        records_loaded=_int(last["records_loaded"]),
        table_rows=rows,
        message=str(last["message"] or ""),
    )


def watermark_never_moves_backwards(m: RawTableMeasures) -> AssetCheckResult:
    marks = [w for w in m.loads[m.loads["status"] == "success"]["watermark"] if isinstance(w, str) and w]
    backwards = [(a, b) for a, b in zip(marks, marks[1:]) if b < a]
    return check_result(
        not backwards,
        measured=len(backwards),
        threshold=0,
        unit="backward move(s)",
        comparison="at_most",
        reason="" if marks else "no successful load with a watermark yet",
        loads=len(marks),
        latest_watermark=marks[-1] if marks else "",
    )


def no_rejected_rows(m: RawTableMeasures, examples: list[str]) -> AssetCheckResult:
    return check_result(
        m.rejected == 0,
        measured=m.rejected,
        threshold=0,
        unit="rejected row(s)",
        comparison="at_most",
        severity=AssetCheckSeverity.WARN,
        rejected_table=m.rejected_table.display,
        examples="; ".join(examples),
    )


def no_skipped_rows(m: RawTableMeasures) -> AssetCheckResult:
    last = m.loads.iloc[-1] if not m.loads.empty else None
    before = 0 if last is None else _int(last["records_skipped_before_start_date"])
    dupes = 0 if last is None else _int(last["records_skipped_duplicate"])
    return check_result(
        before + dupes == 0,
        measured=before + dupes,
        threshold=0,
        unit="skipped row(s)",
        comparison="at_most",
        severity=AssetCheckSeverity.WARN,
        skipped_before_start_date=before,
        skipped_already_loaded=dupes,
        message="" if last is None else str(last["message"] or ""),
    )


def rejection_examples(wh: WarehouseResource, m: RawTableMeasures, mode: str) -> list[str]:
    """Up to three outstanding rejected rows, read only when there are some (a failed check)."""
    if not m.rejected:
        return []
    rows = wh.fetch(outstanding_rejections_sql(m.rejected_table, m.rejected_superseded), [mode])
    return [f"{r.file} row {r.row}: {r.reason}" for r in rows.head(3).itertuples()]


def build_ingestion_checks(loaded: LoadedConfig) -> list:
    cfg = loaded.pipeline.checks
    checks = []
    log = TableRef(loaded.pipeline.src_schema, LOG_TABLE)
    for source, obj in loaded.pipeline.source_objects():
        for mode, ref in ingestion_refs(loaded, source, obj).items():
            specs = [
                Check("has_rows", "The table exists (error) and has rows (warning when empty)."),
                Check("latest_load_succeeded", "The latest load of this table is logged as success."),
                Check("watermark_never_moves_backwards", "Successive successful loads never lower the watermark."),
                Check(
                    "no_rejected_rows",
                    (
                        f"No rejected row of this load mode is still outstanding (rejected rows are kept in "
                        f"{rejected_ref(ref).display}; a later version of their file supersedes them)."
                    ),
                ),
                Check(
                    "no_skipped_rows",
                    (
                        "The latest load skipped no row: rows older than start_date and exact copies of rows already "
                        "loaded are counted in ingestion_log (a warning, never silent)."
                    ),
                ),
                *monitoring.raw_table_checks(cfg),
            ]

            def evaluate(context, warehouse, ref=ref, mode=mode, source=source.name, obj=obj.name):
                m = raw_table_measures(context, warehouse, ref, log, source, obj, mode)
                return {
                    "has_rows": has_rows(m),
                    "latest_load_succeeded": latest_load_succeeded(m),
                    "watermark_never_moves_backwards": watermark_never_moves_backwards(m),
                    "no_rejected_rows": no_rejected_rows(m, rejection_examples(warehouse, m, mode)),
                    "no_skipped_rows": no_skipped_rows(m),
                    **monitoring.raw_table_results(m.loads, cfg),
                }

            checks.append(asset_checks(table_key(ref), specs, evaluate))
    return checks
