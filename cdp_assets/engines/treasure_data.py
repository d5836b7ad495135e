"""Treasure Data through pytd: Trino (Presto) jobs by default, Hive as an option.

Every statement is a TD job issued through pytd's REST path (``force_tdclient``), so each
has a job id; the step keeps it in its metadata with a link to the job in the TD console.
DataFrames go in through TD's bulk import (a gzipped msgpack part, freeze, perform, commit),
driven through pytd's client (``pytd.Client.api_client``). pytd's own writer is not used: it
waits at least 5 s per commit whatever the job does, and returns no job id.
Tables are ``database.table``: a TableRef's schema is the TD database.

What TD lacks, the engine does with TD's own API instead of SQL:
- publishing a finished table is TD's table swap (atomic on TD's side), not DROP + RENAME;
- the job API has no bind parameters, so ``?`` values are put into the parsed statement as
  typed literals by sqlglot (quoting escaped for the dialect), never formatted into text;
- a job that fails carries TD's own message (the job's stderr) into the step failure.

Retries: tdclient's own 5xx retry loop (5 s, 10 s, ... up to 10 minutes) is switched off; the
base class retries a failed call with its back-off, 3 attempts, like every engine. The API
key never reaches a message or log line: errors name the variable it came from.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
import re
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pandas as pd
import sqlglot
from pydantic import PrivateAttr
from sqlglot import exp

from cdp_assets.engines.base import (
    RETRY_ATTEMPTS,
    TransientWarehouseError,
    WarehouseAuthError,
    WarehouseError,
    WarehouseResource,
    mask_secret,
)
from cdp_assets.engines.frames import column_kind, is_missing, typed_frame
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef
from cdp_assets.sql.pipeline import create_table_as

# The TD console that shows a job, by API endpoint (region); other endpoints get no link.
TD_CONSOLES = {
    "https://api.treasuredata.com": "https://console.treasuredata.com",
    "https://api.eu01.treasuredata.com": "https://console.eu01.treasuredata.com",
    "https://api.treasuredata.co.jp": "https://console.treasuredata.co.jp",
    "https://api.ap02.treasuredata.com": "https://console.ap02.treasuredata.com",
}

TD_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # how timestamps are written as text into TD

_FAILED_JOB = re.compile(r"job error: (\S+): (\w+)")

# tdclient logs every request's headers at DEBUG, the Authorization header (the API key)
# among them. Whatever a user sets the root logger to, those lines are not emitted.
logging.getLogger("tdclient.api").setLevel(logging.INFO)
# pytd warns on every REST-issued query that its cursor fetches whole results; that is intended.
logging.getLogger("pytd.query_engine").setLevel(logging.ERROR)


class TreasureDataUnavailable(TransientWarehouseError):
    """TD's API could not be reached or answered HTTP 5xx: which endpoint, how many attempts,
    and the last error the HTTP client met (tdclient itself says only "Retrying stopped")."""

    def __init__(self, endpoint: str, last_error: str, what: str | None, attempts: int = 1):
        self.endpoint, self.last_error, self.attempts = endpoint, last_error, attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"Treasure Data API unavailable at {endpoint}{tries}; last error: {last_error}", what)


def endpoint_for_messages(endpoint: str) -> str:
    """The endpoint without user info, query or fragment: a proxy URL may carry a password."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")) if parts.scheme else endpoint.split("@")[-1]
    except ValueError:
        return "(the configured endpoint)"


