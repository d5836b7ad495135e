"""Every check gives a result with a reason, and says what it measured and against what.

Real in-process runs on small generated projects: ordinary data; every key value of every
source file invalid (no row has an id to unify); every table of a real run emptied, then every
check that has a step of its own run on the empty tables (an asset's in-step checks run only with
its build, docs/checks.md); and CSV and Parquet sources without rows, whose ingestion steps
evaluate their checks on tables that were never created (the hist-union steps then fail, naming
their missing inputs). Every check the definitions build must have an evaluation in each run
that can evaluate it, none may crash (a crashing check has no evaluation and disappears from the
run's summary), and each follows the one metadata convention of
``cdp_assets.checks.check_result``, which the alert text is made from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import duckdb
from dagster import (
    AssetCheckEvaluation,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    define_asset_job,
)

from cdp_assets.checks import COMPARISONS, measurement, measurement_text
from cdp_assets.config import load_config
from cdp_assets.config.loader import DEFAULT_CONFIG
from cdp_assets.config.models import AlertsConfig
from cdp_assets.definitions import build_definitions
from cdp_assets.sensors.alerts import check_alert_payload
from cdp_assets.sql.dialects import quote
from cdp_assets_tests.conftest import run_pipeline, write_project

pytestmark = pytest.mark.pipeline  # its module fixture runs the whole pipeline on three projects

# Dagster's schema change check (checks/monitoring.py) measures nothing: its description says what
# changed, and its alert shows that description. Dagster's freshness check reports in Dagster's
# metadata, which ``measurement`` reads under the convention.
DESCRIBED_ONLY = {"column_schema_change"}

# Key columns of the sample (unify.yml) and a value that each key's rules reject.
INVALID_KEYS = {"email": "N/A", "phone": "", "customer_id": "X1", "cookie_id": ""}


def _no_valid_key(root: Path) -> None:
    """Every key value of every source file replaced by one its key's rules reject."""
    for path in sorted((root / "data").rglob("*")):
        if path.suffix == ".csv" and path.name != "ground_truth.csv":
            _invalidate(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
        elif path.suffix == ".parquet":
            _invalidate(pd.read_parquet(path)).to_parquet(path, index=False)
        elif path.suffix == ".jsonl":
            rows = _invalidate(
                pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
            )
            path.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict(orient="records")))


