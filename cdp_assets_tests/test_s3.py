"""S3 sources against a real S3-compatible server on loopback (moto's server, started here):
the objects load like local files, incrementally, and the S3-prefix sensor requests each
object's ingestion once."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import boto3
import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context
from moto.server import ThreadedMotoServer

from cdp_assets.config import load_config
from cdp_assets.definitions import build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project

BUCKET = "acme-landing"


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) if _exists(client) else []:
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET)
    return client


def _exists(client) -> bool:
    return BUCKET in [b["Name"] for b in client.list_buckets().get("Buckets", [])]


def _upload_folder(client, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


def _s3_project(tmp_path: Path, endpoint: str, client, hold_back: str | None = None):
    """The same generated data twice: all local, and with the shop source moved to S3."""
    local_cfg = write_project(tmp_path / "local", records=90)
    shop = tmp_path / "local" / "data" / "shop"
    staged = tmp_path / "upload"
    shutil.copytree(shop, staged)
    if hold_back:
        for f in staged.rglob(f"*{hold_back}*"):
            f.unlink()
    _upload_folder(client, staged, "landing/shop")

    def to_s3(cfg):
        cfg["sources"][0]["connector"] = {
            "kind": "s3",
            "bucket": BUCKET,
            "prefix": "landing/shop",
            "endpoint_url": endpoint,
            "format": "csv",
        }

    s3_root = tmp_path / "s3"
    s3_root.mkdir()
    shutil.copytree(tmp_path / "local" / "data", s3_root / "data")
    return load_config(local_cfg), load_config(write_project(s3_root, generate=False, mutate=to_s3))


def _table(loaded, name: str) -> pd.DataFrame:
    df = DuckDBWarehouse(path=str(loaded.duckdb_path)).fetch(f'SELECT * FROM "acme_src"."{name}"')
    return (
        df.drop(columns=["_cdp_loaded_at"])
        .astype(str)
        .sort_values(list(df.columns.drop("_cdp_loaded_at")))
        .reset_index(drop=True)
    )


@pytest.mark.pipeline
def test_an_s3_source_loads_exactly_like_the_same_files_on_disk(tmp_path, s3_server, s3):
    local, remote = _s3_project(tmp_path, s3_server, s3)
    for loaded in (local, remote):
        result = run_pipeline(loaded)
        assert result.success and all(check_results(result).values())
    for name in ("shop_customers", "shop_customers_hist", "shop_orders", "shop_orders_hist"):
        pd.testing.assert_frame_equal(_table(local, name), _table(remote, name), obj=name)


@pytest.mark.pipeline
def test_s3_objects_load_once_a_new_object_loads_only_its_rows_and_a_bad_one_is_named(tmp_path, s3_server, s3):
    from cdp_assets.connectors.loading import LOG_TABLE

    local, remote = _s3_project(tmp_path, s3_server, s3, hold_back="2024-06-02")
    assert run_pipeline(remote).success
    wh = DuckDBWarehouse(path=str(remote.duckdb_path))
    before = wh.row_count(TableRef("acme_src", "shop_customers"))
    assert run_pipeline(remote).success  # nothing new: nothing loaded
    log = wh.fetch(
        f'SELECT object, mode, records_loaded FROM "acme_src"."{LOG_TABLE}" '
        'WHERE source = \'shop\' AND mode = \'incremental\''
    )
    assert list(log["records_loaded"].astype(int))[-2:] == [0, 0]
    new = next((tmp_path / "local" / "data" / "shop" / "customers").glob("*2024-06-02*"))
    s3.upload_file(str(new), BUCKET, f"landing/shop/customers/{new.name}")
    assert run_pipeline(remote).success
    after = _table(remote, "shop_customers")
    assert len(after) == before + len(pd.read_csv(new))
    s3.put_object(Bucket=BUCKET, Key="landing/shop/customers/broken.csv", Body=b'id,updated_at\n1,"2024-07-01\n')
    result = run_pipeline(remote)
    assert not result.success
    errors = [e.event_specific_data.error for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    text = " ".join(f"{err.message} {err.cause.message if err.cause else ''}" for err in errors)
    assert f"s3://{BUCKET}/landing/shop/customers/broken.csv" in text and "line 2" in text


def test_the_s3_prefix_sensor_requests_each_objects_ingestion_once(tmp_path, s3_server, s3):
    _, remote = _s3_project(tmp_path, s3_server, s3, hold_back="2024-06-02")
    defs = build_definitions(remote)
    sensor = defs.resolve_sensor_def("shop_s3_prefix")
    instance = DagsterInstance.ephemeral()
    first = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    assert sorted(r.tags["cdp/object"] for r in first.run_requests) == ["customers", "orders"]
    again = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor))
    assert not again.run_requests
    new = next((tmp_path / "local" / "data" / "shop" / "orders").glob("*2024-06-02*"))
    s3.upload_file(str(new), BUCKET, f"landing/shop/orders/{new.name}")
    third = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor))
    assert [r.tags["cdp/object"] for r in third.run_requests] == ["orders"] and third.run_requests[0].tags[
        "cdp/new_files"
    ] == "1"
    assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}


@pytest.mark.pipeline
def test_s3_objects_are_loaded_by_content_an_unchanged_re_upload_loads_nothing_a_changed_one_its_new_rows(
    tmp_path, s3_server, s3
):
    """The ETag decides what is downloaded; the loader's per-file content hash decides what is
    loaded, as for local files: the two agree on re-uploads and late rows."""
    from cdp_assets.connectors.loading import FILES_TABLE, LOG_TABLE

    _, remote = _s3_project(tmp_path, s3_server, s3)
    defs = build_definitions(remote)
    keys = [k for k in defs.resolve_all_asset_keys() if k.path[-1] in ("shop_customers", "shop_customers_hist")]

    def ingest() -> bool:  # the customers' ingestion only: a real in-process run
        job = defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=DagsterInstance.ephemeral(), asset_selection=keys).success

    assert ingest()
    wh = DuckDBWarehouse(path=str(remote.duckdb_path))
    key = "landing/shop/customers/customers_2024-06-01.csv"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    before = wh.row_count(TableRef("acme_src", "shop_customers"))

    def last_load() -> dict:
        log = wh.fetch(
            f'SELECT * FROM "acme_src"."{LOG_TABLE}" WHERE object = '
            '\'customers\' AND mode = \'incremental\' ORDER BY loaded_at'
        )
        return log.iloc[-1].to_dict()

    s3.put_object(Bucket=BUCKET, Key=key, Body=body)  # the same bytes again: a new last-modified
    assert ingest()
    assert last_load()["records_loaded"] == 0 and "2 file(s) unchanged since they were loaded" in last_load()["message"]
    late_row = body.decode().splitlines()[1].split(",")
    late_row[0], late_row[-1] = "C999001", "2024-05-01 00:00:00"  # older than the watermark
    s3.put_object(Bucket=BUCKET, Key=key, Body=body + (",".join(late_row) + "\n").encode())
    assert ingest()
    assert (last_load()["records_loaded"], last_load()["records_skipped_duplicate"]) == (
        1,
        len(body.decode().splitlines()) - 1,
    )
    assert wh.row_count(TableRef("acme_src", "shop_customers")) == before + 1
    versions = wh.fetch(
        f'SELECT file, file_version FROM "acme_src"."{FILES_TABLE}" '
        'WHERE file = \'customers_2024-06-01.csv\' ORDER BY loaded_at'
    )
    assert len(versions) == 2 and versions["file_version"].nunique() == 2
