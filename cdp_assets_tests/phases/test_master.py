"""master_table_query on real DuckDB: small enriched tables, a lookup, rules loaded as data. Each
test that builds a master runs twice: each id's values ranked by a window (every engine) and
picked by ordered aggregates (``picks_by_aggregate``: DuckDB's runs)."""

from __future__ import annotations

from pathlib import Path

import tempfile

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.master import master_rules_frame, master_table_query
from cdp_assets.sql.regex import pattern_for

SCHEMA = "cdp_unification_t"
LOOKUP = TableRef(SCHEMA, "unified_id_lookup")
ENRICHED = {"crm": TableRef(SCHEMA, "enriched_crm"), "pos": TableRef(SCHEMA, "enriched_pos")}
RULES = TableRef(SCHEMA, "customer_master_attribute_rules")
DEFAULT_ORDER = {"crm": "updated_at", "pos": "updated_at"}
COLUMNS = ["unified_id", "email", "tier", "updated_at", "seen_at"]


def make_unify(attributes: list[dict]) -> UnifyConfig:
    return UnifyConfig.model_validate(
        {
            "name": "t",
            "keys": [{"name": "email"}],
            "tables": [
                {"database": "acme_stg", "table": t, "key_columns": [{"column": "email", "key": "email"}]}
                for t in ("crm", "pos")
            ],
            "canonical_ids": [{"name": "unified_id", "merge_by_keys": ["email"]}],
            "master_tables": [{"name": "customer_master", "canonical_id": "unified_id", "attributes": attributes}],
        }
    )


def enriched_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (unified_id, email, tier, updated_at, seen_at); text columns, TIMESTAMP times."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("unified_id", "email", "tier"):
        df[c] = df[c].astype("string")
    for c in ("updated_at", "seen_at"):
        df[c] = pd.to_datetime(df[c], format="ISO8601").astype("datetime64[us]")
    return df


# Whether the masters these tests build pick values by aggregates (the ``wh`` fixture's form).
PICKS = {"by_aggregate": False}


@pytest.fixture(params=[False, True], ids=["window", "aggregate"])
def wh(tmp_path: Path, request):
    PICKS["by_aggregate"] = request.param
    w = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    try:
        with w.session():
            yield w
    finally:
        PICKS["by_aggregate"] = False


def build_master(
    wh: DuckDBWarehouse,
    attributes: list[dict],
    crm: list[tuple],
    pos: list[tuple] = (),
    lookup_ids: list[str] = ("U1", "U2", "U3"),
) -> pd.DataFrame:
    unify = make_unify(attributes)
    master = unify.master_tables[0]
    wh.write_dataframe(ENRICHED["crm"], enriched_frame(list(crm)))
    wh.write_dataframe(ENRICHED["pos"], enriched_frame(list(pos)))
    # a real lookup has one row per key value, so an id appears several times
    lookup = pd.DataFrame(
        {"unified_id": [i for i in lookup_ids for _ in range(2)], "id": [f"v{n}" for n in range(2 * len(lookup_ids))]}
    )
    wh.write_dataframe(LOOKUP, lookup.astype("string"))
    wh.write_dataframe(RULES, master_rules_frame(master))
    sql = master_table_query(
        master, unify, LOOKUP, ENRICHED, RULES, DEFAULT_ORDER, picks_by_aggregate=PICKS["by_aggregate"]
    ).sql
    out = TableRef(SCHEMA, master.name)
    wh.build_table(out, sql)
    df = wh.fetch(f"SELECT * FROM {out.sql} ORDER BY unified_id")
    assert df["unified_id"].is_unique
    return df.set_index("unified_id")


def val(df: pd.DataFrame, cid: str, col: str):
    v = df.loc[cid, col]
    if v is None or (not hasattr(v, "__len__") and pd.isna(v)):
        return None
    return list(v) if not isinstance(v, str) else v


