"""DataFrame loads through a Unity Catalog Volume: dagster-databricks' DatabricksClientResource and
databricks-sdk's Files API client, run unchanged against a fake of the workspace's Files API on
loopback (cdp_assets_tests/fakes/databricks_workspace.py), which enforces the documented limits.

What is not run here: the ``COPY INTO`` on a Databricks SQL warehouse (local Spark has no COPY
INTO); its text is checked by sqlglot's Databricks dialect.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlglot
from dagster import DagsterInstance, EnvVar, asset, materialize
from dagster_databricks import DatabricksClientResource

from cdp_assets.config import ConfigError, load_config
from cdp_assets.engines.base import WarehouseAuthError, WarehouseError
from cdp_assets.engines.databricks import DatabricksWarehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.resources.databricks_workspace import (
    SDK_MULTIPART_MIN_BYTES,
    DatabricksVolumeStager,
    DatabricksVolumeWarehouse,
    parquet_parts,
)
from cdp_assets.sql.dialects import DIALECTS, TableRef
from cdp_assets.sql.volume_load import copy_into_from_volume
from cdp_assets_tests.conftest import shared_spark_session, write_project
from cdp_assets_tests.fakes.databricks_workspace import FakeDatabricksWorkspace

TOKEN = "dapi0123456789abcdef-secret-7a7a"
VOLUME = "/Volumes/main/cdp/staging"


@pytest.fixture
def workspace():
    fake = FakeDatabricksWorkspace(token=TOKEN, volumes={("main", "cdp", "staging")})
    url = fake.start()
    fake.url = url
    yield fake
    fake.stop()


def stager(fake: FakeDatabricksWorkspace, token: str = TOKEN, volume: str = VOLUME) -> DatabricksVolumeStager:
    return DatabricksVolumeStager(workspace=DatabricksClientResource(host=fake.url, token=token), volume_path=volume)


def mixed_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """Every column kind the engine writes, with missing values; random text defeats compression."""
    rng = np.random.default_rng(seed)
    text = (
        pd.Series(rng.integers(0, 2**63, size=rows).astype(str), dtype=object)
        + "-"
        + pd.Series([f"{v:032x}" for v in rng.integers(0, 2**62, size=rows)], dtype=object)
    )
    text[rng.random(rows) < 0.1] = None
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype="int64"),
            "score": rng.random(rows),
            "email": text,
            "active": rng.random(rows) < 0.5,
            "updated_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, size=rows), unit="s"),
        }
    )


def test_a_frame_is_staged_as_parquet_parts_under_the_one_shot_limit_and_removed(workspace):
    df = mixed_frame(150_000)
    volume = stager(workspace)
    folder = volume.stage_frame(df, "shop_customers")
    assert folder.startswith(f"{VOLUME}/cdp_staging/shop_customers_")

    files = volume.staged_files(folder)
    assert len(files) >= 2 and files == sorted(workspace.files) and all(f.startswith(folder + "/") for f in files)
    # Each part went up in one PUT under the SDK's multipart threshold; no multipart attempt.
    assert len(workspace.upload_sizes) == len(files)
    assert (
        max(workspace.upload_sizes) < SDK_MULTIPART_MIN_BYTES and sum(workspace.upload_sizes) > SDK_MULTIPART_MIN_BYTES
    )
    assert workspace.multipart_requests == 0

    # The parts, in order, are the frame: every row once, every value and kind kept.
    back = pd.concat([pq.read_table(io.BytesIO(workspace.files[f])).to_pandas() for f in files], ignore_index=True)
    expected = df.assign(updated_at=df["updated_at"].astype("datetime64[us]"))
    pd.testing.assert_frame_equal(back.assign(updated_at=back["updated_at"].astype("datetime64[us]")), expected)

    volume.remove(folder)
    assert workspace.files == {} and folder not in workspace.directories
    assert ("DELETE", f"/api/2.0/fs/directories{folder}") in workspace.requests


def test_a_listing_follows_the_pages_of_at_most_1000_entries(workspace):
    volume = stager(workspace)
    folder = f"{VOLUME}/cdp_staging/many"
    for i in range(1005):
        workspace.files[f"{folder}/part-{i:05d}.parquet"] = b"x"
    workspace.directories.update({f"{VOLUME}/cdp_staging", folder})
    assert len(volume.staged_files(folder)) == 1005
    assert sum(1 for method, path in workspace.requests if method == "GET" and path.endswith("/many")) == 2


def test_parts_split_until_they_fit_and_a_row_too_large_alone_is_named():
    df = mixed_frame(2_000)
    parts = list(parquet_parts(df, 20_000))
    assert len(parts) > 2 and all(len(p) <= 20_000 for p in parts)
    back = pd.concat([pq.read_table(io.BytesIO(p)).to_pandas() for p in parts], ignore_index=True)
    assert back["customer_id"].tolist() == list(range(2_000))
    incompressible = np.random.default_rng(1).bytes(30_000).hex()
    big = pd.DataFrame({"text": ["a", incompressible]})
    with pytest.raises(WarehouseError, match=r"row 1 alone is .* over the 20,000-byte part limit"):
        list(parquet_parts(big, 20_000))


def test_a_refused_token_names_the_variable_and_never_the_token(workspace):
    with pytest.raises(WarehouseAuthError) as err:
        stager(workspace, token="dapi-wrong-token-9999").stage_frame(mixed_frame(10), "t")
    message = str(err.value)
    assert "$DATABRICKS_TOKEN" in message and "Invalid access token" in message
    assert "dapi-wrong-token-9999" not in message and "9999" not in message and TOKEN not in message
    assert workspace.files == {}


def test_a_missing_volume_says_which_and_how_to_create_it(workspace):
    with pytest.raises(WarehouseError) as err:
        stager(workspace, volume="/Volumes/main/cdp/nope").stage_frame(mixed_frame(10), "t")
    assert "Volume 'main.cdp.nope' does not exist" in str(err.value)
    assert "CREATE VOLUME `main`.`cdp`.`nope`" in str(err.value)


def test_a_staged_file_is_never_overwritten(workspace):
    from databricks.sdk import errors

    files = DatabricksClientResource(host=workspace.url, token=TOKEN).get_client().workspace_client.files
    files.upload(f"{VOLUME}/a.parquet", io.BytesIO(b"one"), overwrite=False)
    with pytest.raises(errors.DatabricksError, match="already exists"):
        files.upload(f"{VOLUME}/a.parquet", io.BytesIO(b"two"), overwrite=False)
    assert workspace.files[f"{VOLUME}/a.parquet"] == b"one"


def test_copy_into_names_the_table_and_the_folder_and_parses_as_databricks_sql():
    dialect = DIALECTS["databricks"]
    sql = copy_into_from_volume(
        dialect, TableRef("acme_src", "shop_customers"), f"{VOLUME}/cdp_staging/shop_customers_ab12"
    )
    assert sql == (
        "COPY INTO `acme_src`.`shop_customers` FROM '/Volumes/main/cdp/staging/cdp_staging/shop_customers_ab12' "
        "FILEFORMAT = PARQUET FORMAT_OPTIONS ('mergeSchema' = 'false') COPY_OPTIONS ('mergeSchema' = 'false')"
    )
    parsed = sqlglot.parse_one(sql, read="databricks")
    assert isinstance(parsed, sqlglot.exp.Copy)
    for bad in (f"{VOLUME}/x'; DROP TABLE t; --", "/tmp/files", "/Volumes/main/cdp", f"{VOLUME}/../other"):
        with pytest.raises(ValueError, match="staging folder"):
            copy_into_from_volume(dialect, TableRef("acme_src", "t"), bad)


def _databricks_config(tmp_path, **databricks):
    def mutate(cfg):
        cfg["engine"] = {"kind": "databricks", "databricks": databricks}

    return write_project(tmp_path, records=10, mutate=mutate)


def test_staging_volume_in_the_config_builds_the_engine_that_loads_through_it(tmp_path):
    loaded = load_config(_databricks_config(tmp_path, staging_volume=VOLUME, auth="pat"))
    engine = build_warehouse(loaded)
    assert isinstance(engine, DatabricksVolumeWarehouse)
    assert engine.staging.volume_path == VOLUME
    # The workspace client reads the same variables as the SQL connection, when a run starts.
    assert engine.staging.workspace.host == EnvVar("DATABRICKS_HOST") and engine.staging.workspace.token == EnvVar(
        "DATABRICKS_TOKEN"
    )
    assert engine.server_hostname == EnvVar("DATABRICKS_HOST")


def test_a_dagster_run_stages_through_the_workspace_named_by_the_environment(tmp_path, workspace, monkeypatch):
    """Config -> factory -> EnvVars resolved when the run starts -> DatabricksClientResource ->
    databricks-sdk -> the workspace; the token appears nowhere in the run's events."""
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("DATABRICKS_HTTP_PATH", "/sql/1.0/warehouses/abc")  # the SQL connection is not opened
    engine = build_warehouse(load_config(_databricks_config(tmp_path, staging_volume=VOLUME)))
    seen: dict[str, list[str]] = {}

    @asset
    def staged(warehouse: DatabricksVolumeWarehouse):
        folder = warehouse.staging.stage_frame(mixed_frame(100), "orders")
        seen["files"] = warehouse.staging.staged_files(folder)
        warehouse.staging.remove(folder)

    instance = DagsterInstance.ephemeral()
    result = materialize([staged], resources={"warehouse": engine}, instance=instance)
    assert result.success
    assert len(seen["files"]) == 1 and seen["files"][0].startswith(f"{VOLUME}/cdp_staging/orders_")
    assert workspace.files == {} and len(workspace.upload_sizes) == 1
    events = instance.get_records_for_run(result.run_id).records
    assert events and not any(TOKEN in str(r.event_log_entry) for r in events)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"staging_volume": "/Volumes/main/cdp"}, "staging_volume"),
        ({"staging_volume": "dbfs:/tmp/x"}, "/Volumes/<catalog>/<schema>/<volume>"),
        ({"staging_volume": VOLUME, "connection": "local_spark"}, "staging_volume needs connection: sql_warehouse"),
    ],
)
def test_a_bad_staging_volume_is_a_config_error_naming_the_field(tmp_path, settings, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_databricks_config(tmp_path, **settings))
    assert expected in str(err.value) and "engine.databricks" in str(err.value)


