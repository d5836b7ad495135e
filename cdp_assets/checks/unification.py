"""Unification checks: lookup present and consistent, loop converged, coverage (blocking the
master tables), enriched tables carry the id, master tables have one row per id.

The tables of the unification's graph-backed multi-asset have one step of checks per table (a
graph's ops cannot report check results of its assets): each measures its table once (the
engine's description where a table may be missing, and one query); the coverage and its trend
come from the enriched table's build metadata (the enrichment counted the rows with each id as
it built the table). A master table is a plain asset: its step evaluates its check after the
build, with the build's row count and one query (on DuckDB, with the step's description of it)."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckSeverity, MetadataValue

from cdp_assets.assets.keys import table_key
from cdp_assets.checks import (
    Check,
    _plain,
    asset_checks,
    build_metadata_this_run,
    check_result,
    column_names,
    described,
    missing_columns_result,
)
from cdp_assets.checks import monitoring
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import unification as u
from cdp_assets.sql.checks import (
    coverage_measures_sql,
    excluded_measures_sql,
    latest_loop_sql,
    lookup_measures_sql,
    master_uniqueness_sql,
)
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.unification_pipeline import enrich_tables, enriched_ref


# A lookup's ids with several canonical ids and its distinct canonical ids, in its materialization
# when its build counted them (incremental.publish_lookup: docs/checks.md, "The lookup's kept measure").
LOOKUP_IDS_WITH_MANY = "ids_with_many_canonical_ids"
LOOKUP_CANONICAL_IDS = "canonical_ids"


def lookup_measures_metadata(build) -> dict:
    """What a lookup's build (``incremental.BuildResult``) counted for its checks, as metadata."""
    if build is None or build.measures is None:
        return {}
    return {
        LOOKUP_IDS_WITH_MANY: int(build.measures["ids_with_many"]),
        LOOKUP_CANONICAL_IDS: int(build.measures["canonical_ids"]),
    }


def _lookup_checks(plan: u.IdPlan):
    lookup = plan.ref("lookup")
    specs = [
        Check("lookup_not_empty", "The lookup has rows."),
        Check("one_canonical_id_per_id", "Every id maps to exactly one canonical id."),
    ]

    def evaluate(context, warehouse):
        built = build_metadata_this_run(context, lookup)
        if LOOKUP_IDS_WITH_MANY in built and "dagster/row_count" in built:
            # Counted by this run's build from its change (incremental.publish_lookup).
            rows, many = int(built["dagster/row_count"].value), int(built[LOOKUP_IDS_WITH_MANY].value)
        elif described(warehouse, lookup, context=context)[lookup] is None:
            rows, many = 0, None
        else:
            row = warehouse.fetch(lookup_measures_sql(lookup, plan.name)).iloc[0]
            rows, many = int(row["table_rows"]), int(row["ids_with_many"])
        unit = "id(s) with several canonical ids"
        return {
            "lookup_not_empty": check_result(
                rows > 0,
                measured=rows,
                threshold=1,
                unit="rows",
                comparison="at_least",
                reason="" if rows else "no row had a valid key value to unify",
            ),
            "one_canonical_id_per_id": check_result(
                many == 0,
                measured=many,
                threshold=0,
                unit=unit,
                comparison="at_most",
                reason="" if many is not None else f"{lookup.display} does not exist",
            ),
        }

    return asset_checks(table_key(lookup), specs, evaluate)


# The last round of a loop, as the loop statistics keep it and the graph's metadata repeats it.
LAST_ROUND_COLUMNS = ("iteration", "rows_changed", "edges_left", "converged")
LAST_ROUND = {f"last_round_{k}" for k in LAST_ROUND_COLUMNS}


