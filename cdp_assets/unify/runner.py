"""Runs the unification's steps on a warehouse: each id's graph, loop and lookup, the enriched
tables, the key statistics and the master tables.

The steps, and their SQL, are those of ``cdp_assets/sql/unification_pipeline.py`` that
`render-sql` prints: this module only decides, from what the warehouse answers, which run next
(incremental or full inputs, one more round, one more pointer jump). The loop is sequential by
nature (each round reads the previous one), so it runs in one op; progress is reported through
a callback so the op can log and emit observations.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

import pandas as pd

from cdp_assets.config.models import LoadedConfig
from cdp_assets.config.unify import MasterTable, UnifyConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.incremental import (
    BuildResult,
    build_enriched,
    enriched_build_reads,
    keep_key_stats_counts,
    lookup_as_published,
    publish_lookup,
)
from cdp_assets.incremental import build_master as build_master_incrementally
from cdp_assets.sql import incremental as inc
from cdp_assets.sql import unification as u
from cdp_assets.sql import unification_pipeline as up
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.master import master_rules_frame
from cdp_assets.sql.report import BUCKETS
from cdp_assets.sql.pipeline import ALIAS, PUBLISH, SCALAR, SCRATCH, Query, Step, Tables


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
    # Nodes the rounds work on: all in a full run; in an incremental run the contracted graph's
    # (one per touched component, plus the changed values with rows under their cap).
    nodes_in_rounds: int = 0
    touched_components: int = 0  # previous components the new rows of an incremental run touch
    edges: int = 0
    mode: str = "full"  # full | incremental
    full_refresh_reason: str = ""  # why an incremental run was not possible
    excluded_values: int = 0  # values over their key's cap, kept out of the graph: {id}_excluded_values' rows
    dnm_conflicts: int = 0  # groups that touched several do-not-merge values
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    lookup_build: BuildResult | None = None  # the lookup's publication: key values whose id changed
    # An incremental run that read no new row and no removed key value: the published tables stand.
    nothing_new: bool = False
    # The rows {id}_loop_stats held before this run's, where the run's description of the catalog
    # already said (0: it did not exist); None: not known without a count.
    loop_stats_before: int | None = None

    @property
    def rounds(self) -> int:
        return len(self.iterations)


OnIteration = Callable[[str, IterationStats], None]


def config_fingerprint(plan: u.IdPlan, unify: UnifyConfig) -> str:
    """Changes whenever anything that shapes this id's graph changes (then no incremental run)."""
    real = {k.name for k in unify.keys}
    rules = [unify.key(k).model_dump() if k in real else k for k in plan.keys]
    return hashlib.sha256(repr((plan, rules)).encode()).hexdigest()[:16]


RULE_TABLES = ("keys", "invalid_texts", "tables")
# What an incremental loop run continues from (``incremental_blocker``).
PREVIOUS_RUN_TABLES = ("graph", "key_values", "value_stats", "excluded_values", "watermarks")


def prepare_inputs(wh: WarehouseResource, plan: u.IdPlan, unify: UnifyConfig) -> dict[str, int]:
    """Load the rule tables ({cid}_keys, {cid}_invalid_texts, {cid}_tables) as data, in one call
    where the engine can; their row counts by suffix. Tables that hold this config's rules
    already are kept (``_rules_as_written``): every run of an unchanged config after the first
    reads one row instead of writing three tables (on Treasure Data three bulk imports)."""
    fingerprint = config_fingerprint(plan, unify)
    refs = [plan.ref(s) for s in RULE_TABLES]
    frames = [u.keys_frame(plan, unify), u.invalid_texts_frame(plan, unify), u.tables_frame(plan, fingerprint)]
    # A schema this run just created holds nothing to read (a first run). Otherwise one look-up
    # describes the rule tables and the previous run's tables ``incremental_blocker`` reads next.
    described = (
        {} if wh.ensure_schema(plan.schema) else wh.describe_tables([*refs, *map(plan.ref, PREVIOUS_RUN_TABLES)])
    )
    rows = _rules_as_written(wh, refs, described, fingerprint, [len(f) for f in frames])
    if rows is None:
        if described.get(refs[-1]) is not None and not wh.replaces_frames_together:
            # Published one by one, {cid}_tables last: gone until the other two are this config's,
            # so a run stopped between them leaves nothing that claims they are.
            wh.drop(refs[-1])
        rows = wh.replace_with_dataframes(list(zip(refs, frames)))
    return dict(zip(RULE_TABLES, rows))


