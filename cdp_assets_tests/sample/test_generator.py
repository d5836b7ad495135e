"""Tests for the seeded, messy multi-source sample generator."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.sample import (
    INCREMENTAL_DATES,
    JUNK_EMAILS,
    JUNK_PHONES,
    OBJECT_COLUMNS,
    SampleSummary,
    generate_sample,
    main,
)

N = 3000
SEED = 7

LAYOUT = [
    "shop/customers/historical/customers_hist.csv",
    "shop/customers/customers_2024-06-01.csv",
    "shop/customers/customers_2024-06-02.csv",
    "shop/orders/historical/orders_hist.csv",
    "shop/orders/orders_2024-06-01.csv",
    "shop/orders/orders_2024-06-02.csv",
    "loyalty/members/historical/members_hist.parquet",
    "loyalty/members/members_2024-06-01.parquet",
    "loyalty/members/members_2024-06-02.parquet",
    "web/events/historical/events_hist.jsonl",
    "web/events/events_2024-06-01.jsonl",
    "web/events/events_2024-06-02.jsonl",
    "ground_truth.csv",
]
STEMS = {
    "shop/customers": ("customers", "csv"),
    "shop/orders": ("orders", "csv"),
    "loyalty/members": ("members", "parquet"),
    "web/events": ("events", "jsonl"),
}
EMAIL_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")


# ----------------------------------------------------------------------------- helpers


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)  # "" = null/empty
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return pd.DataFrame(rows, columns=None if rows else [])


def _object_files(root: Path, key: str) -> list[tuple[str, Path]]:
    stem, ext = STEMS[key]
    base = root / key
    return [("hist", base / "historical" / f"{stem}_hist.{ext}")] + [
        (day, base / f"{stem}_{day}.{ext}") for day in INCREMENTAL_DATES
    ]


def _norm_email(v) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    s = str(v).strip().lower()
    if not EMAIL_RE.match(s) or s in {"test@test.com"}:
        return None
    return s


def _norm_phone(v) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    d = re.sub(r"\D", "", str(v))
    if len(d) == 11 and d[0] == "1":
        d = d[1:]
    if len(d) != 10 or d[0] in "01" or d[3] in "01":
        return None
    return d


def sent_instant(value) -> int | None:
    """Unix seconds of a ``sent_at`` value (ISO 8601 with Z or an offset, epoch s or ms)."""
    if value is None:
        return None
    text = str(value)
    if text.isdigit():
        return int(text) // 1000 if len(text) > 10 else int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def without_redeliveries(events: pd.DataFrame) -> pd.DataFrame:
    """The events as the example's dedupe keeps them: one row per (cookie, normalised email,
    event type, sent instant), the oldest; events without cookie or email are all kept."""
    key = pd.DataFrame(
        {
            "cookie": events["cookie_id"],
            "email": [_norm_email(v) or v for v in events["email"]],
            "type": events["event_type"],
            "sent": [sent_instant(v) for v in events["sent_at"]],
        }
    )
    keyed = key["cookie"].notna() & key["email"].notna()
    by_time = key.assign(at=events["updated_at"].to_numpy()).sort_values("at")
    first = ~by_time.duplicated(["cookie", "email", "type", "sent"])
    return events[~keyed | first.reindex(events.index)]


def _records(root: Path) -> pd.DataFrame:
    """All rows of all objects, de-duplicated by primary key (latest updated_at wins), web
    events without their re-deliveries, with normalised identifier keys: one frame (object,
    record_id, keys...)."""
    out = []
    for key, cols in OBJECT_COLUMNS.items():
        frames = [_read(p).assign(_file=tag) for tag, p in _object_files(root, key)]
        df = pd.concat(frames, ignore_index=True)
        id_col = cols[0]
        df = df.sort_values(["updated_at", id_col]).drop_duplicates(id_col, keep="last")
        if key == "web/events":
            df = without_redeliveries(df)
        keys = pd.DataFrame({"object": key, "record_id": df[id_col].to_numpy()})
        keys["email"] = [_norm_email(v) for v in df["email"]]
        keys["phone"] = [_norm_phone(v) for v in df["phone"]] if "phone" in df else None
        keys["cookie"] = df["cookie_id"].to_numpy() if "cookie_id" in df else None
        keys["customer_ref"] = df["customer_id"].replace("", None).to_numpy() if key == "shop/orders" else None
        out.append(keys)
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[SampleSummary, Path]:
    root = tmp_path_factory.mktemp("sample_a")
    return generate_sample(root, N, seed=SEED), root


@pytest.fixture(scope="module")
def truth(sample) -> pd.DataFrame:
    return pd.read_csv(sample[1] / "ground_truth.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def records(sample, truth) -> pd.DataFrame:
    recs = _records(sample[1])
    truth = truth.assign(object=truth["source"] + "/" + truth["object"])
    return recs.merge(
        truth[["object", "record_id", "person_id"]], on=["object", "record_id"], how="left", validate="one_to_one"
    )


# ----------------------------------------------------------------------------- tests


def test_layout_and_columns(sample):
    summary, root = sample
    for rel in LAYOUT:
        assert (root / rel).is_file(), rel
    assert sorted(summary.files) == sorted(root / rel for rel in LAYOUT)
    for key, cols in OBJECT_COLUMNS.items():
        for _, path in _object_files(root, key):
            assert tuple(_read(path).columns) == cols, path
    members = pd.read_parquet(root / "loyalty/members/historical/members_hist.parquet")
    import pyarrow.parquet as pq

    schema = pq.read_schema(root / "loyalty/members/historical/members_hist.parquet")
    assert all(str(t) == "string" for t in schema.types)
    assert len(members) > 0
    # JSON lines: one object per line, nulls as JSON null
    lines = (root / "web/events/historical/events_hist.jsonl").read_text().splitlines()
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    assert any('"email":null' in line for line in lines)


def test_row_counts_and_split(sample):
    summary, root = sample
    assert sum(summary.records.values()) == N
    assert summary.records == {
        "shop/customers": N * 25 // 100,
        "shop/orders": N * 30 // 100,
        "loyalty/members": N * 20 // 100,
        "web/events": N - N * 25 // 100 - N * 30 // 100 - N * 20 // 100,
    }
    assert 0.28 * N <= summary.persons <= 0.36 * N
    assert 0.005 * summary.records["web/events"] <= summary.duplicates <= 0.05 * summary.records["web/events"]
    for key in OBJECT_COLUMNS:
        files = _object_files(root, key)
        frames = {tag: _read(p) for tag, p in files}
        redelivered = summary.duplicates if key == "web/events" else 0
        assert sum(len(f) for f in frames.values()) == summary.records[key] + redelivered
        hist_rows = (
            len(frames["hist"]) - (frames["hist"]["event_id"] > f"E{summary.records[key]:06d}").sum()
            if redelivered
            else len(frames["hist"])
        )
        assert hist_rows == int(0.7 * summary.records[key] + 0.5)
        assert frames["hist"]["updated_at"].str.match(r"^2023-\d\d-\d\d \d\d:\d\d:\d\d$").all()
        for day in INCREMENTAL_DATES:
            assert len(frames[day]) > 0
            assert frames[day]["updated_at"].str.match(rf"^{day} \d\d:\d\d:\d\d$").all()
        id_col = OBJECT_COLUMNS[key][0]
        for f in frames.values():
            assert f[id_col].is_unique
        hist_ids = set(frames["hist"][id_col])
        inc = pd.concat([frames[d] for d in INCREMENTAL_DATES])
        assert inc[id_col].is_unique
        both = hist_ids & set(inc[id_col])
        if key != "shop/customers":
            assert not both
            continue
        # ~5% of shop customers are updated: same id, later updated_at, maybe another phone
        assert len(both) == summary.records[key] * 5 // 100
        h = frames["hist"].set_index(id_col).loc[sorted(both)]
        i = inc.set_index(id_col).loc[sorted(both)]
        assert (i["updated_at"] > h["updated_at"]).all()
        changed = (h["phone"].map(_norm_phone) != i["phone"].map(_norm_phone)).sum()
        assert changed > 0


def test_deterministic(sample, tmp_path):
    _, root = sample
    again = generate_sample(tmp_path / "b", N, seed=SEED)
    for rel in LAYOUT:
        assert (root / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert again.records == sample[0].records
    other = generate_sample(tmp_path / "c", N, seed=SEED + 1)
    differ = [rel for rel in LAYOUT if (root / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()]
    assert set(differ) == set(LAYOUT)
    assert sum(other.records.values()) == N


def test_ground_truth_covers_every_record_once(sample, truth):
    _, root = sample
    assert list(truth.columns) == ["source", "object", "record_id", "person_id"]
    assert not truth.duplicated(["source", "object", "record_id"]).any()
    for key, cols in OBJECT_COLUMNS.items():
        source, obj = key.split("/")
        ids = set()
        for _, path in _object_files(root, key):
            ids |= set(_read(path)[cols[0]])
        gt = truth[(truth["source"] == source) & (truth["object"] == obj)]
        assert set(gt["record_id"]) == ids
        assert len(gt) == len(ids)
    assert truth["person_id"].str.match(r"^P\d{6,}$").all()


def test_messiness_and_junk(sample):
    _, root = sample
    emails, phones, firsts = [], [], []
    for key in OBJECT_COLUMNS:
        for _, path in _object_files(root, key):
            df = _read(path)
            emails += list(df["email"])
            if "phone" in df:
                phones += list(df["phone"])
                firsts += list(df["first_name"])
    emails_s = pd.Series(emails, dtype=object)
    phones_s = pd.Series(phones, dtype=object)
    for junk in JUNK_EMAILS:
        if junk:  # "" is indistinguishable from null in CSV, checked below via JSON/parquet
            assert (emails_s == junk).sum() >= 3, junk
    for junk in JUNK_PHONES:
        assert (phones_s == junk).sum() >= 3, junk
    assert (emails_s == "").any()
    junk_share = emails_s.isin([j for j in JUNK_EMAILS if j]).mean()
    assert 0.01 <= junk_share <= 0.05
    null_share = (emails_s.isna() | (emails_s == "")).mean()
    assert 0.08 <= null_share <= 0.35
    present = emails_s.dropna()
    assert present.str.match(r"^\s+\S+@\S+?\s+$").any()  # padded
    assert present.str.contains(r"[A-Z]").any()
    assert present.str.match(r"^[^a-z]+@[^a-z]+$").any()  # all upper case
    for pattern in [
        r"^\(\d{3}\) \d{3}-\d{4}$",
        r"^\d{3}\.\d{3}\.\d{4}$",
        r"^\+1 \d{3} \d{3} \d{4}$",
        r"^1-\d{3}-\d{3}-\d{4}$",
        r"^\d{10}$",
    ]:
        assert phones_s.dropna().str.match(pattern).any(), pattern
    valid = [p for p in map(_norm_phone, phones) if p]
    assert valid and all(201 <= int(p[:3]) <= 989 and p[3] not in "01" for p in valid)
    names = pd.Series(firsts, dtype=object).replace("", None).dropna()
    assert (names != names.str.strip()).any() and names.str.isupper().any()


def test_identifiers_belong_to_one_person(records):
    assert records["person_id"].notna().all()
    for col in ["email", "phone", "cookie"]:
        owners = records.dropna(subset=[col]).groupby(col)["person_id"].nunique()
        assert (owners == 1).all(), col
    # order -> customer references stay within the person
    cust = records[records["object"] == "shop/customers"].set_index("record_id")["person_id"]
    orders = records[(records["object"] == "shop/orders") & records["customer_ref"].notna()]
    assert len(orders) > 0
    assert (orders["customer_ref"].map(cust) == orders["person_id"]).all()


def test_transitive_links_across_objects(records):
    objects_per_person = records.groupby("person_id")["object"].nunique()
    assert (objects_per_person >= 3).sum() >= 10
    # a person linked by identifiers (not only by ground truth) across >= 3 objects
    links = _components(records)
    spans = records.assign(comp=links).groupby("comp")["object"].nunique()
    assert (spans >= 3).any()


def _components(records: pd.DataFrame) -> list[int]:
    """Connected components of records linked by a shared normalised identifier."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for col in ["email", "phone", "cookie"]:
        first: dict[str, int] = {}
        for i, v in enumerate(records[col]):
            if v is None or (isinstance(v, float) and pd.isna(v)):
                continue
            if v in first:
                parent[find(i)] = find(first[v])
            else:
                first[v] = i
    return [find(i) for i in range(len(records))]


