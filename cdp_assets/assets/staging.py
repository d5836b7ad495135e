"""Staging: standardised identifiers and cleaned names, one table per source object; its checks
(checks/staging.py) are evaluated in the same step from what the build measured."""

from collections.abc import Callable

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from cdp_assets.assets.hist_union import build_metadata, build_summary, hist_union_ref
from cdp_assets.assets.keys import table_key
from cdp_assets.assets.metadata import engine_jobs_metadata, engine_kinds, table_metadata, table_name_metadata
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.assets.run_config import IncrementalConfig
from cdp_assets.checks import check_results, check_specs, schema_columns
from cdp_assets.checks.staging import staging_checks, staging_results
from cdp_assets.config.models import LoadedConfig, SourceConfig, SourceObject
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.incremental import Dedupe, Measures, build_staging
from cdp_assets.assets.automation import downstream_condition
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import (
    Dimension,
    TableExtras,
    dedupe_sql,
    json_keys_sql,
    json_paths_from_profile,
    profiled_json_rules,
    rule_count_names,
    rule_counts,
    rule_counts_over_sql,
    rule_counts_sql,
    staged_columns,
    staging_sql,
)

GROUP = "staging"
# Materialization metadata: {output column: {rule, parsed, null, unparseable, unparseable_pct}}.
RULE_COUNTS = "rule_counts"


