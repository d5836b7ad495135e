"""Runs the unification SQL for one canonical id on a warehouse: graph, loop, lookup.

The loop is sequential by nature (each round reads the previous one), so it runs here, in
one op; progress is reported through a callback so the op can log and emit observations.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef


@dataclass(frozen=True)
class IterationStats:
    iteration: int
    rows_changed: int  # nodes whose label moved
    edges_left: int  # label edges still to contract
    jumps: int  # pointer jumps needed to compress the hooks
    seconds: float
    converged: bool


@dataclass
class LoopResult:
    cid: str
    iterations: list[IterationStats] = field(default_factory=list)
    converged: bool = False
    cap: int = 0
    nodes: int = 0
    edges: int = 0
    mode: str = "full"  # full | incremental
    full_refresh_reason: str = ""  # why an incremental run was not possible
    excluded_values: int = 0  # values over their key's cap, kept out of the graph
    dnm_conflicts: int = 0  # groups that touched several do-not-merge values
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows

    @property
    def rounds(self) -> int:
        return len(self.iterations)


OnIteration = Callable[[str, IterationStats], None]


def config_fingerprint(plan: u.IdPlan, unify: UnifyConfig) -> str:
    """Changes whenever anything that shapes this id's graph changes (then no incremental run)."""
    real = {k.name for k in unify.keys}
    rules = [unify.key(k).model_dump() if k in real else k for k in plan.keys]
    return hashlib.sha256(repr((plan, rules)).encode()).hexdigest()[:16]


def prepare_inputs(wh: WarehouseResource, plan: u.IdPlan, unify: UnifyConfig) -> None:
    """Load the rule tables ({cid}_keys, {cid}_invalid_texts, {cid}_tables) as data."""
    wh.ensure_schema(plan.schema)
    wh.replace_with_dataframe(plan.ref("keys"), u.keys_frame(plan, unify))
    wh.replace_with_dataframe(plan.ref("invalid_texts"), u.invalid_texts_frame(plan, unify))
    wh.replace_with_dataframe(plan.ref("tables"), u.tables_frame(plan))


def run_loop(
    wh: WarehouseResource,
    plan: u.IdPlan,
    on_iteration: OnIteration | None = None,
    keep_loop_tables: bool = False,
    fingerprint: str = "",
    full_refresh: bool = False,
) -> LoopResult:
    """Build nodes and edges, iterate hook/compress/contract to convergence or the cap, publish
    ``{cid}_graph`` and ``{cid}_lookup``. Working tables are dropped whatever happens.

    When the last run left its state (graph, key values, watermarks with the same config
    fingerprint) and tables have incremental columns, only rows newer than the watermarks are
    read, against the previous graph; the result equals a full refresh on append-only data.
    """
    # Scratch tables live in the session: keep one connection for the whole run.
    with wh.session():
        return _run_loop(wh, plan, on_iteration, keep_loop_tables, fingerprint, full_refresh)


