"""The embedded default engine: a DuckDB database file, zero set-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import PrivateAttr

from cdp_assets.engines.base import WarehouseError, WarehouseResource
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef, quote


class DuckDBWarehouse(WarehouseResource):
    """DuckDB in a local file. One connection per session; DuckDB allows one writer process."""

    path: str
    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: str | None = None
    # `cdp-assets validate` reads and plans on the user's database and must write nothing.
    read_only: bool = False

    # Held open for a whole run: the database stays loaded between steps, so a session is a
    # cheap cursor instead of a full open and a checkpoint on close (about 20 ms each).
    _anchor: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["duckdb"]

    def describe(self) -> str:
        return f"DuckDB at {self.path}"

    @property
    def upsert_mode(self) -> str:
        return "delete_insert"  # DELETE + INSERT in one transaction

    # ---------------------------------------------------------------- connections

    def setup_for_execution(self, context) -> None:  # noqa: ARG002 - Dagster's hook
        self._anchor = self._connect()

    def teardown_after_execution(self, context) -> None:  # noqa: ARG002 - Dagster's hook
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            anchor.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self._anchor is not None:
            return self._anchor.cursor()
        return self._connect()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if not self.read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Extensions cannot be downloaded on locked-down machines; the built-in ones suffice.
        # No step relies on the order rows were inserted in (every order is an explicit ORDER
        # BY), so DuckDB may write large CREATE TABLE AS results in parallel, unordered.
        config: dict[str, str] = {"autoinstall_known_extensions": "false", "preserve_insertion_order": "false"}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = str(self.threads)
        if self.temp_directory:
            config["temp_directory"] = self.temp_directory
        try:
            return duckdb.connect(self.path, read_only=self.read_only, config=config)
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                # DuckDB has one writing process: a second run fails here, before it writes anything.
                raise WarehouseError(
                    f"DuckDB database {self.path} is in use by another process (another run, `dagster dev`'s "
                    "run or a tool holding it open); nothing was written. Wait for it to finish and run again: "
                    "`cdp-assets run` does not queue (runs launched in `dagster dev` wait in its run queue). "
                    f"DuckDB said: {str(exc).splitlines()[0]}"
                ) from exc
            raise WarehouseError(f"cannot open DuckDB database {self.path}: {exc}") from exc

    def _cancel_running(self) -> None:
        if self._con is not None:
            self._con.interrupt()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.session():
            assert self._con is not None
            yield self._con

    # ---------------------------------------------------------------- statements

    def _execute(self, sql: str) -> None:
        with self._cursor() as con:
            try:
                con.execute(sql)
            except duckdb.Error as exc:
                raise WarehouseError(f"DuckDB: {exc}", sql) from exc

    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self._cursor() as con:
            try:
                return con.execute(sql, params or []).df()
            except duckdb.Error as exc:
                raise WarehouseError(f"DuckDB: {exc}", sql) from exc

    def table_exists(self, ref: TableRef) -> bool:
        df = self.query(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [ref.schema, ref.name],
        )
        return int(df.iloc[0, 0]) > 0

    def columns(self, ref: TableRef) -> list[str]:
        df = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [ref.schema, ref.name],
        )
        if df.empty:
            raise WarehouseError(f"table {ref.display} does not exist")
        return list(df["column_name"])

    def list_tables(self, schema: str) -> list[str]:
        df = self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema])
        return sorted(df["table_name"])

    def ensure_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    # ---------------------------------------------------------------- DataFrames

    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        self.ensure_schema(ref.schema)
        with self._cursor() as con:
            con.register("_cdp_frame", df)
            try:
                con.execute(f"CREATE TABLE {ref.sql} AS SELECT * FROM _cdp_frame")
            except duckdb.Error as exc:
                raise WarehouseError(f"DuckDB: {exc}", f"CREATE TABLE {ref.sql} AS <DataFrame>") from exc
            finally:
                con.unregister("_cdp_frame")

    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> None:
        with self._cursor() as con:
            for ref, _ in frames:
                self.ensure_schema(ref.schema)
            con.execute("BEGIN TRANSACTION")
            try:
                for ref, df in frames:
                    self._append(con, ref, df)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _append(self, con: duckdb.DuckDBPyConnection, ref: TableRef, df: pd.DataFrame) -> None:
        con.register("_cdp_frame", df)
        try:
            if not self.table_exists(ref):
                con.execute(f"CREATE TABLE {ref.sql} AS SELECT * FROM _cdp_frame")
                return
            have = set(self.columns(ref))
            for col in df.columns:
                if col not in have:
                    # New columns in a later file: add them; earlier rows read NULL.
                    sql_type = "TIMESTAMP" if pd.api.types.is_datetime64_any_dtype(df[col]) else "VARCHAR"
                    con.execute(f"ALTER TABLE {ref.sql} ADD COLUMN {quote(col)} {sql_type}")
            con.execute(f"INSERT INTO {ref.sql} BY NAME SELECT * FROM _cdp_frame")
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB: {exc}", f"INSERT INTO {ref.sql} BY NAME <DataFrame>") from exc
        finally:
            con.unregister("_cdp_frame")
