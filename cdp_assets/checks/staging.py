"""Staging checks: the standardised columns exist (the engine's description: no query of the
table) and few values fail to parse (the build's counts, from its materialization: no query)."""

from __future__ import annotations

from dagster import AssetCheckResult

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.staging import RULE_COUNTS, staging_ref, staging_rules
from cdp_assets.checks import Check, asset_checks, check_result, column_names, described
from cdp_assets.config.models import LoadedConfig
from cdp_assets.sql.staging import staged_columns


def build_staging_checks(loaded: LoadedConfig) -> list:
    checks = []
    threshold = loaded.pipeline.checks.unparseable_max_pct
    specs = [
        Check("expected_columns", "Every standardised/cleaned column is present."),
        Check(
            "unparseable_share",
            f"Share of non-empty inputs that could not be standardised is at most {threshold}% per column.",
        ),
    ]
    for source, obj in loaded.pipeline.source_objects():
        target = staging_ref(loaded, source, obj)
        columns = staged_columns(staging_rules(loaded, source, obj))
        key = table_key(target)

        def expected_columns(context, warehouse, target=target, columns=columns) -> AssetCheckResult:
            have = described(warehouse, target, context=context)[target]
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
            return check_result(
                not missing,
                measured=len(missing),
                threshold=0,
                unit="missing column(s)",
                comparison="at_most",
                missing=", ".join(missing),
                expected=", ".join(c.output for c in columns),
            )

        def unparseable_share(context, target=target, columns=columns, key=key) -> AssetCheckResult:
            # The figures the staging build measured (no second query of the table).
            event = context.instance.get_latest_materialization_event(key)
            meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
            unmeasured = {"measured": None, "threshold": threshold, "unit": "%", "comparison": "at_most"}
            if RULE_COUNTS not in meta:
                return check_result(
                    False,
                    **unmeasured,
                    reason=f"{target.display} has no materialization with {RULE_COUNTS}; materialize it",
                )
            counts = meta[RULE_COUNTS].value
            stale = [c.output for c in columns if c.counted and c.output not in counts]
            if stale:
                return check_result(
                    False,
                    **unmeasured,
                    reason=(f"the latest build of {target.display} has no counts for {stale}; materialize it again"),
                )
            shares = {
                c.output: counts[c.output]["unparseable_pct"] for c in columns if c.counted and c.output in counts
            }
            worst = max(shares.values(), default=0.0)
            return check_result(
                worst <= threshold,
                measured=worst,
                threshold=threshold,
                unit="%",
                comparison="at_most",
                unparseable_pct=shares,
            )

        def evaluate(context, warehouse, expected_columns=expected_columns, unparseable_share=unparseable_share):
            return {
                "expected_columns": expected_columns(context, warehouse),
                "unparseable_share": unparseable_share(context),
            }

        checks.append(asset_checks(key, specs, evaluate))
    return checks
