"""When an asset downstream of ingestion refreshes on its own (schedules.py says who owns what)."""

from dagster import AutomationCondition


def downstream_condition() -> AutomationCondition:
    """Refresh when an input was updated, but never on top of a failed blocking check."""
    return AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
