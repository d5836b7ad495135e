"""Finding the objects of a source and reading a sample of each, for ``cdp-assets init``.

A source is a local folder, an S3 prefix or a warehouse schema (or one table). Folders and
prefixes are read in the layout the ``local_files`` and ``s3`` connectors load: one subfolder
per object, files directly in it are incremental loads, files in ``historical/`` the
historical load. A folder may also hold several such source folders (one level up). Every
sample is read with the loaders' own readers, so init sees the columns a run will load.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cdp_assets.config.identifiers import LOWER_IDENTIFIER_PATTERN
from cdp_assets.connectors.readers import FORMATS, ROW_COLUMN, SourceFileError, normalize_column, read_source_file

SAMPLE_ROWS = 50_000  # rows read per object at most (files in name order, newest last)
FILE_COLUMN = "_cdp_init_file"  # which file a sampled row came from (primary keys are unique per file)


class InitSourceError(ValueError):
    """A --source that cannot be inspected; the message names it and the fix."""


@dataclass
class ObjectSample:
    source: str  # the drafted source name
    name: str  # the object name (its folder or table name)
    location: str  # where it was read, for the report
    format: str  # csv | parquet | jsonl | table | mixed
    connector: dict  # the drafted connector mapping
    frame: pd.DataFrame  # sampled rows, every column as text, plus FILE_COLUMN
    incremental_files: int = 0
    historical_files: int = 0
    complex_columns: dict[str, str] = field(default_factory=dict)  # column -> its nested type
    problem: str | None = None  # why the object cannot be used (reported, left out)

    @property
    def table(self) -> str:
        return f"{self.source}_{self.name}"

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != FILE_COLUMN]


def _data_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")
    )


def _is_object_folder(folder: Path) -> bool:
    return bool(_data_files(folder) or _data_files(folder / "historical"))


def source_name(text: str) -> str:
    """A folder or prefix name as a source name (lowercase identifier)."""
    name = normalize_column(text).lstrip("_")
    if not name or not name[0].isalpha():
        name = f"src_{name}".rstrip("_")
    return name[:63]


def flat_object_name(path: Path) -> tuple[str, bool]:
    """A loose file's object and whether it is a historical load: ``customers_2024-06-01.csv``
    -> (customers, False), ``orders_hist.parquet`` -> (orders, True)."""
    stem = normalize_column(path.stem)
    historical = re.search(r"(^|_)hist(orical|ory)?($|_)", stem) is not None
    stem = re.sub(r"(^|_)hist(orical|ory)?($|_)", "_", stem)
    stem = re.sub(r"(_?\d+)+$", "", stem.strip("_")).strip("_")  # dates, numbers, part counters
    return (stem.lstrip("_") or "data"), historical


def _link_flat_layout(path: Path, files: list[Path], layout_dir: Path) -> Path:
    """Loose files of several objects, linked into the layout the local_files connector reads:
    ``layout_dir/<source>/<object>/`` (and ``historical/``). The data is not copied."""
    source_dir = layout_dir / source_name(path.name)
    for f in files:
        obj, historical = flat_object_name(f)
        target = source_dir / obj / ("historical" if historical else "") / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(f)
    return source_dir


def inspect_local(path: Path, layout_dir: Path | None = None) -> list[ObjectSample]:
    """The objects under a local folder: a source folder (object subfolders), a folder of source
    folders, or one object folder. Loose files of several objects (customers.csv, orders.csv)
    are linked into the connector's layout under ``layout_dir``."""
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise InitSourceError(
            f"--source {path}: no such folder; give a folder of object subfolders, an s3:// URI or table:schema[.table]"
        )
    loose = _data_files(path)
    if loose and layout_dir is not None and len({flat_object_name(f)[0] for f in loose}) > 1:
        source_dir = _link_flat_layout(path, loose, layout_dir)
        return [
            _sample_folder_object(source_dir, obj.name, connector_path=str(source_dir), location=f"{path}/{obj.name}*")
            for obj in sorted(p for p in source_dir.iterdir() if p.is_dir())
        ]
    children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "historical")
    objects = [c for c in children if _is_object_folder(c)]
    if objects:
        return [_sample_folder_object(path, c.name, connector_path=str(path)) for c in objects]
    out: list[ObjectSample] = []
    for child in children:
        out.extend(
            _sample_folder_object(child, c.name, connector_path=str(child))
            for c in sorted(child.iterdir())
            if c.is_dir() and _is_object_folder(c)
        )
    if not out and _is_object_folder(path):
        return [_sample_folder_object(path.parent, path.name, connector_path=str(path.parent))]
    if not out:
        raise InitSourceError(
            f"--source {path}: no data files found (.csv, .parquet, .jsonl) in the layout init reads: "
            "<source>/<object>/ for incremental files and <source>/<object>/historical/ for the historical load"
        )
    return out


