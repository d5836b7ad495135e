"""Incremental hist-union and staging equal a full refresh on the engines besides DuckDB: the
Databricks engine on local Spark (parquet tables: changes applied by rebuild and swap) and
Treasure Data through its fake REST API (rebuild and swap). One sequence of loads each: new
keys, updated keys, a late file with older timestamps, rows without a key, a historical reload."""

from __future__ import annotations

import tempfile

import pytest

from cdp_assets_tests.engines.test_treasure_data import engine as td_engine
from cdp_assets_tests.engines.test_treasure_data import td  # noqa: F401 - the fake's fixture
from cdp_assets_tests.phases.test_incremental import (
    SRC,
    STG,
    apply_load,
    assert_built_equal_full_builds,
    run_and_compare,
)
from cdp_assets_tests.phases.test_ingestion import load_copies
from cdp_assets_tests.conftest import local_spark_session, local_spark_warehouse, shared_spark_session
from cdp_assets_tests.statement_counts import counting
from cdp_assets_tests.unify.test_incremental_unification import (
    FIXED_EVENT_LOADS,
    FIXED_EVENT_WINNERS,
    FIXED_LOADS,
    project,
    replay_deduped,
    replay_fixed,
    replay_mixed,
)

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
def test_on_local_spark_incremental_runs_equal_a_full_refresh_keep_their_measures_and_create_no_scratch_table():
    """``LOADS`` one by one through hist-union and staging built as the pipeline's assets build
    them (their checks' measures kept with their states): after every load both tables equal their
    full builds (``assert_built_equal_full_builds``) and their kept measures a full measurement
    (``test_kept_measures.run``), with the modes and the measures' ways as on DuckDB. The
    Databricks engine ``inlines_scratch_tables`` (each is a real table there, a CREATE TABLE AS
    and a DROP): hist-union's changed keys and recomputed rows, and staging's new rows, changed
    keys and staged rows, are subqueries of their readers. Fails with the flag off: each was a
    ``*_inc__cdp_new_*`` table. One replay on Spark for the three (until 2026-12-05 three tests
    replayed LOADS, its first three loads, and LOADS again with the measures: 19, 8 and 30 s)."""
    from cdp_assets_tests.phases.test_kept_measures import run

    log: list = []
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        wh = counting(local_spark_warehouse(d), log)
        assert wh.upsert_mode == "rebuild"  # parquet: no MERGE, no DELETE
        modes, kept_by = [], []
        with wh.session():
            for n, (kind, rows) in enumerate(LOADS):
                apply_load(wh, n, kind, rows)
                hu, stg = run(wh, ["customer_id"], deduped=False)
                modes.append(assert_built_equal_full_builds(wh, ["customer_id"], hu, stg)[0])
                kept_by.append(stg.measured_by)
            assert [t for s in (SRC, STG) for t in wh.list_tables(s) if "__cdp_new_" in t] == []
    assert modes == EXPECTED_MODES and kept_by == KEPT_BY
    created = [what for _, _, what in log if what.upper().startswith("CREATE TABLE")]
    assert any("__cdp_new_" in q for q in created)  # the full builds' tables, built then swapped in
    assert not [q for q in created if "_inc__cdp_new_" in q]


@pytest.mark.slow
def test_on_the_treasure_data_fake_incremental_runs_equal_a_full_refresh(td):  # noqa: F811
    wh = td_engine(td, database=SRC)
    assert wh.upsert_mode == "rebuild"
    # Every kind of load but the empty one and the last (each statement is a TD job: kept lean).
    picked = [0, 1, 2, 3, 5]
    assert replay(wh, [LOADS[i] for i in picked]) == [EXPECTED_MODES[i] for i in picked]


# ---------------------------------------------------------------------------- ingestion


@pytest.mark.spark
def test_on_local_spark_a_files_copies_of_loaded_rows_are_not_loaded_again(tmp_path):
    with local_spark_session() as wh:
        load_copies(wh, tmp_path / "data")


def test_on_the_treasure_data_fake_a_files_copies_of_loaded_rows_are_not_loaded_again(td, tmp_path):  # noqa: F811
    from cdp_assets_tests.phases.test_ingestion import SCHEMA

    load_copies(td_engine(td, database=SCHEMA), tmp_path / "data")


# ---------------------------------------------------------------------------- unification


