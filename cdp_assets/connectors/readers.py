"""Reading one source file (CSV, Parquet, JSON lines) into text columns, row by row.

A row that cannot be used is not dropped and does not fail the file: it is returned as a
``RejectedRow`` with its row number and the reason, and the loader writes it to the object's
``_rejected`` table. Only a file that cannot be read at all (an unterminated quote, a broken
Parquet file, a header that is not UTF-8) fails, naming the file and the line.

Row numbers are what a user finds in an editor: the line where a CSV record starts (the header
is line 1), the line of a JSON-lines record, the 1-based row of a Parquet file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
ROW_COLUMN = "_cdp_row"  # each good row's number in its file, until the rows are loaded
RAW_PREVIEW = 1000  # characters of a rejected row kept in the _rejected table
_BOM = b"\xef\xbb\xbf"

# csv refuses fields over 128 KiB by default; a 10 MB text field is data, not an error.
csv.field_size_limit(2**31 - 1)


class SourceFileError(ValueError):
    """A source file that cannot be loaded; names the file (and row) and the fix."""


@dataclass
class RejectedRow:
    row: int
    reason: str
    raw: str


@dataclass
class FileRead:
    """The good rows of a file (text columns plus ``_cdp_row``) and the rejected ones."""

    frame: pd.DataFrame
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def rows_in_file(self) -> int:
        return len(self.frame) + len(self.rejected)


def normalize_column(name: str) -> str:
    """Header -> identifier: lowercase, runs of other characters become '_'."""
    col = re.sub(r"[^0-9a-z_]+", "_", str(name).strip().lower()).strip("_")
    if not col:
        col = "column"
    if col[0].isdigit():
        col = f"_{col}"
    return col[:128]


def _preview(text: str) -> str:
    return text.encode("utf-8", errors="replace").decode("utf-8")[:RAW_PREVIEW]


def _bad_text(values: list[str | None]) -> str | None:
    """Why these values cannot be stored as text, or None."""
    for v in values:
        if v is None:
            continue
        if "\x00" in v:
            return "contains a NUL byte; remove it from the file"
        if any("\udc80" <= ch <= "\udcff" for ch in v):
            return "is not valid UTF-8; save the file as UTF-8"
    return None


def _decode(data: bytes) -> str:
    # surrogateescape keeps undecodable bytes visible, so one bad row is rejected, not the file.
    return data.removeprefix(_BOM).decode("utf-8", errors="surrogateescape")


def _read_csv(path: Path) -> FileRead:
    text = _decode(path.read_bytes())
    # strict: a quote that is never closed fails the file at its line instead of silently
    # swallowing every later row into one field.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str | None]] = []
    numbers: list[int] = []
    rejected: list[RejectedRow] = []
    start = 1
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            if not record:
                continue  # a blank line is not a row
            if header is None:
                if _bad_text(record):
                    raise SourceFileError(f"{path}: line {line}: the header {_bad_text(record)}")
                header = record
                continue
            raw = ",".join(record)
            if len(record) != len(header):
                rejected.append(RejectedRow(line, f"has {len(record)} field(s), the header has {len(header)}", _preview(raw)))
                continue
            values = [v if v != "" else None for v in record]
            reason = _bad_text(values)
            if reason:
                rejected.append(RejectedRow(line, reason, _preview(raw)))
                continue
            rows.append(values)
            numbers.append(line)
    except csv.Error as exc:
        raise SourceFileError(f"{path}: line {start}: cannot be parsed as CSV ({exc}); fix the quoting from that line on") from None
    frame = pd.DataFrame(rows, columns=header or [], dtype="string")
    frame[ROW_COLUMN] = pd.Series(numbers, dtype="int64")
    return FileRead(frame, rejected)


def _json_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _read_json_lines(path: Path) -> FileRead:
    """Every value kept as the file wrote it: numbers keep their digits (no float conversion),
    nothing is parsed as a date, nested values stay JSON text."""
    records, numbers, rejected = [], [], []
    for line_no, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        reason = _bad_text([line])
        if reason:
            rejected.append(RejectedRow(line_no, reason, _preview(line)))
            continue
        try:
            obj = json.loads(line, parse_int=str, parse_float=str)
        except json.JSONDecodeError as exc:
            rejected.append(RejectedRow(line_no, f"is not valid JSON ({exc.msg} at column {exc.colno})", _preview(line)))
            continue
        if not isinstance(obj, dict):
            rejected.append(RejectedRow(line_no, f"is a JSON {type(obj).__name__}, not an object", _preview(line)))
            continue
        values = {str(k): _json_text(v) for k, v in obj.items()}
        reason = _bad_text(list(values.values()))  # a \u0000 escape decodes to NUL
        if reason:
            rejected.append(RejectedRow(line_no, reason, _preview(line)))
            continue
        records.append(values)
        numbers.append(line_no)
    frame = pd.DataFrame.from_records(records).astype("string") if records else pd.DataFrame()
    frame[ROW_COLUMN] = pd.Series(numbers, dtype="int64")
    return FileRead(frame, rejected)


def _read_parquet(path: Path) -> FileRead:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types; the file name is what the user needs
        raise SourceFileError(f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]}); replace the file") from exc
    text = frame.astype("string")
    rejected, keep = [], []
    for i, values in enumerate(text.itertuples(index=False, name=None), start=1):
        reason = _bad_text([None if pd.isna(v) else v for v in values])
        if reason:
            rejected.append(RejectedRow(i, reason, _preview(repr(values))))
        keep.append(reason is None)
    good = text[keep].reset_index(drop=True)
    good[ROW_COLUMN] = pd.Series([i for i, k in enumerate(keep, start=1) if k], dtype="int64")
    return FileRead(good, rejected)


def read_source_file(path: Path) -> FileRead:
    """Read a file with every column as text (raw tables keep what the file said)."""
    kind = FORMATS.get(path.suffix.lower())
    if kind == "csv":
        read = _read_csv(path)
    elif kind == "parquet":
        read = _read_parquet(path)
    elif kind == "jsonl":
        read = _read_json_lines(path)
    else:
        raise SourceFileError(f"{path}: unsupported file type; use .csv, .parquet or .jsonl")
    columns = [c for c in read.frame.columns if c != ROW_COLUMN]
    renamed = [normalize_column(c) for c in columns]
    dupes = sorted({c for c in renamed if renamed.count(c) > 1})
    if dupes:
        raise SourceFileError(
            f"{path}: columns {dupes} are the same after normalising names (lowercase, '_' for other "
            "characters); rename them in the file"
        )
    read.frame.columns = [*renamed, ROW_COLUMN] if ROW_COLUMN in read.frame.columns else renamed
    return read


def file_columns(path: Path, sample_lines: int = 1000) -> list[str]:
    """A file's normalised column names, read from its header (CSV), schema (Parquet) or first
    lines (JSON lines), without loading the data."""
    kind = FORMATS.get(path.suffix.lower())
    if kind == "csv":
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            names = next(csv.reader(fh), [])
    elif kind == "parquet":
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
    else:
        names = []
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= sample_lines:
                    break
                try:
                    obj = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    names.extend(k for k in obj if k not in names)
    return [normalize_column(c) for c in names]
