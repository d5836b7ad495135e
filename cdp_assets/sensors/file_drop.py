"""A file-drop sensor per local source folder.

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
from cdp_assets.config.models import LoadedConfig, LocalFilesConnector, SourceConfig
from cdp_assets.connectors.local_files import object_files


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


def build_file_drop_sensor(loaded: LoadedConfig, source: SourceConfig):
    folder = loaded.source_paths[source.name]
    keys_by_object = {obj.name: [table_key(r) for r in ingestion_refs(loaded, source, obj).values()] for obj in source.objects}
    settings = loaded.pipeline.sensors

    @sensor(
        name=f"{source.name}_file_drop",
        description=f"Starts ingestion of {source.name} when files are added to or changed in {folder}.",
        minimum_interval_seconds=settings.minimum_interval_seconds,
        asset_selection=[k for keys in keys_by_object.values() for k in keys],
        default_status=DefaultSensorStatus.RUNNING,
    )
    def _file_drop(context: SensorEvaluationContext):
        seen: dict[str, dict[str, list[int]]] = json.loads(context.cursor) if context.cursor else {}
        now = folder_state(folder, source)
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
            return SensorResult(skip_reason=SkipReason(f"no new files under {folder}"), cursor=json.dumps(merged, sort_keys=True))
        return SensorResult(run_requests=requests, cursor=json.dumps(merged, sort_keys=True))

    return _file_drop


def build_file_drop_sensors(loaded: LoadedConfig) -> list:
    if not loaded.pipeline.sensors.file_drop:
        return []
    return [build_file_drop_sensor(loaded, s) for s in loaded.pipeline.sources if s.name in loaded.source_paths]
