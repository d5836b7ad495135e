"""A fake of Treasure Data's REST API on loopback: the one boundary these tests fake.

It serves the subset of ``/v3`` that pytd and td-client-python call (databases, tables, query
jobs, job status/show/result, bulk import sessions), with TD's status codes and JSON shapes,
so the engine's real pytd/tdclient code runs unchanged against it. Queries run on an
in-memory DuckDB after sqlglot reads them in the job's dialect (Trino for ``presto``/``trino``
jobs, Hive for ``hive`` jobs): a statement the real engine would reject for its dialect
fails here too, and a result is computed, not scripted. An ``EXPLAIN`` job plans its statement
on those tables without running it (one row of plan text). TD's regular expressions are
Java-style: a pattern read from a table (a valid_regexp rule) is evaluated with Java's meaning
by the engine's own ``java_regex_matches`` (cdp_assets/engines/java_regex.py).

Switches for faults: ``fail_requests`` answers the next N requests under a path with an HTTP
status (a 5xx outage), ``fail_jobs`` makes jobs whose SQL contains a text end in ``error``
with a message on the job's stderr, ``hold_jobs`` keeps such jobs ``running`` until killed, and
every request must carry ``Authorization: TD1 <key>`` with the key the server was started with
(401 otherwise).
"""

from __future__ import annotations

import datetime as dt
import decimal
import email.parser
import email.policy
import gzip
import io
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

import duckdb
import msgpack
import pandas as pd
import sqlglot

from cdp_assets.engines.java_regex import register_java_regex
from cdp_assets.sql.dialects import JAVA_REGEX_FUNCTION
from cdp_assets_tests.loopback import LoopbackServer

_DUCK_TYPES = {
    "int": "BIGINT",
    "long": "BIGINT",
    "double": "DOUBLE",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
}
_JOB_DIALECT = {"presto": "trino", "trino": "trino", "hive": "hive"}
# After the comment lines clients put first (pytd's `-- client: ...`); the plain form only,
# no `(TYPE ...)` options.
_EXPLAIN = re.compile(r"(?:\s*--[^\n]*\n)*\s*EXPLAIN\s+(?!\()(.*)", re.DOTALL | re.IGNORECASE)


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


@dataclass
class _Job:
    job_id: str
    type: str
    database: str
    query: str
    status: str = "queued"
    rows: list = field(default_factory=list)
    schema: list = field(default_factory=list)  # [[name, td type], ...]
    stderr: str | None = None


@dataclass
class _BulkImport:
    name: str
    database: str
    table: str
    parts: dict = field(default_factory=dict)
    status: str = "uploading"
    frozen: bool = False
    job_id: str | None = None
    valid_records: int = 0
    error_records: int = 0
    rows: list = field(default_factory=list)


