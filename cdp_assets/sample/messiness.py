"""The messy values the staging rules handle (docs/staging.md), added to a sample's files.

Every value here is a function of the seed, the object, the record id (the person, for mobiles)
and (for values a record's update may change) the file it is in, drawn by hashing, not from the
identity stream: adding or
changing a messy column never moves who merges with whom, and the same columns can be added to
files written before (``python -m cdp_assets.sample.messiness DATA_DIR --seed N``, which is how
the bundled example got them).

- shop customers: ``birth_date`` in five date spellings (ISO, ``yyyy/mm/dd``, ``dd-mm-yyyy``,
  ``dd.mm.yyyy``, ``mm/dd/yyyy``), some ``N/A``; ``newsletter`` as yes/no, y/n, true/false, 1/0,
  on/off in any case, a few unreadable (``maybe``).
- shop orders: ``amount`` spelt with currency symbols, codes and thousands separators
  (``$1,234.50``, ``USD 12.00``, ``12.00 $``), the same value in cents.
- loyalty members: ``mobile``, each person's one number, from every region of phonenumbers'
  examples (E.164, international format, dialled from the US as ``011 ...``, and national format
  for the +1 regions), its ``country``, and ``attributes``: a JSON object (nested, an array, keys
  with a space and a ``$``).
- web events: ``sent_at``, the client's time as ISO 8601 with ``Z`` or an offset, or Unix epoch
  seconds or milliseconds; and re-deliveries: about 3% of the events with an email and a cookie
  arrive twice, under a new ``event_id``, a few seconds later, with the email in another case or
  padded. They are records of the same person (in ground_truth.csv) that the example's
  ``dedupe`` drops.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cdp_assets.sample.files import SEGMENTS, object_file, read_frame, write_frame
from cdp_assets.sample.layout import EXTRA_COLUMNS, ID_PREFIX, IDENTITY_COLUMNS, INCREMENTAL_DATES
from cdp_assets.sample.phone_examples import phone_examples
from cdp_assets.sample.render import splitmix64

REDELIVERY_SHARE = 0.03
_REDELIVERY_DELAY_S = (1, 90)

_BIRTH_FIRST = np.datetime64("1950-01-01")
_BIRTH_DAYS = int((np.datetime64("2006-01-01") - _BIRTH_FIRST).astype(np.int64))
_BIRTH_FORMATS = ("iso", "yyyy/mm/dd", "dd-mm-yyyy", "dd.mm.yyyy", "mm/dd/yyyy", "n/a", "null")
_BIRTH_FORMAT_P = (0.40, 0.15, 0.13, 0.08, 0.14, 0.02, 0.08)

_FLAGS_TRUE = ("yes", "Yes", "YES", "y", "Y", "true", "True", "TRUE", "1", "on", "On")
_FLAGS_FALSE = ("no", "No", "NO", "n", "N", "false", "False", "FALSE", "0", "off", "OFF")
_FLAG_KIND_P = (0.45, 0.42, 0.10, 0.03)  # true, false, missing, unreadable
_FLAGS_UNREADABLE = ("maybe", "unknown", "?")

_AMOUNT_STYLES = ("{v}", "${v}", "$ {v}", "USD {v}", "{v} $", "{v} USD", "{v}")
_AMOUNT_STYLE_P = (0.30, 0.30, 0.08, 0.10, 0.07, 0.05, 0.10)
_THOUSANDS_P = 0.5  # of amounts of 1,000 or more: written with a thousands separator

_MOBILE_PRESENT = 0.7
_MOBILE_MULT = 7919  # a prime not dividing the number of mobiles: person -> mobile is one-to-one
_NANPA_FORMAT_P = (0.15, 0.25, 0.60)  # e164, international, national
_OTHER_FORMAT_P = (0.35, 0.45, 0.20)  # e164, international, from_us

_TIERS = ("bronze", "silver", "gold", "platinum")
_STORES = ("Downtown", "Airport", "Mall of the West", "Harbour Front", "online")
_SOURCES = ("app", "web", "store", "partner")
_TAGS = ("vip", "email_opt_in", "sms_opt_in", "birthday_club", "returns_often")
_CITIES = ("Springfield", "Riverside", "Franklin", "Greenville", "Bristol", "Clinton", "Fairview")

_SENT_FORMATS = ("iso_z", "iso_offset", "epoch_millis", "epoch_seconds")
_SENT_FORMAT_P = (0.30, 0.20, 0.35, 0.15)
_OFFSETS_MIN = (-480, -300, -240, 0, 60, 120, 330, 540, 600)
_SEGMENT_END = {  # last second a segment's updated_at may take
    0: int(np.datetime64("2023-12-31T23:59:59", "s").astype(np.int64)),
    1: int(np.datetime64(f"{INCREMENTAL_DATES[0]}T23:59:59", "s").astype(np.int64)),
    2: int(np.datetime64(f"{INCREMENTAL_DATES[1]}T23:59:59", "s").astype(np.int64)),
}
_OBJECT_SALT = {"shop/customers": 1, "shop/orders": 2, "loyalty/members": 3, "web/events": 4}


class Messiness:
    """Adds EXTRA_COLUMNS (and rewrites ``amount``) file by file; ``apply`` is called once per
    file, historical first, so re-deliveries get increasing new ids."""

    def __init__(self, seed: int, next_event_id: int, id_width: int) -> None:
        self.seed = int(seed)
        self.next_event_id = int(next_event_id)
        self.id_width = int(id_width)
        self.redelivered: list[tuple[str, str]] = []  # (new event_id, original event_id)

    @property
    def duplicates(self) -> int:
        return len(self.redelivered)

    def apply(self, key: str, segment: int, frame: pd.DataFrame, persons: np.ndarray) -> pd.DataFrame:
        """``frame``: one file's identity columns; ``persons``: each row's person, as numbered in
        ground_truth.csv (P000001 is 1)."""
        frame = frame.copy()
        ids = frame[IDENTITY_COLUMNS[key][0]].to_numpy(dtype=object)
        draw = _Draws(self.seed, key, segment, ids)
        if key == "shop/customers":
            frame["birth_date"] = _birth_dates(draw)
            frame["newsletter"] = _flags(draw)
        elif key == "shop/orders":
            frame["amount"] = _messy_amounts(frame["amount"].to_numpy(dtype=object), draw)
        elif key == "loyalty/members":
            frame["mobile"], frame["country"] = _mobiles(draw, np.asarray(persons, dtype=np.int64), self.seed)
            frame["attributes"] = _attributes(draw)
        elif key == "web/events":
            frame["sent_at"] = _sent_at(frame["updated_at"].to_numpy(dtype=object), draw)
            frame = self._redeliveries(frame, segment, draw)
        return frame[list(IDENTITY_COLUMNS[key] + EXTRA_COLUMNS[key])]

    def _redeliveries(self, frame: pd.DataFrame, segment: int, draw: _Draws) -> pd.DataFrame:
        email = frame["email"].astype("string")
        secs = _epoch_seconds(frame["updated_at"].to_numpy(dtype=object))
        delay = _REDELIVERY_DELAY_S[0] + (draw.u("delay") * _REDELIVERY_DELAY_S[1]).astype(np.int64)
        room = _SEGMENT_END[segment] - secs
        chosen = (
            (draw.u("redeliver") < REDELIVERY_SHARE)
            & frame["cookie_id"].notna().to_numpy()
            & email.str.contains("@", regex=False).fillna(False).to_numpy(dtype=bool)
            & (email.str.strip().str.lower() != "test@test.com").fillna(False).to_numpy(dtype=bool)
            & (room >= 1)
        )
        rows = np.flatnonzero(chosen)
        if not len(rows):
            return frame
        copies = frame.iloc[rows].copy()
        new_ids = [
            f"{ID_PREFIX['web/events']}{i:0{self.id_width}d}"
            for i in range(self.next_event_id, self.next_event_id + len(rows))
        ]
        self.next_event_id += len(rows)
        self.redelivered += list(zip(new_ids, copies["event_id"]))
        copies["event_id"] = new_ids
        copies["email"] = [_respelt(e, u) for e, u in zip(copies["email"], draw.u("respell")[rows])]
        copies["updated_at"] = _fmt_seconds(secs[rows] + np.minimum(delay[rows], room[rows]))
        # the client sends the same time again, perhaps in another spelling
        copies["sent_at"] = _sent_at(frame["updated_at"].to_numpy(dtype=object), draw, "resend")[rows]
        order = np.concatenate([np.arange(len(frame)), rows + 0.5])
        out = pd.concat([frame, copies], ignore_index=True).iloc[np.argsort(order, kind="stable")]
        if segment:  # incremental files stay in change order
            out = out.sort_values(["updated_at", "event_id"], kind="stable")
        return out.reset_index(drop=True)

    def truth_rows(self, truth: pd.DataFrame) -> pd.DataFrame:
        """``truth`` with a row for each re-delivery: the person of its original event."""
        if not self.redelivered:
            return truth
        events = truth[(truth["source"] == "web") & (truth["object"] == "events")].set_index("record_id")
        new_ids, originals = zip(*self.redelivered)
        extra = events.loc[list(originals)].reset_index()
        extra["record_id"] = list(new_ids)
        return pd.concat([truth, extra[truth.columns]], ignore_index=True)


class _Draws:
    """Uniform draws in [0, 1) per row, a hash of (seed, object, record id, name[, file])."""

    def __init__(self, seed: int, key: str, segment: int, ids: np.ndarray) -> None:
        self.base = (seed & 0xFFFFFFFF) * 16 + _OBJECT_SALT[key]
        self.segment = segment
        self.numbers = np.array([int(str(i)[1:]) for i in ids], dtype=np.uint64)

    def u(self, name: str, per_file: bool = True) -> np.ndarray:
        salt = sum(ord(c) * 131**i for i, c in enumerate(name)) % 2**40
        key = splitmix64(np.array([self.base, salt, self.segment if per_file else 7], dtype=np.uint64))
        mixed = splitmix64(splitmix64(self.numbers ^ key[0]) ^ key[1] ^ key[2])
        return (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)

    def pick(self, name: str, p: Sequence[float], per_file: bool = True) -> np.ndarray:
        return np.searchsorted(np.cumsum(p) / sum(p), self.u(name, per_file), side="right")


def _birth_dates(draw: _Draws) -> np.ndarray:
    days = _BIRTH_FIRST + (draw.u("birth", per_file=False) * _BIRTH_DAYS).astype("timedelta64[D]")
    text = np.datetime_as_string(days, unit="D")  # yyyy-mm-dd
    kind = draw.pick("birth_format", _BIRTH_FORMAT_P)
    out = np.empty(len(days), dtype=object)
    for k, (iso, fmt) in enumerate(zip(text, np.array(_BIRTH_FORMATS)[kind])):
        y, m, d = iso[:4], iso[5:7], iso[8:10]
        out[k] = {
            "iso": iso,
            "yyyy/mm/dd": f"{y}/{m}/{d}",
            "dd-mm-yyyy": f"{d}-{m}-{y}",
            "dd.mm.yyyy": f"{d}.{m}.{y}",
            "mm/dd/yyyy": f"{m}/{d}/{y}",
            "n/a": "N/A",
        }.get(fmt)
    return out


def _flags(draw: _Draws) -> np.ndarray:
    kind = draw.pick("flag", _FLAG_KIND_P)
    spelling = draw.u("flag_spelling")
    tables = (_FLAGS_TRUE, _FLAGS_FALSE, (None,), _FLAGS_UNREADABLE)
    return np.array([tables[k][int(s * len(tables[k]))] for k, s in zip(kind, spelling)], dtype=object)


def _messy_amounts(amounts: np.ndarray, draw: _Draws) -> np.ndarray:
    style = draw.pick("amount_style", _AMOUNT_STYLE_P)
    thousands = draw.u("thousands") < _THOUSANDS_P
    out = np.empty(len(amounts), dtype=object)
    for k, (value, s, sep) in enumerate(zip(amounts, style, thousands)):
        whole, _, cents = str(value).partition(".")
        if sep and len(whole) > 3:
            whole = f"{int(whole):,}"
        out[k] = _AMOUNT_STYLES[s].format(v=f"{whole}.{cents}")
    return out


def _vary_last_two(text: str, digits: str) -> str:
    """``text`` with its last two digit characters replaced by ``digits``."""
    chars = list(text)
    positions = [i for i, c in enumerate(chars) if c.isdigit()][-2:]
    for pos, digit in zip(positions, digits):
        chars[pos] = digit
    return "".join(chars)


def _mobiles(draw: _Draws, persons: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each person's one mobile (a region's example number with its last two digits varied,
    distinct for up to 100 x the examples' count of persons), on 70% of their records, in a
    spelling per record; and its region."""
    examples = phone_examples()
    space = len(examples) * 100
    offset = int(splitmix64(np.array([seed & 0xFFFFFFFF], dtype=np.uint64))[0] % np.uint64(space))
    number = (persons * _MOBILE_MULT + offset) % space
    present = draw.u("mobile", per_file=False) < _MOBILE_PRESENT
    fmt_u = draw.u("mobile_format")
    mobile = np.full(len(persons), None, dtype=object)
    country = np.full(len(persons), None, dtype=object)
    for k in np.flatnonzero(present):
        example = examples[int(number[k] % len(examples))]
        p, forms = (
            (_NANPA_FORMAT_P, ("e164", "international", "national"))
            if example.country_code == "1"
            else (_OTHER_FORMAT_P, ("e164", "international", "from_us"))
        )
        form = forms[int(np.searchsorted(np.cumsum(p), fmt_u[k], side="right"))]
        mobile[k] = _vary_last_two(getattr(example, form), f"{int(number[k] // len(examples)):02d}")
        country[k] = example.region
    return mobile, country


