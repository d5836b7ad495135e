"""The whole graph, in process, on a real DuckDB file: runs, reruns, new data, failures."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.config import ConfigError, load_config
from cdp_assets.connectors.loading import LOG_TABLE
from cdp_assets.definitions import build_definitions
from cdp_assets.checks.monitoring import LARGEST_ROWS, WITH_ID_ROWS
from cdp_assets.sql import unification as u
from cdp_assets.sql.checks import largest_component_sql
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.report import COMPONENT_SIZES, component_sizes_sql
from cdp_assets.sql.unification_pipeline import enriched_ref
from cdp_assets.sql.incremental import BOOKKEEPING_SUFFIXES
from cdp_assets_tests.conftest import check_results, run_pipeline, warehouse_for, write_project

SCHEMAS = ("acme_src", "acme_stg", "cdp_unification_customer_360")
# Tables that grow by design on every run (one row per load / per loop iteration).
HISTORY_TABLES = {LOG_TABLE, "unified_id_loop_stats"}


def snapshot(loaded) -> dict[str, pd.DataFrame]:
    """Every table's rows, sorted, without load timestamps (they differ between runs)."""
    wh = warehouse_for(loaded)
    out = {}
    with wh.session():
        for schema in SCHEMAS:
            for name in wh.list_tables(schema):
                if name in HISTORY_TABLES or name.endswith(BOOKKEEPING_SUFFIXES):  # watermarks: when, not what
                    continue
                df = wh.fetch(f"SELECT * FROM {TableRef(schema, name).sql}")
                df = df.drop(columns=[c for c in df.columns if c == "_cdp_loaded_at"])
                df = df.astype(str).sort_values(list(df.columns)).reset_index(drop=True)
                out[f"{schema}.{name}"] = df
    return out


def test_full_pipeline_materializes_every_asset_and_passes_every_check(sample_run):
    project, result = sample_run.loaded, sample_run.result
    assert result.success
    defs = build_definitions(project)
    expected_assets = {k.to_user_string() for a in defs.assets for k in a.keys}
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == expected_assets
    checks = check_results(result)
    # the checks on the assets (evaluated in their steps) and those with steps of their own
    checked = [*defs.assets, *defs.asset_checks]
    expected_checks = {f"{c.asset_key.to_user_string()}:{c.name}" for a in checked for c in a.check_specs}
    assert set(checks) == expected_checks
    assert all(checks.values()), [k for k, v in checks.items() if not v]

    report = project.report_path.read_text()
    assert "canonical ids: **" in report and "coverage (rows with an id / rows)" in report
    assert "loop iterations:" in report and "converged" in report
    chart = project.report_path.with_name("report_unified_id.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({chart.name})" in report
    # in the UI the chart is embedded: the Markdown metadata cannot resolve a file name
    shown = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "cdp_report")
    md = shown.event_specific_data.materialization.metadata["report"].value
    assert "](data:image/png;base64,iVBORw0KGgo" in md and f"]({chart.name})" not in md

    wh = warehouse_for(project)
    with wh.session():
        lookup = wh.fetch('SELECT * FROM "cdp_unification_customer_360"."unified_id_lookup"')
        for col in ("unified_id", "id", "id_key_type", "id_first_seen_at", "id_last_seen_at", "id_source_table_ids"):
            assert col in lookup.columns
        master = wh.fetch('SELECT * FROM "cdp_unification_customer_360"."customer_master"')
        assert master["unified_id"].is_unique
        assert set(master["unified_id"]) == set(lookup["unified_id"])
        assert all(len(v) <= 5 for v in master["all_emails"].dropna())
        # No half-built table is left anywhere.
        for schema in SCHEMAS:
            assert not [t for t in wh.list_tables(schema) if "__cdp_new_" in t]


