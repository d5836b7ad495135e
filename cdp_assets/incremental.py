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
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.hist_union import LINEAGE_COLUMNS, hist_union_sql


@dataclass
class BuildResult:
    rows: int  # rows of the published table
    mode: str  # full | incremental | unchanged
    reason: str = ""  # why a full build (empty when incremental or unchanged)
    rows_read: int = 0  # new input rows the run read (all input rows for a full build)
    changed_keys: int = 0  # keys whose rows were replaced (incremental)
    measures: pd.Series | None = None  # the caller's measures of the built table, when taken with the totals


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

    def make(self, select_sql: str) -> TableRef:
        ref = self.wh.scratch_ref(self.like)
        self.refs.append(ref)
        self.wh.create_scratch(ref, select_sql)
        return ref

    def drop(self) -> None:
        for ref in self.refs:
            self.wh._drop_quietly(ref)


def _previous_states(wh: WarehouseResource, *targets: TableRef) -> list[pd.DataFrame | None]:
    """Each target's state rows of its last build (None without a table or a state): every
    existence in one look-up."""
    described = wh.describe_tables([ref for t in targets for ref in (t, inc.state_ref(t))])
    return [
        None if described[t] is None or described[inc.state_ref(t)] is None else wh.fetch(inc.read_state_sql(t))
        for t in targets
    ]


def _previous_state(wh: WarehouseResource, target: TableRef) -> pd.DataFrame | None:
    return _previous_states(wh, target)[0]


def _write_state(wh: WarehouseResource, target: TableRef, rows: list[dict]) -> None:
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    frame = pd.DataFrame([{**r, "updated_at": now} for r in rows], columns=list(inc.STATE_COLUMNS))
    frame["watermark"] = pd.to_datetime(frame["watermark"])
    wh.replace_with_dataframe(inc.state_ref(target), frame.astype(inc.STATE_COLUMNS))


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
) -> BuildResult:
    """Publish ``hist_union_sql`` of ``inputs`` as ``target``: incrementally when possible."""
    with wh.session():
        select_sql = hist_union_sql(inputs, incremental_field, primary_key)
        fingerprint = _fingerprint("hist_union", select_sql)
        previous = _previous_state(wh, target)
        reason = "full refresh requested" if full_refresh else _lacks_loaded_at(inputs)
        if reason is None:
            reason, progress = _hist_union_progress(wh, target, inputs, previous, fingerprint)
        if reason is not None:
            rows = wh.build_table(target, select_sql)
            totals = _totals(wh, inputs)
            _write_state(
                wh,
                target,
                [
                    _state_row(rank, ref, total, newest, uuid.uuid4().hex, None, fingerprint, "full")
                    for rank, ((ref, _), (total, newest)) in enumerate(zip(inputs, totals))
                ],
            )
            return BuildResult(rows, "full", reason, rows_read=sum(t for t, _ in totals))
        assert previous is not None
        generation = str(previous["generation"].iloc[0])
        new_rows = sum(int(p["rows_new"]) for p in progress)
        if new_rows == 0:
            return BuildResult(wh.row_count(target), "unchanged")
        columns = wh.columns(target)
        keys, null_safe = merge_key(columns, primary_key)
        state = inc.state_ref(target)
        scratch = _Scratch(wh, target)
        try:
            grown = [
                (ref, cols, rank) for rank, ((ref, cols), p) in enumerate(zip(inputs, progress)) if int(p["rows_new"])
            ]
            changed = scratch.make(inc.changed_keys_sql(grown, state, keys, null_safe))
            affected = [
                (scratch.make(inc.affected_rows_sql(ref, cols, changed, state, rank, keys, null_safe)), cols)
                for rank, (ref, cols) in enumerate(inputs)
            ]
            changes = scratch.make(hist_union_sql(affected, incremental_field, primary_key))
            n_changed = wh.row_count(changed)
            statements = inc.upsert_statements(wh.upsert_mode, target, changes, changed, columns, keys, null_safe)
            rows = wh.apply_changes(target, statements)
        finally:
            scratch.drop()
        _write_state(
            wh,
            target,
            [
                _state_row(rank, ref, int(p["rows_total"]), p["newest"], generation, None, fingerprint, "incremental")
                for rank, ((ref, _), p) in enumerate(zip(inputs, progress))
            ],
        )
        return BuildResult(rows, "incremental", rows_read=new_rows, changed_keys=n_changed)


def _state_row(rank, ref, total, newest, generation, upstream_generation, fingerprint, mode) -> dict:
    return {
        "input_rank": rank,
        "input_table": ref.display,
        "watermark": None if pd.isna(newest) else newest,
        "rows_through": total,
        "generation": generation,
        "upstream_generation": upstream_generation,
        "fingerprint": fingerprint,
        "mode": mode,
    }