def _attributes(draw: _Draws) -> np.ndarray:
    tier, points, store, source, city = (draw.u(n, per_file=False) for n in ("tier", "points", "store", "src", "city"))
    zip_code, tags, has = draw.u("zip", per_file=False), draw.u("tags", per_file=False), draw.u("has_attributes")
    out = np.full(len(tier), None, dtype=object)
    for k in np.flatnonzero(has < 0.9):
        value: dict = {"tier": _TIERS[int(tier[k] * 4)], "points": int(points[k] * 20_000)}
        if store[k] < 0.8:
            value["preferred store"] = _STORES[int(store[k] / 0.8 * len(_STORES))]
        value["$source"] = _SOURCES[int(source[k] * len(_SOURCES))]
        if city[k] < 0.7:
            city_name = _CITIES[int(city[k] / 0.7 * len(_CITIES))]
            value["address"] = {"city": city_name, "zip": f"{int(zip_code[k] * 1e5):05d}"}
        bits = int(tags[k] * 32)
        value["tags"] = [t for i, t in enumerate(_TAGS) if bits >> i & 1]
        out[k] = json.dumps(value, separators=(",", ":"))
    return out


def _epoch_seconds(timestamps: np.ndarray) -> np.ndarray:
    """'yyyy-mm-dd HH:MM:SS' -> Unix seconds."""
    return np.array([str(t).replace(" ", "T") for t in timestamps], dtype="datetime64[s]").astype(np.int64)


