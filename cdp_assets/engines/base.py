"""The warehouse interface every engine implements; assets only talk to this.

Engines execute SQL that the builders rendered; they never build SQL of their own beyond the
few statements that are engine mechanics (creating schemas, loading a DataFrame).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pandas as pd
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import PrivateAttr

from cdp_assets.sql.dialects import Dialect, TableRef
from cdp_assets.sql.engine_meta import (
    connection_check_sql,
    may_drop_a_schema,
    row_count_sql,
    row_counts_sql,
    tables_changed,
)
from cdp_assets.sql.pipeline import create_table_as, drop_table

log = logging.getLogger("cdp_assets.engines")

T = TypeVar("T")

RETRY_ATTEMPTS = 3  # a transient error is tried again up to this many attempts in all


class WarehouseError(RuntimeError):
    """A statement failed; carries the engine's message and the SQL that failed."""

    def __init__(self, message: str, sql: str | None = None):
        self.engine_message = message
        self.sql = sql
        super().__init__(f"{message}\n-- statement that failed:\n{sql}" if sql else message)


class TransientWarehouseError(WarehouseError):
    """A failure worth trying again: a dropped connection, a timeout, an HTTP 5xx."""


class WarehouseAuthError(WarehouseError):
    """The warehouse refused the credentials: never retried."""


class StatementTimeoutError(WarehouseError):
    """A statement ran past ``statement_timeout_seconds`` and was cancelled: never retried (it
    would most likely run as long again)."""


def mask_secret(value: str | None) -> str:
    """How a secret may be shown: ``****`` and its last 4 characters (nothing for short ones)."""
    if not value:
        return "(not set)"
    return "****" + value[-4:] if len(value) >= 12 else "****"


@dataclass(frozen=True)
class EngineJob:
    """One job or statement the warehouse ran for a step, kept in the asset's metadata."""

    job_id: str
    url: str | None = None


