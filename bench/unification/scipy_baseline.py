"""Method ``scipy``: the in-memory baseline. The key columns read out of DuckDB as Arrow, values
factorized per key, a sparse adjacency, ``scipy.sparse.csgraph.connected_components``, and the
labels mapped back to the values; all of that is timed."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .base import KEYS
from .processes import current_rss


def run(args) -> dict:
    """Components of ``src.rows`` in ``args.db`` in memory; the partition goes to a Parquet file."""
    con = duckdb.connect(
        args.db, read_only=True, config={"threads": str(args.threads), "memory_limit": args.memory_limit}
    )
    rss0 = current_rss()
    steps = {}
    t0 = t = time.perf_counter()

    # 1. read the key columns out of DuckDB
    table = con.sql("SELECT email, phone, cookie FROM src.rows").to_arrow_table()
    steps["fetch from DuckDB (Arrow)"] = time.perf_counter() - t
    t = time.perf_counter()

    # 2. values -> integers, one id space per key (node = (key, value))
    codes, uniques, offset = [], [], 0
    for k in KEYS:
        c, uniq = pd.factorize(table.column(k).to_numpy(zero_copy_only=False), use_na_sentinel=True)
        c = c.astype(np.int64)
        codes.append(np.where(c >= 0, c + offset, -1))
        uniques.append(uniq)
        offset += len(uniq)
    n_nodes = offset
    del table
    steps["factorize values"] = time.perf_counter() - t
    t = time.perf_counter()

    # 3. edges: every pair of keys present in a row; sparse adjacency
    src, dst = [], []
    for i in range(len(KEYS)):
        for j in range(i + 1, len(KEYS)):
            both = (codes[i] >= 0) & (codes[j] >= 0)
            src.append(codes[i][both])
            dst.append(codes[j][both])
    src = np.concatenate(src)
    dst = np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n_nodes, n_nodes)).tocsr()
    n_edges = int(len(src))
    del src, dst, codes
    steps["build sparse matrix"] = time.perf_counter() - t
    t = time.perf_counter()

    # 4. components
    n_comp, labels = connected_components(graph, directed=False)
    del graph
    steps["connected_components"] = time.perf_counter() - t
    t = time.perf_counter()

    # 5. labels back to the values: one component id per distinct (key, value)
    result = pa.table(
        {
            "key_type": np.repeat(np.arange(1, len(KEYS) + 1, dtype=np.int8), [len(x) for x in uniques]),
            "value": pa.array(np.concatenate(uniques), type=pa.string()),
            "component": labels.astype(np.int32),
        }
    )
    steps["map labels back"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0
    con.close()

    out = Path(args.result).with_suffix(".parquet")  # for the partition check: not timed
    pq.write_table(result, out)
    return {
        "seconds": seconds,
        "rss_start": rss0,
        "nodes": n_nodes,
        "edges": n_edges,
        "components": int(n_comp),
        "steps": steps,
        "partition": str(out),
    }
