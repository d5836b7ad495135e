"""The Databricks DataFrame load's batches, without a warehouse: every cell comes back from the
JSON documents as it went in, in order, and no document is larger than the budget unless a
single row is. The statement that reads them is checked on local Spark in test_databricks.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.frame_batches import json_batches, load_columns
from cdp_assets.sql.frame_load import LoadColumn, json_batch_insert_sql

texts = st.one_of(st.none(), st.text(max_size=30))
ints = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))
floats = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=True, width=64))
bools = st.booleans()
stamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=pd.Timestamp("1677-09-22").to_pydatetime(), max_value=pd.Timestamp("2262-04-10").to_pydatetime()
    ),
)


@st.composite
def frames(draw) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=40))
    return pd.DataFrame(
        {
            "t": pd.array(draw(st.lists(texts, min_size=n, max_size=n)), dtype="string"),
            "i": pd.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype="Int64"),
            "f": pd.Series(draw(st.lists(floats, min_size=n, max_size=n)), dtype="float64"),
            "b": pd.Series(draw(st.lists(bools, min_size=n, max_size=n)), dtype="bool"),
            "ts": pd.Series(draw(st.lists(stamps, min_size=n, max_size=n)), dtype="datetime64[us]"),
        }
    )


def _decoded(df: pd.DataFrame, max_bytes: int) -> tuple[list[tuple], list[int], list[int]]:
    columns = load_columns(df)
    rows, sizes, counts = [], [], []
    for count, doc in json_batches(df, columns, max_bytes):
        data = json.loads(doc)
        assert sorted(data) == sorted(f"c{i}" for i in range(len(columns)))
        assert all(len(v) == count for v in data.values())
        rows += list(zip(*(data[f"c{i}"] for i in range(len(columns)))))
        sizes.append(len(doc.encode("utf-8")))
        counts.append(count)
    return rows, sizes, counts


def _expected(v, kind: str):
    if pd.isna(v):
        return None
    if kind == "timestamp":
        return (pd.Timestamp(v) - pd.Timestamp("1970-01-01")) // pd.Timedelta(microseconds=1)
    return v.item() if hasattr(v, "item") else v


@settings(max_examples=60, deadline=None)
@given(df=frames(), max_bytes=st.integers(min_value=1, max_value=3000))
def test_every_cell_comes_back_in_order_and_batches_keep_to_the_budget(df, max_bytes):
    rows, sizes, counts = _decoded(df, max_bytes)
    kinds = [c.kind for c in load_columns(df)]
    assert kinds == ["text", "integer", "float", "boolean", "timestamp"]
    want = [
        tuple(_expected(v, k) for v, k in zip(row, kinds))
        for row in df.astype(object).itertuples(index=False, name=None)
    ]
    assert rows == want
    assert sum(counts) == len(df)
    for size, count in zip(sizes, counts):
        assert size <= max_bytes or count == 1  # only a row bigger than the budget travels alone over it


def test_a_text_column_refuses_a_value_it_cannot_hold_naming_the_column():
    df = pd.DataFrame({"tags": pd.Series([["a"], None], dtype=object)})
    with pytest.raises(ValueError, match="column 'tags': a list value"):
        list(json_batches(df, load_columns(df), 1000))


def test_the_insert_has_one_parameter_whatever_the_width():
    columns = [LoadColumn(f"col{i}", "text") for i in range(400)] + [LoadColumn("when", "timestamp")]
    sql = json_batch_insert_sql("`s`.`t`", columns)
    assert sql.count("?") == 1 and "timestamp_micros(r.c400)" in sql and "`when`" in sql
    with pytest.raises(ValueError, match="unknown kind"):
        json_batch_insert_sql("`s`.`t`", [LoadColumn("x", "blob")])
