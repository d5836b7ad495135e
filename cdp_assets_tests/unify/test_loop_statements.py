"""The unification's statements cut without changing what it computes (docs/unification.md,
"Statements per run of the loop"), on real DuckDB: counts taken from the creates, the pointer and
relabel counts in one query, drops and rule tables in one call, the enrichment's totals read with
its states."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.engines.base import WarehouseError
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import incremental as inc
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.unification_pipeline import enrich_tables, enriched_ref, kept_round_ref
from cdp_assets.unify.runner import enrich_table, run_loop
from cdp_assets_tests.engines.recording import StepRecordingDuckDB
from cdp_assets_tests.unify.test_incremental_unification import FIXED_LOADS, load, project, run_phases
from cdp_assets_tests.unify.test_loop import chain_rows, prepare_rows, random_row, star_rows


class UncountedCreatesDuckDB(StepRecordingDuckDB):
    """DuckDB as an engine that does not answer a create's rows: every count is a query."""

    def create_scratch(self, ref: TableRef, select_sql: str, params: list | None = None) -> None:
        if params:
            self.fetch(self.dialect.create_scratch_sql(ref, select_sql), params)
        else:
            self.run(self.dialect.create_scratch_sql(ref, select_sql))
        return None


def _loop(wh: DuckDBWarehouse, rows: list[dict]):
    _, plan = prepare_rows(wh, rows)
    return plan, run_loop(wh, plan, keep_loop_tables=True)


shape = st.one_of(
    st.lists(random_row, min_size=1, max_size=30),
    st.builds(chain_rows, st.integers(2, 200), st.integers(0, 10_000)),
    st.builds(star_rows, st.integers(1, 20), st.integers(0, 3)),
)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(shape, min_size=1, max_size=2))
def test_round_statistics_equal_those_of_separate_count_queries_and_the_kept_labels(parts):
    """Each round's edges left, rows changed and jumps are those an engine counting every table
    with a query of its own reports; the rows changed are the nodes whose kept label moved."""
    rows = [r for part in parts for r in part]
    with tempfile.TemporaryDirectory() as d:
        answered = StepRecordingDuckDB(path=str(Path(d) / "a.duckdb"))
        counted = UncountedCreatesDuckDB(path=str(Path(d) / "b.duckdb"))
        with answered.session(), counted.session():
            plan, got = _loop(answered, rows)
            _, expected = _loop(counted, rows)
            strip = [(s.iteration, s.rows_changed, s.edges_left, s.jumps, s.converged) for s in got.iterations]
            assert strip == [
                (s.iteration, s.rows_changed, s.edges_left, s.jumps, s.converged) for s in expected.iterations
            ]
            assert (got.nodes, got.edges, got.converged) == (expected.nodes, expected.edges, expected.converged)
            # The kept labels of consecutive rounds (before the first: each node its own label):
            # the nodes whose label moved.
            before = None
            for s in got.iterations:
                after = answered.fetch(f"SELECT node, label FROM {kept_round_ref(plan, s.iteration).sql}")
                before = after.assign(label=after["node"]) if before is None else before
                moved = after.merge(before, on="node", suffixes=("", "_before"))
                assert int((moved["label"] != moved["label_before"]).sum()) == s.rows_changed
                before = after
            # Fewer calls: no count query of a scratch table, one query per compress test.
            scratch_count = 'SELECT COUNT(*) AS n FROM "temp"'
            assert not any(sql.startswith(scratch_count) for _, sql in answered._sent)
            assert any(sql.startswith(scratch_count) for _, sql in counted._sent)


def test_drop_tables_drops_several_in_one_call():
    wh = StepRecordingDuckDB(path=":memory:")
    with wh.session():
        refs = [TableRef("main", f"t{i}", "temp") for i in range(3)]
        for ref in refs:
            assert wh.create_scratch(ref, "SELECT * FROM range(4)") == 4
        wh._sent.clear()
        wh.drop_tables([*refs, TableRef("main", "never_made", "temp")])
        assert len(wh._sent) == 1
        assert wh.fetch("SELECT COUNT(*) AS n FROM duckdb_tables() WHERE temporary").iloc[0, 0] == 0


def test_replace_with_dataframes_publishes_all_or_none_in_one_call(tmp_path):
    wh = StepRecordingDuckDB(path=str(tmp_path / "w.duckdb"))
    a, b = TableRef("s", "a"), TableRef("s", "b")
    with wh.session():
        wh._sent.clear()
        assert wh.replace_with_dataframes([(a, pd.DataFrame({"x": [1, 2]})), (b, pd.DataFrame({"y": ["p"]}))]) == [2, 1]
        assert sum("_cdp_frame" in sql for _, sql in wh._sent) == 1
        wh.run('CREATE VIEW "s"."v" AS SELECT 1 AS z')
        # The second target is a view: the statement fails, and the first table keeps its rows.
        with pytest.raises(WarehouseError, match="v"):
            wh.replace_with_dataframes([(a, pd.DataFrame({"x": [7]})), (TableRef("s", "v"), pd.DataFrame({"z": [9]}))])
        assert list(wh.fetch('SELECT x FROM "s"."a" ORDER BY x')["x"]) == [1, 2]
        assert list(wh.fetch('SELECT z FROM "s"."v"')["z"]) == [1]
        # The connection is usable after the rollback.
        assert wh.replace_with_dataframes([(a, pd.DataFrame({"x": [5]})), (b, pd.DataFrame({"y": []}))]) == [1, 0]


def test_an_enrichment_writes_its_inputs_totals_read_with_its_states_and_describes_once(tmp_path):
    """The enriched states hold the staged tables' row counts and newest load times, measured in
    the query that read the states (a full build, then an incremental one): no totals or progress
    query of its own. In a run holding the engine, the first enrichment describes every
    enrichment's tables and the others send no description."""
    loaded = project(tmp_path)
    wh = StepRecordingDuckDB(path=":memory:")
    wh.setup_for_execution(None)  # a run holds the engine: descriptions are kept
    plans = u.build_id_plans(loaded)
    schema = loaded.unification.schema
    modes = []
    for n, (customers, orders) in enumerate(FIXED_LOADS[:2]):
        load(wh, n, "customers", customers)
        load(wh, n, "orders", orders)
        wh._sent.clear()
        builds = run_phases(wh, loaded, f"run-{n}")
        in_enrichment = [sql for step, sql in wh._sent if step and step.startswith("enriched_")]
        assert in_enrichment and not any("AS rows_total" in sql or "AS rows_new" in sql for sql in in_enrichment)
        for alias, table in enrich_tables(plans).items():
            modes.append(builds[alias].mode)
            state_ref = inc.state_ref(enriched_ref(schema, alias))
            state = wh.fetch(f"SELECT rows_through, watermark FROM {state_ref.sql} WHERE input_rank = 0")
            totals = wh.fetch(f"SELECT COUNT(*) AS n, MAX(_cdp_loaded_at) AS w FROM {table.ref.sql}")
            assert int(state.iloc[0]["rows_through"]) == int(totals.iloc[0]["n"]) > 0
            assert pd.Timestamp(state.iloc[0]["watermark"]) == pd.Timestamp(totals.iloc[0]["w"])
    assert "full" in modes and "incremental" in modes
    # Every enrichment again (nothing new): one description for all of them.
    wh._sent.clear()
    for alias in enrich_tables(plans):
        enrich_table(wh, loaded, plans, alias)
    assert sum("information_schema.columns" in sql for _, sql in wh._sent) == 1
