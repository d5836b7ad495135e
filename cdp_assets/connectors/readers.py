"""Reading one source file (CSV, Parquet, JSON lines) into text columns, row by row.

A row that cannot be used is not dropped and does not fail the file: it is returned as a
``RejectedRow`` with its row number and the reason, and the loader writes it to the object's
``_rejected`` table. Only a file that cannot be read at all (an unterminated quote, a broken
Parquet file, a header that is not UTF-8) fails, naming the file and the line.

Row numbers are what a user finds in an editor: the line where a CSV record starts (the header
is line 1), the line of a JSON-lines record, the 1-based row of a Parquet file.

Text files are read as UTF-8 (a BOM is dropped) or, when they are UTF-16 (a UTF-16 BOM, or the
NUL byte of every other byte of an ASCII first line that UTF-16 without BOM has), decoded as
such: the text is unambiguous, so it is read rather than refused. Errors that quote a file's
content quote a short masked excerpt (``excerpt``): a file that is not what it seems (a symlink
to a system file) never has its lines copied into errors or logs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from dagster import get_dagster_logger

FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
ROW_COLUMN = "_cdp_row"  # each good row's number in its file, until the rows are loaded
RAW_PREVIEW = 1000  # characters of a rejected row kept in the _rejected table
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
EXCERPT_CHARS = 40  # at most this much of a file's content is quoted in an error
EXCERPT_CLEAR = 4  # of which the first characters are shown as they are, the rest masked

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


def excerpt(text: object) -> str:
    """A file's content as an error may quote it: at most ``EXCERPT_CHARS`` characters, every
    letter and digit after the first ``EXCERPT_CLEAR`` masked with ``*`` (punctuation is kept, so
    the shape of a value still shows: ``06/0*/****``), as a quoted literal."""
    value = str(text)
    short = value[:EXCERPT_CHARS]
    masked = short[:EXCERPT_CLEAR] + re.sub(r"\w", "*", short[EXCERPT_CLEAR:])
    return repr(masked + ("..." if len(value) > EXCERPT_CHARS else ""))


def normalize_column(name: str, position: int | None = None) -> str:
    """Header -> identifier: lowercase, runs of other characters become '_'. A header with no
    letter or digit becomes ``column_{position}`` (1-based), or ``column`` without a position."""
    col = re.sub(r"[^0-9a-z_]+", "_", str(name).strip().lower()).strip("_")
    if not col:
        col = "column" if position is None else f"column_{position}"
    if col[0].isdigit():
        col = f"_{col}"
    return col[:128]


def normalize_columns(names: list[str], path: Path) -> list[str]:
    """A file's headers as identifiers; an empty header is named by its position, with a
    warning naming the file and the position (it is a column the writer forgot to name)."""
    out = []
    for position, name in enumerate(names, start=1):
        col = normalize_column(name, position)
        if col == f"column_{position}" and re.sub(r"[^0-9a-z_]+", "", str(name).lower()).strip("_") == "":
            what = "is empty" if not str(name).strip() else f"has no letter or digit ({excerpt(name)})"
            get_dagster_logger("cdp_assets.readers").warning(
                f"{path}: the header of column {position} {what}; it is loaded as {col!r}. Name the column in the file"
            )
        out.append(col)
    return out


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


def utf16_codec(data: bytes) -> str | None:
    """``utf-16`` (with a BOM), ``utf-16-le`` / ``utf-16-be`` (without: an ASCII first line has a
    NUL byte beside each character), or None for anything else."""
    if data.startswith(_UTF16_BOMS):
        return "utf-16"
    head = data[: data.find(b"\n") + 1 or 200][:200]
    if len(head) >= 4:
        even, odd = head[0::2], head[1::2]
        if odd and odd.count(0) == len(odd) and even.count(0) == 0:
            return "utf-16-le"
        if even and even.count(0) == len(even) and odd.count(0) == 0:
            return "utf-16-be"
    return None


def _decode(data: bytes, path: Path) -> str:
    codec = utf16_codec(data)
    if codec is not None:
        try:
            return data.decode(codec).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:  # cut off mid-character, or a lone surrogate
            raise SourceFileError(
                f"{path}: is UTF-16 but byte {exc.start} is not ({exc.reason}); the "
                "file is damaged or still being written. Write it again, or convert a "
                f"good copy to UTF-8: iconv -f {codec.upper()} -t UTF-8 FILE > FILE.utf8"
            ) from None
    # surrogateescape keeps undecodable bytes visible, so one bad row is rejected, not the file.
    return data.removeprefix(_BOM).decode("utf-8", errors="surrogateescape")


def _read_csv(path: Path) -> FileRead:
    text = _decode(path.read_bytes(), path)
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
                if any("\x00" in v for v in record):
                    # UTF-16 without BOM whose first line is not ASCII is not recognised as such
                    raise SourceFileError(
                        f"{path}: line {line}: the header contains NUL bytes, the mark of a UTF-16 file without BOM; "
                        "convert it: iconv -f UTF-16LE -t UTF-8 FILE > FILE.utf8 (UTF-16BE if that gives no sense)"
                    )
                if _bad_text(record):
                    raise SourceFileError(f"{path}: line {line}: the header {_bad_text(record)}")
                header = record
                continue
            raw = ",".join(record)
            if len(record) != len(header):
                rejected.append(
                    RejectedRow(line, f"has {len(record)} field(s), the header has {len(header)}", _preview(raw))
                )
                continue
            values = [v if v != "" else None for v in record]
            reason = _bad_text(values)
            if reason:
                rejected.append(RejectedRow(line, reason, _preview(raw)))
                continue
            rows.append(values)
            numbers.append(line)
    except csv.Error as exc:
        raise SourceFileError(
            f"{path}: line {start}: cannot be parsed as CSV ({exc}); fix the quoting from that line on"
        ) from None
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


def _json_type(line: str) -> str:
    """The JSON type name of a valid JSON value, by its first character (numbers are parsed as
    text here, so the Python type would say ``str`` for ``42``)."""
    first = line.lstrip()[:1]
    return {"{": "object", "[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}.get(
        first, "number"
    )


def _read_json_lines(path: Path) -> FileRead:
    """Every value kept as the file wrote it: numbers keep their digits (no float conversion),
    nothing is parsed as a date, nested values stay JSON text."""
    records, numbers, rejected = [], [], []
    for line_no, line in enumerate(_decode(path.read_bytes(), path).splitlines(), start=1):
        if not line.strip():
            continue
        reason = _bad_text([line])
        if reason:
            rejected.append(RejectedRow(line_no, reason, _preview(line)))
            continue
        try:
            obj = json.loads(line, parse_int=str, parse_float=str)
        except json.JSONDecodeError as exc:
            # A line that is not a record may not be data at all (a symlink to another file):
            # it is kept as a masked excerpt, like an error's quote.
            rejected.append(RejectedRow(line_no, f"is not valid JSON ({exc.msg} at column {exc.colno})", excerpt(line)))
            continue
        if not isinstance(obj, dict):
            rejected.append(
                RejectedRow(
                    line_no,
                    f"is a JSON {_json_type(line)}, not an object; each line must be one {{...}} record",
                    excerpt(line),
                )
            )
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


def _json_default(v: object) -> object:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)  # Decimal and anything else: its exact text


def _nested_json(value: object, is_map: bool) -> str | None:
    if value is None:
        return None
    if is_map:  # pyarrow gives a map as (key, value) pairs
        value = {str(k): v for k, v in value}
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _read_parquet(path: Path) -> FileRead:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        frame = table.to_pandas()
    except Exception as exc:  # pyarrow raises many types; the file name is what the user needs
        raise SourceFileError(
            f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]}); replace the file"
        ) from exc
    # Struct, list and map columns become JSON text (not Python's repr of numpy arrays), so a
    # staging rule or the engine's JSON functions can read them.
    for i, column in enumerate(table.schema):
        t = column.type
        if (
            pa.types.is_struct(t)
            or pa.types.is_list(t)
            or pa.types.is_large_list(t)
            or pa.types.is_fixed_size_list(t)
            or pa.types.is_map(t)
        ):
            frame.iloc[:, i] = pd.array(
                [_nested_json(v, pa.types.is_map(t)) for v in table.column(i).to_pylist()], dtype=object
            )
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
    renamed = normalize_columns(columns, path)
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
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
        head = head[: len(head) // 2 * 2] if utf16_codec(head) else head  # whole UTF-16 code units
        names = next(csv.reader(io.StringIO(_decode(head, path).split("\n", 1)[0], newline="")), [])
    elif kind == "parquet":
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
    else:
        names = []
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
        text = _decode(head[: len(head) // 2 * 2] if utf16_codec(head) else head, path)
        for line in text.splitlines()[:sample_lines]:
            try:
                obj = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                names.extend(k for k in obj if k not in names)
    return [normalize_column(c, position) for position, c in enumerate(names, start=1)]
