"""Database and REST API sources through dlt, loaded by the ingestion contract: a real
PostgreSQL server the test starts, and a REST API on loopback with pagination, an
incremental cursor and error statuses. Both pass the ingestion checks and load incrementally:
a second run loads only the new rows. Secrets stay out of every message."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml

from cdp_assets.config import load_config
from cdp_assets_tests.conftest import check_results, run_pipeline, warehouse_for
from cdp_assets_tests.connectors.rest_server import FakeShopApi
from cdp_assets_tests.reliability.test_postgres_storage import postgres  # noqa: F401 - the server fixture

PG_PASSWORD = "pg-secret-7391"
TOKEN = "shop-token-5f2a9c81"
T0 = datetime(2024, 6, 1, 8, 0, 0)


def _project(tmp_path, source: dict, staging: dict) -> object:
    cfg = {
        "client": "acme",
        "engine": {"kind": "duckdb", "duckdb": {"path": "cdp.duckdb"}},
        "sources": [source],
        "staging": staging,
        "report": {"path": "report.md"},
    }
    path = tmp_path / "cdp.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(path)


def _log(loaded, obj: str):
    wh = warehouse_for(loaded)
    return wh.fetch(
        "SELECT status, records_loaded, records_rejected, watermark, files, message "
        f"FROM acme_src.ingestion_log WHERE object = '{obj}' ORDER BY loaded_at"
    )


def _ingestion_checks(result) -> dict[str, bool]:
    return {k: v for k, v in check_results(result).items() if k.startswith("acme_src/")}


# ---------------------------------------------------------------------------- PostgreSQL


def _pg(postgres, sql: str, params=None):  # noqa: F811
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=postgres["port"], user="dagster", dbname="dagster")
    try:
        with con, con.cursor() as cur:
            cur.execute(sql, params)
    finally:
        con.close()


def test_a_postgresql_table_loads_incrementally_by_its_cursor(postgres, tmp_path, monkeypatch):  # noqa: F811
    _pg(
        postgres,
        "DROP SCHEMA IF EXISTS crm CASCADE; CREATE SCHEMA crm; "
        "CREATE TABLE crm.contacts (contact_id text PRIMARY KEY, email text, tags jsonb, updated_at timestamp)",
    )
    for i in range(30):
        _pg(
            postgres,
            "INSERT INTO crm.contacts VALUES (%s, %s, %s, %s)",
            (f"K{i:03d}", f"Person.{i}@Example.com", '{"vip": true}', T0 + timedelta(minutes=i)),
        )
    monkeypatch.setenv(
        "CDP_TEST_PG_URL", f"postgresql+psycopg2://dagster:{PG_PASSWORD}@127.0.0.1:{postgres['port']}/dagster"
    )
    loaded = _project(
        tmp_path,
        {
            "name": "crm",
            "connector": {"kind": "sql_database", "credentials_env": "CDP_TEST_PG_URL", "schema": "crm"},
            "objects": [{"name": "contacts", "primary_key": ["contact_id"]}],
            "mode": "incremental",
            "incremental_field": "updated_at",
        },
        {"crm_contacts": {"email": {"rule": "email", "columns": ["email"]}}},
    )
    first = run_pipeline(loaded)
    checks = check_results(first)
    assert first.success and checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
    wh = warehouse_for(loaded)
    raw = wh.fetch("SELECT * FROM acme_src.crm_contacts ORDER BY contact_id")
    assert (
        len(raw) == 30
        and raw["tags"].iloc[0] == '{"vip": true}'
        and raw["_cdp_file"].iloc[0] == "sql_database:crm.contacts"
    )
    assert (
        wh.fetch("SELECT standardized_email FROM acme_stg.crm_contacts_stg WHERE contact_id = 'K007'").iloc[0, 0]
        == "person.7@example.com"
    )

    # New rows, one updated row and one without a cursor value: only those are read and loaded.
    for i in range(30, 35):
        _pg(
            postgres,
            "INSERT INTO crm.contacts VALUES (%s, %s, NULL, %s)",
            (f"K{i:03d}", f"p{i}@example.com", T0 + timedelta(hours=2, minutes=i)),
        )
    _pg(
        postgres,
        "UPDATE crm.contacts SET email = 'new.k003@example.com', updated_at = %s WHERE contact_id = 'K003'",
        (T0 + timedelta(hours=5),),
    )
    _pg(postgres, "INSERT INTO crm.contacts VALUES ('K999', 'x@example.com', NULL, NULL)")
    second = run_pipeline(loaded)
    assert second.success
    log = _log(loaded, "contacts")
    assert list(log["records_loaded"]) == [30, 6] and list(log["status"]) == ["success", "success"]
    assert int(log["records_rejected"].iloc[-1]) == 0  # NULL is not newer than the watermark: not read at all
    assert wh.row_count(_ref("crm_contacts")) == 36
    union = wh.fetch("SELECT email FROM acme_src.crm_contacts_hist_union WHERE contact_id = 'K003'")
    assert list(union["email"]) == ["new.k003@example.com"]  # the primary key keeps the newest version
    third = run_pipeline(loaded)
    assert third.success and int(_log(loaded, "contacts")["records_loaded"].iloc[-1]) == 0
    ingestion = _ingestion_checks(second)
    assert ingestion and all(ingestion.values()), ingestion


def test_a_refused_database_login_fails_the_load_naming_the_source_never_the_password(postgres, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(
        "CDP_TEST_PG_URL", f"postgresql+psycopg2://nobody:{PG_PASSWORD}@127.0.0.1:{postgres['port']}/no_such_db"
    )
    loaded = _project(
        tmp_path,
        {
            "name": "crm",
            "connector": {"kind": "sql_database", "credentials_env": "CDP_TEST_PG_URL", "schema": "crm"},
            "objects": ["contacts"],
            "mode": "incremental",
        },
        {},
    )
    result = run_pipeline(loaded)
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error.to_string()
    assert "source 'crm' (sql_database, table crm.contacts): cannot be read" in failure
    assert PG_PASSWORD not in failure and "role \"nobody\" does not exist" in failure
    log = _log(loaded, "contacts")
    assert list(log["status"]) == ["failed"] and PG_PASSWORD not in log["message"].iloc[0]


def _ref(name):
    from cdp_assets.sql.dialects import TableRef

    return TableRef("acme_src", name)


# ---------------------------------------------------------------------------- REST API


@pytest.fixture
def shop_api():
    api = FakeShopApi(TOKEN)
    api.url = api.start()
    yield api
    api.stop()


def _contact(i: int, at: datetime) -> dict:
    return {
        "id": f"S{i:03d}",
        "email": f"Buyer{i}@Shop.example",
        "address": {"city": "Lyon", "zip": "69001"},
        "updated_at": at.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _rest_source(url: str) -> dict:
    return {
        "name": "shop",
        "connector": {
            "kind": "rest_api",
            "base_url": url + "/v1",
            "auth": {"type": "bearer", "token_env": "CDP_TEST_SHOP_TOKEN"},
            "paginator": {"type": "page_number", "base_page": 1, "page_param": "page", "total_path": "total_pages"},
            "endpoints": {
                "contacts": {"path": "contacts", "data_selector": "results", "cursor_param": "updated_since"}
            },
        },
        "objects": [{"name": "contacts", "primary_key": ["id"]}],
        "mode": "incremental",
        "incremental_field": "updated_at",
    }


def test_a_paginated_rest_api_loads_incrementally_by_its_cursor(shop_api, tmp_path, monkeypatch):
    shop_api.contacts = [_contact(i, T0 + timedelta(minutes=i)) for i in range(10)]
    monkeypatch.setenv("CDP_TEST_SHOP_TOKEN", TOKEN)
    loaded = _project(
        tmp_path, _rest_source(shop_api.url), {"shop_contacts": {"email": {"rule": "email", "columns": ["email"]}}}
    )
    first = run_pipeline(loaded)
    checks = check_results(first)
    assert first.success and checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
    pages = [q.get("page") for p, q in shop_api.requests]
    assert pages == ["1", "2", "3"] and all("updated_since" not in q for _, q in shop_api.requests)  # 10 rows, 4 a page
    wh = warehouse_for(loaded)
    raw = wh.fetch("SELECT * FROM acme_src.shop_contacts ORDER BY id")
    assert len(raw) == 10 and raw["address"].iloc[0] == '{"city": "Lyon", "zip": "69001"}'

    shop_api.requests.clear()
    shop_api.contacts += [_contact(i, T0 + timedelta(hours=1, minutes=i)) for i in range(10, 13)]
    second = run_pipeline(loaded)
    assert second.success
    # The cursor starts at the watermark: the API is asked only for newer rows, on one page.
    assert [q for _, q in shop_api.requests] == [{"updated_since": "2024-06-01T08:09:00", "page": "1"}]
    log = _log(loaded, "contacts")
    assert list(log["records_loaded"]) == [10, 3] and log["watermark"].iloc[-1].startswith("2024-06-01 09:12:00")
    ingestion = _ingestion_checks(second)
    assert ingestion and all(ingestion.values()), ingestion


@pytest.mark.parametrize("status", [401, 503])
def test_an_error_status_fails_the_load_with_the_status_and_never_the_token(shop_api, tmp_path, monkeypatch, status):
    monkeypatch.setenv("CDP_TEST_SHOP_TOKEN", TOKEN if status == 503 else "wrong-token-0000")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")  # dlt retries 5xx; keep the test short
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    shop_api.contacts = [_contact(1, T0)]
    shop_api.error_status = 503 if status == 503 else None
    loaded = _project(tmp_path, _rest_source(shop_api.url), {})
    result = run_pipeline(loaded)
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error.to_string()
    assert f"source 'shop' (rest_api, {shop_api.url}/v1/contacts): cannot be read" in failure and str(status) in failure
    assert TOKEN not in failure and "wrong-token-0000" not in failure
    assert list(_log(loaded, "contacts")["status"]) == ["failed"]
    assert not warehouse_for(loaded).table_exists(_ref("shop_contacts"))


def test_a_rest_source_must_name_an_endpoint_per_object_and_load_incrementally(tmp_path):
    from cdp_assets.config.loader import ConfigError

    source = _rest_source("http://127.0.0.1:1")
    source["objects"].append("orders")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.connector\.endpoints: .*\['orders'\] have no endpoint"):
        _project(tmp_path, source, {})
    source = _rest_source("http://127.0.0.1:1") | {"mode": "both"}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.mode: a rest_api source loads by its cursor"):
        _project(tmp_path, source, {})
    source = _rest_source("http://127.0.0.1:1")
    source["connector"]["auth"] = {"type": "bearer", "token_env": "shop-token-5f2a9c81"}
    with pytest.raises(ConfigError, match="NAME of an environment variable") as err:
        _project(tmp_path, source, {})
    assert "shop-token-5f2a9c81" not in str(err.value)


def test_validate_reads_the_columns_of_database_and_api_sources(postgres, shop_api, tmp_path, monkeypatch, capsys):  # noqa: F811
    from cdp_assets.validate import validate

    _pg(
        postgres,
        "DROP SCHEMA IF EXISTS erp CASCADE; CREATE SCHEMA erp; CREATE TABLE "
        "erp.accounts (account_id text, email text, updated_at timestamp)",
    )
    monkeypatch.setenv(
        "CDP_TEST_PG_URL", f"postgresql+psycopg2://dagster:{PG_PASSWORD}@127.0.0.1:{postgres['port']}/dagster"
    )
    monkeypatch.setenv("CDP_TEST_SHOP_TOKEN", TOKEN)
    shop_api.contacts = [_contact(i, T0) for i in range(3)]
    pg_source = {
        "name": "erp",
        "connector": {"kind": "sql_database", "credentials_env": "CDP_TEST_PG_URL", "schema": "erp"},
        "objects": ["accounts"],
        "mode": "incremental",
        "incremental_field": "updated_at",
    }
    cfg = {
        "client": "acme",
        "engine": {"kind": "duckdb", "duckdb": {"path": "cdp.duckdb"}},
        "sources": [pg_source, _rest_source(shop_api.url)],
        "staging": {
            "erp_accounts": {"email": {"rule": "email", "columns": ["email"]}},
            "shop_contacts": {
                "email": {"rule": "email", "columns": ["email"]},
                "phone": {"rule": "phone", "columns": ["phone"]},
            },
        },
    }
    path = tmp_path / "cdp.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = validate(path)
    assert [(p.field, p.message.split(";")[0]) for p in report.problems] == [
        ("staging.shop_contacts.phone.columns[0]", "column 'phone' is not in shop_contacts")
    ]
    assert shop_api.requests and all(
        q.get("page") in (None, "1") for _, q in shop_api.requests
    )  # one page read, nothing loaded
    del cfg["staging"]["shop_contacts"]["phone"]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = validate(path)
    assert not report.problems and report.statements > 0
    assert not (tmp_path / "cdp.duckdb").exists()
    monkeypatch.setenv(
        "CDP_TEST_PG_URL", f"postgresql+psycopg2://dagster:{PG_PASSWORD}@127.0.0.1:1/dagster"
    )  # nothing listens on port 1
    report = validate(path)
    assert report.problems[0].field == "sources[0].connector" and "cannot be read" in report.problems[0].message
    assert all(PG_PASSWORD not in str(p) for p in report.problems)


def test_init_drafts_a_database_source_that_then_runs(postgres, tmp_path, monkeypatch):  # noqa: F811
    from cdp_assets.cli import main

    _pg(
        postgres,
        "DROP SCHEMA IF EXISTS loyalty CASCADE; CREATE SCHEMA loyalty; "
        "CREATE TABLE loyalty.members (member_no text, mobile text, mail text, last_change timestamp); "
        "CREATE TABLE loyalty.stores (store_code text, city text, opened_at timestamp)",
    )
    for i in range(40):
        _pg(
            postgres,
            "INSERT INTO loyalty.members VALUES (%s, %s, %s, %s)",
            (
                f"M{i:04d}",
                f"(415) 555-{1000 + i}",
                f"member{i}@example.org" if i % 8 else "none@none.com",
                T0 + timedelta(minutes=i),
            ),
        )
        _pg(postgres, "INSERT INTO loyalty.stores VALUES (%s, %s, %s)", (f"ST{i}", "Paris", T0))
    monkeypatch.setenv(
        "CDP_TEST_PG_URL", f"postgresql+psycopg2://dagster:{PG_PASSWORD}@127.0.0.1:{postgres['port']}/dagster"
    )
    out = tmp_path / "project"
    assert (
        main(["init", "--client", "acme", "--source", "sql_database:CDP_TEST_PG_URL/loyalty", "--out", str(out)]) == 0
    )
    text = (out / "cdp.yml").read_text()
    assert PG_PASSWORD not in text and "credentials_env" in text
    report = (out / "init_report.md").read_text()
    assert "`loyalty_stores`" in report and "no user identifier" in report
    unify = yaml.safe_load((out / "unify.yml").read_text())
    assert {k["name"] for k in unify["keys"]} == {"email", "phone", "member_no"}
    assert main(["validate", "--config", str(out / "cdp.yml")]) == 0
    result = run_pipeline(load_config(out / "cdp.yml"))
    checks = check_results(result)
    assert result.success and checks and all(checks.values()), {k: v for k, v in checks.items() if not v}


def test_api_records_without_a_usable_cursor_value_are_rejected_like_file_rows(shop_api, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_TEST_SHOP_TOKEN", TOKEN)
    shop_api.contacts = [_contact(i, T0 + timedelta(minutes=i)) for i in range(5)]
    shop_api.contacts[2]["updated_at"] = "sometime last week"
    loaded = _project(tmp_path, _rest_source(shop_api.url), {})
    result = run_pipeline(loaded)
    assert result.success
    assert check_results(result)["acme_src/shop_contacts:no_rejected_rows"] is False  # the WARN check shows it
    wh = warehouse_for(loaded)
    rejected = wh.fetch("SELECT file, reason, raw FROM acme_src.shop_contacts_rejected")
    assert len(rejected) == 1 and rejected["file"].iloc[0] == "rest_api:contacts"
    # the reason quotes the value as a masked excerpt, as for file rows
    reason = rejected["reason"].iloc[0]
    assert "'some**** **** ****' is not a date/time" in reason and "sometime last week" not in reason
    assert "id=S002" in rejected["raw"].iloc[0]
    log = _log(loaded, "contacts")
    assert list(log["records_loaded"]) == [4] and list(log["records_rejected"]) == [1]


def test_init_samples_a_hand_written_api_source_and_drafts_the_rest(shop_api, tmp_path, monkeypatch):
    from cdp_assets.cli import main

    monkeypatch.setenv("CDP_TEST_SHOP_TOKEN", TOKEN)
    shop_api.contacts = [_contact(i, T0 + timedelta(minutes=i)) for i in range(30)]
    declared = tmp_path / "sources.yml"
    declared.write_text(yaml.safe_dump({"sources": [_rest_source(shop_api.url)]}, sort_keys=False))
    out = tmp_path / "project"
    assert main(["init", "--client", "acme", "--source", f"sources:{declared}", "--out", str(out)]) == 0
    text = (out / "cdp.yml").read_text()
    assert TOKEN not in text and "CDP_TEST_SHOP_TOKEN" in text
    report = (out / "init_report.md").read_text()
    assert "`shop_contacts.address`" in report  # nested: excluded and named
    unify = yaml.safe_load((out / "unify.yml").read_text())
    assert {k["name"] for k in unify["keys"]} == {"email", "id"}
    assert main(["validate", "--config", str(out / "cdp.yml")]) == 0
    result = run_pipeline(load_config(out / "cdp.yml"))
    checks = check_results(result)
    assert result.success and checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
