"""hist_union_sql / duplicate_keys_sql on real DuckDB tables shaped like the ingestion output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.hist_union import distinct_count_sql, duplicate_keys_sql, hist_union_sql

SCHEMA = "acme_src"
HIST = TableRef(SCHEMA, "shop_customers_hist")
INCR = TableRef(SCHEMA, "shop_customers")
OUT = TableRef(SCHEMA, "shop_customers_hist_union")
LOADED_H = pd.Timestamp("2024-01-01 00:00:00")
LOADED_I = pd.Timestamp("2024-06-03 00:00:00")


@pytest.fixture
def wh(tmp_path: Path):
    w = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    with w.session():
        yield w


def raw_frame(rows: list[dict], file: str, loaded_at: pd.Timestamp, ts: str = "updated_at") -> pd.DataFrame:
    """Like prepare_frame's output: text columns, TIMESTAMP watermark, lineage columns."""
    df = pd.DataFrame(rows)
    for c in df.columns:
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]") if c == ts else df[c].astype("string")
    if "_cdp_file" not in df.columns:
        df["_cdp_file"] = pd.array([file] * len(df), dtype="string")
    df["_cdp_loaded_at"] = pd.Series([loaded_at] * len(df), dtype="datetime64[us]")
    return df


def load(wh: DuckDBWarehouse, ref: TableRef, df: pd.DataFrame) -> tuple[TableRef, list[str]]:
    wh.write_dataframe(ref, df)
    return ref, wh.columns(ref)


def union(wh, inputs, pk=("customer_id",), field="updated_at", order="customer_id") -> pd.DataFrame:
    return wh.fetch(f"SELECT * FROM ({hist_union_sql(inputs, field, list(pk))}) AS t ORDER BY {order}")


def by_id(df: pd.DataFrame, col: str) -> dict:
    return {k: (None if pd.isna(v) else v) for k, v in zip(df["customer_id"], df[col])}


def test_newest_row_per_primary_key_wins(wh):
    h = load(
        wh,
        HIST,
        raw_frame(
            [
                {"customer_id": "C1", "email": "c1-old@x.com", "updated_at": "2023-01-01"},
                {"customer_id": "C2", "email": "c2-hist-newer@x.com", "updated_at": "2024-07-01"},
                {"customer_id": "C3", "email": "c3-only-hist@x.com", "updated_at": "2023-03-01"},
                {"customer_id": "C4", "email": "c4-a@x.com", "updated_at": "2023-01-01"},
                {"customer_id": "C4", "email": "c4-b@x.com", "updated_at": "2023-05-01"},
            ],
            "h.csv",
            LOADED_H,
        ),
    )
    i = load(
        wh,
        INCR,
        raw_frame(
            [
                {"customer_id": "C1", "email": "c1-new@x.com", "updated_at": "2024-06-01"},
                {"customer_id": "C2", "email": "c2-incr-older@x.com", "updated_at": "2024-06-01"},
                {"customer_id": "C5", "email": "c5-only-incr@x.com", "updated_at": "2024-06-02"},
            ],
            "i.csv",
            LOADED_I,
        ),
    )
    df = union(wh, [h, i])
    assert by_id(df, "email") == {
        "C1": "c1-new@x.com",
        "C2": "c2-hist-newer@x.com",  # the historical row is newer: it wins over the incremental one
        "C3": "c3-only-hist@x.com",
        "C4": "c4-b@x.com",
        "C5": "c5-only-incr@x.com",
    }
    assert by_id(df, "_cdp_file") == {"C1": "i.csv", "C2": "h.csv", "C3": "h.csv", "C4": "h.csv", "C5": "i.csv"}
    assert "_cdp_input_rank" not in df.columns and "_cdp_rn" not in df.columns
    assert list(df.columns) == ["customer_id", "email", "updated_at", "_cdp_file", "_cdp_loaded_at"]


def test_incremental_input_wins_ties_on_equal_timestamps(wh):
    h = load(
        wh,
        HIST,
        raw_frame(
            [{"customer_id": "C1", "email": "hist@x.com", "updated_at": "2024-06-01 12:00:00"}], "z_hist.csv", LOADED_H
        ),
    )
    i = load(
        wh,
        INCR,
        raw_frame(
            [{"customer_id": "C1", "email": "incr@x.com", "updated_at": "2024-06-01 12:00:00"}], "a_incr.csv", LOADED_I
        ),
    )
    # ``inputs`` is in precedence order: the later input (incremental) wins ties
    assert by_id(union(wh, [h, i]), "email") == {"C1": "incr@x.com"}
    # and the order of the inputs is what decides it (not the file name)
    assert by_id(union(wh, [i, h]), "email") == {"C1": "hist@x.com"}


def test_ties_within_one_input_go_to_the_later_file(wh):
    i = load(
        wh,
        INCR,
        raw_frame(
            [
                {
                    "customer_id": "C1",
                    "email": "day1@x.com",
                    "updated_at": "2024-06-01",
                    "_cdp_file": "customers_2024-06-01.csv",
                },
                {
                    "customer_id": "C1",
                    "email": "day2@x.com",
                    "updated_at": "2024-06-01",
                    "_cdp_file": "customers_2024-06-02.csv",
                },
            ],
            "",
            LOADED_I,
        ),
    )
    assert by_id(union(wh, [i]), "email") == {"C1": "day2@x.com"}


def test_null_timestamp_loses_to_any_timestamp(wh):
    h = load(
        wh,
        HIST,
        raw_frame([{"customer_id": "C1", "email": "dated@x.com", "updated_at": "2020-01-01"}], "h.csv", LOADED_H),
    )
    i = load(
        wh, INCR, raw_frame([{"customer_id": "C1", "email": "undated@x.com", "updated_at": None}], "i.csv", LOADED_I)
    )
    assert by_id(union(wh, [h, i]), "email") == {"C1": "dated@x.com"}


