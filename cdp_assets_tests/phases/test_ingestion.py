"""Ingestion on real DuckDB: hand-written CSV / Parquet / JSON-lines files -> raw tables + log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.config.models import SourceConfig
from cdp_assets.connectors import local_files
from cdp_assets.connectors.loading import FILES_TABLE, LOG_TABLE, load_historical, load_incremental
from cdp_assets.connectors.local_files import RACY_SECONDS
from cdp_assets.connectors.readers import SourceFileError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import FILE_STATUS

SCHEMA = "acme_src"
OBJ = "customers"
TABLE = TableRef(SCHEMA, f"shop_{OBJ}")
HIST = TableRef(SCHEMA, f"shop_{OBJ}_hist")
LOG = TableRef(SCHEMA, LOG_TABLE)
FILES = TableRef(SCHEMA, FILES_TABLE)
REJECTED = TableRef(SCHEMA, f"shop_{OBJ}_rejected")


# ---------------------------------------------------------------------------- helpers


def make_source(folder: Path, **overrides) -> SourceConfig:
    cfg = {
        "name": "shop",
        "connector": {"kind": "local_files", "path": str(folder)},
        "objects": [{"name": OBJ, "primary_key": ["customer_id"]}],
        "mode": "both",
        "incremental_field": "updated_at",
    }
    cfg.update(overrides)
    return SourceConfig.model_validate(cfg)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header), *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def incr(folder: Path, name: str) -> Path:
    return folder / OBJ / name


def hist(folder: Path, name: str) -> Path:
    return folder / OBJ / "historical" / name


HEADER = ["customer_id", "email", "updated_at"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def wh(tmp_path: Path):
    """One session per test, as the ingestion asset holds one per step (and it is faster)."""
    w = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    with w.session():
        yield w


def column_types(wh: DuckDBWarehouse, ref: TableRef) -> dict[str, str]:
    df = wh.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [ref.schema, ref.name],
    )
    return dict(zip(df["column_name"], df["data_type"]))


def rows(wh: DuckDBWarehouse, ref: TableRef, order: str = "customer_id") -> pd.DataFrame:
    return wh.fetch(f"SELECT * FROM {ref.sql} ORDER BY {order}")


def log_rows(wh: DuckDBWarehouse) -> pd.DataFrame:
    return wh.fetch(f"SELECT * FROM {LOG.sql} ORDER BY loaded_at")


def inc(wh, source, folder, run_id="run", books=None):
    return load_incremental(wh, source, source.objects[0], folder, SCHEMA, run_id, books)


def hst(wh, source, folder, run_id="run", books=None):
    return load_historical(wh, source, source.objects[0], folder, SCHEMA, run_id, books)


# ---------------------------------------------------------------------------- formats, names, types


def _write_messy_headers(fmt: str, folder: Path) -> None:
    header = ["Customer ID", "E-Mail Address", " Zip Code ", "Visits", "updated_at"]
    data = [
        ["C1", "a@x.com", "02134", "3", "2024-06-01 10:00:00"],
        ["C2", "b@x.com", "10001", "12", "2024-06-01 11:00:00"],
    ]
    if fmt == "csv":
        write_csv(incr(folder, "f.csv"), header, data)
    elif fmt == "parquet":
        df = pd.DataFrame(data, columns=header)
        df["Visits"] = df["Visits"].astype("int64")  # a typed column still lands as text
        df["updated_at"] = pd.to_datetime(df["updated_at"])  # a real timestamp column
        write_parquet(incr(folder, "f.parquet"), df)
    else:
        write_jsonl(
            incr(folder, "f.jsonl"),
            [{h: (int(v) if h == "Visits" else v) for h, v in zip(header, r)} for r in data],
        )


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_headers_normalised_and_every_column_text_except_watermark(fmt, folder, wh):
    _write_messy_headers(fmt, folder)
    result = inc(wh, make_source(folder), folder)
    assert result.records_loaded == 2
    types = column_types(wh, TABLE)
    assert list(types) == [
        "customer_id",
        "e_mail_address",
        "zip_code",
        "visits",
        "updated_at",
        "_cdp_file",
        "_cdp_loaded_at",
    ]
    for col in ("customer_id", "e_mail_address", "zip_code", "visits", "_cdp_file"):
        assert types[col] == "VARCHAR", (col, types)
    assert types["updated_at"] == "TIMESTAMP"
    df = rows(wh, TABLE)
    assert list(df["zip_code"]) == ["02134", "10001"]  # leading zero kept: text, not a number
    assert list(df["visits"]) == ["3", "12"]
    assert list(df["updated_at"]) == [pd.Timestamp("2024-06-01 10:00:00"), pd.Timestamp("2024-06-01 11:00:00")]


def test_cdp_file_lineage_names_each_rows_file(folder, wh):
    write_csv(incr(folder, "day1.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 00:00:00"]])
    write_jsonl(
        incr(folder, "day2.jsonl"), [{"customer_id": "C2", "email": "b@x.com", "updated_at": "2024-06-02 00:00:00"}]
    )
    result = inc(wh, make_source(folder), folder)
    assert result.files == ["day1.csv", "day2.jsonl"]
    df = rows(wh, TABLE)
    assert dict(zip(df["customer_id"], df["_cdp_file"])) == {"C1": "day1.csv", "C2": "day2.jsonl"}
    assert df["_cdp_loaded_at"].notna().all()


def test_format_filter_ignores_other_extensions(folder, wh):
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 00:00:00"]])
    write_jsonl(
        incr(folder, "b.jsonl"), [{"customer_id": "C2", "email": "b@x.com", "updated_at": "2024-06-02 00:00:00"}]
    )
    source = make_source(folder, connector={"kind": "local_files", "path": str(folder), "format": "csv"})
    result = inc(wh, source, folder)
    assert result.files == ["a.csv"]
    assert list(rows(wh, TABLE)["customer_id"]) == ["C1"]


# ---------------------------------------------------------------------------- watermarks


def test_second_call_loads_nothing_and_keeps_watermark(folder, wh):
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 09:30:00"]],
    )
    source = make_source(folder)
    first = inc(wh, source, folder)
    assert (first.records_loaded, first.previous_watermark) == (2, None)
    assert first.watermark.startswith("2024-06-01 09:30:00")
    second = inc(wh, source, folder)
    assert second.records_loaded == 0
    assert second.files == []
    assert second.watermark == first.watermark == second.previous_watermark
    assert wh.row_count(TABLE) == 2


def test_a_late_file_loads_every_row_whatever_the_watermark(folder, wh):
    """Issue 15: a file arriving late with rows older than the watermark loaded 0 rows, silently.
    New files are decided by the per-file bookkeeping, not by the watermark."""
    source = make_source(folder)
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 12:00:00"]],
    )
    inc(wh, source, folder)
    write_csv(
        incr(folder, "b.csv"),
        HEADER,
        [
            ["C3", "old@x.com", "2024-05-31 23:00:00"],  # older than the watermark: loaded
            ["C4", "mid@x.com", "2024-06-01 11:59:59"],  # older than the watermark: loaded
            ["C5", "same@x.com", "2024-06-01 12:00:00"],  # at the watermark, another row: loaded
            ["C6", "newer@x.com", "2024-06-02 02:00:00"],
        ],
    )
    result = inc(wh, source, folder)
    assert (result.records_loaded, result.records_skipped, result.unchanged_files) == (4, 0, 1)
    assert result.files == ["b.csv"]
    assert result.previous_watermark.startswith("2024-06-01 12:00:00")
    assert result.watermark.startswith("2024-06-02 02:00:00")  # never moves backwards
    assert list(rows(wh, TABLE)["customer_id"]) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    files = wh.fetch(f"SELECT * FROM {FILES.sql} ORDER BY loaded_at")
    assert list(files["file"]) == ["a.csv", "b.csv"] and list(files["records_loaded"]) == [2, 4]
    assert files["file_version"].str.fullmatch("[0-9a-f]{64}").all()


def test_an_unchanged_file_is_not_read_again(folder, wh, caplog):
    source = make_source(folder)
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 08:00:00"]])
    inc(wh, source, folder)
    caplog.clear()
    again = inc(wh, source, folder)
    assert (again.records_loaded, again.unchanged_files, again.files) == (0, 1, [])
    assert not [r for r in caplog.messages if "read file" in r]
    assert "1 file(s) unchanged since they were loaded" in log_rows(wh)["message"].iloc[-1]


def test_a_file_caught_half_written_then_completed_loads_the_rest_and_supersedes_its_rejection(folder, wh):
    source = make_source(folder)
    path = incr(folder, "a.csv")
    path.parent.mkdir(parents=True)
    complete = "customer_id,email,updated_at\nC1,a@x.com,2024-06-01 08:00:00\nC2,b@x.com,2024-06-01 09:00:00\n"
    path.write_text(complete[: complete.index("b@x.com") + 4])  # the writer is in the middle of row 3
    first = inc(wh, source, folder, "r1")
    assert (first.records_loaded, first.records_rejected) == (1, 1)
    path.write_text(complete)
    second = inc(wh, source, folder, "r2")
    assert (second.records_loaded, second.skipped_duplicate, second.records_rejected) == (1, 1, 0)
    assert list(rows(wh, TABLE)["customer_id"]) == ["C1", "C2"]
    rejected = wh.fetch(f"SELECT * FROM {REJECTED.sql}")
    assert len(rejected) == 1 and rejected["superseded_at"].notna().all()
    files = wh.fetch(f"SELECT file_version FROM {FILES.sql} ORDER BY loaded_at")
    assert rejected["superseded_by_file_version"][0] == files["file_version"].iloc[-1] != rejected["file_version"][0]
    log = log_rows(wh)
    assert list(log["records_skipped_duplicate"]) == [0, 1]
    assert "skipped 1 row(s) already loaded (exact copies of rows in the table)" in log["message"].iloc[-1]


def test_a_file_replaced_with_different_content_loads_its_new_rows(folder, wh):
    source = make_source(folder)
    path = write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 09:00:00"]],
    )
    inc(wh, source, folder)
    # the same name, the same size and modification time, one row corrected: the content hash differs
    st = path.stat()
    write_csv(path, HEADER, [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "c@x.com", "2024-06-01 09:00:00"]])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    result = inc(wh, source, folder)
    assert (result.records_loaded, result.skipped_duplicate) == (1, 1)
    assert list(rows(wh, TABLE, "customer_id, email")["email"]) == ["a@x.com", "b@x.com", "c@x.com"]


def settle(*paths: Path) -> None:
    """Wait until the files' last change is older than ``RACY_SECONDS``: their status is kept."""
    newest = max(p.stat().st_ctime for p in paths)
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.1 - time.time()))


