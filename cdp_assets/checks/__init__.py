"""Asset checks, one module per phase: the validation rules of SPEC §4 live here only.

Every check reports under one convention, built here and read by the alerts and the CLI:
its metadata carries ``measured`` (the value it measured), ``threshold`` (what it compared it
against), ``unit`` and ``comparison`` (``at_least``, ``at_most``, ``equals`` or
``within_factor``), and ``reason`` when it could not measure (an empty or missing table) or did
not judge (too little history). ``measurement_text`` turns that metadata into the one line a
user reads, in the UI's description, in an alert and in ``cdp-assets run``'s summary.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.metadata import COLUMN_SCHEMA
from cdp_assets.engines.base import WarehouseResource

MEASURED, THRESHOLD, UNIT, COMPARISON, REASON = "measured", "threshold", "unit", "comparison", "reason"
COMPARISONS = {
    "at_least": "at least",
    "at_most": "at most",
    "equals": "equal to",
    "within_factor": "within a factor of",
}


def check_result(
    passed: bool,
    *,
    measured: float | int | str | None,
    threshold: float | int | str,
    unit: str,
    comparison: str,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    reason: str = "",
    **details: Any,
) -> AssetCheckResult:
    """An AssetCheckResult whose metadata says what was measured and against what.

    ``measured`` is None when nothing could be measured; ``reason`` then says why. ``details``
    are further metadata (per-column shares, examples) shown beside it."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison {comparison!r}: use one of {sorted(COMPARISONS)}")
    metadata: dict[str, Any] = {
        MEASURED: "not measured" if measured is None else measured,
        THRESHOLD: threshold,
        UNIT: unit,
        COMPARISON: comparison,
    }
    if reason:
        metadata[REASON] = reason
    metadata.update(details)
    return AssetCheckResult(
        passed=bool(passed), severity=severity, metadata=metadata, description=measurement_text(metadata)
    )


def _plain(value: Any) -> Any:
    """A metadata entry's value, whether it is a raw value or a Dagster MetadataValue."""
    return getattr(value, "value", value)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else str(value)
    return str(value)


# Dagster's own freshness check (checks/monitoring.py) reports in its metadata keys: read them
# under the convention, so that its alert says what it measured and against what.
FRESHNESS_PARAMS, LAST_UPDATED, LOWER_BOUND = (
    "dagster/freshness_params",
    "dagster/last_updated_timestamp",
    "dagster/freshness_lower_bound_timestamp",
)


