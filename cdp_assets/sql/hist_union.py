"""Hist-Union: the historical and incremental loads of an object as one de-duplicated table."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote

# Columns the ingestion adds to every raw table (lineage, not business data).
LINEAGE_COLUMNS = ("_cdp_file", "_cdp_loaded_at")


def hist_union_sql(
    inputs: list[tuple[TableRef, list[str]]],
    incremental_field: str,
    primary_key: list[str],
    relations: list[str] | None = None,
) -> str:
    """Union the inputs by column name and keep one row per primary key (the newest).

    ``inputs`` is (table, its columns) in precedence order: on equal timestamps the later
    input (the incremental load) wins. Without a primary key, exact duplicate rows collapse.
    ``relations``: per input, a SELECT of some of its rows to read instead of the whole table
    (an incremental build's affected rows), inlined as a subquery.
    """
    all_columns: list[str] = []
    for _, cols in inputs:
        all_columns.extend(c for c in cols if c not in all_columns)
    selects = []
    for rank, (ref, cols) in enumerate(inputs):
        exprs = [quote(c) if c in cols else f"CAST(NULL AS VARCHAR) AS {quote(c)}" for c in all_columns]
        source = ref.sql if relations is None else f"({relations[rank]}) AS _cdp_in{rank}"
        selects.append(f"SELECT {', '.join(exprs)}, {rank} AS _cdp_input_rank FROM {source}")
    union = "\nUNION ALL\n".join(selects)
    business = [c for c in all_columns if c not in LINEAGE_COLUMNS]
    partition = primary_key or business
    order = (
        f"{quote(incremental_field)} DESC NULLS LAST, _cdp_input_rank DESC, {quote('_cdp_file')} DESC"
        if incremental_field in all_columns
        else f"_cdp_input_rank DESC, {quote('_cdp_file')} DESC"
    )
    if "_cdp_loaded_at" in all_columns:
        # A file replaced with a corrected row at the same timestamp: its newer version wins.
        order += f", {quote('_cdp_loaded_at')} DESC"
    cols = ", ".join(quote(c) for c in all_columns)
    # Rows without a primary key value are different records, not duplicates of each other.
    null_key = " OR ".join(f"{quote(c)} IS NULL" for c in primary_key)
    keep = f"_cdp_rn = 1 OR {null_key}" if primary_key else "_cdp_rn = 1"
    return f"""
SELECT {cols}
FROM (
  SELECT u.*, ROW_NUMBER() OVER (PARTITION BY {', '.join(quote(c) for c in partition)} ORDER BY {order}) AS _cdp_rn
  FROM (
{union}
  ) AS u
) AS d
WHERE {keep}
"""


def duplicate_keys_sql(ref: TableRef, primary_key: list[str]) -> str:
    """Key values held by more than one row (rows with a NULL key part are not duplicates)."""
    return duplicate_keys_over_sql(ref.sql, primary_key)


def duplicate_keys_over_sql(relation: str, key_columns: list[str]) -> str:
    """``duplicate_keys_sql`` over a relation (a table's SQL name, or a SELECT with its alias)."""
    keys = ", ".join(quote(c) for c in key_columns)
    present = " AND ".join(f"{quote(c)} IS NOT NULL" for c in key_columns)
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT {keys} FROM {relation} WHERE {present} "
        f"GROUP BY {keys} HAVING COUNT(*) > 1) AS d"
    )


def distinct_count_sql(ref: TableRef, columns: list[str]) -> str:
    keys = ", ".join(quote(c) for c in columns)
    return f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT {keys} FROM {ref.sql}) AS d"