@pytest.fixture(params=["native", "python"])
def reader_wh(request, tmp_path: Path):
    """DuckDB reading the files with its own readers, or parsing them in Python (the path the
    other engines keep)."""
    w = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"), native_file_reads=request.param == "native")
    with w.session():
        yield w


def test_a_file_whose_status_is_unchanged_is_not_hashed_again_and_any_change_is_hashed(folder, reader_wh, monkeypatch):
    """A load keeps each file's status (size, modification and change times, inode) with its
    hash; a later load that finds the same status takes the hash without reading a byte. A file
    rewritten at the same size with its modification time set back changes its change time
    (which cannot be set back): it is hashed, and its new row loaded."""
    wh = reader_wh
    hashed: list[str] = []
    real = local_files.file_version
    monkeypatch.setattr(local_files, "file_version", lambda path: hashed.append(path.name) or real(path))
    source = make_source(folder)
    a = write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 08:00:00"]])
    b = write_csv(incr(folder, "b.csv"), HEADER, [["C2", "b@x.com", "2024-06-01 09:00:00"]])
    settle(a, b)
    assert inc(wh, source, folder, "r1").records_loaded == 2
    assert sorted(hashed) == ["a.csv", "b.csv"]
    statuses = wh.fetch(f"SELECT file, {FILE_STATUS} FROM {FILES.sql} ORDER BY file")
    assert statuses[FILE_STATUS].notna().all()
    hashed.clear()
    again = inc(wh, source, folder, "r2")
    assert (again.records_loaded, again.unchanged_files, hashed) == (0, 2, [])
    # b rewritten at its size, its modification time set back: hashed, its changed row loaded.
    st = b.stat()
    write_csv(b, HEADER, [["C3", "b@x.com", "2024-06-01 09:00:00"]])
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (b.stat().st_size, b.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    settle(b)  # told by its change time alone, not by having changed just now
    changed = inc(wh, source, folder, "r3")
    assert (changed.records_loaded, changed.unchanged_files, hashed) == (1, 1, ["b.csv"])
    assert list(rows(wh, TABLE)["customer_id"]) == ["C1", "C2", "C3"]


def test_a_file_changed_just_before_its_load_keeps_no_status_and_is_hashed_at_every_load(folder, reader_wh):
    """Within ``RACY_SECONDS`` of its last change a file's status is not kept: on a file system
    whose clock ticks coarsely, a write in the same tick would keep it."""
    wh = reader_wh
    source = make_source(folder)
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 08:00:00"]])
    inc(wh, source, folder)
    assert wh.fetch(f"SELECT {FILE_STATUS} FROM {FILES.sql}")[FILE_STATUS].isna().all()


def test_a_file_deleted_and_re_added_loads_nothing_twice(folder, wh):
    source = make_source(folder)
    data = [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 09:00:00"]]
    path = write_csv(incr(folder, "a.csv"), HEADER, data)
    inc(wh, source, folder)
    path.unlink()
    assert inc(wh, source, folder).records_loaded == 0
    write_csv(path, HEADER, data)  # the same content back, with a new modification time
    back = inc(wh, source, folder)
    assert (back.records_loaded, back.unchanged_files, back.records_skipped) == (0, 1, 0)
    write_csv(path, HEADER, [*data, ["C3", "c@x.com", "2024-05-01 00:00:00"]])  # re-added with one more (older) row
    more = inc(wh, source, folder)
    assert (more.records_loaded, more.skipped_duplicate) == (1, 2)
    assert list(rows(wh, TABLE)["customer_id"]) == ["C1", "C2", "C3"]


def test_a_failed_load_records_no_file_as_loaded(folder, wh):
    source = make_source(folder)
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 08:00:00"]])
    broken = incr(folder, "b.csv")
    broken.write_text('customer_id,email,updated_at\nC2,"b@x.com,2024-06-01 09:00:00\n')  # a quote never closed
    with pytest.raises(SourceFileError, match="line 2"):
        inc(wh, source, folder)
    assert not wh.table_exists(TABLE) and not wh.table_exists(FILES)
    write_csv(broken, HEADER, [["C2", "b@x.com", "2024-06-01 09:00:00"]])
    result = inc(wh, source, folder)
    assert (result.records_loaded, result.files) == (2, ["a.csv", "b.csv"])
    assert sorted(wh.fetch(f"SELECT file FROM {FILES.sql}")["file"]) == ["a.csv", "b.csv"]


def test_a_historical_files_rejection_is_superseded_when_the_file_is_fixed(folder, wh):
    source = make_source(folder)
    h = write_csv(
        hist(folder, "h.csv"), HEADER, [["C1", "a@x.com", "2023-01-01 00:00:00"], ["C2", "b@x.com", "someday"]]
    )
    assert hst(wh, source, folder).records_rejected == 1
    write_csv(h, HEADER, [["C1", "a@x.com", "2023-01-01 00:00:00"], ["C2", "b@x.com", "2023-01-02 00:00:00"]])
    assert hst(wh, source, folder).records_loaded == 2
    rejected = wh.fetch(f"SELECT mode, superseded_at, superseded_by_file_version FROM {REJECTED.sql}")
    assert list(rejected["mode"]) == ["historical"] and rejected["superseded_at"].notna().all()
    assert (
        rejected["superseded_by_file_version"][0]
        == wh.fetch(f"SELECT file_version FROM {FILES.sql} ORDER BY loaded_at")["file_version"].iloc[-1]
    )


def load_copies(wh, folder) -> None:
    """A file copied under another name (and two new files holding the same row) is a new file:
    read, and its exact copies of loaded rows are skipped and counted; a changed row loads. The
    watermark is compared as the engine stores it (a TIMESTAMP on DuckDB and Spark, text on TD):
    a fraction of a second written two ways is the same instant. The other engines run this in
    ``engines/test_incremental_engines.py``."""
    source = make_source(folder)
    data = [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 09:00:00.250000"]]
    write_csv(incr(folder, "a.csv"), HEADER, data)
    inc(wh, source, folder)
    write_csv(incr(folder, "a_copy.csv"), HEADER, [*data, ["C2", "b-changed@x.com", "2024-06-01 09:00:00.25"]])
    write_csv(incr(folder, "b.csv"), HEADER, [["C3", "c@x.com", "2024-05-01 00:00:00"]])
    write_csv(incr(folder, "b_copy.csv"), HEADER, [["C3", "c@x.com", "2024-05-01 00:00:00"]])
    result = inc(wh, source, folder)
    assert (result.records_loaded, result.skipped_duplicate, result.files) == (2, 3, ["a_copy.csv", "b.csv"])
    emails = wh.fetch(f"SELECT email FROM {TABLE.sql}")["email"]
    assert sorted(emails) == ["a@x.com", "b-changed@x.com", "b@x.com", "c@x.com"]


def test_a_copy_under_another_name_loads_only_what_is_not_loaded_yet(folder, wh):
    load_copies(wh, folder)


def test_rows_loaded_before_the_bookkeeping_existed_are_not_loaded_again(folder, wh):
    """A warehouse loaded by an earlier version has no ingestion_files rows: its files are read
    again once, and the rows they already gave are skipped as duplicates."""
    source = make_source(folder)
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C1", "a@x.com", "2024-06-01 08:00:00"]],
    )
    inc(wh, source, folder)
    wh.run(f"DROP TABLE {FILES.sql}")
    again = inc(wh, source, folder)
    assert (again.records_loaded, again.skipped_duplicate) == (0, 2)
    assert wh.row_count(TABLE) == 2  # a row the file holds twice is data, kept twice


def test_start_date_excludes_older_rows(folder, wh):
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [
            ["C1", "a@x.com", "2022-12-31 23:59:59"],
            ["C2", "b@x.com", "2023-01-01 00:00:00"],
            ["C3", "c@x.com", "2024-01-01 00:00:00"],
        ],
    )
    result = inc(wh, make_source(folder, start_date="2023-01-01T00:00:00"), folder)
    assert (result.records_loaded, result.skipped_before_start_date) == (2, 1)
    assert list(rows(wh, TABLE)["customer_id"]) == ["C2", "C3"]
    log = log_rows(wh)
    assert list(log["records_skipped_before_start_date"]) == [1]
    assert "skipped 1 row(s) older than start_date 2023-01-01 00:00:00" in log["message"][0]


def test_all_rows_before_start_date_loads_nothing_and_logs(folder, wh):
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2020-01-01 00:00:00"]])
    result = inc(wh, make_source(folder, start_date="2023-01-01T00:00:00"), folder)
    assert result.records_loaded == 0 and result.watermark is None
    assert not wh.table_exists(TABLE)
    log = log_rows(wh)
    assert list(log["records_loaded"]) == [0] and list(log["status"]) == ["success"]


@pytest.mark.parametrize("start_date", ["2023-01-01T00:00:00Z", "2023-01-01T01:00:00+01:00"])
def test_start_date_with_timezone_is_compared_in_utc(start_date, folder, wh):
    """BUG: a start_date written with a UTC offset (valid ISO 8601, accepted by the config)
    makes every incremental load fail with a pandas TypeError (tz-aware vs naive comparison)."""
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2022-12-31 23:00:00"], ["C2", "b@x.com", "2023-06-01 00:00:00"]],
    )
    result = inc(wh, make_source(folder, start_date=start_date), folder)
    assert result.records_loaded == 1
    assert list(rows(wh, TABLE)["customer_id"]) == ["C2"]


