"""Explaining a merge on a real pipeline run."""

from __future__ import annotations

import pytest

from cdp_assets.cli import main
from cdp_assets.unify.explain import ExplainError, Identifier, component_rows, explain, shortest_chain
from cdp_assets.sql import unification as u
from cdp_assets_tests.conftest import warehouse_for


def test_explain_prints_the_chain_of_rows_linking_two_identifiers(sample_run, capsys):
    project = sample_run.loaded
    wh = warehouse_for(project)
    plan = u.build_id_plans(project)[0]
    with wh.session():
        biggest = wh.fetch(
            f'SELECT "{plan.name}" AS cid, COUNT(*) AS n FROM '
            f'{plan.ref("lookup").sql} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1'
        ).iloc[0]
        assert biggest["n"] >= 3
        rows = component_rows(wh, plan, biggest["cid"])
    idents = sorted({i for _, _, ids in rows for i in ids}, key=str)
    start, goal = idents[0], idents[-1]
    chain = shortest_chain(rows, start, goal)
    assert chain[0] == start and chain[-1] == goal
    # every row in the chain holds the identifiers on both sides of it
    for left, row, right in zip(chain[0::2], chain[1::2], chain[2::2]):
        assert left in row[2] and right in row[2]

    text = explain(wh, project, [str(start), str(goal)])
    assert f"why {start} and {goal} share it ({len(chain) // 2} link(s))" in text
    assert text.count(" row {") == len(chain) // 2

    assert main(["explain", "--config", str(project.config_path), "--canonical-id", biggest["cid"]]) == 0
    out = capsys.readouterr().out
    assert f"{int(biggest['n'])} identifier(s)" in out


def test_explain_names_unknown_identifiers(sample_run):
    project = sample_run.loaded
    with pytest.raises(ExplainError, match="is not in cdp_unification_customer_360.unified_id_lookup"):
        explain(warehouse_for(project), project, ["email:nobody@example.invalid"])
    assert str(Identifier("email", "a@b.c")) == "email:a@b.c"
