"""Hist-Union: historical + incremental loads as one table, one row per primary key; its checks
(checks/hist_union.py) are evaluated in the same step, after the build."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.assets.metadata import column_schema, engine_jobs_metadata, engine_kinds, table_name_metadata
from cdp_assets.checks import check_results, check_specs
from cdp_assets.checks.hist_union import CHECKS, hist_union_results
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.assets.run_config import IncrementalConfig
from cdp_assets.config.models import LoadedConfig, SourceConfig, SourceObject
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.assets.automation import downstream_condition
from cdp_assets.incremental import BuildResult, build_hist_union
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql import incremental as inc

GROUP = "hist_union"


def hist_union_ref(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> TableRef:
    return TableRef(loaded.pipeline.src_schema, f"{source.name}_{obj.name}_hist_union")


def hist_union_reads(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> list[TableRef]:
    """What a hist-union step describes before its build: its inputs, its table and its state."""
    target = hist_union_ref(loaded, source, obj)
    return [*ingestion_refs(loaded, source, obj).values(), target, inc.state_ref(target)]


def build_hist_union_asset(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    inputs = ingestion_refs(loaded, source, obj)  # historical first, so incremental wins ties
    target = hist_union_ref(loaded, source, obj)
    every_step_reads = [ref for s, o in loaded.pipeline.source_objects() for ref in hist_union_reads(loaded, s, o)]

    @asset(
        pool=WAREHOUSE_POOL,
        key=table_key(target),
        group_name=GROUP,
        deps=[table_key(r) for r in inputs.values()],
        description=f"{source.name}/{obj.name}: historical and incremental rows, de-duplicated"
        + (f" by {obj.primary_key}" if obj.primary_key else " (exact duplicates)"),
        metadata={"primary_key": ", ".join(obj.primary_key), **table_name_metadata(target)},
        kinds=engine_kinds(loaded),
        automation_condition=downstream_condition(),
        check_specs=check_specs(table_key(target), CHECKS),
    )
    def _hist_union(
        context: AssetExecutionContext, warehouse: WarehouseResource, config: IncrementalConfig
    ) -> MaterializeResult:
        with warehouse.session():
            # Which inputs exist, with their columns, and the table and its state (one description:
            # an engine holding the run keeps it for the build). The inputs' row counts come from
            # the build, which measures them for its state (with their newest load times).
            reads = hist_union_reads(loaded, source, obj)
            warehouse.describe_ahead(reads, every_step_reads)  # the first step describes every step's
            described = warehouse.describe_tables(reads)
            present = [(ref, [c for c, _ in described[ref]]) for ref in inputs.values() if described[ref] is not None]
            if not present:
                raise RuntimeError(
                    f"{target.display}: none of its inputs {[r.display for r in inputs.values()]} exists; "
                    "materialize the ingestion assets first"
                )
            built = build_hist_union(
                warehouse,
                target,
                present,
                source.incremental_field,
                list(obj.primary_key),
                config.full_refresh,
                keep_measures=True,
            )
            # The table's description (its dagster/column_schema) and its checks' measures, with
            # the inputs' row counts when the build did not count them (one query): as the build
            # kept them with its state where it did (read back from it after a full build).
            columns, checked, counted = hist_union_results(
                warehouse,
                target,
                built.rows,
                present,
                list(obj.primary_key),
                count_inputs=built.input_rows is None,
                kept=built.measures,
                kept_read_sql=built.kept_read_sql,
                measured_by=built.measured_by or "full scan",
            )
            counts = built.input_rows if built.input_rows is not None else counted
            input_rows = {ref.display: n for (ref, _), n in zip(present, counts)}
            if built.rows_read is None:  # a full build: it read every input row
                built.rows_read = sum(counts)
            table = {**table_name_metadata(target), **column_schema(columns)}
        context.log.info(f"{target.display}: {built.rows} row(s) from {input_rows}; {build_summary(built)}")
        return MaterializeResult(
            metadata={
                "dagster/row_count": built.rows,
                "input_rows": input_rows,
                "table": target.display,
                **build_metadata(built),
                **engine_jobs_metadata(warehouse),
                **table,
            },
            check_results=check_results(table_key(target), CHECKS, checked),
        )

    return _hist_union


def build_summary(built: BuildResult) -> str:
    """How a table was built, for the log: full (and why), incremental or unchanged."""
    if built.mode == "full":
        return f"full build ({built.reason})"
    if built.mode == "unchanged":
        return "unchanged: no row loaded since the last run"
    return f"incremental: {built.rows_read} new row(s), {built.changed_keys} key(s) replaced"


def build_metadata(built: BuildResult) -> dict:
    return {
        "build_mode": built.mode,
        "full_build_reason": built.reason,
        "rows_read": built.rows_read,
        "keys_replaced": built.changed_keys,
    }


def build_hist_union_assets(loaded: LoadedConfig) -> list:
    return [build_hist_union_asset(loaded, s, o) for s, o in loaded.pipeline.source_objects()]
