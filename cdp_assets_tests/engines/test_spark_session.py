"""The process's local Spark session is shared by the Spark tests of a test process
(conftest.shared_spark_session): each user must get it as a new session would be, which
``reset_spark_session`` gives without a JVM start."""

from __future__ import annotations

import os

import pytest

from cdp_assets.engines.spark import get_spark_session, reset_spark_session
from cdp_assets_tests.conftest import shared_spark_session

pytestmark = pytest.mark.spark


def test_a_reset_session_is_as_empty_as_a_new_one_and_keeps_its_own_settings():
    with shared_spark_session():
        spark = get_spark_session("/ignored")  # the process's session, whatever the dir
        warehouse = spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:")
        spark.sql("CREATE SCHEMA s1")
        spark.sql("CREATE TABLE s1.t USING parquet AS SELECT 1 AS a")
        spark.sql("CREATE TABLE default.d USING parquet AS SELECT 1 AS a")
        spark.sql("CREATE VIEW default.v AS SELECT 1 AS a")
        spark.sql("SELECT 2 AS b").createOrReplaceTempView("tv")
        spark.sql("SELECT 3 AS c").createOrReplaceGlobalTempView("gv")
        spark.table("s1.t").cache()
        spark.sql("SET spark.sql.shuffle.partitions=7")
        spark.sql("SET spark.sql.session.timeZone=Europe/Paris")
        os.makedirs(os.path.join(warehouse, "s2.db", "left_by_a_failed_write"))
        assert len(spark.catalog.listTables("default")) == 3

        reset_spark_session()

        assert [d.name for d in spark.catalog.listDatabases()] == ["default"]
        assert spark.catalog.listTables("default") == []
        assert spark.catalog.listTables("global_temp") == []
        assert spark.conf.get("spark.sql.shuffle.partitions") == "2"  # the session's own, not Spark's 200
        assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
        assert os.listdir(warehouse) == []
        # The same names can be created again (no LOCATION_ALREADY_EXISTS), with new contents.
        spark.sql("CREATE SCHEMA s1")
        spark.sql("CREATE TABLE s1.t USING parquet AS SELECT 5 AS a")
        spark.sql("CREATE SCHEMA s2")
        spark.sql("CREATE TABLE s2.t USING parquet AS SELECT 6 AS a")
        assert [r.a for r in spark.table("s1.t").collect()] == [5]
        assert [r.a for r in spark.table("s2.t").collect()] == [6]
    assert [d.name for d in spark.catalog.listDatabases()] == ["default"]  # emptied at the end too
