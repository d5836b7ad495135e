"""Loading source files into raw tables: incremental by file, historical by replacement.

Incremental loads decide what is new per file, not by the watermark: every file loaded is
recorded in ``{client}_src.ingestion_files`` (source, object, mode, file name, the SHA-256 of its
content, what it gave). A file whose name and content are recorded is not read again; a new
file, or a changed one, is read whatever the dates of its rows, so a late file loads. Of its
rows, those older than ``start_date`` and those already loaded (exact copies of rows in the
table: from an earlier version of the same file, caught half-written and then completed, or a
file copied under another name) are skipped and counted, never dropped silently. Sources that
are warehouse tables (``connector: table``) have no files and still load the rows newer than the
watermark.

Every load appends one row to ``{client}_src.ingestion_log`` in the same unit as the data and
the file records, so the log, the bookkeeping and the table never disagree (a failed load
records no file as loaded). An ingestion step's loads share one unit (``StepBooks``): the
historical load's records wait for the incremental load's and are written with its data, so a
step writes its bookkeeping once (on Treasure Data, one bulk import per table instead of one per
table and load). Rows that cannot be loaded go to
``{client}_src.{source}_{object}_rejected`` (file, file version, row, reason, the row's text) in
that same unit: loaded plus rejected plus skipped is every row of the input. When a later version
of a file is loaded, the rejections of its earlier versions are marked superseded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from dagster import get_dagster_logger

from cdp_assets.config.models import DLT_CONNECTORS, SourceConfig, SourceObject, TableConnector
from cdp_assets.connectors.local_files import FileRecord, FileVersion, fingerprint, object_files, read_version
from cdp_assets.connectors.readers import ROW_COLUMN, FileRead, RejectedRow, SourceFileError, excerpt, read_source_file
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import (
    all_rows_sql,
    FILE_STATUS,
    file_versions_sql,
    load_log_fingerprints_sql,
    max_watermark_sql,
    open_rejections_sql,
    rejection_keys_sql,
    rows_in_range_sql,
    rows_summary_sql,
    source_table_rows_sql,
)

LOG_TABLE = "ingestion_log"
FILES_TABLE = "ingestion_files"  # one row per file version loaded (the per-file bookkeeping)


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
    skipped_before_start_date: int = 0
    skipped_duplicate: int = 0
    unchanged_files: int = 0
    # The table's rows after the load, when the load knows them (its build's count, or the rows
    # before plus those appended in one unit); None: counted afterwards.
    table_rows: int | None = None

    @property
    def records_skipped(self) -> int:
        return self.skipped_before_start_date + self.skipped_duplicate

    def summary(self, start_date: datetime | None) -> str:
        """What was deliberately not loaded, in words (the log's message, the run's log)."""
        parts = []
        if self.skipped_before_start_date:
            parts.append(f"skipped {self.skipped_before_start_date} row(s) older than start_date {start_date}")
        if self.skipped_duplicate:
            parts.append(f"skipped {self.skipped_duplicate} row(s) already loaded (exact copies of rows in the table)")
        if self.unchanged_files:
            parts.append(f"{self.unchanged_files} file(s) unchanged since they were loaded")
        return "; ".join(parts)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def rejected_ref(ref: TableRef) -> TableRef:
    """Where the rows of a raw table's files that could not be loaded go (both modes)."""
    base = ref.name.removesuffix("_hist")
    return ref.sibling(f"{base}_rejected")


