"""Seconds per statement of the local Spark session the Spark tests run on, per session setting.

    .venv/bin/python bench/bench_spark_session.py               # the variants alternating, 2 rounds
    .venv/bin/python bench/bench_spark_session.py --rounds 3    # about 4 minutes a run when idle
    .venv/bin/python bench/bench_spark_session.py --variants session "48 MB code cache"
    .venv/bin/python bench/bench_spark_session.py --start-vs-reset

The workload is the Treasure Data example (examples/td_format, loaded unchanged) as a whole
pipeline on the Databricks engine over a local Spark session, on a 150-record sample, as
engines/test_cross_engine_td_examples.py ran it until 2026-12-05 (it now runs the example's
unification on Spark, from DuckDB's staged tables; kept whole here so that figures stay
comparable with the earlier ones in docs/tests.md). Each variant runs in a fresh process (a JVM
start of its own, not counted), variants alternating A/B/A/B so that the machine's load hits both
alike. Reported per run: statements sent through the cursor, the pipeline's seconds, seconds
per statement, and the CPU seconds of the JVM (less sensitive to the machine's load than the wall
time). Prints only: the figures and what was decided from them are in docs/tests.md (the session
keeps Spark's plan settings: switching AQE or whole-stage codegen off saved nothing measurable, nor
did a 2g heap; the JVM's 256 MB code cache saved about a fifth of its CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> settings of the session for the run: "start" ones given to the session's builder (they
# replace the session's own of the same name; JVM flags, driver memory), "runtime" ones set with
# spark.conf.set before the run. "session": the session as cdp_assets/engines/spark.py starts it.
VARIANTS: dict[str, dict[str, dict[str, str]]] = {
    "session": {},
    # The session before its code cache was set (2026-12-04): C1 alone reserves 48 MB for it.
    "48 MB code cache": {"start": {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}},
    "2g heap": {"start": {"spark.driver.memory": "2g"}},
    "no AQE": {"runtime": {"spark.sql.adaptive.enabled": "false"}},
    "no AQE, no WSCG": {"runtime": {"spark.sql.adaptive.enabled": "false", "spark.sql.codegen.wholeStage": "false"}},
}


def _descendants_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's children and theirs: the JVM."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - mine
        mine |= frontier
    return sum(cpu[p] for p in mine)


def _one(variant: str, records: int) -> dict:
    """Child process: one pipeline run with the variant's settings; prints its figures."""
    import shutil

    import yaml
    from dagster import DagsterInstance

    from cdp_assets.config import load_config
    from cdp_assets.config.loader import REPO_ROOT
    from cdp_assets.definitions import PIPELINE_JOB, build_definitions
    from cdp_assets.engines import spark_dbapi
    from cdp_assets.engines.factory import build_warehouse
    from cdp_assets.engines.spark import get_spark_session, stop_spark_session
    from cdp_assets.sample.generator import generate_sample

    example = REPO_ROOT / "examples" / "td_format"
    sent = [0]
    execute = spark_dbapi.LocalSparkCursor.execute

    def counted(self, operation, parameters=None):
        sent[0] += 1
        return execute(self, operation, parameters)

    spark_dbapi.LocalSparkCursor.execute = counted
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        generate_sample(root / "data", records, seed=5)
        (root / "p").mkdir()
        shutil.copyfile(example / "unify.yml", root / "p" / "unify.yml")
        cfg = yaml.safe_load((example / "cdp.yml").read_text())
        for source in cfg.get("sources") or []:
            source["connector"]["path"] = str(root / "data" / source["name"])
        cfg["engine"] = {
            "kind": "databricks",
            "databricks": {"connection": "local_spark", "local_spark_dir": d + "/wh"},
        }
        cfg["report"]["path"] = "report.md"
        (root / "p" / "cdp.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        loaded = load_config(root / "p" / "cdp.yml")
        start_settings = VARIANTS[variant].get("start", {})
        if start_settings:
            from pyspark.sql import SparkSession

            get_or_create = SparkSession.Builder.getOrCreate

            def started_with(builder):
                for key, value in start_settings.items():
                    builder.config(key, value)
                return get_or_create(builder)

            SparkSession.Builder.getOrCreate = started_with
        spark = get_spark_session(d + "/wh")
        for key, value in VARIANTS[variant].get("runtime", {}).items():
            spark.conf.set(key, value)
        wh = build_warehouse(loaded)
        start, jvm = time.perf_counter(), _descendants_cpu()
        result = (
            build_definitions(loaded, wh)
            .resolve_job_def(PIPELINE_JOB)
            .execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
        )
        seconds, jvm = time.perf_counter() - start, _descendants_cpu() - jvm
        assert result.success
        stop_spark_session()
    return {"variant": variant, "statements": sent[0], "seconds": seconds, "jvm_cpu": jvm}


def _start_vs_reset() -> None:
    """What the tests' shared session saves a Spark module: a session's start and three statements,
    against emptying the running session (``reset_spark_session``) and the same three."""
    from cdp_assets.engines.spark import get_spark_session, reset_spark_session, stop_spark_session

    def three(spark) -> None:
        spark.sql("CREATE SCHEMA a")
        spark.sql("CREATE TABLE a.t USING parquet AS SELECT 1 AS x")
        spark.sql("SELECT * FROM a.t").collect()

    with tempfile.TemporaryDirectory() as d:
        load, start = os.getloadavg()[0], time.perf_counter()
        three(get_spark_session(d + "/wh"))
        started = time.perf_counter() - start
        start = time.perf_counter()
        reset_spark_session()
        three(get_spark_session(d + "/wh"))
        reset = time.perf_counter() - start
        stop_spark_session()
    print(f"start and three statements {started:.1f} s; reset and the same three {reset:.1f} s; load {load:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--records", type=int, default=150)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="variants to run")
    ap.add_argument("--start-vs-reset", action="store_true", help="a session's start against its reset")
    args = ap.parse_args()
    if args.start_vs_reset:
        _start_vs_reset()
        return
    if args.one:
        print("RESULT " + json.dumps(_one(args.one, args.records)), flush=True)
        return
    runs = []
    for n in range(args.rounds):
        for variant in args.variants:
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--records", str(args.records)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                sys.exit(out.stderr[-3000:])
            run = json.loads(line[0][7:]) | {"round": n + 1, "load": load}
            runs.append(run)
            per = 1000 * run["seconds"] / run["statements"]
            print(
                f"round {run['round']} {variant:>16}: {run['statements']} statements in {run['seconds']:.1f} s "
                f"({per:.0f} ms each), JVM CPU {run['jvm_cpu']:.1f} s, load {load:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
