"""Staging: standardised identifiers (`standardized_*`), hashes (`hashed_*`), dates
(`*_std`, `*_unixtime`, `*_date`) and cleaned values (`cleaned_*`); docs/staging.md.

Each rule is one SQL expression; a value that cannot be parsed becomes NULL, and the check
counts those (non-empty input, NULL output).
"""

from __future__ import annotations

from dataclasses import dataclass

import re

from cdp_assets.config.models import (
    DEFAULT_NULL_TOKENS,
    METADATA_COLUMNS,
    STANDARDIZING_RULES,
    DedupeOptions,
    DimensionJoin,
    JsonPath,
    StagingRule,
)
from cdp_assets.config.phone_regions import phone_country_codes, phone_regions
from cdp_assets.sql.dialects import TableRef, quote

# Email, written to agree with the `email-validator` package (check_deliverability=False) on
# ASCII addresses; the differences that remain are listed in docs/staging.md. Applied to the
# lowercased value. Local part: dot-atoms of RFC 5322's atext (no leading, trailing or doubled
# dot, no quoting). Domain: labels of letters, digits and inner hyphens, at most 63
# characters, at least two labels, the last one ending in a letter. The special-use names of
# RFC 6761 (and email-validator's list) are refused separately. Portable: RE2, Java and Trino
# regex all accept it.
_ATEXT = "a-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
EMAIL_PATTERN = f"^[{_ATEXT}]+([.][{_ATEXT}]+)*@({_LABEL}[.])+([a-z]|[a-z0-9][a-z0-9-]{{0,61}}[a-z])$"
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
EMAIL_SPECIAL_USE_PATTERN = f"[.@]({'|'.join(SPECIAL_USE_DOMAINS)})$"
# IDNA reserves hyphens in a label's third and fourth characters for Punycode (RFC 5891 4.2.3.1):
# a domain label like `ab--c` is refused, `xn--...` is not (its Punycode is not decoded here). Matched
# after the `@` only, so a local part like `ab.cd--x` stays valid; the labels are already known to be
# letters, digits and hyphens.
EMAIL_RESERVED_HYPHENS_PATTERN = "@([a-z0-9-]+[.])*([a-wyz0-9-][a-z0-9-]|x[a-mo-z0-9-])--"
# RFC 5321's limit on the whole address, as email-validator applies it. (Its 64-character
# limit before the @ is applied by email-validator only in strict mode, so not here either.)
EMAIL_MAX_LENGTH = 254

# Internal names of the phone table relation, the query's stages and helper columns; a
# source column may not use the prefix.
INTERNAL_PREFIX = "_cdp_stg_"
PHONE_CODES = "_cdp_phone_country_codes"
_PHONE_CODE_COLUMNS = ("country_code", "trunk_prefix", "possible_lengths")
_ROW = "_cdp_in"  # the alias every rule expression reads the row from


@dataclass(frozen=True)
class StagedColumn:
    output: str  # standardized_email, cleaned_first_name, hashed_email, standardized_email_valid, ...
    inputs: tuple[str, ...]
    rule: str
    expression: str
    # SQL over the staged table: the input as the rule saw it (after null tokens); NULL when absent.
    present: str = ""
    # Whether "present but NULL out" is an unparseable value (not for valid flags).
    counted: bool = True
    # The declared type the output is cast to, the same on every engine (docs/staging.md).
    sql_type: str = "VARCHAR"


# Declared output types, per rule (the first output of a rule; date and valid flags below).
OUTPUT_TYPES = {
    "email": "VARCHAR",
    "phone": "VARCHAR",
    "name": "VARCHAR",
    "text": "VARCHAR",
    "hash": "VARCHAR",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "TIMESTAMP",
}
DATE_OUTPUT_TYPES = {"std": "TIMESTAMP", "unixtime": "BIGINT", "date": "DATE"}
JSON_OUTPUT_TYPES = {"text": "VARCHAR", "array": "VARCHAR[]"}


def output_column(name: str, rule: StagingRule) -> str:
    if rule.rule == "date":
        return f"{name}_std"
    if rule.rule in STANDARDIZING_RULES:
        return f"standardized_{name}"
    return f"hashed_{name}" if rule.rule == "hash" else f"cleaned_{name}"


def _literal(value: str) -> str:
    """A string literal for text that is ours (shipped data, patterns), never a row's value."""
    if "\\" in value:
        raise ValueError(f"internal literal {value!r} contains a backslash, which dialects escape differently")
    return "'" + value.replace("'", "''") + "'"


def _any_of(value: str, texts) -> str:
    """``value IN (texts)``, written as comparisons joined by OR (the same on every engine, NULL
    included): DuckDB plans an IN list of five or more constants as a join of its own (one MARK
    join per list), which on a staging query cost more than the comparisons."""
    return "(" + " OR ".join(f"{value} = {_literal(t)}" for t in texts) + ")"


def _present(column_sql: str, tokens: tuple[str, ...] = ()) -> str:
    """The trimmed text of a column, NULL when empty or one of the null tokens (any case)."""
    trimmed = f"TRIM(CAST({column_sql} AS VARCHAR))"
    listed = sorted({t.strip().upper() for t in tokens} - {""})
    if not listed:
        return f"NULLIF({trimmed}, '')"
    return f"CASE WHEN {_any_of(f'UPPER({trimmed})', listed)} THEN NULL ELSE NULLIF({trimmed}, '') END"


def _first_present(columns: tuple[str, ...], tokens: tuple[str, ...] = ()) -> str:
    vals = [_present(quote(c), tokens) for c in columns]
    return vals[0] if len(vals) == 1 else f"COALESCE({', '.join(vals)})"


