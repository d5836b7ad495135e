"""The unification SQL run for real on a local Spark session (the Databricks dialect), against
DuckDB: the same graphs give the same lookups, row for row, canonical ids included.

One Spark session for the module (start-up is 6-12 s); each test resets the Spark schemas, and
DuckDB gets a fresh file per test, as in ``unify/test_loop.py`` whose helpers are reused here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import DIALECTS, TableRef
from cdp_assets.sql.master import master_rules_frame, master_table_query
from cdp_assets_tests.conftest import local_spark_warehouse, shared_spark_session
from cdp_assets_tests.unify.test_loop import (
    INVALID,
    KEYS,
    chain_rows,
    clique_rows,
    expected_id,
    lookup_partition,
    make_unify,
    one_table_plan,
    oracle_partition,
    star_rows,
    unify_rows,
)

pytestmark = pytest.mark.spark

SCHEMAS = ("src", "cdp_unification_t")
PLAN_SCHEMA = "cdp_unification_t"


@pytest.fixture(scope="module")
def spark_wh():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        # The Databricks engine on a local Spark session, through the connector's cursor interface.
        wh = local_spark_warehouse(d)
        wh.verify_connection()  # start Spark once, here
        with wh.session():
            yield wh


@pytest.fixture
def spark(spark_wh):
    """The module's Spark warehouse with empty schemas (persistent ids read the previous lookup)."""
    for schema in SCHEMAS:
        spark_wh.run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return spark_wh


@pytest.fixture
def duck():
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(path=str(Path(d) / "loop.duckdb"))
        with wh.session():
            yield wh


# ---------------------------------------------------------------------------- helpers


