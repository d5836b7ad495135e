"""Staging checks: the standardised columns exist and few values fail to parse."""


from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.staging import RULE_COUNTS, staging_ref, staging_rules
from cdp_assets.checks import check_result
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.staging import staged_columns


def build_staging_checks(loaded: LoadedConfig) -> list:
    checks = []
    threshold = loaded.pipeline.checks.unparseable_max_pct
    for source, obj in loaded.pipeline.source_objects():
        target = staging_ref(loaded, source, obj)
        columns = staged_columns(staging_rules(loaded, source, obj))
        key = table_key(target)

        def _make(target=target, columns=columns, key=key):
            @asset_check(asset=key, name="expected_columns", description="Every standardised/cleaned column is present.")
            def expected_columns(warehouse: WarehouseResource) -> AssetCheckResult:
                if not warehouse.table_exists(target):
                    return check_result(False, measured=None, threshold=0, unit="missing column(s)", comparison="at_most",
                                        reason=f"{target.display} does not exist")
                have = set(warehouse.columns(target))
                missing = [c.output for c in columns if c.output not in have]
                return check_result(not missing, measured=len(missing), threshold=0, unit="missing column(s)", comparison="at_most",
                                    missing=", ".join(missing), expected=", ".join(c.output for c in columns))

            @asset_check(
                asset=key,
                name="unparseable_share",
                description=f"Share of non-empty inputs that could not be standardised is at most {threshold}% per column.",
            )
            def unparseable_share(context: AssetCheckExecutionContext) -> AssetCheckResult:
                # The figures the staging build measured (no second query of the table).
                event = context.instance.get_latest_materialization_event(key)
                meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
                if RULE_COUNTS not in meta:
                    return AssetCheckResult(passed=False, metadata={"problem": f"{target.display} has no materialization with {RULE_COUNTS}; materialize it"})
                counts = meta[RULE_COUNTS].value
                stale = [c.output for c in columns if c.counted and c.output not in counts]
                if stale:
                    return AssetCheckResult(passed=False, metadata={"problem": f"the latest build of {target.display} has no counts for {stale}; materialize it again"})
                shares = {c.output: counts[c.output]["unparseable_pct"] for c in columns if c.counted and c.output in counts}
                worst = max(shares.values(), default=0.0)
                return check_result(worst <= threshold, measured=worst, threshold=threshold, unit="%",
                                    comparison="at_most", unparseable_pct=shares)

            return [expected_columns, unparseable_share]

        checks.extend(_make())
    return checks