def _input_present(rule: StagingRule, q: _Query | None = None) -> str:
    """The rule's input as the rule sees it, NULL when absent: some input (``first``) or every
    input (``concat``). Over the staged table, or with ``q`` over the staging query's row (each
    column's present value computed once in the query)."""
    if q is None:
        vals = [_present(quote(c), rule.tokens) for c in rule.columns]
    else:
        vals = [q.column(_present(f"{quote(_ROW)}.{quote(c)}", rule.tokens), "present") for c in rule.columns]
    if rule.combine == "concat" and len(vals) > 1:
        return f"CASE WHEN {' AND '.join(f'{v} IS NOT NULL' for v in vals)} THEN '1' END"
    return vals[0] if len(vals) == 1 else f"COALESCE({', '.join(vals)})"


def phone_codes_relation() -> str:
    """Country code, trunk prefix and possible national lengths from the phone table, as a
    VALUES relation (one row per country calling code)."""
    rows = [
        f"({_literal(c.country_code)}, {_literal(c.trunk_prefix)}, "
        f"{_literal('|' + '|'.join(map(str, c.possible_lengths)) + '|')})"
        for c in phone_country_codes().values()
    ]
    cols = ", ".join(quote(c) for c in _PHONE_CODE_COLUMNS)
    return f"SELECT * FROM (VALUES {', '.join(rows)}) AS {quote('t')}({cols})"


def phone_valid_sql(e164: str) -> str:
    """TRUE when the digits ``e164`` (country code + national number) are a valid number.

    The national patterns of the phone table (one per country code: any of its number types,
    as phonenumbers.is_valid_number decides) become nine constant patterns, one per first digit
    of the country code, chosen by a CASE. Why constants: a pattern read from a joined column
    is compiled once per row (measured on DuckDB: 1.4 ms a row), one alternation of all
    codes overflows RE2's DFA budget (13 us a row); nine constant patterns take 0.4 us a row.
    """
    groups: dict[str, list[str]] = {}
    for c in phone_country_codes().values():
        groups.setdefault(c.country_code[0], []).append(f"{c.country_code[1:]}({c.national_pattern})")
    whens = " ".join(
        f"WHEN {_literal(digit)} THEN regexp_matches(SUBSTRING({e164}, 2), {_literal('^(' + '|'.join(alts) + ')$')})"
        for digit, alts in sorted(groups.items())
    )
    return f"COALESCE(CASE SUBSTRING({e164}, 1, 1) {whens} END, FALSE)"


# A reference to a column the staging query computes (see _Query), and a reference to a joined
# phone table's column: what decides which layer of the query an expression can be computed in.
_COLUMN_REF = re.compile(r'"_cdp_in"\."(_cdp_stg_[^"]+)"')
_JOINED_REF = re.compile(r'"(_cdp_stg_cc[0-9]+)"\.')


class _Query:
    """The columns one staging query computes besides its outputs, in layers: each layer is one
    CTE, ``SELECT "_cdp_in".*, <its columns> FROM <the layer before> AS "_cdp_in" [LEFT JOIN the phone
    table ...]``, so every expression reads the row as ``"_cdp_in"``. Layer 0 reads the source row.

    Each distinct expression is computed once (:meth:`column`): it gets one name, placed in the
    first layer after the layers of the columns it reads, and asking for the same expression text
    again gives the same name. Outputs and later columns refer to that name instead of repeating
    the expression. Why: a rule inlined into every expression that reads it (a phone number's
    validation into its value, its valid flag and its hash; a column's null-token test into every
    date component) made the statement hundreds of KB long, and DuckDB's planning cost grows with
    the expression trees, not the rows (bench/bench_staging_plan.py, docs/staging.md)."""

    def __init__(self) -> None:
        self.layers: list[list[str]] = []  # per layer: "expr AS name"
        self.joins: dict[int, list[str]] = {}  # per layer: the LEFT JOINs of the phone table
        self._layer: dict[str, int] = {}  # column or join alias -> its layer
        self._names: dict[str, str] = {}  # expression -> the reference to its column
        self._aliases: dict[tuple[str, int], str] = {}  # (country code, layer) -> the join's alias
        self._n = 0

    def name(self, kind: str) -> str:
        self._n += 1
        return f"{INTERNAL_PREFIX}{kind}{self._n}"

    def _reads(self, expression: str) -> int:
        """The first layer ``expression`` can be computed in (columns of earlier layers only)."""
        return max((self._layer[n] + 1 for n in _COLUMN_REF.findall(expression)), default=0)

    def column(self, expression: str, kind: str) -> str:
        """A reference to ``expression`` computed once, as a column of the query."""
        if _COLUMN_REF.fullmatch(expression):
            return expression
        joined = {self._layer[a] for a in _JOINED_REF.findall(expression)}
        if len(joined) > 1:
            raise AssertionError(f"an expression reads joins of different layers: {expression}")
        layer = self._reads(expression)
        if joined:
            (join_layer,) = joined
            if layer > join_layer:
                raise AssertionError(f"an expression reads a join and a column of its layer or later: {expression}")
            layer = join_layer
        if expression not in self._names:
            name = self.name(kind)
            self._add(layer, f"{expression} AS {quote(name)}")
            self._layer[name] = layer
            self._names[expression] = f"{quote(_ROW)}.{quote(name)}"
        return self._names[expression]

    def join_code(self, on_value: str, layer: int | None = None) -> str:
        """LEFT JOIN the phone table on ``country_code = on_value``, in the first layer that can read
        ``on_value`` (or ``layer``); returns the alias. The same join asked for again is shared: the
        table has one row per country code, so a join never repeats a row."""
        layer = self._reads(on_value) if layer is None else layer
        key = (on_value, layer)
        if key not in self._aliases:
            alias = self.name("cc")
            self._add(layer)
            self.joins.setdefault(layer, []).append(
                f"LEFT JOIN {quote(PHONE_CODES)} AS {quote(alias)} "
                f"ON {quote(alias)}.{quote('country_code')} = {on_value}"
            )
            self._layer[alias] = layer
            self._aliases[key] = alias
        return self._aliases[key]

    def layer_of(self, alias: str) -> int:
        return self._layer[alias]

    def _add(self, layer: int, column: str | None = None) -> None:
        while len(self.layers) <= layer:
            self.layers.append([])
        if column is not None:
            self.layers[layer].append(column)

    def ctes(self, source: TableRef) -> tuple[list[str], str]:
        """The layers as CTEs over ``source``, and what the outputs select from."""
        row = quote(_ROW)
        ctes = [f"{quote(PHONE_CODES)} AS ({phone_codes_relation()})"] if self.joins else []
        base = f"{source.sql} AS {row}"
        for n, columns in enumerate(self.layers):
            if not columns and n not in self.joins:
                continue
            name = quote(f"_cdp_stage{n}")
            select = ", ".join([f"{row}.*", *columns])
            joins = "".join(f"\n{j}" for j in self.joins.get(n, []))
            ctes.append(f"{name} AS (SELECT {select}\nFROM {base}{joins})")
            base = f"{name} AS {row}"
        return ctes, base


