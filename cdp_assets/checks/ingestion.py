"""Ingestion checks: the table exists and has rows, the latest load succeeded, the watermark
never moves backwards, no rejected row is still outstanding (a warning), the latest load
skipped no row (a warning: rows older than start_date or already loaded are counted, never
dropped silently). With the monitoring check of the same table (volume_anomaly) they are
evaluated in the ingestion step, after its loads: the rows come from the loads, the tables'
existence and columns from the step's description of them. What the loads cannot know for both
raw tables of the object, the log's history of their loads and the rejected rows still
outstanding (earlier runs' included), is read before the loads with the object's file records
(``step_start``: one query, none while the object has no bookkeeping yet), and the step adds
what its loads wrote (``measures_after_step``): no query after the loads. Loads that write their
bookkeeping themselves (read in the warehouse: connectors/s3_in_warehouse.py) are measured after
them by one query (``object_measures``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity

from cdp_assets.checks import Check, check_result, column_names
from cdp_assets.checks import monitoring
from cdp_assets.connectors.loading import file_records
from cdp_assets.connectors.local_files import FileRecord
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.checks import (
    LOAD_COLUMNS,
    START_FINGERPRINT,
    ingestion_measures_sql,
    ingestion_start_sql,
    outstanding_rejections_sql,
)
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import FILE_STATUS


@dataclass
class RawTableMeasures:
    """What the step knows of a raw table after its load: its rows (None: no table), its
    outstanding rejected rows, and the loads of its object and mode, oldest first."""

    table: TableRef
    rows: int | None
    rejected: int
    rejected_table: TableRef
    rejected_superseded: bool
    loads: pd.DataFrame


@dataclass
class StepStart:
    """What an ingestion step read of its object before its loads: the loads of its object in
    the log (``mode`` and ``LOAD_COLUMNS``, oldest first), the outstanding rejected rows per mode,
    whether the rejected table has ``superseded_at``, and the newest version of each (mode, file)
    of its file records, with the file's status when it was read."""

    loads: pd.DataFrame
    rejected: dict[str, int]
    rejected_superseded: bool
    records: dict[tuple[str, str], FileRecord]
    # What the loads read before they load, when the step read it (``for_loads``): the files
    # fingerprint of the object's last successful historical load (``last_fingerprint``), and the
    # newest incremental field of each existing table asked (``current_watermark``'s value).
    fingerprint: str | None = None
    newest: dict[TableRef, object] | None = None


def step_start(
    wh: WarehouseResource,
    modes: list[str],
    have: dict,
    log: TableRef,
    rejected: TableRef,
    files: TableRef,
    source: str,
    obj: str,
    for_loads: list[tuple[TableRef, str]] | None = None,
) -> StepStart:
    """One query (``ingestion_start_sql``) of the tables of ``log``, ``rejected`` and ``files``
    that exist (``have``: the step's description of them); none when none does (an object's
    first load on a new warehouse)."""
    exists = {ref: have[ref] is not None for ref in (log, rejected, files)}
    superseded = "superseded_at" in column_names(have[rejected])
    if not any(exists.values()):
        return StepStart(_no_loads(), {mode: 0 for mode in modes}, superseded, {})
    sql = ingestion_start_sql(
        modes,
        log if exists[log] else None,
        set(column_names(have[log])),
        rejected if exists[rejected] else None,
        superseded,
        files if exists[files] else None,
        # Read only where the log keeps fingerprints: otherwise the loads ask as before.
        for_loads if for_loads is not None and START_FINGERPRINT in column_names(have[log]) else None,
        files_status=FILE_STATUS in column_names(have[files]),
    )
    params = (modes if exists[rejected] else []) + [v for ref in (log, files) if exists[ref] for v in (source, obj)]
    df = wh.fetch(sql, params)
    head, records = df[df["part"] == "load"], df[df["part"] == "file"]
    first = head.iloc[0]
    return StepStart(
        loads=head[head["status"].notna()][["mode", *LOAD_COLUMNS]].reset_index(drop=True),
        rejected={mode: _int(first[f"rejected_{i}"]) for i, mode in enumerate(modes)},
        rejected_superseded=superseded,
        # ordered by loaded_at: the newest record of a file wins
        records=file_records(records),
        **(_for_loads(head, for_loads) if START_FINGERPRINT in head.columns else {}),
    )


def _for_loads(head: pd.DataFrame, for_loads: list[tuple[TableRef, str]]) -> dict:
    """``StepStart``'s ``fingerprint`` and ``newest`` out of the start query's load rows (oldest
    first), as ``last_fingerprint`` and ``current_watermark`` read them."""
    done = head[(head["mode"] == "historical") & (head["status"] == "success")]
    first = head.iloc[0]
    return {
        "fingerprint": done.iloc[-1][START_FINGERPRINT] if len(done) else None,
        "newest": {ref: first[f"newest_{i}"] for i, (ref, _) in enumerate(for_loads)},
    }


