"""The phone and email rules against their oracles, `phonenumbers` and `email-validator`.

Each test stages a generated corpus on DuckDB in one query and compares every output with what
the oracle says. The agreement figures are printed (run with ``-s``) and recorded in
docs/staging.md with the known disagreements; the thresholds below are the issue's.
"""

from __future__ import annotations

import functools
import random

import email_validator
import pandas as pd
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType

from cdp_assets.config.models import StagingRule
from cdp_assets.config.phone_regions import phone_country_codes, phone_regions, region_names
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import SPECIAL_USE_DOMAINS, staging_sql

SRC = TableRef("oracle_src", "numbers")
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
]


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> DuckDBWarehouse:
    w = DuckDBWarehouse(path=str(tmp_path_factory.mktemp("oracles") / "wh.duckdb"))
    with w.session():
        yield w


def oracle_phone(raw: str, region: str) -> str | None:
    """E.164 digits when phonenumbers parses ``raw`` for ``region`` into a valid number."""
    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(n, PhoneNumberFormat.E164)[1:] if phonenumbers.is_valid_number(n) else None


def stage_phones(wh: DuckDBWarehouse, rows: list[tuple[str, str]]) -> list[str | None]:
    """Our rule's output for each (default region, raw number), in order."""
    df = pd.DataFrame({"n": range(len(rows)), "region": [r for r, _ in rows], "phone": [p for _, p in rows]})
    df = df.astype({"region": "string", "phone": "string"})
    wh.drop(SRC)
    wh.write_dataframe(SRC, df)
    out: dict[int, str | None] = {}
    for region in sorted({r for r, _ in rows}):
        sql = staging_sql(
            SRC,
            ["n", "region", "phone"],
            {"phone": StagingRule(rule="phone", columns=["phone"], default_region=region)},
        )
        got = wh.fetch(f"SELECT n, standardized_phone FROM ({sql}) AS s WHERE region = '{region}'")
        out.update({int(n): (None if pd.isna(v) else v) for n, v in zip(got["n"], got["standardized_phone"])})
    return [out[i] for i in range(len(rows))]


def _idd(region: str) -> str | None:
    md = PhoneMetadata.metadata_for_region(region)
    prefix = md.preferred_international_prefix or md.international_prefix
    return prefix if prefix and prefix.isdigit() else None


def phone_corpus(seed: int = 11) -> list[tuple[str, str]]:
    """(default region, raw) pairs: every region's example numbers of every type, written
    nationally, internationally (+, the region's own international prefix, and read from
    another region), in E.164 and with mutated digits; and the cases of issue 11."""
    rng = random.Random(seed)
    # Every default region costs one query: a quarter of them (62 regions) plus the large
    # markets; every region's numbers are still read in international form.
    everyone = region_names()
    regions = sorted(
        set(everyone[::4]) | {"US", "GB", "DE", "FR", "JP", "AU", "BR", "IN", "CN", "IT", "ES", "MX", "AR", "RU"}
    )
    rows: list[tuple[str, str]] = [
        ("US", "+44 (0) 20 7946 0958"),
        ("DE", "030 12345678"),
        ("JP", "03-1234-5678"),
        ("GB", "0800 123 4567"),
        ("US", "001 212 555 0100"),
        ("US", "(212) 555-0100"),
    ]
    for number_region in everyone:
        for t in TYPES:
            ex = phonenumbers.example_number_for_type(number_region, t)
            if ex is None:
                continue
            region = number_region if number_region in regions else rng.choice(regions)
            other = rng.choice(regions)
            e164 = phonenumbers.format_number(ex, PhoneNumberFormat.E164)
            rows += [
                (region, phonenumbers.format_number(ex, PhoneNumberFormat.INTERNATIONAL)),
                (other, phonenumbers.format_number(ex, PhoneNumberFormat.INTERNATIONAL)),
                (other, e164),
            ]
            if region == number_region:
                rows.append((region, phonenumbers.format_number(ex, PhoneNumberFormat.NATIONAL)))
            if (idd := _idd(other)) is not None:
                rows.append((other, f"{idd} {e164[1:]}"))
            # Mutations: a changed digit, one digit more or less; phonenumbers decides validity.
            digits = str(ex.national_number)
            i = rng.randrange(len(digits))
            changed = digits[:i] + str(rng.randrange(10)) + digits[i + 1 :]
            rows += [
                (region, f"+{ex.country_code} {changed}"),
                (region, f"+{ex.country_code} {digits}{rng.randrange(10)}"),
                (region, f"+{ex.country_code} {digits[:-1]}"),
            ]
    return rows


