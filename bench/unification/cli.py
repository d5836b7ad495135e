"""The command line: the parent runs every size and method in child processes and writes the
report; a child (``--method M`` or ``--task prepare|explore``, internal) does one piece of work
and writes its result as JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .base import DATA, DOC, ENTRY, METHODS, ROOT, SEED, log
from .machine import machine_info, wait_quiet
from .processes import spawn, vm_hwm
from .results import combine, fmt_b, ratios, status_cell, targets

# The module that runs each method in its child (imported there only: the parent stays small).
METHOD_MODULES = {"ours": "ours", "scipy": "scipy_baseline", "labelprop": "labelprop"}


def parse(argv: list[str]):
    p = argparse.ArgumentParser(
        description=PACKAGE_DOC.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000], help="records per run")
    p.add_argument("--quick", action="store_true", help="100k records only (about a minute)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seed", type=int, default=SEED)
    # Long chains included: a chain person with k emails is a path of 2(k-1) records, so plain
    # label propagation needs about 2k rounds (20-30 emails: ~40-60 rounds, as in the issue).
    p.add_argument(
        "--chain-emails",
        type=int,
        nargs=2,
        default=(20, 30),
        metavar=("LOW", "HIGH"),
        help="emails per chain person in the generated sample (default 20 30)",
    )
    p.add_argument("--memory-limit", default="8GB", help="DuckDB memory_limit for the SQL methods")
    p.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per method before it is stopped")
    p.add_argument("--lp-cap", type=int, default=200, help="safety cap on label-propagation rounds")
    p.add_argument("--repeat", type=int, default=1, help="runs of each method per size (the fastest is reported)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=60,
        help="before each timed run, wait up to this many seconds for other processes to go quiet (0: don't)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep the per-method work databases")
    p.add_argument(
        "--no-explore",
        action="store_true",
        help="skip timing alternative formulations of ours' heaviest statements (largest size only)",
    )
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    # child mode
    p.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--task", choices=("prepare", "explore"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_main(args) -> int:
    """One piece of work in this (child) process; its result goes to ``args.result``."""
    if args.task == "prepare":
        from .data import ensure_rows_db, ensure_sample

        chain = tuple(args.chain_emails)
        sample = ensure_sample(args.size, args.seed, chain)
        _, prep = ensure_rows_db(args.size, sample, args.seed, chain)
        Path(args.result).write_text(json.dumps(prep))
        return 0
    if args.task == "explore":
        from . import explore

        out = explore.run(args)
        Path(args.result).write_text(json.dumps(out, indent=1, default=str))
        return 0
    method = importlib.import_module(f".{METHOD_MODULES[args.method]}", __package__)
    log(f"N={args.size}: {args.method} starting (pid {os.getpid()})")
    out = method.run(args)
    out["method"] = args.method
    out["vm_hwm"] = vm_hwm()
    Path(args.result).write_text(json.dumps(out, indent=1, default=str))
    log(f"N={args.size}: {args.method} done in {out['seconds']:.2f}s")
    return 0


def child_cmd(args, *extra: str) -> list[str]:
    """The command line of a child: this benchmark again, with the settings children need."""
    return [
        sys.executable,
        str(ENTRY),
        *extra,
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
        "--lp-cap",
        str(args.lp_cap),
        "--seed",
        str(args.seed),
        "--chain-emails",
        *(str(c) for c in args.chain_emails),
    ]


def prepare(args, n: int) -> dict:
    """Sample and rows database, in a child so that this process stays small."""
    out = DATA / str(n) / "prepare.json"
    out.unlink(missing_ok=True)
    run = spawn(child_cmd(args, "--task", "prepare", "--size", str(n), "--result", str(out)), timeout=3600)
    if run["returncode"] != 0 or not out.exists():
        raise SystemExit(f"preparing N={n} failed (exit {run['returncode']})")
    os.sync()  # flush the sample and database writes before anything is timed
    return json.loads(out.read_text())


def run_child(args, n: int, method: str, rows_db: Path) -> dict:
    """Copy the prepared database, run one method in a child, return its result + peak RSS."""
    work = DATA / str(n) / f"work_{method}.duckdb"
    result_path = DATA / str(n) / f"result_{method}.json"
    for p in (work, Path(str(work) + ".wal"), result_path, result_path.with_suffix(".parquet")):
        p.unlink(missing_ok=True)
    shutil.rmtree(DATA / str(n) / f"tmp_{method}", ignore_errors=True)
    shutil.copyfile(rows_db, work)
    os.sync()
    cmd = child_cmd(args, "--method", method, "--size", str(n), "--db", str(work), "--result", str(result_path))
    before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    run = spawn(cmd, args.timeout)
    if run["timed_out"]:
        log(f"N={n}: {method} exceeded {args.timeout:.0f}s and was stopped")
        return {
            "method": method,
            "status": "timeout",
            "wall": run["wall"],
            "peak_rss": run["sampled_rss"],
            "timeout": args.timeout,
        }
    if run["returncode"] != 0 or not result_path.exists():
        return {
            "method": method,
            "status": f"failed (exit {run['returncode']})",
            "wall": run["wall"],
            "peak_rss": run["sampled_rss"],
        }
    out = json.loads(result_path.read_text())
    out.update(
        status="ok",
        wall=run["wall"],
        work_db=str(work),
        ru_maxrss=run["ru_maxrss"],
        sampled_rss=run["sampled_rss"],
        peak_rss=out.get("vm_hwm") or run["sampled_rss"],
        others_cores=run["others_cores"],
        others_cores_before=before,
        cpu_seconds=run["cpu_seconds"],
    )
    return out


def run_methods(args, n: int, rows_db: Path) -> dict[str, dict]:
    """Each method ``--repeat`` times, interleaved; one representative result per method."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for rep in range(args.repeat):
        for method in args.methods:
            if runs[method] and runs[method][-1].get("status") == "timeout":
                continue  # no point in waiting for it again
            log(f"N={n}: running {method}" + (f" ({rep + 1}/{args.repeat})" if args.repeat > 1 else "") + " ...")
            r = run_child(args, n, method, rows_db)
            runs[method].append(r)
            log(
                f"N={n}: {method}: {status_cell(r)} s, peak RSS {fmt_b(r.get('peak_rss'))}"
                + (f", rounds {r['rounds']}" if "rounds" in r else "")
                + (f"; other processes used {r['others_cores']:.2f} cores meanwhile" if "others_cores" in r else "")
            )
    return {method: combine(runs[method]) for method in args.methods}


