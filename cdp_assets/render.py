"""Render every phase's SQL of a config for one dialect, without a database.

A user reviews exactly what will run on their warehouse: one folder per phase, one file per
statement. Column lists that the assets read from the warehouse at run time are read here from
the source files' headers instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdp_assets.assets.hist_union import hist_union_ref
from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.staging import staging_query, staging_ref, staging_rules
from cdp_assets.config.models import LoadedConfig, LocalFilesConnector
from cdp_assets.connectors.local_files import object_files
from cdp_assets.connectors.readers import file_columns
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import Dialect
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS, hist_union_sql
from cdp_assets.sql.pipeline import SqlPipeline, parameters_comment
from cdp_assets.sql.staging import staged_columns
from cdp_assets.sql.unification_pipeline import key_stats_counts_config, unification_pipeline


@dataclass(frozen=True)
class RenderedFile:
    phase: str
    name: str
    sql: str
    note: str = ""  # e.g. that the loop repeats this statement
    params: tuple = ()  # the values bound to the statement's ? placeholders, in order


def _raw_columns(loaded: LoadedConfig, source, obj, historical: bool) -> list[str]:
    if not isinstance(source.connector, LocalFilesConnector):
        return [source.incremental_field]
    cols: list[str] = []
    for path in object_files(
        loaded.source_paths[source.name], obj.name, historical=historical, fmt=source.connector.format
    ):
        cols.extend(c for c in file_columns(path) if c not in cols)
    return [*cols, *(c for c in LINEAGE_COLUMNS if c not in cols)]


def build_pipelines(loaded: LoadedConfig, raw_columns=None, dialect: Dialect | None = None) -> dict[str, SqlPipeline]:
    """The statements of each phase, in canonical SQL, named as the runs name them, as a run on
    ``dialect``'s engine sends them (its values bound where it binds them: ``u.for_dialect``).
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
        union_sql = hist_union_sql(inputs, source.incremental_field, list(obj.primary_key))
        phases["hist_union"].add(union_ref.name, union_sql, union_ref)
        union_cols: list[str] = []
        for _, cols in inputs:
            union_cols.extend(c for c in cols if c not in union_cols)
        rules = staging_rules(loaded, source, obj)
        stg = staging_ref(loaded, source, obj)
        phases["staging"].add(stg.name, staging_query(loaded, source, obj, union_ref, union_cols), stg)
        extra = loaded.pipeline.staging_table_columns(f"{source.name}_{obj.name}")
        staged_cols[stg.name] = [*union_cols, *(c.output for c in staged_columns(rules)), *extra]

    # The unification's steps are the list its runner executes (cdp_assets/sql/unification_pipeline.py):
    # the loop's round is printed once, with a note; an enriched table's columns are the staged ones.
    steps = unification_pipeline(
        loaded,
        u.build_id_plans(loaded, dialect=dialect),
        lambda table: staged_cols.get(table.ref.name, []),
        key_stats_config=key_stats_config_of(loaded, dialect),
    )
    phases["unification"] = steps.bind()
    return phases


def key_stats_config_of(loaded: LoadedConfig, dialect: Dialect | None) -> Callable[[u.IdPlan], str | None]:
    """Where ``dialect``'s engine keeps the key statistics' per-id counts, an id's counts' config
    marker (``key_stats_steps``), else None: the engines of a dialect with transactional DDL
    (DuckDB) delete and insert in one transaction (``upsert_mode`` ``delete_insert``), which is
    what ``runner.keeps_key_stats_counts`` asks of the engine at run time."""
    from cdp_assets.unify.runner import config_fingerprint

    unify = loaded.unification
    if dialect is None or not dialect.transactional_ddl or unify is None:
        return lambda plan: None
    return lambda plan: key_stats_counts_config(plan, config_fingerprint(plan, unify)) if plan.tables else None


def render(loaded: LoadedConfig, dialect: Dialect) -> list[RenderedFile]:
    return [
        RenderedFile(phase, f"{i:02d}_{step.name}.sql", step.sql, step.note, step.params)
        for phase, pipeline in build_pipelines(loaded, dialect=dialect).items()
        for i, step in enumerate(pipeline.render(dialect), start=1)
    ]


def write_rendered(loaded: LoadedConfig, dialect: Dialect, out_dir: Path) -> list[Path]:
    """One folder per phase, one ``NN_name.sql`` file per statement; returns the files written.
    A statement with bound values is printed as it is sent, its ``?`` placeholders kept, with a
    comment above it listing the values in order (``parameters_comment``)."""
    written = []
    for f in render(loaded, dialect):
        path = out_dir / f.phase / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        note = f"-- {f.note}\n" if f.note else ""
        params = parameters_comment(f.params)
        path.write_text(f"-- {dialect.name}: {f.phase} / {f.name}\n{note}{params}{f.sql};\n", encoding="utf-8")
        written.append(path)
    return written
