"""Sources that are tables already in the warehouse (``connector: table``): loaded by watermark,
and the watermark sensor requests a load only when max(incremental_field) moves forward."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, build_sensor_context

from cdp_assets.config import load_config
from cdp_assets.definitions import build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project

pytestmark = pytest.mark.pipeline  # whole-pipeline runs over a warehouse table source

CONTACTS = TableRef("crm", "contacts")
LOADED = TableRef("acme_src", "crm_contacts")


def _with_crm(cfg):
    cfg["sources"].append(
        {
            "name": "crm",
            "connector": {"kind": "table", "database": "crm"},
            "objects": ["contacts"],
            "mode": "incremental",
        }
    )


def _insert(wh: DuckDBWarehouse, rows: list[tuple]) -> None:
    wh.execute('CREATE SCHEMA IF NOT EXISTS "crm"')
    wh.execute('CREATE TABLE IF NOT EXISTS "crm"."contacts" (id VARCHAR, email VARCHAR, updated_at TIMESTAMP)')
    for row in rows:
        wh.query('INSERT INTO "crm"."contacts" VALUES (?, ?, CAST(? AS TIMESTAMP)) RETURNING id', list(row))


def test_a_warehouse_table_loads_by_watermark_and_the_sensor_follows_it(tmp_path):
    loaded = load_config(write_project(tmp_path, records=60, mutate=_with_crm))
    wh = DuckDBWarehouse(path=str(loaded.duckdb_path))
    _insert(
        wh,
        [
            ("1", "a@x.com", "2024-06-01 10:00:00"),
            ("2", "b@x.com", "2024-06-01 11:00:00"),
            ("3", None, "2024-06-01 12:00:00"),
        ],
    )
    defs = build_definitions(loaded)
    sensor = defs.resolve_sensor_def("crm_watermark")
    instance = DagsterInstance.ephemeral()

    def tick(cursor=None):
        with build_sensor_context(
            instance=instance, definitions=defs, cursor=cursor, resources={"warehouse": wh}
        ) as context:
            return sensor.evaluate_tick(context)

    first = tick()
    assert [r.tags["cdp/watermark"] for r in first.run_requests] == ["2024-06-01 12:00:00"]
    result = run_pipeline(loaded, instance)
    assert result.success and all(check_results(result).values())
    assert wh.row_count(LOADED) == 3
    assert not tick(first.cursor).run_requests  # nothing newer
    assert run_pipeline(loaded, instance).success and wh.row_count(LOADED) == 3  # a rerun loads nothing

    _insert(wh, [("4", "d@x.com", "2024-06-02 09:00:00"), ("5", "e@x.com", "2024-06-02 10:00:00")])
    second = tick(first.cursor)
    assert [r.run_key for r in second.run_requests] == ["crm/contacts/2024-06-02 10:00:00"]
    assert run_pipeline(loaded, instance).success
    loaded_ids = sorted(wh.fetch(f"SELECT id FROM {LOADED.sql}")["id"])
    assert loaded_ids == ["1", "2", "3", "4", "5"]  # the new rows once, the old ones not again

    wh.execute('DELETE FROM "crm"."contacts" WHERE id IN (\'4\', \'5\')')  # the source went backwards
    third = tick(second.cursor)
    assert not third.run_requests and third.cursor == second.cursor
