"""SIGKILL the pipeline at many points; a rerun must give exactly a clean run's tables.

Scenario: a complete run on the first day's files (the base), then the second day's files
arrive and the next run is killed. After every kill the DuckDB file must open, hold no
half-built table once the rerun finished, and the rerun must produce every table a clean run
produces, row for row, with an ingestion log that accounts for every row loaded exactly once.

The kill points are deterministic: counted in statements, publishes and appends of the run (see
``kill_driver``), spread over ingestion, hist-union, staging, the unification loop, the publishes
of finished tables and the report, plus evenly spaced statement counts over the whole run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cdp_assets.config import load_config
from cdp_assets.sql.incremental import BOOKKEEPING_SUFFIXES
from cdp_assets_tests.conftest import write_project
from cdp_assets_tests.reliability import kill_driver

pytestmark = pytest.mark.kills

DAY_TWO = "2024-06-02"
# Columns that record when or in which run something happened, not what the data is (a file's
# status holds its times when it was hashed).
VOLATILE_COLUMNS = {"_cdp_loaded_at", "loaded_at", "run_id", "seconds", "file_status"}
# Append-only run histories: compared by their own rules below, not row for row.
HISTORY_TABLES = {"ingestion_log", "unified_id_loop_stats"}

NAMED_KILLS = [
    "append:1",  # the first incremental rows appended, before their log row (one transaction)
    "append:3",
    "step:ingest_shop_customers:4",
    "step:ingest_web_events:9",
    "step:hist_union:3",
    "step:_stg:2",
    "publish:1",  # a finished table's CREATE OR REPLACE done, not committed
    "publish:8",
    "publish:16",
    "publish:20",
    "step:unify_loop:5",  # the nightly loop's new key values being built (after its new rows, the first scratch table)
    "step:unify_loop:9",  # the key values' DELETE done in place, their INSERT not yet (one transaction)
    "step:unify_loop:17",  # the changed values' statistics deleted in place, their INSERT not yet (one transaction)
    "step:unify_loop:27",  # in the middle of the loop's iterations (the second round's hooks)
    "step:unify_loop:40",  # the lookup's affected rows deleted, the new ones not yet inserted (one transaction)
    "step:unify_loop:42",  # the lookup's new rows and its kept check measures written, not committed
    "step:unify_loop:46",  # the lookup and its state published, the graph not yet (its changes found before both)
    "step:unify_loop:48",  # the moved values' graph rows deleted, their new rows not yet (one transaction)
    "step:unify_loop:51",  # lookup, its state and graph published, the watermarks not yet (nightly run)
    "step:enrich_table:3",  # the enriched table's incremental build: its first scratch table
    "step:enrich_table:8",  # its changed rows' DELETE done in place, their INSERT not yet (one transaction)
    # the key statistics' kept per-id counts: the markers and the touched ids' rows deleted (two
    # DELETEs), the recounted ones not yet inserted (one transaction); then the counts committed, the
    # statistics not yet built from them; then both built, the coverage query (which describes them)
    # not yet sent
    "step:finish_unification:8",
    "step:finish_unification:10",
    "step:finish_unification:12",
    "step:customer_master:2",
    # its only statement: the row counts (the loop history comes from the graph's build, the profile
    # from the result statistics' build)
    "step:cdp_report:1",
]
SPREAD = 6  # plus this many kills at evenly spaced statement counts over the whole run


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def _driver(config: Path, kill: str = "") -> Finished:
    """Run the pipeline in a child process forked from this one (modules already imported:
    no interpreter start-up per run), which SIGKILLs itself at ``kill``."""
    out = config.parent / f"driver_{os.getpid()}_{threading.get_ident()}.out"
    pid = os.fork()
    if pid == 0:  # the child: run, print the counts, exit without pytest's clean-up
        code = 1
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # pytest replaces sys.stdout/stderr with its capture buffers: write to the file.
            sys.stdout = os.fdopen(1, "w", closefd=False)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            code = kill_driver.main([str(config)] + ([kill] if kill else []))
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 300
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the pipeline run for {config} did not finish in 300 s")
        time.sleep(0.05)
    text = out.read_text(errors="replace") if out.exists() else ""
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return Finished(code, text, text)


def _hold_back_day_two(data: Path, parking: Path) -> None:
    for f in data.rglob(f"*_{DAY_TWO}.*"):
        dest = parking / f.relative_to(data)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, dest)


def _dump(db: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        out = {}
        for schema, name in names:
            df = con.execute(f'SELECT * FROM "{schema}"."{name}"').df()
            out[f"{schema}.{name}"] = df
        return out
    finally:
        con.close()


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=[c for c in df.columns if c in VOLATILE_COLUMNS])
    text = df.astype(str)
    return text.sort_values(list(text.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The base state (day one complete) and the clean result of the day-two run."""
    root = tmp_path_factory.mktemp("kills")
    config = write_project(root / "project", records=120)
    loaded = load_config(config)
    parking = root / "day_two"
    _hold_back_day_two(loaded.source_paths["shop"].parent, parking)
    first = _driver(config)
    assert first.returncode == 0, first.stderr[-3000:]
    base_db = root / "base.duckdb"
    shutil.copy(loaded.duckdb_path, base_db)
    shutil.copytree(parking, loaded.source_paths["shop"].parent, dirs_exist_ok=True)
    clean = _driver(config)
    assert clean.returncode == 0, clean.stderr[-3000:]
    counts = json.loads(next(ln for ln in reversed(clean.stdout.splitlines()) if ln.startswith('{"success"')))
    return {
        "config": config,
        "loaded": loaded,
        "base_db": base_db,
        "clean": _dump(loaded.duckdb_path),
        "counts": counts,
        "root": root,
    }


