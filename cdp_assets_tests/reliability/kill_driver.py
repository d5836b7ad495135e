"""Runs the whole pipeline in this process, and SIGKILLs itself at a chosen point.

``python -m cdp_assets_tests.reliability.kill_driver CONFIG [KILL]`` where KILL is one of

- ``stmt:N``: before the Nth statement of the run;
- ``step:NAME:N``: before the Nth statement of the first step whose key contains NAME;
- ``publish:N``: inside the Nth publish of a finished table (DuckDB publishes in one statement,
  ``CREATE OR REPLACE TABLE ... AS``, ``WarehouseResource.replace_table``): the statement has done
  all its work in an open transaction, which the kill leaves uncommitted;
- ``append:N``: inside the Nth append, after the rows and before the ingestion log row (DuckDB:
  inside the load's transaction).

Without KILL the run completes and the driver prints its statement count as JSON. The kill is a
real SIGKILL of this process: nothing is flushed, no handler runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from pydantic import PrivateAttr

from cdp_assets.config import load_config
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse


class _Plan:
    kind, name, n = "", "", 0
    current_step = ""
    step_statements = 0
    statements = publishes = appends = 0


PLAN = _Plan()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingDuckDB(DuckDBWarehouse):
    """The real DuckDB engine, counting statements, publishes and appends to die at the chosen one."""

    _noop: int = PrivateAttr(default=0)

    def _count(self, sql: str) -> None:
        step = _current_step()
        if step != PLAN.current_step:
            PLAN.current_step, PLAN.step_statements = step, 0
        PLAN.statements += 1
        PLAN.step_statements += 1
        if PLAN.kind == "stmt" and PLAN.statements == PLAN.n:
            _die()
        if PLAN.kind == "step" and PLAN.name in PLAN.current_step and PLAN.step_statements == PLAN.n:
            _die()

    def replace_table(self, final, select_sql: str, params: list | None = None) -> int:
        PLAN.publishes += 1
        if PLAN.kind == "publish" and PLAN.publishes == PLAN.n:
            # The publish's whole work done in a transaction that never commits: what a kill at
            # any moment of the one statement leaves (a DataFrame's rows are registered on this
            # same connection).
            with self.session():
                self._con.execute("BEGIN TRANSACTION")
                self._con.execute(self.dialect.replace_table_sql(final, select_sql), params)
                _die()
        return super().replace_table(final, select_sql, params)

    def _execute(self, sql: str) -> None:
        self._count(sql)
        super()._execute(sql)

    def _query(self, sql: str, params: list | None = None):
        self._count(sql)
        return super()._query(sql, params)

    def _append(self, con, ref, df, columns=None) -> None:
        super()._append(con, ref, df, columns)
        if ref.name != "ingestion_log" and not ref.name.endswith("_rejected"):
            PLAN.appends += 1
            if PLAN.kind == "append" and PLAN.appends == PLAN.n:
                _die()


def _current_step() -> str:
    from dagster import OpExecutionContext

    try:
        return OpExecutionContext.get().get_step_execution_context().step.key
    except Exception:  # noqa: BLE001 - not inside a step (resource set-up)
        return ""


def main(argv: list[str]) -> int:
    config, kill = argv[0], (argv[1] if len(argv) > 1 else "")
    if kill:
        parts = kill.split(":")
        PLAN.kind, PLAN.n = parts[0], int(parts[-1])
        PLAN.name = parts[1] if len(parts) == 3 else ""
    loaded = load_config(config)
    engine = loaded.pipeline.engine.duckdb
    warehouse = KillingDuckDB(path=str(loaded.duckdb_path), memory_limit=engine.memory_limit, threads=engine.threads)
    job = build_definitions(loaded, warehouse).resolve_job_def(PIPELINE_JOB)
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "DEBUG"}}}},
        )
    print(
        json.dumps(
            {
                "success": result.success,
                "statements": PLAN.statements,
                "publishes": PLAN.publishes,
                "appends": PLAN.appends,
            }
        )
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