# A date written with the day or month first (06/03/2024, 06.03.2024, 06-03-24): which is which
# depends on who wrote it, so the source's date_order says; it is never guessed.
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})\b")
# The range a watermark can take: pandas' nanosecond timestamps, in whole days.
TIMESTAMP_RANGE = (pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D"))


def _ambiguous_day_month(value: object) -> bool:
    m = _DAY_MONTH.match(str(value)) if not pd.isna(value) else None
    return (
        bool(m) and int(m.group(1)) <= 12 and int(m.group(2)) <= 12 and m.group(1).lstrip("0") != m.group(2).lstrip("0")
    )


def _out_of_range(value: str, date_order: str | None) -> bool:
    """A value that is a date/time, just not one a timestamp column holds (9999-12-31)."""
    from dateutil import parser

    try:
        when = parser.parse(value, dayfirst=date_order == "dmy", yearfirst=date_order == "ymd")
    except (ValueError, OverflowError):
        return False
    when = when.replace(tzinfo=None)
    return not (pd.Timestamp.min.ceil("us").to_pydatetime() <= when <= pd.Timestamp.max.floor("us").to_pydatetime())


def prepare_frame(
    read: FileRead,
    path: Path,
    incremental_field: str,
    loaded_at: datetime,
    date_order: str | None = None,
    source: str = "",
) -> tuple[pd.DataFrame, list[RejectedRow]]:
    """Parse the watermark column and add lineage columns. A row whose watermark is empty, not a
    date/time or out of range is rejected (it could never be loaded incrementally); a file
    without the column, or with day/month dates while the source has no ``date_order``, fails,
    naming it."""
    df, rejected = read.frame, list(read.rejected)
    if df.empty and len(df.columns) <= 1:
        return df.drop(columns=[ROW_COLUMN], errors="ignore"), rejected  # an empty file
    if incremental_field not in df.columns:
        columns = [c for c in df.columns if c != ROW_COLUMN]
        shown = ", ".join(excerpt(c) for c in columns[:10]) + (
            f" and {len(columns) - 10} more" if len(columns) > 10 else ""
        )
        raise SourceFileError(
            f"{path}: has no column {incremental_field!r} (the source's incremental_field); its {len(columns)} "
            f"column(s) are {shown} (masked). Add the column or set incremental_field to one of them"
        )
    values = df[incremental_field]
    if date_order is None:
        ambiguous = [i for i, v in enumerate(values) if _ambiguous_day_month(v)]
        if ambiguous:
            i = ambiguous[0]
            raise SourceFileError(
                f"{path}: row {int(df[ROW_COLUMN].iloc[i])}: {incremental_field} "
                f"{excerpt(values.iloc[i])} has the day and the month in an order that cannot be told "
                f"from the value ({len(ambiguous)} such row(s)); set date_order of source {source!r} "
                "(sources[].date_order in the config) to dmy (day first) or mdy (month first)"
            )
    # utc=True: values with offsets (a file spanning a DST change) become UTC; naive values are
    # taken as UTC. Stored naive, so every engine compares them the same way.
    parsed = pd.to_datetime(
        values, errors="coerce", format="mixed", utc=True, dayfirst=date_order == "dmy", yearfirst=date_order == "ymd"
    )
    bad = parsed.isna().to_numpy()
    low, high = (t.strftime("%Y-%m-%d") for t in TIMESTAMP_RANGE)
    for i in bad.nonzero()[0]:
        raw = values.iloc[i]
        if pd.isna(raw) or not str(raw).strip():
            what = "is empty; every row needs one, in ISO format like 2024-06-01 12:00:00"
        elif _out_of_range(str(raw), date_order):
            what = f"{excerpt(raw)} is out of range: the supported range is {low} to {high} (UTC); use a date within it"
        else:
            what = f"{excerpt(raw)} is not a date/time; every row needs one, in ISO format like 2024-06-01 12:00:00"
        rejected.append(RejectedRow(int(df[ROW_COLUMN].iloc[i]), f"{incremental_field} {what}", _row_text(df.iloc[i])))
    out = df[~bad].copy()
    out[incremental_field] = parsed[~bad].dt.tz_localize(None).astype("datetime64[us]")
    out = out.drop(columns=[ROW_COLUMN])
    out["_cdp_file"] = pd.array([path.name] * len(out), dtype="string")
    out["_cdp_loaded_at"] = pd.Series([loaded_at] * len(out), dtype="datetime64[us]", index=out.index)
    return out.reset_index(drop=True), rejected


def _row_text(row: pd.Series) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k != ROW_COLUMN and not pd.isna(v))[:1000]


def rejected_frame(
    path: Path, mode: str, rows: list[RejectedRow], run_id: str, version: str | None = None
) -> pd.DataFrame:
    n = len(rows)
    return pd.DataFrame(
        {
            "file": pd.array([path.name] * n, dtype="string"),
            "row": pd.Series([r.row for r in rows], dtype="int64"),
            "reason": pd.array([r.reason for r in rows], dtype="string"),
            "raw": pd.array([r.raw for r in rows], dtype="string"),
            "mode": pd.array([mode] * n, dtype="string"),
            "run_id": pd.array([run_id] * n, dtype="string"),
            "rejected_at": pd.Series([_now()] * n, dtype="datetime64[us]"),
            # the file's content hash when it was read; superseded_* are set once a later
            # version of the file is loaded (supersede_rejections), so what is still wrong shows
            "file_version": pd.array([version] * n, dtype="string"),
            "superseded_at": pd.Series([pd.NaT] * n, dtype="datetime64[us]"),
            "superseded_by_file_version": pd.array([None] * n, dtype="string"),
        }
    )


@dataclass(frozen=True)
class LoadCatalog:
    """The columns of a load's own tables (data, log, file records, rejections) from one catalog
    description, instead of an existence and a column look-up per table. Valid until the load
    writes: a table the load may have created since is described again."""

    columns: dict[TableRef, list[str] | None]  # None: the table does not exist

    @classmethod
    def describe(cls, wh: WarehouseResource, refs: list[TableRef]) -> "LoadCatalog":
        described = wh.describe_tables(refs)
        return cls({ref: None if cols is None else [name for name, _ in cols] for ref, cols in described.items()})

    def exists(self, wh: WarehouseResource, ref: TableRef) -> bool:
        """Whether ``ref`` exists (asked of the warehouse for a table this catalog did not describe)."""
        return self.columns[ref] is not None if ref in self.columns else wh.table_exists(ref)

    def columns_of(self, wh: WarehouseResource, ref: TableRef) -> list[str]:
        """The columns of ``ref``, which exists."""
        known = self.columns.get(ref)
        return known if known is not None else wh.columns(ref)