def test_columns_missing_in_one_input_come_through_as_null(wh):
    h = load(
        wh,
        HIST,
        raw_frame(
            [{"customer_id": "C1", "email": "a@x.com", "fax": "555-1", "updated_at": "2023-01-01"}],
            "h.csv",
            LOADED_H,
        ),
    )
    i = load(
        wh,
        INCR,
        raw_frame(
            [{"customer_id": "C2", "loyalty_tier": "gold", "updated_at": "2024-06-01"}],
            "i.csv",
            LOADED_I,
        ),
    )
    df = union(wh, [h, i])
    assert list(df.columns) == [
        "customer_id",
        "email",
        "fax",
        "updated_at",
        "_cdp_file",
        "_cdp_loaded_at",
        "loyalty_tier",
    ]
    assert by_id(df, "email") == {"C1": "a@x.com", "C2": None}
    assert by_id(df, "fax") == {"C1": "555-1", "C2": None}
    assert by_id(df, "loyalty_tier") == {"C1": None, "C2": "gold"}
    assert df["updated_at"].notna().all()


def test_without_primary_key_exact_duplicates_collapse_ignoring_lineage(wh):
    same = {"email": "a@x.com", "phone": "555", "updated_at": "2024-06-01"}
    h = load(wh, HIST, raw_frame([same, {**same, "phone": "556"}], "h.csv", LOADED_H))
    i = load(wh, INCR, raw_frame([same, same, {**same, "email": "b@x.com"}], "i.csv", LOADED_I))
    df = union(wh, [h, i], pk=(), order="email, phone")
    assert list(zip(df["email"], df["phone"])) == [("a@x.com", "555"), ("a@x.com", "556"), ("b@x.com", "555")]
    # the collapsed duplicate keeps the incremental copy (the later input)
    assert list(df["_cdp_file"]) == ["i.csv", "h.csv", "i.csv"]


def test_without_primary_key_rows_differing_only_in_timestamp_stay(wh):
    i = load(
        wh,
        INCR,
        raw_frame(
            [{"email": "a@x.com", "updated_at": "2024-06-01"}, {"email": "a@x.com", "updated_at": "2024-06-02"}],
            "i.csv",
            LOADED_I,
        ),
    )
    assert len(union(wh, [i], pk=(), order="updated_at")) == 2


def test_composite_primary_key(wh):
    i = load(
        wh,
        INCR,
        raw_frame(
            [
                {"customer_id": "C1", "store": "S1", "points": "1", "updated_at": "2024-06-01"},
                {"customer_id": "C1", "store": "S1", "points": "2", "updated_at": "2024-06-02"},
                {"customer_id": "C1", "store": "S2", "points": "9", "updated_at": "2024-06-01"},
            ],
            "i.csv",
            LOADED_I,
        ),
    )
    df = union(wh, [i], pk=("customer_id", "store"), order="store")
    assert list(zip(df["store"], df["points"])) == [("S1", "2"), ("S2", "9")]


def test_duplicate_keys_sql_counts_keys_with_more_than_one_row(wh):
    i = load(
        wh,
        INCR,
        raw_frame(
            [
                {"customer_id": c, "updated_at": f"2024-06-0{n}"}
                for n, c in enumerate(["C1", "C1", "C2", "C3", "C3", "C3", "C4"], start=1)
            ],
            "i.csv",
            LOADED_I,
        ),
    )
    assert wh.scalar(duplicate_keys_sql(INCR, ["customer_id"])) == 2
    assert wh.scalar(distinct_count_sql(INCR, ["customer_id"])) == 4
    wh.build_table(OUT, hist_union_sql([i], "updated_at", ["customer_id"]))
    assert wh.scalar(duplicate_keys_sql(OUT, ["customer_id"])) == 0
    assert wh.row_count(OUT) == 4


def test_hist_union_covers_both_inputs(wh):
    h = load(
        wh, HIST, raw_frame([{"customer_id": f"H{n}", "updated_at": "2023-01-01"} for n in range(5)], "h.csv", LOADED_H)
    )
    i = load(
        wh, INCR, raw_frame([{"customer_id": f"I{n}", "updated_at": "2024-01-01"} for n in range(3)], "i.csv", LOADED_I)
    )
    assert wh.build_table(OUT, hist_union_sql([h, i], "updated_at", ["customer_id"])) == 8
    assert wh.scalar(duplicate_keys_sql(OUT, ["customer_id"])) == 0


def test_a_replaced_files_newer_version_wins_at_the_same_timestamp(wh):
    """A file replaced with one row corrected and the same updated_at: both versions are in the
    incremental table (append-only); the later load is the one kept, whatever the row order."""
    h = load(
        wh, HIST, raw_frame([{"customer_id": "C0", "email": "h@x.com", "updated_at": "2023-01-01"}], "h.csv", LOADED_H)
    )
    first = raw_frame([{"customer_id": "C1", "email": "old@x.com", "updated_at": "2024-06-01"}], "a.csv", LOADED_I)
    second = raw_frame(
        [{"customer_id": "C1", "email": "new@x.com", "updated_at": "2024-06-01"}],
        "a.csv",
        LOADED_I + pd.Timedelta(hours=1),
    )
    for rows in ([first, second], [second, first]):
        wh.drop(INCR)
        i = load(wh, INCR, pd.concat(rows, ignore_index=True))
        assert by_id(union(wh, [h, i]), "email")["C1"] == "new@x.com"
