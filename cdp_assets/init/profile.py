"""Per-column statistics of the sampled objects, computed by SQL on an in-memory DuckDB (the
staging rules' own expressions decide what parses), plus value shapes read in Python."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd

from cdp_assets.config.models import StagingRule
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.init.sources import FILE_COLUMN, ObjectSample
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.profile import (
    column_profile_sql,
    rule_parse_sql,
    standardized_counts_sql,
    top_values_sql,
    value_counts_sql,
)
from cdp_assets.config.phone_regions import phone_regions

TOP_VALUES = 5
# Default regions tried for a phone column's national forms, the first winning a tie (US, the
# rule's default). International forms (+CC, 00CC) parse under any of them; each region tried
# costs a query, so not all of the table's regions (cdp_assets/data/phone_regions.csv).
LIKELY_PHONE_REGIONS = ("US", "CA", "GB", "DE", "FR", "JP", "AU", "IN", "BR", "ES", "IT", "NL", "MX")
SHAPE_SAMPLE = 5000  # distinct values whose shapes are read per column

SHAPES: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"),
    # digits with the punctuation phone numbers are written with, 7-15 digits
    "phone_like": re.compile(r"^\+?[0-9 ().\-/]{7,24}$"),
    "phone_formatted": re.compile(r"^\+|[ ().\-]"),
    "digits": re.compile(r"^[0-9]+$"),
    "number": re.compile(r"^-?[0-9]+([.,][0-9]+)?([eE][-+]?[0-9]+)?$"),
    "decimal": re.compile(r"^-?[0-9]+[.,][0-9]+$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    # an opaque random token, maybe with a short prefix: ck_a6aa1fb44ba809f5, GA1.2.3434.5454
    "random_token": re.compile(
        r"^[A-Za-z]{0,6}[_\-.:]?(?=[A-Za-z0-9._\-]*[0-9])(?=[A-Za-z0-9._\-]*[A-Za-z])[A-Za-z0-9._\-]{12,}$"
    ),
    # a code: letters and digits without spaces (C000123, 8812, usr-91)
    "token": re.compile(r"^[A-Za-z0-9_\-:.#/]{1,64}$"),
    "date_like": re.compile(
        # ISO dates and date-times, or day/month/year with an optional time
        r"^\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
        r"|^\d{1,2}/\d{1,2}/\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?$"
    ),
    "words": re.compile(r"^[^\W\d_]+([ '\-.][^\W\d_]+)*$"),
    "json": re.compile(r"^\s*[\[{]"),
}


@dataclass
class ColumnStats:
    table: str
    column: str
    row_count: int
    non_null: int
    distinct: int
    min_value: str | None
    max_value: str | None
    top: list[tuple[str, int]]
    shares: dict[str, float]  # shape -> share of the sampled distinct values having it
    unique_per_file: bool  # no value repeats within one file (a primary key candidate)
    email_parse: float = 0.0  # share of non-empty values the email rule standardises
    phone_parse: float = 0.0  # the same for the phone rule, in its best region
    phone_region: str | None = None
    mean_length: float = 0.0
    values: set[str] = field(default_factory=set, repr=False)  # distinct values (sampled), for overlaps

    @property
    def null_share(self) -> float:
        return 1 - self.non_null / self.row_count if self.row_count else 1.0

    @property
    def distinct_ratio(self) -> float:
        return self.distinct / self.non_null if self.non_null else 0.0


def _shares(values: list[str]) -> dict[str, float]:
    if not values:
        return {k: 0.0 for k in SHAPES}
    out = {}
    for name, pattern in SHAPES.items():
        out[name] = sum(1 for v in values if pattern.search(v)) / len(values)
    if out["json"]:
        out["json"] = sum(1 for v in values if SHAPES["json"].search(v) and _is_json_container(v)) / len(values)
    if out["date_like"]:
        parsed = pd.to_datetime(pd.Series(values), errors="coerce", format="mixed", utc=True)
        out["datetime"] = float(parsed.notna().mean())
    else:
        out["datetime"] = 0.0
    return out


def _is_json_container(v: str) -> bool:
    try:
        return isinstance(json.loads(v), (dict, list))
    except ValueError:
        return False


class Profiler:
    """Loads each sample into an in-memory DuckDB and answers per-column questions by SQL."""

    def __init__(self) -> None:
        self.warehouse = DuckDBWarehouse(path=":memory:")
        self._refs: dict[str, TableRef] = {}

    @contextmanager
    def open(self, samples: list[ObjectSample]) -> Iterator["Profiler"]:
        with self.warehouse.session():
            for i, s in enumerate(samples):
                if s.problem is None:
                    ref = TableRef("cdp_init", f"sample_{i}")
                    self.warehouse.write_dataframe(ref, s.frame)
                    self._refs[s.table] = ref
            yield self

    def column(self, sample: ObjectSample, column: str) -> ColumnStats:
        ref = self._refs[sample.table]
        wh = self.warehouse
        p = wh.fetch(column_profile_sql(ref, column)).iloc[0]
        top = wh.fetch(top_values_sql(ref, column, TOP_VALUES))
        counts = wh.fetch(value_counts_sql(ref, column))
        values = sorted(counts["value"].astype(str))
        shape_values = (
            values if len(values) <= SHAPE_SAMPLE else values[:: max(1, len(values) // SHAPE_SAMPLE)][:SHAPE_SAMPLE]
        )
        col = sample.frame[column]
        per_file = sample.frame.loc[col.notna(), [FILE_COLUMN, column]]
        unique_per_file = (
            bool(len(per_file)) and not per_file.duplicated().any() and int(p["non_null"]) == int(p["row_count"])
        )
        stats = ColumnStats(
            table=sample.table,
            column=column,
            row_count=int(p["row_count"]),
            non_null=int(p["non_null"]),
            distinct=int(p["distinct_count"]),
            min_value=None if pd.isna(p["min_value"]) else str(p["min_value"]),
            max_value=None if pd.isna(p["max_value"]) else str(p["max_value"]),
            top=[(str(v), int(n)) for v, n in zip(top["value"], top["n"])],
            shares=_shares(shape_values),
            unique_per_file=unique_per_file,
            mean_length=float(sum(len(v) for v in shape_values) / len(shape_values)) if shape_values else 0.0,
            values=set(values),
        )
        if stats.shares["email"] > 0.2:
            stats.email_parse = self.parse_share(sample, column, StagingRule(rule="email", columns=[column]))
        if stats.shares["phone_like"] > 0.2:
            for region in (r for r in LIKELY_PHONE_REGIONS if r in phone_regions()):
                share = self.parse_share(
                    sample, column, StagingRule(rule="phone", columns=[column], default_region=region)
                )
                if share > stats.phone_parse:
                    stats.phone_parse, stats.phone_region = share, region
        return stats

    def parse_share(self, sample: ObjectSample, column: str, rule: StagingRule) -> float:
        row = self.warehouse.fetch(rule_parse_sql(self._refs[sample.table], column, rule)).iloc[0]
        return int(row["parsed"]) / int(row["present"]) if int(row["present"]) else 0.0

    def standardized_counts(self, sample: ObjectSample, column: str, rule: StagingRule | None) -> pd.DataFrame:
        """What the key column will hold, value by value (raw values for keys without a rule)."""
        ref = self._refs[sample.table]
        sql = standardized_counts_sql(ref, column, rule) if rule is not None else value_counts_sql(ref, column)
        return self.warehouse.fetch(sql)
