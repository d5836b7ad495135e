"""A local Spark session behind the DB-API cursor interface of databricks-sql-connector.

``DatabricksWarehouse`` talks to a Databricks SQL warehouse through ``databricks.sql``'s
connection and cursor; this module gives it the same interface over the process's local
``SparkSession`` (``local[2]``), so the Databricks engine's code runs for real in tests and
development: ``cursor.execute(sql, [params])`` with ``?`` markers, ``description``,
``fetchall()``, ``query_id``, ``cancel()``. Spark's errors are raised as the connector's own
``ServerOperationError``, so the engine maps them one way whichever is behind it.

The shim also refuses what a Databricks SQL warehouse refuses and local Spark would accept, so a
test fails where production would (``WAREHOUSE_LIMITS``):

- at most 256 parameters in one parameterized statement. The warehouse answers more with HTTP
  400, which the connector raises as ``RequestError`` "Error during request to server:
  BAD_REQUEST: Parameterized query has too many parameters: N parameters were given but the
  limit is 256." (databricks-sql-python#300, databricks-sqlalchemy#24);
- at most 16 MiB of query text (the Statement Execution API's documented "maximum query text
  size"; the error text here is the shim's own, the limit is the documented one);
- parameters either all positional (a list, ``?`` markers) or all named (a dict, ``:name``
  markers), as the connector binds them. Mixing the two kinds of markers in one statement is
  refused by Spark itself (``INVALID_QUERY_MIXED_QUERY_PARAMETERS``), as on Databricks;
- no parameter marker in a DDL statement that keeps an expression: a view, a SQL function, a
  column's DEFAULT or GENERATED ALWAYS AS ("Applies to Databricks SQL, Databricks Runtime 17.3
  LTS and prior", the parameter-marker page of the SQL reference). Spark 4 accepts them.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cdp_assets.engines.spark import _short, _spark_errors, get_spark_session


@dataclass(frozen=True)
class WarehouseLimits:
    """Documented limits of a Databricks SQL warehouse on one statement."""

    max_parameters: int = 256  # databricks-sql-python#300, databricks-sqlalchemy#24
    max_statement_bytes: int = 16 * 1024 * 1024  # "The maximum query text size is 16 MiB"


WAREHOUSE_LIMITS = WarehouseLimits()


def _bad_request(message: str) -> Exception:
    """The connector's error for a request the warehouse answered with HTTP 400."""
    from databricks.sql.exc import RequestError

    text = f"Error during request to server: BAD_REQUEST: {message}"
    return RequestError(text, context={"http-code": 400, "error-message": f"BAD_REQUEST: {message}"})


# DDL that stores an expression: parameter markers are refused there by Databricks SQL.
_STORED_EXPRESSION_DDL = re.compile(
    r"^\s*(CREATE|ALTER)\b(?=.*\b(VIEW|FUNCTION)\b|.*\bDEFAULT\b|.*\bGENERATED\s+ALWAYS\s+AS\b)",
    re.IGNORECASE | re.DOTALL,
)


def check_statement(operation: str, parameters: list | dict | None, limits: WarehouseLimits = WAREHOUSE_LIMITS) -> None:
    """Refuse a statement the warehouse would refuse, with the connector's error."""
    size = len(operation.encode("utf-8"))
    if size > limits.max_statement_bytes:
        raise _bad_request(
            f"Query text is {size} bytes but the maximum query text "
            f"size is {limits.max_statement_bytes} bytes (16 MiB)."
        )
    count = len(parameters or [])
    if count > limits.max_parameters:
        raise _bad_request(
            f"Parameterized query has too many parameters: {count} "
            f"parameters were given but the limit is {limits.max_parameters}."
        )
    if parameters is not None and not isinstance(parameters, (list, tuple, dict)):
        raise TypeError(
            f"parameters must be a list (positional, ?) or a dict (named, :name), not {type(parameters).__name__}"
        )
    if parameters and _STORED_EXPRESSION_DDL.match(operation):
        from databricks.sql.exc import ServerOperationError

        raise ServerOperationError(
            "[UNSUPPORTED_FEATURE.PARAMETER_MARKER_IN_UNEXPECTED_STATEMENT] The feature "
            "is not supported: parameter markers in a DDL statement that stores an "
            "expression (a view, a SQL function, a DEFAULT or generated column)."
        )


class LocalSparkCursor:
    def __init__(self, spark: Any):
        self._spark = spark
        self._df: Any = None
        self.description: list[tuple] | None = None
        self.query_id: str | None = None

    def execute(self, operation: str, parameters: list | dict | None = None) -> "LocalSparkCursor":
        from databricks.sql.exc import ServerOperationError

        check_statement(operation, parameters)
        self.query_id = f"local-{uuid.uuid4().hex[:16]}"
        args: list | dict
        if isinstance(parameters, dict):
            args = {k: _utc(v) for k, v in parameters.items()}
        else:
            args = [_utc(v) for v in parameters or []]
        try:
            df = self._spark.sql(operation, args=args) if parameters else self._spark.sql(operation)
        except _spark_errors() as exc:
            raise ServerOperationError(_short(exc)) from exc
        self._df = df
        self.description = [(f.name, f.dataType.simpleString(), None, None, None, None, True) for f in df.schema.fields]
        return self

    def fetchall(self) -> list[tuple]:
        from databricks.sql.exc import ServerOperationError

        if self._df is None:
            return []
        from pyspark.sql.types import TimestampType

        stamps = [isinstance(f.dataType, TimestampType) for f in self._df.schema.fields]
        try:
            rows = self._df.collect()
        except _spark_errors() as exc:
            raise ServerOperationError(_short(exc)) from exc
        # PySpark hands TIMESTAMP values over as naive local times of this process: make them
        # aware (UTC), as the connector's are once read.
        return [
            tuple(v.astimezone(dt.timezone.utc) if stamp and v is not None else v for v, stamp in zip(row, stamps))
            for row in rows
        ]

    def cancel(self) -> None:
        self._spark.sparkContext.cancelAllJobs()

    def close(self) -> None:
        self._df = None


def _utc(v: Any) -> Any:
    # Naive datetimes are UTC here (as Databricks binds them); PySpark would read them as the
    # process's local time.
    return v.replace(tzinfo=dt.timezone.utc) if isinstance(v, dt.datetime) and v.tzinfo is None else v


class LocalSparkConnection:
    """``connection.cursor()`` / ``connection.close()`` over the process's SparkSession."""

    def __init__(self, warehouse_dir: str):
        self._spark = get_spark_session(warehouse_dir)

    def cursor(self) -> LocalSparkCursor:
        return LocalSparkCursor(self._spark)

    def close(self) -> None:
        """The session is process-wide (one per JVM): it outlives a connection."""
