"""`cdp-assets validate`: a good config passes and nothing is written; a missing column, a
refused or missing engine credential, and a statement the engine cannot plan are each caught,
named by file and field, with the exit codes of cdp_assets/exit_codes.py. Where the warehouse
holds a statement's inputs, the configured engine itself plans it (EXPLAIN) on DuckDB, the
Treasure Data fake and local Spark, and nothing is written."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pytest

from cdp_assets import exit_codes
from cdp_assets.cli import main
from cdp_assets.config import load_config
from cdp_assets.render import build_pipelines
from cdp_assets.sql.dialects import DIALECTS
from cdp_assets.validate import validate
from cdp_assets_tests.conftest import run_pipeline, write_project
from cdp_assets_tests.fakes.td_api import FakeTreasureData

KEY = "4321/" + "9f3c" * 10


def test_a_good_config_passes_and_nothing_is_written(tmp_path, capsys):
    config = write_project(tmp_path, records=120)
    assert main(["validate", "--config", str(config)]) == exit_codes.OK
    out = capsys.readouterr().out
    assert "engine:  engine=duckdb" in out and "unification customer_360" in out and "merge_by_keys email" in out
    assert (
        "SQL:     31 statement(s) parsed and rehearsed on an in-memory DuckDB; 0 planned "
        "by the engine (EXPLAIN); 31 only rehearsed, no warehouse to plan on" in out
    )
    assert "31 statement(s) checked, 0 of them planned by the engine; nothing was written" in out
    assert not (tmp_path / "cdp.duckdb").exists()  # the warehouse was not even created


def test_a_missing_column_is_named_by_file_and_field_with_every_other_problem(tmp_path, capsys):
    def break_columns(cfg):
        cfg["staging"]["shop_customers"]["phone"]["columns"] = ["mobile"]
        cfg["staging"]["shop_orders"]["email"]["columns"] = ["e_mail"]

    config = write_project(tmp_path, records=60, mutate=break_columns)
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert f"{config}: staging.shop_customers.phone.columns[0]: column 'mobile' is not in shop_customers" in err
    assert f"{config}: staging.shop_orders.email.columns[0]: column 'e_mail' is not in shop_orders" in err
    assert "2 problem(s)" in err


def test_a_key_column_the_staged_table_will_not_have_is_a_config_error_naming_the_field(tmp_path, capsys):
    """unify.yml's columns are checked when the config loads (source headers plus staging
    outputs), so validate stops there: exit 2, the field named, the closest column suggested."""
    config = write_project(
        tmp_path, records=60, mutate=lambda c: c["unification"]["tables"][3]["key_columns"][0].update(column="cookie")
    )
    assert main(["validate", "--config", str(config)]) == exit_codes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "unification.tables[3].key_columns[0].column" in err and "'cookie'" in err


def _with_column(sql: str, column_sql: str) -> str:
    """The staging query with one more output column (its last SELECT list)."""
    head, sep, tail = sql.rpartition("\nFROM ")
    return f"{head}, {column_sql}{sep}{tail}"


def test_a_missing_watermark_column_in_a_file_is_named(tmp_path):
    config = write_project(
        tmp_path, records=60, mutate=lambda c: c["sources"][0].update(incremental_field="modified_at")
    )
    report = validate(config)
    assert report.exit_code == exit_codes.FAILED
    assert any(
        p.field == "sources[0].incremental_field" and "has no column 'modified_at'" in p.message
        for p in report.problems
    )


@pytest.fixture
def td():
    fake = FakeTreasureData(KEY)
    fake.url = fake.start()
    yield fake
    fake.stop()


def test_a_treasure_data_key_the_api_refuses_is_reported_masked(tmp_path, td, monkeypatch, capsys):
    wrong = "4321/" + "0bad" * 10
    monkeypatch.setenv("TD_API_KEY", wrong)
    config = write_project(
        tmp_path,
        records=40,
        mutate=lambda c: c.update(
            engine={"kind": "treasure_data", "treasure_data": {"endpoint": td.url, "poll_seconds": 0.01}}
        ),
    )
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    captured = capsys.readouterr()
    assert f"{config}: engine.treasure_data: the engine refused the connection" in captured.err
    assert "TD_API_KEY" in captured.err
    assert wrong not in captured.out + captured.err and wrong[5:] not in captured.out + captured.err
    # With the right key the same config validates (Trino parses every statement).
    monkeypatch.setenv("TD_API_KEY", KEY)
    assert main(["validate", "--config", str(config)]) == exit_codes.OK
    out = capsys.readouterr().out
    assert "****" + KEY[-4:] in out and KEY not in out


def test_a_databricks_token_variable_that_is_unset_is_a_configuration_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", "adb-123.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_HTTP_PATH", "/sql/1.0/warehouses/abc")
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    config = write_project(tmp_path, records=40, mutate=lambda c: c.update(engine={"kind": "databricks"}))
    assert main(["validate", "--config", str(config)]) == exit_codes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"{config}: engine.databricks: set the environment variable(s) DATABRICKS_TOKEN" in err
    assert "DATABRICKS_HOST" not in err.split("DATABRICKS_TOKEN")[0].split("engine.databricks")[1]


def test_sql_the_engine_cannot_plan_is_named_by_phase_and_statement(tmp_path, monkeypatch, capsys):
    """No config value becomes SQL text, so a statement the engine rejects comes from a builder
    or a dialect hook; validate must show it before a run. Here the staging builder emits a
    function DuckDB does not have."""
    import cdp_assets.render as render

    real = render.staging_query
    monkeypatch.setattr(render, "staging_query", lambda *a: _with_column(real(*a), "no_such_function(1) AS x"))
    config = write_project(tmp_path, records=40)
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert f"{config}: SQL staging/01_shop_customers_stg: DuckDB cannot plan this statement" in err
    assert "no_such_function" in err
    assert not (tmp_path / "cdp.duckdb").exists()


def test_sql_that_does_not_parse_is_caught_too(tmp_path, monkeypatch, capsys):
    import cdp_assets.render as render

    real = render.staging_query
    monkeypatch.setattr(render, "staging_query", lambda *a: real(*a).replace("FROM", "FROM FROM", 1))
    config = write_project(tmp_path, records=40)
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    assert "Parser Error" in capsys.readouterr().err


def test_a_config_that_does_not_load_is_a_configuration_error(tmp_path, capsys):
    config = write_project(tmp_path, records=20, mutate=lambda c: c.update(client="Bad Name"))
    assert main(["validate", "--config", str(config)]) == exit_codes.CONFIG_ERROR
    assert "client" in capsys.readouterr().err


def test_warehouse_table_sources_are_checked_on_the_engine(tmp_path):
    import pandas as pd

    from cdp_assets.engines.duckdb import DuckDBWarehouse
    from cdp_assets.sql.dialects import TableRef

    def tables(cfg):
        cfg["sources"] = [
            {
                "name": "crm",
                "connector": {"kind": "table", "database": "landing"},
                "objects": ["contacts"],
                "mode": "incremental",
            }
        ]
        cfg["staging"] = {"crm_contacts": {"email": {"rule": "email", "columns": ["email"]}}}
        cfg.pop("staging_tables", None)  # the example's options name its own tables
        cfg.pop("unification")

    config = write_project(tmp_path, records=20, mutate=tables, generate=False)
    report = validate(config)
    assert [p.field for p in report.problems] == ["sources[0].objects[0]"] and "does not exist yet" in report.problems[
        0
    ].message
    assert not (tmp_path / "cdp.duckdb").exists()
    DuckDBWarehouse(path=str(tmp_path / "cdp.duckdb")).replace_with_dataframe(
        TableRef("landing", "contacts"), pd.DataFrame({"mail": ["a@b.co"], "updated_at": [pd.Timestamp("2024-01-01")]})
    )
    report = validate(config)
    assert [(p.field, p.message.split(";")[0]) for p in report.problems] == [
        ("staging.crm_contacts.email.columns[0]", "column 'email' is not in crm_contacts")
    ]


# ---------------------------------------------------------------------------- the engine plans


def _statements(loaded) -> dict[str, str]:
    """Each statement as validate names it ("phase/NN_name") -> its canonical SQL, as printed for
    DuckDB (with the key statistics' kept counts)."""
    return {
        f"{phase}/{n:02d}_{step.name}": step.sql
        for phase, pipeline in build_pipelines(loaded, dialect=DIALECTS["duckdb"]).items()
        for n, step in enumerate(pipeline.steps, start=1)
    }


def _tables_read(sql: str, schemas: set[str]) -> set[tuple[str, str]]:
    """The config's tables a statement names, minus the one it creates (read with a regular
    expression: an oracle independent of validate's sqlglot reading)."""
    target = re.match(r'CREATE TABLE "(\w+)"\."(\w+)" AS\b', sql)
    body = sql[target.end() :] if target else sql
    return {(s, t) for s, t in re.findall(r'"(\w+)"\."(\w+)"', body) if s in schemas}


@pytest.fixture
def first_run(sample_run):
    """A project on DuckDB after one successful run (the session's shared run; validate only reads it)."""
    return sample_run.config_path


def test_after_a_first_run_duckdb_plans_every_statement_whose_inputs_it_holds(first_run, capsys):
    loaded = load_config(first_run)
    db = loaded.duckdb_path
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert main(["validate", "--config", str(first_run)]) == exit_codes.OK
    out = capsys.readouterr().out
    report = validate(first_run)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only: not a byte written
    con = duckdb.connect(str(db), read_only=True)
    try:
        existing = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall())
    finally:
        con.close()
    schemas = {loaded.pipeline.src_schema, loaded.pipeline.stg_schema, loaded.unification.schema}
    statements = _statements(loaded)
    assert set(report.engine_plans) == set(statements) and report.statements == len(statements) == 31
    for where, sql in statements.items():
        missing = _tables_read(sql, schemas) - existing
        # Planned exactly when every input is in the warehouse; otherwise the reason says so.
        assert (report.engine_plans[where] is None) == (not missing), (where, missing, report.engine_plans[where])
        if missing:
            assert report.engine_plans[where].startswith("inputs not yet built in the warehouse")
    # Every statement over published tables is planned: hist-union, staging, enriched, master.
    planned = {w for w, why in report.engine_plans.items() if why is None}
    assert {
        w for w in statements if w.startswith(("hist_union/", "staging/")) or "enriched_" in w or w.endswith("_master")
    } <= planned
    # What is not planned reads the unification loop's scratch tables, which no run keeps.
    assert all("unified_id_" in m for m in report.missing_inputs) and "unified_id_edges" in " ".join(
        report.missing_inputs
    )
    assert (
        f"; {len(planned)} planned by the engine (EXPLAIN); {31 - len(planned)} only rehearsed, inputs not yet built"
        in out
    )
    assert f"31 statement(s) checked, {len(planned)} of them planned by the engine; nothing was written" in out