NO_CATALOG = LoadCatalog({})  # every question goes to the warehouse


def new_rejections(
    wh: WarehouseResource,
    ref: TableRef,
    frames: list[pd.DataFrame],
    catalog: LoadCatalog = NO_CATALOG,
    books: "StepBooks | None" = None,
) -> pd.DataFrame | None:
    """The rejected rows not recorded yet: a version of a file read again (a historical reload)
    has its bad rows recorded once (by file, version, row and reason). Rows an earlier load of
    the step is about to record (``books``) count as recorded."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    new = pd.concat(frames, ignore_index=True)
    target = rejected_ref(ref)
    known: set = set()
    if catalog.exists(wh, target):
        with_version = "file_version" in catalog.columns_of(wh, target)
        seen = wh.fetch(rejection_keys_sql(target, with_version))
        versions = seen["file_version"] if with_version else [None] * len(seen)
        known = {
            (f, int(r), why, None if pd.isna(v) else v)
            for f, r, why, v in zip(seen["file"], seen["row"], seen["reason"], versions)
        }
    for seen in books.pending_frames(target) if books is not None else []:
        known |= {
            (f, int(r), why, None if pd.isna(v) else v)
            for f, r, why, v in zip(seen["file"], seen["row"], seen["reason"], seen["file_version"])
        }
    if known:
        keys = zip(new["file"], new["row"], new["reason"], new["file_version"])
        new = new[[(f, int(r), why, None if pd.isna(v) else v) not in known for f, r, why, v in keys]]
    return new if len(new) else None


def file_records(df: pd.DataFrame) -> dict[tuple[str, str], FileRecord]:
    """(mode, file) -> its newest record, out of the file records' rows (``mode``, ``file``,
    ``file_version``, ``file_status``: NULL where the records keep none) ordered by ``loaded_at``:
    the last one wins."""
    return {
        (m, f): FileRecord(v, None if pd.isna(st) else str(st))
        for m, f, v, st in zip(df["mode"], df["file"], df["file_version"], df[FILE_STATUS])
    }


def latest_records(
    wh: WarehouseResource, files_log: TableRef, source: str, obj: str, catalog: LoadCatalog = NO_CATALOG
) -> dict[tuple[str, str], FileRecord]:
    """(mode, file) -> the file's newest loaded version and its status then."""
    if not catalog.exists(wh, files_log):
        return {}
    with_status = FILE_STATUS in (catalog.columns_of(wh, files_log) or [])
    return file_records(wh.fetch(file_versions_sql(files_log, with_status), [source, obj]))


def latest_versions(
    wh: WarehouseResource, files_log: TableRef, source: str, obj: str, catalog: LoadCatalog = NO_CATALOG
) -> dict[tuple[str, str], str]:
    """(mode, file) -> the content hash of the file's newest loaded version."""
    return {key: record.version for key, record in latest_records(wh, files_log, source, obj, catalog).items()}


def step_records(
    wh: WarehouseResource,
    books: "StepBooks | None",
    files_log: TableRef,
    source: str,
    obj: str,
    catalog: LoadCatalog = NO_CATALOG,
) -> dict[tuple[str, str], FileRecord]:
    """``latest_records``, as the step read them at its start when it did (``StepBooks.records``)."""
    if books is not None and books.records is not None:
        return books.records
    return latest_records(wh, files_log, source, obj, catalog)


def supersede_rejections(wh: WarehouseResource, ref: TableRef, files_log: TableRef, source: str, obj: str) -> int:
    """Mark the rejections of files whose newer version has been loaded since (a file caught
    half-written, then completed; a file replaced): what it said then is no longer what it
    says. The rejected table is rebuilt and swapped in (every engine; the old one stays on
    failure). Runs after each load, so a load killed before it is caught up by the next.
    Returns how many rows it marked."""
    return sum(superseded_by_mode(wh, ref, files_log, source, obj).values())