def _rules_as_written(
    wh: WarehouseResource, refs: list[TableRef], described: dict, fingerprint: str, rows: list[int]
) -> list[int] | None:
    """The rule tables' (``refs``) row counts when they hold the rules of the config
    ``fingerprint`` names: ``{cid}_tables`` carries the fingerprint of the config it was written
    for, and is published with or after the other two (``prepare_inputs``); their rows must also
    number ``rows``. None: they are to be written (also when ``described`` lacks one of them)."""
    if any(described.get(ref) is None for ref in refs):
        return None
    if "config_fingerprint" not in {column for column, _ in described[refs[-1]]}:
        return None
    found = wh.fetch(u.rule_tables_written_sql(*refs)).iloc[0]
    counts = [int(found[s]) for s in RULE_TABLES]
    if counts != rows or {found["first_fingerprint"], found["last_fingerprint"]} != {fingerprint}:
        return None
    return counts


class StepRunner:
    """Executes named steps on a warehouse, each under its name (``WarehouseResource.step``).
    Working tables get unique scratch names, mapped from their canonical names for the steps
    that read them; a step that makes a working table again supersedes the old one, which is
    dropped at the next ``drop_superseded`` (the end of a loop round): one call for all of them
    where the engine runs several statements at once (``WarehouseResource.drop_tables``)."""

    def __init__(self, wh: WarehouseResource) -> None:
        self.wh = wh
        self.tables = Tables()
        self._scratch: list[TableRef] = []
        self._superseded: list[TableRef] = []
        # Scratch tables' row counts as their CREATE answered them (engines that answer it): a
        # scratch table is written once, so the count holds for as long as it lives.
        self._rows: dict[TableRef, int] = {}

    def run(self, step: Step, target: TableRef | None = None):
        """Run ``step``: a published table's row count, a scratch table's when ``counted``, a
        scalar's number, or a query's rows. ``target`` publishes under another name."""
        wh = self.wh
        if step.kind == ALIAS:  # no statement: a later step that makes ``output`` again supersedes nothing
            self.tables.put(step.output, self.tables(step.names))
            return self.rows_of(self.tables(step.names)) if step.counted else None
        with wh.step(step.name):
            query = step.query(self.tables)
            sql, params = query.sql, list(query.params)
            if step.kind == PUBLISH:
                return wh.build_table(target or step.output, sql, params)
            if step.kind == SCRATCH and step.inlinable and wh.inlines_scratch_tables and not (params or step.counted):
                # No table: each reader computes the rows as a subquery (``Step.inlinable``).
                self.tables.put(step.output, inc.Inlined(sql))
                return None
            if step.kind == SCRATCH:
                old = self.tables(step.output)
                ref = wh.scratch_ref(step.output)
                self._scratch.append(ref)
                rows = wh.create_scratch(ref, sql, params)
                if rows is not None:
                    self._rows[ref] = rows
                self.tables.put(step.output, ref)
                if old in self._scratch and not self.tables.names_table(old):
                    self._scratch.remove(old)
                    self._superseded.append(old)
                return self.rows_of(ref) if step.counted else None
            if step.kind == SCALAR:
                return self.rows_of(self.tables(step.counts)) if step.counts is not None else wh.scalar(sql, params)
            return wh.fetch(sql, params)

    def publish_changes(self, step: Step, in_place: Callable[[], list[str]], count: bool = True) -> int | None:
        """Publish ``step``'s table (PUBLISH), whose printed SQL is the whole new table: where the
        engine deletes and inserts in one transaction, the statements ``in_place`` gives apply
        only what changed (the kept rows, nearly all of them, are not written again); elsewhere the
        step rebuilds it and swaps it in. ``count`` False: no row count is asked for (None)."""
        wh = self.wh
        if wh.upsert_mode != "delete_insert":
            return self.run(step)
        with wh.step(step.name):
            return wh.apply_changes(step.output, in_place(), count=count)

    def rows_of(self, ref: TableRef) -> int:
        """A table's rows: a scratch table's as its create answered them, else the engine's count."""
        known = self._rows.get(ref)
        return known if known is not None else self.wh.row_count(ref)

    def compact(self, step: Step) -> None:
        """Compact the table ``step`` made, where the engine can (Delta's OPTIMIZE)."""
        with self.wh.step(step.name):
            self.wh.optimize(self.tables(step.output))

    def drop_superseded(self) -> None:
        """Drop the working tables that later steps made again (no step reads them any more)."""
        refs, self._superseded = self._superseded, []
        for ref in refs:
            self._rows.pop(ref, None)
        if refs:
            self.wh.drop_tables(refs)

    def drop_scratch(self) -> None:
        """Drop every working table, quietly (called when the loop ends, failed or not): the
        loop's own session's temporary tables die with it instead (``run_loop``,
        ``WarehouseResource.drop_with_session``)."""
        refs = [*self._superseded, *self._scratch]
        self._superseded, self._scratch = [], []
        self._rows.clear()
        try:
            self.wh.drop_with_session(refs)
        except Exception:  # noqa: BLE001 - the original error matters more; each is tried on its own
            for ref in refs:
                self.wh._drop_quietly(ref)


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
    # Scratch tables live in the session: keep one connection for the whole run, of the loop's
    # own where the engine holds the run (DuckDB), so that its temporary tables die with it.
    with wh.own_session():
        return _run_loop(wh, plan, on_iteration, keep_loop_tables, fingerprint, full_refresh)


