"""What a command-line run prints while it works: the phase and asset of each step as it starts
and ends, and every INFO line of the steps (files read, rows built, loop iterations), without
Dagster's DEBUG events."""

from __future__ import annotations

import logging
import sys
import time

from dagster import Definitions, logger

PROGRESS_LOGGER = "cdp_progress"
_SHOWN_EVENTS = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}


def step_phases(defs: Definitions) -> dict[str, str]:
    """Op name -> phase (asset group), for assets and for the checks on them."""
    groups: dict = {}
    phases: dict[str, str] = {}
    for assets_def in defs.resolve_all_asset_specs():
        groups[assets_def.key] = assets_def.group_name or ""
    for assets_def in defs.assets or []:
        node = getattr(assets_def, "node_def", None)
        keys = getattr(assets_def, "keys", [])
        if node is not None and keys:
            phases[node.name] = groups.get(next(iter(keys)), "")
    for check in defs.asset_checks or []:
        for spec in check.check_specs:
            phases[check.node_def.name] = f"{groups.get(spec.asset_key, '')} check"
    return phases


def step_failure_reason(error) -> str:
    """The first line of what failed a step: the error Dagster wrapped ("Error occurred while
    executing op ..."), not the wrapper."""
    while error is not None and error.cause is not None and "Error occurred while executing" in (error.message or ""):
        error = error.cause
    text = (error.message if error is not None else "") or ""
    first = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return first.split(": ", 1)[1] if first.startswith(("cdp_assets.", "dagster.")) and ": " in first else first


class _ProgressFormatter(logging.Formatter):
    def __init__(self, phases: dict[str, str]):
        super().__init__()
        self.phases = phases

    def format(self, record: logging.LogRecord) -> str:
        meta = record.__dict__.get("dagster_meta") or {}
        step = meta.get("step_key") or ""
        phase = self.phases.get(step.split(".")[0].split("[")[0], "")
        event = meta.get("dagster_event")
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        where = f"[{phase}] {step}" if phase else step
        if event is not None and event.event_type_value == "STEP_FAILURE":
            return f"{clock} {where}: FAILED: {step_failure_reason(event.event_specific_data.error)}"
        if event is not None and event.event_type_value in _SHOWN_EVENTS:
            return f"{clock} {where}: {_SHOWN_EVENTS[event.event_type_value]}"
        return f"{clock} {where}: {meta.get('orig_message') or record.getMessage()}"


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        event = (record.__dict__.get("dagster_meta") or {}).get("dagster_event")
        if event is not None:
            return event.event_type_value in _SHOWN_EVENTS or record.levelno >= logging.WARNING
        return record.levelno >= logging.INFO


def with_progress_logger(defs: Definitions) -> Definitions:
    """``defs`` plus the progress logger (select it in the run config: ``{"loggers": {PROGRESS_LOGGER: {}}}``)."""
    phases = step_phases(defs)

    @logger(description="Phase, asset and progress lines of a command-line run.")
    def progress(_init_context) -> logging.Logger:
        out = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ProgressFormatter(phases))
        handler.addFilter(_ProgressFilter())
        out.addHandler(handler)
        return out

    return Definitions.merge(defs, Definitions(loggers={PROGRESS_LOGGER: progress}))
