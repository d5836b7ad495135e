"""Loading source files into raw tables: incremental by watermark, historical by replacement.

Every load appends one row to ``{client}_src.ingestion_log`` in the same unit as the data, so
the log and the table never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from cdp_assets.config.models import SourceConfig, SourceObject
from cdp_assets.connectors.local_files import SourceFileError, fingerprint, object_files, read_file
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef, quote

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


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def prepare_frame(df: pd.DataFrame, path: Path, incremental_field: str, loaded_at: datetime) -> pd.DataFrame:
    """Parse the watermark column and add lineage columns; name the file and row of a bad value."""
    if incremental_field not in df.columns:
        raise SourceFileError(
            f"{path}: has no column {incremental_field!r} (the source's incremental_field); its columns are "
            f"{list(df.columns)}. Add the column or set incremental_field to one of them"
        )
    # utc=True: values with offsets (a file spanning a DST change) become UTC; naive values are
    # taken as UTC. Stored naive, so every engine compares them the same way.
    parsed = pd.to_datetime(df[incremental_field], errors="coerce", format="mixed", utc=True)
    bad = parsed.isna()
    if bad.any():
        # An empty watermark would load once and then never again: fail loudly instead.
        row = int(bad.to_numpy().nonzero()[0][0])
        raw = df[incremental_field].iloc[row]
        what = "is empty" if pd.isna(raw) or not str(raw).strip() else f"{raw!r} is not a date/time"
        raise SourceFileError(
            f"{path}: row {row + 2 if path.suffix.lower() == '.csv' else row + 1}: {incremental_field} "
            f"{what}; every row needs one, in ISO format like 2024-06-01 12:00:00"
        )
    out = df.copy()
    out[incremental_field] = parsed.dt.tz_localize(None).astype("datetime64[us]")
    out["_cdp_file"] = pd.array([path.name] * len(out), dtype="string")
    out["_cdp_loaded_at"] = pd.Series([loaded_at] * len(out), dtype="datetime64[us]")
    return out


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
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, folder: Path, schema: str, run_id: str
) -> LoadResult:
    """Append the rows newer than the table's watermark (and not before start_date)."""
    ref = TableRef(schema, f"{source.name}_{obj.name}")
    log_ref = TableRef(schema, LOG_TABLE)
    field_ = source.incremental_field
    watermark = current_watermark(wh, ref, field_)
    loaded_at = _now()
    frames, used = [], []
    for path in object_files(folder, obj.name, historical=False, fmt=getattr(source.connector, "format", "auto")):
        df = prepare_frame(read_file(path), path, field_, loaded_at)
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
    result = LoadResult(ref, "incremental", 0 if new is None else len(new), new_watermark, watermark, used)
    row = log_frame(source.name, obj.name, result, run_id, None)
    if new is not None and len(new):
        wh.append_dataframe(ref, new, log_ref, row)
    else:
        wh.append_dataframe(log_ref, row)
    return result


def load_historical(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, folder: Path, schema: str, run_id: str
) -> LoadResult:
    """Replace ``_hist`` with the historical files, unless they are unchanged since the last load."""
    ref = TableRef(schema, f"{source.name}_{obj.name}_hist")
    log_ref = TableRef(schema, LOG_TABLE)
    files = object_files(folder, obj.name, historical=True, fmt=getattr(source.connector, "format", "auto"))
    fp = fingerprint(files)
    previous = current_watermark(wh, ref, source.incremental_field)
    if files and wh.table_exists(ref) and last_fingerprint(wh, log_ref, source.name, obj.name) == fp:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp, "historical files unchanged"))
        return result
    loaded_at = _now()
    frames = [prepare_frame(read_file(p), p, source.incremental_field, loaded_at) for p in files]
    if not frames:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp, "no historical files"))
        return result
    df = pd.concat(frames, ignore_index=True)
    wh.replace_with_dataframe(ref, df)
    result = LoadResult(ref, "historical", len(df), _iso(df[source.incremental_field].max()), previous, [p.name for p in files])
    wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp))
    return result


def record_failure(wh: WarehouseResource, schema: str, source: str, obj: str, mode: str, run_id: str, error: Exception) -> None:
    """Best effort: a failed load is visible in the log too (the step fails either way)."""
    ref = TableRef(schema, f"{source}_{obj}")
    result = LoadResult(ref, mode, 0, None, None, [], status="failed")
    try:
        wh.append_dataframe(TableRef(schema, LOG_TABLE), log_frame(source, obj, result, run_id, None, str(error)[:2000]))
    except Exception:  # noqa: BLE001 - never hide the load's own error behind the log's
        pass
