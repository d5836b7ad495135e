"""The unification as one list of named SQL steps: `render-sql` prints it, the runner runs it.

Per id: its inputs (key values, value statistics, excluded values, nodes, edges), the initial
labels, the loop's round (a ``Repeat``: run until no edge is left or the cap), the
do-not-merge resolution, then graph, lookup and watermarks. Then each table enriched with its
ids and measured, each id's key statistics, and the master tables. The SQL of every step comes
from the pure builders of ``cdp_assets/sql/unification.py`` and ``master.py``; here they are
only named and put in order. ``cdp_assets/unify/runner.py`` executes these very steps.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
import hashlib
from dataclasses import dataclass, replace
from typing import NamedTuple

from cdp_assets.config.models import LoadedConfig
from cdp_assets.config.unify import MasterTable, UnifyConfig
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef
from cdp_assets.sql.engine_meta import row_count_sql
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.incremental import per_id_ref
from cdp_assets.sql.master import master_table_query
from cdp_assets.sql.pipeline import PUBLISH, ROWS, SCALAR, SCRATCH, Query, Repeat, Step, StepPipeline, Tables

# ---------------------------------------------------------------------------- names


def enriched_ref(plan_schema: str, alias: str) -> TableRef:
    return TableRef(plan_schema, f"enriched_{alias}")


def enrich_tables(plans: list[u.IdPlan]) -> dict[str, u.SourceTablePlan]:
    """Every table that feeds at least one id, by alias, in config order."""
    out: dict[str, u.SourceTablePlan] = {}
    for plan in plans:
        for t in plan.tables:
            out.setdefault(t.alias, t)
    return dict(sorted(out.items(), key=lambda kv: kv[1].table_id))


def master_id_tables(master, plan: u.IdPlan, by_name: dict[str, u.IdPlan]) -> dict[str, list[str]]:
    """For each id a master attribute is taken from: the tables enriched with it and the master's id."""
    own = [t.alias for t in plan.tables]
    out = {}
    for attr in master.attributes:
        if attr.source_id is not None:
            other = {t.alias for t in by_name[attr.source_id].tables}
            out[attr.source_id] = [a for a in own if a in other]
    return out


def kept_round_ref(plan: u.IdPlan, iteration: int) -> TableRef:
    """Where ``keep_loop_tables`` keeps a round's labels."""
    return plan.ref(f"graph_unify_loop_{iteration}")


def touched_components_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's previous components (by leader) that new rows touch."""
    return plan.ref("touched_components")


def changed_values_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's values of new rows and values whose previous rows went."""
    return plan.ref("changed_values")


def changed_stats_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's statistics of its changed values."""
    return plan.ref("changed_stats")


def removed_key_values_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's values whose previous key value rows go."""
    return plan.ref("removed_key_values")


def affected_values_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's key values whose graph or lookup row it may change, each with its
    leader before and after the run."""
    return plan.ref("affected_values")


def _at(plan: u.IdPlan, t: Tables) -> u.IdPlan:
    """The plan reading the nodes where this run keeps them."""
    return replace(plan, nodes_ref=t(plan.ref("nodes")))


# ---------------------------------------------------------------------------- one id


class FullInputs(NamedTuple):
    """Key values, statistics, excluded values, nodes and edges read from every row."""

    key_values: Step
    value_stats: Step
    excluded_values: Step
    nodes: Step
    edges: Step


class IncrementalInputs(NamedTuple):
    """The same inputs from the rows after the last run's watermarks and the previous run's
    state (its graph and value statistics). The runner falls back to ``FullInputs`` when the set
    of excluded values changed (``excluded_changed`` says so). Only the changed values' statistics
    are computed again; the rounds work on the contracted graph (``nodes``, numbered among
    themselves): one node per previous component holding a changed value (its representative),
    and the changed values; the other components keep their graph rows."""

    new_rows: Step
    new_key_values: Step
    removed_key_values: Step
    key_values: Step
    changed_values: Step
    changed_stats: Step
    excluded_changed: Step
    value_stats: Step
    touched_components: Step
    nodes: Step
    edges: Step


def full_inputs(plan: u.IdPlan) -> FullInputs:
    n, stats = plan.name, plan.ref("value_stats")
    return FullInputs(
        Step(f"{n}_key_values", PUBLISH, lambda t: u.key_values_sql(plan), plan.ref("key_values")),
        Step(f"{n}_value_stats", PUBLISH, lambda t: u.value_stats_sql(plan), stats),
        Step(
            f"{n}_excluded_values",
            PUBLISH,
            lambda t: u.excluded_values_sql(plan, t(stats)),
            plan.ref("excluded_values"),
        ),
        Step(f"{n}_nodes", SCRATCH, lambda t: u.nodes_sql(plan, t(stats)), plan.ref("nodes"), counted=True),
        Step(f"{n}_edges", SCRATCH, lambda t: u.edges_sql(_at(plan, t)), plan.ref("edges")),
    )


def new_rows_ref(plan: u.IdPlan) -> TableRef:
    """An incremental run's new rows of its incremental tables, filtered once (``u.new_rows_sql``)."""
    return plan.ref("new_rows")


