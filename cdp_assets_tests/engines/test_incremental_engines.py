"""Incremental hist-union and staging equal a full refresh on the engines besides DuckDB: the
Databricks engine on local Spark (parquet tables: changes applied by rebuild and swap) and
Treasure Data through its fake REST API (rebuild and swap). One sequence of loads each: new
keys, updated keys, a late file with older timestamps, rows without a key, a historical reload."""

from __future__ import annotations

import tempfile

import pytest

from cdp_assets.engines.spark import stop_spark_session
from cdp_assets_tests.engines.test_treasure_data import engine as td_engine
from cdp_assets_tests.engines.test_treasure_data import td  # noqa: F401 - the fake's fixture
from cdp_assets_tests.phases.test_incremental import SRC, STG, apply_load, run_and_compare
from cdp_assets_tests.conftest import local_spark_warehouse

LOADS = [
    ("historical", [("C1", "a@x.com", "ann", 1), ("C2", "b@x.com", "bob", 1), ("C3", "bad", None, 1)]),
    ("incremental", [("C4", "d@x.com", "dee", 2), ("C1", "a2@x.com", "ann", 3)]),  # the input appears: full
    ("incremental", [("C2", "b2@x.com", "BOB", 4), ("C5", "e@x.com", "eve", 2), (None, "n@x.com", "nia", 2)]),
    ("incremental", [("C1", "late@x.com", "ann", 0), ("C4", "d2@x.com", "dee", 5)]),  # C1's row is late: older
    ("incremental", []),
    ("historical", [("C1", "a@x.com", "ann", 1), ("C6", "f@x.com", "fay", 1)]),  # reload: C2, C3 leave _hist
    ("incremental", [("C6", "f2@x.com", "fay", 6)]),
]
EXPECTED_MODES = ["full", "full", "incremental", "incremental", "unchanged", "full", "incremental"]


def replay(wh, loads=LOADS) -> list[str]:
    """Apply ``loads`` one by one, build incrementally, compare with the full build each time."""
    modes = []
    for n, (kind, rows) in enumerate(loads):
        apply_load(wh, n, kind, rows)
        hu_mode, _ = run_and_compare(wh, ["customer_id"])
        modes.append(hu_mode)
    return modes


@pytest.mark.spark
def test_on_local_spark_incremental_runs_equal_a_full_refresh():
    with tempfile.TemporaryDirectory() as d:
        wh = local_spark_warehouse(d)
        assert wh.upsert_mode == "rebuild"  # parquet: no MERGE, no DELETE
        try:
            with wh.session():
                assert replay(wh) == EXPECTED_MODES
                assert [t for s in (SRC, STG) for t in wh.list_tables(s) if "__cdp_new_" in t] == []
        finally:
            stop_spark_session()


def test_on_the_treasure_data_fake_incremental_runs_equal_a_full_refresh(td):  # noqa: F811
    wh = td_engine(td, database=SRC)
    assert wh.upsert_mode == "rebuild"
    # Every kind of load but the empty one and the last (each statement is a TD job: kept lean).
    picked = [0, 1, 2, 3, 5]
    assert replay(wh, [LOADS[i] for i in picked]) == [EXPECTED_MODES[i] for i in picked]
