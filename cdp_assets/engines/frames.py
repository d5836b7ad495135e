"""DataFrames at the engine boundary: what a column holds, what counts as missing, and a typed
frame from the rows and column types an engine's result carries. Engines that move values
themselves (Databricks through its cursor, Treasure Data through its job API) share these."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

_INTEGER_TYPES = ("bigint", "int", "integer", "long", "smallint", "tinyint")
_FLOAT_TYPES = ("double", "float", "real")


def is_missing(v: Any) -> bool:
    """Every kind of missing a DataFrame cell can hold: None, NA, NaT, NaN."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def column_kind(s: pd.Series) -> str:
    """What a DataFrame column holds, for an engine to name its type: ``boolean``, ``integer``,
    ``float``, ``timestamp`` (a datetime dtype, or objects that are all datetimes) or ``text``."""
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_integer_dtype(s):
        return "integer"
    if pd.api.types.is_float_dtype(s):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "timestamp"
    values = [v for v in s.tolist() if not is_missing(v)]
    if values and all(isinstance(v, (dt.datetime, pd.Timestamp)) for v in values):
        return "timestamp"
    return "text"


def typed_frame(rows: list, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """Rows as pandas, typed by the result's ``(name, engine type)`` columns: timestamps naive
    UTC (from datetimes or ISO text; aware ones converted), integers int64 (Int64 with NULLs),
    doubles float64, the rest (text, arrays as lists) as objects."""
    names = [name for name, _ in columns]
    values_by_column = list(zip(*rows)) if rows else [() for _ in names]
    out = {}
    for (name, engine_type), values in zip(columns, values_by_column):
        kind, values = str(engine_type).lower(), list(values)
        if kind.startswith("timestamp") or kind == "date":
            stamps = pd.to_datetime(values, utc=True, format="ISO8601").tz_localize(None) if values else []
            out[name] = pd.Series(stamps, dtype="datetime64[ns]")
        elif kind in _INTEGER_TYPES:
            out[name] = pd.Series(values, dtype="int64" if None not in values else "Int64")
        elif kind in _FLOAT_TYPES or kind.startswith("decimal"):
            out[name] = pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
        else:
            out[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=names)
