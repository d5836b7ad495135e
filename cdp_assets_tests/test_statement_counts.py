"""The statement counter counts statements, not calls: a call of N SQL statements counts N
(cdp_assets_tests/statement_counts.py; docs/benchmarks.md "Statements per run")."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.base import WarehouseError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.statement_counts import OUTSIDE, counting, sql_statements


def test_a_semicolon_in_a_literal_an_identifier_or_a_comment_splits_nothing():
    sql = """SELECT 'a;b' AS "x;y" -- c;d
    ; /* e;f */ SELECT 'it''s;' ;  ; -- only a comment;"""
    assert sql_statements(sql) == [
        """SELECT 'a;b' AS "x;y" -- c;d""",
        "/* e;f */ SELECT 'it''s;'",
    ]


_PARTS = st.lists(
    st.one_of(
        st.text(alphabet="ab ;", min_size=1, max_size=4).map(lambda s: f"'{s}'"),
        st.text(alphabet="ab ;", min_size=1, max_size=4).map(lambda s: f'"{s}"'),
        st.sampled_from(["1", "2", "x"]),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_PARTS, min_size=1, max_size=5))
def test_the_split_agrees_with_duckdbs_own_parser(statements):
    """Any run of SELECTs of literals and quoted names: as many statements as DuckDB parses."""
    sql = "; ".join("SELECT " + ", ".join(f"{v} AS c{i}" for i, v in enumerate(parts)) for parts in statements)
    assert len(sql_statements(sql)) == len(duckdb.extract_statements(sql)) == len(statements)


def _total(wh) -> int:
    return sum(n for (_, kind), n in wh.counts.items() if kind != "jobs")


def test_a_call_of_n_statements_counts_n(tmp_path: Path):
    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    refs = [TableRef("s", f"t{i}") for i in range(3)]
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
        for ref in refs:
            wh.run(f"CREATE TABLE {ref.sql} (x INTEGER)")
        before = _total(wh)
        wh.query("SELECT 1; SELECT 'a;b'; SELECT 2")
        assert _total(wh) - before == 3
        before = _total(wh)
        wh.drop_tables(refs)  # DuckDB: several DROP TABLE in one call
        assert _total(wh) - before == 3
        assert not any(wh.table_exists(ref) for ref in refs)
        # Published together: BEGIN, one CREATE OR REPLACE per frame, COMMIT (a second time: the
        # first also ensures the schema and lists its leftovers).
        frames = [(ref, pd.DataFrame({"x": [1, 2]})) for ref in refs[:2]]
        wh.replace_with_dataframes(frames)
        before = _total(wh)
        assert wh.replace_with_dataframes(frames) == [2, 2]
        assert _total(wh) - before == 4
        # A unit of two frames and a statement: a load per frame, and BEGIN, the statement, COMMIT.
        before = dict(wh.counts)
        wh.append_frames(frames, statements=[f"INSERT INTO {refs[0].sql} VALUES (3)"])
        added = {k: n - before.get((OUTSIDE, k), 0) for (s, k), n in wh.counts.items() if s == OUTSIDE}
        assert added["dataframe_loads"] == 2 and added["statements"] == 3, added
        assert wh.fetch(f"SELECT count(*) AS n FROM {refs[0].sql}")["n"][0] == 5
    assert [what for _, _, what in log if what.startswith("DROP")] == [
        f"DROP TABLE IF EXISTS {ref.sql}" for ref in refs
    ]


def test_the_sessions_temporary_tables_die_with_it_without_a_drop(tmp_path: Path):
    """``drop_with_session``: DuckDB's temporary tables are left to the session's end (no statement),
    and are gone when it ends; a table of the database is dropped at once."""
    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    temp, kept = TableRef("main", "_cdp_rows_x", "temp"), TableRef("s", "t")
    wh.setup_for_execution(None)  # as a run does: each session is a cursor of the run's database
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
        wh.create_scratch(temp, "SELECT 1 AS x")
        wh.run(f"CREATE TABLE {kept.sql} AS SELECT 1 AS x")
        before = len(log)
        wh.drop_with_session([temp, kept])
        assert [what for _, _, what in log[before:]] == [f"DROP TABLE IF EXISTS {kept.sql}"]
        assert wh.fetch(f"SELECT x FROM {temp.sql}")["x"].tolist() == [1]  # still there in the session
        assert not wh.table_exists(kept)
        with wh.own_session():  # a cursor of its own: the outer session's temporary tables are not its
            with pytest.raises(WarehouseError, match="_cdp_rows_x"):
                wh.fetch(f"SELECT x FROM {temp.sql}")
            wh.create_scratch(TableRef("main", "_cdp_own", "temp"), "SELECT 2 AS x")
        with pytest.raises(WarehouseError, match="_cdp_own"):  # died with the own session
            wh.fetch('SELECT x FROM "temp"."main"."_cdp_own"')
        assert wh.fetch(f"SELECT x FROM {temp.sql}")["x"].tolist() == [1]  # the outer session's, still there
    with wh.session():
        with pytest.raises(WarehouseError, match="_cdp_rows_x"):
            wh.fetch(f"SELECT x FROM {temp.sql}")
    wh.teardown_after_execution(None)
    # Without a run holding the engine, the temporary tables are dropped as any other.
    before = len(log)
    with wh.session():
        wh.create_scratch(temp, "SELECT 1 AS x")
        wh.drop_with_session([temp])
    assert [what for _, _, what in log[before + 1 :]] == [f"DROP TABLE IF EXISTS {temp.sql}"]


def test_a_one_table_append_is_one_statement_without_a_transaction_unless_it_adds_columns(tmp_path: Path):
    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    ref = TableRef("s", "t")
    with wh.session():
        wh.append_frames([(ref, pd.DataFrame({"x": ["1"]}))])  # created
        before = len(log)
        wh.append_frames([(ref, pd.DataFrame({"x": ["2"]}))])
        # (and the table's description: kept for a run, asked again outside one)
        sent = [(kind, what) for _, kind, what in log[before:] if "information_schema" not in what]
        assert sent == [("dataframe_loads", f"append {ref.display}")]
        before = len(log)
        wh.append_frames([(ref, pd.DataFrame({"x": ["3"], "y": ["new"]}))])  # ALTER and INSERT: one unit
        assert [what for _, _, what in log[before:] if "information_schema" not in what][1:] == [
            "BEGIN TRANSACTION",
            'ALTER TABLE "s"."t" ADD COLUMN "y" VARCHAR',
            "COMMIT",
        ]
        rows = wh.fetch(f"SELECT x, y FROM {ref.sql} ORDER BY x")
    assert rows.values.tolist() == [["1", None], ["2", None], ["3", "new"]]


def test_a_step_describes_the_next_steps_tables_ahead_in_its_own_look_up(tmp_path: Path):
    """``describe_ahead``: while a run holds DuckDB, the first step of a phase describes every step's
    tables in one query; a later step finds its own known, unless a write since forgot them."""
    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    a, b, c = (TableRef("s", n) for n in "abc")
    wh.setup_for_execution(None)  # as a run does: the engine holds the database for the run
    try:
        with wh.session():
            wh.run('CREATE SCHEMA "s"')
            for ref in (a, b):
                wh.run(f"CREATE TABLE {ref.sql} (x INTEGER)")
            before = len(log)
            wh.describe_ahead([a], [a, b, c])
            assert len(log) - before == 1
            assert wh.describe_tables([b, c]) == {b: [("x", "INTEGER")], c: None}  # known: nothing sent
            assert len(log) - before == 1
            wh.describe_ahead([b], [a, b, c])  # all known: nothing sent
            assert len(log) - before == 1
            wh.run(f"CREATE TABLE {c.sql} (y VARCHAR)")  # forgets c
            assert wh.describe_tables([c]) == {c: [("y", "VARCHAR")]}
            assert len(log) - before == 3
    finally:
        wh.teardown_after_execution(None)


def test_the_run_learns_its_schemas_and_their_leftovers_in_one_look_up(tmp_path: Path):
    """``know_schemas``: which schemas exist and their half-built tables, in one query; an existing
    schema is then neither created nor listed again, its leftovers still dropped; a missing one is
    created when written, with no leftovers."""
    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
        wh.run('CREATE TABLE "s"."t__cdp_new_0123abcd" (x INTEGER)')  # a killed run's half-built table
        wh.run('CREATE TABLE "s"."kept" (x INTEGER)')
    wh.setup_for_execution(None)
    try:
        with wh.session():
            before = len(log)
            wh.know_schemas(["s", "new"])
            assert len(log) - before == 1
            wh.know_schemas(["s", "new"])  # known: nothing sent
            assert len(log) - before == 1
            wh.ensure_schema("s")
            assert wh.drop_leftovers("s", "t__cdp_new_") == ["t__cdp_new_0123abcd"]
            sent = [what for _, _, what in log[before + 1 :]]
            assert sent == ['DROP TABLE IF EXISTS "s"."t__cdp_new_0123abcd"'], sent
            assert wh.drop_leftovers("new") == []
            wh.ensure_schema("new")
            assert [what for _, _, what in log[before + 2 :]] == ['CREATE SCHEMA IF NOT EXISTS "new"']
            assert wh.list_tables("s") == ["kept"]
    finally:
        wh.teardown_after_execution(None)


def test_an_incremental_builds_scratch_tables_die_with_its_steps_session(tmp_path: Path):
    """Hist-union's and staging's incremental scratch tables (``_Scratch.drop(step_ends=True)``):
    no DROP sent while a run holds DuckDB, gone when the step's session ends; dropped otherwise."""
    from cdp_assets.incremental import _Scratch

    log: list = []
    wh = counting(DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")), log)
    target = TableRef("s", "t")
    with wh.session():
        wh.run('CREATE SCHEMA "s"')
    wh.setup_for_execution(None)
    try:
        with wh.session():
            scratch = _Scratch(wh, target)
            made = scratch.make("SELECT 1 AS x")
            before = len(log)
            scratch.drop(step_ends=True)
            assert log[before:] == []
            assert wh.fetch(f"SELECT x FROM {made.sql}")["x"].tolist() == [1]
        with wh.session(), pytest.raises(WarehouseError):
            wh.fetch(f"SELECT x FROM {made.sql}")
    finally:
        wh.teardown_after_execution(None)
    with wh.session():
        scratch = _Scratch(wh, target)
        made = scratch.make("SELECT 1 AS x")
        before = len(log)
        scratch.drop(step_ends=True)  # no run holds the engine: dropped
        assert [what for _, _, what in log[before:]] == [f"DROP TABLE IF EXISTS {made.sql}"]
