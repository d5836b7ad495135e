"""A local Spark session behind the DB-API cursor interface of databricks-sql-connector.

``DatabricksWarehouse`` talks to a Databricks SQL warehouse through ``databricks.sql``'s
connection and cursor; this module gives it the same interface over the process's local
``SparkSession`` (``local[2]``), so the Databricks engine's code runs for real in tests and
development: ``cursor.execute(sql, [params])`` with ``?`` markers, ``description``,
``fetchall()``, ``query_id``, ``cancel()``. Spark's errors are raised as the connector's own
``ServerOperationError``, so the engine maps them one way whichever is behind it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from cdp_assets.engines.spark import _short, _spark_errors, get_spark_session


class LocalSparkCursor:
    def __init__(self, spark: Any):
        self._spark = spark
        self._df: Any = None
        self.description: list[tuple] | None = None
        self.query_id: str | None = None

    def execute(self, operation: str, parameters: list | None = None) -> "LocalSparkCursor":
        from databricks.sql.exc import ServerOperationError

        self.query_id = f"local-{uuid.uuid4().hex[:16]}"
        # Naive datetimes are UTC here (as Databricks binds them); PySpark would read them as
        # the process's local time.
        args = [v.replace(tzinfo=dt.timezone.utc) if isinstance(v, dt.datetime) and v.tzinfo is None else v for v in parameters or []]
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
            tuple(v.astimezone(dt.timezone.utc) if stamp and v is not None else v for v, stamp in zip(row, stamps)) for row in rows
        ]

    def cancel(self) -> None:
        self._spark.sparkContext.cancelAllJobs()

    def close(self) -> None:
        self._df = None


class LocalSparkConnection:
    """``connection.cursor()`` / ``connection.close()`` over the process's SparkSession."""

    def __init__(self, warehouse_dir: str):
        self._spark = get_spark_session(warehouse_dir)

    def cursor(self) -> LocalSparkCursor:
        return LocalSparkCursor(self._spark)

    def close(self) -> None:
        """The session is process-wide (one per JVM): it outlives a connection."""
