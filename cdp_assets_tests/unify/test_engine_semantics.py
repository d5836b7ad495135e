"""Treasure Data's meaning on every engine: ``valid_regexp`` (a Java-style regex) and the epoch
``time`` column, each run as the builders run them (patterns and values as rows, the canonical
SQL rendered per dialect) on DuckDB, on a local Spark session (the Databricks dialect; Java's own
regular expressions, so it is also the oracle) and on the Treasure Data fake.

The expected column of ``REGEX_CASES`` is what Java's ``Matcher.find`` answers, which is what
Treasure Data answers; Spark, running Java, checks the table itself (every row of every table
here was also checked with Java 17's ``java.util.regex`` directly).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cdp_assets.config import ConfigError, load_config
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef, valid_regexp_matches
from cdp_assets.sql.regex import check_syntax, pattern_for, re2_lacks, unsupported_constructs
from cdp_assets.sql.unification import time_expr
from cdp_assets_tests.conftest import local_spark_warehouse, shared_spark_session

# (pattern, value, Java's answer). Rows marked portable mean the same in RE2 and Java as they are.
REGEX_CASES: list[tuple[str, str, bool, bool]] = [
    # pattern, value, java, portable
    ("^[0-9]+$", "123", True, True),
    ("^[0-9]+$", "123\n", True, False),  # Java's $ matches before a final line terminator
    ("^[0-9]+$", "123\r\n", True, False),
    ("^[0-9]+$", "123\n4", False, True),
    ("^[0-9]+$", "12a", False, True),
    (".+@.+", "a@b.com", True, True),
    (".+@.+", "\r@b", False, False),  # Java's . excludes \r (RE2's only \n)
    (".+@.+", "\n@b", False, True),
    ("^\\s*$", "\x0b", True, False),  # Java's \s includes the vertical tab
    ("^\\S+$", "a\x0bb", False, False),
    ("3rd_*", "xx3rd_001", True, True),  # find, not a full match (TD's documented example)
    ("3rd_*", "3r", False, True),
    ("^C[0-9]+$", "C12", True, True),
    ("^C[0-9]+$", "c12", False, True),
    ("[.$]", "a$", True, True),  # inside a class . and $ are literals
    ("[.$]", "ab", False, True),
    ("(?i)^abc$", "ABC", True, True),
    ("(?s)a.b", "a\nb", True, True),
    ("\\Qa.b\\E", "a.b", True, True),
    ("\\Qa.b\\E", "axb", False, True),
    ("^\\p{L}+$", "héllo", True, True),
    ("^\\p{L}+$", "h3llo", False, True),
    ("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", "me@example.org", True, True),
    ("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", "me@example.org\n", True, False),
    # (?i) folds ASCII letters only in Java (RE2 folds Unicode: the Kelvin sign, long s, É)
    ("(?i)^k$", "\u212a", False, False),
    ("(?i)^[k]$", "\u212a", False, False),
    ("(?i)s", "\u017f", False, False),
    ("(?i)^é$", "É", False, False),
    ("(?i)^[é]$", "É", False, False),
    ("(?i)^[a-c]+$", "AbC", True, True),
    ("(?i)^[x-z]+$", "XyZ", True, True),
    ("(?i)^[^a]$", "A", False, True),
    ("^(?i:ab)c$", "ABc", True, True),  # a scoped flag ends with its group
    ("^(?i:ab)c$", "ABC", False, True),
    ("^a(?i)b$", "aB", True, True),  # a flag applies from where it stands
    ("^a(?i)b$", "AB", False, True),
    ("(?i)^a(?-i)b$", "Ab", True, True),
    ("(?i)^a(?-i)b$", "AB", False, True),
    ("(?i)^\\Qa.b\\E$", "A.B", True, True),
    ("(?i)^\\x41$", "a", True, True),
    # \v is every vertical space in Java (RE2: the vertical tab only)
    ("^\\v$", "\u2028", True, False),
]

# Java spellings RE2 does not read (it rejects the pattern as written): rewritten, Java's answer.
JAVA_SPELLING_CASES: list[tuple[str, str, bool]] = [
    ("^\\p{Alpha}+$", "abc", True),  # POSIX classes are ASCII in Java
    ("^\\p{Alpha}+$", "é", False),
    ("^[\\p{Alpha}_]+$", "a_b", True),
    ("^\\p{Punct}$", "!", True),
    ("^\\P{Digit}$", "a", True),
    ("^\\p{IsLu}$", "É", True),
    ("^\\u00e9$", "é", True),
    ("^\\h$", "\u00a0", True),
    ("^\\R$", "\r\n", True),
    ("^\\e$", "\x1b", True),
    ("^(?<user>[a-z]+)@x$", "bob@x", True),
    ("^[\\Q.]\\E]+$", ".]", True),
]

WORD_BOUNDARY = "\\b word boundary (Java counts Unicode letters and digits as word characters, RE2 ASCII only)"

# Constructs RE2 lacks: on DuckDB the rules table flags them and java_regex_matches evaluates
# them (Python's regex module on the pattern's Java-meaning form); Spark and Treasure Data read
# them as written. (pattern, value, Java's answer)
JAVA_FALLBACK_CASES: list[tuple[str, str, bool]] = [
    ("^(?!test).*@.*$", "test@x.com", False),
    ("^(?!test).*@.*$", "me@x.com", True),
    ("^(?=.*[0-9]).+$", "abc1", True),
    ("^(?!.*\\.\\.)[^@\\s]+@[^@\\s]+$", "a@b.com", True),  # the email pattern of real TD files
    ("^(?!.*\\.\\.)[^@\\s]+@[^@\\s]+$", "a..b@c.com", False),
    ("^(?!.*\\.\\.)[^@\\s]+@[^@\\s]+$", "a@b.com\r\n", True),  # $ before a final \r\n
    ("(?<=@)example", "me@example", True),
    ("(?<!x)y", "xy", False),
    ("(?<=a|bc)d", "bcd", True),  # bounded lookbehind of unequal lengths
    ("^(a)\\1$", "aa", True),
    ("^(\\w)\\1$", "ab", False),
    ("^(a)\\11$", "aa1", True),  # Java: \1 then "1" (there is no group 11)
    ("^(?<x>[a-z])\\k<x>$", "bb", True),
    ("^a*+a$", "aaa", False),  # possessive: gives nothing back
    ("^a++$", "aaa", True),
    ("^(?>a+)b$", "aab", True),
    ("^(?>a|ab)c$", "abc", False),  # atomic: no backtracking into the group
    ("abc\\Z", "abc\n", True),
    ("abc\\Z", "abc\n\n", False),
    ("a\\Z", "a\r\n", True),
    ("\\r\\Z", "\r\n", False),  # never between \r and \n
    ("\\Gab", "ab", True),
    ("\\Gab", "xab", False),
    # Java 17's \b: letters and digits of every script are word characters (RE2: ASCII only)
    ("\\bcafé\\b", "café", True),
    ("\\bcat\\b", "écat", False),
    ("\\bcat\\b", "the cat sat", True),
    ("\\b\\d+\\b", "a1", False),
    ("\\Bé", "aé", True),
    ("\\bx", "e\u0301x", False),  # a non-spacing mark after a letter is a word character
    ("\\bx", "_\u0301x", True),  # ... but not after "_"
    ("\\b\u0663", "a\u0663", False),  # ARABIC-INDIC DIGIT THREE is a digit
    # (?m): ^ and $ at Java's line terminators, not inside \r\n, ^ never at the very end
    ("(?m)^b$", "a\rb", True),
    ("(?m)^b$", "a\r\nb\r\n", True),
    ("(?m)^$", "", False),
    ("(?m)^$", "a\n", False),
    ("(?m)^$", "a\n\n", True),
    ("(?m)a$", "a\nb", True),
    ("(?m)^\\nb", "a\r\nb", False),
    ("(?m)\\r$", "a\r\n", False),
    # the rest of the pattern keeps Java's meaning around such a construct
    ("(?i)^(?!x)abc$", "ABC", True),
    ("(?i)^(?=.)k$", "\u212a", False),  # ASCII folding only: not the Kelvin sign
    ("^(?=.)[\\W]+$", "é", True),
    ("^(?=.)\\w+$", "é", False),
    ("^(?=.)\\D$", "é", True),
    ("(?=.)\\d", "\u0663", False),
    ("^(?=.)\\p{L}+$", "é", True),
    ("^(?=.)\\p{Alpha}+$", "é", False),
    ("^(?=.).$", "\u2028", False),
    ("(?s)^(?=.).$", "\u2028", True),
    ("^(?=.)\\x{e9}$", "é", True),
    ("^(?=.)a\\s$", "a\x0b", True),
]

# Constructs nothing on DuckDB evaluates: refused there at load, evaluated by Spark (and Treasure Data).
JAVA_ONLY_CASES: list[tuple[str, str, bool, str]] = [
    ("(?iu)^é$", "É", True, "(?u) Unicode case folding"),
    ("(?x)^a b$", "ab", True, "(?x) comments mode"),
    ("(?U)^\\w$", "é", True, "(?U) Unicode character classes"),
    ("(?d)^a.$", "a\r", True, "(?d) Unix lines mode"),
    ("(?i)^\\p{Lower}$", "A", True, "\\p{Lower} under (?i)"),
    ("(?i)^(a)\\1$", "aA", True, "backreference under (?i)"),
    ("^\\2(a)(b)$", "ab", False, "backreference \\2 to a group not opened before it"),
    ("^[a-c[x-z]]$", "y", True, "nested character class (class union or intersection)"),
]


def evaluate(wh: WarehouseResource, cases: list[tuple[str, str]]) -> list[bool]:
    """(pattern, value) rows evaluated as the unification evaluates valid_regexp: the pattern as
    evaluated and its RE2 flag as rows, the dialect's match expression."""
    ref = TableRef("regex_semantics", "cases")
    wh.ensure_schema(ref.schema)
    frame = pd.DataFrame(
        [
            {"case_id": i, "pattern": pattern_for(p), "re2_lacks": re2_lacks(p), "value": v}
            for i, (p, v) in enumerate(cases)
        ]
    ).astype({"case_id": "int64", "pattern": "string", "re2_lacks": "bool", "value": "string"})
    wh.replace_with_dataframe(ref, frame)
    matched = valid_regexp_matches("value", "pattern", "re2_lacks")
    out = wh.fetch(f"SELECT case_id, {matched} AS matched FROM {ref.sql} ORDER BY case_id")
    return [bool(v) for v in out["matched"]]


