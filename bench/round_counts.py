"""Round counts of connected-components algorithms in SQL on DuckDB, on the same graphs.

    .venv/bin/python bench/round_counts.py [--records 100000]

Compares the loop cdp_assets uses (hook, compress, contract) with the two alternatives we tried:
plain min-label propagation, and min-label propagation with one pointer jump per round. Prints
a Markdown table (copied into docs/unification.md).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.unify.runner import prepare_inputs, run_loop
from unification.base import KEYS, make_plan  # bench/ (this script's folder) is on sys.path


def chain(n: int, shuffle: bool) -> pd.DataFrame:
    labels = list(range(n + 1))
    if shuffle:
        random.Random(1).shuffle(labels)
    rows = [
        {"email": f"e{labels[i // 2]:07d}", "phone": f"p{labels[i // 2 + 1]:07d}"}
        if i % 2 == 0
        else {"email": f"e{labels[i // 2 + 1]:07d}", "phone": f"p{labels[i // 2 + 1]:07d}"}
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=list(KEYS)).astype("string")


def sample(records: int, folder: Path) -> pd.DataFrame:
    """The generator's data, standardised roughly as staging does (emails lowercased, phone digits)."""
    from cdp_assets.sample.generator import generate_sample

    generate_sample(folder, records, seed=1)
    import duckdb

    con = duckdb.connect()
    frames = []
    for sub, cols in (
        ("shop/customers", ("email", "phone", None)),
        ("loyalty/members", ("email", "phone", None)),
        ("web/events", ("email", None, "cookie_id")),
    ):
        files = sorted(str(p) for p in (folder / sub).rglob("*") if p.is_file())
        for f in files:
            df = (
                pd.read_parquet(f)
                if f.endswith(".parquet")
                else pd.read_json(f, lines=True, dtype=False)
                if f.endswith(".jsonl")
                else pd.read_csv(f, dtype=str, keep_default_na=False)
            )
            out = pd.DataFrame(
                {
                    "email": df[cols[0]].astype("string").str.strip().str.lower(),
                    "phone": df[cols[1]].astype("string").str.replace(r"[^0-9]", "", regex=True) if cols[1] else None,
                    "cookie": df[cols[2]].astype("string") if cols[2] else None,
                }
            )
            frames.append(out)
    con.close()
    df = pd.concat(frames, ignore_index=True)
    df.loc[~df["email"].fillna("").str.contains("@") | (df["email"] == "test@test.com"), "email"] = None
    df.loc[df["phone"].fillna("").str.len() < 10, "phone"] = None
    df.loc[df["phone"].fillna("").str.fullmatch(r"(\d)\1*"), "phone"] = None
    return df.astype("string")


def label_propagation(wh: DuckDBWarehouse, plan: u.IdPlan, jump: bool, cap: int = 5000) -> tuple[int, float]:
    """Rounds until no label changes: L(v) = min(L(v), L(neighbours)) [then L(v) = L(L(v))]."""
    edges, labels = TableRef(plan.schema, "lp_edges"), TableRef(plan.schema, "lp_labels")
    # run_loop drops its nodes (a scratch table): number the same nodes again, from its key_values
    stats, nodes = TableRef(plan.schema, "lp_value_stats"), TableRef(plan.schema, "lp_nodes")
    wh.run(f"CREATE OR REPLACE TABLE {stats.sql} AS {u.value_stats_sql(plan)}")
    wh.run(f"CREATE OR REPLACE TABLE {nodes.sql} AS {u.nodes_sql(plan, stats)}")
    plan = replace(plan, nodes_ref=nodes)
    wh.run(f"CREATE OR REPLACE TABLE {edges.sql} AS {u.edges_sql(plan)}")
    wh.run(
        f"CREATE OR REPLACE TABLE {edges.sql} AS SELECT a, b FROM {edges.sql} UNION ALL SELECT b, a FROM {edges.sql}"
    )
    wh.run(f"CREATE OR REPLACE TABLE {labels.sql} AS SELECT node, label FROM {nodes.sql}")  # own labels
    started, rounds = time.monotonic(), 0
    while rounds < cap:
        rounds += 1
        new = TableRef(plan.schema, "lp_new")
        wh.run(
            f"CREATE OR REPLACE TABLE {new.sql} AS SELECT l.node, LEAST(l.label, "
            f"COALESCE(MIN(n.label), l.label)) AS label FROM {labels.sql} AS l LEFT JOIN {edges.sql} "
            f"AS e ON e.a = l.node LEFT JOIN {labels.sql} AS n ON n.node = e.b GROUP BY l.node, l.label"
        )
        if jump:
            wh.run(
                f"CREATE OR REPLACE TABLE {new.sql} AS SELECT l.node, COALESCE(p.label, l.label) AS label "
                f"FROM {new.sql} AS l LEFT JOIN {new.sql} AS p ON p.node = l.label"
            )
        changed = wh.scalar(
            f"SELECT COUNT(*) FROM {new.sql} AS n JOIN {labels.sql} AS o USING (node) WHERE n.label <> o.label"
        )
        wh.run(f"DROP TABLE {labels.sql}")
        wh.run(f"ALTER TABLE {new.sql} RENAME TO {labels.name}")
        if changed == 0:
            break
    return rounds, time.monotonic() - started


def measure(name: str, df: pd.DataFrame, folder: Path) -> dict:
    wh = DuckDBWarehouse(path=str(folder / f"{name}.duckdb"), threads=2)
    source = TableRef("src", "rows")
    with wh.session():
        wh.write_dataframe(source, df)
        unify, plan = make_plan(source, seen_at=None)
        prepare_inputs(wh, plan, unify)
        started = time.monotonic()
        ours = run_loop(wh, plan)
        ours_s = time.monotonic() - started
        lp_rounds, lp_s = label_propagation(wh, plan, jump=False)
        lpj_rounds, lpj_s = label_propagation(wh, plan, jump=True)
    return {
        "graph": name,
        "rows": len(df),
        "nodes": ours.nodes,
        "ours_rounds": ours.rounds,
        "ours_s": ours_s,
        "lp_rounds": lp_rounds,
        "lp_s": lp_s,
        "lp_jump_rounds": lpj_rounds,
        "lp_jump_s": lpj_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        results = [
            measure("chain of 1,024 records, sorted labels", chain(1024, False), folder),
            measure("chain of 1,024 records, shuffled labels", chain(1024, True), folder),
            measure("chain of 10,000 records, shuffled labels", chain(10_000, True), folder),
            measure(f"generated sample, {args.records:,} records", sample(args.records, folder / "sample"), folder),
        ]
    print("| graph | nodes | ours: rounds | ours: s | label propagation: rounds | s | LP + pointer jump: rounds | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['graph']} | {r['nodes']:,} | {r['ours_rounds']} | {r['ours_s']:.2f} | "
            f"{r['lp_rounds']} | {r['lp_s']:.2f} | {r['lp_jump_rounds']} | {r['lp_jump_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
