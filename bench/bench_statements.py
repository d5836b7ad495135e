"""Statements per run: what one run of the sample's shape sends to its warehouse, per phase.

    .venv/bin/python bench/bench_statements.py            # about 30 s; writes its section of docs/benchmarks.md
    .venv/bin/python bench/bench_statements.py --no-doc   # print only
    .venv/bin/python bench/bench_statements.py --no-doc --log stmts.txt  # and every DuckDB statement, by step
    .venv/bin/python bench/bench_statements.py --no-doc --td-log jobs.txt  # and every TD call, by step

Runs the whole pipeline (4 objects, 1 id, 1 master table, 60 generated records) in process on
DuckDB and on the Treasure Data fake (cdp_assets_tests/fakes/td_api.py, TD's REST API on
loopback), with the engine wrapped by ``cdp_assets_tests/statement_counts.py``: every query,
statement and DataFrame load, and every TD job, is counted against the step that sent it.
A count is deterministic: this is not a timing, and the DuckDB total is also asserted by
cdp_assets_tests/test_statement_count.py.

"Before" is the same measurement at the commit before the checks were grouped per asset
(``statements_before.json``, written by ``--json`` at that commit), beside the issue's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dagster import DagsterInstance  # noqa: E402

from cdp_assets.config import load_config  # noqa: E402
from cdp_assets.definitions import PIPELINE_JOB, build_definitions  # noqa: E402
from cdp_assets.engines.factory import build_warehouse  # noqa: E402
from cdp_assets_tests.conftest import check_results, write_project  # noqa: E402
from cdp_assets_tests.fakes.td_api import FakeTreasureData  # noqa: E402
from cdp_assets_tests.statement_counts import counting, per_phase, phase_of_steps  # noqa: E402
from doc_sections import write_section  # noqa: E402

RECORDS = 60
TD_KEY = "4321/" + "b3c7" * 10
TARGETS = {"duckdb": 150, "treasure_data": 80}  # issue 12: statements on DuckDB, jobs on TD
ISSUE_BEFORE = {"duckdb": 683, "treasure_data": 223}
# Dagster steps of the same run at 68352d5, the commit before the checks of ingestion, hist-union,
# staging and the master tables moved into their assets' steps (27 of the 47 were check steps).
STEPS_BEFORE_IN_STEP_CHECKS = 47
PHASES = [
    "ingestion",
    "ingestion checks",
    "hist_union",
    "hist_union checks",
    "staging",
    "staging checks",
    "unification",
    "unification checks",
    "report",
]


def run(root: Path, engine: dict | None = None, log: list | None = None) -> dict:
    """One run of the sample: {phase: {kind: n}}, and whether every check passed; ``log`` gets
    every statement as (step, kind, SQL)."""
    mutate = (lambda c: c.update(engine=engine)) if engine else None
    loaded = load_config(write_project(root, records=RECORDS, generate=not (root / "data").exists(), mutate=mutate))
    warehouse = counting(build_warehouse(loaded), log)
    defs = build_definitions(loaded, warehouse)
    result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    checks = check_results(result)
    if not result.success or not all(checks.values()):
        raise SystemExit(f"the sample run failed: {[k for k, v in checks.items() if not v]}")
    phases = per_phase(warehouse.counts, phase_of_steps(defs))
    return {
        "phases": {p: dict(c) for p, c in phases.items()},
        "checks": len(checks),
        "check_steps": len(defs.asset_checks),
        # Dagster's steps of the run: each costs about 0.1 s whatever the data (docs/benchmarks.md)
        "steps": sum(1 for e in result.all_events if e.event_type_value == "STEP_SUCCESS"),
    }


def measure(log: list | None = None, td_log: list | None = None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        duck = run(root / "duckdb", log=log)
        fake = FakeTreasureData(TD_KEY)
        url = fake.start()
        os.environ["TD_API_KEY"] = TD_KEY
        try:
            engine = {"kind": "treasure_data", "treasure_data": {"endpoint": url, "poll_seconds": 0.01}}
            td = run(root / "td", engine, log=td_log)
            td["fake_jobs"] = len(fake.jobs)
        finally:
            fake.stop()
    return {"duckdb": duck, "treasure_data": td}


def statements(phase: dict) -> int:
    return sum(n for kind, n in phase.items() if kind != "jobs")


def total(result: dict, engine: str) -> int:
    phases = result[engine]["phases"].values()
    return sum(statements(p) for p in phases) if engine == "duckdb" else sum(p.get("jobs", 0) for p in phases)


def markdown(now: dict, before: dict | None) -> str:
    def cell(result: dict | None, engine: str, phase: str) -> str:
        if result is None:
            return "n/a"
        p = result[engine]["phases"].get(phase, {})
        return str(statements(p) if engine == "duckdb" else p.get("jobs", 0))

    lines = [
        "## Statements per run",
        "",
        f"One run of the sample's shape (4 objects, 1 id, 1 master table, {RECORDS} generated records), in "
        "process, every check passing: what it sends to the warehouse, per phase. DuckDB: statements "
        "(queries, DDL/DML, DataFrame loads); Treasure Data (the fake of its REST API): jobs (query jobs and "
        "bulk-import jobs). Counted by `bench/bench_statements.py` through "
        "`cdp_assets_tests/statement_counts.py`; before = the same count at the commit before the checks "
        "were grouped per asset.",
        "",
        "| phase | DuckDB before | DuckDB after | TD jobs before | TD jobs after |",
        "|---|---:|---:|---:|---:|",
    ]
    known = set(PHASES)
    extra = sorted({p for r in (now, before) if r for e in r.values() for p in e["phases"]} - known)
    for phase in PHASES + extra:
        lines.append(
            f"| {phase} | {cell(before, 'duckdb', phase)} | {cell(now, 'duckdb', phase)} "
            f"| {cell(before, 'treasure_data', phase)} | {cell(now, 'treasure_data', phase)} |"
        )
    checks_now = {
        e: sum(
            statements(p) if e == "duckdb" else p.get("jobs", 0)
            for name, p in now[e]["phases"].items()
            if name.endswith(" checks")
        )
        for e in now
    }
    lines.append(
        f"| **total** | {total(before, 'duckdb') if before else 'n/a'} | **{total(now, 'duckdb')}** "
        f"| {total(before, 'treasure_data') if before else 'n/a'} | **{total(now, 'treasure_data')}** |"
    )
    lines += [
        "",
        "| engine | issue 12 (before) | now | in check steps | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for engine, unit in (("duckdb", "statements"), ("treasure_data", "jobs")):
        n = total(now, engine)
        lines.append(
            f"| {engine} ({unit}) | {ISSUE_BEFORE[engine]} | {n} | {checks_now[engine]} "
            f"| <= {TARGETS[engine]} | {'met' if n <= TARGETS[engine] else 'NOT met'} |"
        )
    lines += [
        "",
        f"Dagster steps per run (each costs about 0.1 s whatever the data): {STEPS_BEFORE_IN_STEP_CHECKS} before "
        f"the checks moved into their assets' steps, **{now['duckdb']['steps']}** now, of which "
        f"{now['duckdb']['check_steps']} are steps of checks (TD: {now['treasure_data']['steps']}).",
        "",
        f"The {now['duckdb']['checks']} checks are evaluated together per asset, each asset's checks measuring "
        "its table once (docs/checks.md). Those of ingestion, hist-union, staging and the master tables are "
        "evaluated inside their asset's own step (`check_specs` on the asset, `MaterializeResult.check_results`), "
        "from what the build knows: the rows it wrote, the column schema it described for its metadata, staging's "
        "parse counts. What a build cannot know takes one query per step, counted in its asset's phase above "
        "(on DuckDB the hist-union and master steps send it with their description of the table they built, "
        "one catalog-and-measures query, `describe_tables_and_fetch`): "
        "an ingestion step reads the log's history of both its raw tables' loads and their outstanding rejected "
        "rows together (watermark_never_moves_backwards, volume_anomaly and no_rejected_rows span earlier runs; "
        "since then read before its loads: below), "
        "a hist-union step its duplicate keys and its inputs' distinct rows, a master table its distinct ids "
        "against the lookup's; staging's checks send nothing. "
        "That is 4 statements of their own on DuckDB (the ingestion steps') "
        "and 9 TD jobs, where the 17 check steps of the same tables sent 13 (one per raw table, hist-union and "
        "master table; their descriptions came from the builds' metadata already): 9 statements and 4 jobs "
        "fewer, and 17 steps fewer. "
        "The unification graph's tables (lookup, "
        "graph, excluded values, enriched tables, result statistics) keep one step of checks each: a graph's "
        "ops cannot report check results of its assets. "
        "Before that, the checks ran as one step per checked asset, each measuring its table once: "
        "the engine's description (one catalog query on DuckDB, one API call and no job on TD; none for a table "
        "the same run built, whose build recorded its column schema) and one query of scalar subqueries; "
        "staging's parse counts and the coverage trend come from the build's metadata, freshness and schema "
        "drift are Dagster's checks on its event log (docs/checks.md). The report counts every table's rows in "
        "one query. The builds' own statements were then cut without changing what a run does or proves. "
        "DuckDB publishes a table in one statement, `CREATE OR REPLACE TABLE ... AS`, which is atomic (its DDL "
        "is transactional: a failure or a kill mid-statement leaves the old table; `Dialect.replaces_atomically`; "
        "Spark and TD keep build-then-swap) and answers its row count; DataFrames are published the same way. "
        "While a run holds DuckDB (its anchor connection: one process, one writer), the engine keeps the "
        "schemas it created, the leftover listings and every table description for the whole run instead "
        "of per step, forgetting a table's description on every write of its own that may change it "
        "(`engine_meta.tables_changed`; a model-based hypothesis test checks it against the catalog). The "
        "loads return their table's rows (the build's count, or the rows before plus those appended in the "
        "load's unit) and the historical watermark from their files' checks, and describe the object's "
        "incremental table with the historical one. An ingestion step writes its bookkeeping once "
        "(`loading.StepBooks`: the historical load's "
        "rejections, file records and log row ride in the incremental load's unit, one append per table; "
        "a failed incremental load still leaves the historical one logged and logs nothing of its own) and "
        "describes both its tables once, after both loads; a CSV's refused lines are counted in the file's "
        "checks query and read only when there are some (6 statements before: one per CSV file); a JSON "
        "read's exactness column stays in its temporary table and is never copied out (DuckDB's column "
        "lambda) instead of an `ALTER TABLE ... DROP COLUMN` per file (3). Hist-union takes its inputs' row "
        "counts from its checks' query (a full build) or its state read (an incremental build measures its "
        "progress there; before: a count query of its own), "
        "staging reads its states after one description (none on a first build), unification's side-table "
        "counts are one query, and the report takes coverage from the "
        "enrichment's metadata. On TD a description or a listing is an API call, not "
        "a job: the jobs saved there are the single queries that replaced several.",
        "",
        "**Counted honestly.** Until then a call that carried several statements counted once: DuckDB's "
        "drops of several tables in one call (`drop_tables`, the loads' temporary tables), the rule tables' "
        "`BEGIN; CREATE OR REPLACE ...; COMMIT` in one call, and an append unit, whose `BEGIN`, native "
        "load's `INSERT` or `CREATE` and `COMMIT` went to DuckDB's connection past the counter, and whose "
        "tables counted as one load. `cdp_assets_tests/statement_counts.py` now counts every SQL statement "
        "a call carries (split at each `;` outside quotes and comments; a hypothesis test checks the split "
        "against DuckDB's own parser, and a test pins that a call of N statements counts N), DuckDB's "
        "append unit sends its `BEGIN`, statements and `COMMIT` through `execute`, and a DataFrame load "
        "counts one per table it appends to. The same run counted that way was **210** statements, not "
        "161 (the before columns above and the issue's 683 were counted per call). "
        "Cut since, each measured on this benchmark: 24 `DROP TABLE`s of the loads' temporary tables "
        "(210 to 186): DuckDB's temporary tables belong to the session's connection, a cursor of the run's "
        "database closed at the step's end, so the incremental load (its step's last work) and a CSV's "
        "reject tables (its refused lines only) leave theirs to die with it "
        "(`WarehouseResource.drop_with_session`; the historical files' rows, as large as the table, are "
        "still dropped at once); the loop statistics' one-table append sent as its one `INSERT` without "
        "`BEGIN`/`COMMIT` (2, to 184); the first hist-union and the first staging step describing every "
        "step's tables of their phase in one look-up (`describe_ahead`, as the enrichments already did: "
        "each step writes only its own tables and a write forgets what it changed; 6, to 178); the "
        "unification loop in a cursor of its own (`own_session`), whose scratch tables die with it instead "
        "of 5 drops at its end (to 173); the first ingestion step describing every ingestion step's tables "
        "(4, to 169); the schemas the run writes and their leftovers learnt in one look-up at its first step "
        "(`know_schemas`, instead of a listing per schema, 2, to 167). What was left on DuckDB at 167 "
        "(`--log FILE` writes the run's statements by step; `--td-log "
        "FILE` the TD run's calls): in ingestion, per file DuckDB's read into a temporary table and its "
        "checks (24), the Parquet or JSON schema (6) and the incremental files' filtering (4); per step the "
        "tables' description after the loads, the file versions (3), the one-unit append (`BEGIN`, the "
        "incremental rows' `INSERT` or `CREATE`, the file records, the log, `COMMIT`: 5), the drop of the "
        "historical files' rows and the checks' query; 43 publishes (19 of them bookkeeping: incremental "
        "state tables, rule tables, watermarks), the unification loop's scratch tables, convergence counts "
        "and superseded tables' drops per iteration, the three schemas' creation, the "
        "rule tables' transaction, and 8 check queries (4 in the ingestion steps, 4 in the unification "
        "graph's check steps). The enriched and master tables' first builds read no state and write "
        "theirs in one `CREATE TABLE AS` of their inputs' totals and states, and the loop's watermarks are "
        "published by the statement that finds them (both described with the TD jobs below; 2 on DuckDB, "
        "to 165). Then to 150, issue 12's target (each measured here): the enrichments' coverage query, one "
        "for every enriched table after they are built, also counts the staged rows a first enrichment read "
        "(its `rows_read`: a `COUNT(*)` per enriched table before), the largest canonical id of each id (the "
        "`largest_component_share` check reads it from the result statistics' metadata of the same run "
        "instead of a query in its own step) and the lookup's ids by size (the report's profile, read from "
        "the same metadata while the lookup holds the rows of the run that measured it): 6; an ingestion step "
        "reads its object's log history and outstanding rejections before its loads, in the query of its "
        "file records' versions it sent already (none while the object has no bookkeeping: the first object "
        "of a new database), and its checks add what its loads wrote (`checks/ingestion.measures_after_step`, "
        "proven equal to the query after the loads over runs with rejections, a superseding file and skipped "
        "rows); its description after the loads also takes its bookkeeping tables, which the next step then "
        "finds known, and the rejections' superseding describes the file records only when there are "
        "rejections to mark: 5; a load's files are read into their temporary tables first and checked in one "
        "query (`native_files.read_files_rows`; a failed query falls back to each file's own): 4. Then to "
        "148: the loop's rounds start from its nodes table, which carries each node's own label "
        "(`Step.alias`), instead of a copy of it and that copy's drop (2; docs/unification.md). Then 149: "
        "a canonical id's lookup keeps its check measures beside it (`{cid}_lookup_cdp_measures`: its ids "
        "with several canonical ids and its distinct canonical ids), counted by its first build in one "
        "statement and read back in place of the lookup check's own query, so that a nightly build counts "
        "them from its change instead of grouping every lookup row again (docs/checks.md, \"The lookup's "
        "kept measure\"; 1 more). Since the enriched and master tables build incrementally "
        "(docs/incremental.md), a first run also pays their bookkeeping: a state write per table and the "
        "lookup's change log.",
        "",
        "On Treasure Data every query is a job with its queueing, so what TD's REST API answers is taken "
        "from it: a schema, a description or a listing is an API call, and so is a table's row count, the "
        "`count` TD's table listing documents for every table (`GET /v3/table/list/:db`; the fake computes "
        "it from the table). Trino answers `CREATE TABLE AS` with the rows written, which is also the "
        "count of a scratch table for as long as it lives: the loop's edges left come from that answer, "
        "not from the listing. From a step-attributed log of the run's jobs, what went (149 to "
        f"{total(now, 'treasure_data')}): 8 ingestion `COUNT(*)`s and 8 in unification (the loop's nodes and "
        "edges, 4 published tables), 9 in ingestion (one bookkeeping unit per step: the historical and "
        "incremental loads' file records in one bulk import, their log rows in another, instead of one "
        "import per table and load, 8; and the first object's file-version query, which now finds no file "
        "records yet, the historical load's being written in the step's unit), "
        "hist-union's input counts (4) and its inputs' totals, one query per step and now in the job "
        "that writes its state (8: below), the enriched "
        "checks' coverage queries (4; the enrichment counted those rows as it built the table), the "
        "report's 7 (row counts from the listing, coverage from the enrichment's metadata while the row "
        "count still matches, the profile and the loop history one query each), staging's watermark "
        "query, which a full build now runs with its rule counts (4), and the enrichment's coverage, one "
        "query for every enriched table after they are built (3), and, with the checks in their assets' "
        "steps, the ingestion checks' queries, one per object instead of one per raw table (4). "
        "Then (94 to 87): the enriched and master tables' first builds read no state (a build without its "
        "own state is full whatever the others hold) and write theirs in one `CREATE TABLE AS` that "
        "measures the staged table's totals and reads its generation and the lookups' (or the master's "
        "inputs') build numbers from their state tables (`sql/incremental.state_of_inputs_sql`), instead of "
        "a state read and a bulk import (5: 4 enriched tables and the master); the loop's watermarks table "
        "is written by the query that finds them, its config fingerprint read from `{cid}_tables` "
        "(1: the query and the bulk import were two); the `no_values_over_cap` check takes an empty "
        "excluded-values table's count from "
        "the table listing and sends no query then (1). "
        "What is left: bulk imports (per object "
        "4 in ingestion: the historical data, the incremental data, the step's file records and its log "
        "rows, TD taking one table per bulk-import session; in unification the lookup's state, the 3 rule "
        "tables, the master's attribute rules and the loop statistics), `CREATE TABLE AS` (the builds "
        "themselves and the full builds' states), the checks' queries (11: one per ingestion step, "
        "hist-union step and master table, 9, and the lookup's and the key statistics' check steps, 2), "
        "and the builds' own queries: the files already loaded (3), staging's rule counts (4), the "
        "enrichment's coverage (1), the loop's pointer and relabel counts (one query per iteration, 2 "
        "here), the report's 1. A full hist-union build on TD writes its state in the one job that "
        "measures it: a `CREATE TABLE "
        "AS` of its inputs' totals (`sql/incremental.state_of_totals_sql`) with the table names, generation, "
        "fingerprint and time bound as typed literals of the parsed statement (`treasure_data.bind_literals`, "
        "as every TD query's values are), and the inputs' counts from TD's table listing "
        "(`counts_rows_without_a_query`), instead of a totals query and a bulk import (4 jobs). DuckDB now "
        "does the same (one statement instead of the totals query and the DataFrame write, 4), the inputs' "
        "counts riding in the step's checks query. A full staging build too, on both engines: its state is a "
        "`CREATE TABLE AS` of the hist-union's totals that reads the hist-union's generation from its state "
        "table, so a first build reads no state (it is full whatever the states hold), and its rule counts "
        "come with the table's description (DuckDB 8 statements, TD 4 jobs: the state reads and bulk "
        "imports). Writing the remaining small bulk imports (the rule tables, the lookup's state) as a "
        "`CREATE TABLE AS SELECT ... FROM (VALUES ...)` of bound literals would save TD's bulk-import API "
        "calls and commit wait, not jobs: one job either way. With the checks in their assets' steps, "
        "what they still query is what no build knows (the log's history, earlier runs' rejections, duplicate "
        "keys, the lookup's ids). Then (87 to 81): the ingestion step's history and rejections read with "
        "its file versions at the step's start (4: the checks queries after the loads; the first object sends "
        "none), the largest-share check's and the report's profile queries measured in the enrichments' "
        "coverage query (2). Then 80, the target: the loop's initial labels are its nodes table, which "
        "carries each node's own label, not a `CREATE TABLE AS` copy of its node numbers (1; at 5M records "
        "also a table of 5.5M rows not written).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-doc", action="store_true", help="print only, do not write docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw counts to this file")
    parser.add_argument("--before", type=Path, default=HERE / "statements_before.json")
    parser.add_argument("--log", type=Path, help="write every DuckDB statement of the run, one a line, by step")
    parser.add_argument(
        "--td-log",
        type=Path,
        help="write every query, statement and DataFrame load of the TD run (each a job, or a bulk import per "
        "table), one a line, by step",
    )
    args = parser.parse_args()
    log: list | None = [] if args.log else None
    td_log: list | None = [] if args.td_log else None
    now = measure(log, td_log)
    for path, lines in ((args.log, log), (args.td_log, td_log)):
        if path:
            path.write_text("".join(f"{step} | {kind} | {what}\n" for step, kind, what in lines or []))
    if args.json:
        args.json.write_text(json.dumps(now, indent=1, sort_keys=True))
    before = json.loads(args.before.read_text()) if args.before.exists() else None
    text = markdown(now, before)
    print(text)
    if not args.no_doc:
        write_section(HERE.parent / "docs" / "benchmarks.md", "statements", text)


if __name__ == "__main__":
    main()
