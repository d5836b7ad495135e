"""What every engine gets from the base resource: connection check, retries, job ids, masking."""

from __future__ import annotations

import logging

import pytest
from pydantic import PrivateAttr

from cdp_assets.assets.metadata import engine_jobs_metadata
from cdp_assets.engines.base import TransientWarehouseError, WarehouseAuthError, WarehouseError, mask_secret
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef


class FlakyDuckDB(DuckDBWarehouse):
    """A real DuckDB whose statements fail with a given error the first ``failures`` times."""

    _failures: int = PrivateAttr(default=0)
    _error: type = PrivateAttr(default=TransientWarehouseError)
    _attempts: int = PrivateAttr(default=0)

    def arm(self, failures: int, error: type = TransientWarehouseError) -> "FlakyDuckDB":
        self._failures, self._error, self._attempts = failures, error, 0
        return self

    def _execute(self, sql: str) -> None:
        self._attempts += 1
        if self._failures > 0:
            self._failures -= 1
            raise self._error("connection reset by peer", sql)
        super()._execute(sql)


@pytest.fixture
def flaky(tmp_path):
    return FlakyDuckDB(path=str(tmp_path / "w.duckdb"), retry_backoff_seconds=0.01)


def test_a_transient_error_is_retried_with_back_off_and_succeeds(flaky, caplog):
    flaky.arm(2)
    with caplog.at_level(logging.WARNING):
        flaky.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert flaky._attempts == 3 and flaky.scalar("SELECT COUNT(*) FROM t") == 1
    assert caplog.text.count("transient warehouse error") == 2 and "attempt 2 of 3" in caplog.text


def test_three_transient_failures_fail_the_statement_with_its_sql(flaky):
    flaky.arm(3)
    with pytest.raises(TransientWarehouseError) as err:
        flaky.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert flaky._attempts == 3 and "CREATE TABLE t" in str(err.value)


@pytest.mark.parametrize("error", [WarehouseAuthError, WarehouseError])
def test_permanent_and_auth_errors_fail_at_once(flaky, error):
    flaky.arm(1, error)
    with pytest.raises(error):
        flaky.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert flaky._attempts == 1


def test_the_connection_is_checked_once_and_logged(flaky, caplog):
    with caplog.at_level(logging.INFO):
        flaky.execute("CREATE TABLE a AS SELECT 1 AS x")
        flaky.execute("CREATE TABLE b AS SELECT 1 AS x")
    assert caplog.text.count("warehouse connected") == 1 and "FlakyDuckDB" in caplog.text


def test_job_ids_go_to_metadata_once_per_step(flaky):
    assert engine_jobs_metadata(flaky) == {}
    flaky.record_job("q-1", "https://example.invalid/q-1")
    flaky.record_job("q-2")
    meta = engine_jobs_metadata(flaky)
    assert (
        meta["engine_job_ids"].value == ["q-1", "q-2"]
        and "[open](https://example.invalid/q-1)" in meta["engine_jobs"].value
    )
    assert engine_jobs_metadata(flaky) == {}  # taken: the next step starts empty


def test_secrets_are_shown_only_as_their_last_four_characters():
    assert mask_secret("dapi0123456789abcdef") == "****cdef"
    assert mask_secret("short") == "****" and mask_secret(None) == "(not set)"


def test_optimize_is_a_capability_not_an_engine_name(flaky):
    flaky.execute("CREATE TABLE t AS SELECT 1 AS x")
    before = flaky._attempts
    flaky.optimize(TableRef("main", "t"))
    assert not flaky.supports_optimize and flaky._attempts == before  # nothing sent


def test_concurrency_and_cloud_reads_are_capabilities_each_engine_states(flaky):
    from cdp_assets.assets.pools import executor_for
    from cdp_assets.engines.databricks import DatabricksWarehouse
    from cdp_assets.engines.treasure_data import TreasureDataWarehouse

    # DuckDB: one writing process, and it cannot reach S3 itself
    assert flaky.concurrent_steps == 1 and not flaky.reads_cloud_files
    assert executor_for(flaky).name == "in_process"
    warehouse = DatabricksWarehouse(
        server_hostname="adb-1.azuredatabricks.net", http_path="/sql/1.0/warehouses/abc", max_concurrent_steps=6
    )
    assert warehouse.concurrent_steps == 6 and warehouse.reads_cloud_files
    assert executor_for(warehouse).name == "cdp_concurrent_6"
    # local Spark: tables in one process's catalog, no read_files: whatever the settings say
    spark = DatabricksWarehouse(
        local_spark_dir="/tmp/unused", sql_dialect="spark", max_concurrent_steps=6, read_cloud_files=True
    )
    assert spark.concurrent_steps == 1 and not spark.reads_cloud_files
    td = TreasureDataWarehouse(apikey="1/abc", max_concurrent_steps=3)
    assert td.concurrent_steps == 3 and not td.reads_cloud_files