def test_chain_persons_form_a_path(records):
    emails_per_person = records.dropna(subset=["email"]).groupby("person_id")["email"].nunique()
    chain_persons = emails_per_person[emails_per_person >= 6].index
    assert len(chain_persons) >= 3
    for pid in chain_persons:
        recs = records[records["person_id"] == pid].reset_index(drop=True)
        idents = [
            {f"{c}:{v}" for c in ("email", "phone", "cookie") if isinstance(v := row[c], str)}
            for _, row in recs.iterrows()
        ]
        assert all(len(s) == 2 for s in idents)  # email + phone/cookie, never null or junk
        n = len(recs)
        adj = defaultdict(set)
        for a in range(n):
            for b in range(a + 1, n):
                shared = idents[a] & idents[b]
                assert len(shared) <= 1
                if shared:
                    adj[a].add(b)
                    adj[b].add(a)
        degrees = sorted(len(adj[i]) for i in range(n))
        assert n >= 10 and degrees == [1, 1] + [2] * (n - 2)
        # walk the path: consecutive records share exactly one identifier, the email
        # changes every second hop
        start = next(i for i in range(n) if len(adj[i]) == 1)
        path, prev = [start], None
        while len(path) < n:
            nxt = next(j for j in adj[path[-1]] if j != prev)
            prev = path[-1]
            path.append(nxt)
        assert len(set(path)) == n
        emails = [recs.loc[i, "email"] for i in path]
        assert len(set(emails)) == n // 2 + 1 >= 6
        hops = [next(iter(idents[a] & idents[b])).split(":")[0] for a, b in zip(path, path[1:])]
        assert hops[0::2].count("email") == 0 and set(hops[1::2]) == {"email"}