def superseded_by_mode(wh: WarehouseResource, ref: TableRef, files_log: TableRef, source: str, obj: str) -> Counter:
    """``supersede_rejections``, answering the rows it marked per load mode (outstanding rows
    until then)."""
    target = rejected_ref(ref)
    # After the load: described now. The file records only when there are rejections to mark
    # (``latest_versions`` asks): most objects have none, and the load may have just created them.
    catalog = LoadCatalog.describe(wh, [target])
    if not catalog.exists(wh, target) or "superseded_at" not in catalog.columns_of(wh, target):
        return Counter()
    latest = latest_versions(wh, files_log, source, obj, catalog)
    if not latest:
        return Counter()

    def superseded_by(mode: str, file: str, version) -> str | None:
        newest = latest.get((mode, file))
        return newest if newest is not None and (pd.isna(version) or newest != version) else None

    open_ = wh.fetch(open_rejections_sql(target))
    if not any(superseded_by(m, f, v) for m, f, v in zip(open_["mode"], open_["file"], open_["file_version"])):
        return Counter()
    df = wh.fetch(all_rows_sql(target))
    by = pd.Series(
        [
            None if not pd.isna(s) else superseded_by(m, f, v)
            for m, f, v, s in zip(df["mode"], df["file"], df["file_version"], df["superseded_at"])
        ],
        index=df.index,
        dtype="string",
    )
    marked = by.notna()
    df["superseded_by_file_version"] = df["superseded_by_file_version"].astype("string").where(~marked, by)
    df["superseded_at"] = (
        pd.to_datetime(df["superseded_at"]).astype("datetime64[us]").where(~marked, pd.Timestamp(_now()))
    )
    wh.replace_with_dataframe(target, df)
    get_dagster_logger("cdp_assets.loading").info(
        f"{target.display}: {int(marked.sum())} rejected row(s) superseded by a later version of their file"
    )
    return Counter(str(m) for m in df["mode"][marked])


class StepBooks:
    """The bookkeeping of one ingestion step's loads (rejected rows, file records, log rows),
    written in one unit with the last load's data instead of one unit per load.

    A historical load replaces its table, then hands its records here (``defer``); the
    incremental load that follows writes them with its own rows and records (``write``), one
    append per table: on Treasure Data, which takes one table per bulk-import session, that is
    one import for the files and one for the log instead of one per load. What was true of a
    load alone stays true: its rows are never logged unless they landed (the incremental rows
    land in the same unit as every record; the historical table was replaced before), a failed
    unit logs nothing of the load that failed, and a run killed between the historical build and
    the unit finds no log of that build and reloads the files (as it did when killed between the
    build and its own log). The step calls ``flush`` at its end (a step with one load, or a
    later load that failed: the earlier loads are still logged).

    What it wrote is kept (``written``, and the rejections it marked superseded per mode,
    ``superseded``): with what the step read before its loads, that is what its checks measure
    (checks/ingestion.py), no query after them. ``records``: the newest version of each
    (mode, file) of the object's file records with the file's status then, read at the step's
    start; they hold until the step's unit writes its own, so the incremental load takes them
    from here instead of a query."""

    def __init__(
        self,
        records: dict[tuple[str, str], FileRecord] | None = None,
        fingerprint: str | None = None,
        newest: dict[TableRef, object] | None = None,
    ) -> None:
        """``fingerprint``, ``newest``: what the step read at its start for its loads
        (``StepStart``): the last historical load's files fingerprint, and each raw table's newest
        incremental field (None: not read there, each load queries its own)."""
        self.fingerprint, self.newest = fingerprint, newest
        self._pending: list[tuple[TableRef, pd.DataFrame]] = []
        self._supersede: dict[TableRef, tuple] = {}  # rejected table -> supersede_rejections' arguments
        self.records = records
        self.written: list[tuple[TableRef, pd.DataFrame]] = []
        self.superseded: Counter = Counter()

    def pending_frames(self, ref: TableRef) -> list[pd.DataFrame]:
        """The rows waiting to be appended to ``ref``."""
        return [df for r, df in self._pending if r == ref]

    def defer(self, frames: list[tuple[TableRef, pd.DataFrame]], supersede: tuple | None = None) -> None:
        """Keep a load's records for the step's unit; ``supersede``: (ref, files log, source,
        object), whose superseded rejections are marked after the unit."""
        self._pending += frames
        if supersede is not None:
            self._supersede.setdefault(rejected_ref(supersede[0]), supersede)

    def write(
        self,
        wh: WarehouseResource,
        frames: list[tuple[TableRef, pd.DataFrame]],
        statements: list[str] = (),
        supersede: tuple | None = None,
    ) -> None:
        """Append ``frames`` (and run ``statements``, a native load's SQL) with every record kept
        so far, as one unit; on failure nothing of ``frames`` is kept (the earlier loads' records
        still are, for ``flush``)."""
        # This load's frames first: its rows land before any record (engines without transactions
        # append in order), the records kept from earlier loads merged into its record tables.
        unit = merge_frames([*frames, *self._pending])
        _append(wh, unit, statements)
        self.written += unit
        self._pending = []
        if supersede is not None:
            self._supersede.setdefault(rejected_ref(supersede[0]), supersede)
        self._mark_superseded(wh)

    def flush(self, wh: WarehouseResource) -> None:
        """Write the records kept so far, if any."""
        if self._pending:
            self.write(wh, [])
        else:
            self._mark_superseded(wh)

    def _mark_superseded(self, wh: WarehouseResource) -> None:
        # Loads of one object share their rejected table and file records: marked once.
        todo, self._supersede = list(self._supersede.values()), {}
        for ref, files_ref, source, obj in todo:
            self.superseded += superseded_by_mode(wh, ref, files_ref, source, obj)


