"""Alerts reach a webhook on loopback: one per failed check, with the value and threshold."""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler

import pytest
from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context, build_sensor_context

from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import build_definitions
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project
from cdp_assets_tests.loopback import LoopbackServer


@pytest.fixture
def receiver(monkeypatch):
    received: list[dict] = []

    def handle(h: BaseHTTPRequestHandler) -> None:
        received.append(json.loads(h.rfile.read(int(h.headers["Content-Length"]))))
        h.send_response(200)
        h.end_headers()

    server = LoopbackServer(handle, methods=("POST",))
    monkeypatch.setenv("CDP_ALERT_WEBHOOK_URL", f"{server.start()}/hook")
    yield received
    server.stop()


def run_failure_alerts(defs, instance, result):
    sensor_def = defs.resolve_sensor_def("cdp_run_failure_alert")
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    ctx = build_run_status_sensor_context(
        sensor_name="cdp_run_failure_alert", dagster_event=failure, dagster_instance=instance, dagster_run=run
    ).for_run_failure()
    sensor_def(ctx)


@pytest.fixture
def local_instance(tmp_path):
    """The instance `dagster dev` uses on a fresh home: the repository's dagster.yaml, SQLite with
    one event database per run. (An ephemeral instance keeps events in one in-memory table, where
    the old sensor's cursor query worked; that is why its test passed while production failed.)"""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.is_run_sharded
        yield instance


@pytest.mark.pipeline
def test_each_failed_blocking_check_gives_exactly_one_alert_with_value_and_threshold(
    tmp_path, local_instance, receiver
):
    instance = local_instance

    def strict(cfg):
        cfg["checks"]["coverage_min_pct"] = 99.5

    loaded = load_config(write_project(tmp_path, mutate=strict))
    defs = build_definitions(loaded)
    sensor_def = defs.resolve_sensor_def("cdp_failed_check_alert")

    def tick(cursor):
        return sensor_def.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))

    first = tick(None)  # the first tick starts after the runs that ended before it
    result = run_pipeline(loaded, instance)
    assert not result.success
    failed = sorted(k for k, ok in check_results(result).items() if not ok)
    assert failed and all(k.endswith(":coverage") for k in failed)

    second = tick(first.cursor)
    run_failure_alerts(defs, instance, result)  # silent: the check alert covers this run
    assert len(receiver) == len(failed)
    for alert in receiver:
        assert alert["check"] == "coverage" and alert["threshold"] == 99.5 and alert["comparison"] == "at_least"
        assert alert["measured"] < 99.5 and alert["unit"] == "%"
        assert alert["run_url"].endswith(f"/runs/{result.run_id}")
        assert f"measured {alert['measured']:g}% (threshold: at least 99.5%)" in alert["text"]
    # the cursor moves past what was alerted: nothing is sent twice
    third = tick(second.cursor)
    assert len(receiver) == len(failed) and "0 failed check(s) in 0 ended run(s)" in third.skip_message


@pytest.mark.pipeline
def test_a_run_that_fails_for_another_reason_is_alerted_with_its_error(tmp_path, instance, receiver):
    loaded = load_config(write_project(tmp_path))
    # A column that vanishes after the config loaded (a config naming it is refused at load):
    # the run fails in a step, not in a check.
    object.__setattr__(
        loaded.unification.master_tables[0].attributes[0].source_columns[0], "order_by", "no_such_column"
    )
    result = run_pipeline(loaded, instance)
    assert not result.success
    run_failure_alerts(build_definitions(loaded), instance, result)
    assert len(receiver) == 1
    alert = receiver[0]
    # the unification's preflight names the column before the loop writes anything
    assert "unify_loop" in " ".join(alert["steps"]) and "no_such_column" in alert["error"]
    assert alert["run_url"].endswith(f"/runs/{result.run_id}")


@pytest.fixture
def slack_api():
    """A loopback stand-in for Slack's Web API: records chat.postMessage calls."""
    calls: list[dict] = []

    def handle(h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        calls.append({"path": h.path, "auth": h.headers.get("Authorization"), "body": json.loads(body or b"{}")})
        out = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    server = LoopbackServer(handle, methods=("POST",))
    yield f"{server.start()}/api/", calls
    server.stop()


def test_alerts_go_to_a_slack_channel_through_dagster_slack_without_logging_the_token(slack_api, monkeypatch, caplog):
    from cdp_assets.sensors.alerts import send_alert
    from cdp_assets.config.models import AlertsConfig

    url, calls = slack_api
    token = "xoxb-" + "7" * 40
    monkeypatch.delenv("CDP_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("CDP_SLACK_TOKEN", token)
    cfg = AlertsConfig(slack_channel="#cdp-alerts", slack_api_url=url)
    with caplog.at_level("DEBUG"):
        assert send_alert(cfg, {"text": "Check failed: acme_unified/customer_master / coverage"})
    assert len(calls) == 1 and calls[0]["path"] == "/api/chat.postMessage"
    assert calls[0]["auth"] == f"Bearer {token}"
    assert calls[0]["body"]["channel"] == "#cdp-alerts" and "coverage" in calls[0]["body"]["text"]
    assert token not in caplog.text
    # Without a channel, or without the token, nothing goes to Slack.
    monkeypatch.delenv("CDP_SLACK_TOKEN")
    assert not send_alert(cfg, {"text": "x"}) and len(calls) == 1


def test_an_unreachable_slack_is_retried_then_reported_by_variable_name(monkeypatch, caplog):
    from cdp_assets.sensors.alerts import send_alert
    from cdp_assets.config.models import AlertsConfig

    token = "xoxb-" + "8" * 40
    monkeypatch.setenv("CDP_SLACK_TOKEN", token)
    monkeypatch.delenv("CDP_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.setattr("cdp_assets.sensors.alerts.time.sleep", lambda s: None)
    cfg = AlertsConfig(slack_channel="#x", slack_api_url="http://127.0.0.1:9/api/")  # discard port: refused
    assert not send_alert(cfg, {"text": "x"}, attempts=2)
    assert caplog.text.count("CDP_SLACK_TOKEN: attempt") == 2 and token not in caplog.text
