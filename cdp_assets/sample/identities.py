"""The identity model: who the persons are, which identifiers each owns, and which records of
which object each person has (see cdp_assets.sample.generator's docstring for the model).

Every part draws from one random stream, in the order ``draw_records`` calls them; that order is
what keeps the same seed giving the same persons, merges and files. Values that do not decide who
merges with whom (the messiness) come from a separate stream (cdp_assets.sample.messiness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cdp_assets.sample.layout import IDENTITY_COLUMNS, JUNK_EMAILS, JUNK_PHONES
from cdp_assets.sample.render import (
    EVENT_TYPE_P,
    EVENT_TYPES,
    FIRST_NAMES,
    LAST_NAMES,
    PHONE_SPACE,
    EmailPool,
    phone_numbers,
    splitmix64,
    starts,
)

# (null rate, junk rate) per identifier column of regular (non-chain) records
_EMAIL_MISSING = {
    "shop/customers": (0.12, 0.03),
    "shop/orders": (0.05, 0.02),  # an order nearly always carries a contact email
    "loyalty/members": (0.15, 0.03),
    "web/events": (0.30, 0.025),
}
_PHONE_MISSING = {"shop/customers": (0.25, 0.03), "loyalty/members": (0.20, 0.03)}
_COOKIE_NULL = 0.10
_GUEST_ORDER = 0.08  # orders without customer_id although the person has an account
_UPDATE_SHARE_PCT = 5  # share of shop customer rows that are updates of historical ones
_CHAIN_SHARE = 0.02
_CHAIN_CAP = 0.30  # chain records may use at most this share of an object's rows
# object code of a chain record -> its object and the identifier it bridges with
_CHAIN_OBJECTS = {0: ("shop/customers", "phone"), 1: ("loyalty/members", "phone"), 2: ("web/events", "cookie")}


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class RowBudget:
    rows: dict[str, int]  # rows written per object (historical + incremental)
    hist: dict[str, int]  # historical rows per object
    updates: int  # incremental shop customer rows that update a historical customer
    distinct: dict[str, int]  # distinct record ids per object


def row_budget(n: int, historical_share: float) -> RowBudget:
    rows = {
        "shop/customers": n * 25 // 100,
        "shop/orders": n * 30 // 100,
        "loyalty/members": n * 20 // 100,
    }
    rows["web/events"] = n - sum(rows.values())
    hist = {k: round_half_up(historical_share * v) for k, v in rows.items()}
    customers = rows["shop/customers"]
    updates = min(customers * _UPDATE_SHARE_PCT // 100, customers - hist["shop/customers"], hist["shop/customers"])
    distinct = dict(rows)
    distinct["shop/customers"] -= updates
    return RowBudget(rows, hist, updates, distinct)


@dataclass(frozen=True)
class People:
    first_idx: np.ndarray  # first name of each person (index into FIRST_NAMES)
    last_idx: np.ndarray

    @property
    def count(self) -> int:
        return len(self.first_idx)


def draw_people(n: int, rng: np.random.Generator) -> People:
    n_persons = max(1, n // 3)
    first_idx = rng.integers(0, len(FIRST_NAMES), n_persons)
    last_idx = rng.integers(0, len(LAST_NAMES), n_persons)
    return People(first_idx, last_idx)


@dataclass(frozen=True)
class Chains:
    """Chain persons: records ``(e1,b1) (e2,b1) (e2,b2) ...``, one bridge ``b`` per record pair."""

    persons: np.ndarray  # the chain persons
    emails: np.ndarray  # emails per chain person
    bridge_owner: np.ndarray  # index into persons of each bridge
    bridge_is_phone: np.ndarray  # else a cookie
    pair_obj: np.ndarray  # (bridges, 2): object code of each bridge's two records
    bridge_pos: np.ndarray  # position of each bridge within its chain


def draw_chains(people: People, budget: RowBudget, chain_emails: tuple[int, int], rng: np.random.Generator) -> Chains:
    """Candidate chain persons, kept while their records fit in _CHAIN_CAP of each object."""
    lo_chain, hi_chain = chain_emails
    n_persons = people.count
    n_cand = min(round_half_up(n_persons * _CHAIN_SHARE), n_persons - 1)
    cand = np.sort(rng.choice(n_persons, n_cand, replace=False)) if n_cand > 0 else np.zeros(0, np.int64)
    cand_emails = rng.integers(lo_chain, hi_chain + 1, n_cand)  # emails per chain person
    cand_bridges = cand_emails - 1
    n_bridge_cand = int(cand_bridges.sum())
    bridge_is_phone = rng.random(n_bridge_cand) < 0.5
    # object of the two records of each bridge: 0 customer, 1 member (phone), 2 event (cookie)
    pair_obj = np.where(bridge_is_phone[:, None], (rng.random((n_bridge_cand, 2)) < 0.5).astype(np.int64), 2)
    bridge_owner = np.repeat(np.arange(n_cand), cand_bridges)
    per_chain = np.zeros((n_cand, 3), dtype=np.int64)
    np.add.at(per_chain, (np.repeat(bridge_owner, 2), pair_obj.ravel()), 1)
    cum = np.cumsum(per_chain, axis=0)
    caps = [int(_CHAIN_CAP * budget.distinct[_CHAIN_OBJECTS[j][0]]) for j in range(3)]
    n_chain = min(int(np.searchsorted(cum[:, j], caps[j], side="right")) for j in range(3)) if n_cand else 0
    emails = cand_emails[:n_chain]
    keep_b = bridge_owner < n_chain
    bridge_owner = bridge_owner[keep_b]
    bridge_pos = np.arange(len(bridge_owner)) - np.repeat(np.cumsum(emails - 1) - (emails - 1), emails - 1)
    return Chains(cand[:n_chain], emails, bridge_owner, bridge_is_phone[keep_b], pair_obj[keep_b], bridge_pos)


@dataclass(frozen=True)
class IdentifierPools:
    """Every email, phone and cookie, each owned by one person. Regular persons own the first
    entries of each pool (``reg_*``: count and first index per regular person), chain persons
    the rest (``bridge_ident``: the phone or cookie index of each bridge)."""

    regular: np.ndarray  # the regular (non-chain) persons
    reg_local: np.ndarray  # person -> index among the regular persons, -1 for chain persons
    reg_n_email: np.ndarray
    reg_n_phone: np.ndarray
    reg_n_cookie: np.ndarray
    chain_email_start: np.ndarray  # first email of each chain person
    bridge_ident: np.ndarray
    emails: EmailPool
    phone_numbers: np.ndarray  # 10-digit US numbers, one per phone index
    cookie_values: np.ndarray  # 64-bit cookie values, one per cookie index

    def pick(self, person: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
        """One of the regular ``person``'s identifiers of ``kind`` (email | phone | cookie)."""
        count = getattr(self, f"reg_n_{kind}")
        rl = self.reg_local[person]
        return starts(count)[rl] + (rng.random(len(person)) * count[rl]).astype(np.int64)


