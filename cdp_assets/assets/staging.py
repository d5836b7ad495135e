"""Staging: standardised identifiers and cleaned names, one table per source object."""


from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from cdp_assets.assets.hist_union import build_metadata, build_summary, hist_union_ref
from cdp_assets.assets.keys import table_key
from cdp_assets.assets.metadata import engine_jobs_metadata
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.assets.run_config import IncrementalConfig
from cdp_assets.config.models import LoadedConfig, SourceConfig, SourceObject
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.incremental import build_staging
from cdp_assets.assets.automation import downstream_condition
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import rule_counts, rule_counts_sql, staged_columns, staging_sql

GROUP = "staging"
# Materialization metadata: {output column: {rule, parsed, null, unparseable, unparseable_pct}}.
RULE_COUNTS = "rule_counts"


def staging_ref(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> TableRef:
    return TableRef(loaded.pipeline.stg_schema, f"{source.name}_{obj.name}_stg")


def staging_rules(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    return loaded.pipeline.staging.get(f"{source.name}_{obj.name}", {})


def staging_query(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject, upstream: TableRef, columns: list[str]) -> str:
    """The staging statement of one source object, with its table-level options."""
    options = loaded.pipeline.staging_tables.get(f"{source.name}_{obj.name}")
    dedupe = options.dedupe if options is not None else None
    return staging_sql(upstream, columns, staging_rules(loaded, source, obj), dedupe, source.incremental_field)


def build_staging_asset(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    upstream = hist_union_ref(loaded, source, obj)
    target = staging_ref(loaded, source, obj)
    rules = staging_rules(loaded, source, obj)

    @asset(
        pool=WAREHOUSE_POOL,
        key=table_key(target),
        group_name=GROUP,
        deps=[table_key(upstream)],
        automation_condition=downstream_condition(),
        description=f"{source.name}/{obj.name} standardised: "
        + (", ".join(c.output for c in staged_columns(rules)) or "no rules, columns pass through"),
    )
    def _staging(
        context: AssetExecutionContext, warehouse: WarehouseResource, config: IncrementalConfig
    ) -> MaterializeResult:
        columns = staged_columns(rules)
        options = loaded.pipeline.staging_tables.get(f"{source.name}_{obj.name}")
        with warehouse.session():
            built = build_staging(
                warehouse, target, upstream, warehouse.columns(upstream),
                lambda ref, cols: staging_query(loaded, source, obj, ref, cols), list(obj.primary_key),
                row_by_row=options is None or options.dedupe is None, full_refresh=config.full_refresh,
            )
            rows = built.rows
            # Each rule's parsed / no-input / unparseable counts, measured once here: the
            # unparseable_share check and the report read them from this materialization.
            counts = rule_counts(columns, warehouse.fetch(rule_counts_sql(target, columns)).iloc[0]) if columns else {}
        unparseable = {out: c["unparseable"] for out, c in counts.items()}
        context.log.info(
            f"{target.display}: {rows} row(s); {build_summary(built)}; unparseable values per column: {unparseable}"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "unparseable": MetadataValue.json(unparseable),
                RULE_COUNTS: MetadataValue.json(counts),
                "table": target.display,
                **build_metadata(built),
                **engine_jobs_metadata(warehouse),
            }
        )

    return _staging


def build_staging_assets(loaded: LoadedConfig) -> list:
    return [build_staging_asset(loaded, s, o) for s, o in loaded.pipeline.source_objects()]