def _email(x: str, q: _Query) -> str:
    v = q.column(f"LOWER({x})", "lower")
    return q.column(
        f"CASE WHEN regexp_matches({v}, {_literal(EMAIL_PATTERN)}) "
        f"AND NOT regexp_matches({v}, {_literal(EMAIL_SPECIAL_USE_PATTERN)}) "
        f"AND NOT regexp_matches({v}, {_literal(EMAIL_RESERVED_HYPHENS_PATTERN)}) "
        f"AND LENGTH({v}) <= {EMAIL_MAX_LENGTH} THEN {v} END",
        "email",
    )


def _phone(rule: StagingRule, column_sql: str, q: _Query) -> str:
    """E.164 digits (without '+') of a phone number, read as `phonenumbers` reads it for the
    default region, or NULL when it is not a valid number of its country.

    International form ('+', or the region's international prefix): the country code is
    the 1-3 leading digits found in the phone table (codes are prefix-free, so at most one of
    the three joins matches); a trunk prefix written after it ('+44 (0) 20 ...') is dropped.
    National form: the region's trunk prefix is dropped; a number written with its country
    code but no '+' ('44 20 ...') is recognised when only that reading has a possible length.
    A trunk prefix is dropped when what remains has a possible length. The result is kept when
    it matches its country's pattern (:func:`phone_valid_sql`), which is computed once per value:
    the standardised number, its valid flag and a hash of it read the same column.
    """
    region = phone_regions()[rule.default_region]
    home_cc = region.country_code
    x = q.column(_present(column_sql), "present")
    d = q.column(f"regexp_replace({x}, '[^0-9]', '', 'g')", "digits")
    intl_cases = [f"WHEN {x} LIKE '+%' THEN {d}"]
    if region.international_prefix:
        idd = _literal(f"^({region.international_prefix})")
        after = f"regexp_replace({d}, {idd}, '')"
        # After an international prefix a country code never starts with 0.
        intl_cases.append(f"WHEN regexp_matches({d}, {idd}) AND {after} NOT LIKE '0%' THEN {after}")
    intl = q.column(f"CASE {' '.join(intl_cases)} END", "intl")

    def possible(n: str, f) -> str:
        return f"POSITION('|' || CAST(LENGTH({n}) AS VARCHAR) || '|' IN {f('possible_lengths')}) > 0"

    def national(n: str, f) -> str:
        """``n`` without its trunk prefix when what remains has a possible length."""
        n = q.column(n, "number")
        trunk = f("trunk_prefix")
        rest = f"SUBSTRING({n}, LENGTH({trunk}) + 1)"
        return f"CASE WHEN {trunk} <> '' AND {n} LIKE {trunk} || '%' AND {possible(rest, f)} THEN {rest} ELSE {n} END"

    # The joins' columns are named in the joins' layer, so later layers read them.
    aliases = [q.join_code(f"SUBSTRING({intl}, 1, {k})") for k in (1, 2, 3)]
    intl_f = lambda col: q.column(  # noqa: E731
        f"COALESCE({', '.join(f'{quote(a)}.{quote(col)}' for a in aliases)})", f"intl_{col}"
    )
    home = q.join_code(_literal(home_cc), q.layer_of(aliases[0]))
    home_f = lambda col: q.column(f"{quote(home)}.{quote(col)}", f"home_{col}")  # noqa: E731

    cc = intl_f("country_code")
    international = q.column(f"{cc} || {national(f'SUBSTRING({intl}, LENGTH({cc}) + 1)', intl_f)}", "international")
    plain_national = q.column(national(d, home_f), "national")
    plain = q.column(f"{_literal(home_cc)} || {plain_national}", "plain")
    with_code_national = q.column(national(f"SUBSTRING({d}, {len(home_cc) + 1})", home_f), "national")
    # Read as "country code without '+'" only when the plain reading has an impossible length.
    with_code = q.column(
        f"CASE WHEN {d} LIKE {_literal(home_cc + '%')} AND NOT ({possible(plain_national, home_f)}) "
        f"AND {possible(with_code_national, home_f)} THEN {_literal(home_cc)} || {with_code_national} END",
        "withcode",
    )
    e164 = q.column(
        f"CASE WHEN {intl} IS NOT NULL THEN {international} ELSE COALESCE({with_code}, {plain}) END", "e164"
    )
    valid = q.column(phone_valid_sql(e164), "phonevalid")
    return q.column(f"CASE WHEN {valid} THEN {e164} END", "phone")


# Spellings of TRUE and FALSE the boolean rule reads (compared uppercased).
TRUE_TOKENS = ("TRUE", "T", "YES", "Y", "1", "ON")
FALSE_TOKENS = ("FALSE", "F", "NO", "N", "0", "OFF")


def _number(rule: StagingRule, x: str, q: _Query) -> str:
    """A DOUBLE from text with currency symbols, spaces and thousands separators."""
    kept = f"regexp_replace({x}, '[^0-9,.-]', '', 'g')"
    if rule.decimal_comma:
        plain = f"REPLACE(REPLACE({kept}, '.', ''), ',', '.')"
    else:
        plain = f"REPLACE({kept}, ',', '')"
    plain = q.column(plain, "numeral")
    value = f"CAST({plain} AS DOUBLE)"
    if rule.decimals is not None:
        value = f"ROUND({value}, {int(rule.decimals)})"
    return f"CASE WHEN regexp_matches({plain}, '^-?([0-9]+([.][0-9]*)?|[.][0-9]+)$') THEN {value} END"


