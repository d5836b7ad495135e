"""Every staging rule on every engine: one fixture staged on DuckDB, on the Databricks engine
driving a local Spark session (the connector's cursor path) and on the Treasure Data fake
(Trino SQL), giving equal tables, hashes included."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.config.models import DedupeOptions, DimensionJoin, StagingRule
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.treasure_data import TreasureDataWarehouse
from cdp_assets.sql.dialects import TableRef, quote
from cdp_assets.sql.staging import Dimension, TableExtras, staged_columns, staging_sql
from cdp_assets_tests.engines.test_spark_unification import normalized
from cdp_assets_tests.fakes.td_api import FakeTreasureData
from cdp_assets_tests.conftest import local_spark_session

KEY = "4321/" + "9f3c" * 10

# Every rule and option, each with values it parses, values it refuses and null tokens.
RULES = {
    "email": StagingRule(rule="email", columns=["email"], valid_flag=True),
    "phone": StagingRule(rule="phone", columns=["phone"], valid_flag=True),
    "phone_gb": StagingRule(rule="phone", columns=["phone"], default_region="GB"),
    "first_name": StagingRule(rule="name", columns=["first_name"]),
    "note": StagingRule(rule="text", columns=["note"], null_tokens=["unknown"]),
    "amount": StagingRule(rule="number", columns=["amount"], decimals=2),
    "amount_eu": StagingRule(rule="number", columns=["amount"], decimal_comma=True, decimals=2),
    "opt_in": StagingRule(rule="boolean", columns=["opt_in"]),
    "email_sha256": StagingRule(rule="hash", columns=["email"], normalize="email"),
    "phone_sha256": StagingRule(rule="hash", columns=["phone"], normalize="phone"),
    "note_sha256": StagingRule(rule="hash", columns=["note"]),
    "dob_surname": StagingRule(rule="text", columns=["dob", "surname"], combine="concat", separator="|"),
    "any_email": StagingRule(rule="email", columns=["alt_email", "email"]),
    "seen": StagingRule(
        rule="date",
        columns=["seen"],
        formats=["iso8601", "dd-mm-yyyy", "mm/dd/yyyy", "yyyy/mm/dd", "epoch_seconds", "epoch_millis"],
    ),
    # listed paths: nested, keys with a space and a $, an array (profiled paths are DuckDB-only)
    "attrs": StagingRule(
        rule="json",
        columns=["attrs"],
        paths={
            "plan": "plan",
            "city": "address.city",
            "price": ["$price"],
            "colour": ["favourite colour"],
            "tags": {"keys": ["tags"], "type": "array"},
            "vip": "vip",
        },
    ),
    # the table's null tokens (staging_tables.<t>.null_tokens), for a rule listing none
    "remark": StagingRule(rule="text", columns=["note"]).with_table_null_tokens(["x", "?"]),
}
DOCS = {
    "1": {
        "plan": "gold",
        "tags": ["a", "b c", 3],
        "address": {"city": "Oslo"},
        "$price": "9.5",
        "favourite colour": "teal",
        "vip": True,
    },
    "2": {"plan": "silver", "tags": [], "address": {"city": "Lyon"}},
    "4": {"plan": None, "tags": "not an array", "address": "flat"},
    "6": {"vip": False, "address": {"city": "Kyoto", "zip": 1}},
}
ATTRS = {**{k: json.dumps(v) for k, v in DOCS.items()}, "3": "not json", "7": "N/A"}
PRODUCT = {"1": " P1 ", "2": "p2", "3": "N/A", "4": "p9", "6": "P2"}
ROWS = [
    # id, email, alt_email, phone, first_name, note, amount, opt_in, dob, surname, seen
    (
        "1",
        " Foo.Bar@Example.COM ",
        None,
        "(212) 555-0100",
        "  mary   ann ",
        "Hello  World",
        "$1,234.56",
        "Yes",
        "1980-01-02",
        "Smith",
        "2024-03-05T10:11:12+02:00",
    ),
    (
        "2",
        "o'brien@example.co.uk",
        "x@y.io",
        "+44 (0) 20 7946 0958",
        "JOHN",
        "unknown",
        "€ 1.234,56",
        "n",
        "1990-12-31",
        None,
        "05-03-2024",
    ),
    ("3", "a..b@x.com", "N/A", "001 212 555 0100", "élodie", "N/A", "12 EUR", "maybe", None, "Doe", "03/05/2024 08:00"),
    ("4", "NULL", "b@x.test", "020 7946 0958", "", "Ünïcödé text", "-3.145", "ON", "2001-07-04", "Lee", "1709632272"),
    ("5", None, None, None, None, None, None, None, None, None, "N/A"),
    (
        "6",
        "a@-x.com",
        "ok@sub.example.org",
        "+81 3 1234 5678",
        "o'brien",
        "-",
        "abc",
        "0",
        "1975-05-05",
        "O'Neil",
        "1709632272123",
    ),
    ("7", "UPPER@EXAMPLE.ORG", "", "0049 30 12345678", "x", "x", "1 000", "TRUE", "2020-02-29", "Kim", "2024-02-30"),
    (
        "8",
        "é@x.com",
        None,
        "+1 212 555 0100",
        "Jean-Luc",
        "  ",
        "0,5",
        "off",
        "1999-09-09",
        "Ng",
        "1969-12-31T23:59:59Z",
    ),
]
COLUMNS = [
    "id",
    "email",
    "alt_email",
    "phone",
    "first_name",
    "note",
    "amount",
    "opt_in",
    "dob",
    "surname",
    "seen",
    "attrs",
    "product",
]
SRC = TableRef("cdp_src", "staging_fixture")
STG = TableRef("cdp_src", "staging_fixture_stg")
# A dimension: products as a source object and staged (a cleaned price), joined on cleaned keys.
PRODUCTS = [("P1", "Lamp", "10"), ("p1", "Lamp (old)", "9"), ("p2", "Desk", "€ 120,50"), ("N/A", "Nothing", "0")]
PROD_SRC = TableRef("cdp_src", "staging_fixture_products")
PROD_STG = TableRef("cdp_src", "staging_fixture_products_stg")
PRODUCT_RULES = {"price": StagingRule(rule="number", columns=["price"], decimal_comma=True)}
JOINS = (
    (DimensionJoin(table="shop_products", on={"product": "sku"}, columns=["title", "cleaned_price"]), PROD_STG),
    (DimensionJoin(table="shop_products", **{"from": "source"}, on={"product": "sku"}, columns=["price"]), PROD_SRC),
)
LOADED_AT = pd.Timestamp("2024-06-01 12:34:56")


DEDUPED = TableRef("cdp_src", "staging_fixture_dedupe_stg")
# One row per cleaned opt-in value (TRUE, FALSE, NULL), the newest by `seen`, ties by every column.
DEDUPE = DedupeOptions(partition_by=["cleaned_opt_in"], order_by=["seen_unixtime"])


def stage(wh) -> pd.DataFrame:
    rows = [(*r, ATTRS.get(r[0]), PRODUCT.get(r[0])) for r in ROWS]
    df = pd.DataFrame(rows, columns=COLUMNS).astype("string")
    df["_cdp_loaded_at"] = pd.Series([LOADED_AT] * len(df), dtype="datetime64[us]")
    wh.write_dataframe(SRC, df)
    wh.write_dataframe(PROD_SRC, pd.DataFrame(PRODUCTS, columns=["sku", "title", "price"]).astype("string"))
    wh.build_table(PROD_STG, staging_sql(PROD_SRC, ["sku", "title", "price"], PRODUCT_RULES))
    columns = [*COLUMNS, "_cdp_loaded_at"]
    dims = tuple(Dimension(j, ref, tuple(wh.columns(ref)), f"join[{i}]") for i, (j, ref) in enumerate(JOINS))
    extras = TableExtras(dimensions=dims, source_system="shop")
    wh.build_table(STG, staging_sql(SRC, columns, RULES, extras=extras))
    wh.build_table(DEDUPED, staging_sql(SRC, columns, RULES, DEDUPE, extras=extras))
    staged = wh.fetch(f"SELECT * FROM {STG.sql}").drop(columns=["_cdp_loaded_at"])
    deduped = wh.fetch(f"SELECT * FROM {DEDUPED.sql}").drop(columns=["_cdp_loaded_at"])
    types = output_types(wh, STG)
    assert output_types(wh, DEDUPED) == types
    out = pd.concat([staged.assign(table="staged"), deduped.assign(table="deduped")], ignore_index=True)
    out.attrs["types"] = types
    return out


# Engines spell a type differently (DuckDB VARCHAR[], Spark array<string>, Trino array(varchar),
# timestamp(3)); the family is what must agree. Every one is a timestamp without time zone:
# DuckDB's TIMESTAMP, Spark's TIMESTAMP_NTZ (sqlglot renders DuckDB's TIMESTAMP so; Spark's own
# TIMESTAMP is in the session's zone), Trino's timestamp(3).
_TYPE_FAMILIES = {
    "varchar": "text",
    "string": "text",
    "double": "double",
    "boolean": "boolean",
    "bigint": "bigint",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp_ntz": "timestamp",
}


def type_family(engine_type: str) -> str:
    t = (
        engine_type.strip().lower().split("(")[0]
        if not engine_type.lower().startswith("array")
        else engine_type.lower()
    )
    if t.endswith("[]") or t.startswith("array"):
        inner = t[:-2] if t.endswith("[]") else t[6:-1]
        return f"array<{type_family(inner)}>"
    return _TYPE_FAMILIES.get(t, t)


def output_types(wh, ref: TableRef) -> dict[str, str]:
    """The engine's type of every column staging adds, read with typeof() on the engine."""
    added = [c.output for c in staged_columns(RULES)] + ["source_system", "load_timestamp"]
    added += [o for j, _ in JOINS for o in j.outputs()]
    row = wh.fetch(
        f"SELECT {', '.join(f'typeof({quote(c)}) AS {quote(c)}' for c in added)} FROM {ref.sql} LIMIT 1"
    ).iloc[0]
    return {c: type_family(str(row[c])) for c in added}


