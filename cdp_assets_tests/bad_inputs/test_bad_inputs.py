"""Every file of the bad-input corpus loads its good rows and rejects the bad ones with file, row
and reason, or fails naming the file and line: loaded plus rejected is every row of the input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp_assets.config.models import SourceConfig
from cdp_assets.connectors.loading import LOG_TABLE, load_historical, load_incremental
from cdp_assets.connectors.readers import SourceFileError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.bad_inputs.corpus import CASES, FILES, Case

SCHEMA = "acme_src"
TABLE = TableRef(SCHEMA, "shop_customers")
REJECTED = TableRef(SCHEMA, "shop_customers_rejected")

GROUPS: dict[str, list[Case]] = {}
for case in CASES:
    GROUPS.setdefault(case.group or case.name, []).append(case)


def source(folder: Path) -> SourceConfig:
    return SourceConfig.model_validate(
        {
            "name": "shop",
            "connector": {"kind": "local_files", "path": str(folder)},
            "objects": ["customers"],
            "incremental_field": "updated_at",
        }
    )


def test_the_corpus_has_at_least_thirty_files_and_they_are_committed():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    assert sorted(p.name for p in FILES.iterdir()) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("historical", [False, True], ids=["incremental", "historical"])
@pytest.mark.parametrize("group", list(GROUPS))
def test_a_bad_file_loses_nothing(group, historical, tmp_path):
    cases = GROUPS[group]
    target = tmp_path / "shop" / "customers" / ("historical" if historical else "")
    target.mkdir(parents=True)
    for case in cases:
        shutil.copy(FILES / case.name, target / case.name)
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    src = source(tmp_path / "shop")
    load = load_historical if historical else load_incremental
    table = TableRef(SCHEMA, "shop_customers_hist") if historical else TABLE
    errors = [c.error for c in cases if c.error]
    if errors:
        with pytest.raises(SourceFileError) as err:
            load(wh, src, src.objects[0], tmp_path / "shop", SCHEMA, "run-1")
        message = str(err.value)
        assert str(target / cases[0].name) in message and errors[0] in message, message
        assert not wh.table_exists(table) and not wh.table_exists(REJECTED)  # nothing half-loaded
        return
    result = load(wh, src, src.objects[0], tmp_path / "shop", SCHEMA, "run-1")
    rows = sum(c.rows for c in cases)
    loaded = wh.row_count(table) if wh.table_exists(table) else 0
    rejected = wh.fetch(f"SELECT * FROM {REJECTED.sql}") if wh.table_exists(REJECTED) else None
    n_rejected = 0 if rejected is None else len(rejected)
    assert (loaded, n_rejected) == (sum(c.loaded for c in cases), sum(c.rejected for c in cases))
    assert loaded + n_rejected == rows and result.records_loaded == loaded and result.records_rejected == n_rejected
    if rejected is not None:
        assert set(rejected["file"]) <= {c.name for c in cases}
        assert all(r >= 1 for r in rejected["row"]) and all(rejected["reason"].str.len() > 5)
    for case in cases:
        for column, value in case.keeps:
            got = wh.query(f'SELECT COUNT(*) AS n FROM {table.sql} WHERE "{column}" = ?', [value])
            assert int(got.iloc[0, 0]) >= 1, f"{case.name}: {column} = {value!r} not stored as written"
    log = wh.fetch(f"SELECT records_loaded, records_rejected FROM {TableRef(SCHEMA, LOG_TABLE).sql}")
    assert (int(log["records_loaded"].iloc[-1]), int(log["records_rejected"].iloc[-1])) == (loaded, n_rejected)


def test_rejected_rows_name_file_row_and_reason(tmp_path):
    target = tmp_path / "shop" / "customers"
    target.mkdir(parents=True)
    for name in ("extra_field.csv", "latin1.csv", "broken_line.jsonl", "nul.parquet"):
        shutil.copy(FILES / name, target / name)
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    src = source(tmp_path / "shop")
    load_incremental(wh, src, src.objects[0], tmp_path / "shop", SCHEMA, "run-1")
    got = {(r.file, r.row): r.reason for r in wh.fetch(f"SELECT * FROM {REJECTED.sql}").itertuples()}
    assert "has 4 field(s), the header has 3" in got[("extra_field.csv", 3)]
    assert "not valid UTF-8" in got[("latin1.csv", 2)]
    assert "not valid JSON" in got[("broken_line.jsonl", 2)]
    assert "NUL byte" in got[("nul.parquet", 1)]
    # the next load reads the files again and records nothing twice
    load_incremental(wh, src, src.objects[0], tmp_path / "shop", SCHEMA, "run-2")
    assert wh.row_count(REJECTED) == 4


@pytest.mark.pipeline
def test_a_run_with_a_bad_row_succeeds_and_warns_with_the_count(tmp_path):
    from cdp_assets.config import load_config
    from cdp_assets_tests.conftest import check_results, run_pipeline, write_project

    loaded = load_config(write_project(tmp_path, records=80))
    folder = loaded.source_paths["shop"] / "customers"
    first = sorted(folder.glob("*.csv"))[0]
    lines = first.read_text().splitlines()
    first.write_text("\n".join([*lines, lines[1] + ",one field too many"]) + "\n")
    result = run_pipeline(loaded)
    assert result.success
    checks = check_results(result)
    assert checks["acme_src/shop_customers:no_rejected_rows"] is False
    assert all(ok for name, ok in checks.items() if name != "acme_src/shop_customers:no_rejected_rows"), checks
    evaluation = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "no_rejected_rows"
        and not e.event_specific_data.passed
    )
    assert (
        evaluation.metadata["measured"].value == 1
        and f"{first.name} row {len(lines) + 1}" in evaluation.metadata["examples"].value
    )