def _no_loads() -> pd.DataFrame:
    return pd.DataFrame(columns=["mode", *LOAD_COLUMNS])


def measures_after_step(
    start: StepStart,
    tables: dict[str, tuple[TableRef, int | None]],
    rejected: TableRef,
    written: list[tuple[TableRef, pd.DataFrame]],
    superseded: dict[str, int],
    log_name: str,
) -> dict[str, RawTableMeasures]:
    """{mode: measures} of one object's raw tables after the step's loads, without a query: what
    the step read at its start and what its loads wrote since (``written``: every frame its
    units appended; ``superseded``: the outstanding rejections it marked, per mode). The log
    then holds the start's loads and the step's own rows, written after them; an outstanding
    rejection is one of the start's, or one the step wrote, unless the step superseded it."""
    logged = [df for ref, df in written if ref.name == log_name]
    new_rejections = [df for ref, df in written if ref == rejected]
    ours = pd.concat(logged, ignore_index=True).sort_values("loaded_at", kind="stable") if logged else _no_loads()
    parts = [df for df in (start.loads, ours[["mode", *LOAD_COLUMNS]]) if len(df)]
    loads = pd.concat(parts, ignore_index=True) if parts else _no_loads()
    added = pd.concat(new_rejections, ignore_index=True)["mode"].value_counts() if new_rejections else {}
    counts = {mode: start.rejected.get(mode, 0) + int(added.get(mode, 0)) - superseded.get(mode, 0) for mode in tables}
    # A rejection the step wrote carries superseded_at: the table has the column from then on.
    has_superseded = start.rejected_superseded or bool(new_rejections)
    return _measures(tables, loads, counts, rejected, has_superseded)


def _measures(
    tables: dict[str, tuple[TableRef, int | None]],
    loads: pd.DataFrame,
    rejected_rows: dict[str, int],
    rejected: TableRef,
    superseded: bool,
) -> dict[str, RawTableMeasures]:
    return {
        mode: RawTableMeasures(
            table=ref,
            rows=rows,
            rejected=rejected_rows[mode],
            rejected_table=rejected,
            rejected_superseded=superseded,
            loads=loads[loads["mode"] == mode].reset_index(drop=True),
        )
        for mode, (ref, rows) in tables.items()
    }


def object_measures(
    wh: WarehouseResource,
    tables: dict[str, tuple[TableRef, int | None]],
    have: dict,
    log: TableRef,
    rejected: TableRef,
    source: str,
    obj: str,
) -> dict[str, RawTableMeasures]:
    """{mode: measures} of one object's raw tables, ``tables`` being {mode: (table, rows the load
    left in it, None when it does not exist)} and ``have`` the step's description of the log
    and the rejected table (None: not there). One query for every mode."""
    modes = list(tables)
    rejected_cols = column_names(have[rejected])
    superseded = "superseded_at" in rejected_cols
    sql = ingestion_measures_sql(
        modes,
        log if have[log] is not None else None,
        set(column_names(have[log])),
        rejected if have[rejected] is not None else None,
        superseded,
    )
    params = (modes if have[rejected] is not None else []) + ([source, obj] if have[log] is not None else [])
    df = wh.fetch(sql, params)
    first = df.iloc[0]
    loads = df[df["status"].notna()] if "status" in df.columns else _no_loads()
    counts = {mode: _int(first[f"rejected_{i}"]) for i, mode in enumerate(tables)}
    return _measures(tables, loads, counts, rejected, superseded)


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


def raw_table_checks(rejected: TableRef, cfg) -> list[Check]:
    """The checks of one raw table, evaluated by its ingestion step (``raw_table_results``)."""
    return [
        Check("has_rows", "The table exists (error) and has rows (warning when empty)."),
        Check("latest_load_succeeded", "The latest load of this table is logged as success."),
        Check("watermark_never_moves_backwards", "Successive successful loads never lower the watermark."),
        Check(
            "no_rejected_rows",
            (
                f"No rejected row of this load mode is still outstanding (rejected rows are kept in "
                f"{rejected.display}; a later version of their file supersedes them)."
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


def raw_table_results(wh: WarehouseResource, m: RawTableMeasures, mode: str, cfg) -> dict[str, AssetCheckResult]:
    """Every check of ``raw_table_checks`` from the table's measures (and, only when some rejected
    rows are outstanding, a query for examples of them)."""
    return {
        "has_rows": has_rows(m),
        "latest_load_succeeded": latest_load_succeeded(m),
        "watermark_never_moves_backwards": watermark_never_moves_backwards(m),
        "no_rejected_rows": no_rejected_rows(m, rejection_examples(wh, m, mode)),
        "no_skipped_rows": no_skipped_rows(m),
        **monitoring.raw_table_results(m.loads, cfg),
    }
