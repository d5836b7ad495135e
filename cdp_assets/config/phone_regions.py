"""The phone region table: the one home of what the phone rule knows about countries.

The table is data shipped with the package (``cdp_assets/data/phone_*.csv``), generated from
the metadata of Google's libphonenumber as the ``phonenumbers`` package ships it. The staging
SQL reads it as a relation; no SQL is written per region. Reading it needs only the standard
library; regenerating it needs ``phonenumbers`` (a test and maintenance dependency):

    cdp-assets regenerate-phone-regions              # then commit the two CSV files

Two files:

- ``phone_regions.csv``: one row per region (ISO 3166 code, e.g. ``GB``) with its country
  calling code and international dialling prefix. It answers "how is a number written in this
  region" for the rule's ``default_region``.
- ``phone_country_codes.csv``: one row per country calling code with its trunk prefix, the
  possible lengths of a national number and the pattern of a national number (the union over
  the regions sharing the code, e.g. US, CA and the Caribbean under 1). It answers "is this a
  number of that country".

Patterns are written with ``[0-9]`` instead of ``\\d`` so that they need no escaping in any
dialect's string literals and mean the same in RE2 (DuckDB), Java (Spark) and Trino.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REGIONS_FILE = DATA_DIR / "phone_regions.csv"
COUNTRY_CODES_FILE = DATA_DIR / "phone_country_codes.csv"
# The only characters a shipped pattern may use: digits, classes, groups, alternation and
# counted repetition. Checked when the table is read, so a pattern can be pasted into SQL as
# a string literal in every dialect.
_PATTERN_CHARS = re.compile(r"^[0-9\[\]\-(?:)|{},*+$^]*$")


@dataclass(frozen=True)
class PhoneRegion:
    region: str  # ISO 3166-1 alpha-2
    country_code: str
    international_prefix: str | None  # a pattern, anchored by the SQL; None when unknown


@dataclass(frozen=True)
class PhoneCountryCode:
    country_code: str
    trunk_prefix: str  # "" when the country has none (e.g. Italy keeps its leading 0)
    possible_lengths: tuple[int, ...]
    national_pattern: str  # full-match pattern of a valid national number (no trunk prefix)


def _data_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _checked_pattern(value: str, where: str) -> str:
    if not _PATTERN_CHARS.match(value):
        raise ValueError(f"{where}: pattern {value!r} uses characters outside the portable set; regenerate the table")
    return value


@lru_cache(maxsize=1)
def phone_regions() -> dict[str, PhoneRegion]:
    out = {}
    for row in _data_rows(REGIONS_FILE):
        prefix = row["international_prefix"] or None
        if prefix is not None:
            _checked_pattern(prefix, f"{REGIONS_FILE.name} region {row['region']}")
        out[row["region"]] = PhoneRegion(row["region"], row["country_code"], prefix)
    return out


@lru_cache(maxsize=1)
def phone_country_codes() -> dict[str, PhoneCountryCode]:
    out = {}
    for row in _data_rows(COUNTRY_CODES_FILE):
        cc = row["country_code"]
        if not cc.isdigit() or not row["trunk_prefix"].isdigit() and row["trunk_prefix"]:
            raise ValueError(
                f"{COUNTRY_CODES_FILE.name}: country code {cc!r} has a malformed row; regenerate the table"
            )
        out[cc] = PhoneCountryCode(
            cc,
            row["trunk_prefix"],
            tuple(int(n) for n in row["possible_lengths"].split("|")),
            _checked_pattern(row["national_pattern"], f"{COUNTRY_CODES_FILE.name} country code {cc}"),
        )
    return out


def region_names() -> list[str]:
    """Regions a phone rule's ``default_region`` may name (geographic ones only)."""
    return sorted(phone_regions())


def check_region(value: str) -> str:
    """``value`` when it is a known region, else an error listing how to fix it."""
    if value not in phone_regions():
        raise ValueError(
            f"default_region {value!r} is not a region of the phone table; use an ISO 3166 code such as "
            f"'US', 'GB', 'DE' or 'JP' (known: {len(region_names())} regions, listed in {REGIONS_FILE.name})"
        )
    return value


# ---------------------------------------------------------------------------- regeneration


_NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


def _portable(pattern: str) -> str:
    return pattern.replace("\\d", "[0-9]")


def regenerate(data_dir: Path = DATA_DIR) -> tuple[int, int]:
    """Rewrite both CSV files from the installed ``phonenumbers``; returns (regions, codes)."""
    try:
        import phonenumbers
        from phonenumbers import PhoneMetadata
    except ImportError:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "regenerating the phone table needs phonenumbers: pip install 'phonenumbers==9.0.43'"
        ) from None

    header = (
        "# generated by `cdp-assets regenerate-phone-regions` from "
        f"phonenumbers {phonenumbers.__version__}; do not edit\n"
    )
    regions: list[tuple[str, str, str]] = []
    by_code: dict[int, list] = {}
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        md = PhoneMetadata.metadata_for_region(region)
        regions.append((region, str(md.country_code), _portable(md.international_prefix or "")))
        by_code.setdefault(md.country_code, []).append(md)
    # Non-geographic codes (+800, +882, ...) have no region to default to; they are
    # recognised in international form only.
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        by_code.setdefault(code, []).append(PhoneMetadata.metadata_for_nongeo_region(code))

    codes = []
    for code, metas in sorted(by_code.items()):
        # The main country's trunk prefix (e.g. the US's 1 for every +1 region).
        main = next((m for m in metas if m.main_country_for_code), metas[0])
        lengths = sorted({n for m in metas for n in m.general_desc.possible_length if n > 0})
        # Valid means "matches one of the number types" (fixed line, mobile, toll free, ...), as
        # phonenumbers.is_valid_number decides; the general pattern alone is looser.
        patterns = sorted(
            {
                desc.national_number_pattern
                for m in metas
                for desc in (getattr(m, t) for t in _NUMBER_TYPES)
                if desc is not None and desc.national_number_pattern
            }
        )
        pattern = patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)
        codes.append((str(code), main.national_prefix or "", "|".join(map(str, lengths)), _portable(pattern)))

    data_dir.mkdir(parents=True, exist_ok=True)
    for path, columns, rows in (
        (data_dir / REGIONS_FILE.name, ("region", "country_code", "international_prefix"), regions),
        (
            data_dir / COUNTRY_CODES_FILE.name,
            ("country_code", "trunk_prefix", "possible_lengths", "national_pattern"),
            codes,
        ),
    ):
        with path.open("w", newline="", encoding="utf-8") as f:
            f.write(header)
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            w.writerows(rows)
    if data_dir.resolve() == DATA_DIR:
        phone_regions.cache_clear()
        phone_country_codes.cache_clear()
    return len(regions), len(codes)