EPOCH_CASES = [
    # (as bigint, as text): the same instant
    (1700000000, "1700000000", pd.Timestamp("2023-11-14 22:13:20")),
    (0, "0", pd.Timestamp("1970-01-01 00:00:00")),
    (None, "2024-01-02 03:04:05", pd.Timestamp("2024-01-02 03:04:05")),
    (None, "not a time", None),
]


def evaluate_times(wh: WarehouseResource) -> pd.DataFrame:
    ref = TableRef("regex_semantics", "times")
    wh.ensure_schema(ref.schema)
    frame = pd.DataFrame([{"case_id": i, "epoch": e, "text": t} for i, (e, t, _) in enumerate(EPOCH_CASES)]).astype(
        {"case_id": "int64", "epoch": "Int64", "text": "string"}
    )
    wh.replace_with_dataframe(ref, frame)
    sql = (
        f"SELECT case_id, {time_expr('t.epoch')} AS from_bigint, {time_expr('t.text')} AS from_text "
        f"FROM {ref.sql} AS t ORDER BY case_id"
    )
    return wh.fetch(sql)


def assert_times(df: pd.DataFrame) -> None:
    for (epoch, _, expected), bigint, text in zip(EPOCH_CASES, df["from_bigint"], df["from_text"]):
        if expected is None:
            assert pd.isna(text)
            continue
        assert pd.Timestamp(text).tz_localize(None) == expected
        if epoch is not None:
            assert pd.Timestamp(bigint).tz_localize(None) == expected