def draw_identifier_pools(people: People, chains: Chains, rng: np.random.Generator) -> IdentifierPools:
    is_chain = np.zeros(people.count, dtype=bool)
    is_chain[chains.persons] = True
    regular = np.flatnonzero(~is_chain)
    n_reg = len(regular)
    reg_local = np.full(people.count, -1, dtype=np.int64)
    reg_local[regular] = np.arange(n_reg)

    reg_n_email = rng.choice(np.array([1, 2, 3]), n_reg, p=[0.5, 0.3, 0.2])
    reg_n_phone = rng.choice(np.array([1, 2]), n_reg, p=[0.65, 0.35])
    reg_n_cookie = rng.choice(np.array([1, 2, 3]), n_reg, p=[0.5, 0.3, 0.2])
    e_reg, p_reg, c_reg = int(reg_n_email.sum()), int(reg_n_phone.sum()), int(reg_n_cookie.sum())
    chain_email_start = e_reg + starts(chains.emails)
    email_owner = np.concatenate([np.repeat(regular, reg_n_email), np.repeat(chains.persons, chains.emails)])
    is_phone = chains.bridge_is_phone
    n_phone_br = int(is_phone.sum())
    n_cookie_br = len(is_phone) - n_phone_br
    bridge_ident = np.empty(len(is_phone), dtype=np.int64)
    bridge_ident[is_phone] = p_reg + np.arange(n_phone_br)
    bridge_ident[~is_phone] = c_reg + np.arange(n_cookie_br)

    emails = EmailPool.build(email_owner, people.first_idx, people.last_idx, rng)
    phone_off = int(rng.integers(0, PHONE_SPACE))
    numbers = phone_numbers(np.arange(p_reg + n_phone_br, dtype=np.int64), phone_off)
    cookie_key = rng.integers(0, 2**63, dtype=np.int64).astype(np.uint64)
    cookie_values = splitmix64(np.arange(c_reg + n_cookie_br, dtype=np.uint64) + cookie_key)
    return IdentifierPools(
        regular,
        reg_local,
        reg_n_email,
        reg_n_phone,
        reg_n_cookie,
        chain_email_start,
        bridge_ident,
        emails,
        numbers,
        cookie_values,
    )


