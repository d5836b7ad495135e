"""Round trips per run on Databricks: every statement the Databricks engine sends through the
connector's cursor, for a full run of the sample's shape and a nightly run after it, per phase.

    .venv/bin/python bench/bench_databricks_statements.py           # about 6 minutes; writes docs/benchmarks.md
    .venv/bin/python bench/bench_databricks_statements.py --no-doc  # print only

On a real SQL warehouse every statement is a round trip (network, queueing, the warehouse's
planning), so their number is what carries over from the local Spark session the engine runs on
here (``engine.databricks.connection: local_spark``), not their seconds. Counted by
``cdp_assets_tests/statement_counts.counting_round_trips`` at the cursor: queries, statements,
DataFrame batches and catalog look-ups alike. Three engines in the same invocation, each in an
emptied Spark session: the engine as it is; "tables", the engine writing an incremental build's
small intermediates as scratch tables instead of subqueries (``ScratchTables``, until
2026-12-05); and "before", that engine describing tables as it did until 2026-12-05 too
(``PerTableDescriptions``: a ``SHOW TABLES`` listing per table, and for an existing one another
listing and a ``SELECT * ... LIMIT 0``). Each runs the sample (4 objects, 1
id, 1 master table, 60 generated records) once in full, then after ``write_nightly_files`` (1% new
and 0.5% updated rows per object) once more, incremental. Counts are deterministic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from typing import ClassVar
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_nightly import write_nightly_files  # noqa: E402
from bench_statements import PHASES, RECORDS  # noqa: E402
from dagster import DagsterInstance  # noqa: E402
from doc_sections import write_section  # noqa: E402

from cdp_assets.config import load_config  # noqa: E402
from cdp_assets.definitions import PIPELINE_JOB, build_definitions  # noqa: E402
from cdp_assets.engines.base import WarehouseError, WarehouseResource  # noqa: E402
from cdp_assets.engines.databricks import DatabricksWarehouse  # noqa: E402
from cdp_assets.engines.factory import build_warehouse  # noqa: E402
from cdp_assets.engines.spark import reset_spark_session  # noqa: E402
from cdp_assets.sql import engine_meta as meta  # noqa: E402
from cdp_assets.sql.dialects import TableRef  # noqa: E402
from cdp_assets_tests.conftest import check_results, write_project  # noqa: E402
from cdp_assets_tests.statement_counts import as_class, counting_round_trips, per_phase, phase_of_steps  # noqa: E402


class ScratchTables(DatabricksWarehouse):
    """The Databricks engine as it was until 2026-12-05 (after its descriptions' change): an
    incremental build's small intermediates written as scratch tables (a ``CREATE TABLE AS`` and a
    ``DROP`` each), not inlined as subqueries of their readers."""

    @property
    def inlines_scratch_tables(self) -> bool:
        return False


class PerTableDescriptions(ScratchTables):
    """The Databricks engine describing tables as it did until 2026-12-05: per table a listing of
    its schema, and for an existing table a second listing and an empty select of its columns,
    nothing kept from one description to the next. Its intermediates are scratch tables, as they
    were then (``ScratchTables``)."""

    keeps_descriptions_in_session: ClassVar[bool] = False

    def describe_tables(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        return WarehouseResource.describe_tables(self, refs)

    def table_exists(self, ref: TableRef) -> bool:
        return ref.name in self.list_tables(ref.schema)

    def columns(self, ref: TableRef) -> list[str]:
        if not self.table_exists(ref):
            raise WarehouseError(f"table {ref.display} does not exist")
        _, description = self._run(meta.empty_select_sql(self.dialect.table_name(ref)))
        return [d[0] for d in description]


ENGINES = {"before": PerTableDescriptions, "tables": ScratchTables, "now": DatabricksWarehouse}


def run_twice(root: Path, spark_dir: Path, engine_class: type[DatabricksWarehouse]) -> dict[str, dict[str, Counter]]:
    """{"full" | "nightly": {phase: Counter(kind -> round trips)}} of one engine, its project under
    ``root``, in the process's Spark session emptied first."""
    reset_spark_session()
    engine = {"kind": "databricks", "databricks": {"connection": "local_spark", "local_spark_dir": str(spark_dir)}}
    loaded = load_config(write_project(root / "project", records=RECORDS, mutate=lambda c: c.update(engine=engine)))
    built = build_warehouse(loaded)
    warehouse = counting_round_trips(as_class(built, engine_class))
    defs = build_definitions(loaded, warehouse)
    out = {}
    for run in ("full", "nightly"):
        if run == "nightly":
            write_nightly_files(root / "project" / "data", 0.01, 0.005)
        warehouse.counts.clear()
        result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=DagsterInstance.ephemeral(), raise_on_error=False
        )
        checks = check_results(result)
        if not result.success or not all(checks.values()):
            failed = [k for k, ok in checks.items() if not ok]
            raise SystemExit(f"the {run} run on {engine_class.__name__} failed: {failed}")
        out[run] = per_phase(Counter(warehouse.counts), phase_of_steps(defs))
    return out


