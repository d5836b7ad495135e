"""The queries behind asset checks: each returns one row the check reads."""

from __future__ import annotations

from cdp_assets.sql.dialects import Dialect, TableRef, quote
from cdp_assets.sql.engine_meta import describe_tables_sql
from cdp_assets.sql.hist_union import distinct_count_sql, duplicate_keys_over_sql, duplicate_keys_sql
from cdp_assets.sql.incremental import LOADED_AT, newer_than_watermark_branches
from cdp_assets.sql.ingestion import FILE_STATUS


def ids_with_many_canonical_ids_sql(lookup: TableRef, cid: str) -> str:
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT id, id_key_type FROM {lookup.sql} "
        f"GROUP BY id, id_key_type HAVING COUNT(DISTINCT {quote(cid)}) > 1) AS d"
    )


def _ids_with_many_of(rows_sql: str, cid: str) -> str:
    return (
        f"SELECT COUNT(*) FROM (SELECT r.id, r.id_key_type FROM {rows_sql} AS r "
        f"GROUP BY r.id, r.id_key_type HAVING COUNT(DISTINCT r.{quote(cid)}) > 1) AS d"
    )


def lookup_change_measures_sql(
    lookup: TableRef, new_rows: TableRef, changes: TableRef, cid: str, dialect: Dialect
) -> str:
    """What replacing some key values' rows (``id_key_type``, ``id``) of the lookup with
    ``new_rows`` changes in its check measures, measured before the replacement from the change's
    log ``changes`` (``inc.lookup_changes_sql`` of the same rows: ``id_key_type``, ``id``, ``cid``,
    each key value whose id changed, once with its old id and once with its new one):

    - its ids with more than one canonical id among the logged key values, in the lookup as it is
      (``before``) and in ``new_rows`` (``after``): a key value's rows are all replaced or all
      kept, so the count after is the count before, minus ``before``, plus ``after``;
    - its distinct canonical ids among the logged ones, the only ids the change can make appear or
      vanish: held now (``ids_before``) and after (``ids_after``: by a row the change keeps, or by
      a new row).

    A replaced key value that the log leaves out has the same id before and after (one id at
    most: two would pair apart in the log's comparison): it counts in neither ``before`` nor
    ``after``, and its id is held before and after, in both counts or neither. So the log (a few
    rows a night) stands for the replaced values (every value whose statistics changed, 100K a
    night at 5M): the lookup is read twice with its few rows to match, not with every replaced
    value and their tens of thousands of ids (5M sample, DuckDB: 0.32 s of CPU against 0.90 s).
    Each read once where the dialect computes a CTE once (``Dialect.cte``)."""
    c = quote(cid)
    is_logged = f"EXISTS (SELECT 1 FROM {changes.sql} AS g WHERE g.id_key_type = {{t}}.id_key_type AND g.id = {{t}}.id)"
    old_rows = f"SELECT l.* FROM {lookup.sql} AS l WHERE {is_logged.format(t='l')}"
    candidates = f"SELECT DISTINCT g.cid AS {c} FROM {changes.sql} AS g WHERE g.cid IS NOT NULL"
    held = (
        f"SELECT l.{c}, l.id_key_type, l.id FROM {lookup.sql} AS l WHERE l.{c} IN (SELECT k.{c} FROM candidates AS k)"
    )
    ctes = ",\n".join(
        [dialect.cte("old_rows", old_rows), dialect.cte("candidates", candidates), dialect.cte("held", held)]
    )
    logged_new = f"(SELECT n.* FROM {new_rows.sql} AS n WHERE {is_logged.format(t='n')})"
    kept = f"SELECT h.{c} FROM held AS h WHERE NOT {is_logged.format(t='h')}"
    new_ids = f"SELECT n.{c} FROM {new_rows.sql} AS n WHERE n.{c} IN (SELECT k.{c} FROM candidates AS k)"
    return (
        f"WITH {ctes}\n"
        f"SELECT ({_ids_with_many_of('old_rows', cid)}) AS before, ({_ids_with_many_of(logged_new, cid)}) AS after, "
        f"(SELECT COUNT(DISTINCT h.{c}) FROM held AS h) AS ids_before, "
        f"(SELECT COUNT(*) FROM ({kept} UNION {new_ids}) AS k) AS ids_after"
    )


