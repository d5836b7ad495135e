"""Ingestion: one multi-asset per source object, writing the incremental and historical tables
and evaluating their checks (checks/ingestion.py) in the same step, after the loads."""

from pathlib import Path

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from cdp_assets.assets.keys import ingestion_refs, table_key
from cdp_assets.assets.metadata import (
    column_schema,
    engine_jobs_metadata,
    source_kinds,
    table_name_metadata,
)
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.config.models import (
    DLT_CONNECTORS,
    LoadedConfig,
    LocalFilesConnector,
    S3Connector,
    SourceConfig,
    SourceObject,
    TableConnector,
)
from cdp_assets.checks import check_results, check_specs
from cdp_assets.checks.ingestion import (
    StepStart,
    measures_after_step,
    object_measures,
    raw_table_checks,
    raw_table_results,
    step_start,
)
from cdp_assets.connectors.loading import (
    FILES_TABLE,
    LOG_TABLE,
    StepBooks,
    load_historical,
    load_incremental,
    reads_by_cursor,
    reads_natively,
    record_failure,
    rejected_ref,
)
from cdp_assets.connectors.readers import SourceFileError
from cdp_assets.connectors.s3 import s3_client, s3_uri, sync_source
from cdp_assets.connectors.s3_in_warehouse import load_in_warehouse, reads_in_warehouse
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef

GROUP = "ingestion"


def ingestion_reads(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject) -> list[TableRef]:
    """What an ingestion step's loads describe before they load: the object's raw tables, their
    rejected rows, the log and the file records."""
    schema = loaded.pipeline.src_schema
    raw = list(ingestion_refs(loaded, source, obj).values())
    books = [TableRef(schema, LOG_TABLE), TableRef(schema, FILES_TABLE)]
    return [*raw, *dict.fromkeys(rejected_ref(ref) for ref in raw), *books]


def build_ingestion_asset(loaded: LoadedConfig, source: SourceConfig, obj: SourceObject):
    refs = ingestion_refs(loaded, source, obj)
    every_step_reads = [ref for s, o in loaded.pipeline.source_objects() for ref in ingestion_reads(loaded, s, o)]
    pipeline = loaded.pipeline
    written_schemas = [pipeline.src_schema, pipeline.stg_schema]
    written_schemas += [loaded.unification.schema] if loaded.unification is not None else []
    checks = {ref: raw_table_checks(rejected_ref(ref), loaded.pipeline.checks) for ref in refs.values()}
    specs = [
        AssetSpec(
            key=table_key(ref),
            group_name=GROUP,
            kinds=source_kinds(loaded, source),
            description=f"{mode.capitalize()} load of {source.name}/{obj.name} ({source.connector.kind}).",
            metadata={"source": source.name, "object": obj.name, "mode": mode, **table_name_metadata(ref)},
        )
        for mode, ref in refs.items()
    ]

    @multi_asset(
        name=f"ingest_{source.name}_{obj.name}",
        specs=specs,
        check_specs=[spec for ref, c in checks.items() for spec in check_specs(table_key(ref), c)],
        can_subset=False,
        pool=WAREHOUSE_POOL,
    )
    def _ingest(context: AssetExecutionContext, warehouse: WarehouseResource):
        # An engine that reads cloud storage itself reads S3 objects in place: nothing is fetched.
        in_warehouse = reads_in_warehouse(warehouse, source)
        folder = None if in_warehouse else source_folder(loaded, source)
        schema = loaded.pipeline.src_schema
        run_id = context.run.run_id
        done: list = []  # (ref, result) of the loads that succeeded
        with warehouse.session():
            # The first ingestion step describes every step's tables in one look-up (an engine
            # holding the run keeps them until it writes them; each step writes only its own, and
            # its appends to the log and file records keep their columns).
            if folder is not None:
                warehouse.describe_ahead(ingestion_reads(loaded, source, obj), every_step_reads)
            # And which of the schemas the run writes exist, with their leftovers (one look-up).
            warehouse.know_schemas(written_schemas)
            # What the checks need of earlier runs (the log's loads, outstanding rejections) and the
            # file records' versions, read before the loads in one query (none for an object
            # without bookkeeping yet), where describing the bookkeeping tables first costs no
            # statement (kept for the run, or an API call); loads read in the warehouse keep
            # their own books, and are measured after them instead, as on other engines.
            cheap = warehouse.holds_run or warehouse.describes_without_a_statement
            # Where the loads parse files in Python (not read natively, not from a table by a
            # cursor) the start also reads what they read before loading (``for_loads``).
            python_loads = not reads_natively(warehouse, source, folder) and not reads_by_cursor(source)
            start = _step_start(warehouse, loaded, source, obj, python_loads) if cheap and not in_warehouse else None
            # The loads' bookkeeping is written once, with the last load's data (loading.StepBooks).
            books = (
                StepBooks()
                if start is None
                else StepBooks(start.records, fingerprint=start.fingerprint, newest=start.newest)
            )
            for mode, ref in refs.items():
                loader = load_historical if mode == "historical" else load_incremental
                try:
                    if in_warehouse:
                        result = load_in_warehouse(warehouse, source, obj, mode, schema, run_id)
                    else:
                        result = loader(warehouse, source, obj, folder, schema, run_id, books)
                except Exception as exc:
                    s3 = isinstance(source.connector, S3Connector) and folder is not None
                    if isinstance(exc, SourceFileError) and s3:
                        exc = SourceFileError(s3_uri(source.connector, folder, str(exc)))  # the object, not the cache
                    try:  # the loads before this one succeeded: logged and reported as they were
                        books.flush(warehouse)
                        yield from _materializations(
                            context, warehouse, loaded, source, obj, done, checks, start, books
                        )
                    except Exception as earlier:  # noqa: BLE001 - never hide the load's own error
                        context.log.warning(f"could not record the step's earlier loads: {earlier}")
                    record_failure(warehouse, schema, source.name, obj.name, mode, run_id, exc)
                    if isinstance(exc, SourceFileError):
                        raise exc from None
                    raise
                done.append((ref, result))
            books.flush(warehouse)
            yield from _materializations(context, warehouse, loaded, source, obj, done, checks, start, books)

    return _ingest


