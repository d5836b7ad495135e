"""Hist-union checks: it has at least the de-duplicated rows of each input, and no duplicate keys.
Evaluated in the hist-union step after its build: the rows come from the build, and so do the
duplicate keys and each input's distinct rows where it keeps them with its state (a table with
a primary key: ``build_hist_union``'s ``keep_measures``); otherwise one query measures them, on
DuckDB together with the step's description of the table it built."""

from __future__ import annotations

import pandas as pd
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
    inputs: list[tuple[TableRef, list[str]]],
    pk: list[str],
    count_inputs: bool = False,
    kept: pd.Series | None = None,
    kept_read_sql: str | None = None,
    measured_by: str = "full scan",
) -> tuple[list[tuple[str, str]] | None, dict[str, AssetCheckResult], list[int] | None]:
    """The step's description of the table it built with ``rows`` rows, every check of
    ``CHECKS``, from ``inputs`` (each existing input with its column names), and with
    ``count_inputs`` each input's rows (measured in the same query; else None). With a primary key
    the measures do not depend on the description: one round trip for both
    (``describe_tables_and_fetch``); without one, the table's columns are its key, described first.
    ``kept``: the measures as the build kept them (``duplicate_keys``, ``input_<i>``; only the
    description is read); ``kept_read_sql``: the query reading them back from the state a full
    build wrote (with each input's rows, ``_cdp_rows_<i>``), run with the description.
    ``measured_by``: how the build obtained them, for the checks' metadata."""

    def key_of(names: list[str]) -> list[str]:  # without a primary key, a row is its key (lineage aside)
        return pk or [c for c in names if c not in LINEAGE_COLUMNS]

    def measures_sql(target_columns: list[str]) -> str:
        keyed = [(ref, key_of(cols)) for ref, cols in inputs]
        return hist_union_measures_sql(target, key_of(target_columns), keyed, count_inputs)

    if kept is not None:
        columns = warehouse.describe_tables([target])[target]
        measured = pd.DataFrame([kept])
    elif kept_read_sql is not None:
        described, measured = warehouse.describe_tables_and_fetch([target], kept_read_sql)
        columns = described[target]
        measured = measured.rename(columns={f"_cdp_rows_{i}": f"rows_{i}" for i in range(len(inputs))})
    elif pk:
        measured_by = "full scan"
        described, measured = warehouse.describe_tables_and_fetch([target], measures_sql([]))
        columns = described[target]
    else:
        measured_by = "full scan"
        columns = warehouse.describe_tables([target])[target]
        measured = warehouse.fetch(measures_sql(column_names(columns)))
    row = measured.iloc[0]
    per_input = {ref.display: int(row[f"input_{i}"]) for i, (ref, _) in enumerate(inputs)}
    needed = max(per_input.values(), default=0)
    key_text = ", ".join(pk) if pk else "(all columns: no primary_key configured)"
    dupes = int(row["duplicate_keys"])
    counted = [int(row[f"rows_{i}"]) for i in range(len(inputs))] if count_inputs else None
    return (
        columns,
        {
            "covers_inputs": check_result(
                rows >= needed,
                measured=rows,
                threshold=needed,
                unit="rows",
                comparison="at_least",
                distinct_input_rows=per_input,
                measured_by=measured_by,
            ),
            "unique_primary_key": check_result(
                dupes == 0,
                measured=dupes,
                threshold=0,
                unit="duplicate key(s)",
                comparison="at_most",
                key=key_text,
                measured_by=measured_by,
            ),
        },
        counted,
    )