def test_a_statement_the_engine_cannot_plan_is_named_by_its_asset(first_run, monkeypatch, capsys):
    """The staging builder (monkeypatched) reads a column the real hist-union table lacks: the
    engine's own EXPLAIN refuses it, and the problem names the statement and DuckDB's words."""
    import cdp_assets.render as render

    real = render.staging_query
    monkeypatch.setattr(render, "staging_query", lambda *a: _with_column(real(*a), '"loyalty_tier" AS tier'))
    assert main(["validate", "--config", str(first_run)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert (
        f"{first_run}: SQL staging/01_shop_customers_stg: the duckdb engine cannot plan this statement (EXPLAIN): "
        in err
    )
    assert "loyalty_tier" in err and "1 problem(s)" in err


def test_tables_an_earlier_config_built_without_a_new_column_are_only_rehearsed(first_run, tmp_path):
    """A staging rule added since the run gives shop_orders_stg a column the warehouse's table
    lacks: the statements reading it are rehearsed (reason given), the others still planned."""
    import yaml

    cfg = yaml.safe_load(first_run.read_text())
    cfg["staging"]["shop_orders"]["order_code"] = {"rule": "name", "columns": ["order_id"]}
    cfg["engine"]["duckdb"]["path"] = str(first_run.parent / "cdp.duckdb")
    cfg["sources"] = [
        {**s, "connector": {**s["connector"], "path": str((first_run.parent / s["connector"]["path"]).resolve())}}
        for s in cfg["sources"]
    ]
    changed = tmp_path / "cdp.yml"
    changed.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = validate(changed)
    assert report.exit_code == exit_codes.OK, [str(p) for p in report.problems]
    differently = {
        w
        for w, why in report.engine_plans.items()
        if why is not None and why.startswith("inputs in the warehouse lack columns")
    }
    assert "unification/16_enriched_shop_orders_stg" in differently
    assert report.engine_plans["staging/02_shop_orders_stg"] is None  # its input is unchanged
    assert "only rehearsed, inputs in the warehouse lack columns this config adds" in report.plan_summary()


def _td_tables(td) -> dict:
    """Every table of the fake with its columns and content (a change to any shows)."""
    out = {}
    for schema, table in td.sql(
        "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2"
    ).itertuples(index=False):
        frame = td.sql(f'SELECT * FROM "{schema}"."{table}"')
        out[(schema, table)] = (list(frame.columns), hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest())
    return out


@pytest.mark.pipeline
def test_on_treasure_data_explain_jobs_are_sent_and_nothing_is_written(tmp_path, td, monkeypatch):
    monkeypatch.setenv("TD_API_KEY", KEY)
    config = write_project(
        tmp_path,
        records=60,
        mutate=lambda c: c.update(
            engine={"kind": "treasure_data", "treasure_data": {"endpoint": td.url, "poll_seconds": 0.01}}
        ),
    )
    before_run = validate(config)
    assert before_run.exit_code == exit_codes.OK and before_run.planned == 0  # nothing is built yet
    assert set(before_run.engine_plans.values()) == {before_run.engine_plans["hist_union/01_shop_customers_hist_union"]}
    assert before_run.engine_plans["hist_union/01_shop_customers_hist_union"].startswith("inputs not yet built")
    result = run_pipeline(load_config(config))
    assert result.success
    tables, jobs = _td_tables(td), len(td.jobs)
    report = validate(config)
    assert report.exit_code == exit_codes.OK, [str(p) for p in report.problems]
    sent = [j for j in list(td.jobs.values())[jobs:]]
    bodies = [re.sub(r"^(\s*--[^\n]*\n)*\s*", "", j.query) for j in sent]
    assert len(sent) == report.planned >= 17 and all(
        b.startswith(("EXPLAIN SELECT", "EXPLAIN WITH")) for b in bodies
    ), bodies
    assert all(j.status == "success" and j.type == "presto" and j.schema == [["Query Plan", "varchar"]] for j in sent)
    assert _td_tables(td) == tables  # no table created, dropped or changed


@pytest.mark.spark
def test_on_local_spark_explain_goes_to_spark_and_nothing_is_written(tmp_path, monkeypatch):
    """After ingestion and hist-union on local Spark (the Databricks dialect), validate sends
    Spark EXPLAIN of the statements whose inputs exist, writes nothing, and reports a statement
    Spark cannot analyse (Spark answers EXPLAIN of it with the error as the plan)."""
    from dagster import AssetSelection, DagsterInstance

    import cdp_assets.render as render
    from cdp_assets.definitions import PIPELINE_JOB, build_definitions
    from cdp_assets.engines.databricks import DatabricksWarehouse
    from cdp_assets_tests.conftest import shared_spark_session, worker_spark_dir

    # The process's shared Spark session (conftest), on its own warehouse dir, emptied when the
    # session is handed over: every file under it is this test's. (Before, the test stopped the
    # shared session and started one on a dir of its own: two JVM starts, and a cold JVM for the
    # next Spark test of the process.)
    spark_dir = Path(worker_spark_dir())
    config = write_project(
        tmp_path,
        records=40,
        mutate=lambda c: c.update(
            engine={
                "kind": "databricks",
                "databricks": {"connection": "local_spark", "local_spark_dir": str(spark_dir)},
            }
        ),
    )
    loaded = load_config(config)
    with shared_spark_session():
        defs = build_definitions(loaded)
        job = defs.resolve_job_def(PIPELINE_JOB)
        selection = AssetSelection.groups("ingestion", "hist_union").resolve(defs.resolve_asset_graph())
        assert job.execute_in_process(
            instance=DagsterInstance.ephemeral(), asset_selection=list(selection), raise_on_error=False
        ).success
        files_before = sorted(
            (str(f.relative_to(spark_dir)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in spark_dir.rglob("*")
            if f.is_file()
        )
        assert files_before, "the tables must be under this test's warehouse dir"
        sent: list[str] = []
        real_query = DatabricksWarehouse._query

        def recording(self, sql, params=None):  # the real query path, recorded
            sent.append(sql)
            return real_query(self, sql, params)

        monkeypatch.setattr(DatabricksWarehouse, "_query", recording)
        report = validate(config)
        assert report.exit_code == exit_codes.OK, [str(p) for p in report.problems]
        planned = {w for w, why in report.engine_plans.items() if why is None}
        # hist-union reads the raw tables, staging the hist-union tables: all built, all planned.
        assert (
            planned == {w for w in report.engine_plans if w.startswith(("hist_union/", "staging/"))}
            and len(planned) == 8
        )
        explains = [q for q in sent if q.startswith("EXPLAIN ")]
        assert len(explains) == 8 and all(q.startswith(("EXPLAIN SELECT", "EXPLAIN WITH")) for q in explains)
        assert "`acme_src`.`shop_customers_hist`" in "".join(explains)  # rendered for Spark
        assert not [q for q in sent if re.match(r"\s*(CREATE|INSERT|DROP|ALTER|DELETE|MERGE)", q, re.IGNORECASE)]
        files_after = sorted(
            (str(f.relative_to(spark_dir)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in spark_dir.rglob("*")
            if f.is_file()
        )
        assert files_after == files_before  # nothing written to the warehouse
        real = render.staging_query
        monkeypatch.setattr(render, "staging_query", lambda *a: _with_column(real(*a), '"loyalty_tier" AS tier'))
        broken = validate(config)
        assert [p.field for p in broken.problems] == ["SQL staging/01_shop_customers_stg"]
        assert "the databricks engine cannot plan this statement (EXPLAIN)" in broken.problems[0].message
        assert "loyalty_tier" in broken.problems[0].message