def _step_start(
    warehouse: WarehouseResource,
    loaded: LoadedConfig,
    source: SourceConfig,
    obj: SourceObject,
    python_loads: bool = False,
):
    """``python_loads``: also each existing raw table's newest incremental field and the last
    historical load's fingerprint, which the loads would each query (``StepStart``)."""
    schema = loaded.pipeline.src_schema
    refs = ingestion_refs(loaded, source, obj)
    log, files = TableRef(schema, LOG_TABLE), TableRef(schema, FILES_TABLE)
    rejected = rejected_ref(next(iter(refs.values())))
    raw = list(refs.values()) if python_loads else []
    have = warehouse.describe_tables([log, rejected, files, *raw])
    for_loads = [(ref, source.incremental_field) for ref in raw if have[ref] is not None] if python_loads else None
    return step_start(warehouse, list(refs), have, log, rejected, files, source.name, obj.name, for_loads)


def _materializations(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    loaded: LoadedConfig,
    source: SourceConfig,
    obj: SourceObject,
    done: list,
    checks: dict,
    start: StepStart | None = None,
    books: StepBooks | None = None,
):
    """The loads' materializations with their tables' checks: the tables described in one
    look-up after every load; what the loads cannot know (the log's history, outstanding
    rejections: checks/ingestion.py) from what the step read at its start and what its loads
    wrote, or, without a start, from one query of the log and the rejected rows."""
    if not done:
        return
    schema = loaded.pipeline.src_schema
    log, rejected = TableRef(schema, LOG_TABLE), rejected_ref(done[0][0])
    # Each load logs one row in the step's units: the books hold every load's, or the start is
    # not enough (then queried, as loads that keep their own books are).
    logged = 0 if books is None else sum(len(df) for ref, df in books.written if ref == log)
    derived = start is not None and books is not None and logged == len(done)
    # The step's bookkeeping tables in the same look-up: the log and the rejected rows when the
    # checks query them, and all three on an engine that keeps them for the next steps (the units
    # may have created them).
    if warehouse.holds_run:
        books_tables = [log, rejected, TableRef(schema, FILES_TABLE)]
    else:
        books_tables = [] if derived else [log, rejected]
    have = warehouse.describe_tables([*(ref for ref, _ in done), *books_tables])
    rows = {}
    for ref, result in done:
        rows[ref] = result.table_rows  # known from the load (its build's count, or rows before + appended)
        if rows[ref] is None:
            rows[ref] = warehouse.row_count(ref) if have[ref] is not None else 0
    modes = {ref: mode for mode, ref in ingestion_refs(loaded, source, obj).items()}
    tables = {modes[ref]: (ref, rows[ref] if have[ref] is not None else None) for ref, _ in done}
    if derived:
        measured = measures_after_step(start, tables, rejected, books.written, books.superseded, LOG_TABLE)
    else:
        measured = object_measures(warehouse, tables, have, log, rejected, source.name, obj.name)
    for ref, result in done:
        mode = modes[ref]
        results = raw_table_results(warehouse, measured[mode], mode, loaded.pipeline.checks)
        skipped = result.summary(source.start_date)
        context.log.info(
            f"{ref.display}: loaded {result.records_loaded} row(s) from {len(result.files)} file(s); "
            f"watermark {result.previous_watermark} -> {result.watermark}; table has {rows[ref]} row(s)"
            + (f"; {skipped}" if skipped else "")
        )
        yield MaterializeResult(
            asset_key=table_key(ref),
            metadata={
                "records_loaded": result.records_loaded,
                "dagster/row_count": rows[ref],
                "watermark": result.watermark or "",
                "previous_watermark": result.previous_watermark or "",
                "files": MetadataValue.json(result.files),
                "table": ref.display,
                "records_rejected": result.records_rejected,
                "records_skipped_before_start_date": result.skipped_before_start_date,
                "records_skipped_duplicate": result.skipped_duplicate,
                **engine_jobs_metadata(warehouse),
                **table_name_metadata(ref),
                **column_schema(have[ref]),
            },
            check_results=check_results(table_key(ref), checks[ref], results),
        )


def build_ingestion_assets(loaded: LoadedConfig) -> list:
    return [build_ingestion_asset(loaded, s, o) for s, o in loaded.pipeline.source_objects()]


def source_folder(loaded: LoadedConfig, source: SourceConfig) -> Path | None:
    """The local folder the loaders read: the source's own, or the cache an S3 prefix syncs to;
    None for a warehouse table (the loaders query it)."""
    if isinstance(source.connector, (TableConnector, *DLT_CONNECTORS)):  # queried or extracted, no folder
        return None
    if isinstance(source.connector, S3Connector):
        cache = loaded.duckdb_path.parent / "s3_cache" / source.name
        return sync_source(s3_client(source.connector), source.connector, source, cache)
    if isinstance(source.connector, LocalFilesConnector):
        return loaded.source_paths[source.name]
    raise NotImplementedError(f"source {source.name!r}: connector kind {source.connector.kind!r} is not supported")