def _boolean(x: str, q: _Query) -> str:
    u = q.column(f"UPPER({x})", "upper")
    return f"CASE WHEN {_any_of(u, TRUE_TOKENS)} THEN TRUE WHEN {_any_of(u, FALSE_TOKENS)} THEN FALSE END"


def _hash(rule: StagingRule, column_sql: str, x: str, q: _Query) -> str:
    """SHA-256 hex (lowercase) of the value normalised as ad platforms require it."""
    if rule.normalize == "email":
        normalised = _email(x, q)
    elif rule.normalize == "phone":
        normalised = _phone(rule, column_sql, q)
    else:
        normalised = f"LOWER({x})"
    return f"sha256({normalised})"


# ---------------------------------------------------------------------------- date

# An optional time after a date: ' ' or 'T', H:MM[:SS[.fraction]] (groups: H, M, S).
# Only the components capture (DuckDB's regexp_extract reads groups 0-9).
_TIME = "(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:[.][0-9]{1,9})?)?)?"
_TIME_GROUPS = {"H": 1, "M": 2, "S": 3}  # after the date's three groups
_ZONE = "(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
# format -> (date pattern with three groups, the groups' order)
_DATE_FORMS = {
    "iso8601": ("([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", "ymd"),
    "yyyy/mm/dd": ("([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})", "ymd"),
    "dd-mm-yyyy": ("([0-9]{1,2})[-.]([0-9]{1,2})[-.]([0-9]{4})", "dmy"),
    "dd/mm/yyyy": ("([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})", "dmy"),
    "mm/dd/yyyy": ("([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})", "mdy"),
    "mm-dd-yyyy": ("([0-9]{1,2})[-.]([0-9]{1,2})[-.]([0-9]{4})", "mdy"),
}
# Unix epoch: seconds 1973-2286 (9-10 digits), milliseconds (12-13 digits).
_EPOCHS = {"epoch_seconds": ("^[0-9]{9,10}$", 1), "epoch_millis": ("^[0-9]{12,13}$", 1000)}


def _idiv(a: str, b: int) -> str:
    """Floor division of integers, the same on every engine ('/' differs between them)."""
    return f"CAST(FLOOR(CAST({a} AS DOUBLE) / {b}) AS BIGINT)"


def _int(text: str) -> str:
    return f"CAST({text} AS BIGINT)"


def _date_pattern(fmt: str) -> str:
    date, _ = _DATE_FORMS[fmt]
    return f"^{date}{_TIME}{_ZONE if fmt == 'iso8601' else ''}$"


def _date_column(rule: StagingRule, column: str, q: _Query) -> str:
    """Unix seconds (UTC) of one input column, or NULL when no listed format reads it.

    The first listed format whose pattern matches decides how the text is read; components
    are extracted with regexp_extract and the calendar is done in integer arithmetic
    (days from civil, H. Hinnant's algorithm), so no engine's date parser is involved and
    every engine gives the same seconds. The date is checked with TRY_CAST(... AS DATE)
    (30 February is refused).
    """
    x = q.column(_present(f"{quote(_ROW)}.{quote(column)}", rule.tokens), "present")
    formats = rule.date_formats
    patterns = {f: (_date_pattern(f) if f in _DATE_FORMS else _EPOCHS[f][0]) for f in formats}
    fmt = q.column(
        "CASE "
        + " ".join(f"WHEN regexp_matches({x}, {_literal(p)}) THEN {i}" for i, (f, p) in enumerate(patterns.items()))
        + " END",
        "datefmt",
    )

    def group(name: str) -> str:
        """The text of component ``name`` (y m d H M S zone) for the matched format, or NULL."""
        whens = []
        for i, f in enumerate(formats):
            if f not in _DATE_FORMS:
                continue
            order = _DATE_FORMS[f][1]
            if name in "ymd":
                g = order.index(name) + 1
            elif name == "zone":
                if f != "iso8601":
                    continue
                g = 3 + 3 + 1
            else:
                g = 3 + _TIME_GROUPS[name]
            whens.append(f"WHEN {fmt} = {i} THEN NULLIF(regexp_extract({x}, {_literal(patterns[f])}, {g}), '')")
        return f"CASE {' '.join(whens)} END" if whens else "NULL"

    epoch_whens = [
        f"WHEN {fmt} = {i} THEN {_idiv(_int(x), _EPOCHS[f][1]) if _EPOCHS[f][1] > 1 else _int(x)}"
        for i, f in enumerate(formats)
        if f in _EPOCHS
    ]
    epoch = q.column(f"CASE {' '.join(epoch_whens)} END" if epoch_whens else "CAST(NULL AS BIGINT)", "epoch")
    y, m, d = (q.column(_int(group(c)), f"date{c}") for c in "ymd")
    hh, mi, ss = (q.column(f"COALESCE({_int(group(c))}, 0)", f"time{c}") for c in ("H", "M", "S"))
    zone = q.column(group("zone"), "zone")
    offset_minutes = q.column(
        f"CASE WHEN {zone} IS NULL OR {zone} = 'Z' THEN 0 ELSE "
        f"(CASE WHEN {zone} LIKE '-%' THEN -1 ELSE 1 END) * (CAST(SUBSTRING({zone}, 2, 2) AS BIGINT) * 60 "
        f"+ CASE WHEN LENGTH({zone}) > 3 THEN CAST(SUBSTRING({zone}, LENGTH({zone}) - 1, 2) AS BIGINT) ELSE 0 END) END",
        "offset",
    )
    iso_day = (
        f"CAST({y} AS VARCHAR) || '-' || LPAD(CAST({m} AS VARCHAR), "
        f"2, '0') || '-' || LPAD(CAST({d} AS VARCHAR), 2, '0')"
    )
    real_day = f"TRY_CAST({iso_day} AS DATE) IS NOT NULL AND {hh} < 24 AND {mi} < 60 AND {ss} < 60"
    # Days since 1970-01-01 of (y, m, d), for the proleptic Gregorian calendar.
    yy = q.column(f"({y} - CASE WHEN {m} <= 2 THEN 1 ELSE 0 END)", "yy")
    era = q.column(_idiv(yy, 400), "era")
    yoe = q.column(f"({yy} - {era} * 400)", "yoe")
    doy = f"({_idiv(f'153 * (({m} + 9) % 12) + 2', 5)} + {d} - 1)"
    doe = q.column(f"({yoe} * 365 + {_idiv(yoe, 4)} - {_idiv(yoe, 100)} + {doy})", "doe")
    days = f"({era} * 146097 + {doe} - 719468)"
    seconds = f"{days} * 86400 + {hh} * 3600 + {mi} * 60 + {ss} - ({offset_minutes}) * 60"
    return q.column(
        f"CASE WHEN {epoch} IS NOT NULL THEN {epoch} WHEN {y} IS NOT NULL AND {real_day} THEN {seconds} END",
        "unixtime",
    )


