"""Staging checks: the standardised columns exist and few values fail to parse."""


from dagster import AssetCheckResult, asset_check

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.staging import staging_ref, staging_rules
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.staging import staged_columns, unparseable_sql


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
                    return AssetCheckResult(passed=False, metadata={"problem": f"{target.display} does not exist"})
                have = set(warehouse.columns(target))
                missing = [c.output for c in columns if c.output not in have]
                return AssetCheckResult(passed=not missing, metadata={"missing": ", ".join(missing), "expected": ", ".join(c.output for c in columns)})

            @asset_check(
                asset=key,
                name="unparseable_share",
                description=f"Share of non-empty inputs that could not be standardised is at most {threshold}% per column.",
            )
            def unparseable_share(warehouse: WarehouseResource) -> AssetCheckResult:
                shares = {}
                for col in (c for c in columns if c.counted):
                    row = warehouse.fetch(unparseable_sql(target, col)).iloc[0]
                    present = int(row["present"])
                    shares[col.output] = round(100.0 * int(row["unparseable"]) / present, 3) if present else 0.0
                worst = max(shares.values(), default=0.0)
                return AssetCheckResult(
                    passed=worst <= threshold,
                    metadata={"unparseable_pct": shares, "threshold_pct": threshold, "worst_pct": worst},
                )

            return [expected_columns, unparseable_share]

        checks.extend(_make())
    return checks