def incremental_inputs(plan: u.IdPlan) -> IncrementalInputs:
    n, stats, since = plan.name, plan.ref("value_stats"), plan.ref("watermarks")
    new_rows = new_rows_ref(plan)
    new_values, removed = plan.ref("new_key_values"), removed_key_values_ref(plan)
    changed, changed_stats = changed_values_ref(plan), changed_stats_ref(plan)
    published, graph, touched = plan.ref("key_values"), plan.ref("graph"), touched_components_ref(plan)
    return IncrementalInputs(
        # The rows after the watermarks, read once: the new key values, the new rows' stars and
        # the new watermarks read them from here.
        Step(f"{n}_new_rows", SCRATCH, lambda t: u.new_rows_sql(plan, since), new_rows),
        # Read by the key values' publication and the changed values, neither of which changes
        # the new rows or the tables it reads, and its columns have the stored types (the times
        # it computes as stored text where a table has no timestamp type: ``key_values_sql``):
        # a subquery of both where the engine would rather recompute it than create a table.
        Step(
            f"{n}_new_key_values",
            SCRATCH,
            lambda t: u.key_values_sql(plan, new_rows=t(new_rows)),
            new_values,
            inlinable=True,
        ),
        # Read before the key values are replaced: the values whose previous rows go.
        Step(f"{n}_removed_key_values", SCRATCH, lambda t: u.removed_key_values_sql(plan, published, since), removed),
        # Printed as the merged table it publishes; an engine that deletes and inserts in one
        # transaction applies it in place (``u.key_values_changes_sql``, the runner).
        Step(
            f"{n}_key_values",
            PUBLISH,
            lambda t: u.merged_key_values_sql(plan, published, t(new_values), since),
            published,
        ),
        # Read before the graph is replaced: each changed value's previous component.
        Step(
            f"{n}_changed_values",
            SCRATCH,
            lambda t: u.changed_values_sql(t(new_values), t(removed), graph),
            changed,
        ),
        Step(f"{n}_changed_stats", SCRATCH, lambda t: u.value_stats_sql(plan, t(changed)), changed_stats),
        Step(
            f"{n}_excluded_changed",
            ROWS,
            lambda t: u.excluded_changes_sql(plan, plan.ref("excluded_values"), t(changed), t(changed_stats)),
        ),
        # Printed as the table it publishes; applied in place where the engine deletes and inserts
        # in one transaction (the runner).
        Step(
            f"{n}_value_stats",
            PUBLISH,
            lambda t: u.value_stats_changes_sql(stats, t(changed), t(changed_stats), in_place=False)[0],
            stats,
        ),
        Step(
            f"{n}_touched_components",
            SCRATCH,
            lambda t: u.touched_components_sql(plan, graph, t(changed), t(changed_stats)),
            touched,
            counted=True,
        ),
        Step(
            f"{n}_nodes",
            SCRATCH,
            lambda t: u.incremental_nodes_sql(plan, t(changed), t(changed_stats), t(touched)),
            plan.ref("nodes"),
            counted=True,
        ),
        Step(
            f"{n}_edges",
            SCRATCH,
            lambda t: u.edges_sql(_at(plan, t), since=since, contracted=True, new_rows=t(new_rows)),
            plan.ref("edges"),
        ),
    )


