"""One bookkeeping unit per ingestion step (loading.StepBooks), on real DuckDB: the historical
load's records are written with the incremental load's rows, in one append, and what each load
logs is what it did, also when the incremental load fails."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from cdp_assets.assets.ingestion import build_ingestion_asset
from cdp_assets.config import load_config
from cdp_assets.connectors import local_files
from cdp_assets.connectors.loading import LOG_TABLE, StepBooks, merge_frames, new_rejections
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import warehouse_for, write_project
from cdp_assets_tests.phases.test_ingestion import (
    FILES,
    HEADER,
    HIST,
    LOG,
    REJECTED,
    SCHEMA,
    TABLE,
    settle,
    hist,
    hst,
    incr,
    inc,
    make_source,
    write_csv,
)
from cdp_assets_tests.statement_counts import OUTSIDE, counting


@pytest.mark.parametrize("native", [True, False], ids=["duckdb_readers", "python_reader"])
def test_a_steps_two_loads_write_their_records_in_one_append(tmp_path: Path, native: bool):
    folder = tmp_path / "data"
    write_csv(hist(folder, "h.csv"), HEADER, [["1", "a@x.com", "2024-01-01"], ["2", "b@x.com", "2024-01-02", "extra"]])
    write_csv(incr(folder, "i.csv"), HEADER, [["3", "c@x.com", "2024-02-01"], ["4", "d@x.com"]])
    source = make_source(folder)
    sent: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"), native_file_reads=native), sent)
    books = StepBooks()
    with wh.session():
        historical = hst(wh, source, folder, books=books)
        assert historical.records_loaded == 1 and wh.table_exists(HIST)
        # Replaced first; its records wait for the step's unit.
        assert not wh.table_exists(LOG) and not wh.table_exists(FILES) and not wh.table_exists(REJECTED)
        before = len(sent)
        incremental = inc(wh, source, folder, books=books)
        books.flush(wh)  # nothing left: the incremental load wrote everything
        # One load per table, each once: both loads' rejections, file records and log rows together.
        loads = [what for step, kind, what in sent[before:] if kind == "dataframe_loads" and step == OUTSIDE]
        tables = [REJECTED.display, FILES.display, LOG.display]
        assert sorted(loads) == sorted(f"append {t}" for t in ([] if native else [TABLE.display]) + tables)
        log = wh.fetch(f"SELECT mode, status, records_loaded, records_rejected FROM {LOG.sql} ORDER BY mode")
        files = wh.fetch(f"SELECT mode, file FROM {FILES.sql} ORDER BY mode")
        rejected = wh.fetch(f"SELECT mode, file, row FROM {REJECTED.sql} ORDER BY mode")
        loaded = wh.fetch(f"SELECT customer_id FROM {TABLE.sql}")
    assert incremental.records_loaded == 1 and list(loaded["customer_id"]) == ["3"]
    assert log.values.tolist() == [["historical", "success", 1, 1], ["incremental", "success", 1, 1]]
    assert files.values.tolist() == [["historical", "h.csv"], ["incremental", "i.csv"]]
    assert rejected.values.tolist() == [["historical", "h.csv", 3], ["incremental", "i.csv", 3]]


def test_rows_the_step_is_about_to_record_count_as_recorded(tmp_path: Path):
    """A rejection kept for the step's unit is not recorded twice by a later load of the step
    (as it is not when it was already written)."""
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    row = pd.DataFrame({"file": ["f.csv"], "row": [2], "reason": ["bad"], "file_version": ["v1"]})
    other = row.assign(row=[5])
    books = StepBooks()
    books.defer([(REJECTED, row)])
    with wh.session():
        kept = new_rejections(wh, TABLE, [pd.concat([row, other], ignore_index=True)], books=books)
        alone = new_rejections(wh, TABLE, [pd.concat([row, other], ignore_index=True)])
    assert kept["row"].tolist() == [5]
    assert alone["row"].tolist() == [2, 5]


def test_the_steps_unit_lands_the_loads_rows_before_any_record(tmp_path: Path):
    """On an engine without transactions (Treasure Data) the frames land in order: the incremental
    rows first, then the records of both loads, the log last."""
    data, files = TableRef(SCHEMA, "t"), TableRef(SCHEMA, "ingestion_files")
    landed: list[TableRef] = []

    class Recording(DuckDBWarehouse):
        def append_frames(self, frames, statements=()):
            landed.extend(ref for ref, _ in frames)
            super().append_frames(frames, statements)

    wh = Recording(path=str(tmp_path / "wh.duckdb"))
    books = StepBooks()
    books.defer([(files, pd.DataFrame({"f": ["h"]})), (LOG, pd.DataFrame({"n": [1]}))])
    with wh.session():
        books.write(
            wh, [(data, pd.DataFrame({"x": [1]})), (files, pd.DataFrame({"f": ["i"]})), (LOG, pd.DataFrame({"n": [2]}))]
        )
        assert wh.fetch(f"SELECT f FROM {files.sql} ORDER BY f")["f"].tolist() == ["h", "i"]
    assert landed == [data, files, LOG]


def test_merged_frames_are_one_per_table_with_the_log_last():
    log, files, data = TableRef(SCHEMA, LOG_TABLE), TableRef(SCHEMA, "ingestion_files"), TableRef(SCHEMA, "t")
    merged = merge_frames(
        [
            (log, pd.DataFrame({"n": [1]})),
            (files, pd.DataFrame({"f": ["a"]})),
            (data, pd.DataFrame({"x": [1]})),
            (files, pd.DataFrame({"f": ["b"]})),
            (log, pd.DataFrame({"n": [2]})),
        ]
    )
    assert [ref for ref, _ in merged] == [files, data, log]
    assert merged[0][1]["f"].tolist() == ["a", "b"] and merged[2][1]["n"].tolist() == [1, 2]


def test_a_failed_incremental_load_leaves_the_historical_load_logged_and_nothing_of_its_own(tmp_path: Path):
    loaded = load_config(write_project(tmp_path, records=20))
    source = next(s for s in loaded.pipeline.sources if s.name == "shop")
    obj = next(o for o in source.objects if o.name == "customers")
    # An incremental file without the watermark column: the incremental load fails, naming it.
    write_csv(loaded.source_paths["shop"] / "customers" / "customers_2024-06-03.csv", ["customer_id"], [["x"]])
    result = materialize(
        [build_ingestion_asset(loaded, source, obj)],
        resources={"warehouse": warehouse_for(loaded)},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "customers_2024-06-03.csv" in failure.event_specific_data.error.to_string()
    materialized = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    assert materialized == ["acme_src/shop_customers_hist"]
    wh = warehouse_for(loaded)
    log = wh.fetch(f"SELECT mode, status, records_loaded FROM {TableRef('acme_src', LOG_TABLE).sql} ORDER BY mode")
    modes = wh.fetch("SELECT DISTINCT mode FROM acme_src.ingestion_files")
    assert log["mode"].tolist() == ["historical", "incremental"]
    assert log["status"].tolist() == ["success", "failed"] and int(log["records_loaded"].iloc[0]) > 0
    assert modes["mode"].tolist() == ["historical"]  # no file of the failed load is recorded as loaded
    assert wh.table_exists(TableRef("acme_src", "shop_customers_hist"))
    assert not wh.table_exists(TableRef("acme_src", "shop_customers"))


def test_a_second_step_takes_the_unchanged_files_versions_from_its_start_without_hashing_them(
    tmp_path: Path, monkeypatch
):
    """The step's start query reads each file's recorded status with its version
    (``StepStart.records``): a file whose status is unchanged is neither hashed nor read again."""
    loaded = load_config(write_project(tmp_path, records=20))
    source = next(s for s in loaded.pipeline.sources if s.name == "shop")
    obj = next(o for o in source.objects if o.name == "customers")
    folder = loaded.source_paths["shop"] / "customers"
    settle(*[p for p in folder.rglob("*") if p.is_file()])
    hashed: list[str] = []
    real = local_files.file_version
    monkeypatch.setattr(local_files, "file_version", lambda path: hashed.append(path.name) or real(path))

    def step():
        return materialize(
            [build_ingestion_asset(loaded, source, obj)],
            resources={"warehouse": warehouse_for(loaded)},
            instance=DagsterInstance.ephemeral(),
        )

    assert step().success
    first = sorted(hashed)
    incremental = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert set(incremental) <= set(first) and len(incremental) >= 2
    hashed.clear()
    assert step().success
    assert hashed == []  # the historical files' fingerprint and the incremental files' statuses are unchanged