def agreement(rows, got) -> tuple[dict, list]:
    valid_total = valid_agree = invalid_total = invalid_agree = 0
    disagreements = []
    for (region, raw), ours in zip(rows, got):
        expected = oracle_phone(raw, region)
        if expected is not None:
            valid_total += 1
            valid_agree += ours == expected
        else:
            invalid_total += 1
            invalid_agree += ours is None
        if ours != expected:
            disagreements.append((region, raw, ours, expected))
    figures = {
        "valid": valid_total,
        "valid_agreement_pct": round(100.0 * valid_agree / valid_total, 2),
        "invalid": invalid_total,
        "invalid_agreement_pct": round(100.0 * invalid_agree / max(invalid_total, 1), 2),
    }
    return figures, disagreements


def test_shipped_phone_table_is_what_regeneration_writes(tmp_path, capsys):
    from cdp_assets.cli import main
    from cdp_assets.config.phone_regions import COUNTRY_CODES_FILE, REGIONS_FILE

    assert main(["regenerate-phone-regions", "--out", str(tmp_path)]) == 0
    assert "245 regions" in capsys.readouterr().out
    for shipped in (REGIONS_FILE, COUNTRY_CODES_FILE):
        assert (tmp_path / shipped.name).read_text() == shipped.read_text(), f"{shipped.name} is stale: regenerate it"


def test_phone_table_covers_phonenumbers_metadata():
    assert set(region_names()) == set(phonenumbers.SUPPORTED_REGIONS)
    codes = {str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert set(phone_country_codes()) == codes
    assert phone_regions()["GB"].country_code == "44" and phone_country_codes()["44"].trunk_prefix == "0"
    assert phone_country_codes()["39"].trunk_prefix == ""  # Italy keeps its leading 0


@pytest.mark.slow
def test_phone_corpus_agrees_with_phonenumbers(wh):
    rows = phone_corpus()
    assert len({r for r, _ in rows}) >= 50
    figures, disagreements = agreement(rows, stage_phones(wh, rows))
    print(f"\nphone corpus against phonenumbers {phonenumbers.__version__}: {figures}")
    for d in disagreements[:40]:
        print("  disagreement (default region, raw, ours, phonenumbers):", d)
    assert figures["valid"] > 2000
    assert figures["valid_agreement_pct"] >= 99.0, disagreements[:20]
    assert figures["invalid_agreement_pct"] >= 95.0, [d for d in disagreements if d[3] is None][:20]


@functools.cache
def national_form_is_prefix_and_number(region: str) -> bool:
    """Whether ``region`` writes its fixed-line and mobile numbers nationally as its trunk prefix (or
    nothing) and the national number: the national form the rule reads. Belarus (`8 0152 ...`, parsed
    with `0|80?`) and Argentina's mobiles (`011 15-...`, a transform rule) do not: known disagreements
    (docs/staging.md, "Agreement with phonenumbers"), pinned by a strict xfail below."""
    prefix = PhoneMetadata.metadata_for_region(region).national_prefix or ""
    for kind in TYPES[:2]:
        ex = phonenumbers.example_number_for_type(region, kind)
        if ex is None:
            continue
        lead = "0" * (ex.number_of_leading_zeros or 1) if ex.italian_leading_zero else ""
        written = "".join(c for c in phonenumbers.format_number(ex, PhoneNumberFormat.NATIONAL) if c.isdigit())
        if written not in (lead + str(ex.national_number), prefix + lead + str(ex.national_number)):
            return False
    return True


def test_the_national_forms_the_rule_does_not_read_are_only_the_known_ones():
    assert sorted(r for r in region_names() if not national_form_is_prefix_and_number(r)) == ["AR", "BY"]


@pytest.mark.xfail(strict=True, reason="Belarus's national form 8 0...: phonenumbers parses its prefix with 0|80?")
def test_belarus_national_form_is_read_as_phonenumbers_reads_it(wh):
    written = "8 0152 45-09-11"
    assert stage_phones(wh, [("BY", written)]) == [oracle_phone(written, "BY")]


@st.composite
def written_number(draw, default_region: str):
    """A valid example number with random digits after its leading ones, in random dress:
    national (of the default region, where it is the form the rule reads) or international (of any
    region)."""
    form = draw(st.sampled_from(["national", "intl", "intl_compact"]))
    if form == "national" and not national_form_is_prefix_and_number(default_region):
        form = "intl"
    region = default_region if form == "national" else draw(st.sampled_from(region_names()))
    ex = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES[:2]))) or phonenumbers.example_number(
        region
    )
    if ex is None:
        return "+1 212 555 0100"
    digits = str(ex.national_number)
    keep = draw(st.integers(min_value=min(3, len(digits)), max_value=len(digits)))
    national = digits[:keep] + draw(
        st.text(alphabet="0123456789", min_size=len(digits) - keep, max_size=len(digits) - keep)
    )
    sep = draw(st.sampled_from([" ", "-", ".", " / "]))
    if form == "national":
        parsed = phonenumbers.parse(f"+{ex.country_code}{national}", region)
        return phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    if form == "intl":
        return f"+{ex.country_code} {sep.join([national[:3], national[3:6], national[6:]]).strip(sep)}"
    return f"+{ex.country_code}{national}"


