"""Writing the sample: each object's historical and two incremental files, and the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cdp_assets.sample.layout import FILES, ID_PREFIX, INCREMENTAL_DATES
from cdp_assets.sample.render import fmt_ids

# file segment of a row: 0 historical, 1 and 2 the incremental days
SEGMENTS = (0, 1, 2)


def segments(rows: int, hist: int) -> np.ndarray:
    """Segment of each of ``rows`` rows: the first ``hist`` historical, then day 1 (which gets
    the odd row) and day 2."""
    inc = rows - hist
    day1 = (inc + 1) // 2
    return np.concatenate([np.zeros(hist, np.int64), np.ones(day1, np.int64), np.full(inc - day1, 2, np.int64)])


def object_file(out: Path, key: str, segment: int) -> Path:
    source, obj = key.split("/")
    stem, ext = FILES[key]
    obj_dir = out / source / obj
    if segment == 0:
        return obj_dir / "historical" / f"{stem}_hist.{ext}"
    return obj_dir / f"{stem}_{INCREMENTAL_DATES[segment - 1]}.{ext}"


def segment_rows(seg: np.ndarray, ids: np.ndarray, secs: np.ndarray, segment: int) -> np.ndarray:
    """The rows of one file, in file order: incremental files in change order."""
    rows = np.flatnonzero(seg == segment)
    if segment:
        rows = rows[np.lexsort((ids[rows], secs[rows]))]
    return rows


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """CSV and JSON lines with '\\n' line ends, Parquet with every column a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lstrip(".")
    if ext == "csv":
        frame.to_csv(path, index=False, lineterminator="\n")
    elif ext == "jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=True) if len(frame) else ""
        if text and not text.endswith("\n"):
            text += "\n"
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    elif ext == "parquet":
        table = pa.table({c: pa.array(frame[c].to_numpy(dtype=object), type=pa.string()) for c in frame.columns})
        pq.write_table(table, path, compression="snappy")
    else:  # pragma: no cover
        raise ValueError(f"{path}: no writer for {ext!r}")


def read_frame(path: Path) -> pd.DataFrame:
    """A file as write_frame wrote it: every value a str or None (CSV's empty field is None)."""
    ext = path.suffix.lstrip(".")
    if ext == "csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return frame.astype(object).where(frame != "", None)
    if ext == "parquet":
        return pq.read_table(path).to_pandas().astype(object)
    if ext == "jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return pd.DataFrame(rows, dtype=object)
    raise ValueError(f"{path}: no reader for {ext!r}")  # pragma: no cover


def ground_truth(recs: dict[str, dict[str, np.ndarray]], width: int, n_persons: int) -> pd.DataFrame:
    """One row per distinct record id: (source, object, record_id, person_id)."""
    parts = []
    pid_width = max(6, len(str(n_persons)))
    for key, rec in recs.items():
        first = np.unique(rec["id"], return_index=True)[1]  # customers: drop update duplicates
        ids, person = rec["id"][first], rec["person"][first]
        source, obj = key.split("/")
        parts.append(
            pd.DataFrame(
                {
                    "source": source,
                    "object": obj,
                    "record_id": fmt_ids(ID_PREFIX[key], ids, width),
                    "person_id": fmt_ids("P", person + 1, pid_width),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
