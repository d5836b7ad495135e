"""S3 sources: objects under ``s3://bucket/prefix/{object}/`` are incremental loads, objects under
``{object}/historical/`` the historical load (the layout of local folders). CSV, Parquet and
JSON lines, chosen by extension.

Objects are fetched through dagster-aws's ``S3Resource`` (DuckDB cannot read S3 here: no httpfs)
into a local cache laid out like a local source folder, then loaded by the same loaders. An
object is downloaded again only when its ETag or last-modified time changes, and its cached
file keeps the object's last-modified time, so the historical fingerprint sees a re-upload.
What is loaded is decided as for local files, by the SHA-256 of the content
(``ingestion_files``): the ETag only saves downloads. An object uploaded again unchanged is
downloaded (its last-modified moved) but not loaded again; a changed one loads its new rows.
Credentials come from the standard AWS environment variables, never from the config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dagster_aws.s3 import S3Resource

from cdp_assets.config.models import S3Connector, SourceConfig
from cdp_assets.connectors.readers import FORMATS

MANIFEST = ".cdp_s3_manifest.json"


@dataclass(frozen=True)
class S3File:
    key: str
    etag: str
    last_modified: float  # epoch seconds
    size: int

    @property
    def version(self) -> list:
        return [self.etag, self.last_modified, self.size]


def s3_client(connector: S3Connector):
    return S3Resource(endpoint_url=connector.endpoint_url, region_name=connector.region_name).get_client()


def _base(connector: S3Connector) -> str:
    prefix = connector.prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def object_files_s3(client, connector: S3Connector, obj: str, historical: bool) -> list[S3File]:
    """The data files of an object, sorted by key (deterministic loads)."""
    base = f"{_base(connector)}{obj}/" + ("historical/" if historical else "")
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=connector.bucket, Prefix=base):
        for item in page.get("Contents", []):
            rest = item["Key"][len(base) :]
            if "/" in rest or not rest or rest.startswith("."):
                continue  # deeper folders (historical/ of the incremental listing) and hidden files
            kind = FORMATS.get(Path(rest).suffix.lower())
            if kind is None or (connector.format != "auto" and kind != connector.format):
                continue
            out.append(
                S3File(item["Key"], item["ETag"].strip('"'), item["LastModified"].timestamp(), int(item["Size"]))
            )
    return sorted(out, key=lambda f: f.key)


def source_state(client, connector: S3Connector, source: SourceConfig) -> dict[str, dict[str, list]]:
    """object -> {key: [etag, last_modified, size]}: what the S3-prefix sensor compares."""
    state: dict[str, dict[str, list]] = {}
    for obj in source.objects:
        files: dict[str, list] = {}
        for historical in (False, True):
            if (historical and not source.loads_historical) or (not historical and not source.loads_incremental):
                continue
            files.update({f.key: f.version for f in object_files_s3(client, connector, obj.name, historical)})
        state[obj.name] = files
    return state


def sync_source(client, connector: S3Connector, source: SourceConfig, cache: Path) -> Path:
    """Make ``cache`` mirror the source's objects (downloading only new or changed ones) and
    return it: a folder the local-file loaders read."""
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / MANIFEST
    manifest: dict[str, list] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    wanted: dict[str, S3File] = {}
    for obj in source.objects:
        for historical in (False, True):
            for f in object_files_s3(client, connector, obj.name, historical):
                wanted[f.key[len(_base(connector)) :]] = f
    for rel, f in wanted.items():
        local = cache / rel
        if manifest.get(rel) == f.version and local.exists():
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".part")
        client.download_file(connector.bucket, f.key, str(tmp))
        os.utime(tmp, (f.last_modified, f.last_modified))
        tmp.replace(local)
        manifest[rel] = f.version
    for rel in set(manifest) - set(wanted):  # deleted in S3: gone from the cache too
        (cache / rel).unlink(missing_ok=True)
        del manifest[rel]
    manifest_path.write_text(json.dumps(manifest, sort_keys=True))
    return cache


def s3_uri(connector: S3Connector, cache: Path, text: str) -> str:
    """Error messages name the object, not the cache file."""
    return text.replace(str(cache) + "/", f"s3://{connector.bucket}/{_base(connector)}")