@st.composite
def batches(draw):
    """One default region (one query) and 80 numbers written for it."""
    region = draw(st.sampled_from(region_names()))
    return [(region, draw(written_number(region))) for _ in range(80)]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(batches())
def test_phone_property_agrees_with_phonenumbers_on_valid_numbers(wh, rows):
    got = stage_phones(wh, rows)
    expected = [oracle_phone(p, r) for r, p in rows]
    wrong = [(r, p, o, e) for (r, p), o, e in zip(rows, got, expected) if e is not None and o != e]
    valid = sum(e is not None for e in expected)
    # At most one miss in a batch (the corpus test holds the 99% figure over thousands).
    assert len(wrong) <= max(1, valid // 100), wrong


# ---------------------------------------------------------------------------- email

EMAIL_SRC = TableRef("oracle_src", "emails")


def oracle_email(raw: str) -> str | None:
    """The trimmed, lowercased address when email-validator accepts it, else None.

    (email-validator's own normalised form turns an IDNA domain into Unicode; the rule keeps
    what was written, lowercased, so acceptance is what is compared.)"""
    try:
        email_validator.validate_email(raw.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return raw.strip().lower()


def stage_emails(wh: DuckDBWarehouse, values: list[str]) -> list[str | None]:
    wh.drop(EMAIL_SRC)
    wh.write_dataframe(EMAIL_SRC, pd.DataFrame({"n": range(len(values)), "email": values}).astype({"email": "string"}))
    sql = staging_sql(EMAIL_SRC, ["n", "email"], {"email": StagingRule(rule="email", columns=["email"])})
    got = wh.fetch(f"SELECT n, standardized_email FROM ({sql}) AS s ORDER BY n")
    return [None if pd.isna(v) else v for v in got["standardized_email"]]


_LOCAL_CHARS = "abcXYZ019.!#$%&'*+/=?^_`{|}~- \"@(),:;<>[]\\é"
_DOMAIN_CHARS = "abcXYZ019.-_é"


@st.composite
def emails(draw):
    """Plausible and broken addresses: dots and hyphens in the wrong places, special
    characters, special-use and numeric top-level domains, long parts, non-ASCII."""
    local = draw(
        st.one_of(
            st.text(alphabet=_LOCAL_CHARS, min_size=0, max_size=12),
            st.from_regex(r"[a-z]{1,8}(\.[a-z0-9+_-]{1,6}){0,2}", fullmatch=True),
            st.just("a" * 65),
            st.just("a" * 64),
        )
    )
    labels = draw(
        st.lists(
            st.one_of(
                st.text(alphabet=_DOMAIN_CHARS, min_size=0, max_size=8),
                st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True),
            ),
            min_size=1,
            max_size=3,
        )
    )
    tld = draw(
        st.sampled_from(["com", "co", "c", "1", "c1", "io", "test", "local", "invalid", "xn--p1ai", "museum", "", "-x"])
    )
    return f"{local}@{'.'.join([*labels, tld])}".replace("@.", draw(st.sampled_from(["@.", "@"])))


def test_special_use_domains_match_email_validator():
    assert set(SPECIAL_USE_DOMAINS) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _email_agreement(values, got):
    agree = sum((o == oracle_email(v)) for v, o in zip(values, got))
    ascii_values = [(v, o) for v, o in zip(values, got) if v.isascii()]
    ascii_agree = sum((o == oracle_email(v)) for v, o in ascii_values)
    return agree, ascii_agree, len(ascii_values)


def test_email_corpus_agrees_with_email_validator(wh):
    rng = random.Random(7)
    pieces = ["a", "b.c", "x+y", "o'brien", "first.last", "-", ".", "..", "_", "1", "é", "ü", "\"q\"", "a b"]
    domains = [
        "example.com",
        "x.co.uk",
        "1.2.com",
        "a-b.io",
        "-x.com",
        "x-.com",
        "x..com",
        "x.test",
        "x.local",
        "b.c",
        "b.c1",
        "b.123",
        "localhost",
        "xn--bcher-kva.com",
        "bücher.de",
        "x_y.com",
        "[1.2.3.4]",
        "x.com.",
        "a.b-c",
    ]
    values = [f"{rng.choice(pieces)}{rng.choice(pieces)}@{rng.choice(domains)}" for _ in range(3000)]
    values += [f"{'a' * n}@x.com" for n in (63, 64, 65)] + [
        f"a@{'b' * 63}.com",
        f"a@{'b' * 64}.com",
        f"a@{'b.' * 124}com",
    ]
    got = stage_emails(wh, values)
    agree, ascii_agree, n_ascii = _email_agreement(values, got)
    differences = sorted({(v, o, oracle_email(v)) for v, o in zip(values, got) if o != oracle_email(v)}, key=str)
    print(
        f"\nemail corpus against email-validator {email_validator.__version__}: "
        f"{agree}/{len(values)} agree ({100.0 * agree / len(values):.2f}%); ASCII "
        f"only {ascii_agree}/{n_ascii} ({100.0 * ascii_agree / n_ascii:.2f}%)"
    )
    for d in differences[:30]:
        print("  difference (raw, ours, email-validator):", d)
    assert ascii_agree == n_ascii, [d for d in differences if d[0].isascii()][:20]
    # Non-ASCII addresses (SMTPUTF8, internationalised domains) are refused by the SQL and
    # accepted by email-validator: the one documented difference.
    assert all(not v.isascii() and o is None for v, o, _ in differences)


def test_hyphens_in_a_domain_labels_third_and_fourth_characters_are_refused_as_email_validator_does(wh):
    """IDNA reserves them for Punycode; found by the property test below (`99@cb--ZX.com`)."""
    values = [
        "99@cb--ZX.com",
        "a@sub.cb--zx.com",
        "a@x.ab--cd",
        "a@a---b.com",
        "a@a--b.com",
        "a@abc--d.com",
        "ab.cd--x@example.com",
        "a@xn--bcher-kva.com",
        "a@example.xn--p1ai",
    ]
    got = stage_emails(wh, values)
    assert got == [oracle_email(v) for v in values]
    assert got[:4] == [None] * 4 and all(got[4:])


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(emails(), min_size=100, max_size=100))
def test_email_property_agrees_with_email_validator_on_ascii(wh, values):
    got = stage_emails(wh, values)
    wrong = [(v, o, oracle_email(v)) for v, o in zip(values, got) if v.isascii() and v.strip() and o != oracle_email(v)]
    assert not wrong