def _graph_checks(plan: u.IdPlan):
    stats = plan.ref("loop_stats")
    spec = Check("loop_converged", "The loop converged; a warning when it stopped at merge_iterations.")

    def evaluate(context, warehouse):
        # The loop of this run recorded its last round in the graph's metadata as it wrote it to
        # the loop statistics: read there, the statistics are queried only for an earlier run's.
        built = build_metadata_this_run(context, plan.ref("graph"))
        if LAST_ROUND.issubset(built):
            last = pd.DataFrame([{k: _plain(built[f"last_round_{k}"]) for k in LAST_ROUND_COLUMNS}])
        else:
            exists = described(warehouse, stats, context=context)[stats] is not None
            last = warehouse.fetch(latest_loop_sql(stats)) if exists else None
        if last is None or last.empty:
            return {
                "loop_converged": check_result(
                    False,
                    measured=None,
                    threshold=0,
                    unit="edge(s) left",
                    comparison="at_most",
                    severity=AssetCheckSeverity.WARN,
                    reason=f"no loop iteration recorded in {stats.display}",
                )
            }
        row = last.iloc[0]
        return {
            "loop_converged": check_result(
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
        }

    return asset_checks(table_key(plan.ref("graph")), [spec], evaluate)


def excluded_measures(warehouse, excluded: TableRef) -> pd.DataFrame:
    """The largest excluded values with the table's row count (``excluded_measures_sql``; no row:
    none excluded). Where the engine's API answers a table's row count (Treasure Data's table
    listing: no job), an empty table needs no query."""
    if warehouse.counts_rows_without_a_query and warehouse.row_count(excluded) == 0:
        return pd.DataFrame(columns=["key_name", "value", "row_count", "max_rows_per_value", "total"])
    return warehouse.fetch(excluded_measures_sql(excluded))


def _excluded_checks(plan: u.IdPlan):
    excluded = plan.ref("excluded_values")
    spec = Check(
        "no_values_over_cap", "Warns when key values shared by more rows than their cap were excluded (never merged)."
    )

    def evaluate(context, warehouse):  # noqa: ARG001
        top = excluded_measures(warehouse, excluded)
        total = 0 if top.empty else int(top["total"].iloc[0])
        shown = top.drop(columns=["total"])
        return {
            "no_values_over_cap": check_result(
                total == 0,
                measured=total,
                threshold=0,
                unit="key value(s) over their cap",
                comparison="at_most",
                severity=AssetCheckSeverity.WARN,
                largest=MetadataValue.md(shown.to_markdown(index=False)) if total else MetadataValue.md("none"),
            )
        }

    return asset_checks(table_key(excluded), [spec], evaluate)


def _enriched_checks(target: TableRef, ids: list[str], threshold: float, cfg):
    key = table_key(target)
    specs = [
        Check("has_canonical_id_columns", f"Columns {ids} are present."),
        Check(
            "coverage", f"Rows with a canonical id / rows >= {threshold}% (blocks the master tables).", blocking=True
        ),
        monitoring.coverage_trend_check(cfg),
    ]

    def evaluate(context, warehouse):
        have = set(column_names(described(warehouse, target, context=context)[target]))
        missing = [c for c in ids if c not in have]
        present = [c for c in ids if c in have]
        per_id, rows = {cid: 0.0 for cid in missing}, 0
        if have:
            rows, with_ids = _coverage_counts(context, warehouse, target, present)
            for cid, with_id in with_ids.items():
                per_id[cid] = round(100.0 * with_id / rows, 3) if rows else 0.0
        worst = min(per_id.values(), default=0.0)
        return {
            "has_canonical_id_columns": missing_columns_result(missing),
            "coverage": check_result(
                worst >= threshold,
                measured=worst,
                threshold=threshold,
                unit="%",
                comparison="at_least",
                reason="" if rows else f"{target.display} has no rows",
                coverage_pct_by_id=per_id,
            ),
            "coverage_trend": monitoring.coverage_trend(context, key, cfg),
        }

    return asset_checks(key, specs, evaluate)


def _coverage_counts(context, warehouse, target: TableRef, ids: list[str]) -> tuple[int, dict[str, int]]:
    """(rows, rows with each id): what this run's enrichment counted as it built the table (its
    ``dagster/row_count`` and ``rows_with_id``), else one query of the table."""
    built = build_metadata_this_run(context, target)
    rows, with_id = built.get("dagster/row_count"), built.get("rows_with_id")
    if rows is not None and with_id is not None and all(cid in with_id.value for cid in ids):
        return int(rows.value), {cid: int(with_id.value[cid]) for cid in ids}
    row = warehouse.fetch(coverage_measures_sql(target, ids)).iloc[0]
    counts = {cid: 0 if pd.isna(row[f"with_id_{i}"]) else int(row[f"with_id_{i}"]) for i, cid in enumerate(ids)}
    return int(row["total"]), counts


MASTER_CHECKS = [Check("one_row_per_canonical_id", "One row per canonical id of the lookup.")]


def master_results(
    warehouse: WarehouseResource, target: TableRef, rows: int, plan: u.IdPlan, context=None
) -> tuple[list[tuple[str, str]] | None, dict]:
    """The step's description of the master table it built with ``rows`` rows, and the check of
    ``MASTER_CHECKS``: one round trip for both on DuckDB (``describe_tables_and_fetch``). The
    lookup's distinct ids come from its build in this run when it counted them (``context``: the
    step's), else from the same query."""
    lookup = plan.ref("lookup")
    counted = build_metadata_this_run(context, lookup).get(LOOKUP_CANONICAL_IDS) if context is not None else None
    described, measured = warehouse.describe_tables_and_fetch(
        [target], master_uniqueness_sql(target, None if counted is not None else lookup, plan.name)
    )
    row = measured.iloc[0]
    distinct = int(row["distinct_ids"])
    lookup_ids = int(counted.value) if counted is not None else int(row["lookup_ids"])
    return described[target], {
        "one_row_per_canonical_id": check_result(
            rows == distinct == lookup_ids,
            measured=rows,
            threshold=lookup_ids,
            unit="rows",
            comparison="equals",
            reason="" if rows == distinct else f"{rows - distinct} row(s) repeat a canonical id",
            distinct_ids=distinct,
        )
    }


def build_unification_checks(loaded: LoadedConfig) -> list:
    unify = loaded.unification
    if unify is None:
        return []
    plans = u.build_id_plans(loaded)
    checks = []
    for plan in plans:
        checks += [_lookup_checks(plan), _graph_checks(plan), _excluded_checks(plan)]
    for alias in enrich_tables(plans):
        ids = [p.name for p in plans if any(t.alias == alias for t in p.tables)]
        checks.append(
            _enriched_checks(
                enriched_ref(unify.schema, alias), ids, loaded.pipeline.checks.coverage_min_pct, loaded.pipeline.checks
            )
        )
    return checks
