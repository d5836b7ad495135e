"""Unification: a graph-backed multi-asset (loop op -> dynamic fan-out of enrichment -> collect),
and one asset per master table, which evaluates its check in its own step."""

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetObservation,
    Config,
    AssetOut,
    AssetSpec,
    AssetsDefinition,
    DynamicOut,
    DynamicOutput,
    In,
    MaterializeResult,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    asset,
    graph_multi_asset,
    op,
)

from cdp_assets.assets.hist_union import build_metadata, build_summary
from cdp_assets.assets.keys import table_key
from cdp_assets.assets.run_config import IncrementalConfig
from cdp_assets.assets.metadata import (
    column_schema,
    engine_jobs_metadata,
    engine_kinds,
    table_metadata,
    table_name_metadata,
)
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.checks import check_results, check_specs
from cdp_assets.checks.monitoring import LARGEST_ROWS, WITH_ID_ROWS
from cdp_assets.sql.report import COMPONENT_SIZES
from cdp_assets.checks.unification import LAST_ROUND_COLUMNS, MASTER_CHECKS, lookup_measures_metadata, master_results
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.assets.automation import downstream_condition
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.config.references import external_tables

# The names of the unification's tables live with its steps; imported from here by the checks.
from cdp_assets.sql.unification_pipeline import enrich_tables, enriched_ref, master_id_tables  # noqa: F401
from cdp_assets.unify.preflight import check_unification_inputs
from cdp_assets.unify.runner import (
    IterationStats,
    LoopResult,
    build_key_stats,
    build_master,
    config_fingerprint,
    enrich_table,
    measure_coverage,
    recorded_iterations,
    run_id_loop,
)

GROUP = "unification"
IO_MANAGER = "table_io_manager"
LOOP_OUTPUTS = ("graph", "lookup", "keys", "tables", "loop_stats", "excluded_values")
STATS_OUTPUTS = ("source_key_stats", "result_key_stats")


class UnifyLoopConfig(Config):
    """Run config of the loop op: ``full_refresh`` ignores the previous graph and watermarks."""

    full_refresh: bool = False


def _iterations_markdown(result: LoopResult) -> str:
    lines = ["| iteration | rows changed | edges left | pointer jumps | seconds |", "|---:|---:|---:|---:|---:|"]
    lines += [
        f"| {s.iteration} | {s.rows_changed} | {s.edges_left} | {s.jumps} | {s.seconds:.3f} |"
        for s in result.iterations
    ]
    return "\n".join(lines)