Records = dict[str, np.ndarray]  # one object's records: column -> integer codes (-1 null, <= -2 junk)


def _chain_records(chains: Chains, pools: IdentifierPools) -> dict[str, np.ndarray]:
    """Two records per bridge: the bridge's email and the next one, both with the bridge."""
    e0 = pools.chain_email_start[chains.bridge_owner] + chains.bridge_pos
    return {
        "person": np.repeat(chains.persons[chains.bridge_owner], 2),
        "email": np.stack([e0, e0 + 1], axis=1).ravel(),
        "ident": np.repeat(pools.bridge_ident, 2),
        "obj": chains.pair_obj.ravel(),
    }


def _with_missing(
    idx: np.ndarray, null_rate: float, junk_rate: float, n_junk: int, rng: np.random.Generator
) -> np.ndarray:
    """``idx`` with a share nulled (-1) and a share replaced by junk value k (-2 - k)."""
    u = rng.random(len(idx))
    kind = rng.integers(0, max(n_junk, 1), len(idx))
    out = idx.copy()
    out[u < null_rate] = -1
    junk = (u >= null_rate) & (u < null_rate + junk_rate)
    out[junk] = -2 - kind[junk]
    return out


def _regular_persons(pools: IdentifierPools, reg_rows: np.ndarray, rng: np.random.Generator):
    """Object label and person of every regular record: each regular person gets a record
    first (while rows last), the remaining records go to persons weighted by a gamma draw."""
    labels = rng.permutation(np.repeat(np.arange(len(reg_rows)), reg_rows))
    total_reg = len(labels)
    regular, n_reg = pools.regular, len(pools.regular)
    if n_reg:
        first_pass = rng.permutation(regular)[: min(n_reg, total_reg)]
        weights = rng.gamma(1.0, 1.0, n_reg)
        extra = regular[rng.choice(n_reg, total_reg - len(first_pass), p=weights / weights.sum())]
        reg_person = np.concatenate([first_pass, extra])
    else:  # pragma: no cover - n_persons >= 1 and chain persons < n_persons
        reg_person = np.zeros(0, dtype=np.int64)
    return labels, reg_person


def _regular_object(key: str, person: np.ndarray, pools: IdentifierPools, rng: np.random.Generator) -> Records:
    rec: Records = {"person": person}
    email = pools.pick(person, "email", rng)
    rec["email"] = _with_missing(email, *_EMAIL_MISSING[key], len(JUNK_EMAILS), rng)
    if key in _PHONE_MISSING:
        phone = pools.pick(person, "phone", rng)
        rec["phone"] = _with_missing(phone, *_PHONE_MISSING[key], len(JUNK_PHONES), rng)
    if key == "web/events":
        cookie = pools.pick(person, "cookie", rng)
        rec["cookie"] = np.where(rng.random(len(person)) < _COOKIE_NULL, -1, cookie)
    rec["chain"] = np.zeros(len(person), dtype=bool)
    return rec