def staging_ref(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> TableRef:
    return TableRef(loaded.pipeline.stg_schema, f"{source.name}_{obj.name}_stg")


def staging_rules(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    """The rules of one staged table, with the table's null tokens where a rule lists none."""
    return loaded.pipeline.staging_rules_of(f"{source.name}_{obj.name}")


def dimension_refs(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> list[TableRef]:
    """The tables the table-level joins of one staged table read, in the order of the joins."""
    options = loaded.pipeline.staging_tables.get(f"{source.name}_{obj.name}")
    by_name = {f"{s.name}_{o.name}": (s, o) for s, o in loaded.pipeline.source_objects()}
    refs = []
    for join in options.join if options is not None else []:
        dim_source, dim_obj = by_name[join.table]
        staged = join.from_ == "staged"
        refs.append(staging_ref(loaded, dim_source, dim_obj) if staged else hist_union_ref(loaded, dim_source, dim_obj))
    return refs


def profiled_json_paths(rules: dict, table: TableRef, warehouse: WarehouseResource) -> dict:
    """{rule: {output: path}} of the json rules without paths, from one profiling query each of
    ``table``. An incremental build profiles the whole hist-union table once and stages its new
    rows with those paths: profiled on the new rows alone, a key they lack would drop a column
    the staged table has."""
    paths = {}
    for name, rule in profiled_json_rules(rules).items():
        profile = warehouse.fetch(json_keys_sql(table, rule))
        paths[name] = json_paths_from_profile(name, rule, list(profile.itertuples(index=False)))
    return paths


def staging_query(
    loaded: LoadedConfig,
    source: SourceConfig,
    obj: SourceObject,
    upstream: TableRef,
    columns: list[str],
    warehouse: WarehouseResource | None = None,
    deduped: bool = True,
    json_paths: dict | None = None,
) -> str:
    """The staging statement of one source object, with its table-level options. With the
    warehouse, json rules without paths are profiled (on ``upstream``, unless ``json_paths``
    gives what :func:`profiled_json_paths` found) and the dimensions' columns checked; without
    it (render-sql), a json rule without paths is an error naming it. ``deduped`` False: without
    the table's dedupe (its rows before the dedupe, ``dedupe_steps``)."""
    table = f"{source.name}_{obj.name}"
    options = loaded.pipeline.staging_tables.get(table)
    rules = staging_rules(loaded, source, obj)
    dims = []
    for i, (join, ref) in enumerate(zip(options.join if options else [], dimension_refs(loaded, source, obj))):
        # Without a warehouse the dimension's columns are taken to be the ones the join names.
        have = warehouse.columns(ref) if warehouse is not None else [*join.on.values(), *join.columns]
        dims.append(Dimension(join, ref, tuple(have), f"staging_tables.{table}.join[{i}]"))
    if warehouse is not None and json_paths is None:
        json_paths = profiled_json_paths(rules, upstream, warehouse)
    extras = TableExtras(
        dimensions=tuple(dims),
        source_system=source.name if options is not None and options.metadata_columns else None,
        json_paths=json_paths,
    )
    dedupe = options.dedupe if options is not None and deduped else None
    return staging_sql(upstream, columns, rules, dedupe, source.incremental_field, extras)


def dedupe_steps(
    loaded: LoadedConfig,
    source: SourceConfig,
    obj: SourceObject,
    warehouse: WarehouseResource,
    json_paths: dict | None = None,
) -> Dedupe | None:
    """How the table's dedupe is built incrementally (None without a dedupe): the staging rules
    alone, then the dedupe over their rows (cdp_assets/incremental.py ``build_staging``)."""
    options = loaded.pipeline.staging_tables.get(f"{source.name}_{obj.name}")
    if options is None or options.dedupe is None:
        return None

    def rank(staged_rows: str, source_columns: list[str], columns: list[str]) -> str:
        return dedupe_sql(
            staged_rows,
            hist_union_ref(loaded, source, obj).display,
            source_columns,
            columns,
            options.dedupe,
            source.incremental_field,
        )

    return Dedupe(
        stage=lambda ref, cols: staging_query(
            loaded, source, obj, ref, cols, warehouse, deduped=False, json_paths=json_paths
        ),
        rank=rank,
        partition_by=list(options.dedupe.partition_by),
    )


def staging_builders(
    loaded: LoadedConfig, source: SourceConfig, obj: SourceObject, warehouse: WarehouseResource
) -> tuple[Callable[[TableRef, list[str]], str], Dedupe | None]:
    """What ``build_staging`` stages one object with: its statement over a relation (the
    hist-union table, or the rows loaded since the last run) and its dedupe's steps. The json
    rules without paths are profiled once, on the whole hist-union table, and both use those paths."""
    json_paths = profiled_json_paths(staging_rules(loaded, source, obj), hist_union_ref(loaded, source, obj), warehouse)

    def render(ref: TableRef, columns: list[str]) -> str:
        return staging_query(loaded, source, obj, ref, columns, warehouse, json_paths=json_paths)

    return render, dedupe_steps(loaded, source, obj, warehouse, json_paths)


def staging_reads(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> list[TableRef]:
    """What a staging step describes before its build (``build_staging``): the hist-union table,
    the staged table, their states, the staged rows before a dedupe and its change log."""
    upstream, target = hist_union_ref(loaded, source, obj), staging_ref(loaded, source, obj)
    states = [inc.state_ref(upstream), inc.state_ref(target)]
    return [upstream, target, *states, inc.all_rows_ref(target), inc.changes_ref(target)]


def build_staging_asset(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    upstream = hist_union_ref(loaded, source, obj)
    target = staging_ref(loaded, source, obj)
    every_step_reads = [ref for s, o in loaded.pipeline.source_objects() for ref in staging_reads(loaded, s, o)]
    rules = staging_rules(loaded, source, obj)
    threshold = loaded.pipeline.checks.unparseable_max_pct
    checks = staging_checks(threshold)

    @asset(
        pool=WAREHOUSE_POOL,
        key=table_key(target),
        group_name=GROUP,
        deps=[table_key(upstream), *(table_key(d) for d in dimension_refs(loaded, source, obj))],
        automation_condition=downstream_condition(),
        kinds=engine_kinds(loaded),
        metadata=table_name_metadata(target),
        description=f"{source.name}/{obj.name} standardised: "
        + (", ".join(c.output for c in staged_columns(rules)) or "no rules, columns pass through"),
        check_specs=check_specs(table_key(target), checks),
    )
    def _staging(
        context: AssetExecutionContext, warehouse: WarehouseResource, config: IncrementalConfig
    ) -> MaterializeResult:
        columns = staged_columns(rules)
        options = loaded.pipeline.staging_tables.get(f"{source.name}_{obj.name}")
        with warehouse.session():
            # The first staging step describes every staging step's tables (one look-up).
            warehouse.describe_ahead(staging_reads(loaded, source, obj), every_step_reads)
            # A dimension join relates a row to rows of another table: such a table is built in full.
            # A dedupe is built incrementally, partition by partition (``dedupe_steps``).
            row_by_row = options is None or not options.join
            render, dedupe = staging_builders(loaded, source, obj, warehouse)
            built = build_staging(
                warehouse,
                target,
                upstream,
                warehouse.columns(upstream),
                render,
                list(obj.primary_key),
                row_by_row=row_by_row,
                full_refresh=config.full_refresh,
                measures=rule_count_measures(columns) if columns else None,
                dedupe=dedupe,
                stored_times=stored_times(columns, options),
            )
            rows = built.rows
            # Each rule's parsed / no-input / unparseable counts, kept with the table's state: a full
            # build takes them in the statement that writes it, an incremental one from the kept
            # counts and the rows it changed. The unparseable_share check takes them from here,
            # the report from this materialization.
            measured, measured_by = built.measures, built.measured_by
            if columns and measured is None:
                measured, measured_by = warehouse.fetch(rule_counts_sql(target, columns)).iloc[0], "full scan"
            counts = rule_counts(columns, measured) if columns else {}
            table = table_metadata(warehouse, target)[target]
        checked = staging_results(target, columns, schema_columns(table), counts, threshold, measured_by)
        unparseable = {out: c["unparseable"] for out, c in counts.items()}
        context.log.info(
            f"{target.display}: {rows} row(s); {build_summary(built)}; unparseable values per column: {unparseable}"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "unparseable": MetadataValue.json(unparseable),
                RULE_COUNTS: MetadataValue.json(counts),
                **({"measured_by": measured_by} if columns else {}),
                "table": target.display,
                **build_metadata(built),
                **engine_jobs_metadata(warehouse),
                **table,
            },
            check_results=check_results(table_key(target), checks, checked),
        )

    return _staging


def stored_times(columns, options) -> dict[str, str] | None:
    """The staged columns computed as TIMESTAMP or DATE (``build_staging``'s ``stored_times``):
    the rules' outputs and the metadata's load time; None with a dimension join (its columns'
    types are the dimension's, and such a table is built in full anyway)."""
    if options is not None and options.join:
        return None
    times = {c.output: c.sql_type for c in columns if c.sql_type in ("TIMESTAMP", "DATE")}
    if options is not None and options.metadata_columns:
        times["load_timestamp"] = "TIMESTAMP"
    return times


def rule_count_measures(columns) -> Measures:
    """The rule counts (``rule_counts_sql``) as measures a staged table keeps with its state."""
    return Measures(lambda relation: rule_counts_over_sql(relation, columns), tuple(rule_count_names(columns)))


def build_staging_assets(loaded: LoadedConfig) -> list:
    return [build_staging_asset(loaded, s, o) for s, o in loaded.pipeline.source_objects()]
