"""Every staging rule on every engine: one fixture staged on DuckDB, on the Databricks engine
driving a local Spark session (the connector's cursor path) and on the Treasure Data fake
(Trino SQL), giving equal tables, hashes included."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.config.models import DedupeOptions, StagingRule
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.engines.spark import stop_spark_session
from cdp_assets.engines.treasure_data import TreasureDataWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import staging_sql
from cdp_assets_tests.engines.test_spark_unification import normalized
from cdp_assets_tests.fakes.td_api import FakeTreasureData

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
    "seen": StagingRule(rule="date", columns=["seen"], formats=["iso8601", "dd-mm-yyyy", "mm/dd/yyyy", "yyyy/mm/dd", "epoch_seconds", "epoch_millis"]),
}
ROWS = [
    # id, email, alt_email, phone, first_name, note, amount, opt_in, dob, surname, seen
    ("1", " Foo.Bar@Example.COM ", None, "(212) 555-0100", "  mary   ann ", "Hello  World", "$1,234.56", "Yes", "1980-01-02", "Smith", "2024-03-05T10:11:12+02:00"),
    ("2", "o'brien@example.co.uk", "x@y.io", "+44 (0) 20 7946 0958", "JOHN", "unknown", "€ 1.234,56", "n", "1990-12-31", None, "05-03-2024"),
    ("3", "a..b@x.com", "N/A", "001 212 555 0100", "élodie", "N/A", "12 EUR", "maybe", None, "Doe", "03/05/2024 08:00"),
    ("4", "NULL", "b@x.test", "020 7946 0958", "", "Ünïcödé text", "-3.145", "ON", "2001-07-04", "Lee", "1709632272"),
    ("5", None, None, None, None, None, None, None, None, None, "N/A"),
    ("6", "a@-x.com", "ok@sub.example.org", "+81 3 1234 5678", "o'brien", "-", "abc", "0", "1975-05-05", "O'Neil", "1709632272123"),
    ("7", "UPPER@EXAMPLE.ORG", "", "0049 30 12345678", "x", "x", "1 000", "TRUE", "2020-02-29", "Kim", "2024-02-30"),
    ("8", "é@x.com", None, "+1 212 555 0100", "Jean-Luc", "  ", "0,5", "off", "1999-09-09", "Ng", "1969-12-31T23:59:59Z"),
]
COLUMNS = ["id", "email", "alt_email", "phone", "first_name", "note", "amount", "opt_in", "dob", "surname", "seen"]
SRC = TableRef("cdp_src", "staging_fixture")
STG = TableRef("cdp_src", "staging_fixture_stg")


DEDUPED = TableRef("cdp_src", "staging_fixture_dedupe_stg")
# One row per cleaned opt-in value (TRUE, FALSE, NULL), the newest by `seen`, ties by every column.
DEDUPE = DedupeOptions(partition_by=["cleaned_opt_in"], order_by=["seen_unixtime"])


def stage(wh) -> pd.DataFrame:
    wh.write_dataframe(SRC, pd.DataFrame(ROWS, columns=COLUMNS).astype("string"))
    wh.build_table(STG, staging_sql(SRC, COLUMNS, RULES))
    wh.build_table(DEDUPED, staging_sql(SRC, COLUMNS, RULES, DEDUPE))
    staged = wh.fetch(f"SELECT * FROM {STG.sql}")
    deduped = wh.fetch(f"SELECT * FROM {DEDUPED.sql}")
    return pd.concat([staged.assign(table="staged"), deduped.assign(table="deduped")], ignore_index=True)


@pytest.fixture(scope="module")
def duckdb_table() -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(path=str(Path(d) / "wh.duckdb"))
        with wh.session():
            return stage(wh)


def _same(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(normalized(got, ["table", "id"]), normalized(expected, ["table", "id"]), check_dtype=False)


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


def test_trino_on_the_treasure_data_fake_stages_the_same_table(duckdb_table):
    fake = FakeTreasureData(KEY)
    url = fake.start()
    try:
        wh = TreasureDataWarehouse(apikey=KEY, endpoint=url, database="cdp_src", job_poll_seconds=0.01, retry_backoff_seconds=0.01)
        _same(duckdb_table, stage(wh))
    finally:
        fake.stop()


def test_local_spark_through_the_databricks_engine_stages_the_same_table(duckdb_table):
    with tempfile.TemporaryDirectory() as d:
        wh = DatabricksWarehouse(
            local_spark_dir=str(Path(d) / "warehouse"), sql_dialect="spark", table_format="parquet",
            optimize_tables=False, use_catalog=False, catalog=None,
        )
        try:
            with wh.session():
                _same(duckdb_table, stage(wh))
        finally:
            stop_spark_session()
