"""DuckDB warehouses that watch what ``run_loop`` sends (child side only: importing this module
imports cdp_assets). The runner itself is never changed."""

from __future__ import annotations

import re
import time

from pydantic import PrivateAttr

from cdp_assets.engines.duckdb import DuckDBWarehouse

from .base import DATA

_CTAS = re.compile(r'^\s*CREATE (?:TEMP )?TABLE\s+(\S+)\s+AS', re.I)
_PLAN_PREFIX = "unified_id_"


def ctas_table(sql: str) -> str | None:
    m = _CTAS.match(sql)
    return m.group(1) if m else None


def ctas_base(sql: str) -> str | None:
    """'"schema"."unified_id_hooks__cdp_new_1a2b3c4d"' -> 'hooks' for a CREATE TABLE AS."""
    table = ctas_table(sql)
    if table is None:
        return None
    name = table.replace('"', "").split(".")[-1].split("__cdp_new_")[0]
    return name[len(_PLAN_PREFIX) :] if name.startswith(_PLAN_PREFIX) else name


def classify(sql: str) -> str:
    """Name the statement the runner issued (by the table it builds and the shape of its SQL)."""
    s = sql.lstrip()
    up = s[:40].upper()
    if up.startswith("CREATE SCHEMA"):
        return "create schema"
    if up.startswith("DROP TABLE"):
        return "drop table"
    if up.startswith("ALTER TABLE"):
        return "rename (swap in)"
    if up.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
        return "transaction"
    if "information_schema" in s:
        return "catalog lookup"
    base = ctas_base(s)
    if base is not None:
        if base == "edges":
            return "contract edges" if "GREATEST(la, lb)" in s else "build edges"
        if base == "labels":
            return "relabel (all nodes)" if "COALESCE(h.parent, p.label)" in s else "initial labels"
        if base == "hooks":
            return "pointer jump" if "h2.parent" in s else "hook"
        if base in ("graph", "lookup"):
            return f"publish {base}"
        return f"build {base}"
    if up.startswith("SELECT COUNT(*)"):
        if "h.parent = h2.node" in s:
            return "check compressed (count)"
        if "p.label = h.node" in s:
            return "count relabeled"
        return "row count"
    return "other"


class ProfiledDuckDBWarehouse(DuckDBWarehouse):
    """Times every statement the runner sends (bench only; behaviour unchanged)."""

    _records: list = PrivateAttr(default_factory=list)
    _round: int = PrivateAttr(default=0)
    _phase: str = PrivateAttr(default="build")

    def _note(self, sql: str, seconds: float) -> None:
        kind = classify(sql)
        if kind == "hook":
            self._phase = "loop"
        elif kind == "publish graph":
            self._phase = "publish"
        self._records.append(
            {
                "phase": self._phase,
                "round": self._round if self._phase == "loop" else 0,
                "kind": kind,
                "seconds": seconds,
            }
        )

    def execute(self, sql: str) -> None:
        t0 = time.perf_counter()
        try:
            super().execute(sql)
        finally:
            self._note(sql, time.perf_counter() - t0)

    def query(self, sql: str, params: list | None = None):
        t0 = time.perf_counter()
        try:
            return super().query(sql, params)
        finally:
            self._note(sql, time.perf_counter() - t0)


class StopAtLoop(Exception):
    """Raised by the inputs-only warehouse when run_loop starts its first round."""


class InputsOnlyDuckDBWarehouse(DuckDBWarehouse):
    """Lets run_loop build its inputs, then copies the edges and nodes tables the loop would
    start from (run_loop keeps them as scratch tables) to ``_keep_edges_as`` and
    ``_keep_nodes_as``, and stops run_loop at its first hook (bench only)."""

    _keep_edges_as: str = PrivateAttr(default="")
    _keep_nodes_as: str = PrivateAttr(default="")
    _last: dict = PrivateAttr(default_factory=dict)

    def execute(self, sql: str) -> None:
        base = ctas_base(sql)
        if base == "hooks":
            if "edges" not in self._last or "nodes" not in self._last:
                raise RuntimeError("run_loop started its loop before building edges and nodes")
            super().execute(f"CREATE TABLE {self._keep_edges_as} AS SELECT * FROM {self._last['edges']}")
            super().execute(f"CREATE TABLE {self._keep_nodes_as} AS SELECT * FROM {self._last['nodes']}")
            raise StopAtLoop()
        super().execute(sql)
        if base in ("edges", "nodes"):
            self._last[base] = ctas_table(sql)


def warehouse_kwargs(args, method: str) -> dict:
    """The DuckDB settings of a method's child: its work database, limits and temp directory."""
    tmp = DATA / str(args.size) / f"tmp_{method}"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"path": args.db, "memory_limit": args.memory_limit, "threads": args.threads, "temp_directory": str(tmp)}
