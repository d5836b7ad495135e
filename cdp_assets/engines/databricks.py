"""Databricks: a SQL warehouse through databricks-sql-connector (PAT or OAuth M2M).

Every statement goes through the connector's DB-API cursor; its query id is kept for the step's
metadata with a link to the query history. Tables are two-level names resolved in the session's
catalog (``USE CATALOG`` once per connection). Delta ``OPTIMIZE`` runs after each published table
and loop iteration when the ``optimize_tables`` capability is on.

With ``local_spark_dir`` set, the same code runs against a local Spark session behind the same
cursor interface (``spark_dbapi``): the Databricks engine run for real in tests and development.
Local tables are parquet, so the factory switches ``optimize_tables`` off and sets
``table_format: parquet``: capabilities, not a test of the engine's name.

DataFrames are written within the warehouse's limits (at most 256 parameters in one statement,
16 MiB of query text): each batch of rows is ONE bound parameter, a JSON document that the
statement parses with ``from_json`` and inserts (``sql/frame_load.py``), cut at
``insert_batch_bytes`` of JSON. Values are bound, never pasted into SQL text. Measured in
``bench/bench_databricks_load.py``: 2 statements per 10,000 rows of 40 columns, where bound
``VALUES`` rows under 256 parameters need 1,667.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pandas as pd
from pydantic import PrivateAttr

from cdp_assets.engines.base import (
    TransientWarehouseError,
    WarehouseAuthError,
    WarehouseError,
    WarehouseResource,
    mask_secret,
)
from cdp_assets.engines.frame_batches import json_batches, load_columns
from cdp_assets.engines.frames import column_kind, is_missing, typed_frame
from cdp_assets.sql import engine_meta as meta
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef
from cdp_assets.sql.frame_load import TABLE_TYPES, json_batch_insert_sql, quote_column

_AUTH_HINTS = ("401", "403", "invalid access token", "unauthorized", "permission_denied", "invalid_client")


class DatabricksWarehouse(WarehouseResource):
    server_hostname: str | None = None
    http_path: str | None = None
    auth: str = "pat"  # pat | oauth (service principal, machine to machine)
    access_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    catalog: str | None = "main"
    use_catalog: bool = True
    optimize_tables: bool = True  # Delta OPTIMIZE after each published table and loop iteration
    table_format: str | None = None  # None: the workspace default (Delta); "parquet" on local Spark
    sql_dialect: str = "databricks"
    local_spark_dir: str | None = None
    # JSON per INSERT of a DataFrame load (one bound parameter). Far under the 16 MiB of query
    # text a statement may have; the size of one parameter's value is not documented.
    insert_batch_bytes: int = 4 * 1024 * 1024
    # Names of the variables the secrets came from, for messages that say what to fix.
    token_env: str = "DATABRICKS_TOKEN"
    # Steps of a run that may write at once, each on its own connection (always 1 on local Spark).
    max_concurrent_steps: int = 4
    # S3 sources read by the warehouse (read_files, Unity Catalog's credentials for the bucket);
    # off: fetched and loaded from Python. Never on local Spark (no read_files, no S3 access).
    read_cloud_files: bool = True

    _cur: Any = PrivateAttr(default=None)
    keeps_descriptions_in_session: ClassVar[bool] = True

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.sql_dialect]

    @property
    def supports_optimize(self) -> bool:
        return self.optimize_tables

    @property
    def upsert_mode(self) -> str:
        # Delta tables (the workspace default) take MERGE INTO; parquet ones (local Spark) have
        # neither MERGE nor DELETE, so their changes are applied by a rebuild and swap.
        return "merge" if self.table_format in (None, "delta") else "rebuild"

    @property
    def replaces_tables_atomically(self) -> bool:
        # Delta's CREATE OR REPLACE TABLE ... AS commits the new version whole or not at all,
        # readers seeing the old one until then (what Databricks recommends over dropping and
        # creating again). Parquet tables (local Spark) have no REPLACE: built, then swapped in.
        return self.table_format in (None, "delta")

    @property
    def inlines_scratch_tables(self) -> bool:
        # No session temporary tables: a scratch table is a real one, a CREATE TABLE AS that writes
        # its files (about a second on a SQL warehouse) and a DROP, two round trips; recomputing a
        # few thousand keys in each statement that reads them costs less. Spark 3 accepts the
        # subqueries unaliased in FROM and under a correlated EXISTS (local Spark's tests run them).
        return True

    @property
    def reads_cloud_files(self) -> bool:
        return self.read_cloud_files and not self.local_spark_dir

    @property
    def concurrent_steps(self) -> int:
        # Local Spark's tables live in this process's catalog: a step in another process would
        # not see them.
        return 1 if self.local_spark_dir else self.max_concurrent_steps

    def describe(self) -> str:
        if self.local_spark_dir:
            return f"Databricks engine on a local Spark session ({self.local_spark_dir})"
        return f"Databricks SQL warehouse {self.server_hostname}{self.http_path or ''}"

    def connection_info(self) -> dict[str, str]:
        if self.local_spark_dir:
            return {
                "engine": "databricks (local Spark)",
                "warehouse_dir": self.local_spark_dir,
                "dialect": self.sql_dialect,
            }
        secret = self.access_token if self.auth == "pat" else self.client_secret
        return {
            "engine": "databricks",
            "host": str(self.server_hostname),
            "http_path": str(self.http_path),
            "catalog": str(self.catalog),
            "auth": self.auth,
            "secret": mask_secret(secret),
        }

    # ---------------------------------------------------------------- connections

    def _open(self) -> Any:
        if self.local_spark_dir:
            from cdp_assets.engines.spark_dbapi import LocalSparkConnection

            return LocalSparkConnection(self.local_spark_dir)
        from databricks import sql

        kwargs: dict[str, Any] = {"server_hostname": self.server_hostname, "http_path": self.http_path}
        if self.auth == "oauth":
            from databricks.sdk.core import Config, oauth_service_principal

            config = Config(
                host=f"https://{self.server_hostname}", client_id=self.client_id, client_secret=self.client_secret
            )
            kwargs["credentials_provider"] = lambda: oauth_service_principal(config)
        else:
            kwargs["access_token"] = self.access_token
        try:
            conn = sql.connect(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to the engine's error kinds
            raise self._error(exc, "-- connect") from exc
        if self.use_catalog and self.catalog:
            cur = conn.cursor()
            cur.execute(f"USE CATALOG `{self.catalog}`")
            cur.close()
        return conn

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self.session():
            cur = self._con.cursor()
            self._cur = cur
            try:
                yield cur
            finally:
                self._cur = None
                cur.close()

    def _cancel_running(self) -> None:
        if self._cur is not None:
            self._cur.cancel()

    def _error(self, exc: BaseException, sql: str) -> WarehouseError:
        from databricks.sql import exc as dbx

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if any(h in text.lower() for h in _AUTH_HINTS):
            return WarehouseAuthError(
                f"Databricks refused the credentials ({text}); check the token in ${self.token_env} "
                "(or the OAuth client id and secret) and the workspace host",
                sql,
            )
        if isinstance(exc, dbx.ServerOperationError):
            return WarehouseError(f"Databricks: {text}", sql)
        if _refused_request(exc):
            # HTTP 400 (too many parameters, query text too large): the same request fails
            # again, so it is not retried.
            return WarehouseError(f"Databricks refused the statement: {text}", sql)
        if isinstance(exc, (dbx.RequestError, dbx.OperationalError, ConnectionError, TimeoutError, OSError)):
            return TransientWarehouseError(f"Databricks connection: {text}", sql)
        return WarehouseError(f"Databricks: {text}", sql)

    def _run(self, sql: str, params: list | None = None) -> tuple[list, list]:
        with self._cursor() as cur:
            try:
                cur.execute(sql, params) if params else cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
            except Exception as exc:  # noqa: BLE001 - mapped to the engine's error kinds
                raise self._error(exc, sql) from exc
            if cur.query_id:
                url = (
                    None
                    if self.local_spark_dir
                    else f"https://{self.server_hostname}/sql/history?queryId={cur.query_id}"
                )
                self.record_job(cur.query_id, url)
            return rows, list(cur.description or [])

    # ---------------------------------------------------------------- statements

    def _execute(self, sql: str) -> None:
        self._run(sql)

    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        rows, description = self._run(sql, [_param(v) for v in params] if params else None)
        return _frame(rows, description)

    def list_tables(self, schema: str) -> list[str]:
        try:
            rows, description = self._run(meta.show_tables_sql(f"`{schema}`"))
        except WarehouseError as exc:
            if _schema_not_found(exc):
                return []
            raise
        names = [d[0] for d in description]
        col = names.index("tableName")
        temp = names.index("isTemporary") if "isTemporary" in names else None
        return sorted(r[col] for r in rows if temp is None or not r[temp])

    def table_exists(self, ref: TableRef) -> bool:
        return self.describe_tables([ref])[ref] is not None

    def columns(self, ref: TableRef) -> list[str]:
        described = self.describe_tables([ref])[ref]
        if described is None:
            raise WarehouseError(f"table {ref.display} does not exist")
        return [name for name, _ in described]

    def describe_tables(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        """Each table's columns and Spark types, or None when it does not exist: one ``SHOW TABLE
        EXTENDED`` per schema for those the session does not know yet (a listing and a ``LIMIT 0``
        per table, every time, before)."""
        refs = list(dict.fromkeys(refs))
        known = self.known_descriptions(refs)
        by_schema: dict[tuple[str | None, str], list[TableRef]] = {}
        for ref in refs:
            if ref not in known:
                by_schema.setdefault((ref.catalog, ref.schema), []).append(ref)
        for (catalog, schema), group in by_schema.items():
            found = self._tables_in(catalog, schema, [ref.name for ref in group])
            read = {ref: found.get(ref.name.lower()) for ref in group}
            self.remember_descriptions(read)
            known.update(read)
        return {ref: known[ref] for ref in refs}

    def _tables_in(self, catalog: str | None, schema: str, names: list[str]) -> dict[str, list[tuple[str, str]]]:
        """{lowercased name: columns} of the tables among ``names`` that exist in the schema."""
        schema_sql = ".".join(f"`{part}`" for part in (catalog, schema) if part is not None)
        try:
            rows, description = self._run(meta.show_tables_extended_sql(schema_sql, names))
        except WarehouseError as exc:
            if _schema_not_found(exc):
                return {}
            raise
        # The listing answered, so the schema exists: a build in this session need not send its
        # CREATE SCHEMA IF NOT EXISTS (a round trip per step before: 19 in the sample's full run).
        if self._knows_catalog() and (catalog is None or (self.use_catalog and catalog == self.catalog)):
            self._schemas_ensured.add(schema)
        fields = [d[0] for d in description]
        name_at, info_at = fields.index("tableName"), fields.index("information")
        temp_at = fields.index("isTemporary") if "isTemporary" in fields else None
        wanted = {name.lower(): name for name in names}
        found: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            key = str(row[name_at]).lower()
            if key not in wanted or (temp_at is not None and row[temp_at]):
                continue
            columns = meta.columns_of_table_information(row[info_at])
            if columns is None:  # no Schema tree in the details: ask the table itself
                table_sql = self.dialect.table_name(TableRef(schema, wanted[key], catalog))
                _, empty = self._run(meta.empty_select_sql(table_sql))
                columns = [(d[0], "") for d in empty]
            found[key] = columns
        return found

    def _create_schema(self, schema: str) -> None:
        self.execute(meta.create_schema_sql(f"`{schema}`"))

    # ---------------------------------------------------------------- DataFrames

    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        self._create_table(ref, df)
        self._insert(ref, df)

    def _create_table(self, ref: TableRef, df: pd.DataFrame, if_not_exists: bool = False) -> None:
        self.ensure_schema(ref.schema)
        cols = ", ".join(f"{quote_column(str(c), self.dialect.sqlglot_name)} {_sql_type(df[c])}" for c in df.columns)
        self.execute(
            meta.create_table_sql(self.dialect.table_name(ref), cols, self.table_format or None, if_not_exists)
        )

    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> None:
        # Not one transaction: Databricks SQL has no multi-statement transactions here. The
        # frames are appended in order, the log row last, so a failure leaves no log row for
        # rows that did not land.
        for ref, df in frames:
            described = self.describe_tables([ref])[ref]
            if described is None:
                # IF NOT EXISTS: a concurrent step may create a shared table (the ingestion log)
                # first; then the rows are appended to it as to any existing table.
                self._create_table(ref, df, if_not_exists=True)
                described = self.describe_tables([ref])[ref] or []
            have = {name for name, _ in described}
            new = [c for c in df.columns if c not in have]
            if new:
                # New columns in a later file: add them; earlier rows read NULL.
                added = ", ".join(f"{quote_column(str(c), self.dialect.sqlglot_name)} {_sql_type(df[c])}" for c in new)
                self.execute(meta.add_columns_sql(self.dialect.table_name(ref), added))
            self._insert(ref, df)

    def _insert(self, ref: TableRef, df: pd.DataFrame) -> None:
        if df.empty:
            return
        columns = load_columns(df)
        sql = json_batch_insert_sql(self.dialect.table_name(ref), columns, self.dialect.sqlglot_name)
        for _, document in json_batches(df, columns, self.insert_batch_bytes):
            self.verify_connection()
            self.with_retries(lambda doc=document: self._within_time_limit(lambda: self._run(sql, [doc]), sql), sql)


def _sql_type(s: pd.Series) -> str:
    return TABLE_TYPES[column_kind(s)]


def _schema_not_found(exc: WarehouseError) -> bool:
    return "SCHEMA_NOT_FOUND" in str(exc) or "not found" in str(exc).lower()


def _refused_request(exc: BaseException) -> bool:
    """The warehouse answered the request with HTTP 400 (the connector raises ``RequestError``)."""
    context = getattr(exc, "context", None) or {}
    return str(context.get("http-code")) == "400" or "BAD_REQUEST" in str(exc)


def _param(v: Any) -> Any:
    """A bound parameter: plain Python values, NULL for every kind of missing."""
    if is_missing(v):
        return None
    if isinstance(v, pd.Timestamp):
        ts = v.tz_convert("UTC").tz_localize(None) if v.tzinfo is not None else v
        return ts.to_pydatetime()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()  # numpy scalars
    return v


def _frame(rows: list, description: list) -> pd.DataFrame:
    """Rows as pandas with the column types of the cursor's description."""
    return typed_frame(rows, [(d[0], d[1]) for d in description])
