"""The tables and columns ``unify.yml`` names, checked against what the pipeline produces.

A table of ``unify.yml`` is either produced by a phase of this pipeline (its columns are then
known when the config loads: the source files' headers plus the staging outputs) or one of the
team's existing warehouse tables, read as it is (an external source asset; checked when a run
starts, see ``cdp_assets/unify/preflight.py``). A name that is plainly a typo of a produced
table stays an error, with the close match.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cdp_assets.config.models import LocalFilesConnector, PipelineConfig, SourceConfig, SourceObject
from cdp_assets.config.unify import UnifyConfig, UnifyTable

# Names this close to a produced name are typos, not other tables.
TYPO_CUTOFF = 0.85
METADATA_PREFIX = "_cdp_"  # columns every loaded table carries (_cdp_file, _cdp_loaded_at)


class ReferenceError_(ValueError):
    """A reference that cannot be right: the message names the field and the fix."""


@dataclass(frozen=True)
class TableColumn:
    """One column reference of unify.yml: where it is written, the table alias and the column."""

    field: str  # e.g. tables[0].key_columns[1].column
    alias: str
    column: str


def produced_tables(pipeline: PipelineConfig) -> dict[str, set[str]]:
    """Every table the ingestion, hist-union and staging phases write, by schema."""
    src: set[str] = set()
    stg: set[str] = set()
    for source, obj in pipeline.source_objects():
        base = f"{source.name}_{obj.name}"
        if source.loads_incremental:
            src.add(base)
        if source.loads_historical:
            src.add(f"{base}_hist")
        src.add(f"{base}_hist_union")
        stg.add(f"{base}_stg")
    return {pipeline.src_schema: src, pipeline.stg_schema: stg}


def database_of(pipeline: PipelineConfig, table: UnifyTable) -> str:
    return table.database or pipeline.stg_schema


def is_produced(pipeline: PipelineConfig, table: UnifyTable) -> bool:
    produced = produced_tables(pipeline)
    return table.table in produced.get(database_of(pipeline, table), set())


def external_tables(pipeline: PipelineConfig, unify: UnifyConfig) -> list[UnifyTable]:
    """The tables of unify.yml that no phase produces: read as they are in the warehouse."""
    return [t for t in unify.tables if not is_produced(pipeline, t)]


def check_tables(pipeline: PipelineConfig, unify: UnifyConfig, prefix: str) -> None:
    """Reject a table or database that is a close misspelling of one the pipeline produces."""
    produced = produced_tables(pipeline)
    for i, table in enumerate(unify.tables):
        database = database_of(pipeline, table)
        if database not in produced:
            near = difflib.get_close_matches(database, list(produced), n=1, cutoff=TYPO_CUTOFF)
            if near:
                raise ReferenceError_(
                    f"{prefix}tables[{i}].database: {database!r} is not written by this pipeline; did you mean "
                    f"{near[0]!r}? use {pipeline.stg_schema!r} (staged tables) or {pipeline.src_schema!r}, or the "
                    "exact name of an existing warehouse database"
                )
            continue
        if table.table in produced[database]:
            continue
        near = difflib.get_close_matches(table.table, sorted(produced[database]), n=1, cutoff=TYPO_CUTOFF)
        if near:
            raise ReferenceError_(
                f"{prefix}tables[{i}].table: {table.table!r} is not produced by any phase in {database!r}; did you "
                f"mean {near[0]!r}? use one of {sorted(produced[database])}, or the exact name of an existing table"
            )


def column_references(unify: UnifyConfig) -> list[TableColumn]:
    """Every column unify.yml reads from a table, with the field that names it."""
    refs = []
    for i, t in enumerate(unify.tables):
        for j, kc in enumerate(t.key_columns):
            refs.append(TableColumn(f"tables[{i}].key_columns[{j}].column", t.alias, kc.column))
        for j, col in enumerate(t.incremental_columns):
            refs.append(TableColumn(f"tables[{i}].incremental_columns[{j}]", t.alias, col))
    for m, master in enumerate(unify.master_tables):
        for a, attr in enumerate(master.attributes):
            for s, sc in enumerate(attr.source_columns):
                where = f"master_tables[{m}].attributes[{a}].source_columns[{s}]"
                refs.append(TableColumn(f"{where}.column", sc.table, sc.column))
                if sc.order_by is not None:
                    refs.append(TableColumn(f"{where}.order_by", sc.table, sc.order_by))
    return refs


def missing_column_message(ref: TableColumn, table_name: str, columns: list[str], what: str) -> str:
    near = difflib.get_close_matches(ref.column, columns, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    shown = [c for c in columns if not c.startswith(METADATA_PREFIX)]
    return f"{ref.field}: column {ref.column!r} is not in {table_name} ({what}); {hint}its columns are {shown}"


def _object_columns(source: SourceConfig, obj: SourceObject, folder: Path) -> list[str] | None:
    """The columns the files of a local source object have (union of their headers), or None
    when there is no file yet to read them from."""
    from cdp_assets.connectors.local_files import object_files
    from cdp_assets.connectors.readers import file_columns

    fmt = source.connector.format if isinstance(source.connector, LocalFilesConnector) else "auto"
    files = object_files(folder, obj.name, False, fmt) + object_files(folder, obj.name, True, fmt)
    if not files:
        return None
    names: list[str] = []
    for path in files:
        try:
            names.extend(c for c in file_columns(path) if c not in names)
        except (OSError, ValueError, StopIteration):
            return None  # an unreadable file is the ingestion's error to report, with its row
    return names


def known_columns(pipeline: PipelineConfig, table: UnifyTable, source_paths: dict[str, Path]) -> list[str] | None:
    """The columns a produced table will have, known at load for local files: the source headers,
    the loader's metadata columns and, for a staged table, the staging outputs. None when they
    cannot be known before the run (S3, warehouse tables, no file yet)."""
    database = database_of(pipeline, table)
    for source, obj in pipeline.source_objects():
        base = f"{source.name}_{obj.name}"
        if database == pipeline.stg_schema and table.table == f"{base}_stg":
            return object_table_columns(pipeline, source, obj, True, source_paths)
        if database == pipeline.src_schema and table.table in (base, f"{base}_hist", f"{base}_hist_union"):
            return object_table_columns(pipeline, source, obj, False, source_paths)
    return None


def object_table_columns(
    pipeline: PipelineConfig, source: SourceConfig, obj: SourceObject, staged: bool, source_paths: dict[str, Path]
) -> list[str] | None:
    """The columns of a source object's loaded table (or, ``staged``, of its staged table), or
    None when they cannot be known before the run."""
    from cdp_assets.sql.staging import staged_columns

    base = f"{source.name}_{obj.name}"
    folder = source_paths.get(source.name)
    if folder is None:
        return None
    columns = _object_columns(source, obj, folder)
    if columns is None:
        return None
    columns = [*columns, f"{METADATA_PREFIX}file", f"{METADATA_PREFIX}loaded_at"]
    if staged:
        columns += [c.output for c in staged_columns(pipeline.staging.get(base, {}))]
        columns += pipeline.staging_table_columns(base)
    return columns


def check_join_columns(pipeline: PipelineConfig, source_paths: dict[str, Path]) -> None:
    """The columns the table-level joins of staging name exist, where the files tell (local
    files with a file already); the others are checked when the staged table is built."""
    objects = {f"{s.name}_{o.name}": (s, o) for s, o in pipeline.source_objects()}
    for table, options in pipeline.staging_tables.items():
        for i, join in enumerate(options.join):
            where = f"staging_tables.{table}.join[{i}]"
            mine = object_table_columns(pipeline, *objects[table], True, source_paths)
            theirs = object_table_columns(pipeline, *objects[join.table], join.from_ == "staged", source_paths)
            checks = [(f"{where}.on", left, mine, f"{table}'s staged table") for left in join.on]
            checks += [(f"{where}.on", right, theirs, join.table) for right in join.on.values()]
            checks += [(f"{where}.columns[{k}]", col, theirs, join.table) for k, col in enumerate(join.columns)]
            for field, column, have, what in checks:
                if have is not None and column not in have:
                    ref = TableColumn(field, table, column)
                    raise ReferenceError_(missing_column_message(ref, what, have, f"from: {join.from_}"))


def check_columns(pipeline: PipelineConfig, unify: UnifyConfig, source_paths: dict[str, Path], prefix: str) -> None:
    """Every column unify.yml reads from a produced table must be one the table will have."""
    by_alias = {t.alias: t for t in unify.tables}
    cache: dict[str, list[str] | None] = {}
    for ref in column_references(unify):
        table = by_alias[ref.alias]
        if not is_produced(pipeline, table):
            continue  # an existing table: checked when the run starts
        if ref.alias not in cache:
            cache[ref.alias] = known_columns(pipeline, table, source_paths)
        columns = cache[ref.alias]
        if columns is None or ref.column in columns or ref.column.startswith(METADATA_PREFIX):
            continue  # unknown before the run, present, or a column the loader adds
        name = f"{database_of(pipeline, table)}.{table.table}"
        raise ReferenceError_(
            prefix + missing_column_message(ref, name, columns, "source headers plus staging outputs")
        )
