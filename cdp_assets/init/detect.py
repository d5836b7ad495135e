"""What each column is: identifier kinds by name and by values, primary keys, watermarks.

Values decide where they are clear (a column of email addresses is an email column whatever
its name); names decide between kinds that values cannot tell apart (a customer id and an
order id look the same) and confirm weak value evidence. Every decision carries its evidence,
which the report prints, so a reviewer can see why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdp_assets.init.profile import ColumnStats

# Identifier kinds, in the priority order of merge_by_keys: strong first-party ids first, then
# contact points, then device and browser ids (shared devices make those the weakest).
IDENTIFIER_KINDS = ("email", "customer_id", "phone", "device_id", "uuid", "cookie")
NOT_IDENTIFIER = (
    "timestamp",
    "system",
    "record_id",
    "order_id",
    "product_id",
    "measure",
    "category",
    "text",
    "complex",
    "name",
    "empty",
)

# Name hints: regular expressions on the normalised (lowercase, '_'-separated) column name.
_W = r"(?:^|_)"  # a word boundary in a normalised name
_E = r"(?:_|$)"
NAME_HINTS: dict[str, re.Pattern[str]] = {
    "email": re.compile(rf"e_?mail|{_W}mail{_E}|{_W}mail_?addr"),
    "phone": re.compile(rf"phone|mobile|{_W}tel(ephone)?{_E}|{_W}cell{_E}|msisdn|{_W}fax{_E}|handynummer|telefon"),
    "customer_id": re.compile(
        r"(customer|cust|user|usr|member|mbr|account|acct|client|contact|person|profile|shopper|buyer|subscriber|patient|guest|loyalty|crm|login)"
    ),
    "device_id": re.compile(rf"device|idfa|idfv|gaid|{_W}adid{_E}|advertising_id|{_W}aaid{_E}|{_W}imei{_E}|push_token"),
    "cookie": re.compile(
        rf"cookie|visitor|anon|browser|{_W}td_client|{_W}ga_?cid|{_W}cid{_E}|fingerprint|{_W}fp{_E}|session_user"
    ),
    "order_id": re.compile(rf"order|{_W}txn|transaction|invoice|receipt|basket|cart|purchase|payment|{_W}sale"),
    "product_id": re.compile(
        rf"product|{_W}sku|{_W}item|{_W}article|{_W}upc{_E}|{_W}ean{_E}|{_W}asin{_E}|catalog|{_W}variant"
    ),
    "event_id": re.compile(rf"{_W}event|{_W}hit|{_W}log|{_W}message|{_W}request|{_W}session"),
    "id_word": re.compile(rf"{_W}(id|no|nr|num|number|key|code|ref|uid|guid|uuid){_E}|id$|_?no$|number$|uuid$|guid$"),
    "name": re.compile(
        rf"{_W}(first|given|fore|last|family|sur|middle|full|display|nick)_?name{_E}|{_W}(fname|lname|surname|forename|givenname|firstname|lastname|name){_E}"
    ),
    "time": re.compile(
        rf"{_W}(date|time|timestamp|ts|at|dt|datetime|day|created|updated|modified|changed|inserted|loaded|deleted)"
    ),
    "system": re.compile(
        r"^_|^(etl|dw|meta|sys|cdp|dbt|fivetran|airbyte|dlt|stitch|record)_|_(etl|batch|run|load|version|hash|checksum|rowid)$"
    ),
}
WATERMARK_NAMES = [
    (3, re.compile(r"updat|modif|chang|last_|_last|upd_|edited|synced")),
    (2, re.compile(r"event_?time|timestamp|(^|_)ts($|_)|occurred|(^|_)time($|_)|(^|_)at$|_dt$|datetime")),
    (1, re.compile(r"creat|insert|load|date")),
]
PLACEHOLDERS = {
    "",
    "n/a",
    "na",
    "none",
    "null",
    "nil",
    "nan",
    "unknown",
    "undefined",
    "-",
    "--",
    "?",
    "0",
    "x",
    "xx",
    "xxx",
    "test",
    "tbd",
    "not available",
    "not provided",
    "no email",
    "noemail",
    "none@none.com",
    "test@test.com",
    "0000000000",
    "1234567890",
    "123",
    "000",
    "blank",
    "empty",
    "default",
    "dummy",
    "sample",
    "anonymous",
}


def name_hint(column: str, hint: str) -> bool:
    return bool(NAME_HINTS[hint].search(column))


@dataclass
class ColumnKind:
    table: str
    column: str
    kind: str  # one of IDENTIFIER_KINDS or NOT_IDENTIFIER
    evidence: str
    stats: ColumnStats
    phone_region: str | None = None
    key: str | None = None  # the unify key it feeds (identifiers only), set by group_keys
    invalid_texts: list[str] = field(default_factory=list)

    @property
    def identifier(self) -> bool:
        return self.kind in IDENTIFIER_KINDS


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def classify(stats: ColumnStats, complex_type: str | None, unparseable_max: float, object_name: str = "") -> ColumnKind:
    """The kind of one column from its statistics and name. Cross-table evidence (a code shared
    with another table) is added by :func:`link_ids`."""
    c, s = stats.column, stats.shares
    k = lambda kind, why, **kw: ColumnKind(stats.table, c, kind, why, stats, **kw)  # noqa: E731
    parse_min = 1 - unparseable_max
    if complex_type is not None or s["json"] >= 0.5:
        return k("complex", f"nested values ({complex_type or 'JSON objects or arrays'}); excluded")
    if stats.non_null == 0:
        return k("empty", "no values in the sample")
    if name_hint(c, "system"):
        return k("system", "system column by name")
    if stats.email_parse >= parse_min:
        why = f"{_pct(stats.email_parse)} of values are email addresses" + (
            "; name says email" if name_hint(c, "email") else ""
        )
        return k("email", why)
    phone_name = name_hint(c, "phone")
    # Dates written with dashes or slashes (2024-01-01) are digits with phone punctuation, and
    # some regions' plans accept their digits: a column of dates is never a phone column.
    looks_like_dates = s["date_like"] >= 0.5 and not phone_name
    if stats.phone_parse >= parse_min and (phone_name or s["phone_formatted"] >= 0.2) and not looks_like_dates:
        why = f"{_pct(stats.phone_parse)} of values parse as {stats.phone_region} phone numbers"
        why += "; name says phone" if phone_name else f"; {_pct(s['phone_formatted'])} written with phone punctuation"
        return k("phone", why, phone_region=stats.phone_region)
    if phone_name and s["phone_like"] >= 0.5:
        return k(
            "text",
            f"named like a phone but only {_pct(stats.phone_parse)} "
            "of values parse as phone numbers; not used as a key",
        )
    if s["datetime"] >= 0.9:
        return k("timestamp", f"{_pct(s['datetime'])} of values are dates/times")
    if name_hint(c, "email") or s["email"] >= 0.5:
        return k(
            "text",
            f"only {_pct(stats.email_parse)} of values are valid email addresses (the staging check allows "
            f"{_pct(unparseable_max)} unparseable); not used as a key: clean the source or add the rule by hand",
        )
    if s["uuid"] >= 0.9:
        if name_hint(c, "device_id"):
            return k("device_id", "UUID values; name says device")
        if name_hint(c, "order_id") or name_hint(c, "product_id") or name_hint(c, "event_id"):
            return k("record_id", "UUID values; name says order, product or event")
        if stats.unique_per_file and not name_hint(c, "customer_id"):
            return k("record_id", "UUID values, unique in every file: the record's own id")
        return k(
            "uuid",
            "UUID values" + ("; name says customer/user" if name_hint(c, "customer_id") else ", repeating across rows"),
        )
    token = s["token"] >= 0.95 and stats.mean_length <= 64
    if token and name_hint(c, "order_id"):
        return k("order_id", "an order/transaction code by name")
    if token and name_hint(c, "product_id"):
        return k("product_id", "a product code by name")
    if name_hint(c, "name") and s["words"] >= 0.8:
        return k("name", f"a person's name by name; {_pct(s['words'])} of values are words")
    if s["decimal"] >= 0.5 or (s["number"] >= 0.95 and not name_hint(c, "id_word") and not name_hint(c, "customer_id")):
        return k("measure", "numbers")
    if token and name_hint(c, "device_id"):
        return k("device_id", "a code; name says device")
    if token and name_hint(c, "customer_id") and (name_hint(c, "id_word") or stats.distinct_ratio >= 0.2):
        return k("customer_id", "a code; name says customer/user/member/account")
    if token and stats.unique_per_file and name_hint(c, "id_word") and name_hint(object_name, "customer_id"):
        return k("customer_id", f"a code unique in every file of {object_name}, a customer/user table by name: its id")
    if token and name_hint(c, "cookie"):
        return k("cookie", "a code; name says cookie/visitor/browser")
    if s["random_token"] >= 0.9 and stats.mean_length >= 12:
        if stats.unique_per_file:
            return k("record_id", "random tokens, unique in every file: the record's own id")
        return k(
            "cookie",
            f"random tokens ({stats.mean_length:.0f} characters) repeating across rows: a browser or device token",
        )
    if token and stats.unique_per_file and stats.distinct >= 20:
        return k("record_id", "a code unique in every file: the record's own id")
    if token and stats.distinct_ratio < 0.05 or stats.distinct <= 20:
        return k("category", f"{stats.distinct} distinct values")
    if token:
        return k("record_id", "a code without a customer/user name; not linked to another table")
    return k("text", "free text")


def link_ids(kinds: list[ColumnKind], min_overlap: float = 0.2) -> None:
    """A code shared by two tables (its values overlap) identifies the same thing in both: when
    neither column is an order, product or event code by name, it is a customer id. Overlaps of
    plain integers count only when the names agree (auto-increment ids overlap by chance)."""
    candidates = [k for k in kinds if k.kind in ("record_id", "customer_id") and k.stats.values]
    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            if a.table == b.table:
                continue
            if a.stats.unique_per_file and b.stats.unique_per_file:
                continue  # two tables' own keys
            smaller = min(len(a.stats.values), len(b.stats.values))
            overlap = len(a.stats.values & b.stats.values) / smaller if smaller else 0.0
            if overlap < min_overlap:
                continue
            integers = a.stats.shares["digits"] >= 0.95 and b.stats.shares["digits"] >= 0.95
            if integers and not _names_agree(a, b):
                continue
            for x, y in ((a, b), (b, a)):
                if any(
                    name_hint(z.column, h) for z in (x, y) for h in ("order_id", "product_id", "event_id")
                ) and not name_hint(x.column, "customer_id"):
                    continue
                if x.kind != "customer_id":
                    x.kind = "customer_id"
                    x.evidence = (
                        f"{_pct(overlap)} of its values also appear in {y.table}.{y.column}: an id shared across tables"
                    )
                elif "shared" not in x.evidence:
                    x.evidence += f"; shared with {y.table}.{y.column} ({_pct(overlap)} overlap)"


def _names_agree(a: ColumnKind, b: ColumnKind) -> bool:
    if a.column == b.column:
        return True
    stem = lambda t: re.sub(r"s$", "", t.rsplit("_", 1)[-1])  # noqa: E731 - shop_customers -> customer
    return stem(a.table) in b.column or stem(b.table) in a.column


def group_keys(kinds: list[ColumnKind]) -> dict[str, list[ColumnKind]]:
    """Unify keys: one per kind for global values (email, phone), one per group of id columns
    whose values overlap for codes (a customer id and a member id are different spaces: the
    same text in both is not the same person)."""
    keys: dict[str, list[ColumnKind]] = {}
    for kind in ("email", "phone"):
        cols = [k for k in kinds if k.kind == kind]
        if cols:
            keys[kind] = cols
    for kind in ("customer_id", "device_id", "uuid", "cookie"):
        cols = [k for k in kinds if k.kind == kind]
        groups: list[list[ColumnKind]] = []
        for col in cols:
            joined = [g for g in groups if any(_overlaps(col, o) for o in g)]
            merged = [col, *(c for g in joined for c in g)]
            groups = [g for g in groups if g not in joined] + [merged]
        for group in groups:
            name = _key_name(kind, group, taken=set(keys))
            keys[name] = sorted(group, key=lambda c: (c.table, c.column))
    for name, cols in keys.items():
        for col in cols:
            col.key = name
    return keys


def _overlaps(a: ColumnKind, b: ColumnKind) -> bool:
    """Two id columns are one key when they share a name, or their values overlap (plain
    integers only with agreeing names: auto-increment ranges of unrelated ids overlap)."""
    if a.column == b.column and a.table != b.table:
        return True
    if a.stats.shares["digits"] >= 0.95 and b.stats.shares["digits"] >= 0.95 and not _names_agree(a, b):
        return False
    smaller = min(len(a.stats.values), len(b.stats.values))
    return bool(smaller) and len(a.stats.values & b.stats.values) / smaller >= 0.2


def _key_name(kind: str, group: list[ColumnKind], taken: set[str]) -> str:
    if kind == "cookie":
        base = "cookie"
    elif kind == "device_id":
        base = "device_id"
    else:
        # The name most columns of the group share, else the one of the table that owns the id.
        names = sorted({c.column for c in group}, key=lambda n: (-sum(c.column == n for c in group), n))
        owner = [c.column for c in group if c.stats.unique_per_file]
        base = owner[0] if owner and len(set(c.column for c in group)) > 1 else names[0]
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def primary_key(kinds: list[ColumnKind]) -> ColumnKind | None:
    """The column unique in every file, preferring one named as an id and the leftmost."""
    candidates = [
        k
        for k in kinds
        if k.stats.unique_per_file and k.kind not in ("timestamp", "measure", "complex", "text", "name", "system")
    ]
    if not candidates:
        return None
    order = {k.column: i for i, k in enumerate(kinds)}
    return min(
        candidates, key=lambda k: (not name_hint(k.column, "id_word"), k.kind in ("email", "phone"), order[k.column])
    )


def watermark(kinds: list[ColumnKind]) -> tuple[ColumnKind, str] | None:
    """The date/time column newest rows carry the latest value in: by name (updated > event
    time > created), then by how few values are empty (an empty watermark rejects the row)."""
    times = [k for k in kinds if k.kind == "timestamp" and k.stats.shares["datetime"] >= 0.95]
    if not times:
        return None

    def score(k: ColumnKind) -> tuple:
        name = next((s for s, p in WATERMARK_NAMES if p.search(k.column)), 0)
        return (k.stats.null_share > 0.01, -name, k.stats.null_share, k.column)

    best = min(times, key=score)
    name = next((s for s, p in WATERMARK_NAMES if p.search(best.column)), 0)
    why = {
        3: "named as an update time",
        2: "named as an event time",
        1: "named as a creation/load time",
        0: "a date/time column",
    }[name]
    return best, f"{why}; {_pct(1 - best.stats.null_share)} of rows have one"


def junk_values(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Frequent placeholders among a key's values: a value carried by far more rows than real
    identifiers are (at least 5 rows and 5 times the 95th percentile of rows per value), or a
    known placeholder text seen at least twice."""
    if not counts:
        return []
    ordered = sorted(counts.values())
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    out = []
    for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        placeholder = value.strip().lower() in PLACEHOLDERS or re.fullmatch(r"(.)\1{4,}", value.strip()) is not None
        if (len(counts) >= 20 and n >= 5 and n >= 5 * p95) or (placeholder and n >= 2):
            out.append((value, n))
    return out[:50]
