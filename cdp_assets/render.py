"""Render every phase's SQL of a config for one dialect, without a database.

A user reviews exactly what will run on their warehouse: one folder per phase, one file per
statement. Column lists that the assets read from the warehouse at run time are read here from
the source files' headers instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdp_assets.assets.hist_union import hist_union_ref
from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.staging import staging_query, staging_ref, staging_rules
from cdp_assets.assets.unification import enrich_tables, enriched_ref, master_id_tables
from cdp_assets.config.models import LoadedConfig, LocalFilesConnector
from cdp_assets.connectors.local_files import object_files
from cdp_assets.connectors.readers import file_columns
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import Dialect, TableRef
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS, hist_union_sql
from cdp_assets.sql.master import master_table_sql
from cdp_assets.sql.pipeline import SqlPipeline, create_table_as
from cdp_assets.sql.staging import staged_columns


@dataclass(frozen=True)
class RenderedFile:
    phase: str
    name: str
    sql: str


def _raw_columns(loaded: LoadedConfig, source, obj, historical: bool) -> list[str]:
    if not isinstance(source.connector, LocalFilesConnector):
        return [source.incremental_field]
    cols: list[str] = []
    for path in object_files(loaded.source_paths[source.name], obj.name, historical=historical, fmt=source.connector.format):
        cols.extend(c for c in file_columns(path) if c not in cols)
    return [*cols, *(c for c in LINEAGE_COLUMNS if c not in cols)]


def build_pipelines(loaded: LoadedConfig, raw_columns=None) -> dict[str, SqlPipeline]:
    """The statements of each phase, in canonical SQL, named as the runs name them.
    ``raw_columns(source, obj, historical)`` gives a raw table's columns (default: the local
    files' headers; validate passes what it read from every kind of source)."""
    raw_columns = raw_columns or (lambda source, obj, historical: _raw_columns(loaded, source, obj, historical))
    phases = {p: SqlPipeline(p) for p in ("hist_union", "staging", "unification")}
    staged_cols: dict[str, list[str]] = {}
    for source, obj in loaded.pipeline.source_objects():
        inputs = [
            (ref, raw_columns(source, obj, mode == "historical"))
            for mode, ref in ingestion_refs(loaded, source, obj).items()
        ]
        union_ref = hist_union_ref(loaded, source, obj)
        phases["hist_union"].add(union_ref.name, create_table_as(union_ref, hist_union_sql(inputs, source.incremental_field, list(obj.primary_key))), union_ref)
        union_cols: list[str] = []
        for _, cols in inputs:
            union_cols.extend(c for c in cols if c not in union_cols)
        rules = staging_rules(loaded, source, obj)
        stg = staging_ref(loaded, source, obj)
        phases["staging"].add(stg.name, create_table_as(stg, staging_query(loaded, source, obj, union_ref, union_cols)), stg)
        extra = loaded.pipeline.staging_table_columns(f"{source.name}_{obj.name}")
        staged_cols[stg.name] = [*union_cols, *(c.output for c in staged_columns(rules)), *extra]

    unify = loaded.unification
    if unify is None:
        return phases
    plans = u.build_id_plans(loaded)
    uni = phases["unification"]
    for plan in plans:
        edges, hooks, labels = plan.ref("edges"), plan.ref("hooks"), plan.ref("labels")
        stats = plan.ref("value_stats")
        uni.add(f"{plan.name}_key_values", create_table_as(plan.ref("key_values"), u.key_values_sql(plan)))
        uni.add(f"{plan.name}_value_stats", create_table_as(stats, u.value_stats_sql(plan)))
        uni.add(f"{plan.name}_excluded_values", create_table_as(plan.ref("excluded_values"), u.excluded_values_sql(plan, stats)))
        uni.add(f"{plan.name}_nodes", create_table_as(plan.nodes, u.nodes_sql(plan, stats)))
        uni.add(f"{plan.name}_edges", create_table_as(edges, u.edges_sql(plan)))
        uni.add(f"{plan.name}_labels", create_table_as(labels, u.initial_labels_sql(plan)))
        uni.add(f"{plan.name}_loop_hook", create_table_as(hooks, u.hook_sql(edges)))
        uni.add(f"{plan.name}_loop_unresolved_pointers", u.unresolved_pointers_sql(hooks))
        uni.add(f"{plan.name}_loop_jump", create_table_as(plan.ref("hooks_jumped"), u.jump_sql(hooks)))
        uni.add(f"{plan.name}_loop_relabeled_count", u.relabeled_count_sql(labels, hooks))
        uni.add(f"{plan.name}_loop_relabel", create_table_as(plan.ref("labels_next"), u.relabel_sql(labels, hooks)))
        uni.add(f"{plan.name}_loop_contract", create_table_as(plan.ref("edges_next"), u.contract_edges_sql(edges, hooks)))
        if plan.dnm_key_type is not None:
            links, groups = plan.ref("dnm_links"), plan.ref("dnm_groups")
            uni.add(f"{plan.name}_dnm_links", create_table_as(links, u.dnm_links_sql(plan)))
            uni.add(f"{plan.name}_dnm_groups", create_table_as(groups, u.dnm_groups_sql(links, labels)))
            uni.add(f"{plan.name}_dnm_resolve", create_table_as(plan.ref("labels_resolved"), u.dnm_resolve_sql(labels, groups)))
        uni.add(f"{plan.name}_graph", create_table_as(plan.ref("graph"), u.graph_sql(plan, labels)))
        previous = plan.ref("lookup") if plan.persistent else None
        uni.add(f"{plan.name}_lookup", create_table_as(plan.ref("lookup"), u.lookup_sql(plan, previous)))
        uni.add(f"{plan.name}_watermarks", u.watermarks_sql(plan))
    for alias, table in enrich_tables(plans).items():
        target = enriched_ref(unify.schema, alias)
        uni.add(target.name, create_table_as(target, u.enriched_sql(plans, table, staged_cols.get(table.ref.name, []))))
    for plan in plans:
        uni.add(f"{plan.name}_source_key_stats", create_table_as(plan.ref("source_key_stats"), u.source_key_stats_sql(plan)))
        uni.add(f"{plan.name}_result_key_stats", create_table_as(plan.ref("result_key_stats"), u.result_key_stats_sql(plan)))
    by_name = {p.name: p for p in plans}
    seen_at = {t.alias: t.seen_at for p in plans for t in p.tables}
    for master in unify.master_tables:
        plan = by_name[master.id_name]
        target = TableRef(unify.schema, master.name)
        id_tables = master_id_tables(master, plan, by_name)
        aliases = {sc.table for a in master.attributes for sc in a.source_columns} | {t for ts in id_tables.values() for t in ts}
        enriched = {a: enriched_ref(unify.schema, a) for a in aliases}
        rules = target.sibling(f"{master.name}_attribute_rules")
        sql = master_table_sql(master, unify, plan.ref("lookup"), enriched, rules, seen_at, id_tables)
        uni.add(master.name, create_table_as(target, sql))
    return phases


def render(loaded: LoadedConfig, dialect: Dialect) -> list[RenderedFile]:
    return [
        RenderedFile(phase, f"{i:02d}_{step.name}.sql", step.sql)
        for phase, pipeline in build_pipelines(loaded).items()
        for i, step in enumerate(pipeline.render(dialect), start=1)
    ]


def write_rendered(loaded: LoadedConfig, dialect: Dialect, out_dir: Path) -> list[Path]:
    """One folder per phase, one ``NN_name.sql`` file per statement; returns the files written."""
    written = []
    for f in render(loaded, dialect):
        path = out_dir / f.phase / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"-- {dialect.name}: {f.phase} / {f.name}\n{f.sql};\n", encoding="utf-8")
        written.append(path)
    return written
