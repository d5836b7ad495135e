"""An ingestion step's checks measure the log's history and the outstanding rejections from what
the step read before its loads plus what its loads wrote (checks/ingestion.py ``step_start``,
``measures_after_step``), not from a query after them. Proven against that query
(``object_measures``, run on the database after each run) over a sequence of runs that log loads,
reject rows, supersede them with a corrected file and skip rows: every check's
verdict and measure are the same."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

from cdp_assets.assets.keys import ingestion_refs, table_key
from cdp_assets.checks.ingestion import object_measures, raw_table_results
from cdp_assets.config import load_config
from cdp_assets.connectors.loading import LOG_TABLE, rejected_ref
from cdp_assets.definitions import build_definitions
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import warehouse_for, write_project


def _run_ingestion(loaded):
    defs = build_definitions(loaded)
    job = define_asset_job("ingest", AssetSelection.groups("ingestion"))
    defs = Definitions.merge(defs, Definitions(jobs=[job]))
    result = defs.resolve_job_def("ingest").execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    return {
        (e.event_specific_data.asset_key, e.event_specific_data.check_name): e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _queried(loaded) -> dict:
    """Every raw table's check results as a query of the database measures them now."""
    wh = warehouse_for(loaded)
    schema = loaded.pipeline.src_schema
    out = {}
    with wh.session():
        for source, obj in loaded.pipeline.source_objects():
            refs = ingestion_refs(loaded, source, obj)
            log, rejected = TableRef(schema, LOG_TABLE), rejected_ref(next(iter(refs.values())))
            have = wh.describe_tables([*refs.values(), log, rejected])
            tables = {m: (ref, wh.row_count(ref) if have[ref] is not None else None) for m, ref in refs.items()}
            measured = object_measures(wh, tables, have, log, rejected, source.name, obj.name)
            for mode, ref in refs.items():
                for name, r in raw_table_results(wh, measured[mode], mode, loaded.pipeline.checks).items():
                    out[(table_key(ref), name)] = r
    return out


def _same(run: dict, queried: dict) -> None:
    run = {key: e for key, e in run.items() if key[1] not in ("freshness_check", "column_schema_change")}
    assert run and set(run) == set(queried)
    for key, evaluation in run.items():
        want = queried[key]
        got_measured = evaluation.metadata.get("measured")
        want_measured = want.metadata.get("measured")
        assert evaluation.passed == want.passed, key
        assert getattr(got_measured, "value", None) == getattr(want_measured, "value", None), key


def test_the_checks_measured_from_the_step_start_equal_a_query_after_the_loads(tmp_path: Path):
    loaded = load_config(write_project(tmp_path, records=60))
    folder = loaded.source_paths["shop"] / "customers"
    first = _run_ingestion(loaded)
    # The first run: no bookkeeping before it, so nothing was read at its start.
    _same(first, _queried(loaded))
    # A new file with a row of too many fields: rejected, outstanding (a warning).
    header, *rows = (folder / "customers_2024-06-02.csv").read_text().splitlines()
    bad = folder / "customers_2024-06-03.csv"
    good_row = rows[0].replace("2023", "2024", 1)
    bad.write_text("\n".join([header, good_row, rows[1] + ",extra"]) + "\n")
    second = _run_ingestion(loaded)
    assert not second[(table_key(TableRef("acme_src", "shop_customers")), "no_rejected_rows")].passed
    _same(second, _queried(loaded))
    # The same file corrected: a new version supersedes its rejection; an exact copy is skipped.
    bad.write_text("\n".join([header, good_row, rows[1]]) + "\n")
    third = _run_ingestion(loaded)
    assert third[(table_key(TableRef("acme_src", "shop_customers")), "no_rejected_rows")].passed
    assert not third[(table_key(TableRef("acme_src", "shop_customers")), "no_skipped_rows")].passed
    _same(third, _queried(loaded))
    # A run with nothing new: every load logs again, the history grows.
    _same(_run_ingestion(loaded), _queried(loaded))
