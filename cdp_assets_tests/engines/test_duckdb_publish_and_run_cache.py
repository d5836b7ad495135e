"""DuckDB publishes a table in one atomic statement, and keeps what it knows of the catalog for a
whole run: a real DuckDB file, the engine's own calls, and a model of the tables as the oracle."""

from __future__ import annotations

import os
import signal
import uuid

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.engines.base import WarehouseError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets_tests.engines.catalog_model import COLUMNS, TABLES, apply_shared_write, shared_write
from cdp_assets_tests.engines.recording import recording_duckdb
from cdp_assets.sql import engine_meta as meta
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.engine_meta import tables_changed

CATALOG = "SELECT table_schema, table_name, column_name"


@pytest.fixture
def wh(tmp_path):
    return recording_duckdb(str(tmp_path / "c.duckdb"))


# ---------------------------------------------------------------------------- publishing


def test_a_publish_killed_before_it_commits_keeps_the_old_table(tmp_path):
    """A process SIGKILLed with its CREATE OR REPLACE done but not committed: the old table stays."""
    path = str(tmp_path / "k.duckdb")
    final = TableRef("s", "t")
    DuckDBWarehouse(path=path).build_table(final, "SELECT 'old' AS v")
    pid = os.fork()
    if pid == 0:  # the child: publish inside a transaction, then die before the COMMIT
        try:
            con = DuckDBWarehouse(path=path)._connect()
            con.execute("BEGIN TRANSACTION")
            con.execute(DuckDBWarehouse(path=path).dialect.replace_table_sql(final, "SELECT 'new' AS v, 1 AS w"))
            assert con.execute(f"SELECT v, w FROM {final.sql}").fetchall() == [("new", 1)]
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)  # only if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    after = DuckDBWarehouse(path=path)
    assert after.fetch(f"SELECT * FROM {final.sql}").to_dict("records") == [{"v": "old"}]
    assert after.list_tables("s") == ["t"]  # nothing half-built to clean up


def test_a_publish_that_fails_keeps_the_old_table_and_says_which_statement(wh):
    final = TableRef("s", "t")
    wh.build_table(final, "SELECT 'old' AS v")
    with pytest.raises(WarehouseError) as err:
        wh.build_table(final, "SELECT CAST('not a number' AS INTEGER) AS v")
    assert "CREATE OR REPLACE TABLE" in str(err.value) and "Could not convert" in str(err.value)
    assert wh.fetch(f"SELECT v FROM {final.sql}")["v"].tolist() == ["old"]


def test_a_dataframe_is_published_in_one_statement(wh):
    final = TableRef("s", "f")
    with wh.session():
        assert wh.replace_with_dataframe(final, pd.DataFrame({"a": [1, 2, 3]})) == 3
        wh.take()
        assert wh.replace_with_dataframe(final, pd.DataFrame({"b": ["x"]})) == 1
        sent = wh.take()
    assert sent == [f"CREATE OR REPLACE TABLE {final.sql} AS\nSELECT * FROM _cdp_frame"]
    assert wh.describe_tables([final])[final] == [("b", "VARCHAR")]


# ---------------------------------------------------------------------------- run-scoped caches