# ---------------------------------------------------------------------- on local Spark


@pytest.fixture(scope="module")
def spark_dir():
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        yield str(Path(d) / "warehouse")


def test_staged_parts_load_into_the_engines_table_types_and_a_failed_load_leaves_no_files(
    workspace, spark_dir, tmp_path
):
    """Spark reads the staged Parquet into a table created with the engine's column types (what
    COPY INTO does on Databricks); the engine's own load, whose COPY INTO local Spark cannot run,
    fails with the statement and still deletes what it staged."""
    spark = DatabricksWarehouse(
        local_spark_dir=spark_dir,
        sql_dialect="spark",
        table_format="parquet",
        optimize_tables=False,
        use_catalog=False,
        catalog=None,
    )
    ref = TableRef("vol_src", "customers")
    df = mixed_frame(3_000)
    spark.write_dataframe(ref, df.iloc[:0])  # CREATE TABLE with the engine's types, no rows

    folder = stager(workspace).stage_frame(df, "customers")
    local = tmp_path / "staged"
    local.mkdir()
    for path, data in workspace.files.items():
        (local / path.rsplit("/", 1)[1]).write_bytes(data)
    columns = ", ".join(f"`{c}`" for c in df.columns)
    spark.execute(f"INSERT INTO `vol_src`.`customers` ({columns}) SELECT {columns} FROM parquet.`{local}`")
    got = spark.query("SELECT * FROM `vol_src`.`customers` ORDER BY customer_id")
    assert got["customer_id"].tolist() == list(range(3_000))
    assert got["email"].isna().tolist() == df["email"].isna().tolist()
    assert got["email"].dropna().tolist() == df["email"].dropna().tolist()
    assert got["active"].tolist() == df["active"].tolist() and np.allclose(got["score"], df["score"])
    assert [str(t) for t in got["updated_at"]] == [str(t) for t in df["updated_at"]]
    stager(workspace).remove(folder)

    engine = DatabricksVolumeWarehouse(
        local_spark_dir=spark_dir,
        sql_dialect="spark",
        table_format="parquet",
        optimize_tables=False,
        use_catalog=False,
        catalog=None,
        staging=stager(workspace),
    )
    uploads = len(workspace.upload_sizes)
    with pytest.raises(WarehouseError) as err:
        engine.append_frames([(ref, df.iloc[:10])])
    assert "COPY INTO `vol_src`.`customers` FROM '/Volumes/main/cdp/staging/cdp_staging/customers_" in str(
        err.value.sql
    )
    assert len(workspace.upload_sizes) == uploads + 1  # it staged the rows, then
    assert workspace.files == {}  # deleted them although the statement failed
    assert len(spark.query("SELECT * FROM `vol_src`.`customers`")) == 3_000