def transport_error_text(exc: BaseException) -> str:
    """What went wrong on the wire, in a line: urllib3's MaxRetryError names its reason."""
    reason = getattr(exc, "reason", None)
    exc = reason if isinstance(reason, BaseException) else exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"//[^/@\s]*@", "//", text)  # user info in a URL
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TreasureDataWarehouse(WarehouseResource):
    apikey: str | None = None
    endpoint: str = "https://api.treasuredata.com"
    query_engine: str = "presto"  # presto | trino (the same engine on TD) | hive
    # Jobs run in a database's context (created if missing); statements name their tables in full.
    database: str = "sample_datasets"
    console_url: str | None = None  # None: derived from the endpoint
    job_poll_seconds: float = 1.0  # how often a running job's status is asked for
    apikey_env: str = "TD_API_KEY"  # where the key came from, for messages that say what to fix
    max_concurrent_steps: int = 4  # steps of a run that may write at once, each with its own jobs

    _running_job: str | None = PrivateAttr(default=None)
    # The last transport error or HTTP 5xx of this thread's requests (see _watch_transport).
    _transport: threading.local = PrivateAttr(default_factory=threading.local)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["hive" if self.query_engine == "hive" else "trino"]

    @property
    def concurrent_steps(self) -> int:
        return self.max_concurrent_steps

    @property
    def _pytd_engine(self) -> str:
        return "hive" if self.query_engine == "hive" else "presto"

    def describe(self) -> str:
        return f"Treasure Data {self.endpoint} ({self.query_engine})"

    def connection_info(self) -> dict[str, str]:
        return {
            "engine": f"treasure_data ({self.query_engine})",
            "endpoint": self.endpoint,
            "database": self.database,
            "apikey": mask_secret(self.apikey),
        }

    def job_url(self, job_id: str) -> str | None:
        console = self.console_url or TD_CONSOLES.get(self.endpoint.rstrip("/"))
        return f"{console}/app/jobs/{job_id}" if console else None

    # ---------------------------------------------------------------- connections

    def _open(self) -> Any:
        import pytd

        if not self.apikey:
            raise WarehouseAuthError(f"no Treasure Data API key: set ${self.apikey_env}")
        # max_cumul_retry_delay=-1: tdclient gives up at the first 5xx; the base class retries.
        client = pytd.Client(
            apikey=self.apikey,
            endpoint=self.endpoint,
            database=self.database,
            default_engine=self._pytd_engine,
            max_cumul_retry_delay=-1,
        )
        engine = client.default_engine
        for holder in (
            client.api_client,
            getattr(engine, "tdclient_connection", None),
            getattr(engine, "engine", None),
        ):
            api = getattr(holder, "api", None)
            if api is not None and hasattr(api, "send_request"):
                self._watch_transport(api)
        return client

    def _watch_transport(self, api: Any) -> None:
        """Remember the last connection error or HTTP 5xx of this client's requests. tdclient
        swallows them and raises only "Retrying stopped after -1 seconds", which says neither
        what failed nor where; the engine's error quotes what is remembered here."""
        send = api.send_request
        transport = self._transport

        def send_request(*args: Any, **kwargs: Any) -> Any:
            transport.last = None
            try:
                response = send(*args, **kwargs)
            except Exception as exc:
                transport.last = transport_error_text(exc)
                raise
            if getattr(response, "status", 0) >= 500:
                transport.last = f"HTTP {response.status} {getattr(response, 'reason', '') or ''}".strip()
            return response

        api.send_request = send_request  # this client's API object only, not tdclient's class

    @contextmanager
    def _client(self) -> Iterator[Any]:
        with self.session():
            yield self._con

    def _check_connection(self) -> None:
        # API calls, not a query job: they cost nothing and fail fast on a bad key.
        def check(client):
            if self.database not in {d.name for d in client.api_client.databases()}:
                client.api_client.create_database(self.database)

        # verify_connection retries this check itself.
        self._api(check, "-- list databases (connection check)", verify=False, retry=False)

    def _error(self, exc: BaseException, what: str) -> WarehouseError:
        from tdclient import errors as td

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (td.AuthError, td.ForbiddenError)):
            return WarehouseAuthError(
                f"Treasure Data refused the API key in ${self.apikey_env} at {self.endpoint} ({text}); "
                f"set ${self.apikey_env} to a valid master API key for this region",
                what,
            )
        if isinstance(exc, td.APIError) and ("Retrying stopped" in text or re.match(r"5\d\d:", text)):
            last = getattr(self._transport, "last", None) or text
            return TreasureDataUnavailable(endpoint_for_messages(self.endpoint), last, what)
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return TransientWarehouseError(f"Treasure Data API connection: {text}", what)
        return WarehouseError(f"Treasure Data: {text}", what)

    def with_retries(self, attempt, what: str):
        """The base class's retries; when TD stays unavailable, the error says after how many
        attempts (a retried call inside a retried statement multiplies them)."""
        try:
            return super().with_retries(attempt, what)
        except TreasureDataUnavailable as exc:
            raise TreasureDataUnavailable(exc.endpoint, exc.last_error, exc.sql, exc.attempts * RETRY_ATTEMPTS) from exc

    def _api(self, call, what: str, verify: bool = True, retry: bool = True) -> Any:
        """One call of TD's REST API through pytd's client, its errors mapped to the engine's.
        Transient errors are retried like statements; ``retry=False`` for a call that must not
        run twice (a swap repeated would swap the tables back)."""
        if verify:
            self.verify_connection()

        def attempt() -> Any:
            with self._client() as client:
                try:
                    return call(client)
                except WarehouseError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to the engine's error kinds
                    raise self._error(exc, what) from exc

        return self.with_retries(attempt, what) if retry else attempt()

    # ---------------------------------------------------------------- jobs

    def _job(self, sql: str) -> tuple[list, list[list[str]]]:
        """Issue ``sql`` as a TD job, wait for it, and return its rows and result schema."""
        from tdclient import errors as td

        with self._client() as client:
            try:
                result = client.query(
                    sql, force_tdclient=True, wait_interval=self.job_poll_seconds, wait_callback=self._note_running
                )
            except td.InternalError as exc:
                failed = _FAILED_JOB.search(str(exc))
                if not failed:
                    raise self._error(exc, sql) from exc
                job_id = failed.group(1)
                self.record_job(job_id, self.job_url(job_id))
                raise WarehouseError(self._failure_message(client, job_id, failed.group(2)), sql) from None
            except Exception as exc:  # noqa: BLE001 - mapped to the engine's error kinds
                raise self._error(exc, sql) from exc
            finally:
                self._running_job = None
            job_id = str(client.query_executed)
            self.record_job(job_id, self.job_url(job_id))
            if not result["columns"]:
                return result["data"], []
            # tdclient's cursor keeps only the names; the types are in the job's result schema.
            # Inside the statement's own retries: not retried again here.
            return result["data"], self._api(lambda c: c.api_client.job(job_id).result_schema or [], sql, retry=False)

    def _failure_message(self, client: Any, job_id: str, status: str) -> str:
        try:
            debug = client.api_client.job(job_id).debug or {}
            detail = (debug.get("stderr") or debug.get("cmdout") or "").strip()
        except Exception as exc:  # noqa: BLE001 - the failure itself matters more
            detail = f"(its message could not be read: {exc})"
        link = self.job_url(job_id)
        return (
            f"Treasure Data job {job_id} {status}" + (f" ({link})" if link else "") + (f": {detail}" if detail else "")
        )

    def _execute(self, sql: str) -> None:
        self._job(sql)

    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        rows, schema = self._job(bind_literals(sql, params, self.dialect.sqlglot_name) if params else sql)
        return typed_frame(rows, [(c[0], c[1]) for c in schema])

    def _note_running(self, cursor: Any) -> None:
        # Called by tdclient on each poll of a job still running: its id, for a cancel.
        self._running_job = str(cursor.show_job()["job_id"])

    def _cancel_running(self) -> None:
        job_id = self._running_job
        if job_id:
            self._api(lambda c: c.api_client.kill(job_id), f"-- kill job {job_id}")

    @property
    def counts_rows_without_a_query(self) -> bool:
        return True  # the table listing's ``count`` (row_counts)

    @property
    def describes_without_a_statement(self) -> bool:
        return True  # the table's schema from the REST API

    @property
    def inlines_scratch_tables(self) -> bool:
        # Every CREATE TABLE AS is a job, and Trino has no session temporary tables. Hive keeps the
        # scratch tables: it needs an alias on every subquery in FROM and limits correlated ones.
        return self.query_engine != "hive"

    def create_table_counted(self, ref: TableRef, select_sql: str, params: list | None = None) -> int:
        # Trino answers CREATE TABLE AS with one row, the rows written: no second job to count
        # them. Hive answers nothing: its table's count comes from the table listing (no job).
        # ``params`` become typed literals of the parsed statement (bind_literals).
        answer = self.fetch(create_table_as(ref, select_sql), params)
        if list(answer.columns) == ["rows"] and len(answer) == 1:
            return int(answer.iloc[0, 0])
        return self.row_count(ref)

    # ---------------------------------------------------------------- databases and tables

    def list_tables(self, schema: str) -> list[str]:
        from tdclient import errors as td

        try:
            return sorted(self._api(lambda c: _table_listing(c.api_client.api, schema), f"-- list tables of {schema}"))
        except WarehouseError as exc:
            if isinstance(exc.__cause__, td.NotFoundError):
                return []
            raise

    def table_exists(self, ref: TableRef) -> bool:
        return ref.name in self.list_tables(ref.schema)

    def create_scratch(self, ref: TableRef, select_sql: str, params: list | None = None) -> int:
        # A scratch table is written once, read, and dropped: the count its CREATE TABLE AS
        # answered stays its count. The loop's decisions (edges left) use that answer, not the
        # table listing's counter.
        self._scratch_rows[ref] = rows = self.create_table_counted(ref, select_sql, params)
        return rows

    def _counted_rows(self, ref: TableRef) -> int:
        return self.row_counts([ref])[ref]

    def row_counts(self, refs: list[TableRef]) -> dict[TableRef, int]:
        """From TD's table listing, which carries each table's record count (``count``,
        ``GET /v3/table/list/:db``): one API call per database and no job, where a
        ``COUNT(*)`` is a job with its queueing."""
        out: dict[TableRef, int] = {}
        by_schema: dict[str, dict] = {}
        for ref in dict.fromkeys(refs):
            if ref.schema not in by_schema:
                by_schema[ref.schema] = self._api(
                    lambda c, s=ref.schema: _table_listing(c.api_client.api, s), f"-- row counts in {ref.schema}"
                )
            table = by_schema[ref.schema].get(ref.name)
            if table is None:
                raise WarehouseError(f"table {ref.display} does not exist, so it has no row count")
            out[ref] = int(table["count"] or 0)
        return out

    def columns(self, ref: TableRef) -> list[str]:
        tables = self._api(lambda c: _table_listing(c.api_client.api, ref.schema), f"-- columns of {ref.display}")
        if ref.name not in tables:
            raise WarehouseError(f"table {ref.display} does not exist")
        # TD's schema leaves out the `time` column every TD table has.
        return [c[0] for c in tables[ref.name]["schema"]] + ["time"]

    def describe_tables(self, refs: list[TableRef]) -> dict[TableRef, list[tuple[str, str]] | None]:
        from tdclient import errors as td

        out: dict[TableRef, list[tuple[str, str]] | None] = {}
        by_schema: dict[str, dict] = {}
        for ref in dict.fromkeys(refs):
            if ref.schema not in by_schema:  # one API call per database, no job
                try:
                    by_schema[ref.schema] = self._api(
                        lambda c, s=ref.schema: _table_listing(c.api_client.api, s),
                        f"-- describe tables of {ref.schema}",
                    )
                except WarehouseError as exc:
                    if not isinstance(exc.__cause__, td.NotFoundError):
                        raise
                    by_schema[ref.schema] = {}
            table = by_schema[ref.schema].get(ref.name)
            # TD's schema leaves out the `time` column every TD table has.
            out[ref] = None if table is None else [(c[0], str(c[1])) for c in table["schema"]] + [("time", "bigint")]
        return out

    def _create_schema(self, schema: str) -> None:
        def create(client):
            from tdclient import errors as td_errors

            if not client.exists(schema):
                try:
                    client.api_client.create_database(schema)
                except td_errors.AlreadyExistsError:
                    pass  # a concurrent step created it first

        self._api(create, f"-- create database {schema}")

    def swap_in(self, staging: TableRef, final: TableRef) -> None:
        """TD's table swap exchanges the two names at once; the old table (now under the
        staging name) is then deleted. A first publish swaps with a new empty table.

        The swap itself is not retried: had a lost answer hidden a swap that happened, a second
        one would put the old table back. A failed swap fails the step, and the build drops
        the staging table, which holds the old data if the swap did happen, the new if not."""

        def create_final(client):
            if final.name not in _table_listing(client.api_client.api, final.schema):
                client.api_client.create_log_table(final.schema, final.name)

        what = f"-- swap {staging.display} into {final.display}"
        self._api(create_final, what)
        self._api(lambda c: c.api_client.swap_table(final.schema, staging.name, final.name), what, retry=False)
        self.drop(staging)

    def drop(self, ref: TableRef) -> None:
        self._scratch_rows.pop(ref, None)
        if self.table_exists(ref):
            self._api(lambda c: c.api_client.delete_table(ref.schema, ref.name), f"-- delete table {ref.display}")

    # ---------------------------------------------------------------- DataFrames

    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        self._bulk_import(ref, df, "error")

    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> None:
        # TD has no transactions: the frames land in order, the log row last, so a failure
        # leaves no log row for rows that did not land.
        for ref, df in frames:
            self._bulk_import(ref, df, "append")

    def _bulk_import(self, ref: TableRef, df: pd.DataFrame, if_exists: str) -> None:
        self.ensure_schema(ref.schema)
        if df.empty:
            # No rows to carry the columns: the table is created with its schema declared.
            def declare(client):
                from tdclient import errors as td_errors

                api = client.api_client
                tables = _table_listing(api.api, ref.schema)
                if ref.name not in tables:
                    try:
                        api.create_log_table(ref.schema, ref.name)
                    except td_errors.AlreadyExistsError:
                        pass  # a concurrent step created it first
                current = [list(c) for c in (tables[ref.name]["schema"] or [])] if ref.name in tables else []
                have = {c[0] for c in current} | {"time"}
                new = [[c, _td_column_type(df[c]), c] for c in df.columns if c not in have]
                if new:
                    api.update_schema(ref.schema, ref.name, current + new)

            self._api(declare, f"-- create table {ref.display} with its columns")
            return
        name = f"cdp_{uuid.uuid4().hex}"
        what = f"-- bulk import {name} into {ref.display} ({len(df)} rows)"
        part = _msgpack_part(df)
        poll = self.job_poll_seconds

        def load(client):
            from tdclient import errors as td_errors

            api = client.api_client
            exists = ref.name in _table_listing(api.api, ref.schema)
            if exists and if_exists == "error":
                raise WarehouseError(f"table {ref.display} already exists", what)
            if not exists:
                try:
                    api.create_log_table(ref.schema, ref.name)
                except td_errors.AlreadyExistsError:
                    exists = True  # a concurrent step created it first: append to it
            session = api.create_bulk_import(name, ref.schema, ref.name, params={"mode": "append"} if exists else None)
            try:
                session.upload_part("part-0", io.BytesIO(part), len(part))
                session.freeze()
                job = session.perform(wait=True, wait_interval=poll)
                self.record_job(str(job.job_id), self.job_url(str(job.job_id)))
                if not job.success():
                    raise WarehouseError(self._failure_message(client, str(job.job_id), str(job.status())), what)
                if session.error_records:
                    raise WarehouseError(
                        f"Treasure Data rejected {session.error_records} of {len(df)} rows of bulk import {name}", what
                    )
                session.commit(wait=True, wait_interval=poll)
            finally:
                session.delete()

        # Not retried whole: a commit whose answer was lost would load the rows twice.
        self._api(load, what, retry=False)