def test_a_run_describes_a_table_once_until_the_engine_writes_it(wh):
    t, u = TableRef("s", "t"), TableRef("s", "u")
    wh.build_table(t, "SELECT 1 AS a")
    wh.setup_for_execution(None)  # what Dagster does when a run starts
    try:
        wh.take()
        for _ in range(2):  # two steps: two sessions of the one run
            with wh.session():
                assert wh.describe_tables([t, u]) == {t: [("a", "INTEGER")], u: None}
                assert wh.columns(t) == ["a"] and wh.table_exists(t) and not wh.table_exists(u)
        assert len(wh.take(CATALOG)) == 1
        wh.build_table(t, "SELECT 1 AS a, 'x' AS b")  # the engine's own write: forgotten
        assert wh.columns(t) == ["a", "b"] and not wh.table_exists(u)
        assert len(wh.take(CATALOG)) == 1  # only t asked again; u still known
        wh.append_dataframe(u, pd.DataFrame({"c": [1]}))
        wh.execute(f'ALTER TABLE {t.sql} ADD COLUMN "d" VARCHAR')
        assert wh.describe_tables([t, u]) == {
            t: [("a", "INTEGER"), ("b", "VARCHAR"), ("d", "VARCHAR")],
            u: [("c", "BIGINT")],
        }
        wh.take()
        wh.append_dataframe(u, pd.DataFrame({"c": [2]}))  # rows only: its description stands
        wh.execute(f"INSERT INTO {t.sql} (a) VALUES (2)")
        assert wh.table_exists(u) and wh.columns(t) == ["a", "b", "d"] and wh.take(CATALOG) == []
        wh.execute("SET threads = 1")  # a statement whose effect cannot be read: all forgotten
        assert wh.table_exists(u) and len(wh.take(CATALOG)) == 1
        wh.drop(u)
        assert not wh.table_exists(u)
    finally:
        wh.teardown_after_execution(None)
    wh.take()
    with wh.session():
        wh.describe_tables([t])
        wh.describe_tables([t])
    assert len(wh.take(CATALOG)) == 2  # outside a run: asked every time, as before


def test_a_run_creates_each_schema_once_and_lists_leftovers_once(wh):
    wh.execute('CREATE SCHEMA "s"')
    wh.execute('CREATE TABLE "s"."a__cdp_new_dead0001" AS SELECT 1 AS x')  # a killed run's leftover
    wh.setup_for_execution(None)
    try:
        wh.take()
        for name in ("a", "b", "c"):
            with wh.session():  # one step each
                wh.build_table(TableRef("s", name), "SELECT 1 AS x")
        assert len(wh.take("CREATE SCHEMA")) == 1 and len(wh.take("SELECT table_name FROM")) == 0
        assert wh.list_tables("s") == ["a", "b", "c"]
        wh.execute('DROP SCHEMA "s" CASCADE')  # the engine's own drop: every schema forgotten
        wh.take()
        wh.build_table(TableRef("s", "d"), "SELECT 1 AS x")
        assert len(wh.take("CREATE SCHEMA")) == 1
    finally:
        wh.teardown_after_execution(None)
    wh.execute('DROP SCHEMA "s" CASCADE')  # between runs: created again by the next
    wh.take()
    wh.build_table(TableRef("s", "e"), "SELECT 1 AS x")
    assert len(wh.take("CREATE SCHEMA")) == 1


# The model: table -> its columns (None: absent). Each operation is a call of the engine's own API:
# catalog_model's writes, and two of DuckDB's units (a rolled-back append, an upsert).
operation = st.one_of(
    shared_write,
    st.tuples(st.just("failed_append"), st.sampled_from(TABLES), st.sampled_from(COLUMNS)),
    st.tuples(st.just("upsert"), st.sampled_from(TABLES), st.none()),
)