def kept_lookup_measures_sql(measures: TableRef) -> str:
    """The lookup's kept measures as one row (NULLs when the table is empty), named apart from a
    state's columns: read beside the lookup's state (``inc.read_states_sql``)."""
    return (
        f"SELECT (SELECT MAX(m.seq) FROM {measures.sql} AS m) AS _cdp_measured_seq, "
        f"(SELECT MAX(m.ids_with_many) FROM {measures.sql} AS m) AS _cdp_ids_with_many, "
        f"(SELECT MAX(m.canonical_ids) FROM {measures.sql} AS m) AS _cdp_canonical_ids"
    )


def lookup_measures_sql_of(
    seq: int, counted: tuple[int, int] | None, lookup: TableRef | None = None, cid: str = ""
) -> str:
    """The lookup's kept measures after its build number ``seq``: (ids with several canonical
    ids, distinct canonical ids) as counted from the change, or (None) counted over the whole
    ``lookup``. Integers of ours, not values."""
    if counted is not None:
        many, ids = (str(int(n)) for n in counted)
    else:
        many = f"({_ids_with_many_of(lookup.sql, cid)})"
        ids = f"(SELECT COUNT(DISTINCT l.{quote(cid)}) FROM {lookup.sql} AS l)"
    return (
        f"SELECT CAST({int(seq)} AS BIGINT) AS seq, CAST({many} AS BIGINT) AS ids_with_many, "
        f"CAST({ids} AS BIGINT) AS canonical_ids"
    )


def latest_loop_sql(loop_stats: TableRef) -> str:
    """The last iteration of the most recent run."""
    return (
        f"SELECT run_id, iteration, rows_changed, edges_left, converged FROM {loop_stats.sql} "
        f"ORDER BY recorded_at DESC, iteration DESC LIMIT 1"
    )


def master_uniqueness_sql(master: TableRef, lookup: TableRef | None, cid: str) -> str:
    """The master table's distinct canonical ids and the lookup's (its rows come from its build;
    ``lookup`` None: the lookup's are known, counted by its build)."""
    c = quote(cid)
    lookup_ids = f"(SELECT COUNT(DISTINCT {c}) FROM {lookup.sql})" if lookup is not None else "CAST(NULL AS BIGINT)"
    return f"SELECT (SELECT COUNT(DISTINCT {c}) FROM {master.sql}) AS distinct_ids, {lookup_ids} AS lookup_ids"


def outstanding_rejections_sql(rejected: TableRef, has_superseded: bool) -> str:
    """Rejected rows of one mode (bound as the parameter) that are still wrong: not superseded by
    a later version of their file (a table written before superseding existed has no column)."""
    still = " AND superseded_at IS NULL" if has_superseded else ""
    return f"SELECT file, row, reason FROM {rejected.sql} WHERE mode = ?{still} ORDER BY file, row"


# ---------------------------------------------------------------- one query per asset
# Each asset's checks read one row (or one row per load) computing all of that asset's measures:
# scalar subqueries side by side, so that a check step costs one round trip whatever the number
# of checks. The callers pass only tables that exist (the engine's description says which).

LOAD_COLUMNS = (
    "status",
    "records_loaded",
    "watermark",
    "message",
    "loaded_at",
    "records_skipped_before_start_date",
    "records_skipped_duplicate",
)


def ingestion_measures_sql(
    modes: list[str],
    log: TableRef | None,
    log_columns: set[str],
    rejected: TableRef | None,
    rejected_superseded: bool,
) -> str:
    """What an ingestion step's loads cannot know of its object's raw tables, in one query: the
    outstanding rejected rows of each of ``modes`` (``rejected_0``, ``rejected_1``, ... in their
    order; earlier runs' included), and one row per load of the object in the log, any mode
    (its ``mode`` column says which; oldest first; one row of NULLs without loads).

    Parameters, in order: each mode (when ``rejected``), then source and object (when ``log``).
    A log column an older log lacks reads NULL. The tables' rows come from the loads."""
    scalars = [
        f"({outstanding_count_sql(rejected, rejected_superseded)}) AS rejected_{i}"
        if rejected
        else f"CAST(0 AS BIGINT) AS rejected_{i}"
        for i in range(len(modes))
    ]
    if log is None:
        return "SELECT " + ", ".join(scalars)
    loads = [
        f"l.{quote(c)} AS {quote(c)}" if c in log_columns else f"CAST(NULL AS BIGINT) AS {quote(c)}"
        for c in ("mode", *LOAD_COLUMNS)
    ]
    return (
        f"SELECT {', '.join(scalars + loads)} FROM (SELECT 1 AS one) AS o "
        f"LEFT JOIN {log.sql} AS l ON l.source = ? AND l.object = ? "
        f"ORDER BY l.loaded_at"
    )