@dataclass(frozen=True)
class RoundSteps:
    """One round of the loop. ``edges_left`` runs first: 0 ends the loop (converged), as does the
    cap. ``compress`` repeats until ``pointer_counts`` says no pointer is left unresolved,
    jumping the pointers once each time; its last answer also counts the nodes relabeled."""

    edges_left: Step
    hook: Step
    pointer_counts: Step
    jump: Step
    relabel: Step
    contract: Step
    keep: Step | None  # keep_loop_tables: the round's labels, published

    def as_repeat(self, plan: u.IdPlan) -> Repeat:
        compress = Repeat(
            f"{plan.name}_loop_compress",
            (self.pointer_counts, self.jump),
            "repeated while a pointer points at a node that points elsewhere (unresolved_pointers is not 0)",
        )
        steps = (self.edges_left, self.hook, compress, self.relabel, self.contract)
        return Repeat(
            f"{plan.name}_loop_round",
            (*steps, *((self.keep,) if self.keep else ())),
            f"repeated while edges are left (the count is not 0), at most {plan.cid.iteration_cap} rounds",
        )


def round_steps(plan: u.IdPlan, keep_loop_tables: bool = False) -> RoundSteps:
    n = f"{plan.name}_loop"
    edges, labels, hooks = plan.ref("edges"), plan.ref("labels"), plan.ref("hooks")
    keep = None
    if keep_loop_tables:
        # Printed under round 1's name; the runner writes each round's under its own.
        keep = Step(f"{n}_keep_labels", PUBLISH, lambda t: u.copy_sql(t(labels)), kept_round_ref(plan, 1))
    return RoundSteps(
        edges_left=Step(f"{n}_edges_left", SCALAR, lambda t: row_count_sql(t(edges)), counts=edges),
        hook=Step(f"{n}_hook", SCRATCH, lambda t: u.hook_sql(t(edges)), hooks),
        pointer_counts=Step(f"{n}_pointer_counts", ROWS, lambda t: u.pointer_counts_sql(t(labels), t(hooks))),
        jump=Step(f"{n}_jump", SCRATCH, lambda t: u.jump_sql(t(hooks)), hooks),
        relabel=Step(f"{n}_relabel", SCRATCH, lambda t: u.relabel_sql(t(labels), t(hooks)), labels),
        contract=Step(f"{n}_contract", SCRATCH, lambda t: u.contract_edges_sql(t(edges), t(hooks)), edges),
        keep=keep,
    )


@dataclass(frozen=True)
class IdSteps:
    """Every step of one id's loop op, in the order it runs them."""

    plan: u.IdPlan
    inputs: FullInputs | IncrementalInputs
    labels: Step
    round: RoundSteps
    do_not_merge: tuple[Step, ...]  # links, groups, conflicts, resolve (empty without the key)
    # An incremental run: the key values whose graph or lookup rows it may change, with their
    # leaders before and after (the graph's changes; a canonical id's lookup rows).
    affected_values: Step | None
    graph: Step
    lookup: Step  # the whole lookup (a first run, a fallback; what render-sql prints)
    watermarks: Step
    # An incremental run of a canonical id: the lookup rows of the affected values alone, which
    # replace theirs (cdp_assets/incremental.py applies them), published before the graph.
    lookup_rows: Callable[[Tables], str] | None = None

    @property
    def lookup_first(self) -> bool:
        """The lookup is published before the graph: a canonical id's incremental run, whose
        affected values are found against the graph before it is replaced. A run killed between
        the two then finds the same affected values again (the graph still the previous one);
        the other order would leave the moved values' lookup rows stale, as the next run finds
        their leaders already moved in the graph."""
        return self.lookup_rows is not None

    def items(self) -> list[Step | Repeat]:
        published = [self.lookup, self.graph] if self.lookup_first else [self.graph, self.lookup]
        return [
            *self.inputs,
            self.labels,
            self.round.as_repeat(self.plan),
            *self.do_not_merge,
            *((self.affected_values,) if self.affected_values else ()),
            *published,
            self.watermarks,
        ]


