"""What DuckDB's EXPLAIN ANALYZE says a statement's table scans read, for the tests of the
watermark branches (``Dialect.skips_row_groups``)."""

from __future__ import annotations

import re

from cdp_assets.engines.duckdb import DuckDBWarehouse


def row_groups_read(wh: DuckDBWarehouse, sql: str) -> list[tuple[int, int]]:
    """(row groups scanned, row groups of the table) of each scan of ``sql`` over a table of more
    than one row group."""
    plan = wh.fetch(f"EXPLAIN ANALYZE {sql}").iloc[0, 1]
    found = re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    return [(int(a), int(b)) for a, b in found if int(b) > 1]
