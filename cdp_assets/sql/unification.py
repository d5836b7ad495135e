"""Identity unification as set-based SQL: valid keys -> nodes -> edges -> loop -> lookup.

The loop is hook-and-compress over the graph of labels (a Shiloach-Vishkin style
connected-components algorithm written as relational steps):

1. hook: every label with a smaller neighbour points to its smallest neighbour;
2. compress: pointers jump (``p <- p(p)``) until every chain ends at a root; each jump
   halves the depth, so a chain of length d needs log2(d) jumps;
3. contract: edges are rewritten onto the new labels; self-loops and duplicates vanish.

Every label with a neighbour either hooks or is hooked onto, so each round at least halves
the number of labels in every component: at most log2(component size) rounds, where plain
min-label propagation needs one round per link of the longest chain. The loop converges when
no edge is left, and the final label of a node is the smallest node of its component. Nodes
are numbered by (key priority, value), so that smallest node is the component's leader as
SPEC §5 defines it. See docs/unification.md for the measurements.

All functions here are pure: config in, SQL text (canonical DuckDB dialect) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from cdp_assets.config.models import LoadedConfig, PipelineConfig
from cdp_assets.config.references import is_produced
from cdp_assets.config.unify import TD_TIME_COLUMN, CanonicalId, UnifyConfig, UnifyTable
from cdp_assets.sql.dialects import (
    Dialect,
    TableRef,
    quote,
    timestamp_as_stored_text,
    valid_regexp_matches,
    valid_regexp_matches_bound,
)
from cdp_assets.sql.pipeline import Query
from cdp_assets.sql.checks import kept_largest_component_sql, largest_component_sql
from cdp_assets.sql.report import component_buckets_sql, kept_component_buckets_sql
from cdp_assets.sql.regex import pattern_for, re2_lacks

# A node id larger than any real one: LEAST() over optional nodes must ignore missing ones,
# and Trino's LEAST returns NULL when any argument is NULL, so NULLs are replaced by this.
NO_NODE = 9_000_000_000_000_000_000


@dataclass(frozen=True)
class SourceTablePlan:
    table_id: int
    alias: str
    ref: TableRef
    key_columns: tuple[tuple[str, str], ...]  # (column, key name)
    seen_at: str | None  # column with the row's time, for first/last seen
    incremental_column: str | None = None  # unify.yml incremental_columns[0]: new rows are newer
    # incremental_columns[1:]: ties of the first column are ordered by these, in turn (TD's meaning)
    incremental_rest: tuple[str, ...] = ()
    # Columns computed per row, not read: the value of another id this id merges by
    # (merge_by_canonical_ids), as (column, SQL expression over the source row ``s``).
    derived: tuple[tuple[str, str], ...] = ()
    # How the engine's described type of ``incremental_column`` is compared with a watermark
    # (``Dialect.incremental_kind``: timestamp, date, integer), filled in by the runner from the
    # warehouse's catalog; None: text or unknown, normalized per row by ``time_expr``. Left out
    # of the repr, hence of the config fingerprint: it is the warehouse's, not the config's.
    incremental_kind: str | None = field(default=None, repr=False)

    @property
    def from_sql(self) -> str:
        """What the graph reads: the table, plus its derived columns when it has any."""
        if not self.derived:
            return self.ref.sql
        extra = ", ".join(f"{expr} AS {quote(col)}" for col, expr in self.derived)
        return f"(SELECT s.*, {extra} FROM {self.ref.sql} AS s)"


@dataclass(frozen=True)
class IdPlan:
    """Everything the SQL of one canonical (or persistent) id needs, with names resolved."""

    cid: CanonicalId
    persistent: bool
    schema: str
    catalog: str | None
    keys: tuple[str, ...]  # every key of the unification, in declaration order (key_type = index + 1),
    # then the ids this id merges by (merge_by_canonical_ids / merge_by_persistent_ids)
    tables: tuple[SourceTablePlan, ...]
    caps: tuple[int, ...] = ()  # max rows per value, per key (same order as keys); empty: no cap
    nodes_ref: TableRef | None = None  # where this run keeps its nodes (a scratch table)
    # Each key's valid_regexp as written (same order as keys; None: none, or an id merged by),
    # and whether the key values' statement binds them as its parameters (the dialect's
    # ``binds_regexp_parameters``: ``for_dialect``) instead of reading them from the keys table.
    # Left out of the repr, hence of the config fingerprint: the rules are in it already, and
    # the engine is no config.
    valid_regexps: tuple[str | None, ...] = field(default=(), repr=False)
    binds_regexps: bool = field(default=False, repr=False)
    # Whether its master tables pick each id's values by aggregates (``Dialect.picks_by_aggregate``).
    picks_by_aggregate: bool = field(default=False, repr=False)
    # The dialect's ``skips_row_groups``: an incremental run's filters "after the watermark" are
    # written as UNION ALL branches of plain range and NULL tests (``_uncovered_branches``), which
    # the engine answers from the row groups after the watermark alone. Left out of the repr, as
    # the engine is no config.
    skips_row_groups: bool = field(default=False, repr=False)
    # The dialect's ``writes_stored_timestamp_text`` (Treasure Data's Trino): an incremental run's
    # new key values write the times they compute as the text the new rows' table holds, so that
    # every branch has the stored types (``key_values_sql``). Left out of the repr likewise.
    times_as_stored_text: bool = field(default=False, repr=False)

    @property
    def nodes(self) -> TableRef:
        return self.nodes_ref or self.ref("nodes")

    @property
    def incremental_tables(self) -> list[SourceTablePlan]:
        return [t for t in self.tables if t.incremental_column]

    @property
    def dnm_key_type(self) -> int | None:
        """The key type of ``do_not_merge_key``, if any."""
        return self.key_type(self.cid.do_not_merge_key) if self.cid.do_not_merge_key else None

    @property
    def name(self) -> str:
        return self.cid.name

    @property
    def merge_names(self) -> list[str]:
        """What links rows, in priority order: the keys (without a persistent id's ``time``),
        then the ids merged by."""
        return [*self.cid.graph_keys, *self.cid.merged_ids]

    def table(self, alias: str) -> SourceTablePlan | None:
        return next((t for t in self.tables if t.alias == alias), None)

    def ref(self, suffix: str) -> TableRef:
        return TableRef(self.schema, f"{self.cid.name}_{suffix}", self.catalog)

    def key_type(self, key: str) -> int:
        return self.keys.index(key) + 1

    def merge_columns(self, table: SourceTablePlan) -> list[tuple[str, int]]:
        """(column, key_type) of a table's key columns that this id merges by."""
        merge = self.merge_names
        return [(col, self.key_type(key)) for col, key in table.key_columns if key in merge]

    def linking_columns(self, table: SourceTablePlan) -> list[tuple[str, int]]:
        """Merge columns that build the graph's edges: all but the do-not-merge key's."""
        return [(c, kt) for c, kt in self.merge_columns(table) if kt != self.dnm_key_type]


DERIVED_PREFIX = "_cdp_id_"


def seen_at_column(pipeline: PipelineConfig, table: UnifyTable) -> str | None:
    """The column that dates a table's rows (first/last seen, a persistent id's leader, a master
    attribute's default order_by): the first incremental column; else, as Treasure Data does, ``time``
    for an existing warehouse table; else the incremental field of the source a phase stages it from."""
    if table.incremental_columns:
        return table.incremental_columns[0]
    if not is_produced(pipeline, table):
        return TD_TIME_COLUMN
    found = pipeline.source_of_staged_table(table.table)
    return found[0].incremental_field if found else None


def for_dialect(plan: IdPlan, dialect: Dialect | None) -> IdPlan:
    """``plan`` as its statements are built for ``dialect`` (None: the rules-table form, the
    master's window picks and the single-read watermark filters, which every dialect runs). A
    plan without its keys' valid_regexps (one built by hand, not by ``build_id_plans``) keeps
    reading them from the keys table: it has nothing to bind."""
    binds = dialect is not None and dialect.binds_regexp_parameters and len(plan.valid_regexps) == len(plan.keys)
    picks = dialect is not None and dialect.picks_by_aggregate
    skips = dialect is not None and dialect.skips_row_groups
    text = dialect is not None and dialect.writes_stored_timestamp_text
    if (plan.binds_regexps, plan.picks_by_aggregate, plan.skips_row_groups, plan.times_as_stored_text) == (
        binds,
        picks,
        skips,
        text,
    ):
        return plan
    return replace(
        plan, binds_regexps=binds, picks_by_aggregate=picks, skips_row_groups=skips, times_as_stored_text=text
    )


def build_id_plans(loaded: LoadedConfig, catalog: str | None = None, dialect: Dialect | None = None) -> list[IdPlan]:
    """One plan per id, each after the ids it merges by (their lookups feed its graph); its
    statements built for ``dialect`` (``for_dialect``)."""
    unify = loaded.unification
    if unify is None:
        return []
    pipeline = loaded.pipeline
    persistent = {p.name for p in unify.persistent_ids}
    plans: dict[str, IdPlan] = {}
    options = pipeline.unification_options
    real_keys = tuple(k.name for k in unify.keys)
    all_tables = {t.alias: i + 1 for i, t in enumerate(unify.tables)}
    for cid in unify.ordered_ids():
        keys = (*real_keys, *cid.merged_ids)
        caps = tuple(options.cap_for(k) if k in real_keys else None for k in keys)
        tables = []
        for t in unify.tables_for(cid):
            seen_at = seen_at_column(pipeline, t)
            ref = TableRef(t.database or pipeline.stg_schema, t.table, catalog)
            key_columns = [(kc.column, kc.key) for kc in t.key_columns]
            derived = []
            for other in cid.merged_ids:
                expr = id_of_row_expr(plans[other], t.alias, plans)
                if expr is not None:
                    key_columns.append((DERIVED_PREFIX + other, other))
                    derived.append((DERIVED_PREFIX + other, expr))
            tables.append(
                SourceTablePlan(
                    table_id=all_tables[t.alias],
                    alias=t.alias,
                    ref=ref,
                    key_columns=tuple(key_columns),
                    seen_at=seen_at,
                    incremental_column=t.incremental_columns[0] if t.incremental_columns else None,
                    incremental_rest=tuple(t.incremental_columns[1:]),
                    derived=tuple(derived),
                )
            )
        plans[cid.name] = IdPlan(
            cid=cid,
            persistent=cid.name in persistent,
            schema=unify.schema,
            catalog=catalog,
            keys=keys,
            tables=tuple(tables),
            caps=caps,
            valid_regexps=tuple(unify.key(k).valid_regexp if k in real_keys else None for k in keys),
        )
    return [for_dialect(plan, dialect) for plan in plans.values()]


def id_of_row_expr(plan: IdPlan, alias: str, plans: dict[str, IdPlan], row: str = "s", depth: int = 0) -> str | None:
    """The id ``plan`` gives a row of table ``alias`` (SQL over the row ``row``), read from that
    id's lookup by the row's key values (its do-not-merge value first, then by priority); None
    when the table does not feed that id."""
    table = plan.table(alias)
    if table is None:
        return None
    cols = plan.merge_columns(table)
    cols.sort(key=lambda c: (c[1] != plan.dnm_key_type, plan.merge_names.index(plan.keys[c[1] - 1])))
    lookup = plan.ref("lookup").sql
    parts = []
    for col, kt in cols:
        if col.startswith(DERIVED_PREFIX):
            value = id_of_row_expr(plans[plan.keys[kt - 1]], alias, plans, row, depth + 1)
        else:
            value = f"CAST({row}.{quote(col)} AS VARCHAR)"
        if value is None:
            continue
        l = f"idl{depth}_{len(parts)}"
        parts.append(
            f"(SELECT MAX({l}.{quote(plan.name)}) FROM {lookup} AS "
            f"{l} WHERE {l}.id_key_type = {kt} AND {l}.id = {value})"
        )
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"


# ---------------------------------------------------------------------------- rule tables
# Config values (invalid texts, regular expressions, names) reach the warehouse as rows of
# small tables loaded through the engine's DataFrame API, never as SQL text.


def keys_frame(plan: IdPlan, unify: UnifyConfig) -> pd.DataFrame:
    """The keys as rows: each valid_regexp as written, and as evaluated (Treasure Data's meaning
    on every engine, cdp_assets/sql/regex.py), with whether RE2 cannot evaluate it."""
    rows = []
    merge = plan.merge_names
    real = {k.name for k in unify.keys}
    for i, name in enumerate(plan.keys):
        regexp = unify.key(name).valid_regexp if name in real else None
        priority = merge.index(name) + 1 if name in merge else None
        cap = plan.caps[i] if plan.caps else None
        rows.append(
            {
                "key_type": i + 1,
                "key_name": name,
                "merge_priority": priority,
                "valid_regexp": regexp,
                "max_rows_per_value": cap,
                "valid_regexp_evaluated": pattern_for(regexp),
                "valid_regexp_re2_lacks": re2_lacks(regexp),
            }
        )
    df = pd.DataFrame(rows)
    df["merge_priority"] = df["merge_priority"].astype("Int64")
    df["max_rows_per_value"] = df["max_rows_per_value"].astype("Int64")
    df["valid_regexp"] = df["valid_regexp"].astype("string")
    df["valid_regexp_evaluated"] = df["valid_regexp_evaluated"].astype("string")
    return df


def invalid_texts_frame(plan: IdPlan, unify: UnifyConfig) -> pd.DataFrame:
    rows = [
        {"key_type": i + 1, "invalid_text": text}
        for i, name in enumerate(plan.keys)
        if name in {k.name for k in unify.keys}
        for text in unify.key(name).invalid_text_values
    ]
    return pd.DataFrame(rows, columns=["key_type", "invalid_text"]).astype(
        {"key_type": "int64", "invalid_text": "string"}
    )


def tables_frame(plan: IdPlan, fingerprint: str) -> pd.DataFrame:
    """The id's source tables, each with the fingerprint of the config the run unifies with: the
    watermarks copy it (``watermarks_table_sql``), so the next run can tell whether they still hold."""
    columns = ["table_id", "table_alias", "database_name", "table_name", "config_fingerprint"]
    rows = [(t.table_id, t.alias, t.ref.schema, t.ref.name, fingerprint) for t in plan.tables]
    return pd.DataFrame(rows, columns=columns)


def rule_tables_written_sql(keys: TableRef, invalid_texts: TableRef, tables: TableRef) -> str:
    """The rule tables' row counts, and the fewest and the most of the config fingerprints
    ``{cid}_tables`` holds (``tables_frame``): one row."""
    return (
        f"SELECT (SELECT COUNT(*) FROM {keys.sql}) AS keys, "
        f"(SELECT COUNT(*) FROM {invalid_texts.sql}) AS invalid_texts, "
        f"(SELECT COUNT(*) FROM {tables.sql}) AS tables, "
        f"(SELECT MIN(config_fingerprint) FROM {tables.sql}) AS first_fingerprint, "
        f"(SELECT MAX(config_fingerprint) FROM {tables.sql}) AS last_fingerprint"
    )


# ---------------------------------------------------------------------------- graph build


def time_expr(column_sql: str) -> str:
    """A column's value as a TIMESTAMP, whatever it holds: a timestamp, a date/time text, or a Unix
    epoch in seconds as a number or as digits (Treasure Data's ``time``). Unparseable values give
    NULL (such rows are read again by every incremental run, never lost)."""
    text = f"CAST({column_sql} AS VARCHAR)"
    epoch = f"TRY_CAST({text} AS BIGINT)"
    return (
        f"CASE WHEN {epoch} IS NOT NULL THEN CAST(EPOCH_MS({epoch} * 1000) AS TIMESTAMP) "
        f"ELSE TRY_CAST({text} AS TIMESTAMP) END"
    )


# Later incremental columns are compared as text padded to one width: numbers (ids, epochs) in
# numeric order, timestamps in time order; a value longer than this is compared by its first
# characters.
INCREMENTAL_TEXT_WIDTH = 64


def _position(table: SourceTablePlan, alias: str = "s") -> str:
    """A row's position in time as a TIMESTAMP, the value ``time_expr`` gives, computed without
    a text round trip where the column is typed (``incremental_kind``): a timestamp is itself, a
    date its midnight, an integer Unix epoch seconds."""
    column = f"{alias}.{quote(table.incremental_column or '')}"
    if table.incremental_kind == "timestamp":
        return column
    if table.incremental_kind == "date":
        return f"CAST({column} AS TIMESTAMP)"
    if table.incremental_kind == "integer":
        return f"CAST(EPOCH_MS(CAST({column} AS BIGINT) * 1000) AS TIMESTAMP)"
    return time_expr(column)


def _inc_exprs(table: SourceTablePlan, alias: str = "s") -> tuple[str, str]:
    """(position in time, tie-break text) of a row of an incremental table: rows are ordered by
    the incremental columns in turn."""
    if not table.incremental_column:
        return "CAST(NULL AS TIMESTAMP)", "CAST(NULL AS VARCHAR)"
    at = _position(table, alias)
    if not table.incremental_rest:
        return at, "''"
    padded = [
        f"LPAD(COALESCE(CAST({alias}.{quote(c)} AS VARCHAR), ''), {INCREMENTAL_TEXT_WIDTH}, '0')"
        for c in table.incremental_rest
    ]
    return at, " || '|' || ".join(padded)


def _covered(table_id: int, since: TableRef, at: str, rest: str) -> str:
    """The row at (at, rest) of table ``table_id`` is at or before that table's watermark in
    ``since`` (false when the table has none, or the row no position). The watermark is read
    through ``time_expr`` as the rows are: a table without a timestamp type (Treasure Data's) keeps
    it as text. A table has one watermark: it is read by uncorrelated scalar subqueries, computed
    once per statement, not joined with every row (DuckDB, 1M sample's 3.6M key values: 0.09 s
    against 0.5-0.7 s for a correlated EXISTS)."""
    mark = _mark_of(table_id, since)
    mark_rest = f"(SELECT MAX(w.watermark_rest) FROM {since.sql} AS w WHERE w.table_id = {int(table_id)})"
    return f"COALESCE({mark} > {at} OR ({mark} = {at} AND {mark_rest} >= {rest}), FALSE)"


def _mark_of(table_id: int, since: TableRef) -> str:
    """The table's watermark in ``since`` as ``time_expr`` reads it, once per statement (an
    uncorrelated scalar subquery); NULL when it has none."""
    return f"(SELECT MAX({time_expr('w.watermark')}) FROM {since.sql} AS w WHERE w.table_id = {int(table_id)})"


def _uncovered_branches(position: str, lower: str, mark: str, covered: str) -> list[str]:
    """``NOT covered`` (a row that the watermark ``mark`` does not cover, ``_covered``) as three
    disjoint conditions, each with a plain test of ``position`` (the row's position, or a column
    that orders as it does) among its ANDed terms, which an engine that ``skips_row_groups``
    answers from the row groups it can hold in: at or after ``lower`` (the smallest position the
    watermark does not cover: NULL when the table has none); without a position; any position
    while the table has no watermark. Together they are the one filter ``(position >= lower OR
    position IS NULL OR mark IS NULL) AND NOT covered``, whose first term ``NOT covered``
    implies (a row before its watermark is covered), split so that no OR hides the range."""
    return [
        f"{position} >= {lower} AND NOT {covered}",
        f"{position} IS NULL AND NOT {covered}",
        f"{mark} IS NULL AND {position} IS NOT NULL AND NOT {covered}",
    ]


def _watermark_of(table_id: int, since: TableRef) -> str:
    """The table's watermark as a TIMESTAMP, read once per statement (an uncorrelated scalar
    subquery). Only for a typed column: its engine stores the watermark as a TIMESTAMP."""
    return f"(SELECT MAX(CAST(w.watermark AS TIMESTAMP)) FROM {since.sql} AS w WHERE w.table_id = {int(table_id)})"


def _typed_lower_bound(table: SourceTablePlan, mark: str) -> str:
    """The smallest value of a typed incremental column a row after the watermark ``mark`` can
    hold, in the column's own type: the filter compares the column itself with it (a plain range
    predicate, no per-row cast), so the engine can skip row groups by their min/max."""
    if table.incremental_kind == "date":
        return f"CAST({mark} AS DATE)"
    if table.incremental_kind == "integer":
        # epoch seconds n is at or after the watermark when n * 1000 >= its epoch ms
        return f"CAST(FLOOR(EPOCH_MS({mark}) / 1000.0) AS BIGINT)"
    return mark


def _new_rows_filter(table: SourceTablePlan, since: TableRef | None, alias: str = "s") -> str:
    """In an incremental run, only rows after the table's watermark (read from a table, never
    pasted); tables without an incremental column are read whole."""
    if since is None or not table.incremental_column:
        return ""
    at, rest = _inc_exprs(table, alias)
    if table.incremental_kind is not None:
        # A typed column: compared as it is with its watermark, read once. The range predicate
        # keeps every row after the watermark (a row at it is kept when its rest columns are
        # after the watermark's); rows without a position, or a table without a watermark, are
        # read as the generic filter reads them: always.
        column = f"{alias}.{quote(table.incremental_column)}"
        mark = _watermark_of(table.table_id, since)
        return (
            f" WHERE ({column} >= {_typed_lower_bound(table, mark)} OR {column} IS NULL OR {mark} IS NULL)"
            f" AND NOT {_covered(table.table_id, since, at, rest)}"
        )
    # A correlated NOT EXISTS here, not ``_covered``'s scalar subqueries: DuckDB joins the one
    # watermark of this table to the rows once (1M sample: 0.9 s against 1.6 s for all tables).
    mark = time_expr("w.watermark")
    return (
        f" WHERE NOT EXISTS (SELECT 1 FROM {since.sql} AS w WHERE w.table_id = {table.table_id} "
        f"AND ({mark} > {at} OR ({mark} = {at} AND w.watermark_rest >= {rest})))"
    )


def _new_rows_branches(table: SourceTablePlan, since: TableRef) -> list[str]:
    """``_new_rows_filter`` of a typed incremental column as disjoint WHERE clauses, one read
    each (``_uncovered_branches``): for an engine that ``skips_row_groups``, which then reads
    the row groups after the watermark alone (5M sample, DuckDB: 3 of 11 row groups of a staged
    table, against all of them through the filter's OR)."""
    assert table.incremental_kind is not None
    at, rest = _inc_exprs(table, "s")
    mark = _watermark_of(table.table_id, since)
    column = f"s.{quote(table.incremental_column or '')}"
    covered = _covered(table.table_id, since, at, rest)
    return [f" WHERE {b}" for b in _uncovered_branches(column, _typed_lower_bound(table, mark), mark, covered)]


def _seen_expr(table: SourceTablePlan, alias: str = "s") -> str:
    """A row's time for first/last seen: its position where the seen column is the incremental
    column (typed or not, the same value), else ``time_expr`` of it."""
    if not table.seen_at:
        return "CAST(NULL AS TIMESTAMP)"
    if table.seen_at == table.incremental_column:
        return _position(table, alias)
    return time_expr(f"{alias}.{quote(table.seen_at)}")


def new_rows_width(plan: IdPlan) -> int:
    """How many key columns ``new_rows_sql`` keeps per row: the most merge columns of a table."""
    return max((len(plan.merge_columns(t)) for t in plan.incremental_tables), default=0)


def new_rows_sql(plan: IdPlan, since: TableRef) -> str:
    """An incremental run's new rows, filtered once: the rows of each incremental table after its
    watermark in ``since``, with what the run's later steps read of them: ``table_id``, the row's
    ``seen_at``, its position (``inc_at``, ``inc_rest``) and its merge columns' values as text,
    ``k0``, ``k1``, ... in ``plan.merge_columns`` order (NULL past a table's own). The new key
    values, the new rows' stars (``edges_sql``) and the new watermarks (``watermarks_sql``) read
    this table instead of filtering every row of every table again."""
    width = new_rows_width(plan)
    parts = []
    for t in plan.incremental_tables:
        cols = plan.merge_columns(t)
        inc, rest = _inc_exprs(t)
        keys = [f", CAST(s.{quote(col)} AS VARCHAR) AS k{i}" for i, (col, _) in enumerate(cols)]
        keys += [f", CAST(NULL AS VARCHAR) AS k{i}" for i in range(len(cols), width)]
        select = (
            f"SELECT {t.table_id} AS table_id, {_seen_expr(t)} AS seen_at, {inc} AS inc_at, "
            f"CAST({rest} AS VARCHAR) AS inc_rest{''.join(keys)} FROM {t.from_sql} AS s"
        )
        if plan.skips_row_groups and t.incremental_kind is not None:
            parts.extend(select + where for where in _new_rows_branches(t, since))
        else:
            parts.append(select + _new_rows_filter(t, since))
    if not parts:  # no incremental table: no new row (an incremental run needs one)
        return (
            "SELECT CAST(NULL AS INTEGER) AS table_id, CAST(NULL AS TIMESTAMP) AS seen_at, "
            "CAST(NULL AS TIMESTAMP) AS inc_at, CAST(NULL AS VARCHAR) AS inc_rest WHERE 1 = 0"
        )
    return "\nUNION ALL\n".join(parts)


def key_values_sql(plan: IdPlan, since: TableRef | None = None, new_rows: TableRef | None = None) -> Query:
    """Every valid (table, key, value, time) of the merge keys: the input of the graph.
    With ``since`` (the watermarks of the last run), only new rows of incremental tables; with
    ``new_rows`` (``new_rows_sql``'s table), the incremental tables' rows are read from there.
    ``inc_at``/``inc_rest`` keep each row's incremental position, so that an incremental run can
    tell the rows a previous run covered from those it must read again (``merged_key_values_sql``).
    A value is valid when it is not NULL, not one of its key's invalid texts (a join with the
    invalid texts table) and matches its key's valid_regexp: each pattern bound as a parameter of
    the statement where the plan says so (``IdPlan.binds_regexps``; DuckDB compiles it once),
    else read from the keys table (compiled per row by DuckDB)."""
    parts = []
    key_types: list[int] = []
    for t in plan.tables:
        key_types.extend(kt for _, kt in plan.merge_columns(t) if kt not in key_types)
        if new_rows is not None and t.incremental_column:
            parts.extend(
                f"SELECT table_id, {key_type} AS key_type, k{i} AS value, seen_at, inc_at, inc_rest "
                f"FROM {new_rows.sql} AS s WHERE s.table_id = {t.table_id}"
                for i, (_, key_type) in enumerate(plan.merge_columns(t))
            )
            continue
        seen = _seen_expr(t)
        inc, rest = _inc_exprs(t)
        if new_rows is not None and plan.times_as_stored_text:
            # Beside the new rows' stored text (a Treasure Data table has no timestamp type):
            # real Trino unions no VARCHAR with a TIMESTAMP, and a subquery standing in for the
            # new key values' scratch table has the columns that table would store.
            seen, inc = timestamp_as_stored_text(seen), timestamp_as_stored_text(inc)
        for col, key_type in plan.merge_columns(t):
            parts.append(
                f"SELECT {t.table_id} AS table_id, {key_type} AS key_type, "
                f"CAST(s.{quote(col)} AS VARCHAR) AS value, {seen} AS seen_at, {inc} AS inc_at, "
                f"CAST({rest} AS VARCHAR) AS inc_rest FROM {t.from_sql} AS s" + _new_rows_filter(t, since)
            )
    raw = "\nUNION ALL\n".join(parts)
    invalid = plan.ref("invalid_texts").sql
    if plan.binds_regexps:  # each pattern a parameter of the statement: no join with the keys table
        regexps = [(kt, plan.valid_regexps[kt - 1]) for kt in sorted(key_types) if plan.valid_regexps[kt - 1]]
        whens = "".join(f" WHEN {kt} THEN {valid_regexp_matches_bound('r.value', re2_lacks(rx))}" for kt, rx in regexps)
        keys_join, valid = "", f"\n  AND CASE r.key_type{whens} ELSE TRUE END" if regexps else ""
        params = tuple(pattern_for(rx) for _, rx in regexps)
    else:
        matches = valid_regexp_matches("r.value", "k.valid_regexp_evaluated", "k.valid_regexp_re2_lacks")
        keys_join = f"JOIN {plan.ref('keys').sql} AS k ON k.key_type = r.key_type\n"
        valid, params = f"\n  AND (k.valid_regexp_evaluated IS NULL OR {matches})", ()
    sql = f"""
SELECT r.table_id, r.key_type, r.value, r.seen_at, r.inc_at, r.inc_rest
FROM (
{raw}
) AS r
{keys_join}LEFT JOIN {invalid} AS i ON i.key_type = r.key_type AND i.invalid_text = r.value
WHERE r.value IS NOT NULL
  AND i.key_type IS NULL{valid}
"""
    return Query(sql, params)


def value_stats_sql(plan: IdPlan, changed: TableRef | None = None) -> str:
    """One row per distinct valid value: how many rows hold it, when it was first and last
    seen, and in which tables. One aggregation feeds the cap, the nodes and the lookup; it is
    kept as ``{id}_value_stats``. ``changed``: the statistics of these values alone (an
    incremental run's new values and values whose rows went; a value without rows left has none)."""
    where = (
        ""
        if changed is None
        else f"WHERE EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE c.key_type = kv.key_type AND c.value = kv.value)\n"
    )
    return f"""
SELECT key_type, value, COUNT(*) AS row_count, MIN(seen_at) AS first_seen_at, MAX(seen_at) AS last_seen_at,
       LIST_SORT(LIST_DISTINCT(LIST(table_id))) AS source_table_ids
FROM {plan.ref('key_values').sql} AS kv
{where}GROUP BY key_type, value
"""


def changed_values_sql(new_values: TableRef, removed: TableRef, previous_graph: TableRef) -> str:
    """An incremental run's changed values: those of the new rows and those whose previous rows
    went (``removed_key_values_sql``). No other value's rows, hence statistics, change. Each with
    the leader of its previous component in ``previous_graph`` (``leader_key_type``,
    ``leader_id``; NULL for a value new to the graph): the components the run touches."""
    return f"""
SELECT c.key_type, c.value, g.leader_key_type, g.leader_id
FROM (SELECT key_type, value FROM {new_values.sql} UNION SELECT key_type, value FROM {removed.sql}) AS c
LEFT JOIN {previous_graph.sql} AS g ON g.follower_key_type = c.key_type AND g.follower_id = c.value
"""


def value_stats_changes_sql(
    published: TableRef, changed: TableRef, changed_stats: TableRef, in_place: bool
) -> list[str]:
    """``{id}_value_stats`` with the changed values' statistics replaced: in place (``in_place``:
    DELETE and INSERT, for an engine that runs them in one transaction), else one SELECT of the
    whole table to rebuild and swap in."""
    match = f"EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE c.key_type = s.key_type AND c.value = s.value)"
    if in_place:
        return [
            f"DELETE FROM {published.sql} AS s WHERE {match}",
            f"INSERT INTO {published.sql} ({', '.join(VALUE_STATS_COLUMNS)}) "
            f"SELECT {', '.join(VALUE_STATS_COLUMNS)} FROM {changed_stats.sql}",
        ]
    return [f"SELECT s.* FROM {published.sql} AS s WHERE NOT {match}\nUNION ALL\nSELECT * FROM {changed_stats.sql}"]


VALUE_STATS_COLUMNS = ("key_type", "value", "row_count", "first_seen_at", "last_seen_at", "source_table_ids")


def excluded_changes_sql(plan: IdPlan, excluded: TableRef, changed: TableRef, changed_stats: TableRef) -> str:
    """One row: ``changed``, how many values enter or leave the set of values over their cap (only
    the changed values can), and ``excluded``, the rows of ``{id}_excluded_values`` (the set is
    kept when none changes)."""
    over = f"""SELECT s.key_type, s.value FROM {changed_stats.sql} AS s
    JOIN {plan.ref('keys').sql} AS k ON k.key_type = s.key_type WHERE s.row_count > k.max_rows_per_value"""
    was = f"""SELECT e.key_type, e.value FROM {excluded.sql} AS e
    WHERE EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE c.key_type = e.key_type AND c.value = e.value)"""
    return f"""
SELECT (SELECT COUNT(*) FROM (
  ({was} EXCEPT {over})
  UNION ALL
  ({over} EXCEPT {was})
) AS d) AS changed, (SELECT COUNT(*) FROM {excluded.sql}) AS excluded
"""


def excluded_values_sql(plan: IdPlan, stats: TableRef) -> str:
    """Values shared by more rows than their key's cap: kept out of the graph, never merged."""
    return f"""
SELECT s.key_type, k.key_name, s.value, s.row_count, k.max_rows_per_value
FROM {stats.sql} AS s
JOIN {plan.ref('keys').sql} AS k ON k.key_type = s.key_type
WHERE s.row_count > k.max_rows_per_value
"""


def _with_labels(numbered_sql: str) -> str:
    """The nodes with each its own label: the rounds' first labels are the nodes table itself
    (``Step`` kind ALIAS), not a copy of its node numbers. Labelled in an outer query: the
    node number is a window function, which another column of the same SELECT cannot name."""
    return f"SELECT n.*, n.node AS label FROM ({numbered_sql}) AS n"


def nodes_sql(plan: IdPlan, stats: TableRef) -> str:
    """Number the values under their cap by (key priority, value): the smallest node leads its
    component. Nodes keep their value's statistics for the lookup, and start as their own label."""
    return _with_labels(f"""
SELECT ROW_NUMBER() OVER (ORDER BY k.merge_priority, s.value) AS node, s.key_type, s.value,
       s.first_seen_at, s.last_seen_at, s.source_table_ids
FROM {stats.sql} AS s
JOIN {plan.ref('keys').sql} AS k ON k.key_type = s.key_type
WHERE k.max_rows_per_value IS NULL OR s.row_count <= k.max_rows_per_value
""")


def _row_nodes_sql(
    plan: IdPlan,
    table: SourceTablePlan,
    cols: list[tuple[str, int]],
    extra: str = "",
    since: TableRef | None = None,
    new_rows: TableRef | None = None,
) -> str:
    """Per source row: the node of each of ``cols`` (n0, n1, ...) and the smallest of them (rmin).
    ``new_rows``: an incremental table's new rows are read from ``new_rows_sql``'s table, whose
    ``k{i}`` hold the values of ``plan.merge_columns(table)``."""
    nodes = plan.nodes.sql
    if new_rows is not None and table.incremental_column:
        position = {col: i for i, (col, _) in enumerate(plan.merge_columns(table))}
        values = [f"s.k{position[col]}" for col, _ in cols]
        source = f"(SELECT * FROM {new_rows.sql} AS r WHERE r.table_id = {table.table_id})"
    else:
        values = [f"CAST(s.{quote(col)} AS VARCHAR)" for col, _ in cols]
        # New rows are picked before they are joined to the nodes: DuckDB joins every row first
        # when the watermark's NOT EXISTS follows the joins (3x slower on 1M rows).
        filtered = _new_rows_filter(table, since)
        source = f"(SELECT * FROM {table.from_sql} AS s{filtered})" if filtered else table.from_sql
    joins = "\n".join(
        f"LEFT JOIN {nodes} AS n{i} ON n{i}.key_type = {kt} AND n{i}.value = {value}"
        for i, ((_, kt), value) in enumerate(zip(cols, values))
    )
    candidates = [f"COALESCE(n{i}.node, {NO_NODE})" for i in range(len(cols))]
    # Spark refuses LEAST of a single argument (a table with one key column).
    rmin = f"LEAST({', '.join(candidates)})" if len(candidates) > 1 else candidates[0]
    picks = ", ".join(f"n{i}.node AS n{i}" for i in range(len(cols)))
    return f"SELECT {rmin} AS rmin, {picks}{extra} FROM {source} AS s\n{joins}"


def touched_components_sql(plan: IdPlan, previous_graph: TableRef, changed: TableRef, changed_stats: TableRef) -> str:
    """The previous components (by leader) holding a changed value (a value of a new row, or one
    whose previous rows went), each with its representative in an incremental run's rounds
    (``rep_key_type``, ``rep_id``): its smallest remaining member by (merge priority, value). That
    is its leader, unless the leader's rows all went: then the smallest member left, found from
    that component's graph rows only (NULL when none is left). A value whose rows all went leaves
    the graph and its component stays together, so the component takes part in the rounds as this
    one node; every other component stays as it was."""
    keys = plan.ref("keys").sql
    return f"""
WITH touched AS (
  SELECT DISTINCT c.leader_key_type, c.leader_id FROM {changed.sql} AS c WHERE c.leader_id IS NOT NULL
),
gone AS (
  SELECT c.key_type, c.value FROM {changed.sql} AS c
  WHERE NOT EXISTS (SELECT 1 FROM {changed_stats.sql} AS s WHERE s.key_type = c.key_type AND s.value = c.value)
),
lost AS (
  SELECT t.leader_key_type, t.leader_id FROM touched AS t
  WHERE EXISTS (SELECT 1 FROM gone AS x WHERE x.key_type = t.leader_key_type AND x.value = t.leader_id)
),
successors AS (
  SELECT leader_key_type, leader_id, follower_key_type, follower_id FROM (
    SELECT g.leader_key_type, g.leader_id, g.follower_key_type, g.follower_id,
           ROW_NUMBER() OVER (PARTITION BY g.leader_key_type, g.leader_id
                              ORDER BY k.merge_priority, g.follower_id) AS rn
    FROM {previous_graph.sql} AS g
    JOIN lost AS l ON l.leader_key_type = g.leader_key_type AND l.leader_id = g.leader_id
    JOIN {keys} AS k ON k.key_type = g.follower_key_type
    WHERE NOT EXISTS (SELECT 1 FROM gone AS x WHERE x.key_type = g.follower_key_type AND x.value = g.follower_id)
  ) AS m WHERE rn = 1
)
SELECT t.leader_key_type, t.leader_id,
       CASE WHEN l.leader_id IS NULL THEN t.leader_key_type ELSE s.follower_key_type END AS rep_key_type,
       CASE WHEN l.leader_id IS NULL THEN t.leader_id ELSE s.follower_id END AS rep_id
FROM touched AS t
LEFT JOIN lost AS l ON l.leader_key_type = t.leader_key_type AND l.leader_id = t.leader_id
LEFT JOIN successors AS s ON s.leader_key_type = t.leader_key_type AND s.leader_id = t.leader_id
"""


def incremental_nodes_sql(plan: IdPlan, changed: TableRef, changed_stats: TableRef, touched: TableRef) -> str:
    """The nodes of an incremental run's rounds: the contracted graph. One node per touched
    component (its representative, ``touched_components_sql``) and the changed values that have
    rows under their cap, each with its previous component's leader (NULL for a value new to the
    graph), numbered among themselves by (key priority, value). The smallest node of a merged set
    of representatives and values is the smallest value of the merged component, its leader:
    node numbers are internal to a run, the graph and the ids hold values. Built from the run's
    small tables alone (no read of the graph or of the value statistics)."""
    keys = plan.ref("keys").sql
    return _with_labels(f"""
SELECT ROW_NUMBER() OVER (ORDER BY k.merge_priority, t.value) AS node, t.key_type, t.value,
       t.leader_key_type, t.leader_id
FROM (
  SELECT tc.rep_key_type AS key_type, tc.rep_id AS value, tc.leader_key_type, tc.leader_id
  FROM {touched.sql} AS tc WHERE tc.rep_id IS NOT NULL
  UNION
  SELECT c.key_type, c.value, c.leader_key_type, c.leader_id
  FROM {changed.sql} AS c
  JOIN {changed_stats.sql} AS s ON s.key_type = c.key_type AND s.value = c.value
  JOIN {keys} AS ck ON ck.key_type = c.key_type
  WHERE ck.max_rows_per_value IS NULL OR s.row_count <= ck.max_rows_per_value
) AS t
JOIN {keys} AS k ON k.key_type = t.key_type
""")


def edges_sql(
    plan: IdPlan, since: TableRef | None = None, contracted: bool = False, new_rows: TableRef | None = None
) -> str:
    """Link each key value of a row to the row's smallest node (a star per row), as (a > b).

    In an incremental run (``contracted``) only new rows make stars, and each touched previous
    component one more around its representative (the changed values in it -> the smallest of
    its nodes, which is the representative): the nodes carry their previous component
    (``incremental_nodes_sql``). The components of (touched components + new rows) are the
    components of all rows that changed, so the loop starts where the last run ended and works
    only on what the new rows reach, each previous component contracted to one node.
    ``new_rows``: the incremental tables' new rows are read from ``new_rows_sql``'s table.
    """
    parts: list[str] = []
    ctes: list[str] = []
    if contracted:
        nodes = plan.nodes.sql
        parts.append(
            "SELECT a, b FROM (SELECT n.node AS a, MIN(n.node) OVER (PARTITION BY n.leader_key_type, n.leader_id) "
            f"AS b FROM {nodes} AS n WHERE n.leader_id IS NOT NULL) AS st WHERE a <> b"
        )
    for t in plan.tables:
        cols = plan.linking_columns(t)
        if len(cols) < 2:
            continue  # a row with one key links nothing
        # Each row is joined to its nodes once (a CTE per table), then unfolded per key column.
        ctes.append(f"rows_{t.table_id} AS (\n{_row_nodes_sql(plan, t, cols, since=since, new_rows=new_rows)}\n)")
        for i in range(len(cols)):
            parts.append(f"SELECT n{i} AS a, rmin AS b FROM rows_{t.table_id} WHERE n{i} IS NOT NULL AND n{i} <> rmin")
    if not parts:
        return "SELECT CAST(NULL AS BIGINT) AS a, CAST(NULL AS BIGINT) AS b WHERE 1 = 0"
    with_clause = f"WITH {', '.join(ctes)}\n" if ctes else ""
    return with_clause + "SELECT DISTINCT a, b FROM (\n" + "\nUNION ALL\n".join(parts) + "\n) AS e"


def dnm_links_sql(plan: IdPlan) -> str:
    """(do-not-merge node, smallest other node) of every row that has both."""
    kd = plan.dnm_key_type
    nodes = plan.nodes.sql
    parts = []
    for t in plan.tables:
        dnm_cols = [c for c, kt in plan.merge_columns(t) if kt == kd]
        cols = plan.linking_columns(t)
        if not dnm_cols or not cols:
            continue
        for j, dcol in enumerate(dnm_cols):
            extra = ", d.node AS dnm_node"
            row_nodes = _row_nodes_sql(plan, t, cols, extra) + (
                f"\nJOIN {nodes} AS d ON d.key_type = {kd} AND d.value = CAST(s.{quote(dcol)} AS VARCHAR)"
            )
            parts.append(f"SELECT dnm_node, rmin AS other FROM ({row_nodes}) AS r WHERE rmin <> {NO_NODE}")
    if not parts:
        return "SELECT CAST(NULL AS BIGINT) AS dnm_node, CAST(NULL AS BIGINT) AS other WHERE 1 = 0"
    return "SELECT DISTINCT dnm_node, other FROM (\n" + "\nUNION ALL\n".join(parts) + "\n) AS l"


def dnm_groups_sql(links: TableRef, labels: TableRef) -> str:
    """Per group of the other keys: the do-not-merge value it attaches to (the smallest when it
    touches several: a conflict), and how many it touched."""
    return f"""
SELECT l.label AS grp, MIN(d.dnm_node) AS dnm_node, COUNT(DISTINCT d.dnm_node) AS touched
FROM {links.sql} AS d JOIN {labels.sql} AS l ON l.node = d.other
GROUP BY l.label
"""


def dnm_resolve_sql(labels: TableRef, groups: TableRef) -> str:
    """Final labels: groups attached to the same do-not-merge value form one component led by
    its smallest node; every component holds at most one do-not-merge value."""
    return f"""
WITH leaders AS (
  SELECT dnm_node, LEAST(dnm_node, MIN(grp)) AS leader FROM {groups.sql} GROUP BY dnm_node
)
SELECT p.node, COALESCE(ld.leader, lg.leader, p.label) AS label
FROM {labels.sql} AS p
LEFT JOIN leaders AS ld ON ld.dnm_node = p.node
LEFT JOIN {groups.sql} AS g ON g.grp = p.label
LEFT JOIN leaders AS lg ON lg.dnm_node = g.dnm_node
"""


KEY_VALUE_COLUMNS = ("table_id", "key_type", "value", "seen_at", "inc_at", "inc_rest")


def _kept_key_value(plan: IdPlan, since: TableRef, row: str = "p") -> str | None:
    """The condition on a previous key value ``row`` that an incremental run keeps: a row of an
    incremental table that the watermarks ``since`` cover. None: no table is incremental."""
    ids = [t.table_id for t in plan.incremental_tables if t.incremental_column]
    if not ids:
        return None
    # The stored position is cast back: an engine without a timestamp column type (Treasure
    # Data) keeps it as text; elsewhere the cast is of a TIMESTAMP to itself.
    at = f"CAST({row}.inc_at AS TIMESTAMP)"
    return " OR ".join(f"({row}.table_id = {i} AND {_covered(i, since, at, f'{row}.inc_rest')})" for i in ids)


def merged_key_values_sql(plan: IdPlan, previous: TableRef, new: TableRef, since: TableRef) -> str:
    """Key values after an incremental run: the previous rows the watermarks ``since`` cover,
    plus the new rows (exactly the complement: ``_new_rows_filter``). Tables without an
    incremental column are re-read whole, so their old rows go. Idempotent: when a killed run
    already published some new rows, they are dropped here and read again, never doubled."""
    kept = _kept_key_value(plan, since)
    keep = f"SELECT p.* FROM {previous.sql} AS p WHERE {kept}" if kept else None
    return "\nUNION ALL\n".join(p for p in (keep, f"SELECT * FROM {new.sql}") if p)


def key_values_changes_sql(
    plan: IdPlan, published: TableRef, new: TableRef, since: TableRef, removes: bool = True
) -> list[str]:
    """``merged_key_values_sql`` applied in place, for an engine that deletes and inserts in one
    transaction: the previous rows it would not keep are deleted, the new rows inserted. The
    same rows, without rewriting the ones kept. ``removes`` False: the run found no previous row
    it does not keep (``removed_key_values_sql`` holds no value, and every such row's value is
    in it): the INSERT alone, no DELETE to read every row and find none."""
    kept = _kept_key_value(plan, since)
    cols = ", ".join(KEY_VALUE_COLUMNS)
    insert = f"INSERT INTO {published.sql} ({cols}) SELECT {cols} FROM {new.sql}"
    if not removes:
        return [insert]
    return [f"DELETE FROM {published.sql} AS p" + (f" WHERE NOT ({kept})" if kept else ""), insert]


def removed_key_values_sql(plan: IdPlan, previous: TableRef, since: TableRef) -> str:
    """The (key type, value) of the previous key values an incremental run does not keep (rows of
    a table read whole, rows after a watermark that a killed run published): with the new rows'
    values, the only values whose statistics (rows, first and last seen, tables) can change.

    Where the engine ``skips_row_groups``: one branch per incremental table and condition of
    ``_uncovered_branches``, and one for the rows of the other tables, each answered from the row
    groups that can hold such rows (5M sample's nightly, DuckDB: 13 of 79 row groups read, 0.05 s
    of CPU, against all 9M rows through the OR of the tables' conditions, 0.48 s). The same values."""
    kept = _kept_key_value(plan, since)
    if kept is None:
        return f"SELECT DISTINCT p.key_type, p.value FROM {previous.sql} AS p"
    if not plan.skips_row_groups:
        return f"SELECT DISTINCT p.key_type, p.value FROM {previous.sql} AS p WHERE NOT ({kept})"
    at = "CAST(p.inc_at AS TIMESTAMP)"
    ids = [t.table_id for t in plan.incremental_tables]
    read = f"SELECT p.key_type, p.value FROM {previous.sql} AS p WHERE "
    branches = []
    for i in ids:
        mark = _mark_of(i, since)
        covered = _covered(i, since, at, "p.inc_rest")
        branches.extend(f"{read}p.table_id = {i} AND {b}" for b in _uncovered_branches(at, mark, mark, covered))
    branches.append(f"{read}p.table_id NOT IN ({', '.join(str(i) for i in ids)})")
    return "SELECT DISTINCT r.key_type, r.value FROM (\n" + "\nUNION ALL\n".join(branches) + "\n) AS r"


def affected_values_sql(
    plan: IdPlan, previous_graph: TableRef, changed: TableRef, touched: TableRef, labels: TableRef
) -> str:
    """The key values whose graph row or lookup row an incremental run may change, each with its
    leader before the run (``previous_leader_key_type``, ``previous_leader_id``, from
    ``previous_graph``) and after it (``leader_key_type``, ``leader_id``; NULL: not in the graph):

    - every member of a touched component whose leader moved (the label of its representative
      is another value: it merged under a smaller one, or its leader's rows went), read from that
      component's rows of ``previous_graph``;
    - every changed value (``changed``: its rows, hence its statistics, changed; a value new to
      the graph; a value whose rows all went), with its label's value, NULL when it is no node.

    No other value changes its leader (its component kept its leader and no new row reaches it
    but through a changed value) or its statistics (its rows are the same): its graph and lookup
    rows stay as they are."""
    nodes = plan.nodes.sql
    return f"""
WITH moved AS (
  SELECT tc.leader_key_type, tc.leader_id, ln.key_type AS new_key_type, ln.value AS new_id
  FROM {touched.sql} AS tc
  JOIN {nodes} AS rn ON rn.key_type = tc.rep_key_type AND rn.value = tc.rep_id
  JOIN {labels.sql} AS p ON p.node = rn.node
  JOIN {nodes} AS ln ON ln.node = p.label
  WHERE NOT (ln.key_type = tc.leader_key_type AND ln.value = tc.leader_id)
)
SELECT g.follower_key_type AS id_key_type, g.follower_id AS id,
       g.leader_key_type AS previous_leader_key_type, g.leader_id AS previous_leader_id,
       m.new_key_type AS leader_key_type, m.new_id AS leader_id
FROM {previous_graph.sql} AS g
JOIN moved AS m ON m.leader_key_type = g.leader_key_type AND m.leader_id = g.leader_id
WHERE NOT EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE c.key_type = g.follower_key_type AND c.value = g.follower_id)
UNION ALL
SELECT c.key_type AS id_key_type, c.value AS id, c.leader_key_type AS previous_leader_key_type,
       c.leader_id AS previous_leader_id, ln.key_type AS leader_key_type, ln.value AS leader_id
FROM {changed.sql} AS c
LEFT JOIN {nodes} AS n ON n.key_type = c.key_type AND n.value = c.value
LEFT JOIN {labels.sql} AS p ON p.node = n.node
LEFT JOIN {nodes} AS ln ON ln.node = p.label
"""


def watermarks_sql(plan: IdPlan, since: TableRef | None = None, new_rows: TableRef | None = None) -> str:
    """The last row, by the incremental columns in turn, of each incremental table: its position
    is where the next incremental run starts.

    An incremental run (``since``, the last run's watermarks, and ``new_rows``, the rows after
    them: ``new_rows_sql``) takes the newest of the previous watermark and the new rows, not a
    sort of every row: the rows a watermark covers are at or before it, so on the same rows the
    newest of all is the newest of these. A watermark never moves back (a row that went away
    leaves it where it was: the rows before it were read, the next run reads those after it)
    and never passes a row not read (only rows read are compared)."""
    parts = []
    for t in plan.incremental_tables:
        if new_rows is not None and since is not None:
            source = (
                f"SELECT inc_at AS at, inc_rest AS rest FROM {new_rows.sql} AS r WHERE r.table_id = {t.table_id}\n"
                f"  UNION ALL SELECT {time_expr('w.watermark')} AS at, w.watermark_rest AS rest "
                f"FROM {since.sql} AS w WHERE w.table_id = {t.table_id}"
            )
            at, rest = "s.at", "s.rest"
            read = f"(\n  {source}\n) AS s"
        else:
            at, rest = _inc_exprs(t)
            read = f"{t.ref.sql} AS s"
        parts.append(
            f"SELECT table_id, watermark, watermark_rest FROM (SELECT {t.table_id} AS table_id, {at} AS watermark, "
            f"CAST({rest} AS VARCHAR) AS watermark_rest, ROW_NUMBER() OVER (ORDER BY {at} DESC NULLS LAST, "
            f"CAST({rest} AS VARCHAR) DESC NULLS LAST) AS rn FROM {read}) AS w{t.table_id} WHERE rn = 1"
        )
    if not parts:
        return (
            "SELECT CAST(NULL AS BIGINT) AS table_id, CAST(NULL AS TIMESTAMP) AS watermark, "
            "CAST(NULL AS VARCHAR) AS watermark_rest WHERE 1 = 0"
        )
    return "\nUNION ALL\n".join(parts)


def watermarks_table_sql(plan: IdPlan, since: TableRef | None = None, new_rows: TableRef | None = None) -> str:
    """The watermarks table as ``watermarks_sql`` finds them, each with the fingerprint of the
    config this run unified with (from ``{cid}_tables``, written at the run's start): written by
    the query that finds them, in one statement."""
    return (
        "SELECT CAST(w.table_id AS BIGINT) AS table_id, CAST(w.watermark AS TIMESTAMP) AS watermark, "
        "CAST(w.watermark_rest AS VARCHAR) AS watermark_rest, CAST(t.config_fingerprint AS VARCHAR) AS fingerprint "
        f"FROM (\n{watermarks_sql(plan, since, new_rows)}\n) AS w\n"
        f"JOIN {plan.ref('tables').sql} AS t ON t.table_id = w.table_id"
    )


# ---------------------------------------------------------------------------- the loop


def hook_sql(edges: TableRef) -> str:
    """Each label with a smaller neighbour points at its smallest neighbour (edges hold a > b)."""
    return f"SELECT a AS node, MIN(b) AS parent FROM {edges.sql} GROUP BY a"


def unresolved_pointers_sql(pointers: TableRef) -> str:
    """How many pointers still point at a node that itself points elsewhere (0: fully compressed)."""
    return f"SELECT COUNT(*) AS n FROM {pointers.sql} AS h JOIN {pointers.sql} AS h2 ON h.parent = h2.node"


def jump_sql(pointers: TableRef) -> str:
    """One pointer jump: p <- p(p)."""
    return (
        f"SELECT h.node, COALESCE(h2.parent, h.parent) AS parent FROM {pointers.sql} AS h "
        f"LEFT JOIN {pointers.sql} AS h2 ON h.parent = h2.node"
    )


def relabeled_count_sql(labels: TableRef, pointers: TableRef) -> str:
    """Nodes whose label moves in this round: the loop's 'rows changed'."""
    return f"SELECT COUNT(*) AS n FROM {labels.sql} AS p JOIN {pointers.sql} AS h ON p.label = h.node"


def pointer_counts_sql(labels: TableRef, pointers: TableRef) -> str:
    """One row, two counts in one query: ``unresolved_pointers`` (0: the pointers are fully
    compressed) and ``relabeled`` (the nodes whose label moves when they are applied)."""
    return (
        f"SELECT ({unresolved_pointers_sql(pointers)}) AS unresolved_pointers, "
        f"({relabeled_count_sql(labels, pointers)}) AS relabeled"
    )


def relabel_sql(labels: TableRef, pointers: TableRef) -> str:
    return (
        f"SELECT p.node, COALESCE(h.parent, p.label) AS label FROM {labels.sql} AS p "
        f"LEFT JOIN {pointers.sql} AS h ON p.label = h.node"
    )


def contract_edges_sql(edges: TableRef, pointers: TableRef) -> str:
    """Rewrite edges onto the new labels; drop self-loops and duplicates."""
    return f"""
SELECT DISTINCT GREATEST(la, lb) AS a, LEAST(la, lb) AS b
FROM (
  SELECT COALESCE(ha.parent, e.a) AS la, COALESCE(hb.parent, e.b) AS lb
  FROM {edges.sql} AS e
  LEFT JOIN {pointers.sql} AS ha ON e.a = ha.node
  LEFT JOIN {pointers.sql} AS hb ON e.b = hb.node
) AS c
WHERE la <> lb
"""


def copy_sql(ref: TableRef) -> str:
    """Every row of ``ref`` (``keep_loop_tables`` keeps a round's labels with it)."""
    return f"SELECT * FROM {ref.sql}"


def dnm_conflicts_sql(groups: TableRef) -> str:
    """Groups that touched several do-not-merge values."""
    return f"SELECT COUNT(*) AS n FROM {groups.sql} WHERE touched > 1"


def previous_fingerprints_sql(watermarks: TableRef) -> str:
    """The config fingerprints the last run recorded beside its watermarks."""
    return f"SELECT DISTINCT fingerprint FROM {watermarks.sql}"


# ---------------------------------------------------------------------------- outputs


def canonical_id_expr(key_name_sql: str, value_sql: str) -> str:
    """The canonical id: a deterministic function of the leader, rendered per dialect by sqlglot."""
    return f"MD5({key_name_sql} || ':' || {value_sql})"


GRAPH_COLUMNS = ("follower_key_type", "follower_id", "leader_key_type", "leader_id")


def graph_sql(plan: IdPlan, labels: TableRef) -> str:
    """Follower -> leader of every node the rounds solved, by value: (key type, value) of each
    node and of its component's leader. Node numbers are internal to a run, not published."""
    nodes = plan.nodes.sql
    return f"""
SELECT n.key_type AS follower_key_type, n.value AS follower_id,
       ln.key_type AS leader_key_type, ln.value AS leader_id
FROM {labels.sql} AS p
JOIN {nodes} AS n ON n.node = p.node
JOIN {nodes} AS ln ON ln.node = p.label
"""


def _leader_moves(row: str = "a") -> str:
    """An affected value's leader after the run differs from its previous one (either may be
    NULL: a value new to the graph, a value that left it)."""
    return (
        f"({row}.leader_key_type IS DISTINCT FROM {row}.previous_leader_key_type "
        f"OR {row}.leader_id IS DISTINCT FROM {row}.previous_leader_id)"
    )


def graph_changes_sql(published: TableRef, affected: TableRef, in_place: bool) -> list[str]:
    """An incremental run's graph: the rows of the affected values whose leader moved
    (``affected_values_sql``) replaced, those of values that left the graph deleted, those of
    values new to it inserted; every other row stays as it is. In place (``in_place``: DELETE and
    INSERT, for an engine that runs them in one transaction), else one SELECT of the whole graph
    to rebuild and swap in."""
    moved = (
        f"SELECT a.id_key_type, a.id, a.leader_key_type, a.leader_id FROM {affected.sql} AS a WHERE {_leader_moves()}"
    )
    match = f"EXISTS (SELECT 1 FROM ({moved}) AS m WHERE m.id_key_type = g.follower_key_type AND m.id = g.follower_id)"
    new_rows = (
        "SELECT n.id_key_type AS follower_key_type, n.id AS follower_id, n.leader_key_type, n.leader_id "
        f"FROM ({moved}) AS n WHERE n.leader_id IS NOT NULL"
    )
    if in_place:
        cols = ", ".join(GRAPH_COLUMNS)
        return [
            f"DELETE FROM {published.sql} AS g WHERE {match}",
            f"INSERT INTO {published.sql} ({cols}) SELECT {cols} FROM ({new_rows}) AS s",
        ]
    return [f"SELECT g.* FROM {published.sql} AS g WHERE NOT {match}\nUNION ALL\n{new_rows}"]


def lookup_sql(
    plan: IdPlan,
    labels: TableRef | None = None,
    previous: TableRef | None = None,
    affected: TableRef | None = None,
    graph: str | None = None,
) -> str:
    """Key value -> id. A canonical id is a function of the component's leader. A persistent id
    is the previously published id of the component's earliest-seen value when there is one
    (``previous`` is the lookup being replaced), else a function of its earliest-seen value.

    ``labels``: every row, from the labels the rounds solved and the nodes (which carry their
    statistics): a full run. ``affected``: a canonical id's rows of the affected values of an
    incremental run alone (``affected_values_sql``: each with its leader after the run), with
    their statistics from ``{id}_value_stats``. Without either: every row, from ``{id}_graph``
    and ``{id}_value_stats`` (a persistent id's lookup in an incremental run, rebuilt whole);
    ``graph``: the graph read then (SQL of a table or of a parenthesised SELECT; default
    ``{id}_graph``), an incremental run's graph as it publishes it (``graph_changes_sql``)."""
    keys = plan.ref("keys").sql
    cid = quote(plan.name)
    if labels is not None:
        nodes = plan.nodes.sql
        rows = f"""SELECT n.key_type AS follower_key_type, n.value AS follower_id, ln.key_type AS leader_key_type,
         ln.value AS leader_id, p.label AS component, n.first_seen_at, n.last_seen_at, n.source_table_ids
  FROM {labels.sql} AS p
  JOIN {nodes} AS n ON n.node = p.node
  JOIN {nodes} AS ln ON ln.node = p.label"""
        component = "component"
    elif affected is not None:
        assert not plan.persistent, "a persistent id's lookup is rebuilt whole (its ids follow whole components)"
        rows = f"""SELECT a.id_key_type AS follower_key_type, a.id AS follower_id, a.leader_key_type, a.leader_id,
         s.first_seen_at, s.last_seen_at, s.source_table_ids
  FROM {affected.sql} AS a
  JOIN {plan.ref('value_stats').sql} AS s ON s.key_type = a.id_key_type AND s.value = a.id
  WHERE a.leader_id IS NOT NULL"""
        component = "leader_key_type, leader_id"
    else:
        rows = f"""SELECT g.follower_key_type, g.follower_id, g.leader_key_type, g.leader_id,
         s.first_seen_at, s.last_seen_at, s.source_table_ids
  FROM {graph or plan.ref('graph').sql} AS g
  JOIN {plan.ref('value_stats').sql} AS s ON s.key_type = g.follower_key_type AND s.value = g.follower_id"""
        component = "leader_key_type, leader_id"
    ctes = [f"g AS (\n  {rows}\n)"]
    on_component = " AND ".join(f"{{a}}.{c.strip()} = g.{c.strip()}" for c in component.split(","))
    if not plan.persistent:
        id_expr = canonical_id_expr("lk.key_name", "g.leader_id")
        id_joins = f"JOIN {keys} AS lk ON lk.key_type = g.leader_key_type"
    else:
        earliest_first = "g.first_seen_at NULLS LAST, k.merge_priority, g.follower_id"
        ctes.append(
            f"""earliest AS (
  SELECT {', '.join('g.' + c.strip() for c in component.split(','))}, k.key_name, g.follower_id,
         ROW_NUMBER() OVER (PARTITION BY {component} ORDER BY {earliest_first}) AS rn
  FROM g
  JOIN {keys} AS k ON k.key_type = g.follower_key_type
)"""
        )
        id_expr = canonical_id_expr("e.key_name", "e.follower_id")
        id_joins = f"JOIN earliest AS e ON {on_component.format(a='e')} AND e.rn = 1"
        if previous is not None:
            ctes.append(
                f"""published AS (
  SELECT {', '.join('g.' + c.strip() for c in component.split(','))}, p.{cid} AS pid,
         ROW_NUMBER() OVER (PARTITION BY {component} ORDER BY p.id_first_seen_at NULLS LAST, p.{cid}) AS rn
  FROM g
  JOIN {previous.sql} AS p ON p.id_key_type = g.follower_key_type AND p.id = g.follower_id
)"""
            )
            id_expr = f"COALESCE(pub.pid, {id_expr})"
            id_joins += f"\nLEFT JOIN published AS pub ON {on_component.format(a='pub')} AND pub.rn = 1"
    with_clause = ",\n".join(ctes)
    return f"""
WITH {with_clause}
SELECT {id_expr} AS {cid},
       g.follower_id AS id,
       g.follower_key_type AS id_key_type,
       k.key_name AS id_key_name,
       g.first_seen_at AS id_first_seen_at,
       g.last_seen_at AS id_last_seen_at,
       g.source_table_ids AS id_source_table_ids
FROM g
JOIN {keys} AS k ON k.key_type = g.follower_key_type
{id_joins}
"""


def enriched_sql(
    plans: list[IdPlan], table: SourceTablePlan, source_columns: list[str], rows_sql: str | None = None
) -> str:
    """The source table with one column per canonical id whose graph the table feeds.
    ``rows_sql``: a SELECT of some of the table's rows (all its columns) to enrich instead of
    the whole table (an incremental enrichment's rows of the changed keys, read in the same
    statement)."""
    source = table.ref.sql if rows_sql is None else f"({rows_sql})"
    joins, id_cols = [], []
    existing = {c.lower() for c in source_columns}
    for p_i, plan in enumerate(plans):
        lookup = plan.ref("lookup").sql
        own = plan.table(table.alias)
        cols = plan.merge_columns(own) if own is not None else []
        # A row's do-not-merge value, when it has one, decides which id the row gets.
        cols.sort(key=lambda c: c[1] != plan.dnm_key_type)
        aliases = []
        for c_i, (col, kt) in enumerate(cols):
            alias = f"l{p_i}_{c_i}"
            joins.append(
                f"LEFT JOIN {lookup} AS {alias} ON {alias}.id_key_type = {kt} "
                f"AND {alias}.id = CAST(s.{quote(col)} AS VARCHAR)"
            )
            aliases.append(f"{alias}.{quote(plan.name)}")
        if plan.name.lower() in existing:
            continue  # never shadow a source column; the check on enriched tables reports it
        expr = (
            f"COALESCE({', '.join(aliases)})"
            if len(aliases) > 1
            else (aliases[0] if aliases else "CAST(NULL AS VARCHAR)")
        )
        id_cols.append(f"{expr} AS {quote(plan.name)}")
    # Ids merged from ids join on computed columns: they are computed in a projection first
    # (engines such as Spark allow a correlated subquery there, not in a join condition), and
    # the output keeps exactly the source's columns.
    derived = {}
    for plan in plans:
        own = plan.table(table.alias)
        derived.update(dict(own.derived) if own is not None else {})
    if not derived:
        select = ", ".join(["s.*", *id_cols])
        return f"SELECT {select}\nFROM {source} AS s\n" + "\n".join(joins)
    extra = ", ".join(f"{expr} AS {quote(col)}" for col, expr in derived.items())
    select = ", ".join([*(f"s.{quote(c)}" for c in source_columns), *id_cols])
    return f"SELECT {select}\nFROM (SELECT s.*, {extra} FROM {source} AS s) AS s\n" + "\n".join(joins)


def source_key_stats_sql(plan: IdPlan) -> str:
    """Per source table and for all tables ('*'): rows, and distinct valid values of each key."""
    kv = plan.ref("key_values").sql
    merge_keys = _merge_keys(plan)
    per_key = ", ".join(
        f"COUNT(DISTINCT CASE WHEN v.key_type = {plan.key_type(k)} THEN v.value END) AS {quote('distinct_' + k)}"
        for k in merge_keys
    )
    tables = plan.ref("tables").sql
    return f"""
WITH row_counts AS (
{_row_counts(plan)}
),
per_table AS (
  SELECT t.table_alias AS from_table, {per_key}
  FROM {kv} AS v JOIN {tables} AS t ON t.table_id = v.table_id
  GROUP BY t.table_alias
),
all_tables AS (
  SELECT '*' AS from_table, {per_key} FROM {kv} AS v
)
SELECT r.from_table, r.total_rows, {', '.join(f'p.{quote("distinct_" + k)}' for k in merge_keys)}
FROM row_counts AS r LEFT JOIN per_table AS p ON p.from_table = r.from_table
UNION ALL
SELECT '*', (SELECT SUM(total_rows) FROM row_counts), {', '.join(f'a.{quote("distinct_" + k)}' for k in merge_keys)}
FROM all_tables AS a
"""


def _merge_keys(plan: IdPlan) -> list[str]:
    return [k for k in plan.keys if k in plan.merge_names]


def _row_counts(plan: IdPlan) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT '{t.alias}' AS from_table, COUNT(*) AS total_rows FROM {t.ref.sql}" for t in plan.tables
    )


