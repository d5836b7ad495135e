"""Asset keys: ``[schema, table]``, so the asset graph reads like the warehouse."""

from dagster import AssetKey

from cdp_assets.sql.dialects import TableRef


def table_key(ref: TableRef) -> AssetKey:
    return AssetKey([ref.schema, ref.name])


def ref_of(key: AssetKey, catalog: str | None = None) -> TableRef:
    schema, name = key.path[-2], key.path[-1]
    return TableRef(schema, name, catalog)