class FakeTreasureData:
    """Start with ``start()`` (returns the endpoint URL), stop with ``stop()``."""

    def __init__(self, apikey: str):
        self.apikey = apikey
        self._db = duckdb.connect(":memory:")
        register_java_regex(self._db)
        # Trino's FORMAT_DATETIME, for the one pattern the engine writes (how a query's TIMESTAMP
        # is stored as text: ``dialects.timestamp_as_stored_text``), giving the text a table
        # stores (``_store_times_as_text``); any other pattern fails, as the fake cannot vouch for it.
        self._db.execute(
            "CREATE TEMP MACRO format_datetime(ts, pattern) AS CASE WHEN pattern = 'yyyy-MM-dd HH:mm:ss.SSS' "
            "THEN strftime(CAST(ts AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%g') "
            "ELSE error('format_datetime: the fake knows no pattern ' || pattern) END"
        )
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self.jobs: dict[str, _Job] = {}
        self._imports: dict[str, _BulkImport] = {}
        self._failures: list[list] = []  # [path prefix, status, remaining]
        self._job_faults: list[tuple[str, str]] = []
        self._held: list[str] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.seen_headers: list[dict] = []
        self._server: LoopbackServer | None = None

    # ---------------------------------------------------------------- control

    def start(self) -> str:
        # keep-alive: pytd's client keeps its connection open between requests, as on TD
        self._server = LoopbackServer(self._handle, methods=("GET", "POST", "PUT", "DELETE"), keep_alive=True)
        return self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def fail_requests(self, status: int, times: int = 1, path_prefix: str = "/") -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with HTTP ``status``."""
        self._failures.append([path_prefix, status, times])

    def fail_jobs(self, containing: str, message: str) -> None:
        """Jobs whose SQL contains ``containing`` end in ``error`` with ``message`` on stderr."""
        self._job_faults.append((containing, message))

    def hold_jobs(self, containing: str) -> None:
        """Jobs whose SQL contains ``containing`` stay ``running`` until killed."""
        self._held.append(containing)

    def sql(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Look at the backing tables directly (test assertions)."""
        with self._lock:
            return self._db.execute(sql, params or []).df()

    # ---------------------------------------------------------------- HTTP

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        self.seen_headers.append(dict(h.headers))
        try:
            if h.headers.get("authorization") != f"TD1 {self.apikey}":
                raise _Reject(401, "Authentication failed: the API key is invalid or expired")
            for failure in self._failures:
                if path.startswith(failure[0]) and failure[2] > 0:
                    failure[2] -= 1
                    raise _Reject(failure[1], "Service Temporarily Unavailable")
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            params.update(_form(h.headers.get("content-type", ""), body) if h.command == "POST" else {})
            with self._lock:
                status, payload, ctype = self._route(h.command, path, params, body)
        except _Reject as rej:
            status, ctype = rej.status, "application/json"
            payload = json.dumps({"error": rej.message, "message": rej.message, "severity": "error"}).encode()
        self.requests.append((h.command, path, status))
        h.send_response(status)
        h.send_header("content-type", ctype)
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _route(self, method: str, path: str, params: dict, body: bytes) -> tuple[int, bytes, str]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v3"]:
            raise _Reject(404, f"no such endpoint: {path}")
        verb = "/".join(parts[1:3])
        args = parts[3:]
        handler = {
            "database/list": self._database_list,
            "database/create": self._database_create,
            "table/list": self._table_list,
            "table/create": self._table_create,
            "table/delete": self._table_delete,
            "table/swap": self._table_swap,
            "table/update-schema": self._table_update_schema,
            "job/issue": self._job_issue,
            "job/status": self._job_status,
            "job/show": self._job_show,
            "job/result": self._job_result,
            "job/kill": self._job_kill,
            "bulk_import/create": self._bi_create,
            "bulk_import/upload_part": self._bi_upload,
            "bulk_import/freeze": self._bi_freeze,
            "bulk_import/perform": self._bi_perform,
            "bulk_import/show": self._bi_show,
            "bulk_import/commit": self._bi_commit,
            "bulk_import/delete": self._bi_delete,
        }.get(verb)
        if handler is None:
            raise _Reject(404, f"no such endpoint: {method} {path}")
        result = handler(args, params, body)
        if isinstance(result, bytes):
            return 200, result, "application/x-msgpack"
        return 200, json.dumps(result, default=str).encode(), "application/json"

    # ---------------------------------------------------------------- databases and tables

    def _databases(self) -> list[str]:
        rows = self._db.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database()"
        ).fetchall()
        return sorted(r[0] for r in rows if r[0] not in ("main", "information_schema", "pg_catalog"))

    def _need_db(self, db: str) -> None:
        if db not in self._databases():
            raise _Reject(404, f"Database '{db}' does not exist")

    def _tables(self, db: str) -> list[str]:
        rows = self._db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [db]
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _need_table(self, db: str, table: str) -> None:
        self._need_db(db)
        if table not in self._tables(db):
            raise _Reject(404, f"Table '{db}.{table}' does not exist")

    def _database_list(self, args, params, body):
        return {
            "databases": [
                {"name": d, "count": 0, "permission": "administrator", "created_at": "2026-01-01 00:00:00 UTC"}
                for d in self._databases()
            ]
        }

    def _database_create(self, args, params, body):
        (db,) = args
        if db in self._databases():
            raise _Reject(409, f"Database '{db}' already exists")
        self._db.execute(f"CREATE SCHEMA {_q(db)}")
        return {"database": db}

    def _table_list(self, args, params, body):
        (db,) = args
        self._need_db(db)
        out = []
        # One catalog query for every table of the database (one per table made listing slow).
        by_table: dict[str, list] = {}
        for t, c, ty in self._db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "ORDER BY table_name, ordinal_position",
            [db],
        ).fetchall():
            by_table.setdefault(t, []).append((c, ty))
        for t in self._tables(db):
            schema = [[c, _td_type(ty), c] for c, ty in by_table.get(t, []) if c != "time"]
            count = self._db.execute(f"SELECT COUNT(*) FROM {_q(db)}.{_q(t)}").fetchone()[0]
            # `count` is the table's record count, as TD documents it (required, with the time
            # the counter was updated): computed here, so it is exact after every write.
            out.append(
                {
                    "name": t,
                    "type": "log",
                    "count": count,
                    "counter_updated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "schema": json.dumps(schema),
                    "estimated_storage_size": 0,
                }
            )
        return {"tables": out, "database": db}

    def _table_create(self, args, params, body):
        db, table, _kind = args
        self._need_db(db)
        if table in self._tables(db):
            raise _Reject(409, f"Table '{db}.{table}' already exists")
        self._db.execute(f'CREATE TABLE {_q(db)}.{_q(table)} ("time" BIGINT)')
        return {"database": db, "table": table, "type": "log"}

    def _table_delete(self, args, params, body):
        db, table = args
        self._need_table(db, table)
        self._db.execute(f"DROP TABLE {_q(db)}.{_q(table)}")
        return {"database": db, "table": table, "type": "log"}

    def _table_swap(self, args, params, body):
        db, t1, t2 = args
        self._need_table(db, t1)
        self._need_table(db, t2)
        tmp = f"__swap_{next(self._ids)}"
        self._db.execute("BEGIN")
        for a, b in ((t1, tmp), (t2, t1), (tmp, t2)):
            self._db.execute(f"ALTER TABLE {_q(db)}.{_q(a)} RENAME TO {_q(b)}")
        self._db.execute("COMMIT")
        return {"database": db, "table1": t1, "table2": t2}

    def _table_update_schema(self, args, params, body):
        db, table = args
        self._need_table(db, table)
        have = {r[0] for r in self._db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", [db, table]
        ).fetchall()}  # fmt: skip
        for name, td_type, *_ in json.loads(params.get("schema", "[]")):
            if name not in have:
                self._db.execute(
                    f"ALTER TABLE {_q(db)}.{_q(table)} ADD COLUMN {_q(name)} {_DUCK_TYPES.get(td_type, 'VARCHAR')}"
                )
        return {"database": db, "table": table, "type": "log"}

    # ---------------------------------------------------------------- query jobs

    def _job_issue(self, args, params, body):
        kind, db = args
        if kind not in _JOB_DIALECT:
            raise _Reject(422, f"unsupported job type {kind!r}")
        self._need_db(db)
        job = _Job(str(next(self._ids)), kind, db, params.get("query", ""))
        self.jobs[job.job_id] = job
        self._run_job(job)
        return {"job_id": job.job_id, "database": db}

    def _run_job(self, job: _Job) -> None:
        if any(text in job.query for text in self._held):
            job.status = "running"
            return
        for text, message in self._job_faults:
            if text in job.query:
                job.status, job.stderr = "error", message
                return
        explain = _EXPLAIN.match(job.query)
        try:
            # sqlglot keeps EXPLAIN as opaque text: the statement it explains is read in the job's
            # dialect like any other, so a query the engine cannot parse fails its EXPLAIN too.
            trees = sqlglot.parse(explain.group(1) if explain else job.query, read=_JOB_DIALECT[job.type])
            statements = [s for t in trees if t is not None and (s := _java_regex(t).sql(dialect="duckdb")).strip()]
        except sqlglot.errors.ParseError as exc:
            job.status, job.stderr = "error", f"line 1: mismatched input: {str(exc).splitlines()[0]}"
            return
        if explain:
            self._explain_job(job, statements)
            return
        try:
            self._db.execute(f"USE {_q(job.database)}")
            cur = None
            for stmt in statements:
                cur = self._db.execute(stmt)
            created = _ctas_target(job.query, _JOB_DIALECT[job.type])
            if created is not None:
                self._store_times_as_text(created)
            if created is not None and job.type != "hive":
                # Trino answers CREATE TABLE AS with the number of rows written; Hive with nothing.
                job.schema = [["rows", "bigint"]]
                job.rows = [[self._db.execute(f"SELECT COUNT(*) FROM {created}").fetchone()[0]]]
            elif created is None and cur is not None and cur.description:
                job.schema = [[d[0], _td_type(str(d[1]))] for d in cur.description]
                job.rows = [[_wire(v) for v in row] for row in cur.fetchall()]
            job.status = "success"
        except duckdb.Error as exc:
            job.status, job.stderr = "error", f"Query {job.job_id} failed: {str(exc).splitlines()[0]}"
        finally:
            self._db.execute("USE memory.main")

    def _store_times_as_text(self, table: str) -> None:
        """TD's storage has no timestamp or date type (int, long, double, float, string, array,
        map): a table written by a query keeps such columns as the text Trino casts them to, as
        a bulk import keeps them. Reads must cast them back (``Dialect.stored_timestamp``)."""
        columns = self._db.execute(f"SELECT * FROM {table} LIMIT 0").description
        for name, type_code, *_ in columns:
            kind = str(type_code).upper()
            if kind.startswith("TIMESTAMP") or kind == "DATE":
                fmt = "%Y-%m-%d" if kind == "DATE" else "%Y-%m-%d %H:%M:%S.%g"
                self._db.execute(
                    f"ALTER TABLE {table} ALTER COLUMN {_q(name)} TYPE VARCHAR USING strftime({_q(name)}, '{fmt}')"
                )

    def _explain_job(self, job: _Job, statements: list[str]) -> None:
        """EXPLAIN plans one statement without running it: DuckDB binds and plans it (a missing
        table or column fails, as on Trino and Hive) and its plan is the job's one row, in the
        column Trino (``Query Plan``) or Hive (``Explain``) names."""
        if len(statements) != 1:
            job.status, job.stderr = "error", "line 1: EXPLAIN takes exactly one statement"
            return
        try:
            self._db.execute(f"USE {_q(job.database)}")
            plan = self._db.execute(f"EXPLAIN {statements[0]}").fetchall()
            job.schema = [["Explain" if job.type == "hive" else "Query Plan", "varchar"]]
            job.rows = [["\n".join(str(row[-1]) for row in plan)]]
            job.status = "success"
        except duckdb.Error as exc:
            job.status, job.stderr = "error", f"Query {job.job_id} failed: {str(exc).splitlines()[0]}"
        finally:
            self._db.execute("USE memory.main")

    def _job(self, job_id: str) -> _Job:
        if job_id not in self.jobs:
            raise _Reject(404, f"Job {job_id} does not exist")
        return self.jobs[job_id]

    def _job_status(self, args, params, body):
        job = self._job(args[0])
        return {"job_id": job.job_id, "status": job.status}

    def _job_show(self, args, params, body):
        job = self._job(args[0])
        return {
            "job_id": job.job_id,
            "type": job.type,
            "query": job.query,
            "status": job.status,
            "database": job.database,
            "url": f"https://console.treasuredata.com/app/jobs/{job.job_id}",
            "hive_result_schema": json.dumps(job.schema) if job.schema else None,
            "num_records": len(job.rows),
            "debug": {"cmdout": "", "stderr": job.stderr or ""},
        }

    def _job_result(self, args, params, body):
        job = self._job(args[0])
        if job.status != "success":
            raise _Reject(404, f"Job {job.job_id} has no result (status {job.status})")
        return b"".join(msgpack.packb(row) for row in job.rows)

    def _job_kill(self, args, params, body):
        job = self._job(args[0])
        former, job.status = job.status, "killed" if job.status in ("queued", "running") else job.status
        return {"job_id": job.job_id, "former_status": former}

    # ---------------------------------------------------------------- bulk import

    def _bi(self, name: str) -> _BulkImport:
        if name not in self._imports:
            raise _Reject(404, f"Bulk import session {name} does not exist")
        return self._imports[name]

    def _bi_create(self, args, params, body):
        name, db, table = args
        self._need_table(db, table)
        if name in self._imports:
            raise _Reject(409, f"Bulk import session {name} already exists")
        self._imports[name] = _BulkImport(name, db, table)
        return {"name": name, "bulk_import": name}

    def _bi_upload(self, args, params, body):
        name, part = args
        bi = self._bi(name)
        if bi.frozen:
            raise _Reject(422, f"Bulk import session {name} is frozen")
        bi.parts[part] = body
        return {"name": name}

    def _bi_freeze(self, args, params, body):
        self._bi(args[0]).frozen = True
        return {"name": args[0]}

    def _bi_perform(self, args, params, body):
        bi = self._bi(args[0])
        if not bi.frozen:
            raise _Reject(422, f"Bulk import session {bi.name} is not frozen")
        job = _Job(str(next(self._ids)), "bulkload", bi.database, f"-- bulk import {bi.name}")
        self.jobs[job.job_id] = job
        for part in sorted(bi.parts):
            for row in msgpack.Unpacker(io.BytesIO(gzip.decompress(bi.parts[part])), raw=False):
                if isinstance(row, dict) and "time" in row:
                    bi.rows.append(row)
                    bi.valid_records += 1
                else:
                    bi.error_records += 1  # TD rejects records without a time column
        bi.status, bi.job_id, job.status = "ready", job.job_id, "success"
        return {"job_id": job.job_id, "name": bi.name}

    def _bi_show(self, args, params, body):
        bi = self._bi(args[0])
        return {
            "name": bi.name, "database": bi.database, "table": bi.table, "status": bi.status,
            "upload_frozen": bi.frozen, "job_id": bi.job_id, "valid_records": bi.valid_records,
            "error_records": bi.error_records, "valid_parts": len(bi.parts), "error_parts": 0,
        }  # fmt: skip

    def _bi_commit(self, args, params, body):
        bi = self._bi(args[0])
        if bi.status != "ready":
            raise _Reject(422, f"Bulk import session {bi.name} is not ready to commit (status {bi.status})")
        if bi.rows:
            self._append_rows(bi.database, bi.table, bi.rows)
        bi.status = "committed"
        return {"name": bi.name}

    def _bi_delete(self, args, params, body):
        self._imports.pop(self._bi(args[0]).name)
        return {"name": args[0]}

    def _append_rows(self, db: str, table: str, rows: list[dict]) -> None:
        """Add the records as TD does: schema on write, a new column for a new key."""
        target = f"{_q(db)}.{_q(table)}"
        have = {r[0] for r in self._db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", [db, table]
        ).fetchall()}  # fmt: skip
        frame = pd.DataFrame.from_records(rows)
        for col in frame.columns:
            if col not in have:
                self._db.execute(f"ALTER TABLE {target} ADD COLUMN {_q(col)} {_column_type(frame[col])}")
        self._db.register("_bulk_rows", frame)
        try:
            self._db.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _bulk_rows")
        finally:
            self._db.unregister("_bulk_rows")


