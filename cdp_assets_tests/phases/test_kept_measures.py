"""The checks' measures a hist-union or staging table keeps with its state equal a full
measurement of the same table after every run (cdp_assets/incremental.py ``Measures``).

A full build takes them in the statement that writes its state; an incremental build adds the
measures of the rows it adds and subtracts those of the rows it removes. The oracle is the full
query the checks ran before (``rule_counts_sql``, ``hist_union_measures_sql``) run on the table
as it stands. Sequences of loads mix new keys, updated keys (late files included), rows without
a primary key value, values the rules cannot parse, duplicate keys within a file and historical
reloads, on real in-memory DuckDB; with and without a dedupe.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.assets.staging import rule_count_measures
from cdp_assets.config.models import DedupeOptions
from cdp_assets.incremental import Dedupe, build_hist_union, build_staging
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.checks import hist_union_measure_names, hist_union_measures_sql
from cdp_assets.sql.staging import dedupe_sql, rule_counts_sql, staged_columns, staging_sql
from cdp_assets_tests.phases.test_incremental import (
    HU,
    RULES,
    STAGED,
    apply_load,
    inputs,
    memory_warehouse,
)

STAGED_COLUMNS = staged_columns(RULES)
MEASURES = rule_count_measures(STAGED_COLUMNS)
DEDUPE = DedupeOptions(partition_by=["standardized_email"])


def render(ref, columns):
    return staging_sql(ref, columns, RULES)


def deduped_render(ref, columns):
    return staging_sql(ref, columns, RULES, DEDUPE, "updated_at")


DEDUPE_STEPS = Dedupe(
    stage=render,
    rank=lambda rows, source_columns, columns: dedupe_sql(
        rows, HU.display, source_columns, columns, DEDUPE, "updated_at"
    ),
    partition_by=list(DEDUPE.partition_by),
)


def full_rule_counts(wh) -> pd.Series:
    return wh.fetch(rule_counts_sql(STAGED, STAGED_COLUMNS)).iloc[0][list(MEASURES.names)].astype("int64")


def full_hist_union_measures(wh, primary_key) -> pd.Series:
    ins = [(ref, list(primary_key)) for ref, _ in inputs(wh)]
    names = hist_union_measure_names(len(ins))
    return wh.fetch(hist_union_measures_sql(HU, list(primary_key), ins)).iloc[0][names].astype("int64")


def as_ints(series: pd.Series) -> dict:
    return {k: int(v) for k, v in series.items()}


def run(wh, primary_key, deduped: bool, full_refresh: bool = False):
    """One run of both builds; each one's kept measures checked against a full measurement."""
    hu = build_hist_union(wh, HU, inputs(wh), "updated_at", primary_key, full_refresh, keep_measures=True)
    if primary_key:
        truth = full_hist_union_measures(wh, primary_key)
        if hu.kept_read_sql is not None:  # a full build: read back from the state it wrote
            got = wh.fetch(hu.kept_read_sql).iloc[0][list(truth.index)]
            assert hu.mode == "full"
        else:
            got = hu.measures
        assert got is not None, hu
        assert as_ints(got) == as_ints(truth), (hu.mode, hu.measured_by)
    stg = build_staging(
        wh,
        STAGED,
        HU,
        wh.columns(HU),
        deduped_render if deduped else render,
        primary_key,
        full_refresh=full_refresh,
        measures=MEASURES,
        dedupe=DEDUPE_STEPS if deduped else None,
    )
    assert stg.measures is not None, stg
    assert as_ints(stg.measures) == as_ints(full_rule_counts(wh)), (stg.mode, stg.measured_by)
    return hu, stg


ROW = st.tuples(
    st.sampled_from(["C1", "C2", "C3", "C4", "C5", None]),
    st.sampled_from(["a@x.com", "B@Y.ORG", "not-an-email", "a@x.com ", None, ""]),
    st.sampled_from(["  ann  lee", "BOB", "123", None]),
    st.integers(0, 6),
)
# Duplicate keys within a file are allowed here (different timestamps: the newest wins).
FILE = st.lists(ROW, min_size=0, max_size=6, unique_by=lambda r: (r[0], r[3]) if r[0] is not None else object())
LOAD = st.tuples(st.sampled_from(["incremental", "incremental", "incremental", "historical"]), FILE)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=FILE,
    second=FILE,
    loads=st.lists(LOAD, min_size=1, max_size=4),
    with_key=st.booleans(),
    deduped=st.booleans(),
)
def test_kept_measures_equal_a_full_measurement_after_every_run(first, second, loads, with_key, deduped):
    primary_key = ["customer_id"] if with_key else []
    wh = memory_warehouse()
    try:
        apply_load(wh, 0, "historical", first)
        apply_load(wh, 1, "incremental", second)
        hu, stg = run(wh, primary_key, deduped)
        assert (hu.mode, stg.mode, stg.measured_by) == ("full", "full", "full scan")
        for n, (kind, rows) in enumerate(loads, start=2):
            apply_load(wh, n, kind, rows)
            hu, stg = run(wh, primary_key, deduped)
            if stg.mode == "incremental":
                # Kept since the full build: never measured in full again.
                assert stg.measured_by == "change"
            if primary_key and hu.mode == "incremental":
                assert hu.measured_by == "change"
    finally:
        wh.teardown_after_execution(None)