def _run_loop(
    wh: WarehouseResource,
    plan: u.IdPlan,
    on_iteration: OnIteration | None,
    keep_loop_tables: bool,
    fingerprint: str,
    full_refresh: bool,
) -> LoopResult:
    result = LoopResult(cid=plan.name, cap=plan.cid.iteration_cap)
    plan = u.for_dialect(plan, wh.dialect)  # the valid_regexps bound where the engine can
    # Scratch tables of a killed run (engines without session temp tables keep them).
    wh.drop_leftovers(plan.ref("graph").schema, f"{plan.name}_")
    runner = StepRunner(wh)
    if wh.holds_run:
        # The engine keeps descriptions for the run: what the incremental check and the lookup's
        # publication look up, described in one look-up (a table written since is described again).
        lookup = plan.ref("lookup")
        previous = [
            plan.ref(s) for s in ("graph", "key_values", "value_stats", "excluded_values", "watermarks", "loop_stats")
        ]
        lookup_reads = [lookup, inc.state_ref(lookup), inc.changes_ref(lookup), inc.measures_ref(lookup)]
        # With the incremental tables, whose column types an incremental run compares as they are.
        sources = [t.ref for t in plan.incremental_tables] if wh.dialect.describes_column_types else []
        described = wh.describe_tables([*previous, *lookup_reads, *sources])
        if described[plan.ref("loop_stats")] is None:
            result.loop_stats_before = 0  # a first run: the loop statistics are this run's rows
    try:
        reason = "full refresh requested" if full_refresh else incremental_blocker(wh, plan, fingerprint)
        if reason is None:
            plan = with_incremental_kinds(wh, plan)
        # A persistent id carries forward the ids the lookup being replaced published.
        previous_lookup = plan.persistent and wh.table_exists(plan.ref("lookup"))
        steps = up.id_steps(plan, reason is None, previous_lookup, keep_loop_tables)
        if isinstance(steps.inputs, up.IncrementalInputs):
            reason = _run_incremental_inputs(runner, plan, steps.inputs, result)
            if reason is None:
                result.mode = "incremental"
                result.cap = plan.cid.incremental_merge_iterations or plan.cid.iteration_cap
            if result.nothing_new:
                _keep_published(wh, plan, result)
                return result
        if result.mode == "full":
            result.full_refresh_reason = reason or ""
            # A fallback solves every node: the full run's labels and graph, not the incremental ones.
            steps = up.id_steps(plan, False, previous_lookup, keep_loop_tables)
            assert isinstance(steps.inputs, up.FullInputs)
            _run_full_inputs(runner, steps.inputs, result)
        result.nodes_in_rounds = runner.run(steps.labels)
        _run_rounds(runner, plan, steps.round, result, on_iteration)
        if steps.do_not_merge:
            links, groups, conflicts, resolve = steps.do_not_merge
            runner.run(links)
            runner.run(groups)
            result.dnm_conflicts = runner.run(conflicts)
            runner.run(resolve)
        affected = None
        if result.mode == "incremental":
            assert steps.affected_values is not None
            runner.run(steps.affected_values)
            affected = runner.tables(steps.affected_values.output)

        def publish_graph() -> None:
            if result.mode == "incremental":
                # Only the rows of the values whose leader moved are replaced (in place where the
                # engine deletes and inserts in one transaction); the graph holds one row per node
                # of the whole graph.
                result.tables["graph"] = result.nodes = runner.publish_changes(
                    steps.graph, lambda: u.graph_changes_sql(plan.ref("graph"), affected, in_place=True)
                )
            else:
                result.tables["graph"] = runner.run(steps.graph)

        def publish() -> None:
            with wh.step(steps.lookup.name):
                # Published with a log of the key values whose id changed, which the enrichment
                # reads; an incremental run of a canonical id builds and replaces the rows of the
                # affected key values only.
                result.lookup_build = publish_lookup(
                    wh,
                    plan.ref("lookup"),
                    steps.lookup.query(runner.tables).sql,  # binds nothing
                    plan.name,
                    full_refresh=full_refresh,
                    affected=None if steps.lookup_rows is None else (affected, steps.lookup_rows(runner.tables)),
                    keep_measures=not plan.persistent,
                )
            result.tables["lookup"] = result.lookup_build.rows

        # A canonical id's incremental lookup first: its affected values were found against the
        # graph being replaced (``IdSteps.lookup_first``).
        for publish_step in (publish, publish_graph) if steps.lookup_first else (publish_graph, publish):
            publish_step()
        # Written by the query that finds them, with the fingerprint from ``{cid}_tables``.
        runner.run(steps.watermarks)
        return result
    finally:
        runner.drop_scratch()


