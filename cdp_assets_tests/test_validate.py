"""`cdp-assets validate`: a good config passes and nothing is written; a missing column, a
refused or missing engine credential, and a statement the engine cannot plan are each caught,
named by file and field, with the exit codes of cdp_assets/exit_codes.py."""

from __future__ import annotations

import pytest

from cdp_assets import exit_codes
from cdp_assets.cli import main
from cdp_assets.validate import validate
from cdp_assets_tests.conftest import write_project
from cdp_assets_tests.fakes.td_api import FakeTreasureData

KEY = "4321/" + "9f3c" * 10


def test_a_good_config_passes_and_nothing_is_written(tmp_path, capsys):
    config = write_project(tmp_path, records=120)
    assert main(["validate", "--config", str(config)]) == exit_codes.OK
    out = capsys.readouterr().out
    assert "engine:  engine=duckdb" in out and "unification customer_360" in out and "merge_by_keys email" in out
    assert "statement(s) checked; nothing was written" in out
    assert not (tmp_path / "cdp.duckdb").exists()  # the warehouse was not even created


def test_a_missing_column_is_named_by_file_and_field_with_every_other_problem(tmp_path, capsys):
    def break_columns(cfg):
        cfg["staging"]["shop_customers"]["phone"]["columns"] = ["mobile"]
        cfg["unification"]["tables"][3]["key_columns"][0]["column"] = "cookie"

    config = write_project(tmp_path, records=60, mutate=break_columns)
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert f"{config}: staging.shop_customers.phone.columns[0]: column 'mobile' is not in shop_customers" in err
    assert f"{config}: unification.tables[3].key_columns[0].column: column 'cookie' is not in web_events_stg" in err
    assert "2 problem(s)" in err


def test_a_missing_watermark_column_in_a_file_is_named(tmp_path):
    config = write_project(tmp_path, records=60, mutate=lambda c: c["sources"][0].update(incremental_field="modified_at"))
    report = validate(config)
    assert report.exit_code == exit_codes.FAILED
    assert any(p.field == "sources[0].incremental_field" and "has no column 'modified_at'" in p.message for p in report.problems)


@pytest.fixture
def td():
    fake = FakeTreasureData(KEY)
    fake.url = fake.start()
    yield fake
    fake.stop()


def test_a_treasure_data_key_the_api_refuses_is_reported_masked(tmp_path, td, monkeypatch, capsys):
    wrong = "4321/" + "0bad" * 10
    monkeypatch.setenv("TD_API_KEY", wrong)
    config = write_project(tmp_path, records=40, mutate=lambda c: c.update(engine={"kind": "treasure_data", "treasure_data": {"endpoint": td.url, "poll_seconds": 0.01}}))
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

    real = render.staging_sql
    monkeypatch.setattr(render, "staging_sql", lambda *a: real(*a).replace("SELECT *", "SELECT *, no_such_function(1) AS x", 1))
    config = write_project(tmp_path, records=40)
    assert main(["validate", "--config", str(config)]) == exit_codes.FAILED
    err = capsys.readouterr().err
    assert f"{config}: SQL staging/01_shop_customers_stg: DuckDB cannot plan this statement" in err
    assert "no_such_function" in err
    assert not (tmp_path / "cdp.duckdb").exists()


def test_sql_that_does_not_parse_is_caught_too(tmp_path, monkeypatch, capsys):
    import cdp_assets.render as render

    real = render.staging_sql
    monkeypatch.setattr(render, "staging_sql", lambda *a: real(*a).replace("FROM", "FROM FROM", 1))
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
        cfg["sources"] = [{"name": "crm", "connector": {"kind": "table", "database": "landing"}, "objects": ["contacts"], "mode": "incremental"}]
        cfg["staging"] = {"crm_contacts": {"email": {"rule": "email", "columns": ["email"]}}}
        cfg.pop("unification")

    config = write_project(tmp_path, records=20, mutate=tables, generate=False)
    report = validate(config)
    assert [p.field for p in report.problems] == ["sources[0].objects[0]"] and "does not exist yet" in report.problems[0].message
    assert not (tmp_path / "cdp.duckdb").exists()
    DuckDBWarehouse(path=str(tmp_path / "cdp.duckdb")).replace_with_dataframe(
        TableRef("landing", "contacts"), pd.DataFrame({"mail": ["a@b.co"], "updated_at": [pd.Timestamp("2024-01-01")]}))
    report = validate(config)
    assert [(p.field, p.message.split(";")[0]) for p in report.problems] == [("staging.crm_contacts.email.columns[0]", "column 'email' is not in crm_contacts")]
