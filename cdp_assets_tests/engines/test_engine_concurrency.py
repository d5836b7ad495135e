"""Concurrency where the engine allows it: the engine's ``concurrent_steps`` capability picks the
executor. DuckDB (one writer) and Databricks on local Spark (tables in one process's catalog) run a
run's steps one after another in its process; Databricks SQL warehouses and Treasure Data run up
to ``concurrent_steps`` steps at once. Shown for real on the Treasure Data fake: the enrichment
fan-out's steps run at the same time in separate processes, and give the tables a sequential run
gave."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterEventType, DagsterInstance, Definitions, define_asset_job, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.sql.incremental import BOOKKEEPING_SUFFIXES
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.treasure_data import TreasureDataWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import write_project
from cdp_assets_tests.fakes.td_api import FakeTreasureData

KEY = "4321/" + "9f3c" * 10
UNIFICATION_JOB = "unification_only"
TABLES_JOB = "tables_only"


def _executor(loaded) -> tuple[str, object]:
    job = build_definitions(loaded).resolve_job_def(PIPELINE_JOB)
    return job.executor_def.name, job.executor_def


@pytest.mark.parametrize(
    "engine, expected",
    [
        ({"kind": "duckdb"}, "in_process"),
        ({"kind": "databricks", "databricks": {"connection": "local_spark"}}, "in_process"),
        ({"kind": "databricks"}, "cdp_concurrent_4"),
        ({"kind": "databricks", "databricks": {"concurrent_steps": 2}}, "cdp_concurrent_2"),
        ({"kind": "databricks", "databricks": {"concurrent_steps": 1}}, "in_process"),
        ({"kind": "treasure_data"}, "cdp_concurrent_4"),
        ({"kind": "treasure_data", "treasure_data": {"concurrent_steps": 8}}, "cdp_concurrent_8"),
    ],
)
def test_the_engine_capability_picks_how_many_steps_of_a_run_write_at_once(tmp_path, engine, expected):
    loaded = load_config(write_project(tmp_path, records=10, mutate=lambda c: c.update(engine=engine)))
    assert _executor(loaded)[0] == expected
    # whatever the executor, every writing step stays in the pool that admits one run at a time
    job = build_definitions(loaded).resolve_job_def(PIPELINE_JOB)
    assert {
        op.pool for op in job.graph.iterate_op_defs() if op.name.startswith(("ingest_", "enrich_table_", "unify_loop_"))
    } == {WAREHOUSE_POOL}


def unification_only() -> Definitions:
    """The code location of ``CDP_CONFIG`` with two more jobs, without the steps of checks (this test
    is about the tables; the checks evaluated in an asset's own step come with it): every table, and
    the unification graph alone (loaded again in every step's process, as a deployment would)."""
    defs = build_definitions(load_config(os.environ["CDP_CONFIG"]))
    (graph,) = [a for a in defs.assets if a.node_def.name.startswith("unification_")]
    jobs = [
        define_asset_job(TABLES_JOB, selection=AssetSelection.all() - AssetSelection.checks(*defs.asset_checks)),
        define_asset_job(UNIFICATION_JOB, selection=AssetSelection.assets(graph).without_checks()),
    ]
    return Definitions.merge(defs, Definitions(jobs=jobs))


def _intervals(instance: DagsterInstance, run_id: str, prefix: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not (event.step_key or "").split(".")[-1].startswith(prefix):
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            ends[event.step_key] = entry.timestamp
    return {k: (starts[k], ends[k]) for k in starts}


def _failures(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        f"{e.dagster_event.step_key}: {e.dagster_event.event_specific_data.error}"[:3000]
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None
        and e.dagster_event.event_type
        in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT)
        and getattr(e.dagster_event.event_specific_data, "error", None) is not None
    ]


def _most_at_once(intervals: dict[str, tuple[float, float]]) -> int:
    points = sorted(
        [(s, 1) for s, _ in intervals.values()] + [(e, -1) for _, e in intervals.values()], key=lambda p: (p[0], p[1])
    )
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


@pytest.mark.pipeline
def test_on_treasure_data_the_enrichment_fan_out_runs_concurrently_and_gives_the_sequential_tables(
    tmp_path, monkeypatch
):
    td = FakeTreasureData(KEY)
    url = td.start()
    try:
        monkeypatch.setenv("TD_API_KEY", KEY)
        config = write_project(
            tmp_path,
            records=60,
            mutate=lambda c: c.update(
                engine={"kind": "treasure_data", "treasure_data": {"endpoint": url, "poll_seconds": 0.01}}
            ),
        )
        loaded = load_config(config)
        monkeypatch.setenv("CDP_CONFIG", str(config))
        # 1. every table, one step after another (execute_in_process)
        assert (
            unification_only()
            .resolve_job_def(TABLES_JOB)
            .execute_in_process(instance=DagsterInstance.ephemeral())
            .success
        )
        wh = TreasureDataWarehouse(apikey=KEY, endpoint=url, database=loaded.pipeline.src_schema, job_poll_seconds=0.01)
        schema = loaded.unification.schema
        enriched = sorted(
            t for t in wh.list_tables(schema) if t.startswith("enriched_") and not t.endswith(BOOKKEEPING_SUFFIXES)
        )
        assert len(enriched) == 4
        before = {
            t: wh.fetch(f"SELECT * FROM {TableRef(schema, t).sql}").drop(columns=["time"], errors="ignore")
            for t in enriched
        }

        # 2. the unification graph again, with the code location's own executor: separate
        # processes, up to 4 steps at once, on a persistent instance (as dagster dev runs it)
        recon = ReconstructableRepository.for_module(
            __name__, "unification_only", working_directory=str(REPO_ROOT)
        ).get_reconstructable_job(UNIFICATION_JOB)
        (tmp_path / "home").mkdir()
        with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
            # A full refresh: the same work as the first run's, so the tables must be equal.
            graph = f"unification_{loaded.unification.name}"
            full = {
                "ops": {graph: {"ops": {f"unify_loop_{loaded.unification.name}": {"config": {"full_refresh": True}}}}}
            }
            with execute_job(recon, instance=instance, run_config=full) as result:
                assert result.success, _failures(instance, result.run_id)
                intervals = _intervals(instance, result.run_id, "enrich_table_")
        assert len(intervals) == 4
        assert _most_at_once(intervals) >= 2, intervals  # at least two enrichment steps ran at the same time

        after = {
            t: wh.fetch(f"SELECT * FROM {TableRef(schema, t).sql}").drop(columns=["time"], errors="ignore")
            for t in enriched
        }
        for t in enriched:
            cols = sorted(before[t].columns)
            assert sorted(after[t].columns) == cols, t
            pd.testing.assert_frame_equal(
                # as text before sorting: an array column (a json rule's type: array) holds lists
                before[t][cols].astype(str).sort_values(cols).reset_index(drop=True),
                after[t][cols].astype(str).sort_values(cols).reset_index(drop=True),
                obj=t,
            )
        assert sorted(t for t in wh.list_tables(schema) if "__cdp_new_" in t) == []  # no half-built table left
    finally:
        td.stop()


def test_duckdb_keeps_a_single_writer_process(tmp_path):
    loaded = load_config(write_project(tmp_path, records=10))
    assert DuckDBWarehouse(path=str(Path(tmp_path) / "x.duckdb")).concurrent_steps == 1
    assert _executor(loaded)[0] == "in_process"