def test_loop_iterations_are_visible_as_observations_and_metadata(sample_run):
    result = sample_run.result
    assert result.success
    observations = [
        e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    iterations = [o.metadata["iteration"].value for o in observations if o.asset_key.path[-1] == "unified_id_graph"]
    assert iterations == list(range(1, len(iterations) + 1)) and iterations
    graph_mat = next(
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "unified_id_graph"
    )
    assert graph_mat.metadata["iterations"].value == len(iterations)
    assert graph_mat.metadata["converged"].value is True
    assert len(graph_mat.metadata["rows_changed_per_iteration"].value) == len(iterations)


@pytest.mark.pipeline
def test_rerun_changes_nothing_and_keeps_the_watermark(project, instance):
    assert run_pipeline(project, instance).success
    first = snapshot(project)
    second_run = run_pipeline(project, instance)
    assert second_run.success
    assert all(check_results(second_run).values())
    second = snapshot(project)
    assert first.keys() == second.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], obj=name)

    wh = warehouse_for(project)
    log = wh.fetch(f'SELECT * FROM "acme_src"."{LOG_TABLE}" ORDER BY loaded_at')
    inc = log[log["mode"] == "incremental"]
    for (_, _), rows in inc.groupby(["source", "object"]):
        assert list(rows["records_loaded"])[-1] == 0  # the rerun loaded nothing new
        marks = list(rows["watermark"])
        assert marks == sorted(marks) and marks[-1] == marks[0]


@pytest.mark.pipeline
def test_a_new_file_loads_only_its_newer_rows(project, instance):
    assert run_pipeline(project, instance).success
    folder = project.source_paths["shop"] / "customers"
    old = pd.read_csv(folder / "customers_2024-06-02.csv", dtype=str, keep_default_na=False)
    newer = old.head(3).copy()
    newer["updated_at"] = "2024-07-01 09:00:00"
    newer["customer_id"] = ["C900001", "C900002", "C900003"]
    stale = old.head(2)  # rows already loaded (exact copies): skipped and counted, not loaded again
    pd.concat([newer, stale]).to_csv(folder / "customers_2024-07-01.csv", index=False)

    result = run_pipeline(project, instance)
    assert result.success
    wh = warehouse_for(project)
    log = wh.fetch(f'SELECT * FROM "acme_src"."{LOG_TABLE}" ORDER BY loaded_at')
    last = log[(log["object"] == "customers") & (log["mode"] == "incremental")].iloc[-1]
    assert last["records_loaded"] == 3 and last["records_skipped_duplicate"] == 2
    assert last["files"] == "customers_2024-07-01.csv"
    assert last["watermark"].startswith("2024-07-01 09:00:00")
    ids = wh.fetch('SELECT customer_id FROM "acme_stg"."shop_customers_stg"')["customer_id"]
    assert {"C900001", "C900002", "C900003"} <= set(ids)