def build_unification_assets(loaded: LoadedConfig) -> list:
    unify = loaded.unification
    if unify is None:
        return []
    plans = u.build_id_plans(loaded)
    schema = unify.schema
    tables = enrich_tables(plans)
    upstream = {f"in_{i}": table_key(t.ref) for i, t in enumerate(tables.values())}

    loop_outs = {f"{p.name}__{s}": p.ref(s) for p in plans for s in LOOP_OUTPUTS}
    stats_outs = {f"{p.name}__{s}": p.ref(s) for p in plans for s in STATS_OUTPUTS}
    enriched_outs = {f"enriched__{alias}": enriched_ref(schema, alias) for alias in tables}
    all_outs = {**loop_outs, **enriched_outs, **stats_outs}

    @op(
        pool=WAREHOUSE_POOL,
        name=f"unify_loop_{unify.name}",
        ins={"upstream": In(Nothing)},
        out={**{name: Out(io_manager_key=IO_MANAGER) for name in loop_outs}, "to_enrich": DynamicOut(str)},
        description="Builds each id's graph and iterates hook/compress/contract until it converges or hits its cap.",
    )
    def unify_loop(context: OpExecutionContext, warehouse: WarehouseResource, config: UnifyLoopConfig):
        full_refresh = config.full_refresh
        for line in unify.differences_from_td():
            context.log.info(line)
        with warehouse.session():
            # Before anything is written: the tables unify.yml reads exist, with its columns.
            check_unification_inputs(warehouse, loaded)
            for plan in plans:
                graph_key = table_key(plan.ref("graph"))

                def on_iteration(cid: str, s: IterationStats, graph_key: AssetKey = graph_key) -> None:
                    context.log.info(
                        f"{cid}: iteration {s.iteration}: {s.rows_changed} row(s) changed, "
                        f"{s.edges_left} edge(s) left, {s.jumps} pointer jump(s), {s.seconds:.3f}s"
                    )
                    context.log_event(
                        AssetObservation(
                            asset_key=graph_key,
                            metadata={
                                "iteration": s.iteration,
                                "rows_changed": s.rows_changed,
                                "edges_left": s.edges_left,
                                "seconds": s.seconds,
                                "converged": s.converged,
                            },
                        )
                    )

                result = run_id_loop(
                    warehouse, loaded, plan, context.run.run_id, on_iteration=on_iteration, full_refresh=full_refresh
                )
                context.log.info(
                    f"{plan.name}: {result.mode} run"
                    + (": nothing new, the published graph and lookup stand" if result.nothing_new else "")
                    + (
                        f" ({result.full_refresh_reason})"
                        if result.mode == "full" and result.full_refresh_reason
                        else ""
                    )
                )
                if not result.converged:
                    context.log.warning(
                        f"{plan.name}: not converged after {result.rounds} iteration(s) (cap {result.cap}); "
                        f"{result.iterations[-1].edges_left} edge(s) still to merge"
                    )
                loop_meta = {
                    "mode": result.mode,
                    "full_refresh_reason": result.full_refresh_reason,
                    "iterations": result.rounds,
                    "converged": result.converged,
                    "iteration_cap": result.cap,
                    "rows_changed_per_iteration": MetadataValue.json([s.rows_changed for s in result.iterations]),
                    "iteration_series": MetadataValue.md(_iterations_markdown(result)),
                }
                if result.excluded_values:
                    context.log.warning(
                        f"{plan.name}: {result.excluded_values} key value(s) shared by more rows than their cap were "
                        f"excluded from the graph; see {plan.ref('excluded_values').display}"
                    )
                loop_meta["excluded_values"] = result.excluded_values
                loop_meta["do_not_merge_conflicts"] = result.dnm_conflicts
                last_round = recorded_iterations(result)[-1]
                graph_meta = {
                    **loop_meta,
                    "nodes": result.nodes,
                    # The nodes the rounds worked on: all in a full run, the touched ones in an incremental run.
                    "nodes_in_rounds": result.nodes_in_rounds,
                    "touched_components": result.touched_components,
                    "edges": result.edges,
                    "dagster/row_count": result.tables["graph"],
                    # The last row this run appended to the loop statistics (the graph's check reads it).
                    **{f"last_round_{k}": getattr(last_round, k) for k in LAST_ROUND_COLUMNS},
                }
                tables_meta = table_metadata(warehouse, *(plan.ref(s) for s in LOOP_OUTPUTS))
                yield Output(
                    plan.ref("graph").display,
                    f"{plan.name}__graph",
                    metadata={**graph_meta, **engine_jobs_metadata(warehouse), **tables_meta[plan.ref("graph")]},
                )
                yield Output(
                    plan.ref("lookup").display,
                    f"{plan.name}__lookup",
                    metadata={
                        "dagster/row_count": result.tables["lookup"],
                        "iterations": result.rounds,
                        "converged": result.converged,
                        **lookup_measures_metadata(result.lookup_build),
                        **tables_meta[plan.ref("lookup")],
                    },
                )
                # The rule tables' and the excluded values' rows are those the loop published; the
                # loop statistics' (every run's) are this run's on a first run, else counted (TD: its
                # table listing, no job).
                stats = plan.ref("loop_stats")
                counts = {
                    "keys": result.tables["keys"],
                    "tables": result.tables["tables"],
                    "loop_stats": result.tables.get("loop_stats") or warehouse.row_counts([stats])[stats],
                    "excluded_values": result.excluded_values,
                }
                for s, rows in counts.items():
                    yield Output(
                        plan.ref(s).display,
                        f"{plan.name}__{s}",
                        metadata={"dagster/row_count": int(rows), **tables_meta[plan.ref(s)]},
                    )
        for alias in tables:
            yield DynamicOutput(alias, mapping_key=alias, output_name="to_enrich")

    @op(
        name=f"enrich_table_{unify.name}",
        pool=WAREHOUSE_POOL,
        description="Adds the canonical id columns to one source table.",
    )
    def enrich_one_table(
        context: OpExecutionContext, warehouse: WarehouseResource, config: IncrementalConfig, alias: str
    ) -> dict:
        built = enrich_table(warehouse, loaded, plans, alias, full_refresh=config.full_refresh)
        context.log.info(f"{enriched_ref(schema, alias).display}: {built.rows} row(s); {build_summary(built)}")
        return {
            "alias": alias,
            "rows": built.rows,
            "engine_jobs": engine_jobs_metadata(warehouse),
            "build": build_metadata(built),
        }

    @op(
        pool=WAREHOUSE_POOL,
        name=f"finish_unification_{unify.name}",
        out={name: Out(io_manager_key=IO_MANAGER) for name in {**enriched_outs, **stats_outs}},
        description="Collects the enriched tables and builds the key statistics.",
    )
    def finish_unification(context: OpExecutionContext, warehouse: WarehouseResource, results: list):
        by_alias = {r["alias"]: r for r in results}
        # Every enriched table's coverage in one query, after they are all built, with each id's
        # largest canonical id (its check's measures), its ids by size (the report's profile) and
        # the staged rows an enrichment read
        # without counting them (its build's rows_read).
        # The key statistics first: the coverage query then describes them with the enriched
        # tables (one query on DuckDB: describe_tables_and_fetch).
        stats = {plan.name: build_key_stats(warehouse, plan, config_fingerprint(plan, unify)) for plan in plans}
        for name, built in stats.items():
            if built.counts is not None:
                c = built.counts
                how = f"full ({c.reason})" if c.mode == "full" else f"{c.mode}, {c.changed_keys} id(s) counted again"
                context.log.info(f"{name}: the key statistics' per-id counts: {how}")
        stats_rows = {name: built.rows for name, built in stats.items()}
        unread = [a for a, r in by_alias.items() if r["build"].get("rows_read", 0) is None]
        # The enriched and the statistics tables described together, once all are built.
        stats_refs = [plan.ref(s) for plan in plans for s in STATS_OUTPUTS]
        refs, described = [*(enriched_ref(schema, a) for a in tables), *stats_refs], {}
        # The ids whose per-id counts were kept read their largest canonical id and sizes from them.
        kept = [name for name, built in stats.items() if built.counts is not None]
        coverage, profiles = measure_coverage(
            warehouse, loaded, plans, unread, describe=refs, described=described, kept=kept
        )
        for alias in unread:
            by_alias[alias]["build"]["rows_read"] = coverage[alias].input_rows
        meta = {ref: {**table_name_metadata(ref), **column_schema(described[ref])} for ref in refs}
        for alias, ref in ((a, enriched_ref(schema, a)) for a in tables):
            r, c = by_alias[alias], coverage[alias]
            context.log.info(f"{ref.display}: coverage {c.coverage_pct}")
            yield Output(
                ref.display,
                f"enriched__{alias}",
                metadata={
                    "dagster/row_count": r["rows"],
                    "coverage_pct": MetadataValue.json(c.coverage_pct),
                    "rows_with_id": MetadataValue.json(c.with_id),
                    **r["build"],
                    **r["engine_jobs"],
                    **meta[ref],
                },
            )
        for plan in plans:
            rows = stats_rows[plan.name]
            source, result = plan.ref("source_key_stats"), plan.ref("result_key_stats")
            profile = profiles.get(plan.name)
            # Read by the largest_component_share check of this table (checks/monitoring.py) and
            # the report (the profile of the lookup this run built).
            share_meta = {}
            if profile is not None:
                share_meta = {
                    LARGEST_ROWS: profile.rows,
                    WITH_ID_ROWS: profile.rows_with_id,
                    COMPONENT_SIZES: MetadataValue.json(profile.sizes),
                }
            yield Output(
                source.display,
                f"{plan.name}__source_key_stats",
                metadata={"dagster/row_count": rows["source_key_stats"], **meta[source]},
            )
            yield Output(
                result.display,
                f"{plan.name}__result_key_stats",
                metadata={
                    "dagster/row_count": rows["result_key_stats"],
                    **share_meta,
                    **engine_jobs_metadata(warehouse),
                    **meta[result],
                },
            )

    @graph_multi_asset(
        name=f"unification_{unify.name}",
        group_name=GROUP,
        outs={
            name: AssetOut(
                key=table_key(ref),
                io_manager_key=IO_MANAGER,
                description=_describe(name),
                automation_condition=downstream_condition(),
                kinds=engine_kinds(loaded),
                metadata=table_name_metadata(ref),
            )
            for name, ref in all_outs.items()
        },
        ins={name: AssetIn(key=key, dagster_type=Nothing) for name, key in upstream.items()},
        can_subset=False,
    )
    def unification(**staged):
        loop = unify_loop(upstream=list(staged.values()))
        enriched = loop.to_enrich.map(enrich_one_table)
        finished = finish_unification(enriched.collect())
        return {
            **{name: getattr(loop, name) for name in loop_outs},
            **{name: getattr(finished, name) for name in {**enriched_outs, **stats_outs}},
        }

    return [unification, *build_master_assets(loaded, plans), *build_external_table_assets(loaded)]


