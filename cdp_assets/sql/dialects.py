"""The one place that knows SQL dialects.

Every builder writes SQL once, in DuckDB's dialect with double-quoted identifiers, and the
dialect renders it for the engine through sqlglot. Builders never branch on the engine; the
few statements that cannot be transpiled (swapping a table in) are methods here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp, transforms

from cdp_assets.config.identifiers import check_identifier


@dataclass(frozen=True)
class TableRef:
    """A table in a schema (DuckDB schema, TD database, or Databricks ``catalog.schema``)."""

    schema: str
    name: str
    catalog: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.schema, "schema")
        check_identifier(self.name, "table")
        if self.catalog is not None:
            check_identifier(self.catalog, "catalog")

    @property
    def sql(self) -> str:
        """The quoted, qualified name in the canonical (DuckDB) dialect."""
        parts = [p for p in (self.catalog, self.schema, self.name) if p is not None]
        return ".".join(quote(p) for p in parts)

    @property
    def display(self) -> str:
        return ".".join(p for p in (self.catalog, self.schema, self.name) if p is not None)

    def sibling(self, name: str) -> "TableRef":
        return TableRef(self.schema, name, self.catalog)


def quote(identifier: str) -> str:
    """Quote an identifier that has already passed :func:`check_identifier`."""
    check_identifier(identifier, "identifier")
    return f'"{identifier}"'


@dataclass(frozen=True)
class Dialect:
    name: str  # duckdb | spark | databricks | trino | hive
    sqlglot_name: str
    # Engines that can swap a table inside a transaction do it atomically; the others drop
    # and rename, which leaves a sub-second window and is documented as such.
    transactional_ddl: bool
    # Scratch tables of a step (the loop's labels, edges, pointers) can live in the session's
    # memory, spilling to disk, instead of being written into the database.
    session_temp_tables: bool = False
    # Publishes a table in one statement, ``CREATE OR REPLACE TABLE final AS SELECT ...``, which
    # commits whole or not at all (transactional DDL: a failure or a kill mid-statement leaves the
    # old table), instead of building under a new name and swapping it in. DuckDB only: the other
    # engines keep build-then-swap (local Spark's parquet tables have no REPLACE TABLE at all).
    replaces_atomically: bool = False
    # Has no timestamp column type: a DataFrame's timestamps are stored as text (Treasure Data's
    # columns are int, long, double, string and array; the engine writes ``TD_TIMESTAMP`` text),
    # so a stored timestamp is read back through a CAST before it is compared with a timestamp.
    stores_timestamps_as_text: bool = False
    # Its engine describes a table's column types in its catalog look-up (DuckDB: one query for
    # every table, none while it holds the run), so an incremental run can compare a typed
    # incremental column with its watermark as it is (``incremental_kind``). Local Spark's engine
    # describes names only (a statement per table), and Treasure Data stores text.
    describes_column_types: bool = False
    # Can be told to compute a CTE once (DuckDB's ``AS MATERIALIZED``): one read several times is
    # otherwise inlined and computed again at each reference.
    materializes_ctes: bool = False
    # Binds a valid_regexp's pattern as a parameter of the statement (``?``), a constant its
    # regular expression is compiled from once, instead of reading it from the rules table's
    # column, which DuckDB compiles again for every row (3M values, '.+@.+': 8.9 s against 0.13 s).
    # DuckDB only: Treasure Data's query API takes no parameters, and Spark's RLIKE compiles again
    # only when a row's pattern differs from the last one's; they keep the rules table's column.
    binds_regexp_parameters: bool = False
    # Picks a master attribute's best value per id with an aggregate that orders its own input
    # (DuckDB's ``FIRST(value ORDER BY ...)``; an array's values by ``ARG_MIN(value, key, n)`` of
    # ``CREATE_SORT_KEY``), the same order as the ``ROW_NUMBER()`` window the other engines rank
    # every candidate with: a hash aggregate, no sort of the candidates (5M nightly, 58,124 ids,
    # five attributes: 2.5 s of CPU, now 1.95 s). DuckDB only: Spark and Trino have no ordered
    # FIRST, and sqlglot does not translate it.
    picks_by_aggregate: bool = False
    # Skips a table's row groups by their min/max when a scan's filter holds, as one of its ANDed
    # terms, a range or NULL test of a column against a constant or an uncorrelated scalar
    # subquery (DuckDB's zone maps, 2.0: also a subquery's answer); an OR of such tests, or one
    # over several columns, is evaluated on every row. An incremental run's filter "after the
    # watermark" is then written as a UNION ALL of such branches (one read each, of the few row
    # groups after the watermark), instead of one read of every row: the other engines keep the
    # single read (Spark and Treasure Data would read the table once per branch).
    skips_row_groups: bool = False

    def cte(self, name: str, select_sql: str) -> str:
        """``name AS (select_sql)`` for a WITH clause, computed once where the dialect can say so."""
        return f"{name} AS {'MATERIALIZED ' if self.materializes_ctes else ''}({select_sql})"

    def incremental_kind(self, column_type: str) -> str | None:
        """How an incremental column of the described type ``column_type`` is compared with its
        watermark: ``timestamp`` (the column itself), ``date`` (at midnight) or ``integer`` (Unix
        epoch seconds, as ``time_expr`` reads digits), each a plain range predicate on the column;
        None: text or a type not listed (Treasure Data's columns; a timestamp with a time zone or
        another precision), normalized per row by ``time_expr``. The one place that decides."""
        if self.stores_timestamps_as_text or not self.describes_column_types:
            return None
        name = " ".join(column_type.strip().upper().split())
        if name in ("TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE", "DATETIME"):
            return "timestamp"
        if name == "DATE":
            return "date"
        if name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"):
            return "integer"
        return None

    def scratch_ref(self, name: str, like: TableRef) -> TableRef:
        """Where a scratch table of ``like``'s step lives."""
        return TableRef("main", name, "temp") if self.session_temp_tables else like.sibling(name)

    def create_scratch_sql(self, ref: TableRef, select_sql: str) -> str:
        kind = "TEMP TABLE" if self.session_temp_tables else "TABLE"
        return f"CREATE {kind} {ref.sql} AS\n{select_sql.strip()}"

    def stored_timestamp(self, column_sql: str) -> str:
        """Canonical SQL of a loaded timestamp column as a TIMESTAMP: the column itself where the
        engine stores TIMESTAMPs (DuckDB; Spark and Databricks, whose DataFrame loads write
        TIMESTAMP columns), its text cast where it stores text (Treasure Data)."""
        return f"CAST({column_sql} AS TIMESTAMP)" if self.stores_timestamps_as_text else column_sql

    @property
    def writes_stored_timestamp_text(self) -> bool:
        """Whether a TIMESTAMP a query computes is written as the text a table of this engine
        stores (``timestamp_as_stored_text``) where a subquery stands in for a scratch table
        (``WarehouseResource.inlines_scratch_tables``): Treasure Data's Trino. Hive keeps its
        scratch tables, so their CREATE TABLE AS stores the text."""
        return self.stores_timestamps_as_text and self.sqlglot_name == "trino"

    @property
    def stored_timestamp_type(self) -> str:
        """The canonical type a timestamp column of ours has in this engine's tables."""
        return "VARCHAR" if self.stores_timestamps_as_text else "TIMESTAMP"

    def render(self, sql: str) -> str:
        """Render canonical SQL for this dialect (identity for DuckDB)."""
        if self.sqlglot_name == "duckdb":
            return sql
        return _transpile(sql, self.sqlglot_name)

    def optimize_sql(self, ref: TableRef) -> str:
        """Compact a table's files (Delta ``OPTIMIZE``); only engines that support it run it."""
        return f"OPTIMIZE {self.table_name(ref)}"

    def table_name(self, ref: TableRef) -> str:
        """``ref`` as this dialect quotes a qualified table name."""
        ident = lambda part: exp.to_identifier(part, quoted=True) if part is not None else None  # noqa: E731
        return exp.Table(this=ident(ref.name), db=ident(ref.schema), catalog=ident(ref.catalog)).sql(
            dialect=self.sqlglot_name
        )

    def render_all(self, statements: list[str]) -> list[str]:
        return [self.render(s) for s in statements]

    def replace_table_sql(self, final: TableRef, select_sql: str) -> str:
        """One statement replacing (or creating) ``final`` with a SELECT's rows (``replaces_atomically``)."""
        return f"CREATE OR REPLACE TABLE {final.sql} AS\n{select_sql.strip()}"

    def replace_with_table_sql(self, final: TableRef, staging: TableRef) -> str:
        """``final`` replaced by a copy of the fully built ``staging`` in one statement (engines
        that replace tables atomically: ``publish_staged``)."""
        return self.replace_table_sql(final, f"SELECT * FROM {staging.sql}")

    def swap_statements(self, staging: TableRef, final: TableRef) -> list[str]:
        """Statements that replace ``final`` with the fully built ``staging`` table."""
        rename = f"ALTER TABLE {staging.sql} RENAME TO {quote(final.name)}"
        if self.sqlglot_name in ("spark", "databricks", "hive"):
            # Spark's RENAME TO takes a qualified target.
            rename = f"ALTER TABLE {staging.sql} RENAME TO {final.sql}"
        drop, rename = self.render(f"DROP TABLE IF EXISTS {final.sql}"), self.render(rename)
        if self.transactional_ddl:
            # One transaction in two round trips instead of four. The split stays between the drop
            # and the rename: a kill there is the swap's worst moment, and the kill tests
            # (reliability/kill_driver.py) stop the run just before a statement starting ALTER TABLE.
            return [f"BEGIN TRANSACTION;\n{drop}", f"{rename};\nCOMMIT"]
        return [drop, rename]


