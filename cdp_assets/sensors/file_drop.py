"""A file-drop sensor per local source folder, an S3-prefix sensor per S3 source.

The cursor is the set of files already seen (path -> modification time and size), not a
high-water mark: a file that arrives late with an older modification time is still new, and
the cursor never moves backwards. Each request's run key names the files it covers, so a file
is never processed twice.
"""

import hashlib
import json
from pathlib import Path

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from cdp_assets.assets.ingestion import ingestion_refs
from cdp_assets.assets.keys import table_key
from cdp_assets.config.models import LoadedConfig, LocalFilesConnector, S3Connector, SourceConfig
from cdp_assets.connectors.local_files import object_files
from cdp_assets.connectors.s3 import s3_client, source_state


def folder_state(folder: Path, source: SourceConfig) -> dict[str, dict[str, list[int]]]:
    """object -> {relative path: [mtime_ns, size]} for every data file of the source."""
    fmt = source.connector.format if isinstance(source.connector, LocalFilesConnector) else "auto"
    state: dict[str, dict[str, list[int]]] = {}
    for obj in source.objects:
        files: dict[str, list[int]] = {}
        for historical in (False, True):
            if (historical and not source.loads_historical) or (not historical and not source.loads_incremental):
                continue
            for path in object_files(folder, obj.name, historical=historical, fmt=fmt):
                st = path.stat()
                files[str(path.relative_to(folder))] = [st.st_mtime_ns, st.st_size]
        state[obj.name] = files
    return state


def build_drop_sensor(name: str, description: str, loaded: LoadedConfig, source: SourceConfig, state, where: str):
    """A sensor that requests an object's ingestion when its files change. ``state()`` returns
    object -> {file id: version}; the cursor is the merged state seen so far."""
    keys_by_object = {
        obj.name: [table_key(r) for r in ingestion_refs(loaded, source, obj).values()] for obj in source.objects
    }
    settings = loaded.pipeline.sensors

    @sensor(
        name=name,
        description=description,
        minimum_interval_seconds=settings.minimum_interval_seconds,
        asset_selection=[k for keys in keys_by_object.values() for k in keys],
        default_status=DefaultSensorStatus(loaded.pipeline.sensors.default_status.upper()),
    )
    def _drop(context: SensorEvaluationContext):
        seen: dict[str, dict[str, list]] = json.loads(context.cursor) if context.cursor else {}
        now = state()
        requests = []
        for obj, files in now.items():
            new = {p: v for p, v in files.items() if seen.get(obj, {}).get(p) != v}
            if not new:
                continue
            digest = hashlib.sha256(json.dumps(sorted(new.items())).encode()).hexdigest()[:16]
            requests.append(
                RunRequest(
                    run_key=f"{source.name}/{obj}/{digest}",
                    asset_selection=keys_by_object[obj],
                    tags={"cdp/source": source.name, "cdp/object": obj, "cdp/new_files": str(len(new))},
                )
            )
            context.log.info(f"{source.name}/{obj}: {len(new)} new or changed file(s): {sorted(new)[:5]}")
        # Merge, never drop: a file that disappears and comes back unchanged is not new again.
        merged = {obj: {**seen.get(obj, {}), **files} for obj, files in now.items()}
        if not requests:
            return SensorResult(
                skip_reason=SkipReason(f"no new files under {where}"), cursor=json.dumps(merged, sort_keys=True)
            )
        return SensorResult(run_requests=requests, cursor=json.dumps(merged, sort_keys=True))

    return _drop


def build_file_drop_sensor(loaded: LoadedConfig, source: SourceConfig):
    folder = loaded.source_paths[source.name]
    return build_drop_sensor(
        f"{source.name}_file_drop",
        f"Starts ingestion of {source.name} when files are added to or changed in {folder}.",
        loaded,
        source,
        lambda: folder_state(folder, source),
        str(folder),
    )


def build_s3_prefix_sensor(loaded: LoadedConfig, source: SourceConfig):
    conn = source.connector
    assert isinstance(conn, S3Connector)
    where = f"s3://{conn.bucket}/{conn.prefix}"
    return build_drop_sensor(
        f"{source.name}_s3_prefix",
        f"Starts ingestion of {source.name} when objects are added "
        f"to or changed under {where} (by ETag and last-modified).",
        loaded,
        source,
        lambda: source_state(s3_client(conn), conn, source),
        where,
    )


def build_file_drop_sensors(loaded: LoadedConfig) -> list:
    if not loaded.pipeline.sensors.file_drop:
        return []
    local = [build_file_drop_sensor(loaded, s) for s in loaded.pipeline.sources if s.name in loaded.source_paths]
    remote = [
        build_s3_prefix_sensor(loaded, s) for s in loaded.pipeline.sources if isinstance(s.connector, S3Connector)
    ]
    return local + remote
