"""The queries behind asset checks: each returns one row the check reads."""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


def latest_load_sql(log: TableRef) -> str:
    """Every load of the log; the check picks the object's latest (values are never SQL text)."""
    return f"SELECT source, object, mode, status, records_loaded, watermark, message, run_id, loaded_at FROM {log.sql}"


def ids_with_many_canonical_ids_sql(lookup: TableRef, cid: str) -> str:
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT id, id_key_type FROM {lookup.sql} "
        f"GROUP BY id, id_key_type HAVING COUNT(DISTINCT {quote(cid)}) > 1) AS d"
    )


def coverage_sql(table: TableRef, cid: str) -> str:
    return f"SELECT COUNT(*) AS total, COUNT({quote(cid)}) AS with_id FROM {table.sql}"


def latest_loop_sql(loop_stats: TableRef) -> str:
    """The last iteration of the most recent run."""
    return (
        f"SELECT run_id, iteration, rows_changed, edges_left, converged FROM {loop_stats.sql} "
        f"ORDER BY recorded_at DESC, iteration DESC LIMIT 1"
    )


def master_uniqueness_sql(master: TableRef, lookup: TableRef, cid: str) -> str:
    c = quote(cid)
    return (
        f"SELECT (SELECT COUNT(*) FROM {master.sql}) AS total_rows, "
        f"(SELECT COUNT(DISTINCT {c}) FROM {master.sql}) AS distinct_ids, "
        f"(SELECT COUNT(DISTINCT {c}) FROM {lookup.sql}) AS lookup_ids"
    )


def excluded_top_sql(excluded: TableRef, limit: int = 10) -> str:
    return f"SELECT key_name, value, row_count, max_rows_per_value FROM {excluded.sql} ORDER BY row_count DESC, key_name, value LIMIT {int(limit)}"


def outstanding_rejections_sql(rejected: TableRef, has_superseded: bool) -> str:
    """Rejected rows of one mode (bound as the parameter) that are still wrong: not superseded by
    a later version of their file (a table written before superseding existed has no column)."""
    still = " AND superseded_at IS NULL" if has_superseded else ""
    return f"SELECT file, row, reason FROM {rejected.sql} WHERE mode = ?{still} ORDER BY file, row"


def load_skips_sql(log: TableRef) -> str:
    """Every load's deliberately skipped rows; the check picks the object's latest."""
    return (
        f"SELECT source, object, mode, records_skipped_before_start_date, records_skipped_duplicate, message, run_id, loaded_at "
        f"FROM {log.sql}"
    )