def _date(rule: StagingRule, q: _Query) -> tuple[str, str, str]:
    """(timestamp in UTC, unix seconds, date) of a date rule, from its first readable column."""
    per_column = [_date_column(rule, c, q) for c in rule.columns]
    unixtime = q.column(per_column[0] if len(per_column) == 1 else f"COALESCE({', '.join(per_column)})", "unixtime")
    # Civil date of the day number (H. Hinnant's civil_from_days), then the time of day.
    z = q.column(f"{_idiv(unixtime, 86400)} + 719468", "z")
    era = q.column(_idiv(z, 146097), "era")
    doe = q.column(f"{z} - {era} * 146097", "doe")
    yoe = q.column(_idiv(f"{doe} - {_idiv(doe, 1460)} + {_idiv(doe, 36524)} - {_idiv(doe, 146096)}", 365), "yoe")
    doy = q.column(f"{doe} - (365 * {yoe} + {_idiv(yoe, 4)} - {_idiv(yoe, 100)})", "doy")
    mp = q.column(_idiv(f"5 * {doy} + 2", 153), "mp")
    day = f"{doy} - {_idiv(f'153 * {mp} + 2', 5)} + 1"
    month = q.column(f"CASE WHEN {mp} < 10 THEN {mp} + 3 ELSE {mp} - 9 END", "month")
    year = f"{yoe} + {era} * 400 + CASE WHEN {month} <= 2 THEN 1 ELSE 0 END"
    sod = q.column(f"({unixtime} - {_idiv(unixtime, 86400)} * 86400)", "sod")
    pad = lambda e: f"LPAD(CAST({e} AS VARCHAR), 2, '0')"  # noqa: E731
    text = (
        f"LPAD(CAST({year} AS VARCHAR), 4, '0') || '-' || {pad(month)} || '-' || {pad(day)} || ' ' || "
        f"{pad(_idiv(sod, 3600))} || ':' || {pad(_idiv(f'{sod} % 3600', 60))} || ':' || {pad(f'{sod} % 60')}"
    )
    std = q.column(f"CASE WHEN {unixtime} IS NOT NULL THEN CAST({text} AS TIMESTAMP) END", "std")
    return std, unixtime, f"CAST({std} AS DATE)"


# ---------------------------------------------------------------------------- json


def json_path_literal(keys: list[str] | tuple[str, ...]) -> str:
    """A JSONPath with every key quoted (``$."a b"."$price"``), as a SQL literal; sqlglot writes
    each dialect's form (Spark ``$['a b']``, Trino ``$["a b"]``). Keys never hold quotes or
    backslashes (JsonPath refuses them; profiled keys with them are skipped)."""
    return _literal("$" + "".join(f'."{k}"' for k in keys))


def _json(path: JsonPath, x: str, q: _Query) -> str:
    """One value of the JSON text ``x``: text for a scalar, an array of text for an array; NULL
    when the text is not JSON, the key is absent or the value is JSON null. ``json_valid`` is
    rendered per dialect (sqlglot has no translation; cdp_assets/sql/dialects.py)."""
    literal = json_path_literal(path.keys)
    if path.type == "array":
        value = f"TRY_CAST(json_extract({x}, {literal}) AS VARCHAR[])"
    else:
        value = f"json_extract_string({x}, {literal})"
    return f"CASE WHEN {q.column(f'json_valid({x})', 'json')} THEN {value} END"


_JSON_PROFILE_COLUMNS = ("parent", "json_key", "full_path", "json_type")


def json_keys_sql(source: TableRef, rule: StagingRule) -> str:
    """The profiling query of a json rule without paths (DuckDB only): every distinct
    (parent path, key, path, type) of the column's valid JSON values, outside arrays."""
    x = _present(quote(rule.columns[0]), rule.tokens)
    doc = quote(INTERNAL_PREFIX + "doc")
    t = quote(INTERNAL_PREFIX + "tree")
    return (
        f"SELECT DISTINCT {t}.path AS parent, {t}.key AS json_key, {t}.fullkey AS full_path, {t}.type AS json_type "
        f"FROM (SELECT {x} AS {doc} FROM {source.sql}) AS {quote(INTERNAL_PREFIX + 'docs')}, json_tree({doc}) AS {t} "
        f"WHERE {doc} IS NOT NULL AND json_valid({doc}) AND {t}.key IS NOT NULL "
        f"AND NOT regexp_matches({t}.path, '\\[[0-9]+\\]') ORDER BY 3, 4"
    )


