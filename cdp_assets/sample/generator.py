"""Seeded, realistic, messy multi-source sample data for the CDP pipeline.

``generate_sample(out_dir, n_records)`` writes four source objects (shop customers
and orders as CSV, loyalty members as Parquet, web events as JSON lines), each
split into a historical file (``updated_at`` in 2023) and two daily incremental
files (2024-06-01 and 2024-06-02), plus ``ground_truth.csv`` mapping every record
to the person that produced it.

Identity model
--------------
About ``n_records / 3`` persons.  A regular person owns 1-3 emails, 1-2 US phone
numbers and 1-3 web cookies; each record of the person uses a random pick of
those identifiers, so identities are shared transitively across sources.  About
2% of the persons are *chain* persons: they own 6-12 emails and their records
form a path ``(e1,b1) (e2,b1) (e2,b2) (e3,b2) ...`` where each bridge ``b`` is a
phone (shop customer / loyalty member records) or a cookie (web events), so
consecutive records share exactly one identifier and unification needs many
hops.  Chain records are never nulled or junked (that would break the chain).

Every valid identifier belongs to exactly one person.  Junk values
(``test@test.com``, ``N/A``, ``""``, ``not-an-email``, ``0000000000``, ``123``)
are shared by many unrelated persons on purpose.

Row counts
----------
``n_records`` is exactly the number of rows written over the four objects
(customers 25%, orders 30%, members 20%, events the rest, integer floor
division).  Per object ``round(historical_share * rows)`` rows are historical and
the rest incremental (day 1 gets the odd row).  For shop customers,
``min(5% of rows, incremental rows, historical rows)`` of the incremental rows are
updated versions of historical customers (same ``customer_id``, later
``updated_at``, possibly another phone of the person), so distinct customer ids
= customer rows - updates.  ``ground_truth.csv`` has one row per distinct record
id.

Everything is vectorised with numpy/pandas; output is byte-identical for the
same ``(n_records, seed, historical_share)``.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cdp_assets.config.phone_regions import phone_country_codes

__all__ = [
    "INCREMENTAL_DATES",
    "JUNK_EMAILS",
    "JUNK_PHONES",
    "OBJECT_COLUMNS",
    "SampleSummary",
    "generate_sample",
    "main",
]

# --------------------------------------------------------------------------- constants

INCREMENTAL_DATES: tuple[str, str] = ("2024-06-01", "2024-06-02")
HISTORICAL_YEAR = 2023

#: "source/object" -> output columns (the first is the record id)
OBJECT_COLUMNS: dict[str, tuple[str, ...]] = {
    "shop/customers": ("customer_id", "email", "phone", "first_name", "last_name", "updated_at"),
    "shop/orders": ("order_id", "customer_id", "email", "amount", "updated_at"),
    "loyalty/members": ("member_id", "email", "phone", "first_name", "last_name", "updated_at"),
    "web/events": ("event_id", "cookie_id", "email", "event_type", "updated_at"),
}
_FILES: dict[str, tuple[str, str]] = {  # object key -> (file stem, extension)
    "shop/customers": ("customers", "csv"),
    "shop/orders": ("orders", "csv"),
    "loyalty/members": ("members", "parquet"),
    "web/events": ("events", "jsonl"),
}
_ID_PREFIX = {"shop/customers": "C", "shop/orders": "O", "loyalty/members": "M", "web/events": "E"}

JUNK_EMAILS: tuple[str, ...] = ("test@test.com", "N/A", "", "not-an-email")
JUNK_PHONES: tuple[str, ...] = ("0000000000", "N/A", "123")

# (null rate, junk rate) per identifier column of regular (non-chain) records
_EMAIL_MISSING = {
    "shop/customers": (0.12, 0.03),
    "shop/orders": (0.05, 0.02),  # an order nearly always carries a contact email
    "loyalty/members": (0.15, 0.03),
    "web/events": (0.30, 0.025),
}
_PHONE_MISSING = {"shop/customers": (0.25, 0.03), "loyalty/members": (0.20, 0.03)}
_COOKIE_NULL = 0.10
_NAME_NULL = 0.05
_GUEST_ORDER = 0.08  # orders without customer_id although the person has an account
_UPDATE_SHARE = 0.05  # share of shop customer rows that are updates of historical ones
_CHAIN_SHARE = 0.02
_CHAIN_CAP = 0.30  # chain records may use at most this share of an object's rows

_FIRST_NAMES = (
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
_LAST_NAMES = (
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

_EVENT_TYPES = np.array(
    ["page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "signup",
     "newsletter_subscribe"],
    dtype=object,
)
_EVENT_TYPE_P = np.array([0.40, 0.18, 0.12, 0.06, 0.06, 0.10, 0.04, 0.04])

_HEX = "0123456789abcdef"
_DIGITS = "0123456789"
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


_FIRST_TAB = _name_table(_FIRST_NAMES)
_LAST_TAB = _name_table(_LAST_NAMES)
_NAME_VARIANT_P = np.array([0.72, 0.10, 0.09, 0.09])
# (3, n) spellings used inside emails: lower, Title, UPPER
_FIRST_EM = _FIRST_TAB[[1, 0, 2]]
_LAST_EM = _LAST_TAB[[1, 0, 2]]
_INIT_EM = np.array(
    [[s[0].lower() for s in _FIRST_NAMES], [s[0] for s in _FIRST_NAMES],
     [s[0] for s in _FIRST_NAMES]],
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
    return np.array(
        [a for a in range(201, 990) if a % 100 != 11 and all(valid.fullmatch(f"{a}{e}{line:04d}") for e, line in probes)],
        dtype=np.int64,
    )


_AREAS = _areas_in_use()
_PHONE_SPACE = len(_AREAS) * len(_EXCHANGES) * 10_000
assert math.gcd(_MIX_MULT, _PHONE_SPACE) == 1


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class SampleSummary:
    out_dir: Path
    records: dict[str, int]  # "shop/customers" -> rows written (historical + incremental)
    persons: int  # distinct persons having at least one record
    files: list[Path]


def generate_sample(
    out_dir: Path | str,
    n_records: int,
    seed: int = 42,
    historical_share: float = 0.7,
    chain_emails: tuple[int, int] = (6, 12),
) -> SampleSummary:
    """Write the messy multi-source sample under ``out_dir`` (see module docstring).

    ``chain_emails`` bounds the number of emails of a chain person (a chain of 2(k-1) records);
    benchmarks raise it to stress loops that need one round per link.
    """
    lo_chain, hi_chain = (int(x) for x in chain_emails)
    if not 2 <= lo_chain <= hi_chain:
        raise ValueError(f"chain_emails must be (low, high) with 2 <= low <= high, got {chain_emails!r}")
    n = int(n_records)
    if n < 0:
        raise ValueError(f"n_records must be >= 0, got {n_records!r}")
    share = float(historical_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"historical_share must be within [0, 1], got {historical_share!r}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)

    # ---- row budgets ---------------------------------------------------------------
    rows = {
        "shop/customers": n * 25 // 100,
        "shop/orders": n * 30 // 100,
        "loyalty/members": n * 20 // 100,
    }
    rows["web/events"] = n - sum(rows.values())
    hist = {k: _round(share * v) for k, v in rows.items()}
    n_upd = min(rows["shop/customers"] * 5 // 100,
                rows["shop/customers"] - hist["shop/customers"], hist["shop/customers"])
    distinct = dict(rows)
    distinct["shop/customers"] -= n_upd

    # ---- persons --------------------------------------------------------------------
    n_persons = max(1, n // 3)
    first_idx = rng.integers(0, len(_FIRST_NAMES), n_persons)
    last_idx = rng.integers(0, len(_LAST_NAMES), n_persons)

    # ---- chain persons (long identity paths) ----------------------------------------
    n_cand = min(_round(n_persons * _CHAIN_SHARE), n_persons - 1)
    cand = np.sort(rng.choice(n_persons, n_cand, replace=False)) if n_cand > 0 else np.zeros(0, np.int64)
    cand_emails = rng.integers(lo_chain, hi_chain + 1, n_cand)  # emails per chain person
    cand_bridges = cand_emails - 1
    n_bridge_cand = int(cand_bridges.sum())
    bridge_is_phone = rng.random(n_bridge_cand) < 0.5
    # object of the two records of each bridge: 0 customer, 1 member (phone), 2 event (cookie)
    pair_obj = np.where(
        bridge_is_phone[:, None], (rng.random((n_bridge_cand, 2)) < 0.5).astype(np.int64), 2
    )
    bridge_owner = np.repeat(np.arange(n_cand), cand_bridges)
    per_chain = np.zeros((n_cand, 3), dtype=np.int64)
    np.add.at(per_chain, (np.repeat(bridge_owner, 2), pair_obj.ravel()), 1)
    cum = np.cumsum(per_chain, axis=0)
    caps = [
        int(_CHAIN_CAP * distinct["shop/customers"]),
        int(_CHAIN_CAP * distinct["loyalty/members"]),
        int(_CHAIN_CAP * distinct["web/events"]),
    ]
    n_chain = min(int(np.searchsorted(cum[:, j], caps[j], side="right")) for j in range(3)) \
        if n_cand else 0
    chain_persons = cand[:n_chain]
    chain_emails = cand_emails[:n_chain]
    keep_b = bridge_owner < n_chain
    bridge_owner = bridge_owner[keep_b]
    bridge_is_phone = bridge_is_phone[keep_b]
    pair_obj = pair_obj[keep_b]
    bridge_pos = np.arange(len(bridge_owner)) - np.repeat(
        np.cumsum(chain_emails - 1) - (chain_emails - 1), chain_emails - 1
    )

    is_chain = np.zeros(n_persons, dtype=bool)
    is_chain[chain_persons] = True
    regular = np.flatnonzero(~is_chain)
    n_reg = len(regular)
    reg_local = np.full(n_persons, -1, dtype=np.int64)
    reg_local[regular] = np.arange(n_reg)

    # ---- identifier pools -------------------------------------------------------------
    reg_n_email = rng.choice(np.array([1, 2, 3]), n_reg, p=[0.5, 0.3, 0.2])
    reg_n_phone = rng.choice(np.array([1, 2]), n_reg, p=[0.65, 0.35])
    reg_n_cookie = rng.choice(np.array([1, 2, 3]), n_reg, p=[0.5, 0.3, 0.2])
    reg_email_start = _starts(reg_n_email)
    reg_phone_start = _starts(reg_n_phone)
    reg_cookie_start = _starts(reg_n_cookie)
    e_reg, p_reg, c_reg = (int(reg_n_email.sum()), int(reg_n_phone.sum()),
                           int(reg_n_cookie.sum()))
    chain_email_start = e_reg + _starts(chain_emails)
    email_owner = np.concatenate(
        [np.repeat(regular, reg_n_email), np.repeat(chain_persons, chain_emails)]
    )
    n_phone_br = int(bridge_is_phone.sum())
    n_cookie_br = len(bridge_is_phone) - n_phone_br
    # global pool index of every bridge's phone / cookie
    bridge_ident = np.empty(len(bridge_is_phone), dtype=np.int64)
    bridge_ident[bridge_is_phone] = p_reg + np.arange(n_phone_br)
    bridge_ident[~bridge_is_phone] = c_reg + np.arange(n_cookie_br)
    phone_total = p_reg + n_phone_br
    cookie_total = c_reg + n_cookie_br

    emails = _EmailPool.build(email_owner, first_idx, last_idx, rng)
    phone_off = int(rng.integers(0, _PHONE_SPACE))
    phone_numbers = _phone_numbers(np.arange(phone_total, dtype=np.int64), phone_off)
    cookie_key = rng.integers(0, 2**63, dtype=np.int64).astype(np.uint64)
    cookie_values = _splitmix64(np.arange(cookie_total, dtype=np.uint64) + cookie_key)

    # ---- chain records ----------------------------------------------------------------
    owner_person = chain_persons[bridge_owner]
    e0 = chain_email_start[bridge_owner] + bridge_pos
    ch_person = np.repeat(owner_person, 2)
    ch_email = np.stack([e0, e0 + 1], axis=1).ravel()
    ch_ident = np.repeat(bridge_ident, 2)
    ch_obj = pair_obj.ravel()

    # ---- regular records --------------------------------------------------------------
    n_ch = {
        "shop/customers": int((ch_obj == 0).sum()),
        "loyalty/members": int((ch_obj == 1).sum()),
        "web/events": int((ch_obj == 2).sum()),
        "shop/orders": 0,
    }
    keys = list(OBJECT_COLUMNS)
    reg_rows = np.array([distinct[k] - n_ch[k] for k in keys], dtype=np.int64)
    labels = rng.permutation(np.repeat(np.arange(4), reg_rows))
    total_reg = len(labels)
    if n_reg:
        first_pass = rng.permutation(regular)[: min(n_reg, total_reg)]
        weights = rng.gamma(1.0, 1.0, n_reg)
        extra = regular[rng.choice(n_reg, total_reg - len(first_pass), p=weights / weights.sum())]
        reg_person = np.concatenate([first_pass, extra])
    else:  # pragma: no cover - n_persons >= 1 and chain persons < n_persons
        reg_person = np.zeros(0, dtype=np.int64)

    def pick(person: np.ndarray, start: np.ndarray, count: np.ndarray) -> np.ndarray:
        rl = reg_local[person]
        return start[rl] + (rng.random(len(person)) * count[rl]).astype(np.int64)

    def missing(idx: np.ndarray, null_rate: float, junk_rate: float, n_junk: int) -> np.ndarray:
        u = rng.random(len(idx))
        kind = rng.integers(0, max(n_junk, 1), len(idx))
        out = idx.copy()
        out[u < null_rate] = -1
        junk = (u >= null_rate) & (u < null_rate + junk_rate)
        out[junk] = -2 - kind[junk]
        return out

    def regular_object(j: int, key: str) -> dict[str, np.ndarray]:
        person = reg_person[labels == j]
        rec: dict[str, np.ndarray] = {"person": person}
        email = pick(person, reg_email_start, reg_n_email)
        rec["email"] = missing(email, *_EMAIL_MISSING[key], len(JUNK_EMAILS))
        if key in _PHONE_MISSING:
            phone = pick(person, reg_phone_start, reg_n_phone)
            rec["phone"] = missing(phone, *_PHONE_MISSING[key], len(JUNK_PHONES))
        if key == "web/events":
            cookie = pick(person, reg_cookie_start, reg_n_cookie)
            rec["cookie"] = np.where(rng.random(len(person)) < _COOKIE_NULL, -1, cookie)
        rec["chain"] = np.zeros(len(person), dtype=bool)
        return rec

    def with_chain(rec: dict[str, np.ndarray], obj_code: int, ident: str) -> dict[str, np.ndarray]:
        sel = ch_obj == obj_code
        chain = {
            "person": ch_person[sel],
            "email": ch_email[sel],
            ident: ch_ident[sel],
            "chain": np.ones(int(sel.sum()), dtype=bool),
        }
        return {k: np.concatenate([chain[k], rec[k]]) for k in rec}

    recs = {
        "shop/customers": with_chain(regular_object(0, "shop/customers"), 0, "phone"),
        "shop/orders": regular_object(1, "shop/orders"),
        "loyalty/members": with_chain(regular_object(2, "loyalty/members"), 1, "phone"),
        "web/events": with_chain(regular_object(3, "web/events"), 2, "cookie"),
    }

    # ---- per object: shuffle, ids, hist/incremental split, timestamps ------------------
    for key, rec in recs.items():
        perm = rng.permutation(len(rec["person"]))
        for col in rec:
            rec[col] = rec[col][perm]
        rec["id"] = np.arange(1, len(perm) + 1, dtype=np.int64)

    cust = recs["shop/customers"]
    h_c = hist["shop/customers"]
    upd_src = np.sort(rng.choice(h_c, n_upd, replace=False)) if n_upd else np.zeros(0, np.int64)
    upd = {col: arr[upd_src] for col, arr in cust.items()}
    # an updated version may carry another phone of the person (never for chain records)
    change = (rng.random(n_upd) < 0.5) & ~upd["chain"]
    if change.any():
        new_phone = pick(upd["person"][change], reg_phone_start, reg_n_phone)
        upd["phone"][change] = new_phone
    n_new = distinct["shop/customers"] - h_c
    inc_perm = rng.permutation(n_new + n_upd)
    cust_rows = {
        col: np.concatenate([cust[col][:h_c], np.concatenate([cust[col][h_c:], upd[col]])[inc_perm]])
        for col in cust
    }

    # orders reference one of the person's shop customer accounts (if any)
    c_person = cust["person"]
    order_c = np.argsort(c_person, kind="stable")
    c_count = np.bincount(c_person, minlength=n_persons)
    c_start = np.cumsum(c_count) - c_count
    orders = recs["shop/orders"]
    o_person = orders["person"]
    has_acct = (c_count[o_person] > 0) & (rng.random(len(o_person)) >= _GUEST_ORDER)
    o_pick = c_start[o_person] + (rng.random(len(o_person)) * c_count[o_person]).astype(np.int64)
    if len(order_c):
        o_cust = cust["id"][order_c[np.minimum(o_pick, len(order_c) - 1)]]
    else:
        o_cust = np.zeros(len(o_person), dtype=np.int64)
    orders["customer"] = np.where(has_acct, o_cust, -1)
    orders["cents"] = np.maximum(
        99, np.round(rng.lognormal(3.6, 0.85, len(o_person)) * 100)
    ).astype(np.int64)
    recs["web/events"]["etype"] = rng.choice(len(_EVENT_TYPES), len(recs["web/events"]["person"]),
                                             p=_EVENT_TYPE_P)
    recs["shop/customers"] = cust_rows

    # ---- render & write ---------------------------------------------------------------
    files: list[Path] = []
    written: dict[str, int] = {}
    id_width = _id_width(n)  # one width for every object, so references match
    for key in keys:
        rec = recs[key]
        m = len(rec["person"])
        h = hist[key]
        inc = m - h
        day1 = (inc + 1) // 2
        seg = np.concatenate([
            np.zeros(h, np.int64), np.ones(day1, np.int64), np.full(inc - day1, 2, np.int64)
        ])
        secs = _timestamps(seg, rng)
        cols = _render(key, rec, secs, id_width, emails, phone_numbers, cookie_values, first_idx,
                       last_idx, rng)
        source, obj = key.split("/")
        stem, ext = _FILES[key]
        obj_dir = out / source / obj
        (obj_dir / "historical").mkdir(parents=True, exist_ok=True)
        targets = [
            (obj_dir / "historical" / f"{stem}_hist.{ext}", 0),
            (obj_dir / f"{stem}_{INCREMENTAL_DATES[0]}.{ext}", 1),
            (obj_dir / f"{stem}_{INCREMENTAL_DATES[1]}.{ext}", 2),
        ]
        for path, s in targets:
            rows_s = np.flatnonzero(seg == s)
            if s:  # incremental files in change order
                rows_s = rows_s[np.lexsort((rec["id"][rows_s], secs[rows_s]))]
            frame = pd.DataFrame({c: cols[c][rows_s] for c in OBJECT_COLUMNS[key]})
            _write(frame, path, ext)
            files.append(path)
        written[key] = m

    # ---- ground truth -------------------------------------------------------------------
    gt_parts = []
    pid_width = max(6, len(str(n_persons)))
    for key in keys:
        rec = recs[key]
        ids = rec["id"]
        first = np.unique(ids, return_index=True)[1]  # customers: drop update duplicates
        ids, person = ids[first], rec["person"][first]
        source, obj = key.split("/")
        gt_parts.append(pd.DataFrame({
            "source": source,
            "object": obj,
            "record_id": _fmt_ids(_ID_PREFIX[key], ids, id_width),
            "person_id": _fmt_ids("P", person + 1, pid_width),
        }))
    gt = pd.concat(gt_parts, ignore_index=True)
    gt_path = out / "ground_truth.csv"
    _write(gt, gt_path, "csv")
    files.append(gt_path)

    persons_used = len(np.unique(np.concatenate([recs[k]["person"] for k in keys])))
    return SampleSummary(out_dir=out, records=written, persons=int(persons_used), files=files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdp_assets.sample.generator",
        description="Write a seeded, messy multi-source CDP sample data set.",
    )
    parser.add_argument("--records", type=int, default=2000, help="total rows over all objects")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--historical-share", type=float, default=0.7)
    args = parser.parse_args(argv)
    summary = generate_sample(args.out, args.records, seed=args.seed,
                              historical_share=args.historical_share)
    counts = ", ".join(f"{k}={v}" for k, v in summary.records.items())
    print(
        f"wrote {sum(summary.records.values())} records of {summary.persons} persons "
        f"({counts}) in {len(summary.files)} files to {summary.out_dir}"
    )
    return 0


# --------------------------------------------------------------------------- internals


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _id_width(n: int) -> int:
    return max(6, len(str(n)))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer (unique inputs -> unique, random-looking outputs)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _phone_numbers(index: np.ndarray, offset: int) -> np.ndarray:
    """Distinct valid 10-digit US numbers (as int64) for distinct pool indices."""
    code = (index * _MIX_MULT + offset) % _PHONE_SPACE
    line = code % 10_000
    rest = code // 10_000
    exch = _EXCHANGES[rest % len(_EXCHANGES)]
    area = _AREAS[rest // len(_EXCHANGES)]
    return area * 10_000_000 + exch * 10_000 + line


def _fmt_digits(values: np.ndarray, template: str, alphabet: str = _DIGITS) -> np.ndarray:
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


def _fmt_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return _fmt_digits(np.asarray(numbers, dtype=np.int64), prefix + "X" * width)


_DAY_EPOCH = {
    0: int(np.datetime64(f"{HISTORICAL_YEAR}-01-01T00:00:00", "s").astype(np.int64)),
    1: int(np.datetime64(f"{INCREMENTAL_DATES[0]}T00:00:00", "s").astype(np.int64)),
    2: int(np.datetime64(f"{INCREMENTAL_DATES[1]}T00:00:00", "s").astype(np.int64)),
}
_HIST_SPAN = 365 * 86_400


def _timestamps(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Epoch seconds: 2023 for segment 0, the incremental day for segments 1 and 2."""
    base = np.array([_DAY_EPOCH[0], _DAY_EPOCH[1], _DAY_EPOCH[2]], dtype=np.int64)[seg]
    span = np.where(seg == 0, _HIST_SPAN, 86_400)
    return base + (rng.random(len(seg)) * span).astype(np.int64)