# ---------------------------------------------------------------------------- DuckDB


@pytest.fixture
def duck():
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(path=str(Path(d) / "semantics.duckdb"))
        with wh.session():
            yield wh


def evaluated_cases() -> tuple[list[tuple[str, str]], list[bool]]:
    """Every pattern DuckDB evaluates (RE2 as rewritten, or java_regex_matches) with Java's answer."""
    cases = [(p, v, java) for p, v, java, _ in REGEX_CASES] + JAVA_SPELLING_CASES + JAVA_FALLBACK_CASES
    return [(p, v) for p, v, _ in cases], [java for *_, java in cases]


def test_valid_regexp_on_duckdb_means_what_it_means_on_treasure_data(duck):
    cases, expected = evaluated_cases()
    got = evaluate(duck, cases)
    assert got == expected, [(c, e) for c, g, e in zip(cases, got, expected) if g != e]


def test_without_the_rewrite_duckdb_would_differ_on_the_non_portable_rows(duck):
    # The control: RE2 as it is gives another answer exactly where the table says so.
    ref = TableRef("regex_semantics", "raw")
    duck.ensure_schema(ref.schema)
    frame = pd.DataFrame([{"i": i, "p": p, "v": v} for i, (p, v, _, _) in enumerate(REGEX_CASES)]).astype(
        {"i": "int64", "p": "string", "v": "string"}
    )
    duck.replace_with_dataframe(ref, frame)
    raw = [bool(x) for x in duck.fetch(f"SELECT regexp_matches(v, p) AS m FROM {ref.sql} ORDER BY i")["m"]]
    differs = [raw[i] != java for i, (_, _, java, _) in enumerate(REGEX_CASES)]
    assert differs == [not portable for *_, portable in REGEX_CASES]