def explore_size(args, n: int, work_db: str) -> dict | None:
    """The exploration (``explore``) on the tables ours left in ``work_db``, in a child."""
    log(f"N={n}: timing alternatives to ours' heaviest statements ...")
    out = DATA / str(n) / "explore.json"
    out.unlink(missing_ok=True)
    shutil.rmtree(DATA / str(n) / "tmp_explore", ignore_errors=True)
    run = spawn(
        child_cmd(args, "--task", "explore", "--size", str(n), "--db", work_db, "--result", str(out)),
        timeout=args.timeout,
    )
    shutil.rmtree(DATA / str(n) / "tmp_explore", ignore_errors=True)
    if run["returncode"] == 0 and out.exists():
        return json.loads(out.read_text())["explore"]
    log(f"N={n}: exploring alternatives failed (exit {run['returncode']}); the report goes without them")
    return None


def remove_work(n: int, methods: list[str]) -> None:
    for method in methods:
        for p in (DATA / str(n) / f"work_{method}.duckdb", DATA / str(n) / f"work_{method}.duckdb.wal"):
            p.unlink(missing_ok=True)
        shutil.rmtree(DATA / str(n) / f"tmp_{method}", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.method or args.task:
        return child_main(args)
    from .report import write_doc
    from .verify import verify

    sizes = [100_000] if args.quick else args.sizes
    DATA.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    log(f"machine: {machine}")
    all_results: dict[int, dict] = {}
    failed = False
    for n in sizes:
        prep = prepare(args, n)
        res = {
            "prep": prep,
            "methods": {},
            "settings": {"threads": args.threads, "memory_limit": args.memory_limit, "repeat": args.repeat},
        }
        all_results[n] = res
        res["methods"] = run_methods(args, n, DATA / str(n) / "rows.duckdb")
        res["verify"] = verify(res["methods"])
        if not res["verify"]["ok"]:
            failed = True
            log(f"N={n}: PARTITIONS DIFFER: {res['verify']['problems']}")
        else:
            log(
                f"N={n}: same partition from {res['verify']['checked']}: {res['verify']['values']:,} values, "
                f"{res['verify']['components']:,} components (largest {res['verify']['largest_component']:,})"
            )
        if not args.no_explore and n == max(sizes) and res["methods"].get("ours", {}).get("status") == "ok":
            explored = explore_size(args, n, res["methods"]["ours"]["work_db"])
            if explored is not None:
                res["explore"] = explored
        r_scipy, r_lp = ratios(res["methods"])
        log(f"N={n}: ours/scipy = {r_scipy and round(r_scipy, 2)}, labelprop/ours = {r_lp and round(r_lp, 2)}")
        if not args.keep_work:
            remove_work(n, args.methods)
        (DATA / "results.json").write_text(
            json.dumps({"machine": machine, "results": all_results}, indent=1, default=str)
        )
        if not args.no_doc:
            write_doc(all_results, machine, argv, final=n == sizes[-1])
    print()
    for row in targets(all_results):
        print(f"{row[3]:>5}  {row[0]:>5}  {row[1]}: {row[2]}")
    if not args.no_doc:
        log(f"wrote {DOC.relative_to(ROOT)}")
    if failed:
        log("FAILED: the methods do not agree on the partition (see above)")
        return 1
    return 0
