"""Incremental and historical loads of files on an engine that reads them itself (DuckDB).

The same contract as ``loading.load_incremental`` / ``load_historical`` (per-file bookkeeping by
SHA-256, start_date and exact-copy skips counted, rejections with file, row and reason, one unit
for data, rejections, file records and log, historical tables built then swapped), with the rows
kept in the warehouse from the file to the table: each file is read into a temporary table
(``native_files.read_files_rows``: one checks query for a load's files), filtered in SQL, and
appended with ``INSERT ... BY NAME``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import get_dagster_logger

from cdp_assets.config.models import SourceConfig, SourceObject
from cdp_assets.connectors.local_files import FileVersion, fingerprint, object_files, read_version
from cdp_assets.connectors.native_files import FileRows, drop_temps, read_files_rows, temp_ref
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.ingestion import (
    add_column_sql,
    append_by_name_sql,
    fresh_rows_sql,
    rows_summary_sql,
    union_by_name_sql,
)
from cdp_assets.sql.pipeline import create_table_as


def _loading():
    from cdp_assets.connectors import loading  # loading dispatches here: imported late

    return loading


def _progress(ref: TableRef, n: int, total: int, path: Path, read: FileRows) -> None:
    how = "DuckDB's reader" if read.native else "the Python reader"
    get_dagster_logger("cdp_assets.loading").info(
        f"{ref.display}: read file {n} of {total} ({path.name}, {how}): {read.rows} row(s), "
        f"{len(read.rejected)} rejected"
    )


def _book(path: Path, version: FileVersion, read: FileRows, loaded: int, before: int, dupes: int) -> dict:
    rows_read, rejected = read.rows + len(read.rejected), len(read.rejected)
    return _loading().file_book_row(path, version, rows_read, loaded, rejected, before, dupes)


def load_incremental_native(
    wh: WarehouseResource,
    source: SourceConfig,
    obj: SourceObject,
    folder: Path,
    schema: str,
    run_id: str,
    books=None,
) -> tuple:
    """Append the rows of new and changed files, except rows older than start_date and exact
    copies of rows already loaded (counted as skipped). Returns a ``loading.LoadResult``.
    ``books``: the step's ``loading.StepBooks``, written in this load's unit."""
    ld = _loading()
    ref = TableRef(schema, f"{source.name}_{obj.name}")
    log_ref, files_ref = TableRef(schema, ld.LOG_TABLE), TableRef(schema, ld.FILES_TABLE)
    field_ = source.incremental_field
    fmt = getattr(source.connector, "format", "auto")
    with wh.session():
        catalog = ld.LoadCatalog.describe(wh, [ref, files_ref, ld.rejected_ref(ref)])
        table_columns = set(catalog.columns_of(wh, ref)) if catalog.exists(wh, ref) else set()
        table_exists = bool(table_columns)
        # Its rows before the load and its watermark, in one query: the rows after it are these
        # plus the ones appended in the load's unit.
        rows_before, watermark = ld.current_rows_and_watermark(wh, ref, field_, catalog)
        loaded_at = ld._now()
        records = ld.step_records(wh, books, files_ref, source.name, obj.name, catalog)
        known = {f: r for (m, f), r in records.items() if m == "incremental"}
        start = ld._iso(ld.naive_utc(source.start_date)) if source.start_date is not None else None
        paths = object_files(folder, obj.name, historical=False, fmt=fmt)
        temps: list[TableRef] = []
        kept: list[tuple[TableRef, list[str], int]] = []  # each file's rows to append: columns, count
        rejects, book, used, newest = [], [], [], []
        before_start = duplicate = unchanged = 0
        try:
            todo = []  # (n, path, version) of the files to read
            for n, path in enumerate(paths, start=1):
                # Hashed before it is read: a file still growing in between is recorded with its
                # older hash, so the next load reads it again and skips the rows it gave (no loss).
                # (A file whose status is the one recorded with its hash is not read at all.)
                recorded = known.get(path.name)
                version = read_version(path, recorded)
                if recorded is not None and recorded.version == version.version:
                    unchanged += 1  # this content of this file is loaded: nothing in it is new
                    continue
                todo.append((n, path, version))
            # Every file read by DuckDB, then checked in one query.
            reads = read_files_rows(
                wh, [p for _, p, _ in todo], field_, loaded_at, source.date_order, source.name, start
            )
            for read in reads:
                temps += ([read.table] if read.table is not None else []) + read.scratch
            for (n, path, version), read in zip(todo, reads):
                rejects.append(ld.rejected_frame(path, "incremental", read.rejected, run_id, version.version))
                file_before = file_dupes = loaded = 0
                if read.table is not None and read.rows:
                    file_before = read.before_start
                    earlier = ([(ref, table_columns)] if table_exists else []) + [(t, set(c)) for t, c, _ in kept]
                    fresh, loaded, file_newest = read.table, read.rows, read.newest
                    if file_before or earlier:
                        fresh = temp_ref("fresh")
                        temps.append(fresh)
                        sql = fresh_rows_sql(fresh, read.table, read.columns, field_, start is not None, earlier)
                        # DuckDB answers CREATE TABLE AS with its row count.
                        loaded = int(wh.query(sql, [start] if start is not None else []).iloc[0, 0])
                        if loaded != read.rows - file_before:
                            # Copies were skipped, maybe the newest row: measured on what is kept. (With
                            # none skipped, the file's newest row, not before start_date, is kept.)
                            file_newest = wh.query(rows_summary_sql(fresh, field_)).iloc[0]["w"]
                    file_dupes = read.rows - file_before - loaded
                    if loaded:
                        kept.append((fresh, read.columns, loaded))
                        used.append(path.name)
                        newest.append(str(file_newest))
                _progress(ref, n, len(paths), path, read)
                if file_before or file_dupes:
                    get_dagster_logger("cdp_assets.loading").info(
                        f"{ref.display}: {path.name}: skipped {file_before} row(s) older than start_date, "
                        f"{file_dupes} row(s) already loaded (exact copies of rows in the table)"
                    )
                before_start += file_before
                duplicate += file_dupes
                book.append(_book(path, version, read, loaded, file_before, file_dupes))
            new_rows = sum(n for _, _, n in kept)
            new_watermark = watermark
            if newest:
                new_watermark = max(filter(None, [watermark, ld._iso(max(newest))]))
            bad = ld.new_rejections(wh, ref, rejects, catalog, books)
            result = ld.LoadResult(
                ref,
                "incremental",
                new_rows,
                new_watermark,
                watermark,
                used,
                records_rejected=0 if bad is None else len(bad),
                skipped_before_start_date=before_start,
                skipped_duplicate=duplicate,
                unchanged_files=unchanged,
                table_rows=rows_before + new_rows,
            )
            statements = []
            if kept:
                parts = [t for t, _, _ in kept]
                if table_exists:
                    new_columns = [c for _, cols, _ in kept for c in cols if c not in table_columns]
                    for c in dict.fromkeys(new_columns):  # new columns in a later file; earlier rows read NULL
                        statements.append(add_column_sql(ref, c, "TIMESTAMP" if c == field_ else "VARCHAR"))
                    statements.append(append_by_name_sql(ref, parts))
                else:
                    wh.ensure_schema(schema)
                    statements.append(create_table_as(ref, union_by_name_sql(parts)))
            unit = [(ld.rejected_ref(ref), bad)] if bad is not None else []
            unit += [(files_ref, ld.files_frame(source.name, obj.name, "incremental", run_id, book))] if book else []
            log_row = ld.log_frame(source.name, obj.name, result, run_id, None, result.summary(source.start_date))
            supersede = (ref, files_ref, source.name, obj.name)
            ld._keep_books(wh, books, [*unit, (log_ref, log_row)], supersede, statements)
        finally:
            # The incremental load is its step's last: its temporary tables die with the step's
            # session (DuckDB), no drop sent; an engine without session temporaries drops them.
            wh.drop_with_session(temps)
    return result


def load_historical_native(
    wh: WarehouseResource,
    source: SourceConfig,
    obj: SourceObject,
    folder: Path,
    schema: str,
    run_id: str,
    books=None,
):
    """Replace ``_hist`` with the historical files, unless they are unchanged since the last load.
    ``books``: the step's ``loading.StepBooks``, which keeps this load's records for its unit."""
    ld = _loading()
    ref = TableRef(schema, f"{source.name}_{obj.name}_hist")
    log_ref, files_ref = TableRef(schema, ld.LOG_TABLE), TableRef(schema, ld.FILES_TABLE)
    field_ = source.incremental_field
    files = object_files(folder, obj.name, historical=True, fmt=getattr(source.connector, "format", "auto"))
    fp = fingerprint(files)
    # The object's incremental table is described in the same round trip, for its load (an engine
    # holding the run keeps the description).
    incremental = TableRef(schema, f"{source.name}_{obj.name}")
    with wh.session():
        catalog = ld.LoadCatalog.describe(wh, [ref, log_ref, ld.rejected_ref(ref), incremental])
        previous_rows, previous = ld.current_rows_and_watermark(wh, ref, field_, catalog)
        if files and catalog.exists(wh, ref) and ld.last_fingerprint(wh, log_ref, source.name, obj.name, catalog) == fp:
            result = ld.LoadResult(ref, "historical", 0, previous, previous, [], table_rows=previous_rows)
            log_row = ld.log_frame(source.name, obj.name, result, run_id, fp, "historical files unchanged")
            ld._keep_books(wh, books, [(log_ref, log_row)], defer=True)
            return result
        loaded_at = ld._now()
        supersede = (ref, files_ref, source.name, obj.name)  # marked after the load's records are written
        temps: list[TableRef] = []  # every temporary table of the load, dropped at its end
        parts: list[TableRef] = []  # the files' rows
        rejects, book, newest = [], [], []
        try:
            versions = [read_version(path) for path in files]  # hashed before they are read
            reads = read_files_rows(wh, files, field_, loaded_at, source.date_order, source.name)
            for n, (path, version, read) in enumerate(zip(files, versions, reads), start=1):
                parts += [read.table] if read.table is not None else []
                temps += ([read.table] if read.table is not None else []) + read.scratch
                newest += [read.newest] if read.rows and read.newest is not None else []
                rejects.append(ld.rejected_frame(path, "historical", read.rejected, run_id, version.version))
                _progress(ref, n, len(files), path, read)
                book.append(_book(path, version, read, read.rows, 0, 0))
            bad = ld.new_rejections(wh, ref, rejects, catalog, books)
            unit = [(ld.rejected_ref(ref), bad)] if bad is not None else []
            unit += [(files_ref, ld.files_frame(source.name, obj.name, "historical", run_id, book))] if book else []
            rejected_count = 0 if bad is None else len(bad)
            if not files:
                result = ld.LoadResult(ref, "historical", 0, previous, previous, [], table_rows=previous_rows)
                log_row = ld.log_frame(source.name, obj.name, result, run_id, fp, "no historical files")
                ld._keep_books(wh, books, [(log_ref, log_row)], defer=True)
                return result
            names = [p.name for p in files]
            if not parts:  # only empty files: nothing to build a table from
                result = ld.LoadResult(
                    ref,
                    "historical",
                    0,
                    previous,
                    previous,
                    names,
                    records_rejected=rejected_count,
                    table_rows=previous_rows,
                )
                log_row = ld.log_frame(source.name, obj.name, result, run_id, fp, "historical files hold no rows")
                ld._keep_books(wh, books, [*unit, (log_ref, log_row)], supersede, defer=True)
            else:
                # Replaced first, then logged: a run killed between the two reloads the files next
                # time (the log has no load with this fingerprint) and records the rejected rows once.
                rows = wh.build_table(ref, union_by_name_sql(parts))
                # The newest watermark of the files' rows, as each file's checks measured it.
                watermark = ld._iso(max(pd.Timestamp(w) for w in newest)) if rows and newest else previous
                result = ld.LoadResult(
                    ref,
                    "historical",
                    rows,
                    watermark,
                    previous,
                    names,
                    records_rejected=rejected_count,
                    table_rows=rows,
                )
                log_row = ld.log_frame(source.name, obj.name, result, run_id, fp)
                ld._keep_books(wh, books, [*unit, (log_ref, log_row)], supersede, defer=True)
        finally:
            # The files' rows are dropped now (as large as the table, and the step's incremental load
            # comes next); a CSV's reject tables (its refused lines only) die with the session.
            drop_temps(wh, parts)
            wh.drop_with_session([t for t in temps if t not in parts])
    return result
