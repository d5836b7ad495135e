"""DuckDB's own readers load files exactly as the Python reader does (the oracle), and the common
case goes through them.

The Python reader (``native_file_reads=False``) is the reference: every table a load writes (the raw
table, its rejections by file, row and reason, the per-file books, the log) must come out the same
through DuckDB's readers, for every file of the bad-input corpus and for generated CSV files full
of quoting, encodings, field-count errors and watermark variants.
"""

from __future__ import annotations

import logging
import shutil
import string
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdp_assets.config.models import SourceConfig
from cdp_assets.connectors.loading import load_historical, load_incremental
from cdp_assets.connectors.native_files import read_file_rows
from cdp_assets.connectors.readers import SourceFileError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.bad_inputs.corpus import CASES, FILES

SCHEMA = "acme_src"
# Columns that differ between two loads by nature: times, run ids, and the historical files'
# fingerprint (names, sizes and modification times: the two runs write their files at other times).
VOLATILE = {"_cdp_loaded_at", "loaded_at", "rejected_at", "run_id", "superseded_at", "files_fingerprint"}

GROUPS: dict[str, list[str]] = {}
for case in CASES:
    GROUPS.setdefault(case.group or case.name, []).append(case.name)

# The corpus files DuckDB's readers load themselves; the others go to the Python reader, each for
# a reason named in connectors/native_files.py (UTF-16, a NUL, a watermark row to reject by row
# number, a value whose text DuckDB would rewrite, a JSON line that is not an object...).
NATIVE = {
    "good.csv",
    "extra_field.csv",
    "missing_field.csv",
    "latin1.csv",
    "bom.csv",
    "quoted_newlines.csv",
    "crlf.csv",
    "extra_column.csv",
    "missing_column.csv",
    "type_drift.csv",
    "header_only.csv",
    "duplicate_rows.csv",
    "big_field.csv",
    "emoji.csv",
    "sql_like.csv",
    "quotes.csv",
    "blank_lines.csv",
    "empty_header.csv",
    "good.jsonl",
    "sql_like.jsonl",
    "good.parquet",
    "schema_a.parquet",
    "typed_timestamps.parquet",
}


def _source(folder: Path, start_date: str | None = None) -> SourceConfig:
    spec = {
        "name": "shop",
        "connector": {"kind": "local_files", "path": str(folder)},
        "objects": ["customers"],
        "incremental_field": "updated_at",
    }
    if start_date:
        spec["start_date"] = start_date
    return SourceConfig.model_validate(spec)


