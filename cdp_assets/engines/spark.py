"""The process's local Spark session: where the Databricks engine's ``connection: local_spark``
runs (through the cursor interface in ``spark_dbapi``), for tests and development.

One ``SparkSession`` per process (Spark allows one active session per JVM): created lazily on
first use and reused. Its warehouse directory is fixed by the first caller
(``spark.sql.warehouse.dir`` is a static setting); tables live in Spark's in-memory catalog, so
they last as long as the process (enough for tests and dev runs). Tables are parquet, not
Delta, so the engine runs with ``OPTIMIZE`` switched off by capability.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger("cdp_assets.engines.spark")

_LOCK = threading.Lock()
_SESSION: Any = None  # the process's SparkSession
_SESSION_DIR: str | None = None  # the warehouse dir it was started with


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
            # This session runs tests and development runs: many small statements, each planned
            # and run once. The JIT's first tier alone warms up faster than the optimizing one and
            # the serial collector costs least on a small heap: 120 small statements took 25-45%
            # less time than with the JVM's defaults on a 2-core machine. With the first tier
            # alone the JVM reserves 48 MB for compiled code, too little for Spark's classes and
            # the classes it generates per statement: the code cache's sweeper kept evicting
            # compiled methods that were then compiled again (in a whole pipeline of 1,119
            # statements, 297 sweeps reclaiming 51,385 methods, 26 s of sweeping and 30 s of
            # compiling of the JVM's 125 s of CPU). 256 MB holds them all (bench_spark_session.py).
            .config(
                "spark.driver.extraJavaOptions",
                "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=256m",
            )
            # Pandas conversion without Arrow: exact Python values both ways.
            .config("spark.sql.execution.arrow.pyspark.enabled", "false")
            # ANSI mode (the Spark 4 default) matches Databricks SQL; kept on.
            .getOrCreate()
        )
        _SESSION.sparkContext.setLogLevel("ERROR")
        return _SESSION


def reset_spark_session() -> None:
    """Empty the process's session for its next user instead of stopping it (which costs the next
    user a JVM start, 6-12 s): every database but ``default`` dropped with its tables,
    ``default``'s tables and views and every temporary view dropped, cached data uncached, runtime
    settings changed with ``SET`` back to the session's own (``RESET``), and whatever is left
    under the warehouse dir (a failed write's files) removed, so that a table of the same name
    can be created again. A new session's state, but the JVM's loaded classes and compiled code."""
    import shutil

    with _LOCK:
        spark = _SESSION
        if spark is None or spark._jsc is None or spark._jsc.sc().isStopped():
            return
        spark.catalog.clearCache()
        # Spark's own reset of a session's catalog for tests (SessionCatalog.reset): every database
        # but default dropped with its tables, default's tables and functions, temporary and global
        # temporary views; no statement text built here.
        spark._jsparkSession.sessionState().catalog().reset()
        spark.sql("RESET")
        if _SESSION_DIR is not None and os.path.isdir(_SESSION_DIR):
            for entry in os.scandir(_SESSION_DIR):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def stop_spark_session() -> None:
    """Stop the process's session (the tests empty it between users with ``reset_spark_session`` and
    stop it at the end of their process)."""
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
