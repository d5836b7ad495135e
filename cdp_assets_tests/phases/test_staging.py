"""Staging rule expressions executed by DuckDB, table-driven.

Expected phone values are what `phonenumbers` gives (E.164 digits of a valid number, else
NULL) and expected emails what `email-validator` accepts; the generated corpora against both
oracles are in test_staging_oracles.py.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from cdp_assets.config.models import DEFAULT_NULL_TOKENS, StagingRule
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import staged_columns, staging_sql, unparseable_sql

SRC = TableRef("acme_src", "shop_customers_hist_union")
STG = TableRef("acme_stg", "shop_customers_stg")

EMAIL_CASES = [
    ("Foo.Bar@Example.COM", "foo.bar@example.com"),
    ("  jane.doe@example.com  ", "jane.doe@example.com"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("o'brien@example.com", "o'brien@example.com"),  # an apostrophe is RFC 5322 atext
    ("a..b@x.com", None),  # the cases of issue 11
    (".a@x.com", None),
    ("a@-x.com", None),
    ("a@x.test", None),  # special-use domain (RFC 6761)
    ("a@1.2.com", "a@1.2.com"),
    ("a@b.c1", None),  # the last label ends in a letter
    ("N/A", None),
    ("not-an-email", None),
    ("a@b", None),
    ("a@b.c", "a@b.c"),  # email-validator accepts a one-letter top-level domain
    ("a b@example.com", None),
    ("a@@example.com", None),
    ("", None),
    ("   ", None),
    (None, None),
]

US_PHONE_CASES = [
    ("(212) 555-0100", "12125550100"),
    ("+1 212 555 0100", "12125550100"),
    ("1-212-555-0100", "12125550100"),
    ("212.555.0100", "12125550100"),
    ("2125550100", "12125550100"),
    ("12125550100", "12125550100"),
    ("+1 (212) 555-0100", "12125550100"),
    ("  (212) 555-0100  ", "12125550100"),
    ("(555) 123-4567", None),  # NANP exchange codes never start with 0 or 1
    ("(555) 223-4567", None),  # 555 is not an area code in use
    ("(646) 223-4567", "16462234567"),
    ("+44 (0) 20 7946 0958", "442079460958"),  # a trunk 0 written after the country code
    ("011 44 20 7946 0958", "442079460958"),  # the US international prefix
    ("+44 20 7946 0958", "442079460958"),  # international numbers keep their own country code
    ("0000000000", None),  # one repeated digit: a placeholder
    ("1111111111", None),
    ("11111111111", None),
    ("123", None),
    ("555-0100", None),  # 7 digits: no area code
    ("(012) 555-0100", None),  # national number starting with 0
    ("2125550100123", None),  # too long
    ("+0044 20 7946 0958", None),  # '+' then a leading 0
    ("+1 212", None),  # international but too short
    ("001 212 555 0100", None),  # "00" is not the US international prefix (011)
    ("", None),
    (None, None),
]

GB_PHONE_CASES = [
    ("020 7946 0958", "442079460958"),
    ("+44 20 7946 0958", "442079460958"),
    ("44 20 7946 0958", "442079460958"),
    ("07400 123456", "447400123456"),
    ("07700 900123", None),  # Ofcom's drama range: not a valid mobile number
    ("0800 123 4567", "448001234567"),  # freephone
    ("2079460958", "442079460958"),  # without the trunk 0, as phonenumbers reads it
    ("020 7946 095", None),  # too short
    ("+1 212 555 0100", "12125550100"),
]

DE_PHONE_CASES = [
    ("030 12345678", "493012345678"),
    ("+49 30 12345678", "493012345678"),
    ("0151 23456789", "4915123456789"),
    ("0049 30 12345678", "493012345678"),
    ("12345", None),
]

JP_PHONE_CASES = [
    ("03-1234-5678", "81312345678"),
    ("090-1234-5678", "819012345678"),
    ("+81 3 1234 5678", "81312345678"),
    ("010 81 3 1234 5678", "81312345678"),  # the Japanese international prefix
]

NAME_CASES = [
    ("  mary   ann  ", "Mary ann"),
    ("JOHN", "John"),
    ("jOHN", "John"),
    ("\tbob\n", "Bob"),
    ("o'brien", "O'brien"),
    ("jean-luc", "Jean-luc"),
    ("élodie", "Élodie"),
    ("x", "X"),
    ("", None),
    ("   ", None),
    (None, None),
]

TEXT_CASES = [
    ("  Hello   World ", "hello world"),
    ("ABC", "abc"),
    ("", None),
    (None, None),
]

# (first column, second column) -> email from the first non-empty one
MULTI_CASES = [
    ("a@x.com", "b@x.com", "a@x.com"),
    (None, "B@X.com", "b@x.com"),
    ("", "b@x.com", "b@x.com"),
    ("   ", "b@x.com", "b@x.com"),
    ("N/A", "b@x.com", "b@x.com"),  # the first column that standardises, not merely the first non-empty
    (None, None, None),
]

CASES: dict[str, list] = {
    "email": EMAIL_CASES,
    "phone_us": US_PHONE_CASES,
    "phone_gb": GB_PHONE_CASES,
    "phone_de": DE_PHONE_CASES,
    "phone_jp": JP_PHONE_CASES,
    "name": NAME_CASES,
    "text": TEXT_CASES,
}
RULES = {
    "email": StagingRule(rule="email", columns=["email"]),
    "phone_us": StagingRule(rule="phone", columns=["phone"], default_region="US"),
    "phone_gb": StagingRule(rule="phone", columns=["phone"], default_region="GB"),
    "phone_de": StagingRule(rule="phone", columns=["phone"], default_region="DE"),
    "phone_jp": StagingRule(rule="phone", columns=["phone"], default_region="JP"),
    "name": StagingRule(rule="name", columns=["name"]),
    "text": StagingRule(rule="text", columns=["name"]),
    "email_multi": StagingRule(rule="email", columns=["email", "alt_email"]),
}


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> DuckDBWarehouse:
    w = DuckDBWarehouse(path=str(tmp_path_factory.mktemp("staging") / "wh.duckdb"))
    with w.session():
        yield w


@pytest.fixture(scope="module")
def staged(wh) -> pd.DataFrame:
    """One source table holding every case as a row; one staging query over it."""
    rows = []
    for kind, cases in CASES.items():
        col = "phone" if kind.startswith("phone") else {"email": "email", "name": "name", "text": "name"}[kind]
        rows += [{"case_id": f"{kind}:{n}", col: value} for n, (value, _) in enumerate(cases)]
    rows += [{"case_id": f"multi:{n}", "email": a, "alt_email": b} for n, (a, b, _) in enumerate(MULTI_CASES)]
    df = pd.DataFrame(rows, columns=["case_id", "email", "alt_email", "phone", "name"]).astype("string")
    df["updated_at"] = pd.Timestamp("2024-06-01")
    wh.write_dataframe(SRC, df)
    wh.build_table(
        STG,
        staging_sql(
            SRC,
            wh.columns(SRC),
            {
                "email": RULES["email"],
                "phone": RULES["phone_us"],
                "phone_gb": RULES["phone_gb"],
                "phone_de": RULES["phone_de"],
                "phone_jp": RULES["phone_jp"],
                "first_name": RULES["name"],
                "note": RULES["text"],
                "any_email": RULES["email_multi"],
            },
        ),
    )
    return wh.fetch(f"SELECT * FROM {STG.sql}").set_index("case_id")


def _value(staged: pd.DataFrame, case_id: str, column: str):
    v = staged.loc[case_id, column]
    if pd.isna(v):
        return None
    return bool(v) if isinstance(v, (bool, np.bool_)) else v


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(EMAIL_CASES)], ids=[repr(c[0]) for c in EMAIL_CASES]
)
def test_email(staged, n, raw, expected):
    assert _value(staged, f"email:{n}", "standardized_email") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(US_PHONE_CASES)], ids=[repr(c[0]) for c in US_PHONE_CASES]
)
def test_phone_us(staged, n, raw, expected):
    assert _value(staged, f"phone_us:{n}", "standardized_phone") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(GB_PHONE_CASES)], ids=[repr(c[0]) for c in GB_PHONE_CASES]
)
def test_phone_gb(staged, n, raw, expected):
    assert _value(staged, f"phone_gb:{n}", "standardized_phone_gb") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(DE_PHONE_CASES)], ids=[repr(c[0]) for c in DE_PHONE_CASES]
)
def test_phone_de(staged, n, raw, expected):
    assert _value(staged, f"phone_de:{n}", "standardized_phone_de") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(JP_PHONE_CASES)], ids=[repr(c[0]) for c in JP_PHONE_CASES]
)
def test_phone_jp(staged, n, raw, expected):
    assert _value(staged, f"phone_jp:{n}", "standardized_phone_jp") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(NAME_CASES)], ids=[repr(c[0]) for c in NAME_CASES]
)
def test_name(staged, n, raw, expected):
    assert _value(staged, f"name:{n}", "cleaned_first_name") == expected


@pytest.mark.parametrize(
    ("n", "raw", "expected"), [(n, *c) for n, c in enumerate(TEXT_CASES)], ids=[repr(c[0]) for c in TEXT_CASES]
)
def test_text(staged, n, raw, expected):
    assert _value(staged, f"text:{n}", "cleaned_note") == expected


@pytest.mark.parametrize(("n", "first", "second", "expected"), [(n, *c) for n, c in enumerate(MULTI_CASES)])
def test_multiple_columns_first_valid(staged, n, first, second, expected):
    assert _value(staged, f"multi:{n}", "standardized_any_email") == expected


def test_staging_keeps_every_source_column(wh, staged):
    cols = wh.columns(STG)
    assert cols[: len(wh.columns(SRC))] == wh.columns(SRC)
    assert cols[len(wh.columns(SRC)) :] == [
        "standardized_email",
        "standardized_phone",
        "standardized_phone_gb",
        "standardized_phone_de",
        "standardized_phone_jp",
        "cleaned_first_name",
        "cleaned_note",
        "standardized_any_email",
    ]
    # raw values pass through untouched
    assert staged.loc["email:0", "email"] == "Foo.Bar@Example.COM"


@pytest.mark.parametrize(
    ("output", "present_kinds"),
    [
        ("standardized_email", ["email", "multi"]),
        ("standardized_phone", ["phone_us", "phone_gb", "phone_de", "phone_jp"]),
    ],
)
def test_unparseable_counts_non_empty_inputs_that_became_null(wh, staged, output, present_kinds):
    col = next(
        c
        for c in staged_columns(
            {
                "email": RULES["email"],
                "phone": RULES["phone_us"],
            }
        )
        if c.output == output
    )
    got = wh.fetch(unparseable_sql(STG, col)).iloc[0]
    raw_col = col.inputs[0]
    present = staged[~staged[raw_col].fillna("").str.strip().str.upper().isin(DEFAULT_NULL_TOKENS)]
    expected_unparseable = int(present[output].isna().sum())
    assert int(got["present"]) == len(present)
    assert int(got["unparseable"]) == expected_unparseable
    assert 0 < expected_unparseable < len(present)


def test_unparseable_on_a_small_table(wh):
    src = TableRef("acme_src", "small_hist_union")
    stg = TableRef("acme_stg", "small_stg")
    df = pd.DataFrame({"email": ["a@x.com", "N/A", "", None, "not-an-email", " B@Y.org "]}).astype("string")
    wh.write_dataframe(src, df)
    rules = {"email": StagingRule(rule="email", columns=["email"])}
    wh.build_table(stg, staging_sql(src, wh.columns(src), rules))
    got = wh.fetch(unparseable_sql(stg, staged_columns(rules)[0])).iloc[0]
    # 'N/A' is a default null token: no input rather than an unparseable one.
    assert (int(got["unparseable"]), int(got["present"])) == (1, 3)


def test_unparseable_multi_column_counts_first_present_input(wh, staged):
    col = staged_columns({"any_email": RULES["email_multi"]})[0]
    got = wh.fetch(unparseable_sql(STG, col)).iloc[0]
    present = staged[
        [
            any(
                isinstance(v, str) and v.strip().upper() not in DEFAULT_NULL_TOKENS
                for v in (r["email"], r["alt_email"])
            )
            for _, r in staged.iterrows()
        ]
    ]
    assert int(got["present"]) == len(present)
    assert int(got["unparseable"]) == int(present["standardized_any_email"].isna().sum())


def test_staging_sql_names_missing_columns():
    rules = {
        "email": StagingRule(rule="email", columns=["email", "work_email"]),
        "phone": StagingRule(rule="phone", columns=["mobile"]),
    }
    with pytest.raises(ValueError) as err:
        staging_sql(SRC, ["customer_id", "email", "updated_at"], rules)
    msg = str(err.value)
    assert "['mobile', 'work_email']" in msg
    assert SRC.display in msg
    assert "customer_id" in msg  # lists the columns the table has


def test_staging_without_rules_passes_columns_through(wh, staged):
    assert staging_sql(SRC, ["a"], {}).startswith("SELECT *\nFROM")
    n = wh.scalar(f"SELECT COUNT(*) FROM ({staging_sql(SRC, wh.columns(SRC), {})}) AS t")
    assert n == len(staged)


# ---------------------------------------------------------------------------- issue 11 rules

import hashlib  # noqa: E402

NEW_SRC = TableRef("acme_src", "rules_hist_union")
NEW_STG = TableRef("acme_stg", "rules_stg")

NUMBER_CASES = [  # (raw, expected with decimal point, expected with decimal comma)
    ("12.50", 12.5, 1250.0),
    ("$1,234.56", 1234.56, 1.23456),
    ("€ 1.234,56", 1.23456, 1234.56),
    ("1 000", 1000.0, 1000.0),
    ("-3.14159", -3.14159, -314159.0),
    ("12 EUR", 12.0, 12.0),
    ("abc", None, None),
    ("1-2", None, None),
    ("N/A", None, None),
    ("", None, None),
    (None, None, None),
]
BOOLEAN_CASES = [
    ("true", True),
    ("TRUE", True),
    ("Yes", True),
    ("y", True),
    ("1", True),
    ("on", True),
    (" ON ", True),
    ("false", False),
    ("No", False),
    ("n", False),
    ("0", False),
    ("OFF", False),
    ("maybe", None),
    ("2", None),
    ("NULL", None),
    ("", None),
    (None, None),
]
# (date of birth, surname) -> concat key; first non-empty
COMPOSITE_CASES = [
    ("1980-01-02", "Smith", "1980-01-02|smith", "1980-01-02"),
    ("1980-01-02", None, None, "1980-01-02"),
    (None, "Smith", None, "smith"),
    ("N/A", "Smith", None, "smith"),
    (None, None, None, None),
]

NEW_RULES = {
    "amount": StagingRule(rule="number", columns=["amount"], decimals=5),
    "amount_eu": StagingRule(rule="number", columns=["amount"], decimal_comma=True, decimals=5),
    "opt_in": StagingRule(rule="boolean", columns=["flag"]),
    "dob_surname": StagingRule(rule="text", columns=["dob", "surname"], combine="concat"),
    "dob_or_surname": StagingRule(rule="text", columns=["dob", "surname"], combine="first"),
    "email": StagingRule(rule="email", columns=["email"], valid_flag=True),
    "phone": StagingRule(rule="phone", columns=["phone"], valid_flag=True),
    "email_sha": StagingRule(rule="hash", columns=["email"], normalize="email"),
    "phone_sha": StagingRule(rule="hash", columns=["phone"], normalize="phone"),
    "note": StagingRule(rule="text", columns=["note"], null_tokens=["unknown", "?"]),
    "note_default": StagingRule(rule="text", columns=["note"]),
}
IDENTIFIER_CASES = [  # (email, phone)
    (" Foo@Example.COM ", "+1 (212) 555-0100"),
    ("not-an-email", "123"),
    (None, None),
    ("NULL", "-"),
]
NOTE_CASES = [("Unknown", None, "unknown"), ("?", None, "?"), ("N/A", "n/a", None), ("kept", "kept", "kept")]


@pytest.fixture(scope="module")
def new_staged(wh) -> pd.DataFrame:
    rows = [{"case_id": f"number:{n}", "amount": raw} for n, (raw, _, _) in enumerate(NUMBER_CASES)]
    rows += [{"case_id": f"boolean:{n}", "flag": raw} for n, (raw, _) in enumerate(BOOLEAN_CASES)]
    rows += [{"case_id": f"composite:{n}", "dob": d, "surname": s} for n, (d, s, _, _) in enumerate(COMPOSITE_CASES)]
    rows += [{"case_id": f"ids:{n}", "email": e, "phone": p} for n, (e, p) in enumerate(IDENTIFIER_CASES)]
    rows += [{"case_id": f"note:{n}", "note": v} for n, (v, _, _) in enumerate(NOTE_CASES)]
    cols = ["case_id", "amount", "flag", "dob", "surname", "email", "phone", "note"]
    wh.write_dataframe(NEW_SRC, pd.DataFrame(rows, columns=cols).astype("string"))
    wh.build_table(NEW_STG, staging_sql(NEW_SRC, wh.columns(NEW_SRC), NEW_RULES))
    return wh.fetch(f"SELECT * FROM {NEW_STG.sql}").set_index("case_id")


@pytest.mark.parametrize(("n", "case"), list(enumerate(NUMBER_CASES)), ids=[repr(c[0]) for c in NUMBER_CASES])
def test_number(new_staged, n, case):
    _, point, comma = case
    assert _value(new_staged, f"number:{n}", "cleaned_amount") == point
    assert _value(new_staged, f"number:{n}", "cleaned_amount_eu") == comma


@pytest.mark.parametrize(("n", "case"), list(enumerate(BOOLEAN_CASES)), ids=[repr(c[0]) for c in BOOLEAN_CASES])
def test_boolean(new_staged, n, case):
    assert _value(new_staged, f"boolean:{n}", "cleaned_opt_in") == case[1]


@pytest.mark.parametrize(("n", "case"), list(enumerate(COMPOSITE_CASES)))
def test_combine_concat_and_first(new_staged, n, case):
    _, _, concat, first = case
    assert _value(new_staged, f"composite:{n}", "cleaned_dob_surname") == concat
    assert _value(new_staged, f"composite:{n}", "cleaned_dob_or_surname") == first


def test_valid_flags_and_hashes(new_staged):
    sha = lambda v: hashlib.sha256(v.encode()).hexdigest()  # noqa: E731
    ok, bad, absent, token = (f"ids:{n}" for n in range(4))
    assert (
        _value(new_staged, ok, "standardized_email_valid") is True
        and _value(new_staged, bad, "standardized_email_valid") is False
    )
    assert (
        _value(new_staged, ok, "standardized_phone_valid") is True
        and _value(new_staged, bad, "standardized_phone_valid") is False
    )
    for case in (absent, token):  # no input (or a null token): no verdict
        assert _value(new_staged, case, "standardized_email_valid") is None
        assert _value(new_staged, case, "standardized_phone_valid") is None
    # Ad platforms' form: lowercase trimmed email; E.164 digits without '+'.
    assert _value(new_staged, ok, "hashed_email_sha") == sha("foo@example.com")
    assert _value(new_staged, ok, "hashed_phone_sha") == sha("12125550100")
    assert _value(new_staged, bad, "hashed_email_sha") is None and _value(new_staged, bad, "hashed_phone_sha") is None


@pytest.mark.parametrize(("n", "case"), list(enumerate(NOTE_CASES)))
def test_null_tokens(new_staged, n, case):
    _, own_tokens, default_tokens = case
    assert _value(new_staged, f"note:{n}", "cleaned_note") == own_tokens
    assert _value(new_staged, f"note:{n}", "cleaned_note_default") == default_tokens


def test_unparseable_counts_skip_null_tokens_and_valid_flags(wh, new_staged):
    cols = {c.output: c for c in staged_columns(NEW_RULES)}
    assert cols["standardized_email_valid"].counted is False
    got = wh.fetch(unparseable_sql(NEW_STG, cols["cleaned_opt_in"])).iloc[0]
    # 'maybe' and '2' are unparseable; 'NULL', '' and None are no input at all.
    assert (int(got["unparseable"]), int(got["present"])) == (2, 14)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (dict(rule="text", columns=["a"], decimals=2), "'decimals'"),
        (dict(rule="email", columns=["a"], normalize="email"), "'normalize'"),
        (dict(rule="phone", columns=["a"], default_region="XX"), "not a region of the phone table"),
        (dict(rule="text", columns=["a"], null_tokens=["it's"]), "null_tokens"),
    ],
)
def test_rule_options_are_checked(rule, message):
    with pytest.raises(ValueError, match=message):
        StagingRule(**rule)


def test_rule_counts_partition_every_row(wh, new_staged):
    from cdp_assets.sql.staging import rule_counts, rule_counts_sql

    columns = staged_columns(NEW_RULES)
    counts = rule_counts(columns, wh.fetch(rule_counts_sql(NEW_STG, columns)).iloc[0])
    assert "standardized_email_valid" not in counts  # flags are not counted
    for out, c in counts.items():
        assert c["parsed"] + c["null"] + c["unparseable"] == len(new_staged), out
        assert c["parsed"] == int(new_staged[out].notna().sum()), out
        # the same figure as the per-column query
        col = next(x for x in columns if x.output == out)
        assert c["unparseable"] == int(wh.fetch(unparseable_sql(NEW_STG, col)).iloc[0]["unparseable"]), out
    assert counts["cleaned_opt_in"] == {
        "rule": "boolean",
        "parsed": 12,
        "null": len(new_staged) - 14,
        "unparseable": 2,
        "unparseable_pct": round(100 * 2 / 14, 3),
    }


# ---------------------------------------------------------------------------- date

from datetime import datetime, timedelta, timezone  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DATE_SRC = TableRef("acme_src", "dates_hist_union")
ALL_FORMATS = ["iso8601", "dd-mm-yyyy", "mm/dd/yyyy", "yyyy/mm/dd", "epoch_seconds", "epoch_millis"]


def stage_dates(wh, values: list[str | None], formats=None) -> pd.DataFrame:
    wh.drop(DATE_SRC)
    wh.write_dataframe(DATE_SRC, pd.DataFrame({"n": range(len(values)), "v": values}).astype({"v": "string"}))
    sql = staging_sql(DATE_SRC, ["n", "v"], {"d": StagingRule(rule="date", columns=["v"], formats=formats)})
    return wh.fetch(f"SELECT * FROM ({sql}) AS s ORDER BY n")


DATE_CASES = [  # (raw, unix seconds or None) with ALL_FORMATS
    ("2024-03-05", 1709596800),
    ("2024-03-05T10:11:12", 1709633472),
    ("2024-03-05 10:11:12.250Z", 1709633472),
    ("2024-03-05T10:11:12+02:00", 1709626272),  # a zone: converted to UTC
    ("2024-03-05T01:00:00-0530", 1709620200),
    ("05-03-2024", 1709596800),  # dd-mm-yyyy, as listed
    ("05.03.2024 10:11", 1709633460),
    ("03/05/2024 08:00", 1709625600),  # mm/dd/yyyy, as listed
    ("2024/03/05 23:59:59", 1709683199),
    ("1709632272", 1709632272),
    ("1709632272123", 1709632272),  # milliseconds, to whole seconds
    ("1969-12-31T23:59:59Z", -1),
    ("2000-02-29", 951782400),
    ("2024-02-30", None),  # no such day
    ("2024-13-01", None),
    ("2024-03-05T24:00:00", None),
    ("garbage", None),
    ("N/A", None),
    (None, None),
]


def test_date_cases(wh):
    got = stage_dates(wh, [v for v, _ in DATE_CASES], ALL_FORMATS)
    for (raw, expected), unix, std, day in zip(DATE_CASES, got["d_unixtime"], got["d_std"], got["d_date"]):
        assert (None if pd.isna(unix) else int(unix)) == expected, raw
        if expected is None:
            assert pd.isna(std) and pd.isna(day), raw
        else:
            utc = datetime(1970, 1, 1) + timedelta(seconds=expected)
            assert pd.Timestamp(std) == pd.Timestamp(utc), raw
            assert pd.Timestamp(day).date() == utc.date(), raw


def test_day_month_order_comes_from_the_config_and_is_never_guessed(wh):
    values = ["05/03/2024", "05-03-2024"]
    default = stage_dates(wh, values)  # no day-first or month-first format listed: not read
    assert default["d_unixtime"].isna().all()
    day_first = stage_dates(wh, values, ["dd/mm/yyyy", "dd-mm-yyyy"])["d_std"].tolist()
    month_first = stage_dates(wh, values, ["mm/dd/yyyy", "mm-dd-yyyy"])["d_std"].tolist()
    assert [pd.Timestamp(t).strftime("%Y-%m-%d") for t in day_first] == ["2024-03-05", "2024-03-05"]
    assert [pd.Timestamp(t).strftime("%Y-%m-%d") for t in month_first] == ["2024-05-03", "2024-05-03"]


def _written(moment: datetime, form: str, offset_minutes: int) -> str:
    if form == "iso_zone":
        local = moment + timedelta(minutes=offset_minutes)
        sign = "+" if offset_minutes >= 0 else "-"
        hh, mm = divmod(abs(offset_minutes), 60)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}:{mm:02d}"
    return {
        "iso": moment.strftime("%Y-%m-%dT%H:%M:%S"),
        "dmy": moment.strftime("%d-%m-%Y %H:%M:%S"),
        "mdy": moment.strftime("%m/%d/%Y %H:%M:%S"),
        "ymd": moment.strftime("%Y/%m/%d %H:%M:%S"),
        "epoch": str(int(moment.replace(tzinfo=timezone.utc).timestamp())),
        "epoch_ms": str(int(moment.replace(tzinfo=timezone.utc).timestamp()) * 1000 + 7),
    }[form]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(2200, 12, 31)).map(
                lambda d: d.replace(microsecond=0)
            ),
            st.sampled_from(["iso", "iso_zone", "dmy", "mdy", "ymd", "epoch", "epoch_ms"]),
            st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: m - m % 15),
        ),
        min_size=50,
        max_size=50,
    )
)
def test_date_property_agrees_with_python_datetime(wh, cases):
    values = [_written(m, f, o) for m, f, o in cases]
    got = stage_dates(wh, values, ALL_FORMATS)
    for (moment, form, _), raw, unix in zip(cases, values, got["d_unixtime"]):
        assert int(unix) == int(moment.replace(tzinfo=timezone.utc).timestamp()), (form, raw)


# ---------------------------------------------------------------------------- dedupe

from cdp_assets.config.models import DedupeOptions  # noqa: E402

DEDUPE_RULES = {"email": StagingRule(rule="email", columns=["email"])}
DEDUPE_ROWS = [  # customer_id, email, updated_at
    ("C1", "Ann@X.com", "2024-01-01"),
    ("C2", " ann@x.com ", "2024-03-01"),  # the same email after cleaning, newer: kept
    ("C3", "ANN@x.COM", "2024-02-01"),
    ("C4", "bob@y.org", "2024-01-05"),
    ("C5", "not-an-email", "2024-01-01"),  # NULL emails form one partition too
    ("C6", None, "2024-02-02"),
]


def test_dedupe_runs_after_cleaning_and_keeps_the_newest(wh):
    src, stg = TableRef("acme_src", "dedupe_hist_union"), TableRef("acme_stg", "dedupe_stg")
    wh.drop(src)
    wh.write_dataframe(src, pd.DataFrame(DEDUPE_ROWS, columns=["customer_id", "email", "updated_at"]).astype("string"))
    cols = wh.columns(src)
    wh.build_table(
        stg, staging_sql(src, cols, DEDUPE_RULES, DedupeOptions(partition_by=["standardized_email"]), "updated_at")
    )
    kept = wh.fetch(f"SELECT customer_id, standardized_email FROM {stg.sql} ORDER BY customer_id")
    assert kept["customer_id"].tolist() == ["C2", "C4", "C6"]
    assert wh.columns(stg) == [*cols, "standardized_email"]  # no helper column left behind
    oldest = wh.fetch(
        staging_sql(
            src, cols, DEDUPE_RULES, DedupeOptions(partition_by=["standardized_email"], keep="oldest"), "updated_at"
        )
    )
    assert sorted(oldest["customer_id"]) == ["C1", "C4", "C5"]


def test_dedupe_names_unknown_columns():
    with pytest.raises(ValueError, match=r"\['phone'\].*its columns are"):
        staging_sql(
            SRC,
            ["customer_id", "email", "updated_at"],
            DEDUPE_RULES,
            DedupeOptions(partition_by=["phone"]),
            "updated_at",
        )


def test_table_options_name_a_staged_table():
    from cdp_assets.config.models import PipelineConfig

    base = {
        "client": "acme",
        "sources": [{"name": "shop", "connector": {"kind": "local_files", "path": "x"}, "objects": ["customers"]}],
    }
    ok = PipelineConfig(**base, staging_tables={"shop_customers": {"dedupe": {"partition_by": ["standardized_email"]}}})
    assert ok.staging_tables["shop_customers"].dedupe.keep == "newest"
    with pytest.raises(ValueError, match="no source object produces 'shop_orders'"):
        PipelineConfig(**base, staging_tables={"shop_orders": {"dedupe": {"partition_by": ["email"]}}})