def _run_loop(wh: WarehouseResource, plan: u.IdPlan, on_iteration: OnIteration | None, keep_loop_tables: bool, fingerprint: str, full_refresh: bool) -> LoopResult:  # noqa: E501
    result = LoopResult(cid=plan.name, cap=plan.cid.iteration_cap)
    scratch: list[TableRef] = []
    # Scratch tables of a killed run (engines without session temp tables keep them).
    wh.drop_leftovers(plan.ref("graph").schema, f"{plan.name}_")

    def work(suffix: str) -> TableRef:
        ref = wh.scratch_ref(plan.ref(suffix))
        scratch.append(ref)
        return ref

    def make(ref: TableRef, select_sql: str) -> None:
        wh.create_scratch(ref, select_sql)

    # Nodes are this run's working numbering: a scratch table like the loop's.
    plan = replace(plan, nodes_ref=work("nodes"))

    def build_full_inputs() -> TableRef:
        result.tables["key_values"] = wh.build_table(plan.ref("key_values"), u.key_values_sql(plan))
        stats = work("value_stats")
        make(stats, u.value_stats_sql(plan))
        result.excluded_values = wh.build_table(plan.ref("excluded_values"), u.excluded_values_sql(plan, stats))
        make(plan.nodes, u.nodes_sql(plan, stats))
        result.nodes = wh.row_count(plan.nodes)
        edges = work("edges")
        make(edges, u.edges_sql(plan))
        return edges

    def build_incremental_inputs() -> TableRef | None:
        since = plan.ref("watermarks")
        new_values = work("new_key_values")
        make(new_values, u.key_values_sql(plan, since=since))
        result.tables["key_values"] = wh.build_table(
            plan.ref("key_values"), u.merged_key_values_sql(plan, plan.ref("key_values"), new_values, since)
        )
        stats = work("value_stats")
        make(stats, u.value_stats_sql(plan))
        excluded = work("excluded_values")
        make(excluded, u.excluded_values_sql(plan, stats))
        if wh.scalar(u.excluded_difference_sql(plan.ref("excluded_values"), excluded)):
            result.full_refresh_reason = "the set of values over their cap changed"
            return None
        result.excluded_values = wh.row_count(excluded)
        make(plan.nodes, u.nodes_sql(plan, stats))
        result.nodes = wh.row_count(plan.nodes)
        edges = work("edges")
        make(edges, u.edges_sql(plan, since=since, previous_graph=plan.ref("graph")))
        return edges

    try:
        reason = "full refresh requested" if full_refresh else incremental_blocker(wh, plan, fingerprint)
        edges = build_incremental_inputs() if reason is None else None
        if edges is None:
            result.full_refresh_reason = result.full_refresh_reason or reason or ""
            edges = build_full_inputs()
        else:
            result.mode = "incremental"
            result.cap = plan.cid.incremental_merge_iterations or plan.cid.iteration_cap
        result.edges = wh.row_count(edges)
        labels = work("labels")
        make(labels, u.initial_labels_sql(plan))
        edges_left = result.edges

        iteration = 0
        while edges_left > 0 and iteration < result.cap:
            iteration += 1
            started = time.monotonic()
            pointers = work("hooks")
            make(pointers, u.hook_sql(edges))
            jumps = 0
            while wh.scalar(u.unresolved_pointers_sql(pointers)) > 0:
                jumped = work("hooks")
                make(jumped, u.jump_sql(pointers))
                wh.drop(pointers)
                pointers = jumped
                jumps += 1
            changed = wh.scalar(u.relabeled_count_sql(labels, pointers))
            new_labels = work("labels")
            make(new_labels, u.relabel_sql(labels, pointers))
            new_edges = work("edges")
            make(new_edges, u.contract_edges_sql(edges, pointers))
            for old in (labels, edges, pointers):
                wh.drop(old)
            labels, edges = new_labels, new_edges
            # Delta engines compact the iteration's tables (a no-op where not supported).
            wh.optimize(labels)
            wh.optimize(edges)
            edges_left = wh.row_count(edges)
            if keep_loop_tables:
                wh.build_table(plan.ref(f"graph_unify_loop_{iteration}"), f"SELECT * FROM {labels.sql}")
            stats = IterationStats(
                iteration=iteration,
                rows_changed=changed,
                edges_left=edges_left,
                jumps=jumps,
                seconds=round(time.monotonic() - started, 4),
                converged=edges_left == 0,
            )
            result.iterations.append(stats)
            if on_iteration is not None:
                on_iteration(plan.name, stats)
        result.converged = edges_left == 0
        if plan.dnm_key_type is not None:
            links, groups, resolved = work("dnm_links"), work("dnm_groups"), work("labels")
            make(links, u.dnm_links_sql(plan))
            make(groups, u.dnm_groups_sql(links, labels))
            make(resolved, u.dnm_resolve_sql(labels, groups))
            result.dnm_conflicts = wh.scalar(f"SELECT COUNT(*) FROM {groups.sql} WHERE touched > 1")
            labels = resolved
        result.tables["graph"] = wh.build_table(plan.ref("graph"), u.graph_sql(plan, labels))
        # A persistent id carries forward the ids the lookup being replaced published.
        previous = plan.ref("lookup") if plan.persistent and wh.table_exists(plan.ref("lookup")) else None
        result.tables["lookup"] = wh.build_table(plan.ref("lookup"), u.lookup_sql(plan, previous))
        watermarks = wh.fetch(u.watermarks_sql(plan))
        watermarks["fingerprint"] = fingerprint
        wh.replace_with_dataframe(
            plan.ref("watermarks"),
            watermarks.astype({"table_id": "int64", "watermark": "datetime64[us]", "watermark_rest": "string", "fingerprint": "string"}),
        )
        return result
    finally:
        for ref in scratch:
            wh._drop_quietly(ref)


def incremental_blocker(wh: WarehouseResource, plan: u.IdPlan, fingerprint: str) -> str | None:
    """Why this run must be a full refresh, or None when it can be incremental."""
    if not plan.incremental_tables:
        return "no table of this id has incremental_columns"
    if plan.dnm_key_type is not None:
        return "do_not_merge_key is resolved on the whole graph"
    if plan.cid.merged_ids:
        return "it merges by other ids, whose lookups were rebuilt"
    for suffix in ("graph", "key_values", "excluded_values", "watermarks"):
        if not wh.table_exists(plan.ref(suffix)):
            return f"no previous run ({plan.ref(suffix).display} is missing)"
    if "inc_rest" not in wh.columns(plan.ref("key_values")) or "watermark_rest" not in wh.columns(plan.ref("watermarks")):
        return "the previous run's key values predate the bookkeeping of several incremental columns"
    previous = wh.fetch(f"SELECT DISTINCT fingerprint FROM {plan.ref('watermarks').sql}")
    if list(previous["fingerprint"]) != [fingerprint] or not fingerprint:
        return "the unification config changed since the last run"
    return None
