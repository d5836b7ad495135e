"""Counts what a run sends to its warehouse, per step and per phase (bench/bench_statements.py and
test_statement_count.py).

``counting(engine)`` returns a copy of a real engine whose every statement is counted: a query
(``query``: SELECTs, catalog look-ups), a statement (``execute``: DDL, DML) or a DataFrame load
(``write_dataframe``; ``append_frames``: one per table it appends to), and every warehouse job it
records (Treasure Data's jobs, Databricks' statement ids). A call that carries several SQL
statements (DuckDB runs ``a; b; c`` in one call) counts each of them (``sql_statements``): a
count is of statements, not of calls. Each is attributed to the Dagster step that sent it, read from
Dagster's current execution context; ``phase_of_steps`` names a step's phase from the
definitions: the group of the asset it builds, or "<group> checks" for a step of checks. Checks
evaluated in their asset's own step (ingestion, hist-union, staging, the master tables:
docs/checks.md) count in that asset's phase; "<group> checks" are the checks with steps of their
own (the unification graph's tables, Dagster's freshness and schema checks).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from dagster import Definitions
from dagster._core.execution.context.compute import current_execution_context

from cdp_assets.engines.base import WarehouseResource

KINDS = ("queries", "statements", "dataframe_loads", "jobs")
OUTSIDE = "(outside a step)"


def _step_name() -> str:
    context = current_execution_context.get()
    if context is None:
        return OUTSIDE
    return context.op_execution_context.op.name


def counting(engine: WarehouseResource, log: list | None = None) -> WarehouseResource:
    """A copy of ``engine`` (same class and configuration) that counts what it sends in
    ``counts``: {(step, kind): n}. A query or statement counts each SQL statement its text
    carries. Calls nested in a ``write_dataframe`` belong to its load; an ``append_frames``
    counts one load per table and lets what it sends through ``query`` / ``execute`` (DuckDB's
    transaction and a native load's INSERT in the same unit) count as themselves. ``log``, when
    given, gets one (step, kind, what) per counted statement: its SQL on one line, or the tables
    a DataFrame load writes (bench_statements.py --log)."""
    base = type(engine)
    depth = {"n": 0}
    tally: Counter = Counter()

    def note(kind: str, what: str) -> None:
        tally[(_step_name(), kind)] += 1
        if log is not None:
            log.append((_step_name(), kind, what))

    def counted(kind: str, method):
        def wrapper(self, *args, **kwargs):
            if depth["n"] == 0:
                first = args[0] if args else next(iter(kwargs.values()), "")
                for what in sql_statements(first) if isinstance(first, str) else [_what(first)]:
                    note(kind, what)
            depth["n"] += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                depth["n"] -= 1

        return wrapper

    def append_frames(self, frames, *args, **kwargs):
        if depth["n"] == 0:
            for ref, _ in frames:
                note("dataframe_loads", f"append {ref.display}")
        return base.append_frames(self, frames, *args, **kwargs)

    def record_job(self, job_id: str, url: str | None = None) -> None:
        tally[(_step_name(), "jobs")] += 1
        base.record_job(self, job_id, url)

    cls = type(
        f"Counting{base.__name__}",
        (base,),
        {
            "query": counted("queries", base.query),
            "execute": counted("statements", base.execute),
            "write_dataframe": counted("dataframe_loads", base.write_dataframe),
            "append_frames": append_frames,
            "record_job": record_job,
        },
    )
    copy = as_class(engine, cls)
    # Set after the class is made (pydantic takes class attributes for fields); every copy
    # Dagster makes of the resource is of this class, and so shares the tally.
    cls.counts = property(lambda self: tally)  # type: ignore[attr-defined]
    return copy


def counting_round_trips(engine: WarehouseResource) -> WarehouseResource:
    """A copy of a Databricks ``engine`` that counts every statement it sends to the warehouse in
    ``counts``: {(step, kind): n}, kind being the statement's leading keywords (``SHOW TABLE``,
    ``SELECT``, ``CREATE TABLE``...). Each is one call of the connector's cursor, one round trip to
    a SQL warehouse, whichever engine method sent it: queries, statements, DataFrame batches and
    the catalog look-ups (listings and descriptions), which ``counting`` does not see."""
    base = type(engine)
    tally: Counter = Counter()

    def _run(self, sql: str, params: list | None = None):
        words = sql.split()
        kind = " ".join(words[:2]) if words[0].upper() in _TWO_WORD_KINDS else words[0]
        if kind.upper() == "ALTER TABLE" and " RENAME TO " in sql.upper():
            kind += " RENAME"  # a swap's rename, apart from the appends' ADD COLUMNS
        tally[(_step_name(), kind)] += 1
        return base._run(self, sql, params)

    cls = type(f"RoundTrips{base.__name__}", (base,), {"_run": _run})
    copy = as_class(engine, cls)
    cls.counts = property(lambda self: tally)  # type: ignore[attr-defined]
    return copy


def as_class(engine: WarehouseResource, cls: type[WarehouseResource]) -> WarehouseResource:
    """An engine of class ``cls`` (``engine``'s or a subclass) with ``engine``'s configuration."""
    return cls(**{name: getattr(engine, name) for name in type(engine).model_fields})


_TWO_WORD_KINDS = {"SHOW", "CREATE", "DROP", "ALTER", "INSERT"}


def _what(first: Any) -> str:
    """A DataFrame load on one line: the table it writes."""
    return f"write {getattr(first, 'display', first)}"


# A statement's text, token by token: a quoted literal or identifier ('' and "" escape their
# quote), a comment, a ";", or any other run of characters.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|;|[^'\";/-]+|.", re.S)


def sql_statements(sql: str) -> list[str]:
    """The SQL statements one call carries, each on one line: ``sql`` split at every ``;`` outside
    quotes and comments, empty parts (a trailing ``;``, a comment alone) left out."""
    parts: list[list[str]] = [[]]
    for token in _TOKENS.findall(sql):
        if token == ";":
            parts.append([])
        else:
            parts[-1].append(token)
    out = []
    for part in parts:
        code = "".join(t for t in part if not t.startswith(("--", "/*")))
        if code.strip():
            out.append(" ".join("".join(part).split()))
    return out


def phase_of_steps(defs: Definitions) -> dict[str, str]:
    """Step (op) name -> phase: the group of the assets it builds (their in-step checks included),
    or "<group> checks" for a step of checks of its own."""
    phases: dict[str, str] = {}
    groups: dict[Any, str] = {}
    for a in defs.assets or []:
        for key in a.keys:
            groups[key] = a.group_names_by_key[key]
        if a.is_executable:  # a graph-backed asset's steps are the ops of its graph
            for op_def in a.node_def.iterate_op_defs():
                phases[op_def.name] = sorted({a.group_names_by_key[k] for k in a.keys})[0]
    for c in defs.asset_checks or []:
        keys = {spec.asset_key for spec in c.check_specs}
        phases[c.op.name] = f"{sorted(groups.get(k, 'other') for k in keys)[0]} checks"
    return phases


def per_phase(counts: Counter, phases: dict[str, str]) -> dict[str, Counter]:
    """{phase: Counter(kind -> n)}, steps the definitions do not name under their own name."""
    out: dict[str, Counter] = {}
    for (step, kind), n in counts.items():
        out.setdefault(phases.get(step, step), Counter())[kind] += n
    return out
