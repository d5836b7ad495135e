"""The Treasure Data engine: real pytd and tdclient calls against the fake of TD's REST API on
loopback (cdp_assets_tests/fakes/td_api.py), the one boundary these tests fake.

Covered: a query and its typed result with job ids and console links, a bulk import of a
DataFrame, a failed job whose TD message reaches the step failure of a real materialization,
a transient HTTP 5xx that is retried, a bad API key that fails fast, a job over its time
limit killed, and the whole pipeline on the fake with every asset check passing and every
table equal to DuckDB's."""

from __future__ import annotations

import itertools
import logging
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import MaterializeResult, asset, materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.assets.metadata import engine_jobs_metadata
from cdp_assets.config import load_config
from cdp_assets.connectors.loading import LOG_TABLE
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.base import StatementTimeoutError, TransientWarehouseError, WarehouseAuthError, WarehouseError
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.engines.treasure_data import TreasureDataWarehouse, bind_literals
from cdp_assets.sql.dialects import TableRef, timestamp_as_stored_text
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.incremental import BOOKKEEPING_SUFFIXES, IN_PLACE_ONLY_SUFFIXES
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project
from cdp_assets_tests.engines.test_cross_engine_pipeline import VOLATILE, VOLATILE_TABLES
from cdp_assets_tests.engines.test_spark_unification import normalized
from cdp_assets_tests.fakes.td_api import FakeTreasureData
from cdp_assets_tests.nightly_files import write_nightly_files

KEY = "4321/" + "9f3c" * 10
# Jobs per run of the sample's shape: issue 12's target, and what this branch reached (149 before:
# row counts from TD's table listing, measures taken from the builds; docs/benchmarks.md).
TARGET_TD_JOBS = 80
# Reached 100 with the checks in their assets' steps and the loop's and enrichment's counts from their
# builds (docs/benchmarks.md, "Statements per run"; the loop and the enrichment: docs/unification.md);
# 98 with the graph's check and the report reading its build's last round instead of the loop statistics;
# then 94: staging's first build reads no state and writes it as one CREATE TABLE AS of its totals;
# then 87: so do the enriched and master tables' first builds, the loop's watermarks are written by the
# query that finds them, and an empty excluded-values table is counted from the table listing.
# Then 81: the enrichments' coverage query also measures the largest-share check's measures and the
# report's profile, and an ingestion step reads its log history and rejections with its file versions
# before its loads (none for the first object) instead of a checks query after them.
# Then 80 (the target): the loop's rounds start from its nodes table, each node its own label, instead
# of a copy of it (`Step.alias`).
CEILING_TD_JOBS = 80


@pytest.fixture
def td():
    fake = FakeTreasureData(KEY)
    url = fake.start()
    fake.url = url
    yield fake
    fake.stop()


def engine(td, **kw) -> TreasureDataWarehouse:
    kw = {
        "apikey": KEY,
        "endpoint": td.url,
        "database": "cdp_src",
        "job_poll_seconds": 0.01,
        "retry_backoff_seconds": 0.01,
        **kw,
    }
    return TreasureDataWarehouse(**kw)


def td_project(tmp_path, td, records=60, generate=True, **treasure_data) -> Path:
    """``write_project``'s sample project on the fake: its endpoint, no wait between polls."""
    settings = {"endpoint": td.url, "poll_seconds": 0.01, **treasure_data}
    return write_project(
        tmp_path,
        records=records,
        generate=generate,
        mutate=lambda c: c.update(engine={"kind": "treasure_data", "treasure_data": settings}),
    )


def test_a_query_returns_typed_rows_and_each_job_id_with_its_console_link(td):
    wh = engine(td, console_url="https://console.treasuredata.com")
    df = wh.fetch("SELECT 7 AS n, 2.5 AS x, 'a''b' AS s, TIMESTAMP '2024-05-06 07:08:09' AS ts, NULL AS nothing")
    assert df.to_dict("records") == [
        {"n": 7, "x": 2.5, "s": "a'b", "ts": pd.Timestamp("2024-05-06 07:08:09"), "nothing": None}
    ]
    assert str(df["ts"].dtype) == "datetime64[ns]" and str(df["n"].dtype) == "int64"
    # the job ran as a Trino (presto) job, through TD's REST job API
    job = td.jobs[wh.take_jobs()[-1].job_id]
    assert job.type == "presto" and job.status == "success" and "CAST('2024-05-06 07:08:09' AS TIMESTAMP)" in job.query

    @asset
    def uses_td(warehouse: TreasureDataWarehouse):
        warehouse.query("SELECT 1 AS x")
        return MaterializeResult(metadata=engine_jobs_metadata(warehouse))

    result = materialize([uses_td], resources={"warehouse": wh})
    meta = result.asset_materializations_for_node("uses_td")[0].metadata
    ids = meta["engine_job_ids"].value
    assert ids and all(i in td.jobs for i in ids)
    assert f"https://console.treasuredata.com/app/jobs/{ids[-1]}" in str(meta.values())


