"""Every example under examples/td_format/ (Treasure Data unify.yml files, loaded unchanged) runs
on DuckDB and on the Databricks engine driving a local Spark session, with every check passed on
both, and gives the same unification tables row for row, canonical ids included.

On DuckDB each example runs as its cdp.yml says (ingestion, hist-union and staging of a generated
sample where it has sources, then the unification). On Spark its unification runs on the tables
the unify.yml reads, as DuckDB's run left them, copied row for row into Spark; the example's
sources and staging are left out of the Spark side's cdp.yml, so those tables are external assets
there (as in ``existing_tables``). What the Spark side proves is the unify.yml's: every
unification asset and check on Spark, from the same input rows. Ingestion, hist-union and staging
on Spark are proven equal to DuckDB's by ``test_cross_engine_pipeline.py`` (the acme example, whose
sources and staging rules cover these examples'); running them here again on Spark took about 45 s
of the 280 s this module took (measured 2026-12-05, docs/tests.md)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import sqlglot
import yaml
from dagster import DagsterInstance

from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.sample.generator import generate_sample
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import check_results, shared_spark_session
from cdp_assets_tests.engines.test_cross_engine_pipeline import assert_same_tables

pytestmark = pytest.mark.spark

EXAMPLES = REPO_ROOT / "examples" / "td_format"


def _project(root: Path, example: Path, engine: dict, unification_only: bool = False) -> Path:
    """The example's cdp.yml with its own unify.yml copied byte for byte, on the given engine;
    a generated sample where the example ingests files. ``unification_only``: without its
    sources and staging (the tables its unify.yml reads are then external assets)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(example / "unify.yml", root / "unify.yml")
    cfg = yaml.safe_load((example / "cdp.yml").read_text())
    for source in cfg.get("sources") or []:
        source["connector"]["path"] = str(root.parent / "data" / source["name"])
    if unification_only:
        cfg["sources"] = []
        cfg.pop("staging", None)
        cfg.pop("staging_tables", None)
    cfg["engine"] = engine
    cfg["report"]["path"] = "report.md"
    (root / "cdp.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "cdp.yml"


def _seed(wh, example: Path) -> None:
    """The team's own tables of a unification-only example (its seed.sql, in the engine's dialect)."""
    seed = example / "seed.sql"
    if seed.exists():
        with wh.session():
            for statement in sqlglot.transpile(seed.read_text(), read="duckdb", write=wh.dialect.sqlglot_name):
                wh.execute(statement)


def _copy_unified_tables(duck, spark, loaded) -> int:
    """The tables the unify.yml reads, as DuckDB's run produced them, written into Spark row for
    row (the Spark run's external assets); returns how many were copied."""
    names = sorted({(t.database or loaded.pipeline.stg_schema, t.table) for t in loaded.unification.tables})
    refs = [TableRef(schema, table) for schema, table in names]
    with duck.session():
        frames = [(ref, duck.fetch(f"SELECT * FROM {ref.sql}")) for ref in refs]
    with spark.session():
        for ref, df in frames:
            assert len(df), ref.display  # every table has rows to unify
            spark.write_dataframe(ref, df)
    return len(frames)


def _drop_spark_schemas(wh) -> None:
    """The examples share schema names (acme_src, acme_stg) and the process has one Spark catalog:
    each example starts from an empty one, as its DuckDB run starts from a new file."""
    with wh.session():
        for schema in wh.query("SHOW SCHEMAS").iloc[:, 0]:
            if schema != "default":
                wh.execute(f"DROP SCHEMA IF EXISTS `{schema}` CASCADE")


@pytest.fixture(scope="module")
def spark_dir():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        yield d


@pytest.mark.parametrize(
    "example", [EXAMPLES, EXAMPLES / "templated", EXAMPLES / "existing_tables"], ids=lambda p: p.name
)
def test_the_example_gives_duckdbs_tables_on_spark_with_every_check_passed(example, tmp_path, spark_dir):
    generate_sample(tmp_path / "data", 150, seed=5)
    spark_engine = {"kind": "databricks", "databricks": {"connection": "local_spark", "local_spark_dir": spark_dir}}
    configs = {
        "duckdb": load_config(
            _project(tmp_path / "duckdb", example, {"kind": "duckdb", "duckdb": {"path": "cdp.duckdb"}})
        ),
        "spark": load_config(_project(tmp_path / "spark", example, spark_engine, unification_only=True)),
    }
    ingests = bool(configs["duckdb"].pipeline.sources)
    warehouses = {
        "duckdb": DuckDBWarehouse(path=str(configs["duckdb"].duckdb_path)),
        "spark": build_warehouse(configs["spark"]),
    }
    _drop_spark_schemas(warehouses["spark"])
    tables, checked = {}, {}
    for name, wh in warehouses.items():
        if name == "spark" and ingests:
            assert _copy_unified_tables(warehouses["duckdb"], wh, configs["duckdb"]) == 4
        else:
            _seed(wh, example)
        result = (
            build_definitions(configs[name], wh)
            .resolve_job_def(PIPELINE_JOB)
            .execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
        )
        assert result.success, name
        checks = check_results(result)
        assert checks and all(checks.values()), (name, [k for k, ok in checks.items() if not ok])
        schema = configs[name].unification.schema
        checked[name] = {k for k in checks if k.startswith(f"{schema}/")}
        with wh.session():
            tables[name] = {t: wh.fetch(f"SELECT * FROM {TableRef(schema, t).sql}") for t in wh.list_tables(schema)}

    assert any(t.startswith("enriched_") for t in tables["duckdb"]), sorted(tables["duckdb"])
    # Every check of the unification's assets ran on Spark too (and passed, above).
    assert checked["duckdb"] and checked["spark"] == checked["duckdb"]
    assert_same_tables(tables["duckdb"], tables["spark"])
