"""The json rule, declared output types and the table-level options (join, metadata columns,
null tokens per table): rendered without a database and executed by DuckDB (docs/staging.md).
The same on local Spark and the Treasure Data fake: engines/test_cross_engine_staging.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from cdp_assets.config.loader import ConfigError, load_config
from cdp_assets.config.models import DimensionJoin, PipelineConfig, StagingRule
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef, get_dialect
from cdp_assets.sql.staging import (
    DATE_OUTPUT_TYPES,
    OUTPUT_TYPES,
    Dimension,
    TableExtras,
    json_keys_sql,
    json_paths_from_profile,
    staged_columns,
    staging_sql,
)

SRC = TableRef("acme_src", "shop_customers_hist_union")
STG = TableRef("acme_stg", "shop_customers_stg")


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> DuckDBWarehouse:
    w = DuckDBWarehouse(path=str(tmp_path_factory.mktemp("staging_options") / "wh.duckdb"))
    with w.session():
        yield w


def _types(wh, ref: TableRef) -> dict[str, str]:
    df = wh.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [ref.schema, ref.name],
    )
    return dict(zip(df["column_name"], df["data_type"]))


# ---------------------------------------------------------------------------- json

DOCS = [
    (
        "1",
        json.dumps(
            {
                "plan": "gold",
                "tags": ["a", "b c", 3],
                "address": {"city": "Oslo", "geo": {"lat": 1}},
                "$price": "9.5",
                "favourite colour": "teal",
                "vip": True,
            }
        ),
    ),
    ("2", json.dumps({"plan": "silver", "tags": [], "address": {"city": "Lyon"}})),
    ("3", "not json"),
    ("4", "N/A"),
    ("5", None),
    ("6", json.dumps({"plan": None, "tags": "not an array", "address": "flat"})),
    ("7", "  " + json.dumps({"plan": "bronze"}) + "  "),
]
JSON_RULE = StagingRule(
    rule="json",
    columns=["attrs"],
    paths={
        "plan": "plan",
        "city": "address.city",
        "tags": {"keys": ["tags"], "type": "array"},
        "price": ["$price"],
        "colour": ["favourite colour"],
        "vip": "vip",
    },
)


@pytest.fixture(scope="module")
def json_staged(wh) -> pd.DataFrame:
    src, stg = TableRef("acme_src", "json_hist_union"), TableRef("acme_stg", "json_stg")
    wh.write_dataframe(src, pd.DataFrame(DOCS, columns=["id", "attrs"]).astype("string"))
    wh.build_table(stg, staging_sql(src, ["id", "attrs"], {"attrs": JSON_RULE}))
    assert _types(wh, stg) == {
        "id": "VARCHAR",
        "attrs": "VARCHAR",
        **{f"attrs_{k}": ("VARCHAR[]" if k == "tags" else "VARCHAR") for k in JSON_RULE.paths},
    }
    return wh.fetch(f"SELECT * FROM {stg.sql}").set_index("id")


def _cell(df: pd.DataFrame, row: str, col: str):
    v = df.loc[row, col]
    if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
        return list(v)
    return None if pd.isna(v) else v


@pytest.mark.parametrize(
    ("row", "column", "expected"),
    [
        ("1", "attrs_plan", "gold"),
        ("1", "attrs_city", "Oslo"),
        ("1", "attrs_tags", ["a", "b c", "3"]),  # an array stays an array (of text)
        ("1", "attrs_price", "9.5"),  # a key with $
        ("1", "attrs_colour", "teal"),  # a key with a space
        ("1", "attrs_vip", "true"),
        ("2", "attrs_tags", []),
        ("2", "attrs_price", None),  # an absent key
        ("3", "attrs_plan", None),  # not JSON: NULL, no error
        ("4", "attrs_plan", None),  # a null token
        ("5", "attrs_plan", None),
        ("6", "attrs_plan", None),  # JSON null
        ("6", "attrs_tags", None),  # not an array
        ("6", "attrs_city", None),  # address is no object
        ("7", "attrs_plan", "bronze"),  # trimmed
    ],
)
def test_json_listed_paths(json_staged, row, column, expected):
    assert _cell(json_staged, row, column) == expected


def test_json_every_key_down_to_the_depth_is_profiled_once(wh, json_staged):
    src = TableRef("acme_src", "json_hist_union")
    rule = StagingRule(rule="json", columns=["attrs"])
    rows = list(wh.fetch(json_keys_sql(src, rule)).itertuples(index=False))
    paths = json_paths_from_profile("attrs", rule, rows)
    assert {k: (p.keys, p.type) for k, p in paths.items()} == {
        "address": (["address"], "text"),  # a string in one row: also kept as text
        "address_city": (["address", "city"], "text"),
        "address_geo": (["address", "geo"], "text"),  # an object at the depth: JSON text
        "favourite_colour": (["favourite colour"], "text"),
        "plan": (["plan"], "text"),
        "price": (["$price"], "text"),
        "tags": (["tags"], "array"),
        "vip": (["vip"], "text"),
    }
    stg = TableRef("acme_stg", "json_all_stg")
    wh.build_table(
        stg, staging_sql(src, ["id", "attrs"], {"attrs": rule}, extras=TableExtras(json_paths={"attrs": paths}))
    )
    got = wh.fetch(f"SELECT * FROM {stg.sql}").set_index("id")
    assert got.loc["1", "attrs_address_geo"] == '{"lat":1}' and got.loc["1", "attrs_price"] == "9.5"
    assert list(got.loc["1", "attrs_tags"]) == ["a", "b c", "3"]
    shallow = json_paths_from_profile("attrs", rule.model_copy(update={"depth": 1}), rows)
    assert sorted(shallow) == ["address", "favourite_colour", "plan", "price", "tags", "vip"]


def test_json_without_paths_needs_its_profile_to_render():
    rule = StagingRule(rule="json", columns=["attrs"])
    with pytest.raises(ValueError, match=r"json rule\(s\) \['attrs'\].*list no paths"):
        staging_sql(SRC, ["attrs"], {"attrs": rule})


@pytest.mark.parametrize("dialect", ["spark", "databricks", "hive", "trino"])
def test_json_renders_without_duckdb_functions(dialect):
    sql = get_dialect(dialect).render(staging_sql(SRC, ["attrs"], {"attrs": JSON_RULE}))
    assert "json_valid" not in sql.lower()
    assert ("TRY(JSON_PARSE(" if dialect == "trino" else "GET_JSON_OBJECT(") in sql
    assert ('$["favourite colour"]' if dialect == "trino" else "favourite colour") in sql


def test_json_options_are_checked():
    with pytest.raises(ValidationError, match="one column"):
        StagingRule(rule="json", columns=["a", "b"])
    with pytest.raises(ValidationError, match="'depth'"):
        StagingRule(rule="json", columns=["a"], paths={"x": "x"}, depth=3)
    with pytest.raises(ValidationError, match="'paths'"):
        StagingRule(rule="text", columns=["a"], paths={"x": "x"})
    with pytest.raises(ValidationError, match="json path output name"):
        StagingRule(rule="json", columns=["a"], paths={"a b": "x"})
    with pytest.raises(ValidationError, match="keys"):
        StagingRule(rule="json", columns=["a"], paths={"x": ["it's"]})


# ---------------------------------------------------------------------------- config


def _config(**extra) -> dict:
    return {
        "client": "acme",
        "sources": [
            {"name": "shop", "connector": {"kind": "local_files", "path": "x"}, "objects": ["customers", "products"]}
        ],
        **extra,
    }


def _field_error(raw: dict, tmp_path) -> str:
    import yaml

    (tmp_path / "x").mkdir(exist_ok=True)
    path = tmp_path / "cdp.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


@pytest.mark.parametrize(
    ("join", "field", "message"),
    [
        (
            {"table": "shop_orders", "on": {"id": "id"}, "columns": ["name"]},
            "staging_tables.shop_customers.join[0].table",
            "no source object produces 'shop_orders'",
        ),
        (
            {"table": "shop_customers", "on": {"id": "id"}, "columns": ["name"]},
            "staging_tables.shop_customers.join[0].table",
            "cannot join its own staged table",
        ),
        (
            {"table": "shop_products", "on": {"id": "id"}, "columns": ["cleaned_nme"]},
            "staging_tables.shop_customers.join[0].columns[0]",
            "'cleaned_nme' is not a staging output of 'shop_products'",
        ),
        (
            {"table": "shop_products", "on": {"standardized_mail": "id"}, "columns": ["name"]},
            "staging_tables.shop_customers.join[0].on",
            "'standardized_mail' is not a staging output of 'shop_customers'",
        ),
        (
            {"table": "shop_products", "on": {"id": "id"}, "columns": ["name", "name"]},
            "staging_tables.shop_customers.join[0].columns",
            "listed more than once",
        ),
    ],
)
def test_join_is_checked_at_config_load_naming_the_field(tmp_path, join, field, message):
    raw = _config(
        staging={"shop_products": {"name": {"rule": "name", "columns": ["name"]}}},
        staging_tables={"shop_customers": {"join": [join]}},
    )
    text = _field_error(raw, tmp_path)
    assert f"{field}: " in text and message in text


def test_joins_in_a_cycle_are_refused(tmp_path):
    join = lambda t: {"join": [{"table": t, "on": {"id": "id"}, "columns": ["name"]}]}  # noqa: E731
    text = _field_error(
        _config(staging_tables={"shop_customers": join("shop_products"), "shop_products": join("shop_customers")}),
        tmp_path,
    )
    assert "in a cycle (shop_customers -> shop_products -> shop_customers)" in text


def test_json_without_paths_is_refused_at_load_where_it_cannot_be_profiled(tmp_path):
    raw = _config(
        engine={"kind": "treasure_data"}, staging={"shop_customers": {"attrs": {"rule": "json", "columns": ["attrs"]}}}
    )
    text = _field_error(raw, tmp_path)
    assert "staging.shop_customers.attrs.paths: " in text and "duckdb" in text and "treasure_data" in text


def test_table_null_tokens_apply_to_rules_without_their_own():
    p = PipelineConfig(
        **_config(
            staging={
                "shop_customers": {
                    "note": {"rule": "text", "columns": ["note"]},
                    "own": {"rule": "text", "columns": ["note"], "null_tokens": ["x"]},
                }
            },
            staging_tables={"shop_customers": {"null_tokens": ["?", "unknown"]}},
        )
    )
    rules = p.staging_rules_of("shop_customers")
    assert rules["note"].tokens == ("?", "unknown") and rules["own"].tokens == ("x",)
    assert PipelineConfig(
        **_config(staging={"shop_customers": {"note": {"rule": "text", "columns": ["note"]}}})
    ).staging_rules_of("shop_customers")["note"].tokens == ("", "NULL", "NONE", "N/A", "NA", "-")


def test_table_null_tokens_on_duckdb(wh):
    p = PipelineConfig(
        **_config(
            staging={
                "shop_customers": {
                    "note": {"rule": "text", "columns": ["note"]},
                    "flag": {"rule": "boolean", "columns": ["flag"], "null_tokens": ["N/A"]},
                }
            },
            staging_tables={"shop_customers": {"null_tokens": ["?"]}},
        )
    )
    src, stg = TableRef("acme_src", "tokens_hist_union"), TableRef("acme_stg", "tokens_stg")
    wh.write_dataframe(src, pd.DataFrame({"note": ["?", "N/A", " ok "], "flag": ["?", "N/A", "yes"]}).astype("string"))
    rules = p.staging_rules_of("shop_customers")
    wh.build_table(stg, staging_sql(src, ["note", "flag"], rules))
    got = wh.fetch(f"SELECT * FROM {stg.sql}").set_index("note")
    # the table's "?" replaces the default tokens ("N/A" is a value); the flag keeps its own list
    assert got.loc["N/A", "cleaned_note"] == "n/a" and got.loc[" ok ", "cleaned_note"] == "ok"
    assert pd.isna(got.loc["?", "cleaned_note"])
    from cdp_assets.sql.staging import rule_counts, rule_counts_sql

    counts = rule_counts(staged_columns(rules), wh.fetch(rule_counts_sql(stg, staged_columns(rules))).iloc[0])
    assert (
        counts["cleaned_flag"]["unparseable"] == 1 and counts["cleaned_flag"]["null"] == 1
    )  # "?" unreadable, "N/A" absent


# ---------------------------------------------------------------------------- join, metadata, types

CUSTOMERS = [
    # id, email, product, updated_at
    ("1", " Ann@X.com ", " P1 ", "2024-01-01"),
    ("2", "bob@y.org", "p2", "2024-01-02"),
    ("3", "c@z.net", "N/A", "2024-01-03"),  # a null token never matches
    ("4", "d@z.net", "p9", "2024-01-04"),  # no such product
]
PRODUCTS = [("P1", "Lamp", "10"), ("p1", "Lamp (old)", "9"), ("p2", "Desk", "€ 120,50"), ("N/A", "Nothing", "0")]
PRODUCT_RULES = {"price": StagingRule(rule="number", columns=["price"], decimal_comma=True)}


@pytest.fixture(scope="module")
def joined(wh) -> tuple[pd.DataFrame, str]:
    loaded_at = pd.Timestamp("2024-06-01 12:00:00")
    src = TableRef("acme_src", "join_customers_hist_union")
    prod_src, prod_stg = TableRef("acme_src", "join_products_hist_union"), TableRef("acme_stg", "join_products_stg")
    df = pd.DataFrame(CUSTOMERS, columns=["id", "email", "product", "updated_at"]).astype("string")
    df["_cdp_loaded_at"] = pd.Series([loaded_at] * len(df), dtype="datetime64[us]")
    wh.write_dataframe(src, df)
    wh.write_dataframe(prod_src, pd.DataFrame(PRODUCTS, columns=["sku", "title", "price"]).astype("string"))
    wh.build_table(prod_stg, staging_sql(prod_src, ["sku", "title", "price"], PRODUCT_RULES))
    rules = {"email": StagingRule(rule="email", columns=["email"])}
    dims = (
        Dimension(
            DimensionJoin(table="shop_products", on={"product": "sku"}, columns=["title", "cleaned_price"]),
            prod_stg,
            tuple(wh.columns(prod_stg)),
            "staging_tables.shop_customers.join[0]",
        ),
        Dimension(
            DimensionJoin(table="shop_products", **{"from": "source"}, on={"product": "sku"}, columns=["price"]),
            prod_src,
            tuple(wh.columns(prod_src)),
            "staging_tables.shop_customers.join[1]",
        ),
    )
    sql = staging_sql(src, wh.columns(src), rules, extras=TableExtras(dimensions=dims, source_system="shop"))
    wh.build_table(STG, sql)
    return wh.fetch(f"SELECT * FROM {STG.sql}").set_index("id"), sql


def test_join_adds_dim_columns_on_cleaned_keys(joined):
    t, _ = joined
    # " P1 " matches "P1" and "p1": one dimension row per cleaned key, the smallest by its columns
    assert (
        t.loc["1", "title_dim"] == "Lamp"
        and t.loc["1", "cleaned_price_dim"] == 10.0
        and t.loc["1", "price_dim"] == "10"
    )
    assert t.loc["2", "title_dim"] == "Desk" and t.loc["2", "cleaned_price_dim"] == 120.5
    assert t.loc[["3", "4"], "title_dim"].isna().all()
    assert len(t) == len(CUSTOMERS)


def test_metadata_columns(joined):
    t, _ = joined
    assert (t["source_system"] == "shop").all()
    assert (t["load_timestamp"] == pd.Timestamp("2024-06-01 12:00:00")).all()


def test_metadata_without_loader_columns_is_null(wh):
    src = TableRef("acme_src", "plain_hist_union")
    wh.write_dataframe(src, pd.DataFrame({"id": ["1"]}).astype("string"))
    got = wh.fetch(staging_sql(src, ["id"], {}, extras=TableExtras(source_system="shop")))
    assert got["source_system"].tolist() == ["shop"] and got["load_timestamp"].isna().all()
    with pytest.raises(ValueError, match=r"\['source_system'\] exist already"):
        staging_sql(src, ["id", "source_system"], {}, extras=TableExtras(source_system="shop"))


def test_join_names_a_missing_dimension_column_at_build():
    dim = Dimension(
        DimensionJoin(table="shop_products", on={"product": "sku"}, columns=["colour"]),
        TableRef("acme_stg", "p"),
        ("sku", "title"),
        "staging_tables.shop_customers.join[0]",
    )
    with pytest.raises(ValueError, match=r"staging_tables.shop_customers.join\[0\].columns: \['colour'\] not in"):
        staging_sql(SRC, ["id", "product"], {}, extras=TableExtras(dimensions=(dim,)))
    other_key = Dimension(dim.join.model_copy(update={"on": {"item": "sku"}}), dim.ref, dim.columns, dim.field)
    with pytest.raises(ValueError, match=r"join\[0\].on: 'item' is not a column of the staged"):
        staging_sql(SRC, ["id", "product"], {}, extras=TableExtras(dimensions=(other_key,)))


ALL_RULES = {
    "email": StagingRule(rule="email", columns=["email"], valid_flag=True),
    "phone": StagingRule(rule="phone", columns=["email"]),
    "name": StagingRule(rule="name", columns=["email"]),
    "text": StagingRule(rule="text", columns=["email"]),
    "hash": StagingRule(rule="hash", columns=["email"]),
    "number": StagingRule(rule="number", columns=["id"]),
    "boolean": StagingRule(rule="boolean", columns=["id"]),
    "seen": StagingRule(rule="date", columns=["updated_at"]),
}


def test_every_output_has_its_declared_type(wh, joined):
    src = TableRef("acme_src", "join_customers_hist_union")
    stg = TableRef("acme_stg", "typed_stg")
    wh.build_table(stg, staging_sql(src, wh.columns(src), ALL_RULES, extras=TableExtras(source_system="shop")))
    types = _types(wh, stg)
    declared = {c.output: c.sql_type for c in staged_columns(ALL_RULES)}
    assert {c: types[c] for c in declared} == declared
    assert declared["cleaned_number"] == OUTPUT_TYPES["number"] == "DOUBLE"
    assert declared["cleaned_boolean"] == "BOOLEAN" and declared["standardized_email_valid"] == "BOOLEAN"
    assert [declared[f"seen_{k}"] for k in DATE_OUTPUT_TYPES] == ["TIMESTAMP", "BIGINT", "DATE"]
    assert (types["source_system"], types["load_timestamp"]) == ("VARCHAR", "TIMESTAMP")
    # the casts are in the statement every dialect runs
    assert "CAST(" in get_dialect("spark").render(staging_sql(src, wh.columns(src), {"n": ALL_RULES["number"]}))


# ---------------------------------------------------------------------------- the assets and the report


def test_staging_assets_profile_json_join_and_report_rule_counts(tmp_path):
    """The staging assets in-process on DuckDB: a json rule without paths is profiled, the
    join's dimension is built first and joined, the table's null tokens and metadata columns
    apply, and the report shows each rule's parsed / no-input / unparseable counts."""
    import types

    import yaml
    from dagster import DagsterInstance, materialize

    from cdp_assets.assets.report import _staging_rule_lines
    from cdp_assets.assets.staging import build_staging_asset, staging_ref
    from cdp_assets.assets.hist_union import hist_union_ref

    (tmp_path / "data").mkdir()
    raw = _config(
        staging={
            "shop_customers": {
                "attrs": {"rule": "json", "columns": ["attrs"], "depth": 1},
                "opt_in": {"rule": "boolean", "columns": ["opt_in"]},
            },
            "shop_products": {"price": {"rule": "number", "columns": ["price"], "decimal_comma": True}},
        },
        staging_tables={
            "shop_customers": {
                "null_tokens": ["?"],
                "metadata_columns": True,
                "join": [{"table": "shop_products", "on": {"product": "sku"}, "columns": ["title", "cleaned_price"]}],
            }
        },
    )
    raw["sources"][0]["connector"]["path"] = "data"
    raw["engine"] = {"duckdb": {"path": str(tmp_path / "wh.duckdb")}}
    (tmp_path / "cdp.yml").write_text(yaml.safe_dump(raw))
    loaded = load_config(tmp_path / "cdp.yml")
    (source, customers), (_, products) = loaded.pipeline.source_objects()
    wh = DuckDBWarehouse(path=str(loaded.duckdb_path))
    with wh.session():
        df = pd.DataFrame(
            {
                "id": ["1", "2", "3"],
                "product": ["p1", " P1", "x"],
                "opt_in": ["yes", "?", "maybe"],
                "attrs": [
                    json.dumps({"plan": "gold", "colour code": "red"}),
                    json.dumps({"plan": "silver", "tags": [1]}),
                    "?",
                ],
            }
        ).astype("string")
        df["_cdp_loaded_at"] = pd.Series([pd.Timestamp("2024-06-01")] * 3, dtype="datetime64[us]")
        wh.write_dataframe(hist_union_ref(loaded, source, customers), df)
        wh.write_dataframe(
            hist_union_ref(loaded, source, products),
            pd.DataFrame({"sku": ["P1"], "title": ["Lamp"], "price": ["1.234,5"]}).astype("string"),
        )
    assets = [build_staging_asset(loaded, source, customers), build_staging_asset(loaded, source, products)]
    instance = DagsterInstance.ephemeral()
    result = materialize(
        assets, resources={"warehouse": DuckDBWarehouse(path=str(loaded.duckdb_path))}, instance=instance
    )
    assert result.success
    with wh.session():
        t = wh.fetch(f"SELECT * FROM {staging_ref(loaded, source, customers).sql}").set_index("id")
    assert (
        t.loc["1", "attrs_plan"] == "gold"
        and t.loc["1", "attrs_colour_code"] == "red"
        and list(t.loc["2", "attrs_tags"]) == ["1"]
    )
    assert (
        t.loc["2", "title_dim"] == "Lamp"
        and t.loc["1", "cleaned_price_dim"] == 1234.5
        and pd.isna(t.loc["3", "title_dim"])
    )
    assert (t["source_system"] == "shop").all() and (t["load_timestamp"] == pd.Timestamp("2024-06-01")).all()
    keys = [a.key for a in assets]
    lines = _staging_rule_lines(types.SimpleNamespace(instance=instance), loaded, keys)
    # "?" is the table's null token: no input, not unparseable; "maybe" is unparseable
    assert "| `shop_customers_stg` | `cleaned_opt_in` | boolean | 1 | 1 | 1 | 50.0 |" in lines
    assert "| `shop_products_stg` | `cleaned_price` | number | 1 | 0 | 0 | 0.0 |" in lines


