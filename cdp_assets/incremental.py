"""Incremental builds of the hist-union and staging tables: decide full or incremental, run the
builders' SQL on a warehouse, keep the watermarks as data (docs/incremental.md).

A run reads only the rows loaded since the last successful run (``_cdp_loaded_at`` after the
watermark), recomputes the keys they touch and replaces those keys' rows in the published
table, atomically (``WarehouseResource.apply_changes``). It falls back to a full build, and says
why, whenever the shortcut could differ from one: no previous state, a changed config or
column set, an input that lost rows or was replaced (a historical reload), or an upstream table
that was itself rebuilt in full. The result equals a full build on the same data.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import checks as chk
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.checks import hist_union_change_sql, hist_union_measure_names, hist_union_measures_over_sql
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS, hist_union_sql
from cdp_assets.sql.pipeline import Query
from cdp_assets.sql.unification import copy_sql


@dataclass
class BuildResult:
    rows: int  # rows of the published table
    mode: str  # full | incremental | unchanged
    reason: str = ""  # why a full build (empty when incremental or unchanged)
    # New input rows the run read (all input rows for a full build); None: not measured by the
    # build (a full hist-union build on an engine that counts rows only by a query).
    rows_read: int | None = 0
    changed_keys: int = 0  # keys whose rows were replaced (incremental)
    measures: pd.Series | None = None  # the caller's measures of the built table, when taken with the totals
    # Each input's row count, in the order given, when the build measured them (hist-union: its
    # state's totals or its progress query); None: not measured by the build.
    input_rows: list[int] | None = None
    # How ``measures`` were obtained: "full scan" (a query of the whole table), "change" (the
    # kept measures, less the removed rows', plus the added rows') or "kept" (unchanged table).
    measured_by: str = ""
    # A query reading back the measures a full build kept in its state, for the caller to run
    # with its description of the table (``read_kept_sql``'s row: the measures, each input's rows).
    kept_read_sql: str | None = None


@dataclass(frozen=True)
class Measures:
    """A built table's check measures that are counts, kept in its state from run to run
    (``inc.kept_columns``): ``over(relation)`` renders their one-row query over a relation (a
    table's SQL name, or a parenthesised SELECT with its alias), whose columns are ``names``."""

    over: Callable[[str], str]
    names: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        return _fingerprint("measures", self.over("<rows>"), self.names)

    @property
    def kept_columns(self) -> list[str]:
        return inc.kept_columns(self.fingerprint, len(self.names))

    def kept_sql(self, target: TableRef) -> str:
        """The whole table's measures as its state keeps them (``inc.kept_measures_sql``)."""
        return inc.kept_measures_sql(self.over(target.sql), list(self.names), self.fingerprint)

    def kept_in(self, previous: pd.DataFrame | None, measured: pd.Series | None) -> pd.Series | None:
        """The measures kept in ``previous`` (a state read with ``kept_columns``) when they still
        describe the table: all present, and no row of it unaccounted for (``measured``'s
        ``inc.UNACCOUNTED_COLUMN``: a run killed between the table and its state); else None."""
        if previous is None or previous.empty or measured is None:
            return None
        unaccounted = measured.get(inc.UNACCOUNTED_COLUMN)
        if unaccounted is None or pd.isna(unaccounted) or int(unaccounted) != 0:
            return None
        values = [previous[c].iloc[0] if c in previous.columns else None for c in self.kept_columns]
        if any(v is None or pd.isna(v) for v in values):
            return None
        return pd.Series([int(v) for v in values], index=list(self.names), dtype="int64")

    def change_sql(self, removed_sql: str, added: TableRef, counted: inc.Inlined | None = None) -> str:
        """The measures of the rows a build removes (``removed_sql``, a SELECT) and adds;
        ``counted``: an inlined relation counted beside (``inc.measures_change_sql``)."""
        return inc.measures_change_sql(
            self.over(f"({removed_sql}) AS r"), self.over(added.sql), list(self.names), counted
        )

    def applied(self, kept: pd.Series, change: pd.Series) -> pd.Series:
        """``kept`` less the removed rows' measures, plus the added rows' (``change_sql``'s row)."""
        values = [
            int(kept[n]) - int(change[f"{inc.REMOVED_PREFIX}{i}"]) + int(change[f"{inc.ADDED_PREFIX}{i}"])
            for i, n in enumerate(self.names)
        ]
        return pd.Series(values, index=list(self.names), dtype="int64")

    def kept_values(self, values: pd.Series) -> dict[str, int]:
        """``values`` (by name) as the state's kept columns."""
        return {c: int(values[n]) for c, n in zip(self.kept_columns, self.names)}


def _rows_of(wh: WarehouseResource, ref: TableRef | inc.Inlined, change: pd.Series | None = None) -> int:
    """A scratch relation's rows: a table's as its create answered them; an inlined one's as
    ``change`` (a ``measures_change_sql`` row) counted them beside, else by a query of its own."""
    if not isinstance(ref, inc.Inlined):
        return wh.row_count(ref)
    if change is not None and inc.COUNTED_COLUMN in change.index:
        return int(change[inc.COUNTED_COLUMN])
    return wh.scalar(inc.inlined_rows_sql(ref))


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def merge_key(columns: list[str], primary_key: list[str]) -> tuple[list[str], bool]:
    """The key hist-union de-duplicates by, as (columns, null_safe): the primary key, or every
    business column (NULLs equal) when there is none."""
    if primary_key:
        return list(primary_key), False
    return [c for c in columns if c not in LINEAGE_COLUMNS], True


class _Scratch:
    """Scratch tables of one build, dropped whatever happens."""

    def __init__(self, wh: WarehouseResource, target: TableRef):
        # Not named like the target's half-built tables: publishing drops those before it builds.
        self.wh, self.like, self.refs = wh, target.sibling(f"{target.name}_inc"), []
        wh.drop_leftovers(target.schema, f"{self.like.name}__cdp_new_")  # a killed run's scratch tables

    def make(self, select_sql: str, params: tuple = (), inline: bool = False) -> TableRef | inc.Inlined:
        """A scratch table of ``select_sql``'s rows; ``inline``: the rows are read only by
        statements that run before the build changes what they read, and have the types the
        warehouse stores, so where the engine ``inlines_scratch_tables`` they are a subquery of
        each reader instead (no statement). Rows a build types itself: ``_staged_rows``."""
        if inline and not params and self.wh.inlines_scratch_tables:
            return inc.Inlined(select_sql)
        ref = self.wh.scratch_ref(self.like)
        self.refs.append(ref)
        self.wh.create_scratch(ref, select_sql, list(params))
        return ref

    def drop(self, step_ends: bool = False) -> None:
        """Drop the scratch tables, quietly. ``step_ends``: the build is its step's last work on
        them (hist-union, staging), so the session's temporary tables are left to die with it where
        the engine has them and a run holds it (``WarehouseResource.drop_with_session``)."""
        refs = self.wh.outliving_the_session(self.refs) if step_ends else self.refs
        for ref in refs:
            self.wh._drop_quietly(ref)


def _staged_rows(
    wh: WarehouseResource,
    scratch: _Scratch,
    staged_sql: str,
    stored_in: TableRef,
    stored_times: dict[str, str] | None,
) -> TableRef | inc.Inlined:
    """An incremental staging build's staged rows (typed by the rules), read by statements that run
    before the build changes what they read, as ``stored_in`` (the table they go into) stores its
    rows: a subquery where the engine ``inlines_scratch_tables`` and its tables keep the rules'
    types (Databricks); where it stores times as text (Treasure Data), a subquery writing those
    columns as that text (``stored_times``, ``inc.as_stored_sql``) where the dialect writes it, so
    that a rebuild's ``UNION ALL`` of them and the stored rows matches on real Trino; else a table."""
    if not wh.dialect.stores_timestamps_as_text:
        return scratch.make(staged_sql, inline=True)
    if stored_times is not None and wh.dialect.writes_stored_timestamp_text:
        return scratch.make(inc.as_stored_sql(staged_sql, wh.columns(stored_in), stored_times), inline=True)
    return scratch.make(staged_sql)


class _Described:
    """Tables and their states described in one look-up, and the states read in one query.
    ``beside``: given what exists, a one-row query of measures to take in that same query
    (``inc.read_states_sql``), or None; its row is ``measured`` (None when no state was read)."""

    def __init__(
        self,
        wh: WarehouseResource,
        targets: list[TableRef],
        others: list[TableRef] = (),
        beside: Callable[[dict[TableRef, bool]], str | None] | None = None,
        read_if: Callable[[dict[TableRef, bool]], bool] | None = None,
        kept: list[str] | tuple = (),
        unaccounted: tuple[TableRef, list[TableRef]] | None = None,
    ):
        """``kept``: kept measures' columns to read with the states; ``unaccounted``: (a state,
        the tables built with it), whose rows loaded after its watermark are counted beside
        (``inc.unaccounted_rows_sql``; NULL when one of them keeps no load times)."""
        states = [inc.state_ref(t) for t in targets]
        described = wh.describe_tables([*targets, *states, *others])
        self.exists = {ref: cols is not None for ref, cols in described.items()}
        self.columns = {ref: None if cols is None else [c for c, _ in cols] for ref, cols in described.items()}
        self.measured: pd.Series | None = None
        # ``read_if``: given what exists, whether the states are needed at all (a build that is
        # full whatever they hold reads none).
        wanted = read_if is None or read_if(self.exists)
        present = [
            (t, s, [c for c, _ in described[s]])
            for t, s in zip(targets, states)
            if wanted and described[t] is not None and described[s] is not None
        ]
        frames = {}
        if present:
            beside_sql = beside(self.exists) if beside is not None else None
            if beside_sql is not None and unaccounted is not None:
                built = [ref for ref in unaccounted[1] if self.exists.get(ref)]
                timed = all(inc.LOADED_AT in self.columns[ref] for ref in built)
                beside_sql = inc.unaccounted_beside_sql(beside_sql, unaccounted[0], built if timed else None)
            rows = wh.fetch(inc.read_states_sql([(s, cols) for _, s, cols in present], beside_sql, kept))
            measures = [c for c in rows.columns if c != "state_of" and c not in inc.STATE_COLUMNS and c not in kept]
            if beside_sql is not None and len(rows):
                self.measured = rows.iloc[0][measures]
            rows = rows.drop(columns=measures)
            for i, (t, _, cols) in enumerate(present):
                frame = rows[rows["state_of"] == i].drop(columns="state_of").reset_index(drop=True)
                # A state written before change logs lacks their columns: read as none.
                frames[t] = frame if "seq" in cols else frame.drop(columns=["seq", "changes_since", "upstream_seq"])
        self.states = {t: frames.get(t) for t in targets}


def _write_state(wh: WarehouseResource, target: TableRef, rows: list[dict], kept: dict[str, int] | None = None) -> None:
    """``rows`` (one per input) as ``target``'s state; ``kept``: the table's kept measures, by
    column (``Measures.kept_values``), beside every row."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    kept = kept or {}
    types = {**inc.STATE_COLUMNS, **{c: "int64" for c in kept}}
    frame = pd.DataFrame([{**r, "updated_at": now, **kept} for r in rows], columns=list(types))
    frame[["seq", "changes_since", "upstream_seq"]] = frame[["seq", "changes_since", "upstream_seq"]].fillna(0)
    frame["watermark"] = pd.to_datetime(frame["watermark"])
    wh.replace_with_dataframe(inc.state_ref(target), frame.astype(types))


def _totals(wh: WarehouseResource, inputs: list[tuple[TableRef, list[str]]]) -> list[tuple[int, object]]:
    """Each input's (rows, newest load time), in one query; (0, None) for an input without
    load times."""
    timed = [ref for ref, cols in inputs if inc.LOADED_AT in cols]
    rows = wh.fetch(inc.input_totals_sql(timed)) if timed else pd.DataFrame()
    by_ref = {timed[int(r["input_rank"])]: (int(r["rows_total"]), r["newest"]) for _, r in rows.iterrows()}
    return [by_ref.get(ref, (0, None)) for ref, _ in inputs]


def _lacks_loaded_at(inputs: list[tuple[TableRef, list[str]]]) -> str | None:
    for ref, cols in inputs:
        if inc.LOADED_AT not in cols:
            return f"{ref.display} has no {inc.LOADED_AT} column to keep a watermark by"
    return None


# ---------------------------------------------------------------------------- hist-union


def build_hist_union(
    wh: WarehouseResource,
    target: TableRef,
    inputs: list[tuple[TableRef, list[str]]],
    incremental_field: str,
    primary_key: list[str],
    full_refresh: bool = False,
    keep_measures: bool = False,
) -> BuildResult:
    """Publish ``hist_union_sql`` of ``inputs`` as ``target``: incrementally when possible.
    ``keep_measures`` (with a primary key): its checks' measures (``hist_union_measures_sql``:
    duplicate keys, each input's distinct keys) kept in its state, as staging keeps its rule
    counts (``build_staging``): an incremental build returns them (``BuildResult.measures``); a
    full build takes them in the statement that writes its state and returns the query that
    reads them back with each input's rows (``BuildResult.kept_read_sql``)."""
    with wh.session():
        select_sql = hist_union_sql(inputs, incremental_field, primary_key)
        fingerprint = _fingerprint("hist_union", select_sql)
        reason = "full refresh requested" if full_refresh else _lacks_loaded_at(inputs)
        state = inc.state_ref(target)
        # Without a primary key the key is the table's business columns, known once it is built
        # (a full build would describe it to measure them): none are kept, and the step's checks
        # measure the table in full as before.
        measures = _hist_union_measures(inputs, primary_key) if keep_measures and primary_key else None
        # An incremental build's progress (each input's rows since the watermark, the table's rows)
        # is measured in the query that reads the state.
        beside = None if reason is not None else inc.progress_beside_sql([ref for ref, _ in inputs], state, target)
        described = _Described(
            wh,
            [target],
            beside=None if beside is None else (lambda exists: beside),
            kept=measures.kept_columns if measures is not None else (),
            unaccounted=(state, [target]) if measures is not None else None,
        )
        previous = described.states[target]
        if reason is None:
            reason, progress = _hist_union_progress(target, inputs, previous, fingerprint, described.measured)
        if reason is not None:
            rows = wh.build_table(target, select_sql)
            if _lacks_loaded_at(inputs) is None:
                # The state measures its inputs' totals in the statement that writes it (one
                # statement instead of a totals query and a DataFrame write; on Treasure Data one
                # job instead of a query and a bulk import). The inputs' counts come from the
                # engine's catalog where it knows them without a query (TD); elsewhere the caller
                # measures them with its checks (input_rows None).
                kept = measures.kept_sql(target) if measures is not None else None
                _write_state_of_totals(wh, target, [ref for ref, _ in inputs], fingerprint, kept=kept)
                if measures is not None:
                    read = inc.read_kept_sql(state, list(measures.names), measures.fingerprint, len(inputs))
                    return BuildResult(rows, "full", reason, rows_read=None, kept_read_sql=read)
                if not wh.counts_rows_without_a_query:
                    return BuildResult(rows, "full", reason, rows_read=None)
                counted = wh.row_counts([ref for ref, _ in inputs])
                input_rows = [counted[ref] for ref, _ in inputs]
                return BuildResult(rows, "full", reason, rows_read=sum(input_rows), input_rows=input_rows)
            totals = _totals(wh, inputs)
            _write_state(
                wh,
                target,
                [
                    _state_row(rank, ref, total, newest, uuid.uuid4().hex, None, fingerprint, "full")
                    for rank, ((ref, _), (total, newest)) in enumerate(zip(inputs, totals))
                ],
            )
            counted = None if _lacks_loaded_at(inputs) else [t for t, _ in totals]
            return BuildResult(rows, "full", reason, rows_read=sum(t for t, _ in totals), input_rows=counted)
        assert previous is not None and described.measured is not None
        generation = str(previous["generation"].iloc[0])
        new_rows = sum(int(p["rows_new"]) for p in progress)
        input_rows = [int(p["rows_total"]) for p in progress]
        rows_before = int(described.measured[inc.TARGET_ROWS_COLUMN])
        kept = measures.kept_in(previous, described.measured) if measures is not None else None
        if new_rows == 0:
            by = "kept" if kept is not None else ""
            return BuildResult(rows_before, "unchanged", input_rows=input_rows, measures=kept, measured_by=by)
        columns = wh.columns(target)
        keys, null_safe = merge_key(columns, primary_key)
        scratch = _Scratch(wh, target)
        change = None
        split = wh.dialect.skips_row_groups  # the watermark tests as branches DuckDB prunes by
        try:
            grown = [
                (ref, cols, rank) for rank, ((ref, cols), p) in enumerate(zip(inputs, progress)) if int(p["rows_new"])
            ]
            # Both read the inputs and the state, which the build changes only after the apply,
            # and the inputs' columns as stored: inlined where the engine would rather recompute.
            changed = scratch.make(inc.changed_keys_sql(grown, state, keys, null_safe, split), inline=True)
            # Each input's rows to recompute, read as subqueries of the one statement that unions them.
            affected = [
                inc.affected_rows_sql(ref, cols, changed, state, rank, keys, null_safe, split)
                for rank, (ref, cols) in enumerate(inputs)
            ]
            changes = scratch.make(
                hist_union_sql(inputs, incremental_field, primary_key, relations=affected), inline=True
            )
            counted = inc.counted_beside(changed)
            if kept is not None:  # before the apply: the rows it removes are still in the table
                keyed = [(ref, list(primary_key), bool(int(p["rows_new"]))) for (ref, _), p in zip(inputs, progress)]
                removed, added = hist_union_change_sql(target, changed, changes, keys, keyed, state, split)
                change = wh.fetch(inc.measures_change_sql(removed, added, list(measures.names), counted)).iloc[0]
            n_changed = _rows_of(wh, changed, change)
            statements = inc.upsert_statements(wh.upsert_mode, target, changes, changed, columns, keys, null_safe)
            rows = wh.apply_changes(target, statements, rows_before)
        finally:
            scratch.drop(step_ends=True)
        taken, measured_by = None, ""
        if measures is not None:
            if change is not None:
                taken, measured_by = measures.applied(kept, change), "change"
            else:  # none kept that describe the table: measured in full, and kept from now on
                taken, measured_by = wh.fetch(measures.over(target.sql)).iloc[0][list(measures.names)], "full scan"
        _write_state(
            wh,
            target,
            [
                _state_row(rank, ref, int(p["rows_total"]), p["newest"], generation, None, fingerprint, "incremental")
                for rank, ((ref, _), p) in enumerate(zip(inputs, progress))
            ],
            kept=measures.kept_values(taken) if taken is not None else None,
        )
        return BuildResult(
            rows,
            "incremental",
            rows_read=new_rows,
            changed_keys=n_changed,
            input_rows=input_rows,
            measures=taken,
            measured_by=measured_by,
        )


def _hist_union_measures(inputs: list[tuple[TableRef, list[str]]], primary_key: list[str]) -> Measures:
    """A hist-union table's check measures (``hist_union_measures_sql``) by its primary key."""
    keyed = [(ref, list(primary_key)) for ref, _ in inputs]
    return Measures(
        lambda relation: hist_union_measures_over_sql(relation, list(primary_key), keyed),
        tuple(hist_union_measure_names(len(inputs))),
    )


def _write_state_of_totals(
    wh: WarehouseResource,
    target: TableRef,
    inputs: list[TableRef],
    fingerprint: str,
    upstream_state: TableRef | None = None,
    kept: str | None = None,
    seq: int = 0,
    since: int = 0,
) -> None:
    """A full build's state, its inputs' totals (and ``upstream_state``'s generation) measured
    by the statement that publishes it (``inc.state_of_totals_sql``), the rest bound as values;
    ``kept``: the built table's measures to keep (``Measures.kept_sql``), taken in it too."""
    _write_state_of_inputs(
        wh,
        target,
        [inc.StateInput(ref, generation_of=upstream_state) for ref in inputs],
        fingerprint,
        seq=seq,
        since=since,
        kept=kept,
    )


def _write_state_of_inputs(
    wh: WarehouseResource,
    target: TableRef,
    inputs: list[inc.StateInput],
    fingerprint: str,
    generation: str | None = None,
    seq: int = 0,
    since: int = 0,
    kept: str | None = None,
) -> None:
    """A full build's state written by one ``CREATE TABLE AS`` that measures what the warehouse
    holds (``inc.state_of_inputs_sql``: inputs' totals, their states' generations and build
    numbers), the rest bound as values: no state read before, no DataFrame written after."""
    bound = {
        "generation": generation or uuid.uuid4().hex,
        "fingerprint": fingerprint,
        "mode": "full",
        "updated_at": pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime(),
        "seq": seq,
        "changes_since": since,
    }
    params = [
        i.ref.display if name == "input_table" else bound[name] for i in inputs for name in inc.STATE_BOUND_PER_INPUT
    ]
    sql = inc.state_of_inputs_sql(inputs, wh.dialect.stored_timestamp_type, kept)
    wh.build_table(inc.state_ref(target), sql, params)


def _state_if_kept(described: _Described, ref: TableRef, column: str = "generation") -> TableRef | None:
    """``ref``'s state table when it exists and keeps ``column`` (a state written before change
    logs has no ``seq``): what a state measured in its own statement reads it from."""
    state = inc.state_ref(ref)
    columns = described.columns.get(state)
    return state if columns is not None and column in columns else None


def _state_row(
    rank, ref, total, newest, generation, upstream_generation, fingerprint, mode, seq=0, since=0, upstream_seq=0
) -> dict:
    return {
        "seq": seq,
        "changes_since": since,
        "upstream_seq": upstream_seq,
        "input_rank": rank,
        "input_table": ref.display,
        "watermark": None if pd.isna(newest) else newest,
        "rows_through": total,
        "generation": generation,
        "upstream_generation": upstream_generation,
        "fingerprint": fingerprint,
        "mode": mode,
    }


def _progress(measured: pd.Series, rank: int) -> pd.Series:
    """Input ``rank``'s ``input_progress_sql`` row, out of ``progress_beside_sql``'s row."""
    return pd.Series({name: measured[inc.progress_column(name, rank)] for name in inc.PROGRESS_COLUMNS})


def _hist_union_progress(target, inputs, previous, fingerprint, measured) -> tuple[str | None, list]:
    """(why a full build is needed or None, each input's progress row, out of ``measured``:
    ``progress_beside_sql``'s row, read with the state)."""
    if previous is None:
        return f"no previous incremental state ({inc.state_ref(target).display})", []
    if list(previous["fingerprint"].unique()) != [fingerprint]:
        return "the inputs, their columns or the config changed since the last run", []
    if [str(t) for t in previous["input_table"]] != [ref.display for ref, _ in inputs]:
        return "the set of inputs changed since the last run", []
    progress = []
    for rank, (ref, _) in enumerate(inputs):
        p = _progress(measured, rank)
        if int(p["rows_through"]) != int(previous["rows_through"].iloc[rank]):
            return f"{ref.display} was replaced or lost rows since the last run (a historical reload)", []
        progress.append(p)
    return None, progress


# ---------------------------------------------------------------------------- staging


@dataclass(frozen=True)
class Dedupe:
    """A staged table's dedupe as ``build_staging`` runs it: ``stage`` renders the staging rules
    without the dedupe over hist-union rows (``render``'s signature), ``rank`` the dedupe over
    pre-dedupe staged rows (a parenthesised SELECT, the hist-union's columns that break ties,
    the staged rows' columns), keeping one row per ``partition_by``."""

    stage: Callable[[TableRef, list[str]], str]
    rank: Callable[[str, list[str], list[str]], str]
    partition_by: list[str]


def build_staging(
    wh: WarehouseResource,
    target: TableRef,
    upstream: TableRef,
    upstream_columns: list[str],
    render: Callable[[TableRef, list[str]], str],
    primary_key: list[str],
    row_by_row: bool = True,
    full_refresh: bool = False,
    measures: Measures | None = None,
    dedupe: Dedupe | None = None,
    stored_times: dict[str, str] | None = None,
) -> BuildResult:
    """Publish ``render(upstream, columns)`` as ``target``. Staging maps each hist-union row to
    one staged row, so an incremental run stages only the hist-union rows loaded since its
    watermark and replaces the rows of their keys. With ``dedupe`` (one row kept per partition),
    those staged rows replace their keys' rows in ``<target>_cdp_all`` (every staged row before
    the dedupe) and only the partitions they touch are ranked again into ``target``.
    ``row_by_row`` False (a dimension join) always builds in full. ``measures``: the caller's
    counts of the built table (``BuildResult.measures``), kept in its state: a full build takes
    them in the statement that writes its state, an incremental one from the kept ones and the
    rows it removes and adds (measured in full where none are kept, or where the table holds rows
    its state does not account for). ``stored_times``: the staged columns ``render`` computes as
    TIMESTAMP or DATE (name -> type), which a table stores as text where the engine has no such
    types: given, and where the engine writes that text (``Dialect.writes_stored_timestamp_text``),
    an incremental build's staged rows are a subquery of the statements that read them, with those
    columns as the text (``inc.as_stored_sql``), instead of a scratch table (no deduped table)."""
    with wh.session():
        select_sql = render(upstream, upstream_columns)
        all_rows = inc.all_rows_ref(target)
        # A deduped table's state also covers its pre-dedupe rows: "dedupe" in the fingerprint
        # makes a state written when such tables were built in full (no ``_cdp_all``) rebuild once.
        fingerprint = _fingerprint("staging", select_sql, primary_key, *(("dedupe",) if dedupe else ()))
        # Without the target's state the build is full whatever the upstream's state says: no
        # states read (the new state takes the upstream's generation in its own statement).
        # An incremental build's progress (the upstream's rows since the watermark, the table's
        # rows) is measured in the query that reads the states.
        state = inc.state_ref(target)
        progress_sql = None
        if not full_refresh and row_by_row and inc.LOADED_AT in upstream_columns:
            progress_sql = inc.progress_beside_sql([upstream], state, target)
        described = _Described(
            wh,
            [upstream, target],
            [all_rows, inc.changes_ref(target)] if dedupe else [],
            beside=lambda exists: progress_sql if exists[state] else None,
            read_if=lambda exists: exists[target] and exists[state],
            kept=measures.kept_columns if measures is not None else (),
            unaccounted=(state, [target, *([all_rows] if dedupe else [])]) if measures is not None else None,
        )
        upstream_state, previous = described.states[upstream], described.states[target]
        # A deduped table logs the keys each incremental build replaced or removed (rows loaded
        # before the watermark may leave it, which a reader by watermark cannot see): its builds
        # are numbered; a full build starts the log afresh (its readers see a new generation).
        seq, since, log_exists = _log_window(described, target, previous) if dedupe else (0, 0, False)
        upstream_generation = None if upstream_state is None else str(upstream_state["generation"].iloc[0])
        reason = _staging_blocker(
            full_refresh, row_by_row, upstream, upstream_columns, target, previous, upstream_generation, fingerprint
        )
        if reason is None and dedupe is not None and not described.exists[all_rows]:
            reason = f"no staged rows before the dedupe ({all_rows.display})"
        if reason is not None:
            if dedupe is None:
                rows = wh.build_table(target, select_sql)
            else:
                # The rules run once, into the pre-dedupe rows; the table is their ranking.
                wh.build_table(all_rows, dedupe.stage(upstream, upstream_columns))
                rows = wh.build_table(
                    target, dedupe.rank(f"({copy_sql(all_rows)})", upstream_columns, wh.columns(all_rows))
                )
            if inc.LOADED_AT in upstream_columns:
                # The state measures the upstream's totals and reads its generation in the
                # statement that writes it; then the caller's measures of the built table, with
                # its description and the upstream's rows (one query on DuckDB).
                upstream_state_ref = inc.state_ref(upstream)
                _write_state_of_totals(
                    wh,
                    target,
                    [upstream],
                    fingerprint,
                    upstream_state_ref if described.exists[upstream_state_ref] else None,
                    kept=measures.kept_sql(target) if measures is not None else None,
                    seq=seq,
                    since=seq,
                )
                if measures is None:
                    return BuildResult(rows, "full", reason, rows_read=wh.row_count(upstream))
                names = list(measures.names)
                read_sql = inc.read_kept_sql(state, names, measures.fingerprint, 1)
                _, measured = wh.describe_tables_and_fetch([target], read_sql)
                row = measured.iloc[0]
                total = int(row["_cdp_rows_0"])
                taken = row[names].astype("int64")
                return BuildResult(rows, "full", reason, rows_read=total, measures=taken, measured_by="full scan")
            ((total, newest),) = _totals(wh, [(upstream, upstream_columns)])
            _write_state(
                wh,
                target,
                [
                    _state_row(
                        0, upstream, total, newest, uuid.uuid4().hex, upstream_generation, fingerprint, "full", seq, seq
                    )
                ],
            )
            return BuildResult(rows, "full", reason, rows_read=total)
        assert previous is not None and described.measured is not None
        progress = _progress(described.measured, 0)
        rows_before = int(described.measured[inc.TARGET_ROWS_COLUMN])
        new_rows = int(progress["rows_new"])
        kept = measures.kept_in(previous, described.measured) if measures is not None else None
        if new_rows == 0:
            return BuildResult(rows_before, "unchanged", measures=kept, measured_by="kept" if kept is not None else "")
        keys, null_safe = merge_key(upstream_columns, primary_key)
        generation = str(previous["generation"].iloc[0])
        scratch = _Scratch(wh, target)
        change: list[pd.Series] = []

        def measure_change(removed_sql: str, added: TableRef) -> None:
            # Before the apply: the rows it removes are still in the table.
            if kept is not None:
                counted = inc.counted_beside(changed)
                change.append(wh.fetch(measures.change_sql(removed_sql, added, counted)).iloc[0])

        try:
            # The new rows and their keys read the upstream table and the state, which the build
            # changes only after its applies, and keep the upstream's stored columns: inlined where
            # the engine would rather recompute. So do the staged rows, read by the measures and
            # the apply, as the table they replace stores its rows (``_staged_rows``).
            delta = scratch.make(inc.rows_since_sql(upstream, state, split=wh.dialect.skips_row_groups), inline=True)
            changed = scratch.make(
                inc.changed_keys_sql([(delta, upstream_columns, 0)], state, keys, null_safe, since_watermark=False),
                inline=True,
            )
            if dedupe is None:
                staged_sql = render(delta, upstream_columns)
                changes = _staged_rows(wh, scratch, staged_sql, target, stored_times)
                measure_change(inc.rows_of_keys_sql(target, changed, keys), changes)
                columns = wh.columns(target)
                statements = inc.upsert_statements(wh.upsert_mode, target, changes, changed, columns, keys, null_safe)
                rows = wh.apply_changes(target, statements, rows_before)
            else:
                # The log names the keys by the staged table's key, as its reader (the enrichment) does.
                log_keys, _ = merge_key(described.columns[target], primary_key)
                log = (log_keys, seq, since, log_exists)
                rows = _apply_deduped(
                    wh,
                    scratch,
                    target,
                    dedupe,
                    delta,
                    upstream_columns,
                    changed,
                    keys,
                    null_safe,
                    log,
                    rows_before,
                    measure_change,
                    stored_times,
                )
            n_changed = _rows_of(wh, changed, change[0] if change else None)
        finally:
            scratch.drop(step_ends=True)
        taken, measured_by = None, ""
        if measures is not None:
            if change:
                taken, measured_by = measures.applied(kept, change[0]), "change"
            else:  # none kept that describe the table: measured in full, and kept from now on
                taken, measured_by = wh.fetch(measures.over(target.sql)).iloc[0][list(measures.names)], "full scan"
        _write_state(
            wh,
            target,
            [
                _state_row(
                    0,
                    upstream,
                    int(progress["rows_total"]),
                    progress["newest"],
                    generation,
                    upstream_generation,
                    fingerprint,
                    "incremental",
                    seq,
                    since,
                )
            ],
            kept=measures.kept_values(taken) if taken is not None else None,
        )
        return BuildResult(
            rows, "incremental", rows_read=new_rows, changed_keys=n_changed, measures=taken, measured_by=measured_by
        )


def _apply_deduped(
    wh,
    scratch: _Scratch,
    target: TableRef,
    dedupe: Dedupe,
    delta: TableRef,
    upstream_columns,
    changed,
    keys,
    null_safe,
    log: tuple[list[str], int, int, bool],
    rows_before: int | None = None,
    measure_change: Callable[[str, TableRef], None] | None = None,
    stored_times: dict[str, str] | None = None,
) -> int:
    """Stage the ``delta`` rows, replace their keys' rows in the pre-dedupe rows, and rank again
    the partitions they touch: those of the new rows and those of the published rows of the
    changed keys (a winner that moved or lost must be replaced). The published rows, not the
    pre-dedupe ones, name the old partitions: after a run killed between the two applies, the
    pre-dedupe rows hold the new versions already, while the published table still holds the old.
    ``log``: (the staged table's key, this build's seq, the seq after which its log is complete,
    whether the log exists): the keys of the touched partitions' rows that differ, old or new, are
    logged before the published table changes (a run killed after it finds the old rows replaced, but
    the log rows of a build its state never reached stay: ``change_log_sql``).
    ``measure_change(removed, added)``: called before the published table changes, with the
    SELECT of its rows the apply removes and the table of those it adds. ``stored_times``: as
    ``build_staging``'s (the staged rows inlined as the pre-dedupe table stores them).

    Where the engine ``inlines_scratch_tables``, the touched partitions and their ranked rows are
    subqueries: they read the staged rows, the pre-dedupe rows after their apply and the published
    table, which changes only with the last apply, after its readers' statements."""
    all_rows = inc.all_rows_ref(target)
    # Read by the touched partitions and the pre-dedupe rows' apply, before either changes what
    # they read.
    changes = _staged_rows(wh, scratch, dedupe.stage(delta, upstream_columns), all_rows, stored_times)
    old_winners = inc.rows_of_keys_sql(target, changed, keys)
    touched = scratch.make(inc.touched_partitions_sql(changes, old_winners, dedupe.partition_by), inline=True)
    columns = wh.columns(all_rows)
    wh.apply_changes(
        all_rows, inc.upsert_statements(wh.upsert_mode, all_rows, changes, changed, columns, keys, null_safe)
    )
    # Partitions compare with NULLs equal, as PARTITION BY groups them.
    candidates = inc.rows_of_keys_sql(all_rows, touched, dedupe.partition_by)
    # Read by the log, the measures and the apply: the pre-dedupe rows are applied already, and
    # the rows it ranks are stored ones (their times as the published table stores them).
    ranked = scratch.make(dedupe.rank(f"({candidates})", upstream_columns, columns), inline=True)
    log_keys, seq, since, log_exists = log
    old_rows = inc.rows_of_keys_sql(target, touched, dedupe.partition_by)
    # The published rows have the ranked rows' columns (the same ranking built them).
    _write_log(wh, target, inc.dedupe_changed_keys_sql(old_rows, ranked, columns, log_keys), seq, since, log_exists)
    if measure_change is not None:
        measure_change(old_rows, ranked)
    return _apply_by_key(wh, target, ranked, touched, dedupe.partition_by, null_safe=True, rows_before=rows_before)


def _staging_blocker(
    full_refresh, row_by_row, upstream, upstream_columns, target, previous, upstream_generation, fingerprint
) -> str | None:
    if full_refresh:
        return "full refresh requested"
    if not row_by_row:
        return "a dimension join relates rows to rows of another table; built in full"
    if inc.LOADED_AT not in upstream_columns:
        return f"{upstream.display} has no {inc.LOADED_AT} column to keep a watermark by"
    if previous is None:
        return f"no previous incremental state ({inc.state_ref(target).display})"
    if list(previous["fingerprint"].unique()) != [fingerprint]:
        return "the staging rules or the columns changed since the last run"
    if upstream_generation is None:
        return f"{upstream.display} keeps no incremental state"
    if str(previous["upstream_generation"].iloc[0]) != upstream_generation:
        return f"{upstream.display} was rebuilt in full since the last run"
    return None


# ---------------------------------------------------------------------------- change logs
# The lookup and the enriched tables are read by steps of other ops (the enrichment, the
# master tables), so what a build changed is kept as data: ``<table>_cdp_changes``, rows
# tagged with the build's ``seq`` (cdp_assets/sql/incremental.py). A reader keeps the ``seq`` it
# last read and applies the rows after it, or builds in full when the log does not reach back.


def _seqs(previous: pd.DataFrame | None) -> tuple[int, int] | None:
    """(this table's last build number, the build after which its change log is complete), or
    None without a state that keeps them (a state written before change logs existed)."""
    if previous is None or "seq" not in previous.columns or previous.empty:
        return None
    return int(previous["seq"].iloc[0]), int(previous["changes_since"].iloc[0])


def _log_window(described: _Described, target: TableRef, previous: pd.DataFrame | None) -> tuple[int, int, bool]:
    """(this build's seq, the seq after which the log will be complete, whether the log exists)."""
    seqs = _seqs(previous)
    prev_seq, prev_since = seqs if seqs is not None else (0, 0)
    seq = prev_seq + 1
    exists = described.exists[inc.changes_ref(target)]
    since = max(prev_since, seq - inc.CHANGES_KEPT) if exists and seqs is not None else prev_seq
    return seq, since, exists


def _write_log(wh: WarehouseResource, target: TableRef, new_rows_sql: str, seq: int, since: int, exists: bool):
    log = inc.changes_ref(target)
    wh.build_table(log, inc.change_log_sql(log if exists else None, new_rows_sql, seq, since))


def _read_range(consumed: int | None, upstream: pd.DataFrame | None, name: str) -> tuple[str | None, tuple[int, int]]:
    """(why a full build, (seq after, seq up to)) for a reader at ``consumed`` of a table with a
    change log whose state is ``upstream``."""
    seqs = _seqs(upstream)
    if seqs is None:
        return f"{name} keeps no change log", (0, 0)
    seq, since = seqs
    if consumed is None or consumed == 0:
        return f"no build of {name} read before", (0, 0)
    if consumed == seq:
        return None, (seq, seq)
    if since <= consumed < seq:
        return None, (consumed, seq)
    return f"{name} was rebuilt in full or changed beyond its change log since the last run", (0, 0)


def _unread_windows(
    inputs: list[TableRef], states: list[pd.DataFrame | None], consumed: list[int | None]
) -> tuple[str | None, list[tuple[int, int]]]:
    """Per input, the window of its change log a reader at ``consumed`` (a build number per
    input) has not read (``_read_range``), and the first reason one cannot be read."""
    reason, ranges = None, []
    for ref, state, seq in zip(inputs, states, consumed):
        why, window = _read_range(seq, state, ref.display)
        reason = reason or why
        ranges.append(window)
    return reason, ranges


def _touched_ids_sql(inputs: list[TableRef], ranges: list[tuple[int, int]], id_name: str) -> str:
    """The ids touched in the unread ``ranges`` of the change logs of ``inputs``: the lookup
    first (its moved key values' old and new ids), then the enriched tables (their replaced
    rows' ids); a log with nothing unread is not read."""
    logs = [(inc.changes_ref(ref), lo, hi) for ref, (lo, hi) in zip(inputs, ranges)]
    lookup_log = logs[0] if logs[0][2] > logs[0][1] else None
    return inc.touched_master_ids_sql(lookup_log, [log for log in logs[1:] if log[2] > log[1]], id_name)


LOOKUP_KEY = ["id_key_type", "id"]
# A lookup's columns after the id's own (``cdp_assets/sql/unification.py``, ``lookup_sql``).
LOOKUP_COLUMNS = ["id", "id_key_type", "id_key_name", "id_first_seen_at", "id_last_seen_at", "id_source_table_ids"]


def _keeps_lookup_measures(wh: WarehouseResource, keep_measures: bool) -> bool:
    """Whether the lookup's check measure is kept beside it (``publish_lookup``)."""
    return keep_measures and wh.upsert_mode == "delete_insert" and wh.dialect.replaces_atomically


def _described_lookup(wh: WarehouseResource, lookup: TableRef, keeps_measures: bool) -> _Described:
    """The lookup, its state and log, and its kept measures (read beside its state where kept)."""
    kept_ref = inc.measures_ref(lookup)
    return _Described(
        wh,
        [lookup],
        [inc.changes_ref(lookup), kept_ref],
        beside=lambda exists: chk.kept_lookup_measures_sql(kept_ref) if keeps_measures and exists[kept_ref] else None,
    )


def lookup_as_published(wh: WarehouseResource, lookup: TableRef, keep_measures: bool = False) -> BuildResult | None:
    """The published lookup as its last build left it, for a loop run that changes nothing (no new
    row, no removed key value): its rows as its state counted them, and its kept check measures
    where they are the last build's (``_kept_lookup_measures``'s, without a query of their own).
    None where no state describes it (then the run publishes it as usual)."""
    with wh.session():
        described = _described_lookup(wh, lookup, _keeps_lookup_measures(wh, keep_measures))
        previous = described.states[lookup]  # None also where the lookup is missing
        if previous is None:
            return None
        rows = int(previous["rows_through"].iloc[0])
        kept = _kept_if_current(described, lookup)
        measures = None if kept is None else _lookup_measures(kept, rows)
        return BuildResult(rows, "unchanged", measures=measures, measured_by="kept" if measures is not None else "")


def _kept_if_current(described: _Described, lookup: TableRef) -> pd.Series | None:
    """The lookup's kept measures read beside its state, when they are its last build's (their
    ``seq`` is the state's; not after a build killed between its commit and its state)."""
    kept = described.measured
    if kept is None or pd.isna(kept["_cdp_measured_seq"]):
        return None
    return kept if int(kept["_cdp_measured_seq"]) == (_seqs(described.states[lookup]) or (0, 0))[0] else None


def _lookup_measures(kept: pd.Series, rows: int) -> pd.Series:
    """The lookup check's measures (``BuildResult.measures``) from a kept measures row."""
    return pd.Series(
        {
            "table_rows": rows,
            "ids_with_many": int(kept["_cdp_ids_with_many"]),
            "canonical_ids": int(kept["_cdp_canonical_ids"]),
        }
    )


def publish_lookup(
    wh: WarehouseResource,
    lookup: TableRef,
    select_sql: str,
    cid: str,
    full_refresh: bool = False,
    affected: tuple[TableRef, str] | None = None,
    keep_measures: bool = False,
) -> BuildResult:
    """Publish an id's lookup (``select_sql``, rebuilt by every loop run) and log which key
    values changed id against the lookup it replaces, for the enrichment that reads it.
    ``affected``: (the key values whose rows may change, the SELECT of those rows alone), from an
    incremental loop: with a change log to extend, only their rows are built, diffed and
    replaced (``_apply_by_key``: DELETE and INSERT in one transaction where the engine can);
    every other row stays as it is, as a full build would have written it.

    ``keep_measures`` (a canonical id's lookup, which later runs replace in part): where the
    engine deletes and inserts in one transaction, the lookup's check measure (its ids with
    several canonical ids, ``inc.measures_ref``) is kept beside it: counted over every row by a
    full build, and by an incremental one from its change, in the apply's transaction
    (``BuildResult.measures``: the check reads them from the lookup's materialization instead of
    grouping every row again)."""
    keeps_measures = _keeps_lookup_measures(wh, keep_measures)
    kept_ref = inc.measures_ref(lookup)
    with wh.session():
        described = _described_lookup(wh, lookup, keeps_measures)
        previous = described.states[lookup]
        seq, since, log_exists = _log_window(described, lookup, previous)
        measures = None
        if full_refresh or previous is None or _seqs(previous) is None:
            reason = "full refresh requested" if full_refresh else f"no change log of {lookup.display} yet"
            rows = wh.build_table(lookup, select_sql)
            mode, changed, since = "full", 0, seq
            if keeps_measures:
                wh.run(wh.dialect.replace_table_sql(kept_ref, chk.lookup_measures_sql_of(seq, None, lookup, cid)))
                measures = _kept_lookup_measures(wh, kept_ref, rows)
        else:
            reason, mode = "", "incremental"
            scratch = _Scratch(wh, lookup)
            try:
                if affected is None:
                    new = scratch.make(select_sql)
                    changes = scratch.make(inc.lookup_changes_sql(lookup, new, cid, wh.dialect))
                else:
                    keys, rows_sql = affected
                    new = scratch.make(rows_sql)
                    changes = scratch.make(inc.lookup_changes_sql(lookup, new, cid, wh.dialect, only=keys))
                changed = wh.row_count(changes)
                _write_log(wh, lookup, copy_sql(changes), seq, since, log_exists)
                if affected is None:
                    rows = wh.build_table(lookup, copy_sql(new))
                elif keeps_measures and affected is not None:
                    rows, measures = _apply_lookup_keeping_measures(
                        wh,
                        lookup,
                        new,
                        affected[0],
                        changes,
                        cid,
                        seq,
                        int(previous["rows_through"].iloc[0]),
                        described,
                    )
                else:
                    columns = [cid, *LOOKUP_COLUMNS]
                    rows = _apply_by_key(wh, lookup, new, affected[0], LOOKUP_KEY, False, columns)
            finally:
                scratch.drop()
        _write_state(wh, lookup, [_state_row(0, lookup, rows, None, "", None, "", mode, seq, since)])
        return BuildResult(rows, mode, reason, changed_keys=changed, measures=measures)


def _apply_lookup_keeping_measures(
    wh: WarehouseResource,
    lookup: TableRef,
    new: TableRef,
    affected: TableRef,
    changes: TableRef,
    cid: str,
    seq: int,
    rows_before: int,
    described: _Described,
) -> tuple[int, pd.Series]:
    """Replace the ``affected`` key values' rows with ``new`` and, in the same transaction, the
    lookup's kept measures with those after this build ``seq``: counted from the change (its log
    ``changes``) when the kept ones are the previous build's (their ``seq`` is the state's), else
    over the whole lookup once (after a full build, or a build killed before its state was
    written)."""
    kept, kept_ref = _kept_if_current(described, lookup), inc.measures_ref(lookup)
    current = kept is not None
    counted = None
    if current:
        change = wh.fetch(chk.lookup_change_measures_sql(lookup, new, changes, cid, wh.dialect)).iloc[0]
        counted = (
            int(kept["_cdp_ids_with_many"]) - int(change["before"]) + int(change["after"]),
            int(kept["_cdp_canonical_ids"]) - int(change["ids_before"]) + int(change["ids_after"]),
        )
    # After the rows: a measure counted over the whole lookup must see the new ones.
    write = wh.dialect.replace_table_sql(kept_ref, chk.lookup_measures_sql_of(seq, counted, lookup, cid))
    # The state's rows are the lookup's only when nothing changed it after the state was written
    # (a build killed between its commit and its state did): as the kept measures tell.
    columns = [cid, *LOOKUP_COLUMNS]
    rows = _apply_by_key(
        wh, lookup, new, affected, LOOKUP_KEY, False, columns, rows_before if current else None, then=[write]
    )
    if counted is None:
        return rows, _kept_lookup_measures(wh, kept_ref, rows)
    return rows, pd.Series({"table_rows": rows, "ids_with_many": counted[0], "canonical_ids": counted[1]})


def _kept_lookup_measures(wh: WarehouseResource, kept_ref: TableRef, rows: int) -> pd.Series:
    return _lookup_measures(wh.fetch(chk.kept_lookup_measures_sql(kept_ref)).iloc[0], rows)


def enriched_build_reads(staged: TableRef, target: TableRef, lookups: list[TableRef]) -> list[TableRef]:
    """What ``build_enriched`` describes before it builds: its tables, their states and the
    target's change log (a caller may describe several builds' at once, on an engine that keeps
    descriptions for the run)."""
    tables = [staged, target, *lookups]
    return [*tables, *(inc.state_ref(t) for t in tables), inc.changes_ref(target), inc.changes_ref(staged)]


def build_enriched(
    wh: WarehouseResource,
    target: TableRef,
    staged: TableRef,
    staged_columns: list[str],
    lookups: list[tuple[TableRef, list[tuple[str, int]]]],
    render: Callable[[str | None], str],
    id_columns: list[str],
    primary_key: list[str],
    row_by_row: bool = True,
    full_refresh: bool = False,
) -> BuildResult:
    """Publish ``render(None)`` (the staged table with its ids) as ``target``; ``render(rows)``:
    the rows of the SELECT ``rows`` of staged rows alone with their ids. An incremental
    run enriches again only the rows of the keys whose staged row was loaded after the
    watermark, holds a key value whose id changed in one of ``lookups`` ((lookup, the
    table's (column, key_type) merge columns)), or, for a staged table that logs its changes (a
    dedupe), was replaced or removed since the build it read; and logs the ids it touched for
    the master tables. ``row_by_row`` False (an id derived from other rows) always builds in full."""
    with wh.session():
        select_sql = render(None)
        fingerprint = _fingerprint("enriched", select_sql, primary_key, [lk.display for lk, _ in lookups])
        target_state = inc.state_ref(target)

        def measures(exists: dict[TableRef, bool]) -> str | None:
            # The staged input's totals (and rows after the watermark, with a state) in the query
            # that reads the states: the input does not change during the step.
            if inc.LOADED_AT not in staged_columns:
                return None
            return inc.input_measures_sql(staged, target_state if exists[target_state] else None)

        # Without the target's state the build is full whatever the other states hold: none is
        # read, and the new state is measured by the statement that writes it.
        described = _Described(
            wh,
            [staged, target, *(lk for lk, _ in lookups)],
            [inc.changes_ref(target), inc.changes_ref(staged)],
            beside=measures,
            read_if=lambda exists: exists[target_state],
        )
        measured = described.measured
        upstream_state = described.states[staged]
        upstream_generation = None if upstream_state is None else str(upstream_state["generation"].iloc[0])
        previous = described.states[target]
        lookup_states = [described.states[lk] for lk, _ in lookups]
        seq, since, log_exists = _log_window(described, target, previous)
        reason = _staging_blocker(
            full_refresh, True, staged, staged_columns, target, previous, upstream_generation, fingerprint
        )
        if reason == "the staging rules or the columns changed since the last run":
            reason = "the unification config or the columns changed since the last run"
        if reason is None and not row_by_row:
            reason = "an id merged from other ids is computed from their lookups for every row; built in full"
        if reason is None and _seqs(previous) is None:
            reason = "the previous state predates change logs"
        # A staged table that logs its changes (a dedupe: rows loaded before the watermark may
        # leave it) is read through its log as well, as input 0; the lookups are inputs 1...
        staged_seq = (_seqs(upstream_state) or (0, 0))[0]
        logged = [(0, staged)] if staged_seq > 0 else []
        logged += [(rank, lk) for rank, (lk, _) in enumerate(lookups, start=1)]
        consumed = [
            None if reason is not None or rank >= len(previous) else int(previous["upstream_seq"].iloc[rank])
            for rank, _ in logged
        ]
        why, windows = _unread_windows(
            [ref for _, ref in logged], [described.states[ref] for _, ref in logged], consumed
        )
        reason = reason or why
        staged_window = windows.pop(0) if staged_seq > 0 else (0, 0)
        ranges = windows
        keys, _ = merge_key(staged_columns, primary_key)
        staged_log = inc.changes_ref(staged)
        log_columns = described.columns[staged_log] or []
        if reason is None and staged_window[1] > staged_window[0] and not set(keys) <= set(log_columns):
            reason = f"{staged_log.display} does not hold the keys of {staged.display}"
        lookup_seqs = [(_seqs(s) or (0, 0))[0] for s in lookup_states]

        def state_rows(total, newest, generation, mode, since_):
            return [
                _state_row(
                    0,
                    staged,
                    total,
                    newest,
                    generation,
                    upstream_generation,
                    fingerprint,
                    mode,
                    seq,
                    since_,
                    staged_seq,
                ),
                *(
                    _state_row(rank, lk, 0, None, generation, None, fingerprint, mode, seq, since_, lookup_seq)
                    for rank, ((lk, _), lookup_seq) in enumerate(zip(lookups, lookup_seqs), start=1)
                ),
            ]

        if reason is not None:
            # Same config and a change log to extend: the new table is diffed against the one
            # it replaces and the ids of the rows that differ are logged, so the master tables
            # need not follow into a full build (the staged table was rebuilt in full, or a log
            # did not reach back).
            diffable = (
                not full_refresh
                and _seqs(previous) is not None
                and str(previous["fingerprint"].iloc[0]) == fingerprint
                and described.exists[target]
            )
            if diffable:
                rows = _build_logged(wh, target, select_sql, id_columns, seq, since, log_exists)
            else:
                rows, since = wh.build_table(target, select_sql), seq
            if previous is None:
                # The staged table's totals and generation and the lookups' build numbers read
                # by the statement that writes the state (no state was read: ``read_if``).
                timed = inc.LOADED_AT in staged_columns
                inputs = [
                    inc.StateInput(
                        staged,
                        measured=timed,
                        generation_of=_state_if_kept(described, staged),
                        seq_of=_state_if_kept(described, staged, "seq"),
                    ),
                    *(
                        inc.StateInput(lk, measured=False, seq_of=_state_if_kept(described, lk, "seq"))
                        for lk, _ in lookups
                    ),
                ]
                _write_state_of_inputs(wh, target, inputs, fingerprint, seq=seq, since=since)
                # What it read: every staged row. Where only a query counts them, they are counted
                # with every enriched table's coverage after the enrichments (one query for all:
                # runner.measure_coverage), not here (None: not measured by the build).
                total = (wh.row_count(staged) if wh.counts_rows_without_a_query else None) if timed else 0
                return BuildResult(rows, "full", reason, rows_read=total)
            if measured is not None:
                total, newest = int(measured[inc.TOTAL_ROWS_COLUMN]), measured[inc.NEWEST_COLUMN]
            else:
                ((total, newest),) = _totals(wh, [(staged, staged_columns)])
            _write_state(wh, target, state_rows(total, newest, uuid.uuid4().hex, "full", since))
            return BuildResult(rows, "full", reason, rows_read=total)
        assert previous is not None
        generation = str(previous["generation"].iloc[0])
        if measured is not None and not pd.isna(measured[inc.NEW_ROWS_COLUMN]):
            progress = pd.Series(
                {
                    "rows_total": measured[inc.TOTAL_ROWS_COLUMN],
                    "newest": measured[inc.NEWEST_COLUMN],
                    "rows_new": measured[inc.NEW_ROWS_COLUMN],
                }
            )
        else:
            progress = wh.fetch(inc.input_progress_sql(staged, target_state, 0)).iloc[0]
        state = target_state
        logs = [
            (inc.changes_ref(lk), merge_columns, lo, hi)
            for (lk, merge_columns), (lo, hi) in zip(lookups, ranges)
            if hi > lo
        ]
        staged_read = (staged_log, *staged_window) if staged_window[1] > staged_window[0] else None
        scratch = _Scratch(wh, target)
        try:
            changed = scratch.make(
                inc.enriched_changed_keys_sql(
                    staged, staged_columns, state, keys, logs, staged_read, split=wh.dialect.skips_row_groups
                )
            )
            n_changed = wh.row_count(changed)
            if n_changed == 0:
                rows, mode = wh.row_count(target), "unchanged"
                seq -= 1  # nothing logged: readers of this table have nothing new to read
                since = int(previous["changes_since"].iloc[0])
            else:
                # The changed keys' staged rows are enriched as they are read (no scratch table of
                # them: one statement and, on Treasure Data, one table less per run).
                # Read by the log and the apply, before the apply changes the table; the staged
                # table's stored columns and the lookup's: inlined where the engine would rather
                # recompute.
                changes = scratch.make(render(inc.rows_of_keys_sql(staged, changed, keys)), inline=True)
                replaced = inc.rows_of_keys_sql(target, changed, keys)
                _write_log(wh, target, inc.touched_ids_sql(replaced, changes, id_columns), seq, since, log_exists)
                rows, mode = _apply_by_key(wh, target, changes, changed, keys, null_safe=True), "incremental"
        finally:
            scratch.drop()
        _write_state(wh, target, state_rows(int(progress["rows_total"]), progress["newest"], generation, mode, since))
        return BuildResult(rows, mode, rows_read=int(progress["rows_new"]), changed_keys=n_changed)


def _build_logged(wh, target: TableRef, select_sql: str, id_columns: list[str], seq: int, since: int, exists: bool):
    """Build ``target`` in full and log the ids of the rows that differ from the table it replaces."""
    scratch = _Scratch(wh, target)
    try:
        new = scratch.make(select_sql)
        cols = wh.columns(new)
        old_only = scratch.make(inc.rows_missing_sql(target, new, cols))
        new_only = scratch.make(inc.rows_missing_sql(new, target, cols))
        _write_log(wh, target, inc.touched_ids_sql(copy_sql(old_only), new_only, id_columns), seq, since, exists)
        return wh.build_table(target, copy_sql(new))
    finally:
        scratch.drop()


def _apply_by_key(
    wh,
    target: TableRef,
    changes: TableRef,
    changed: TableRef,
    keys,
    null_safe: bool,
    columns: list[str] | None = None,
    rows_before: int | None = None,
    then: list[str] = (),
) -> int:
    """Replace the rows of the ``changed`` keys. MERGE replaces one row per key and deletes
    nothing, but a key's rows here may be several (NULLs equal) or vanish (an id merged
    away): where the engine would MERGE, the table is rebuilt and swapped in instead.
    ``columns``: the table's own (default: as the engine describes it); ``rows_before``: the
    table's rows before, when measured (``apply_changes``); ``then``: statements that change with
    the table, in its transaction (``apply_changes``: delete_insert only)."""
    mode = "rebuild" if wh.upsert_mode == "merge" else wh.upsert_mode
    columns = columns or wh.columns(target)
    statements = inc.upsert_statements(mode, target, changes, changed, columns, keys, null_safe)
    if mode == "rebuild":
        return wh.build_table(target, statements[0])
    return wh.apply_changes(target, statements, rows_before, then=then)


def build_master(
    wh: WarehouseResource,
    target: TableRef,
    id_name: str,
    lookup: TableRef,
    enriched: list[TableRef],
    render: Callable[[TableRef | None], Query],
    config_fingerprint: str,
    columns: list[str],
    full_refresh: bool = False,
) -> BuildResult:
    """Publish ``render(None)`` (one row per id) as ``target``. An incremental run recomputes
    only the ids touched since its last build (``render(ids)``): the old and new ids of the key
    values that moved in the lookup and of the enriched rows replaced, applied by id. Each
    ``render`` answers its SQL with the values bound to its placeholders (the valid_regexps).
    ``columns``: the id's and the attributes' (Treasure Data describes its own ``time`` too)."""
    with wh.session():
        inputs = [lookup, *enriched]
        full = render(None)
        # The bound values are in ``config_fingerprint`` (the master's config) already.
        fingerprint = _fingerprint("master", full.sql, config_fingerprint)
        # Without the target's state the build is full: no state is read (``read_if``), and the
        # new state reads its inputs' build numbers in the statement that writes it.
        target_state = inc.state_ref(target)
        described = _Described(wh, [target, *inputs], read_if=lambda exists: exists[target_state])
        previous = described.states[target]
        states = [described.states[ref] for ref in inputs]
        reason = "full refresh requested" if full_refresh else None
        if reason is None and previous is None:
            reason = f"no previous incremental state ({inc.state_ref(target).display})"
        if reason is None and (
            list(previous["fingerprint"].unique()) != [fingerprint]
            or [str(t) for t in previous["input_table"]] != [r.display for r in inputs]
        ):
            reason = "the master table's config or inputs changed since the last run"
        # Without a reason the previous state's inputs are these, in this order (checked above).
        consumed = [None] * len(inputs) if reason is not None else [int(seq) for seq in previous["upstream_seq"]]
        why, ranges = _unread_windows(inputs, states, consumed)
        reason = reason or why
        input_seqs = [(_seqs(s) or (0, 0))[0] for s in states]
        generation = uuid.uuid4().hex if reason is not None else str(previous["generation"].iloc[0])
        rows_state = [
            _state_row(rank, ref, 0, None, generation, None, fingerprint, "full" if reason else "incremental", 0, 0, s)
            for rank, (ref, s) in enumerate(zip(inputs, input_seqs))
        ]
        if reason is not None:
            rows = wh.build_table(target, full.sql, list(full.params))
            if previous is None:
                inputs_state = [
                    inc.StateInput(ref, measured=False, seq_of=_state_if_kept(described, ref, "seq")) for ref in inputs
                ]
                _write_state_of_inputs(wh, target, inputs_state, fingerprint, generation=generation)
            else:
                _write_state(wh, target, rows_state)
            return BuildResult(rows, "full", reason)
        scratch = _Scratch(wh, target)
        try:
            touched = scratch.make(_touched_ids_sql(inputs, ranges, id_name))
            n_touched = wh.row_count(touched)
            part = render(touched) if n_touched else None
            if part is None:
                rows, mode = wh.row_count(target), "unchanged"
            elif wh.upsert_mode == "delete_insert":
                # Most touched ids' rows come out as they were (5M nightly: 51,996 of 58,124): only
                # the others are deleted and inserted, so the commit writes (and DuckDB checkpoints)
                # a tenth of the rows. The flag reads the published rows of the touched ids.
                changes = scratch.make(inc.with_same_flag_sql(part.sql, target, touched, id_name, columns), part.params)
                statements = inc.replace_changed_rows_statements(target, changes, touched, id_name, columns)
                rows, mode = wh.apply_changes(target, statements), "incremental"
            else:
                changes = scratch.make(part.sql, part.params)
                rows, mode = _apply_by_key(wh, target, changes, touched, [id_name], False, columns), "incremental"
        finally:
            scratch.drop()
        _write_state(wh, target, rows_state)
        return BuildResult(rows, mode, changed_keys=n_touched)


def keep_key_stats_counts(
    wh: WarehouseResource,
    per_id: TableRef,
    lookup: TableRef,
    enriched: list[TableRef],
    id_name: str,
    render: Callable[[TableRef | None], str],
    n_columns: int,
    config: str,
    count_all: Callable[[], int],
    incremental: Callable[[], bool] = lambda: True,
    extra_columns: Sequence[str] = (),
) -> BuildResult:
    """Keep ``per_id`` (``inc.per_id_ref``: the key statistics' per-(table, id) value counts,
    ``render(None)``) equal to a count over the whole lookup, recounting only the ids touched
    since it was counted: those whose key values moved in the lookup and those of the enriched
    rows replaced (``touched_master_ids_sql``, as a master table). A value's tables change only
    with a row of that table loaded, replaced or gone, whose enriched row's old and new ids are
    logged; and every value of a row has the row's id (its values are one component), so the
    ids whose counts change are all logged. ``render(ids)``: the counts of those ids alone.
    ``incremental()`` False (an id whose rows' ids are not each value's: do-not-merge, ids merged
    from other ids): always counted in full. Falls back to a full count, with the reason, when the
    counts were taken with another config or a log does not reach back to the build they read.
    ``extra_columns``: ``render``'s columns after the ``n_<i>`` (the ids' sizes,
    ``u.KEPT_SIZE_COLUMNS``): an id's lookup and enriched rows change only with a key value of
    its moving in the lookup or an enriched row of its replaced, both logged, so they are
    recounted with the touched ids as well. ``config``: the marker the counts are taken with
    (``up.key_stats_counts_config``); ``count_all()``: every id's counts with that marker and the
    inputs' build numbers, built (the counts' printed step), its rows."""
    inputs = [lookup, *enriched]
    states = [inc.state_ref(ref) for ref in inputs]

    def full(reason: str) -> BuildResult:
        return BuildResult(count_all(), "full", reason)

    with wh.session():
        # Known for the run where the enrichments described it ahead (none on a first run).
        if wh.describe_tables([per_id])[per_id] is None:
            return full(f"no previous counts ({per_id.display})")
        if not incremental():
            return full("an id resolved with do-not-merge or merged from other ids is counted in full")
        described = _Described(wh, inputs, beside=lambda _: inc.per_id_markers_read_sql(per_id, len(inputs)))
        kept = described.measured
        if kept is None or kept["_cdp_stats_config"] != config:
            return full("the unification config changed since the counts were taken")
        seqs = [kept[f"_cdp_stats_seq_{rank}"] for rank in range(len(inputs))]
        consumed = [None if pd.isna(seq) else int(seq) for seq in seqs]
        reason, ranges = _unread_windows(inputs, [described.states[ref] for ref in inputs], consumed)
        if reason is not None:
            return full(reason)
        if all(hi == lo for lo, hi in ranges):
            return BuildResult(0, "unchanged")
        scratch = _Scratch(wh, per_id)
        try:
            touched = scratch.make(_touched_ids_sql(inputs, ranges, id_name))
            n_touched = wh.row_count(touched)
            markers = inc.per_id_markers_sql(states, n_columns, with_config=False, extra=extra_columns)
            changes = scratch.make(f"{render(touched)}\nUNION ALL\n{markers}")
            columns = ["from_table", "cid", *(f"n_{i}" for i in range(n_columns)), *extra_columns]
            wh.apply_changes(
                per_id, inc.per_id_apply_statements(per_id, changes, touched, id_name, columns), count=False
            )
        finally:
            # The counts' update is the step's last work on them: on DuckDB, within a run, they
            # die with the step's session.
            scratch.drop(step_ends=True)
        return BuildResult(0, "incremental", changed_keys=n_touched)