def _append(wh: WarehouseResource, frames: list[tuple[TableRef, pd.DataFrame]], statements: list[str]) -> None:
    # Only an engine that reads files natively takes statements in its unit (DuckDB's append_frames).
    if statements:
        wh.append_frames(frames, statements=statements)
    else:
        wh.append_frames(frames)


def merge_frames(frames: list[tuple[TableRef, pd.DataFrame]]) -> list[tuple[TableRef, pd.DataFrame]]:
    """One DataFrame per table, in the order the tables first appear, the ingestion log last (a
    failure part way leaves no log row for rows that did not land, on engines without
    transactions)."""
    by_ref: dict[TableRef, list[pd.DataFrame]] = {}
    for ref, df in frames:
        by_ref.setdefault(ref, []).append(df)
    order = sorted(by_ref, key=lambda ref: ref.name == LOG_TABLE)  # stable: the log moves last
    return [
        (ref, by_ref[ref][0] if len(by_ref[ref]) == 1 else pd.concat(by_ref[ref], ignore_index=True)) for ref in order
    ]


def _keep_books(
    wh: WarehouseResource,
    books: StepBooks | None,
    frames: list[tuple[TableRef, pd.DataFrame]],
    supersede: tuple | None = None,
    statements: list[str] = (),
    defer: bool = False,
) -> None:
    """Write a load's records: alone (no ``books``: one unit of its own, as a load outside an
    ingestion step), kept for the step's unit (``defer``: a historical load), or in the step's
    unit with every record kept so far."""
    if books is None:
        _append(wh, frames, statements)
        if supersede is not None:
            supersede_rejections(wh, *supersede)
    elif defer:
        books.defer(frames, supersede)
    else:
        books.write(wh, frames, statements, supersede)


def file_book_row(
    path: Path, read: FileVersion, rows_read: int, loaded: int, rejected: int, before: int = 0, dupes: int = 0
) -> dict:
    """A file's per-file bookkeeping row (``files_frame``): its version as the load read it
    (``local_files.read_version``: the hash, the status before it and the size in it) and its rows."""
    return {
        "file": path.name,
        "file_version": read.version,
        FILE_STATUS: read.status,
        "size_bytes": read.size,
        "rows_read": rows_read,
        "records_loaded": loaded,
        "records_rejected": rejected,
        "records_skipped_before_start_date": before,
        "records_skipped_duplicate": dupes,
    }


def files_frame(source: str, obj: str, mode: str, run_id: str, rows: list[dict]) -> pd.DataFrame:
    """The per-file bookkeeping rows of one load (one per file read)."""
    now = _now()
    df = pd.DataFrame(
        rows,
        columns=[
            "file",
            "file_version",
            FILE_STATUS,
            "size_bytes",
            "rows_read",
            "records_loaded",
            "records_rejected",
            "records_skipped_before_start_date",
            "records_skipped_duplicate",
        ],
    )
    df.insert(0, "mode", mode)
    df.insert(0, "object", obj)
    df.insert(0, "source", source)
    df["run_id"] = run_id
    df["loaded_at"] = pd.Series([now] * len(df), dtype="datetime64[us]")
    text = ["source", "object", "mode", "file", "file_version", FILE_STATUS, "run_id"]
    counts = [
        "size_bytes",
        "rows_read",
        "records_loaded",
        "records_rejected",
        "records_skipped_before_start_date",
        "records_skipped_duplicate",
    ]
    return df.astype({**{c: "string" for c in text}, **{c: "int64" for c in counts}})


def _key(values: list) -> tuple:
    return tuple(
        None if pd.isna(v) else (pd.Timestamp(v) if isinstance(v, (pd.Timestamp, datetime)) else str(v)) for v in values
    )


def not_loaded_yet(
    wh: WarehouseResource, ref: TableRef, df: pd.DataFrame, field_: str, table_exists: bool, pending: list[pd.DataFrame]
) -> pd.Series:
    """Which rows of a file are not already loaded: exact copies (every column of the file
    equal) of rows in the table (read among its rows in the file's watermark range) or of rows
    this load takes from an earlier file are counted off one for one, so a row the file holds
    twice and the table once loads once more, and a row a file holds twice loads twice (it is
    data)."""
    data_cols = [c for c in df.columns if c not in ("_cdp_file", "_cdp_loaded_at")]
    have = (
        [
            _stored_watermark(
                wh.fetch(rows_in_range_sql(ref, field_, wh.dialect), [_iso(df[field_].min()), _iso(df[field_].max())]),
                field_,
            )
        ]
        if table_exists
        else []
    )
    seen = Counter(
        _key([row.get(c) for c in data_cols]) for frame in [*have, *pending] for row in frame.to_dict("records")
    )
    fresh = []
    for values in df[data_cols].itertuples(index=False, name=None):
        key = _key(list(values))
        if seen[key] > 0:
            seen[key] -= 1
            fresh.append(False)
        else:
            fresh.append(True)
    return pd.Series(fresh, index=df.index, dtype=bool)