# Dialects whose ordered aggregate sqlglot cannot render: it turns DuckDB's
# ``LIST(x ORDER BY k)`` into ``COLLECT_LIST(x)`` and silently drops the order.
_UNORDERED_COLLECT = ("spark", "databricks")


def _ordered_list_as_sorted_structs(tree: exp.Expression) -> exp.Expression:
    """``LIST(x ORDER BY k1, k2)`` -> ``TRANSFORM(ARRAY_SORT(COLLECT_LIST(STRUCT(k1, k2, x))), e -> e.v)``.

    Structs sort field by field, so the array comes out in (k1, k2, x) order: the ORDER BY,
    with the value itself as the last tie-break. Only ascending keys can be expressed this
    way; a descending one is refused rather than rendered unordered.
    """

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not (isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order)):
            return node
        order = node.this
        keys = order.expressions
        if any(o.args.get("desc") for o in keys):
            raise ValueError(
                f"cannot render an array aggregate ordered descending for this dialect: {node.sql('duckdb')}"
            )
        fields = [
            exp.PropertyEQ(this=exp.to_identifier(f"_cdp_k{i}"), expression=o.this.copy()) for i, o in enumerate(keys)
        ]
        fields.append(exp.PropertyEQ(this=exp.to_identifier("_cdp_v"), expression=order.this.copy()))
        collected = exp.ArrayAgg(this=exp.Struct(expressions=fields))
        element = exp.to_identifier("_cdp_e")
        pick = exp.Lambda(
            this=exp.Dot(this=element.copy(), expression=exp.to_identifier("_cdp_v")), expressions=[element]
        )
        return exp.Transform(this=exp.ArraySort(this=collected), expression=pick)

    return tree.transform(rewrite, copy=False)


