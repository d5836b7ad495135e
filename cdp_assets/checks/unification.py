"""Unification checks: lookup present and consistent, loop converged, coverage (blocking the
master tables), enriched tables carry the id, master tables have one row per id."""


from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.unification import enrich_tables, enriched_ref
from cdp_assets.checks import check_result
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
                return check_result(rows > 0, measured=rows, threshold=1, unit="rows", comparison="at_least",
                                    reason="" if rows else "no row had a valid key value to unify")

            @asset_check(asset=table_key(lookup), name="one_canonical_id_per_id", description="Every id maps to exactly one canonical id.")
            def one_canonical_id_per_id(warehouse: WarehouseResource) -> AssetCheckResult:
                n = int(warehouse.scalar(ids_with_many_canonical_ids_sql(lookup, plan.name)))
                return check_result(n == 0, measured=n, threshold=0, unit="id(s) with several canonical ids", comparison="at_most")

            @asset_check(
                asset=table_key(plan.ref("graph")),
                name="loop_converged",
                description="The loop converged; a warning when it stopped at merge_iterations.",
            )
            def loop_converged(warehouse: WarehouseResource) -> AssetCheckResult:
                stats = plan.ref("loop_stats")
                last = warehouse.fetch(latest_loop_sql(stats)) if warehouse.table_exists(stats) else None
                if last is None or last.empty:
                    return check_result(False, measured=None, threshold=0, unit="edge(s) left", comparison="at_most",
                                        severity=AssetCheckSeverity.WARN, reason=f"no loop iteration recorded in {stats.display}")
                row = last.iloc[0]
                return check_result(
                    bool(row["converged"]),
                    measured=int(row["edges_left"]),
                    threshold=0,
                    unit="edge(s) left",
                    comparison="at_most",
                    severity=AssetCheckSeverity.WARN,
                    reason="" if bool(row["converged"]) else f"stopped at the iteration cap ({plan.cid.iteration_cap})",
                    iterations=int(row["iteration"]),
                    iteration_cap=plan.cid.iteration_cap,
                    rows_changed_last_iteration=int(row["rows_changed"]),
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
                return check_result(
                    total == 0,
                    measured=total,
                    threshold=0,
                    unit="key value(s) over their cap",
                    comparison="at_most",
                    severity=AssetCheckSeverity.WARN,
                    largest=MetadataValue.md(top.to_markdown(index=False)) if total else MetadataValue.md("none"),
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
                return check_result(not missing, measured=len(missing), threshold=0, unit="missing column(s)", comparison="at_most",
                                    missing=", ".join(missing))

            @asset_check(
                asset=table_key(target),
                name="coverage",
                blocking=True,
                description=f"Rows with a canonical id / rows >= {threshold}% (blocks the master tables).",
            )
            def coverage(warehouse: WarehouseResource) -> AssetCheckResult:
                per_id, rows = {}, 0
                for cid in ids:
                    row = warehouse.fetch(coverage_sql(target, cid)).iloc[0]
                    total, with_id = int(row["total"]), int(row["with_id"])
                    rows = max(rows, total)
                    per_id[cid] = round(100.0 * with_id / total, 3) if total else 0.0
                worst = min(per_id.values(), default=0.0)
                return check_result(
                    worst >= threshold,
                    measured=worst,
                    threshold=threshold,
                    unit="%",
                    comparison="at_least",
                    reason="" if rows else f"{target.display} has no rows",
                    coverage_pct_by_id=per_id,
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
                return check_result(
                    total == distinct == lookup_ids,
                    measured=total,
                    threshold=lookup_ids,
                    unit="rows",
                    comparison="equals",
                    reason="" if total == distinct else f"{total - distinct} row(s) repeat a canonical id",
                    distinct_ids=distinct,
                )

            return [one_row_per_id]

        checks.extend(_per_master())
    return checks