def with_incremental_kinds(wh: WarehouseResource, plan: u.IdPlan) -> u.IdPlan:
    """``plan`` with each incremental table's column kind (``Dialect.incremental_kind``) as the
    warehouse describes the column, where the engine describes column types (DuckDB: one catalog
    query, none while it holds the run and described them with the loop's tables); unchanged
    elsewhere (Treasure Data's text, local Spark's untyped descriptions): the generic per-row
    normalization. Only an incremental run uses them: a full run reads every row anyway, and
    ``render-sql`` prints the full run."""
    if not wh.dialect.describes_column_types or not plan.incremental_tables:
        return plan
    described = wh.describe_tables([t.ref for t in plan.incremental_tables])

    def kind(table: u.SourceTablePlan) -> str | None:
        types = {name.lower(): type_ for name, type_ in described.get(table.ref) or []}
        type_ = types.get((table.incremental_column or "").lower())
        return wh.dialect.incremental_kind(type_) if type_ else None

    tables = tuple(replace(t, incremental_kind=kind(t)) if t.incremental_column else t for t in plan.tables)
    return replace(plan, tables=tables)


def _keep_published(wh: WarehouseResource, plan: u.IdPlan, result: LoopResult) -> None:
    """The counts a loop run reports, for one that changes nothing: its graph (a row per node),
    key values and excluded values counted in one query, the lookup's from its state."""
    graph, key_values, excluded = plan.ref("graph"), plan.ref("key_values"), plan.ref("excluded_values")
    counts = wh.row_counts([graph, key_values, excluded])
    result.tables["graph"] = result.nodes = counts[graph]
    result.tables["key_values"] = counts[key_values]
    result.excluded_values = counts[excluded]
    assert result.lookup_build is not None
    result.tables["lookup"] = result.lookup_build.rows
    result.converged = True


def _run_full_inputs(runner: StepRunner, steps: up.FullInputs, result: LoopResult) -> None:
    result.tables["key_values"] = runner.run(steps.key_values)
    runner.run(steps.value_stats)
    result.excluded_values = runner.run(steps.excluded_values)
    result.nodes = runner.run(steps.nodes)
    runner.run(steps.edges)


