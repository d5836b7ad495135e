"""The loop's rule tables ({cid}_keys, {cid}_invalid_texts, {cid}_tables), loaded by
``prepare_inputs``: written when the config changed, kept (one query) when they hold its rules
already, and never left claiming a config whose rules a stopped run did not finish writing."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import PrivateAttr

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.sql import unification as u
from cdp_assets.unify.runner import RULE_TABLES, config_fingerprint, prepare_inputs
from cdp_assets_tests.engines.recording import RecordingDuckDB
from cdp_assets_tests.unify.test_loop import make_unify, one_table_plan


def _unify(invalid_texts: tuple[str, ...]):
    return make_unify(email_invalid_texts=invalid_texts)


def _frames(unify: UnifyConfig) -> list[pd.DataFrame]:
    plan = one_table_plan(unify)
    return [
        u.keys_frame(plan, unify),
        u.invalid_texts_frame(plan, unify),
        u.tables_frame(plan, config_fingerprint(plan, unify)),
    ]


def _held(wh, unify: UnifyConfig) -> list[list[tuple]]:
    """Each rule table's rows, sorted, as the frames give them."""
    plan = one_table_plan(unify)
    out = []
    for suffix, frame in zip(RULE_TABLES, _frames(unify)):
        rows = wh.fetch(f"SELECT {', '.join(frame.columns)} FROM {plan.ref(suffix).sql}")
        out.append(_rows(rows))
    return out


def _rows(df: pd.DataFrame) -> list[tuple]:
    return sorted(tuple("" if pd.isna(v) else str(v) for v in row) for row in df.itertuples(index=False))


def _expected(unify: UnifyConfig) -> list[list[tuple]]:
    return [_rows(frame) for frame in _frames(unify)]


class OneByOneDuckDB(RecordingDuckDB):
    """DuckDB publishing several frames one by one, in order, as the base engine does (Treasure
    Data, Databricks): no transaction around them. ``stop_at``: the rule table whose publish
    fails, as a run stopped there."""

    _stop_at: str | None = PrivateAttr(default=None)

    @property
    def replaces_frames_together(self) -> bool:
        return False

    def replace_with_dataframes(self, frames):
        return [self.replace_with_dataframe(ref, df) for ref, df in frames]

    def replace_with_dataframe(self, final, df):
        if self._stop_at is not None and final.name.endswith(self._stop_at):
            raise RuntimeError(f"stopped before {final.display} was published")
        return super().replace_with_dataframe(final, df)


@pytest.mark.parametrize("engine", [RecordingDuckDB, OneByOneDuckDB])
def test_rule_tables_are_written_when_the_config_changes_and_read_once_when_it_did_not(tmp_path, engine):
    wh = engine(path=str(tmp_path / "c.duckdb"))
    first, second = _unify(("N/A",)), _unify(("N/A", "unknown"))
    wh.setup_for_execution(None)  # a run: what it learns of the catalog is kept
    try:
        written = prepare_inputs(wh, one_table_plan(first), first)
        assert written == {s: len(f) for s, f in zip(RULE_TABLES, _frames(first))}
        assert _held(wh, first) == _expected(first)
        wh.take()
        # The same config: one query reads the counts and the fingerprint (after the look-up of
        # the tables, which the loop's incremental check then reads); nothing is written.
        assert prepare_inputs(wh, one_table_plan(first), first) == written
        sent = wh.take()
        assert [s for s in sent if "information_schema" not in s] == [
            u.rule_tables_written_sql(*(one_table_plan(first).ref(s) for s in RULE_TABLES))
        ], sent
        assert _held(wh, first) == _expected(first)
        # Another config: written again.
        changed = prepare_inputs(wh, one_table_plan(second), second)
        assert changed["invalid_texts"] == 2
        assert any("CREATE OR REPLACE" in s or "CREATE TABLE" in s for s in wh.take())
        assert _held(wh, second) == _expected(second)
    finally:
        wh.teardown_after_execution(None)


def test_a_run_stopped_between_the_rule_tables_leaves_the_next_run_to_write_them_all(tmp_path):
    """Published one by one, a run of a new config stopped before ``{cid}_tables`` (the table
    that says which config the rules are of) must not leave the old one claiming the others: the
    next run, back on the old config, finds its rules written by the stopped run and rewrites them."""
    wh = OneByOneDuckDB(path=str(tmp_path / "c.duckdb"))
    old, new = _unify(("N/A",)), _unify(("N/A", "unknown"))
    prepare_inputs(wh, one_table_plan(old), old)
    wh._stop_at = "_tables"
    with pytest.raises(RuntimeError, match="stopped before"):
        prepare_inputs(wh, one_table_plan(new), new)
    # {cid}_tables is gone: nothing claims that what the stopped run left is the old config's.
    assert not wh.table_exists(one_table_plan(old).ref("tables"))
    wh._stop_at = None
    prepare_inputs(wh, one_table_plan(old), old)
    assert _held(wh, old) == _expected(old)