def source_key_stats_of_per_id_sql(plan: IdPlan, per_id: TableRef) -> str:
    """``source_key_stats_sql``'s table from the kept per-id counts (``key_stats_per_id_sql``)
    instead of a distinct count over every key value: a value under its cap is one lookup row,
    counted once in each of its tables' rows of its id and once in '*' (``n_<i>``), and a value
    over its cap (``{id}_excluded_values``, a few rows) is counted from its statistics' tables.
    Every valid value of a merge key is one or the other (the nodes are the values under their
    cap), so the sums are the distinct counts."""
    merge_keys = _merge_keys(plan)
    excluded, stats = plan.ref("excluded_values").sql, plan.ref("value_stats").sql
    tables = plan.ref("tables").sql
    n_cols = ", ".join(f"n_{i}" for i in range(len(merge_keys)))
    over = ", ".join(
        f"CASE WHEN e.key_type = {plan.key_type(k)} THEN 1 ELSE 0 END AS n_{i}" for i, k in enumerate(merge_keys)
    )
    sums = ", ".join(f"CAST(SUM(n_{i}) AS BIGINT) AS {quote('distinct_' + k)}" for i, k in enumerate(merge_keys))
    every = ", ".join(
        f"CAST(COALESCE(SUM(n_{i}), 0) AS BIGINT) AS {quote('distinct_' + k)}" for i, k in enumerate(merge_keys)
    )
    return f"""
WITH row_counts AS (
{_row_counts(plan)}
),
over_cap AS (
  SELECT e.key_type, s.source_table_ids
  FROM {excluded} AS e JOIN {stats} AS s ON s.key_type = e.key_type AND s.value = e.value
),
counted AS (
  SELECT p.from_table, {', '.join(f'p.n_{i}' for i in range(len(merge_keys)))} FROM {per_id.sql} AS p
  WHERE p.from_table IS NOT NULL
  UNION ALL
  SELECT t.table_alias AS from_table, {n_cols}
  FROM (
    SELECT u.table_id, {over} FROM over_cap AS e CROSS JOIN UNNEST(e.source_table_ids) AS u(table_id)
  ) AS v
  JOIN {tables} AS t ON t.table_id = v.table_id
  UNION ALL
  SELECT '*' AS from_table, {over} FROM over_cap AS e
),
per_table AS (
  SELECT from_table, {sums} FROM counted WHERE from_table <> '*' GROUP BY from_table
),
all_tables AS (
  SELECT {every} FROM counted WHERE from_table = '*'
)
SELECT r.from_table, r.total_rows, {', '.join(f'p.{quote("distinct_" + k)}' for k in merge_keys)}
FROM row_counts AS r LEFT JOIN per_table AS p ON p.from_table = r.from_table
UNION ALL
SELECT '*', (SELECT SUM(total_rows) FROM row_counts), {', '.join(f'a.{quote("distinct_" + k)}' for k in merge_keys)}
FROM all_tables AS a
"""


