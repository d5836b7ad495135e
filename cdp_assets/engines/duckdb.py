"""The embedded default engine: a DuckDB database file, zero set-up."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import PrivateAttr

from cdp_assets.engines.base import WarehouseError, WarehouseResource
from cdp_assets.engines.java_regex import register_java_regex
from cdp_assets.sql import engine_meta as meta
from cdp_assets.sql.checks import DESCRIPTION_COLUMNS, measures_with_description_sql
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef, quote
from cdp_assets.sql.pipeline import create_table_as, drop_table


class DuckDBWarehouse(WarehouseResource):
    """DuckDB in a local file. One connection per session; DuckDB allows one writer process."""

    path: str
    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: str | None = None
    # `cdp-assets validate` reads and plans on the user's database and must write nothing.
    read_only: bool = False
    # Source files are read by DuckDB's own readers (connectors/native_files.py); False reads
    # them in Python like the other engines (the reference the native path is tested against).
    native_file_reads: bool = True

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
        self.forget_catalog()
        self._anchor = self._connect()

    def teardown_after_execution(self, context) -> None:  # noqa: ARG002 - Dagster's hook
        anchor, self._anchor = self._anchor, None
        self.forget_catalog()
        if anchor is not None:
            anchor.close()

    @property
    def holds_run(self) -> bool:
        # The anchor holds the file's lock for the run: no other process writes until it ends.
        return self._anchor is not None

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
            con = duckdb.connect(self.path, read_only=self.read_only, config=config)
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
        register_java_regex(con)  # valid_regexp patterns RE2 cannot evaluate; cursors inherit it
        return con

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

    def create_table_counted(self, ref: TableRef, select_sql: str, params: list | None = None) -> int:
        # DuckDB answers CREATE TABLE AS with one row, the rows written ("Count"): no second
        # query to count them.
        answer = self.fetch(create_table_as(ref, select_sql), params)
        return int(answer.iloc[0, 0])

    def create_scratch(self, ref: TableRef, select_sql: str, params: list | None = None) -> int:
        # CREATE TEMP TABLE AS answers its count too: a scratch table is written once, so that
        # answer stays its row count for as long as it lives (``row_count`` answers it).
        answer = self.fetch(self.dialect.create_scratch_sql(ref, select_sql), params)
        self._scratch_rows[ref] = rows = int(answer.iloc[0, 0])
        return rows

    @property
    def answers_changed_rows(self) -> bool:
        return True  # DELETE and INSERT answer one row: the rows they changed

    def drop_tables(self, refs: list[TableRef]) -> None:
        # DuckDB runs several statements in one call: one round trip for every drop. Each is
        # DROP TABLE IF EXISTS, and an error carries the whole text, which names every table.
        for ref in refs:
            self._scratch_rows.pop(ref, None)
        if refs:
            self.query("; ".join(drop_table(ref) for ref in dict.fromkeys(refs)))

    def replace_table(self, final: TableRef, select_sql: str, params: list | None = None) -> int:
        # CREATE OR REPLACE TABLE AS answers its count too.
        answer = self.fetch(self.dialect.replace_table_sql(final, select_sql), params)
        return int(answer.iloc[0, 0])

    def _replace_with_dataframe(self, final: TableRef, df: pd.DataFrame) -> int:
        if not self.dialect.replaces_atomically:
            return super()._replace_with_dataframe(final, df)
        self.ensure_schema(final.schema)
        self.drop_leftovers(final.schema, f"{final.name}__cdp_new_")
        with self._cursor() as con:
            con.register("_cdp_frame", df)
            try:
                self.replace_table(final, meta.select_frame_sql("_cdp_frame"))
            finally:
                con.unregister("_cdp_frame")
        return len(df)

    @property
    def replaces_frames_together(self) -> bool:
        return self.dialect.replaces_atomically

    def replace_with_dataframes(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> list[int]:
        # Every frame's CREATE OR REPLACE in one transaction and one call: all are published
        # or none (a failure rolls back and the previous tables stay).
        if len(frames) < 2 or not self.dialect.replaces_atomically:
            return super().replace_with_dataframes(frames)
        with self._cursor() as con:
            for ref, _ in frames:
                self.ensure_schema(ref.schema)
                self.drop_leftovers(ref.schema, f"{ref.name}__cdp_new_")
            names = [f"_cdp_frame_{i}" for i in range(len(frames))]
            for name, (_, df) in zip(names, frames):
                con.register(name, df)
            publish = [
                self.dialect.replace_table_sql(ref, meta.select_frame_sql(n)) for n, (ref, _) in zip(names, frames)
            ]
            try:
                self.query("; ".join(["BEGIN TRANSACTION", *publish, "COMMIT"]))
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # the failure came before the transaction began
                raise
            finally:
                for name in names:
                    con.unregister(name)
        return [len(df) for _, df in frames]

    def table_exists(self, ref: TableRef) -> bool:
        return self.describe_tables([ref])[ref] is not None

    def columns(self, ref: TableRef) -> list[str]:
        names = self._columns_if_exists(ref)
        if not names:
            raise WarehouseError(f"table {ref.display} does not exist")
        return names

    def _columns_if_exists(self, ref: TableRef) -> list[str]:
        """The table's columns, or none when it does not exist."""
        return [name for name, _ in self.describe_tables([ref])[ref] or []]

    def describe_tables(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        refs = list(dict.fromkeys(refs))
        known = self.known_descriptions(refs)  # kept from earlier in the run
        ask = [ref for ref in refs if ref not in known]
        if ask:
            # One catalog query for every table (values bound, never pasted).
            df = self.query(meta.describe_tables_sql(len(ask)), [v for ref in ask for v in (ref.schema, ref.name)])
            known.update(self._read_descriptions(ask, df))
        return {ref: known[ref] for ref in refs}

    def _read_descriptions(self, asked: list[TableRef], catalog: pd.DataFrame) -> dict:
        """{ref: [(column, type)] or None} from catalog rows (table_schema, table_name, column_name,
        data_type; a row without a column is skipped), kept for the run."""
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        rows = catalog[catalog["column_name"].notna()]
        for schema, name, column, type_ in zip(
            rows["table_schema"], rows["table_name"], rows["column_name"], rows["data_type"]
        ):
            found.setdefault((schema, name), []).append((column, type_))
        read = {ref: found.get((ref.schema, ref.name)) for ref in asked}
        # A temporary table dies with its session: never kept for the run.
        self.remember_descriptions({ref: cols for ref, cols in read.items() if ref.catalog != "temp"})
        return read

    def describe_tables_and_fetch(
        self, refs: list[TableRef], canonical_sql: str, params: list | None = None
    ) -> tuple[dict[TableRef, list[tuple[str, str]] | None], pd.DataFrame]:
        refs = list(dict.fromkeys(refs))
        known = self.known_descriptions(refs)
        ask = [ref for ref in refs if ref not in known]
        if not ask or any(ref.catalog == "temp" for ref in ask):
            return super().describe_tables_and_fetch(refs, canonical_sql, params)
        # One query for the catalog and the measures (sql/checks.measures_with_description_sql).
        pairs = [v for ref in ask for v in (ref.schema, ref.name)]
        df = self.query(measures_with_description_sql(canonical_sql, len(ask)), [*(params or []), *pairs])
        known.update(self._read_descriptions(ask, df))
        measures = df.drop(columns=list(DESCRIPTION_COLUMNS)).head(1).reset_index(drop=True)
        return {ref: known[ref] for ref in refs}, measures

    def know_schemas(self, schemas: list[str]) -> None:
        if not self.holds_run:
            return
        ask = [schema for schema in dict.fromkeys(schemas) if schema not in self._leftovers]
        if not ask:
            return
        found = self.query(meta.schemas_and_tables_sql(len(ask)), ask)
        for schema in ask:
            rows = found[found["schema_name"] == schema]
            if not rows.empty:
                self._schemas_ensured.add(schema)
            else:
                self._schemas_absent.add(schema)
            # A schema that does not exist yet holds no leftovers: it is created when first written.
            self._leftovers[schema] = [name for name in rows["table_name"].dropna() if "__cdp_new_" in name]

    def list_tables(self, schema: str) -> list[str]:
        df = self.query(meta.list_tables_sql(), [schema])
        return sorted(df["table_name"])

    def _create_schema(self, schema: str) -> None:
        self.execute(meta.create_schema_sql(quote(schema)))

    # ---------------------------------------------------------------- DataFrames

    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        temporary = ref.catalog == "temp"  # a table of this session only (a load's scratch rows)
        if not temporary:
            self.ensure_schema(ref.schema)
        with self._cursor() as con:
            con.register("_cdp_frame", df)
            try:
                con.execute(meta.create_from_frame_sql(ref.sql, "_cdp_frame", temporary))
            except duckdb.Error as exc:
                raise WarehouseError(f"DuckDB: {exc}", meta.create_from_frame_sql(ref.sql, "<DataFrame>")) from exc
            finally:
                con.unregister("_cdp_frame")
                self.forget_tables([ref])

    @property
    def reads_files_natively(self) -> bool:
        return self.native_file_reads

    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]], statements: Sequence[str] = ()) -> None:
        """Also runs ``statements`` (a native load's INSERT of its rows) first, in the same unit.
        The transaction and ``statements`` go through ``execute`` (each one a statement sent)."""
        with self._cursor() as con:
            for schema in dict.fromkeys(ref.schema for ref, _ in frames):
                self.ensure_schema(schema)
            if not statements and len(frames) == 1:
                ref, df = frames[0]
                have = self._columns_if_exists(ref)
                if not have or set(df.columns) <= set(have):
                    # One statement (the table's CREATE or its INSERT): atomic on its own, no
                    # transaction to open and commit around it.
                    self._append(con, ref, df, have)
                    return
            self.execute("BEGIN TRANSACTION")
            try:
                for sql in statements:
                    self.execute(sql)
                for ref, df in frames:
                    self._append(con, ref, df)
                self.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                # What was described inside the unit may be undone: forget it all.
                self.forget_tables([ref for ref, _ in frames])
                for sql in statements:
                    self.forget_written(sql)
                raise

    def _append(
        self, con: duckdb.DuckDBPyConnection, ref: TableRef, df: pd.DataFrame, columns: list[str] | None = None
    ) -> None:
        con.register("_cdp_frame", df)
        try:
            # One round trip (or none in a run, or given): existence and columns.
            have = set(self._columns_if_exists(ref) if columns is None else columns)
            if not have or any(col not in have for col in df.columns):
                self.forget_tables([ref])  # created, or given columns (a rollback undoes both)
            if not have:
                con.execute(meta.create_from_frame_sql(ref.sql, "_cdp_frame"))
                return
            for col in df.columns:
                if col not in have:
                    # New columns in a later file: add them; earlier rows read NULL.
                    sql_type = "TIMESTAMP" if pd.api.types.is_datetime64_any_dtype(df[col]) else "VARCHAR"
                    self.execute(meta.add_column_sql(ref.sql, quote(col), sql_type))  # a statement of its own
            con.execute(meta.insert_frame_by_name_sql(ref.sql, "_cdp_frame"))
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB: {exc}", meta.insert_frame_by_name_sql(ref.sql, "<DataFrame>")) from exc
        finally:
            con.unregister("_cdp_frame")
