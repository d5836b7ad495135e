"""Benchmark: the valid_regexp rules read from a table's column against bound as parameters.

DuckDB compiles a regular expression whose pattern is a column once per row, and one bound as a
parameter of the statement once (``Dialect.binds_regexp_parameters``). On a database a full run
left (default: ``bench/.data/prof_snapN``, written by the profiler, or ``bench/.data/N/nightly``
after ``bench_nightly.py``), this times, alternately and ``--repeat`` times each, the statements
that read the valid_regexps in both forms, as the run sends them (into a temporary table):

- ``key_values``: the full run's key values of every id (every valid key value row);
- ``master``: every master table in full.

The figures are the fastest of the repeats (the machine's other work only adds). Nothing is
written to the database (it is opened read-only; the tables are the session's temporary ones).

    .venv/bin/python bench/bench_valid_regexp.py --records 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdp_assets.config import load_config  # noqa: E402
from cdp_assets.engines.duckdb import DuckDBWarehouse  # noqa: E402
from cdp_assets.sql import unification as u  # noqa: E402
from cdp_assets.sql import unification_pipeline as up  # noqa: E402
from cdp_assets.sql.dialects import DIALECTS, TableRef  # noqa: E402
from cdp_assets.sql.master import master_table_query  # noqa: E402
from cdp_assets.sql.pipeline import Query  # noqa: E402


def statements(loaded) -> dict[str, dict[str, Query]]:
    """{name: {"column": query, "bound": query}} of the statements reading the valid_regexps."""
    unify = loaded.unification
    out: dict[str, dict[str, Query]] = {}
    column, bound = u.build_id_plans(loaded), u.build_id_plans(loaded, dialect=DIALECTS["duckdb"])
    for plan_c, plan_b in zip(column, bound):
        out[f"{plan_c.name}_key_values"] = {"column": u.key_values_sql(plan_c), "bound": u.key_values_sql(plan_b)}
    seen_at = {t.alias: t.seen_at for p in column for t in p.tables}
    for master in unify.master_tables:
        plan = next(p for p in column if p.name == master.id_name)
        enriched, id_tables = up.master_inputs(unify, column, master)
        rules = up.master_rules_ref(unify, master)
        out[master.name] = {
            form: master_table_query(
                master, unify, plan.ref("lookup"), enriched, rules, seen_at, id_tables, binds_regexps=form == "bound"
            )
            for form in ("column", "bound")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--folder", type=Path, help="the run's folder (cdp.yml and its database)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    folder = args.folder or ROOT / "bench" / ".data" / f"prof_snap{args.records}"
    loaded = load_config(folder / "cdp.yml")
    wh = DuckDBWarehouse(path=str(loaded.duckdb_path), read_only=True, threads=args.threads)
    best: dict[tuple[str, str], float] = {}
    rows: dict[tuple[str, str], int] = {}
    with wh.session():
        for name, forms in statements(loaded).items():
            for i in range(args.repeat):
                for form, query in forms.items():
                    ref = TableRef("main", f"_cdp_bench_{form}_{i}", "temp")
                    started = time.monotonic()
                    rows[name, form] = wh.create_scratch(ref, query.sql, list(query.params))
                    seconds = time.monotonic() - started
                    best[name, form] = min(best.get((name, form), seconds), seconds)
                    wh.drop(ref)
            c, b = best[name, "column"], best[name, "bound"]
            same = "same rows" if rows[name, "column"] == rows[name, "bound"] else "ROWS DIFFER"
            print(
                f"{name}: {rows[name, 'bound']:,} rows ({same}); rules column {c:.2f} s, "
                f"bound parameters {b:.2f} s ({c / b:.1f}x), best of {args.repeat}"
            )


if __name__ == "__main__":
    main()
