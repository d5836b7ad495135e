"""A watermark sensor per warehouse-table source (``connector: table``): it reads
``max(incremental_field)`` of each source table and requests that object's ingestion when the
value is beyond the cursor. The run key carries the watermark, so a watermark is processed once;
a table whose newest value went backwards (rebuilt, truncated) moves nothing and requests
nothing, so no row is dropped and none loaded twice."""

from __future__ import annotations

import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.config.models import LoadedConfig, SourceConfig, TableConnector
from cdp_assets.engines.base import WarehouseError, WarehouseResource
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import source_table_watermark_sql


def build_watermark_sensor(loaded: LoadedConfig, source: SourceConfig):
    conn = source.connector
    assert isinstance(conn, TableConnector)
    keys_by_object = {
        obj.name: [table_key(r) for r in ingestion_refs(loaded, source, obj).values()] for obj in source.objects
    }

    @sensor(
        name=f"{source.name}_watermark",
        description=(
            f"Starts ingestion of {source.name} when max({source.incremental_field}) "
            f"of a table in {conn.database} moves forward."
        ),
        minimum_interval_seconds=loaded.pipeline.sensors.minimum_interval_seconds,
        asset_selection=[k for keys in keys_by_object.values() for k in keys],
        default_status=DefaultSensorStatus(loaded.pipeline.sensors.default_status.upper()),
    )
    def _watermark(context: SensorEvaluationContext, warehouse: WarehouseResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        requests, notes = [], []
        for obj in source.objects:
            table = TableRef(conn.database, obj.name)
            try:
                if not warehouse.table_exists(table):
                    notes.append(f"{table.display} does not exist")
                    continue
                value = warehouse.fetch(source_table_watermark_sql(table, source.incremental_field)).iloc[0, 0]
            except WarehouseError as exc:  # a run holding the database, a network blip: next tick
                notes.append(f"{table.display}: {exc.engine_message.splitlines()[0]}")
                continue
            if value is None or value != value:
                continue
            value = str(value)
            previous = seen.get(obj.name)
            if previous is not None and value <= previous:
                continue  # nothing newer (or the table went backwards: keep the cursor)
            seen[obj.name] = value
            requests.append(
                RunRequest(
                    run_key=f"{source.name}/{obj.name}/{value}",
                    asset_selection=keys_by_object[obj.name],
                    tags={"cdp/source": source.name, "cdp/object": obj.name, "cdp/watermark": value},
                )
            )
        cursor = json.dumps(seen, sort_keys=True)
        if not requests:
            return SensorResult(skip_reason=SkipReason("; ".join(notes) or "no table has newer rows"), cursor=cursor)
        return SensorResult(run_requests=requests, cursor=cursor)

    return _watermark


def build_watermark_sensors(loaded: LoadedConfig) -> list:
    return [
        build_watermark_sensor(loaded, s) for s in loaded.pipeline.sources if isinstance(s.connector, TableConnector)
    ]