def build_external_table_assets(loaded: LoadedConfig) -> list[AssetsDefinition]:
    """The team's existing tables that unify.yml reads and no phase produces: source assets of
    the graph (never materialized here; checked when the unification starts)."""
    unify = loaded.unification
    if unify is None:
        return []
    specs = [
        AssetSpec(
            key=table_key(TableRef(t.database or loaded.pipeline.stg_schema, t.table)),
            group_name="external",
            kinds=engine_kinds(loaded),
            metadata=table_name_metadata(TableRef(t.database or loaded.pipeline.stg_schema, t.table)),
            description=f"Existing warehouse table read by the unification as it is (unify.yml table {t.alias!r}).",
        )
        for t in external_tables(loaded.pipeline, unify)
    ]
    return [AssetsDefinition(specs=specs)] if specs else []


def _describe(out_name: str) -> str:
    if out_name.startswith("enriched__"):
        return f"Source table {out_name.split('__', 1)[1]} with its canonical id column(s)."
    cid, what = out_name.split("__", 1)
    return {
        "graph": f"{cid}: every key value with its component leader.",
        "lookup": f"{cid}: key value -> canonical id, with first/last seen and source tables.",
        "keys": f"{cid}: the keys, their types and merge priority.",
        "tables": f"{cid}: the source tables and their ids.",
        "loop_stats": f"{cid}: one row per loop iteration of every run.",
        "excluded_values": f"{cid}: key values shared by more rows than their cap, kept out of the graph.",
        "source_key_stats": f"{cid}: rows and distinct key values per source table and '*'.",
        "result_key_stats": f"{cid}: ids, ids with each key, and values-per-id histograms per table and '*'.",
    }[what]


