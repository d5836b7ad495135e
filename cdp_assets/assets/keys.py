"""Asset keys: ``[schema, table]``, so the asset graph reads like the warehouse; and the raw
tables each source object loads (named here, without the ingestion asset, so that the checks its
step evaluates can name them too)."""

from dagster import AssetKey

from cdp_assets.config.models import LoadedConfig, SourceConfig, SourceObject
from cdp_assets.sql.dialects import TableRef


def table_key(ref: TableRef) -> AssetKey:
    return AssetKey([ref.schema, ref.name])


def ref_of(key: AssetKey, catalog: str | None = None) -> TableRef:
    schema, name = key.path[-2], key.path[-1]
    return TableRef(schema, name, catalog)


def ingestion_refs(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> dict[str, TableRef]:
    """{mode: raw table} of one source object: ``historical`` and/or ``incremental``."""
    schema = loaded.pipeline.src_schema
    refs = {}
    if source.loads_historical:
        refs["historical"] = TableRef(schema, f"{source.name}_{obj.name}_hist")
    if source.loads_incremental:
        refs["incremental"] = TableRef(schema, f"{source.name}_{obj.name}")
    return refs