def _table_listing(api: Any, schema: str) -> dict[str, dict]:
    """TD's table listing of ``schema`` (``GET /v3/table/list/{db}``): table name -> its entry, with
    ``count`` (rows) and ``schema`` (``[[column, type, alias], ...]``) read from the JSON. The same
    request as tdclient's ``tables()``, which also parses four dates of every table with dateutil:
    a run lists a schema's tables hundreds of times, and that parsing was a tenth of a whole run's
    client-side time on the fake (2026-12-05, docs/tests.md). Errors are raised as tdclient's
    (``NotFoundError`` for a missing database)."""
    import json

    from tdclient.util import create_url

    with api.get(create_url("/v3/table/list/{db}", db=schema)) as res:
        code, body = res.status, res.read()
        if code != 200:
            api.raise_error("List tables failed", res, body)
        tables = api.checked_json(body, ["tables"])["tables"]
    return {
        t["name"]: {"count": int(t.get("count") or 0), "schema": json.loads(t.get("schema") or "[]")} for t in tables
    }


# TD stores long, double, boolean and string columns; timestamps go in as text.
_TD_TYPES = {"boolean": "boolean", "integer": "long", "float": "double"}


def _td_column_type(s: pd.Series) -> str:
    return _TD_TYPES.get(column_kind(s), "string")


