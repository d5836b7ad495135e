"""A local Spark session as a warehouse: the Databricks dialect run for real, for tests and dev.

Spark SQL is what Databricks runs, minus Delta: tables here are parquet, so nothing may need
``MERGE INTO`` or ``OPTIMIZE`` (the pipeline builds tables with CREATE TABLE AS and swaps them
in). The dialect is ``spark``, not ``databricks``: this engine runs Apache Spark, which
accepts exactly the ``spark`` rendering; sqlglot's ``databricks`` dialect may emit
Databricks-only syntax that open-source Spark rejects.

One ``SparkSession`` per process (Spark allows one active session per JVM): created lazily on
first use and reused by every instance. Its warehouse directory is fixed by the first instance
that starts it (``spark.sql.warehouse.dir`` is a static setting); tables live in Spark's
in-memory catalog, so they last as long as the process (enough for tests and dev runs).

Not transactional: a swap is DROP + RENAME (a sub-second window without the table), and
``append_frames`` appends the rows, then the log row; if the second append fails the first
is not rolled back (it is reported as a WarehouseError).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from cdp_assets.engines.base import WarehouseError, WarehouseResource
from cdp_assets.sql.dialects import DIALECTS, Dialect, TableRef

log = logging.getLogger("cdp_assets.engines.spark")

_LOCK = threading.Lock()
_SESSION: Any = None  # the process's SparkSession
_SESSION_DIR: str | None = None  # the warehouse dir it was started with


def _bq(identifier: str) -> str:
    """Backtick-quote an identifier for Spark (identifiers here passed check_identifier)."""
    return "`" + identifier.replace("`", "``") + "`"


def _spark_name(ref: TableRef) -> str:
    return ".".join(_bq(p) for p in (ref.catalog, ref.schema, ref.name) if p is not None)


def get_spark_session(warehouse_dir: str, master: str = "local[2]"):
    """The process's SparkSession, started on first call (6-12 s) with ``warehouse_dir``."""
    global _SESSION, _SESSION_DIR
    with _LOCK:
        if _SESSION is not None and _SESSION._jsc is not None and not _SESSION._jsc.sc().isStopped():
            if _SESSION_DIR != os.path.abspath(warehouse_dir):
                log.warning(
                    "a Spark session already runs with warehouse dir %s; %s is ignored (one session per process)",
                    _SESSION_DIR,
                    warehouse_dir,
                )
            return _SESSION
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        os.makedirs(warehouse_dir, exist_ok=True)
        _SESSION_DIR = os.path.abspath(warehouse_dir)
        _SESSION = (
            SparkSession.builder.master(master)
            .appName("cdp_assets")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.warehouse.dir", _SESSION_DIR)
            .config("spark.sql.catalogImplementation", "in-memory")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.default.parallelism", "2")
            # Pandas conversion without Arrow: exact Python values both ways.
            .config("spark.sql.execution.arrow.pyspark.enabled", "false")
            # ANSI mode (the Spark 4 default) matches Databricks SQL; kept on.
            .getOrCreate()
        )
        _SESSION.sparkContext.setLogLevel("ERROR")
        return _SESSION


def stop_spark_session() -> None:
    """Stop the process's session (tests call this at the end of a module)."""
    global _SESSION, _SESSION_DIR
    with _LOCK:
        if _SESSION is not None:
            _SESSION.stop()
        _SESSION, _SESSION_DIR = None, None


def _spark_errors() -> tuple[type[BaseException], ...]:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JError)


def _short(exc: BaseException) -> str:
    """The engine's message without the JVM stack trace."""
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("\tat ", "\t... ", "JVM stacktrace"))]
    return "\n".join(lines[:12])