@pytest.mark.parametrize(("pattern", "value", "java"), JAVA_SPELLING_CASES)
def test_without_the_rewrite_duckdb_would_reject_java_spellings(pattern, value, java):
    con = duckdb.connect()
    with pytest.raises(duckdb.Error, match="(?i)invalid|escape|perl|class"):
        con.execute("SELECT regexp_matches(?, ?)", [value, pattern]).fetchone()
    assert con.execute("SELECT regexp_matches(?, ?)", [value, pattern_for(pattern)]).fetchone()[0] is java


def test_the_fallback_rows_are_the_ones_re2_lacks_and_the_rest_stay_on_re2():
    assert all(re2_lacks(p) for p, _, _ in JAVA_FALLBACK_CASES)
    assert not any(re2_lacks(p) for p, *_ in [*REGEX_CASES, *JAVA_SPELLING_CASES])
    # Without the fallback RE2 refuses them, or (\b) answers otherwise.
    con = duckdb.connect()
    with pytest.raises(duckdb.Error):
        con.execute("SELECT regexp_matches(?, ?)", ["me@x.com", "^(?!test).*@.*$"]).fetchone()
    assert con.execute("SELECT regexp_matches(?, ?)", ["café", "\\bcafé\\b"]).fetchone()[0] is False


def test_every_duckdb_connection_has_the_java_function(duck, tmp_path):
    assert duck.fetch("SELECT java_regex_matches('a..b@c.com', '^(?!.*\\.\\.).+$') AS m")["m"][0] == False  # noqa: E712
    assert duck.fetch("SELECT java_regex_matches(NULL, 'a') AS m")["m"].isna().all()
    # A read-only connection (`cdp-assets validate`) has it too.
    ro = DuckDBWarehouse(path=str(tmp_path / "ro.duckdb"))
    with ro.session():
        ro.ensure_schema("s")
    ro = DuckDBWarehouse(path=str(tmp_path / "ro.duckdb"), read_only=True)
    with ro.session():
        # é is a word character in Java 17 (RE2's \b would say True)
        assert bool(ro.fetch("SELECT java_regex_matches('écat', '\\bcat') AS m")["m"][0]) is False