# Dialects whose REGEXP_REPLACE replaces every match and takes no flags.
_REPLACE_ALL = ("spark", "databricks", "hive", "trino")


def _regexp_replace_all(tree: exp.Expression, write: str) -> exp.Expression:
    """DuckDB's ``regexp_replace(x, p, r, 'g')`` -> ``REGEXP_REPLACE(x, p, r)``.

    DuckDB replaces the first match unless told 'g'; the other engines always replace every
    match and have no flags argument (sqlglot warns and drops it). A replacement without 'g'
    keeps its meaning only when the pattern is anchored at the start (one match at most); any
    other is refused, naming the dialect, rather than rendered to replace every match.
    """

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.RegexpReplace):
            return node
        flags = node.args.get("modifiers")
        if flags is not None and flags.is_string and flags.this == "g":
            node = node.copy()
            node.set("modifiers", None)
            return node
        pattern = node.args.get("expression")
        if flags is None and isinstance(pattern, exp.Literal) and pattern.this.startswith("^"):
            return node
        raise ValueError(
            f"cannot render {node.sql('duckdb')} for {write}: its REGEXP_REPLACE replaces every match; "
            "use the 'g' flag or a pattern anchored with ^"
        )

    return tree.transform(rewrite, copy=False)


# DuckDB's function for the valid_regexp patterns its RE2 cannot evaluate (registered on every
# connection by cdp_assets/engines/java_regex.py).
JAVA_REGEX_FUNCTION = "java_regex_matches"