@pytest.mark.pipeline
def test_a_nightly_run_builds_hist_union_and_staging_incrementally_and_equals_a_full_refresh(tmp_path, instance):
    """The incremental phases' tables equal a full refresh's (``--full-refresh``). The enriched
    and master tables equal their full builds over the lookup the nightly run published: on
    updated rows the incremental loop keeps ids a full refresh renumbers (docs/unification.md)."""
    from cdp_assets_tests.unify.test_incremental_unification import assert_equal_to_full_builds

    from cdp_assets.assets.run_config import full_refresh_run_config
    from cdp_assets.definitions import PIPELINE_JOB

    project = load_config(write_project(tmp_path, records=120))
    assert run_pipeline(project, instance).success
    folder = project.source_paths["shop"] / "customers"
    old = pd.read_csv(folder / "customers_2024-06-02.csv", dtype=str, keep_default_na=False)
    nightly = old.head(4).copy()
    nightly["updated_at"] = "2024-07-01 09:00:00"
    nightly["email"] = ["changed1@example.com", "changed2@example.com", "", "changed4@example.com"]
    nightly.loc[nightly.index[:2], "customer_id"] = ["C900001", "C900002"]  # two new, two updated customers
    nightly.to_csv(folder / "customers_2024-07-01.csv", index=False)
    # web_events is staged with a dedupe (keep the oldest per cookie, cleaned email, type and
    # sent time): a re-sent copy of an event under a new id (a loser), an event updated by id
    # into another partition (its partition falls back to another row or vanishes), a new event.
    events = project.source_paths["web"] / "events"
    sent = pd.read_json(events / "events_2024-06-02.jsonl", lines=True, dtype=False, convert_dates=False)
    resent, moved, new = (sent.iloc[[i]].copy() for i in range(3))
    resent["event_id"], resent["email"], resent["updated_at"] = (
        "E900001",
        resent["email"].str.upper(),
        "2024-07-01 09:00:00",
    )
    moved["event_type"], moved["updated_at"] = "purchase", "2024-07-01 09:00:00"
    new["event_id"], new["cookie_id"], new["updated_at"] = "E900002", "ck_new", "2024-07-01 09:00:00"
    pd.concat([resent, moved, new]).to_json(events / "events_2024-07-01.jsonl", orient="records", lines=True)

    result = run_pipeline(project, instance)
    assert result.success
    modes = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata["build_mode"].value
        for e in result.get_asset_materialization_events()
        if "build_mode" in e.event_specific_data.materialization.metadata
    }
    assert modes["shop_customers_hist_union"] == "incremental" and modes["shop_customers_stg"] == "incremental"
    assert modes["shop_orders_hist_union"] == "unchanged" and modes["shop_orders_stg"] == "unchanged"
    # The enrichment replaced the changed customers' rows. web_events is staged with a dedupe,
    # incrementally: its new rows staged, their partitions ranked again. A partition's winner may
    # change to a row loaded before the watermark: the staged table logs the keys it replaced or
    # removed, so its enrichment replaces those keys' rows too, and the master recomputes only the
    # ids touched.
    assert modes["enriched_shop_customers_stg"] == "incremental"
    assert modes["enriched_shop_orders_stg"] in ("incremental", "unchanged")
    assert modes["web_events_hist_union"] == "incremental" and modes["web_events_stg"] == "incremental"
    assert modes["enriched_web_events_stg"] == "incremental"
    assert modes["customer_master"] == "incremental"
    wh = warehouse_for(project)
    with wh.session():
        assert_equal_to_full_builds(wh, project)
        assert_profiles_equal_their_group_by(wh, project, result)
    nightly_tables = snapshot(project)

    job = build_definitions(project).resolve_job_def(PIPELINE_JOB)
    full = job.execute_in_process(instance=instance, run_config=full_refresh_run_config(job), raise_on_error=False)
    assert full.success
    full_modes = {
        e.event_specific_data.materialization.metadata["build_mode"].value
        for e in full.get_asset_materialization_events()
        if "build_mode" in e.event_specific_data.materialization.metadata
    }
    assert full_modes == {"full"}
    full_tables = snapshot(project)
    assert nightly_tables.keys() == full_tables.keys()
    for name in [n for n in nightly_tables if n.startswith(("acme_src.", "acme_stg."))]:
        pd.testing.assert_frame_equal(nightly_tables[name], full_tables[name], obj=name)
    # The checks' measures the nightly run kept with the states and updated by the change equal
    # the full refresh's full measurement of the same tables (docs/checks.md).
    nightly_checks, full_checks = checks_metadata(result), checks_metadata(full)
    assert nightly_checks["shop_customers_stg:unparseable_share"]["measured_by"] == "change"
    assert nightly_checks["web_events_stg:unparseable_share"]["measured_by"] == "change"  # deduped
    assert nightly_checks["shop_orders_stg:unparseable_share"]["measured_by"] == "kept"  # unchanged
    assert nightly_checks["shop_customers_hist_union:unique_primary_key"]["measured_by"] == "change"
    assert {m["measured_by"] for k, m in full_checks.items() if "measured_by" in m} == {"full scan"}
    for key, meta in full_checks.items():
        if "measured_by" in meta:
            same = ("measured", "distinct_input_rows", "unparseable_pct")
            assert {k: nightly_checks[key].get(k) for k in same} == {k: meta.get(k) for k in same}, key
    assert rule_counts_of(result) == rule_counts_of(full)