def key_stats_per_id_sql(plan: IdPlan, only: TableRef | None = None, enriched: list[TableRef] | None = None) -> str:
    """One row per (table, id) and per ('*', id): its values of each key (``n_<i>``), from the
    lookup alone. A lookup row is one value under its cap with the tables holding it
    (``id_source_table_ids``, from the same key values), so a value counts once for each of its
    tables and once for '*', as a join of the key values with the lookup counted it, without
    reading the key values. The values are unnested in a subquery: Spark applies a LATERAL VIEW
    (sqlglot's rendering of UNNEST) after the joins of its FROM. ``only``: the rows of these ids
    alone (a table with one column named as the id).

    ``enriched`` (the id's enriched tables, ``KEPT_SIZE_COLUMNS``): each '*' row also counts the
    id's lookup rows (``lookup_rows``, its size in the report's profile) and its rows over the
    enriched tables (``enriched_rows``, the largest-share check's), 0 on a table's row; an id
    whose rows are all gone has no row. Counted with the per-id counts, and recounted with them
    for the ids a run touches, so that the enrichments' coverage query reads them instead of
    grouping every lookup and enriched row (``coverage_of_tables_sql(kept=...)``)."""
    lookup, tables = plan.ref("lookup").sql, plan.ref("tables").sql
    cid = quote(plan.name)
    n_values = ", ".join(
        f"COUNT(CASE WHEN key_type = {plan.key_type(k)} THEN 1 END) AS n_{i}" for i, k in enumerate(_merge_keys(plan))
    )
    rows = lookup
    if only is not None:
        rows = f"(SELECT l.* FROM {lookup} AS l WHERE EXISTS (SELECT 1 FROM {only.sql} AS o WHERE o.{cid} = l.{cid}))"
    # With ``enriched``, each enriched row once, on its id's '*' row (kind 2; a lookup row on it is kind 1).
    kind = (lambda k: "") if enriched is None else (lambda k: f", {k} AS kind")
    only_rows = "" if only is None else f" AND EXISTS (SELECT 1 FROM {only.sql} AS o WHERE o.{cid} = e.{cid})"
    enriched_rows = "".join(
        f"\n  UNION ALL\n  SELECT '*' AS from_table, e.{cid} AS cid, NULL AS key_type, 2 AS kind "
        f"FROM {ref.sql} AS e WHERE e.{cid} IS NOT NULL{only_rows}"
        for ref in enriched or ()
    )
    sizes = (
        ""
        if enriched is None
        else ",\n       COUNT(CASE WHEN kind = 1 THEN 1 END) AS lookup_rows, "
        "COUNT(CASE WHEN kind = 2 THEN 1 END) AS enriched_rows"
    )
    return f"""
SELECT from_table, cid, {n_values}{sizes}
FROM (
  SELECT t.table_alias AS from_table, v.cid, v.key_type{kind(0)}
  FROM (
    SELECT l.{cid} AS cid, l.id_key_type AS key_type, u.table_id
    FROM {rows} AS l CROSS JOIN UNNEST(l.id_source_table_ids) AS u(table_id)
  ) AS v
  JOIN {tables} AS t ON t.table_id = v.table_id
  UNION ALL
  SELECT '*' AS from_table, l.{cid} AS cid, l.id_key_type AS key_type{kind(1)} FROM {rows} AS l{enriched_rows}
) AS scoped
GROUP BY from_table, cid
"""


