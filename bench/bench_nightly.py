"""Benchmark: a nightly run against the full run it follows, on DuckDB, in one invocation.

For a generated sample of N records (``bench/.data/N/sample``, generated once and shared with
``bench_pipeline.py``), copied to a fresh folder and database:

1. **full**: the whole pipeline on a fresh database, one in-process run of the pipeline job as
   the schedule runs it (``--run-per-phase``: each phase's asset group in a run of its own, as
   this benchmark did before 2026-12-04; it pays a run's start and end five times);
2. **nightly**: one new incremental file per object, holding 1% new rows (new primary keys) and
   0.5% updated rows (existing primary keys, a later ``updated_at``), then the same run again.

Per phase (ingestion, hist-union, staging, unification, report: the asset groups), the seconds of
its steps as Dagster measured them, and ``run``: the run's wall time outside its steps. Per phase:
seconds and warehouse statements (queries and statements sent to DuckDB, counted
in the engine); DuckDB reports the rows a statement scanned only with its profiler on, which
costs time, so they are counted in an invocation of their own (``--rows-scanned``, its own
section of the doc) rather than estimated. The ratio nightly / full comes from the same
invocation, and the unification phase is compared with its loop alone (the ``unify_loop``
step: graph, iterations, lookup). It rewrites the ``nightly`` section of ``docs/benchmarks.md``.

    .venv/bin/python bench/bench_nightly.py --records 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import write_section  # noqa: E402 - bench/ is a folder of scripts, not a package

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
DOC = ROOT / "docs" / "benchmarks.md"
PHASES = ("ingestion", "hist_union", "staging", "unification", "report")
# object folder -> (primary key, how the files are written)
OBJECTS = {
    "shop/customers": ("customer_id", "csv"),
    "shop/orders": ("order_id", "csv"),
    "loyalty/members": ("member_id", "parquet"),
    "web/events": ("event_id", "jsonl"),
}
NIGHT = "2024-07-01"
ONE_ROW_NIGHT = "2024-07-02"  # the run after the unchanged one: one new row per object
TARGET_RATIO = 0.10  # nightly / full wall time (issue 12)
TARGET_UNIFICATION = 3.0  # unification phase / its loop

STATEMENTS = {"n": 0, "seconds": 0.0}  # counted and timed by the engine below, read per phase
STEP_SECONDS: dict[str, float] = {}  # warehouse seconds per named pipeline step, read per phase


class DagsterStepTally:
    """What one Dagster step sent to the warehouse (a run of the whole job). A plain class: tests
    load this script from its file without registering it as a module, where a dataclass with
    postponed annotations cannot be built."""

    def __init__(self) -> None:
        self.statements = 0
        self.seconds = 0.0
        self.by_pipeline_step: dict[str, float] = {}  # warehouse seconds
        self.rows_scanned = 0  # with ``--rows-scanned``: DuckDB's profiler's count
        self.not_scanned = 0  # with ``--rows-scanned``: statements whose rows could not be read


DAGSTER_STEPS: dict[str, DagsterStepTally] = {}  # per Dagster step key
# With ``--statement-log``: one JSON line per statement (run, Dagster step, pipeline step, seconds,
# the SQL's head), for finding where a phase's warehouse seconds go.
STATEMENT_LOG: dict = {"file": None, "run": ""}
RUN = "run"  # the pseudo-phase of a whole-job run: Dagster's own time outside its steps


def _dagster_step() -> str:
    """The Dagster step a statement is sent from ('' outside one: resource set-up)."""
    from dagster import OpExecutionContext

    try:
        return OpExecutionContext.get().get_step_execution_context().step.key
    except Exception:  # noqa: BLE001 - not inside a step
        return ""


def counting_warehouse(rows_scanned: bool = False, **kwargs):
    """The DuckDB engine counting and timing what it is sent; with ``rows_scanned``, each of its
    connections runs DuckDB's profiler (``enable_profiling = 'no_output'``, every statement), and
    each statement's ``total_rows_scanned`` is read back after it and added to its step's books."""
    from cdp_assets.engines.duckdb import DuckDBWarehouse

    class CountingDuckDB(DuckDBWarehouse):
        """DuckDB, counting every statement and query it is sent (one attempt each)."""

        def _open(self):
            con = super()._open()
            if rows_scanned:  # a connection's own settings: each cursor sets them
                con.execute("SET enable_profiling = 'no_output'")
                con.execute("SET profiling_coverage = 'ALL'")
            return con

        def _rows_scanned(self) -> int | None:
            """The rows the last statement scanned, as DuckDB's profiler reports them (None: its
            connection already closed)."""
            if self._con is None:
                return None
            profile = json.loads(self._con.get_profiling_information(format="json"))
            return int(profile.get("query", {}).get("total_rows_scanned", 0))

        def _count(self, seconds: float, sql: str) -> None:
            STATEMENTS["seconds"] += seconds
            step = self.current_step or "(no step)"
            STEP_SECONDS[step] = STEP_SECONDS.get(step, 0.0) + seconds
            books = DAGSTER_STEPS.setdefault(_dagster_step(), DagsterStepTally())
            books.statements += 1
            books.seconds += seconds
            books.by_pipeline_step[step] = books.by_pipeline_step.get(step, 0.0) + seconds
            if rows_scanned:
                scanned = self._rows_scanned()
                if scanned is None:
                    books.not_scanned += 1
                else:
                    books.rows_scanned += scanned
            if STATEMENT_LOG["file"] is not None:
                line = {"run": STATEMENT_LOG["run"], "dagster_step": _dagster_step(), "step": step}
                line.update(seconds=round(seconds, 4), sql=" ".join(sql.split())[:400])
                STATEMENT_LOG["file"].write(json.dumps(line) + "\n")

        def _execute(self, sql: str) -> None:
            STATEMENTS["n"] += 1
            started = time.monotonic()
            try:
                super()._execute(sql)
            finally:
                self._count(time.monotonic() - started, sql)

        def _query(self, sql: str, params: list | None = None):
            STATEMENTS["n"] += 1
            started = time.monotonic()
            try:
                return super()._query(sql, params)
            finally:
                self._count(time.monotonic() - started, sql)

    return CountingDuckDB(**kwargs)


def ensure_sample(records: int) -> Path:
    sample = DATA / str(records) / "sample"
    if not (sample / "shop").exists():
        from cdp_assets.sample.generator import generate_sample

        generate_sample(sample, records, seed=42, chain_emails=(20, 30))
    return sample


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True, dtype=False, convert_dates=False)  # values as the file wrote them


def _write(df: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)


def write_nightly_files(
    sample: Path, new_share: float, updated_share: float, night: str = NIGHT, new_each: int | None = None
) -> dict[str, dict[str, int]]:
    """One new incremental file per object, dated ``night``: new keys (copies of incremental rows
    under new ids) and updated keys (historical rows with a later ``updated_at``); ``new_each``:
    that many new rows per object and no updated one, instead of the shares."""
    written = {}
    for folder, (pk, fmt) in OBJECTS.items():
        obj_dir = sample / folder
        name = folder.split("/")[1]
        files = sorted(p for p in obj_dir.rglob(f"*.{fmt}") if p.is_file())
        frames = {p: _read(p, fmt) for p in files}
        total = sum(len(f) for f in frames.values())
        incremental = pd.concat([f for p, f in frames.items() if p.parent == obj_dir], ignore_index=True)
        historical = pd.concat([f for p, f in frames.items() if p.parent != obj_dir], ignore_index=True)
        n_new, n_upd = math.ceil(total * new_share), math.ceil(total * updated_share)
        if new_each is not None:
            n_new, n_upd = new_each, 0
        new = incremental.sample(n=n_new, replace=len(incremental) < n_new, random_state=1).copy()
        # Keys no earlier night used: a later night's date in them.
        tag = "" if night == NIGHT else night.replace("-", "")
        new[pk] = [f"N{name[:1].upper()}{tag}{i:09d}" for i in range(n_new)]
        updated = historical.sample(n=min(n_upd, len(historical)), random_state=2).copy()
        rows = pd.concat([new, updated], ignore_index=True)
        stamps = pd.Timestamp(night) + pd.to_timedelta(range(len(rows)), unit="s")
        rows["updated_at"] = (
            stamps
            if fmt == "parquet" and "datetime" in str(historical["updated_at"].dtype)
            else (stamps.strftime("%Y-%m-%d %H:%M:%S"))
        )
        _write(rows, obj_dir / f"{name}_{night}.{fmt}", fmt)
        written[folder] = {"rows_before": total, "new": len(new), "updated": len(updated)}
    return written


def run_phases(loaded, wh, instance, label: str) -> dict:
    from dagster import AssetSelection, Definitions, define_asset_job

    from cdp_assets.definitions import build_definitions

    out = {}
    for phase in PHASES:
        job = define_asset_job(f"bench_{phase}", selection=AssetSelection.groups(phase))
        defs = Definitions.merge(build_definitions(loaded, wh), Definitions(jobs=[job]))
        before, before_s = STATEMENTS["n"], STATEMENTS["seconds"]
        STEP_SECONDS.clear()
        started = time.monotonic()
        result = defs.resolve_job_def(f"bench_{phase}").execute_in_process(instance=instance, raise_on_error=False)
        seconds = time.monotonic() - started
        _raise_if_failed(result, f"{label} run, phase {phase}")
        entry = {
            "seconds": round(seconds, 3),
            "statements": STATEMENTS["n"] - before,
            "warehouse_seconds": round(STATEMENTS["seconds"] - before_s, 3),
        }
        out[phase] = _described(entry, result, phase, label, dict(STEP_SECONDS))
    return out


def _described(entry: dict, result, phase: str, label: str, named: dict, steps=None) -> dict:
    """A phase's entry with its build modes (of the Dagster ``steps``; None: every step of the run),
    the unification's details and where its warehouse time went (``named``: seconds per named
    pipeline step), printed."""
    modes = [
        e.event_specific_data.materialization.metadata["build_mode"].value
        for e in result.get_asset_materialization_events()
        if (steps is None or e.step_key in steps) and "build_mode" in e.event_specific_data.materialization.metadata
    ]
    if modes:
        entry["build_modes"] = {m: modes.count(m) for m in sorted(set(modes))}
    if phase == "unification":
        entry.update(_unification_details(result))
    ranked = sorted(named.items(), key=lambda kv: -kv[1])
    entry["slowest_steps"] = {name: round(sec, 3) for name, sec in ranked[:8]}
    print(f"  {label} {phase}: {entry}", flush=True)
    # Every named step's warehouse seconds, for profiling (the JSON only; the doc shows the slowest).
    entry["step_seconds"] = {name: round(sec, 3) for name, sec in ranked}
    return entry


def run_job(loaded, wh, instance, label: str) -> dict:
    """The whole pipeline job in one run, as the schedule runs it; per phase (its asset group) the
    seconds of its steps as Dagster measured them, their statements and warehouse seconds, and a
    ``run`` pseudo-phase: the run's wall time outside its steps (planning, the run's start and end
    events) and the statements sent outside a step."""
    from cdp_assets.definitions import PIPELINE_JOB, build_definitions

    defs = build_definitions(loaded, wh)
    job = defs.resolve_job_def(PIPELINE_JOB)
    graph = defs.resolve_asset_graph()
    DAGSTER_STEPS.clear()
    STEP_SECONDS.clear()
    STATEMENT_LOG["run"] = label
    started = time.monotonic()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    wall = time.monotonic() - started
    _raise_if_failed(result, f"{label} run")
    phase_of: dict[str, str] = {}  # step key -> the group of the assets it materialized or checked
    for e in result.all_events:
        key = None
        if e.event_type_value == "ASSET_MATERIALIZATION":
            key = e.event_specific_data.materialization.asset_key
        elif e.event_type_value == "ASSET_CHECK_EVALUATION":
            key = e.event_specific_data.asset_key
        if key is not None and e.step_key and e.step_key not in phase_of:
            phase_of[e.step_key] = graph.get(key).group_name
    durations = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    # A step of a graph-backed asset (``graph.op``) that materializes nothing itself (the enrichment's
    # fan-out) belongs where its graph's other steps do.
    by_graph = {k.split(".", 1)[0]: p for k, p in phase_of.items() if "." in k}
    for k in set(durations) - set(phase_of):
        if "." in k and k.split(".", 1)[0] in by_graph:
            phase_of[k] = by_graph[k.split(".", 1)[0]]
    unplaced = sorted(set(durations) - set(phase_of))
    if unplaced:
        raise RuntimeError(f"{label} run: steps of no asset group: {unplaced}")
    out = {}
    for phase in (*PHASES, RUN):
        steps = [k for k, p in phase_of.items() if p == phase] if phase != RUN else [""]
        books = [DAGSTER_STEPS.get(k, DagsterStepTally()) for k in steps]
        named: dict[str, float] = {}
        for b in books:
            for name, sec in b.by_pipeline_step.items():
                named[name] = named.get(name, 0.0) + sec
        seconds = sum(durations.get(k, 0.0) for k in steps) if phase != RUN else wall - sum(durations.values())
        entry = {
            "seconds": round(seconds, 3),
            "statements": sum(b.statements for b in books),
            "warehouse_seconds": round(sum(b.seconds for b in books), 3),
            "rows_scanned": sum(b.rows_scanned for b in books),
            "statements_not_scanned": sum(b.not_scanned for b in books),
        }
        out[phase] = _described(entry, result, phase, label, named, set(steps))
    return out


def _raise_if_failed(result, what: str) -> None:
    if not result.success:
        errors = [
            e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        ]
        raise RuntimeError(f"{what} failed: {(errors or ['?'])[0][:2000]}")


def _unification_details(result) -> dict:
    """The unification phase's loop, enrichment and statistics steps, and its loop's nodes."""
    graphs = [
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if "nodes_in_rounds" in e.event_specific_data.materialization.metadata
    ]
    return {
        "loop_seconds": round(_step_seconds(result, "unify_loop_"), 3),
        # The collecting step builds the key statistics.
        "finish_seconds": round(_step_seconds(result, "finish_unification_"), 3),
        "enrich_seconds": round(_step_seconds(result, "enrich_table_"), 3),
        "nodes": sum(m["nodes"].value for m in graphs),
        "nodes_in_rounds": sum(m["nodes_in_rounds"].value for m in graphs),
        "loop_modes": sorted(
            {
                str(e.event_specific_data.materialization.metadata["mode"].value)
                for e in result.get_asset_materialization_events()
                if "mode" in e.event_specific_data.materialization.metadata
            }
        ),
    }


def _step_seconds(result, prefix: str) -> float:
    """Seconds of the steps whose key contains ``prefix``, as Dagster measured them."""
    return sum(
        e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS" and prefix in (e.step_key or "")
    )


def bench(args) -> dict:
    import yaml
    from dagster import DagsterInstance

    from cdp_assets.config import load_config

    sample = ensure_sample(args.records)
    work = DATA / str(args.records) / "nightly"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(sample, work / "sample")
    cfg = yaml.safe_load((ROOT / "examples" / "acme" / "cdp.yml").read_text())
    cfg["unification_file"] = str(ROOT / "examples" / "acme" / "unify.yml")
    if args.all_tables_incremental:
        # The example gives only shop_customers_stg incremental_columns: the loop re-reads the other tables
        # whole, so their values count as new and every component they reach is solved again each night.
        unify = yaml.safe_load((ROOT / "examples" / "acme" / "unify.yml").read_text())
        for table in unify["tables"]:
            table.setdefault("incremental_columns", ["updated_at"])
        work.mkdir(parents=True, exist_ok=True)
        (work / "unify.yml").write_text(yaml.safe_dump(unify, sort_keys=False))
        cfg["unification_file"] = str(work / "unify.yml")
    for source in cfg["sources"]:
        source["connector"]["path"] = str(work / "sample" / Path(source["connector"]["path"]).name)
        source.pop("start_date", None)
    cfg["engine"]["duckdb"] = {"path": str(work / "cdp.duckdb"), "threads": args.threads}
    cfg["report"]["path"] = str(work / "report.md")
    cfg.setdefault("checks", {})["freshness_hours"] = 1e6  # the sample's dates are fixed
    (work / "cdp.yml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(work / "cdp.yml")
    wh = counting_warehouse(args.rows_scanned, path=str(loaded.duckdb_path), threads=args.threads)
    out = {"records": args.records, "threads": args.threads}
    with DagsterInstance.ephemeral() as instance:
        print(f"full run on {args.records:,} records ...", flush=True)
        runner = run_phases if args.run_per_phase else run_job
        out["full"] = runner(loaded, wh, instance, "full")
        out["nightly_files"] = write_nightly_files(work / "sample", args.new_share, args.updated_share)
        print(f"nightly files: {out['nightly_files']}", flush=True)
        out["nightly"] = runner(loaded, wh, instance, "nightly")
        # The floor under the nightly ratio: a run with nothing new still runs every step, its
        # checks and its bookkeeping.
        print("unchanged run (no new files) ...", flush=True)
        out["unchanged"] = runner(loaded, wh, instance, "unchanged")
        # What an incremental run costs whatever the size of its change: one new row per object.
        print("one new row per object ...", flush=True)
        out["one_row_files"] = write_nightly_files(work / "sample", 0, 0, night=ONE_ROW_NIGHT, new_each=1)
        out["one_row"] = runner(loaded, wh, instance, "one_row")
    (work / "cdp.duckdb").unlink(missing_ok=True)
    return out


def _total(run: dict, key: str) -> float:
    return sum(p[key] for p in run.values())


def loop_nodes(run: dict) -> str:
    """How many of the graph's nodes the nightly loop's rounds worked on."""
    u = run["unification"]
    if not u.get("nodes"):
        return "the number of nodes in its rounds was not recorded"
    share = u["nodes_in_rounds"] / u["nodes"]
    return f"{u['nodes_in_rounds']:,} of {u['nodes']:,} nodes ({share:.1%}) were in its rounds"


def rows_scanned_markdown(args, r: dict) -> str:
    """The rows each phase scanned in the full and the nightly run, as DuckDB's profiler counts them."""
    full, nightly = r["full"], r["nightly"]
    option = " --all-tables-incremental" if args.all_tables_incremental else ""
    lines = [
        "## Rows scanned, nightly vs full",
        "",
        f"Written by `bench/bench_nightly.py --rows-scanned` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(`--records {args.records} --threads {args.threads}{option}`): the same full and nightly runs as above, "
        "with DuckDB's profiler on for every statement (`enable_profiling = 'no_output'`, `profiling_coverage = "
        "'ALL'`), each statement's `total_rows_scanned` read back after it: the rows its table scans read, after "
        "DuckDB's row-group pruning, summed per phase. Its seconds include the profiler's, so the timing section "
        "is written by a run without it. Statements whose connection had closed before they could be read are "
        "counted apart (not measured).",
        "",
        "| phase | full rows scanned | nightly rows scanned | nightly / full "
        "| statements not measured (full, nightly) |",
        "|---|---:|---:|---:|---|",
    ]
    for phase in (*PHASES, RUN):
        f, n = full[phase].get("rows_scanned", 0), nightly[phase].get("rows_scanned", 0)
        share = f"{n / f:.2f}" if f else "-"
        lines.append(
            f"| {phase} | {f:,} | {n:,} | {share} "
            f"| {full[phase].get('statements_not_scanned', '-')}, {nightly[phase].get('statements_not_scanned', '-')} |"
        )
    tf, tn = _total(full, "rows_scanned"), _total(nightly, "rows_scanned")
    lines.append(f"| **all** | **{tf:,}** | **{tn:,}** | **{tn / tf:.2f}** | |")
    return "\n".join(lines)


