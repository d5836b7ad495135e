"""The Databricks engine through the connector's cursor interface, on a local Spark session:
job ids, the OPTIMIZE capability, retries, error mapping, secrets and missing variables, and the
warehouse's limits (256 parameters, 16 MiB of query text) that the shim enforces and the
engine's DataFrame loads keep to."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from dagster import asset, materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.config import load_config
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.base import TransientWarehouseError, WarehouseAuthError, WarehouseError
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.engines.spark_dbapi import WAREHOUSE_LIMITS
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import shared_spark_session, write_project
from cdp_assets_tests.engines.catalog_model import TABLES, apply_shared_write, shared_write

TOKEN = "dapi" + "5a1b" * 8


@pytest.fixture(scope="module")
def spark_dir():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        yield str(Path(d) / "warehouse")


def local(spark_dir: str, **kw) -> DatabricksWarehouse:
    return DatabricksWarehouse(
        local_spark_dir=spark_dir,
        sql_dialect="spark",
        table_format="parquet",
        optimize_tables=False,
        use_catalog=False,
        catalog=None,
        **kw,
    )


class Recording(DatabricksWarehouse):
    """Records statements; fails the first ``fail`` with a connector error (a dropped connection)."""

    fail: int = 0
    fail_with: str = "request"

    def _run(self, sql, params=None):
        from databricks.sql import exc as dbx

        SEEN.append(sql)
        if self.fail and sum(1 for s in SEEN if s == sql) <= self.fail:
            err = (
                dbx.RequestError("Error during request to server: connection reset")
                if self.fail_with == "request"
                else dbx.RequestError("HTTP 403: Invalid access token")
            )
            raise self._error(err, sql)
        if sql.startswith("OPTIMIZE"):
            return [], []  # local tables are parquet: Delta OPTIMIZE is recorded, not run
        return super()._run(sql, params)


SEEN: list[str] = []


def test_dataframes_round_trip_through_bound_json_batches(spark_dir):
    wh = local(spark_dir)
    ref = TableRef("dbx_src", "frames")
    wh.run('DROP SCHEMA IF EXISTS "dbx_src" CASCADE')
    df = pd.DataFrame(
        {
            "s": pd.array(["a'; DROP TABLE x; --", None], dtype="string"),
            "n": [1, 2],
            "t": pd.to_datetime(["2024-06-01 10:00", "2024-06-02 11:00"]),
        }
    )
    wh.write_dataframe(ref, df)
    wh.append_frames([(ref, pd.DataFrame({"n": [3], "extra": pd.array(["x"], dtype="string")}))])
    got = wh.query("SELECT * FROM `dbx_src`.`frames` WHERE n >= ? ORDER BY n", [1])
    assert list(got.columns) == ["s", "n", "t", "extra"] and list(got["n"]) == [1, 2, 3]
    assert got["s"][0] == "a'; DROP TABLE x; --" and pd.isna(got["s"][1])
    assert str(got["t"][1]) == "2024-06-02 11:00:00" and got["extra"][2] == "x"
    assert wh.table_exists(ref) and not wh.table_exists(ref.sibling("nope")) and wh.list_tables("no_such_schema") == []


def test_query_ids_go_to_asset_metadata(spark_dir):
    wh = local(spark_dir)

    @asset
    def uses_warehouse(warehouse: DatabricksWarehouse):
        from cdp_assets.assets.metadata import engine_jobs_metadata

        warehouse.query("SELECT 1 AS x")
        from dagster import MaterializeResult

        return MaterializeResult(metadata=engine_jobs_metadata(warehouse))

    result = materialize([uses_warehouse], resources={"warehouse": wh})
    meta = result.asset_materializations_for_node("uses_warehouse")[0].metadata
    assert meta["engine_job_ids"].value and all(j.startswith("local-") for j in meta["engine_job_ids"].value)


def test_optimize_runs_only_with_the_capability(spark_dir):
    SEEN.clear()
    ref = TableRef("dbx_src", "opt")
    for capable in (False, True):
        wh = Recording(
            local_spark_dir=spark_dir,
            sql_dialect="spark",
            table_format="parquet",
            use_catalog=False,
            catalog=None,
            optimize_tables=capable,
        )
        wh.build_table(ref, "SELECT 1 AS x")
    optimizes = [s for s in SEEN if s.startswith("OPTIMIZE")]
    assert optimizes == ["OPTIMIZE `dbx_src`.`opt`"]  # once: the capable engine's build


def test_a_dropped_connection_is_retried_and_a_bad_token_fails_fast(spark_dir, caplog):
    SEEN.clear()
    wh = Recording(
        local_spark_dir=spark_dir,
        sql_dialect="spark",
        table_format="parquet",
        use_catalog=False,
        catalog=None,
        optimize_tables=False,
        fail=2,
        retry_backoff_seconds=0.01,
    )
    with caplog.at_level(logging.WARNING):
        assert int(wh.query("SELECT 7 AS x").iloc[0, 0]) == 7
    # the connection check and the query each fail twice, then succeed on the third attempt
    assert SEEN.count("SELECT 1") == 3 and SEEN.count("SELECT 7 AS x") == 3
    assert caplog.text.count("transient warehouse error") == 4
    SEEN.clear()
    bad = Recording(
        local_spark_dir=spark_dir, sql_dialect="spark", use_catalog=False, catalog=None, fail=5, fail_with="auth"
    )
    with pytest.raises(WarehouseAuthError) as err:
        bad.query("SELECT 8 AS x")
    assert "$DATABRICKS_TOKEN" in str(err.value) and SEEN.count("SELECT 1") == 1  # the connection check, once


def test_a_sql_error_carries_the_statement(spark_dir):
    with pytest.raises(WarehouseError) as err:
        local(spark_dir).execute("SELECT * FROM `dbx_src`.`missing_table`")
    assert not isinstance(err.value, TransientWarehouseError)
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(err.value) and "-- statement that failed:" in str(err.value)


def test_a_databricks_config_needs_no_credentials_to_load_and_names_the_missing_variable_at_run(
    tmp_path, monkeypatch, capsys
):
    from cdp_assets.cli import main

    for var in ("DATABRICKS_HOST", "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    config = write_project(tmp_path, records=30, mutate=lambda c: c.update(engine={"kind": "databricks"}))
    loaded = load_config(config)
    defs = build_definitions(loaded)
    assert main(["render-sql", "--config", str(config), "--dialect", "databricks", "--out", str(tmp_path / "sql")]) == 0
    assert defs.resolve_job_def(PIPELINE_JOB)  # the definitions load without credentials
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "DATABRICKS_HOST" in err and "DATABRICKS_HTTP_PATH" in err and "DATABRICKS_TOKEN" in err, err
    assert "Traceback" not in err and "Stack Trace" not in err


def test_the_token_is_masked_in_the_connection_line_and_never_captured_in_definitions(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    loaded = load_config(write_project(tmp_path, records=10, mutate=lambda c: c.update(engine={"kind": "databricks"})))
    wh = build_warehouse(loaded)
    # the definitions hold the variable's name, not its value: resolved only when a run starts
    assert TOKEN not in repr(wh.__dict__) and "DATABRICKS_TOKEN" in repr(wh.__dict__)
    real = DatabricksWarehouse(
        server_hostname="adb-1.azuredatabricks.net", http_path="/sql/1.0/warehouses/abc", access_token=TOKEN
    )
    info = real.connection_info()
    assert info["secret"] == "****" + TOKEN[-4:] and TOKEN not in str(info) and TOKEN not in real.describe()


# ---------------------------------------------------------------- the warehouse's limits


class Counting(DatabricksWarehouse):
    """Records every statement the engine sends, with how many parameters it binds."""

    def _run(self, sql, params=None):
        SENT.append((sql, len(params or [])))
        return super()._run(sql, params)


SENT: list[tuple[str, int]] = []


class BoundValuesLoad(DatabricksWarehouse):
    """The load this engine had before: ``INSERT ... VALUES`` with one parameter per cell, 500
    rows per statement. Local Spark alone accepts it; a Databricks SQL warehouse does not."""

    def _insert(self, ref, df):
        from cdp_assets.engines.databricks import _param

        names = ", ".join(f"`{c}`" for c in df.columns)
        marks = "(" + ", ".join("?" for _ in df.columns) + ")"
        rows = [[_param(v) for v in row] for row in df.astype(object).itertuples(index=False, name=None)]
        for start in range(0, len(rows), 500):
            batch = rows[start : start + 500]
            sql = f"INSERT INTO {self.dialect.table_name(ref)} ({names}) VALUES " + ", ".join(marks for _ in batch)
            self._run(sql, [v for row in batch for v in row])


def _local_kw() -> dict:
    return dict(sql_dialect="spark", table_format="parquet", optimize_tables=False, use_catalog=False, catalog=None)


def test_the_shim_refuses_what_a_databricks_warehouse_refuses_once_and_not_retried(spark_dir):
    assert WAREHOUSE_LIMITS.max_parameters == 256 and WAREHOUSE_LIMITS.max_statement_bytes == 16 * 1024 * 1024
    SEEN.clear()
    wh = Recording(local_spark_dir=spark_dir, retry_backoff_seconds=0.01, **_local_kw())
    marks = lambda n: "SELECT " + ", ".join(f"? AS p{i}" for i in range(n))  # noqa: E731
    assert len(wh.query(marks(256), list(range(256))).columns) == 256  # at the limit: fine
    with pytest.raises(WarehouseError) as err:
        wh.query(marks(257), list(range(257)))
    assert not isinstance(err.value, TransientWarehouseError)  # HTTP 400: the same request fails again
    assert "Parameterized query has too many parameters: 257 parameters were given but the limit is 256" in str(
        err.value
    )
    assert SEEN.count(marks(257)) == 1
    with pytest.raises(WarehouseError, match="maximum query text size"):
        wh.query("SELECT '" + "x" * WAREHOUSE_LIMITS.max_statement_bytes + "' AS s")
    with pytest.raises(WarehouseError, match="INVALID_QUERY_MIXED_QUERY_PARAMETERS"):
        wh.query("SELECT ? AS a, :named AS b", [1])
    # local Spark 4 would store these; a Databricks SQL warehouse refuses them
    for ddl in (
        "CREATE VIEW `dbx_src`.`v` AS SELECT ? AS x",
        "CREATE TABLE `dbx_src`.`d` (a BIGINT DEFAULT ?) USING parquet",
    ):
        with pytest.raises(WarehouseError, match="PARAMETER_MARKER_IN_UNEXPECTED_STATEMENT"):
            wh.query(ddl, [1])
    assert not wh.table_exists(TableRef("dbx_src", "v")) and not wh.table_exists(TableRef("dbx_src", "d"))
    assert int(wh.query("SELECT ? AS x", [5]).iloc[0, 0]) == 5  # a query binds as before


def test_a_load_of_one_parameter_per_cell_fails_on_the_shim_and_leaves_the_table(spark_dir):
    ref = TableRef("dbx_limits", "old_load")
    good = local(spark_dir)
    good.run('DROP SCHEMA IF EXISTS "dbx_limits" CASCADE')
    good.replace_with_dataframe(ref, pd.DataFrame({"a": [1], "b": ["kept"], "c": [0.5]}))
    frame = pd.DataFrame(
        {"a": range(100), "b": [f"v{i}" for i in range(100)], "c": [i / 3 for i in range(100)]}
    )  # 300 cells
    with pytest.raises(WarehouseError, match="300 parameters were given but the limit is 256"):
        BoundValuesLoad(local_spark_dir=spark_dir, **_local_kw()).replace_with_dataframe(ref, frame)
    assert good.query("SELECT b FROM `dbx_limits`.`old_load`")["b"].tolist() == ["kept"]
    assert good.list_tables("dbx_limits") == ["old_load"]  # the half-built table is gone


def _cells(df: pd.DataFrame) -> list[tuple]:
    def norm(v):
        if v is None or (not isinstance(v, (list, str)) and pd.isna(v)):
            return None
        if isinstance(v, (pd.Timestamp, dt.datetime)):
            return pd.Timestamp(v).isoformat()
        return v.item() if hasattr(v, "item") else v

    return [tuple(norm(v) for v in row) for row in df.astype(object).itertuples(index=False, name=None)]


def _wide_frame(rows: int, per_kind: int) -> pd.DataFrame:
    cols: dict = {"row": pd.Series(range(rows), dtype="int64")}
    for k in range(per_kind):
        cols[f"text_{k}"] = pd.array(
            [None if (i + k) % 7 == 0 else f"v{i}-{k} 'q' é" for i in range(rows)], dtype="string"
        )
        cols[f"int_{k}"] = pd.array(
            [None if (i + k) % 5 == 0 else i * 1_000_003 - k for i in range(rows)], dtype="Int64"
        )
        cols[f"float_{k}"] = pd.Series(
            [float("nan") if (i + k) % 6 == 0 else i / 7 + k for i in range(rows)], dtype="float64"
        )
        cols[f"bool_{k}"] = pd.Series([(i + k) % 2 == 0 for i in range(rows)], dtype="bool")
        cols[f"when_{k}"] = pd.Series(
            [
                pd.NaT
                if (i + k) % 9 == 0
                else pd.Timestamp("2024-03-31 01:30:00") + pd.Timedelta(minutes=i, microseconds=k)
                for i in range(rows)
            ],
            dtype="datetime64[us]",
        )
    return pd.DataFrame(cols)


@pytest.mark.parametrize("batch_bytes", [4 * 1024 * 1024, 64 * 1024])
def test_the_engine_loads_a_wide_frame_within_the_parameter_limit(spark_dir, batch_bytes):
    """1,000 rows of 41 columns (all five kinds, with NULLs): bound one cell per parameter that is
    41,000 parameters. The engine sends each batch as one parameter; the rows come back equal."""
    ref = TableRef("dbx_limits", f"wide_{batch_bytes}")
    frame = _wide_frame(1000, 8)
    assert len(frame.columns) == 41
    SENT.clear()
    wh = Counting(local_spark_dir=spark_dir, insert_batch_bytes=batch_bytes, **_local_kw())
    wh.replace_with_dataframe(ref, frame)
    inserts = [n for sql, n in SENT if sql.startswith("INSERT")]
    assert SENT and max(n for _, n in SENT) <= WAREHOUSE_LIMITS.max_parameters
    assert inserts and set(inserts) == {1}
    # the budget cuts the frame: one statement at 4 MiB, several at 64 KiB
    assert len(inserts) == 1 if batch_bytes > 1024 * 1024 else len(inserts) > 3
    back = wh.query(f"SELECT * FROM `dbx_limits`.`wide_{batch_bytes}` ORDER BY `row`")
    assert list(back.columns) == list(frame.columns)
    assert _cells(back) == _cells(frame)


# Spark's notation in SHOW TABLE EXTENDED's Schema tree for each SQL type (Databricks documents
# the same: "renders the table column types using Apache Spark notation").
SPARK_NOTATION = {
    "INT": "integer",
    "BIGINT": "long",
    "STRING": "string",
    "DOUBLE": "double",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
    "DECIMAL(10,2)": "decimal(10,2)",
    "ARRAY<STRING>": "array",
    "STRUCT<a: INT, b: ARRAY<STRING>>": "struct",
    "MAP<STRING, INT>": "map",
}


def test_table_information_is_read_for_its_top_level_columns_only():
    from cdp_assets.sql.engine_meta import columns_of_table_information, show_tables_extended_sql

    info = (
        "Catalog: spark_catalog\nDatabase: s\nTable: t\nType: MANAGED\nProvider: parquet\nSchema: root\n"
        " |-- x: integer (nullable = true)\n |-- st: struct (nullable = true)\n"
        " |    |-- p: integer (nullable = true)\n |    |-- q: array (nullable = true)\n"
        " |    |    |-- element: string (containsNull = true)\n |-- m: map (nullable = false)\n"
        " |    |-- key: string\n |    |-- value: integer (valueContainsNull = true)\n"
        " |-- d: decimal(10,2) (nullable = true)\n\n"
    )
    top_level = [("x", "integer"), ("st", "struct"), ("m", "map"), ("d", "decimal(10,2)")]
    assert columns_of_table_information(info) == top_level
    assert columns_of_table_information("Catalog: c\nType: VIEW\n") is None
    assert columns_of_table_information(None) is None
    assert show_tables_extended_sql("`s`", ["a", "b_2"]) == "SHOW TABLE EXTENDED IN `s` LIKE 'a|b_2'"
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        show_tables_extended_sql("`s`", ["a' OR '1"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tables=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.lists(st.sampled_from(sorted(SPARK_NOTATION)), min_size=1, max_size=5),
        min_size=1,
        max_size=4,
    ),
    missing=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), max_size=3),
    upper=st.booleans(),
)
def test_tables_are_described_in_one_statement_per_schema_as_the_tables_themselves_read(
    spark_dir, tables, missing, upper
):
    """describe_tables on Databricks: one SHOW TABLE EXTENDED per schema for any number of tables;
    each existing table's columns in order with their Spark types, as `SELECT * ... LIMIT 0`
    names them; None for a table that does not exist, for a temporary view of a missing table's
    name, and for every table of a schema that does not exist."""
    SEEN.clear()
    wh = Recording(local_spark_dir=spark_dir, **_local_kw())
    wh.run('DROP SCHEMA IF EXISTS "dbx_describe" CASCADE')
    wh.run('CREATE SCHEMA "dbx_describe"')
    for name, types in tables.items():
        cols = ", ".join(f"c{i}_{name} {t}" for i, t in enumerate(types))
        wh.execute(f"CREATE TABLE `dbx_describe`.`{name}` ({cols}) USING parquet")
    missing = [m for m in missing if m not in tables]
    for name in missing[:1]:
        wh.execute(f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS SELECT 1 AS x")
    refs = [TableRef("dbx_describe", n.upper() if upper else n) for n in [*tables, *missing]]
    refs += [TableRef("dbx_no_such_schema", "t")]
    SEEN.clear()
    described = wh.describe_tables(refs)
    assert len(SEEN) == 2 and all(s.startswith("SHOW TABLE EXTENDED") for s in SEEN)  # one per schema
    for ref in refs:
        types = tables.get(ref.name.lower()) if ref.schema == "dbx_describe" else None
        if types is None:
            assert described[ref] is None, ref
            continue
        names = list(wh.query(f"SELECT * FROM `dbx_describe`.`{ref.name}` LIMIT 0").columns)
        assert [c for c, _ in described[ref]] == names
        assert [t for _, t in described[ref]] == [SPARK_NOTATION[t] for t in types]
    for name in missing[:1]:
        wh.execute(f"DROP VIEW IF EXISTS `{name}`")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(shared_write, min_size=1, max_size=6))
def test_what_a_session_knows_of_its_tables_is_what_spark_says_after_every_write(spark_dir, writes):
    """The Databricks engine keeps the descriptions a session read until a write of its own may
    change them (``tables_changed`` reading Spark's backquoted names): after every write, within one
    session, its descriptions equal Spark's own catalog, and the model of the writes."""
    from cdp_assets.engines.spark import get_spark_session

    spark = get_spark_session(spark_dir)
    wh = local(spark_dir)
    wh.run('DROP SCHEMA IF EXISTS "dbx_session" CASCADE')
    wh.run('CREATE SCHEMA "dbx_session"')
    refs = [TableRef("dbx_session", t) for t in TABLES]
    model: dict = {t: None for t in TABLES}
    with wh.session():
        for op, table, arg in writes:
            wh.describe_tables(refs)  # known before the write: must not survive it wrongly
            apply_shared_write(wh, model, op, TableRef("dbx_session", table), arg)
            known = {
                ref.name: None if cols is None else [c for c, _ in cols]
                for ref, cols in wh.describe_tables(refs).items()
            }
            truth = {
                t: spark.table(f"dbx_session.{t}").columns if spark.catalog.tableExists(f"dbx_session.{t}") else None
                for t in TABLES
            }
            assert known == truth == model, (op, table, arg)
            assert wh.table_exists(refs[0]) == (model["t1"] is not None)
    assert not wh.known_descriptions(refs)  # forgotten when the session ends


def test_a_schema_a_session_has_listed_is_not_created_again_and_a_missing_one_is(spark_dir):
    """A step describes its tables before it builds them: a schema whose listing answered exists,
    so the session's builds there send no CREATE SCHEMA; a schema the listing did not find is
    created by the first build in it; after the session, a build asks again."""
    wh = Recording(local_spark_dir=spark_dir, **_local_kw())
    wh.run('DROP SCHEMA IF EXISTS "dbx_listed" CASCADE')
    wh.run('DROP SCHEMA IF EXISTS "dbx_unlisted" CASCADE')
    wh.run('CREATE SCHEMA "dbx_listed"')
    listed, unlisted = TableRef("dbx_listed", "t"), TableRef("dbx_unlisted", "t")
    SEEN.clear()
    with wh.session():
        assert wh.describe_tables([listed, unlisted]) == {listed: None, unlisted: None}
        wh.build_table(listed, "SELECT 1 AS x")
        wh.build_table(unlisted, "SELECT 2 AS x")
    created = [s for s in SEEN if s.startswith("CREATE SCHEMA")]
    assert created == ["CREATE SCHEMA IF NOT EXISTS `dbx_unlisted`"]
    assert list(wh.query("SELECT x FROM `dbx_listed`.`t`")["x"]) == [1]
    assert list(wh.query("SELECT x FROM `dbx_unlisted`.`t`")["x"]) == [2]
    SEEN.clear()
    wh.build_table(listed, "SELECT 3 AS x")  # outside a session nothing is kept
    assert [s for s in SEEN if s.startswith("CREATE SCHEMA")] == ["CREATE SCHEMA IF NOT EXISTS `dbx_listed`"]


class DeltaRecording(Recording):
    """The Databricks engine on its default table format (Delta) over local Spark, whose parquet
    tables refuse ``CREATE OR REPLACE TABLE``: that Delta-only statement is recorded, not run (as
    OPTIMIZE is above), and the row count of a table it would have replaced is answered as 1."""

    def _run(self, sql, params=None):
        if sql.startswith("CREATE OR REPLACE TABLE"):
            SEEN.append(sql)
            return [], []
        if sql.startswith("SELECT COUNT(*)") and "__cdp_new_" not in sql and "dbx_delta" in sql:
            SEEN.append(sql)
            return [(1,)], [("n", "bigint", None, None, None, None, None)]
        return super()._run(sql, params)


def test_a_delta_table_is_replaced_in_one_statement_where_parquet_is_built_and_swapped(spark_dir):
    """Publishing by capability: a Delta table (the workspace's default) is replaced by one
    ``CREATE OR REPLACE TABLE ... AS``, atomic on Delta, with no moment without the table; a
    parquet one (local Spark), which refuses that statement as a warehouse does for a non-Delta
    table, is built under a temporary name and swapped in (DROP + RENAME)."""
    import sqlglot

    from cdp_assets.sql.engine_meta import create_schema_sql

    parquet = Recording(local_spark_dir=spark_dir, **_local_kw())
    assert not parquet.replaces_tables_atomically
    with pytest.raises(WarehouseError, match="REPLACE TABLE AS SELECT"):
        parquet.execute(create_schema_sql("`dbx_delta`"))
        parquet.execute("CREATE TABLE `dbx_delta`.`p` AS SELECT 1 AS x")
        parquet.execute("CREATE OR REPLACE TABLE `dbx_delta`.`p` AS SELECT 2 AS x")
    SEEN.clear()
    assert parquet.build_table(TableRef("dbx_delta", "p"), "SELECT 3 AS x") == 1
    kinds = [" ".join(s.split()[:2]) for s in SEEN]
    assert "DROP TABLE" in kinds and "ALTER TABLE" in kinds and not any("OR REPLACE" in s for s in SEEN)
    assert list(parquet.query("SELECT x FROM `dbx_delta`.`p`")["x"]) == [3]

    delta = DeltaRecording(
        local_spark_dir=spark_dir, sql_dialect="databricks", optimize_tables=False, use_catalog=False, catalog=None
    )
    assert delta.table_format is None and delta.replaces_tables_atomically
    SEEN.clear()
    assert delta.build_table(TableRef("dbx_delta", "t"), "SELECT 1 AS x") == 1
    replaces = [s for s in SEEN if s.startswith("CREATE OR REPLACE TABLE")]
    assert replaces == ["CREATE OR REPLACE TABLE `dbx_delta`.`t` AS SELECT 1 AS x"]
    assert not [s for s in SEEN if s.startswith(("DROP TABLE", "ALTER TABLE", "CREATE TABLE"))]
    tree = sqlglot.parse_one(replaces[0], read="databricks")
    assert isinstance(tree, sqlglot.exp.Create) and tree.args.get("replace") and tree.kind == "TABLE"

    SEEN.clear()
    frame = pd.DataFrame({"x": [1, 2]})
    assert delta.replace_with_dataframe(TableRef("dbx_delta", "f"), frame) == 2
    sent = [s for s in SEEN if not s.startswith(("SHOW", "CREATE SCHEMA"))]
    staged = sent[0].split()[2]
    assert staged.startswith("`dbx_delta`.`f__cdp_new_") and sent[0].startswith(f"CREATE TABLE {staged} (")
    assert sent[1].startswith(f"INSERT INTO {staged}")
    assert sent[2:] == [
        f"CREATE OR REPLACE TABLE `dbx_delta`.`f` AS SELECT * FROM {staged}",
        f"DROP TABLE IF EXISTS {staged}",
    ]
