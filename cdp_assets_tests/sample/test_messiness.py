"""The sample's messy columns are what the example's staging rules read: each staged on a real
DuckDB with the rules of examples/acme/cdp.yml and compared with an oracle (Python's datetime,
phonenumbers, json); the re-delivered events collapse under the example's dedupe; the bundled
example carries the columns with its identity columns unchanged."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import phonenumbers
import pytest
import yaml
from phonenumbers import PhoneNumberFormat

from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.config.models import DedupeOptions, StagingRule
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sample import EXTRA_COLUMNS, IDENTITY_COLUMNS, OBJECT_COLUMNS, generate_sample
from cdp_assets.sample.files import SEGMENTS, object_file, read_frame
from cdp_assets.sample.messiness import add_messiness
from cdp_assets.sample.phone_examples import EXAMPLES_FILE, examples_text, phone_examples
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.staging import staging_sql

from .test_identity_stream import sample_digest

EXAMPLE = REPO_ROOT / "examples" / "acme"
RECORDS, SEED = 2000, 5
FLAG_TRUE = {"yes", "y", "true", "1", "on"}
FLAG_FALSE = {"no", "n", "false", "0", "off"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    generate_sample(out, RECORDS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    w = DuckDBWarehouse(path=str(tmp_path_factory.mktemp("messy_wh") / "wh.duckdb"))
    with w.session():
        yield w


def example_staging() -> tuple[dict, dict]:
    cfg = yaml.safe_load((EXAMPLE / "cdp.yml").read_text())
    return cfg["staging"], cfg.get("staging_tables", {})


def all_rows(root: Path, key: str) -> pd.DataFrame:
    return pd.concat([read_frame(object_file(root, key, s)) for s in SEGMENTS], ignore_index=True)


def stage(wh: DuckDBWarehouse, root: Path, key: str, only: tuple[str, ...] = (), dedupe: bool = False) -> pd.DataFrame:
    """The object's rows staged with the example's rules for its table (``only`` these, when
    given: the phone rules of other columns cost seconds), and its dedupe."""
    table = key.replace("/", "_")
    rules_cfg, tables_cfg = example_staging()
    rules = {name: StagingRule(**spec) for name, spec in rules_cfg[table].items() if not only or name in only}
    options = DedupeOptions(**tables_cfg[table]["dedupe"]) if dedupe else None
    rows = all_rows(root, key).astype("string")
    ref = TableRef("messy_src", table)
    wh.drop(ref)
    wh.write_dataframe(ref, rows)
    sql = staging_sql(ref, list(rows.columns), rules, options, default_order_by="updated_at")
    return wh.fetch(f"SELECT * FROM ({sql}) AS s ORDER BY 1").astype(object).where(lambda f: f.notna(), None)


def oracle_date(text: str) -> date:
    if "/" in text and text.index("/") == 4:
        return datetime.strptime(text, "%Y/%m/%d").date()
    if "/" in text:
        return datetime.strptime(text, "%m/%d/%Y").date()
    if "." in text or text.index("-") == 2:
        return datetime.strptime(text.replace(".", "-"), "%d-%m-%Y").date()
    return date.fromisoformat(text)


def oracle_instant(text: str) -> int:
    if text.isdigit():
        return int(text) // 1000 if len(text) > 10 else int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_the_messy_columns_are_in_every_file(root):
    for key, columns in OBJECT_COLUMNS.items():
        for segment in SEGMENTS:
            assert tuple(read_frame(object_file(root, key, segment)).columns) == columns


def test_birth_dates_in_five_spellings_parse_to_the_written_day(wh, root):
    staged = stage(wh, root, "shop/customers", only=("born",))
    written = staged["birth_date"]
    spellings = {
        "iso": r"^\d{4}-\d\d-\d\d$",
        "slash": r"^\d{4}/",
        "dash": r"^\d\d-",
        "dot": r"^\d\d\.",
        "us": r"^\d\d/\d\d/\d{4}$",
    }
    for name, pattern in spellings.items():
        assert written.dropna().str.match(pattern).sum() >= 20, name
    assert (written == "N/A").any() and written.isna().any()
    present = written.notna() & (written != "N/A")
    expected = [oracle_date(v) for v in written[present]]
    assert [pd.Timestamp(v).date() for v in staged.loc[present, "born_date"]] == expected
    assert staged.loc[~present, "born_date"].isna().all()
    assert min(expected) < date(1970, 1, 1) < max(expected)  # negative Unix times too
    unix = [int(v) for v in staged.loc[present, "born_unixtime"]]
    assert unix == [int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) for d in expected]


def test_newsletter_flags_read_as_booleans_and_unreadable_ones_are_null(wh, root):
    staged = stage(wh, root, "shop/customers", only=("newsletter",))
    written = staged["newsletter"]
    assert {"yes", "No", "Y", "0", "on", "TRUE"} <= set(written.dropna())
    for value, cleaned in zip(written, staged["cleaned_newsletter"]):
        if value is None or value.lower() not in FLAG_TRUE | FLAG_FALSE:
            assert cleaned is None, value
        else:
            assert cleaned == (value.lower() in FLAG_TRUE), value
    unreadable = written.notna() & ~written.str.lower().isin(FLAG_TRUE | FLAG_FALSE)
    assert 0.005 <= unreadable.mean() <= 0.06


def test_amounts_with_currency_symbols_read_as_the_same_number(wh, root):
    staged = stage(wh, root, "shop/orders")
    written = staged["amount"]
    assert written.str.startswith("$").any() and written.str.startswith("USD ").any()
    assert written.str.endswith(" $").any() and written.str.match(r"^\d+\.\d\d$").any()
    digits = written.str.replace(r"[^0-9.]", "", regex=True).astype(float)
    assert [float(v) for v in staged["cleaned_amount"]] == pytest.approx(list(digits))


def test_international_mobiles_agree_with_phonenumbers(wh, root):
    staged = stage(wh, root, "loyalty/members", only=("mobile",))
    mobiles = staged[staged["mobile"].notna()]
    assert len(set(mobiles["country"])) >= 50
    formats = {"e164": r"^\+\d+$", "international": r"^\+\d+ ", "from_us": r"^011 ", "national": r"^\(\d{3}\) "}
    for name, pattern in formats.items():
        assert mobiles["mobile"].str.match(pattern).sum() >= 5, name
    for raw, country, got, valid in zip(
        mobiles["mobile"], mobiles["country"], mobiles["standardized_mobile"], mobiles["standardized_mobile_valid"]
    ):
        parsed = phonenumbers.parse(raw, "US")
        # valid for its row's country (+44 7924 ... is valid for IM and GB alike)
        assert phonenumbers.is_valid_number_for_region(parsed, country), raw
        assert got == phonenumbers.format_number(parsed, PhoneNumberFormat.E164)[1:] and valid is True, raw
    assert staged.loc[staged["mobile"].isna(), "country"].isna().all()
    # a mobile is one person's, on some of their records (so init may take it for a key)
    truth = pd.read_csv(root / "ground_truth.csv", dtype=str).query("object == 'members'")
    owners = mobiles.merge(truth, left_on="member_id", right_on="record_id")
    assert len(owners) == len(mobiles)
    assert (owners.groupby("standardized_mobile")["person_id"].nunique() == 1).all()
    assert (owners.groupby("person_id")["standardized_mobile"].nunique() == 1).all()


def test_attributes_are_json_objects_with_awkward_keys(root):
    values = [json.loads(v) for v in all_rows(root, "loyalty/members")["attributes"].dropna()]
    assert values and all(isinstance(v, dict) for v in values)
    assert any("preferred store" in v for v in values) and all("$source" in v for v in values)
    assert any(isinstance(v.get("address"), dict) for v in values)
    assert any(isinstance(v["tags"], list) and len(v["tags"]) >= 2 for v in values)


def test_attributes_staged_by_the_example_json_rule_match_json_loads(wh, root):
    staged = stage(wh, root, "loyalty/members", only=("profile",))
    paths = {
        "tier": ["tier"],
        "points": ["points"],
        "store": ["preferred store"],
        "source": ["$source"],
        "city": ["address", "city"],
    }
    checked = 0
    for _, row in staged.iterrows():
        doc = json.loads(row["attributes"]) if row["attributes"] else {}
        for out, keys in paths.items():
            want = doc
            for k in keys:
                want = want.get(k) if isinstance(want, dict) else None
            assert row[f"profile_{out}"] == (None if want is None else str(want)), (row["attributes"], out)
        tags = row["profile_tags"]
        assert (None if tags is None else list(tags)) == doc.get("tags"), row["attributes"]
        checked += bool(doc)
    assert checked >= 100


def test_sent_at_in_four_spellings_reads_as_the_client_time(wh, root):
    staged = stage(wh, root, "web/events")
    sent = staged["sent_at"]
    for pattern in (r"Z$", r"[+-]\d\d:\d\d$", r"^\d{13}$", r"^\d{10}$"):
        assert sent.str.contains(pattern).sum() >= 20, pattern
    assert [int(v) for v in staged["sent_unixtime"]] == [oracle_instant(v) for v in sent]
    updated = pd.to_datetime(staged["updated_at"]).astype("int64") // 10**9
    lag = updated - staged["sent_unixtime"].astype("int64")
    assert lag.between(0, 20 + 90).all()


def test_redelivered_events_collapse_under_the_example_dedupe(wh, root):
    summary_events = RECORDS - RECORDS * 25 // 100 - RECORDS * 30 // 100 - RECORDS * 20 // 100
    rows = all_rows(root, "web/events")
    truth = pd.read_csv(root / "ground_truth.csv", dtype=str)
    originals = {f"E{i:06d}" for i in range(1, summary_events + 1)}
    redelivered = set(rows["event_id"]) - originals
    assert 5 <= len(redelivered) and set(truth["record_id"]) >= redelivered
    kept = stage(wh, root, "web/events", only=("email", "sent"), dedupe=True)
    assert set(kept["event_id"]) == originals
    # each re-delivery: the same event in another spelling, its email differing in case or spaces
    by_id = rows.set_index("event_id")
    for new_id in sorted(redelivered):
        copy = by_id.loc[new_id]
        original = by_id[
            (by_id["cookie_id"] == copy["cookie_id"])
            & (by_id["event_type"] == copy["event_type"])
            & (by_id.index.isin(originals))
        ]
        original = original[[oracle_instant(s) == oracle_instant(copy["sent_at"]) for s in original["sent_at"]]]
        assert len(original) == 1, new_id
        first = original.iloc[0]
        assert first["email"] != copy["email"] and first["email"].strip().lower() == copy["email"].strip().lower()
        assert first["updated_at"] < copy["updated_at"]


def test_the_phone_examples_are_what_regeneration_writes():
    assert EXAMPLES_FILE.read_text(encoding="utf-8") == examples_text()
    assert len({e.region for e in phone_examples()}) >= 240


def test_messiness_added_later_equals_messiness_generated(tmp_path):
    generate_sample(tmp_path / "later", 500, seed=9, extra_columns=False)
    assert add_messiness(tmp_path / "later", seed=9) > 0
    generate_sample(tmp_path / "at_once", 500, seed=9)
    assert sample_digest(tmp_path / "later") == sample_digest(tmp_path / "at_once")
    with pytest.raises(ValueError, match=r"customers_hist\.csv: columns .* are not the identity columns"):
        add_messiness(tmp_path / "later", seed=9)


# The bundled example's identity columns before the messiness was added to it (its records, with
# the amounts as digits): who merges with whom, and so the canonical ids, are unchanged.
BUNDLED_IDENTITY_DIGEST = "7b22e33cc6e7d1ac39d67bfc188ceb2857f1dcdf7948e3b5a0f184d8efae8957"
BUNDLED_EVENTS = 750


def identity_digest(root: Path, events: int) -> str:
    digest = hashlib.sha256()
    for key, columns in IDENTITY_COLUMNS.items():
        for segment in SEGMENTS:
            frame = read_frame(object_file(root, key, segment)).reindex(columns=list(columns))
            if key == "web/events":
                frame = frame[frame["event_id"] <= f"E{events:06d}"]
            if key == "shop/orders":
                frame["amount"] = frame["amount"].str.replace(r"[^0-9.]", "", regex=True)
            digest.update(frame.to_csv(index=False, lineterminator="\n").encode())
    return digest.hexdigest()


def test_the_bundled_example_carries_the_messy_columns(wh):
    data = EXAMPLE / "data"
    for key, columns in OBJECT_COLUMNS.items():
        for segment in SEGMENTS:
            assert tuple(read_frame(object_file(data, key, segment)).columns) == columns
    assert EXTRA_COLUMNS["web/events"] == ("sent_at",)
    assert identity_digest(data, BUNDLED_EVENTS) == BUNDLED_IDENTITY_DIGEST
    events = all_rows(data, "web/events")
    assert len(events) == BUNDLED_EVENTS + 27
    kept = stage(wh, data, "web/events", only=("email", "sent"), dedupe=True)
    assert sorted(kept["event_id"]) == [f"E{i:06d}" for i in range(1, BUNDLED_EVENTS + 1)]
