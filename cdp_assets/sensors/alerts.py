"""Alerts: a failed run or a failed asset check is logged, and POSTed to a webhook and to a
Slack channel (dagster-slack) when they are configured.

A failed blocking check also fails its run; that run is reported by the check alert, with the
measured value and the threshold, and the run-failure alert stays silent, so one failure gives
exactly one alert.

How the check alert finds failed checks, and why it changed: it used to read every
``ASSET_CHECK_EVALUATION`` event after a storage-id cursor with ``instance.get_event_records``.
On Dagster's default local storage (SQLite, one event database per run) that call raises as soon
as the cursor is set, so in `dagster dev` every tick after the first failed and nobody was
alerted. Its test passed because it evaluated the sensor once, without a cursor, on an
ephemeral in-memory instance, whose event storage is not sharded by run. The sensor now follows
the runs that ended (``fetch_run_status_changes``: Dagster mirrors run status changes into the
cross-run index, on SQLite as on PostgreSQL, and their storage ids are a valid cursor on both)
and reads each ended run's check evaluations from that run's own log (``get_records_for_run``).
So a failed check is alerted when its run ends, once; ``test_alert_daemon.py`` proves it with
the real daemon ticking on a default SQLite home and on PostgreSQL.
"""

import json
import logging
import os
import time
import urllib.error
import urllib.request

