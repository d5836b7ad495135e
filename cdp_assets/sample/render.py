"""How the sample's values are written: names, emails, US phones, cookies, ids, timestamps and
amounts rendered from the integer codes that the identity model draws.

The random draws made here (case variants, padding, formats) come from the generator's one
identity stream, in the order ``generate_sample`` calls these functions; moving a call changes
every value after it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from cdp_assets.config.phone_regions import phone_country_codes
from cdp_assets.sample.layout import (
    HISTORICAL_YEAR,
    ID_PREFIX,
    INCREMENTAL_DATES,
    JUNK_EMAILS,
    JUNK_PHONES,
    IDENTITY_COLUMNS,
)

if TYPE_CHECKING:  # pragma: no cover
    from cdp_assets.sample.identities import IdentifierPools, People

_NAME_NULL = 0.05

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily "
    "Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Dorothy George Melissa "
    "Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon Jeffrey Laura Ryan Cynthia "
    "Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry "
    "Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory "
    "Christine Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine "
    "Dennis Maria Jerry Heather Tyler Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce "
    "Henry Virginia Zachary Victoria Douglas Kelly Peter Lauren Kyle Christina Noah Joan "
    "Ethan Evelyn Jeremy Judith Walter Megan Christian Andrea Keith Cheryl Roger Hannah "
    "Terry Jacqueline Austin Martha Sean Gloria Gerald Teresa Carl Ann Harold Sara Dylan "
    "Madison Arthur Frances Lawrence Kathryn Jordan Janice Jesse Jean Bryan Abigail Billy "
    "Alice Bruce Judy Gabriel Sophia Joe Grace Logan Denise Alan Amber Juan Doris Albert "
    "Marilyn Willie Danielle Elijah Beverly Wayne Isabella Randy Theresa Vincent Diana Mason "
    "Natalie Roy Brittany Ralph Charlotte Bobby Marie Russell Kayla Bradley Alexis Philip Lori"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Taylor Moore Jackson Martin Lee Perez Thompson White "
    "Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres "
    "Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts "
    "Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris "
    "Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly "
    "Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood Bennett Gray Mendoza "
    "Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell "
    "Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher "
    "Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin "
    "Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens "
    "Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy "
    "Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter "
    "Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer "
    "Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt "
    "Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn"
).split()

# (lowercase, mixed-case) domain spellings and their popularity
_DOMAINS = (
    ("gmail.com", "Gmail.com", 0.34),
    ("yahoo.com", "Yahoo.COM", 0.14),
    ("hotmail.com", "Hotmail.Com", 0.10),
    ("outlook.com", "Outlook.com", 0.09),
    ("icloud.com", "iCloud.com", 0.08),
    ("aol.com", "AOL.com", 0.04),
    ("example.com", "Example.COM", 0.06),
    ("protonmail.com", "ProtonMail.com", 0.04),
    ("comcast.net", "Comcast.NET", 0.05),
    ("msn.com", "MSN.com", 0.03),
    ("live.com", "Live.com", 0.03),
)
# local-part styles: 0 first.last, 1 firstlast, 2 flast, 3 first_last, 4 last.first, 5 first
_STYLE_P = np.array([0.34, 0.16, 0.16, 0.10, 0.09, 0.15])
_STYLE_SEP = np.array([".", "", "", "_", ".", ""], dtype=object)
_EMAIL_VARIANT_P = np.array([0.62, 0.30, 0.08])  # lower, Mixed, UPPER
_EMAIL_PAD_P = 0.12
_PADS = np.array([" ", "  ", "   "], dtype=object)

# 10 'X' slots = the 10 digits of the number
_PHONE_TEMPLATES = (
    "(XXX) XXX-XXXX",
    "XXX.XXX.XXXX",
    "+1 XXX XXX XXXX",
    "1-XXX-XXX-XXXX",
    "XXXXXXXXXX",
    "XXX-XXX-XXXX",
)
_PHONE_TEMPLATE_P = np.array([0.24, 0.16, 0.14, 0.12, 0.20, 0.14])

EVENT_TYPES = np.array(
    ["page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "signup", "newsletter_subscribe"],
    dtype=object,
)
EVENT_TYPE_P = np.array([0.40, 0.18, 0.12, 0.06, 0.06, 0.10, 0.04, 0.04])

HEX = "0123456789abcdef"
DIGITS = "0123456789"
_MIX_MULT = 2654435761  # prime multiplier for the affine phone-number bijection


def _name_table(names: Sequence[str]) -> np.ndarray:
    """(4, n) object table of name spellings: Title, lower, UPPER, padded."""
    title = list(names)
    return np.array(
        [
            title,
            [s.lower() for s in title],
            [s.upper() for s in title],
            [f" {s}  " for s in title],
        ],
        dtype=object,
    )


_FIRST_TAB = _name_table(FIRST_NAMES)
_LAST_TAB = _name_table(LAST_NAMES)
_NAME_VARIANT_P = np.array([0.72, 0.10, 0.09, 0.09])
# (3, n) spellings used inside emails: lower, Title, UPPER
_FIRST_EM = _FIRST_TAB[[1, 0, 2]]
_LAST_EM = _LAST_TAB[[1, 0, 2]]
_INIT_EM = np.array(
    [[s[0].lower() for s in FIRST_NAMES], [s[0] for s in FIRST_NAMES], [s[0] for s in FIRST_NAMES]],
    dtype=object,
)
_DOM_EM = np.array(
    [[d[0] for d in _DOMAINS], [d[1] for d in _DOMAINS], [d[0].upper() for d in _DOMAINS]],
    dtype=object,
)
_DOM_P = np.array([d[2] for d in _DOMAINS])
_DOM_P = _DOM_P / _DOM_P.sum()

# US exchanges 200-999 without the N11 service codes, and the area codes in use: those whose
# numbers the phone table (generated from phonenumbers, which the staging rule applies) calls
# valid, so that every generated number standardises.
_EXCHANGES = np.array([e for e in range(200, 1000) if e % 100 != 11], dtype=np.int64)


def _areas_in_use() -> np.ndarray:
    valid = re.compile(f"(?:{phone_country_codes()['1'].national_pattern})")
    probes = [(e, line) for e in _EXCHANGES[::37] for line in (0, 1234, 9999)]
    areas = [a for a in range(201, 990) if a % 100 != 11]
    in_use = [a for a in areas if all(valid.fullmatch(f"{a}{e}{line:04d}") for e, line in probes)]
    return np.array(in_use, dtype=np.int64)


_AREAS = _areas_in_use()
PHONE_SPACE = len(_AREAS) * len(_EXCHANGES) * 10_000
assert math.gcd(_MIX_MULT, PHONE_SPACE) == 1


def starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def id_width(n: int) -> int:
    return max(6, len(str(n)))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer (unique inputs -> unique, random-looking outputs)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def phone_numbers(index: np.ndarray, offset: int) -> np.ndarray:
    """Distinct valid 10-digit US numbers (as int64) for distinct pool indices."""
    code = (index * _MIX_MULT + offset) % PHONE_SPACE
    line = code % 10_000
    rest = code // 10_000
    exch = _EXCHANGES[rest % len(_EXCHANGES)]
    area = _AREAS[rest // len(_EXCHANGES)]
    return area * 10_000_000 + exch * 10_000 + line


def fmt_digits(values: np.ndarray, template: str, alphabet: str = DIGITS) -> np.ndarray:
    """Render non-negative integers into ``template`` ('X' = one digit, most significant
    first, zero padded) as an object array of str, without per-element Python code."""
    n = len(values)
    width = len(template)
    if n == 0:
        return np.zeros(0, dtype=object)
    base = len(alphabet)
    buf = np.empty((n, width), dtype="<u4")
    buf[:] = np.frombuffer(template.encode("utf-32-le"), dtype="<u4")
    alpha = np.frombuffer(alphabet.encode("utf-32-le"), dtype="<u4")
    dt = np.uint64 if values.dtype == np.uint64 else np.int64
    v = values.astype(dt)
    b = dt(base)
    for pos in reversed([i for i, ch in enumerate(template) if ch == "X"]):
        buf[:, pos] = alpha[(v % b).astype(np.int64)]
        v = v // b
    return buf.view(f"<U{width}").ravel().astype(object)


def fmt_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return fmt_digits(np.asarray(numbers, dtype=np.int64), prefix + "X" * width)


_DAY_EPOCH = {
    0: int(np.datetime64(f"{HISTORICAL_YEAR}-01-01T00:00:00", "s").astype(np.int64)),
    1: int(np.datetime64(f"{INCREMENTAL_DATES[0]}T00:00:00", "s").astype(np.int64)),
    2: int(np.datetime64(f"{INCREMENTAL_DATES[1]}T00:00:00", "s").astype(np.int64)),
}
_HIST_SPAN = 365 * 86_400


def timestamps(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Epoch seconds: 2023 for segment 0, the incremental day for segments 1 and 2."""
    base = np.array([_DAY_EPOCH[0], _DAY_EPOCH[1], _DAY_EPOCH[2]], dtype=np.int64)[seg]
    span = np.where(seg == 0, _HIST_SPAN, 86_400)
    return base + (rng.random(len(seg)) * span).astype(np.int64)