START_FINGERPRINT = "files_fingerprint"  # ingestion_start_sql(for_loads=...)'s log column

# The SQL types of the log's columns the checks read (a column an older log lacks reads NULL).
_LOAD_TYPES = {"mode": "VARCHAR", "status": "VARCHAR", "watermark": "VARCHAR", "message": "VARCHAR"}
_LOAD_TYPES[START_FINGERPRINT] = "VARCHAR"
_LOAD_TYPES["loaded_at"] = "TIMESTAMP"


def ingestion_start_sql(
    modes: list[str],
    log: TableRef | None,
    log_columns: set[str],
    rejected: TableRef | None,
    rejected_superseded: bool,
    files: TableRef | None,
    for_loads: list[tuple[TableRef, str]] | None = None,
    files_status: bool = False,
) -> str:
    """What an ingestion step reads of its object before its loads, in one query: the rows of
    ``ingestion_measures_sql`` (``part`` 'load': the outstanding rejected rows of each mode on
    every row, one row per load of the object in the log, one row of NULL load columns without
    any) and, when ``files`` exists, the object's file records (``part`` 'file': ``mode``,
    ``file``, ``file_version``, ``file_status`` where ``files_status`` says the records keep it,
    ``loaded_at``), all oldest first. The step's checks add what its
    loads write to these (checks/ingestion.py); its incremental load takes the newest version of
    each file from them.

    ``for_loads``: what the step's loads (``connectors/loading.py``) read before they load, read
    here instead of by a query each (on Treasure Data a job each): each load row's
    ``files_fingerprint`` (a historical load's skip decision), and on every row the newest
    incremental field of each existing (table, field) given, as text (``newest_<i>``:
    ``max_watermark_sql``'s value).

    Parameters, in order: each mode (when ``rejected``), source and object (when ``log``),
    source and object (when ``files``)."""
    columns = ("mode", *LOAD_COLUMNS)
    if for_loads is not None:
        columns += (START_FINGERPRINT,)
        newest = [
            f"CAST((SELECT MAX({quote(field)}) FROM {ref.sql}) AS VARCHAR) AS newest_{i}"
            for i, (ref, field) in enumerate(for_loads)
        ]

    def typed_null(column: str) -> str:
        return f"CAST(NULL AS {_LOAD_TYPES.get(column, 'BIGINT')}) AS {quote(column)}"

    scalars = [
        f"({outstanding_count_sql(rejected, rejected_superseded)}) AS rejected_{i}"
        if rejected
        else f"CAST(0 AS BIGINT) AS rejected_{i}"
        for i in range(len(modes))
    ]
    loads = [f"l.{quote(c)} AS {quote(c)}" if log and c in log_columns else typed_null(c) for c in columns]
    no_file = [f"CAST(NULL AS VARCHAR) AS {c}" for c in ("file", "file_version", FILE_STATUS)]
    if for_loads is not None:
        scalars += newest
    part = f"SELECT 'load' AS part, {', '.join(scalars + loads + no_file)}"
    if log is not None:
        part += f" FROM (SELECT 1 AS one) AS o LEFT JOIN {log.sql} AS l ON l.source = ? AND l.object = ?"
    parts = [part]
    if files is not None:
        record = [f"f.{c} AS {quote(c)}" if c in ("mode", "loaded_at") else typed_null(c) for c in columns]
        nulls = [f"CAST(NULL AS BIGINT) AS rejected_{i}" for i in range(len(modes))]
        nulls += [f"CAST(NULL AS VARCHAR) AS newest_{i}" for i in range(len(for_loads or []))]
        parts.append(
            f"SELECT 'file' AS part, {', '.join(nulls)}, "
            f"{', '.join(record)}, f.file AS file, f.file_version AS file_version, "
            f"{f'f.{FILE_STATUS}' if files_status else 'CAST(NULL AS VARCHAR)'} AS {FILE_STATUS} "
            f"FROM {files.sql} AS f WHERE f.source = ? AND f.object = ?"
        )
    return "\nUNION ALL\n".join(parts) + "\nORDER BY loaded_at"