def json_paths_from_profile(name: str, rule: StagingRule, rows: list[tuple]) -> dict[str, JsonPath]:
    """Output name -> path for every key down to the rule's depth, from :func:`json_keys_sql`'s
    rows. Objects above the depth are descended into; a key that is an array in some row is an
    array; an object at the depth comes as JSON text. Output names are the keys joined by
    ``_``, lowercased, other characters as ``_`` (``_2``, ``_3`` ... on a collision)."""
    objects: dict[str, tuple[str, ...]] = {"$": ()}
    leaves: dict[tuple[str, ...], str] = {}
    for parent, key, full, kind in sorted(rows, key=lambda r: (len(r[2]), r[2])):
        if parent not in objects or not _SAFE_JSON_KEY.fullmatch(key):
            continue  # inside an array, or a key a path literal cannot spell on every engine
        keys = (*objects[parent], key)
        if len(keys) > rule.json_depth:
            continue
        if kind == "OBJECT" and len(keys) < rule.json_depth:
            objects[full] = keys
            continue
        leaves[keys] = "array" if kind == "ARRAY" or leaves.get(keys) == "array" else "text"
    out: dict[str, JsonPath] = {}
    for keys, kind in sorted(leaves.items()):
        base = re.sub(r"[^a-z0-9]+", "_", "_".join(keys).lower()).strip("_") or "key"
        candidate, n = base, 1
        while candidate in out:
            n += 1
            candidate = f"{base}_{n}"
        out[candidate] = JsonPath(keys=list(keys), type=kind)
    return out


_SAFE_JSON_KEY = re.compile(r"[^\\'\"\x00-\x1f]{1,128}")


def _standardize(rule: StagingRule, column: str, q: _Query) -> str:
    """The rule applied to one input column of the source row."""
    column_sql = f"{quote(_ROW)}.{quote(column)}"
    if rule.rule == "phone":  # reads the value without null tokens: a token is no valid number
        return _phone(rule, column_sql, q)
    x = q.column(_present(column_sql, rule.tokens), "present")
    if rule.rule == "email":
        return _email(x, q)
    if rule.rule == "number":
        return _number(rule, x, q)
    if rule.rule == "boolean":
        return _boolean(x, q)
    if rule.rule == "hash":
        return _hash(rule, column_sql, x, q)
    if rule.rule == "name":
        clean = q.column(f"TRIM(regexp_replace({x}, '\\s+', ' ', 'g'))", "clean")
        return f"NULLIF(UPPER(SUBSTRING({clean}, 1, 1)) || LOWER(SUBSTRING({clean}, 2)), '')"
    # text
    return f"NULLIF(LOWER(TRIM(regexp_replace({x}, '\\s+', ' ', 'g'))), '')"


def rule_expression(rule: StagingRule, columns: tuple[str, ...], q: _Query | None = None) -> str:
    """The rule over its input columns, combined as the rule says.

    ``first``: the first input column that standardises to a value (not merely the first
    non-empty). ``concat``: every column's value joined by the separator, NULL when any is NULL
    (a composite key such as date of birth with surname).
    """
    q = q if q is not None else _Query()
    exprs = [_standardize(rule, c, q) for c in columns]
    if len(exprs) == 1:
        return exprs[0]
    if rule.combine == "concat":
        # || is NULL as soon as one part is NULL on every engine we render for.
        return f" || {_literal(rule.separator)} || ".join(f"({e})" for e in exprs)
    return f"COALESCE({', '.join(exprs)})"


def _plan(
    rules: dict[str, StagingRule], json_paths: dict[str, dict[str, JsonPath]] | None = None
) -> tuple[list[StagedColumn], _Query]:
    """The output columns of the rules. A json rule without paths gives the outputs of its
    profiled paths (``json_paths[name]``), none when they are not known."""
    q = _Query()
    cols = []
    for name, r in rules.items():
        inputs = tuple(r.columns)
        if r.rule == "date":
            std, unixtime, day = _date(r, q)
            present = _input_present(r)
            cols += [
                StagedColumn(f"{name}_std", inputs, r.rule, std, present, sql_type=DATE_OUTPUT_TYPES["std"]),
                StagedColumn(
                    f"{name}_unixtime", inputs, r.rule, unixtime, present, False, DATE_OUTPUT_TYPES["unixtime"]
                ),
                StagedColumn(f"{name}_date", inputs, r.rule, day, present, False, DATE_OUTPUT_TYPES["date"]),
            ]
            continue
        if r.rule == "json":
            paths = r.paths if r.paths is not None else (json_paths or {}).get(name, {})
            # Not counted: a key absent from a document is no parse failure.
            cols += [
                StagedColumn(
                    f"{name}_{out}",
                    inputs,
                    r.rule,
                    _json(p, q.column(_present(f"{quote(_ROW)}.{quote(r.columns[0])}", r.tokens), "present"), q),
                    _input_present(r),
                    False,
                    JSON_OUTPUT_TYPES[p.type],
                )
                for out, p in paths.items()
            ]
            continue
        expression = rule_expression(r, inputs, q)
        if r.valid_flag:  # computed once, read by the value and its flag
            expression = q.column(expression, "value")
        output = output_column(name, r)
        cols.append(StagedColumn(output, inputs, r.rule, expression, _input_present(r), sql_type=OUTPUT_TYPES[r.rule]))
        if r.valid_flag:
            flag = (
                f"CASE WHEN {_input_present(r, q)} IS NULL THEN NULL "
                f"WHEN {expression} IS NOT NULL THEN TRUE ELSE FALSE END"
            )
            cols.append(
                StagedColumn(f"{output}_valid", inputs, f"{r.rule}_valid", flag, _input_present(r), False, "BOOLEAN")
            )
    return cols, q


def staged_columns(
    rules: dict[str, StagingRule], json_paths: dict[str, dict[str, JsonPath]] | None = None
) -> list[StagedColumn]:
    return _plan(rules, json_paths)[0]


def profiled_json_rules(rules: dict[str, StagingRule]) -> dict[str, StagingRule]:
    """The json rules whose paths are found by profiling the table (no ``paths`` listed)."""
    return {name: r for name, r in rules.items() if r.rule == "json" and r.paths is None}


