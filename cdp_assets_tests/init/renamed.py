"""Generated sample data whose columns are renamed and shuffled, and its ground truth: what
`cdp-assets init` must work out without the generator's column names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cdp_assets.sample.generator import generate_sample

# Some names still hint at the kind (E-Mail, Mobile), some say nothing (vid, field_3, col_b):
# those are found by their values. The watermark has a different name per object, so one
# folder's objects end up in two sources.
RENAMES: dict[str, dict[str, str]] = {
    "shop/customers": {
        "customer_id": "Client Number",
        "email": "E-Mail",
        "phone": "Mobile",
        "first_name": "Given Name",
        "last_name": "Surname",
        "updated_at": "Last Modified",
    },
    "shop/orders": {
        "order_id": "Txn Ref",
        "customer_id": "Client Number",
        "email": "Contact Mail",
        "amount": "Total",
        "updated_at": "modified_ts",
    },
    "loyalty/members": {
        "member_id": "loyalty_no",
        "email": "mail",
        "phone": "col_b",
        "first_name": "fname",
        "last_name": "lname",
        "updated_at": "changed_at",
    },
    "web/events": {
        "event_id": "hit_id",
        "cookie_id": "vid",
        "email": "field_3",
        "event_type": "action",
        "updated_at": "ts",
    },
}
# The record id's column in the raw tables (headers are normalised: lowercase, '_').
RECORD_ID_COLUMN = {
    "shop/customers": "client_number",
    "shop/orders": "txn_ref",
    "loyalty/members": "loyalty_no",
    "web/events": "hit_id",
}


def write_renamed_sample(root: Path, records: int, seed: int) -> Path:
    """Generate the sample under ``root/generated`` and write the renamed, shuffled copy to
    ``root/data`` (same layout and formats); returns ``root/data``."""
    # The identity columns only: RENAMES names those. (With the messy columns init takes
    # `$12.50` amounts for text, not a measure, and `country` for a record id.)
    generate_sample(root / "generated", records, seed=seed, extra_columns=False)
    rng = np.random.default_rng(seed)
    out = root / "data"
    for key, renames in RENAMES.items():
        order = list(renames.values())
        rng.shuffle(order)
        for path in sorted((root / "generated" / key).rglob("*.*")):
            target = out / path.relative_to(root / "generated")
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".csv":
                df = pd.read_csv(path, dtype=str, keep_default_na=False).rename(columns=renames)[order]
                df.to_csv(target, index=False)
            elif path.suffix == ".parquet":
                table = pq.read_table(path)
                table = table.rename_columns([renames[c] for c in table.column_names]).select(order)
                pq.write_table(table, target)
            else:
                lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                target.write_text(
                    "".join(
                        json.dumps({c: rec[k] for c in order for k, v in renames.items() if v == c}) + "\n"
                        for rec in lines
                    )
                )
    (out / "ground_truth.csv").write_bytes((root / "generated" / "ground_truth.csv").read_bytes())
    return out


def pairwise(truth: pd.Series, predicted: pd.Series) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering (``predicted``, one label per record; NaN:
    a record alone) against the truth (one person per record)."""
    pred = predicted.astype(object).where(predicted.notna(), [f"__alone_{i}" for i in range(len(predicted))])
    pairs = lambda counts: int((counts * (counts - 1) // 2).sum())  # noqa: E731
    both = pairs(pd.DataFrame({"t": truth.values, "p": pred.values}).groupby(["t", "p"]).size().values)
    together_pred = pairs(pred.value_counts().values)
    together_true = pairs(truth.value_counts().values)
    return (both / together_pred if together_pred else 1.0, both / together_true if together_true else 1.0)


def oracle_components(generated: Path) -> pd.DataFrame:
    """What deterministic keys can link at best: records joined through any shared valid
    identifier (email lowercased and trimmed, phone digits as E.164 US, cookie, customer id),
    the generator's junk values excluded. Returns source, object, record_id, component."""
    import re

    from cdp_assets.sample.generator import JUNK_EMAILS, JUNK_PHONES

    frames = []
    for key, renames in RENAMES.items():
        parts = []
        for path in sorted((generated / key).rglob("*.*")):
            if path.suffix == ".csv":
                parts.append(pd.read_csv(path, dtype=str, keep_default_na=False))
            elif path.suffix == ".parquet":
                parts.append(pd.read_parquet(path).astype(str))
            else:
                parts.append(pd.read_json(path, lines=True, dtype=str))
        df = pd.concat(parts, ignore_index=True)
        df["record_id"] = df[list(renames)[0]]
        df["source"], df["object"] = key.split("/")
        frames.append(df)
    records = pd.concat(frames, ignore_index=True)
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def ids(row) -> list[str]:
        out = []
        email = str(row.get("email") or "").strip().lower()
        if (
            email
            and email not in {j.lower() for j in JUNK_EMAILS}
            and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", email)
        ):
            out.append("e:" + email)
        phone = re.sub(r"[^0-9]", "", str(row.get("phone") or ""))
        if len(phone) == 11 and phone.startswith("1"):
            phone = phone[1:]
        if len(phone) == 10 and str(row.get("phone")) not in JUNK_PHONES and len(set(phone)) > 1:
            out.append("p:" + phone)
        for col in ("cookie_id", "customer_id"):
            v = row.get(col)
            if isinstance(v, str) and v and v not in ("None", "nan"):
                out.append(f"{col}:{v}")
        return out

    # Hist-union keeps the newest version of a record (by primary key): so does the oracle.
    records = records.sort_values("updated_at", kind="stable").drop_duplicates(
        ["source", "object", "record_id"], keep="last"
    )
    for i, row in records.iterrows():
        node = ("r", row["source"], row["object"], row["record_id"])
        for ident in ids(row):
            parent[find(node)] = find(ident)
    records["component"] = [
        str(find(("r", s, o, r))) for s, o, r in zip(records["source"], records["object"], records["record_id"])
    ]
    return records[["source", "object", "record_id", "component"]].drop_duplicates(["source", "object", "record_id"])