def test_priority_1_beats_priority_2_even_when_older(wh):
    attrs = [
        {
            "name": "email",
            "source_columns": [
                {"table": "crm", "column": "email", "priority": 1},
                {"table": "pos", "column": "email", "priority": 2},
            ],
        }
    ]
    crm = [
        ("U1", "crm-old@x.com", None, "2020-01-01", None),
        ("U1", None, None, "2025-01-01", None),  # NULL: not a candidate
        ("U1", "   ", None, "2025-01-02", None),  # blank: not a candidate
    ]
    pos = [
        ("U1", "pos-new@x.com", None, "2024-12-31", None),
        ("U2", "pos-only@x.com", None, "2024-01-01", None),
    ]
    df = build_master(wh, attrs, crm, pos)
    assert val(df, "U1", "email") == "crm-old@x.com"
    assert val(df, "U2", "email") == "pos-only@x.com"  # falls back to priority 2
    assert val(df, "U3", "email") is None


def test_order_last_picks_newest_and_first_picks_oldest(wh):
    attrs = [
        {"name": "latest_tier", "source_columns": [{"table": "crm", "column": "tier", "order": "last"}]},
        {"name": "first_tier", "source_columns": [{"table": "crm", "column": "tier", "order": "first"}]},
        # order_by overrides the table's default ordering column
        {
            "name": "latest_seen_tier",
            "source_columns": [{"table": "crm", "column": "tier", "order": "last", "order_by": "seen_at"}],
        },
    ]
    crm = [
        ("U1", None, "silver", "2023-01-01", "2020-01-01"),
        ("U1", None, "gold", "2024-01-01", "2019-01-01"),
        ("U1", None, "bronze", "2022-01-01", "2021-01-01"),
        ("U2", None, "platinum", "2024-01-01 10:00:00", "2024-01-01"),
        ("U2", None, "basic", "2024-01-01 09:59:59", "2024-01-01"),
    ]
    df = build_master(wh, attrs, crm)
    assert val(df, "U1", "latest_tier") == "gold"
    assert val(df, "U1", "first_tier") == "bronze"
    assert val(df, "U1", "latest_seen_tier") == "bronze"
    assert val(df, "U2", "latest_tier") == "platinum"
    assert val(df, "U2", "first_tier") == "basic"
    assert all(val(df, "U3", c) is None for c in ("latest_tier", "first_tier", "latest_seen_tier"))


def test_same_priority_across_tables_ranks_by_order_by(wh):
    attrs = [
        {
            "name": "email",
            "source_columns": [
                {"table": "crm", "column": "email", "priority": 1, "order": "last"},
                {"table": "pos", "column": "email", "priority": 1, "order": "last"},
            ],
        }
    ]
    crm = [("U1", "crm@x.com", None, "2024-01-01", None)]
    pos = [("U1", "pos@x.com", None, "2024-02-01", None)]
    assert val(build_master(wh, attrs, crm, pos), "U1", "email") == "pos@x.com"


def test_array_elements_keeps_top_distinct_values_in_rank_order(wh):
    attrs = [
        {
            "name": "all_emails",
            "array_elements": 2,
            "source_columns": [
                {"table": "crm", "column": "email", "priority": 1, "order": "last"},
                {"table": "pos", "column": "email", "priority": 2, "order": "last"},
            ],
        }
    ]
    crm = [
        ("U1", "e1@x.com", None, "2021-01-01", None),
        ("U1", "e2@x.com", None, "2023-01-01", None),
        ("U1", "e3@x.com", None, "2022-01-01", None),
        ("U1", "e2@x.com", None, "2020-01-01", None),  # duplicate value: counted once
        ("U2", "only@x.com", None, "2021-01-01", None),
    ]
    pos = [
        ("U1", "p1@x.com", None, "2030-01-01", None),  # priority 2: after every priority-1 value
        ("U2", "p2@x.com", None, "2020-01-01", None),
        ("U2", "only@x.com", None, "2029-01-01", None),  # same value from priority 2: not repeated
    ]
    df = build_master(wh, attrs, crm, pos)
    assert val(df, "U1", "all_emails") == ["e2@x.com", "e3@x.com"]
    assert val(df, "U2", "all_emails") == ["only@x.com", "p2@x.com"]
    assert val(df, "U3", "all_emails") is None