@dataclass(frozen=True)
class Dimension:
    """A table-level ``join`` resolved for one build: the dimension's table and columns."""

    join: DimensionJoin
    ref: TableRef
    columns: tuple[str, ...]  # what the dimension table has, to name a missing one
    field: str  # the config field, e.g. staging_tables.shop_orders.join[0]


@dataclass(frozen=True)
class TableExtras:
    """What a staged table adds besides its rules: dimension columns, metadata columns and the
    profiled paths of json rules without ``paths``."""

    dimensions: tuple[Dimension, ...] = ()
    source_system: str | None = None  # set: add the metadata columns, with this source name
    json_paths: dict[str, dict[str, JsonPath]] | None = None


def staging_sql(
    source: TableRef,
    source_columns: list[str],
    rules: dict[str, StagingRule],
    dedupe: DedupeOptions | None = None,
    default_order_by: str | None = None,
    extras: TableExtras | None = None,
) -> str:
    """Every column of the hist-union table, plus one standardised/cleaned column per rule, each
    cast to its declared type; with ``extras``, dimension and metadata columns; with ``dedupe``,
    one row per partition (after cleaning), the newest by the order."""
    extras = extras or TableExtras()
    if dedupe is not None:
        return _deduped(source, source_columns, rules, dedupe, default_order_by, extras)
    missing = sorted({c for r in rules.values() for c in r.columns} - set(source_columns))
    if missing:
        raise ValueError(
            f"staging rules for {source.display} use column(s) {missing} that the table does not have; "
            f"its columns are {source_columns}"
        )
    internal = [c for c in source_columns if c.startswith(INTERNAL_PREFIX)]
    if internal:
        raise ValueError(
            f"{source.display} has column(s) {internal} whose prefix {INTERNAL_PREFIX!r} staging reserves; rename them"
        )
    unprofiled = sorted(set(profiled_json_rules(rules)) - set(extras.json_paths or {}))
    if unprofiled:
        raise ValueError(
            f"json rule(s) {unprofiled} of {source.display} list no paths, so their keys come from profiling the "
            "table when it is built (json_keys_sql); list paths to render the statement without the data"
        )
    rules_sql = _rules_sql(source, source_columns, rules, extras.json_paths)
    if not extras.dimensions and extras.source_system is None:
        return rules_sql
    return _with_dimensions_and_metadata(source, source_columns, rules, rules_sql, extras)


def _rules_sql(source: TableRef, source_columns: list[str], rules: dict[str, StagingRule], json_paths) -> str:
    if not rules:
        return f"SELECT *\nFROM {source.sql}"
    columns, q = _plan(rules, json_paths)
    row = quote(_ROW)
    ctes, base = q.ctes(source)
    outputs = [f"{row}.{quote(c)}" for c in source_columns]
    # Every output is cast to its declared type, so every engine's table has the same types.
    outputs += [f"CAST({c.expression} AS {c.sql_type}) AS {quote(c.output)}" for c in columns]
    with_ = "WITH " + ",\n".join(ctes) + "\n" if ctes else ""
    return f"{with_}SELECT {', '.join(outputs)}\nFROM {base}"


def extra_columns(extras: TableExtras) -> list[str]:
    """The metadata and dimension columns a staged table gets, in their order."""
    meta = list(METADATA_COLUMNS) if extras.source_system is not None else []
    return [*meta, *(o for d in extras.dimensions for o in d.join.outputs())]


def _join_key(column_sql: str) -> str:
    """A join key as both sides are compared: text, trimmed, lowercased; NULL when empty or a
    default null token (so absent keys never match)."""
    return f"LOWER({_present(column_sql, DEFAULT_NULL_TOKENS)})"


def _with_dimensions_and_metadata(source, source_columns, rules, rules_sql: str, extras: TableExtras) -> str:
    staged = [*source_columns, *(c.output for c in staged_columns(rules, extras.json_paths))]
    added = extra_columns(extras)
    clash = sorted(set(added) & set(staged))
    if clash:
        raise ValueError(
            f"{source.display}: column(s) {clash} exist already; metadata columns and <column>_dim outputs of joins "
            "must be new names (rename the column, or drop metadata_columns / the join)"
        )
    s = quote(INTERNAL_PREFIX + "staged")
    selects = [f"{s}.*"]
    if extras.source_system is not None:
        loaded = f"{s}.{quote('_cdp_loaded_at')}" if "_cdp_loaded_at" in source_columns else "NULL"
        selects += [
            f"CAST({_literal(extras.source_system)} AS VARCHAR) AS {quote('source_system')}",
            f"CAST({loaded} AS TIMESTAMP) AS {quote('load_timestamp')}",
        ]
    joins = []
    for i, dim in enumerate(extras.dimensions):
        j = dim.join
        for left in j.on:
            if left not in staged:
                raise ValueError(
                    f"{dim.field}.on: {left!r} is not a column of the staged {source.display}; its columns are {staged}"
                )
        for where, names in ((f"{dim.field}.on", list(j.on.values())), (f"{dim.field}.columns", j.columns)):
            unknown = [c for c in names if c not in dim.columns]
            if unknown:
                raise ValueError(
                    f"{where}: {unknown} not in the dimension {dim.ref.display}; its columns are {list(dim.columns)}"
                )
        alias = quote(f"{INTERNAL_PREFIX}dim{i}")
        keys = [f"{INTERNAL_PREFIX}key{k}" for k in range(len(j.on))]
        key_exprs = [f"{_join_key(quote(right))} AS {quote(k)}" for right, k in zip(j.on.values(), keys)]
        cols = ", ".join(quote(c) for c in j.columns)
        rn = quote(INTERNAL_PREFIX + "rn")
        # One dimension row per key, the same one on every engine: the smallest by its columns.
        order = ", ".join(f"{quote(c)} ASC NULLS LAST" for c in j.columns)
        partition = ", ".join(quote(k) for k in keys)
        keyed = f"SELECT {', '.join(key_exprs)}, {cols} FROM {dim.ref.sql}"
        one_per_key = (
            f"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS {rn} "
            f"FROM ({keyed}) AS {quote(INTERNAL_PREFIX + 'keyed')} "
            f"WHERE {' AND '.join(f'{quote(k)} IS NOT NULL' for k in keys)}) AS {quote(INTERNAL_PREFIX + 'ranked')} "
            f"WHERE {rn} = 1"
        )
        on = " AND ".join(f"{alias}.{quote(k)} = {_join_key(f'{s}.{quote(left)}')}" for left, k in zip(j.on, keys))
        joins.append(f"LEFT JOIN ({one_per_key}) AS {alias} ON {on}")
        selects += [f"{alias}.{quote(c)} AS {quote(c + '_dim')}" for c in j.columns]
    return f"SELECT {', '.join(selects)}\nFROM ({rules_sql}) AS {s}" + "".join(f"\n{j}" for j in joins)


