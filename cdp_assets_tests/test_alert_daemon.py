"""Check alerts the way users get them: `dagster-daemon run` ticking the alert sensors on a fresh
Dagster home, over several ticks, while runs whose checks pass and then fail end between ticks.

On the default home (the repository's dagster.yaml: SQLite, one event database per run) and on
PostgreSQL (examples/dagster.postgres.yaml, against a server the test starts). The old sensor
raised on every tick after its first on SQLite; its test evaluated one tick, without a cursor,
on an ephemeral in-memory instance, where that query works. Here every tick of both alert
sensors is read back from the instance and none may have failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

# Tick records are not in Dagster's top-level API; the daemon and the UI read them from here.
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus

from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import build_definitions
from cdp_assets.schedules import INGESTION_JOB
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project
from cdp_assets_tests.reliability.test_postgres_storage import postgres  # noqa: F401 - fixture
from cdp_assets_tests.test_alerts import receiver  # noqa: F401 - fixture

pytestmark = pytest.mark.pipeline  # the daemon in a subprocess, after whole-pipeline runs

ALERT_SENSORS = ("cdp_failed_check_alert", "cdp_run_failure_alert")
TICK_SECONDS = 5  # alerts.minimum_interval_seconds of the project below
DAEMON_START_TIMEOUT = 180  # seconds to the first tick of both sensors; seen: about 15-30 s
ALERT_TIMEOUT = 90


def _ticks(instance: DagsterInstance) -> dict[str, list]:
    """sensor name -> its ticks, newest first, as the daemon stored them."""
    out = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name in ALERT_SENSORS:
            out[state.instigator_name] = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    return out


def _wait(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


def _ticks_after(instance, name: str, after: float) -> int:
    return sum(1 for t in _ticks(instance).get(name, []) if t.timestamp > after and t.status != TickStatus.STARTED)


# The PostgreSQL case asks for its server fixture at run time, so conftest cannot see it: it is
# marked here, or the fast suite would start a server.
@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_each_failed_check_is_alerted_once_by_the_running_daemon(storage, request, tmp_path, monkeypatch, receiver):  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    if storage == "postgres":
        pg = request.getfixturevalue("postgres")
        monkeypatch.setenv("DAGSTER_PG_URL", pg["DAGSTER_PG_URL"])
        shutil.copy(REPO_ROOT / "examples" / "dagster.postgres.yaml", home / "dagster.yaml")
    else:
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")

    def passing(cfg):
        cfg["alerts"] = {"minimum_interval_seconds": TICK_SECONDS}
        cfg["sensors"] = {"file_drop": False, "default_status": "stopped"}  # only the test starts runs
        cfg["checks"]["coverage_min_pct"] = 0

    config = write_project(tmp_path / "p", records=200, mutate=passing)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {"module_name": "cdp_assets.definitions", "working_directory": str(REPO_ROOT)}}
                ]
            }
        )
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "CDP_CONFIG": str(config), "PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "daemon.log"
    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    with log.open("w") as out:
        # Its own session, so that stopping it stops its code server too (by this group's id).
        daemon = subprocess.Popen(
            [str(daemon_bin), "run", "-w", str(workspace)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        with DagsterInstance.get() as instance:
            if storage == "sqlite":
                assert instance.event_log_storage.is_run_sharded
            else:
                assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            _wait(
                lambda: all(_ticks(instance).get(n) for n in ALERT_SENSORS),
                DAEMON_START_TIMEOUT,
                "the first ticks",
                log,
            )

            # A run whose checks all pass (the ingestion's), between ticks: no alert.
            ok = (
                build_definitions(load_config(config))
                .resolve_job_def(INGESTION_JOB)
                .execute_in_process(instance=instance)
            )
            assert ok.success and check_results(ok) and all(check_results(ok).values())
            ended = time.time()
            _wait(
                lambda: _ticks_after(instance, "cdp_failed_check_alert", ended) >= 2,
                ALERT_TIMEOUT,
                "two ticks after the passing run",
                log,
            )
            assert receiver == []

            # The same data against a stricter threshold: the blocking coverage checks fail.
            strict = load_config(
                write_project(
                    tmp_path / "p",
                    generate=False,
                    mutate=lambda c: (passing(c), c["checks"].update(coverage_min_pct=99.5)),
                )
            )
            failed_run = run_pipeline(strict, instance)
            failed = sorted(k for k, passed in check_results(failed_run).items() if not passed)
            assert not failed_run.success and failed and all(k.endswith(":coverage") for k in failed)
            ended = time.time()
            _wait(lambda: len(receiver) >= len(failed), ALERT_TIMEOUT, f"{len(failed)} alert(s)", log)
            # Two more ticks of each alert sensor: nothing is sent twice, the run failure stays silent.
            _wait(
                lambda: all(_ticks_after(instance, n, ended) >= 2 for n in ALERT_SENSORS),
                ALERT_TIMEOUT,
                "two more ticks",
                log,
            )
            assert sorted(f"{a['asset']}:{a['check']}" for a in receiver) == failed
            for alert in receiver:
                assert alert["run_id"] == failed_run.run_id and alert["threshold"] == 99.5 and alert["measured"] < 99.5
                assert "(threshold: at least 99.5%)" in alert["text"]

            ticks = _ticks(instance)
            assert sum(len(t) for t in ticks.values()) >= 8
            errors = [(n, t.status, t.error) for n, ts in ticks.items() for t in ts if t.status == TickStatus.FAILURE]
            assert errors == []
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    assert "get_event_records" not in log.read_text()
