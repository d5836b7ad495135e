"""The code location: it validates, groups assets by phase, and the CLI runs it."""

from __future__ import annotations

import re

import pytest
from dagster import Definitions

from cdp_assets.cli import main
from cdp_assets.definitions import build_definitions
from cdp_assets_tests.conftest import write_project


def test_definitions_validate_and_group_assets_by_phase(project):
    defs = build_definitions(project)
    Definitions.validate_loadable(defs)
    groups = {}
    for asset_def in defs.assets:
        for key in asset_def.keys:
            groups.setdefault(asset_def.group_names_by_key[key], set()).add(key.path[-1])
    assert set(groups) == {"ingestion", "hist_union", "staging", "unification", "report"}
    assert "shop_customers_hist" in groups["ingestion"] and "shop_customers" in groups["ingestion"]
    assert "shop_customers_hist_union" in groups["hist_union"]
    assert "shop_customers_stg" in groups["staging"]
    assert {"unified_id_lookup", "unified_id_graph", "customer_master", "enriched_shop_orders_stg"} <= groups[
        "unification"
    ]
    assert groups["report"] == {"cdp_report"}


@pytest.mark.pipeline
def test_cli_run_materializes_everything_and_says_where_things_are(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=300)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert ": SUCCESS" in out and "checks passed: " in out
    # progress: which step runs, each file of a load, each loop iteration with its rows changed
    log = captured.err
    assert "[ingestion] ingest_shop_customers: started" in log and "[report] cdp_report: done" in log, log[-2000:]
    assert "[unification] unification_customer_360.unify_loop_customer_360: started" in log
    assert "acme_src.shop_customers: read file 1 of 2" in log and "row(s), 0 rejected" in log
    assert "DEBUG" not in log and "STEP_OUTPUT" not in log
    assert "unified_id: iteration 1:" in log and "row(s) changed" in log
    passed, total = out.split("checks passed: ")[1].split()[0:3:2]
    assert passed == total and int(total) > 40
    assert f"report:          {tmp_path / 'p' / 'report.md'}" in out
    assert f"DuckDB database: {tmp_path / 'p' / 'cdp.duckdb'}" in out
    assert (tmp_path / "p" / "report.md").exists()
    assert (tmp_path / "home" / "dagster.yaml").exists()


def test_cli_run_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    config = write_project(tmp_path, records=10, mutate=lambda cfg: cfg.update(client="Acme Corp"))
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "client" in err and "lowercase" in err and "Traceback" not in err


@pytest.mark.pipeline
def test_cli_run_prints_each_failed_check_with_its_value_threshold_and_severity(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=300, mutate=lambda cfg: cfg["checks"].update(coverage_min_pct=99.5))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--config", str(config)]) != 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "FAILED check" in line]
    coverage = [line for line in lines if ":coverage (ERROR): measured " in line]
    assert coverage and all(
        re.search(r"measured [0-9.]+% \(threshold: at least 99\.5%\)$", line) for line in coverage
    ), lines
