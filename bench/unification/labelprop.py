"""Method ``labelprop``: plain min-label propagation in SQL over every node until no label
changes, from exactly the inputs ours starts its loop from, then the same graph and lookup
builders as ours. The inputs are not timed; the propagation and the publication are."""

from __future__ import annotations

import time

from cdp_assets.sql import unification as u
from cdp_assets.sql.pipeline import create_table_as
from cdp_assets.unify.runner import prepare_inputs, run_loop

from .base import log, make_plan
from .processes import current_rss
from .warehouses import InputsOnlyDuckDBWarehouse, StopAtLoop, warehouse_kwargs


def run(args) -> dict:
    """Label propagation on the work database ``args.db``: its result and rounds."""
    unify, plan = make_plan()
    edges_ref = plan.ref("lp_edges")
    wh = InputsOnlyDuckDBWarehouse(**warehouse_kwargs(args, "labelprop"))
    wh._keep_edges_as = edges_ref.sql
    wh._keep_nodes_as = plan.ref("nodes").sql
    with wh.session():
        # Exactly the inputs ours starts its loop from, built by run_loop itself (so they
        # follow the runner whatever it builds first): not timed. The warehouse stops run_loop
        # when its first hook statement arrives, keeping a copy of the edges.
        prepare_inputs(wh, plan, unify)
        try:
            run_loop(wh, plan, full_refresh=True)
            raise SystemExit("run_loop never reached its loop: no edges?")
        except StopAtLoop:
            pass
        nodes = wh.row_count(plan.ref("nodes"))
        edges = wh.row_count(edges_ref)
        wh.run("CHECKPOINT")

        rss0 = current_rss()
        t0 = time.perf_counter()
        ref = plan.ref
        adj = ref("lp_adj")
        wh.run(
            create_table_as(
                adj, f"SELECT a AS node, b AS nb FROM {edges_ref.sql} UNION ALL SELECT b, a FROM {edges_ref.sql}"
            )
        )
        labels = ref("lp_labels_0")
        # The nodes start as their own label.
        wh.run(create_table_as(labels, f"SELECT node, label FROM {plan.nodes.sql}"))
        iterations = []
        changed, rounds = 1, 0
        while changed and rounds < args.lp_cap:
            rounds += 1
            started = time.perf_counter()
            new = ref(f"lp_labels_{rounds}")
            # label(v) <- min(label(v), min label of v's neighbours), over every node
            wh.run(
                create_table_as(
                    new,
                    f"""
SELECT l.node,
       CASE WHEN m.best < l.label THEN m.best ELSE l.label END AS label,
       COALESCE(m.best < l.label, FALSE) AS changed
FROM {labels.sql} AS l
LEFT JOIN (
  SELECT a.node, MIN(l2.label) AS best
  FROM {adj.sql} AS a JOIN {labels.sql} AS l2 ON l2.node = a.nb
  GROUP BY a.node
) AS m ON m.node = l.node
""",
                )
            )
            changed = wh.scalar(f"SELECT COUNT(*) FROM {new.sql} WHERE changed")
            wh.drop(labels)
            labels = new
            iterations.append({"iteration": rounds, "seconds": time.perf_counter() - started, "changed": changed})
            if rounds % 5 == 0 or not changed:
                log(f"  labelprop round {rounds}: {iterations[-1]['seconds']:.2f}s, changed {changed:,}")
        loop_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        wh.build_table(plan.ref("graph"), u.graph_sql(plan, labels))
        lookup_rows = wh.build_table(plan.ref("lookup"), u.lookup_sql(plan))
        publish_seconds = time.perf_counter() - t1
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rss_start": rss0,
        "rounds": rounds,
        "converged": changed == 0,
        "loop_seconds": loop_seconds,
        "publish_seconds": publish_seconds,
        "nodes": nodes,
        "edges": edges,
        "lookup_rows": lookup_rows,
        "iterations": iterations,
    }
