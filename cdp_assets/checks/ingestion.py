"""Ingestion checks: the table exists and has rows, the latest load succeeded, the watermark
never moves backwards, no rejected row is still outstanding (a warning), the latest load
skipped no row (a warning: rows older than start_date or already loaded are counted, never
dropped silently)."""


import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.checks import check_result
from cdp_assets.config.models import LoadedConfig
from cdp_assets.connectors.loading import LOG_TABLE, rejected_ref
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.checks import latest_load_sql, load_skips_sql, outstanding_rejections_sql
from cdp_assets.sql.dialects import TableRef


def object_loads(wh: WarehouseResource, log: TableRef, source: str, obj: str, mode: str) -> pd.DataFrame:
    if not wh.table_exists(log):
        return pd.DataFrame(columns=["status", "records_loaded", "watermark", "message", "loaded_at"])
    df = wh.fetch(latest_load_sql(log))
    df = df[(df["source"] == source) & (df["object"] == obj) & (df["mode"] == mode)]
    return df.sort_values("loaded_at", kind="stable")


def build_ingestion_checks(loaded: LoadedConfig) -> list:
    checks = []
    log = TableRef(loaded.pipeline.src_schema, LOG_TABLE)
    for source, obj in loaded.pipeline.source_objects():
        for mode, ref in ingestion_refs(loaded, source, obj).items():
            key = table_key(ref)

            def _make(ref=ref, key=key, mode=mode, source=source, obj=obj):
                @asset_check(asset=key, name="has_rows", description="The table exists (error) and has rows (warning when empty).")
                def has_rows(warehouse: WarehouseResource) -> AssetCheckResult:
                    if not warehouse.table_exists(ref):
                        return check_result(False, measured=None, threshold=1, unit="rows", comparison="at_least",
                                            reason=f"{ref.display} does not exist")
                    rows = warehouse.row_count(ref)
                    return check_result(rows > 0, measured=rows, threshold=1, unit="rows", comparison="at_least",
                                        severity=AssetCheckSeverity.WARN)

                @asset_check(asset=key, name="latest_load_succeeded", description="The latest load of this table is logged as success.")
                def latest_load_succeeded(warehouse: WarehouseResource) -> AssetCheckResult:
                    loads = object_loads(warehouse, log, source.name, obj.name, mode)
                    if loads.empty:
                        return check_result(False, measured=None, threshold="success", unit="", comparison="equals",
                                            reason="no load recorded in ingestion_log")
                    last = loads.iloc[-1]
                    rows = warehouse.row_count(ref) if warehouse.table_exists(ref) else 0
                    # A rerun with nothing new is a success; a success that left the table empty is not.
                    ok = last["status"] == "success" and (int(last["records_loaded"]) > 0 or rows > 0)
                    return check_result(
                        bool(ok),
                        measured=str(last["status"]),
                        threshold="success",
                        unit="",
                        comparison="equals",
                        reason="" if ok or last["status"] != "success" else "the load succeeded but the table is empty",
                        records_loaded=int(last["records_loaded"]),
                        table_rows=rows,
                        message=str(last["message"] or ""),
                    )

                @asset_check(asset=key, name="watermark_never_moves_backwards", description="Successive successful loads never lower the watermark.")
                def watermark_monotonic(warehouse: WarehouseResource) -> AssetCheckResult:
                    loads = object_loads(warehouse, log, source.name, obj.name, mode)
                    marks = [w for w in loads[loads["status"] == "success"]["watermark"] if isinstance(w, str) and w]
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

                @asset_check(
                    asset=key,
                    name="no_rejected_rows",
                    description=(
                        f"No rejected row of this load mode is still outstanding (rejected rows are kept in "
                        f"{rejected_ref(ref).display}; a later version of their file supersedes them)."
                    ),
                )
                def no_rejected_rows(warehouse: WarehouseResource) -> AssetCheckResult:
                    target = rejected_ref(ref)
                    if not warehouse.table_exists(target):
                        return check_result(True, measured=0, threshold=0, unit="rejected row(s)", comparison="at_most",
                                            severity=AssetCheckSeverity.WARN)
                    has_superseded = "superseded_at" in warehouse.columns(target)
                    rows = warehouse.query(warehouse.dialect.render(outstanding_rejections_sql(target, has_superseded)), [mode])
                    examples = [f"{r.file} row {r.row}: {r.reason}" for r in rows.head(3).itertuples()]
                    return check_result(
                        rows.empty,
                        measured=len(rows),
                        threshold=0,
                        unit="rejected row(s)",
                        comparison="at_most",
                        severity=AssetCheckSeverity.WARN,
                        rejected_table=target.display,
                        examples="; ".join(examples),
                    )

                @asset_check(
                    asset=key,
                    name="no_skipped_rows",
                    description=(
                        "The latest load skipped no row: rows older than start_date and exact copies of rows already "
                        "loaded are counted in ingestion_log (a warning, never silent)."
                    ),
                )
                def no_skipped_rows(warehouse: WarehouseResource) -> AssetCheckResult:
                    def skipped(before: int, dupes: int, message: str = "") -> AssetCheckResult:
                        return check_result(
                            before + dupes == 0,
                            measured=before + dupes,
                            threshold=0,
                            unit="skipped row(s)",
                            comparison="at_most",
                            severity=AssetCheckSeverity.WARN,
                            skipped_before_start_date=before,
                            skipped_already_loaded=dupes,
                            message=message,
                        )

                    cols = warehouse.columns(log) if warehouse.table_exists(log) else []
                    if "records_skipped_duplicate" not in cols:
                        return skipped(0, 0)
                    loads = warehouse.fetch(load_skips_sql(log))
                    loads = loads[(loads["source"] == source.name) & (loads["object"] == obj.name) & (loads["mode"] == mode)]
                    if loads.empty:
                        return skipped(0, 0)
                    last = loads.sort_values("loaded_at", kind="stable").iloc[-1]
                    before = 0 if pd.isna(last["records_skipped_before_start_date"]) else int(last["records_skipped_before_start_date"])
                    dupes = 0 if pd.isna(last["records_skipped_duplicate"]) else int(last["records_skipped_duplicate"])
                    return skipped(before, dupes, str(last["message"] or ""))

                return [has_rows, latest_load_succeeded, watermark_monotonic, no_rejected_rows, no_skipped_rows]

            checks.extend(_make())
    return checks
