"""Runs left STARTED by a process that was killed: found and marked failed by the next run.

A `cdp-assets run` runs in its own process (``execute_in_process``); killed mid-way (SIGKILL,
out of memory, a closed terminal), nothing reports the end of the run and Dagster's history
shows it STARTED forever. Dagster's run monitoring (``run_monitoring`` in dagster.yaml, run by
the daemon) cannot help here: it asks the run launcher whether a run's worker is alive, and the
default run launcher cannot tell (``supports_check_run_worker_health`` is false in dagster
1.13), nor are in-process runs launched by it.

So each run started by the CLI carries the identity of its process in its tags (host, pid and
the process's start time, so that a pid reused by a later process is not taken for the run's).
Before it starts, the next run looks for runs still in progress whose process is gone on this
host and reports each as failed, saying why, in the run's own event log and on the terminal.
Runs of another host, or without these tags (launched by `dagster dev`), are left alone.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

HOST_TAG = "cdp/host"
PID_TAG = "cdp/pid"
PROCESS_START_TAG = "cdp/process_start"  # clock ticks since boot (Linux); "" where unknown


def process_tags() -> dict[str, str]:
    """Tags that identify the process running a run."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PROCESS_START_TAG: _process_start(os.getpid())}


def _process_start(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Fields after the command name (in parentheses, which may hold spaces): state is field 3,
    # starttime field 22.
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start: str) -> bool:
    """Is the process ``pid`` that started at ``start`` still running?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if start and _process_start(pid) not in ("", start):
        return False  # the pid now belongs to a later process
    return True


def fail_orphaned_runs(instance) -> list[str]:
    """Report every in-progress run of a CLI process that no longer exists on this host as
    failed; returns one line per run, for the terminal."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    host = socket.gethostname()
    notes = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=statuses, tags={HOST_TAG: host})):
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid), run.tags.get(PROCESS_START_TAG, "")):
            continue
        started = dt.datetime.fromtimestamp(record.start_time or record.create_timestamp.timestamp())
        message = (
            f"The process that ran this run (pid {pid} on {host}) ended without finishing it: killed or "
            f"crashed mid-way. Marked failed by the next `cdp-assets run` (pid {os.getpid()}). Tables are "
            "swapped in only when complete, so each holds its last completed build; the next run rebuilds "
            "what this one did not finish."
        )
        instance.report_run_failed(run, message)
        notes.append(
            f"run {run.run_id} (started {started:%Y-%m-%d %H:%M:%S}) was left {run.status.value} by process "
            f"{pid}, which no longer exists (killed or crashed); marked it FAILURE"
        )
    return notes
