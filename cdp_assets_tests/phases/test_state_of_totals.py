"""A full build's state written by the statement that measures it (``inc.state_of_totals_sql``,
every full hist-union and staging build with load times) holds what the DataFrame path writes,
on real DuckDB: the same columns, types and values but the build's own generation and time; a
staged table's state reads its upstream's generation in that statement."""

from __future__ import annotations

import pandas as pd

from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.incremental import _state_row, _totals, _write_state, _write_state_of_totals
from cdp_assets.sql import incremental as inc
from cdp_assets.sql.dialects import TableRef

SRC = "acme_src"
HIST, INCR = TableRef(SRC, "c_hist"), TableRef(SRC, "c")


def test_the_measured_state_equals_the_dataframe_state(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    measured, framed = TableRef(SRC, "measured"), TableRef(SRC, "framed")
    with wh.session():
        for ref, n, at in ((HIST, 3, "2024-06-01 10:00:00.123456"), (INCR, 2, "2024-06-02")):
            select = "SELECT CAST(range AS VARCHAR) AS id, CAST(? AS TIMESTAMP) AS _cdp_loaded_at FROM range(?)"
            assert wh.build_table(ref, select, [at, n]) == n  # values bound in a build
        _write_state_of_totals(wh, measured, [HIST, INCR], "fp")
        totals = _totals(wh, [(HIST, ["id", inc.LOADED_AT]), (INCR, ["id", inc.LOADED_AT])])
        state = [
            _state_row(rank, ref, t, w, "g", None, "fp", "full")
            for rank, (ref, (t, w)) in enumerate(zip([HIST, INCR], totals))
        ]
        _write_state(wh, framed, state)
        types = wh.describe_tables([inc.state_ref(measured), inc.state_ref(framed)])
        rows = [
            wh.fetch(f"SELECT * EXCLUDE (generation, updated_at) FROM {inc.state_ref(t).sql} ORDER BY input_rank")
            for t in (measured, framed)
        ]
        generation = wh.fetch(f"SELECT DISTINCT generation, updated_at FROM {inc.state_ref(measured).sql}")
    assert dict(types[inc.state_ref(measured)]) == dict(types[inc.state_ref(framed)])
    pd.testing.assert_frame_equal(rows[0], rows[1], check_like=True)
    assert rows[0]["rows_through"].tolist() == [3, 2] and rows[0]["input_table"].tolist() == [
        "acme_src.c_hist",
        "acme_src.c",
    ]
    assert str(rows[0]["watermark"].iloc[0]) == "2024-06-01 10:00:00.123456"
    assert len(generation) == 1 and len(generation["generation"].iloc[0]) == 32  # one new generation for the build


def test_a_staged_state_records_the_generation_its_upstream_state_holds(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    union, staged, orphan = TableRef(SRC, "u"), TableRef(SRC, "s"), TableRef(SRC, "o")
    with wh.session():
        for ref, n in ((HIST, 3), (INCR, 2)):
            wh.build_table(
                ref, "SELECT CAST(range AS VARCHAR) AS id, TIMESTAMP '2024-06-01' AS _cdp_loaded_at FROM range(?)", [n]
            )
        _write_state_of_totals(wh, union, [HIST, INCR], "fp")
        wh.build_table(union, f"SELECT * FROM {HIST.sql} UNION ALL SELECT * FROM {INCR.sql}")
        _write_state_of_totals(wh, staged, [union], "fp2", inc.state_ref(union))
        _write_state_of_totals(wh, orphan, [union], "fp2")
        generation = wh.fetch(f"SELECT DISTINCT generation FROM {inc.state_ref(union).sql}")["generation"].tolist()
        state = wh.fetch(f"SELECT * FROM {inc.state_ref(staged).sql}")
        without = wh.fetch(f"SELECT upstream_generation FROM {inc.state_ref(orphan).sql}")
    assert len(generation) == 1
    assert state["upstream_generation"].tolist() == generation and state["rows_through"].tolist() == [5]
    assert state["generation"].iloc[0] != generation[0]  # its own build's, not the upstream's
    assert without["upstream_generation"].isna().all()