@pytest.mark.parametrize(("pattern", "construct"), sorted({(p, c) for p, _, _, c in JAVA_ONLY_CASES}))
def test_duckdb_refuses_java_only_constructs_at_load_naming_key_construct_and_engine(pattern, construct, tmp_path):
    assert set(unsupported_constructs(pattern, "duckdb")) == {construct}
    assert (
        unsupported_constructs(pattern, "databricks") == [] and unsupported_constructs(pattern, "treasure_data") == []
    )
    from cdp_assets_tests.config.test_config import valid_config, write_yaml

    cfg = valid_config(tmp_path)
    cfg["unification"]["keys"][0]["valid_regexp"] = pattern
    with pytest.raises(ConfigError) as exc:
        load_config(write_yaml(tmp_path / "cdp.yml", cfg))
    message = str(exc.value)
    assert "unification.keys[0].valid_regexp:" in message and "'email'" in message
    assert construct in message and "duckdb engine" in message, message
    # The same file loads for an engine whose regular expressions are Java-style.
    cfg["engine"]["kind"] = "databricks"
    assert load_config(write_yaml(tmp_path / "cdp.yml", cfg)).unification.keys[0].valid_regexp == pattern


def test_portable_patterns_are_never_refused():
    for pattern, *_ in [*REGEX_CASES, *JAVA_SPELLING_CASES]:
        assert unsupported_constructs(pattern, "duckdb") == [], pattern


def test_every_java_pattern_passes_the_syntax_check_at_load():
    # Refusing a construct is the engine check's job (it names the construct); the syntax check
    # must accept every pattern Java accepts.
    cases = [*REGEX_CASES, *JAVA_SPELLING_CASES, *JAVA_FALLBACK_CASES, *JAVA_ONLY_CASES, ("\\x{2028}\\pL\\G", "", True)]
    for pattern, *_ in cases:
        check_syntax(pattern)


def test_a_pattern_refused_on_duckdb_is_evaluated_as_written_elsewhere():
    # Java-style engines read it as written (DuckDB's java_regex_matches too).
    for pattern, *_ in [*JAVA_FALLBACK_CASES, *JAVA_ONLY_CASES]:
        assert pattern_for(pattern) == pattern


def test_epoch_time_bigint_and_text_on_duckdb(duck):
    assert_times(evaluate_times(duck))


# ---------------------------------------------------------------------------- local Spark (Java)


@pytest.fixture(scope="module")
def spark():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        wh = local_spark_warehouse(d)
        wh.verify_connection()
        with wh.session():
            yield wh


@pytest.mark.spark
def test_valid_regexp_and_epoch_time_on_local_spark(spark):
    cases, expected = evaluated_cases()
    cases += [(p, v) for p, v, _, _ in JAVA_ONLY_CASES]
    expected += [java for _, _, java, _ in JAVA_ONLY_CASES]
    got = evaluate(spark, cases)
    assert got == expected, [c for c, g, e in zip(cases, got, expected) if g != e]
    assert_times(evaluate_times(spark))


# ---------------------------------------------------------------------------- the Treasure Data fake


def test_valid_regexp_and_epoch_time_on_the_treasure_data_fake():
    from cdp_assets.engines.treasure_data import TreasureDataWarehouse
    from cdp_assets_tests.fakes.td_api import FakeTreasureData

    key = "4321/" + "9f3c" * 10
    fake = FakeTreasureData(key)
    url = fake.start()
    try:
        wh = TreasureDataWarehouse(
            apikey=key, endpoint=url, database="cdp_src", job_poll_seconds=0.01, retry_backoff_seconds=0.01
        )
        # The fake runs Trino's SQL on DuckDB: the patterns as evaluated give Java's answers there
        # too, as on Treasure Data (a pattern from a table goes through java_regex_matches there;
        # the constructs nothing on DuckDB evaluates are the fake's limit, not TD's).
        cases, expected = evaluated_cases()
        got = evaluate(wh, cases)
        assert got == expected, [(c, e) for c, g, e in zip(cases, got, expected) if g != e]
        assert_times(evaluate_times(wh))
    finally:
        fake.stop()


# ---------------------------------------------------------------------------- ids merged from ids


