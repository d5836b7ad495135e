"""Queries behind the report's data-quality section."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


def id_profile_sql(lookup: TableRef, cid: str) -> str:
    return f"SELECT COUNT(DISTINCT {quote(cid)}) AS ids, COUNT(*) AS identifiers FROM {lookup.sql}"


def component_sizes_sql(lookup: TableRef, cid: str) -> str:
    """Ids bucketed by how many identifiers they hold."""
    return f"""
SELECT bucket, COUNT(*) AS ids, MIN(size) AS smallest
FROM (
  SELECT size, CASE WHEN size = 1 THEN '1' WHEN size = 2 THEN '2' WHEN size <= 5 THEN '3-5'
                    WHEN size <= 10 THEN '6-10' WHEN size <= 100 THEN '11-100' ELSE '>100' END AS bucket
  FROM (SELECT {quote(cid)}, COUNT(*) AS size FROM {lookup.sql} GROUP BY {quote(cid)}) AS s
) AS b
GROUP BY bucket
ORDER BY smallest
"""


def latest_run_rows_changed_sql(loop_stats: TableRef) -> str:
    """Rows changed per iteration of the most recent run."""
    return f"""
SELECT iteration, rows_changed FROM {loop_stats.sql}
WHERE run_id = (SELECT run_id FROM {loop_stats.sql} ORDER BY recorded_at DESC LIMIT 1) AND iteration > 0
ORDER BY iteration
"""