def test_watermark_values_with_different_utc_offsets_are_converted_to_utc(folder, wh):
    """BUG: one file whose timestamps carry different UTC offsets (an export spanning a DST
    change) crashes with AttributeError instead of loading (or a SourceFileError)."""
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-03-30T12:00:00+01:00"], ["C2", "b@x.com", "2024-04-01T12:00:00+02:00"]],
    )
    inc(wh, make_source(folder), folder)
    df = rows(wh, TABLE)
    assert list(df["updated_at"]) == [pd.Timestamp("2024-03-30 11:00:00"), pd.Timestamp("2024-04-01 10:00:00")]


def test_utc_timestamps_are_stored_as_naive_utc(folder, wh):
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01T12:00:00+02:00"], ["C2", "b@x.com", "2024-06-01T12:00:00+02:00"]],
    )
    inc(wh, make_source(folder), folder)
    assert column_types(wh, TABLE)["updated_at"] == "TIMESTAMP"
    assert set(rows(wh, TABLE)["updated_at"]) == {pd.Timestamp("2024-06-01 10:00:00")}


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "writer", "row_number"),
    [
        ("bad.csv", "csv", 3),  # header is line 1, so the second data row is line 3
        ("bad.jsonl", "jsonl", 2),  # JSON lines: the second line
    ],
)
def test_bad_timestamp_rejects_that_row_with_file_row_and_reason(name, writer, row_number, folder, wh):
    data = [
        ["C1", "a@x.com", "2024-06-01 00:00:00"],
        ["C2", "b@x.com", "not a date"],
        ["C3", "c@x.com", "2024-06-02 00:00:00"],
    ]
    path = incr(folder, name)
    if writer == "csv":
        write_csv(path, HEADER, data)
    else:
        write_jsonl(path, [dict(zip(HEADER, r)) for r in data])
    result = inc(wh, make_source(folder), folder)
    assert result.records_loaded == 2 and result.records_rejected == 1
    assert sorted(wh.fetch(f"SELECT customer_id FROM {TABLE.sql}")["customer_id"]) == ["C1", "C3"]
    rejected = wh.fetch(f"SELECT * FROM {TABLE.sibling('shop_customers_rejected').sql}")
    assert list(rejected["file"]) == [name] and list(rejected["row"]) == [row_number]
    assert "updated_at 'not * ****' is not a date/time" in rejected["reason"][0] and "C2" in rejected["raw"][0]
    # a rerun reads the file again but records its bad row once
    inc(wh, make_source(folder), folder)
    assert wh.row_count(TABLE.sibling("shop_customers_rejected")) == 1