# ---------------------------------------------------------------------------- number, boolean, hash

import re  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
from decimal import Decimal  # noqa: E402

from cdp_assets.config.models import DEFAULT_NULL_TOKENS  # noqa: E402
from cdp_assets.sql.staging import FALSE_TOKENS, TRUE_TOKENS  # noqa: E402

VALUES_SRC = TableRef("oracle_src", "values")


def stage_values(wh: DuckDBWarehouse, values: list[str | None], rule: StagingRule, output: str) -> list:
    """Our rule's output for each value, in order (one query)."""
    wh.drop(VALUES_SRC)
    wh.write_dataframe(VALUES_SRC, pd.DataFrame({"n": range(len(values)), "v": values}).astype({"v": "string"}))
    sql = staging_sql(VALUES_SRC, ["n", "v"], {"x": rule})
    got = wh.fetch(f"SELECT n, {output} FROM ({sql}) AS s ORDER BY n")
    return [None if pd.isna(v) else v for v in got[output]]


@st.composite
def written_amounts(draw):
    """(text, true value, decimal_comma): a Decimal written as people write amounts: a currency
    symbol or code before or after, thousands separators, a decimal point or comma, spaces."""
    value = Decimal(draw(st.integers(min_value=-(10**11), max_value=10**11))) / (10 ** draw(st.integers(0, 4)))
    comma = draw(st.booleans())
    sep, point = (".", ",") if comma else (",", ".")
    sign, digits = ("-" if value < 0 else ""), f"{abs(value):f}"
    whole, _, frac = digits.partition(".")
    if draw(st.booleans()):  # thousands separators
        whole = f"{int(whole):,}".replace(",", sep)
    text = sign + whole + (point + frac if frac else "")
    symbol = draw(st.sampled_from(["", "$", "€", "£", "¥", "USD ", " EUR", "CHF"]))
    text = symbol + text if draw(st.booleans()) else text + symbol
    return draw(st.sampled_from(["", " ", "  "])) + text + draw(st.sampled_from(["", " "])), value, comma


