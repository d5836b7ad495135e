"""Hist-union checks: it has at least the de-duplicated rows of each input, and no duplicate keys.
Evaluated in the hist-union step after its build: the rows and the columns come from the build,
and one query measures what it cannot know (duplicate keys, each input's distinct rows)."""

from __future__ import annotations

from dagster import AssetCheckResult

from cdp_assets.checks import Check, check_result, column_names
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.checks import hist_union_measures_sql
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS

CHECKS = [
    Check("covers_inputs", "Rows >= rows of each input after de-duplication."),
    Check("unique_primary_key", "No primary key value appears twice."),
]


def hist_union_results(
    warehouse: WarehouseResource,
    target: TableRef,
    rows: int,
    columns: list[tuple[str, str]],
    inputs: list[tuple[TableRef, list[str]]],
    pk: list[str],
) -> dict[str, AssetCheckResult]:
    """Every check of ``CHECKS`` for the table the step built, with ``rows`` rows and ``columns``,
    from ``inputs`` (each existing input with its column names)."""

    def key_of(names: list[str]) -> list[str]:  # without a primary key, a row is its key (lineage aside)
        return pk or [c for c in names if c not in LINEAGE_COLUMNS]

    row = warehouse.fetch(
        hist_union_measures_sql(target, key_of(column_names(columns)), [(ref, key_of(cols)) for ref, cols in inputs])
    ).iloc[0]
    per_input = {ref.display: int(row[f"input_{i}"]) for i, (ref, _) in enumerate(inputs)}
    needed = max(per_input.values(), default=0)
    key_text = ", ".join(pk) if pk else "(all columns: no primary_key configured)"
    dupes = int(row["duplicate_keys"])
    return {
        "covers_inputs": check_result(
            rows >= needed,
            measured=rows,
            threshold=needed,
            unit="rows",
            comparison="at_least",
            distinct_input_rows=per_input,
        ),
        "unique_primary_key": check_result(
            dupes == 0, measured=dupes, threshold=0, unit="duplicate key(s)", comparison="at_most", key=key_text
        ),
    }