@pytest.fixture(scope="module")
def duckdb_table() -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(path=str(Path(d) / "wh.duckdb"))
        with wh.session():
            return stage(wh)


def _same(expected: pd.DataFrame, got: pd.DataFrame, times_as_text: bool = False) -> None:
    """The declared types on every engine, as it stores them: Treasure Data has no timestamp or
    date column type, so a table a query writes keeps those as text."""
    types = expected.attrs["types"]
    if times_as_text:
        stored = {c: t for c, t in types.items() if t in ("timestamp", "date")}
        types = {c: "text" if c in stored else t for c, t in types.items()}
        got = got.copy()
        for c in stored:  # read back as the timestamps and dates they are
            got[c] = pd.Series([None if v is None else pd.Timestamp(v) for v in got[c].tolist()], dtype=object)
    assert got.attrs["types"] == types
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        normalized(got, ["table", "id"]), normalized(expected, ["table", "id"]), check_dtype=False
    )


def test_the_fixture_exercises_every_rule_and_option(duckdb_table):
    from cdp_assets.config.models import STAGING_RULES

    assert {r.rule for r in RULES.values()} == set(STAGING_RULES)
    assert sorted(duckdb_table.loc[duckdb_table["table"] == "deduped", "id"]) == ["3", "4", "6"]
    t = duckdb_table[duckdb_table["table"] == "staged"].set_index("id")
    # Spot checks that the fixture exercises what it claims (the rules' own tests are in
    # cdp_assets_tests/phases/test_staging.py).
    assert t.loc["1", "standardized_phone"] == "12125550100" and t.loc["2", "standardized_phone"] == "442079460958"
    assert pd.isna(t.loc["3", "standardized_phone"]) and not t.loc["3", "standardized_phone_valid"]
    assert t.loc["1", "cleaned_amount"] == 1234.56 and t.loc["2", "cleaned_amount_eu"] == 1234.56
    assert t.loc["1", "cleaned_dob_surname"] == "1980-01-02|smith" and pd.isna(t.loc["2", "cleaned_dob_surname"])
    assert t.loc["1", "hashed_email_sha256"] == hashlib.sha256(b"foo.bar@example.com").hexdigest()
    assert t.loc["1", "seen_unixtime"] == 1709626272 and pd.isna(t.loc["7", "seen_std"])
    assert t.loc["4", "hashed_note_sha256"] == hashlib.sha256("ünïcödé text".encode()).hexdigest()
    assert (
        t.loc["1", "attrs_colour"] == "teal"
        and t.loc["1", "attrs_price"] == "9.5"
        and list(t.loc["1", "attrs_tags"]) == ["a", "b c", "3"]
    )
    assert (
        pd.isna(t.loc["3", "attrs_plan"]) and pd.isna(t.loc["4", "attrs_tags"]) and t.loc["6", "attrs_vip"] == "false"
    )
    assert pd.isna(t.loc["7", "cleaned_remark"]) and t.loc["6", "cleaned_remark"] == "-"  # the table's tokens: x, ?
    assert (
        t.loc["1", "title_dim"] == "Lamp"
        and t.loc["6", "cleaned_price_dim"] == 120.5
        and pd.isna(t.loc["3", "title_dim"])
    )
    assert (t["source_system"] == "shop").all() and (t["load_timestamp"] == LOADED_AT).all()
    declared = {c.output: c.sql_type for c in staged_columns(RULES)}
    assert {c: duckdb_table.attrs["types"][c] for c in declared} == {c: type_family(ty) for c, ty in declared.items()}


def test_trino_on_the_treasure_data_fake_stages_the_same_table(duckdb_table):
    fake = FakeTreasureData(KEY)
    url = fake.start()
    try:
        wh = TreasureDataWarehouse(
            apikey=KEY, endpoint=url, database="cdp_src", job_poll_seconds=0.01, retry_backoff_seconds=0.01
        )
        _same(duckdb_table, stage(wh), times_as_text=True)
    finally:
        fake.stop()


@pytest.mark.spark
def test_local_spark_through_the_databricks_engine_stages_the_same_table(duckdb_table):
    with local_spark_session() as wh:
        _same(duckdb_table, stage(wh))
