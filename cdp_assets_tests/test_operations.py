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
        cfg["schedules"] = {"ingestion_cron": "30 1 * * *", "unification_cron": "0 5 * * 1-5", "timezone": "Europe/Berlin"}

    defs = build_definitions(load_config(write_project(tmp_path / "b", records=50, mutate=custom)))
    crons = {s.name: (s.cron_schedule, s.execution_timezone) for s in defs.schedules}
    assert crons == {"daily_ingestion": ("30 1 * * *", "Europe/Berlin"), "daily_unification": ("0 5 * * 1-5", "Europe/Berlin")}

    with pytest.raises(ConfigError, match=r"schedules.ingestion_cron: 'every day' is not a valid cron"):
        load_config(write_project(tmp_path / "c", records=10, mutate=lambda c: c.update(schedules={"ingestion_cron": "every day"})))
    with pytest.raises(ConfigError, match=r"schedules.timezone: 'Mars/Base' is not a known time zone"):
        load_config(write_project(tmp_path / "d", records=10, mutate=lambda c: c.update(schedules={"timezone": "Mars/Base"})))


def _materialized_by_run(instance) -> dict[str, set[AssetKey]]:
    return {
        run.run_id: {r.event_log_entry.dagster_event.asset_key for r in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records}
        for run in instance.get_runs()
    }


def test_a_day_with_new_data_gives_one_unification_run(project, tmp_path):
    """02:00 ingestion, automation through the morning, the 04:00 schedule: unification runs once.

    Hist-union and staging follow new data by automation; unification and the report belong to
    the daily_unification schedule alone (cdp_assets/schedules.py says why)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    defs = build_definitions(project)
    groups = {key: a.group_names_by_key[key] for a in defs.assets for key in a.keys}
    unification = {k for k, g in groups.items() if g == "unification"}
    day = datetime(2024, 6, 3, tzinfo=timezone.utc)
    with DagsterInstance.from_config(str(home)) as instance:
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor

        def run_request(schedule_name, hour):
            ctx = build_schedule_context(instance=instance, scheduled_execution_time=day.replace(hour=hour))
            requests = defs.resolve_schedule_def(schedule_name).evaluate_tick(ctx).run_requests
            assert len(requests) == 1
            return requests[0]

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

        # 02:00: the ingestion schedule's run, then what automation starts from it.
        request = run_request("daily_ingestion", 2)
        assert defs.resolve_job_def(request.job_name or INGESTION_JOB).execute_in_process(instance=instance, tags=request.tags).success
        morning = automation_waves()
        refreshed = set().union(*morning)
        assert {groups[k] for k in refreshed} == {"hist_union", "staging"}, refreshed
        assert not refreshed & unification

        # 04:00: the unification schedule's run; automation has nothing more to do after it.
        request = run_request("daily_unification", 4)
        assert request.job_name in (None, DOWNSTREAM_JOB)
        result = defs.resolve_job_def(DOWNSTREAM_JOB).execute_in_process(instance=instance, tags=request.tags)
        assert result.success
        assert automation_waves() == []

        runs_with_unification = [run for run, keys in _materialized_by_run(instance).items() if keys & unification]
        assert runs_with_unification == [result.run_id]
        for key in (["cdp_unification_customer_360", "customer_master"], ["cdp_report"]):
            assert instance.get_latest_materialization_event(AssetKey(key)).run_id == result.run_id


def test_the_bundled_sample_starts_no_run_on_its_own_and_a_deployment_can(tmp_path):
    """`dagster dev` on a fresh home with the bundled example starts nothing by itself: every
    sensor that starts runs, the automation and the schedules default to stopped; the alert
    sensors, which start no run, default to running. A config without the setting runs them."""
    alerts = {"cdp_failed_check_alert", "cdp_run_failure_alert"}
    sample = build_definitions(load_config(DEFAULT_CONFIG))
    starters = [s for s in sample.sensors if s.name not in alerts]
    assert {s.name for s in starters} >= {"shop_file_drop", "loyalty_file_drop", "web_file_drop", "cdp_automation"}
    assert {s.name: s.default_status for s in starters} == {s.name: DefaultSensorStatus.STOPPED for s in starters}
    assert {s.name: s.default_status for s in sample.schedules} == {s.name: DefaultScheduleStatus.STOPPED for s in sample.schedules}
    assert {s.name: s.default_status for s in sample.sensors if s.name in alerts} == dict.fromkeys(alerts, DefaultSensorStatus.RUNNING)

    def deployment(cfg):
        cfg.pop("sensors", None)
        cfg.pop("schedules", None)

    deployed = build_definitions(load_config(write_project(tmp_path, records=20, mutate=deployment)))
    assert {s.default_status for s in deployed.sensors} == {DefaultSensorStatus.RUNNING}
    assert {s.default_status for s in deployed.schedules} == {DefaultScheduleStatus.RUNNING}
