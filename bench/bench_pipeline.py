"""Benchmark of the whole pipeline on DuckDB at scale, inside a memory limit.

For a generated sample of N records (default 5M; ``bench/.data/N/sample``, generated once and
reused) the script runs the whole pipeline twice, each time in a fresh child process on a fresh
database:

* ``limited``: DuckDB ``memory_limit`` set (default 2GB) with a ``temp_directory`` to spill to;
* ``baseline``: no ``memory_limit`` (DuckDB's default, 80% of RAM), measured in the same run.

Each child runs the phases one after another (ingestion, hist-union, staging, unification, report)
as separate in-process materializations and records, per phase, the seconds and the peak RSS of
the process (``VmHWM``, reset between phases through ``/proc/self/clear_refs``), plus how much
DuckDB spilled (the temp directory's largest size, sampled). The result: the limited run's time
and peak as ratios of the baseline's, and whether it stayed within the limit instead of dying.
It rewrites the ``pipeline`` section of ``docs/benchmarks.md``.

    .venv/bin/python bench/bench_pipeline.py --records 5000000 --memory-limit 2GB

Internal: ``--child NAME --db PATH --result PATH`` runs one pipeline (the child process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import write_section  # noqa: E402 - bench/ is a folder of scripts, not a package

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
DOC = ROOT / "docs" / "benchmarks.md"
PHASES = ("ingestion", "hist_union", "staging", "unification", "report")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    return total


def run_child(args) -> None:
    """One whole pipeline, phase by phase, in this process."""
    import yaml
    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

    from cdp_assets.config import load_config
    from cdp_assets.definitions import build_definitions
    from cdp_assets.engines.duckdb import DuckDBWarehouse

    work = Path(args.db).parent
    sample = DATA / str(args.records) / "sample"
    cfg = yaml.safe_load((ROOT / "examples" / "acme" / "cdp.yml").read_text())
    cfg["unification_file"] = str(ROOT / "examples" / "acme" / "unify.yml")
    for source in cfg["sources"]:
        source["connector"]["path"] = str(sample / Path(source["connector"]["path"]).name)
        source.pop("start_date", None)
    cfg["engine"]["duckdb"] = {"path": args.db, "threads": args.threads}
    if args.child == "limited":
        cfg["engine"]["duckdb"]["memory_limit"] = args.memory_limit
    cfg["report"]["path"] = str(work / "report.md")
    cfg.setdefault("checks", {})["freshness_hours"] = 1e6  # the sample's dates are fixed
    (work / "cdp.yml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(work / "cdp.yml")
    temp = work / "spill"
    temp.mkdir(exist_ok=True)
    engine = loaded.pipeline.engine.duckdb
    wh = DuckDBWarehouse(
        path=str(loaded.duckdb_path), memory_limit=engine.memory_limit, threads=engine.threads, temp_directory=str(temp)
    )
    spill = {"max": 0}
    stop = threading.Event()

    def sample_spill() -> None:
        while not stop.is_set():
            spill["max"] = max(spill["max"], _dir_size(temp))
            stop.wait(0.5)

    threading.Thread(target=sample_spill, daemon=True).start()
    out = {"phases": {}, "ok": True}
    with DagsterInstance.ephemeral() as instance:
        for phase in PHASES:
            job = define_asset_job(f"bench_{phase}", selection=AssetSelection.groups(phase))
            phase_defs = Definitions.merge(build_definitions(loaded, wh), Definitions(jobs=[job]))
            _reset_peak()
            started = time.monotonic()
            result = phase_defs.resolve_job_def(f"bench_{phase}").execute_in_process(
                instance=instance, raise_on_error=False
            )
            out["phases"][phase] = {
                "seconds": round(time.monotonic() - started, 2),
                "peak_rss": _status("VmHWM"),
                "success": result.success,
            }
            if not result.success:
                out["ok"] = False
                errors = [
                    e.event_specific_data.error.message
                    for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE"
                ]
                out["error"] = (errors or ["run failed"])[0][:2000]
                break
    stop.set()
    out["spill_max_bytes"] = spill["max"]
    Path(args.result).write_text(json.dumps(out, indent=1))


def run_one(args, name: str) -> dict:
    work = DATA / str(args.records) / f"pipeline_{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result = work / "result.json"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--db",
        str(work / "cdp.duckdb"),
        "--result",
        str(result),
        "--records",
        str(args.records),
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    out = json.loads(result.read_text()) if result.exists() else {"ok": False, "phases": {}}
    out["exit"] = proc.returncode
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    if proc.returncode != 0 and "error" not in out:
        out["error"] = proc.stderr[-2000:]
    shutil.rmtree(work / "spill", ignore_errors=True)
    (work / "cdp.duckdb").unlink(missing_ok=True)
    return out


def ensure_sample(records: int) -> None:
    sample = DATA / str(records) / "sample"
    if not (sample / "shop").exists():
        from cdp_assets.sample.generator import generate_sample

        generate_sample(sample, records, seed=42, chain_emails=(20, 30))


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def write_doc(args, results: dict) -> None:
    lim, base = results["limited"], results["baseline"]
    L = [
        "# Whole pipeline at scale, within a memory limit",
        "",
        f"Written by `bench/bench_pipeline.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (`--records "
        f"{args.records} --memory-limit {args.memory_limit} --threads {args.threads}`), on a machine with "
        f"{os.cpu_count()} cores and {gib(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))} of memory. "
        "Both runs are in the same invocation, each in a fresh process on a fresh database: *limited* sets "
        "DuckDB's `memory_limit` (spilling to a temp directory), *baseline* leaves DuckDB's default (80% of RAM). "
        "Peak RSS is the process's `VmHWM` during each phase (reset between phases), Python and Dagster included.",
        "",
        "| phase | limited s | baseline s | limited / baseline | limited peak RSS | baseline peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase in PHASES:
        a, b = lim["phases"].get(phase), base["phases"].get(phase)
        if not a or not b:
            L.append(f"| {phase} | {a['seconds'] if a else '-'} | {b['seconds'] if b else '-'} | - | - | - |")
            continue
        ratio = a["seconds"] / b["seconds"] if b["seconds"] else float("nan")
        L.append(
            f"| {phase} | {a['seconds']:.1f} | {b['seconds']:.1f} | "
            f"{ratio:.2f}x | {gib(a['peak_rss'])} | {gib(b['peak_rss'])} |"
        )
    tot_a = sum(p["seconds"] for p in lim["phases"].values())
    tot_b = sum(p["seconds"] for p in base["phases"].values())
    peak_a = max((p["peak_rss"] for p in lim["phases"].values()), default=0)
    peak_b = max((p["peak_rss"] for p in base["phases"].values()), default=0)
    L += [
        f"| **all** | **{tot_a:.1f}** | **{tot_b:.1f}** | "
        f"**{tot_a / tot_b if tot_b else float('nan'):.2f}x** | **{gib(peak_a)}** | **{gib(peak_b)}** |",
        "",
        f"- limited run: {'completed' if lim.get('ok') else 'FAILED: ' + str(lim.get('error', ''))[:300]}; "
        f"DuckDB spilled up to {gib(lim.get('spill_max_bytes', 0))} to its temp directory.",
        f"- baseline run: {'completed' if base.get('ok') else 'FAILED: ' + str(base.get('error', ''))[:300]}; "
        f"spilled up to {gib(base.get('spill_max_bytes', 0))}.",
        "- The peak RSS includes the Python process and, in ingestion, the pandas frames of one load (its files "
        "are parsed in Python before they are appended); DuckDB's own buffer memory is what `memory_limit` bounds.",
    ]
    write_section(DOC, "pipeline", "\n".join(L))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=5_000_000)
    p.add_argument("--memory-limit", default="2GB")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5400)
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args)
        return 0
    ensure_sample(args.records)
    results = {}
    for name in ("limited", "baseline"):
        print(f"{name}: running the whole pipeline on {args.records:,} records ...", flush=True)
        results[name] = run_one(args, name)
        print(json.dumps(results[name], indent=1), flush=True)
    (DATA / str(args.records) / "pipeline_results.json").write_text(json.dumps(results, indent=1))
    if not args.no_doc:
        write_doc(args, results)
    return 0 if results["limited"].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