def id_steps(
    plan: u.IdPlan, incremental: bool = False, previous_lookup: bool = True, keep_loop_tables: bool = False
) -> IdSteps:
    """``previous_lookup``: a persistent id's lookup exists and carries its ids forward."""
    n, labels = plan.name, plan.ref("labels")
    dnm: tuple[Step, ...] = ()
    if plan.dnm_key_type is not None:
        links, groups = plan.ref("dnm_links"), plan.ref("dnm_groups")
        dnm = (
            Step(f"{n}_dnm_links", SCRATCH, lambda t: u.dnm_links_sql(_at(plan, t)), links),
            Step(f"{n}_dnm_groups", SCRATCH, lambda t: u.dnm_groups_sql(t(links), t(labels)), groups),
            Step(f"{n}_dnm_conflicts", SCALAR, lambda t: u.dnm_conflicts_sql(t(groups))),
            Step(f"{n}_dnm_resolve", SCRATCH, lambda t: u.dnm_resolve_sql(t(labels), t(groups)), labels),
        )
    previous = plan.ref("lookup") if plan.persistent and previous_lookup else None
    graph = plan.ref("graph")
    affected_values, affected = None, affected_values_ref(plan)
    if incremental:
        # The rounds solve the contracted graph; the graph keeps every row but those of the
        # values whose leader moves. Printed as the graph it publishes; applied in place where
        # the engine deletes and inserts in one transaction (the runner).
        affected_values = Step(
            f"{n}_affected_values",
            SCRATCH,
            lambda t: u.affected_values_sql(
                _at(plan, t), graph, t(changed_values_ref(plan)), t(touched_components_ref(plan)), t(labels)
            ),
            affected,
        )

        def graph_rows(t: Tables) -> str:
            return u.graph_changes_sql(graph, t(affected), in_place=False)[0]
    else:

        def graph_rows(t: Tables) -> str:
            return u.graph_sql(_at(plan, t), t(labels))

    def whole_lookup(t: Tables) -> str:
        # From the solved labels and the nodes when they cover every node (a full run), else
        # from the graph as this run publishes it, whichever is published first, and the value
        # statistics.
        if not incremental:
            return u.lookup_sql(_at(plan, t), t(labels), previous)
        return u.lookup_sql(_at(plan, t), previous=previous, graph=f"({graph_rows(t)})")

    return IdSteps(
        plan=plan,
        inputs=incremental_inputs(plan) if incremental else full_inputs(plan),
        # The rounds start from the nodes table, each node its own label (its label column).
        # Counted: the nodes that take part in the rounds (all of them in a full run).
        labels=Step.alias(f"{n}_labels", labels, plan.ref("nodes"), counted=True),
        round=round_steps(plan, keep_loop_tables),
        do_not_merge=dnm,
        affected_values=affected_values,
        graph=Step(f"{n}_graph", PUBLISH, graph_rows, graph),
        lookup=Step(f"{n}_lookup", PUBLISH, whole_lookup, plan.ref("lookup")),
        # A canonical id's lookup rows change only for the affected values: the others keep their
        # leader and their statistics. Exactly the affected values still in the graph have a row.
        lookup_rows=(
            (lambda t: u.lookup_sql(_at(plan, t), affected=t(affected)))
            if incremental and not plan.persistent
            else None
        ),
        # An incremental run's: the newest of the previous watermark and the new rows.
        watermarks=Step(
            f"{n}_watermarks",
            PUBLISH,
            (lambda t: u.watermarks_table_sql(plan, plan.ref("watermarks"), t(new_rows_ref(plan))))
            if incremental
            else (lambda t: u.watermarks_table_sql(plan)),
            plan.ref("watermarks"),
        ),
    )


# ---------------------------------------------------------------------------- after the loops


def enrich_step(plans: list[u.IdPlan], table: u.SourceTablePlan, schema: str, source_columns: list[str]) -> Step:
    """The table with its id columns."""
    target = enriched_ref(schema, table.alias)
    return Step(target.name, PUBLISH, lambda t: u.enriched_sql(plans, table, source_columns), target)


def coverage_tables(plans: list[u.IdPlan], schema: str) -> list[tuple[str, TableRef, list[str]]]:
    """Each enriched table (alias, table, the ids it carries), in enrichment order."""
    return [
        (alias, enriched_ref(schema, alias), [p.name for p in plans if p.table(alias) is not None])
        for alias in enrich_tables(plans)
    ]