def write_doc(args, r: dict) -> None:
    full, nightly, unchanged, one_row = r["full"], r["nightly"], r["unchanged"], r["one_row"]
    ratio = _total(nightly, "seconds") / _total(full, "seconds")
    floor = _total(unchanged, "seconds") / _total(full, "seconds")
    fixed = _total(one_row, "seconds") / _total(full, "seconds")
    new = sum(f["new"] for f in r["nightly_files"].values())
    upd = sum(f["updated"] for f in r["nightly_files"].values())
    option = " --all-tables-incremental" if args.all_tables_incremental else ""
    L = [
        "# Nightly vs full run",
        "",
        f"Written by `bench/bench_nightly.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(`--records {args.records} --threads {args.threads}{option}`), DuckDB, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f} when written: other work on the machine shows there). "
        "One invocation: the whole pipeline on a fresh database "
        "(*full*), then one new "
        f"incremental file per object with {args.new_share:.1%} new and {args.updated_share:.1%} updated rows "
        f"({new:,} new, {upd:,} updated rows in all) and the pipeline again (*nightly*), then once more with "
        "no new file (*unchanged*: what every run costs whatever its data), then with one new row per object "
        "(*one row*: what an incremental run costs whatever the size of its change). "
        + (
            "Each phase is one in-process materialization of its asset group (`--run-per-phase`); "
            if args.run_per_phase
            else "Each is one in-process run of the pipeline job, as the schedule runs it; a phase's seconds are "
            "its steps' (its asset group's materializations and checks) as Dagster measured them, and *run* is the "
            "run's wall time outside its steps (planning, the run's start and end, the events of the assets it "
            "plans); "
        )
        + "statements are the queries and statements the engine "
        "sent to DuckDB (the rows they scanned, which DuckDB reports only with its profiler on, are in the next "
        "section, from an invocation with `--rows-scanned`).",
        "",
        "| phase | full s | nightly s | nightly / full | unchanged s | one row s | full in warehouse s "
        "| nightly in warehouse s | full statements | nightly statements | nightly builds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for phase in (p for p in (*PHASES, RUN) if p in full):
        f, n, z, o = full[phase], nightly[phase], unchanged[phase], one_row[phase]
        modes = ", ".join(f"{k} {v}" for k, v in n.get("build_modes", {}).items())
        if "loop_modes" in n:
            modes = "loop: " + ", ".join(n["loop_modes"]) + f"; enriched, masters: {modes}; key statistics: kept counts"
        L.append(
            f"| {phase} | {f['seconds']:.2f} | {n['seconds']:.2f} | {n['seconds'] / f['seconds']:.2f} | "
            f"{z['seconds']:.2f} | {o['seconds']:.2f} | {f['warehouse_seconds']:.2f} | "
            f"{n['warehouse_seconds']:.2f} | {f['statements']} | {n['statements']} | {modes or '-'} |"
        )
    wratio = _total(nightly, "warehouse_seconds") / _total(full, "warehouse_seconds")
    # What a nightly run pays whatever its data: Dagster's steps and Python, outside the engine's statements.
    total = _total(full, "seconds")
    outside = _total(nightly, "seconds") - _total(nightly, "warehouse_seconds")
    L.append(
        f"| **all** | **{_total(full, 'seconds'):.2f}** | **{_total(nightly, 'seconds'):.2f}** | **{ratio:.2f}** | "
        f"**{_total(unchanged, 'seconds'):.2f}** | **{_total(one_row, 'seconds'):.2f}** | "
        f"**{_total(full, 'warehouse_seconds'):.2f}** | "
        f"**{_total(nightly, 'warehouse_seconds'):.2f}** | **{_total(full, 'statements')}** | "
        f"**{_total(nightly, 'statements')}** | |"
    )
    L += [
        "",
        "*In warehouse* is the time spent inside the engine's statements (the rest of a phase is Dagster's steps, "
        f"the asset checks' steps, Python parsing in ingestion). Nightly / full in the warehouse: **{wratio:.2f}**. "
        f"Outside the warehouse the nightly run spends {outside:.2f} s, {outside / total:.3f} of the full run: "
        + (
            "on its own more than the target allows, so the target needs fewer Dagster steps per run, not only "
            "less work in the warehouse."
            if outside / total > TARGET_RATIO
            else "within the target."
        ),
    ]
    uni = {
        k: (run["unification"]["seconds"], run["unification"]["loop_seconds"])
        for k, run in (("full", full), ("nightly", nightly))
    }
    L += [
        "",
        "| unification | phase s | loop s (`unify_loop` step) | phase / loop | enrichment s (`enrich_table` steps) "
        "| key statistics s (`finish_unification` step) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, (phase_s, loop_s) in uni.items():
        run = full if k == "full" else nightly
        L.append(
            f"| {k} | {phase_s:.2f} | {loop_s:.2f} | {phase_s / loop_s if loop_s else float('nan'):.1f}x | "
            f"{run['unification'].get('enrich_seconds', 0):.2f} | {run['unification'].get('finish_seconds', 0):.2f} |"
        )
    worst = max(p / lp for p, lp in uni.values() if lp)
    L += [
        "",
        "### Targets",
        "",
        f"- Nightly run at most {TARGET_RATIO:.2f} of the full run: measured **{ratio:.2f}**: "
        f"**{'met' if ratio <= TARGET_RATIO else 'not met'}**. A run with no new file took "
        f"{_total(unchanged, 'seconds'):.2f} s, **{floor:.3f}** of the full run "
        f"({_total(unchanged, 'statements')} statements, {_total(unchanged, 'warehouse_seconds'):.2f} s of them in "
        "the warehouse): "
        + (
            "on its own more than the target allows at this size."
            if floor > TARGET_RATIO
            else "on its own all the target allows at this size."
            if floor > TARGET_RATIO - 0.01
            else f"the nightly run's {ratio - floor:.2f} above it is the new rows' work."
        )
        + f" A run with one new row per object took {_total(one_row, 'seconds'):.2f} s, **{fixed:.3f}** of the "
        f"full run ({_total(one_row, 'statements')} statements, {_total(one_row, 'warehouse_seconds'):.2f} s of "
        "them in the warehouse): what an incremental run costs whatever the size of its change"
        + (
            ", on its own more than the target allows at this size: no work on the new rows can meet it here."
            if fixed > TARGET_RATIO
            else "."
        ),
        f"- Unification phase at most {TARGET_UNIFICATION:.0f}x its loop: measured up to **{worst:.1f}x**: "
        f"**{'met' if worst <= TARGET_UNIFICATION else 'not met'}**"
        + (
            " (the full run's phase is "
            f"{uni['full'][0] / uni['full'][1]:.1f}x its loop; in the nightly run the loop now works on the "
            "contracted graph, so the enrichments, the statistics and the master table weigh more beside it)."
            if worst > TARGET_UNIFICATION and uni["full"][1] and uni["full"][0] / uni["full"][1] <= TARGET_UNIFICATION
            else "."
        ),
        "- Hist-union, staging, the enriched and the master tables build incrementally (docs/incremental.md); a "
        "table staged with a dedupe (web_events) is staged incrementally too (only the partitions its new rows "
        "touch are ranked again) and logs the keys it replaced or removed, which its enrichment applies by key. "
        "The key statistics come from per-(table, id) value counts kept beside them on DuckDB, recounted for the "
        "ids touched since their last count (docs/incremental.md, \"Key statistics\"; their step's seconds "
        "above). The checks of hist-union, staging and the lookup (and the master table's lookup ids) read "
        "measures kept with their tables and updated from each change (docs/checks.md, \"Measures kept with "
        "the table\", \"The lookup's kept measure\"); ingestion rescans its folders.",
        "- Where the nightly run still spends its time. The unification loop: an incremental run filters each "
        "table's new rows once (`_new_rows`, a typed incremental column compared as it is), its rounds work on "
        "the contracted graph, each previous component the new rows touch one node (its representative), with "
        "the changed values (docs/unification.md, \"Incremental runs\"): "
        f"{loop_nodes(nightly)}; the key values, the value statistics, the lookup and the graph replace only "
        "the rows of the changed and affected values, and the watermarks come from the new rows. Still reading "
        "every row: the semi-joins that find those rows (the key values, the graph, the value statistics, the "
        "lookup), the enrichments' rows of their changed keys (a semi-join over each staged table), the master "
        "table's candidate rows of its touched ids (a new row tends to join a large component: about 10% of the "
        "enriched rows for 3% of the ids on the 1M sample; each enriched table read once for them) and its "
        "distinct ids, the key statistics' recount of their touched ids (which also keeps each id's lookup and "
        "enriched rows, from which the enrichments' coverage query reads the largest canonical id and the "
        "lookup's profile: docs/checks.md) and the aggregate of their kept counts. The keys' valid_regexps are "
        "bound as parameters on DuckDB, compiled once per statement (docs/unification.md). A table "
        "without `incremental_columns` is re-read whole, so every component its values reach is touched"
        + (
            " (here every table was given `incremental_columns: [updated_at]`: `--all-tables-incremental`; the "
            "example gives only shop_customers_stg one)"
            if args.all_tables_incremental
            else " (in the example only shop_customers_stg has them: run with `--all-tables-incremental`)"
        )
        + ". Fixed costs of every run: the staging statements' planning (the phone rules' validity patterns "
        "for every country, about 0.2 s per staged table with phones), DuckDB's WAL checkpoints, and Dagster's "
        "own cost per step and per run (the report's phase above: its statements take a tenth of it; *run*: "
        "the run's own time outside its steps).",
    ]
    write_section(DOC, "nightly", "\n".join(L))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-share", type=float, default=0.01)
    p.add_argument("--updated-share", type=float, default=0.005)
    p.add_argument("--no-doc", action="store_true")
    p.add_argument(
        "--run-per-phase",
        action="store_true",
        help="materialize each phase's asset group in a run of its own (before 2026-12-04: the default) instead "
        "of one run of the pipeline job, as the schedule runs it",
    )
    p.add_argument(
        "--all-tables-incremental",
        action="store_true",
        help="give every table of the example's unify.yml incremental_columns: [updated_at]",
    )
    p.add_argument(
        "--rows-scanned",
        action="store_true",
        help="run DuckDB's profiler on every statement and report the rows each phase scanned, in a section of its "
        "own (its seconds include the profiler's: the timing section is written without it)",
    )
    p.add_argument("--statement-log", type=Path, help="write one JSON line per statement to this file")
    args = p.parse_args()
    if args.statement_log:
        STATEMENT_LOG["file"] = args.statement_log.open("w")
    result = bench(args)
    (DATA / str(args.records) / "nightly_results.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
    if not args.no_doc:
        if args.rows_scanned:
            write_section(ROOT / "docs" / "benchmarks.md", "nightly-rows-scanned", rows_scanned_markdown(args, result))
        else:
            write_doc(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