def _fmt_seconds(secs: np.ndarray) -> np.ndarray:
    return np.array([str(t).replace("T", " ") for t in secs.astype("datetime64[s]")], dtype=object)


def _sent_at(updated_at: np.ndarray, draw: _Draws, name: str = "sent") -> np.ndarray:
    """The client's time: up to 20 s before the server's ``updated_at``, with milliseconds."""
    millis = (_epoch_seconds(updated_at) - (draw.u("latency") * 20).astype(np.int64)) * 1000 + (
        draw.u("millis") * 1000
    ).astype(np.int64)
    kind = draw.pick(f"{name}_format", _SENT_FORMAT_P)
    offset = np.array(_OFFSETS_MIN)[(draw.u(f"{name}_offset") * len(_OFFSETS_MIN)).astype(np.int64)]
    out = np.empty(len(millis), dtype=object)
    for k, (ms, fmt, off) in enumerate(zip(millis, np.array(_SENT_FORMATS)[kind], offset)):
        if fmt == "epoch_millis":
            out[k] = str(int(ms))
        elif fmt == "epoch_seconds":
            out[k] = str(int(ms) // 1000)
        else:
            shift = 0 if fmt == "iso_z" else int(off)
            local = np.datetime64(int(ms) + shift * 60_000, "ms")
            sign = "+" if shift >= 0 else "-"
            zone = "Z" if fmt == "iso_z" else f"{sign}{abs(shift) // 60:02d}:{abs(shift) % 60:02d}"
            out[k] = f"{local}{zone}"
    return out


def _respelt(email: str, u: float) -> str:
    """The same address as a client re-sends it: another case, or padded."""
    bare = email.strip()
    if u < 0.4 and bare != bare.upper():
        return bare.upper()
    if u < 0.7 and bare != bare.lower():
        return bare.lower()
    return f"  {bare} " if email == bare else bare


def add_messiness(data_dir: Path | str, seed: int) -> int:
    """Add the messy columns to a sample written with ``extra_columns=False`` (or before they
    existed), in place; returns the number of re-delivered events. Refuses a sample that has them."""
    root = Path(data_dir)
    frames = {}
    for key in IDENTITY_COLUMNS:
        for segment in SEGMENTS:
            path = object_file(root, key, segment)
            frame = read_frame(path)
            if len(frame) and tuple(frame.columns) != IDENTITY_COLUMNS[key]:
                raise ValueError(
                    f"{path}: columns {list(frame.columns)} are not the identity columns "
                    f"{list(IDENTITY_COLUMNS[key])}; add the messiness to a sample without it"
                )
            frames[path] = (key, segment, frame.reindex(columns=list(IDENTITY_COLUMNS[key])))
    events = [f for k, _, f in frames.values() if k == "web/events"]
    event_ids = pd.concat([f["event_id"] for f in events])
    width = max((len(i) - 1 for i in event_ids), default=6)
    messiness = Messiness(seed, next_event_id=max((int(i[1:]) for i in event_ids), default=0) + 1, id_width=width)
    truth_path = root / "ground_truth.csv"
    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False)
    person_of = dict(zip(truth["record_id"] + "/" + truth["object"], truth["person_id"].str[1:].astype(int)))
    for path, (key, segment, frame) in frames.items():
        id_col, obj = IDENTITY_COLUMNS[key][0], key.split("/")[1]
        persons = np.array([person_of[f"{i}/{obj}"] for i in frame[id_col]], dtype=np.int64)
        write_frame(messiness.apply(key, segment, frame, persons), path)
    write_frame(messiness.truth_rows(truth), truth_path)
    return messiness.duplicates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdp_assets.sample.messiness", description="Add the messy columns to a sample's files, in place."
    )
    parser.add_argument("data_dir", help="the sample's folder (holding ground_truth.csv)")
    parser.add_argument("--seed", type=int, required=True, help="the seed the sample was generated with")
    args = parser.parse_args(argv)
    added = add_messiness(args.data_dir, args.seed)
    print(
        f"added {', '.join(c for cols in EXTRA_COLUMNS.values() for c in cols)} and {added} re-delivered events "
        f"to {args.data_dir}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