def fmt_timestamps(secs: np.ndarray) -> np.ndarray:
    days = (secs // 86_400).astype("datetime64[D]")
    tod = secs % 86_400
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (days - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    packed = ((((year * 100 + month) * 100 + day) * 100 + tod // 3600) * 100 + tod // 60 % 60) * 100 + tod % 60
    return fmt_digits(packed, "XXXX-XX-XX XX:XX:XX")


@dataclass
class EmailPool:
    owner: np.ndarray  # person of each pool email
    style: np.ndarray
    domain: np.ndarray
    number: np.ndarray  # numeric suffix, -1 for none
    number_str: np.ndarray  # object table: number_str[number + 1]

    @classmethod
    def build(
        cls, owner: np.ndarray, first_idx: np.ndarray, last_idx: np.ndarray, rng: np.random.Generator
    ) -> "EmailPool":
        n = len(owner)
        style = rng.choice(len(_STYLE_P), n, p=_STYLE_P)
        domain = rng.choice(len(_DOM_P), n, p=_DOM_P)
        jitter = rng.integers(1, 8, n)
        want_number = rng.random(n) < 0.2
        if n == 0:
            number = np.zeros(0, dtype=np.int64)
        else:
            # canonical (lowercase) address without suffix; repeats get a numeric suffix
            # from a disjoint range per repeat, so every address is unique.
            base = _email_strings(
                owner,
                style,
                domain,
                np.full(n, -1, np.int64),
                np.zeros(n, np.int64),
                first_idx,
                last_idx,
                np.array([""], dtype=object),
            )
            codes = pd.factorize(base)[0]
            order = np.argsort(codes, kind="stable")
            counts = np.bincount(codes)
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n) - np.repeat(starts(counts), counts)
            number = np.where((rank > 0) | want_number, rank * 7 + jitter, -1)
        top = int(number.max()) if n else -1
        number_str = np.array([""] + [str(i) for i in range(top + 1)], dtype=object)
        return cls(owner, style, domain, number, number_str)

    def render(
        self, idx: np.ndarray, first_idx: np.ndarray, last_idx: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        out = np.full(len(idx), None, dtype=object)
        valid = np.flatnonzero(idx >= 0)
        v = idx[valid]
        variant = rng.choice(3, len(v), p=_EMAIL_VARIANT_P)
        pad = rng.random(len(v)) < _EMAIL_PAD_P
        pre = rng.integers(0, len(_PADS), len(v))
        suf = rng.integers(0, len(_PADS), len(v))
        if len(v):
            s = _email_strings(
                self.owner[v],
                self.style[v],
                self.domain[v],
                self.number[v],
                variant,
                first_idx,
                last_idx,
                self.number_str,
            )
            s[pad] = _PADS[pre[pad]] + s[pad] + _PADS[suf[pad]]
            out[valid] = s
        junk = np.flatnonzero(idx <= -2)
        out[junk] = np.array(JUNK_EMAILS, dtype=object)[-idx[junk] - 2]
        return out


def _email_strings(owner, style, domain, number, variant, first_idx, last_idx, number_str):
    f = first_idx[owner]
    last = last_idx[owner]
    first_s = _FIRST_EM[variant, f]
    last_s = _LAST_EM[variant, last]
    a = np.where(style == 4, last_s, np.where(style == 2, _INIT_EM[variant, f], first_s))
    b = np.where(style == 4, first_s, np.where(style == 5, "", last_s))
    return a + _STYLE_SEP[style] + b + number_str[number + 1] + "@" + _DOM_EM[variant, domain]


def render_phones(idx: np.ndarray, numbers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.full(len(idx), None, dtype=object)
    fmt = rng.choice(len(_PHONE_TEMPLATES), len(idx), p=_PHONE_TEMPLATE_P)
    for f, template in enumerate(_PHONE_TEMPLATES):
        sel = np.flatnonzero((idx >= 0) & (fmt == f))
        out[sel] = fmt_digits(numbers[idx[sel]], template)
    junk = np.flatnonzero(idx <= -2)
    out[junk] = np.array(JUNK_PHONES, dtype=object)[-idx[junk] - 2]
    return out


def render_names(table: np.ndarray, name_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    variant = rng.choice(len(_NAME_VARIANT_P), len(name_idx), p=_NAME_VARIANT_P)
    out = table[variant, name_idx]
    out[rng.random(len(name_idx)) < _NAME_NULL] = None
    return out


def render_columns(
    key: str,
    rec: dict[str, np.ndarray],
    secs: np.ndarray,
    width: int,
    people: People,
    pools: IdentifierPools,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The identity columns of one object's records (``rec``: integer codes per record), with
    ``updated_at`` from ``secs`` and ids ``width`` digits wide."""
    m = len(rec["person"])
    id_col = IDENTITY_COLUMNS[key][0]
    cols = {
        id_col: fmt_ids(ID_PREFIX[key], rec["id"], width),
        "email": pools.emails.render(rec["email"], people.first_idx, people.last_idx, rng),
        "updated_at": fmt_timestamps(secs),
    }
    if key in ("shop/customers", "loyalty/members"):
        cols["phone"] = render_phones(rec["phone"], pools.phone_numbers, rng)
        cols["first_name"] = render_names(_FIRST_TAB, people.first_idx[rec["person"]], rng)
        cols["last_name"] = render_names(_LAST_TAB, people.last_idx[rec["person"]], rng)
    elif key == "shop/orders":
        cust = rec["customer"]
        col = np.full(m, None, dtype=object)
        has = np.flatnonzero(cust >= 0)
        col[has] = fmt_ids("C", cust[has], width)
        cols["customer_id"] = col
        cols["amount"] = amounts(rec["cents"])
    else:  # web/events
        ck = rec["cookie"]
        col = np.full(m, None, dtype=object)
        has = np.flatnonzero(ck >= 0)
        col[has] = fmt_digits(pools.cookie_values[ck[has]], "ck_" + "X" * 16, HEX)
        cols["cookie_id"] = col
        cols["event_type"] = EVENT_TYPES[rec["etype"]]
    return cols


def amounts(cents: np.ndarray) -> np.ndarray:
    out = np.empty(len(cents), dtype=object)
    dollars = cents // 100
    for width in range(1, 13):
        lo, hi = (0 if width == 1 else 10 ** (width - 1)), 10**width
        sel = np.flatnonzero((dollars >= lo) & (dollars < hi))
        if len(sel):
            out[sel] = fmt_digits(cents[sel], "X" * width + ".XX")
    return out