def _sample_folder_object(
    source_dir: Path, obj: str, connector_path: str, connector: dict | None = None, location: str | None = None
) -> ObjectSample:
    folder = source_dir / obj
    incremental, historical = _data_files(folder), _data_files(folder / "historical")
    formats = sorted({FORMATS[p.suffix.lower()] for p in incremental + historical})
    fmt = formats[0] if len(formats) == 1 else "mixed"
    sample = ObjectSample(
        source=source_name(source_dir.name),
        name=obj,
        location=location or str(folder),
        format=fmt,
        connector=connector
        or {"kind": "local_files", "path": connector_path, **({"format": fmt} if fmt != "mixed" else {})},
        frame=pd.DataFrame(),
        incremental_files=len(incremental),
        historical_files=len(historical),
    )
    if not LOWER_IDENTIFIER_PATTERN.match(obj):
        sample.problem = (
            f"folder name {obj!r} is not a usable object name; rename "
            "the folder to lowercase letters, digits and underscores"
        )
        return sample
    frames, rows = [], 0
    # Historical first, then incremental files newest last: the sample covers both layouts.
    for n, p in enumerate(historical + incremental):
        if rows >= SAMPLE_ROWS:
            break
        try:
            read = read_source_file(_head(p))
        except SourceFileError as exc:
            sample.problem = f"cannot be read: {exc}"
            return sample
        frame = read.frame.drop(columns=[ROW_COLUMN], errors="ignore").head(SAMPLE_ROWS - rows)
        frame[FILE_COLUMN] = n
        frames.append(frame)
        rows += len(frame)
        if FORMATS[p.suffix.lower()] == "parquet":
            sample.complex_columns.update(_parquet_nested(p))
    sample.frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if sample.frame.empty:
        sample.problem = "its files hold no rows"
    return sample


HEAD_BYTES = 64 * 2**20  # of a large text file, init reads this much (whole lines)


def _head(path: Path) -> Path:
    """A large file's first rows in a temporary file of the same format (init samples, it does
    not load): whole lines of CSV and JSON lines, the first row batch of Parquet."""
    if path.stat().st_size <= HEAD_BYTES:
        return path
    tmp = Path(tempfile.mkdtemp(prefix="cdp_init_head_")) / path.name
    if FORMATS[path.suffix.lower()] == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=SAMPLE_ROWS), None)
        if batch is None:
            return path
        pq.write_table(pa.Table.from_batches([batch]), tmp)
        return tmp
    with path.open("rb") as fh:
        data = fh.read(HEAD_BYTES)
    tmp.write_bytes(data[: data.rfind(b"\n") + 1])
    return tmp