def build_master_assets(loaded: LoadedConfig, plans: list[u.IdPlan]) -> list:
    unify = loaded.unification
    assert unify is not None
    schema = unify.schema
    by_name = {p.name: p for p in plans}
    assets = []
    for master in unify.master_tables:
        plan = by_name[master.id_name]
        target = TableRef(schema, master.name)
        id_tables = master_id_tables(master, plan, by_name)
        aliases = sorted(
            {sc.table for a in master.attributes for sc in a.source_columns}
            | {t for ts in id_tables.values() for t in ts}
        )
        enriched = {a: enriched_ref(schema, a) for a in aliases}
        deps = [table_key(plan.ref("lookup")), *(table_key(r) for r in enriched.values())]

        def _make(master=master, target=target, deps=deps, plan=plan):
            @asset(
                pool=WAREHOUSE_POOL,
                key=table_key(target),
                group_name=GROUP,
                deps=deps,
                automation_condition=downstream_condition(),
                kinds=engine_kinds(loaded),
                metadata=table_name_metadata(target),
                description=f"Master table: one row per {master.id_name}, attributes "
                + ", ".join(a.name for a in master.attributes),
                check_specs=check_specs(table_key(target), MASTER_CHECKS),
            )
            def _master(
                context: AssetExecutionContext, warehouse: WarehouseResource, config: IncrementalConfig
            ) -> MaterializeResult:
                built = build_master(warehouse, loaded, plans, master, full_refresh=config.full_refresh)
                # The table's description (its dagster/column_schema) and its check's measures.
                columns, checked = master_results(warehouse, target, built.rows, plan, context)
                table = {**table_name_metadata(target), **column_schema(columns)}
                context.log.info(f"{target.display}: {built.rows} row(s); {build_summary(built)}")
                return MaterializeResult(
                    metadata={
                        "dagster/row_count": built.rows,
                        **build_metadata(built),
                        "table": target.display,
                        **engine_jobs_metadata(warehouse),
                        **table,
                    },
                    check_results=check_results(table_key(target), MASTER_CHECKS, checked),
                )

            return _master

        assets.append(_make())
    return assets