def _run_incremental_inputs(
    runner: StepRunner, plan: u.IdPlan, steps: up.IncrementalInputs, result: LoopResult
) -> str | None:
    """Run the incremental inputs; returns why the run must be a full refresh after all. A run
    that reads no new row and no removed key value stops here (``result.nothing_new``), where its
    lookup's state says what the lookup holds (``lookup_as_published``)."""
    runner.run(steps.new_rows)
    runner.run(steps.new_key_values)
    runner.run(steps.removed_key_values)
    # Nothing read: the key values, statistics, graph, lookup and watermarks would be written again
    # as they are. The previous run wrote its watermarks last, after its lookup and that lookup's
    # state, so the state describes the lookup (a run killed before its watermarks leaves its new
    # rows to the next run, which then reads them).
    removed = runner.rows_of(runner.tables(up.removed_key_values_ref(plan)))
    if not removed and not runner.rows_of(runner.tables(up.new_rows_ref(plan))):
        result.lookup_build = lookup_as_published(runner.wh, plan.ref("lookup"), keep_measures=not plan.persistent)
        if result.lookup_build is not None:
            result.nothing_new = True
            return None
    # The merged key values: the rows not kept deleted, the new rows inserted. Every row not kept
    # has its value among the removed ones: none removed (a night that only adds rows), no DELETE.
    result.tables["key_values"] = runner.publish_changes(
        steps.key_values,
        lambda: u.key_values_changes_sql(
            plan,
            plan.ref("key_values"),
            runner.tables(plan.ref("new_key_values")),
            plan.ref("watermarks"),
            removes=removed > 0,
        ),
    )
    runner.run(steps.changed_values)
    runner.run(steps.changed_stats)
    # Only the changed values can enter or leave the set of values over their cap.
    excluded = runner.run(steps.excluded_changed).iloc[0]
    if int(excluded["changed"]):
        return "the set of values over their cap changed"
    result.excluded_values = int(excluded["excluded"])
    # The changed values' statistics replaced (the statistics' rows are not reported).
    runner.publish_changes(
        steps.value_stats,
        lambda: u.value_stats_changes_sql(
            plan.ref("value_stats"),
            runner.tables(up.changed_values_ref(plan)),
            runner.tables(up.changed_stats_ref(plan)),
            in_place=True,
        ),
        count=False,
    )
    result.touched_components = runner.run(steps.touched_components)
    runner.run(steps.nodes)
    runner.run(steps.edges)
    return None


def _run_rounds(
    runner: StepRunner, plan: u.IdPlan, r: up.RoundSteps, result: LoopResult, on_iteration: OnIteration | None
) -> None:
    """The round, repeated while edges are left and under the cap; pointers jump until
    compressed."""
    edges_left = result.edges = runner.run(r.edges_left)
    iteration = 0
    while edges_left > 0 and iteration < result.cap:
        iteration += 1
        started = time.monotonic()
        runner.run(r.hook)
        jumps = 0
        # Both counts in one query. The nodes relabeled (those whose label has a pointer) are taken
        # from the answer that finds no pointer unresolved, after the last jump, where a count of
        # their own used to run (a jump moves where a pointer points, not which labels have one).
        counts = runner.run(r.pointer_counts).iloc[0]
        while int(counts["unresolved_pointers"]) > 0:
            runner.run(r.jump)
            jumps += 1
            counts = runner.run(r.pointer_counts).iloc[0]
        changed = int(counts["relabeled"])
        runner.run(r.relabel)
        runner.run(r.contract)
        with runner.wh.step(r.contract.name):
            runner.drop_superseded()  # the round's old hooks, labels and edges, in one call
        # Delta engines compact the iteration's tables (a no-op where not supported).
        runner.compact(r.relabel)
        runner.compact(r.contract)
        if r.keep is not None:
            runner.run(r.keep, target=up.kept_round_ref(plan, iteration))
        edges_left = runner.run(r.edges_left)
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


# ---------------------------------------------------------------------------- after the loops


@dataclass(frozen=True)
class Coverage:
    rows: int
    with_id: dict[str, int]  # id -> rows that got it
    coverage_pct: dict[str, float]  # id -> u.coverage_pct
    input_rows: int | None = None  # the staged table's rows, when asked for (``measure_coverage``)


@dataclass(frozen=True)
class IdProfile:
    """One id measured after the enrichments: its largest canonical id over the enriched tables
    (its rows, and all rows with an id), and its ids by size as ``sql/report.component_sizes_sql``
    gives them (bucket, ids, identifiers, smallest; non-empty buckets, smallest first)."""

    rows: int
    rows_with_id: int
    sizes: list[dict]


def staged_primary_key(loaded: LoadedConfig, table: u.SourceTablePlan) -> list[str]:
    """The primary key of the source object a unified table is staged from (none for a table
    no phase produces: its rows are then keyed by every column)."""
    pipeline = loaded.pipeline
    found = pipeline.source_of_staged_table(table.ref.name) if table.ref.schema == pipeline.stg_schema else None
    return list(found[1].primary_key) if found else []


