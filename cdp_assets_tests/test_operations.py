"""Operations: file-drop sensors, schedules, and automation of everything downstream."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
)

from cdp_assets.config import ConfigError, load_config
from cdp_assets.config.loader import DEFAULT_CONFIG, REPO_ROOT
from cdp_assets.definitions import build_definitions
from cdp_assets.schedules import DOWNSTREAM_JOB, INGESTION_JOB
from cdp_assets_tests.conftest import write_project


def evaluate(defs, sensor_name, instance, cursor=None):
    sensor_def = defs.resolve_sensor_def(sensor_name)
    ctx = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor_def.evaluate_tick(ctx)


def test_file_drop_sensor_requests_each_new_file_once_including_late_ones(project, instance):
    defs = build_definitions(project)
    first = evaluate(defs, "shop_file_drop", instance)
    by_object = {r.tags["cdp/object"]: r for r in first.run_requests}
    assert set(by_object) == {"customers", "orders"}
    assert set(by_object["customers"].asset_selection) == {
        AssetKey(["acme_src", "shop_customers"]),
        AssetKey(["acme_src", "shop_customers_hist"]),
    }

    again = evaluate(defs, "shop_file_drop", instance, first.cursor)
    assert again.run_requests == [] and "no new files" in again.skip_message

    # A file that arrives late, with a modification time older than every file seen so far.
    folder = project.source_paths["shop"] / "customers"
    late = folder / "customers_late.csv"
    late.write_text((folder / "customers_2024-06-01.csv").read_text())
    old = time.time() - 10 * 86400
    os.utime(late, (old, old))
    third = evaluate(defs, "shop_file_drop", instance, again.cursor)
    assert [r.tags["cdp/object"] for r in third.run_requests] == ["customers"]
    assert third.run_requests[0].tags["cdp/new_files"] == "1"
    assert third.run_requests[0].run_key != by_object["customers"].run_key

    # A changed file is new again; an unchanged folder is not.
    with (folder / "customers_2024-06-02.csv").open("a") as fh:
        fh.write("C999999,x@example.com,,A,B,2024-09-01 00:00:00\n")
    fourth = evaluate(defs, "shop_file_drop", instance, third.cursor)
    assert [r.tags["cdp/object"] for r in fourth.run_requests] == ["customers"]
    assert evaluate(defs, "shop_file_drop", instance, fourth.cursor).run_requests == []


def test_schedules_default_to_two_and_four_and_are_configurable(tmp_path):
    defs = build_definitions(load_config(write_project(tmp_path / "a", records=50)))
    crons = {s.name: (s.cron_schedule, s.execution_timezone) for s in defs.schedules}
    assert crons == {"daily_ingestion": ("0 2 * * *", "UTC"), "daily_unification": ("0 4 * * *", "UTC")}

    def custom(cfg):
        cfg["schedules"] = {
            "ingestion_cron": "30 1 * * *",
            "unification_cron": "0 5 * * 1-5",
            "timezone": "Europe/Berlin",
        }

    defs = build_definitions(load_config(write_project(tmp_path / "b", records=50, mutate=custom)))
    crons = {s.name: (s.cron_schedule, s.execution_timezone) for s in defs.schedules}
    assert crons == {
        "daily_ingestion": ("30 1 * * *", "Europe/Berlin"),
        "daily_unification": ("0 5 * * 1-5", "Europe/Berlin"),
    }

    with pytest.raises(ConfigError, match=r"schedules.ingestion_cron: 'every day' is not a valid cron"):
        load_config(
            write_project(
                tmp_path / "c", records=10, mutate=lambda c: c.update(schedules={"ingestion_cron": "every day"})
            )
        )
    with pytest.raises(ConfigError, match=r"schedules.timezone: 'Mars/Base' is not a known time zone"):
        load_config(
            write_project(tmp_path / "d", records=10, mutate=lambda c: c.update(schedules={"timezone": "Mars/Base"}))
        )


def _materialized_by_run(instance) -> dict[str, set[AssetKey]]:
    return {
        run.run_id: {
            r.event_log_entry.dagster_event.asset_key
            for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        }
        for run in instance.get_runs()
    }


@pytest.mark.pipeline
def test_a_day_with_new_data_gives_one_unification_run(project, tmp_path):
    """Day 1: the 02:00 ingestion, automation refreshing everything downstream, then the 04:00
    schedule, which finds the unification up to date and starts nothing. Day 2, automation off:
    the 04:00 schedule finds the new load and starts the one downstream refresh of the day.
    (cdp_assets/schedules.py says who owns what.)"""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    defs = build_definitions(project)
    groups = {key: a.group_names_by_key[key] for a in defs.assets for key in a.keys}
    # The unification proper: the multi-asset that runs the loop and builds the lookup (the
    # master tables after it are built from its result, in a wave of their own).
    unification = set(
        next(a for a in defs.assets if AssetKey(["cdp_unification_customer_360", "unified_id_lookup"]) in a.keys).keys
    )
    with DagsterInstance.from_config(str(home)) as instance:
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor

        def tick(schedule_name, day, hour):
            when = datetime(2024, 6, day, hour, tzinfo=timezone.utc)
            return defs.resolve_schedule_def(schedule_name).evaluate_tick(
                build_schedule_context(instance=instance, scheduled_execution_time=when)
            )

        def run(request, job_name):
            assert request.job_name in (None, job_name)
            result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=request.tags)
            assert result.success
            return result.run_id

        def automation_waves():
            nonlocal cursor
            waves, global_job = [], defs.resolve_implicit_global_asset_job_def()
            for _ in range(8):
                result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
                cursor = result.cursor
                requested = {r.key for r in result.results if r.true_subset.size > 0}
                if not requested:
                    return waves
                waves.append(requested)
                assert global_job.execute_in_process(instance=instance, asset_selection=list(requested)).success
            raise AssertionError(f"automation still requesting after 8 waves: {waves}")

        def unification_runs() -> list[str]:
            return [run_id for run_id, keys in _materialized_by_run(instance).items() if keys & unification]

        # Day 1, 02:00: the ingestion schedule's run; automation refreshes everything downstream.
        (request,) = tick("daily_ingestion", 1, 2).run_requests
        run(request, INGESTION_JOB)
        refreshed = set().union(*automation_waves())
        assert {"hist_union", "staging", "unification", "report"} <= {groups[k] for k in refreshed}
        assert len(unification_runs()) == 1
        # 04:00: the unification schedule finds it up to date and starts nothing.
        skipped = tick("daily_unification", 1, 4)
        assert skipped.run_requests == [] and "up to date" in skipped.skip_message
        assert automation_waves() == [] and len(unification_runs()) == 1

        # Day 2, automation off: a load at 02:00, and the 04:00 schedule's run is the one refresh.
        (request,) = tick("daily_ingestion", 2, 2).run_requests
        run(request, INGESTION_JOB)
        (request,) = tick("daily_unification", 2, 4).run_requests
        assert "older than the latest load" in request.tags["cdp/reason"]
        scheduled = run(request, DOWNSTREAM_JOB)
        assert scheduled in unification_runs() and len(unification_runs()) == 2
        assert tick("daily_unification", 3, 4).run_requests == []  # day 3, no new load: nothing
        for key in (["cdp_unification_customer_360", "customer_master"], ["cdp_report"]):
            assert instance.get_latest_materialization_event(AssetKey(key)).run_id == scheduled


def test_the_bundled_sample_starts_no_run_on_its_own_and_a_deployment_can(tmp_path):
    """`dagster dev` on a fresh home with the bundled example starts nothing by itself: every
    sensor that starts runs, the automation and the schedules default to stopped; the alert
    sensors, which start no run, default to running. A config without the setting runs them."""
    alerts = {"cdp_failed_check_alert", "cdp_run_failure_alert"}
    sample = build_definitions(load_config(DEFAULT_CONFIG))
    starters = [s for s in sample.sensors if s.name not in alerts]
    assert {s.name for s in starters} >= {"shop_file_drop", "loyalty_file_drop", "web_file_drop", "cdp_automation"}
    assert {s.name: s.default_status for s in starters} == {s.name: DefaultSensorStatus.STOPPED for s in starters}
    assert {s.name: s.default_status for s in sample.schedules} == {
        s.name: DefaultScheduleStatus.STOPPED for s in sample.schedules
    }
    assert {s.name: s.default_status for s in sample.sensors if s.name in alerts} == dict.fromkeys(
        alerts, DefaultSensorStatus.RUNNING
    )

    def deployment(cfg):
        cfg.pop("sensors", None)
        cfg.pop("schedules", None)

    deployed = build_definitions(load_config(write_project(tmp_path, records=20, mutate=deployment)))
    assert {s.default_status for s in deployed.sensors} == {DefaultSensorStatus.RUNNING}
    assert {s.default_status for s in deployed.schedules} == {DefaultScheduleStatus.RUNNING}


@pytest.mark.pipeline
def test_late_completed_replaced_and_re_added_files_through_the_sensor_and_real_runs(tmp_path):
    """Issue 15, the way users meet it: files land in the folder, the file-drop sensor ticks, its
    run requests are executed in-process, and the table, ingestion_log and checks are read."""
    from cdp_assets.connectors.loading import LOG_TABLE
    from cdp_assets_tests.conftest import check_results, warehouse_for

    project = load_config(write_project(tmp_path, records=60))
    defs, instance = build_definitions(project), DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    wh = warehouse_for(project)
    folder = project.source_paths["shop"] / "customers"
    header = "customer_id,email,phone,first_name,last_name,updated_at\n"
    state = {"cursor": None}

    def tick_and_run() -> dict[str, bool]:
        tick = evaluate(defs, "shop_file_drop", instance, state["cursor"])
        state["cursor"] = tick.cursor
        checks: dict[str, bool] = {}
        state["evaluations"] = {}
        for request in tick.run_requests:
            result = job.execute_in_process(
                instance=instance, asset_selection=request.asset_selection, tags=request.tags
            )
            assert result.success
            checks.update(check_results(result))
            for e in result.all_events:
                if e.event_type_value == "ASSET_CHECK_EVALUATION":
                    c = e.event_specific_data
                    state["evaluations"][f"{c.asset_key.to_user_string()}:{c.check_name}"] = c
        return checks

    def ids() -> list[str]:
        return sorted(wh.fetch('SELECT customer_id FROM "acme_src"."shop_customers"')["customer_id"])

    def last_log() -> dict:
        log = wh.fetch(
            f'SELECT * FROM "acme_src"."{LOG_TABLE}" WHERE object = '
            '\'customers\' AND mode = \'incremental\' ORDER BY loaded_at'
        )
        return log.iloc[-1].to_dict()

    checks = tick_and_run()
    assert checks["acme_src/shop_customers:no_skipped_rows"] and checks["acme_src/shop_customers:no_rejected_rows"]
    before = ids()

    # 1. A late file: rows older than the watermark (2024-06-02), one older than start_date (2023-01-01).
    late = folder / "customers_late.csv"
    late.write_text(
        header
        + (
            "L1,l1@x.com,,A,B,2024-05-01 00:00:00\n"
            "L2,l2@x.com,,C,D,2024-05-02 00:00:00\n"
            "L0,l0@x.com,,E,F,2022-12-31 00:00:00\n"
        )
    )
    old = time.time() - 10 * 86400
    os.utime(late, (old, old))
    checks = tick_and_run()
    assert ids() == sorted([*before, "L1", "L2"])
    assert (last_log()["records_loaded"], last_log()["records_skipped_before_start_date"]) == (2, 1)
    assert checks["acme_src/shop_customers:no_skipped_rows"] is False  # a warning with the count
    skipped = state["evaluations"]["acme_src/shop_customers:no_skipped_rows"]
    assert skipped.severity.value == "WARN" and skipped.metadata["skipped_before_start_date"].value == 1

    # 2. A file caught half-written (its last row cut), then completed by its writer.
    growing = folder / "customers_2024-06-03.csv"
    full = header + "N1,n1@x.com,,G,H,2024-06-03 01:00:00\nN2,n2@x.com,,I,J,2024-06-03 02:00:00\n"
    growing.write_text(full[: full.index("n2@x")])
    checks = tick_and_run()
    assert "N1" in ids() and "N2" not in ids()
    assert checks["acme_src/shop_customers:no_rejected_rows"] is False
    growing.write_text(full)
    checks = tick_and_run()
    assert ids().count("N1") == 1 and "N2" in ids()
    assert (last_log()["records_loaded"], last_log()["records_skipped_duplicate"]) == (1, 1)
    assert checks["acme_src/shop_customers:no_rejected_rows"] is True  # the stale rejection is superseded
    assert checks["acme_src/shop_customers:no_skipped_rows"] is False

    # 3. The late file replaced with different content: only the changed row is new.
    late.write_text(late.read_text().replace("l2@x.com", "l2-new@x.com"))
    tick_and_run()
    assert last_log()["records_loaded"] == 1
    emails = wh.fetch('SELECT email FROM "acme_src"."shop_customers" WHERE customer_id = \'L2\'')["email"]
    assert sorted(emails) == ["l2-new@x.com", "l2@x.com"]

    # 4. Deleted, then re-added with the same content: the sensor sees a new file, nothing loads twice.
    content = late.read_text()
    late.unlink()
    assert evaluate(defs, "shop_file_drop", instance, state["cursor"]).run_requests == []
    late.write_text(content)
    rows_before = len(ids())
    tick_and_run()
    assert len(ids()) == rows_before
    assert last_log()["records_loaded"] == 0 and "unchanged since they were loaded" in last_log()["message"]
