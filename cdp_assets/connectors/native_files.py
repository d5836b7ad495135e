"""Reading one source file with DuckDB's own readers into a temporary table of the load's session.

The common case (a well-formed CSV, JSON-lines or Parquet file) never passes through Python: DuckDB
reads it (``read_csv`` with a reject table, ``read_ndjson_objects``, ``read_parquet``), every
column as text, and the watermark is parsed in SQL. Rows DuckDB's CSV reader refuses (too many or
too few fields, bytes that are not UTF-8) are rejected with the line they start on and the same
reason the Python reader gives.

A file DuckDB cannot read the way the Python reader does is read by the Python reader instead
(``readers.read_source_file``), which is the reference behaviour; the reason is logged. That is
the case for: UTF-16 files and JSON lines with a BOM (DuckDB reads neither), an empty file, a CSV
whose first line is blank, a line DuckDB refuses for another reason than its fields or encoding
(an unterminated quote, a line over ``MAX_LINE_BYTES``), a JSON line that is not an object or not
JSON, a JSON value whose text DuckDB would rewrite (``3.50``, nested values), Parquet columns whose
text pandas writes differently (floats, booleans, dates, nested, integers with nulls), a value
holding a NUL character, and a watermark that is empty, out of range or not ISO 8601 (those rows
are rejected by row number, which DuckDB's readers do not give for good rows). Headers that clash
after normalising and a missing watermark column fail in the Python reader with its message.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from dagster import get_dagster_logger

from cdp_assets.connectors.readers import (
    _BOM,
    FORMATS,
    RejectedRow,
    _bad_text,
    _decode,
    _preview,
    normalize_columns,
    read_source_file,
    utf16_codec,
)
from cdp_assets.engines.base import WarehouseError, WarehouseResource
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import (
    csv_rejects_sql,
    csv_select_sql,
    drop_temp_sql,
    file_checks_sql,
    file_rows_sql,
    files_checks_sql,
    json_keys_sql,
    json_select_sql,
    parquet_schema_sql,
    parquet_select_sql,
)

# DuckDB refuses a CSV line longer than this (a reject, and the file goes to the Python reader);
# 16 MB keeps its buffers small while a 10 MB text field still loads natively.
MAX_LINE_BYTES = 16 << 20
_HEAD_BYTES = 1 << 16
# The reject types DuckDB's CSV reader gives for what the Python reader rejects row by row.
_ROW_REJECTS = ("TOO MANY COLUMNS", "MISSING COLUMNS", "INVALID ENCODING")
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


class _UsePython(Exception):
    """This file is read by the Python reader; the message says why."""


@dataclass
class FileRows:
    """A file's good rows in a temporary table (data columns, then ``_cdp_file`` and
    ``_cdp_loaded_at``; a JSON read also its ``INEXACT_COLUMN``, which the loads never copy
    out), and its rejected rows."""

    table: TableRef | None  # None: the file has no columns at all (an empty file)
    columns: list[str]  # the data columns, in file order
    rows: int
    rejected: list[RejectedRow] = field(default_factory=list)
    newest: str | None = None  # the newest watermark, as text
    before_start: int = 0  # rows older than start_date (when one was given)
    native: bool = True  # False: read by the Python reader (why_python says why)
    why_python: str = ""
    # Other temporary tables of the read (DuckDB's CSV reject tables), dropped by the loader with
    # the rows' table in one round trip.
    scratch: list[TableRef] = field(default_factory=list)


@dataclass
class _Read:
    """How DuckDB reads one file: a SELECT of its rows (text columns) and its parameters."""

    select: str
    params: list
    columns: list[str]
    inexact: bool = False  # the JSON exactness column is there
    null_checked: list[str] = field(default_factory=list)  # columns whose NULLs pandas writes otherwise
    rejects: list[TableRef] = field(default_factory=list)  # the CSV reject tables (rejects, scans)


def temp_ref(kind: str) -> TableRef:
    """A unique temporary table of the session (dropped by the loader, or with the session)."""
    return TableRef("main", f"_cdp_{kind}_{uuid.uuid4().hex[:12]}", "temp")


def drop_temps(wh: WarehouseResource, refs: list[TableRef]) -> None:
    """Drop temporary tables, in one round trip."""
    if refs:
        wh.query("; ".join(drop_temp_sql(r) for r in refs))


def read_file_rows(
    wh: WarehouseResource,
    path: Path,
    incremental_field: str,
    loaded_at: datetime,
    date_order: str | None,
    source: str,
    start: str | None = None,
) -> FileRows:
    """Read ``path`` into a new temporary table. Must run inside ``wh.session()`` (temporary tables
    live in one connection). Raises ``SourceFileError`` for a file that cannot be loaded at all."""
    return read_files_rows(wh, [path], incremental_field, loaded_at, date_order, source, start)[0]


@dataclass
class _Started:
    """A file DuckDB has read into its temporary table, its checks still to run."""

    path: Path
    good: TableRef
    read: _Read


def read_files_rows(
    wh: WarehouseResource,
    paths: list[Path],
    incremental_field: str,
    loaded_at: datetime,
    date_order: str | None,
    source: str,
    start: str | None = None,
) -> list[FileRows]:
    """``read_file_rows`` of each of ``paths``, in order: DuckDB reads every file into its
    temporary table, then one query checks them all (``files_checks_sql``; a file's checks decide
    whether it is loaded as read or by the Python reader, as they do alone). Must run inside
    ``wh.session()``. Raises ``SourceFileError`` for a file that cannot be loaded at all."""
    out: dict[int, FileRows] = {}
    started: dict[int, _Started] = {}
    for i, path in enumerate(paths):
        good = temp_ref("rows")
        try:
            read = _plan(wh, path, incremental_field)
            try:
                wh.query(file_rows_sql(good, read.select, incremental_field), [path.name, loaded_at, *read.params])
            except BaseException:
                drop_temps(wh, read.rejects)
                raise
            started[i] = _Started(path, good, read)
        except (_UsePython, WarehouseError) as exc:
            out[i] = _python_read(wh, path, good, exc, incremental_field, loaded_at, date_order, source, start)
    checks = _checks_of(wh, started, incremental_field, start)
    for i, s in started.items():
        try:
            out[i] = _checked(wh, s, checks.get(i), incremental_field, start)
        except (_UsePython, WarehouseError) as exc:
            out[i] = _python_read(wh, s.path, s.good, exc, incremental_field, loaded_at, date_order, source, start)
    return [out[i] for i in range(len(paths))]


def _checks_sql(s: _Started, incremental_field: str, start: str | None) -> str:
    refused_table = s.read.rejects[0] if s.read.rejects else None
    return file_checks_sql(
        s.good, s.read.columns, incremental_field, s.read.inexact, s.read.null_checked, start is not None, refused_table
    )


def _checks_of(wh: WarehouseResource, started: dict[int, _Started], incremental_field: str, start: str | None) -> dict:
    """{key of ``started``: its file's checks' row}, every file's in one query; {} when there is
    at most one (checked alone) or the query failed (each file is then checked alone)."""
    if len(started) < 2:
        return {}
    keys = list(started)
    sql = files_checks_sql([_checks_sql(started[k], incremental_field, start) for k in keys])
    try:
        rows = wh.query(sql, [start] * len(keys) if start is not None else [])
    except WarehouseError:
        return {}
    return {keys[int(r["_cdp_file"])]: r for _, r in rows.iterrows()}


def _python_read(
    wh: WarehouseResource,
    path: Path,
    good: TableRef,
    exc: Exception,
    incremental_field: str,
    loaded_at: datetime,
    date_order: str | None,
    source: str,
    start: str | None,
) -> FileRows:
    """The file read by the Python reader instead, for the reason ``exc`` gives."""
    from cdp_assets.connectors.loading import prepare_frame  # loading dispatches to this module

    if isinstance(exc, WarehouseError):
        why = f"DuckDB's reader failed: {exc.engine_message.splitlines()[0][:300]}"
    else:
        why = str(exc)
    get_dagster_logger("cdp_assets.loading").info(f"{path}: read by the Python reader ({why})")
    drop_temps(wh, [good])
    frame, rejected = prepare_frame(read_source_file(path), path, incremental_field, loaded_at, date_order, source)
    if len(frame.columns) == 0:
        return FileRows(None, [], 0, rejected, native=False, why_python=why)
    wh.write_dataframe(good, frame)
    columns = [c for c in frame.columns if c not in ("_cdp_file", "_cdp_loaded_at")]
    newest = _iso_text(frame[incremental_field].max()) if len(frame) else None
    before = int((frame[incremental_field] < pd.Timestamp(start)).sum()) if start is not None and len(frame) else 0
    return FileRows(good, columns, len(frame), rejected, newest, before, native=False, why_python=why)


def _iso_text(value) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def _checked(wh: WarehouseResource, s: _Started, checks, incremental_field: str, start: str | None) -> FileRows:
    """A file read by DuckDB, as its checks (``checks``: their row, or None: queried now) say."""
    path, good, read = s.path, s.good, s.read
    try:
        if checks is None:
            checks = wh.query(_checks_sql(s, incremental_field, start), [start] if start is not None else []).iloc[0]
        # The refused lines are read only when the checks counted some (most files have none).
        rejected = _csv_rejected_rows(wh, path, read) if int(checks["refused"]) else []
        if int(checks["bad_watermarks"]):
            bad = int(checks["bad_watermarks"])
            raise _UsePython(f"{bad} row(s) with a watermark that is not an ISO date/time in range")
        if int(checks["unusable"]):
            raise _UsePython(f"{int(checks['unusable'])} row(s) with a NUL character or a value DuckDB would rewrite")
    except BaseException:
        drop_temps(wh, read.rejects)  # read by the Python reader instead: nothing of this read is kept
        raise
    newest = None if pd.isna(checks["w"]) else str(checks["w"])
    return FileRows(
        good, read.columns, int(checks["n"]), rejected, newest, int(checks["before_start"]), scratch=read.rejects
    )


def _plan(wh: WarehouseResource, path: Path, incremental_field: str) -> _Read:
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head:
        raise _UsePython("the file is empty")
    if utf16_codec(head):
        raise _UsePython("UTF-16, which DuckDB's readers do not read")
    kind = FORMATS.get(path.suffix.lower())
    if kind == "csv":
        return _csv(path, head, incremental_field)
    if kind == "jsonl":
        return _json_lines(wh, path, head, incremental_field)
    if kind == "parquet":
        return _parquet(wh, path, incremental_field)
    raise _UsePython("not a CSV, JSON-lines or Parquet file")


def _names(raw_names: list[str], path: Path, incremental_field: str) -> list[str]:
    names = normalize_columns(raw_names, path)
    if len(set(names)) != len(names):
        raise _UsePython("column names that are the same after normalising")
    if incremental_field not in names:
        raise _UsePython(f"no column {incremental_field!r}")
    return names


def _csv(path: Path, head: bytes, incremental_field: str) -> _Read:
    body = head.removeprefix(_BOM)
    if body[:1] in (b"\n", b"\r"):
        raise _UsePython("the first line is blank")
    if b"\n" not in body and len(head) == _HEAD_BYTES:
        raise _UsePython("the header is longer than 64 KiB")
    header = next(csv.reader(io.StringIO(_decode(head, path).split("\n", 1)[0], newline="")), [])
    if any("\x00" in h or any("\udc80" <= ch <= "\udcff" for ch in h) for h in header):
        raise _UsePython("the header has a NUL byte or is not UTF-8")
    names = _names(header, path, incremental_field)
    rejects, scan = temp_ref("rejects"), temp_ref("scan")
    params = [str(path), {n: "VARCHAR" for n in names}, rejects.name, scan.name]
    return _Read(csv_select_sql(MAX_LINE_BYTES), params, names, rejects=[rejects, scan])


def _csv_rejected_rows(wh: WarehouseResource, path: Path, read: _Read) -> list[RejectedRow]:
    """DuckDB's rejects as the Python reader words them, one per record, numbered by the line the
    record starts on (DuckDB counts records, so a quoted line break earlier would shift its number:
    the line is counted from the record's byte position instead)."""
    refused = wh.query(csv_rejects_sql(read.rejects[0]))
    other = sorted(set(refused["error_type"]) - set(_ROW_REJECTS))
    if other:
        raise _UsePython(f"DuckDB refused a line: {', '.join(other).lower()}")
    if refused.empty:
        return []
    n_columns = len(read.columns)
    data = path.read_bytes()
    out: dict[int, RejectedRow] = {}
    for line_byte in refused["line_byte_position"]:
        start = int(line_byte) - 1  # DuckDB's position is 1-based, counted in the file's bytes (a BOM too)
        # Lines as the Python reader counts them: \n, \r\n and a lone \r each end one.
        line = data.count(b"\n", 0, start) + data.count(b"\r", 0, start) - data.count(b"\r\n", 0, start) + 1
        # The record is parsed again from the file's bytes (DuckDB's copy of a line that is not
        # UTF-8 is lossy), so its fields, reason and text are the Python reader's.
        fields = _record_at(data, start)
        if len(fields) != n_columns:
            reason = f"has {len(fields)} field(s), the header has {n_columns}"
        else:
            reason = _bad_text(fields) or "is not valid UTF-8; save the file as UTF-8"
        out.setdefault(line, RejectedRow(line, reason, _preview(",".join(fields))))
    return [out[k] for k in sorted(out)]


def _record_at(data: bytes, start: int) -> list[str]:
    """The CSV record starting at byte ``start``, read as the Python reader reads it."""
    window = 1 << 16
    while True:
        chunk = data[start : start + window]
        stream = io.StringIO(chunk.decode("utf-8", errors="surrogateescape"), newline="")
        try:
            record = next(csv.reader(stream), [])
        except csv.Error:
            record = None
        if start + window >= len(data) or (record is not None and stream.tell() < len(stream.getvalue())):
            return record or []
        window *= 4  # the record may run past the window: read more


def _json_lines(wh: WarehouseResource, path: Path, head: bytes, incremental_field: str) -> _Read:
    if head.startswith(_BOM):
        raise _UsePython("a byte-order mark, which DuckDB's JSON reader refuses")
    found = wh.query(json_keys_sql(), [str(path)]).iloc[0]
    if int(found["not_objects"]):
        raise _UsePython(f"{int(found['not_objects'])} line(s) that are not JSON objects")
    keys = list(found["keys"]) if found["keys"] is not None else []
    if any(k.startswith(("$", "/")) for k in keys):
        raise _UsePython("a key starting with '$' or '/', which DuckDB reads as a path")
    # Columns in the order the first record writes them (as the Python reader orders them), then
    # any key only later records have, by name.
    first = _first_json_object(head)
    keys = [k for k in first if k in keys] + sorted(k for k in keys if k not in first)
    names = _names(keys, path, incremental_field)
    return _Read(json_select_sql(names), [*keys, *keys, str(path)], names, inexact=True)


def _first_json_object(head: bytes) -> list[str]:
    for line in head.split(b"\n"):
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError:
                return []
            return [str(k) for k in obj] if isinstance(obj, dict) else []
    return []


def _parquet(wh: WarehouseResource, path: Path, incremental_field: str) -> _Read:
    schema = wh.query(parquet_schema_sql(), [str(path)])
    sources, types = list(schema["column_name"]), list(schema["column_type"])
    names = _names(sources, path, incremental_field)
    for name, sql_type in zip(names, types):
        # The watermark's text is not stored, only parsed: any date or timestamp type will do (one
        # whose text is not ISO to the microsecond goes to the Python reader at the checks).
        watermark_type = name == incremental_field and (sql_type == "DATE" or sql_type.startswith("TIMESTAMP"))
        ok = sql_type == "VARCHAR" or sql_type in _INTEGER_TYPES or watermark_type
        if not ok:
            raise _UsePython(f"column {name!r} is {sql_type}, whose text pandas writes differently")
    # pandas reads an integer column with a null as floats ("1.0"): such a file keeps that text
    # through the Python reader rather than load "1" here and "1.0" from an older load.
    null_checked = [n for n, t in zip(names, types) if t in _INTEGER_TYPES]
    return _Read(parquet_select_sql(list(zip(sources, names))), [str(path)], names, null_checked=null_checked)