def test_invalid_texts_and_valid_regexp_exclude_values(wh):
    attrs = [
        {
            "name": "email",
            "invalid_texts": ["N/A", "test@test.com"],
            "valid_regexp": "^[^@ ]+@[^@ ]+\\.[a-z]+$",
            "source_columns": [{"table": "crm", "column": "email", "order": "last"}],
        },
        # the same column without rules: the rules of one attribute do not leak into another
        {"name": "raw_email", "source_columns": [{"table": "crm", "column": "email", "order": "last"}]},
    ]
    crm = [
        ("U1", "a@x.com", None, "2020-01-01", None),
        ("U1", "N/A", None, "2021-01-01", None),
        ("U1", "test@test.com", None, "2022-01-01", None),
        ("U1", "nope", None, "2023-01-01", None),
        ("U2", "N/A", None, "2021-01-01", None),
        ("U2", "still nope", None, "2022-01-01", None),
    ]
    df = build_master(wh, attrs, crm)
    assert val(df, "U1", "email") == "a@x.com"
    assert val(df, "U2", "email") is None
    assert val(df, "U1", "raw_email") == "nope"
    assert val(df, "U2", "raw_email") == "still nope"


def test_a_valid_regexp_re2_lacks_excludes_values_with_javas_meaning(wh):
    # A lookahead (RE2 has none) next to a pattern RE2 evaluates: each goes its own way on DuckDB.
    attrs = [
        {
            "name": "email",
            "valid_regexp": "^(?!.*\\.\\.)[^@\\s]+@[^@\\s]+$",
            "source_columns": [{"table": "crm", "column": "email", "order": "last"}],
        },
        {
            "name": "tier",
            "valid_regexp": "^[a-z]+$",
            "source_columns": [{"table": "crm", "column": "tier", "order": "last"}],
        },
    ]
    crm = [
        ("U1", "a@x.com", "gold", "2020-01-01", None),
        ("U1", "a..b@x.com", "Gold", "2021-01-01", None),
        ("U2", "c..d@x.com", None, "2021-01-01", None),
    ]
    df = build_master(wh, attrs, crm)
    assert val(df, "U1", "email") == "a@x.com" and val(df, "U1", "tier") == "gold"
    assert val(df, "U2", "email") is None


def test_master_rules_frame_rows():
    unify = make_unify(
        [
            {
                "name": "email",
                "invalid_texts": ["N/A", "x"],
                "valid_regexp": ".+@.+",
                "source_columns": [{"table": "crm", "column": "email"}],
            },
            {"name": "tier", "source_columns": [{"table": "crm", "column": "tier"}]},
        ]
    )
    df = master_rules_frame(unify.master_tables[0])
    assert df.to_dict("records") == [
        # as evaluated: '.' written with Java's meaning (cdp_assets/sql/regex.py)
        {
            "position": 0,
            "attribute": "email",
            "kind": "valid_regexp",
            "value": pattern_for(".+@.+"),
            "re2_lacks": False,
        },
        {"position": 0, "attribute": "email", "kind": "invalid_text", "value": "N/A", "re2_lacks": False},
        {"position": 0, "attribute": "email", "kind": "invalid_text", "value": "x", "re2_lacks": False},
    ]
    assert pattern_for(".+@.+") != ".+@.+"


def test_one_row_per_lookup_id_and_null_without_values(wh):
    attrs = [
        {"name": "email", "source_columns": [{"table": "crm", "column": "email"}]},
        {"name": "tier", "source_columns": [{"table": "pos", "column": "tier"}]},
    ]
    crm = [
        ("U1", "a@x.com", None, "2024-01-01", None),
        ("U9", "orphan@x.com", None, "2024-01-01", None),  # not in the lookup: no row
        (None, "no-id@x.com", None, "2024-01-01", None),  # no canonical id: ignored
    ]
    pos = [("U2", None, "gold", "2024-01-01", None)]
    df = build_master(wh, attrs, crm, pos, lookup_ids=["U1", "U2", "U3", "U4"])
    assert list(df.index) == ["U1", "U2", "U3", "U4"]
    assert val(df, "U1", "email") == "a@x.com" and val(df, "U1", "tier") is None
    assert val(df, "U2", "email") is None and val(df, "U2", "tier") == "gold"
    for cid in ("U3", "U4"):
        assert val(df, cid, "email") is None and val(df, cid, "tier") is None
    assert list(df.columns) == ["email", "tier"]