def test_main_cli(tmp_path, capsys):
    assert main(["--records", "120", "--out", str(tmp_path / "cli"), "--seed", "3"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and "120 records" in out
    assert (tmp_path / "cli" / "ground_truth.csv").is_file()


@pytest.mark.parametrize("n", [0, 1, 7, 40])
def test_tiny_samples(tmp_path, n):
    summary = generate_sample(tmp_path / str(n), n, seed=1)
    assert sum(summary.records.values()) == n
    for rel in LAYOUT:
        assert (tmp_path / str(n) / rel).is_file()
    truth = pd.read_csv(tmp_path / str(n) / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert len(truth) <= n


def test_longer_chains_on_request(tmp_path):
    generate_sample(tmp_path, 30_000, seed=4, chain_emails=(40, 50))
    truth = pd.read_csv(tmp_path / "ground_truth.csv", dtype=str, keep_default_na=False)
    truth = truth.assign(object=truth["source"] + "/" + truth["object"])
    recs = _records(tmp_path).merge(truth[["object", "record_id", "person_id"]], on=["object", "record_id"])
    emails = recs.dropna(subset=["email"]).groupby("person_id")["email"].nunique()
    assert emails.max() >= 40
    # a chain of k emails is 2(k-1) records
    longest = emails.idxmax()
    assert (recs["person_id"] == longest).sum() == 2 * (emails.max() - 1)
    with pytest.raises(ValueError, match="chain_emails"):
        generate_sample(tmp_path / "bad", 100, chain_emails=(5, 2))