def valid_regexp_matches(value: str, pattern: str, re2_lacks: str) -> str:
    """Canonical SQL for "``value`` matches the valid_regexp ``pattern``", with Java's meaning.

    ``re2_lacks`` is the rules table's boolean column saying that RE2 cannot evaluate the pattern
    (cdp_assets/sql/regex.py ``re2_lacks``): DuckDB then calls its Java-semantics function, and
    RE2 (fast) for every other pattern; CASE evaluates each branch on its own rows only. Every
    other dialect's regular expressions are Java-style: :func:`_java_regex_as_native` renders the
    whole expression as their own ``regexp_matches``.
    """
    return (
        f"CASE WHEN {re2_lacks} THEN {JAVA_REGEX_FUNCTION}({value}, {pattern}) "
        f"ELSE regexp_matches({value}, {pattern}) END"
    )


def valid_regexp_matches_bound(value: str, re2_lacks: bool) -> str:
    """Canonical SQL for "``value`` matches the pattern bound to this ``?``" (a statement's
    parameter: ``Dialect.binds_regexp_parameters``), with Java's meaning: the pattern's function is
    chosen here, from ``re2_lacks`` (cdp_assets/sql/regex.py), as ``valid_regexp_matches`` chooses
    it per row from the rules table."""
    return f"{JAVA_REGEX_FUNCTION}({value}, ?)" if re2_lacks else f"regexp_matches({value}, ?)"


def _java_regex_as_native(tree: exp.Expression, write: str) -> exp.Expression:  # noqa: ARG001 - a hook
    """``CASE WHEN lacks THEN java_regex_matches(v, p) ELSE regexp_matches(v, p) END`` ->
    ``regexp_matches(v, p)``: engines with Java-style regular expressions evaluate every pattern."""

    def is_java(node: exp.Expression | None) -> bool:
        return isinstance(node, exp.Anonymous) and node.name.lower() == JAVA_REGEX_FUNCTION

    def rewrite(node: exp.Expression) -> exp.Expression:
        ifs = (node.args.get("ifs") or []) if isinstance(node, exp.Case) else []
        if len(ifs) == 1 and is_java(ifs[0].args["true"]) and isinstance(node.args.get("default"), exp.RegexpLike):
            return node.args["default"].copy()
        if is_java(node):
            value, pattern = node.expressions
            return exp.RegexpLike(this=value.copy(), expression=pattern.copy())
        return node

    return tree.transform(rewrite, copy=False)


def _sha256_of_text(tree: exp.Expression, write: str) -> exp.Expression:
    """Trino's SHA256 takes VARBINARY: hash the UTF-8 bytes of the text, as DuckDB and Spark do."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.SHA2) and not isinstance(node.this, exp.Encode):
            node = node.copy()
            node.set("this", exp.Encode(this=node.this, charset=exp.Literal.string("utf-8")))
        return node

    return tree.transform(rewrite, copy=False)


def _json_valid_check(write: str, text: exp.Expression) -> exp.Expression:
    """TRUE when ``text`` is JSON, in a dialect without DuckDB's ``json_valid``."""
    if write in ("spark", "databricks", "hive"):
        # GET_JSON_OBJECT gives NULL for text that is not JSON, the document itself otherwise.
        document = exp.Anonymous(this="GET_JSON_OBJECT", expressions=[text, exp.Literal.string("$")])
        return exp.Not(this=exp.Is(this=document, expression=exp.Null()))
    if write == "trino":
        parsed = exp.Anonymous(this="TRY", expressions=[exp.ParseJSON(this=text)])
        return exp.Not(this=exp.Is(this=parsed, expression=exp.Null()))
    raise ValueError(f"the json staging rule cannot be rendered for {write}: no json_valid hook for that dialect")


