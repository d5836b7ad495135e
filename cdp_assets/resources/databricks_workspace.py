"""DataFrame loads through a Unity Catalog Volume: the Databricks workspace's Files API, reached
with dagster-databricks' ``DatabricksClientResource`` (its databricks-sdk ``WorkspaceClient``).

With ``engine.databricks.staging_volume`` set, the Databricks engine writes a DataFrame as
Parquet files into a fresh folder of the Volume, appends them with one ``COPY INTO`` statement,
and deletes the folder. One statement per load, however many rows, instead of ``INSERT ... VALUES``
batches whose bound parameters a SQL warehouse caps at 256 per statement.

Limits kept here (Files API 2.0, ``/api/2.0/fs``):
- one upload is at most 5 GiB (the API's documented limit), far above the parts' size (next);
- databricks-sdk sends a stream of 5 MiB or more through its multipart protocol (presigned URLs of
  the workspace's cloud storage, which needs network paths from this process to that storage):
  parts are kept under it, so every part is one ``PUT``, the documented one-shot upload;
- a directory listing returns at most 1,000 entries per page (the SDK follows the page tokens).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableResource, EnvVar
from dagster_databricks import DatabricksClientResource
from dagster_databricks.resources import OauthCredentials
from pydantic import Field, field_validator

from cdp_assets.config.identifiers import check_volume_path
from cdp_assets.config.models import DatabricksSettings
from cdp_assets.engines.base import WarehouseAuthError, WarehouseError
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.volume_load import copy_into_from_volume

SDK_MULTIPART_MIN_BYTES = 5 * 1024**2
STAGING_FOLDER = "cdp_staging"

T = TypeVar("T")


class DatabricksVolumeStager(ConfigurableResource):
    """Stages DataFrames as Parquet files in a Unity Catalog Volume folder and removes them."""

    workspace: DatabricksClientResource
    volume_path: str = Field(description="/Volumes/<catalog>/<schema>/<volume>[/<folder>]")
    # The largest Parquet part uploaded in one request: under the SDK's multipart threshold.
    max_part_bytes: int = Field(default=SDK_MULTIPART_MIN_BYTES - 1, gt=0, lt=SDK_MULTIPART_MIN_BYTES)
    # Names of the variables the credentials came from, for messages that say what to fix.
    host_env: str = "DATABRICKS_HOST"
    token_env: str = "DATABRICKS_TOKEN"

    _volume = field_validator("volume_path")(lambda v: check_volume_path(v, "engine.databricks.staging_volume"))

    def stage_frame(self, df: pd.DataFrame, name: str) -> str:
        """Upload ``df`` as Parquet parts into a new folder of the Volume; returns the folder."""
        folder = f"{self.volume_path}/{STAGING_FOLDER}/{name}_{uuid.uuid4().hex}"
        check_volume_path(folder, "staging folder")
        files = self._files()
        for number, part in enumerate(parquet_parts(df, self.max_part_bytes)):
            path = f"{folder}/part-{number:05d}.parquet"
            self._call(lambda path=path, part=part: files.upload(path, io.BytesIO(part), overwrite=False), path)
        return folder

    def staged_files(self, folder: str) -> list[str]:
        files = self._files()
        entries = self._call(lambda: list(files.list_directory_contents(folder)), folder)
        return sorted(e.path for e in entries if not e.is_directory)

    def remove(self, folder: str) -> None:
        """Delete the folder's files, then the (then empty) folder: the API deletes empty ones only."""
        files = self._files()
        for path in self.staged_files(folder):
            self._call(lambda path=path: files.delete(path), path)
        self._call(lambda: files.delete_directory(folder), folder)

    # ---------------------------------------------------------------- the client

    def _files(self) -> Any:
        return self.workspace.get_client().workspace_client.files

    def _call(self, attempt: Callable[[], T], path: str) -> T:
        from databricks.sdk import errors

        try:
            return attempt()
        except (errors.Unauthenticated, errors.PermissionDenied) as exc:
            raise WarehouseAuthError(
                f"Databricks Files API refused the credentials for {path} ({_first_line(exc)}); check the token in "
                f"${self.token_env} (or the OAuth client), the host in ${self.host_env}, and the principal's "
                "WRITE VOLUME / READ VOLUME privileges on the Volume"
            ) from exc
        except errors.NotFound as exc:
            raise WarehouseError(
                f"Databricks Files API: {path} not found ({_first_line(exc)}); engine.databricks.staging_volume "
                f"must name an existing Volume (CREATE VOLUME {_volume_name(self.volume_path)})"
            ) from exc
        except errors.DatabricksError as exc:
            raise WarehouseError(f"Databricks Files API: {path}: {_first_line(exc)}") from exc


def parquet_parts(df: pd.DataFrame, max_bytes: int) -> Iterator[bytes]:
    """``df`` as Parquet files of at most ``max_bytes`` each, rows in order; halves a part that is
    too large until it fits, and names the row that cannot fit alone."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    pending = [(0, table.num_rows)]
    while pending:
        start, stop = pending.pop(0)
        data = _parquet(table.slice(start, stop - start))
        if len(data) <= max_bytes:
            yield data
            continue
        if stop - start == 1:
            raise WarehouseError(
                f"row {start} alone is {len(data):,} bytes as Parquet, over the {max_bytes:,}-byte part limit of a "
                "Volume upload; shorten its values"
            )
        middle = (start + stop) // 2
        pending[:0] = [(start, middle), (middle, stop)]


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    # Microseconds: the precision of a Databricks TIMESTAMP (nanosecond Parquet timestamps are not read as one).
    pq.write_table(table, buffer, coerce_timestamps="us", allow_truncated_timestamps=True)
    return buffer.getvalue()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _volume_name(volume_path: str) -> str:
    catalog, schema, volume = volume_path.split("/")[2:5]
    return f"`{catalog}`.`{schema}`.`{volume}`"


class DatabricksVolumeWarehouse(DatabricksWarehouse):
    """The Databricks engine, DataFrames loaded through the Volume with ``COPY INTO``."""

    staging: DatabricksVolumeStager

    def _insert(self, ref: TableRef, df: pd.DataFrame) -> None:
        if df.empty:
            return
        folder = self.staging.stage_frame(df, ref.name)
        try:
            self.execute(copy_into_from_volume(self.dialect, ref, folder))
        finally:
            # Loaded or not, the staged copy is not kept: the table, or the failed step, is the record.
            self.staging.remove(folder)


def build_volume_warehouse(db: DatabricksSettings, settings: dict[str, Any]) -> DatabricksVolumeWarehouse:
    """The engine of ``engine.databricks`` with ``staging_volume``: the same SQL-warehouse settings,
    and a workspace client with the same host and credentials (EnvVars, read when a run starts)."""
    credentials: dict[str, Any] = (
        {"token": EnvVar(db.token_env)}
        if db.auth == "pat"
        else {
            "oauth_credentials": OauthCredentials(
                client_id=EnvVar(db.client_id_env), client_secret=EnvVar(db.client_secret_env)
            )
        }
    )
    stager = DatabricksVolumeStager(
        workspace=DatabricksClientResource(host=EnvVar(db.host_env), **credentials),
        volume_path=db.staging_volume,
        host_env=db.host_env,
        token_env=db.token_env if db.auth == "pat" else db.client_secret_env,
    )
    return DatabricksVolumeWarehouse(staging=stager, **settings)
