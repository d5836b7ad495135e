"""Statements of a nightly run: what the second run of the sample's shape sends to its warehouse,
per phase, after a full run and one new incremental file per object.

    .venv/bin/python bench/bench_nightly_statements.py            # about 60 s; prints a table
    .venv/bin/python bench/bench_nightly_statements.py --doc      # and writes its section of docs/benchmarks.md
    .venv/bin/python bench/bench_nightly_statements.py --log stmts.txt  # and the nightly DuckDB statements, by step
    .venv/bin/python bench/bench_nightly_statements.py --td-log jobs.txt  # and the nightly TD run's calls, by step

The same counting as ``bench/bench_statements.py`` (``cdp_assets_tests/statement_counts.py``:
every query, statement and DataFrame load on DuckDB, every job on the Treasure Data fake), run
twice on one project: the full run, then ``bench_nightly.write_nightly_files`` (1% new and 0.5%
updated rows per object) and the pipeline again, incremental.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_nightly import write_nightly_files  # noqa: E402
from bench_statements import PHASES, TD_KEY, run, statements  # noqa: E402
from doc_sections import write_section  # noqa: E402

from cdp_assets_tests.fakes.td_api import FakeTreasureData  # noqa: E402


# DuckDB statements per phase at 5a43cc1, before the cuts of docs/incremental.md "Round trips of
# the bookkeeping" (measured by this script): (full, nightly).
BEFORE = {
    "ingestion": (69, 47),
    "hist_union": (20, 81),
    "staging": (28, 79),
    "unification": (53, 113),
    "unification checks": (4, 4),
    "report": (3, 3),
}


def full_then_nightly(root: Path, engine: dict | None = None, log: list | None = None) -> tuple[dict, dict | None]:
    """The full run's counts and the nightly run's (None: the nightly run failed)."""
    full = run(root, engine)
    write_nightly_files(root / "data", 0.01, 0.005)
    try:
        nightly = run(root, engine, log=log)
    except SystemExit as failed:
        print(f"nightly run on {engine['kind'] if engine else 'duckdb'} failed: {failed}", file=sys.stderr)
        nightly = None
    return full, nightly


def measure(log: list | None = None, td: bool = True, td_log: list | None = None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        duck = full_then_nightly(root / "duckdb", log=log)
        if not td:
            return {"duckdb": duck}
        fake = FakeTreasureData(TD_KEY)
        url = fake.start()
        os.environ["TD_API_KEY"] = TD_KEY
        try:
            engine = {"kind": "treasure_data", "treasure_data": {"endpoint": url, "poll_seconds": 0.01}}
            jobs = full_then_nightly(root / "td", engine, log=td_log)
        finally:
            fake.stop()
    return {"duckdb": duck, "treasure_data": jobs}


def table(result: dict) -> str:
    def cell(r: dict | None, engine: str, phase: str) -> str:
        if r is None:
            return "failed"
        p = r["phases"].get(phase, {})
        return str(statements(p) if engine == "duckdb" else p.get("jobs", 0))

    def total(r: dict | None, engine: str) -> str:
        return "failed" if r is None else str(sum(int(cell(r, engine, p)) for p in phases))

    runs = [(e, r) for e in result for r in result[e]]
    heads = {"duckdb": "DuckDB", "treasure_data": "TD jobs"}
    lines = [
        "| phase | DuckDB full before | DuckDB nightly before | "
        + " | ".join(f"{heads[e]} {w}" for e in result for w in ("full", "nightly"))
        + " |",
        "|---|---:|---:|" + "---:|" * len(runs),
    ]
    phases = [p for p in PHASES if any(r is not None and p in r["phases"] for _, r in runs)]
    for phase in phases:
        before = " | ".join(str(n) for n in BEFORE.get(phase, ("", "")))
        lines.append(f"| {phase} | {before} | " + " | ".join(cell(r, e, phase) for e, r in runs) + " |")
    before = " | ".join(str(sum(v[i] for v in BEFORE.values())) for i in (0, 1))
    lines.append(f"| **total** | {before} | " + " | ".join(total(r, e) for e, r in runs) + " |")
    return "\n".join(lines)


def section(result: dict) -> str:
    return "\n".join(
        [
            "## Statements of a nightly run",
            "",
            "Written by `bench/bench_nightly_statements.py`: the sample's shape (as \"Statements per run\"), a "
            "full run, then one new incremental file per object (1% new, 0.5% updated rows: "
            "`bench_nightly.write_nightly_files`) and the pipeline again; DuckDB statements and TD jobs per phase "
            "(`cdp_assets_tests/statement_counts.py`). Before: DuckDB at 5a43cc1, counted per call; the DuckDB "
            "columns since count every statement a call carries (docs/benchmarks.md, \"Statements per run\": "
            "the same full run was 210 counted so, 161 per call).",
            "",
            table(result),
            "",
            "What went (docs/incremental.md, \"Round trips of the bookkeeping\"): per incremental hist-union "
            "table, its inputs' progress queries (2, now in the state read), the changed keys' count (the "
            "scratch table's create answers it), the table's count after the apply (the DELETE and INSERT "
            "answer theirs), 2 scratch tables and their drops (the affected rows are subqueries); per staged "
            "table, its progress query, the changed keys' count and the count after the apply. A full build "
            "writes its state as one `CREATE TABLE AS` of its totals. Then, counted honestly, what the first "
            "run's cuts also save in a nightly run: the loads' temporary tables left to die with the step's "
            "session, the first step of ingestion, hist-union and staging describing its phase's tables, the "
            "loop's scratch tables dying with its own cursor, and the run's schemas known at its first step "
            "(neither listed nor created again): 277 nightly; and hist-union's and staging's incremental "
            "scratch tables (staging's delta, changed keys and changes per table) left to die with their "
            "step's session, no `DROP` sent (`_Scratch.drop(step_ends=True)`; 277 to 255). The nightly loop "
            "then grew by a few statements that make its work proportional to the change (docs/unification.md, "
            "\"Incremental runs\"): the key values applied in place and the lookup's affected rows replaced, "
            "each a scratch table, a `BEGIN`, `DELETE`, `INSERT` and `COMMIT` and a row count, instead of a "
            "rebuild of the whole table; and the enriched and master tables' first builds write their state "
            "in one statement (the full column). Since (DuckDB 265 to 270 nightly, TD 154 to 153): the key "
            "statistics' per-(table, id) counts kept on DuckDB and recounted for the touched ids only (their "
            "state read, 2 scratch tables and a DELETE and INSERT in one transaction, instead of reading every "
            "key value and lookup row: docs/incremental.md, \"Key statistics\"), and the loop's rounds started "
            "from its nodes table instead of a copy of it (one statement or job fewer, and its drop). Then "
            "(DuckDB 270 to 271, TD 153 to 154): the loop's `_new_rows`, one scratch table of the incremental "
            "tables' rows after their watermarks, filtered once; the new key values, the new rows' stars and "
            "the watermarks read it instead of each reading every row of every source table again "
            "(docs/unification.md, \"Incremental runs\"). Then "
            "(DuckDB 271 to 275 nightly, TD 154 to 155): the deduped staged table (web_events) logs the keys its "
            "incremental build replaced or removed (one `CREATE TABLE AS`, one job), and its enrichment applies "
            "those keys' rows instead of enriching the whole table and diffing it (docs/incremental.md, \"Staged "
            "tables with a dedupe\"): on DuckDB its changed keys, their staged rows and their enriched rows as "
            "scratch tables and a `BEGIN`, `DELETE`, `INSERT` and `COMMIT`, where the full build was the whole "
            "table as a scratch table, two `EXCEPT` scratch tables and a `CREATE OR REPLACE` (3 statements more, "
            "each over the changed rows, not the table's); on TD, where the apply rebuilds and swaps, as many "
            "jobs as before. Then hist-union's and staging's check measures kept with their state (docs/checks.md, "
            "\"Measures kept with the table\"): the same counts, full and nightly, on both engines; a nightly "
            "build's one query of the rows it removes and adds replaces its checks' query over every row, and a "
            "full build measures its table in the statement that writes its state, read back with its description. "
            "Then (DuckDB 275 to 268 nightly, TD 155 to 151): an incremental enrichment reads its changed keys' "
            "staged rows in the statement that enriches them, not from a scratch table of them (per enriched "
            "table a scratch table and its drop fewer on DuckDB, a job fewer on TD), and the kept key "
            "statistics' apply deletes their markers and the touched ids' counts by two DELETEs (one statement "
            "more on DuckDB, where the counts are kept: docs/incremental.md, \"Where the enrichments' and key "
            "statistics' nightly seconds go\"). "
            "Then (TD 151 to 119 nightly; full 80 and DuckDB unchanged): on TD an incremental build's small "
            "intermediates are subqueries of the statements that read them, not scratch tables "
            "(`WarehouseResource.inlines_scratch_tables`: every `CREATE TABLE AS` is a job there): hist-union's "
            "changed keys and recomputed rows, staging's new rows and changed keys, the enrichment's enriched rows "
            "(hist-union 24 to 16, staging 32 to 24, unification 62 to 58; the changed keys' count rides in the "
            "measures query); and an ingestion step's start query also reads what its Python loads queried "
            "each (the last historical load's files fingerprint, each raw table's newest incremental field: "
            "3 jobs fewer per object, ingestion 32 to 20; DuckDB's native loads read neither). "
            "Then (TD 119 to 112 nightly; full 80 and DuckDB unchanged): on TD's Trino the times a query computes "
            "are written as the text a TD table stores (`dialects.timestamp_as_stored_text`), so staging's staged "
            "rows (tables without a join) and the loop's new key values are subqueries of the statements that "
            "read them, not scratch tables, and so are a deduped table's touched partitions and their ranked rows "
            "(staging 24 to 18, web_events_stg 9 to 6 of them; unification 58 to 57). "
            "Then (DuckDB 268 to 264 nightly, TD 112 to 110; full 149 and 80 unchanged): the loop's rule tables "
            "(`{cid}_keys`, `{cid}_invalid_texts`, `{cid}_tables`) are kept when they hold the config's rules "
            "already, read by one query of their counts and of the config fingerprint `{cid}_tables` carries, "
            "instead of written again every run (on DuckDB a transaction of three publishes, on TD three bulk "
            "imports; docs/unification.md, \"The rule tables\"). The nightly "
            "run still sends more TD jobs than the full run: an incremental hist-union table's state read, "
            "measures query, rebuild and state write are 4 jobs where its full build and state are 3, each "
            "enrichment's 5 (state read, changed keys, change log, rebuild, state write: 20 against 8), and the "
            "loop's incremental bookkeeping (26 jobs against 21) is most of the rest (docs/incremental.md, "
            "\"Round trips of the bookkeeping\").",
            "",
            "On TD the nightly run's DataFrame loader reads the rows already loaded in a new file's watermark "
            "range (`sql/ingestion.rows_in_range_sql`) with the raw table's `updated_at` cast from the text TD "
            "stores it as (`Dialect.stored_timestamp`); it failed before (\"Cannot compare VARCHAR and "
            "TIMESTAMP\"). `test_treasure_data.py::test_a_nightly_run_on_the_fake_with_new_and_updated_rows_"
            "equals_a_full_refresh` runs this sequence on the fake.",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", type=Path, help="write the nightly DuckDB run's statements, by step")
    p.add_argument(
        "--td-log",
        type=Path,
        help="write the nightly TD run's queries, statements and DataFrame loads (each a job, or a bulk import "
        "per table), one a line, by step: where its jobs go",
    )
    p.add_argument("--no-td", action="store_true", help="DuckDB only")
    p.add_argument("--doc", action="store_true", help="write its section of docs/benchmarks.md")
    args = p.parse_args()
    log: list = []
    td_log: list = []
    result = measure(log if args.log else None, td=not args.no_td, td_log=td_log if args.td_log else None)
    print(table(result))
    if args.doc:
        write_section(HERE.parent / "docs" / "benchmarks.md", "nightly-statements", section(result))
    for path, lines in ((args.log, log), (args.td_log, td_log)):
        if path:
            path.write_text("".join(f"{step} | {kind} | {what}\n" for step, kind, what in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