def _hist_union_progress(wh, target, inputs, previous, fingerprint) -> tuple[str | None, list]:
    """(why a full build is needed or None, each input's progress row)."""
    if previous is None:
        return f"no previous incremental state ({inc.state_ref(target).display})", []
    if list(previous["fingerprint"].unique()) != [fingerprint]:
        return "the inputs, their columns or the config changed since the last run", []
    if [str(t) for t in previous["input_table"]] != [ref.display for ref, _ in inputs]:
        return "the set of inputs changed since the last run", []
    state = inc.state_ref(target)
    progress = []
    for rank, (ref, _) in enumerate(inputs):
        p = wh.fetch(inc.input_progress_sql(ref, state, rank)).iloc[0]
        if int(p["rows_through"]) != int(previous["rows_through"].iloc[rank]):
            return f"{ref.display} was replaced or lost rows since the last run (a historical reload)", []
        progress.append(p)
    return None, progress


# ---------------------------------------------------------------------------- staging


def build_staging(
    wh: WarehouseResource,
    target: TableRef,
    upstream: TableRef,
    upstream_columns: list[str],
    render: Callable[[TableRef, list[str]], str],
    primary_key: list[str],
    row_by_row: bool = True,
    full_refresh: bool = False,
    measures_sql: str | None = None,
) -> BuildResult:
    """Publish ``render(upstream, columns)`` as ``target``. Staging maps each hist-union row to
    one staged row, so an incremental run stages only the hist-union rows loaded since its
    watermark and replaces the rows of their keys. ``row_by_row`` False (a dedupe across rows)
    always builds in full. ``measures_sql``: the caller's one-row query of the built table; a
    full build runs it with the upstream's totals, in one query (``BuildResult.measures``)."""
    with wh.session():
        select_sql = render(upstream, upstream_columns)
        fingerprint = _fingerprint("staging", select_sql, primary_key)
        upstream_state, previous = _previous_states(wh, upstream, target)
        upstream_generation = None if upstream_state is None else str(upstream_state["generation"].iloc[0])
        reason = _staging_blocker(
            full_refresh, row_by_row, upstream, upstream_columns, target, previous, upstream_generation, fingerprint
        )
        if reason is not None:
            rows = wh.build_table(target, select_sql)
            measures = None
            if measures_sql is not None and inc.LOADED_AT in upstream_columns:
                measures = wh.fetch(inc.totals_beside_sql(upstream, measures_sql)).iloc[0]
                total, newest = int(measures[inc.TOTAL_ROWS_COLUMN]), measures[inc.NEWEST_COLUMN]
                measures = measures.drop([inc.TOTAL_ROWS_COLUMN, inc.NEWEST_COLUMN])
            else:
                ((total, newest),) = _totals(wh, [(upstream, upstream_columns)])
            _write_state(
                wh,
                target,
                [_state_row(0, upstream, total, newest, uuid.uuid4().hex, upstream_generation, fingerprint, "full")],
            )
            return BuildResult(rows, "full", reason, rows_read=total, measures=measures)
        assert previous is not None
        state = inc.state_ref(target)
        progress = wh.fetch(inc.input_progress_sql(upstream, state, 0)).iloc[0]
        new_rows = int(progress["rows_new"])
        if new_rows == 0:
            return BuildResult(wh.row_count(target), "unchanged")
        keys, null_safe = merge_key(upstream_columns, primary_key)
        scratch = _Scratch(wh, target)
        try:
            delta = scratch.make(inc.rows_since_sql(upstream, state))
            changed = scratch.make(inc.changed_keys_sql([(delta, upstream_columns, 0)], state, keys, null_safe))
            changes = scratch.make(render(delta, upstream_columns))
            n_changed = wh.row_count(changed)
            columns = wh.columns(target)
            statements = inc.upsert_statements(wh.upsert_mode, target, changes, changed, columns, keys, null_safe)
            rows = wh.apply_changes(target, statements)
        finally:
            scratch.drop()
        _write_state(
            wh,
            target,
            [
                _state_row(
                    0,
                    upstream,
                    int(progress["rows_total"]),
                    progress["newest"],
                    str(previous["generation"].iloc[0]),
                    upstream_generation,
                    fingerprint,
                    "incremental",
                )
            ],
        )
        return BuildResult(rows, "incremental", rows_read=new_rows, changed_keys=n_changed)


def _staging_blocker(
    full_refresh, row_by_row, upstream, upstream_columns, target, previous, upstream_generation, fingerprint
) -> str | None:
    if full_refresh:
        return "full refresh requested"
    if not row_by_row:
        return "a dedupe or a dimension join relates rows to other rows; built in full"
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
