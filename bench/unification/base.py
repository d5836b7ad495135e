"""What every part of the unification benchmark shares: where it keeps its files, the keys and
methods it knows, its log line, and the unification plan all methods run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / ".data"
DOC = ROOT / "docs" / "benchmarks.md"
ENTRY = ROOT / "bench" / "bench_unification.py"  # the script children are started through
SEED = 42
KEYS = ("email", "phone", "cookie")
METHODS = ("ours", "scipy", "labelprop")
GIB = 1024**3


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def make_plan(source=None, seen_at: str | None = "ts"):
    """The unification config and plan of one canonical id over the three keys of ``source``
    (a ``TableRef``; ``src.rows`` by default), which holds valid values only."""
    from cdp_assets.config.unify import UnifyConfig
    from cdp_assets.sql import unification as u
    from cdp_assets.sql.dialects import TableRef

    source = source or TableRef("src", "rows")
    unify = UnifyConfig.model_validate(
        {
            "name": "bench",
            "keys": [{"name": k} for k in KEYS],
            "tables": [
                {
                    "database": source.schema,
                    "table": source.name,
                    "key_columns": [{"column": k, "key": k} for k in KEYS],
                }
            ],
            "canonical_ids": [{"name": "unified_id", "merge_by_keys": list(KEYS)}],
        }
    )
    plan = u.IdPlan(
        cid=unify.canonical_ids[0],
        persistent=False,
        schema=unify.schema,
        catalog=None,
        keys=KEYS,
        tables=(u.SourceTablePlan(1, source.name, source, tuple((k, k) for k in KEYS), seen_at),),
        valid_regexps=tuple(None for _ in KEYS),  # as build_id_plans gives them: none to bind
    )
    return unify, plan
