"""Benchmark of identity unification: cdp_assets' hook/compress/contract loop on DuckDB
against an in-memory scipy baseline and plain min-label propagation in SQL.

Run it through ``bench/bench_unification.py`` (from the repository root)::

    .venv/bin/python bench/bench_unification.py --quick
    .venv/bin/python bench/bench_unification.py --sizes 100000 1000000 5000000

For every size N (source records) the benchmark

1. generates the sample (``cdp_assets.sample.generator``) into ``bench/.data/N/sample`` (reused
   when present) and builds ONE DuckDB table ``src.rows(email, phone, cookie, ts)`` of
   standardised, valid keys per source record in ``bench/.data/N/rows.duckdb`` (not timed;
   ``data``);
2. runs each method in its own child process on a fresh copy of that database
   (``bench/.data/N/work_<method>.duckdb``; ``cli`` and ``processes``); the peak RSS of a method
   is its own process's ``VmHWM`` (not ``ru_maxrss``, which can carry the parent's memory at fork
   time):

   * ``ours``: ``prepare_inputs`` (not timed) then ``run_loop`` (timed: its inputs, the loop,
     graph and lookup), with every statement timed through a ``DuckDBWarehouse`` subclass
     (``warehouses``) to see where the time goes;
   * ``scipy_baseline``: fetch the rows as Arrow, factorize the values of each key, build a
     sparse matrix, ``scipy.sparse.csgraph.connected_components``, map labels back to the values;
   * ``labelprop``: the exact inputs ours starts its loop from (run_loop builds them and is
     stopped at its first hook; not timed), then plain min-label propagation over all nodes
     until no label changes, then the same graph and lookup builders as ours (timed);

3. checks that the three partitions are identical (``verify``; fails loudly otherwise), times
   alternative formulations of ours' heaviest statements at the largest size (``explore``),
   prints PASS/MISS against the targets (``results``) and rewrites the ``unification`` section of
   ``docs/benchmarks.md`` with the results of this run (``report``).

Other processes on the machine are measured during every run (and waited out, up to
``--wait-quiet`` seconds, before it); with ``--repeat`` the fastest uncontended run is reported.
"""
