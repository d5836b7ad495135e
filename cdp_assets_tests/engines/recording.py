"""A real DuckDB engine that keeps what it sends, for tests that count statements."""

from __future__ import annotations

from pydantic import PrivateAttr

from cdp_assets.engines.duckdb import DuckDBWarehouse


class RecordingDuckDB(DuckDBWarehouse):
    """A real DuckDB that keeps every statement and query it sends, in order."""

    _sent: list = PrivateAttr(default_factory=list)

    def _execute(self, sql: str) -> None:
        self._sent.append(sql)
        super()._execute(sql)

    def _query(self, sql: str, params: list | None = None):
        self._sent.append(sql)
        return super()._query(sql, params)

    def take(self, containing: str = "") -> list[str]:
        """What was sent since the last call that contains ``containing``; forgets everything."""
        sent, self._sent[:] = [s for s in self._sent if containing in s], []
        return sent


class StepRecordingDuckDB(DuckDBWarehouse):
    """A real DuckDB that keeps (step, SQL) for every call it sends (one statement or several), in order."""

    _sent: list = PrivateAttr(default_factory=list)

    def _execute(self, sql: str) -> None:
        self._sent.append((self.current_step, sql))
        super()._execute(sql)

    def _query(self, sql: str, params: list | None = None):
        self._sent.append((self.current_step, sql))
        return super()._query(sql, params)


def recording_duckdb(path: str) -> RecordingDuckDB:
    """A connected recording engine at ``path`` with nothing recorded yet."""
    engine = RecordingDuckDB(path=path)
    engine.verify_connection()
    engine.take()
    return engine