@pytest.mark.spark
def test_on_local_spark_incremental_staged_enriched_and_master_tables_equal_their_full_builds(tmp_path):
    """The fixed sequence and the deduped events' sequence in one (``MIXED_LOADS``): four runs
    through every phase, each costing 25-45 s on local Spark (about 200 statements, a CREATE
    TABLE AS about 0.4 s), where the two sequences apart took seven. After every run each
    staged, enriched and master table equals its full build and the deduped events hold their
    winners; every build mode and replaced key count as on DuckDB (``MIXED_BUILDS``, whose
    comment derives them). The loads: the first (the events' first two in it: a partition's
    newer row wins), an update by key beside a winner moved into another partition (its old
    partition falls back to its previous row), the order merging two persons, the late customer
    row beside the late event (both lose: every enriched and master table unchanged). Left out
    here and run on DuckDB (unify/test_incremental_unification.py), each sequence in full: the
    new person (new rows and persons reach Spark's incremental builds in the nightly run of
    test_cross_engine_pipeline.py), the load with nothing new (as after the late file;
    hist-union's nothing-new branch runs on Spark in LOADS' empty load above), and the events'
    second load alone (the mixed sequence replaces its keys E2 and E4 in the next run instead)."""
    with local_spark_session() as wh:
        replay_mixed(wh, tmp_path)


@pytest.mark.slow
def test_on_the_treasure_data_fake_incremental_enriched_and_master_tables_equal_their_full_builds(td, tmp_path):  # noqa: F811
    # The loop runs incrementally too: TD has no timestamp type, so its watermark reads back as text
    # (`_covered` reads it through time_expr). Every statement is a TD job: two loads only, the first
    # and an order merging two existing persons.
    wh = td_engine(td, database=SRC)
    merge = ([], [("O4", "C1", "b@x.com", "10", 4)])
    loops: list[str] = []
    runs = replay_fixed(wh, project(tmp_path), [FIXED_LOADS[0], merge], loops)
    assert [{b.mode for b in r.values()} for r in runs] == [{"full"}, {"incremental"}]
    assert loops[len(loops) // 2 :] == ["incremental"] * (len(loops) // 2)  # the second run's loops
    assert runs[1]["customer_master"].changed_keys <= 2


# ---------------------------------------------------------------------------- dedupe


@pytest.mark.slow
def test_on_the_treasure_data_fake_a_deduped_staged_table_built_incrementally_equals_its_full_build(td, tmp_path):  # noqa: F811
    # Two loads (each statement is a TD job): the first two in one, then a partition's winner
    # updated by id into another partition (the old partition falls back to its previous row).
    wh = td_engine(td, database=SRC)
    (customers, orders, first), (_, _, second) = FIXED_EVENT_LOADS[:2]
    loads = [(customers, orders, first + second), FIXED_EVENT_LOADS[2]]
    runs = replay_deduped(wh, project(tmp_path, events="newest"), loads, FIXED_EVENT_WINNERS[1:3])
    assert [s["shop_events_stg"].mode for s, _ in runs] == ["full", "incremental"]


# ---------------------------------------------------------------------------- kept measures
# The checks' measures kept with the states (docs/checks.md, "Measures kept with the table")
# equal a full measurement of the table after every run: full builds measure in their state's
# statement, incremental ones by the rows they remove and add (rebuild and swap here).
KEPT_BY = ["full scan", "full scan", "change", "change", "kept", "full scan", "change"]


def replay_kept(wh, loads=LOADS) -> list[str]:
    """Apply ``loads`` one by one; each run's kept measures checked against the full query (``run``)."""
    from cdp_assets_tests.phases.test_kept_measures import run

    by = []
    for n, (kind, rows) in enumerate(loads):
        apply_load(wh, n, kind, rows)
        _, stg = run(wh, ["customer_id"], deduped=False)
        by.append(stg.measured_by)
    return by


@pytest.mark.slow
def test_on_the_treasure_data_fake_kept_measures_equal_a_full_measurement_after_every_run(td):  # noqa: F811
    wh = td_engine(td, database=SRC)
    loads = [LOADS[0], LOADS[1], LOADS[2], LOADS[5], LOADS[6]]
    assert replay_kept(wh, loads) == ["full scan", "full scan", "change", "full scan", "change"]
