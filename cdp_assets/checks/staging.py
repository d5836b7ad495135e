"""Staging checks: the standardised columns exist and few values fail to parse. Evaluated in the
staging step from what its build measured: the table's columns (the step's description of it)
and each rule's parse counts. No query of their own."""

from __future__ import annotations

from dagster import AssetCheckResult

from cdp_assets.checks import Check, check_result, column_names, missing_columns_result
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import StagedColumn


def staging_checks(threshold: float) -> list[Check]:
    return [
        Check("expected_columns", "Every standardised/cleaned column is present."),
        Check(
            "unparseable_share",
            f"Share of non-empty inputs that could not be standardised is at most {threshold}% per column.",
        ),
    ]


def staging_results(
    target: TableRef,
    columns: list[StagedColumn],
    have: list[tuple[str, str]] | None,
    counts: dict,
    threshold: float,
    measured_by: str = "full scan",
) -> dict[str, AssetCheckResult]:
    """The checks of ``staging_checks`` of the table the step built: ``have`` its description
    (None: no table), ``counts`` each counted rule's figures as the build measured them
    ({output: {..., unparseable_pct}}), ``measured_by`` how ("full scan", "change": the counts
    kept with the table's state updated by the rows the build removed and added, "kept": an
    unchanged table's)."""
    return {
        "expected_columns": _expected_columns(target, columns, have),
        "unparseable_share": _unparseable_share(target, columns, counts, threshold, measured_by),
    }


def _expected_columns(target: TableRef, columns: list[StagedColumn], have) -> AssetCheckResult:
    if have is None:
        return check_result(
            False,
            measured=None,
            threshold=0,
            unit="missing column(s)",
            comparison="at_most",
            reason=f"{target.display} does not exist",
        )
    names = set(column_names(have))
    missing = [c.output for c in columns if c.output not in names]
    return missing_columns_result(missing, expected=", ".join(c.output for c in columns))


def _unparseable_share(target: TableRef, columns: list[StagedColumn], counts: dict, threshold: float, measured_by: str):
    stale = [c.output for c in columns if c.counted and c.output not in counts]
    if stale:
        return check_result(
            False,
            measured=None,
            threshold=threshold,
            unit="%",
            comparison="at_most",
            reason=f"the build of {target.display} measured no counts for {stale}",
        )
    shares = {c.output: counts[c.output]["unparseable_pct"] for c in columns if c.counted}
    worst = max(shares.values(), default=0.0)
    return check_result(
        worst <= threshold,
        measured=worst,
        threshold=threshold,
        unit="%",
        comparison="at_most",
        unparseable_pct=shares,
        **({"measured_by": measured_by} if shares else {}),
    )
