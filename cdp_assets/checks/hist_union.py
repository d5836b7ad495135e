"""Hist-union checks: it has at least the de-duplicated rows of each input, and no duplicate keys."""


from dagster import AssetCheckResult, asset_check

from cdp_assets.assets.hist_union import hist_union_ref
from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS, distinct_count_sql, duplicate_keys_sql


def build_hist_union_checks(loaded: LoadedConfig) -> list:
    checks = []
    for source, obj in loaded.pipeline.source_objects():
        target = hist_union_ref(loaded, source, obj)
        inputs = list(ingestion_refs(loaded, source, obj).values())
        key = table_key(target)

        def _make(target=target, inputs=inputs, key=key, pk=list(obj.primary_key)):
            @asset_check(asset=key, name="covers_inputs", description="Rows >= rows of each input after de-duplication.")
            def covers_inputs(warehouse: WarehouseResource) -> AssetCheckResult:
                if not warehouse.table_exists(target):
                    return AssetCheckResult(passed=False, metadata={"problem": f"{target.display} does not exist"})
                rows = warehouse.row_count(target)
                per_input = {}
                for ref in inputs:
                    if warehouse.table_exists(ref):
                        cols = pk or [c for c in warehouse.columns(ref) if c not in LINEAGE_COLUMNS]
                        per_input[ref.display] = warehouse.scalar(distinct_count_sql(ref, cols))
                short = {k: v for k, v in per_input.items() if v > rows}
                return AssetCheckResult(passed=not short, metadata={"rows": rows, "distinct_input_rows": per_input})

            @asset_check(asset=key, name="unique_primary_key", description="No primary key value appears twice.")
            def unique_primary_key(warehouse: WarehouseResource) -> AssetCheckResult:
                cols = pk or [c for c in warehouse.columns(target) if c not in LINEAGE_COLUMNS]
                dupes = warehouse.scalar(duplicate_keys_sql(target, cols))
                return AssetCheckResult(
                    passed=dupes == 0,
                    metadata={"duplicate_keys": dupes, "key": ", ".join(pk) if pk else "(all columns: no primary_key configured)"},
                )

            return [covers_inputs, unique_primary_key]

        checks.extend(_make())
    return checks
