"""A staging statement computes each distinct expression once (docs/staging.md, "How a statement is
layered"): the layers' columns are all different expressions, a phone number's validation is written
once per input column however many outputs read it, and no null-token list is planned as a join.
What the statements compute is proven by test_staging.py, the oracle tests and the cross-engine test."""

from __future__ import annotations

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from cdp_assets.config.loader import BUNDLED_DIR, load_config
from cdp_assets.config.models import DEFAULT_NULL_TOKENS, StagingRule
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import EMAIL_PATTERN, phone_valid_sql, staging_sql

SRC = TableRef("main", "people")
PHONE = StagingRule(rule="phone", columns=["phone"], default_region="US", valid_flag=True)
PHONE_HASH = StagingRule(rule="hash", columns=["phone"], normalize="phone", default_region="US")
# The number of regex literals one phone validation writes (one per first digit of a country code).
VALIDATION_LITERALS = phone_valid_sql("x").count("regexp_matches(")


def _layer_columns(sql: str) -> list[tuple[str, str]]:
    """(CTE, expression) of every computed column of the statement's CTEs."""
    out = []
    for cte in sqlglot.parse_one(sql, read="duckdb").find_all(exp.CTE):
        for projection in cte.this.expressions if isinstance(cte.this, exp.Select) else []:
            if isinstance(projection, exp.Alias):
                out.append((cte.alias, projection.this.sql(dialect="duckdb")))
    return out


def test_a_phone_rule_its_flag_and_its_hash_validate_the_number_once():
    sql = staging_sql(SRC, ["phone"], {"phone": PHONE, "phone_sha256": PHONE_HASH})
    assert sql.count("regexp_matches(SUBSTRING(") == VALIDATION_LITERALS
    # Two columns are two values: each is validated once.
    mobile = StagingRule(rule="phone", columns=["mobile"], default_region="US", valid_flag=True)
    two = staging_sql(SRC, ["phone", "mobile"], {"phone": PHONE, "mobile": mobile, "phone_sha256": PHONE_HASH})
    assert two.count("regexp_matches(SUBSTRING(") == 2 * VALIDATION_LITERALS
    # Another default region reads the same text differently: its own value, its own validation.
    gb = PHONE_HASH.model_copy(update={"default_region": "GB"})
    assert staging_sql(SRC, ["phone"], {"phone": PHONE, "phone_gb": gb}).count("regexp_matches(SUBSTRING(") == (
        2 * VALIDATION_LITERALS
    )


def test_the_bundled_statements_compute_each_distinct_expression_once():
    loaded = load_config(BUNDLED_DIR / "acme" / "cdp.yml")
    for table in ("shop_customers", "loyalty_members", "shop_orders"):
        rules = loaded.pipeline.staging_rules_of(table)
        columns = sorted({c for r in rules.values() for c in r.columns})
        sql = staging_sql(SRC, columns, rules)
        computed = [expression for _, expression in _layer_columns(sql)]
        assert computed, table
        repeated = pd.Series(computed).value_counts()
        assert repeated.max() == 1, f"{table}: computed more than once: {list(repeated[repeated > 1].index)[:3]}"
        # The null-token tests are comparisons, not IN lists (which DuckDB plans as joins).
        assert " IN (" not in sql, table


def test_email_and_its_hash_share_one_standardised_value_and_still_agree():
    email = StagingRule(rule="email", columns=["email"], valid_flag=True).with_table_null_tokens(
        list(DEFAULT_NULL_TOKENS)
    )
    hashed = StagingRule(rule="hash", columns=["email"], normalize="email").with_table_null_tokens(
        list(DEFAULT_NULL_TOKENS)
    )
    sql = staging_sql(SRC, ["email"], {"email": email, "email_sha256": hashed})
    assert sql.count(EMAIL_PATTERN.replace("'", "''")) == 1
    con = duckdb.connect()
    con.execute("CREATE TABLE people AS SELECT * FROM (VALUES (' A@Example.com '), ('N/A'), ('bad@'), (NULL)) t(email)")
    got = con.execute(
        f"SELECT standardized_email, standardized_email_valid, hashed_email_sha256 = sha256(standardized_email) "
        f"FROM ({sql}) ORDER BY email NULLS LAST"
    ).fetchall()
    # ' A@Example.com ', 'N/A' (a null token: no input), 'bad@', NULL
    assert got == [("a@example.com", True, True), (None, None, None), (None, False, None), (None, None, None)]