def test_missing_incremental_field_names_file_and_field(folder, wh):
    path = write_csv(incr(folder, "nots.csv"), ["customer_id", "email", "modified"], [["C1", "a@x.com", "2024-06-01"]])
    with pytest.raises(SourceFileError) as err:
        inc(wh, make_source(folder), folder)
    msg = str(err.value)
    assert str(path) in msg
    assert "'updated_at'" in msg
    assert "3 column(s) are 'cust*******', 'emai*', 'modi****' (masked)" in msg  # the columns it has, masked


def test_missing_incremental_field_of_custom_name(folder, wh):
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01"]])
    with pytest.raises(SourceFileError, match=r"a\.csv.*'changed_at'"):
        inc(wh, make_source(folder, incremental_field="changed_at"), folder)


# ---------------------------------------------------------------------------- schema drift


def test_new_column_in_later_file_is_added_and_earlier_rows_are_null(folder, wh):
    source = make_source(folder)
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 00:00:00"]])
    inc(wh, source, folder)
    write_csv(
        incr(folder, "b.csv"),
        ["customer_id", "email", "Loyalty Tier", "updated_at"],
        [["C2", "b@x.com", "gold", "2024-06-02 00:00:00"]],
    )
    result = inc(wh, source, folder)
    assert result.records_loaded == 1
    types = column_types(wh, TABLE)
    assert types["loyalty_tier"] == "VARCHAR"
    df = rows(wh, TABLE)
    assert list(df["customer_id"]) == ["C1", "C2"]
    assert pd.isna(df.loc[0, "loyalty_tier"]) and df.loc[1, "loyalty_tier"] == "gold"


