"""Statements of a nightly run: what the second run of the sample's shape sends to its warehouse,
per phase, after a full run and one new incremental file per object.

    .venv/bin/python bench/bench_nightly_statements.py            # about 60 s; prints a table
    .venv/bin/python bench/bench_nightly_statements.py --log stmts.txt  # and the nightly DuckDB statements, by step

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

from cdp_assets_tests.fakes.td_api import FakeTreasureData  # noqa: E402


def full_then_nightly(root: Path, engine: dict | None = None, log: list | None = None) -> tuple[dict, dict]:
    full = run(root, engine)
    write_nightly_files(root / "data", 0.01, 0.005)
    nightly = run(root, engine, log=log)
    return full, nightly


def measure(log: list | None = None, td: bool = True) -> dict:
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
            jobs = full_then_nightly(root / "td", engine)
        finally:
            fake.stop()
    return {"duckdb": duck, "treasure_data": jobs}


def table(result: dict) -> str:
    def cell(r: dict, engine: str, phase: str) -> int:
        p = r["phases"].get(phase, {})
        return statements(p) if engine == "duckdb" else p.get("jobs", 0)

    runs = [(e, r) for e in result for r in result[e]]
    heads = {"duckdb": "DuckDB", "treasure_data": "TD jobs"}
    lines = [
        "| phase | " + " | ".join(f"{heads[e]} {w}" for e in result for w in ("full", "nightly")) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    phases = [p for p in PHASES if any(p in r["phases"] for _, r in runs)]
    for phase in phases:
        lines.append(f"| {phase} | " + " | ".join(str(cell(r, e, phase)) for e, r in runs) + " |")
    lines.append("| **total** | " + " | ".join(str(sum(cell(r, e, p) for p in phases)) for e, r in runs) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", type=Path, help="write the nightly DuckDB run's statements, by step")
    p.add_argument("--no-td", action="store_true", help="DuckDB only")
    args = p.parse_args()
    log: list = []
    result = measure(log if args.log else None, td=not args.no_td)
    print(table(result))
    if args.log:
        args.log.write_text("".join(f"{step} | {kind} | {what}\n" for step, kind, what in log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