def measure() -> dict[str, dict[str, dict[str, Counter]]]:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, engine_class in ENGINES.items():
            out[name] = run_twice(Path(d) / name, Path(d) / "spark", engine_class)
        reset_spark_session()
    return out


def markdown(result: dict) -> str:
    def n(engine: str, run: str, phase: str | None = None) -> int:
        phases = result[engine][run]
        return sum(sum(c.values()) for p, c in phases.items() if phase is None or p == phase)

    phases = [p for p in PHASES if any(p in result[e][r] for e in result for r in result[e])]
    phases += sorted({p for e in result for r in result[e] for p in result[e][r]} - set(phases))
    lines = [
        "## Round trips per run on Databricks",
        "",
        f"The sample's shape (4 objects, 1 id, 1 master table, {RECORDS} generated records) on the Databricks "
        "engine over a local Spark session: every statement sent through the connector's cursor, each a round "
        "trip to a SQL warehouse (queries, statements, DataFrame batches, catalog listings and descriptions). "
        "A full run, then a nightly run after one new file per object (1% new and 0.5% updated rows). "
        "Counted by `bench/bench_databricks_statements.py`, three engines run in the same invocation: before = "
        "the same engine describing tables as it did until 2026-12-05 (per table a `SHOW TABLES` listing, and "
        "for an existing table a second listing and a `SELECT * ... LIMIT 0`), its intermediates scratch tables "
        "as then; tables = the engine writing an "
        "incremental build's small intermediates as scratch tables (a `CREATE TABLE AS` and a `DROP` each), "
        "as it did until 2026-12-05, where now they are subqueries of the statements that read them "
        "(`inlines_scratch_tables`).",
        "",
        "| phase | full, before | full, tables | full, now | nightly, before | nightly, tables | nightly, now |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in phases:
        lines.append(
            f"| {phase} | {n('before', 'full', phase)} | {n('tables', 'full', phase)} | {n('now', 'full', phase)} "
            f"| {n('before', 'nightly', phase)} | {n('tables', 'nightly', phase)} | {n('now', 'nightly', phase)} |"
        )
    lines.append(
        f"| **total** | {n('before', 'full')} | {n('tables', 'full')} | **{n('now', 'full')}** "
        f"| {n('before', 'nightly')} | {n('tables', 'nightly')} | **{n('now', 'nightly')}** |"
    )

    def renames(run: str) -> int:
        return sum(c.get("ALTER TABLE RENAME", 0) for c in result["now"][run].values())

    kinds: Counter = Counter()
    for counts in result["now"]["full"].values():
        kinds.update(counts)
    nightly: dict[str, Counter] = {"tables": Counter(), "now": Counter()}
    for engine, total in nightly.items():
        for counts in result[engine]["nightly"].values():
            total.update(counts)
    moved = [
        k for k in sorted(set(nightly["tables"]) | set(nightly["now"])) if nightly["tables"][k] != nightly["now"][k]
    ]
    lines += [
        "",
        "By kind, full run now: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()) + ".",
        "",
        "Nightly run, by kind, tables to now (the kinds that changed): "
        + (", ".join(f"{k} {nightly['tables'][k]} to {nightly['now'][k]}" for k in moved) or "none")
        + ".",
        "",
        "A table's description is one `SHOW TABLE EXTENDED IN schema LIKE 'a|b|...'` per schema for all the "
        "tables a step describes (`DatabricksWarehouse.describe_tables`): its `information` column holds each "
        "table's columns with their Spark types (Databricks documents the same output), and a table that does "
        "not exist is simply not in its rows. A step's session keeps what it read until a write of its own "
        "names the table (`keeps_descriptions_in_session`), and `table_exists` reads the same descriptions. "
        "What is left is mostly the builds themselves: on these parquet tables build-then-swap publishing "
        f"(`CREATE TABLE ... AS`, `DROP TABLE`, `ALTER TABLE ... RENAME`: {renames('full')} renames in the "
        f"full run, {renames('nightly')} in the nightly), row counts (`SELECT COUNT(*)`: Spark's `CREATE TABLE "
        "AS` answers no row count on parquet), the loads' JSON batches (`INSERT`), schema creations (once per "
        "step's session) and the leftover listings (`SHOW TABLES`). On Delta tables, the workspace default, a "
        "table built from a SELECT is published by one `CREATE OR REPLACE TABLE ... AS` instead of its build, "
        "`DROP` and `RENAME` (docs/engines.md, \"Publishing\"): two statements fewer per such rename, not "
        "counted here (local Spark has no Delta).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-doc", action="store_true", help="print only, do not write docs/benchmarks.md")
    args = parser.parse_args()
    text = markdown(measure())
    print(text)
    if not args.no_doc:
        write_section(HERE.parent / "docs" / "benchmarks.md", "databricks-statements", text)


if __name__ == "__main__":
    main()
