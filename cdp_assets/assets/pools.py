"""The concurrency pool of every step that writes warehouse tables.

``dagster.yaml`` limits the pool to one run at a time (``concurrency.pools``, run granularity):
a second run that writes the same tables waits in the run queue until the first finishes, so two
runs never interleave their writes. DuckDB adds its own guard: one process may write its file.
"""

WAREHOUSE_POOL = "cdp_warehouse"