def _kill_points(counts: dict) -> list[str]:
    total = counts["statements"]
    spread = [f"stmt:{round(total * i / (SPREAD + 1))}" for i in range(1, SPREAD + 1)]
    return NAMED_KILLS + spread


def _one_kill(scenario: dict, n: int, kill: str) -> dict:
    """Copy the project, restore the base state, run and kill, rerun to completion, compare."""
    work = scenario["root"] / f"kill_{n:02d}"
    project = scenario["config"].parent
    shutil.copytree(project, work, ignore=shutil.ignore_patterns("*.duckdb*", "report*", "*.png"))
    config = work / "cdp.yml"
    loaded = load_config(config)
    shutil.copy(scenario["base_db"], loaded.duckdb_path)
    killed = _driver(config, kill)
    outcome = {"kill": kill, "killed": killed.returncode == -signal.SIGKILL, "problems": []}
    if not outcome["killed"]:
        outcome["problems"].append(f"not killed (exit {killed.returncode}): the kill point was never reached")
        return outcome
    rerun = _driver(config)
    if rerun.returncode != 0:
        outcome["problems"].append(f"rerun failed: {rerun.stderr[-2000:]}")
        return outcome
    outcome["problems"] += _compare(scenario["clean"], _dump(loaded.duckdb_path))
    shutil.rmtree(work, ignore_errors=True)
    return outcome


def _compare(clean: dict[str, pd.DataFrame], got: dict[str, pd.DataFrame]) -> list[str]:
    problems = []
    leftovers = [t for t in got if "__cdp_new_" in t]
    if leftovers:
        problems.append(f"half-built tables remain: {leftovers}")
    got = {k: v for k, v in got.items() if k not in leftovers}
    if set(clean) != set(got):
        problems.append(
            f"tables differ: missing {sorted(set(clean) - set(got))}, extra {sorted(set(got) - set(clean))}"
        )
    for name in sorted(set(clean) & set(got)):
        if name.split(".", 1)[1] in HISTORY_TABLES or name.endswith(BOOKKEEPING_SUFFIXES):  # watermarks: when, not what
            continue
        a, b = _comparable(clean[name]), _comparable(got[name])
        if list(a.columns) != list(b.columns) or not a.equals(b):
            problems.append(f"{name}: {len(b)} row(s) differ from the clean run's {len(a)}")
    problems += _log_accounts_for_every_row(got)
    return problems


def _log_accounts_for_every_row(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Every incremental row was logged by exactly one successful load, none loaded twice."""
    problems = []
    log = tables["acme_src.ingestion_log"]
    loads = log[(log["mode"] == "incremental") & (log["status"] == "success")]
    for (source, obj), rows in loads.groupby(["source", "object"]):
        table = tables[f"acme_src.{source}_{obj}"]
        logged = int(rows["records_loaded"].astype(int).sum())
        if logged != len(table):
            problems.append(f"{source}_{obj}: the log accounts for {logged} row(s), the table holds {len(table)}")
        if table.drop(columns=["_cdp_loaded_at", "_cdp_file"]).duplicated().any():
            problems.append(f"{source}_{obj}: rows loaded twice")
        if str(rows.sort_values("loaded_at").iloc[-1]["watermark"])[:19] != str(table["updated_at"].max())[:19]:
            problems.append(f"{source}_{obj}: the last logged watermark is not the table's newest row")
    return problems


def test_a_kill_at_each_named_or_spread_point_leaves_output_identical_to_a_clean_run(scenario):
    points = _kill_points(scenario["counts"])
    assert len(points) >= 20
    with ThreadPoolExecutor(max_workers=2) as pool:  # each kill is its own processes and files
        outcomes = list(pool.map(lambda nk: _one_kill(scenario, *nk), enumerate(points)))
    report = "\n".join(f"{o['kill']}: {'ok' if not o['problems'] else '; '.join(o['problems'])}" for o in outcomes)
    survived = sum(1 for o in outcomes if o["killed"] and not o["problems"])
    print(f"\nkills survived with identical output: {survived} of {len(points)}\n{report}")
    assert survived == len(points), report