def enrich_table(
    wh: WarehouseResource, loaded: LoadedConfig, plans: list[u.IdPlan], alias: str, full_refresh: bool = False
) -> BuildResult:
    """The table with its id columns, incrementally when possible (cdp_assets/incremental.py).
    Its coverage is measured for every enriched table at once afterwards (``measure_coverage``)."""
    unify = loaded.unification
    assert unify is not None
    tables = up.enrich_tables(plans)
    table = tables[alias]
    with wh.session():
        reads = {
            a: enriched_build_reads(
                t.ref, up.enriched_ref(unify.schema, a), [p.ref("lookup") for p in plans if p.table(a) is not None]
            )
            for a, t in tables.items()
        }
        if wh.holds_run and len(wh.known_descriptions(reads[alias])) < len(set(reads[alias])):
            # The engine keeps descriptions for the run: the first enrichment describes what every
            # enrichment reads in one look-up, the others find theirs known (each writes only its own).
            # So does the key statistics' step (its kept counts: build_key_stats).
            kept = [inc.per_id_ref(p.ref("result_key_stats")) for p in plans if keeps_key_stats_counts(wh, p)]
            wh.describe_tables([*(ref for refs in reads.values() for ref in refs), *kept])
        columns = wh.columns(table.ref)
        enriched = up.enrich_step(plans, table, unify.schema, columns)
        feeding = [p for p in plans if p.table(alias) is not None]
        existing = {c.lower() for c in columns}
        with wh.step(enriched.name):
            build = build_enriched(
                wh,
                enriched.output,
                table.ref,
                columns,
                [(p.ref("lookup"), p.merge_columns(p.table(alias))) for p in feeding],
                lambda rows: u.enriched_sql(plans, table, columns, rows),
                [p.name for p in feeding if p.name.lower() not in existing],
                staged_primary_key(loaded, table),
                # An id merged from other ids is computed from other lookups' rows: built in full.
                row_by_row=not any(p.table(alias).derived for p in feeding),
                full_refresh=full_refresh,
            )
    return build


def measure_coverage(
    wh: WarehouseResource,
    loaded: LoadedConfig,
    plans: list[u.IdPlan],
    count_inputs: Collection[str] = (),
    describe: list[TableRef] | None = None,
    described: dict[TableRef, list[tuple[str, str]] | None] | None = None,
    kept: Collection[str] = (),
) -> tuple[dict[str, Coverage], dict[str, IdProfile]]:
    """Per enriched table (by alias): its rows and how many got each id, and per id its largest
    canonical id and its ids by size (``IdProfile``), in one query for all. ``count_inputs``: the
    aliases whose staged table's rows are counted too (``Coverage.input_rows``: an enrichment that
    did not count what it read). ``describe``: tables described with the measures
    (``describe_tables_and_fetch``: one query on DuckDB), their descriptions put in ``described``.
    ``kept``: the ids whose key statistics' per-id counts this run just brought up to date
    (``build_key_stats``, ``KeyStats.counts``: DuckDB), whose largest canonical id and ids by size
    are read from those counts instead of grouping every enriched and lookup row."""
    unify = loaded.unification
    assert unify is not None
    step = up.coverage_step(plans, unify.schema, count_inputs, kept)
    if describe:
        with wh.step(step.name):
            query = step.query(Tables())
            descriptions, measured = wh.describe_tables_and_fetch(describe, query.sql, list(query.params))
        if described is not None:
            described.update(descriptions)
        counts = measured.iloc[0]
    else:
        counts = StepRunner(wh).run(step).iloc[0]
    out = {}
    for i, (alias, _, ids) in enumerate(up.coverage_tables(plans, unify.schema)):
        rows = int(counts[f"t{i}_rows"])
        with_id = {cid: int(counts[f"t{i}_with_{cid}"]) for cid in ids}
        read = int(counts[f"t{i}_input_rows"]) if alias in count_inputs else None
        out[alias] = Coverage(rows, with_id, {cid: u.coverage_pct(n, rows) for cid, n in with_id.items()}, read)
    profiles = {}
    for k, p in enumerate(p for p in plans if p.tables):
        sizes = [
            {
                "bucket": label,
                "ids": _count(counts[f"p{k}_b{i}_ids"]),
                "identifiers": _count(counts[f"p{k}_b{i}_identifiers"]),
                "smallest": _count(counts[f"p{k}_b{i}_smallest"]),
            }
            for i, (label, _) in enumerate(BUCKETS)
        ]
        rows, with_id = _count(counts[f"c{k}_largest"]), _count(counts[f"c{k}_total"])
        profiles[p.name] = IdProfile(rows, with_id, [b for b in sizes if b["ids"]])
    return out, profiles