def outstanding_count_sql(rejected: TableRef, has_superseded: bool) -> str:
    """How many rejected rows of one mode (the parameter) are still outstanding."""
    still = " AND superseded_at IS NULL" if has_superseded else ""
    return f"SELECT COUNT(*) FROM {rejected.sql} WHERE mode = ?{still}"


def hist_union_measures_sql(
    target: TableRef,
    key_columns: list[str],
    inputs: list[tuple[TableRef, list[str]]],
    count_inputs: bool = False,
) -> str:
    """Duplicate keys of the hist-union table, and each input's distinct rows by the same key
    (``input_0``, ``input_1``, ... in the order given). Its rows come from its build.
    ``count_inputs``: also each input's rows (``rows_0``, ...), when the build did not count them."""
    parts = [f"({duplicate_keys_sql(target, key_columns)}) AS duplicate_keys"]
    parts += [f"({distinct_count_sql(ref, cols)}) AS input_{i}" for i, (ref, cols) in enumerate(inputs)]
    if count_inputs:
        parts += [f"(SELECT COUNT(*) FROM {ref.sql}) AS rows_{i}" for i, (ref, _) in enumerate(inputs)]
    return "SELECT " + ", ".join(parts)


def hist_union_measures_over_sql(
    relation: str, key_columns: list[str], inputs: list[tuple[TableRef, list[str]]]
) -> str:
    """``hist_union_measures_sql``'s figures with the table read as ``relation`` (its SQL name)."""
    parts = [f"({duplicate_keys_over_sql(relation, key_columns)}) AS duplicate_keys"]
    parts += [f"({distinct_count_sql(ref, cols)}) AS input_{i}" for i, (ref, cols) in enumerate(inputs)]
    return "SELECT " + ", ".join(parts)


def hist_union_measure_names(n_inputs: int) -> list[str]:
    """The columns of ``hist_union_measures_sql``'s row (without the inputs' row counts)."""
    return ["duplicate_keys", *(f"input_{i}" for i in range(n_inputs))]


def hist_union_change_sql(
    target: TableRef,
    changed: TableRef,
    changes: TableRef,
    key_columns: list[str],
    inputs: list[tuple[TableRef, list[str], bool]],
    state: TableRef,
    split: bool = False,
) -> tuple[str, str]:
    """What an incremental hist-union build changes of ``hist_union_measures_sql``'s figures, as
    the one-row queries of the rows it removes and of those it adds (same columns:
    ``hist_union_measure_names``), read before it applies them. It replaces the rows of the
    ``changed`` keys by ``changes``, so the duplicate keys among those keys leave (the table's
    rows of them) and arrive (``changes``); no other key's rows change. An input loses no row
    without a full build, so its distinct keys only grow, by the keys of its rows loaded after
    the watermark that none of its rows up to the watermark held (``inputs``: (input, its key
    columns, whether it gained rows), in rank order; keys compare with NULLs equal, as DISTINCT
    does). ``split``: ``newer_than_watermark_branches``."""
    of_changed = (
        f"SELECT t.* FROM {target.sql} AS t WHERE EXISTS (SELECT 1 FROM {changed.sql} AS c WHERE "
        + " AND ".join(f"c.{quote(k)} IS NOT DISTINCT FROM t.{quote(k)}" for k in key_columns)
        + ")"
    )
    removed = [f"({duplicate_keys_over_sql(f'({of_changed}) AS r', key_columns)}) AS duplicate_keys"]
    added = [f"({duplicate_keys_over_sql(changes.sql, key_columns)}) AS duplicate_keys"]
    for rank, (ref, cols, grew) in enumerate(inputs):
        removed.append(f"CAST(0 AS BIGINT) AS input_{int(rank)}")
        added.append(
            f"({new_distinct_keys_sql(ref, cols, state, rank, split)}) AS input_{int(rank)}"
            if grew
            else f"CAST(0 AS BIGINT) AS input_{int(rank)}"
        )
    return "SELECT " + ", ".join(removed), "SELECT " + ", ".join(added)