def test_file_missing_a_column_appends_with_null(folder, wh):
    source = make_source(folder)
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 00:00:00"]])
    inc(wh, source, folder)
    write_csv(incr(folder, "b.csv"), ["customer_id", "updated_at"], [["C2", "2024-06-02 00:00:00"]])
    inc(wh, source, folder)
    df = rows(wh, TABLE)
    assert list(df["email"].isna()) == [False, True]


# ---------------------------------------------------------------------------- historical


def test_historical_replaces_hist_and_skips_unchanged_files(folder, wh):
    source = make_source(folder)
    h1 = write_csv(
        hist(folder, "h1.csv"),
        HEADER,
        [["C1", "a@x.com", "2023-01-01 00:00:00"], ["C2", "b@x.com", "2023-02-01 00:00:00"]],
    )
    first = hst(wh, source, folder)
    assert (first.records_loaded, first.files) == (2, ["h1.csv"])
    assert first.watermark.startswith("2023-02-01")
    assert column_types(wh, HIST)["updated_at"] == "TIMESTAMP"

    # unchanged files: skipped, table untouched
    again = hst(wh, source, folder)
    assert again.records_loaded == 0 and again.files == []
    assert again.watermark == first.watermark
    assert wh.row_count(HIST) == 2
    assert log_rows(wh)["message"].iloc[-1] == "historical files unchanged"

    # a replaced file and a new one: the table is replaced, not appended to
    write_csv(h1, HEADER, [["C9", "z@x.com", "2023-03-01 00:00:00"]])
    os.utime(h1, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    write_csv(hist(folder, "h2.csv"), HEADER, [["C10", "y@x.com", "2023-04-01 00:00:00"]])
    third = hst(wh, source, folder)
    assert third.records_loaded == 2 and third.files == ["h1.csv", "h2.csv"]
    assert third.previous_watermark == first.watermark
    df = rows(wh, HIST)
    assert sorted(df["customer_id"]) == ["C10", "C9"]
    assert dict(zip(df["customer_id"], df["_cdp_file"])) == {"C9": "h1.csv", "C10": "h2.csv"}
    assert not any("__cdp_new_" in t for t in wh.list_tables(SCHEMA))


def test_incremental_load_outside_a_session(folder, tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "nosession.duckdb"))
    write_csv(incr(folder, "a.csv"), HEADER, [["C1", "a@x.com", "2024-06-01 00:00:00"]])
    assert inc(wh, make_source(folder), folder).records_loaded == 1
    assert wh.row_count(TABLE) == 1
    assert list(log_rows(wh)["records_loaded"]) == [1]


