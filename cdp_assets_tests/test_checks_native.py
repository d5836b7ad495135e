"""Checks measured per asset, and what Dagster already does: statements per run, kinds, table
metadata, schema drift and freshness. One real in-process run of a small sample on DuckDB,
shared by the module (the statement count is the point of it), plus short check-only runs."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job
from dagster._core.test_utils import freeze_time

from cdp_assets.assets.metadata import COLUMN_SCHEMA, TABLE_NAME
from cdp_assets.checks import measurement
from cdp_assets.config import load_config
from cdp_assets.config.models import AlertsConfig
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.sensors.alerts import check_alert_payload
from cdp_assets.sql import unification as u
from cdp_assets.sql.checks import latest_loop_sql
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import check_results, warehouse_for, write_project
from cdp_assets_tests.statement_counts import counting, phase_of_steps

# Issue 12's target for a run of the sample's shape on DuckDB, and what this branch reached: the
# builds' own statements (loads, swaps, the report's counts) are the rest (docs/benchmarks.md).
TARGET_STATEMENTS = 150
# Reached 177 with the checks of ingestion, hist-union, staging and the master tables in their assets'
# steps and the loop's and enrichment's counts from their builds (docs/benchmarks.md, "Statements per run";
# docs/unification.md), of which about 20 are the enriched and master tables' incremental state (a state
# read and write per table, change logs): a first run pays them. 174 with the unification's own cuts (a
# first run's loop statistics not counted, the graph's check and the report reading its build's last round, the key
# statistics described with the enriched tables). Then 161: hist-union's and staging's full builds write their
# state as one CREATE TABLE AS of their inputs' totals, staging reads no state on its first build and takes its
# rule counts with its description. Counted honestly then (each statement of a call that carries several: DuckDB's
# drops of several tables, its BEGIN/CREATE.../COMMIT of the rule tables; an append unit's BEGIN, INSERT and COMMIT
# and one load per table), the same run is 210. 186 with the loads' temporary tables left to die with the step's
# session (DuckDB's temporary tables are its connection's), except the historical files' rows, dropped at once;
# 184 with a one-table append (the loop statistics) sent as its one statement, without BEGIN and COMMIT; 178 with
# the first hist-union and staging steps describing every step's tables of their phase (describe_ahead); 173 with
# the loop in a session of its own, whose temporary tables die with it (no drops at its end); 169 with the first
# ingestion step describing every step's tables; 167 with the schemas the run writes and their leftovers learnt in one
# look-up (know_schemas) instead of a listing per schema; 165 with the enriched and master tables' first builds
# writing their states in one statement. 150 (issue 12's target): the enrichments' coverage query also counts the
# staged rows a first enrichment read, the largest-share check's measures and the report's profile (6); an
# ingestion step reads its log history and rejections with its file versions before its loads, and its
# bookkeeping tables with its description after them (5); a load's files checked in one query (4). 148: the
# loop's rounds start from its nodes table (each node its own label) instead of a copy of it, and its drop.
# 149: a canonical id's lookup keeps its check measure beside it, counted by its first build (a statement, and
# its read-back in place of the check's own query) so that a nightly build counts it from its change.
CEILING_STATEMENTS = 149


FIRST_RUN_LOG: list = []  # (step, kind, SQL) of the sample run's own statements


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    loaded = load_config(write_project(root, records=60))
    log: list = []  # (step, kind, SQL) of every statement
    warehouse = counting(build_warehouse(loaded), log)
    defs = build_definitions(loaded, warehouse)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(instance=instance, raise_on_error=False)
    FIRST_RUN_LOG[:] = log  # the tests below run more jobs with this warehouse, adding to ``log``
    yield root, loaded, defs, instance, result, log, warehouse.counts
    instance.dispose()


def _events(result, kind: str) -> list:
    return [e.event_specific_data for e in result.all_events if e.event_type_value == kind]


# The query each in-step evaluation sends, by a name only its builder's SQL has (sql/checks.py).
IN_STEP_QUERIES = {"ingestion": "rejected_0", "hist_union": "duplicate_keys", "unification": "lookup_ids"}


def test_checks_are_evaluated_in_their_assets_steps_with_at_most_one_query_each(sample_run):
    _, _, defs, _, result, log, counts = sample_run
    checks = check_results(result)
    assert result.success and checks and all(checks.values()), [k for k, v in checks.items() if not v]
    steps = phase_of_steps(defs)
    in_step = {a.node_def.name: a for a in defs.assets if a.check_keys}
    # ingestion (both raw tables of an object in its step), hist-union, staging, the master table
    assert {steps[name] for name in in_step} == {"ingestion", "hist_union", "staging", "unification"}
    assert sum(len(a.check_keys) for a in in_step.values()) > len(checks) / 2
    without = 0  # ingestion steps that sent no query for their checks
    for name, a in in_step.items():
        phase = steps[name]
        marker = IN_STEP_QUERIES.get(phase)
        queries = [sql for step, kind, sql in log if step == name and kind == "queries" and marker and marker in sql]
        # hist-union's measures are taken by the statement that writes its state (kept with it,
        # docs/checks.md): its checks' query reads them back.
        queries = [sql for sql in queries if not sql.startswith("CREATE")]
        # staging's checks read the build's parse counts and description: no query; the others one.
        # An ingestion step's is read before its loads, with its file records, and none while its
        # object has no bookkeeping yet (the run's first ingestion step on a new database).
        if phase == "ingestion":
            assert len(queries) <= 1 and all("'file' AS part" in q for q in queries), (name, queries)
            without += not queries
        else:
            assert len(queries) == (0 if phase == "staging" else 1), (name, queries)
        assert {f"{k.asset_key.to_user_string()}:{k.name}" for k in a.check_keys} <= set(checks), name
    assert without == 1  # the first object's: no log, file records or rejections yet
    # Steps of checks are left for the unification graph's tables only (and Dagster's, which send nothing).
    per_step: dict[str, int] = {}
    for (step, kind), n in counts.items():
        if kind != "jobs" and steps.get(step, "").endswith(" checks"):
            per_step[step] = per_step.get(step, 0) + n
    assert per_step and max(per_step.values()) <= 2, per_step  # a description and one query at most
    assert {steps[s] for s in per_step} == {"unification checks"}
    assert not [s for s in per_step if "freshness" in s or "schema_change" in s]


def test_a_sample_run_stays_under_its_statement_ceiling(sample_run):
    """A count is deterministic. The checks' batching (in their assets' steps where Dagster allows)
    and the builds' reductions (one-statement atomic publishes on DuckDB, schemas, leftovers and
    descriptions kept for the run, counts from the builds, one bookkeeping unit per ingestion step)
    reached 201 statements; issue 12's target of 150 is reported met or not in docs/benchmarks.md."""
    counts = sample_run[-1]
    total = sum(n for (_, kind), n in counts.items() if kind != "jobs")
    assert total <= CEILING_STATEMENTS, f"{total} statements (target {TARGET_STATEMENTS})"