def coverage_step(
    plans: list[u.IdPlan], schema: str, count_inputs: Collection[str] = (), kept: Collection[str] = ()
) -> Step:
    """How many rows of every enriched table got each id (their coverage), in one query after
    the enrichments (``u.coverage_of_tables_sql``), with each id's largest canonical id (the
    largest-share check's measures), its ids by size (the report's profile) and the rows of the
    staged tables of ``count_inputs`` (the aliases whose enrichment did not count what it read).
    ``kept``: the ids whose largest canonical id and sizes are read from their key statistics'
    per-id counts, brought up to date by this run (DuckDB: ``runner.build_key_stats``)."""
    listed = coverage_tables(plans, schema)
    tables = [(ref, ids) for _, ref, ids in listed]
    staged = enrich_tables(plans)
    inputs = [staged[alias].ref if alias in count_inputs else None for alias, _, _ in listed]
    measured = [p for p in plans if p.tables]
    components = [(p.name, [enriched_ref(p.schema, t.alias) for t in p.tables]) for p in measured]
    profiles = [(p.ref("lookup"), p.name) for p in measured]
    per_id = [per_id_ref(p.ref("result_key_stats")) if p.name in kept else None for p in measured]
    return Step(
        "enriched_coverage", ROWS, lambda t: u.coverage_of_tables_sql(tables, inputs, components, profiles, per_id)
    )


def key_stats_counts_sql(plan: u.IdPlan, only: TableRef | None = None) -> str:
    """The key statistics' per-(table, id) counts kept beside them (``per_id_ref``), with each
    id's lookup and enriched rows (``u.KEPT_SIZE_COLUMNS``); ``only``: of those ids alone."""
    return u.key_stats_per_id_sql(plan, only, [enriched_ref(plan.schema, t.alias) for t in plan.tables])


def key_stats_counts_config(plan: u.IdPlan, fingerprint: str) -> str:
    """The marker row's text of the config the kept counts were taken with: the id's
    ``fingerprint`` (the runner's ``config_fingerprint``) and the counts' SQL. Counts taken with
    another are counted again in full."""
    parts = ("key_stats", key_stats_counts_sql(plan), fingerprint)
    return inc.CONFIG_MARKER + hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def key_stats_counts_states(plan: u.IdPlan) -> list[TableRef]:
    """The build states the kept counts' markers read: the lookup's, then each enriched table's
    (written by the runs beside the tables they build, not printed steps)."""
    inputs = [plan.ref("lookup"), *(enriched_ref(plan.schema, t.alias) for t in plan.tables)]
    return [inc.state_ref(ref) for ref in inputs]


def key_stats_counts_step(plan: u.IdPlan, config: str) -> Step:
    """Every id's kept counts, as a first run (or a full recount) takes them: the counts, a
    marker row per input with the build number it read (``key_stats_counts_states``) and the
    config's marker (``config``, bound). A later run counts again only the ids touched since
    (``incremental.keep_key_stats_counts``)."""
    n_columns = len([k for k in plan.keys if k in plan.merge_names])
    markers = inc.per_id_markers_sql(
        key_stats_counts_states(plan), n_columns, with_config=True, extra=u.KEPT_SIZE_COLUMNS
    )
    return Step(
        f"{plan.name}_key_stats_counts",
        PUBLISH,
        lambda t: Query(f"{key_stats_counts_sql(plan)}\nUNION ALL\n{markers}", (config,)),
        per_id_ref(plan.ref("result_key_stats")),
    )


def key_stats_steps(plan: u.IdPlan, counts_config: str | None = None) -> tuple[Step, ...]:
    """The id's key statistics. ``counts_config`` (``key_stats_counts_config``; engines that
    delete and insert in one transaction, DuckDB: ``runner.keeps_key_stats_counts``): from the
    per-(table, id) counts kept beside them, counted first by a step of their own; None: from
    the lookup and the key values, every row (Treasure Data, Spark)."""
    if counts_config is None:
        return (
            Step(
                f"{plan.name}_source_key_stats",
                PUBLISH,
                lambda t: u.source_key_stats_sql(plan),
                plan.ref("source_key_stats"),
            ),
            Step(
                f"{plan.name}_result_key_stats",
                PUBLISH,
                lambda t: u.result_key_stats_sql(plan),
                plan.ref("result_key_stats"),
            ),
        )
    per_id = per_id_ref(plan.ref("result_key_stats"))
    return (
        key_stats_counts_step(plan, counts_config),
        Step(
            f"{plan.name}_source_key_stats",
            PUBLISH,
            lambda t: u.source_key_stats_of_per_id_sql(plan, per_id),
            plan.ref("source_key_stats"),
        ),
        Step(
            f"{plan.name}_result_key_stats",
            PUBLISH,
            lambda t: u.result_key_stats_of_per_id_sql(plan, per_id.sql),
            plan.ref("result_key_stats"),
        ),
    )