def test_historical_load_outside_a_session(folder, tmp_path):
    """BUG: outside ``warehouse.session()`` every statement gets its own DuckDB connection, so
    the swap's BEGIN TRANSACTION / DROP / ALTER / COMMIT (WarehouseResource.swap_in) run on four
    connections: COMMIT fails with 'no transaction is active' after the non-atomic swap already
    happened, and the load raises without writing its ingestion_log row.
    (load_incremental works without a session; build_table / replace_with_dataframe do not.)"""
    wh = DuckDBWarehouse(path=str(tmp_path / "nosession.duckdb"))
    source = make_source(folder)
    write_csv(hist(folder, "h1.csv"), HEADER, [["C1", "a@x.com", "2023-01-01 00:00:00"]])
    result = load_historical(wh, source, source.objects[0], folder, SCHEMA, "run")
    assert result.records_loaded == 1
    assert wh.row_count(HIST) == 1
    assert list(log_rows(wh)["records_loaded"]) == [1]


def test_historical_touching_a_file_reloads(folder, wh):
    source = make_source(folder)
    h1 = write_csv(hist(folder, "h1.csv"), HEADER, [["C1", "a@x.com", "2023-01-01 00:00:00"]])
    hst(wh, source, folder)
    os.utime(h1, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    assert hst(wh, source, folder).records_loaded == 1


def test_historical_and_incremental_are_separate_tables(folder, wh):
    source = make_source(folder)
    write_csv(hist(folder, "h.csv"), HEADER, [["C1", "old@x.com", "2023-01-01 00:00:00"]])
    write_csv(incr(folder, "i.csv"), HEADER, [["C1", "new@x.com", "2024-06-01 00:00:00"]])
    hst(wh, source, folder)
    inc(wh, source, folder)
    assert list(rows(wh, HIST)["email"]) == ["old@x.com"]
    assert list(rows(wh, TABLE)["email"]) == ["new@x.com"]


# ---------------------------------------------------------------------------- ingestion_log


def test_ingestion_log_one_row_per_load(folder, wh):
    source = make_source(folder)
    write_csv(
        incr(folder, "a.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01 08:00:00"], ["C2", "b@x.com", "2024-06-01 09:00:00"]],
    )
    write_csv(hist(folder, "h.csv"), HEADER, [["C0", "h@x.com", "2023-01-01 00:00:00"]])
    inc(wh, source, folder, "r1")
    inc(wh, source, folder, "r2")
    hst(wh, source, folder, "r3")
    hst(wh, source, folder, "r4")
    write_csv(incr(folder, "b.csv"), HEADER, [["C3", "c@x.com", "2024-06-02 00:00:00"]])
    inc(wh, source, folder, "r5")

    log = log_rows(wh)
    assert list(log["run_id"]) == ["r1", "r2", "r3", "r4", "r5"]
    assert set(log["source"]) == {"shop"} and set(log["object"]) == {OBJ}
    assert list(log["mode"]) == ["incremental", "incremental", "historical", "historical", "incremental"]
    assert list(log["status"]) == ["success"] * 5
    assert list(log["records_loaded"]) == [2, 0, 1, 0, 1]
    wm = [w[:19] for w in log["watermark"]]
    assert wm == [
        "2024-06-01 09:00:00",
        "2024-06-01 09:00:00",
        "2023-01-01 00:00:00",
        "2023-01-01 00:00:00",
        "2024-06-02 00:00:00",
    ]
    prev = list(log["previous_watermark"])
    assert pd.isna(prev[0]) and prev[1][:19] == "2024-06-01 09:00:00" and prev[4][:19] == "2024-06-01 09:00:00"
    assert list(log["files"]) == ["a.csv", "", "h.csv", "", "b.csv"]
    assert log["files_fingerprint"].iloc[2] == log["files_fingerprint"].iloc[3]
    assert pd.isna(log["files_fingerprint"].iloc[0])
    # the table and the log never disagree
    assert wh.row_count(TABLE) == int(log.loc[log["mode"] == "incremental", "records_loaded"].sum())


