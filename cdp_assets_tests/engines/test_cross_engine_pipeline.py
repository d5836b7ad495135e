"""The whole pipeline on DuckDB and on the Databricks engine driving a local Spark session
through the databricks-sql-connector cursor interface (the config's ``engine.kind: databricks``
with ``connection: local_spark``): every output table of every phase is equal, row for row,
canonical ids included."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance

from cdp_assets.config import load_config
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.incremental import BOOKKEEPING_SUFFIXES, IN_PLACE_ONLY_SUFFIXES
from cdp_assets_tests.conftest import check_results, shared_spark_session, write_project
from cdp_assets_tests.engines.test_spark_unification import normalized
from cdp_assets_tests.nightly_files import write_nightly_files

pytestmark = pytest.mark.spark

# When or in which run something happened, not what the data is: differs between any two runs
# (``file_status``: a file's times when it was hashed, none within 2 s of a change).
VOLATILE = {"_cdp_loaded_at", "loaded_at", "run_id", "seconds", "rejected_at", "file_status"}
VOLATILE_TABLES = {"unified_id_loop_stats"}  # per-iteration timings of each run


@pytest.fixture(scope="module")
def both_runs():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        root = Path(d)
        loaded = load_config(write_project(root / "project", records=150))
        spark_config = load_config(
            write_project(
                root / "project",
                generate=False,
                mutate=lambda c: c.update(
                    engine={
                        "kind": "databricks",
                        "databricks": {"connection": "local_spark", "local_spark_dir": str(root / "spark")},
                    }
                ),
            )
        )
        duck = DuckDBWarehouse(path=str(loaded.duckdb_path))
        spark = build_warehouse(spark_config)
        assert isinstance(spark, DatabricksWarehouse) and not spark.supports_optimize
        schemas = [loaded.pipeline.src_schema, loaded.pipeline.stg_schema, loaded.unification.schema]

        def run_both() -> tuple[dict, dict]:
            results, tables = {}, {}
            for name, wh in (("duckdb", duck), ("spark", spark)):
                job = build_definitions(loaded, wh).resolve_job_def(PIPELINE_JOB)
                results[name] = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
                tables[name] = {
                    f"{schema}.{t}": wh.fetch(f"SELECT * FROM {TableRef(schema, t).sql}")
                    for schema in schemas
                    for t in wh.list_tables(schema)
                }
            return results, tables

        full = run_both()
        # Then a nightly run on both (the data folder is theirs alike): every incremental build,
        # with its intermediates inlined on Spark, a dedupe's included.
        written = write_nightly_files(root / "project" / "data", 0.02, 0.01)
        assert all(w["new"] and w["updated"] for w in written.values()), written
        yield {"full": full, "nightly": run_both()}


@pytest.mark.parametrize("run", ["full", "nightly"])
def test_the_pipeline_succeeds_on_spark_with_every_check_passed(both_runs, run):
    results, _ = both_runs[run]
    for name, result in results.items():
        assert result.success, name
        checks = check_results(result)
        assert checks and all(checks.values()), (name, [k for k, ok in checks.items() if not ok])
    assert set(check_results(results["spark"])) == set(check_results(results["duckdb"]))


def assert_same_tables(duck: dict[str, pd.DataFrame], spark: dict[str, pd.DataFrame]) -> None:
    """The same tables, row for row, but for what differs between any two runs (timings), and
    but for the key statistics' per-id counts DuckDB keeps beside them (Spark rebuilds them whole)."""
    duck = {name: df for name, df in duck.items() if not name.endswith(IN_PLACE_ONLY_SUFFIXES)}
    assert set(duck) == set(spark)
    for name in sorted(duck):
        # every id's per-iteration timings; the incremental state (watermarks, build ids)
        if name.rsplit(".", 1)[-1] in VOLATILE_TABLES or name.endswith(("_loop_stats", *BOOKKEEPING_SUFFIXES)):
            continue
        d = duck[name].drop(columns=[c for c in duck[name].columns if c in VOLATILE])
        s = spark[name].drop(columns=[c for c in spark[name].columns if c in VOLATILE])
        assert list(d.columns) == list(s.columns), name
        assert len(d) == len(s), name
        order = list(d.columns)
        pd.testing.assert_frame_equal(normalized(d, order), normalized(s, order), check_dtype=False, obj=name)


@pytest.mark.parametrize("run", ["full", "nightly"])
def test_every_table_equals_duckdbs_row_for_row(both_runs, run):
    _, tables = both_runs[run]
    assert len(tables["duckdb"]) > 30
    assert_same_tables(tables["duckdb"], tables["spark"])
