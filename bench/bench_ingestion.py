"""Benchmark of ingestion on DuckDB against DuckDB's bare native read of the same files.

For a generated sample of N records (``bench/.data/N/sample``, generated once and reused; the
sample generator writes shop customers and orders as CSV, loyalty members as Parquet, web events
as JSON lines, each a historical file and two incremental ones), in one invocation:

* ``bare native read``: a fresh database, then ``CREATE TABLE t AS SELECT * FROM read_csv(f)``
  (``read_parquet``, ``read_json``) for every file: DuckDB's readers with nothing around them;
* ``loaders (native)``: ``load_historical`` and ``load_incremental`` for every object on a fresh
  database, the work the ingestion assets do (books, checks of the rows, rejections, log);
* ``loaders (Python reader)``: the same with ``native_file_reads=False``, the path before DuckDB's
  readers were used (the one the other engines keep);
* ``ingestion phase``: the Dagster ingestion group materialised in-process on a fresh database
  (steps, events and the ingestion assets' checks included).

Each is run ``--repeat`` times, the median kept; ratios are to the bare native read. It rewrites
the ``ingestion`` section of ``docs/benchmarks.md``.

    .venv/bin/python bench/bench_ingestion.py --records 20000 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import write_section  # noqa: E402 - bench/ is a folder of scripts, not a package

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
DOC = ROOT / "docs" / "benchmarks.md"
TARGET = 3.0  # issue 12: ingestion at most 3x DuckDB's bare native read of the same files
OBJECTS = (("shop", ("customers", "orders")), ("loyalty", ("members",)), ("web", ("events",)))
READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".jsonl": "read_json"}
# The bare read takes the CSV dialect the loaders fix (comma, double quote, doubled quote as escape) and
# every column as text, as the loaders do: DuckDB's type sniffing reads a sample of 20,480 rows and fails
# on the generator's messy values further down a large file (a "$ 1,062.84" amount at 1M records).
BARE_OPTIONS = {".csv": ", header = true, delim = ',', quote = '\"', escape = '\"', all_varchar = true"}


def ensure_sample(records: int) -> Path:
    sample = DATA / str(records) / "sample"
    if not (sample / "shop").exists():
        from cdp_assets.sample.generator import generate_sample

        generate_sample(sample, records, seed=42, chain_emails=(20, 30))
    return sample


def sample_files(sample: Path) -> list[Path]:
    return sorted(p for p in sample.rglob("*") if p.suffix in READERS and p.name != "ground_truth.csv")


def bare_read(sample: Path, work: Path) -> float:
    import duckdb

    db = work / "bare.duckdb"
    started = time.monotonic()
    con = duckdb.connect(str(db), config={"autoinstall_known_extensions": "false"})
    for i, path in enumerate(sample_files(sample)):
        # The path is a value: bound, as the loaders bind it.
        options = BARE_OPTIONS.get(path.suffix, "")
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM {READERS[path.suffix]}(?{options})", [str(path)])
    con.close()
    return time.monotonic() - started


def sources(sample: Path):
    from cdp_assets.config.models import SourceConfig

    return [
        SourceConfig.model_validate(
            {
                "name": name,
                "connector": {"kind": "local_files", "path": str(sample / name)},
                "objects": list(objs),
                "incremental_field": "updated_at",
            }
        )
        for name, objs in OBJECTS
    ]


def loaders(sample: Path, work: Path, native: bool) -> float:
    from cdp_assets.connectors.loading import load_historical, load_incremental
    from cdp_assets.engines.duckdb import DuckDBWarehouse

    db = work / f"loaders_{native}.duckdb"
    started = time.monotonic()
    wh = DuckDBWarehouse(path=str(db), native_file_reads=native)
    with wh.session():
        for source in sources(sample):
            for obj in source.objects:
                for load in (load_historical, load_incremental):
                    load(wh, source, obj, sample / source.name, "acme_src", "bench")
    return time.monotonic() - started


def unchanged_loads(sample: Path, work: Path) -> tuple[float, float]:
    """Seconds of every object's incremental load once its files are loaded and unchanged: with
    each file's status kept beside its hash (the hash taken from the books), and with the statuses
    cleared (as books written before they were kept: every file hashed again)."""
    from cdp_assets.connectors.loading import FILES_TABLE, load_incremental
    from cdp_assets.connectors.local_files import RACY_SECONDS
    from cdp_assets.engines.duckdb import DuckDBWarehouse
    from cdp_assets.sql.ingestion import FILE_STATUS

    # A file hashed within RACY_SECONDS of its last change keeps no status: a sample just written waits.
    newest = max(p.stat().st_ctime for p in sample_files(sample))
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.1 - time.time()))
    wh = DuckDBWarehouse(path=str(work / "unchanged.duckdb"))
    seconds = []
    with wh.session():
        for clear in (False, False, True):
            if clear:
                wh.execute(f'UPDATE acme_src."{FILES_TABLE}" SET "{FILE_STATUS}" = NULL')
            started = time.monotonic()
            for source in sources(sample):
                for obj in source.objects:
                    load_incremental(wh, source, obj, sample / source.name, "acme_src", "bench")
            seconds.append(time.monotonic() - started)
    return seconds[1], seconds[2]  # the first one loads the files


def phase(sample: Path, work: Path) -> float:
    import yaml
    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

    from cdp_assets.config import load_config
    from cdp_assets.definitions import build_definitions
    from cdp_assets.engines.duckdb import DuckDBWarehouse

    cfg = yaml.safe_load((ROOT / "examples" / "acme" / "cdp.yml").read_text())
    cfg["unification_file"] = str(ROOT / "examples" / "acme" / "unify.yml")
    for source in cfg["sources"]:
        source["connector"]["path"] = str(sample / Path(source["connector"]["path"]).name)
        source.pop("start_date", None)
    cfg["engine"]["duckdb"] = {"path": str(work / "phase.duckdb")}
    cfg["report"]["path"] = str(work / "report.md")
    cfg.setdefault("checks", {})["freshness_hours"] = 1e6  # the sample's dates are fixed
    (work / "cdp.yml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(work / "cdp.yml")
    wh = DuckDBWarehouse(path=str(loaded.duckdb_path))
    job = define_asset_job("bench_ingestion", selection=AssetSelection.groups("ingestion"))
    defs = Definitions.merge(build_definitions(loaded, wh), Definitions(jobs=[job]))
    with DagsterInstance.ephemeral() as instance:
        started = time.monotonic()
        result = defs.resolve_job_def("bench_ingestion").execute_in_process(instance=instance, raise_on_error=False)
        seconds = time.monotonic() - started
    if not result.success:
        raise RuntimeError("the ingestion phase failed")
    return seconds


def measure(records: int, repeat: int) -> dict:
    sample = ensure_sample(records)
    out: dict[str, list[float]] = {"bare": [], "native": [], "python": [], "phase": [], "kept": [], "hashed": []}
    for _ in range(repeat):
        work = Path(tempfile.mkdtemp(prefix="bench_ingestion_unchanged_"))
        try:
            kept, hashed = unchanged_loads(sample, work)
            out["kept"].append(kept)
            out["hashed"].append(hashed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for name, run in (
            ("bare", lambda w: bare_read(sample, w)),
            ("native", lambda w: loaders(sample, w, True)),
            ("python", lambda w: loaders(sample, w, False)),
            ("phase", lambda w: phase(sample, w)),
        ):
            work = Path(tempfile.mkdtemp(prefix=f"bench_ingestion_{name}_"))
            try:
                out[name].append(run(work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    result = {k: round(statistics.median(v), 3) for k, v in out.items()}
    incremental = [p for p in sample_files(sample) if p.parent.name != "historical"]
    result["incremental_mb"] = round(sum(p.stat().st_size for p in incremental) / 1e6, 1)
    result["records"] = records
    result["files"] = len(sample_files(sample))
    result["mb"] = round(sum(p.stat().st_size for p in sample_files(sample)) / 1e6, 1)
    print(result, flush=True)
    return result


def write_doc(args, results: list[dict]) -> None:
    L = [
        "# Ingestion vs DuckDB's native read",
        "",
        f"Written by `bench/bench_ingestion.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(`--records {' '.join(str(r['records']) for r in results)} --repeat {args.repeat}`), on a machine with "
        f"{os.cpu_count()} cores shared with other work (load average {os.getloadavg()[0]:.1f} at the end): "
        f"seconds are the median of {args.repeat} runs, all in the same invocation, each on a fresh database. "
        "The files are the sample generator's (CSV, Parquet and JSON lines; a historical and two incremental "
        "files per object).",
        "",
        "- *bare native read*: `CREATE TABLE AS SELECT * FROM read_csv(...)` (CSV with the loaders' fixed dialect, "
        "every column as text, as the loaders read it; `read_parquet`, `read_json`) of "
        "every file, nothing else;",
        "- *loaders (native)*: `load_historical` + `load_incremental` of every object, DuckDB's readers "
        "(`connectors/native_loading.py`) with the per-file books, row checks, rejections and log;",
        "- *loaders (Python reader)*: the same with `native_file_reads: false` (files parsed in Python, "
        "loaded as DataFrames; the path the other engines keep);",
        "- *ingestion phase*: the Dagster ingestion group run in-process (steps, events and the ingestion "
        "assets' checks included).",
        "",
        "| records | files | MB | bare native read s | loaders (native) s | ratio | loaders (Python reader) s | ratio "
        "| ingestion phase s | ratio | 3x target: loaders | 3x target: phase |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        b = r["bare"] or float("nan")
        met = ["met" if r[k] / b <= TARGET else "not met" for k in ("native", "phase")]
        L.append(
            f"| {r['records']:,} | {r['files']} | {r['mb']} | {r['bare']:.2f} | {r['native']:.2f} "
            f"| {r['native'] / b:.1f}x | {r['python']:.2f} | {r['python'] / b:.1f}x | {r['phase']:.2f} "
            f"| {r['phase'] / b:.1f}x | {met[0]} | {met[1]} |"
        )
    phase = [(r["records"], r["phase"] / (r["bare"] or float("nan"))) for r in results]
    unmet = [n for n, ratio in phase if not ratio <= TARGET]
    loaders_met = all(r["native"] / (r["bare"] or float("nan")) <= TARGET for r in results)
    L += [
        "",
        "The loaders are the ingestion's own work, and what DuckDB's readers changed. The phase adds "
        "Dagster's cost per step (4 ingestion steps, each evaluating its asset's checks with it, and their "
        "events) and the checks' queries: a cost that grows much more slowly than the files, so the phase's "
        "ratio falls as they grow ("
        + ", ".join(f"{ratio:.1f}x at {n:,} records" for n, ratio in phase)
        + "). "
        + (
            f"The 3x target is not met at {', '.join(f'{n:,}' for n in unmet)} records, where those fixed "
            "seconds outweigh a read that takes a fraction of a second"
            + ("; the loaders alone meet it at every size. " if loaders_met else ". ")
            if unmet
            else "The 3x target is met at every size. "
        )
        + "On a shared machine the small sizes are dominated by per-statement latency and vary from run to run.",
        "",
        "A nightly load's cost of the files it loaded before: every object's incremental load again with "
        "nothing new, its files' statuses kept beside their hashes (`ingestion_files.file_status`: taken "
        "from the books, no byte read), and with the statuses cleared, as in books written before they "
        "were kept (every file hashed again).",
        "",
        "| records | incremental files MB | unchanged load s, statuses kept | every file hashed s | hashed / kept |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        L.append(
            f"| {r['records']:,} | {r['incremental_mb']} | {r['kept']:.3f} | {r['hashed']:.3f} "
            f"| {r['hashed'] / (r['kept'] or float('nan')):.2f}x |"
        )
    write_section(DOC, "ingestion", "\n".join(L))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, nargs="+", default=[20_000, 200_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args()
    results = [measure(n, args.repeat) for n in args.records]
    if not args.no_doc:
        write_doc(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