class LocalSparkWarehouse(WarehouseResource):
    """A local ``SparkSession`` (``local[2]``); parquet tables under ``warehouse_dir``."""

    warehouse_dir: str
    master: str = "local[2]"

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["spark"]

    def describe(self) -> str:
        return f"local Spark ({self.master}) with warehouse {self.warehouse_dir}"

    @property
    def spark(self):
        return get_spark_session(self.warehouse_dir, self.master)

    @contextmanager
    def session(self) -> Iterator["LocalSparkWarehouse"]:
        # The Spark session is process-wide and long-lived: nothing to open or close per block.
        yield self

    # ---------------------------------------------------------------- statements

    def _execute(self, sql: str) -> None:
        try:
            self.spark.sql(sql)
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", sql) from exc

    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        try:
            df = self.spark.sql(sql, args=list(params)) if params else self.spark.sql(sql)
            return _to_pandas(df)
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", sql) from exc

    def table_exists(self, ref: TableRef) -> bool:
        try:
            if not self.spark.catalog.databaseExists(ref.schema):
                return False
            return bool(self.spark.catalog.tableExists(_spark_name(ref)))
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", f"-- tableExists({ref.display})") from exc

    def columns(self, ref: TableRef) -> list[str]:
        if not self.table_exists(ref):
            raise WarehouseError(f"table {ref.display} does not exist")
        try:
            return list(self.spark.table(_spark_name(ref)).columns)
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", f"-- columns of {ref.display}") from exc

    def list_tables(self, schema: str) -> list[str]:
        try:
            if not self.spark.catalog.databaseExists(schema):
                return []
            return sorted(t.name for t in self.spark.catalog.listTables(schema) if not t.isTemporary)
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", f"-- listTables({schema})") from exc

    def ensure_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {_bq(schema)}")

    # ---------------------------------------------------------------- DataFrames

    def write_dataframe(self, ref: TableRef, df: pd.DataFrame) -> None:
        self.ensure_schema(ref.schema)
        try:
            self._frame(df).write.format("parquet").saveAsTable(_spark_name(ref))
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", f"CREATE TABLE {ref.display} AS <DataFrame>") from exc

    def append_frames(self, frames: list[tuple[TableRef, pd.DataFrame]]) -> None:
        # Not transactional: appended one after another; a failure part-way is reported (see
        # the module's docstring).
        for ref, df in frames:
            self.ensure_schema(ref.schema)
            self._append(ref, df)

    def _append(self, ref: TableRef, df: pd.DataFrame) -> None:
        if not self.table_exists(ref):
            self.write_dataframe(ref, df)
            return
        from pyspark.sql import functions as F

        name = _spark_name(ref)
        try:
            frame = self._frame(df)
            table_schema = {f.name: f.dataType for f in self.spark.table(name).schema.fields}
            new = [f for f in frame.schema.fields if f.name not in table_schema]
            if new:
                # New columns in a later file: add them; earlier rows read NULL.
                cols = ", ".join(f"{_bq(f.name)} {f.dataType.simpleString().upper()}" for f in new)
                self.execute(f"ALTER TABLE {name} ADD COLUMNS ({cols})")
                table_schema.update({f.name: f.dataType for f in new})
            # insertInto is positional: line the frame up with the table's columns by name.
            present = set(frame.columns)
            aligned = frame.select(
                *[
                    (F.col(_bq(c)) if c in present else F.lit(None)).cast(t).alias(c)
                    for c, t in table_schema.items()
                ]
            )
            aligned.write.insertInto(name)
        except WarehouseError:
            raise
        except _spark_errors() as exc:
            raise WarehouseError(f"Spark: {_short(exc)}", f"INSERT INTO {ref.display} BY NAME <DataFrame>") from exc

    def _frame(self, df: pd.DataFrame):
        """A Spark DataFrame with the pandas frame's types: text stays STRING, datetimes are
        TIMESTAMP, integers BIGINT, floats DOUBLE, booleans BOOLEAN. Built from Python values
        (no Arrow), so missing values are NULL, never the text 'nan'."""
        from pyspark.sql import types as T

        fields, columns = [], []
        for name in df.columns:
            s = df[name]
            if pd.api.types.is_bool_dtype(s):
                spark_type: Any = T.BooleanType()
            elif pd.api.types.is_integer_dtype(s):
                spark_type = T.LongType()
            elif pd.api.types.is_float_dtype(s):
                spark_type = T.DoubleType()
            elif pd.api.types.is_datetime64_any_dtype(s):
                spark_type = T.TimestampType()
            else:
                spark_type = _infer_object_type(s)
            fields.append(T.StructField(str(name), spark_type, True))
            columns.append([_py_value(v, spark_type) for v in s.astype(object).tolist()])
        rows = list(zip(*columns)) if columns else [() for _ in range(len(df))]
        return self.spark.createDataFrame(rows, T.StructType(fields), verifySchema=False)


def _infer_object_type(s: pd.Series):
    """Object / string columns: text, unless every value is a datetime or a list."""
    from pyspark.sql import types as T

    values = [v for v in s.tolist() if v is not None and not (isinstance(v, float) and pd.isna(v)) and v is not pd.NA]
    if values and all(isinstance(v, (dt.datetime, pd.Timestamp)) for v in values):
        return T.TimestampType()
    if values and all(isinstance(v, (dt.date)) and not isinstance(v, dt.datetime) for v in values):
        return T.DateType()
    return T.StringType()


def _py_value(v: Any, spark_type: Any) -> Any:
    from pyspark.sql import types as T

    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and v != v:  # NaN
        return None
    if isinstance(spark_type, T.TimestampType):
        ts = pd.Timestamp(v)
        if ts.tzinfo is None:  # naive times are UTC (the session's time zone)
            ts = ts.tz_localize("UTC")
        return ts.to_pydatetime()
    if isinstance(spark_type, T.StringType):
        return v if isinstance(v, str) else str(v)
    if isinstance(spark_type, T.LongType):
        return int(v)
    if isinstance(spark_type, T.DoubleType):
        return float(v)
    if isinstance(spark_type, T.BooleanType):
        return bool(v)
    return v


def _to_pandas(df) -> pd.DataFrame:
    """Rows as pandas, through Python values: timestamps naive (UTC), arrays as lists."""
    from pyspark.sql import types as T

    fields = df.schema.fields
    rows = df.collect()
    data: dict[str, list] = {f.name: [] for f in fields}
    names = [f.name for f in fields]
    for row in rows:
        for name, v in zip(names, row):
            data[name].append(v)
    out = {}
    for f in fields:
        values = data[f.name]
        t = f.dataType
        if isinstance(t, T.TimestampType):
            # PySpark hands TIMESTAMP values over as naive local times of this process;
            # astimezone reads them as such, so the result is UTC whatever the process's zone.
            utc = [None if v is None else v.astimezone(dt.timezone.utc).replace(tzinfo=None) for v in values]
            out[f.name] = pd.Series(pd.to_datetime(utc), dtype="datetime64[ns]") if values else pd.Series([], dtype="datetime64[ns]")
        elif isinstance(t, T.TimestampNTZType):
            out[f.name] = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]") if values else pd.Series([], dtype="datetime64[ns]")
        elif isinstance(t, (T.LongType, T.IntegerType, T.ShortType, T.ByteType)):
            out[f.name] = pd.Series(values, dtype="int64") if None not in values else pd.Series(values, dtype="Int64")
        elif isinstance(t, (T.DoubleType, T.FloatType)):
            out[f.name] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
        else:
            out[f.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=names)
