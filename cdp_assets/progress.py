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
# Failures shown with the failing code's own message; outside a step, named by what failed.
_FAILURE_EVENTS = {
    "STEP_FAILURE": "step",
    "RESOURCE_INIT_FAILURE": "resources",
    "PIPELINE_FAILURE": "run",
    "RUN_FAILURE": "run",
}


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


def user_error(error):
    """The error the failing code raised, out of Dagster's wrappers: "Error occurred while
    executing op ...", "Error executing resource_fn on ResourceDefinition warehouse" and the like
    are Dagster's; their cause chain leads to the user's own error (a WarehouseError, a
    ConfigError, a check's failure)."""
    while error is not None and error.cause is not None and _is_dagster_wrapper(error):
        error = error.cause
    return error


def _is_dagster_wrapper(error) -> bool:
    return (error.cls_name or "").startswith("Dagster") or "Error occurred while executing" in (error.message or "")


def failure_message(error, max_lines: int = 6) -> str:
    """What failed, in the failing code's own words: the user error's message without its class
    name, without the statement a WarehouseError carries (the event log has it), at most
    ``max_lines`` lines."""
    error = user_error(error)
    text = ((error.message if error is not None else "") or "").strip()
    text = text.split("\n-- statement that failed:", 1)[0].strip()
    first, _, rest = text.partition("\n")
    if first.startswith(("cdp_assets.", "dagster.", "_duckdb.", "duckdb.")) and ": " in first:
        first = first.split(": ", 1)[1]  # "cdp_assets.engines.base.WarehouseError: ..." -> "..."
    lines = [first, *rest.splitlines()] if text else ["(no message)"]
    return "\n".join(lines[:max_lines] + (["..."] if len(lines) > max_lines else []))


def step_failure_reason(error) -> str:
    """The first line of what failed a step: the error Dagster wrapped, not the wrapper."""
    return failure_message(error).splitlines()[0]


def run_failure_reasons(events) -> list[tuple[str, str]]:
    """(where, message) for each failure of a finished run, in the failing code's own words:
    each failed step's error; without a failed step (resources that could not start, e.g. a
    DuckDB file in use, or a missing secret), the run's own failure, dug out of Dagster's
    wrapper ("Initialization of resources [...] failed.")."""
    steps = [
        (e.step_key or "", failure_message(e.event_specific_data.error))
        for e in events
        if e.event_type_value == "STEP_FAILURE" and getattr(e.event_specific_data, "error", None) is not None
    ]
    if steps:
        return steps
    reasons: list[tuple[str, str]] = []
    for e in events:
        error = getattr(e.event_specific_data, "error", None)
        if e.event_type_value in ("RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE", "RUN_FAILURE") and error is not None:
            message = failure_message(error)
            if message not in {m for _, m in reasons}:
                reasons.append(("resources" if e.event_type_value == "RESOURCE_INIT_FAILURE" else "run", message))
    return reasons


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
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if event is not None and event.event_type_value in _FAILURE_EVENTS and error is not None:
            return f"{clock} {where or _FAILURE_EVENTS[event.event_type_value]}: FAILED: {step_failure_reason(error)}"
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
