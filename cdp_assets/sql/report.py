"""Queries behind the report's data-quality section."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


def component_sizes_sql(lookup: TableRef, cid: str) -> str:
    """Ids bucketed by how many identifiers they hold, and the identifiers of each bucket: summed
    over the buckets, the profile's ids and identifiers (no second query of the lookup)."""
    return f"""
SELECT bucket, COUNT(*) AS ids, SUM(size) AS identifiers, MIN(size) AS smallest
FROM (
  SELECT size, CASE WHEN size = 1 THEN '1' WHEN size = 2 THEN '2' WHEN size <= 5 THEN '3-5'
                    WHEN size <= 10 THEN '6-10' WHEN size <= 100 THEN '11-100' ELSE '>100' END AS bucket
  FROM (SELECT {quote(cid)}, COUNT(*) AS size FROM {lookup.sql} GROUP BY {quote(cid)}) AS s
) AS b
GROUP BY bucket
ORDER BY smallest
"""


def latest_run_loop_sql(loop_stats: TableRef) -> str:
    """Every iteration row of the most recent run, in order: the last is its latest state (as
    ``checks.latest_loop_sql`` reads it), the ones after iteration 0 its rows changed."""
    return f"""
SELECT iteration, rows_changed, edges_left, converged FROM {loop_stats.sql}
WHERE run_id = (SELECT run_id FROM {loop_stats.sql} ORDER BY recorded_at DESC, iteration DESC LIMIT 1)
ORDER BY iteration
"""
