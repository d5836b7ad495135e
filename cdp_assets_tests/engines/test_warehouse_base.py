"""What every engine gets from the base resource: connection check, retries, job ids, masking."""

from __future__ import annotations

import dataclasses
import logging

import pandas as pd
import pytest
from pydantic import PrivateAttr

from cdp_assets.assets.metadata import engine_jobs_metadata
from cdp_assets.engines.base import TransientWarehouseError, WarehouseAuthError, WarehouseError, mask_secret
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets_tests.engines.recording import RecordingDuckDB, recording_duckdb
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


@pytest.fixture
def recording(tmp_path):
    return recording_duckdb(str(tmp_path / "r.duckdb"))


def test_a_schema_is_created_once_per_session_and_again_after_it_was_dropped(recording):
    with recording.session():
        for name in ("a", "b", "c"):
            recording.build_table(TableRef("s1", name), "SELECT 1 AS x")
        assert len(recording.take("CREATE SCHEMA")) == 1
        recording.execute('DROP SCHEMA "s1" CASCADE')  # dropped inside the session: forgotten
        recording.build_table(TableRef("s1", "d"), "SELECT 1 AS x")
        assert len(recording.take("CREATE SCHEMA")) == 1
    recording.execute('DROP SCHEMA "s1" CASCADE')  # dropped between sessions (a test, a user)
    with recording.session():
        assert recording.build_table(TableRef("s1", "e"), "SELECT 2 AS x") == 1
        assert len(recording.take("CREATE SCHEMA")) == 1
    assert recording.list_tables("s1") == ["e"]


def test_a_build_on_duckdb_is_one_statement_that_answers_its_count(recording):
    final = TableRef("s", "t")
    with recording.session():
        recording.build_table(final, "SELECT 1 AS x")
        recording.take()
        assert recording.build_table(final, "SELECT range AS x FROM range(7)") == 7
        assert recording.build_table(final, "SELECT 1 AS x WHERE false") == 0
        sent = recording.take()
    # CREATE OR REPLACE TABLE ... AS commits whole or not at all, and answers its row count: no
    # table under a temporary name, no swap, no second query for the count.
    assert len(sent) == 2 and all(s.startswith(f"CREATE OR REPLACE TABLE {final.sql} AS") for s in sent), sent
    assert recording.row_count(final) == 0 and recording.list_tables("s") == ["t"]


class SwappingDuckDB(RecordingDuckDB):
    """DuckDB publishing as the engines without an atomic replace do: build, then swap."""

    @property
    def dialect(self):
        return dataclasses.replace(super().dialect, replaces_atomically=False)


def test_a_swapped_build_counts_from_the_create_answer_and_swaps_in_two_round_trips(tmp_path):
    swapping = SwappingDuckDB(path=str(tmp_path / "sw.duckdb"))
    final = TableRef("s", "t")
    with swapping.session():
        swapping.build_table(final, "SELECT 1 AS x")
        swapping.take()
        assert swapping.build_table(final, "SELECT range AS x FROM range(7)") == 7
        assert swapping.build_table(final, "SELECT 1 AS x WHERE false") == 0
        assert swapping.replace_with_dataframe(final, pd.DataFrame({"x": [1, 2]})) == 2
        sent = swapping.take()
    assert not [s for s in sent if s.startswith("SELECT COUNT")]  # no second query for the count
    swaps = [s for s in sent if s.startswith(("BEGIN", "ALTER"))]
    # The old table is dropped in the transaction's first round trip and the new one renamed in
    # its second, with the COMMIT: a kill between the two keeps the old table, as a kill anywhere
    # in a transaction does.
    assert len(swaps) == 6 and all(s.startswith("BEGIN TRANSACTION;") and "DROP TABLE" in s for s in swaps[::2])
    assert all(s.startswith("ALTER TABLE") and s.rstrip().endswith("COMMIT") for s in swaps[1::2])
    assert swapping.row_count(final) == 2 and swapping.list_tables("s") == ["t"]


def test_a_swap_killed_between_its_two_round_trips_keeps_the_old_table(tmp_path):
    """What a SIGKILL there leaves: the open transaction is never committed."""
    path = str(tmp_path / "k.duckdb")
    wh = DuckDBWarehouse(path=path)
    final = TableRef("s", "t")
    wh.build_table(final, "SELECT 'old' AS v")
    staging = wh.staging_ref(final)
    con = wh._connect()
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "s"; CREATE TABLE {staging.sql} AS SELECT \'new\' AS v')
    first, _ = wh.dialect.swap_statements(staging, final)
    con.execute(first)
    con.close()  # the process dies here: nothing commits
    assert wh.fetch(f"SELECT v FROM {final.sql}")["v"].tolist() == ["old"]


def test_a_session_lists_a_schema_for_leftovers_once_and_drops_a_killed_runs_tables(recording):
    recording.build_table(TableRef("s", "a"), "SELECT 1 AS x")
    for name in ("a__cdp_new_dead0001", "b__cdp_new_dead0002"):  # what a killed run left behind
        recording.execute(f'CREATE TABLE "s"."{name}" AS SELECT 1 AS x')
    recording.take()
    listing = "SELECT table_name FROM information_schema.tables"
    with recording.session():
        recording.build_table(TableRef("s", "a"), "SELECT 2 AS x")
        assert len(recording.take(listing)) == 1
        assert recording.list_tables("s") == ["a", "b__cdp_new_dead0002"]  # only a's leftovers so far
        recording.take()
        recording.build_table(TableRef("s", "b"), "SELECT 3 AS x")
        recording.build_table(TableRef("s", "a"), "SELECT 4 AS x")
        assert recording.take(listing) == []  # listed once per session
    assert recording.list_tables("s") == ["a", "b"]
