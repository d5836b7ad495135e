"""Where ours' time goes (child side, largest size only, unless ``--no-explore``): the
statements that dominate ours timed next to alternative formulations, on the tables ours left
behind, and ours once more on an in-memory database. Nothing in cdp_assets changes: these are
candidate rewrites. The "as built" statements come from the current builders; a candidate whose
builder has changed shape is skipped, never fatal. Its figures feed the report's *Where the time
goes* section (the in-memory column, the alternative formulations and the suggestions)."""

from __future__ import annotations

import dataclasses
import re
import time

import duckdb

from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.unify.runner import prepare_inputs, run_loop

from .base import DATA, log, make_plan
from .warehouses import ProfiledDuckDBWarehouse

CTAS = "CREATE TABLE bench_x AS "


def run(args) -> dict:
    """Best of 3 runs of each candidate, on the tables ours left behind in ``args.db``."""
    unify, plan = make_plan()
    tmp = DATA / str(args.size) / "tmp_explore"
    con = duckdb.connect(
        args.db, config={"threads": str(args.threads), "memory_limit": args.memory_limit, "temp_directory": str(tmp)}
    )
    out: dict = {"timings": {}, "relabel": []}
    try:
        _time_candidates(con, plan, out)
    finally:
        for t in ("bench_x", "bench_y", "bench_labels", "bench_hooks", "bench_stats", "bench_nodes"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        con.close()
    _in_memory_run(args, unify, plan, out)
    return {"seconds": 0.0, "explore": out}


def _best_of_3(con, out: dict, label: str, statements, rollback: bool = False) -> float | None:
    """The fastest of 3 runs of ``statements`` (a list, or a callable that builds it), kept in
    ``out["timings"][label]``; None, logged, when a builder no longer fits the candidate."""
    times = []
    try:
        stmts = statements() if callable(statements) else statements
        for _ in range(3):
            con.execute("DROP TABLE IF EXISTS bench_x; DROP TABLE IF EXISTS bench_y")
            t0 = time.perf_counter()
            if rollback:
                con.execute("BEGIN")
            for sql in stmts:
                con.execute(sql)
            if rollback:
                con.execute("ROLLBACK")
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # a builder changed shape: skip this candidate
        if rollback:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
        log(f"  explore: {label}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return None
    out["timings"][label] = min(times)
    log(f"  explore: {label}: {min(times):.3f}s")
    return min(times)


def _time_candidates(con, plan: u.IdPlan, out: dict) -> None:
    def best(label: str, statements, rollback: bool = False) -> float | None:
        return _best_of_3(con, out, label, statements, rollback)

    keys, graph = plan.ref("keys").sql, plan.ref("graph").sql
    # run_loop drops its per-value statistics and nodes (scratch tables): rebuild them here
    stats_ref, nodes_ref = TableRef("main", "bench_stats"), TableRef("main", "bench_nodes")
    con.execute(f"CREATE OR REPLACE TABLE {stats_ref.sql} AS {u.value_stats_sql(plan)}")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {nodes_ref.sql} AS {u.nodes_sql(plan, stats_ref)}")
        plan = dataclasses.replace(plan, nodes_ref=nodes_ref)
    except Exception as exc:
        log(f"  explore: could not rebuild the nodes ({type(exc).__name__}: {exc})")
    nodes = plan.nodes.sql

    # (a) the per-value aggregation of key_values
    best("aggregate: value_stats as built", [CTAS + u.value_stats_sql(plan)])

    # (b) node numbering: a global sort of the values vs none (+ picking leaders after the loop)
    def nodes_built() -> str:
        return u.nodes_sql(plan, stats_ref)

    best("nodes: as built (ROW_NUMBER over a sort by priority, value)", lambda: [CTAS + nodes_built()])
    best(
        "nodes: the same without the sort (ROW_NUMBER() OVER ())",
        lambda: [
            CTAS + re.sub(r"ROW_NUMBER\(\) OVER \(ORDER BY [^)]*\)", "ROW_NUMBER() OVER ()", nodes_built(), count=1)
        ],
    )
    best(
        "nodes: pick each component's leader after the loop (arg_min by priority, value)",
        [
            CTAS
            + f"""
SELECT g.leader_key_type, g.leader_id, arg_min(n.node, (k.merge_priority, n.value)) AS leader
FROM {graph} AS g JOIN {nodes} AS n ON n.key_type = g.follower_key_type AND n.value = g.follower_id
JOIN {keys} AS k ON k.key_type = n.key_type
GROUP BY g.leader_key_type, g.leader_id"""
        ],
    )

    # (c) edges: the per-row nodes CTE as built vs the same CTE MATERIALIZED
    def edges_materialized() -> list[str]:
        table = plan.tables[0]
        cols = plan.linking_columns(table)
        row_nodes = u._row_nodes_sql(plan, table, cols)
        branches = " UNION ALL ".join(
            f"SELECT n{i} AS a, rmin AS b FROM r WHERE n{i} IS NOT NULL AND n{i} <> rmin" for i in range(len(cols))
        )
        return [CTAS + f"WITH r AS MATERIALIZED ({row_nodes}) SELECT DISTINCT a, b FROM ({branches}) AS e"]

    built_edges = u.edges_sql(plan)
    best("edges: as built", [CTAS + built_edges])
    if "MATERIALIZED" not in built_edges:
        best("edges: row -> nodes joined once (MATERIALIZED CTE)", edges_materialized)

    # (d) relabel: rewrite every label each round vs update the labels that move
    try:
        con.execute("DROP TABLE IF EXISTS bench_labels")
        con.execute(f"CREATE TABLE bench_labels AS SELECT node, node AS label FROM {nodes}")
        n_labels = con.execute("SELECT COUNT(*) FROM bench_labels").fetchone()[0]
        labels_ref, hooks_ref = TableRef("main", "bench_labels"), TableRef("main", "bench_hooks")
        for k in sorted({max(1, n_labels // 10), max(1, n_labels // 100), max(1, n_labels // 1000)}, reverse=True):
            con.execute("DROP TABLE IF EXISTS bench_hooks")
            con.execute(
                f"CREATE TABLE bench_hooks AS SELECT node, node - 1 AS parent FROM bench_labels "
                f"USING SAMPLE {k} ROWS (reservoir, 7)"
            )
            a = best(
                f"relabel, {k:,} pointers: count + CREATE TABLE AS over all {n_labels:,} labels (as built)",
                [
                    u.relabeled_count_sql(labels_ref, hooks_ref),
                    "CREATE TABLE bench_y AS " + u.relabel_sql(labels_ref, hooks_ref),
                ],
            )
            b = best(
                f"relabel, {k:,} pointers: UPDATE of the moving labels only",
                ["UPDATE bench_labels SET label = h.parent FROM bench_hooks AS h WHERE bench_labels.label = h.node"],
                rollback=True,
            )
            if a is not None and b is not None:
                out["relabel"].append({"pointers": k, "labels": n_labels, "ctas": a, "update": b})
    except Exception as exc:
        log(f"  explore: relabel skipped ({type(exc).__name__}: {exc})")


def _in_memory_run(args, unify, plan: u.IdPlan, out: dict) -> None:
    """(e) ours on an in-memory database: how much of its time is writing tables to the file."""
    tmp = DATA / str(args.size) / "tmp_explore"
    try:
        wh = ProfiledDuckDBWarehouse(
            path=":memory:", memory_limit=args.memory_limit, threads=args.threads, temp_directory=str(tmp)
        )
        with wh.session():
            wh.execute(f"ATTACH '{DATA / str(args.size) / 'rows.duckdb'}' AS bench_rows (READ_ONLY)")
            wh.execute("CREATE SCHEMA src")
            wh.execute("CREATE TABLE src.rows AS SELECT * FROM bench_rows.src.rows")
            wh.execute("DETACH bench_rows")
            prepare_inputs(wh, plan, unify)
            wh._records.clear()
            t0 = time.perf_counter()
            run_loop(wh, plan, full_refresh=True)
            out["in_memory_seconds"] = time.perf_counter() - t0
            out["in_memory_statements"] = wh._records
        log(f"  explore: ours on an in-memory database: {out['in_memory_seconds']:.2f}s")
    except Exception as exc:
        log(f"  explore: in-memory run skipped ({type(exc).__name__}: {exc})")
