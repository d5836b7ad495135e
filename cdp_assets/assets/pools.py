"""Concurrency of the steps that write warehouse tables: between runs, the pool; within a run,
the executor the engine allows.

Every step that writes warehouse tables is in the pool ``cdp_warehouse``. ``dagster.yaml`` limits
the pool to one run at a time (``concurrency.pools``, run granularity): a second run that writes
the same tables waits in the run queue until the first finishes, so two runs never interleave
their writes.

Within a run, the engine's ``concurrent_steps`` capability picks the executor (``executor_for``):
DuckDB allows one writing process, so its steps run one after another in the run's process;
Databricks (one connection per step) and Treasure Data (one set of jobs per step) run up to
``concurrent_steps`` steps at once in separate processes: the per-object phases (ingestion,
hist-union, staging) and the enrichment fan-out. Runs launched by ``execute_in_process`` (the
``cdp-assets run`` command, tests) are always in one process.
"""

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from cdp_assets.engines.base import WarehouseResource

WAREHOUSE_POOL = "cdp_warehouse"


def executor_for(warehouse: WarehouseResource) -> ExecutorDefinition:
    """One process, one step at a time, for an engine with a single writer; otherwise up to the
    engine's ``concurrent_steps`` steps at once."""
    steps = warehouse.concurrent_steps
    if steps <= 1:
        return in_process_executor
    return multiprocess_executor.configured({"max_concurrent": steps}, name=f"cdp_concurrent_{steps}")