def _stored_watermark(rows: pd.DataFrame, field_: str) -> pd.DataFrame:
    """Rows read back from a raw table with their watermark as timestamps, as a file's parsed
    rows hold it: an engine without a timestamp column type (Treasure Data) gives it back as the
    text it was written as, and text never equals a timestamp in the exact-copy comparison."""
    if field_ in rows.columns and not pd.api.types.is_datetime64_any_dtype(rows[field_]):
        rows = rows.assign(**{field_: pd.to_datetime(rows[field_], format="ISO8601")})
    return rows


def _progress(ref: TableRef, n: int, total: int, path: Path, good: pd.DataFrame, rejected: pd.DataFrame) -> None:
    """A long load shows how far it is: one line per file read (the run's log, the CLI)."""
    get_dagster_logger("cdp_assets.loading").info(
        f"{ref.display}: read file {n} of {total} ({path.name}): {len(good)} row(s), {len(rejected)} rejected"
    )


def _read(
    path: Path,
    read: FileRead,
    source: SourceConfig,
    loaded_at: datetime,
    mode: str,
    run_id: str,
    version: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    good, rejected = prepare_frame(read, path, source.incremental_field, loaded_at, source.date_order, source.name)
    return good, rejected_frame(path, mode, rejected, run_id, version)


Input = tuple[Path, Callable[[], FileRead]]  # a name for lineage and messages, and how to read it


def reads_by_cursor(source: SourceConfig) -> bool:
    """A warehouse table, a database or an API: no files to keep books of; the watermark (the
    cursor) alone says what is new."""
    return isinstance(source.connector, (TableConnector, *DLT_CONNECTORS))


def reads_natively(wh: WarehouseResource, source: SourceConfig, folder: Path | None) -> bool:
    """Files (local, or an S3 prefix synced to a folder) on an engine with its own file readers
    (DuckDB) are read by them, never parsed in Python (``native_loading``)."""
    return wh.reads_files_natively and folder is not None and not reads_by_cursor(source)


def source_inputs(
    wh: WarehouseResource,
    source: SourceConfig,
    obj: SourceObject,
    folder: Path | None,
    historical: bool,
    watermark: str | None = None,
) -> list[Input]:
    """What one load reads: the object's files (read one at a time), or the rows of a warehouse
    table (``connector: table``) newer than the watermark."""
    if isinstance(source.connector, DLT_CONNECTORS):  # a database or an API, read through dlt
        from cdp_assets.connectors.dlt_sources import dlt_inputs

        return dlt_inputs(source, obj, None if historical else watermark)
    if isinstance(source.connector, TableConnector):
        table = TableRef(source.connector.database, obj.name)
        return [
            (
                Path(table.display),
                lambda: _table_rows(wh, table, source.incremental_field, None if historical else watermark),
            )
        ]
    fmt = getattr(source.connector, "format", "auto")
    assert folder is not None
    return [
        (p, lambda p=p: read_source_file(p)) for p in object_files(folder, obj.name, historical=historical, fmt=fmt)
    ]


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


def log_frame(
    source: str, obj: str, result: LoadResult, run_id: str, fingerprint_: str | None, message: str = ""
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": [source],
            "object": [obj],
            "mode": [result.mode],
            "status": [result.status],
            "records_loaded": [result.records_loaded],
            "records_rejected": [result.records_rejected],
            "records_skipped_before_start_date": [result.skipped_before_start_date],
            "records_skipped_duplicate": [result.skipped_duplicate],
            "watermark": [result.watermark],
            "previous_watermark": [result.previous_watermark],
            "files": [",".join(result.files)],
            "files_fingerprint": [fingerprint_],
            "message": [message],
            "run_id": [run_id],
            "loaded_at": pd.Series([_now()], dtype="datetime64[us]"),
        }
    ).astype(
        {
            c: "string"
            for c in (
                "source",
                "object",
                "mode",
                "status",
                "watermark",
                "previous_watermark",
                "files",
                "files_fingerprint",
                "message",
                "run_id",
            )
        }
    )


def current_watermark(
    wh: WarehouseResource,
    ref: TableRef,
    incremental_field: str,
    catalog: LoadCatalog = NO_CATALOG,
    books: "StepBooks | None" = None,
) -> str | None:
    """The table's newest incremental field: as the step read it at its start (``books.newest``:
    each load reads it before it writes its own table), else by a query."""
    if not catalog.exists(wh, ref):
        return None
    if books is not None and books.newest is not None and ref in books.newest:
        return _iso(books.newest[ref])
    df = wh.fetch(max_watermark_sql(ref, incremental_field))
    return _iso(df.iloc[0, 0])