# ---------------------------------------------------------------------------- raw values (JSON lines)


def test_jsonl_integer_column_with_nulls_keeps_the_files_text(folder, wh):
    """BUG: a JSON number in a column that also has nulls is read as float, so the raw table
    holds '2125550100.0' instead of '2125550100' (and the phone rule then rejects it)."""
    write_jsonl(
        incr(folder, "e.jsonl"),
        [
            {"customer_id": "C1", "phone": 2125550100, "updated_at": "2024-06-01 00:00:00"},
            {"customer_id": "C2", "phone": None, "updated_at": "2024-06-01 00:00:01"},
        ],
    )
    inc(wh, make_source(folder), folder)
    df = rows(wh, TABLE)
    assert df.loc[0, "phone"] == "2125550100"
    assert pd.isna(df.loc[1, "phone"])


def test_jsonl_date_like_column_keeps_the_files_text(folder, wh):
    """BUG: pandas.read_json converts columns with date-like names (``*_at``, ``modified``,
    ``*_date``...) so a non-watermark column loses what the file said."""
    write_jsonl(
        incr(folder, "e.jsonl"),
        [{"customer_id": "C1", "modified": "01/02/2024", "updated_at": "2024-06-01 00:00:00"}],
    )
    inc(wh, make_source(folder), folder)
    assert rows(wh, TABLE).loc[0, "modified"] == "01/02/2024"


# ---------------------------------------------------------------------------- edge cases (issue 15)


def test_parquet_struct_and_list_columns_are_json_text_the_engine_can_read(folder, wh):
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "addr": [{"street": "Main St 1", "tags": ["a", "b"], "since": pd.Timestamp("2020-01-02")}, None],
            "scores": [[1.5, 2.0], []],
            "updated_at": ["2024-06-01 00:00:00", "2024-06-01 00:00:01"],
        }
    )
    write_parquet(incr(folder, "n.parquet"), df)
    inc(wh, make_source(folder), folder)
    got = wh.fetch(
        "SELECT customer_id, addr, json_extract_string(addr, '$.street') AS street, json_extract(addr, "
        f"'$.tags[1]') AS tag, json_array_length(scores) AS n FROM {TABLE.sql} ORDER BY customer_id"
    )
    assert got["addr"][0] == '{"street": "Main St 1", "tags": ["a", "b"], "since": "2020-01-02T00:00:00"}'
    assert (got["street"][0], json.loads(got["tag"][0]), list(got["n"])) == ("Main St 1", "b", [2, 0])
    assert pd.isna(got["addr"][1])


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("42", "number"),
        ("-1.5e3", "number"),
        ('"text"', "string"),
        ("[1]", "array"),
        ("true", "boolean"),
        ("null", "null"),
    ],
)
def test_a_json_line_that_is_not_an_object_is_named_by_its_json_type(line, kind, folder, wh):
    path = incr(folder, "s.jsonl")
    path.parent.mkdir(parents=True)
    path.write_text(line + "\n")
    inc(wh, make_source(folder), folder)
    reason = wh.fetch(f"SELECT reason FROM {REJECTED.sql}")["reason"][0]
    assert reason.startswith(f"is a JSON {kind}, not an object"), reason


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf16_files_are_read(codec, fmt, folder, wh):
    """Issue 15: a UTF-16 file was refused as 'the header contains a NUL byte'. Its text is
    unambiguous (a BOM, or a NUL beside each ASCII character), so it is read."""
    path = incr(folder, f"u.{fmt}")
    path.parent.mkdir(parents=True)
    if fmt == "csv":
        text = "customer_id,email,updated_at\nC1,café@x.com,2024-06-01 00:00:00\n"
    else:
        text = (
            json.dumps(
                {"customer_id": "C1", "email": "café@x.com", "updated_at": "2024-06-01 00:00:00"}, ensure_ascii=False
            )
            + "\n"
        )
    path.write_bytes(text.encode(codec))
    assert inc(wh, make_source(folder), folder).records_loaded == 1
    assert list(rows(wh, TABLE)["email"]) == ["café@x.com"]


def test_a_cut_utf16_file_fails_saying_utf16_and_how_to_convert(folder, wh):
    path = incr(folder, "u.csv")
    path.parent.mkdir(parents=True)
    path.write_bytes("customer_id,updated_at\nC1,2024-06-01\n".encode("utf-16")[:-1])
    with pytest.raises(SourceFileError) as err:
        inc(wh, make_source(folder), folder)
    assert (
        str(path) in str(err.value) and "is UTF-16" in str(err.value) and "iconv -f UTF-16 -t UTF-8" in str(err.value)
    )
    assert "NUL" not in str(err.value)


def test_utf16_without_bom_and_a_non_ascii_header_fails_saying_utf16_and_how_to_convert(folder, wh):
    path = incr(folder, "u.csv")
    path.parent.mkdir(parents=True)
    path.write_bytes("名前,updated_at\nx,2024-06-01\n".encode("utf-16-le"))
    with pytest.raises(SourceFileError) as err:
        inc(wh, make_source(folder), folder)
    assert (
        str(path) in str(err.value)
        and "UTF-16 file without BOM" in str(err.value)
        and "iconv -f UTF-16LE -t UTF-8" in str(err.value)
    )