def _prepend_chain(rec: Records, chain: dict[str, np.ndarray], obj_code: int) -> Records:
    sel = chain["obj"] == obj_code
    ident = _CHAIN_OBJECTS[obj_code][1]
    part = {
        "person": chain["person"][sel],
        "email": chain["email"][sel],
        ident: chain["ident"][sel],
        "chain": np.ones(int(sel.sum()), dtype=bool),
    }
    return {k: np.concatenate([part[k], rec[k]]) for k in rec}


def draw_object_records(
    budget: RowBudget, chains: Chains, pools: IdentifierPools, rng: np.random.Generator
) -> dict[str, Records]:
    """Each object's distinct records (chain records first, then regular ones), shuffled and
    numbered 1..n (``id``)."""
    chain = _chain_records(chains, pools)
    object_code = {name: code for code, (name, _) in _CHAIN_OBJECTS.items()}
    keys = list(IDENTITY_COLUMNS)
    n_chain = {k: int((chain["obj"] == object_code[k]).sum()) if k in object_code else 0 for k in keys}
    reg_rows = np.array([budget.distinct[k] - n_chain[k] for k in keys], dtype=np.int64)
    labels, reg_person = _regular_persons(pools, reg_rows, rng)
    recs = {}
    for j, key in enumerate(keys):
        rec = _regular_object(key, reg_person[labels == j], pools, rng)
        recs[key] = _prepend_chain(rec, chain, object_code[key]) if key in object_code else rec
    for rec in recs.values():
        perm = rng.permutation(len(rec["person"]))
        for col in rec:
            rec[col] = rec[col][perm]
        rec["id"] = np.arange(1, len(perm) + 1, dtype=np.int64)
    return recs


def with_customer_updates(
    customers: Records, budget: RowBudget, pools: IdentifierPools, rng: np.random.Generator
) -> Records:
    """The shop customer rows as written: the historical rows, then the new and the updated
    customers (same id, possibly another phone of the person) in one shuffled incremental part."""
    h_c, n_upd = budget.hist["shop/customers"], budget.updates
    upd_src = np.sort(rng.choice(h_c, n_upd, replace=False)) if n_upd else np.zeros(0, np.int64)
    upd = {col: arr[upd_src] for col, arr in customers.items()}
    # an updated version may carry another phone of the person (never for chain records)
    change = (rng.random(n_upd) < 0.5) & ~upd["chain"]
    if change.any():
        upd["phone"][change] = pools.pick(upd["person"][change], "phone", rng)
    n_new = budget.distinct["shop/customers"] - h_c
    inc_perm = rng.permutation(n_new + n_upd)
    return {
        col: np.concatenate([arr[:h_c], np.concatenate([arr[h_c:], upd[col]])[inc_perm]])
        for col, arr in customers.items()
    }


def link_orders(orders: Records, customers: Records, n_persons: int, rng: np.random.Generator) -> None:
    """Orders reference one of the person's shop customer accounts, if any (``customer``, -1 for
    a guest order), and get an amount in cents."""
    c_person = customers["person"]
    order_c = np.argsort(c_person, kind="stable")
    c_count = np.bincount(c_person, minlength=n_persons)
    c_start = np.cumsum(c_count) - c_count
    o_person = orders["person"]
    has_acct = (c_count[o_person] > 0) & (rng.random(len(o_person)) >= _GUEST_ORDER)
    o_pick = c_start[o_person] + (rng.random(len(o_person)) * c_count[o_person]).astype(np.int64)
    if len(order_c):
        o_cust = customers["id"][order_c[np.minimum(o_pick, len(order_c) - 1)]]
    else:
        o_cust = np.zeros(len(o_person), dtype=np.int64)
    orders["customer"] = np.where(has_acct, o_cust, -1)
    orders["cents"] = np.maximum(99, np.round(rng.lognormal(3.6, 0.85, len(o_person)) * 100)).astype(np.int64)


def draw_event_types(events: Records, rng: np.random.Generator) -> None:
    events["etype"] = rng.choice(len(EVENT_TYPES), len(events["person"]), p=EVENT_TYPE_P)
