"""The identity model's output does not move: with the messiness off, the same seed writes the
same files as the generator did before it was split into named parts and before the messiness
was added (digests taken from that generator, commit 56cdd24), so that every figure, merge and
canonical id measured on a generated sample stays valid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cdp_assets.sample import IDENTITY_COLUMNS, generate_sample
from cdp_assets.sample.files import read_frame

# (records, seed, historical_share, chain_emails) -> digest of every file of the sample
BEFORE_THE_SPLIT = {
    (3000, 7, 0.7, (6, 12)): "109481a50a4a726bf416315211dd351158a935c39194812cb679ece12fc68847",
    (400, 3, 0.7, (6, 12)): "05746faaaf83ca8850cfd3b3702534e14e4277385581249633423d8de52fbacf",
    (40, 1, 0.7, (6, 12)): "09d27a9544cc5af5ac51149c51dce88346c5014b86154f4b35116eb9e1206b61",
    (1200, 4, 0.5, (20, 30)): "1550f552207e41d5e925e11420d6ef5b348fa0031e1a7922b6131ea829abedba",
}


def sample_digest(root: Path) -> str:
    """SHA-256 over every file's path and content; Parquet by its schema and values, so that a
    pyarrow release writing other metadata does not count as a change."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            digest.update(str(table.schema).encode())
            digest.update(json.dumps(table.to_pydict()).encode())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(BEFORE_THE_SPLIT))
def test_without_extra_columns_the_files_are_those_of_before(tmp_path, case):
    records, seed, share, chain = case
    generate_sample(tmp_path, records, seed=seed, historical_share=share, chain_emails=chain, extra_columns=False)
    assert sample_digest(tmp_path) == BEFORE_THE_SPLIT[case]


def test_extra_columns_leave_the_identity_columns_unchanged(tmp_path):
    plain = generate_sample(tmp_path / "plain", 600, seed=11, extra_columns=False)
    messy = generate_sample(tmp_path / "messy", 600, seed=11)
    assert messy.records == plain.records and messy.persons == plain.persons
    # the ground truth gains one row per re-delivered event, after the records' rows
    plain_truth = (tmp_path / "plain/ground_truth.csv").read_text().splitlines()
    messy_truth = (tmp_path / "messy/ground_truth.csv").read_text().splitlines()
    assert messy_truth[: len(plain_truth)] == plain_truth
    assert len(messy_truth) == len(plain_truth) + messy.duplicates > len(plain_truth)
    for plain_file in plain.files[:-1]:
        key = "/".join(plain_file.relative_to(tmp_path / "plain").parts[:2])
        before = read_frame(plain_file)
        after = read_frame(tmp_path / "messy" / plain_file.relative_to(tmp_path / "plain"))
        if key == "web/events":  # re-deliveries are added rows: the records are the others
            after = after[after["event_id"].isin(before["event_id"])].drop_duplicates("event_id")
        kept = after[list(IDENTITY_COLUMNS[key])].reset_index(drop=True)
        before = before.reset_index(drop=True)
        if key == "shop/orders":  # the same amounts in other spellings: $1,234.50, USD 12.00, 12.00 $
            assert (kept["amount"] != before["amount"]).any()
            assert (kept["amount"].str.replace(r"[^0-9.]", "", regex=True) == before["amount"]).all()
            kept, before = kept.drop(columns="amount"), before.drop(columns="amount")
        assert kept.equals(before), plain_file
