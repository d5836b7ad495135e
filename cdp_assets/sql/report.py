"""Queries behind the report's data-quality section."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


# The metadata entry of the result statistics holding ``component_sizes_sql``'s rows as measured
# with the enrichments' coverage (assets/unification.py), which the report reads.
COMPONENT_SIZES = "component_sizes"
# The profile's buckets of ids by their identifiers: (label, largest size; None: no bound), in order.
BUCKETS = (("1", 1), ("2", 2), ("3-5", 5), ("6-10", 10), ("11-100", 100), (">100", None))
# The lookup's ids by their size (identifiers per id), one row per id.
_SIZES = "SELECT {cid}, COUNT(*) AS size FROM {lookup} GROUP BY {cid}"


def _bucket_case(value) -> str:
    """The bucket of ``size``: ``value(i, label)`` for the i-th of ``BUCKETS``."""
    whens = [
        f"WHEN size {'=' if i < 2 else '<='} {top} THEN {value(i, label)}"
        for i, (label, top) in enumerate(BUCKETS)
        if top is not None
    ]
    i, (label, _) = len(BUCKETS) - 1, BUCKETS[-1]
    return f"CASE {' '.join(whens)} ELSE {value(i, label)} END"


def component_sizes_sql(lookup: TableRef, cid: str) -> str:
    """Ids bucketed by how many identifiers they hold, and the identifiers of each bucket: summed
    over the buckets, the profile's ids and identifiers (no second query of the lookup)."""
    sizes = _SIZES.format(cid=quote(cid), lookup=lookup.sql)
    return f"""
SELECT bucket, COUNT(*) AS ids, SUM(size) AS identifiers, MIN(size) AS smallest
FROM (
  SELECT size, {_bucket_case(lambda i, label: f"'{label}'")} AS bucket
  FROM ({sizes}) AS s
) AS b
GROUP BY bucket
ORDER BY smallest
"""


def component_buckets_sql(lookup: TableRef, cid: str, prefix: str) -> str:
    """``component_sizes_sql``'s rows as one row, for a query of one row per measure (the
    enrichments' coverage): for the i-th of ``BUCKETS``, ``<prefix>_b<i>_ids``,
    ``<prefix>_b<i>_identifiers`` and ``<prefix>_b<i>_smallest`` (an empty bucket: 0 ids)."""
    return _buckets_of_sizes_sql(_SIZES.format(cid=quote(cid), lookup=lookup.sql), prefix)


def kept_component_buckets_sql(per_id: TableRef, prefix: str) -> str:
    """``component_buckets_sql``'s row from the key statistics' kept per-id counts
    (``unification.key_stats_per_id_sql`` with the enriched tables): each id's ``lookup_rows``
    on its '*' row is its size, kept up to date by the ids a run touches, so no lookup row is
    grouped again. An id without a lookup row (only enriched rows) is not one of the lookup's."""
    sizes = f"SELECT p.lookup_rows AS size FROM {per_id.sql} AS p WHERE p.from_table = '*' AND p.lookup_rows > 0"
    return _buckets_of_sizes_sql(sizes, prefix)


def _buckets_of_sizes_sql(sizes: str, prefix: str) -> str:
    """The bucket columns (``component_buckets_sql``) over ``sizes``: a SELECT of one ``size`` per id."""
    cols = []
    for i in range(len(BUCKETS)):
        cols += [
            f"SUM(CASE WHEN bucket = {i} THEN 1 ELSE 0 END) AS {quote(f'{prefix}_b{i}_ids')}",
            f"SUM(CASE WHEN bucket = {i} THEN size ELSE 0 END) AS {quote(f'{prefix}_b{i}_identifiers')}",
            f"MIN(CASE WHEN bucket = {i} THEN size END) AS {quote(f'{prefix}_b{i}_smallest')}",
        ]
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT size, {_bucket_case(lambda i, label: str(i))} AS bucket "
        f"FROM ({sizes}) AS s) AS b"
    )


def latest_run_loop_sql(loop_stats: TableRef) -> str:
    """Every iteration row of the most recent run, in order: the last is its latest state (as
    ``checks.latest_loop_sql`` reads it), the ones after iteration 0 its rows changed."""
    return f"""
SELECT iteration, rows_changed, edges_left, converged FROM {loop_stats.sql}
WHERE run_id = (SELECT run_id FROM {loop_stats.sql} ORDER BY recorded_at DESC, iteration DESC LIMIT 1)
ORDER BY iteration
"""