def _java_regex(tree: sqlglot.exp.Expression) -> sqlglot.exp.Expression:
    """A regular expression whose pattern is not a literal (a rules table's valid_regexp) is
    evaluated as TD does, with Java's meaning, not by DuckDB's RE2. Literal patterns are the
    project's own, written to read alike in both, and stay on RE2."""

    def rewrite(node: sqlglot.exp.Expression) -> sqlglot.exp.Expression:
        if isinstance(node, sqlglot.exp.RegexpLike) and not isinstance(node.expression, sqlglot.exp.Literal):
            return sqlglot.exp.Anonymous(
                this=JAVA_REGEX_FUNCTION, expressions=[node.this.copy(), node.expression.copy()]
            )
        return node

    return tree.transform(rewrite)


def _ctas_target(query: str, dialect: str) -> str | None:
    """The table a CREATE TABLE AS statement creates (quoted for DuckDB), else None."""
    try:
        tree = sqlglot.parse_one(query, read=dialect)
    except sqlglot.errors.ParseError:
        return None
    if isinstance(tree, sqlglot.exp.Create) and tree.args.get("expression") is not None:
        return tree.this.find(sqlglot.exp.Table).sql(dialect="duckdb")
    return None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _form(content_type: str, body: bytes) -> dict:
    """POST fields: urllib3 sends them as multipart/form-data; url-encoded is accepted too."""
    if content_type.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"content-type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        return {p.get_param("name", header="content-disposition"): p.get_content() for p in msg.iter_parts()}
    if body:
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}
    return {}


def _td_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.endswith("[]"):
        return f"array({_td_type(t[:-2])})"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "bigint"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "double"
    if t == "BOOLEAN":
        return "boolean"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    return "varchar"


def _column_type(s: pd.Series) -> str:
    values = [v for v in s.tolist() if v is not None and not (isinstance(v, float) and v != v)]
    if values and all(isinstance(v, bool) for v in values):
        return "BOOLEAN"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "BIGINT"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "DOUBLE"
    if values and all(isinstance(v, list) for v in values):
        return "VARCHAR[]"
    return "VARCHAR"


def _wire(v):
    """A value as TD's msgpack result carries it: timestamps as text, decimals as doubles."""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_wire(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _wire(x) for k, x in v.items()}
    return v