def current_rows_and_watermark(
    wh: WarehouseResource, ref: TableRef, incremental_field: str, catalog: LoadCatalog = NO_CATALOG
) -> tuple[int, str | None]:
    """The table's row count and newest watermark in one query ((0, None) when it does not exist)."""
    if not catalog.exists(wh, ref):
        return 0, None
    row = wh.fetch(rows_summary_sql(ref, incremental_field)).iloc[0]
    return int(row["n"]), _iso(row["w"])


def last_fingerprint(
    wh: WarehouseResource,
    log_ref: TableRef,
    source: str,
    obj: str,
    catalog: LoadCatalog = NO_CATALOG,
    books: "StepBooks | None" = None,
) -> str | None:
    """The files fingerprint of the last successful historical load of this object: as the step
    read it at its start (``books``, as ``current_watermark``), else by a query."""
    if books is not None and books.newest is not None:
        return books.fingerprint
    if not catalog.exists(wh, log_ref):
        return None
    df = wh.fetch(load_log_fingerprints_sql(log_ref))
    df = df[
        (df["source"] == source) & (df["object"] == obj) & (df["mode"] == "historical") & (df["status"] == "success")
    ]
    if df.empty:
        return None
    return df.sort_values("loaded_at").iloc[-1]["files_fingerprint"]


def load_incremental(
    wh: WarehouseResource,
    source: SourceConfig,
    obj: SourceObject,
    folder: Path | None,
    schema: str,
    run_id: str,
    books: StepBooks | None = None,
) -> LoadResult:
    """Append the rows of new and changed files (a warehouse table: the rows newer than the
    watermark), except rows older than start_date and rows already in the table, which are
    counted as skipped. ``books``: the step's bookkeeping, written in this load's unit."""
    if reads_natively(wh, source, folder):
        from cdp_assets.connectors.native_loading import load_incremental_native

        return load_incremental_native(wh, source, obj, folder, schema, run_id, books)
    ref = TableRef(schema, f"{source.name}_{obj.name}")
    log_ref, files_ref = TableRef(schema, LOG_TABLE), TableRef(schema, FILES_TABLE)
    field_ = source.incremental_field
    from_table = reads_by_cursor(source)
    watermark = current_watermark(wh, ref, field_, books=books)
    loaded_at = _now()
    records = {} if from_table else step_records(wh, books, files_ref, source.name, obj.name)
    known = {f: r for (m, f), r in records.items() if m == "incremental"}
    table_exists = wh.table_exists(ref)
    start = naive_utc(source.start_date) if source.start_date is not None else None
    frames, used, rejects, book = [], [], [], []
    before_start = duplicate = unchanged = 0
    inputs = source_inputs(wh, source, obj, folder, historical=False, watermark=watermark)
    for n, (path, reader) in enumerate(inputs, start=1):
        # Hashed before it is read: a file still growing in between is recorded with its older
        # hash, so the next load reads it again and skips the rows it already gave (no loss).
        # A file whose status is the one recorded with its hash is not read at all.
        recorded = known.get(path.name)
        current = None if from_table else read_version(path, recorded)
        version = None if current is None else current.version
        if recorded is not None and recorded.version == version:
            unchanged += 1  # this content of this file is loaded: nothing in it is new
            continue
        df, rejected = _read(path, reader(), source, loaded_at, "incremental", run_id, version)
        keep = pd.Series(True, index=df.index)
        file_before = file_dupes = 0
        if field_ in df.columns and len(df):
            if from_table and watermark is not None:  # a table has no files: its watermark says what is new
                keep &= df[field_] > pd.Timestamp(watermark)
            if start is not None:
                old = keep & (df[field_] < start)
                file_before = int(old.sum())
                keep &= ~old
            if (table_exists or frames) and not from_table and keep.any():
                fresh = not_loaded_yet(wh, ref, df[keep], field_, table_exists, frames).reindex(
                    df.index, fill_value=False
                )
                file_dupes = int((keep & ~fresh).sum())
                keep &= fresh
        _progress(ref, n, len(inputs), path, df, rejected)
        if file_before or file_dupes:
            get_dagster_logger("cdp_assets.loading").info(
                f"{ref.display}: {path.name}: skipped {file_before} row(s) older than start_date, "
                f"{file_dupes} row(s) already loaded (exact copies of rows in the table)"
            )
        rejects.append(rejected)
        before_start += file_before
        duplicate += file_dupes
        if keep.any():
            frames.append(df[keep])
            used.append(path.name)
        if current is not None:
            rows_read, loaded = len(df) + len(rejected), int(keep.sum())
            book.append(file_book_row(path, current, rows_read, loaded, len(rejected), file_before, file_dupes))
    new = pd.concat(frames, ignore_index=True) if frames else None
    new_watermark = watermark
    if new is not None and len(new):
        new_watermark = max(filter(None, [watermark, _iso(new[field_].max())]))
    bad = new_rejections(wh, ref, rejects, books=books)
    result = LoadResult(
        ref,
        "incremental",
        0 if new is None else len(new),
        new_watermark,
        watermark,
        used,
        records_rejected=0 if bad is None else len(bad),
        skipped_before_start_date=before_start,
        skipped_duplicate=duplicate,
        unchanged_files=unchanged,
    )
    unit = [(ref, new)] if new is not None and len(new) else []
    unit += [(rejected_ref(ref), bad)] if bad is not None else []
    unit += [(files_ref, files_frame(source.name, obj.name, "incremental", run_id, book))] if book else []
    log_row = log_frame(source.name, obj.name, result, run_id, None, result.summary(source.start_date))
    _keep_books(wh, books, [*unit, (log_ref, log_row)], (ref, files_ref, source.name, obj.name))
    return result