def oracle_number(text: str, decimal_comma: bool) -> Decimal | None:
    """The documented reading with Python's Decimal: keep digits, ',', '.', '-'; drop the
    thousands separator; read the decimal separator as '.'; a well-formed number or nothing."""
    if text is None or text.strip().upper() in DEFAULT_NULL_TOKENS:
        return None
    kept = "".join(ch for ch in text.strip() if ch.isascii() and (ch.isdigit() or ch in ",.-"))
    plain = kept.replace(".", "").replace(",", ".") if decimal_comma else kept.replace(",", "")
    if not re.fullmatch(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)", plain):
        return None
    return Decimal(plain)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    st.lists(written_amounts(), min_size=60, max_size=60),
    st.lists(st.text(alphabet="0123456789.,-$€ aE", max_size=8), max_size=30),
)
def test_number_property_agrees_with_decimal(wh, amounts, junk):
    for comma in (False, True):
        written = [(t, v) for t, v, c in amounts if c == comma]
        texts = [t for t, _ in written] + junk
        got = stage_values(wh, texts, StagingRule(rule="number", columns=["v"], decimal_comma=comma), "cleaned_x")
        for (text, value), out in zip(written, got):  # the true value of a written amount
            assert out is not None and math.isclose(out, float(value), rel_tol=1e-12, abs_tol=1e-9), (text, value, out)
        for text, out in zip(texts, got):  # any text: the documented reading
            expected = oracle_number(text, comma)
            assert (out is None) == (expected is None), (text, out, expected)
            assert expected is None or math.isclose(out, float(expected), rel_tol=1e-12, abs_tol=1e-9), (
                text,
                out,
                expected,
            )


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(written_amounts(), min_size=60, max_size=60), st.integers(0, 3))
def test_number_rounding_property(wh, amounts, decimals):
    texts = [t for t, _, c in amounts if not c]
    values = [v for _, v, c in amounts if not c]
    got = stage_values(wh, texts, StagingRule(rule="number", columns=["v"], decimals=decimals), "cleaned_x")
    for text, value, out in zip(texts, values, got):
        # rounded to `decimals` digits (a binary double's half may go either way)
        assert abs(out - float(value)) <= 0.5 * 10**-decimals * (1 + 1e-9) + 1e-9 * abs(float(value)), (text, out)
        assert math.isclose(out, round(out, decimals), rel_tol=1e-12, abs_tol=1e-9), (text, out)


