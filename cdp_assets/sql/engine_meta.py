"""The engines' own statements: connection checks, catalog look-ups, schemas, loading DataFrames.

Engines only execute; what they send is built here like every other statement. Names come in
already quoted for the engine (``quote`` for DuckDB, ``Dialect.table_name`` elsewhere); values
are bound as ``?`` parameters, never pasted.
"""

from __future__ import annotations

import re

from cdp_assets.config.identifiers import check_identifier
from cdp_assets.sql.dialects import TableRef

# ---------------------------------------------------------------------------- any engine


def connection_check_sql() -> str:
    """One cheap round trip that fails when the warehouse cannot be used."""
    return "SELECT 1"


def row_count_sql(ref: TableRef) -> str:
    return f"SELECT COUNT(*) AS n FROM {ref.sql}"


def row_counts_sql(refs: list[TableRef]) -> str:
    """Every table's row count in one round trip: one row, column ``t<i>`` for ``refs[i]``."""
    return "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {ref.sql}) AS t{i}" for i, ref in enumerate(refs))


def create_schema_sql(schema_sql: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {schema_sql}"


def may_drop_a_schema(sql: str) -> bool:
    """Whether a statement may drop a schema (the engine then forgets which schemas it ensured)."""
    return "DROP SCHEMA" in sql.upper()


# A name as the engines' statements write it: quoted parts (``"s"."t"``, ``"temp"."main"."t"``, Spark's
# and Databricks' ```s`.`t```) or bare ones.
_PART = r'(?:"[^"]*"|`[^`]*`|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = r"((?:" + _PART + r"\s*\.\s*)*" + _PART + ")"
_TABLE_DDL = re.compile(
    r"(CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\s+|TEMPORARY\s+)?|DROP\s+|ALTER\s+)(?:TABLE|VIEW)\s+"
    r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?" + _NAME + r"(?:\s+RENAME\s+TO\s+" + _NAME + ")?",
    re.IGNORECASE,
)
# Statements that change rows at most, never which tables exist or their columns (a ROLLBACK may
# undo a CREATE: not one of them).
_ROWS_ONLY = re.compile(
    r"(SELECT|WITH|FROM|VALUES|INSERT|DELETE|UPDATE|MERGE|TRUNCATE|BEGIN|COMMIT|CHECKPOINT|OPTIMIZE|"
    r"DESCRIBE|EXPLAIN|SHOW|SUMMARIZE|CREATE\s+SCHEMA)\b",
    re.IGNORECASE,
)


def _name_parts(name: str) -> list[str]:
    return [p.strip().strip('"`') for p in re.findall(r'"[^"]*"|`[^`]*`|[^."`\s]+', name)]


def tables_changed(sql: str) -> list[tuple[str, str]] | None:
    """The (schema, table) pairs ``sql`` may create, drop, replace, alter or rename, read from its
    text: an engine forgets their descriptions after running it. None when that cannot be told
    (a statement of another kind, a name without its schema): the engine then forgets them all.
    A ``;`` inside a literal only splits a statement into parts that cannot be read: None again."""
    changed: list[tuple[str, str]] = []
    for part in sql.split(";"):
        text = re.sub(r"^(\s*--[^\n]*\n)*", "", part).strip()
        if not text or _ROWS_ONLY.match(text):
            continue
        m = _TABLE_DDL.match(text)
        if m is None:
            return None
        parts = _name_parts(m.group(2))
        if len(parts) < 2:
            return None  # the default schema: not known here
        changed.append((parts[-2], parts[-1]))
        if m.group(3):  # RENAME TO: the new name, in the same schema unless it says otherwise
            new = _name_parts(m.group(3))
            changed.append((new[-2] if len(new) >= 2 else parts[-2], new[-1]))
    return changed


def explain_sql(query_sql: str) -> str:
    return f"EXPLAIN {query_sql}"


def no_rows_sql(query_sql: str) -> str:
    """``query_sql`` asked for no rows: analysed by the engine, nothing read."""
    return f"SELECT * FROM (\n{query_sql}\n) AS cdp_explained LIMIT 0"


# ---------------------------------------------------------------------------- information_schema
# Bound parameters: the schema, then the table.


def table_exists_sql() -> str:
    return "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = ? AND table_name = ?"


def columns_sql() -> str:
    return (
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position"
    )


def list_tables_sql() -> str:
    return "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"


def schemas_and_tables_sql(n_schemas: int) -> str:
    """Which of ``n_schemas`` schemas of the current database exist, with their tables: a row per
    table, or one with a NULL table for an empty schema; none for a schema that does not exist.
    Bind each schema's name."""
    marks = ", ".join("?" for _ in range(n_schemas))
    return (
        "SELECT s.schema_name, t.table_name FROM information_schema.schemata AS s "
        "LEFT JOIN information_schema.tables AS t "
        "ON t.table_catalog = s.catalog_name AND t.table_schema = s.schema_name "
        f"WHERE s.catalog_name = current_database() AND s.schema_name IN ({marks})"
    )


# ---------------------------------------------------------------------------- DataFrame loads


def describe_tables_sql(n_tables: int) -> str:
    """Every column and type of ``n_tables`` tables in one catalog query; bind (schema, name) per table."""
    pairs = " OR ".join("(table_schema = ? AND table_name = ?)" for _ in range(n_tables))
    return (
        f"SELECT table_schema, table_name, column_name, data_type, ordinal_position "
        f"FROM information_schema.columns WHERE {pairs} "
        "ORDER BY table_schema, table_name, ordinal_position"
    )


def create_from_frame_sql(table_sql: str, frame_name: str, temporary: bool = False) -> str:
    """A table holding the DataFrame registered as ``frame_name`` (DuckDB); ``temporary`` for a
    connection-scoped table (the native readers' staging)."""
    return f"CREATE {'TEMP ' if temporary else ''}TABLE {table_sql} AS {select_frame_sql(frame_name)}"


def select_frame_sql(frame_name: str) -> str:
    """Every row of the DataFrame registered as ``frame_name`` (DuckDB)."""
    return f"SELECT * FROM {frame_name}"


def insert_by_name_sql(table_sql: str, select_sql: str) -> str:
    """Append ``select_sql``'s rows, matching columns by name."""
    return f"INSERT INTO {table_sql} BY NAME\n{select_sql}"


def insert_frame_by_name_sql(table_sql: str, frame_name: str) -> str:
    """Append the DataFrame registered as ``frame_name``, matching columns by name (DuckDB)."""
    return insert_by_name_sql(table_sql, f"SELECT * FROM {frame_name}")


def add_column_sql(table_sql: str, column_sql: str, sql_type: str) -> str:
    return f"ALTER TABLE {table_sql} ADD COLUMN {column_sql} {sql_type}"


# ---------------------------------------------------------------------------- Databricks / Spark


def show_tables_sql(schema_sql: str) -> str:
    return f"SHOW TABLES IN {schema_sql}"


def show_tables_extended_sql(schema_sql: str, names: list[str]) -> str:
    """The details of the tables ``names`` in a schema, each table's columns included, in one
    statement: Databricks SQL's and Spark's ``SHOW TABLE EXTENDED ... LIKE``, whose pattern takes
    several names separated by ``|``, each matched whole and case-insensitively. The names are
    checked identifiers (letters, digits and underscores), which the pattern and its string
    literal read as themselves."""
    for name in names:
        check_identifier(name, "table")
    return f"SHOW TABLE EXTENDED IN {schema_sql} LIKE '{'|'.join(names)}'"


# A top-level column in the ``Schema:`` tree of SHOW TABLE EXTENDED's ``information`` (Spark's
# notation, as Databricks documents it): `` |-- name: type (nullable = true)``. Nested fields are
# indented further (`` |    |-- ``); a type never holds ``": "``, a checked column name no newline.
_TOP_LEVEL_COLUMN = re.compile(r"^ \|-- (.+): (\S+) \((?:nullable|containsNull|valueContainsNull) = \w+\)$")


def columns_of_table_information(information: str | None) -> list[tuple[str, str]] | None:
    """The top-level columns, (name, Spark type) in order, of one row's ``information`` from
    ``show_tables_extended_sql``; None when it holds no ``Schema:`` tree to read them from."""
    lines = (information or "").splitlines()
    if "Schema: root" not in lines:
        return None
    columns = []
    for line in lines[lines.index("Schema: root") + 1 :]:
        if not line.startswith(" |"):
            break
        match = _TOP_LEVEL_COLUMN.match(line)
        if match:
            columns.append((match.group(1), match.group(2)))
    return columns


def empty_select_sql(table_sql: str) -> str:
    """The table's columns without its rows (the cursor's description)."""
    return f"SELECT * FROM {table_sql} LIMIT 0"


def create_table_sql(table_sql: str, columns_sql: str, using: str | None, if_not_exists: bool = False) -> str:
    """An empty table with typed columns, ``USING <format>`` when given."""
    create = "CREATE TABLE IF NOT EXISTS" if if_not_exists else "CREATE TABLE"
    return f"{create} {table_sql} ({columns_sql})" + (f" USING {using}" if using else "")


def add_columns_sql(table_sql: str, columns_sql: str) -> str:
    return f"ALTER TABLE {table_sql} ADD COLUMNS ({columns_sql})"