def unify_existing_tables(wh: WarehouseResource, loaded, more_contacts: tuple = ()) -> dict[str, pd.DataFrame]:
    """The example on existing tables, run as the loop op runs it: each id after the ids it
    merges by, then the enriched tables. Returns the enriched tables."""
    from cdp_assets.assets.unification import enrich_tables, enriched_ref
    from cdp_assets.sql import unification as u
    from cdp_assets.unify.runner import config_fingerprint, prepare_inputs, run_loop

    unify = loaded.unification
    site = pd.DataFrame(
        [
            ("c1", "g1", "a@x.com", 1700000000),
            ("c2", "g1", "", 1700000100),
            ("c3", "g2", "a@x.com", 1700000200),
            ("c4", "g3", None, 1700000300),
        ],
        columns=["td_client_id", "td_global_id", "email", "time"],
    ).astype({"td_client_id": "string", "td_global_id": "string", "email": "string", "time": "int64"})
    contacts = [("a@x.com", "1700000050"), ("b@x.com", "1700000400"), *more_contacts]
    contacts = pd.DataFrame(contacts, columns=["email", "time"]).astype("string")
    wh.ensure_schema("acme_crm")
    wh.replace_with_dataframe(TableRef("acme_crm", "site_aaa"), site)
    wh.replace_with_dataframe(TableRef("acme_crm", "contacts"), contacts)
    plans = u.build_id_plans(loaded)
    for plan in plans:
        prepare_inputs(wh, plan, unify)
        assert run_loop(wh, plan, fingerprint=config_fingerprint(plan, unify)).converged
    out = {}
    for alias, table in enrich_tables(plans).items():
        ref = enriched_ref(unify.schema, alias)
        wh.build_table(ref, u.enriched_sql(plans, table, wh.columns(table.ref)))
        out[alias] = wh.fetch(f"SELECT * FROM {ref.sql}")
    return out


def partition(df: pd.DataFrame, id_col: str, row_key: str) -> set[frozenset]:
    groups: dict = {}
    for key, cid in zip(df[row_key], df[id_col]):
        if cid is not None and not pd.isna(cid):
            groups.setdefault(cid, set()).add(key)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.spark
def test_ids_merged_from_ids_on_local_spark_equal_duckdb(spark, duck, tmp_path):
    from cdp_assets_tests.unify.test_td_compat import unification_only_project

    loaded = load_config(unification_only_project(tmp_path))
    duck_out = unify_existing_tables(duck, loaded)
    spark_out = unify_existing_tables(spark, loaded)
    for cid in ("browser_id", "email_id", "marketing_id", "household_id"):
        assert partition(duck_out["site_aaa"], cid, "td_client_id") == partition(
            spark_out["site_aaa"], cid, "td_client_id"
        ), cid
        # canonical ids are a function of the leader: the same values on both engines
        assert sorted(duck_out["site_aaa"][cid].dropna()) == sorted(spark_out["site_aaa"][cid].dropna()), cid
    marketing = partition(duck_out["site_aaa"], "marketing_id", "td_client_id")
    assert frozenset({"c1", "c2", "c3"}) in marketing


def test_a_td_file_with_a_lookahead_email_pattern_loads_and_runs_on_duckdb(duck, tmp_path):
    from cdp_assets_tests.unify.test_td_compat import TEMPLATE_UNIFY, unification_only_project

    text = TEMPLATE_UNIFY.replace('valid_regexp: ".+@.+"', "valid_regexp: '^(?!.*\\.\\.)[^@\\s]+@[^@\\s]+$'")
    assert text != TEMPLATE_UNIFY
    loaded = load_config(unification_only_project(tmp_path, unify_text=text))
    out = unify_existing_tables(duck, loaded, more_contacts=(("a..b@x.com", "1700000500"),))
    email_id = dict(zip(out["contacts"]["email"], out["contacts"]["email_id"]))
    assert pd.isna(email_id["a..b@x.com"])  # two dots in a row: not a valid email for the lookahead
    assert not pd.isna(email_id["a@x.com"]) and not pd.isna(email_id["b@x.com"])
