"""Alerts: a failed run or a failed asset check is logged, and POSTed to a webhook and to a
Slack channel (dagster-slack) when they are configured.

A failed blocking check also fails its run; that run is reported by the check alert, with the
measured value and the threshold, and the run-failure alert stays silent, so one failure gives
exactly one alert.
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
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from dagster_slack import SlackResource
from slack_sdk.errors import SlackClientError

from cdp_assets.config.models import AlertsConfig, LoadedConfig

log = logging.getLogger("cdp_assets.alerts")
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"
# Metadata keys our checks use for the measured value and the threshold.
MEASURED_KEYS = ("rejected_rows", "coverage_pct", "worst_pct", "rows", "duplicate_keys", "excluded_values", "ids_with_several_canonical_ids", "edges_left")
THRESHOLD_KEYS = ("threshold", "threshold_pct", "iteration_cap", "max_rows_per_value")


def send_alert(cfg: AlertsConfig, payload: dict, attempts: int = 3) -> bool:
    """Log the alert; send it to the webhook and to Slack where configured. Returns whether it
    was delivered to at least one of them."""
    log.warning("CDP alert: %s", payload["text"])
    delivered = False
    if os.environ.get(cfg.webhook_url_env):
        delivered |= _deliver(lambda: _post_webhook(os.environ[cfg.webhook_url_env], payload), cfg.webhook_url_env, attempts)
    if cfg.slack_channel and os.environ.get(cfg.slack_token_env):
        delivered |= _deliver(lambda: _post_slack(cfg, os.environ[cfg.slack_token_env], payload), cfg.slack_token_env, attempts)
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
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST")
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
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    measured = {k: meta[k] for k in MEASURED_KEYS if k in meta}
    threshold = {k: meta[k] for k in THRESHOLD_KEYS if k in meta}
    asset = evaluation.asset_key.to_user_string()
    link = f"{cfg.ui_base_url.rstrip('/')}/runs/{run_id}"
    text = (
        f"Check failed ({evaluation.severity.value}): {asset} / {evaluation.check_name}; "
        f"measured {measured or meta}; threshold {threshold or 'n/a'}; run {link}"
    )
    return {"text": text, "asset": asset, "check": evaluation.check_name, "severity": evaluation.severity.value,
            "measured": measured, "threshold": threshold, "run_id": run_id, "run_url": link}


def build_check_failure_sensor(loaded: LoadedConfig):
    cfg = loaded.pipeline.alerts

    @sensor(
        name="cdp_failed_check_alert",
        description="Alerts on every failed asset check, blocking or not (a cursor over check evaluations).",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def failed_check_alert(context: SensorEvaluationContext):
        after = int(context.cursor) if context.cursor else None
        records = context.instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
            ascending=True,
            limit=1000,
        )
        sent = 0
        for record in records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if not evaluation.passed:
                send_alert(cfg, check_alert_payload(cfg, evaluation, record.event_log_entry.run_id))
                sent += 1
            after = record.storage_id
        if after is not None:
            context.update_cursor(str(after))
        return SkipReason(f"{sent} failed check(s) alerted") if not sent else None

    return failed_check_alert


def build_run_failure_sensor(loaded: LoadedConfig):
    cfg = loaded.pipeline.alerts

    @run_failure_sensor(
        name="cdp_run_failure_alert",
        description="Alerts on failed runs (runs failed only by a blocking check are alerted by the check alert).",
        default_status=DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
    )
    def run_failure_alert(context: RunFailureSensorContext):
        failures = context.get_step_failure_events()
        causes = [f.event_specific_data.error for f in failures if f.event_specific_data and f.event_specific_data.error]
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