def _count(value) -> int:
    """A count that is NULL when there was nothing to count (no row with an id): 0."""
    return 0 if pd.isna(value) else int(value)


def build_key_stats(wh: WarehouseResource, plan: u.IdPlan, fingerprint: str = "") -> KeyStats:
    """``{id}_source_key_stats`` and ``{id}_result_key_stats``: their row counts by suffix, and
    how the kept counts were brought up to date.

    Where the engine deletes and inserts in one transaction (DuckDB), both are computed from the
    per-(table, id) value counts kept beside them (``incremental.keep_key_stats_counts``: only
    the ids touched since are counted again) instead of every key value and lookup row; elsewhere
    (a rebuild would copy the kept counts whole) they are computed in full. Either way these are
    the steps ``render-sql`` prints for the engine (``up.key_stats_steps``). ``fingerprint``: the
    unification config's (``config_fingerprint``)."""
    runner = StepRunner(wh)
    config = up.key_stats_counts_config(plan, fingerprint) if keeps_key_stats_counts(wh, plan) else None
    steps = up.key_stats_steps(plan, config)
    with wh.session():
        if config is None:
            source, result = steps
            return KeyStats({"source_key_stats": runner.run(source), "result_key_stats": runner.run(result)})
        counts, source, result = steps
        enriched = [up.enriched_ref(plan.schema, t.alias) for t in plan.tables]
        # With each id's lookup and enriched rows, which the enrichments' coverage query then
        # reads (``measure_coverage(kept=...)``).
        with wh.step(counts.name):
            kept = keep_key_stats_counts(
                wh,
                counts.output,
                plan.ref("lookup"),
                enriched,
                plan.name,
                lambda only: up.key_stats_counts_sql(plan, only),
                len([k for k in plan.keys if k in plan.merge_names]),
                config,
                lambda: runner.run(counts),
                incremental=lambda: by_row_ids(wh, plan),
                extra_columns=u.KEPT_SIZE_COLUMNS,
            )
        return KeyStats({"source_key_stats": runner.run(source), "result_key_stats": runner.run(result)}, kept)


@dataclass
class KeyStats:
    rows: dict[str, int]  # by suffix: source_key_stats, result_key_stats
    counts: BuildResult | None = None  # the kept per-id counts' update (None: not kept on this engine)


def by_row_ids(wh: WarehouseResource, plan: u.IdPlan) -> bool:
    """Whether every value of a source row has the id of the row's enriched row, which the
    enriched tables' change logs then hold for each value whose tables change: not with a
    do-not-merge key (a row's values may have several ids), ids merged from other ids, or a table
    whose own column is named as the id (its enriched table has no such column)."""
    if plan.dnm_key_type is not None or plan.cid.merged_ids:
        return False
    return all(plan.name.lower() not in {c.lower() for c in wh.columns(t.ref)} for t in plan.tables)


def keeps_key_stats_counts(wh: WarehouseResource, plan: u.IdPlan) -> bool:
    """Whether ``build_key_stats`` keeps the per-id counts beside the statistics on this engine."""
    return wh.upsert_mode == "delete_insert" and bool(plan.tables)


def build_master(
    wh: WarehouseResource,
    loaded: LoadedConfig,
    plans: list[u.IdPlan],
    master: MasterTable,
    full_refresh: bool = False,
) -> BuildResult:
    """One master table, after its attribute rules are loaded as data: only the ids touched
    since its last build when possible (cdp_assets/incremental.py)."""
    unify = loaded.unification
    assert unify is not None
    step = up.master_step(unify, plans, master)
    plan = next(p for p in plans if p.name == master.id_name)
    enriched, _ = up.master_inputs(unify, plans, master)
    rules = up.master_rules_ref(unify, master)
    forms = {  # the valid_regexps as the statement's parameters, the values picked by aggregates
        "binds_regexps": wh.dialect.binds_regexp_parameters,
        "picks_by_aggregate": wh.dialect.picks_by_aggregate,
        "dialect": wh.dialect,
    }

    def render(only_ids: TableRef | None) -> Query:
        return up.master_query(unify, plans, master, only_ids, **forms)

    with wh.session():
        with wh.step(step.name):
            wh.replace_with_dataframe(rules, master_rules_frame(master))
            return build_master_incrementally(
                wh,
                step.output,
                master.id_name,
                plan.ref("lookup"),
                list(enriched.values()),
                render,
                repr(master.model_dump()),
                [master.id_name, *(a.name for a in master.attributes)],
                full_refresh=full_refresh,
            )


