"""SQL that profiles a sampled table for ``cdp-assets init``: counts, extremes, frequent values,
and how many values a staging rule would standardise (the rule's own SQL, so what init
promises is what staging will do)."""

from __future__ import annotations

from cdp_assets.config.models import StagingRule
from cdp_assets.sql.dialects import TableRef, quote
from cdp_assets.sql.staging import output_column, staging_sql


def _present(column: str) -> str:
    return f"NULLIF(TRIM(CAST({quote(column)} AS VARCHAR)), '')"


def column_profile_sql(table: TableRef, column: str) -> str:
    """Rows, non-empty values, distinct values, and the smallest and largest value (as text)."""
    v = _present(column)
    return (
        f"SELECT COUNT(*) AS row_count, COUNT({v}) AS non_null, COUNT(DISTINCT {v}) AS distinct_count, "
        f"MIN({v}) AS min_value, MAX({v}) AS max_value FROM {table.sql}"
    )


def top_values_sql(table: TableRef, column: str, limit: int) -> str:
    """The most frequent non-empty values with their row counts (ties by value, deterministic)."""
    v = _present(column)
    return (
        f"SELECT {v} AS value, COUNT(*) AS n FROM {table.sql} WHERE {v} IS NOT NULL "
        f"GROUP BY 1 ORDER BY n DESC, value LIMIT {int(limit)}"
    )


def value_counts_sql(table: TableRef, column: str) -> str:
    """Every non-empty value with its row count."""
    v = _present(column)
    return f"SELECT {v} AS value, COUNT(*) AS n FROM {table.sql} WHERE {v} IS NOT NULL GROUP BY 1"


def _staged(table: TableRef, column: str, rule: StagingRule) -> tuple[str, str]:
    """The staging query of ``rule`` over ``column`` alone, and its output column: the whole
    rule as staging builds it (its helper columns, the phone table it joins)."""
    name = "profiled"
    return staging_sql(table, [column], {name: rule}), quote(output_column(name, rule))


def rule_parse_sql(table: TableRef, column: str, rule: StagingRule) -> str:
    """Of the non-empty values, how many the staging rule standardises to a value."""
    staged, out = _staged(table, column, rule)
    return (
        f"SELECT COUNT({_present(column)}) AS present, COUNT({out}) AS parsed FROM ({staged}) AS {quote('_cdp_staged')}"
    )


def standardized_counts_sql(table: TableRef, column: str, rule: StagingRule) -> str:
    """Each standardised value with its row count: what the key column will hold."""
    staged, out = _staged(table, column, rule)
    return (
        f"SELECT {out} AS value, COUNT(*) AS n FROM ({staged}) AS "
        f"{quote('_cdp_staged')} WHERE {out} IS NOT NULL GROUP BY 1"
    )


def sample_rows_sql(table: TableRef, limit: int) -> str:
    """A sample of a warehouse table's rows for profiling."""
    return f"SELECT * FROM {table.sql} LIMIT {int(limit)}"