def test_hive_is_the_option_and_a_job_over_its_time_limit_is_killed(td):
    hive = engine(td, query_engine="hive")
    assert hive.fetch("SELECT CONCAT('a', 'b') AS s").iloc[0, 0] == "ab"
    assert td.jobs[hive.take_jobs()[-1].job_id].type == "hive"

    td.hold_jobs("marker_slow")
    slow = engine(td, statement_timeout_seconds=0.5, job_poll_seconds=0.05)
    with pytest.raises(StatementTimeoutError, match="cancelled after 0.5s"):
        slow.execute("SELECT 'marker_slow' AS x")
    (job,) = [j for j in td.jobs.values() if "marker_slow" in j.query]
    assert job.status == "killed" and ("POST", f"/v3/job/kill/{job.job_id}", 200) in td.requests


def test_the_region_picks_the_api_endpoint_and_the_console(tmp_path, monkeypatch):
    monkeypatch.delenv("TD_ENDPOINT", raising=False)
    expected = {
        "us": ("https://api.treasuredata.com", "https://console.treasuredata.com/app/jobs/1"),
        "eu": ("https://api.eu01.treasuredata.com", "https://console.eu01.treasuredata.com/app/jobs/1"),
        "tokyo": ("https://api.treasuredata.co.jp", "https://console.treasuredata.co.jp/app/jobs/1"),
    }
    for region, (endpoint, link) in expected.items():
        loaded = load_config(
            write_project(
                tmp_path / region,
                records=10,
                mutate=lambda c: c.update(
                    engine={"kind": "treasure_data", "treasure_data": {"region": region, "query_engine": "hive"}}
                ),
            )
        )
        wh = build_warehouse(loaded)
        assert (wh.endpoint, wh.job_url("1"), wh.dialect.name) == (endpoint, link, "hive")
    monkeypatch.setenv("TD_ENDPOINT", "https://td-proxy.example.com")
    assert build_warehouse(loaded).endpoint == "https://td-proxy.example.com"


def test_a_dataframe_loads_through_bulk_import_and_appends_new_columns(td):
    wh = engine(td)
    ref = TableRef("cdp_src", "people")
    first = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["Ann", None, "O'Brien"],
            "seen": pd.to_datetime(["2024-01-01 00:00", None, "2024-03-01 10:00"]),
        }
    )
    wh.write_dataframe(ref, first)
    wh.append_frames([(ref, pd.DataFrame({"id": [4], "name": ["Dee"], "tier": ["gold"]}))])
    back = wh.fetch(f"SELECT id, name, seen, tier FROM {ref.sql} ORDER BY id")
    assert back["id"].tolist() == [1, 2, 3, 4] and back["name"].tolist() == ["Ann", None, "O'Brien", "Dee"]
    assert back["seen"].tolist()[:3] == [
        "2024-01-01 00:00:00.000000",
        None,
        "2024-03-01 10:00:00.000000",
    ]  # TD stores timestamps as text
    assert back["tier"].tolist() == [None, None, None, "gold"]
    assert set(wh.columns(ref)) == {"id", "name", "seen", "tier", "time"}
    calls = [p.split("/")[3] for m, p, s in td.requests if p.startswith("/v3/bulk_import/") and "/show/" not in p]
    assert calls == ["create", "upload_part", "freeze", "perform", "commit", "delete"] * 2
    performed = [
        j for j in wh.take_jobs() if td.jobs.get(j.job_id) is not None and td.jobs[j.job_id].type == "bulkload"
    ]
    assert len(performed) == 2  # each bulk import's job id is kept for the step's metadata
    with pytest.raises(WarehouseError, match="already exists"):
        wh.write_dataframe(ref, first)


def test_a_table_is_published_by_tds_swap_and_an_empty_frame_keeps_its_columns(td):
    wh = engine(td)
    final = TableRef("cdp_src", "scores")
    assert wh.build_table(final, "SELECT 1 AS a UNION ALL SELECT 2") == 2
    assert wh.build_table(final, "SELECT 10 AS a, 'x' AS b") == 1
    assert wh.fetch(f"SELECT a, b FROM {final.sql}").to_dict("records") == [{"a": 10, "b": "x"}]
    assert wh.list_tables("cdp_src") == ["scores"]  # no staging table left
    assert any(p.startswith("/v3/table/swap/cdp_src/scores__cdp_new_") for _, p, _ in td.requests)
    empty = TableRef("cdp_src", "no_rows")
    wh.write_dataframe(empty, pd.DataFrame({"k": pd.Series([], dtype="int64"), "v": pd.Series([], dtype=object)}))
    assert wh.fetch(f"SELECT COUNT(k) AS n, COUNT(v) AS m FROM {empty.sql}").iloc[0].tolist() == [0, 0]


