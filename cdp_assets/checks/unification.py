"""Unification checks: lookup present and consistent, loop converged, coverage (blocking the
master tables), enriched tables carry the id, master tables have one row per id."""


from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.unification import enrich_tables, enriched_ref
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import unification as u
from cdp_assets.sql.checks import coverage_sql, excluded_top_sql, ids_with_many_canonical_ids_sql, latest_loop_sql, master_uniqueness_sql
from cdp_assets.sql.dialects import TableRef


def build_unification_checks(loaded: LoadedConfig) -> list:
    unify = loaded.unification
    if unify is None:
        return []
    plans = u.build_id_plans(loaded)
    threshold = loaded.pipeline.checks.coverage_min_pct
    checks = []
    for plan in plans:

        def _per_id(plan=plan):
            lookup = plan.ref("lookup")

            @asset_check(asset=table_key(lookup), name="lookup_not_empty", description="The lookup has rows.")
            def lookup_not_empty(warehouse: WarehouseResource) -> AssetCheckResult:
                rows = warehouse.row_count(lookup) if warehouse.table_exists(lookup) else 0
                return AssetCheckResult(passed=rows > 0, metadata={"rows": rows})

            @asset_check(asset=table_key(lookup), name="one_canonical_id_per_id", description="Every id maps to exactly one canonical id.")
            def one_canonical_id_per_id(warehouse: WarehouseResource) -> AssetCheckResult:
                n = warehouse.scalar(ids_with_many_canonical_ids_sql(lookup, plan.name))
                return AssetCheckResult(passed=n == 0, metadata={"ids_with_several_canonical_ids": n})

            @asset_check(
                asset=table_key(plan.ref("graph")),
                name="loop_converged",
                description="The loop converged; a warning when it stopped at merge_iterations.",
            )
            def loop_converged(warehouse: WarehouseResource) -> AssetCheckResult:
                row = warehouse.fetch(latest_loop_sql(plan.ref("loop_stats"))).iloc[0]
                return AssetCheckResult(
                    passed=bool(row["converged"]),
                    severity=AssetCheckSeverity.WARN,
                    metadata={
                        "iterations": int(row["iteration"]),
                        "iteration_cap": plan.cid.iteration_cap,
                        "edges_left": int(row["edges_left"]),
                        "rows_changed_last_iteration": int(row["rows_changed"]),
                    },
                )

            excluded = plan.ref("excluded_values")

            @asset_check(
                asset=table_key(excluded),
                name="no_values_over_cap",
                description="Warns when key values shared by more rows than their cap were excluded (never merged).",
            )
            def no_values_over_cap(warehouse: WarehouseResource) -> AssetCheckResult:
                top = warehouse.fetch(excluded_top_sql(excluded))
                total = warehouse.row_count(excluded)
                return AssetCheckResult(
                    passed=total == 0,
                    severity=AssetCheckSeverity.WARN,
                    metadata={
                        "excluded_values": total,
                        "largest": MetadataValue.md(top.to_markdown(index=False)) if total else MetadataValue.md("none"),
                    },
                )

            return [lookup_not_empty, one_canonical_id_per_id, loop_converged, no_values_over_cap]

        checks.extend(_per_id())

    for alias, table in enrich_tables(plans).items():
        ids = [p.name for p in plans if any(t.alias == alias for t in p.tables)]
        target = enriched_ref(unify.schema, alias)

        def _per_table(target=target, ids=ids):
            @asset_check(asset=table_key(target), name="has_canonical_id_columns", description=f"Columns {ids} are present.")
            def has_id_columns(warehouse: WarehouseResource) -> AssetCheckResult:
                have = set(warehouse.columns(target)) if warehouse.table_exists(target) else set()
                missing = [c for c in ids if c not in have]
                return AssetCheckResult(passed=not missing, metadata={"missing": ", ".join(missing)})

            @asset_check(
                asset=table_key(target),
                name="coverage",
                blocking=True,
                description=f"Rows with a canonical id / rows >= {threshold}% (blocks the master tables).",
            )
            def coverage(warehouse: WarehouseResource) -> AssetCheckResult:
                per_id = {}
                for cid in ids:
                    row = warehouse.fetch(coverage_sql(target, cid)).iloc[0]
                    total, with_id = int(row["total"]), int(row["with_id"])
                    per_id[cid] = round(100.0 * with_id / total, 3) if total else 0.0
                worst = min(per_id.values(), default=0.0)
                return AssetCheckResult(
                    passed=worst >= threshold,
                    metadata={"coverage_pct": worst, "coverage_pct_by_id": per_id, "threshold_pct": threshold},
                    description=f"coverage {worst:.2f}% against a minimum of {threshold}%",
                )

            return [has_id_columns, coverage]

        checks.extend(_per_table())

    by_name = {p.name: p for p in plans}
    for master in unify.master_tables:
        plan = by_name[master.id_name]
        target = TableRef(unify.schema, master.name)

        def _per_master(target=target, plan=plan):
            @asset_check(asset=table_key(target), name="one_row_per_canonical_id", description="One row per canonical id of the lookup.")
            def one_row_per_id(warehouse: WarehouseResource) -> AssetCheckResult:
                row = warehouse.fetch(master_uniqueness_sql(target, plan.ref("lookup"), plan.name)).iloc[0]
                total, distinct, lookup_ids = (int(row[c]) for c in ("total_rows", "distinct_ids", "lookup_ids"))
                return AssetCheckResult(
                    passed=total == distinct == lookup_ids,
                    metadata={"rows": total, "distinct_ids": distinct, "lookup_ids": lookup_ids},
                )

            return [one_row_per_id]

        checks.extend(_per_master())
    return checks