def _plain(v):
    """One cell as a plain Python value: arrays as lists, every kind of missing as None."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(v).tz_localize(None) if pd.Timestamp(v).tzinfo else pd.Timestamp(v)
    return v


def normalized(df: pd.DataFrame, sort_by: list[str]) -> pd.DataFrame:
    """Engine-neutral values (ints, naive times, lists, None), rows in ``sort_by`` order."""
    out = pd.DataFrame(
        {c: [_plain(v) for v in df[c].tolist()] for c in df.columns}, columns=list(df.columns), dtype=object
    )
    key = out[sort_by].map(lambda v: (v is None, str(v))) if sort_by else None
    if key is not None:
        out = out.iloc[sorted(range(len(out)), key=lambda i: tuple(key.iloc[i]))]
    return out.reset_index(drop=True)


def assert_same_table(duck_df: pd.DataFrame, spark_df: pd.DataFrame, sort_by: list[str]) -> None:
    assert list(duck_df.columns) == list(spark_df.columns)
    assert len(duck_df) == len(spark_df)
    pd.testing.assert_frame_equal(normalized(duck_df, sort_by), normalized(spark_df, sort_by), check_dtype=False)


def loop_summary(result) -> dict:
    return {
        "converged": result.converged,
        "nodes": result.nodes,
        "edges": result.edges,
        "excluded_values": result.excluded_values,
        "dnm_conflicts": result.dnm_conflicts,
        "tables": result.tables,
        "iterations": [(i.iteration, i.rows_changed, i.edges_left, i.jumps, i.converged) for i in result.iterations],
    }


LOOKUP_ORDER = ["id_key_type", "id"]


def run_both(duck: WarehouseResource, spark: WarehouseResource, rows: list[dict], **kwargs):
    """The same rows unified on both engines: identical lookups and identical loop statistics."""
    duck_lookup, duck_result = unify_rows(duck, rows, **kwargs)
    spark_lookup, spark_result = unify_rows(spark, rows, **kwargs)
    assert_same_table(duck_lookup, spark_lookup, LOOKUP_ORDER)
    assert loop_summary(spark_result) == loop_summary(duck_result)
    return spark_lookup, spark_result


def fetch_both(duck: WarehouseResource, spark: WarehouseResource, suffix: str, sort_by: list[str]):
    ref = TableRef(PLAN_SCHEMA, f"unified_id_{suffix}")
    d, s = duck.fetch(f"SELECT * FROM {ref.sql}"), spark.fetch(f"SELECT * FROM {ref.sql}")
    assert_same_table(d, s, sort_by)
    return s


def _plan(persistent: bool = False) -> u.IdPlan:
    return one_table_plan(make_unify(persistent=persistent), persistent=persistent, time_column="ts")


# ---------------------------------------------------------------------------- the tests


def test_engine_basics(spark):
    assert spark.dialect is DIALECTS["spark"]
    assert "Spark" in spark.describe()
    ref = TableRef("src", "basics")
    df = pd.DataFrame(
        {"s": pd.Series(["a", None], dtype="string"), "n": [1, 2], "t": pd.to_datetime(["2024-01-01", None])}
    )
    spark.write_dataframe(ref, df)
    assert spark.table_exists(ref) and not spark.table_exists(ref.sibling("nope"))
    assert spark.columns(ref) == ["s", "n", "t"]
    assert "basics" in spark.list_tables("src")
    spark.append_dataframe(ref, pd.DataFrame({"n": [3], "extra": pd.Series(["x"], dtype="string")}))
    got = spark.query("SELECT * FROM `src`.`basics` WHERE n >= ? ORDER BY n", [2])
    assert list(got.columns) == ["s", "n", "t", "extra"]
    assert got["s"].tolist() == [None, None] and got["extra"].tolist() == [None, "x"]  # NULL, never 'nan'
    assert got["n"].tolist() == [2, 3] and got["t"].isna().all()
    described = spark.query("DESCRIBE TABLE `src`.`basics`")
    types = {r.col_name: r.data_type for r in described.itertuples() if r.col_name and not r.col_name.startswith("#")}
    assert types == {"s": "string", "n": "bigint", "t": "timestamp", "extra": "string"}
    with pytest.raises(Exception, match="statement that failed"):
        spark.execute("SELECT * FROM `src`.`missing_table`")


def test_hand_made_graphs_and_a_value_over_the_cap(duck, spark):
    """Invalid values, a star, a clique, short chains, lone values, a row with nothing valid,
    non-ASCII values, and one value shared by more rows than the cap (one Spark run for all:
    every statement costs Spark a job)."""
    rows = (
        [
            {"email": INVALID, "phone": "p1"},
            {"email": INVALID, "phone": "p2"},
            {"phone": "0000", "cookie": "c1"},
            {"phone": "0000", "cookie": "c2"},
        ]
        + [{"email": "e1", "phone": "p10"}, {"email": "e1", "cookie": "k1"}, {"email": "e2", "cookie": "k1"}]
        + star_rows(8, offset=1)
        + clique_rows(3, offset=2)
        + chain_rows(9, seed=4)
        + [{"cookie": "lonely"}, {"email": INVALID, "phone": "0000"}, {"email": "ß@ünï.example", "phone": "p-ü"}]
        + [{"email": "shared@x.com", "cookie": f"sc{i}"} for i in range(12)]
    )
    cap = 10
    lookup, result = run_both(duck, spark, rows, caps=(cap, cap, cap))
    assert result.converged and result.excluded_values == 1
    excluded = fetch_both(duck, spark, "excluded_values", ["key_type", "value"])
    assert list(excluded["value"]) == ["shared@x.com"] and int(excluded["row_count"].iloc[0]) == 12
    expected, comps = oracle_partition(rows, cap)
    assert lookup_partition(lookup) == expected
    ids = {(KEYS[r.id_key_type - 1], r.id): r.unified_id for r in lookup.itertuples()}
    for comp in comps:
        assert {ids[n] for n in comp} == {expected_id(comp)}
    fetch_both(duck, spark, "graph", ["follower_key_type", "follower_id"])
    fetch_both(duck, spark, "key_values", ["table_id", "key_type", "value"])
    # The statistics tables (built by the unification assets) render and agree as well.
    plan = _plan()
    for wh in (duck, spark):
        wh.build_table(plan.ref("source_key_stats"), u.source_key_stats_sql(plan))
        wh.build_table(plan.ref("result_key_stats"), u.result_key_stats_sql(plan))
    fetch_both(duck, spark, "source_key_stats", ["from_table"])
    stats = fetch_both(duck, spark, "result_key_stats", ["from_table"])
    assert stats["histogram_email"].notna().all()


def test_shuffled_chain_of_300_records(duck, spark):
    lookup, result = run_both(duck, spark, chain_rows(300, seed=7))
    assert result.converged and result.rounds > 1
    assert lookup["unified_id"].nunique() == 1 and len(lookup) == 301


def test_do_not_merge_key(duck, spark):
    rows = [
        {"email": "e1", "cookie": "c1"},
        {"email": "e1", "cookie": "c2"},
        {"email": "e2", "cookie": "c2"},
        {"email": "e3", "phone": "p3"},
        {"phone": "p3", "cookie": "c3"},
        {"email": "e4", "phone": "p3"},
        {"email": "e5"},
        {"cookie": "c9"},
        {"email": "e6", "phone": "p6", "cookie": "c1"},
    ]
    lookup, result = run_both(duck, spark, rows, do_not_merge_key="cookie")
    assert result.dnm_conflicts == 1
    for group in lookup_partition(lookup):
        assert len({v for k, v in group if k == "cookie"}) <= 1


def test_persistent_ids(duck, spark):
    day1 = [
        {"email": "a1", "phone": "pa", "ts": "2024-01-01"},
        {"email": "b1", "phone": "pb", "ts": "2024-01-02"},
        {"email": "c1", "ts": "2024-01-03"},
    ]
    day2 = day1 + [
        {"email": "a2", "phone": "pa", "ts": "2023-06-01"},
        {"email": "b1", "cookie": "k9", "ts": "2024-02-01"},
        {"email": "c1", "cookie": "k9", "ts": "2024-02-01"},
        {"email": "d1", "ts": "2024-02-02"},
    ]
    first, _ = run_both(duck, spark, day1, persistent=True)
    second, _ = run_both(duck, spark, day2, persistent=True)  # reads the lookup of day 1
    before = {(r.id_key_type, r.id): r.unified_id for r in first.itertuples()}
    after = {(r.id_key_type, r.id): r.unified_id for r in second.itertuples()}
    assert after[(1, "a2")] == before[(1, "a1")]
    assert after[(1, "c1")] == before[(1, "b1")]


def test_incremental_run(duck, spark):
    """The incremental path (watermarks, previous graph, EXCEPT of the excluded values)."""
    old = [{"email": f"e{i}", "phone": f"p{i}", "ts": "2024-01-01"} for i in range(6)]
    new = [{"email": "e1", "cookie": "k1", "ts": "2024-02-01"}, {"email": "e2", "cookie": "k1", "ts": "2024-02-01"}]
    run_both(duck, spark, old, incremental=True, caps=(5, 5, 5))
    lookup, result = run_both(duck, spark, old + new, incremental=True, caps=(5, 5, 5))
    assert result.mode == "incremental", result.full_refresh_reason
    assert lookup_partition(lookup) == oracle_partition(old + new)[0]


def test_master_array_attribute_keeps_rank_order(duck, spark):
    """LIST(value ORDER BY rn) of master.py: ranked arrays, in rank order, on both engines."""
    unify = UnifyConfig.model_validate(
        {
            "name": "t",
            "keys": [{"name": "email"}],
            "tables": [{"database": "src", "table": "people", "key_columns": [{"column": "email", "key": "email"}]}],
            "canonical_ids": [{"name": "unified_id", "merge_by_keys": ["email"]}],
            "master_tables": [
                {
                    "name": "master",
                    "canonical_id": "unified_id",
                    "attributes": [
                        {
                            "name": "names",
                            "array_elements": 3,
                            "source_columns": [
                                {"table": "people", "column": "name", "order": "last", "order_by": "ts"}
                            ],
                        },
                        {
                            "name": "name",
                            "source_columns": [
                                {"table": "people", "column": "name", "order": "first", "order_by": "ts"}
                            ],
                        },
                    ],
                }
            ],
        }
    )
    people = pd.DataFrame(
        {
            "unified_id": ["x", "x", "x", "x", "y"],
            "email": ["a", "a", "a", "a", "b"],
            "name": ["zed", "amy", "kim", "bob", "solo"],
            "ts": pd.to_datetime(["2024-01-04", "2024-01-01", "2024-01-03", "2024-01-02", "2024-01-01"]),
        }
    ).astype({"unified_id": "string", "email": "string", "name": "string"})
    lookup = pd.DataFrame({"unified_id": ["x", "y"]}).astype("string")
    master = unify.master_tables[0]
    rules = master_rules_frame(master)  # no rules: an empty table with the rules' columns
    schema = "cdp_unification_t"
    refs = {"people": TableRef(schema, "enriched_people")}
    got = {}
    for name, wh in (("duck", duck), ("spark", spark)):
        wh.replace_with_dataframe(refs["people"], people)
        wh.replace_with_dataframe(TableRef(schema, "unified_id_lookup"), lookup)
        wh.replace_with_dataframe(TableRef(schema, "master_rules"), rules)
        sql = master_table_query(
            master, unify, TableRef(schema, "unified_id_lookup"), refs, TableRef(schema, "master_rules"), {}
        ).sql
        if wh is spark:  # the order must be in the SQL, not a lucky physical order of rows
            assert "ARRAY_SORT(COLLECT_LIST(STRUCT(rn AS" in spark.dialect.render(sql)
        wh.build_table(TableRef(schema, "master"), sql)
        df = wh.fetch(f'SELECT * FROM "{schema}"."master"')
        got[name] = normalized(df.assign(names=df["names"].map(list)), ["unified_id"])
    pd.testing.assert_frame_equal(got["duck"], got["spark"], check_dtype=False)
    assert got["spark"]["names"].tolist() == [["zed", "kim", "bob"], ["solo"]]  # newest first, three
    assert got["spark"]["name"].tolist() == ["amy", "solo"]