def test_a_numeric_order_by_compares_as_numbers_not_text(wh):
    """TD's ``time`` is a Unix epoch bigint: 999 is older than 1000, though "999" > "1000" as text."""
    unify = make_unify(
        [
            {
                "name": "latest",
                "source_columns": [{"table": "crm", "column": "tier", "order": "last", "order_by": "time"}],
            },
            {
                "name": "oldest",
                "source_columns": [{"table": "crm", "column": "tier", "order": "first", "order_by": "time"}],
            },
        ]
    )
    master = unify.master_tables[0]
    crm = pd.DataFrame(
        {"unified_id": ["U1", "U1", "U1"], "tier": ["nine", "ten", "eleven"], "time": [999, 1000, 10]}
    ).astype({"unified_id": "string", "tier": "string", "time": "int64"})
    wh.write_dataframe(ENRICHED["crm"], crm)
    wh.write_dataframe(ENRICHED["pos"], crm.iloc[0:0])
    wh.write_dataframe(LOOKUP, pd.DataFrame({"unified_id": ["U1"], "id": ["v0"]}).astype("string"))
    wh.write_dataframe(RULES, master_rules_frame(master))
    out = TableRef(SCHEMA, master.name)
    sql = master_table_query(
        master, unify, LOOKUP, ENRICHED, RULES, DEFAULT_ORDER, picks_by_aggregate=PICKS["by_aggregate"]
    ).sql
    wh.build_table(out, sql)
    df = wh.fetch(f"SELECT * FROM {out.sql}").set_index("unified_id")
    assert val(df, "U1", "latest") == "ten"
    assert val(df, "U1", "oldest") == "eleven"


def test_an_incremental_build_reads_each_enriched_table_once_for_its_ids(wh):
    """With ``only_ids``, every attribute reads the ids' rows of a table from one read of it (the
    tables' CTEs), and the result equals the full build's rows of those ids."""
    attributes = [
        {"name": "email", "source_columns": [{"table": "crm", "column": "email"}, {"table": "pos", "column": "email"}]},
        {"name": "tier", "source_columns": [{"table": "pos", "column": "tier", "order": "first"}]},
        {"name": "tiers", "array_elements": 2, "source_columns": [{"table": "crm", "column": "tier"}]},
    ]
    unify = make_unify(attributes)
    master = unify.master_tables[0]
    crm = [("U1", "a@x", "gold", "2024-01-01", "2024-01-01"), ("U2", "b@x", "silver", "2024-01-02", "2024-01-02")]
    pos = [("U1", "c@x", "bronze", "2024-01-03", "2024-01-03"), ("U3", "d@x", "gold", "2024-01-04", "2024-01-04")]
    full = build_master(wh, attributes, crm, pos)
    ids = TableRef(SCHEMA, "only_ids")
    wh.write_dataframe(ids, pd.DataFrame({"unified_id": ["U1", "U3", "U9"]}).astype("string"))
    sql = master_table_query(
        master, unify, LOOKUP, ENRICHED, RULES, DEFAULT_ORDER, only_ids=ids, picks_by_aggregate=PICKS["by_aggregate"]
    ).sql
    for ref in ENRICHED.values():
        assert sql.count(ref.sql) == 1, ref.sql
    assert sql.count("AS MATERIALIZED") == 2
    picked = wh.fetch(f"SELECT * FROM ({sql}) AS m ORDER BY unified_id").set_index("unified_id")
    assert list(picked.index) == ["U1", "U3"]  # U9 has no lookup row: no master row
    pd.testing.assert_frame_equal(picked, full.loc[["U1", "U3"]], check_dtype=False)


# Rows of one enriched table: (unified_id, email, tier, updated_at); few values, so ties and repeats happen.
_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["U1", "U2", "U3", None]),
        st.sampled_from(["a@x", "b@x", "c@x", " ", None]),
        st.sampled_from(["gold", "silver", "bronze", None]),
        st.sampled_from(["2024-01-01", "2024-01-02", "2024-01-03", None]),
    ),
    max_size=8,
)
_SOURCE = st.tuples(st.integers(1, 2), st.sampled_from(["last", "first"]))