def test_every_asset_has_kinds_and_every_table_its_name_and_column_schema(sample_run):
    _, loaded, defs, _, result, _, _ = sample_run
    specs = [spec for a in defs.assets for spec in a.specs]
    assert specs and all("duckdb" in spec.kinds for spec in specs), [s.key for s in specs if "duckdb" not in s.kinds]
    tables = [spec for spec in specs if spec.key.path[0] != "cdp_report"]
    assert all(spec.metadata[TABLE_NAME] == ".".join(spec.key.path) for spec in tables)
    wh = warehouse_for(loaded)
    built = {m.asset_key: m for m in _events(result, "ASSET_MATERIALIZATION") for m in [m.materialization]}
    checked = 0
    with wh.session():
        for spec in tables:
            if spec.key not in built:
                continue  # external tables are read, never built
            schema = built[spec.key].metadata[COLUMN_SCHEMA].value
            ref = TableRef(*spec.key.path)
            assert [c.name for c in schema.columns] == wh.columns(ref), ref.display
            assert all(c.type for c in schema.columns)
            checked += 1
    assert checked >= 20


def _only(defs: Definitions, *keys, name: str = "some") -> Definitions:
    # The checks with steps of their own: an asset's in-step checks run only with their asset.
    selection = AssetSelection.assets(*keys) if keys else AssetSelection.checks(*defs.asset_checks)
    return Definitions.merge(defs, Definitions(jobs=[define_asset_job(name, selection)]))