def _msgpack_part(df: pd.DataFrame) -> bytes:
    """One bulk-import part: gzipped msgpack records. TD needs a ``time`` column (unix
    seconds); a frame without one gets the load time, as pytd's writer does."""
    now = int(time.time())
    buf = io.BytesIO()
    with gzip.GzipFile(mode="wb", fileobj=buf) as gz:
        packer = msgpack.Packer()
        for record in df.astype(object).to_dict(orient="records"):
            record = {k: _td_value(v) for k, v in record.items()}
            record.setdefault("time", now)
            gz.write(packer.pack(record))
    return buf.getvalue()


def _td_value(v: Any) -> Any:
    """A cell as TD stores it: NULL for every kind of missing (never the text 'NaT'),
    timestamps as the text TD and Trino read back, numpy scalars as Python values."""
    if is_missing(v):
        return None
    if isinstance(v, (dt.datetime, pd.Timestamp)):
        return pd.Timestamp(v).strftime(TD_TIMESTAMP)
    return v.item() if hasattr(v, "item") else v


def bind_literals(sql: str, params: list, dialect: str) -> str:
    """Put ``params`` into ``sql``'s ``?`` placeholders as typed literals of the parsed
    statement (TD's job API has no bind parameters). Quoting is sqlglot's, per dialect."""
    values = list(params)
    tree = sqlglot.parse_one(sql, read=dialect)
    holes = list(tree.find_all(exp.Placeholder, bfs=False))  # in the order they are written
    if len(holes) != len(values):
        raise WarehouseError(f"the statement has {len(holes)} placeholders but {len(values)} values were given", sql)
    for hole, value in zip(holes, values):
        hole.replace(_literal(value))
    return tree.sql(dialect=dialect)


def _literal(v: Any) -> exp.Expression:
    if is_missing(v):
        return exp.null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, (int, float)) or hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return exp.Literal.number(v.item() if hasattr(v, "item") else v)
    if isinstance(v, (dt.datetime, pd.Timestamp)):
        return exp.cast(exp.Literal.string(pd.Timestamp(v).strftime(TD_TIMESTAMP)), exp.DataType.build("timestamp"))
    if isinstance(v, str):
        return exp.Literal.string(v)
    raise WarehouseError(f"cannot bind a value of type {type(v).__name__} for Treasure Data")