def test_an_empty_header_warns_with_file_and_position_and_gets_a_positional_name(folder, wh, caplog):
    path = write_csv(
        incr(folder, "e.csv"), ["customer_id", "", "updated_at", " "], [["C1", "a@x.com", "2024-06-01 00:00:00", "x"]]
    )
    inc(wh, make_source(folder), folder)
    assert list(column_types(wh, TABLE))[:4] == ["customer_id", "column_2", "updated_at", "column_4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        f"{path}: the header of column 2 is empty; it is loaded as 'column_2'. Name the column in the file" in warnings
    )
    assert any(f"{path}: the header of column 4 is empty" in w for w in warnings)


def test_ambiguous_day_month_watermarks_need_date_order(folder, wh):
    path = write_csv(incr(folder, "d.csv"), HEADER, [["C1", "a@x.com", "13/03/2024"], ["C2", "b@x.com", "06/03/2024"]])
    with pytest.raises(SourceFileError) as err:
        inc(wh, make_source(folder), folder)
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and "set date_order of source 'shop' (sources[].date_order" in msg
    assert "dmy" in msg and "mdy" in msg
    assert not wh.table_exists(TABLE)
    inc(wh, make_source(folder, date_order="dmy"), folder)
    assert list(rows(wh, TABLE)["updated_at"]) == [pd.Timestamp("2024-03-13"), pd.Timestamp("2024-03-06")]


def test_month_first_and_year_first_date_orders(folder, wh, tmp_path):
    write_csv(
        incr(folder, "d.csv"), HEADER, [["C1", "a@x.com", "06/03/2024"], ["C2", "b@x.com", "2024-06-03 10:00:00"]]
    )
    inc(wh, make_source(folder, date_order="mdy"), folder)
    assert list(rows(wh, TABLE)["updated_at"]) == [pd.Timestamp("2024-06-03"), pd.Timestamp("2024-06-03 10:00:00")]
    with pytest.raises(ValueError, match="date_order"):
        make_source(folder, date_order="dym")


def test_a_watermark_out_of_range_says_so_and_gives_the_range(folder, wh):
    write_csv(
        incr(folder, "r.csv"),
        HEADER,
        [["C1", "a@x.com", "2024-06-01"], ["C2", "b@x.com", "9999-12-31T23:59:59"], ["C3", "c@x.com", "soon"]],
    )
    inc(wh, make_source(folder), folder)
    reasons = list(wh.fetch(f"SELECT reason FROM {REJECTED.sql} ORDER BY row")["reason"])
    assert (
        reasons[0] == "updated_at '9999-**-*****:**:**' is out of range: "
        "the supported range is 1677-09-22 to 2262-04-11 (UTC); use a date within it"
    )
    assert reasons[1].startswith("updated_at 'soon' is not a date/time")


SECRET = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_a_symlinked_secret_file_is_never_quoted_in_errors_logs_or_tables(tmp_path):
    """Issue 15: a symlink to a system file had its first line quoted in the error. Errors quote
    at most a short masked excerpt; the real run's events, the error and the tables are searched."""
    from dagster import DagsterInstance

    from cdp_assets.config import load_config
    from cdp_assets.definitions import build_definitions
    from cdp_assets_tests.conftest import warehouse_for, write_project

    secret_file = tmp_path / "etc" / "credentials"
    secret_file.parent.mkdir()
    secret_file.write_text(f"{SECRET}\nsecond {SECRET}\n")
    loaded = load_config(write_project(tmp_path / "p", records=30))
    link = loaded.source_paths["shop"] / "customers" / "zz_exports.csv"
    link.symlink_to(secret_file)
    (loaded.source_paths["web"] / "events" / "zz_exports.jsonl").symlink_to(secret_file)  # lines that are not JSON
    defs = build_definitions(loaded)
    instance = DagsterInstance.ephemeral()
    keys = [
        k
        for k in defs.resolve_all_asset_keys()
        if k.path[-1] in ("shop_customers", "shop_customers_hist", "web_events", "web_events_hist")
    ]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=keys, raise_on_error=False
    )
    assert not result.success
    failure = next(e.event_specific_data.error for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "zz_exports.csv: has no column 'updated_at'" in failure.to_string() and "(masked)" in failure.to_string()
    everything = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    for fragment in ("wJalrXUtnFEMI", "EXAMPLEKEY", SECRET[:30]):
        assert fragment not in failure.to_string() and fragment not in everything
    wh = warehouse_for(loaded)
    raws = wh.fetch('SELECT file, raw FROM "acme_src"."web_events_rejected"')
    assert (
        list(raws["file"]) == ["zz_exports.jsonl"] * 2
        and raws["raw"][0] == "'aws_*****************=*************/****...'"
    )
    for table in wh.list_tables("acme_src"):
        text = wh.fetch(f'SELECT * FROM "acme_src"."{table}"').astype(str).to_csv()
        assert "wJalrXUtnFEMI" not in text, table
