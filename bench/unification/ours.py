"""Method ``ours``: cdp_assets' own ``run_loop`` (hook/compress/contract) on a DuckDBWarehouse,
timed from its call to its return as a full refresh, every statement timed on the way."""

from __future__ import annotations

import time

from cdp_assets.unify.runner import prepare_inputs, run_loop

from .base import log, make_plan
from .processes import current_rss
from .warehouses import ProfiledDuckDBWarehouse, warehouse_kwargs


def run(args) -> dict:
    """Ours on the work database ``args.db``: its result, rounds and every statement's time."""
    unify, plan = make_plan()
    wh = ProfiledDuckDBWarehouse(**warehouse_kwargs(args, "ours"))
    with wh.session():
        prepare_inputs(wh, plan, unify)  # rule tables: not timed
        wh._records.clear()
        wh._round = 1

        def on_iteration(_cid, stats):
            wh._round = stats.iteration + 1
            log(
                f"  ours round {stats.iteration}: {stats.seconds:.2f}s, jumps {stats.jumps}, "
                f"relabeled {stats.rows_changed:,}, edges left {stats.edges_left:,}"
            )

        rss0 = current_rss()
        t0 = time.perf_counter()
        result = run_loop(wh, plan, on_iteration=on_iteration, full_refresh=True)
        seconds = time.perf_counter() - t0
        lookup_rows = result.tables.get("lookup")
    return {
        "seconds": seconds,
        "rss_start": rss0,
        "rounds": result.rounds,
        "converged": result.converged,
        "nodes": result.nodes,
        "edges": result.edges,
        "tables": result.tables,
        "lookup_rows": lookup_rows,
        "iterations": [
            {
                "iteration": s.iteration,
                "seconds": s.seconds,
                "jumps": s.jumps,
                "relabeled": s.rows_changed,
                "edges_left": s.edges_left,
            }
            for s in result.iterations
        ],
        "statements": wh._records,
    }