def test_an_update_that_fixes_a_value_subtracts_the_old_rows_counts():
    """An updated key's old row (unparseable) leaves, its new row (parsed) arrives: with the
    removed rows' counts not subtracted the unparseable count would stay 1."""
    wh = memory_warehouse()
    try:
        apply_load(wh, 0, "historical", [("C1", "not-an-email", "ann", 1), ("C2", "b@y.org", "bob", 1)])
        apply_load(wh, 1, "incremental", [("C3", "c@x.com", "cy", 1)])
        run(wh, ["customer_id"], deduped=False)
        apply_load(wh, 2, "incremental", [("C1", "fixed@x.com", "ann", 5)])
        hu, stg = run(wh, ["customer_id"], deduped=False)
        assert (stg.mode, stg.measured_by) == ("incremental", "change")
        assert stg.measures["standardized_email__unparseable"] == 0
        assert stg.measures["standardized_email__parsed"] == 3
        assert (hu.mode, hu.measured_by) == ("incremental", "change")
        # C1 was in the historical input already; the incremental one gains it: 2 distinct keys.
        assert as_ints(hu.measures) == {"duplicate_keys": 0, "input_0": 2, "input_1": 2}
        kept = wh.fetch(f"SELECT * FROM {inc.state_ref(STAGED).sql}")
        assert [c for c in kept.columns if c.startswith(inc.KEPT_PREFIX)] == MEASURES.kept_columns
        # Nothing new: the kept counts, no query of the table.
        _, stg = run(wh, ["customer_id"], deduped=False)
        assert (stg.mode, stg.measured_by) == ("unchanged", "kept")
        # A full refresh measures everything in full.
        hu, stg = run(wh, ["customer_id"], deduped=False, full_refresh=True)
        assert (hu.mode, stg.mode, stg.measured_by) == ("full", "full", "full scan")
    finally:
        wh.teardown_after_execution(None)


@pytest.mark.parametrize("deduped", [False, True])
def test_a_run_killed_between_the_table_and_its_state_is_measured_in_full_next(deduped):
    """The kept measures are written with the state, last. A run killed after it changed the
    table and before its state leaves the old measures beside a changed table: the next run
    finds rows loaded after the state's watermark in the table, measures it in full and keeps
    that."""
    wh = memory_warehouse()
    pk = ["customer_id"]
    try:
        apply_load(wh, 0, "historical", [("C1", "not-an-email", "ann", 1), ("C2", "b@y.org", "bob", 1)])
        apply_load(wh, 1, "incremental", [("C3", "c@x.com", "cy", 1)])
        run(wh, pk, deduped)
        apply_load(wh, 2, "incremental", [("C1", "fixed@x.com", "ann", 5), ("C4", "bad", "dee", 5)])
        real = wh.replace_with_dataframe

        def killed(ref, df):
            if ref.name.endswith(inc.STATE_SUFFIX):
                raise KeyboardInterrupt("killed before the state")
            return real(ref, df)

        object.__setattr__(wh, "replace_with_dataframe", killed)
        with pytest.raises(KeyboardInterrupt):
            build_hist_union(wh, HU, inputs(wh), "updated_at", pk, keep_measures=True)
        with pytest.raises(KeyboardInterrupt):
            build_staging(
                wh,
                STAGED,
                HU,
                wh.columns(HU),
                deduped_render if deduped else render,
                pk,
                measures=MEASURES,
                dedupe=DEDUPE_STEPS if deduped else None,
            )
        object.__setattr__(wh, "replace_with_dataframe", real)
        hu, stg = run(wh, pk, deduped)  # equal to a full measurement (checked in ``run``)
        assert (hu.mode, hu.measured_by) == ("incremental", "full scan")
        assert (stg.mode, stg.measured_by) == ("incremental", "full scan")
        apply_load(wh, 3, "incremental", [("C2", "not-an-email", "bob", 7)])
        hu, stg = run(wh, pk, deduped)
        assert (hu.measured_by, stg.measured_by) == ("change", "change")
    finally:
        wh.teardown_after_execution(None)