def test_unification_may_read_metadata_and_dim_columns_of_a_staged_table(tmp_path):
    """The columns the table options add are known at config load like the rules' outputs."""
    import yaml

    from cdp_assets_tests.config.test_config import valid_config

    cfg = valid_config(tmp_path)
    stg = cfg["unification"]["tables"][0]
    table = stg["table"].removesuffix("_stg")
    cfg.setdefault("staging_tables", {})[table] = {"metadata_columns": True}
    stg["key_columns"].append({"column": "source_system", "key": stg["key_columns"][0]["key"]})
    (tmp_path / "cdp.yml").write_text(yaml.safe_dump(cfg))
    load_config(tmp_path / "cdp.yml")
    stg["key_columns"][-1]["column"] = "source_sytem"
    (tmp_path / "cdp.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="'source_sytem' is not in"):
        load_config(tmp_path / "cdp.yml")


def test_join_source_columns_are_checked_at_load_when_the_files_tell(tmp_path):
    import yaml

    for obj, header in (("customers", "id,product,updated_at"), ("products", "sku,title,updated_at")):
        (tmp_path / "data" / obj).mkdir(parents=True)
        (tmp_path / "data" / obj / "a.csv").write_text(header + "\n")
    raw = _config(
        staging_tables={
            "shop_customers": {
                "join": [
                    {"table": "shop_products", "from": "source", "on": {"product": "sku"}, "columns": ["title"]},
                ]
            }
        }
    )
    raw["sources"][0]["connector"]["path"] = "data"
    path = tmp_path / "cdp.yml"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).pipeline.staging_tables["shop_customers"].join[0].from_ == "source"
    raw["staging_tables"]["shop_customers"]["join"][0]["columns"] = ["title", "titel"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError,
        match=r"staging_tables.shop_customers.join\[0\].columns\[1\]: column 'titel' is not in "
        r"shop_products .*did you mean 'title'",
    ):
        load_config(path)
    raw["staging_tables"]["shop_customers"]["join"][0].update(columns=["title"], on={"produkt": "sku"})
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"join\[0\].on: column 'produkt' is not in shop_customers's staged table"):
        load_config(path)