def _parquet_nested(path: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return {
        normalize_column(f.name): str(f.type) for f in schema if pa.types.is_nested(f.type) or pa.types.is_map(f.type)
    }


def inspect_s3(uri: str, endpoint_url: str | None = None) -> list[ObjectSample]:
    """Objects under ``s3://bucket/prefix/``: the sample files are downloaded to a temporary
    folder in the same layout and read as a local source."""
    from cdp_assets.config.models import S3Connector
    from cdp_assets.connectors.s3 import s3_client

    m = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not m:
        raise InitSourceError(f"--source {uri}: not an S3 URI; write s3://bucket/prefix")
    bucket, prefix = m.group(1), m.group(2).strip("/")
    connector = S3Connector(kind="s3", bucket=bucket, prefix=prefix, endpoint_url=endpoint_url)
    client = s3_client(connector)
    base = f"{prefix}/" if prefix else ""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    layout: dict[str, list[str]] = {}
    for key in keys:
        parts = key[len(base) :].split("/")
        ok = (len(parts) == 2 or (len(parts) == 3 and parts[1] == "historical")) and Path(
            parts[-1]
        ).suffix.lower() in FORMATS
        if ok and not parts[-1].startswith("."):
            layout.setdefault(parts[0], []).append(key)
    if not layout:
        raise InitSourceError(
            f"--source {uri}: no data files under {base or 'the bucket root'}<object>/ or <object>/historical/"
        )
    name = source_name(prefix.rsplit("/", 1)[-1] if prefix else bucket)
    cache = Path(tempfile.mkdtemp(prefix="cdp_init_s3_")) / name
    out = []
    for obj, obj_keys in sorted(layout.items()):
        for key in obj_keys:
            local = cache / key[len(base) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(local))
        drafted = {
            "kind": "s3",
            "bucket": bucket,
            "prefix": prefix,
            **({"endpoint_url": endpoint_url} if endpoint_url else {}),
        }
        sample = _sample_folder_object(cache, obj, "", connector=drafted, location=f"s3://{bucket}/{base}{obj}/")
        if sample.format != "mixed":
            drafted["format"] = sample.format
        out.append(sample)
    return out


def inspect_tables(warehouse, spec: str) -> list[ObjectSample]:
    """``schema`` (every table of it) or ``schema.table`` on the configured engine."""
    from cdp_assets.sql.dialects import TableRef
    from cdp_assets.sql.profile import sample_rows_sql

    schema, _, table = spec.partition(".")
    try:
        names = [table] if table else warehouse.list_tables(schema)
        refs = [TableRef(schema, n) for n in names]
    except ValueError as exc:
        raise InitSourceError(f"--source table:{spec}: {exc}") from None
    if not refs:
        raise InitSourceError(f"--source table:{spec}: schema {schema!r} has no tables on the engine")
    out = []
    for ref in refs:
        sample = ObjectSample(
            source=source_name(schema),
            name=ref.name,
            location=ref.display,
            format="table",
            connector={"kind": "table", "database": schema},
            frame=pd.DataFrame(),
            incremental_files=1,
        )
        if not warehouse.table_exists(ref):
            sample.problem = "the table does not exist on the engine"
        elif not LOWER_IDENTIFIER_PATTERN.match(ref.name):
            sample.problem = (
                f"table name {ref.name!r} is not a usable object name (lowercase letters, digits, underscores)"
            )
        else:
            frame = warehouse.fetch(sample_rows_sql(ref, SAMPLE_ROWS))
            frame.columns = [normalize_column(c) for c in frame.columns]
            nested = {
                c: "list or struct"
                for c in frame.columns
                if frame[c].map(lambda v: isinstance(v, (list, dict, tuple, np.ndarray))).any()
            }
            sample.complex_columns.update(nested)
            sample.frame = frame.astype("string")
            sample.frame[FILE_COLUMN] = 0
            if sample.frame.empty:
                sample.problem = "the table holds no rows"
        out.append(sample)
    return out


def inspect_sql_database(spec: str) -> list[ObjectSample]:
    """``sql_database:ENV_VAR[/schema]``: every table of a database whose SQLAlchemy URL is in
    the environment variable ENV_VAR (never on the command line: it holds the password), read
    through dlt as a run would read it."""
    from dlt.sources.sql_database import sql_database

    from cdp_assets.config.models import _check_env_var_name
    from cdp_assets.connectors.dlt_sources import _root_message, _scrub, records_frame

    env, _, schema = spec.partition("/")
    try:
        _check_env_var_name(env)
    except ValueError as exc:
        raise InitSourceError(f"--source sql_database:{env}: {exc}") from None
    url = os.environ.get(env)
    if not url:
        raise InitSourceError(
            f"--source sql_database:{spec}: set the environment variable {env} to the database's SQLAlchemy URL"
        )
    drafted = {"kind": "sql_database", "credentials_env": env, **({"schema": schema} if schema else {})}
    try:
        resources = sql_database(credentials=url, schema=schema or None, chunk_size=SAMPLE_ROWS).resources
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds
        raise InitSourceError(
            f"--source sql_database:{spec}: cannot be read: {_scrub(_root_message(exc), [url])}"
        ) from None
    out = []
    for name, resource in sorted(resources.items()):
        sample = ObjectSample(
            source=source_name(schema or env.lower()),
            name=name,
            location=f"sql_database:{schema + '.' if schema else ''}{name}",
            format="table",
            connector=drafted,
            frame=pd.DataFrame(),
            incremental_files=1,
        )
        if not LOWER_IDENTIFIER_PATTERN.match(name):
            sample.problem = f"table name {name!r} is not a usable object name (lowercase letters, digits, underscores)"
        else:
            frame = records_frame(list(resource.add_limit(1)), sample.location).frame.drop(columns=[ROW_COLUMN])
            frame[FILE_COLUMN] = 0
            sample.frame = frame
            if frame.empty:
                sample.problem = "the table holds no rows"
        out.append(sample)
    return out


def inspect_declared(path: Path) -> list[ObjectSample]:
    """``sources:FILE``: the database and REST API sources declared in a YAML file (a list under
    ``sources:``, as in cdp.yml). An API has no schema to list, so its endpoints, paginator and
    auth are written by hand; init samples each object's first pages through dlt and drafts
    the rest. The connector is copied into the draft as written."""
    import yaml
    from pydantic import ValidationError

    from cdp_assets.config.loader import format_validation_error
    from cdp_assets.config.models import DLT_CONNECTORS, SourceConfig
    from cdp_assets.connectors.dlt_sources import rest_api_rows, sql_database_rows

    path = path.expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InitSourceError(f"--source sources:{path}: cannot be read as YAML ({exc})") from None
    entries = raw.get("sources") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InitSourceError(
            f"--source sources:{path}: expected a list under 'sources:' (the sources part of a cdp.yml)"
        )
    out = []
    for i, entry in enumerate(entries):
        try:
            source = SourceConfig.model_validate(entry)
        except ValidationError as exc:
            raise InitSourceError(
                format_validation_error(exc, path).replace("\n  - ", f"\n  - sources[{i}].")
            ) from None
        if not isinstance(source.connector, DLT_CONNECTORS):
            raise InitSourceError(
                f"{path}: sources[{i}]: kind {source.connector.kind!r}: "
                "give folders, s3:// or table: sources directly to --source"
            )
        drafted = entry["connector"]
        for obj in source.objects:
            sample = ObjectSample(
                source=source.name,
                name=obj.name,
                location=f"{source.connector.kind}:{source.name}/{obj.name}",
                format=source.connector.kind,
                connector=drafted,
                frame=pd.DataFrame(),
                incremental_files=1,
            )
            try:
                read = (
                    rest_api_rows(source, obj, None, max_pages=5)
                    if source.connector.kind == "rest_api"
                    else sql_database_rows(source, obj, None, limit=1)
                )
            except SourceFileError as exc:
                sample.problem = f"cannot be read: {exc}"
                out.append(sample)
                continue
            frame = read.frame.drop(columns=[ROW_COLUMN])
            frame[FILE_COLUMN] = 0
            sample.frame = frame
            if frame.empty:
                sample.problem = "no records to sample"
            out.append(sample)
    return out
