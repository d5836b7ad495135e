"""S3 sources read by the warehouse itself, for engines with the ``reads_cloud_files`` capability
(a Databricks SQL warehouse): ``read_files`` over the object's folder (``sql/cloud_files.py``),
never a download to Python and an upload back.

Python only lists the objects (names, ETags, sizes: which formats are there, and the fingerprint
that tells a changed historical load from an unchanged one). The same contract as the file
loaders (``connectors/loading.py``): incremental loads append the rows newer than the table's
watermark (and not before ``start_date``); historical loads replace ``_hist`` through a build and a
swap, only when the files changed; rows that cannot be loaded go to ``_rejected`` with their file
and reason; one ``ingestion_log`` row per load. What differs: the warehouse does not report a row's
number in its file (``row`` is NULL in ``_rejected``), and the watermark column comes last.

Not run in this repository's tests: local Spark has no ``read_files`` and no S3 access (no
hadoop-aws); the statements are checked by rendering (cdp_assets_tests/engines/test_cloud_files.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from cdp_assets.config.models import S3Connector, SourceConfig, SourceObject
from cdp_assets.connectors.loading import (
    LOG_TABLE,
    LoadResult,
    current_watermark,
    last_fingerprint,
    log_frame,
    naive_utc,
    rejected_frame,
    rejected_ref,
)
from cdp_assets.connectors.readers import FORMATS, SourceFileError
from cdp_assets.connectors.s3 import S3File, object_files_s3, s3_client
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.cloud_files import (
    create_empty_from_files_sql,
    create_from_files_sql,
    insert_file_rows_sql,
    record_rejections_sql,
    s3_folder_uri,
)
from cdp_assets.sql.dialects import TableRef


def reads_in_warehouse(warehouse: WarehouseResource, source: SourceConfig) -> bool:
    """Whether this source's files are read by the warehouse (an S3 source on an engine that
    reads cloud storage) rather than fetched and loaded from Python."""
    return isinstance(source.connector, S3Connector) and warehouse.reads_cloud_files


def _formats(files: list[S3File]) -> list[str]:
    return sorted({FORMATS[PurePosixPath(f.key).suffix.lower()] for f in files})


def _fingerprint(files: list[S3File]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.key}|{f.etag}|{f.size}|{f.last_modified}\n".encode())
    return h.hexdigest()[:16]


def _record_rejections(
    wh: WarehouseResource, ref: TableRef, uri: str, fmt: str, field: str, mode: str, run_id: str
) -> int:
    """Insert the rows not recorded yet (by file, reason and text); returns how many."""
    target = rejected_ref(ref)
    wh.append_frames([(target, rejected_frame(Path("-"), mode, [], run_id))])  # the table, with its columns
    name = wh.dialect.table_name(target)
    before = wh.row_count(target)
    wh.query(record_rejections_sql(name, uri, fmt, field), [mode, run_id])
    return wh.row_count(target) - before


def load_incremental_in_warehouse(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, schema: str, run_id: str
) -> LoadResult:
    connector = source.connector
    assert isinstance(connector, S3Connector)
    ref = TableRef(schema, f"{source.name}_{obj.name}")
    field = source.incremental_field
    files = object_files_s3(s3_client(connector), connector, obj.name, historical=False)
    uri = s3_folder_uri(connector.bucket, connector.prefix, obj.name, historical=False)
    watermark = current_watermark(wh, ref, field)
    before = wh.row_count(ref) if wh.table_exists(ref) else 0
    rejected = 0
    name = wh.dialect.table_name(ref)
    for fmt in _formats(files):
        if not wh.table_exists(ref):
            # Parameter markers are not allowed in DDL: the table is created empty, then filled.
            wh.execute(create_empty_from_files_sql(name, uri, fmt, field))
        params = ([watermark] if watermark else []) + (
            [naive_utc(source.start_date).isoformat(sep=" ")] if source.start_date else []
        )
        insert = insert_file_rows_sql(name, uri, fmt, field, watermark is not None, source.start_date is not None)
        wh.query(insert, params or None)
        rejected += _record_rejections(wh, ref, uri, fmt, field, "incremental", run_id)
    loaded = (wh.row_count(ref) if wh.table_exists(ref) else 0) - before
    result = LoadResult(
        ref,
        "incremental",
        loaded,
        current_watermark(wh, ref, field),
        watermark,
        [PurePosixPath(f.key).name for f in files],
        records_rejected=rejected,
    )
    wh.append_dataframe(TableRef(schema, LOG_TABLE), log_frame(source.name, obj.name, result, run_id, None))
    return result


def load_historical_in_warehouse(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, schema: str, run_id: str
) -> LoadResult:
    connector = source.connector
    assert isinstance(connector, S3Connector)
    ref = TableRef(schema, f"{source.name}_{obj.name}_hist")
    log_ref = TableRef(schema, LOG_TABLE)
    field = source.incremental_field
    files = object_files_s3(s3_client(connector), connector, obj.name, historical=True)
    uri = s3_folder_uri(connector.bucket, connector.prefix, obj.name, historical=True)
    fp = _fingerprint(files)
    previous = current_watermark(wh, ref, field)
    names = [PurePosixPath(f.key).name for f in files]
    if not files or (wh.table_exists(ref) and last_fingerprint(wh, log_ref, source.name, obj.name) == fp):
        why = "no historical files" if not files else "historical files unchanged"
        result = LoadResult(ref, "historical", 0, previous, previous, [])
        wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp, why))
        return result
    formats = _formats(files)
    if len(formats) > 1:
        raise SourceFileError(
            f"{uri}: historical files in {len(formats)} formats ({', '.join(formats)}); the warehouse reads one format "
            "per table: keep one format in the folder or set the connector's format"
        )
    # Built under a temporary name, then published (Delta: one CREATE OR REPLACE; elsewhere
    # swapped in): a failure leaves the previous table.
    with wh.session():
        wh.ensure_schema(ref.schema)
        staging = wh.staging_ref(ref)
        try:
            wh.execute(create_from_files_sql(wh.dialect.table_name(staging), uri, formats[0], field))
            wh.publish_staged(staging, ref)
        except BaseException:
            wh._drop_quietly(staging)
            raise
        rows = wh.row_count(ref)
        rejected = _record_rejections(wh, ref, uri, formats[0], field, "historical", run_id)
    result = LoadResult(
        ref, "historical", rows, current_watermark(wh, ref, field), previous, names, records_rejected=rejected
    )
    wh.append_dataframe(log_ref, log_frame(source.name, obj.name, result, run_id, fp))
    return result


def load_in_warehouse(
    wh: WarehouseResource, source: SourceConfig, obj: SourceObject, mode: str, schema: str, run_id: str
) -> LoadResult:
    """The ``mode`` (incremental | historical) load of one object."""
    loader = load_historical_in_warehouse if mode == "historical" else load_incremental_in_warehouse
    return loader(wh, source, obj, schema, run_id)
