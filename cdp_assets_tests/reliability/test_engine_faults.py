"""Engine faults injected into real runs: transient ones are retried, permanent ones fail the
step at once with the engine's message and the statement, slow statements are cancelled."""

from __future__ import annotations

import time

import pytest
from dagster import DagsterEventType, DagsterInstance

from cdp_assets.config import load_config
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.base import StatementTimeoutError, TransientWarehouseError, WarehouseError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets_tests.conftest import check_results, write_project


# Statement -> failures injected so far (Dagster runs a copy of the resource, so the count lives here).
FAILED: dict[str, int] = {}


class FaultyDuckDB(DuckDBWarehouse):
    """The real DuckDB engine with faults where a statement contains ``target``:

    - ``transient``: the first N such statements each fail twice (a dropped connection, then a
      timeout) before they run;
    - ``broken``: CREATE statements read a table that does not exist instead (a real SQL error);
    - ``slow``: such statements first run a query far longer than the time limit.
    """

    target: str = ""
    fault: str = ""
    transient_statements: int = 3

    def _fault(self, sql: str) -> str:
        """Inject the fault into ``sql`` (raise, or delay) and return the statement to run."""
        if self.target and self.target in sql:
            if self.fault == "transient" and (sql in FAILED or len(FAILED) < self.transient_statements):
                n = FAILED.setdefault(sql, 0)
                if n < 2:
                    FAILED[sql] = n + 1
                    raise TransientWarehouseError(["connection reset by peer", "read timed out"][n], sql)
            # Not a read of it: its build, nor its state's write in the same step (which measures it:
            # a full hist-union build keeps its check measures with its state).
            creates_it = sql.lstrip().startswith(f"CREATE OR REPLACE TABLE {self.target[:-1]}")
            if self.fault == "broken" and sql.lstrip().startswith("CREATE") and not creates_it:
                sql = sql.replace(self.target, f'{self.target[:-1]}_that_does_not_exist"', 1)
            if self.fault == "slow":
                super()._execute("SELECT SUM(a.range * b.range) FROM range(100000000) a, range(1000) b")
        return sql

    def _execute(self, sql: str) -> None:
        super()._execute(self._fault(sql))

    # A build's CREATE TABLE AS is a query on DuckDB (its answer is the row count).
    def _query(self, sql: str, params: list | None = None):
        return super()._query(self._fault(sql), params)


def _run(tmp_path, warehouse_kwargs: dict, statement_timeout: float | None = None):
    FAILED.clear()
    loaded = load_config(write_project(tmp_path, records=120))
    wh = FaultyDuckDB(
        path=str(loaded.duckdb_path),
        retry_backoff_seconds=0.05,
        statement_timeout_seconds=statement_timeout,
        **warehouse_kwargs,
    )
    instance = DagsterInstance.ephemeral()
    result = (
        build_definitions(loaded, wh)
        .resolve_job_def(PIPELINE_JOB)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    return result, logs, wh


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.mark.pipeline
def test_transient_faults_are_retried_with_back_off_and_the_run_succeeds(tmp_path):
    # the builds: DuckDB publishes each in one CREATE OR REPLACE TABLE ... AS
    result, logs, wh = _run(tmp_path, {"target": "CREATE OR REPLACE TABLE", "fault": "transient"})
    assert result.success and all(check_results(result).values())
    assert len(FAILED) == 3 and all(n == 2 for n in FAILED.values())
    retried = [m for m in logs if "transient warehouse error" in m]
    # each faulty statement: attempt 1 (connection reset) and 2 (timeout) logged, attempt 3 ran
    assert len(retried) == 2 * len(FAILED)
    assert any("connection reset by peer" in m for m in retried) and any("read timed out" in m for m in retried)


@pytest.mark.pipeline
def test_a_permanent_error_fails_the_step_at_once_with_the_engine_message_and_the_statement(tmp_path):
    result, logs, wh = _run(tmp_path, {"target": '"acme_src"."shop_customers_hist_union"', "fault": "broken"})
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [f.step_key for f in failures] == ["acme_stg__shop_customers_stg"]
    error = failures[0].event_specific_data.error
    text = error.message + "".join(c.message for c in [error.cause] if c)
    assert "shop_customers_hist_union_that_does_not_exist" in text and "Catalog Error" in text
    assert "-- statement that failed:" in text
    assert not any("transient warehouse error" in m for m in logs)  # no retries of a SQL error
    done = _materialized(result)
    # Nothing downstream of the failed table ran; its siblings did.
    assert "acme_stg/loyalty_members_stg" in done
    assert not any("enriched" in k or "customer_master" in k or k == "cdp_report" for k in done)


@pytest.mark.pipeline
def test_a_statement_over_its_time_limit_is_cancelled_and_fails_its_step(tmp_path):
    # The limit applies to every statement of the run: 20 s leaves the others room on a loaded
    # machine (at a load average of 6 the all-rules customers staging build took 5.6 s, over the
    # 5 s this test used to set).
    started = time.monotonic()
    result, logs, wh = _run(
        tmp_path,
        {"target": 'CREATE OR REPLACE TABLE "acme_stg"."web_events_stg" ', "fault": "slow"},
        statement_timeout=20.0,
    )
    assert not result.success
    assert time.monotonic() - started < 180  # the query alone would run for many minutes
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [f.step_key for f in failures] == ["acme_stg__web_events_stg"]
    error = failures[0].event_specific_data.error
    text = error.message + "".join(c.message for c in [error.cause] if c)
    assert "statement cancelled after 20s (engine.statement_timeout_seconds)" in text


def test_the_time_limit_does_not_touch_statements_within_it(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), statement_timeout_seconds=5)
    wh.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
    assert wh.scalar("SELECT COUNT(*) FROM t") == 1000
    with pytest.raises(StatementTimeoutError):
        DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), statement_timeout_seconds=0.3).execute(
            "CREATE TABLE slow AS SELECT SUM(a.range * b.range) AS s FROM range(100000000) a, range(1000) b"
        )
    assert not wh.table_exists(__import__("cdp_assets.sql.dialects", fromlist=["TableRef"]).TableRef("main", "slow"))
    assert issubclass(StatementTimeoutError, WarehouseError) and not issubclass(
        StatementTimeoutError, TransientWarehouseError
    )
