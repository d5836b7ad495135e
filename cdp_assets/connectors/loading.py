"""Loading source files into raw tables: incremental by watermark, historical by replacement.

Every load appends one row to ``{client}_src.ingestion_log`` in the same unit as the data, so
the log and the table never disagree. Rows that cannot be loaded go to
``{client}_src.{source}_{object}_rejected`` (file, row, reason, the row's text) in that same
unit: loaded plus rejected is every row of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from dagster import get_dagster_logger

from cdp_assets.config.models import DLT_CONNECTORS, SourceConfig, SourceObject, TableConnector
from cdp_assets.connectors.local_files import fingerprint, object_files
from cdp_assets.connectors.readers import ROW_COLUMN, FileRead, RejectedRow, SourceFileError, read_source_file
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef, quote
from cdp_assets.sql.ingestion import source_table_rows_sql

LOG_TABLE = "ingestion_log"


@dataclass
class LoadResult:
    table: TableRef
    mode: str  # incremental | historical
    records_loaded: int
    watermark: str | None
    previous_watermark: str | None
    files: list[str] = field(default_factory=list)
    status: str = "success"
    records_rejected: int = 0


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def rejected_ref(ref: TableRef) -> TableRef:
    """Where the rows of a raw table's files that could not be loaded go (both modes)."""
    base = ref.name.removesuffix("_hist")
    return ref.sibling(f"{base}_rejected")


def prepare_frame(read: FileRead, path: Path, incremental_field: str, loaded_at: datetime) -> tuple[pd.DataFrame, list[RejectedRow]]:
    """Parse the watermark column and add lineage columns. A row whose watermark is empty or not
    a date/time is rejected (it could never be loaded incrementally); a file without the
    column fails, naming it."""
    df, rejected = read.frame, list(read.rejected)
    if df.empty and len(df.columns) <= 1:
        return df.drop(columns=[ROW_COLUMN], errors="ignore"), rejected  # an empty file
    if incremental_field not in df.columns:
        raise SourceFileError(
            f"{path}: has no column {incremental_field!r} (the source's incremental_field); its columns are "
            f"{[c for c in df.columns if c != ROW_COLUMN]}. Add the column or set incremental_field to one of them"
        )
    # utc=True: values with offsets (a file spanning a DST change) become UTC; naive values are
    # taken as UTC. Stored naive, so every engine compares them the same way.
    parsed = pd.to_datetime(df[incremental_field], errors="coerce", format="mixed", utc=True)
    bad = parsed.isna().to_numpy()
    for i in bad.nonzero()[0]:
        raw = df[incremental_field].iloc[i]
        what = "is empty" if pd.isna(raw) or not str(raw).strip() else f"{str(raw)[:100]!r} is not a date/time"
        rejected.append(
            RejectedRow(int(df[ROW_COLUMN].iloc[i]), f"{incremental_field} {what}; every row needs one, in ISO format like 2024-06-01 12:00:00", _row_text(df.iloc[i]))
        )
    out = df[~bad].copy()
    out[incremental_field] = parsed[~bad].dt.tz_localize(None).astype("datetime64[us]")
    out = out.drop(columns=[ROW_COLUMN])
    out["_cdp_file"] = pd.array([path.name] * len(out), dtype="string")
    out["_cdp_loaded_at"] = pd.Series([loaded_at] * len(out), dtype="datetime64[us]", index=out.index)
    return out.reset_index(drop=True), rejected


def _row_text(row: pd.Series) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k != ROW_COLUMN and not pd.isna(v))[:1000]


def rejected_frame(path: Path, mode: str, rows: list[RejectedRow], run_id: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file": pd.array([path.name] * len(rows), dtype="string"),
            "row": pd.Series([r.row for r in rows], dtype="int64"),
            "reason": pd.array([r.reason for r in rows], dtype="string"),
            "raw": pd.array([r.raw for r in rows], dtype="string"),
            "mode": pd.array([mode] * len(rows), dtype="string"),
            "run_id": pd.array([run_id] * len(rows), dtype="string"),
            "rejected_at": pd.Series([_now()] * len(rows), dtype="datetime64[us]"),
        }
    )


