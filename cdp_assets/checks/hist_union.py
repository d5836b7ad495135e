"""Hist-union checks: it has at least the de-duplicated rows of each input, and no duplicate keys."""


from dagster import AssetCheckResult, asset_check

from cdp_assets.assets.hist_union import hist_union_ref
from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.checks import check_result
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
                per_input = {}
                for ref in inputs:
                    if warehouse.table_exists(ref):
                        cols = pk or [c for c in warehouse.columns(ref) if c not in LINEAGE_COLUMNS]
                        per_input[ref.display] = int(warehouse.scalar(distinct_count_sql(ref, cols)))
                needed = max(per_input.values(), default=0)
                if not warehouse.table_exists(target):
                    return check_result(False, measured=None, threshold=needed, unit="rows", comparison="at_least",
                                        reason=f"{target.display} does not exist")
                rows = warehouse.row_count(target)
                return check_result(rows >= needed, measured=rows, threshold=needed, unit="rows", comparison="at_least",
                                    distinct_input_rows=per_input)

            @asset_check(asset=key, name="unique_primary_key", description="No primary key value appears twice.")
            def unique_primary_key(warehouse: WarehouseResource) -> AssetCheckResult:
                cols = pk or [c for c in warehouse.columns(target) if c not in LINEAGE_COLUMNS]
                dupes = int(warehouse.scalar(duplicate_keys_sql(target, cols)))
                return check_result(
                    dupes == 0,
                    measured=dupes,
                    threshold=0,
                    unit="duplicate key(s)",
                    comparison="at_most",
                    key=", ".join(pk) if pk else "(all columns: no primary_key configured)",
                )

            return [covers_inputs, unique_primary_key]

        checks.extend(_make())
    return checks