class WarehouseResource(ConfigurableResource):
    """Executes rendered SQL and moves DataFrames in and out of one warehouse.

    Engines implement ``_execute`` / ``_query`` (one attempt each); this class adds what every
    engine needs around them: a connection check before the first statement (logged with the
    engine, host and schema, secrets masked), retries of transient errors with back-off, and
    the list of engine job ids a step produced.
    """

    retry_backoff_seconds: float = 1.0
    # A statement running longer is cancelled on the engine and fails its step (None: no limit).
    statement_timeout_seconds: float | None = None

    _verified: bool = PrivateAttr(default=False)
    _con: Any = PrivateAttr(default=None)  # the open connection of the current session
    _jobs: list = PrivateAttr(default_factory=list)
    _step: str | None = PrivateAttr(default=None)  # the pipeline step running now
    # What the engine knows of the catalog, so that it is not asked again: kept for a session, or
    # for a whole run while one holds the engine (``holds_run``), and forgotten at its end.
    # Schemas ensured: each is created (or found) once, not before every table; forgotten on any
    # DROP SCHEMA the engine runs.
    _schemas_ensured: set = PrivateAttr(default_factory=set)
    # Half-built tables found in each schema when it was first looked at (``drop_leftovers``).
    _leftovers: dict = PrivateAttr(default_factory=dict)
    # Schemas a look-up found missing (``know_schemas``), until the engine creates them.
    _schemas_absent: set = PrivateAttr(default_factory=set)
    # Table descriptions, {(schema, name): [(column, type)] or None}, kept while a run holds the
    # engine, or for a session where ``keeps_descriptions_in_session``: a table's entry is forgotten
    # on every statement or load of the engine that may create, drop or alter it
    # (``tables_changed``), all of them on a statement it cannot read.
    _described: dict = PrivateAttr(default_factory=dict)
    # Whether a session keeps the descriptions it read: where a step's session is the only writer
    # of the tables it describes (Databricks: each step its own process and connection, writing its
    # own tables; what it reads was written by steps that ended before it).
    keeps_descriptions_in_session: ClassVar[bool] = False
    # Scratch tables' row counts as their create answered them (DuckDB, Trino): a scratch table is
    # written once, so that answer stays its count for as long as it lives.
    _scratch_rows: dict = PrivateAttr(default_factory=dict)

    @property
    @abstractmethod
    def dialect(self) -> Dialect: ...

    @abstractmethod
    def _execute(self, sql: str) -> None:
        """Run one statement (already in this engine's dialect), once."""

    @abstractmethod
    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one query once and return its rows; ``?`` placeholders take ``params``."""

    def execute(self, sql: str) -> None:
        """Run one statement (already in this engine's dialect)."""
        self.verify_connection()
        try:
            self.with_retries(lambda: self._within_time_limit(lambda: self._execute(sql), sql), sql)
        finally:  # a failed statement may have changed something too
            self.forget_written(sql)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one query and return its rows; ``?`` placeholders take ``params`` (values never
        become SQL text)."""
        self.verify_connection()
        try:
            return self.with_retries(lambda: self._within_time_limit(lambda: self._query(sql, params), sql), sql)
        finally:
            self.forget_written(sql)

    # ---------------------------------------------------------------- what the engine knows

    @property
    def holds_run(self) -> bool:
        """Whether a run holds this engine from its first step to its last (DuckDB's anchor
        connection, ``setup_for_execution`` to ``teardown_after_execution``): no other process can
        write meanwhile, so what it knows of the catalog is kept for the run, not a session."""
        return False

    def _knows_catalog(self) -> bool:
        """Whether schemas ensured and leftovers listed are kept now: in a session, or a run."""
        return self._con is not None or self.holds_run

    def forget_catalog(self) -> None:
        """Forget every schema ensured, leftover listing and table description."""
        self._schemas_ensured.clear()
        self._leftovers.clear()
        self._schemas_absent.clear()
        self._described.clear()

    def forget_written(self, sql: str) -> None:
        """Forget what ``sql`` (run by this engine) may have changed: the descriptions of the tables
        it creates, drops or alters, every description when that cannot be told from its text,
        and every schema and leftover when it may drop a schema."""
        if may_drop_a_schema(sql):
            self.forget_catalog()
            return
        if not self._described:
            return
        changed = tables_changed(sql)
        if changed is None:
            self._described.clear()
        else:
            self.forget_tables(changed)

    def forget_tables(self, tables) -> None:
        """Forget the descriptions of ``tables`` (TableRefs or (schema, name) pairs) after a write."""
        for t in tables:
            self._described.pop((t.schema, t.name) if isinstance(t, TableRef) else tuple(t), None)

    def _keeps_descriptions(self) -> bool:
        return self.holds_run or (self.keeps_descriptions_in_session and self._con is not None)

    def known_descriptions(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        """The descriptions of ``refs`` kept from earlier in this run or session (see
        ``keeps_descriptions_in_session``; none elsewhere)."""
        if not self._keeps_descriptions():
            return {}
        out = {}
        for ref in refs:
            key = (ref.schema, ref.name)
            if key in self._described:
                cols = self._described[key]
                out[ref] = None if cols is None else list(cols)
        return out

    def remember_descriptions(self, described: dict[TableRef, list[tuple[str, str]] | None]) -> None:
        """Keep descriptions just read for the rest of the run or session (nothing elsewhere)."""
        if self._keeps_descriptions():
            for ref, cols in described.items():
                self._described[(ref.schema, ref.name)] = None if cols is None else list(cols)

    def _cancel_running(self) -> None:
        """Cancel the statement running now (called from a timer thread)."""
        raise NotImplementedError(f"{type(self).__name__} cannot cancel a running statement")

    def _within_time_limit(self, attempt: Callable[[], T], sql: str) -> T:
        limit = self.statement_timeout_seconds
        if not limit:
            return attempt()
        fired = threading.Event()

        def cancel() -> None:
            fired.set()
            try:
                self._cancel_running()
            except Exception as exc:  # noqa: BLE001 - reported by the statement's own failure
                log.warning("could not cancel a statement over its time limit: %s", exc)

        timer = threading.Timer(limit, cancel)
        timer.daemon = True
        timer.start()
        try:
            return attempt()
        except WarehouseError as exc:
            if fired.is_set():
                raise StatementTimeoutError(
                    f"statement cancelled after {limit:g}s (engine.statement_timeout_seconds): {exc.engine_message}",
                    sql,
                ) from exc
            raise
        finally:
            timer.cancel()

    # ---------------------------------------------------------------- connection and retries

    def connection_info(self) -> dict[str, str]:
        """Engine, host, database or schema: what the log says this resource uses. Secrets
        appear only masked (``mask_secret``)."""
        return {"engine": type(self).__name__}

    def _check_connection(self) -> None:
        """One cheap round trip that fails if the warehouse cannot be used."""
        self._query(connection_check_sql(), None)

    def verify_connection(self) -> None:
        """Check the connection once per resource instance (a run), before its first statement."""
        if self._verified:
            return
        info = ", ".join(f"{k}={v}" for k, v in self.connection_info().items())
        self.with_retries(self._check_connection, "-- connection check")
        self._verified = True
        _logger().info("warehouse connected: %s", info)

    def with_retries(self, attempt: Callable[[], T], what: str) -> T:
        """Call ``attempt``; a ``TransientWarehouseError`` is tried again with back-off
        (1x, 2x the base delay), ``RETRY_ATTEMPTS`` attempts in all. Anything else fails at once."""
        for n in range(1, RETRY_ATTEMPTS + 1):
            try:
                return attempt()
            except TransientWarehouseError as exc:
                if n == RETRY_ATTEMPTS:
                    raise
                delay = self.retry_backoff_seconds * 2 ** (n - 1)
                _logger().warning(
                    "transient warehouse error (attempt %d of %d), retrying in %.1fs: %s | %s",
                    n,
                    RETRY_ATTEMPTS,
                    delay,
                    exc.engine_message,
                    what.strip().splitlines()[0][:120] if what.strip() else "",
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """The statements sent inside belong to the pipeline step ``name`` (see ``current_step``)."""
        outer, self._step = self._step, name
        try:
            yield
        finally:
            self._step = outer

    @property
    def current_step(self) -> str | None:
        """The named step whose statements are being sent (None outside the steps)."""
        return self._step

    # ---------------------------------------------------------------- engine jobs

    def record_job(self, job_id: str, url: str | None = None) -> None:
        """Remember a job or statement id of the warehouse for the running step's metadata."""
        self._jobs.append(EngineJob(str(job_id), url))

    def take_jobs(self) -> list[EngineJob]:
        """The jobs recorded since the last call (each step takes its own)."""
        jobs, self._jobs[:] = list(self._jobs), []
        return jobs

    # ---------------------------------------------------------------- capabilities

    @property
    def supports_optimize(self) -> bool:
        """Can compact a table after it is written (Delta ``OPTIMIZE``)."""
        return False

    @property
    def concurrent_steps(self) -> int:
        """How many steps of one run may write to this warehouse at once: 1 runs them one after
        another in the run's process (``assets.pools.executor_for``)."""
        return 1

    @property
    def reads_files_natively(self) -> bool:
        """Reads local source files with its own readers into the warehouse
        (``connectors/native_loading.py``), instead of parsing them in Python and loading
        DataFrames; its ``append_frames`` then takes the SQL statements of the same unit."""
        return False

    @property
    def describes_without_a_statement(self) -> bool:
        """Describes a table without sending a statement (Treasure Data's REST API: a call, no
        job), where other engines send one or more per table unless they keep descriptions for
        the run (``holds_run``)."""
        return False

    @property
    def counts_rows_without_a_query(self) -> bool:
        """Knows every table's row count without running a query (Treasure Data's table listing:
        an API call, where a query is a job): a build may then take its inputs' counts from there
        instead of measuring them in a query of its own."""
        return False

    @property
    def inlines_scratch_tables(self) -> bool:
        """An incremental build's small intermediate relations (its changed keys, their new rows)
        are subqueries of the statements that read them rather than scratch tables: where every
        CREATE TABLE is a job with queueing overhead (Treasure Data) or a real table's files
        written and dropped (Databricks), recomputing a few thousand keys in each reader costs
        less than the table (``inc.Inlined``). DuckDB's scratch tables are in memory: it keeps them."""
        return False

    @property
    def reads_cloud_files(self) -> bool:
        """Reads files in cloud storage (S3) itself (``read_files``), instead of having them
        fetched and loaded from Python (``connectors/s3_in_warehouse.py``)."""
        return False

    @property
    def upsert_mode(self) -> str:
        """How an incremental run replaces the changed keys' rows of a published table
        (``cdp_assets/sql/incremental.py``): ``delete_insert`` in one transaction, ``merge`` (one
        atomic MERGE INTO), or ``rebuild`` (unchanged rows plus new ones, built and swapped in)."""
        return "rebuild"

    def optimize(self, ref: TableRef) -> None:
        """Compact ``ref`` where the engine can; a no-op elsewhere."""
        if self.supports_optimize:
            self.execute(self.dialect.optimize_sql(ref))

    @abstractmethod
    def table_exists(self, ref: TableRef) -> bool: ...

    @abstractmethod
    def columns(self, ref: TableRef) -> list[str]: ...

    def describe_tables(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        """Each table's columns as (name, type) in order, or None when it does not exist: what
        the checks and the table metadata read. Engines override it to describe every table in
        one round trip; this default asks per table."""
        out: dict[TableRef, list[tuple[str, str]] | None] = {}
        for ref in dict.fromkeys(refs):
            out[ref] = [(c, "") for c in self.columns(ref)] if self.table_exists(ref) else None
        return out

    def describe_ahead(self, refs: list[TableRef], ahead: list[TableRef]) -> None:
        """Before a step describes ``refs``: where the engine keeps descriptions for the run and
        some of ``refs`` are not known, describe them with ``ahead`` (what the run's other steps
        of the same kind will describe) in one look-up. Each step writes only its own tables, and
        a write forgets what it changed, so a later step finds the rest known: one look-up for the
        phase instead of one per step (the enrichments' ``enrich_table`` does the same)."""
        if self.holds_run and len(self.known_descriptions(refs)) < len(set(refs)):
            self.describe_tables([*refs, *ahead])

    def describe_tables_and_fetch(
        self, refs: list[TableRef], canonical_sql: str, params: list | None = None
    ) -> tuple[dict[TableRef, list[tuple[str, str]] | None], pd.DataFrame]:
        """``describe_tables(refs)`` and the one row of a query that does not depend on them (a
        step's check measures, after its build): two round trips here; DuckDB answers both in
        one query when it must describe."""
        return self.describe_tables(refs), self.fetch(canonical_sql, params)

    def know_schemas(self, schemas: list[str]) -> None:
        """Where the engine keeps its catalog for the run: which of ``schemas`` (those the run
        writes) exist, and their leftovers (``drop_leftovers``), in one look-up, so that none is
        created or listed again. Engines without such a look-up ask per schema when they need to."""

    def ensure_schema(self, schema: str) -> bool:
        """Create ``schema`` unless it exists; inside a session or a run, once per schema. True
        when this call created a schema the run's look-up found missing: it holds no table."""
        if self._knows_catalog() and schema in self._schemas_ensured:
            return False
        created = self._knows_catalog() and schema in self._schemas_absent
        self._create_schema(schema)
        if self._knows_catalog():
            self._schemas_ensured.add(schema)
            self._schemas_absent.discard(schema)
        return created

    @abstractmethod
    def _create_schema(self, schema: str) -> None:
        """Create ``schema`` if it does not exist (one statement or API call, not cached)."""

    @abstractmethod
    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        """Create ``ref`` (which must not exist) holding ``df``."""

    @abstractmethod
    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> None:
        """Append each DataFrame to its table by column name (creating the table, adding new
        columns), all as one unit where the engine has transactions: either all land or none."""

    def append_dataframe(
        self, ref: TableRef, df: pd.DataFrame, log_ref: TableRef | None = None, log_row: pd.DataFrame | None = None
    ) -> None:
        """Append ``df`` to ``ref`` and ``log_row`` to ``log_ref`` as one unit."""
        self.append_frames([(ref, df)] + ([(log_ref, log_row)] if log_ref is not None and log_row is not None else []))

    def _open(self) -> Any:
        """A new connection (engines with connections implement it)."""
        raise NotImplementedError(f"{type(self).__name__} has no connections to open")

    @contextmanager
    def session(self) -> Iterator["WarehouseResource"]:
        """Keep one connection open for a block of statements (a loop, a step); nested
        sessions share it. The schemas it ensured and the leftovers it listed are forgotten when
        it ends (unless a run holds the engine: then at the run's end): a schema dropped between
        sessions (by a test, a user, another tool) is created again."""
        if self._con is not None:
            yield self
            return
        self._con = self._open()
        try:
            yield self
        finally:
            con, self._con = self._con, None
            if not self.holds_run:
                self.forget_catalog()
            con.close()

    @contextmanager
    def own_session(self) -> Iterator["WarehouseResource"]:
        """A session with a connection of its own even inside another session, where the engine
        holds the run (DuckDB: a new cursor of the run's database, which sees everything
        committed): its temporary tables die at its end, so work whose scratch tables are all
        temporary need not drop them (``drop_with_session``). Elsewhere it is ``session()``.
        Only for work that needs no open transaction of the outer session."""
        if not self.holds_run or self._con is None:
            with self.session():
                yield self
            return
        outer, self._con = self._con, self._open()
        try:
            yield self
        finally:
            con, self._con = self._con, outer
            con.close()

    # ---------------------------------------------------------------- shared mechanics

    def run(self, canonical_sql: str) -> None:
        """Render canonical SQL for this engine and execute it."""
        self.execute(self.dialect.render(canonical_sql))

    def fetch(self, canonical_sql: str, params: list | None = None) -> pd.DataFrame:
        return self.query(self.dialect.render(canonical_sql), params)

    def scalar(self, canonical_sql: str, params: list | None = None) -> int:
        df = self.fetch(canonical_sql, params)
        value = df.iloc[0, 0]
        return 0 if pd.isna(value) else int(value)

    def row_count(self, ref: TableRef) -> int:
        """A scratch table's rows as its create answered them, else counted (``_counted_rows``)."""
        known = self._scratch_rows.get(ref)
        return known if known is not None else self._counted_rows(ref)

    def _counted_rows(self, ref: TableRef) -> int:
        return self.scalar(row_count_sql(ref))

    def row_counts(self, refs: list[TableRef]) -> dict[TableRef, int]:
        """Each table's row count, in one round trip (``row_counts_sql``); engines whose API
        knows a table's count without a query override it."""
        if not refs:
            return {}
        counted = self.fetch(row_counts_sql(refs)).iloc[0]
        return {ref: int(counted[f"t{i}"]) for i, ref in enumerate(refs)}

    def drop(self, ref: TableRef) -> None:
        self._scratch_rows.pop(ref, None)
        self.run(drop_table(ref))

    @property
    def replaces_frames_together(self) -> bool:
        """``replace_with_dataframes`` publishes all its frames or none (one transaction); here
        each is published on its own, in order."""
        return False

    def staging_ref(self, final: TableRef) -> TableRef:
        """A unique name to build ``final`` under before it is swapped in."""
        return final.sibling(f"{final.name}__cdp_new_{uuid.uuid4().hex[:8]}")

    def scratch_ref(self, like: TableRef) -> TableRef:
        """A unique scratch table for work that is not published (dropped by the step)."""
        return self.dialect.scratch_ref(self.staging_ref(like).name, like)

    def create_scratch(self, ref: TableRef, select_sql: str, params: list | None = None) -> int | None:
        """Create the scratch table ``ref`` from a SELECT (``params`` bound to its placeholders);
        returns its rows where the engine answers them with the create (DuckDB, Trino), None where
        it does not."""
        if params:
            self.fetch(self.dialect.create_scratch_sql(ref, select_sql), params)
        else:
            self.run(self.dialect.create_scratch_sql(ref, select_sql))
        return None

    def drop_tables(self, refs: list[TableRef]) -> None:
        """Drop several tables (``IF EXISTS``): one statement each here; engines that run several
        statements in one call override it to save the round trips."""
        for ref in refs:
            self.drop(ref)

    def drop_with_session(self, refs: list[TableRef]) -> None:
        """Scratch tables a piece of work is done with, at its end: dropped now (``drop_tables``),
        except the session's temporary tables (``Dialect.session_temp_tables``: DuckDB's) while a
        run holds the engine (each step's sessions are cursors of the run's database, closed at
        the step's end, or at the end of an ``own_session``), which die with the session's
        connection when its outermost session ends: no statement is sent for them.
        For small tables, or work that ends its step (a step holds one session): a large table
        that later work in the same session would keep alive is dropped with ``drop_tables``."""
        self.drop_tables(self.outliving_the_session(refs))

    def outliving_the_session(self, refs: list[TableRef]) -> list[TableRef]:
        """Of scratch tables a piece of work is done with, those its session's end will not drop
        (``drop_with_session``): what must still be dropped. The row counts of all are forgotten."""
        for ref in refs:
            self._scratch_rows.pop(ref, None)
        if self.dialect.session_temp_tables and self.holds_run and self._con is not None:
            return [ref for ref in refs if ref.catalog != "temp"]
        return list(refs)

    @property
    def replaces_tables_atomically(self) -> bool:
        """Whether the engine replaces a table with a SELECT's rows in one statement that commits
        whole or not at all (``replace_table``): DuckDB's transactional DDL, Delta's ``CREATE OR
        REPLACE TABLE`` (Databricks overrides it). Elsewhere a table is built under a temporary
        name and swapped in (``swap_in``)."""
        return self.dialect.replaces_atomically

    def swap_in(self, staging: TableRef, final: TableRef) -> None:
        # One connection for the whole swap: its transaction must not span connections.
        with self.session():
            for stmt in self.dialect.swap_statements(staging, final):
                self.execute(stmt)

    def publish_staged(self, staging: TableRef, final: TableRef) -> None:
        """Make the fully built ``staging`` table ``final``: where the engine replaces tables
        atomically, ``final`` replaced by a copy of it in one statement and ``staging`` dropped
        (a failure before the replace commits leaves the old ``final``); elsewhere swapped in."""
        if not self.replaces_tables_atomically:
            self.swap_in(staging, final)
            return
        with self.session():
            self.run(self.dialect.replace_with_table_sql(final, staging))
            self.drop(staging)

    def build_table(self, final: TableRef, select_sql: str, params: list | None = None) -> int:
        """Publish ``final`` from a SELECT atomically and return its new row count: in one
        statement where the dialect replaces tables atomically (``replace_table``), otherwise
        built under a temporary name, then swapped in. ``params``: values for the SELECT's ``?``
        placeholders, bound as a query's are (never SQL text).

        A failure at any point leaves the previous ``final`` untouched (and drops the half-built
        table).
        """
        with self.session():
            return self._build_table(final, select_sql, params)

    def _build_table(self, final: TableRef, select_sql: str, params: list | None = None) -> int:
        self.ensure_schema(final.schema)
        self.drop_leftovers(final.schema, f"{final.name}__cdp_new_")
        if self.replaces_tables_atomically:
            started = time.monotonic()
            rows = self.replace_table(final, select_sql, params)
            self.optimize(final)
            log.debug("built %s (%d rows) in %.2fs", final.display, rows, time.monotonic() - started)
            return rows
        staging = self.staging_ref(final)
        try:
            started = time.monotonic()
            rows = self.create_table_counted(staging, select_sql, params)
            self.swap_in(staging, final)
            self.optimize(final)
            log.debug("built %s (%d rows) in %.2fs", final.display, rows, time.monotonic() - started)
            return rows
        except BaseException:
            self._drop_quietly(staging)
            raise

    @property
    def answers_changed_rows(self) -> bool:
        """Whether a DELETE or an INSERT answers the rows it changed, as one row (DuckDB)."""
        return False

    def apply_changes(
        self,
        final: TableRef,
        statements: list[str],
        rows_before: int | None = None,
        count: bool = True,
        then: Sequence[str] = (),
    ) -> int | None:
        """Apply ``upsert_statements`` of this engine's ``upsert_mode`` to ``final`` atomically
        and return its row count: in one transaction (``delete_insert``; a failure rolls back),
        as one statement (``merge``), or built under a new name and swapped in (``rebuild``).
        ``rows_before``: the table's rows before, when the caller measured them: a DELETE and
        INSERT whose engine answers their changed rows then need no count query after.
        ``count`` False: the caller needs no row count (None), so none is asked for. ``then``:
        statements that must change with the table (its kept measures), run after ``statements``
        in the same transaction (``delete_insert`` only)."""
        with self.session():
            if then and self.upsert_mode != "delete_insert":
                raise WarehouseError(
                    f"{final.display}: statements with a change need delete_insert, not {self.upsert_mode}"
                )
            if self.upsert_mode == "rebuild":
                (select_sql,) = statements
                return self._build_table(final, select_sql)
            counted = rows_before is not None and self.upsert_mode == "delete_insert" and self.answers_changed_rows
            changed = []
            if len(statements) + len(then) > 1:
                if not self.dialect.transactional_ddl:
                    raise WarehouseError(
                        f"{self.upsert_mode} of {final.display} needs transactions, which this engine lacks"
                    )
                self.execute("BEGIN TRANSACTION")
                try:
                    for stmt in statements:
                        if counted:
                            changed.append(self.scalar(stmt))
                        else:
                            self.run(stmt)
                    for stmt in then:
                        self.run(stmt)
                    self.execute("COMMIT")
                except BaseException:
                    self.execute("ROLLBACK")
                    raise
            else:
                self.run(statements[0])
                counted = False
            self.optimize(final)
            if not count:
                return None
            if counted:  # [DELETE, INSERT] (inc.upsert_statements)
                deleted, inserted = changed
                return rows_before - deleted + inserted
            return self.row_count(final)

    def create_table_counted(self, ref: TableRef, select_sql: str, params: list | None = None) -> int:
        """Create ``ref`` from a SELECT (``params`` bound to its placeholders) and return how many
        rows it holds."""
        if params:
            self.fetch(create_table_as(ref, select_sql), params)
        else:
            self.run(create_table_as(ref, select_sql))
        return self.row_count(ref)

    def replace_table(self, final: TableRef, select_sql: str, params: list | None = None) -> int:
        """Replace (or create) ``final`` with a SELECT's rows in one statement, which commits whole
        or not at all (engines that ``replaces_tables_atomically``), and return how many rows it holds.
        Every publish of such an engine goes through here (the kill tests count them)."""
        if params:
            self.fetch(self.dialect.replace_table_sql(final, select_sql), params)
        else:
            self.run(self.dialect.replace_table_sql(final, select_sql))
        return self.row_count(final)

    def replace_with_dataframe(self, final: TableRef, df: pd.DataFrame) -> int:
        """Publish a DataFrame as ``final`` atomically, as ``build_table`` publishes a SELECT
        (engines that replace tables in one statement override ``_replace_with_dataframe``)."""
        with self.session():
            return self._replace_with_dataframe(final, df)

    def replace_with_dataframes(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> list[int]:
        """Publish several DataFrames, each atomically as ``replace_with_dataframe`` does, and
        return their row counts; engines that can override it to publish them all in one call."""
        return [self.replace_with_dataframe(ref, df) for ref, df in frames]

    def _replace_with_dataframe(self, final: TableRef, df: pd.DataFrame) -> int:
        self.ensure_schema(final.schema)
        self.drop_leftovers(final.schema, f"{final.name}__cdp_new_")
        staging = self.staging_ref(final)
        try:
            self.write_dataframe(staging, df)
            self.publish_staged(staging, final)
            return len(df)
        except BaseException:
            self._drop_quietly(staging)
            raise

    def drop_leftovers(self, schema: str, name_prefix: str = "") -> list[str]:
        """Drop half-built tables a killed run left behind (names with ``__cdp_new_``) whose name
        starts with ``name_prefix``. Safe because one run at a time writes an engine's tables
        (the concurrency pool in dagster.yaml).

        Inside a session (or a run holding the engine) a schema is listed once, at the first call:
        a killed run's tables are there before it starts, and a build of its own that fails drops
        its own."""
        leftovers = self._leftovers.get(schema) if self._knows_catalog() else None
        if leftovers is None:
            leftovers = [name for name in self.list_tables(schema) if "__cdp_new_" in name]
            if self._knows_catalog():
                self._leftovers[schema] = leftovers
        dropped = [name for name in leftovers if name.startswith(name_prefix)]
        for name in dropped:
            self.drop(TableRef(schema, name, self.catalog_for(schema)))
            leftovers.remove(name)
        if dropped:
            _logger().warning(
                "dropped %d half-built table(s) a failed or killed run left in %s: %s", len(dropped), schema, dropped
            )
        return dropped

    def catalog_for(self, schema: str) -> str | None:  # noqa: ARG002 - Databricks overrides
        return None

    @abstractmethod
    def list_tables(self, schema: str) -> list[str]: ...

    def _drop_quietly(self, ref: TableRef) -> None:
        try:
            self.drop(ref)
        except Exception as exc:  # the original error matters more than the clean-up's
            log.warning("could not drop temporary table %s: %s", ref.display, exc)

    def describe(self) -> str:
        """Which engine and where, for logs; never includes a secret."""
        return type(self).__name__


def _logger() -> logging.Logger:
    # Inside a step this reaches the run's event log; elsewhere it is the plain Python logger.
    return get_dagster_logger("cdp_assets.engines")