def load_historical(
    wh: WarehouseResource,
    source: SourceConfig,
    obj: SourceObject,
    folder: Path | None,
    schema: str,
    run_id: str,
    books: StepBooks | None = None,
) -> LoadResult:
    """Replace ``_hist`` with the historical files, unless they are unchanged since the last load.
    ``books``: the step's bookkeeping, which keeps this load's records for the step's unit."""
    if reads_natively(wh, source, folder):
        from cdp_assets.connectors.native_loading import load_historical_native

        return load_historical_native(wh, source, obj, folder, schema, run_id, books)
    ref = TableRef(schema, f"{source.name}_{obj.name}_hist")
    log_ref, files_ref = TableRef(schema, LOG_TABLE), TableRef(schema, FILES_TABLE)
    inputs = source_inputs(wh, source, obj, folder, historical=True)
    files = [p for p, _ in inputs]
    from_table = reads_by_cursor(source)
    # Files: reloaded only when they changed. A warehouse table: reloaded every time.
    fp = None if from_table else fingerprint(files)
    previous = current_watermark(wh, ref, source.incremental_field, books=books)
    loaded_before = fp and files and wh.table_exists(ref)
    if loaded_before and last_fingerprint(wh, log_ref, source.name, obj.name, books=books) == fp:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        log_row = log_frame(source.name, obj.name, result, run_id, fp, "historical files unchanged")
        _keep_books(wh, books, [(log_ref, log_row)], defer=True)
        return result
    loaded_at = _now()
    read, book = [], []
    for n, (path, reader) in enumerate(inputs, start=1):
        current = None if from_table else read_version(path)
        version = None if current is None else current.version
        read.append(_read(path, reader(), source, loaded_at, "historical", run_id, version))
        good, rejected = read[-1]
        _progress(ref, n, len(inputs), path, good, rejected)
        if current is not None:
            book.append(file_book_row(path, current, len(good) + len(rejected), len(good), len(rejected)))
    bad = new_rejections(wh, ref, [rejected for _, rejected in read], books=books)
    unit = [(rejected_ref(ref), bad)] if bad is not None else []
    unit += [(files_ref, files_frame(source.name, obj.name, "historical", run_id, book))] if book else []
    rejected_count = 0 if bad is None else len(bad)
    if not files:
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        log_row = log_frame(source.name, obj.name, result, run_id, fp, "no historical files")
        _keep_books(wh, books, [(log_ref, log_row)], defer=True)
        return result
    df = pd.concat([good for good, _ in read], ignore_index=True)
    if len(df.columns) == 0:  # only empty files: nothing to build a table from
        result = LoadResult(
            ref, "historical", 0, previous, previous, [p.name for p in files], records_rejected=rejected_count
        )
        log_row = log_frame(source.name, obj.name, result, run_id, fp, "historical files hold no rows")
        _keep_books(wh, books, [*unit, (log_ref, log_row)], (ref, files_ref, source.name, obj.name), defer=True)
        return result
    # Replaced first, then logged: a run killed between the two reloads the files next time
    # (the log has no load with this fingerprint) and records the rejected rows once.
    wh.replace_with_dataframe(ref, df)
    watermark = _iso(df[source.incremental_field].max()) if len(df) else previous
    result = LoadResult(
        ref, "historical", len(df), watermark, previous, [p.name for p in files], records_rejected=rejected_count
    )
    log_row = log_frame(source.name, obj.name, result, run_id, fp)
    _keep_books(wh, books, [*unit, (log_ref, log_row)], (ref, files_ref, source.name, obj.name), defer=True)
    return result


def record_failure(
    wh: WarehouseResource, schema: str, source: str, obj: str, mode: str, run_id: str, error: Exception
) -> None:
    """Best effort: a failed load is visible in the log too (the step fails either way)."""
    ref = TableRef(schema, f"{source}_{obj}")
    result = LoadResult(ref, mode, 0, None, None, [], status="failed")
    try:
        wh.append_dataframe(
            TableRef(schema, LOG_TABLE), log_frame(source, obj, result, run_id, None, str(error)[:2000])
        )
    except Exception:  # noqa: BLE001 - never hide the load's own error behind the log's
        pass
