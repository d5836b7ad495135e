"""Files already in S3 are read by the Databricks warehouse itself (``read_files``), never fetched
through Python: which engines do it (a capability), and the statements they send, checked by
rendering. Not run here: local Spark has no ``read_files`` and no S3 access (no hadoop-aws), so the
S3 source on local Spark and the other engines still fetch the objects (test_s3.py)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from cdp_assets.config import load_config
from cdp_assets.connectors.s3_in_warehouse import reads_in_warehouse
from cdp_assets.engines.factory import build_warehouse
from cdp_assets.sql.cloud_files import file_rows_sql, read_files_sql, rejected_rows_sql, s3_folder_uri
from cdp_assets_tests.conftest import write_project


def _parsed(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="databricks")


def _read_files_path(tree: exp.Expression) -> str:
    (call,) = [f for f in tree.find_all(exp.Anonymous) if f.name.lower() == "read_files"]
    return call.expressions[0].this


def test_an_incremental_read_binds_the_watermark_and_start_date_and_quotes_the_path():
    uri = s3_folder_uri("acme-raw", "exports/2024", "customers", historical=False)
    assert uri == "s3://acme-raw/exports/2024/customers/"
    sql = file_rows_sql(uri, "csv", "updated_at", since=True, start_date=True)
    assert sql.count("?") == 2  # watermark and start date are parameters, never SQL text
    tree = _parsed(sql)
    assert _read_files_path(tree) == uri
    assert "format => 'csv'" in sql and "header => true" in sql and "recursiveFileLookup => false" in sql
    assert "inferColumnTypes => false" in sql  # text columns, as the Python readers load CSV
    assert "_metadata.file_name AS `_cdp_file`" in sql and "EXCEPT (`updated_at`, _rescued_data)" in sql
    assert s3_folder_uri("acme-raw", "", "customers", historical=True) == "s3://acme-raw/customers/historical/"
    first = file_rows_sql(uri, "parquet", "updated_at", since=False, start_date=False)
    assert "?" not in first and "format => 'parquet'" in first and "inferColumnTypes" not in first


def test_a_path_with_a_quote_stays_one_literal():
    uri = s3_folder_uri("acme-raw", "it's/here", "customers", historical=False)
    tree = _parsed(read_files_sql(uri, "jsonl").join(["SELECT * FROM ", ""]))
    assert _read_files_path(tree) == uri and len(list(tree.find_all(exp.Select))) == 1


@pytest.mark.parametrize(
    "bucket, prefix, obj, error",
    [
        ("Acme_Raw", "", "customers", "not a valid bucket name"),
        ("acme-raw", "a/../b", "customers", "safe set"),
        ("acme-raw", "a b", "customers", "safe set"),
        ("acme-raw", "", "cust/omers", "object"),
    ],
)
def test_a_path_outside_s3s_rules_is_refused(bucket, prefix, obj, error):
    with pytest.raises(ValueError, match=error):
        s3_folder_uri(bucket, prefix, obj, historical=False)


def test_rejected_rows_name_the_file_and_the_reason():
    sql = rejected_rows_sql("s3://acme-raw/customers/", "csv", "updated_at")
    tree = _parsed(sql)
    assert [a.alias for a in tree.expressions] == ["file", "row", "reason", "raw"]
    assert "WHERE _rescued_data IS NOT NULL OR try_cast(`updated_at` AS TIMESTAMP) IS NULL" in sql
    with pytest.raises(ValueError, match="format"):
        read_files_sql("s3://acme-raw/customers/", "xlsx")


@pytest.mark.parametrize(
    "engine, reads",
    [
        ({"kind": "databricks"}, True),
        ({"kind": "databricks", "databricks": {"read_s3_in_warehouse": False}}, False),
        ({"kind": "databricks", "databricks": {"connection": "local_spark"}}, False),
        ({"kind": "duckdb"}, False),
        ({"kind": "treasure_data"}, False),
    ],
)
def test_only_a_databricks_sql_warehouse_reads_s3_itself(tmp_path, engine, reads):
    def mutate(c):
        c.update(engine=engine)
        c["sources"][0]["connector"] = {"kind": "s3", "bucket": "acme-raw", "prefix": "exports", "format": "csv"}

    loaded = load_config(write_project(tmp_path, records=10, mutate=mutate))
    wh = build_warehouse(loaded)
    s3_source, *others = loaded.pipeline.sources
    assert wh.reads_cloud_files is reads
    assert reads_in_warehouse(wh, s3_source) is reads
    assert not any(reads_in_warehouse(wh, s) for s in others)  # local folders are never read by the warehouse