def test_a_failed_job_fails_the_step_with_treasure_datas_message(td):
    message = "Query exceeded per-node memory limit of 20GB [marker_7731]"
    td.fail_jobs("marker_7731", message)
    wh = engine(td, console_url="https://console.treasuredata.com")

    @asset
    def heavy(warehouse: TreasureDataWarehouse):
        warehouse.execute("SELECT 'marker_7731' AS x")

    @asset(deps=[heavy])
    def downstream():
        return 1

    result = materialize([heavy, downstream], resources={"warehouse": wh}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(
        failure.event_specific_data.error.cause.message
        if failure.event_specific_data.error.cause
        else failure.event_specific_data.error.message
    )
    failed_job = next(j for j in td.jobs.values() if j.status == "error")
    assert message in text and f"job {failed_job.job_id} error" in text
    assert f"https://console.treasuredata.com/app/jobs/{failed_job.job_id}" in text
    assert "SELECT 'marker_7731' AS x" in text  # the statement that failed
    assert not [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS" and e.step_key == "downstream"]
    assert sum(1 for j in td.jobs.values() if "marker_7731" in j.query) == 1  # a failed job is not retried

    # a statement TD cannot run fails with the engine's own text too
    with pytest.raises(WarehouseError) as err:
        wh.execute('SELECT * FROM "cdp_src"."missing_table"')
    assert "missing_table" in err.value.engine_message and not isinstance(err.value, TransientWarehouseError)


def test_a_transient_5xx_is_retried_with_back_off(td, caplog):
    wh = engine(td)
    wh.verify_connection()
    td.fail_requests(503, times=2, path_prefix="/v3/job/issue")
    with caplog.at_level(logging.WARNING):
        assert int(wh.fetch("SELECT 41 + 1 AS x").iloc[0, 0]) == 42
    issued = [s for m, p, s in td.requests if p.startswith("/v3/job/issue")]
    assert issued == [503, 503, 200]
    assert caplog.text.count("transient warehouse error") == 2
    td.fail_requests(503, times=5, path_prefix="/v3/job/issue")
    with pytest.raises(TransientWarehouseError, match="Treasure Data API unavailable") as err:
        wh.fetch("SELECT 1 AS x")  # three attempts, then the step fails
    assert f"at {td.url}" in str(err.value) and "after 3 attempts; last error: HTTP 503" in str(err.value), err.value
    assert "Retrying stopped" not in str(err.value)


def test_an_unreachable_endpoint_names_the_endpoint_the_attempts_and_the_last_error(caplog):
    """A closed loopback port: every connection is refused. tdclient alone reports only
    `Retrying stopped after -1 seconds. (cumulative: 0/-1)`."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    wh = TreasureDataWarehouse(
        apikey=KEY, endpoint=f"http://proxyuser:proxypass@127.0.0.1:{port}/", retry_backoff_seconds=0.01
    )
    with caplog.at_level(logging.WARNING), pytest.raises(TransientWarehouseError) as err:
        wh.query("SELECT 1 AS x")
    message = err.value.engine_message
    assert message.startswith(
        f"Treasure Data API unavailable at http://127.0.0.1:{port}/ after 3 attempts; last error: "
    )
    assert "Connection refused" in message and "Retrying stopped" not in message, message
    assert caplog.text.count("transient warehouse error") == 2  # attempts 1 and 2 of 3, each logged
    for secret in (KEY, KEY[-4:], "proxypass"):
        assert secret not in str(err.value) and secret not in caplog.text


def test_a_bad_api_key_fails_fast_naming_the_variable_and_never_the_key(td):
    wrong = "4321/" + "0bad" * 10
    wh = engine(td, apikey=wrong, apikey_env="TD_API_KEY")
    with pytest.raises(WarehouseAuthError) as err:
        wh.query("SELECT 1 AS x")
    assert "$TD_API_KEY" in str(err.value) and td.url in str(err.value)
    assert wrong not in str(err.value) and KEY not in str(err.value) and wrong[-4:] not in str(err.value)
    assert [s for _, _, s in td.requests] == [401]  # one call: an auth error is not retried
    assert wh.connection_info()["apikey"] == "****" + wrong[-4:]


def test_values_are_bound_as_literals_of_the_parsed_statement():
    hostile = "x'); DROP TABLE people; --"
    sql = bind_literals(
        'SELECT * FROM "s"."t" WHERE a = ? AND b = ? AND c IS NOT DISTINCT FROM ?', [hostile, 3, None], "trino"
    )
    assert (
        sql
        == "SELECT * FROM \"s\".\"t\" WHERE a = 'x''); DROP TABLE people; --' AND b = 3 AND c IS NOT DISTINCT FROM NULL"
    )
    assert "'x\\'); DROP" in bind_literals("SELECT ? AS v", [hostile], "hive")  # Hive escapes with a backslash
    with pytest.raises(WarehouseError, match="2 placeholders but 1 values"):
        bind_literals("SELECT ? AS a, ? AS b", [1], "trino")


def test_a_treasure_data_config_needs_no_key_to_load_and_names_the_missing_variable_at_run(
    tmp_path, monkeypatch, capsys
):
    from cdp_assets.cli import main

    monkeypatch.delenv("TD_API_KEY", raising=False)
    config = write_project(tmp_path, records=20, mutate=lambda c: c.update(engine={"kind": "treasure_data"}))
    defs = build_definitions(load_config(config))
    assert defs.resolve_job_def(PIPELINE_JOB)
    for dialect in ("trino", "hive"):
        assert (
            main(
                ["render-sql", "--config", str(config), "--dialect", dialect, "--out", str(tmp_path / "sql" / dialect)]
            )
            == 0
        )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "TD_API_KEY" in err and "Traceback" not in err, err


@pytest.mark.pipeline
def test_the_whole_pipeline_on_the_fake_passes_every_check_and_equals_duckdbs_tables(td, tmp_path, monkeypatch):
    """Through pytd and TD's REST API, the Trino rendering of every phase gives DuckDB's tables:
    canonical ids, enriched rows, masters and statistics. What differs is what TD stores
    differently: a `time` column on each table, timestamps as text."""
    monkeypatch.setenv("TD_API_KEY", KEY)
    duck_loaded = load_config(write_project(tmp_path, records=60))
    td_loaded = load_config(td_project(tmp_path, td, generate=False))
    for loaded in (duck_loaded, td_loaded):
        result = run_pipeline(loaded)
        checks = check_results(result)
        assert result.success and checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
    # One run of the sample's shape, every job the fake ran (query and bulk-import jobs): a count is
    # deterministic. Issue 12's target of 80 is reported met or not in docs/benchmarks.md.
    assert len(td.jobs) <= CEILING_TD_JOBS, f"{len(td.jobs)} TD jobs (target {TARGET_TD_JOBS})"
    assert len([j for j in td.jobs.values() if j.type == "presto"]) > 50  # every statement ran as a TD job
    duck, tdw = DuckDBWarehouse(path=str(duck_loaded.duckdb_path)), engine(td, database=td_loaded.pipeline.src_schema)
    schemas = [duck_loaded.pipeline.src_schema, duck_loaded.pipeline.stg_schema, duck_loaded.unification.schema]
    # DuckDB keeps the key statistics' per-id counts and the lookup's check measures (TD rebuilds whole).
    names = {s: [t for t in duck.list_tables(s) if not t.endswith(IN_PLACE_ONLY_SUFFIXES)] for s in schemas}
    assert (
        names == {s: tdw.list_tables(s) for s in schemas} and sum(map(len, names.values())) > 30
    )  # no half-built table left
    for schema, tables in names.items():
        for table in tables:
            # Watermarks, build ids and change logs: when, not what.
            if table in VOLATILE_TABLES or table.endswith(BOOKKEEPING_SUFFIXES):
                continue
            ref = TableRef(schema, table)
            d = duck.fetch(f"SELECT * FROM {ref.sql}")
            t = tdw.fetch(f"SELECT * FROM {ref.sql}").drop(columns=["time"], errors="ignore")
            d, t = (f.drop(columns=[c for c in f.columns if c in VOLATILE]) for f in (d, t))
            for col in d.columns:  # TD stores timestamps as text
                if pd.api.types.is_datetime64_any_dtype(d[col]) and t[col].dtype == object:
                    t[col] = pd.to_datetime(t[col], format="ISO8601")
            assert list(d.columns) == list(t.columns) and len(d) == len(t), ref.display
            pd.testing.assert_frame_equal(
                normalized(d, list(d.columns)), normalized(t, list(d.columns)), check_dtype=False, obj=ref.display
            )


@pytest.mark.pipeline
def test_with_hive_the_pipeline_builds_the_lookup_and_stops_at_the_known_statistics_gap(td, tmp_path, monkeypatch):
    """Hive is the option, not the default, for a reason this test pins: sqlglot renders the
    statistics' ordered STRING_AGG for Hive as GROUP_CONCAT, which Hive lacks (the strict xfail
    in phases/test_sql_render.py). Everything before it runs as Hive jobs."""
    monkeypatch.setenv("TD_API_KEY", KEY)
    loaded = load_config(td_project(tmp_path, td, query_engine="hive"))
    result = run_pipeline(loaded)
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failed] == ["unification_customer_360.finish_unification_customer_360"]
    assert "result_key_stats" in str(failed[0].event_specific_data.error.cause or failed[0].event_specific_data.error)
    assert td.sql('SELECT COUNT(*) AS n FROM "cdp_unification_customer_360"."unified_id_lookup"').iloc[0, 0] > 0
    assert {j.type for j in td.jobs.values()} == {"hive", "bulkload"}


def test_trinos_answer_to_create_table_as_is_the_row_count_and_hive_is_counted_by_the_table_listing(td):
    # Neither needs a second job: Trino answers CREATE TABLE AS with its rows, and TD's table
    # listing carries every table's record count (Hive's answer is empty).
    for query_engine in ("presto", "hive"):
        wh = engine(td, query_engine=query_engine)
        before = set(td.jobs)
        assert (
            wh.build_table(
                TableRef("cdp_src", f"built_{query_engine}"), "SELECT 1 AS a UNION ALL SELECT 2 UNION ALL SELECT 3"
            )
            == 3
        )
        issued = [td.jobs[j].query for j in td.jobs if j not in before]
        assert len(issued) == 1 and "CREATE TABLE" in issued[0], issued


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31)).map(
            lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)  # Trino's timestamp(3)
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_timestamp_written_as_stored_text_is_the_text_a_table_stores_for_it(td, times):
    # A subquery that stands in for a scratch table (``inlines_scratch_tables``) writes the
    # times it computes as the text that table would store (``timestamp_as_stored_text``): the
    # same text, so that unions and comparisons with stored rows see equal values.
    wh = engine(td)
    ref = TableRef("cdp_src", f"stored_times_{next(_TABLES)}")
    select = " UNION ALL ".join(f"SELECT {i} AS i, CAST(? AS TIMESTAMP) AS ts" for i in range(len(times)))
    wh.build_table(ref, select, [t.isoformat(sep=" ") for t in times])
    rows = wh.fetch(
        f"SELECT t.i, t.ts AS stored, {timestamp_as_stored_text('CAST(t.ts AS TIMESTAMP)')} AS written, "
        f"w.written AS computed FROM {ref.sql} AS t JOIN ({select.replace('AS ts', 'AS v')}) AS c ON c.i = t.i "
        f"CROSS JOIN LATERAL (SELECT {timestamp_as_stored_text('c.v')} AS written) AS w ORDER BY t.i",
        [t.isoformat(sep=" ") for t in times],
    )
    assert list(rows["stored"]) == list(rows["written"]) == list(rows["computed"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", v) for v in rows["stored"])


_TABLES = itertools.count()


def test_row_counts_come_from_the_table_listing_without_a_job(td):
    wh = engine(td)
    small, large = TableRef("cdp_src", "counted_small"), TableRef("cdp_src", "counted_large")
    wh.build_table(small, "SELECT 1 AS v")
    wh.build_table(large, "SELECT v FROM UNNEST(SEQUENCE(1, 250)) AS t(v)")
    td.sql('INSERT INTO "cdp_src"."counted_small" (v) VALUES (2), (3)')  # written outside the engine
    before = set(td.jobs)
    assert wh.row_counts([small, large]) == {small: 3, large: 250}
    assert wh.row_count(large) == 250
    assert set(td.jobs) == before  # no job: API calls only
    with pytest.raises(WarehouseError, match="counted_missing does not exist"):
        wh.row_count(TableRef("cdp_src", "counted_missing"))
    # A scratch table (the loop's edges) is counted by Trino's answer to its CREATE TABLE AS: one job.
    scratch = wh.scratch_ref(small)
    with wh.session():
        wh.create_scratch(scratch, f"SELECT v FROM {large.sql} WHERE v > 200")
        requests = len(td.requests)
        assert wh.row_count(scratch) == 50 and len(td.requests) == requests  # no API call either
        wh.drop(scratch)
    assert len(td.jobs) == len(before) + 1 and not wh.table_exists(scratch)


def test_api_calls_are_retried_but_a_failed_swap_is_not_repeated(td):
    wh = engine(td)
    final = TableRef("cdp_src", "swapped")
    wh.build_table(final, "SELECT 1 AS v")
    td.fail_requests(503, times=2, path_prefix="/v3/table/list/cdp_src")
    assert wh.list_tables("cdp_src") == ["swapped"]  # an idempotent call: retried
    td.fail_requests(503, times=1, path_prefix="/v3/table/swap/")
    with pytest.raises(TransientWarehouseError):
        wh.build_table(final, "SELECT 2 AS v")
    assert [s for _, p, s in td.requests if p.startswith("/v3/table/swap/")][-1] == 503  # tried once
    assert wh.fetch(f"SELECT v FROM {final.sql}")["v"].tolist() == [1]  # the old table stays
    assert wh.list_tables("cdp_src") == ["swapped"]  # the staging table is dropped
    td.fail_requests(503, times=1, path_prefix="/v3/table/delete/")
    assert wh.build_table(final, "SELECT 3 AS v") == 1  # deleting the old table is retried
    assert wh.fetch(f"SELECT v FROM {final.sql}")["v"].tolist() == [3] and wh.list_tables("cdp_src") == ["swapped"]


def test_explain_reads_the_key_from_its_variable_and_reaches_treasure_data(td, tmp_path, monkeypatch, capsys):
    """explain builds the engine outside a run: its EnvVar key is resolved from the environment
    (it was once passed on unresolved, and every explain on TD failed on EnvVar("TD_API_KEY"))."""
    from cdp_assets.cli import main

    monkeypatch.setenv("TD_API_KEY", KEY)
    config = td_project(tmp_path, td, records=20)
    capsys.readouterr()
    assert main(["explain", "--config", str(config), "email:a@example.com"]) == 1  # no run yet: no lookup table
    err = capsys.readouterr().err
    assert err.startswith("error: Treasure Data job ") and "unified_id_lookup" in err and err.count("\n") == 1, err
    assert "EnvVar" not in err and KEY not in err
    assert any(p.startswith("/v3/job/issue") and s == 200 for _, p, s in td.requests)  # the key was accepted


def test_a_full_hist_union_writes_its_state_in_the_one_job_that_measures_it_and_later_runs_read_it(td):
    """On TD the state of a full hist-union build is one CREATE TABLE AS measuring its inputs'
    totals, values (table names, generation, fingerprint, time) bound as literals of the parsed
    statement; an incremental run then reads that state and gives what a full refresh gives."""
    from cdp_assets.incremental import build_hist_union
    from cdp_assets.sql import incremental as inc

    wh = engine(td)
    hist, incr, target = (TableRef("cdp_src", n) for n in ("c_hist", "c", "c_hist_union"))

    def rows(ids: list[str], at: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": pd.array(ids, dtype="string"),
                "email": pd.array([f"{i}@{at[:10]}.x" for i in ids], dtype="string"),
                "updated_at": pd.Series([pd.Timestamp(at)] * len(ids), dtype="datetime64[us]"),
                "_cdp_file": pd.array(["f.csv"] * len(ids), dtype="string"),
                "_cdp_loaded_at": pd.Series([pd.Timestamp(at)] * len(ids), dtype="datetime64[us]"),
            }
        )

    def inputs():
        described = wh.describe_tables([hist, incr])  # as the hist-union asset passes them (TD's `time` too)
        return [(ref, [c for c, _ in described[ref]]) for ref in (hist, incr)]

    wh.append_frames([(hist, rows(["1", "2"], "2024-06-01 00:00:00")), (incr, rows(["2", "3"], "2024-06-02"))])
    before = set(td.jobs)
    full = build_hist_union(wh, target, inputs(), "updated_at", ["customer_id"])
    jobs = [td.jobs[j] for j in td.jobs if j not in before]
    assert full.mode == "full" and full.rows == 3 and full.input_rows == [2, 2] and full.rows_read == 4
    assert [j.type for j in jobs] == ["presto", "presto"], [j.query for j in jobs]  # the table, its state
    state_sql = jobs[1].query
    assert "c_hist_union_cdp_state" in state_sql and "'cdp_src.c_hist'" in state_sql and "?" not in state_sql
    state = wh.fetch(f"SELECT * FROM {inc.state_ref(target).sql} ORDER BY input_rank")
    assert state["rows_through"].tolist() == [2, 2] and state["input_table"].tolist() == ["cdp_src.c_hist", "cdp_src.c"]
    assert set(state["mode"]) == {"full"} and state["generation"].nunique() == 1

    wh.append_frames([(incr, rows(["3", "4"], "2024-06-03"))])
    nightly = build_hist_union(wh, target, inputs(), "updated_at", ["customer_id"])
    assert nightly.mode == "incremental" and nightly.rows_read == 2 and nightly.input_rows == [2, 4]
    got = wh.fetch(f"SELECT customer_id, email FROM {target.sql} ORDER BY customer_id")
    refreshed = build_hist_union(wh, target.sibling("c_refreshed"), inputs(), "updated_at", ["customer_id"], True)
    want = wh.fetch('SELECT customer_id, email FROM "cdp_src"."c_refreshed" ORDER BY customer_id')
    assert refreshed.rows == 4 and got.equals(want) and got["email"].tolist()[2] == "3@2024-06-03.x"


def _td_tables(tdw: TreasureDataWarehouse, schemas: list[str]) -> dict[str, pd.DataFrame]:
    """Every table's rows, sorted, without what says when rather than what (TD's ``time``, load
    times, run ids) and without the tables that grow by a row per run (the load log) or keep
    bookkeeping (watermarks, build ids, change logs)."""
    out = {}
    for schema in schemas:
        for table in tdw.list_tables(schema):
            if table in (*VOLATILE_TABLES, LOG_TABLE) or table.endswith(("_loop_stats", *BOOKKEEPING_SUFFIXES)):
                continue
            df = tdw.fetch(f"SELECT * FROM {TableRef(schema, table).sql}")
            df = df.drop(columns=[c for c in df.columns if c in VOLATILE or c == "time"])
            out[f"{schema}.{table}"] = normalized(df, sorted(df.columns))
    return out


@pytest.mark.pipeline
def test_a_nightly_run_on_the_fake_with_new_and_updated_rows_equals_a_full_refresh(td, tmp_path, monkeypatch):
    """A full run, then one new incremental file per object with new and updated rows (what
    ``bench_nightly`` writes) and the nightly run: the DataFrame loader reads the rows already
    loaded in each file's watermark range (stored as text on TD), and every phase's tables equal
    a full refresh on the same data; the enriched and master tables equal their full builds over
    the published lookup (an incremental loop keeps ids a full refresh may renumber)."""
    from cdp_assets.assets.ingestion import _step_start
    from cdp_assets.assets.keys import ingestion_refs
    from cdp_assets.assets.run_config import full_refresh_run_config
    from cdp_assets.connectors.loading import _iso, current_watermark, last_fingerprint
    from cdp_assets_tests.unify.test_incremental_unification import assert_equal_to_full_builds

    monkeypatch.setenv("TD_API_KEY", KEY)
    loaded = load_config(td_project(tmp_path, td))
    first = run_pipeline(loaded)
    assert first.success
    tdw = engine(td, database=loaded.pipeline.src_schema)
    src, stg = loaded.pipeline.src_schema, loaded.pipeline.stg_schema
    # An ingestion step reads at its start what its loads would each query (a job each on TD):
    # the last historical load's fingerprint and each raw table's newest incremental field.
    for source, obj in loaded.pipeline.source_objects():
        start = _step_start(tdw, loaded, source, obj, python_loads=True)
        log = TableRef(src, LOG_TABLE)
        assert start.fingerprint is not None and start.newest is not None
        assert start.fingerprint == last_fingerprint(tdw, log, source.name, obj.name)
        for ref in ingestion_refs(loaded, source, obj).values():
            assert _iso(start.newest[ref]) == current_watermark(tdw, ref, source.incremental_field) is not None
    customers = f'SELECT COUNT(*) AS n FROM {TableRef(src, "shop_customers").sql}'
    before = tdw.fetch(customers).iloc[0, 0]
    written = write_nightly_files(tmp_path / "data", 0.01, 0.005)
    assert all(w["new"] > 0 and w["updated"] > 0 for w in written.values()), written
    # And a copy of a row loaded by the full run, re-sent: found among the loaded rows in the
    # file's watermark range (text on TD) and not loaded twice.
    folder = tmp_path / "data" / "shop" / "customers"
    loaded_before = pd.read_csv(folder / "customers_2024-06-02.csv", dtype=str, keep_default_na=False)
    (night,) = [p for p in folder.glob("customers_*.csv") if p.name > "customers_2024-06-02.csv"]
    new_file = pd.read_csv(night, dtype=str, keep_default_na=False)
    pd.concat([new_file, loaded_before.head(1)]).to_csv(night, index=False)
    jobs_before = set(td.jobs)
    nightly = run_pipeline(loaded)
    # Hist-union's changed keys and recomputed rows, and staging's new rows and changed keys, are
    # subqueries on TD (``inlines_scratch_tables``): no job creates their scratch tables.
    created = [td.jobs[j].query for j in set(td.jobs) - jobs_before if "CREATE TABLE" in td.jobs[j].query.upper()]
    assert any("_hist_union__cdp_new_" in q for q in created)  # the hist-union rebuilds ran
    scratch = [q for q in created if "_inc__cdp_new_" in q]
    assert scratch and not [q for q in scratch if "_hist_union_inc__cdp_new_" in q]
    # staging's new rows (``rows_since_sql``) and the changed keys of either (``changed_keys_sql``)
    inlined = [q for q in scratch if re.search(r" AS SELECT (i\.\*|DISTINCT [^()]*? FROM \(\s*SELECT i\.)", q)]
    assert not inlined, inlined
    # The loop's new key values are a subquery of the key values' rebuild and of the changed
    # values (``Step.inlinable``), with the times of the tables read whole written as the text
    # the new rows' table stores: real Trino unions no VARCHAR with a TIMESTAMP.
    assert not [q for q in created if "_new_key_values__cdp_new_" in q]
    # Staging's staged rows are a subquery of its measures and its rebuild, their times written
    # as the text the staged table stores (``inc.as_stored_sql``).
    for name in ("shop_customers_stg", "shop_orders_stg", "loyalty_members_stg"):
        assert not [q for q in created if f'"{name}_inc__cdp_new_' in q]
        (rebuilt,) = [q for q in created if f'"{name}__cdp_new_' in q]
        # the two with a date rule (born, ordered: TIMESTAMP and DATE columns)
        assert ("FORMAT_DATETIME(" in rebuilt.upper()) == (name != "loyalty_members_stg")
    # The deduped table's staged rows, touched partitions and their ranked rows likewise: its
    # incremental build creates only the pre-dedupe rows, its change log and itself again.
    assert not [q for q in created if '"web_events_stg_inc__cdp_new_' in q]
    deduped = [q for q in created if re.search(r'CREATE TABLE "[^"]+"\."web_events_stg', q)]
    assert len(deduped) == 3, deduped
    (rebuilt,) = [q for q in created if re.search(r'"unified_id_key_values__cdp_new_\w+" AS', q)]
    assert "FORMAT_DATETIME(" in rebuilt.upper() and '"unified_id_new_rows__cdp_new_' in rebuilt
    checks = check_results(nightly)
    failed = {k for k, passed in checks.items() if not passed}
    assert nightly.success and len(checks) > 50 and failed == {"acme_src/shop_customers:no_skipped_rows"}  # the copy
    modes = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata["build_mode"].value
        for e in nightly.get_asset_materialization_events()
        if "build_mode" in e.event_specific_data.materialization.metadata
    }
    assert modes["shop_customers_hist_union"] == "incremental" and modes["shop_customers_stg"] == "incremental"
    # Every new file's row loaded once, none of the rows loaded before again.
    shop = written["shop/customers"]
    assert tdw.fetch(customers).iloc[0, 0] == before + shop["new"] + shop["updated"]
    assert_equal_to_full_builds(tdw, loaded)
    nightly_tables = _td_tables(tdw, [src, stg])

    job = build_definitions(loaded).resolve_job_def(PIPELINE_JOB)
    full = job.execute_in_process(run_config=full_refresh_run_config(job), raise_on_error=False)
    assert full.success
    full_tables = _td_tables(tdw, [src, stg])
    assert nightly_tables.keys() == full_tables.keys() and len(full_tables) > 10
    for name, table in nightly_tables.items():
        pd.testing.assert_frame_equal(table, full_tables[name], check_dtype=False, obj=name)


def test_an_empty_excluded_values_table_is_measured_from_the_table_listing_without_a_job(td):
    from cdp_assets.checks.unification import excluded_measures

    wh = engine(td, database="cdp_unification_customer_360")
    excluded = TableRef("cdp_unification_customer_360", "unified_id_excluded_values")
    columns = "'email' AS key_name, CAST(v AS VARCHAR) AS value, n AS row_count, 2 AS max_rows_per_value"
    over = f"SELECT {columns} FROM (VALUES ('a@x.com', 5), ('b@x.com', 3)) AS t(v, n)"
    wh.build_table(excluded, f"SELECT * FROM ({over}) AS o WHERE 1 = 0")
    jobs = len(td.jobs)
    assert excluded_measures(wh, excluded).empty and len(td.jobs) == jobs  # nothing over its cap: no job
    wh.build_table(excluded, over)
    jobs = len(td.jobs)
    top = excluded_measures(wh, excluded)
    assert len(td.jobs) == jobs + 1 and top["value"].tolist() == ["a@x.com", "b@x.com"]
    assert top["total"].tolist() == [2, 2]
