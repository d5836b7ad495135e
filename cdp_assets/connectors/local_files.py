"""Local files: one folder per object; files directly in it are incremental loads, files in
``historical/`` the historical load. CSV, Parquet and JSON lines, chosen by extension."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class SourceFileError(ValueError):
    """A source file that cannot be loaded; names the file (and row) and the fix."""


def object_files(folder: Path, obj: str, historical: bool, fmt: str = "auto") -> list[Path]:
    """The data files of an object, sorted by name so loads are deterministic."""
    base = folder / obj / "historical" if historical else folder / obj
    if not base.is_dir():
        return []
    files = [p for p in base.iterdir() if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")]
    if fmt != "auto":
        files = [p for p in files if FORMATS[p.suffix.lower()] == fmt]
    return sorted(files)


def fingerprint(files: list[Path]) -> str:
    """Names, sizes and modification times: changes when any file is added, replaced or touched."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def normalize_column(name: str) -> str:
    """Header -> identifier: lowercase, runs of other characters become '_'."""
    col = re.sub(r"[^0-9a-z_]+", "_", str(name).strip().lower()).strip("_")
    if not col:
        col = "column"
    if col[0].isdigit():
        col = f"_{col}"
    return col[:128]


def read_json_lines(path: Path) -> pd.DataFrame:
    """JSON lines with every value kept as the file wrote it: numbers keep their digits (no
    float conversion), nothing is parsed as a date, nested values stay JSON text."""
    records = []
    with path.open(encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_int=str, parse_float=str)
            except json.JSONDecodeError as exc:
                raise SourceFileError(f"{path}: line {line_no}: not valid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(obj, dict):
                raise SourceFileError(f"{path}: line {line_no}: expected a JSON object, got {type(obj).__name__}")
            records.append(
                {k: (json.dumps(v) if isinstance(v, (dict, list)) else None if v is None else str(v) if not isinstance(v, bool) else str(v).lower()) for k, v in obj.items()}
            )
    return pd.DataFrame.from_records(records)


def read_file(path: Path) -> pd.DataFrame:
    """Read a file with every column as text (raw tables keep what the file said)."""
    kind = FORMATS.get(path.suffix.lower())
    try:
        if kind == "csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        elif kind == "parquet":
            df = pd.read_parquet(path)
        elif kind == "jsonl":
            df = read_json_lines(path)
        else:
            raise SourceFileError(f"{path}: unsupported file type; use .csv, .parquet or .jsonl")
    except SourceFileError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types; the file name is what the user needs
        raise SourceFileError(f"{path}: cannot be read as {kind}: {exc}") from exc
    renamed = [normalize_column(c) for c in df.columns]
    dupes = sorted({c for c in renamed if renamed.count(c) > 1})
    if dupes:
        raise SourceFileError(
            f"{path}: columns {dupes} are the same after normalising names (lowercase, '_' for other "
            "characters); rename them in the file"
        )
    df.columns = renamed
    return df.astype("string")


def file_columns(path: Path, sample_lines: int = 1000) -> list[str]:
    """A file's normalised column names, read from its header (CSV), schema (Parquet) or first
    lines (JSON lines), without loading the data."""
    kind = FORMATS.get(path.suffix.lower())
    if kind == "csv":
        df = pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8-sig")
        names = list(df.columns)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
    else:
        names = []
        with path.open(encoding="utf-8-sig") as fh:
            for i, line in enumerate(fh):
                if i >= sample_lines:
                    break
                if line.strip():
                    obj = json.loads(line)
                    names.extend(k for k in obj if k not in names)
    return [normalize_column(c) for c in names]
