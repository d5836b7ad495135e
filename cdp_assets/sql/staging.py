"""Staging: standardised identifiers (`standardized_*`) and cleaned text (`cleaned_*`).

Each rule is one SQL expression; a value that cannot be parsed becomes NULL, and the check
counts those (non-empty input, NULL output).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp_assets.config.models import StagingRule
from cdp_assets.sql.dialects import TableRef, quote

# Country calling code and national number length for the supported default regions. A
# leading trunk '0' is dropped for regions that use one.
PHONE_REGIONS: dict[str, tuple[str, int, bool]] = {
    "US": ("1", 10, False),
    "CA": ("1", 10, False),
    "GB": ("44", 10, True),
    "DE": ("49", 10, True),
    "FR": ("33", 9, True),
    "JP": ("81", 10, True),
    "AU": ("61", 9, True),
}
# Deliberately simple and portable (RE2, Java and Trino regex all accept it).
EMAIL_PATTERN = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"


@dataclass(frozen=True)
class StagedColumn:
    output: str  # standardized_email, cleaned_first_name, ...
    inputs: tuple[str, ...]
    rule: str
    expression: str


def output_column(name: str, rule: StagingRule) -> str:
    return f"standardized_{name}" if rule.rule in ("email", "phone") else f"cleaned_{name}"


def _first_present(columns: tuple[str, ...]) -> str:
    vals = [f"NULLIF(TRIM(CAST({quote(c)} AS VARCHAR)), '')" for c in columns]
    return vals[0] if len(vals) == 1 else f"COALESCE({', '.join(vals)})"


def _standardize(rule: StagingRule, column: str) -> str:
    """The rule applied to one input column."""
    x = _first_present((column,))
    if rule.rule == "email":
        return f"CASE WHEN regexp_matches(LOWER({x}), '{EMAIL_PATTERN}') THEN LOWER({x}) END"
    if rule.rule == "phone":
        cc, national_len, trunk_zero = PHONE_REGIONS[rule.default_region]
        d = f"regexp_replace({x}, '[^0-9]', '', 'g')"
        # International forms: +CC... or 00CC...
        intl_digits = f"CASE WHEN {x} LIKE '+%' THEN {d} WHEN {d} LIKE '00%' THEN SUBSTRING({d}, 3) END"
        intl = f"CASE WHEN LENGTH({intl_digits}) BETWEEN 8 AND 15 AND {intl_digits} NOT LIKE '0%' THEN {intl_digits} END"
        national = f"CASE WHEN {d} LIKE '0%' THEN SUBSTRING({d}, 2) END" if trunk_zero else f"CASE WHEN {d} NOT LIKE '0%' AND {d} NOT LIKE '1%' THEN {d} END"
        nat = (
            f"CASE WHEN {x} NOT LIKE '+%' AND {d} NOT LIKE '00%' AND LENGTH({d}) = {national_len + len(cc)} AND {d} LIKE '{cc}%' THEN {d} "
            f"WHEN {x} NOT LIKE '+%' AND LENGTH({national}) = {national_len} THEN '{cc}' || {national} END"
        )
        candidate = f"COALESCE({intl}, {nat})"
        # North American numbers (+1): area code and exchange never start with 0 or 1.
        nanp_ok = f"({candidate} NOT LIKE '1%' OR (SUBSTRING({candidate}, 2, 1) BETWEEN '2' AND '9' AND SUBSTRING({candidate}, 5, 1) BETWEEN '2' AND '9' AND LENGTH({candidate}) = 11))"
        # A number made of one repeated digit (0000000000, 1111111111) is a placeholder.
        return (
            f"CASE WHEN {candidate} IS NOT NULL AND REPLACE({candidate}, SUBSTRING({candidate}, 1, 1), '') <> '' "
            f"AND {nanp_ok} THEN {candidate} END"
        )
    if rule.rule == "name":
        clean = f"TRIM(regexp_replace({x}, '\\s+', ' ', 'g'))"
        return f"NULLIF(UPPER(SUBSTRING({clean}, 1, 1)) || LOWER(SUBSTRING({clean}, 2)), '')"
    # text
    return f"NULLIF(LOWER(TRIM(regexp_replace({x}, '\\s+', ' ', 'g'))), '')"


def rule_expression(rule: StagingRule, columns: tuple[str, ...]) -> str:
    """The first input column that standardises to a value (not merely the first non-empty)."""
    exprs = [_standardize(rule, c) for c in columns]
    return exprs[0] if len(exprs) == 1 else f"COALESCE({', '.join(exprs)})"


def staged_columns(rules: dict[str, StagingRule]) -> list[StagedColumn]:
    return [
        StagedColumn(output_column(name, r), tuple(r.columns), r.rule, rule_expression(r, tuple(r.columns)))
        for name, r in rules.items()
    ]


def staging_sql(source: TableRef, source_columns: list[str], rules: dict[str, StagingRule]) -> str:
    """Every column of the hist-union table, plus one standardised/cleaned column per rule."""
    missing = sorted({c for r in rules.values() for c in r.columns} - set(source_columns))
    if missing:
        raise ValueError(
            f"staging rules for {source.display} use column(s) {missing} that the table does not have; "
            f"its columns are {source_columns}"
        )
    extra = [f"{c.expression} AS {quote(c.output)}" for c in staged_columns(rules)]
    return f"SELECT {', '.join(['*', *extra])}\nFROM {source.sql}"


def unparseable_sql(table: TableRef, column: StagedColumn) -> str:
    """Rows with some input but no standardised value, and rows with some input."""
    present = _first_present(column.inputs)
    return (
        f"SELECT COUNT(*) FILTER (WHERE {present} IS NOT NULL AND {quote(column.output)} IS NULL) AS unparseable, "
        f"COUNT(*) FILTER (WHERE {present} IS NOT NULL) AS present FROM {table.sql}"
    )