def _tables(wh: DuckDBWarehouse, schema: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table of the schema: its columns (in order) and its rows, sorted, volatile columns out."""
    out = {}
    for name in wh.list_tables(schema):
        ref = TableRef(schema, name)
        cols = [c for c in wh.columns(ref) if c not in VOLATILE]
        df = wh.query(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {ref.sql}")
        rows = [tuple(None if v is None or v != v else str(v) for v in r) for r in df.itertuples(index=False)]
        rows.sort(key=lambda r: tuple((v is None, v or "") for v in r))
        out[name] = (cols, rows)
    return out


def _load_both(
    root: Path,
    steps: list[tuple[dict[str, bytes], object]],
    start_date: str | None = None,
    warehouses: dict[bool, DuckDBWarehouse] | None = None,
    schema: str = SCHEMA,
) -> tuple:
    """Run the same steps (write these files under the source folder, then run this load) through
    DuckDB's readers and through the Python reader, each from an empty folder and schema (in the
    given warehouses, else in new databases); the tables of each, or the error each raised."""
    results = []
    for native in (True, False):
        work = root / ("native" if native else "python")
        shutil.rmtree(work, ignore_errors=True)
        folder = work / "shop"
        wh = (warehouses or {}).get(native) or DuckDBWarehouse(path=str(work / "w.duckdb"), native_file_reads=native)
        src = _source(folder, start_date)
        with wh.session():  # one connection for the whole comparison: the test stays quick
            try:
                for n, (files, load) in enumerate(steps):
                    for rel, data in files.items():
                        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                        (folder / rel).write_bytes(data)
                    load(wh, src, src.objects[0], folder, schema, f"run-{n}")
            except SourceFileError as exc:
                results.append(("error", str(exc).replace(str(work), "<work>")))
                continue
            results.append(("tables", _tables(wh, schema)))
    return results[0], results[1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["incremental", "historical"])
def test_every_corpus_file_loads_the_same_through_duckdbs_readers_as_through_python(mode, tmp_path):
    load = load_incremental if mode == "incremental" else load_historical
    where = "customers/historical/" if mode == "historical" else "customers/"
    # One database per reader, one schema per group of files: no database is opened per file.
    warehouses = {n: DuckDBWarehouse(path=str(tmp_path / f"{n}.duckdb"), native_file_reads=n) for n in (True, False)}
    with warehouses[True].session(), warehouses[False].session():
        for i, (group, names) in enumerate(GROUPS.items()):
            files = {where + name: (FILES / name).read_bytes() for name in names}
            steps = [(files, load)]
            native, python = _load_both(tmp_path / f"g{i}", steps, warehouses=warehouses, schema=f"acme_src_{i}")
            assert native == python, f"{group}: DuckDB's readers and the Python reader disagree"
            if native[0] == "tables":
                assert any(rows for _, rows in native[1].values()), f"{group}: nothing was written"


def test_the_common_case_and_most_of_the_corpus_are_read_by_duckdb(tmp_path, caplog):
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    read_natively = set()
    with wh.session(), caplog.at_level(logging.INFO):
        for case in CASES:
            try:
                rows = read_file_rows(wh, FILES / case.name, "updated_at", datetime(2024, 1, 1), None, "shop")
            except SourceFileError:
                continue  # a file that cannot be loaded fails the same way on both paths (test above)
            if rows.native:
                read_natively.add(case.name)
            else:
                # From the records: a JSON log formatter set up earlier in a session escapes caplog.text.
                said = f"{case.name}: read by the Python reader ({rows.why_python})"
                assert rows.why_python and any(said in r.getMessage() for r in caplog.records), said
    assert read_natively == NATIVE


def test_the_sample_generators_files_are_all_read_by_duckdb(tmp_path):
    from cdp_assets.sample.generator import generate_sample

    generate_sample(tmp_path / "sample", 400, seed=7)
    files = sorted(p for p in (tmp_path / "sample").rglob("*") if p.suffix in (".csv", ".jsonl", ".parquet"))
    files = [p for p in files if p.name != "ground_truth.csv"]
    assert {p.suffix for p in files} == {".csv", ".jsonl", ".parquet"}
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with wh.session():
        for path in files:
            rows = read_file_rows(wh, path, "updated_at", datetime(2024, 1, 1), None, "sample")
            assert rows.native, f"{path.name}: {rows.why_python}"
            assert rows.rows > 0 and not rows.rejected


# ---------------------------------------------------------------- generated CSV files

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ' ,"\'\n\r;é名🙂-:.', max_size=8)
_WATERMARKS = st.sampled_from(
    [
        "2024-06-01 10:00:00",
        "2024-06-01T10:00:00",
        "2024-06-01 10:00",
        "2024-06-01",
        "2024-06-01 10:00:00.123456",
        "2024-06-01T10:00:00Z",
        "2024-06-01 12:00:00+02:00",
        "2024-06-01T05:00:00-0500",
        "2023-01-15 08:30:00",
        "2024-06-02 00:00:00",
        "",
        "not a date",
        "9999-12-31T23:59:59",
        " 2024-06-01 10:00:00",
    ]
)


def _field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(ch in value for ch in ',"\n\r') else value


@st.composite
def _csv_files(draw) -> list[bytes]:
    """1-3 CSV files drawing rows from a small pool, so rows repeat within and across files; some
    rows with a field too many or too few, or a byte that is not UTF-8."""
    pool = draw(st.lists(st.tuples(_TEXT, _TEXT, _WATERMARKS), min_size=1, max_size=6))
    files = []
    for _ in range(draw(st.integers(1, 3))):
        lines = ["id,email,updated_at"]
        for row in draw(st.lists(st.sampled_from(pool), max_size=8)):
            fields = [_field(v) for v in row]
            shape = draw(st.sampled_from(["ok", "ok", "ok", "extra", "short"]))
            fields = fields + ["x"] if shape == "extra" else fields[:2] if shape == "short" else fields
            lines.append(",".join(fields))
        data = ("\n".join(lines) + "\n").encode()
        if draw(st.booleans()) and len(lines) > 1:
            data = data.replace(b"\n", b"\n\xe9", 1) if draw(st.booleans()) else data
        files.append(data)
    return files


# DuckDB's copy of a non-UTF-8 line is lossy; a BOM counts in its byte positions; a lone CR ends a line
@pytest.mark.slow
@example(files=[b"id,email,updated_at\n\xe9,,2024-06-01 10:00:00\n"], start_date=None)
@example(files=[b"\xef\xbb\xbfid,email,updated_at\n1,\"a\nb\",2024-06-01\n2,b,2024-06-01,x\n"], start_date=None)
@example(files=[b'id,email,updated_at\n"a\rb",,2024-06-01\nkyl,fOU\n'], start_date=None)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(files=_csv_files(), start_date=st.sampled_from([None, "2024-01-01T00:00:00"]))
def test_generated_csv_files_load_the_same_through_duckdbs_readers_as_through_python(
    files, start_date, tmp_path_factory
):
    # The first file is loaded alone, the others by a second load: their rows are checked against
    # the table (exact copies skipped) as well as against each other.
    named = {f"customers/part_{i}.csv": data for i, data in enumerate(files)}
    first = dict(list(named.items())[:1])
    steps = [(first, load_incremental), (named, load_incremental)]
    native, python = _load_both(tmp_path_factory.mktemp("gen"), steps, start_date)
    assert native == python