def _invalidate(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for column, value in INVALID_KEYS.items():
        if column in df.columns:
            df[column] = value
    return df


def _empty_every_table(duckdb_path: Path) -> int:
    """Delete every row of every table the run built (raw, staged, unified, logs, statistics):
    the tables keep the schemas a real run gave them."""
    con = duckdb.connect(str(duckdb_path))
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            con.execute(f"DELETE FROM {quote(schema)}.{quote(table)}")
    finally:
        con.close()
    return len(tables)


def _no_rows(root: Path) -> None:
    """Every CSV and Parquet source file without rows (its columns kept); an empty JSON lines
    file would have no columns for the unification config to name, so those keep theirs."""
    for path in sorted((root / "data").rglob("*")):
        if path.suffix == ".csv" and path.name != "ground_truth.csv":
            pd.read_csv(path, dtype=str, keep_default_na=False).iloc[0:0].to_csv(path, index=False)
        elif path.suffix == ".parquet":
            pd.read_parquet(path).iloc[0:0].to_parquet(path, index=False)


def _check_keys(checked) -> set[str]:
    return {f"{k.asset_key.to_user_string()}:{k.name}" for c in checked for k in c.check_keys}


def _lenient(cfg: dict) -> None:
    # The blocking coverage check would stop the master tables, whose own check would not run.
    cfg["checks"]["coverage_min_pct"] = 0


def _evaluations(result) -> tuple[list[AssetCheckEvaluation], list]:
    evals = [
        e.event_specific_data for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    failures = [
        (e.step_key, e.event_specific_data.error.message.splitlines()[0])
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_FAILURE
    ]
    return evals, failures


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory) -> dict[str, tuple[set[str], list[AssetCheckEvaluation], list]]:
    """scenario -> (the check keys the definitions build, the run's evaluations, its failed steps)."""
    out = {}
    for scenario in ("ordinary", "no_valid_key", "empty", "empty_sources"):
        root = tmp_path_factory.mktemp(scenario)
        write_project(root, records=120, mutate=_lenient)
        if scenario == "no_valid_key":
            _no_valid_key(root)
        if scenario == "empty_sources":
            _no_rows(root)
        loaded = load_config(root / "cdp.yml")
        defs = build_definitions(loaded)
        # the checks on the assets (evaluated in their steps) and those with steps of their own
        expected = _check_keys([*defs.assets, *defs.asset_checks])
        if scenario == "empty":
            expected = _check_keys(defs.asset_checks)
        if scenario == "empty_sources":
            expected = _check_keys(a for a in defs.assets if "ingestion" in a.group_names_by_key.values())
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(loaded, instance)
            if scenario == "empty":
                # Every table of a real run emptied, then every check with a step of its own run again
                # on them alone (an in-step check runs only with its asset's build).
                assert result.success and _empty_every_table(loaded.duckdb_path) > 20
                checks_only = Definitions.merge(
                    defs,
                    Definitions(jobs=[define_asset_job("every_check", AssetSelection.checks(*defs.asset_checks))]),
                )
                result = checks_only.resolve_job_def("every_check").execute_in_process(
                    instance=instance, raise_on_error=False
                )
        out[scenario] = (expected, *_evaluations(result))
    return out


@pytest.mark.parametrize("scenario", ["empty", "no_valid_key", "empty_sources"])
def test_every_check_gives_a_result_with_a_reason_on_empty_and_keyless_data(evaluations, scenario):
    expected, evals, failures = evaluations[scenario]
    if scenario == "empty_sources":  # only the hist-union steps fail, each naming its missing inputs
        assert failures and all(s.endswith("_hist_union") for s, _ in failures), failures
    else:
        assert failures == []  # no step crashed, check or asset
    got = {f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evals}
    assert expected <= got, f"checks without a result: {sorted(expected - got)}"
    if scenario != "empty_sources":  # there the JSON lines object goes on past ingestion
        assert got == expected, f"checks the definitions do not build: {sorted(got - expected)}"
    for e in evals:
        if e.check_name in DESCRIBED_ONLY:
            assert e.description, e.check_name
            continue
        meta = measurement(e.metadata)
        assert {"measured", "threshold", "unit", "comparison"} <= set(meta), e.check_name
        if meta["measured"] == "not measured" or (not e.passed and meta.get("reason")):
            assert meta["reason"], e.check_name
    by_name = {e.check_name: e for e in evals}
    if scenario == "empty_sources":
        rows = [e for e in evals if e.check_name == "has_rows" and "web_events" not in e.asset_key.path[-1]]
        # a table that was never created (no rows to load: an error), or one a load left empty (a
        # CSV's historical table, created from its header: a warning); both occur
        assert len(rows) == 6 and not any(e.passed for e in rows), rows
        missing = [e for e in rows if measurement(e.metadata).get("reason", "").endswith("does not exist")]
        empty = [e for e in rows if measurement(e.metadata)["measured"] == 0]
        assert missing and empty and len(missing) + len(empty) == 6, [e.metadata for e in rows]
        assert {e.severity.value for e in missing} == {"ERROR"} and {e.severity.value for e in empty} == {"WARN"}
        return
    if scenario == "empty":
        lookup = by_name["lookup_not_empty"]
        assert not lookup.passed and lookup.metadata["measured"].value == 0
    else:
        lookup = by_name["lookup_not_empty"]
        assert not lookup.passed and "no row had a valid key value" in lookup.metadata["reason"].value
    share = by_name["largest_component_share"]  # raised "boolean value of NA is ambiguous" before
    assert share.passed and share.metadata["measured"].value == 0
    assert "not judged: 0 row(s) with an id" in share.metadata["reason"].value


def _check_names() -> list[str]:
    defs = build_definitions(load_config(DEFAULT_CONFIG))
    return sorted({k.name for c in [*defs.assets, *defs.asset_checks] for k in c.check_keys})


@pytest.mark.parametrize("check_name", _check_names())
def test_each_checks_alert_says_what_it_measured_and_against_what(evaluations, check_name):
    cfg = AlertsConfig()
    seen = [e for _, evals, _ in evaluations.values() for e in evals if e.check_name == check_name]
    assert seen, f"no run evaluated {check_name}"
    for e in seen:
        alert = check_alert_payload(cfg, e, "run-1")
        if check_name in DESCRIBED_ONLY:
            assert e.description and e.description in alert["text"], alert["text"]
            continue
        meta = measurement(e.metadata)
        assert alert["measured"] == meta["measured"] and alert["threshold"] == meta["threshold"]
        assert alert["comparison"] in COMPARISONS
        shown = f"{meta['threshold']:g}" if isinstance(meta["threshold"], float) else str(meta["threshold"])
        assert f"(threshold: {COMPARISONS[alert['comparison']]} {shown}" in alert["text"], alert["text"]
        assert measurement_text(e.metadata) in alert["text"] and "n/a" not in alert["text"]
        if check_name != "freshness_check":  # Dagster's own description
            assert e.description == measurement_text(e.metadata)