def recorded_iterations(result: LoopResult) -> list[IterationStats]:
    """The iterations ``{id}_loop_stats`` records for this run. A run whose graph had no edges
    converges at iteration 0; it still gets a row, so the history shows every run."""
    return result.iterations or [IterationStats(0, 0, 0, 0, 0.0, True)]


def loop_stats_frame(run_id: str, result: LoopResult) -> pd.DataFrame:
    """One row per iteration of this run, appended to ``{id}_loop_stats``."""
    iterations = recorded_iterations(result)
    columns = {
        "run_id": "string",
        "iteration": "int64",
        "rows_changed": "int64",
        "edges_left": "int64",
        "jumps": "int64",
        "seconds": "float64",
        "converged": "bool",
        "recorded_at": "datetime64[us]",
    }
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    rows = [
        {
            "run_id": run_id,
            "iteration": s.iteration,
            "rows_changed": s.rows_changed,
            "edges_left": s.edges_left,
            "jumps": s.jumps,
            "seconds": s.seconds,
            "converged": s.converged,
            "recorded_at": now,
        }
        for s in iterations
    ]
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def run_id_loop(
    wh: WarehouseResource,
    loaded: LoadedConfig,
    plan: u.IdPlan,
    run_id: str,
    on_iteration: OnIteration | None = None,
    full_refresh: bool = False,
) -> LoopResult:
    """What the loop op does for one id: load its rule tables, run the loop, record its rounds."""
    unify = loaded.unification
    assert unify is not None
    rules = prepare_inputs(wh, plan, unify)
    result = run_loop(
        wh,
        plan,
        on_iteration=on_iteration,
        keep_loop_tables=loaded.pipeline.unification_options.keep_loop_tables,
        fingerprint=config_fingerprint(plan, unify),
        full_refresh=full_refresh,
    )
    result.tables.update(rules)
    rounds = loop_stats_frame(run_id, result)
    wh.append_dataframe(plan.ref("loop_stats"), rounds)
    if result.loop_stats_before is not None:
        result.tables["loop_stats"] = result.loop_stats_before + len(rounds)
    return result


def run_unification(
    wh: WarehouseResource, loaded: LoadedConfig, run_id: str, full_refresh: bool = False
) -> list[LoopResult]:
    """The whole unification in the order its Dagster steps run it (the loop op, the mapped
    enrichments, the collecting op, the master assets), in one process."""
    unify = loaded.unification
    if unify is None:
        return []
    plans = u.build_id_plans(loaded)
    with wh.session():
        results = [run_id_loop(wh, loaded, plan, run_id, full_refresh=full_refresh) for plan in plans]
        for alias in up.enrich_tables(plans):
            enrich_table(wh, loaded, plans, alias, full_refresh=full_refresh)
        # The key statistics first, as the collecting op builds them: the coverage query reads
        # their kept per-id counts.
        stats = {plan.name: build_key_stats(wh, plan, config_fingerprint(plan, unify)) for plan in plans}
        if up.enrich_tables(plans):
            measure_coverage(wh, loaded, plans, kept=[n for n, s in stats.items() if s.counts is not None])
        for master in unify.master_tables:
            build_master(wh, loaded, plans, master)
    return results


def incremental_blocker(wh: WarehouseResource, plan: u.IdPlan, fingerprint: str) -> str | None:
    """Why this run must be a full refresh, or None when it can be incremental."""
    if not plan.incremental_tables:
        return "no table of this id has incremental_columns"
    if plan.dnm_key_type is not None:
        return "do_not_merge_key is resolved on the whole graph"
    if plan.cid.merged_ids:
        return "it merges by other ids, whose lookups were rebuilt"
    for suffix in PREVIOUS_RUN_TABLES:
        if not wh.table_exists(plan.ref(suffix)):
            return f"no previous run ({plan.ref(suffix).display} is missing)"
    if "inc_rest" not in wh.columns(plan.ref("key_values")) or "watermark_rest" not in wh.columns(
        plan.ref("watermarks")
    ):
        return "the previous run's key values predate the bookkeeping of several incremental columns"
    previous = wh.fetch(u.previous_fingerprints_sql(plan.ref("watermarks")))
    if list(previous["fingerprint"]) != [fingerprint] or not fingerprint:
        return "the unification config changed since the last run"
    return None
