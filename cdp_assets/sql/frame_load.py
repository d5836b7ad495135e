"""How a DataFrame lands in a Databricks (Spark SQL) table: one bound JSON document per batch.

A Databricks SQL warehouse refuses a parameterized statement with more than 256 parameters
(databricks-sql-python#300), so ``INSERT ... VALUES (?, ?), (?, ?)`` carries at most
``256 / columns`` rows: 1,667 statements for 10,000 rows of 40 columns. Here a batch of rows is
one parameter instead: a JSON object holding one array per column, which the warehouse parses
(``from_json``), zips into rows (``arrays_zip``) and inserts. One parameter per statement, however
many columns; values stay bound, never SQL text. ``bench/bench_databricks_load.py`` measures the
statements each way.

Written in Spark SQL directly (``from_json`` with a DDL schema string, ``arrays_zip``,
``timestamp_micros``): this is the Databricks engine's load mechanics, not a phase's canonical SQL,
and sqlglot has no DuckDB spelling to transpile it from.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

# What each column kind travels as inside the JSON document, and how it is read back.
# Timestamps travel as microseconds since the epoch (UTC): no text format, no session time zone.
_JSON_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "float": "DOUBLE", "timestamp": "BIGINT", "text": "STRING"}
TABLE_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMP", "text": "STRING"}


@dataclass(frozen=True)
class LoadColumn:
    name: str  # the table's column
    kind: str  # boolean | integer | float | timestamp | text (engines.frames.column_kind)


def json_field(position: int) -> str:
    """The JSON document's key for the column at ``position`` (names stay out of the document)."""
    return f"c{position}"


def quote_column(name: str, dialect: str = "databricks") -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def json_batch_insert_sql(table_sql: str, columns: list[LoadColumn], dialect: str = "databricks") -> str:
    """``INSERT INTO table (cols) SELECT ... FROM from_json(?)``: one ``?``, the batch's JSON
    document ``{"c0": [...], "c1": [...]}`` (see ``engines.frame_batches``)."""
    if not columns:
        raise ValueError("a DataFrame load needs at least one column")
    for column in columns:
        if column.kind not in _JSON_TYPES:
            raise ValueError(f"column {column.name!r}: unknown kind {column.kind!r}; use one of {sorted(_JSON_TYPES)}")
    fields = [json_field(i) for i in range(len(columns))]
    schema = ", ".join(f"{f} ARRAY<{_JSON_TYPES[c.kind]}>" for f, c in zip(fields, columns))
    picks = ", ".join(
        f"timestamp_micros(r.{f})" if c.kind == "timestamp" else f"r.{f}" for f, c in zip(fields, columns)
    )
    names = ", ".join(quote_column(c.name, dialect) for c in columns)
    zipped = ", ".join(f"j.{f}" for f in fields)
    return (
        f"INSERT INTO {table_sql} ({names})\n"
        f"SELECT {picks}\n"
        f"FROM (SELECT explode(arrays_zip({zipped})) AS r\n"
        f"      FROM (SELECT from_json(?, '{schema}') AS j) AS batch) AS batch_rows"
    )