def test_a_column_that_disappears_from_the_source_fails_the_schema_change_check(sample_run):
    """The historical customers file loses its last_name column: the next load rebuilds
    shop_customers_hist without it, and Dagster's column_schema_change check on it fails, naming
    the column; its alert says so."""
    root, _, defs, instance, _, _, _ = sample_run
    (path,) = (root / "data" / "shop" / "customers" / "historical").glob("*.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=["last_name"]).to_csv(path, index=False)
    hist = next(k for a in defs.assets for k in a.keys if k.path[-1] == "shop_customers_hist")
    ingest = next(a for a in defs.assets if hist in a.keys)  # loads both tables of the object
    job = _only(defs, *ingest.keys).resolve_job_def("some")
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    evaluations = _events(result, "ASSET_CHECK_EVALUATION")
    changes = {e.asset_key: e for e in evaluations if e.check_name == "column_schema_change"}
    change = changes[hist]
    assert not change.passed and "Removed columns: last_name" in change.description
    assert "last_name" in check_alert_payload(AlertsConfig(), change, "run-1")["text"]
    assert all(e.passed for k, e in changes.items() if k != hist)  # the incremental table kept its columns


def test_a_table_not_loaded_within_freshness_hours_fails_dagsters_freshness_check(sample_run):
    _, loaded, defs, instance, _, _, _ = sample_run
    hours = loaded.pipeline.checks.freshness_hours
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours + 1)
    job = _only(defs, name="every_check").resolve_job_def("every_check")
    with freeze_time(later):
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    fresh = [e for e in _events(result, "ASSET_CHECK_EVALUATION") if e.check_name == "freshness_check"]
    assert len(fresh) == 8 and not any(e.passed for e in fresh)
    alert = check_alert_payload(AlertsConfig(), fresh[0], "run-1")
    meta = measurement(fresh[0].metadata)
    assert meta["comparison"] == "at_most" and meta["threshold"] == hours and meta["measured"] > hours
    assert f"(threshold: at most {hours:g} hours since the last materialization)" in alert["text"]


def test_a_fresh_table_passes_dagsters_freshness_check(sample_run):
    result = sample_run[4]
    fresh = [e for e in _events(result, "ASSET_CHECK_EVALUATION") if e.check_name == "freshness_check"]
    assert len(fresh) == 8 and all(e.passed for e in fresh)
    assert all(0 <= measurement(e.metadata)["measured"] < 1 for e in fresh)


def test_the_engine_describes_several_tables_in_one_query(tmp_path: Path):
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "described.duckdb")))
    a, b, missing = TableRef("s", "a"), TableRef("s", "b"), TableRef("s", "nope")
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
        wh.run('CREATE TABLE "s"."a" (x INTEGER, y VARCHAR)')
        wh.run('CREATE TABLE "s"."b" (z TIMESTAMP)')
        before = sum(wh.counts.values())
        described = wh.describe_tables([a, b, missing])
        assert sum(wh.counts.values()) == before + 1
    assert described == {a: [("x", "INTEGER"), ("y", "VARCHAR")], b: [("z", "TIMESTAMP")], missing: None}