# The columns ``key_stats_per_id_sql`` adds with the enriched tables, after the ``n_<i>``.
KEPT_SIZE_COLUMNS = ("lookup_rows", "enriched_rows")


def result_key_stats_sql(plan: IdPlan) -> str:
    """Per table and '*': distinct ids, ids having each key, and a histogram of values per id.

    Read from the lookup alone (``key_stats_per_id_sql``): one row per (table, id) counts its
    values of each key (``n_<i>``): the ids are then counted rows, with no distinct count of ids."""
    return result_key_stats_of_per_id_sql(plan, f"(\n{key_stats_per_id_sql(plan)}\n)")


def result_key_stats_of_per_id_sql(plan: IdPlan, per_id: str) -> str:
    """``result_key_stats_sql``'s table from ``per_id`` (a table or a parenthesised SELECT of
    ``key_stats_per_id_sql``'s rows; rows without a table, a kept table's markers, are left out)."""
    merge_keys = _merge_keys(plan)
    with_key = ", ".join(
        f"COUNT(CASE WHEN n_{i} > 0 THEN 1 END) AS {quote('distinct_with_' + k)}" for i, k in enumerate(merge_keys)
    )
    buckets = "\n  UNION ALL\n  ".join(
        f"SELECT from_table, {i} AS k, n_{i} AS n_values, COUNT(*) AS n_ids FROM per_id WHERE n_{i} > 0 "
        f"GROUP BY from_table, n_{i}"
        for i in range(len(merge_keys))
    )
    histograms = ", ".join(
        f"MAX(CASE WHEN k = {i} THEN histogram END) AS {quote('histogram_' + k)}" for i, k in enumerate(merge_keys)
    )
    return f"""
WITH per_id AS (
  SELECT * FROM {per_id} AS p WHERE p.from_table IS NOT NULL
),
buckets AS (
  {buckets}
),
hist AS (
  SELECT from_table, k,
         STRING_AGG(CAST(n_values AS VARCHAR) || ':' || CAST(n_ids AS VARCHAR), ',' ORDER BY n_values) AS histogram
  FROM buckets GROUP BY from_table, k
),
counts AS (
  SELECT from_table, COUNT(*) AS total_distinct, {with_key}
  FROM per_id GROUP BY from_table
),
hists AS (
  SELECT from_table, {histograms} FROM hist GROUP BY from_table
)
SELECT c.*, {', '.join(f'h.{quote("histogram_" + k)}' for k in merge_keys)}
FROM counts AS c LEFT JOIN hists AS h ON h.from_table = c.from_table
"""


