"""What `cdp-assets` tells the user: the failing code's own message, exit codes that tell a
failure from warnings, commands that need no credentials, runs killed mid-way not left STARTED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, job, op

from cdp_assets import exit_codes
from cdp_assets.cli import main, run_exit_code
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.orphaned_runs import PID_TAG, fail_orphaned_runs, process_tags
from cdp_assets_tests.conftest import write_project


def _hold_duckdb(path: Path) -> subprocess.Popen:
    """Another process holding the DuckDB file open (what a second `cdp-assets run` meets)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


@pytest.mark.pipeline
def test_a_run_refused_by_a_busy_duckdb_prints_duckdbs_reason_not_dagsters_wrapper(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=20)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    holder = _hold_duckdb(tmp_path / "p" / "cdp.duckdb")
    try:
        code = main(["run", "--config", str(config)])
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    out, err = capsys.readouterr()
    assert code == exit_codes.FAILED
    assert ": FAILURE" in out
    failed = [line for line in out.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 1, out
    assert "is in use by another process" in failed[0] and "nothing was written" in failed[0], out
    assert "cdp-assets run` does not queue" in failed[0], out
    # Dagster's wrappers are gone from both the summary and the progress lines.
    assert "Initialization of resources" not in out + err and "An exception was thrown" not in out + err, err
    assert "resources: FAILED: DuckDB database" in err, err


@pytest.mark.pipeline
def test_a_failed_step_is_printed_with_its_own_message(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=20)
    # A file without the watermark column cannot be loaded: the ingestion step fails naming it.
    bad = tmp_path / "p" / "data" / "shop" / "customers" / "customers_2024-06-03.csv"
    bad.write_text("customer_id,email\nC1,a@example.com\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--config", str(config)]) == exit_codes.FAILED
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("  failed: ")]
    assert failed and failed[0].startswith("  failed: ingest_shop_customers"), out
    assert "customers_2024-06-03.csv" in failed[0] and "Error occurred while executing" not in out, out


@pytest.mark.pipeline
def test_a_successful_run_with_a_failed_warn_check_exits_3_not_1(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=30)
    # A row with too many fields is rejected: the WARN check no_rejected_rows fails, the run succeeds.
    with (tmp_path / "p" / "data" / "shop" / "customers" / "customers_2024-06-02.csv").open("a") as fh:
        fh.write("C999998,x@example.com,,A,B,2024-06-02 10:00:00,one field too many\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--config", str(config)]) == exit_codes.SUCCEEDED_WITH_WARNINGS
    out = capsys.readouterr().out
    assert ": SUCCESS" in out and "no_rejected_rows" in out and "  failed: " not in out, out
    failed_checks = [line for line in out.splitlines() if line.startswith("  FAILED check ")]
    assert failed_checks and all("WARN" in line for line in failed_checks), out


@pytest.mark.parametrize(
    ("success", "severities", "code"),
    [
        (True, [], exit_codes.OK),
        (True, ["WARN", "WARN"], exit_codes.SUCCEEDED_WITH_WARNINGS),
        (True, ["WARN", "ERROR"], exit_codes.FAILED),  # a non-blocking ERROR check: the run succeeded
        (False, [], exit_codes.FAILED),
        (False, ["WARN"], exit_codes.FAILED),
    ],
)
def test_exit_codes_of_a_finished_run(success, severities, code):
    assert run_exit_code(success, severities) == code


def test_the_exit_codes_are_the_documented_ones():
    assert (exit_codes.OK, exit_codes.FAILED, exit_codes.CONFIG_ERROR, exit_codes.SUCCEEDED_WITH_WARNINGS) == (
        0,
        1,
        2,
        3,
    )
    documented = (REPO_ROOT / "docs" / "commands.md").read_text()
    for code, meaning in ((0, "success"), (1, "failed"), (2, "configuration"), (3, "WARN")):
        rows = [line for line in documented.splitlines() if line.startswith(f"| {code} |")]
        assert any(meaning in row for row in rows), (code, meaning, rows)


@pytest.mark.parametrize("engine", ["treasure_data", "databricks"])
def test_render_sql_needs_no_credentials_and_explain_names_the_variable_in_one_line(
    engine, tmp_path, monkeypatch, capsys
):
    for var in ("TD_API_KEY", "DATABRICKS_HOST", "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    config = write_project(tmp_path, records=20, mutate=lambda c: c.update(engine={"kind": engine}))
    dialect = "trino" if engine == "treasure_data" else "databricks"
    assert (
        main(["render-sql", "--config", str(config), "--dialect", dialect, "--out", str(tmp_path / "sql")])
        == exit_codes.OK
    )
    assert list((tmp_path / "sql").rglob("*.sql"))
    capsys.readouterr()
    assert (
        main(["explain", "--config", str(config), "email:a@example.com", "customer_id:C000001"])
        == exit_codes.CONFIG_ERROR
    )
    err = capsys.readouterr().err
    expected = "TD_API_KEY" if engine == "treasure_data" else "DATABRICKS_HOST, DATABRICKS_HTTP_PATH, DATABRICKS_TOKEN"
    assert err == f"error: set the environment variable(s) {expected} for engine {engine!r}\n"


@pytest.mark.kills  # SIGKILLs a `cdp-assets run` process mid-way, as the kill harness does
def test_a_run_killed_mid_way_is_marked_failed_by_the_next_run_which_says_so(tmp_path, monkeypatch, capsys):
    config = write_project(tmp_path / "p", records=30)
    home = tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.Popen(
        [sys.executable, "-m", "cdp_assets.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in killed.stderr:  # the progress lines: kill it once a step has started
            if ": started" in line or time.monotonic() > deadline:
                break
        os.killpg(killed.pid, signal.SIGKILL)
    finally:
        killed.wait()
    assert killed.returncode == -signal.SIGKILL

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.get()
    (orphan,) = instance.get_runs()
    assert orphan.status == DagsterRunStatus.STARTED and orphan.tags[PID_TAG] == str(killed.pid)

    assert main(["run", "--config", str(config)]) in (exit_codes.OK, exit_codes.SUCCEEDED_WITH_WARNINGS)
    err = capsys.readouterr().err
    assert (
        f"note: run {orphan.run_id} (started " in err
        and f"was left STARTED by process {killed.pid}, which no longer exists" in err
    ), err
    assert instance.get_run_by_id(orphan.run_id).status == DagsterRunStatus.FAILURE
    failure = [
        r.event_log_entry
        for r in instance.get_records_for_run(orphan.run_id).records
        if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ]
    message = failure[0].dagster_event.message if failure else ""
    assert f"(pid {killed.pid} on " in message and "killed or crashed" in message, message
    # The run that found it finished normally; nothing is left for the next run to mark.
    assert sorted(r.status.value for r in instance.get_runs()) == ["FAILURE", "SUCCESS"]
    assert fail_orphaned_runs(instance) == []


def test_a_live_run_is_never_marked_failed(tmp_path, monkeypatch):
    """A run whose process is alive (here: this one) stays as it is."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.ephemeral()

    @op
    def nothing():
        return None

    @job
    def tiny():
        nothing()

    live = instance.create_run_for_job(tiny, tags=process_tags())
    gone_tags = {**process_tags(), PID_TAG: "999999999"}
    gone = instance.create_run_for_job(tiny, tags=gone_tags)
    notes = fail_orphaned_runs(instance)
    assert len(notes) == 1 and gone.run_id in notes[0]
    assert instance.get_run_by_id(gone.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.NOT_STARTED