def master_rules_ref(unify: UnifyConfig, master: MasterTable) -> TableRef:
    return TableRef(unify.schema, f"{master.name}_attribute_rules")


def master_inputs(
    unify: UnifyConfig, plans: list[u.IdPlan], master: MasterTable
) -> tuple[dict[str, TableRef], dict[str, list[str]]]:
    """The enriched tables a master table reads, by alias, and ``master_id_tables``."""
    by_name = {p.name: p for p in plans}
    id_tables = master_id_tables(master, by_name[master.id_name], by_name)
    aliases = {sc.table for a in master.attributes for sc in a.source_columns} | {
        t for ts in id_tables.values() for t in ts
    }
    return {a: enriched_ref(unify.schema, a) for a in sorted(aliases)}, id_tables


def master_query(
    unify: UnifyConfig,
    plans: list[u.IdPlan],
    master: MasterTable,
    only_ids: TableRef | None = None,
    binds_regexps: bool = False,
    picks_by_aggregate: bool = False,
    dialect: Dialect = DIALECTS["duckdb"],
) -> Query:
    """A master table's statement (its attribute rules loaded as data first): the full build, or
    ``only_ids``' rows (an incremental build: cdp_assets/incremental.py). ``binds_regexps``,
    ``picks_by_aggregate``: the dialect's forms (``master_table_query``)."""
    plan = next(p for p in plans if p.name == master.id_name)
    seen_at = {t.alias: t.seen_at for p in plans for t in p.tables}
    enriched, id_tables = master_inputs(unify, plans, master)
    return master_table_query(
        master,
        unify,
        plan.ref("lookup"),
        enriched,
        master_rules_ref(unify, master),
        seen_at,
        id_tables,
        only_ids,
        binds_regexps=binds_regexps,
        dialect=dialect,
        picks_by_aggregate=picks_by_aggregate,
    )


def master_step(unify: UnifyConfig, plans: list[u.IdPlan], master: MasterTable) -> Step:
    """One master table, its full build. The runner builds it incrementally when it can
    (cdp_assets/incremental.py). Its valid_regexps are bound, and its values picked by
    aggregates, as the id's plan says (``u.for_dialect``)."""
    plan = next(p for p in plans if p.name == master.id_name)
    forms = {"binds_regexps": plan.binds_regexps, "picks_by_aggregate": plan.picks_by_aggregate}
    return Step(
        master.name, PUBLISH, lambda t: master_query(unify, plans, master, **forms), TableRef(unify.schema, master.name)
    )


# ---------------------------------------------------------------------------- the whole phase

SourceColumns = Callable[[u.SourceTablePlan], list[str]]


def unification_pipeline(
    loaded: LoadedConfig,
    plans: list[u.IdPlan],
    source_columns: SourceColumns,
    incremental: Callable[[u.IdPlan], bool] = lambda plan: False,
    previous_lookup: Callable[[u.IdPlan], bool] = lambda plan: True,
    key_stats_config: Callable[[u.IdPlan], str | None] = lambda plan: None,
) -> StepPipeline:
    """Every step of the unification, in the order the runs execute them: each id's loop, each
    table's enrichment, each id's key statistics, the enrichments' coverage, each master table.
    ``source_columns`` gives a source table's columns (the warehouse's at run time; the files'
    headers when printing). ``key_stats_config``: an id's kept counts' config marker where the
    engine keeps them (``key_stats_steps``), else None."""
    unify = loaded.unification
    pipeline = StepPipeline("unification")
    if unify is None:
        return pipeline
    keep = loaded.pipeline.unification_options.keep_loop_tables
    for plan in plans:
        pipeline.extend(id_steps(plan, incremental(plan), previous_lookup(plan), keep).items())
    tables = enrich_tables(plans)
    pipeline.extend(enrich_step(plans, table, unify.schema, source_columns(table)) for table in tables.values())
    # The key statistics before the coverage query, as the collecting op runs them: where their
    # per-id counts are kept, the query reads each id's largest canonical id and sizes from them.
    configs = {plan.name: key_stats_config(plan) for plan in plans}
    for plan in plans:
        pipeline.extend(key_stats_steps(plan, configs[plan.name]))
    if tables:
        kept = [name for name, config in configs.items() if config is not None]
        pipeline.extend([coverage_step(plans, unify.schema, kept=kept)])
    pipeline.extend(master_step(unify, plans, m) for m in unify.master_tables)
    return pipeline