def new_rejections(wh: WarehouseResource, ref: TableRef, frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The rejected rows not recorded yet: a file is read again by every incremental load, its
    bad rows are recorded once (by file, row and reason)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    new = pd.concat(frames, ignore_index=True)
    target = rejected_ref(ref)
    if wh.table_exists(target):
        seen = wh.fetch(f"SELECT file, row, reason FROM {target.sql}")
        known = set(zip(seen["file"], seen["row"].astype(int), seen["reason"]))
        new = new[[(f, int(r), why) not in known for f, r, why in zip(new["file"], new["row"], new["reason"])]]
    return new if len(new) else None


def _progress(ref: TableRef, n: int, total: int, path: Path, good: pd.DataFrame, rejected: pd.DataFrame) -> None:
    """A long load shows how far it is: one line per file read (the run's log, the CLI)."""
    get_dagster_logger("cdp_assets.loading").info(
        f"{ref.display}: read file {n} of {total} ({path.name}): {len(good)} row(s), {len(rejected)} rejected"
    )


def _read(path: Path, read: FileRead, field_: str, loaded_at: datetime, mode: str, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    good, rejected = prepare_frame(read, path, field_, loaded_at)
    return good, rejected_frame(path, mode, rejected, run_id)


Input = tuple[Path, Callable[[], FileRead]]  # a name for lineage and messages, and how to read it


def source_inputs(wh: WarehouseResource, source: SourceConfig, obj: SourceObject, folder: Path | None, historical: bool, watermark: str | None = None) -> list[Input]:
    """What one load reads: the object's files (read one at a time), or the rows of a warehouse
    table (``connector: table``) newer than the watermark."""
    if isinstance(source.connector, DLT_CONNECTORS):  # a database or an API, read through dlt
        from cdp_assets.connectors.dlt_sources import dlt_inputs

        return dlt_inputs(source, obj, None if historical else watermark)
    if isinstance(source.connector, TableConnector):
        table = TableRef(source.connector.database, obj.name)
        return [(Path(table.display), lambda: _table_rows(wh, table, source.incremental_field, None if historical else watermark))]
    fmt = getattr(source.connector, "format", "auto")
    assert folder is not None
    return [(p, lambda p=p: read_source_file(p)) for p in object_files(folder, obj.name, historical=historical, fmt=fmt)]


def _table_rows(wh: WarehouseResource, table: TableRef, field_: str, watermark: str | None) -> FileRead:
    if not wh.table_exists(table):
        raise SourceFileError(f"{table.display}: the source table does not exist; create it or fix connector.database")
    df = wh.fetch(source_table_rows_sql(table, field_, since=watermark is not None), [watermark] if watermark else None)
    frame = df.astype("string")
    frame[ROW_COLUMN] = pd.Series(range(1, len(df) + 1), dtype="int64")
    return FileRead(frame, [])


def naive_utc(value: datetime | str) -> pd.Timestamp:
    """A timestamp in UTC without zone, as the watermark columns are stored."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _iso(ts: pd.Timestamp | datetime | None) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")


def log_frame(source: str, obj: str, result: LoadResult, run_id: str, fingerprint_: str | None, message: str = "") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": [source],
            "object": [obj],
            "mode": [result.mode],
            "status": [result.status],
            "records_loaded": [result.records_loaded],
            "records_rejected": [result.records_rejected],
            "watermark": [result.watermark],
            "previous_watermark": [result.previous_watermark],
            "files": [",".join(result.files)],
            "files_fingerprint": [fingerprint_],
            "message": [message],
            "run_id": [run_id],
            "loaded_at": pd.Series([_now()], dtype="datetime64[us]"),
        }
    ).astype({c: "string" for c in ("source", "object", "mode", "status", "watermark", "previous_watermark", "files", "files_fingerprint", "message", "run_id")})


def current_watermark(wh: WarehouseResource, ref: TableRef, incremental_field: str) -> str | None:
    if not wh.table_exists(ref):
        return None
    df = wh.fetch(f"SELECT MAX({quote(incremental_field)}) AS w FROM {ref.sql}")
    return _iso(df.iloc[0, 0])


def last_fingerprint(wh: WarehouseResource, log_ref: TableRef, source: str, obj: str) -> str | None:
    """The files fingerprint of the last successful historical load of this object."""
    if not wh.table_exists(log_ref):
        return None
    df = wh.fetch(
        f"SELECT source, object, mode, status, files_fingerprint, loaded_at FROM {log_ref.sql}"
    )
    df = df[(df["source"] == source) & (df["object"] == obj) & (df["mode"] == "historical") & (df["status"] == "success")]
    if df.empty:
        return None
    return df.sort_values("loaded_at").iloc[-1]["files_fingerprint"]


def load_incremental(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, folder: Path | None, schema: str, run_id: str
) -> LoadResult:
    """Append the rows newer than the table's watermark (and not before start_date)."""
    ref = TableRef(schema, f"{source.name}_{obj.name}")
    log_ref = TableRef(schema, LOG_TABLE)
    field_ = source.incremental_field
    watermark = current_watermark(wh, ref, field_)
    loaded_at = _now()
    frames, used, rejects = [], [], []
    inputs = source_inputs(wh, source, obj, folder, historical=False, watermark=watermark)
    for n, (path, reader) in enumerate(inputs, start=1):
        df, rejected = _read(path, reader(), field_, loaded_at, "incremental", run_id)
        _progress(ref, n, len(inputs), path, df, rejected)
        rejects.append(rejected)
        keep = pd.Series(True, index=df.index)
        if watermark is not None:
            keep &= df[field_] > pd.Timestamp(watermark)
        if source.start_date is not None:
            keep &= df[field_] >= naive_utc(source.start_date)
        if keep.any():
            frames.append(df[keep])
            used.append(path.name)
    new = pd.concat(frames, ignore_index=True) if frames else None
    new_watermark = watermark
    if new is not None and len(new):
        new_watermark = max(filter(None, [watermark, _iso(new[field_].max())]))
    bad = new_rejections(wh, ref, rejects)
    result = LoadResult(ref, "incremental", 0 if new is None else len(new), new_watermark, watermark, used, records_rejected=0 if bad is None else len(bad))
    unit = [(ref, new)] if new is not None and len(new) else []
    unit += [(rejected_ref(ref), bad)] if bad is not None else []
    wh.append_frames([*unit, (log_ref, log_frame(source.name, obj.name, result, run_id, None))])
    return result


def load_historical(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, folder: Path | None, schema: str, run_id: str
) -> LoadResult:
    """Replace ``_hist`` with the historical files, unless they are unchanged since the last load."""
    ref = TableRef(schema, f"{source.name}_{obj.name}_hist")
    log_ref = TableRef(schema, LOG_TABLE)
    inputs = source_inputs(wh, source, obj, folder, historical=True)
    files = [p for p, _ in inputs]
    # Files: reloaded only when they changed. A warehouse table: reloaded every time.
    fp = None if isinstance(source.connector, TableConnector) else fingerprint(files)
    previous = current_watermark(wh, ref, source.incremental_field)
    if fp and files and wh.table_exists(ref) and last_fingerprint(wh, log_ref, source.name, obj.name) == fp:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp, "historical files unchanged"))
        return result
    loaded_at = _now()
    read = []
    for n, (path, reader) in enumerate(inputs, start=1):
        read.append(_read(path, reader(), source.incremental_field, loaded_at, "historical", run_id))
        _progress(ref, n, len(inputs), path, *read[-1])
    bad = new_rejections(wh, ref, [rejected for _, rejected in read])
    unit = [(rejected_ref(ref), bad)] if bad is not None else []
    rejected_count = 0 if bad is None else len(bad)
    if not files:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp, "no historical files"))
        return result
    df = pd.concat([good for good, _ in read], ignore_index=True)
    if len(df.columns) == 0:  # only empty files: nothing to build a table from
        result = LoadResult(ref, "historical", 0, previous, previous, [p.name for p in files], records_rejected=rejected_count)
        wh.append_frames([*unit, (log_ref, log_frame(source.name, obj.name, result, run_id, fp, "historical files hold no rows"))])
        return result
    # Replaced first, then logged: a run killed between the two reloads the files next time
    # (the log has no load with this fingerprint) and records the rejected rows once.
    wh.replace_with_dataframe(ref, df)
    watermark = _iso(df[source.incremental_field].max()) if len(df) else previous
    result = LoadResult(ref, "historical", len(df), watermark, previous, [p.name for p in files], records_rejected=rejected_count)
    wh.append_frames([*unit, (log_ref, log_frame(source.name, obj.name, result, run_id, fp))])
    return result


def record_failure(wh: WarehouseResource, schema: str, source: str, obj: str, mode: str, run_id: str, error: Exception) -> None:
    """Best effort: a failed load is visible in the log too (the step fails either way)."""
    ref = TableRef(schema, f"{source}_{obj}")
    result = LoadResult(ref, mode, 0, None, None, [], status="failed")
    try:
        wh.append_dataframe(TableRef(schema, LOG_TABLE), log_frame(source, obj, result, run_id, None, str(error)[:2000]))
    except Exception:  # noqa: BLE001 - never hide the load's own error behind the log's
        pass