def assert_profiles_equal_their_group_by(wh, project, result) -> None:
    """What the run's coverage query measured for the largest-share check and the report's
    profile (the result statistics' metadata; on DuckDB read from the kept per-id counts, which a
    nightly run recounts for the ids it touched) equals the queries grouping every enriched and
    lookup row."""
    by_name = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    plans = [p for p in u.build_id_plans(project) if p.tables]
    assert plans
    for plan in plans:
        meta = by_name[plan.ref("result_key_stats").name]
        enriched = [enriched_ref(plan.schema, t.alias) for t in plan.tables]
        row = wh.fetch(largest_component_sql(plan.name, enriched)).iloc[0]
        assert (meta[LARGEST_ROWS].value, meta[WITH_ID_ROWS].value) == (int(row["largest"]), int(row["total"]))
        sizes = wh.fetch(component_sizes_sql(plan.ref("lookup"), plan.name))
        grouped = [{k: v if k == "bucket" else int(v) for k, v in r.items()} for r in sizes.to_dict("records")]
        assert meta[COMPONENT_SIZES].value == grouped and grouped


def checks_metadata(result) -> dict[str, dict]:
    """Each check evaluation's metadata values, by ``<table>:<check>``."""
    return {
        f"{e.asset_key.path[-1]}:{e.check_name}": {k: v.value for k, v in e.metadata.items()}
        for e in result.get_asset_check_evaluations()
    }


def rule_counts_of(result) -> dict[str, dict]:
    return {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata["rule_counts"].value
        for e in result.get_asset_materialization_events()
        if "rule_counts" in e.event_specific_data.materialization.metadata
    }


@pytest.mark.pipeline
def test_a_run_failing_midway_leaves_the_previous_tables_intact(tmp_path, instance):
    config = write_project(tmp_path)
    loaded = load_config(config)
    assert run_pipeline(loaded, instance).success
    before = snapshot(loaded)

    # New data arrives, and the master table's config now names a column that does not exist:
    # ingestion and staging succeed, the unification step fails before it writes anything.
    shutil.copy(
        loaded.source_paths["shop"] / "customers" / "customers_2024-06-02.csv",
        loaded.source_paths["shop"] / "customers" / "customers_late.csv",
    )

    def break_master(cfg: dict) -> None:
        cfg["unification"]["master_tables"][0]["attributes"][0]["source_columns"][0]["order_by"] = "no_such_column"

    # The loader refuses such a config (the staged table's columns are known at load) ...
    with pytest.raises(ConfigError, match="order_by: column 'no_such_column'"):
        load_config(write_project(tmp_path, mutate=break_master, generate=False))
    # ... so, to fail in the middle of a run, the same change is made past the loader.
    raw = loaded.unification.model_dump(by_alias=True)
    raw["master_tables"][0]["attributes"][0]["source_columns"][0]["order_by"] = "no_such_column"
    broken = loaded.model_copy(update={"unification": UnifyConfig.model_validate(raw)})
    result = run_pipeline(broken, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "order_by: column 'no_such_column'" in message and "Nothing was written" in message, message

    after = snapshot(loaded)
    master = "cdp_unification_customer_360.customer_master"
    pd.testing.assert_frame_equal(before[master], after[master])
    wh = warehouse_for(loaded)
    with wh.session():
        for schema in SCHEMAS:
            assert not [t for t in wh.list_tables(schema) if "__cdp_new_" in t]
    # The report was not rebuilt on a failed run.
    report_mat = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "cdp_report"]
    assert report_mat == []
