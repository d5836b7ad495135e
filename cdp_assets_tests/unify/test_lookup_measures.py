"""A lookup's check measure kept from build to build (incremental.publish_lookup, on DuckDB).

An incremental lookup replaces the rows of its affected key values only; its ids with several
canonical ids are then counted from that change (before and after, over those key values) and
added to the count kept with the previous build, in the apply's own transaction. The oracle is a
count over the whole lookup (``sql.checks.lookup_measures_sql``), the query the check ran on
every row before. Corrupt rows (a key value with two canonical ids) make the count move.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.incremental import publish_lookup
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.checks import lookup_measures_sql
from cdp_assets.sql.dialects import TableRef

LOOKUP = TableRef("cdp_unification", "unified_id_lookup")
ROWS = TableRef("src", "lookup_rows")  # the lookup a run builds (its SELECT reads this table)
AFFECTED = TableRef("src", "affected")
CID = "unified_id"


def _rows(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Lookup rows: (key value, canonical id), every value an email."""
    return pd.DataFrame(
        {
            CID: [c for _, c in pairs],
            "id": [v for v, _ in pairs],
            "id_key_type": [1] * len(pairs),
            "id_key_name": ["email"] * len(pairs),
            "id_first_seen_at": pd.to_datetime(["2024-01-01"] * len(pairs)),
            "id_last_seen_at": pd.to_datetime(["2024-01-01"] * len(pairs)),
            "id_source_table_ids": [[1]] * len(pairs),
        }
    )


def _publish(wh, pairs, affected_values=None):
    """Publish ``pairs`` as the run's lookup: in full, or (``affected_values``) replacing the rows
    of those key values only with their rows among ``pairs``."""
    wh.drop(ROWS)
    wh.write_dataframe(ROWS, _rows(pairs))
    select = f"SELECT * FROM {ROWS.sql}"
    affected = None
    if affected_values is not None:
        wh.drop(AFFECTED)
        wh.write_dataframe(AFFECTED, pd.DataFrame({"id_key_type": [1] * len(affected_values), "id": affected_values}))
        rows_sql = f"SELECT r.* FROM {ROWS.sql} AS r WHERE r.id IN (SELECT a.id FROM {AFFECTED.sql} AS a)"
        affected = (AFFECTED, rows_sql)
    return publish_lookup(wh, LOOKUP, select, CID, affected=affected, keep_measures=True)


def _counted(wh) -> tuple[int, int, int]:
    """(rows, ids with several canonical ids, distinct canonical ids) counted over every row."""
    row = wh.fetch(lookup_measures_sql(LOOKUP, CID)).iloc[0]
    ids = wh.fetch(f"SELECT COUNT(DISTINCT {CID}) AS n FROM {LOOKUP.sql}").iloc[0]["n"]
    return int(row["table_rows"]), int(row["ids_with_many"]), int(ids)


def _kept(build) -> tuple[int, int, int]:
    return tuple(int(build.measures[k]) for k in ("table_rows", "ids_with_many", "canonical_ids"))


def test_the_kept_count_follows_each_change_and_equals_a_count_of_every_row():
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        first = _publish(wh, [("a", "A"), ("b", "A"), ("c", "C")])
        assert first.mode == "full"  # counted over every row
        assert _kept(first) == _counted(wh) == (3, 0, 2)

        # A change gives "b" two canonical ids: the count kept (0) loses its before (0) and gains
        # its after (1); canonical id B appears.
        second = _publish(wh, [("a", "A"), ("b", "A"), ("b", "B"), ("c", "C")], affected_values=["b"])
        assert second.mode == "incremental"
        assert _kept(second) == _counted(wh) == (4, 1, 3)

        # "b" is rebuilt with one id: 1 - 1 + 0; B vanishes, A stays (held by "a", not replaced).
        third = _publish(wh, [("a", "A"), ("b", "A"), ("c", "C")], affected_values=["b"])
        assert _kept(third) == _counted(wh) == (3, 0, 2)

        # A new value with two ids comes ("e"), and a value goes ("a"): A is still held by "b".
        fourth = _publish(wh, [("b", "A"), ("c", "C"), ("e", "E"), ("e", "F")], affected_values=["a", "e"])
        assert _kept(fourth) == _counted(wh) == (4, 1, 4)

        # "b" moves to C: A's last row goes.
        fifth = _publish(wh, [("b", "C"), ("c", "C"), ("e", "E"), ("e", "F")], affected_values=["b"])
        assert _kept(fifth) == _counted(wh) == (4, 1, 3)
        assert wh.table_exists(inc.measures_ref(LOOKUP))


def test_a_full_build_between_makes_the_next_change_count_every_row_again():
    """The kept count belongs to the build that wrote it (its ``seq``): after a full build (or a
    build killed after its commit, before its state) it is not the previous build's, and the next
    incremental build counts the whole lookup instead of adding a change to a stale count."""
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        _publish(wh, [("a", "A"), ("b", "B")])
        _publish(wh, [("a", "A"), ("b", "B")], affected_values=["b"])  # kept: 0, for this build
        # A corrupt row written outside the pipeline, with a state of a later build.
        wh.run(f"INSERT INTO {LOOKUP.sql} SELECT * REPLACE ('Z' AS {CID}) FROM {LOOKUP.sql} WHERE id = 'a'")
        # A state written as a later build's (what a full refresh writes) leaves the kept count behind.
        state = wh.fetch(f"SELECT * FROM {inc.state_ref(LOOKUP).sql}")
        state["seq"] = state["seq"] + 1
        wh.replace_with_dataframe(inc.state_ref(LOOKUP), state)
        after = _publish(wh, [("a", "A"), ("b", "B")], affected_values=["b"])
        assert _kept(after) == _counted(wh) == (3, 1, 3)


VALUES = ["a", "b", "c", "d", "e"]
# A lookup: each key value with no row, one or (corrupt) two canonical ids, drawn from a few.
lookups = st.lists(
    st.fixed_dictionaries(
        {v: st.lists(st.sampled_from(["A", "B", "C", "D"]), max_size=2, unique=True) for v in VALUES}
    ),
    min_size=2,
    max_size=3,
)
ANCHOR = [("z", "Z")]  # a row no build replaces: the lookup is never empty


@settings(max_examples=25, deadline=None)
@given(
    builds=lookups,
    replaced=st.lists(st.lists(st.sampled_from(VALUES), min_size=1, unique=True), min_size=3, max_size=3),
)
def test_the_counts_from_the_change_log_equal_a_count_of_every_row(builds, replaced):
    """Random builds, each replacing a random set of key values (some keep their rows and ids,
    some change, some gain or lose a second id): the measures counted from the change's log
    equal a count over every row after each build. A replaced value whose id does not change is
    left out of the log and counts in neither before nor after."""
    wh = DuckDBWarehouse(path=":memory:")
    with wh.session():
        current: dict[str, list[str]] = builds[0]
        _publish(wh, ANCHOR + [(v, c) for v, ids in current.items() for c in ids])
        for build, values in zip(builds[1:], replaced, strict=False):
            # The run's lookup: the replaced values' rows as drawn, every other value's as they were.
            current = {v: (build[v] if v in values else current[v]) for v in VALUES}
            pairs = ANCHOR + [(v, c) for v, ids in current.items() for c in ids]
            result = _publish(wh, pairs, affected_values=values)
            assert result.mode == "incremental"
            assert _kept(result) == _counted(wh)