def oracle_boolean(text: str | None) -> bool | None:
    t = None if text is None else text.strip(" ").upper()
    return True if t in TRUE_TOKENS else False if t in FALSE_TOKENS else None


@st.composite
def written_flags(draw):
    token = draw(
        st.sampled_from(
            [
                "true",
                "false",
                "t",
                "f",
                "yes",
                "no",
                "y",
                "n",
                "1",
                "0",
                "on",
                "off",
                "maybe",
                "2",
                "ja",
                "null",
                "n/a",
                "",
                "yess",
                "o n",
            ]
        )
    )
    token = "".join(ch.upper() if draw(st.booleans()) else ch for ch in token)
    return draw(st.sampled_from(["", " ", "  "])) + token + draw(st.sampled_from(["", " "]))


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    st.lists(st.one_of(written_flags(), st.text(alphabet="yesnotrufalYESNO10 ", max_size=6)), min_size=80, max_size=80)
)
def test_boolean_property_agrees_with_its_token_lists(wh, values):
    got = stage_values(wh, values, StagingRule(rule="boolean", columns=["v"]), "cleaned_x")
    wrong = [
        (v, o, oracle_boolean(v)) for v, o in zip(values, got) if (None if o is None else bool(o)) != oracle_boolean(v)
    ]
    assert not wrong


def _sha256(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def oracle_text_hash(text: str) -> str | None:
    t = text.strip(" ")
    return None if t.upper() in DEFAULT_NULL_TOKENS else _sha256(t.lower())


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(st.text(alphabet="abcXYZ 019@.+-_éÜñçØ'", max_size=16), min_size=80, max_size=80), emails())
def test_hash_property_agrees_with_hashlib(wh, texts, address):
    got = stage_values(wh, texts, StagingRule(rule="hash", columns=["v"]), "hashed_x")
    assert [(t, o) for t, o in zip(texts, got)] == [(t, oracle_text_hash(t)) for t in texts]
    emails_ = [address, f"  {address.upper()} ", "Foo.Bar@Example.COM"]
    got = stage_values(wh, emails_, StagingRule(rule="hash", columns=["v"], normalize="email"), "hashed_x")
    expected = [_sha256(oracle_email(e)) if e.isascii() else None for e in emails_]
    assert [o for e, o in zip(emails_, got) if e.isascii()] == [x for e, x in zip(emails_, expected) if e.isascii()]


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(batches())
def test_phone_hash_property_agrees_with_hashlib_of_phonenumbers(wh, rows):
    region = rows[0][0]
    texts = [p for _, p in rows]
    got = stage_values(
        wh, texts, StagingRule(rule="hash", columns=["v"], normalize="phone", default_region=region), "hashed_x"
    )
    plain = stage_values(wh, texts, StagingRule(rule="phone", columns=["v"], default_region=region), "standardized_x")
    # the hash of exactly the phone rule's E.164 digits, and those agree with phonenumbers (at most one miss)
    assert got == [_sha256(p) for p in plain]
    expected = [oracle_phone(p, region) for p in texts]
    assert sum(1 for p, e in zip(plain, expected) if e is not None and p != e) <= 1