def _json_valid(tree: exp.Expression, write: str) -> exp.Expression:
    """DuckDB's ``json_valid(x)`` (the json staging rule's guard) has no sqlglot translation."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "json_valid":
            return exp.paren(_json_valid_check(write, node.expressions[0].copy()), copy=False)
        return node

    return tree.transform(rewrite, copy=False)


def _one_definition_per_cte(tree: exp.Expression, write: str) -> exp.Expression:  # noqa: ARG001 - a hook
    """sqlglot writes a SELECT for Spark and Hive with its subqueries' CTEs moved up to its top
    level (not a UNION's, not a CREATE TABLE AS's). A relation read twice in one query (``inc.Inlined``: a staged
    table's layers under two of its readers) would then define its CTEs twice, which Spark refuses
    (DUPLICATED_CTE_NAMES). Moved up here instead, a second definition equal to the first under the
    same name is dropped (the same rows); a different one under that name is an error of ours."""
    if not isinstance(tree, exp.Select):
        return tree
    top = transforms.move_ctes_to_top_level(tree).args.get("with_")
    if top is None:
        return tree
    first: dict[str, exp.CTE] = {}
    kept = []
    for cte in top.expressions:
        prior = first.get(cte.alias)
        if prior is None:
            first[cte.alias] = cte
            kept.append(cte)
        elif prior.this != cte.this:
            raise ValueError(f"two different definitions of the CTE {cte.alias} in one statement")
    top.set("expressions", kept)
    return tree


# Named per-dialect hooks applied after parsing, where sqlglot's translation alone is wrong.
_HOOKS = {
    "trino": (_sha256_of_text, _json_valid),
    "spark": (_json_valid, _one_definition_per_cte),
    "databricks": (_json_valid, _one_definition_per_cte),
    "hive": (_json_valid, _one_definition_per_cte),
}


@lru_cache(maxsize=4096)
def _transpile(sql: str, write: str) -> str:
    trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    if write in _UNORDERED_COLLECT:
        trees = [_ordered_list_as_sorted_structs(t) for t in trees]
    if write in _REPLACE_ALL:
        trees = [_regexp_replace_all(t, write) for t in trees]
    trees = [_java_regex_as_native(t, write) for t in trees]
    for hook in _HOOKS.get(write, ()):
        trees = [hook(t, write) for t in trees]
    return ";\n".join(t.sql(dialect=write, copy=False) for t in trees)


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect(
        "duckdb",
        "duckdb",
        transactional_ddl=True,
        session_temp_tables=True,
        replaces_atomically=True,
        describes_column_types=True,
        materializes_ctes=True,
        binds_regexp_parameters=True,
        picks_by_aggregate=True,
        skips_row_groups=True,
    ),
    "spark": Dialect("spark", "spark", transactional_ddl=False),
    "databricks": Dialect("databricks", "databricks", transactional_ddl=False),
    # Trino and Hive are Treasure Data's query engines here: no timestamp column type.
    "trino": Dialect("trino", "trino", transactional_ddl=False, stores_timestamps_as_text=True),
    "hive": Dialect("hive", "hive", transactional_ddl=False, stores_timestamps_as_text=True),
}


# How Trino writes a timestamp(3) as text (its CAST to VARCHAR), which is what a Treasure Data table
# written by a query holds for a TIMESTAMP column (its storage has no timestamp type).
TRINO_STORED_TIMESTAMP = "yyyy-MM-dd HH:mm:ss.SSS"


def timestamp_as_stored_text(column_sql: str) -> str:
    """A TIMESTAMP expression as the text a Treasure Data table written by a Trino query stores
    for it (``Dialect.writes_stored_timestamp_text``): a subquery read where that table would be
    read then compares and unions text with text, as real Trino requires."""
    return f"FORMAT_DATETIME({column_sql}, '{TRINO_STORED_TIMESTAMP}')"


def get_dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {name!r}; use one of {sorted(DIALECTS)}") from None