def _apply(wh: DuckDBWarehouse, model: dict, op: str, table: str, arg) -> None:
    ref = TableRef("s", table)
    if apply_shared_write(wh, model, op, ref, arg):
        return
    cols = model[table]
    if op == "failed_append":
        # a new table or column (described again inside the unit by the second frame), then a frame
        # DuckDB cannot read: the whole unit rolls back
        other = TableRef("s", "t2" if table == "t1" else "t1")
        unit = [(ref, pd.DataFrame({arg: [1], "z": [1]})), (ref, pd.DataFrame({"z": [2]}))]
        with pytest.raises(duckdb.Error):
            wh.append_frames([*unit, (other, pd.DataFrame({"z": [1j]}))])
    elif op == "upsert" and cols is not None:
        first = cols[0]
        wh.apply_changes(
            ref, [f'DELETE FROM {ref.sql} WHERE "{first}" = 1', f'INSERT INTO {ref.sql} ("{first}") VALUES (2)']
        )


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=12))
def test_what_a_run_knows_of_its_tables_is_what_the_catalog_says_after_every_write(tmp_path, ops):
    engine = DuckDBWarehouse(path=str(tmp_path / f"m_{uuid.uuid4().hex}.duckdb"))
    engine.setup_for_execution(None)
    refs = [TableRef("s", t) for t in TABLES]
    model: dict = {t: None for t in TABLES}
    try:
        for op, table, arg in ops:
            with engine.session():
                engine.describe_tables(refs)  # known before the write: must not survive it wrongly
                _apply(engine, model, op, table, arg)
                known = engine.describe_tables(refs)
                asked = engine._query(meta.describe_tables_sql(2), ["s", "t1", "s", "t2"])
            truth = {t: list(asked[asked["table_name"] == t]["column_name"]) or None for t in TABLES}
            got = {ref.name: None if cols is None else [c for c, _ in cols] for ref, cols in known.items()}
            assert got == truth, (op, table, arg)
            # "z" comes only from a unit that rolled back, or the model's own columns
            assert {t: c for t, c in truth.items() if c is None or "z" not in c} == {t: model[t] for t in TABLES}
    finally:
        engine.teardown_after_execution(None)


# ---------------------------------------------------------------------------- reading a statement


@pytest.mark.parametrize(
    ("sql", "changed"),
    [
        ("SELECT 1", []),
        ('INSERT INTO "s"."t" BY NAME SELECT 1', []),
        ("WITH a AS (SELECT 1) SELECT * FROM a", []),
        ('CREATE SCHEMA IF NOT EXISTS "s"', []),
        ('CREATE OR REPLACE TABLE "s"."t" AS\nSELECT 1', [("s", "t")]),
        ('CREATE TEMP TABLE "temp"."main"."x" AS SELECT 1', [("main", "x")]),
        ('BEGIN TRANSACTION;\nDROP TABLE IF EXISTS "s"."t"', [("s", "t")]),
        ('ALTER TABLE "s"."t__cdp_new_1" RENAME TO "t";\nCOMMIT', [("s", "t__cdp_new_1"), ("s", "t")]),
        ('ALTER TABLE "s"."t" ADD COLUMN "c" VARCHAR', [("s", "t")]),
        (
            'DROP TABLE IF EXISTS "temp"."main"."a"; DROP TABLE IF EXISTS "temp"."main"."b"',
            [("main", "a"), ("main", "b")],
        ),
        ("create table s.t as select 1", [("s", "t")]),
        ("CREATE TABLE t AS SELECT 1", None),  # the default schema: not known here
        ("ROLLBACK", None),  # may undo a CREATE
        ("ATTACH 'x.db'", None),
        ("SET threads = 1", None),
        ("CREATE TABLE \"s\".\"t\" AS SELECT ';' AS v", None),  # a ; in a literal: cannot be read
        # Spark's and Databricks' statements (the Databricks engine keeps descriptions per session)
        ("CREATE TABLE IF NOT EXISTS `s`.`t` (`a` STRING) USING parquet", [("s", "t")]),
        ("ALTER TABLE `s`.`t` ADD COLUMNS (`c` BIGINT)", [("s", "t")]),
        ("ALTER TABLE `s`.`t__cdp_new_1` RENAME TO `s`.`t`", [("s", "t__cdp_new_1"), ("s", "t")]),
        ("DROP TABLE IF EXISTS `s`.`t`", [("s", "t")]),
        ("CREATE OR REPLACE TEMPORARY VIEW `v` AS SELECT 1", None),  # no schema: not known here
        ("INSERT INTO `s`.`t` SELECT * FROM `s`.`u`", []),
        ("OPTIMIZE `s`.`t`", []),
        ("MERGE INTO `s`.`t` AS t USING `s`.`u` AS u ON t.a = u.a WHEN MATCHED THEN DELETE", []),
    ],
)
def test_the_tables_a_statement_changes_are_read_from_its_text_or_not_at_all(sql, changed):
    assert tables_changed(sql) == changed