def _deduped(
    source, source_columns, rules, dedupe: DedupeOptions, default_order_by: str | None, extras: TableExtras
) -> str:
    staged = staging_sql(source, source_columns, rules, extras=extras)
    outputs = [*source_columns, *(c.output for c in staged_columns(rules, extras.json_paths)), *extra_columns(extras)]
    return dedupe_sql(f"({staged})", source.display, source_columns, outputs, dedupe, default_order_by)


def dedupe_sql(
    staged_rows: str,
    display: str,
    source_columns: list[str],
    outputs: list[str],
    dedupe: DedupeOptions,
    default_order_by: str | None,
) -> str:
    """One row per ``partition_by`` of ``staged_rows`` (a parenthesised SELECT or a table of
    staged rows with the columns ``outputs``), the newest (or oldest) by the order. The full
    build ranks the whole staging query; an incremental build ranks the pre-dedupe staged rows
    of the partitions it recomputes (cdp_assets/incremental.py): the same order keeps the same row."""
    order_by = dedupe.order_by or ([default_order_by] if default_order_by else [])
    unknown = sorted({*dedupe.partition_by, *order_by} - set(outputs))
    if unknown:
        raise ValueError(
            f"dedupe of {display} uses column(s) {unknown} that the staged table does not have; "
            f"its columns are {outputs}"
        )
    if not order_by:
        raise ValueError(f"dedupe of {display} needs order_by (the source has no incremental_field)")
    direction = "DESC" if dedupe.keep == "newest" else "ASC"
    # Ties are broken by every column, so each engine keeps the same row.
    keys = [f"{quote(c)} {direction} NULLS LAST" for c in order_by] + [
        f"{quote(c)} ASC NULLS LAST" for c in source_columns if c not in order_by
    ]
    cols = ", ".join(quote(c) for c in outputs)
    rn = quote(f"{INTERNAL_PREFIX}rn")
    return (
        f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY "
        f"{', '.join(quote(c) for c in dedupe.partition_by)} ORDER BY {', '.join(keys)}) AS {rn}\nFROM "
        f"{staged_rows} AS {quote(INTERNAL_PREFIX + 'all')}) AS {quote(INTERNAL_PREFIX + 'ranked')} WHERE {rn} = 1"
    )


def unparseable_sql(table: TableRef, column: StagedColumn) -> str:
    """Rows with some input but no standardised value, and rows with some input."""
    present = column.present or _first_present(column.inputs)
    return (
        f"SELECT COUNT(*) FILTER (WHERE {present} IS NOT NULL AND {quote(column.output)} IS NULL) AS unparseable, "
        f"COUNT(*) FILTER (WHERE {present} IS NOT NULL) AS present FROM {table.sql}"
    )


def rule_counts_sql(table: TableRef, columns: list[StagedColumn]) -> str:
    """One scan of a staged table: per counted output column, the rows it parsed (a value),
    the rows without input (NULL, empty or a null token) and the rows whose input it could not
    read, as ``{output}__parsed``, ``{output}__null`` and ``{output}__unparseable``."""
    return rule_counts_over_sql(table.sql, columns)


def rule_count_names(columns: list[StagedColumn]) -> list[str]:
    """The columns of :func:`rule_counts_sql`'s row, in order."""
    names = [f"{c.output}__{k}" for c in columns if c.counted for k in ("parsed", "null", "unparseable")]
    return names or ["rows_total"]


def rule_counts_over_sql(relation: str, columns: list[StagedColumn]) -> str:
    """:func:`rule_counts_sql` over ``relation`` (a table's SQL name or a parenthesised SELECT
    with its alias): staged rows an incremental build removes or adds. Every figure is a count,
    so a table's figures are those it had, less the removed rows', plus the added rows'."""
    parts = []
    for c in (c for c in columns if c.counted):
        present = c.present or _first_present(c.inputs)
        out = quote(c.output)
        parts += [
            f"COUNT(*) FILTER (WHERE {out} IS NOT NULL) AS {quote(c.output + '__parsed')}",
            f"COUNT(*) FILTER (WHERE {present} IS NULL) AS {quote(c.output + '__null')}",
            f"COUNT(*) FILTER (WHERE {present} IS NOT NULL AND {out} IS NULL) AS {quote(c.output + '__unparseable')}",
        ]
    return f"SELECT {', '.join(parts) or 'COUNT(*) AS rows_total'} FROM {relation}"


def rule_counts(columns: list[StagedColumn], row) -> dict[str, dict]:
    """:func:`rule_counts_sql`'s one row as ``{output: {rule, parsed, null, unparseable, unparseable_pct}}``."""
    out = {}
    for c in (c for c in columns if c.counted):
        parsed, null, bad = (int(row[f"{c.output}__{k}"]) for k in ("parsed", "null", "unparseable"))
        present = parsed + bad
        out[c.output] = {
            "rule": c.rule,
            "parsed": parsed,
            "null": null,
            "unparseable": bad,
            "unparseable_pct": round(100.0 * bad / present, 3) if present else 0.0,
        }
    return out