def _best_first(candidates: list[tuple]) -> list[str]:
    """The oracle of a master attribute's ranking (``master_table_query``'s ORDER BY): lowest
    priority, then the newest by order_by among order: last rows that have one, then the oldest
    among order: first rows that have one, then the value; each value at its best place.
    ``candidates``: (priority, order, updated_at text or None, value)."""

    def key(c):
        priority, order, at, value = c
        newest = (0, tuple(-ord(ch) for ch in at)) if order == "last" and at else (1,)
        oldest = (0, at) if order == "first" and at else (1,)
        return (priority, newest, oldest, value)

    ranked = []
    for c in sorted(candidates, key=key):
        if c[3] not in ranked:
            ranked.append(c[3])
    return ranked


def _cell(frame: pd.DataFrame, uid: str, column: str, array: bool):
    value = frame.loc[uid, column]
    if array:
        return None if value is None or (not hasattr(value, "__len__") and pd.isna(value)) else list(value)
    return None if pd.isna(value) else value


@settings(max_examples=60, deadline=None)
@given(crm=_ROWS, pos=_ROWS, email_crm=_SOURCE, email_pos=_SOURCE, tiers=st.integers(1, 3))
def test_the_master_equals_an_oracle_of_its_ranking(crm, pos, email_crm, email_pos, tiers):
    """Scalar and array attributes over two tables, any priorities and orders, ties, repeats and
    blank values, full and for some ids only, ranked by a window and picked by aggregates: equal
    to ranking the rows in Python."""
    attributes = [
        {
            "name": "email",
            "source_columns": [
                {"table": "crm", "column": "email", "priority": email_crm[0], "order": email_crm[1]},
                {"table": "pos", "column": "email", "priority": email_pos[0], "order": email_pos[1]},
            ],
        },
        {
            "name": "tiers",
            "array_elements": tiers,
            "source_columns": [
                {"table": "crm", "column": "tier", "priority": email_crm[0], "order": email_crm[1]},
                {"table": "pos", "column": "tier", "priority": email_pos[0], "order": email_pos[1]},
            ],
        },
    ]
    tables = {"crm": crm, "pos": pos}
    sources = {"crm": email_crm, "pos": email_pos}
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(path=str(Path(tmp) / "wh.duckdb"))
        with wh.session():
            rows = {t: [(u, e, tier, at, None) for u, e, tier, at in r] for t, r in tables.items()}
            unify = make_unify(attributes)
            ids = TableRef(SCHEMA, "only_ids")
            got = build_master(wh, attributes, rows["crm"], rows["pos"])  # the tables, and the window's full build
            wh.write_dataframe(ids, pd.DataFrame({"unified_id": ["U2", "U3"]}).astype("string"))
            built = []
            for by_aggregate in (False, True):
                master = unify.master_tables[0]
                full, some = (
                    master_table_query(
                        master,
                        unify,
                        LOOKUP,
                        ENRICHED,
                        RULES,
                        DEFAULT_ORDER,
                        only_ids=only,
                        picks_by_aggregate=by_aggregate,
                    ).sql
                    for only in (None, ids)
                )
                if by_aggregate:
                    got = wh.fetch(f"SELECT * FROM ({full}) AS m ORDER BY unified_id").set_index("unified_id")
                built.append((got, wh.fetch(f"SELECT * FROM ({some}) AS m ORDER BY unified_id")))
    for got, some in built:
        _check_against_the_oracle(got, some.set_index("unified_id"), tables, sources, tiers)


def _check_against_the_oracle(got, some, tables, sources, tiers):
    for column, field, n in (("email", 1, None), ("tiers", 2, tiers)):
        for uid in ("U1", "U2", "U3"):
            candidates = [
                (*sources[t], at, row[field])
                for t, r in tables.items()
                for row in r
                for at in [row[3] and f"{row[3]} 00:00:00"]
                if row[0] == uid and row[field] is not None and row[field].strip()
            ]
            ranked = _best_first(candidates)
            expected = (ranked[0] if ranked else None) if n is None else (ranked[:n] or None)
            assert _cell(got, uid, column, n is not None) == expected, (uid, column, candidates)
            if uid != "U1":  # the ids of the incremental form
                assert _cell(some, uid, column, n is not None) == expected, (uid, column, candidates)