def new_distinct_keys_sql(
    ref: TableRef, key_columns: list[str], state: TableRef, rank: int, split: bool = False
) -> str:
    """The distinct keys of input ``rank``'s rows loaded after the watermark that none of its
    rows up to the watermark holds (NULLs equal). ``split``: ``newer_than_watermark_branches``."""
    keys = ", ".join(f"i.{quote(c)} AS {quote(c)}" for c in key_columns)
    match = " AND ".join(f"o.{quote(c)} IS NOT DISTINCT FROM n.{quote(c)}" for c in key_columns)
    wm = f"(SELECT MAX(s.watermark) FROM {state.sql} AS s WHERE s.input_rank = {int(rank)})"
    newer = " UNION ALL ".join(
        f"SELECT {keys} FROM {ref.sql} AS i WHERE {w}" for w in newer_than_watermark_branches(state, rank, split=split)
    )
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT * FROM ({newer}) AS d) AS n WHERE NOT EXISTS (SELECT 1 FROM "
        f"{ref.sql} AS o WHERE o.{quote(LOADED_AT)} <= {wm} AND {match})"
    )


def lookup_measures_sql(lookup: TableRef, cid: str) -> str:
    """The lookup's rows and its ids with more than one canonical id."""
    return (
        f"SELECT (SELECT COUNT(*) FROM {lookup.sql}) AS table_rows, "
        f"({ids_with_many_canonical_ids_sql(lookup, cid)}) AS ids_with_many"
    )


def coverage_measures_sql(table: TableRef, cids: list[str]) -> str:
    """Rows, and rows with each canonical id (``with_id_0``, ... in the order given), in one scan."""
    counts = "".join(f", COUNT({quote(cid)}) AS with_id_{i}" for i, cid in enumerate(cids))
    return f"SELECT COUNT(*) AS total{counts} FROM {table.sql}"


def excluded_measures_sql(excluded: TableRef, limit: int = 10) -> str:
    """The largest excluded values, each row carrying the table's row count (no row: none excluded)."""
    return (
        f"SELECT key_name, value, row_count, max_rows_per_value, (SELECT COUNT(*) FROM {excluded.sql}) AS total "
        f"FROM {excluded.sql} ORDER BY row_count DESC, key_name, value LIMIT {int(limit)}"
    )


def largest_component_sql(cid: str, enriched: list[TableRef]) -> str:
    """The rows of the largest canonical id and all rows with an id, over the enriched tables."""
    c = quote(cid)
    rows = " UNION ALL ".join(f"SELECT {c} AS cid FROM {ref.sql} WHERE {c} IS NOT NULL" for ref in enriched)
    return (
        f"SELECT MAX(n) AS largest, SUM(n) AS total "
        f"FROM (SELECT cid, COUNT(*) AS n FROM ({rows}) AS r GROUP BY cid) AS c"
    )


def kept_largest_component_sql(per_id: TableRef) -> str:
    """``largest_component_sql``'s row from the key statistics' kept per-id counts
    (``unification.key_stats_per_id_sql`` with the enriched tables): each id's ``enriched_rows``
    on its '*' row are its rows over the enriched tables, kept up to date by the ids a run
    touches, so no enriched row is grouped again (ids without an enriched row are left out, as
    the GROUP BY has none: no row gives NULLs, as there)."""
    return (
        f"SELECT MAX(p.enriched_rows) AS largest, SUM(p.enriched_rows) AS total FROM {per_id.sql} AS p "
        f"WHERE p.from_table = '*' AND p.enriched_rows > 0"
    )


# What ``measures_with_description_sql`` adds beside the measures (DuckDB's catalog columns).
DESCRIPTION_COLUMNS = ("table_schema", "table_name", "column_name", "data_type", "ordinal_position")


def measures_with_description_sql(measures_sql: str, n_tables: int) -> str:
    """A step's one row of measures and its description of ``n_tables`` tables in one DuckDB
    query: one row per column (``DESCRIPTION_COLUMNS``, in each table's column order), each
    carrying the measures; one row of measures with NULL columns when no table exists.

    Parameters, in order: the measures', then (schema, name) per table."""
    order = ", ".join(f"d.{c}" for c in ("table_schema", "table_name", "ordinal_position"))
    return (
        f"SELECT d.*, m.* FROM ({measures_sql}) AS m "
        f"LEFT JOIN ({describe_tables_sql(n_tables)}) AS d ON TRUE ORDER BY {order}"
    )
