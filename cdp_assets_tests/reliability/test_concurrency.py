"""Two runs never interleave their writes: the run queue holds the second (pool, dagster.yaml),
and DuckDB refuses a second writing process before anything is written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from dagster import DagsterEventType, DagsterInstance

from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import build_definitions
from cdp_assets_tests.conftest import run_pipeline, write_project
from cdp_assets_tests.reliability.test_kills import _comparable, _dump


def test_every_step_that_writes_tables_is_in_the_warehouse_pool_limited_to_one_run(tmp_path, monkeypatch):
    defs = build_definitions(load_config(write_project(tmp_path, records=50)))
    job = defs.resolve_job_def("cdp_pipeline")
    checks = {op.name for c in defs.asset_checks for op in c.node_def.iterate_op_defs()}
    ops = {op.name: op.pool for op in job.graph.iterate_op_defs()}
    writers = {name: pool for name, pool in ops.items() if name not in checks}
    # ingestion, hist-union, staging, the loop, enrichment, statistics, masters, the report
    assert len(writers) >= 15 and set(writers.values()) == {WAREHOUSE_POOL}, writers
    assert all(ops[name] is None for name in checks if name in ops)  # checks only read

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    config = DagsterInstance.get().get_concurrency_config().pool_config
    assert config.pool_granularity.value == "run" and config.default_pool_limit == 1


@pytest.mark.pipeline
def test_a_second_process_is_refused_by_duckdb_with_a_clear_message_and_writes_nothing(tmp_path):
    loaded = load_config(write_project(tmp_path, records=80))
    assert run_pipeline(loaded).success
    before = _dump(loaded.duckdb_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(loaded.duckdb_path)!r}); "
            "print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = run_pipeline(loaded, DagsterInstance.ephemeral())
        assert not result.success
        # It fails while setting up the warehouse, before any step starts.
        assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_START]
        errors = [getattr(e.event_specific_data, "error", None) for e in result.all_events]
        message = " ".join(f"{err.message} {err.cause}" for err in errors if err is not None)
        assert "is in use by another process" in message and "nothing was written" in message, message
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    time.sleep(0.2)
    after = _dump(loaded.duckdb_path)
    assert set(before) == set(after)
    for name in before:
        assert _comparable(before[name]).equals(_comparable(after[name])), name