# ---------------------------------------------------------------------------- coverage
# The one definition of coverage: the share of a table's rows that got an id. The enrichment's
# metadata, the report and the blocking check read it through these two functions.


def coverage_sql(table: TableRef, cids: list[str]) -> str:
    """Rows of ``table`` (``total_rows``), and rows holding each id (``with_<id>``)."""
    counts = "".join(f", COUNT({quote(cid)}) AS {quote('with_' + cid)}" for cid in cids)
    return f"SELECT COUNT(*) AS total_rows{counts} FROM {table.sql}"


def coverage_of_tables_sql(
    tables: list[tuple[TableRef, list[str]]],
    inputs: list[TableRef | None] | None = None,
    components: list[tuple[str, list[TableRef]]] = (),
    profiles: list[tuple[TableRef, str]] = (),
    kept: list[TableRef | None] = (),
) -> str:
    """Every table's rows (``t<i>_rows``) and rows holding each of its ids (``t<i>_with_<id>``),
    in one row: one scan per table and one query for all of them (on Treasure Data one job).

    ``inputs``: per table, the table it was enriched from, whose rows are counted too
    (``t<i>_input_rows``; None: not counted), for a build that did not count what it read.
    ``components``: per id, (its column, the enriched tables carrying it), whose largest canonical
    id and rows with an id are measured too (``c<k>_largest``, ``c<k>_total``: the
    ``largest_component_sql`` the largest-share check reads). ``profiles``: per id, (its lookup,
    its column), whose ids are bucketed by size too (``p<k>_b<i>_...``: the report's profile,
    ``sql/report.component_buckets_sql``). ``kept``: per id, the key statistics' kept per-id
    counts brought up to date by this run (``key_stats_per_id_sql`` with the enriched tables), from
    which both are read instead of grouping every enriched and lookup row (None: grouped)."""
    kept = list(kept) + [None] * (len(components) - len(kept))
    parts = []
    for i, (table, cids) in enumerate(tables):
        counts = "".join(f", COUNT({quote(cid)}) AS {quote(f't{i}_with_{cid}')}" for cid in cids)
        parts.append(f"(SELECT COUNT(*) AS {quote(f't{i}_rows')}{counts} FROM {table.sql}) AS c{i}")
    for i, source in enumerate(inputs or []):
        if source is not None:
            parts.append(f"(SELECT COUNT(*) AS {quote(f't{i}_input_rows')} FROM {source.sql}) AS n{i}")
    for k, (cid, enriched) in enumerate(components):
        largest = largest_component_sql(cid, enriched) if kept[k] is None else kept_largest_component_sql(kept[k])
        parts.append(
            f"(SELECT s.largest AS {quote(f'c{k}_largest')}, s.total AS {quote(f'c{k}_total')} "
            f"FROM ({largest}) AS s) AS s{k}"
        )
    for k, (lookup, cid) in enumerate(profiles):
        buckets = (
            component_buckets_sql(lookup, cid, f"p{k}")
            if kept[k] is None
            else kept_component_buckets_sql(kept[k], f"p{k}")
        )
        parts.append(f"({buckets}) AS p{k}")
    return "SELECT * FROM " + " CROSS JOIN ".join(parts)


def coverage_pct(with_id: int, total: int) -> float:
    """Percentage of rows with an id, to 2 decimals; a table without rows has 0%."""
    return round(100.0 * with_id / total, 2) if total else 0.0