def _convention(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A check's metadata as plain values, with Dagster's freshness metadata translated into
    the convention (hours since the last materialization, at most the allowed hours)."""
    meta = {k: _plain(v) for k, v in metadata.items()}
    if MEASURED in meta or FRESHNESS_PARAMS not in meta:
        return meta
    allowed = float(meta[FRESHNESS_PARAMS].get("lower_bound_delta_seconds", 0)) / 3600
    now = float(meta.get(LOWER_BOUND, 0)) + allowed * 3600
    last = meta.get(LAST_UPDATED)
    meta.update({THRESHOLD: round(allowed, 2), UNIT: "hours since the last materialization", COMPARISON: "at_most"})
    if last is None:
        meta.update({MEASURED: "not measured", REASON: "never materialized"})
    else:
        meta[MEASURED] = round((now - float(last)) / 3600, 2)
    return meta


def missing_columns_result(missing: list[str], **details: Any) -> AssetCheckResult:
    """A check that every expected column is there: passes when ``missing`` is empty."""
    return check_result(
        not missing,
        measured=len(missing),
        threshold=0,
        unit="missing column(s)",
        comparison="at_most",
        missing=", ".join(missing),
        **details,
    )


def measurement_text(metadata: Mapping[str, Any], description: str | None = None) -> str:
    """``measured 95.2 % (threshold: at least 99.5 %)``, from a check's metadata.

    Metadata without the convention (Dagster's schema change check, a check of another code
    location) is shown by the check's own description, or named as such rather than guessed at."""
    meta = _convention(metadata)
    if MEASURED not in meta or THRESHOLD not in meta:
        return description or "no measured value or threshold in this check's metadata"
    unit = meta.get(UNIT) or ""
    comparison = COMPARISONS.get(str(meta.get(COMPARISON)), str(meta.get(COMPARISON) or ""))
    # "95.2%" and "3.1x", but "12 rows"
    suffix = unit if unit[:1] in ("%", "x") else f" {unit}" if unit else ""
    measured = meta[MEASURED]
    value = "not measured" if measured == "not measured" else f"measured {_number(measured)}{suffix}"
    text = f"{value} (threshold: {comparison} {_number(meta[THRESHOLD])}{suffix})"
    if meta.get(REASON):
        text += f"; {meta[REASON]}"
    return text


def measurement(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The convention's entries of a check's metadata, as plain values (for alert payloads)."""
    meta = _convention(metadata)
    return {k: meta[k] for k in (MEASURED, THRESHOLD, UNIT, COMPARISON, REASON) if k in meta}


@dataclass(frozen=True)
class Check:
    """One named check of an asset: what the UI, the alerts and ``cdp-assets run`` name it by."""

    name: str
    description: str
    # A failed blocking check (ERROR severity) stops the assets downstream of its asset.
    blocking: bool = False


def check_specs(key: AssetKey, checks: list[Check]) -> list[AssetCheckSpec]:
    """The Dagster specs of one asset's checks: on its ``@asset`` / ``@multi_asset`` (``check_specs``)
    when its own step evaluates them, or on the ``multi_asset_check`` of ``asset_checks``."""
    return [AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking) for c in checks]


def check_results(
    key: AssetKey, checks: list[Check], results: Mapping[str, AssetCheckResult]
) -> list[AssetCheckResult]:
    """Each check's result, named by its asset and check (every check gets one: Dagster fails a
    step that leaves a check of its specs without a result)."""
    return [
        AssetCheckResult(
            asset_key=key,
            check_name=check.name,
            passed=results[check.name].passed,
            severity=results[check.name].severity,
            metadata=results[check.name].metadata,
            description=results[check.name].description,
        )
        for check in checks
    ]


# evaluate(context, warehouse) -> {check name: result}, measuring the asset once for all its checks
Evaluate = Callable[[AssetCheckExecutionContext, WarehouseResource], Mapping[str, AssetCheckResult]]


def asset_checks(key: AssetKey, checks: list[Check], evaluate: Evaluate):
    """Every check of one asset as one step of its own, for the assets whose step cannot evaluate
    them (the unification's graph-backed assets): ``evaluate`` measures the asset once (one query,
    or the build's metadata) and returns each check's result by name. The other assets evaluate
    their checks in their own step (docs/checks.md)."""

    @multi_asset_check(
        specs=check_specs(key, checks),
        name=f"{'__'.join(key.path)}__checks",
        description=f"The checks of {key.to_user_string()}, measured together.",
    )
    def _checks(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.session():
            results = evaluate(context, warehouse)
        yield from check_results(key, checks, results)

    return _checks


def schema_columns(metadata: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """The columns a build recorded in its ``dagster/column_schema`` (assets/metadata.py), as the
    engine's description gives them, or None (no such table, or no schema recorded)."""
    schema = metadata.get(COLUMN_SCHEMA)
    return None if schema is None else [(c.name, c.type) for c in _plain(schema).columns]


def described(warehouse: WarehouseResource, *refs, context: AssetCheckExecutionContext | None = None) -> dict:
    """The columns of ``refs``: {ref: [(column, type)] or None when the table does not exist}.

    A table this run built has its description in its materialization (``dagster/column_schema``,
    assets/metadata.py), read from there; the others are described by the engine in one round
    trip (one catalog query on DuckDB, an API call and no job on TD)."""
    wanted = list(dict.fromkeys(r for r in refs if r is not None))
    known = {ref: cols for ref in wanted if (cols := built_this_run(context, ref)) is not None} if context else {}
    rest = [ref for ref in wanted if ref not in known]
    return {**known, **(warehouse.describe_tables(rest) if rest else {})}


def built_this_run(context: AssetCheckExecutionContext, ref) -> list[tuple[str, str]] | None:
    """The columns a table had when this run built it, or None (not built in this run, or its
    build recorded no column schema)."""
    return schema_columns(build_metadata_this_run(context, ref))


def build_metadata_this_run(context: AssetCheckExecutionContext, ref) -> Mapping[str, Any]:
    """The metadata of this run's build of ``ref`` (what it measured as it wrote the table), or
    nothing when this run did not build it."""
    event = context.instance.get_latest_materialization_event(table_key(ref))
    if event is None or event.run_id != context.run.run_id or event.asset_materialization is None:
        return {}
    return event.asset_materialization.metadata


def column_names(description: list[tuple[str, str]] | None) -> list[str]:
    return [name for name, _ in description or []]