from dagster import (
    AssetCheckEvaluation,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster_slack import SlackResource
from slack_sdk.errors import SlackClientError

from cdp_assets.checks import measurement, measurement_text
from cdp_assets.config.models import AlertsConfig, LoadedConfig

log = logging.getLogger(__name__)
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"
# A run's check evaluations are final once the run has ended in one of these ways.
RUN_END_EVENTS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 100  # per kind of run end; the rest waits for the next tick


def send_alert(cfg: AlertsConfig, payload: dict, attempts: int = 3) -> bool:
    """Log the alert; send it to the webhook and to Slack where configured. Returns whether it
    was delivered to at least one of them."""
    log.warning("CDP alert: %s", payload["text"])
    delivered = False
    if os.environ.get(cfg.webhook_url_env):
        delivered |= _deliver(
            lambda: _post_webhook(os.environ[cfg.webhook_url_env], payload), cfg.webhook_url_env, attempts
        )
    if cfg.slack_channel and os.environ.get(cfg.slack_token_env):
        delivered |= _deliver(
            lambda: _post_slack(cfg, os.environ[cfg.slack_token_env], payload), cfg.slack_token_env, attempts
        )
    return delivered


def _deliver(post, secret_env: str, attempts: int) -> bool:
    for attempt in range(1, attempts + 1):
        try:
            post()
            return True
        except (urllib.error.URLError, TimeoutError, SlackClientError, OSError) as exc:
            # The URL and the token are secrets: name their variable, never their value.
            log.warning("alert via %s: attempt %d of %d failed: %s", secret_env, attempt, attempts, type(exc).__name__)
        time.sleep(0.5 * 2 ** (attempt - 1))
    return False


def _post_webhook(url: str, payload: dict) -> None:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if not 200 <= resp.status < 300:
            raise urllib.error.URLError(f"HTTP {resp.status}")


def _post_slack(cfg: AlertsConfig, token: str, payload: dict) -> None:
    client = SlackResource(token=token).get_client()
    client.base_url = cfg.slack_api_url
    client.timeout = 10
    client.chat_postMessage(channel=cfg.slack_channel, text=payload["text"])


def root_message(error) -> str:
    """The first line of the innermost cause (the engine's message, not Dagster's wrapper)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (error.message or "").strip().splitlines()
    return lines[0] if lines else error.cls_name


def check_alert_payload(cfg: AlertsConfig, evaluation: AssetCheckEvaluation, run_id: str) -> dict:
    """The alert of one failed check: what it measured and against what (the checks' metadata
    convention, ``cdp_assets.checks.check_result``), and a link to the run."""
    asset = evaluation.asset_key.to_user_string()
    link = f"{cfg.ui_base_url.rstrip('/')}/runs/{run_id}"
    metadata = evaluation.metadata or {}
    text = (
        f"Check failed ({evaluation.severity.value}): {asset} / {evaluation.check_name}: "
        f"{measurement_text(metadata, evaluation.description)}; run {link}"
    )
    return {
        "text": text,
        "asset": asset,
        "check": evaluation.check_name,
        "severity": evaluation.severity.value,
        **measurement(metadata),
        "run_id": run_id,
        "run_url": link,
    }


def _read_cursor(raw: str | None) -> dict[str, int] | None:
    """event type -> last storage id handled; None for no cursor or one of the old format (a bare
    storage id of the check events, which the old sensor kept)."""
    try:
        cursor = json.loads(raw) if raw else None
    except ValueError:
        return None
    return cursor if isinstance(cursor, dict) else None


def build_check_failure_sensor(loaded: LoadedConfig):
    cfg = loaded.pipeline.alerts

    @sensor(
        name="cdp_failed_check_alert",
        description=(
            "Alerts on every failed asset check, blocking or not, when its run ends (a cursor over ended runs)."
        ),
        minimum_interval_seconds=cfg.minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def failed_check_alert(context: SensorEvaluationContext):
        instance = context.instance
        cursor = _read_cursor(context.cursor)
        if cursor is None:
            # As Dagster's run-status sensors do: start after the latest run end, so turning the
            # sensor on does not replay the history.
            cursor = {}
            for event_type in RUN_END_EVENTS:
                latest = instance.fetch_run_status_changes(event_type, limit=1).records
                cursor[event_type.value] = latest[0].storage_id if latest else -1
            return SensorResult(
                skip_reason=SkipReason("started: alerting checks of runs that end from now on"),
                cursor=json.dumps(cursor, sort_keys=True),
            )
        sent, runs = 0, 0
        for event_type in RUN_END_EVENTS:
            after = cursor.get(event_type.value, -1)
            ended = instance.fetch_run_status_changes(
                RunStatusChangeRecordsFilter(event_type, after_storage_id=after), limit=RUNS_PER_TICK, ascending=True
            ).records
            for record in ended:
                run_id = record.event_log_entry.run_id
                evaluations = instance.get_records_for_run(
                    run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
                ).records
                for ev in evaluations:
                    evaluation = ev.event_log_entry.dagster_event.event_specific_data
                    if not evaluation.passed:
                        send_alert(cfg, check_alert_payload(cfg, evaluation, run_id))
                        sent += 1
                runs += 1
                cursor[event_type.value] = record.storage_id
        skip = None if sent else SkipReason(f"0 failed check(s) in {runs} ended run(s)")
        return SensorResult(skip_reason=skip, cursor=json.dumps(cursor, sort_keys=True))

    return failed_check_alert


def build_run_failure_sensor(loaded: LoadedConfig):
    cfg = loaded.pipeline.alerts

    @run_failure_sensor(
        name="cdp_run_failure_alert",
        description="Alerts on failed runs (runs failed only by a blocking check are alerted by the check alert).",
        minimum_interval_seconds=cfg.minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
    )
    def run_failure_alert(context: RunFailureSensorContext):
        failures = context.get_step_failure_events()
        causes = [
            f.event_specific_data.error for f in failures if f.event_specific_data and f.event_specific_data.error
        ]
        if causes and all(c.cls_name == CHECK_FAILED_ERROR for c in causes):
            return  # the failed-check alert already carries the value and the threshold
        run = context.dagster_run
        link = f"{cfg.ui_base_url.rstrip('/')}/runs/{run.run_id}"
        first = root_message(causes[0]) if causes else (context.failure_event.message or "")
        steps = sorted({f.step_key for f in failures if f.step_key})
        send_alert(
            cfg,
            {
                "text": f"Run failed: {run.job_name} ({', '.join(steps) or 'run'}): {first}; run {link}",
                "job": run.job_name,
                "steps": steps,
                "error": first,
                "run_id": run.run_id,
                "run_url": link,
            },
        )

    return run_failure_alert