def test_duckdb_describes_a_built_table_and_measures_it_in_one_query(tmp_path: Path):
    """An in-step check's measures ride in the step's description of what it built: the same
    columns, in order, and the same measures as two separate round trips, in one; a table the run
    already described is not asked again, and a missing one reads None beside the measures."""
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "merged.duckdb")))
    a, missing = TableRef("s", "a"), TableRef("s", "nope")
    measures = 'SELECT (SELECT COUNT(*) FROM "s"."a") AS n, ? AS tag'
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
        wh.run('CREATE TABLE "s"."a" (z INTEGER, y VARCHAR, x TIMESTAMP)')
        wh.run("INSERT INTO \"s\".\"a\" VALUES (1, 'p', NULL), (2, 'q', NULL)")
        before = sum(wh.counts.values())
        described, measured = wh.describe_tables_and_fetch([a, missing], measures, ["t"])
        assert sum(wh.counts.values()) == before + 1
        separately = wh.describe_tables([a, missing])
        assert described == separately == {a: [("z", "INTEGER"), ("y", "VARCHAR"), ("x", "TIMESTAMP")], missing: None}
        assert measured.to_dict("records") == wh.fetch(measures, ["t"]).to_dict("records") == [{"n": 2, "tag": "t"}]
        none, only = wh.describe_tables_and_fetch([missing], measures, ["u"])
        assert none == {missing: None} and only.to_dict("records") == [{"n": 2, "tag": "u"}]


@pytest.mark.pipeline
def test_a_failed_coverage_check_still_blocks_the_master_tables(tmp_path):
    """coverage is one check of its enriched table's step: its blocking spec still stops the
    master tables downstream, and the table's other checks still report."""

    def strict(cfg: dict) -> None:
        cfg["checks"]["coverage_min_pct"] = 100

    loaded = load_config(write_project(tmp_path, records=60, mutate=strict))
    defs = build_definitions(loaded)
    result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(raise_on_error=False)
    checks = check_results(result)
    failed = [k for k, ok in checks.items() if not ok]
    assert not result.success and failed and all(k.endswith(":coverage") for k in failed)
    enriched_with_failure = {k.rsplit(":", 1)[0] for k in failed}
    assert all(f"{t}:has_canonical_id_columns" in checks for t in enriched_with_failure)
    built = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "unified_id_lookup" in built and "customer_master" not in built


def _loop_check(result):
    [evaluation] = [e for e in _events(result, "ASSET_CHECK_EVALUATION") if e.check_name == "loop_converged"]
    return evaluation.passed, {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def test_the_loop_check_reads_its_runs_last_round_from_the_graphs_build_and_an_earlier_runs_from_the_table(
    sample_run,
):
    """The run that built the graph: the check (and the report) read the last round from the graph's
    metadata and send no query; a run of the checks alone reads the loop statistics. Both give the
    table's last row."""
    _, loaded, defs, instance, result, log, _ = sample_run
    stats = u.build_id_plans(loaded)[0].ref("loop_stats")
    with warehouse_for(loaded).session() as wh:
        last = wh.fetch(latest_loop_sql(stats)).iloc[0]
    passed, built = _loop_check(result)
    assert passed == bool(last["converged"])
    assert measurement(built)["measured"] == int(last["edges_left"])
    assert (built["iterations"], built["rows_changed_last_iteration"]) == (last["iteration"], last["rows_changed"])
    assert not [sql for step, _, sql in FIRST_RUN_LOG if step.endswith("_graph__checks")]
    # The report reads the same round from the graph's build (its rows unchanged since): no query either.
    assert not [sql for step, _, sql in FIRST_RUN_LOG if step == "cdp_report" and "recorded_at" in sql]
    report = loaded.report_path.read_text()
    assert f"- loop iterations: {int(last['iteration'])} (converged)" in report
    asked = len(log)
    checks_alone = _only(defs, name="checks_alone").resolve_job_def("checks_alone")
    later = checks_alone.execute_in_process(instance=instance, raise_on_error=False)
    assert _loop_check(later) == (passed, built)
    assert [sql for step, _, sql in log[asked:] if step.endswith("_graph__checks") and stats.name in sql]
