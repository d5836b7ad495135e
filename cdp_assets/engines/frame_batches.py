"""A DataFrame as JSON batch documents for the Databricks load (``sql/frame_load.py``).

Each document is ``{"c0": [...], "c1": [...]}``: one array per column, rows in order, ``null`` for
every kind of missing; text is escaped to ASCII, so characters are bytes. Batches are cut by
size (``max_bytes`` of JSON each, a row never split), so a wide or long frame costs a statement
per ``max_bytes``, not per ``256 / columns`` rows.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd

from cdp_assets.engines.frames import column_kind, is_missing
from cdp_assets.sql.frame_load import LoadColumn, json_field

_EPOCH = pd.Timestamp("1970-01-01")


def load_columns(df: pd.DataFrame) -> list[LoadColumn]:
    return [LoadColumn(str(c), column_kind(df[c])) for c in df.columns]


def _micros(v) -> int:
    ts = pd.Timestamp(v)
    if ts.tzinfo is not None:  # aware: the same instant in UTC; naive values are UTC already
        ts = ts.tz_convert("UTC").tz_localize(None)
    return (ts - _EPOCH) // pd.Timedelta(microseconds=1)


def _encoder(column: LoadColumn):
    """value -> JSON text of one cell of this column."""
    if column.kind == "timestamp":
        return lambda v: str(_micros(v))
    if column.kind == "boolean":
        return lambda v: "true" if bool(v) else "false"
    if column.kind == "integer":
        return lambda v: str(int(v))
    if column.kind == "float":
        return lambda v: json.dumps(float(v))  # repr: exact round trip; inf as Infinity

    def text(v) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (bool, int, float, decimal.Decimal, np.generic, dt.date, dt.datetime)):
            return json.dumps(str(v.item() if isinstance(v, np.generic) else v))
        raise ValueError(
            f"column {column.name!r}: a {type(v).__name__} value ({str(v)[:60]!r}) cannot be stored in a text column; "
            "convert the column to text or a scalar type before loading it"
        )

    return text


def encoded_columns(df: pd.DataFrame, columns: list[LoadColumn]) -> list[list[str]]:
    """Every cell as JSON text, column by column."""
    out = []
    for column, series in zip(columns, (df[c] for c in df.columns)):
        encode = _encoder(column)
        out.append(["null" if is_missing(v) else encode(v) for v in series.astype(object).tolist()])
    return out


def json_batches(df: pd.DataFrame, columns: list[LoadColumn], max_bytes: int) -> Iterator[tuple[int, str]]:
    """(rows, document) for consecutive row ranges of ``df``; each document holds at most
    ``max_bytes`` of JSON unless one row alone is larger (then it travels alone)."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    if df.empty:
        return
    cells = encoded_columns(df, columns)
    fields = [json_field(i) for i in range(len(columns))]
    overhead = sum(len(f) + 6 for f in fields) + 2  # '"cN":[],' per column and the braces
    row_bytes = [sum(len(col[i]) + 1 for col in cells) for i in range(len(df))]  # cells and commas
    start, size = 0, overhead
    for i, n in enumerate(row_bytes):
        if i > start and size + n > max_bytes:
            yield i - start, _document(fields, cells, start, i)
            start, size = i, overhead
        size += n
    yield len(df) - start, _document(fields, cells, start, len(df))


def _document(fields: list[str], cells: list[list[str]], start: int, end: int) -> str:
    return "{" + ",".join(f'"{f}":[' + ",".join(col[start:end]) + "]" for f, col in zip(fields, cells)) + "}"