def _fmt_timestamps(secs: np.ndarray) -> np.ndarray:
    days = (secs // 86_400).astype("datetime64[D]")
    tod = secs % 86_400
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (days - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    packed = (((((year * 100 + month) * 100 + day) * 100 + tod // 3600) * 100
               + tod // 60 % 60) * 100 + tod % 60)
    return _fmt_digits(packed, "XXXX-XX-XX XX:XX:XX")


@dataclass
class _EmailPool:
    owner: np.ndarray  # person of each pool email
    style: np.ndarray
    domain: np.ndarray
    number: np.ndarray  # numeric suffix, -1 for none
    number_str: np.ndarray  # object table: number_str[number + 1]

    @classmethod
    def build(cls, owner: np.ndarray, first_idx: np.ndarray, last_idx: np.ndarray,
              rng: np.random.Generator) -> "_EmailPool":
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
            base = _email_strings(owner, style, domain, np.full(n, -1, np.int64),
                                  np.zeros(n, np.int64), first_idx, last_idx,
                                  np.array([""], dtype=object))
            codes = pd.factorize(base)[0]
            order = np.argsort(codes, kind="stable")
            counts = np.bincount(codes)
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n) - np.repeat(_starts(counts), counts)
            number = np.where((rank > 0) | want_number, rank * 7 + jitter, -1)
        top = int(number.max()) if n else -1
        number_str = np.array([""] + [str(i) for i in range(top + 1)], dtype=object)
        return cls(owner, style, domain, number, number_str)

    def render(self, idx: np.ndarray, first_idx: np.ndarray, last_idx: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        out = np.full(len(idx), None, dtype=object)
        valid = np.flatnonzero(idx >= 0)
        v = idx[valid]
        variant = rng.choice(3, len(v), p=_EMAIL_VARIANT_P)
        pad = rng.random(len(v)) < _EMAIL_PAD_P
        pre = rng.integers(0, len(_PADS), len(v))
        suf = rng.integers(0, len(_PADS), len(v))
        if len(v):
            s = _email_strings(self.owner[v], self.style[v], self.domain[v], self.number[v],
                               variant, first_idx, last_idx, self.number_str)
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


def _render_phones(idx: np.ndarray, numbers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.full(len(idx), None, dtype=object)
    fmt = rng.choice(len(_PHONE_TEMPLATES), len(idx), p=_PHONE_TEMPLATE_P)
    for f, template in enumerate(_PHONE_TEMPLATES):
        sel = np.flatnonzero((idx >= 0) & (fmt == f))
        out[sel] = _fmt_digits(numbers[idx[sel]], template)
    junk = np.flatnonzero(idx <= -2)
    out[junk] = np.array(JUNK_PHONES, dtype=object)[-idx[junk] - 2]
    return out


def _render_names(table: np.ndarray, name_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    variant = rng.choice(len(_NAME_VARIANT_P), len(name_idx), p=_NAME_VARIANT_P)
    out = table[variant, name_idx]
    out[rng.random(len(name_idx)) < _NAME_NULL] = None
    return out


def _render(key, rec, secs, id_width, emails, phone_numbers, cookie_values, first_idx,
            last_idx, rng):
    m = len(rec["person"])
    id_col = OBJECT_COLUMNS[key][0]
    cols = {
        id_col: _fmt_ids(_ID_PREFIX[key], rec["id"], id_width),
        "email": emails.render(rec["email"], first_idx, last_idx, rng),
        "updated_at": _fmt_timestamps(secs),
    }
    if key in ("shop/customers", "loyalty/members"):
        cols["phone"] = _render_phones(rec["phone"], phone_numbers, rng)
        cols["first_name"] = _render_names(_FIRST_TAB, first_idx[rec["person"]], rng)
        cols["last_name"] = _render_names(_LAST_TAB, last_idx[rec["person"]], rng)
    elif key == "shop/orders":
        cust = rec["customer"]
        col = np.full(m, None, dtype=object)
        has = np.flatnonzero(cust >= 0)
        col[has] = _fmt_ids("C", cust[has], id_width)
        cols["customer_id"] = col
        cols["amount"] = _amounts(rec["cents"])
    else:  # web/events
        ck = rec["cookie"]
        col = np.full(m, None, dtype=object)
        has = np.flatnonzero(ck >= 0)
        col[has] = _fmt_digits(cookie_values[ck[has]], "ck_" + "X" * 16, _HEX)
        cols["cookie_id"] = col
        cols["event_type"] = _EVENT_TYPES[rec["etype"]]
    return cols


def _amounts(cents: np.ndarray) -> np.ndarray:
    out = np.empty(len(cents), dtype=object)
    dollars = cents // 100
    for width in range(1, 13):
        lo, hi = (0 if width == 1 else 10 ** (width - 1)), 10**width
        sel = np.flatnonzero((dollars >= lo) & (dollars < hi))
        if len(sel):
            out[sel] = _fmt_digits(cents[sel], "X" * width + ".XX")
    return out


def _write(frame: pd.DataFrame, path: Path, ext: str) -> None:
    if ext == "csv":
        frame.to_csv(path, index=False, lineterminator="\n")
    elif ext == "jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=True) if len(frame) else ""
        if text and not text.endswith("\n"):
            text += "\n"
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    elif ext == "parquet":
        table = pa.table({c: pa.array(frame[c].to_numpy(dtype=object), type=pa.string())
                          for c in frame.columns})
        pq.write_table(table, path, compression="snappy")
    else:  # pragma: no cover
        raise ValueError(ext)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
