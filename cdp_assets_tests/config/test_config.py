"""Tests for ``cdp_assets.config.load_config``: the bundled example, env overrides, and bad configs.

Every bad configuration is built from the bundled example by changing exactly one thing, so the
error asserted is the one the case is about. Each ConfigError must name the file, the field and
the fix.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.config import ConfigError, load_config
from cdp_assets.config.loader import CONFIG_ENV, DUCKDB_PATH_ENV

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "acme"
EXAMPLE_CONFIG = EXAMPLE_DIR / "cdp.yml"
EXAMPLE_DATA = EXAMPLE_DIR / "data"

_BASE = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
_UNIFY = yaml.safe_load((EXAMPLE_DIR / "unify.yml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may set these; the tests decide them explicitly.
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(DUCKDB_PATH_ENV, raising=False)


def valid_config(tmp: Path) -> dict[str, Any]:
    """The example as a dict, loadable from any folder: absolute data paths, inline unification."""
    cfg = copy.deepcopy(_BASE)
    for source in cfg["sources"]:
        source["connector"]["path"] = str(EXAMPLE_DIR / source["connector"]["path"])
    del cfg["unification_file"]
    cfg["unification"] = copy.deepcopy(_UNIFY)
    cfg["engine"]["duckdb"]["path"] = str(tmp / "cdp.duckdb")
    cfg["report"]["path"] = str(tmp / "report.md")
    return cfg


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- the example


def test_bundled_example_loads() -> None:
    loaded = load_config(EXAMPLE_CONFIG)

    assert loaded.pipeline.client == "acme"
    assert len(loaded.pipeline.source_objects()) == 4
    assert loaded.pipeline.object_names == ["shop_customers", "shop_orders", "loyalty_members", "web_events"]
    assert loaded.unification is not None
    assert loaded.unification.name == "customer_360"
    assert loaded.config_path == EXAMPLE_CONFIG.resolve()

    assert loaded.duckdb_path.is_absolute()
    assert loaded.duckdb_path == (REPO / ".cdp" / "acme.duckdb").resolve()
    assert loaded.report_path == (REPO / ".cdp" / "report.md").resolve()

    # Relative connector paths resolve against the config file's folder, not the cwd.
    assert loaded.source_paths["shop"] == EXAMPLE_DATA.resolve() / "shop"
    assert loaded.source_paths["shop"].is_absolute()
    assert set(loaded.source_paths) == {"shop", "loyalty", "web"}


def test_relative_paths_do_not_depend_on_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config(EXAMPLE_CONFIG)
    assert loaded.source_paths["shop"] == EXAMPLE_DATA.resolve() / "shop"


def test_without_path_or_env_the_example_is_used() -> None:
    assert load_config().config_path == EXAMPLE_CONFIG.resolve()


def test_cdp_config_env_selects_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = valid_config(tmp_path)
    cfg["client"] = "beta"
    for table in cfg["unification"]["tables"]:
        table["database"] = "beta_stg"  # the schemas follow the client name
    path = write_yaml(tmp_path / "beta.yml", cfg)
    monkeypatch.setenv(CONFIG_ENV, str(path))

    loaded = load_config()

    assert loaded.config_path == path.resolve()
    assert loaded.pipeline.client == "beta"
    assert loaded.pipeline.stg_schema == "beta_stg"
    assert loaded.duckdb_path == tmp_path / "cdp.duckdb"


def test_cdp_config_env_naming_a_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    monkeypatch.setenv(CONFIG_ENV, str(missing))
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert str(missing) in str(exc.value)
    assert CONFIG_ENV in str(exc.value)


def test_cdp_duckdb_path_env_overrides_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    override = tmp_path / "elsewhere" / "override.duckdb"
    monkeypatch.setenv(DUCKDB_PATH_ENV, str(override))

    assert load_config(EXAMPLE_CONFIG).duckdb_path == override

    monkeypatch.setenv(CONFIG_ENV, str(write_yaml(tmp_path / "cdp.yml", valid_config(tmp_path))))
    assert load_config().duckdb_path == override


def test_inline_unification_equals_unification_file(tmp_path: Path) -> None:
    inline = load_config(write_yaml(tmp_path / "cdp.yml", valid_config(tmp_path)))
    from_file = load_config(EXAMPLE_CONFIG)
    assert inline.unification == from_file.unification


# ---------------------------------------------------------------------------- bad configs

Mutation = Callable[[dict[str, Any], Path], None]


def _set(*path_and_value: Any) -> Mutation:
    """A mutation that sets cfg[p0][p1]... = value."""
    *path, value = path_and_value

    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        node = cfg
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _append_object_twice(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["sources"][0]["objects"].append({"name": "customers", "primary_key": ["customer_id"]})


def _append_merge_key(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["canonical_ids"][0]["merge_by_keys"].append("fax")


def _add_unproduced_table(cfg: dict[str, Any], tmp: Path) -> None:
    # A plain typo of a staged table: not taken for an existing warehouse table.
    cfg["unification"]["tables"].append(
        {"database": "acme_stg", "table": "shop_customer_stg", "key_columns": [{"column": "email", "key": "email"}]}
    )


def _missing_unification_file(cfg: dict[str, Any], tmp: Path) -> None:
    del cfg["unification"]
    cfg["unification_file"] = "no_such_unify.yml"


def _misspelt_sources(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["sourcs"] = cfg["sources"]


def _both_ids(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["master_tables"][0]["persistent_id"] = "unified_id"


def _neither_id(cfg: dict[str, Any], tmp: Path) -> None:
    del cfg["unification"]["master_tables"][0]["canonical_id"]


def _unknown_staging_table(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["staging"]["shop_refunds"] = {"email": {"rule": "email", "columns": ["email"]}}


def _both_unification_forms(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification_file"] = str(EXAMPLE_DIR / "unify.yml")


def _unify_file_with_bad_key(cfg: dict[str, Any], tmp: Path) -> None:
    unify = copy.deepcopy(cfg.pop("unification"))
    unify["tables"][1]["key_columns"][0]["key"] = "mail"
    write_yaml(tmp / "unify.yml", unify)
    cfg["unification_file"] = "unify.yml"


def _duplicate_source(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["sources"].append(copy.deepcopy(cfg["sources"][0]))


def _keys_per_table(n: int) -> Mutation:
    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        keys = [{"name": f"k{i}"} for i in range(n)]
        cfg["unification"]["keys"] += keys
        cfg["unification"]["tables"][0]["key_columns"] += [{"column": "customer_id", "key": k["name"]} for k in keys]

    return mutate


def _tables(n: int) -> Mutation:
    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        first = cfg["unification"]["tables"][0]
        cfg["unification"]["tables"] += [copy.deepcopy(first) for _ in range(n - len(cfg["unification"]["tables"]))]

    return mutate


def _append(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        node = cfg
        for part in path:
            node = node[part]
        node.append(copy.deepcopy(value))

    return mutate


def _key_in_many_tables(n: int) -> Mutation:
    """The email key in ``n`` tables' key_columns (Treasure Data allows 32 per key)."""

    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        first = cfg["unification"]["tables"][0]
        for i in range(n - 4):
            cfg["unification"]["tables"].append({**copy.deepcopy(first), "as": f"copy_{i}"})

    return mutate


def _id_merging_unknown_id(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["canonical_ids"].append(
        {"name": "household_id", "merge_by_canonical_ids": ["nope_id"], "merge_by_keys": ["email"]}
    )


def _ids_merging_each_other(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["canonical_ids"][0]["merge_by_canonical_ids"] = ["household_id"]
    cfg["unification"]["canonical_ids"].append(
        {"name": "household_id", "merge_by_canonical_ids": ["unified_id"], "merge_by_keys": ["phone"]}
    )


def _id_merging_one_id_without_keys(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["canonical_ids"].append(
        {"name": "household_id", "merge_by_canonical_ids": ["unified_id"], "merge_by_keys": []}
    )


def _persistent_with_canonical_merge(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["persistent_ids"] = [
        {"name": "pid", "merge_by_keys": ["email"], "merge_by_canonical_ids": ["unified_id"]}
    ]


def _persistent_time_twice(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["persistent_ids"] = [{"name": "pid", "merge_by_keys": ["email", "time", "time"]}]


def _persistent_time_and_merged_ids(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["persistent_ids"] = [
        {"name": "pid_a", "merge_by_keys": ["email"]},
        {"name": "pid_b", "merge_by_keys": ["phone"]},
        {"name": "pid", "merge_by_keys": ["time"], "merge_by_persistent_ids": ["pid_a", "pid_b"]},
    ]


def _canonical_time_key(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["canonical_ids"][0]["merge_by_keys"].append("time")


def _attribute_from_unknown_id(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["master_tables"][0]["attributes"].append({"name": "other_id", "source_canonical_id": "nope_id"})


def _attribute_with_two_sources(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["master_tables"][0]["attributes"][0]["source_canonical_id"] = "unified_id"


def _attribute_without_source(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["master_tables"][0]["attributes"].append({"name": "nothing"})


def _unresolved_variable(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["unification"]["tables"][0]["database"] = "${client_short_name}_${stg}"
    cfg["unification_variables"] = {"client_short_name": "acme"}


def _no_ids(cfg: dict[str, Any], tmp: Path) -> None:
    del cfg["unification"]["canonical_ids"]
    del cfg["unification"]["master_tables"]


def _duplicate_first(path: tuple[Any, ...]) -> Mutation:
    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        node = cfg
        for part in path:
            node = node[part]
        node.append(copy.deepcopy(node[0]))

    return mutate


BAD_CASES: list[tuple[str, Mutation, str, str]] = [
    # (id, mutation, field path in the message, fragment of the fix)
    ("client-uppercase", _set("client", "Acme"), "client", "use lowercase letters"),
    ("client-dash", _set("client", "ac-me"), "client", "use lowercase letters, digits and underscores"),
    ("client-quote", _set("client", "acme'; drop table x; --"), "client", "use lowercase letters"),
    ("client-semicolon", _set("client", "acme;x"), "client", "for example 'acme'"),
    ("client-missing", lambda cfg, tmp: cfg.pop("client"), "client", "add this field"),
    ("engine-kind", _set("engine", "kind", "snowflake"), "engine.kind", "'duckdb', 'databricks' or 'treasure_data'"),
    (
        "td-query-engine",
        lambda cfg, tmp: cfg["engine"].update(kind="treasure_data", treasure_data={"query_engine": "spark"}),
        "engine.treasure_data.query_engine",
        "'presto', 'trino' or 'hive'",
    ),
    (
        "td-region",
        lambda cfg, tmp: cfg["engine"].update(treasure_data={"region": "mars"}),
        "engine.treasure_data.region",
        "'us', 'eu', 'tokyo' or 'ap02'",
    ),
    (
        "td-poll-zero",
        lambda cfg, tmp: cfg["engine"].update(treasure_data={"poll_seconds": 0}),
        "engine.treasure_data.poll_seconds",
        "greater than 0",
    ),
    (
        "td-apikey-env-the-key-itself",
        lambda cfg, tmp: cfg["engine"].update(treasure_data={"apikey_env": "1/abc123"}),
        "engine.treasure_data.apikey_env",
        "never the secret itself",
    ),
    (
        "connector-kind",
        _set("sources", 0, "connector", "kind", "ftp"),
        "sources[0].connector",
        "use one of the listed kinds",
    ),
    ("object-twice", _append_object_twice, "sources[0].objects[2]", "list each once"),
    (
        "object-name-space",
        _set("sources", 0, "objects", 0, "name", "my customers"),
        "sources[0].objects[0].name",
        "use lowercase letters",
    ),
    ("no-objects", _set("sources", 2, "objects", []), "sources[2].objects", "at least 1 item"),
    ("source-twice", _duplicate_source, "sources", "give each source a unique name"),
    ("source-mode", _set("sources", 1, "mode", "sometimes"), "sources[1].mode", "use one of the listed values"),
    (
        "key-not-in-keys",
        _set("unification", "tables", 0, "key_columns", 0, "key", "mail"),
        "unification.tables[0].key_columns[0].key",
        "add it to keys or use one of ['email'",
    ),
    (
        "merge-key-not-in-keys",
        _append_merge_key,
        "unification.canonical_ids[0].merge_by_keys[4]",
        "add it to keys or use one of",
    ),
    ("table-not-produced", _add_unproduced_table, "unification.tables[4].table", "did you mean 'shop_customers_stg'?"),
    (
        "database-not-produced",
        _set("unification", "tables", 0, "database", "acme_sgt"),
        "unification.tables[0].database",
        "did you mean 'acme_stg'?",
    ),
    (
        "missing-connector-folder",
        _set("sources", 1, "connector", "path", "data/no_such_folder"),
        "sources[1].connector.path",
        "create it or fix the path",
    ),
    (
        "nul-in-connector-path",
        _set("sources", 0, "connector", "path", "data/\x00shop"),
        "sources[0].connector.path",
        "fix the path",
    ),
    ("missing-unification-file", _missing_unification_file, "unification_file", "fix the path in unification_file"),
    (
        "both-unification-forms",
        _both_unification_forms,
        "(top level)",
        "set either unification (inline) or unification_file",
    ),
    ("misspelt-field", _misspelt_sources, "sourcs", "check its spelling"),
    (
        "misspelt-nested-field",
        _set("engine", "duckdb", "pth", "x.duckdb"),
        "engine.duckdb.pth",
        "remove it or check its spelling",
    ),
    (
        "merge-iterations-0",
        _set("unification", "canonical_ids", 0, "merge_iterations", 0),
        "unification.canonical_ids[0].merge_iterations",
        "greater than or equal to 1",
    ),
    (
        "merge-iterations-50",
        _set("unification", "canonical_ids", 0, "merge_iterations", 50),
        "unification.canonical_ids[0].merge_iterations",
        "less than or equal to 49",
    ),
    (
        "invalid-texts-128",
        _set("unification", "keys", 0, "invalid_texts", [f"junk{i}" for i in range(128)]),
        "unification.keys[0].invalid_texts",
        "at most 127 items",
    ),
    ("master-both-ids", _both_ids, "unification.master_tables[0]", "exactly one of canonical_id or persistent_id"),
    ("master-neither-id", _neither_id, "unification.master_tables[0]", "exactly one of canonical_id or persistent_id"),
    (
        "master-unknown-id",
        _set("unification", "master_tables", 0, "canonical_id", "other_id"),
        "unification.master_tables[0].canonical_id",
        "not defined in canonical_ids",
    ),
    (
        "staging-table-not-produced",
        _unknown_staging_table,
        "staging.shop_refunds",
        "one of ['loyalty_members', 'shop_customers'",
    ),
    (
        "staging-rule",
        _set("staging", "shop_orders", "email", "rule", "zip"),
        "staging.shop_orders.email.rule",
        "use one of the listed values",
    ),
    (
        "bad-valid-regexp",
        _set("unification", "keys", 0, "valid_regexp", "([a-z"),
        "unification.keys[0].valid_regexp",
        "is not a valid regular expression",
    ),
    (
        "space-in-key-column",
        _set("unification", "tables", 0, "key_columns", 0, "column", "standardized email"),
        "unification.tables[0].key_columns[0].column",
        "use letters, digits and underscores only",
    ),
    (
        "bad-unification-name",
        _set("unification", "name", "Customer-360"),
        "unification.name",
        "use letters, digits and underscores",
    ),
    (
        "coverage-over-100",
        _set("checks", "coverage_min_pct", 150),
        "checks.coverage_min_pct",
        "less than or equal to 100",
    ),
    # wrong types
    ("client-number", _set("client", 123), "client", "string"),
    ("engine-not-a-mapping", _set("engine", "duckdb"), "engine", "mapping"),
    ("threads-text", _set("engine", "duckdb", "threads", "two"), "engine.duckdb.threads", "integer"),
    ("threads-zero", _set("engine", "duckdb", "threads", 0), "engine.duckdb.threads", "greater than or equal to 1"),
    ("sources-mapping", _set("sources", {"shop": {}}), "sources", "list"),
    ("objects-text", _set("sources", 0, "objects", "customers"), "sources[0].objects", "list"),
    ("coverage-text", _set("checks", "coverage_min_pct", "ninety"), "checks.coverage_min_pct", "number"),
    ("start-date-text", _set("sources", 0, "start_date", "yesterday"), "sources[0].start_date", "datetime"),
    ("keys-text", _set("unification", "keys", "email"), "unification.keys", "list"),
    ("report-list", _set("report", []), "report", "mapping"),
    (
        "cap-negative",
        _set("unification_options", {"max_rows_per_value": -1}),
        "unification_options.max_rows_per_value",
        "greater than or equal to 1",
    ),
    ("mode-bool", _set("sources", 0, "mode", True), "sources[0].mode", "use one of the listed values"),
    # unknown fields
    (
        "unknown-connector-field",
        _set("sources", 0, "connector", "folder", "x"),
        "sources[0].connector.folder",
        "check its spelling",
    ),
    (
        "unknown-key-field",
        _set("unification", "keys", 0, "regex", ".+"),
        "unification.keys[0].regex",
        "check its spelling",
    ),
    (
        "unknown-staging-field",
        _set("staging", "shop_customers", "email", "colums", ["email"]),
        "staging.shop_customers.email.colums",
        "check its spelling",
    ),
    ("unknown-checks-field", _set("checks", "coverage", 90), "checks.coverage", "check its spelling"),
    # identifiers with quotes, semicolons, spaces or non-ASCII
    ("client-non-ascii", _set("client", "acmé"), "client", "use lowercase letters"),
    ("source-semicolon", _set("sources", 0, "name", "shop;"), "sources[0].name", "use lowercase letters"),
    (
        "primary-key-quote",
        _set("sources", 0, "objects", 0, "primary_key", ["customer_id'"]),
        "sources[0].objects[0].primary_key",
        "use letters, digits and underscores only",
    ),
    (
        "incremental-field-space",
        _set("sources", 0, "incremental_field", "updated at"),
        "sources[0].incremental_field",
        "use letters, digits and underscores only",
    ),
    ("key-name-space", _set("unification", "keys", 0, "name", "e mail"), "unification.keys[0].name", "use"),
    (
        "column-double-quote",
        _set("unification", "tables", 0, "key_columns", 0, "column", 'standardized_email"'),
        "unification.tables[0].key_columns[0].column",
        "use letters, digits and underscores only",
    ),
    (
        "canonical-id-non-ascii",
        _set("unification", "canonical_ids", 0, "name", "unified_ïd"),
        "unification.canonical_ids[0].name",
        "use",
    ),
    (
        "master-name-space",
        _set("unification", "master_tables", 0, "name", "customer master"),
        "unification.master_tables[0].name",
        "use",
    ),
    (
        "staging-column-semicolon",
        _set("staging", "shop_customers", "email", "columns", ["e;mail"]),
        "staging.shop_customers.email.columns",
        "use letters, digits and underscores only",
    ),
    (
        "catalog-semicolon",
        _set("engine", "databricks", {"catalog": "main; drop"}),
        "engine.databricks.catalog",
        "use letters, digits and underscores only",
    ),
    (
        "token-pasted-as-env-name",
        _set("engine", "databricks", {"token_env": "dapi0123456789abcdef0123"}),
        "engine.databricks.token_env",
        "never the secret itself",
    ),
    (
        "webhook-url-as-env-name",
        _set("alerts", {"webhook_url_env": "https://hooks.example/x"}),
        "alerts.webhook_url_env",
        "never the secret itself",
    ),
    # unify.yml limits
    ("keys-per-table-33", _keys_per_table(30), "unification.tables[0].key_columns", "at most 32"),
    ("tables-256", _tables(256), "unification.tables", "at most 255"),
    # unknown references
    (
        "master-source-table-unknown",
        _set("unification", "master_tables", 0, "attributes", 0, "source_columns", 0, "table", "nope_stg"),
        "unification.master_tables[0].attributes[0].source_columns[0].table",
        "use one of",
    ),
    ("persistent-id-unknown", _both_ids, "unification.master_tables[0]", "exactly one of"),
    # duplicates
    ("duplicate-key", _duplicate_first(("unification", "keys")), "unification.keys[4].name", "list it once"),
    (
        "duplicate-canonical-id",
        _duplicate_first(("unification", "canonical_ids")),
        "unification.canonical_ids[1].name",
        "list it once",
    ),
    (
        "duplicate-unification-table",
        _duplicate_first(("unification", "tables")),
        "unification.tables[4].table",
        "list it once",
    ),
    (
        "duplicate-master-table",
        _duplicate_first(("unification", "master_tables")),
        "unification.master_tables[1].name",
        "list it once",
    ),
    # Treasure Data's documented rules (api-docs.treasuredata.com/en/tools/idu/p10_limitations and the syntax page)
    (
        "do-not-merge-key-not-first",
        _set("unification", "canonical_ids", 0, "do_not_merge_key", "customer_id"),
        "unification.canonical_ids[0].do_not_merge_key",
        "must be the first element of merge_by_keys",
    ),
    (
        "array-elements-11",
        _set("unification", "master_tables", 0, "attributes", 0, "array_elements", 11),
        "unification.master_tables[0].attributes[0].array_elements",
        "less than or equal to 10",
    ),
    (
        "duplicate-attribute",
        _duplicate_first(("unification", "master_tables", 0, "attributes")),
        "unification.master_tables[0].attributes[5].name",
        "list it once",
    ),
    ("key-in-33-tables", _key_in_many_tables(33), "unification.tables[32].key_columns[0].key", "more than 32 times"),
    (
        "merge-iterations-text",
        _set("unification", "canonical_ids", 0, "merge_iterations", "many"),
        "unification.canonical_ids[0].merge_iterations",
        "integer",
    ),
    (
        "merge-by-unknown-canonical-id",
        _id_merging_unknown_id,
        "unification.canonical_ids[1].merge_by_canonical_ids[0]",
        "use one of ['unified_id']",
    ),
    ("merge-by-ids-cycle", _ids_merging_each_other, "unification.canonical_ids[1].merge_by_canonical_ids", "cycle"),
    (
        "merge-by-one-id-without-keys",
        _id_merging_one_id_without_keys,
        "unification.canonical_ids[1].merge_by_keys",
        "two or more ids",
    ),
    (
        "persistent-merges-canonical-ids",
        _persistent_with_canonical_merge,
        "unification.persistent_ids[0].merge_by_canonical_ids",
        "use merge_by_persistent_ids",
    ),
    ("persistent-time-twice", _persistent_time_twice, "unification.persistent_ids[0].merge_by_keys", "list each once"),
    (
        "persistent-time-with-merged-ids",
        _persistent_time_and_merged_ids,
        "unification.persistent_ids[2].merge_by_keys",
        "'time' cannot be in merge_by_keys together with merge_by_persistent_ids",
    ),
    ("canonical-id-time-key", _canonical_time_key, "unification.canonical_ids[0].merge_by_keys[4]", "add it to keys"),
    (
        "attribute-from-unknown-id",
        _attribute_from_unknown_id,
        "unification.master_tables[0].attributes[5].source_canonical_id",
        "is not defined in canonical_ids",
    ),
    (
        "attribute-two-sources",
        _attribute_with_two_sources,
        "unification.master_tables[0].attributes[0].source_canonical_id",
        "exactly one of source_columns, source_canonical_id",
    ),
    (
        "attribute-no-source",
        _attribute_without_source,
        "unification.master_tables[0].attributes[5].source_columns",
        "exactly one of source_columns",
    ),
    (
        "regexp-too-long",
        _set("unification", "keys", 0, "valid_regexp", "a" * 513),
        "unification.keys[0].valid_regexp",
        "at most 512",
    ),
    # references that the staged tables' columns (source headers plus staging outputs) rule out
    (
        "key-column-typo",
        _set("unification", "tables", 0, "key_columns", 0, "column", "standardized_emial"),
        "unification.tables[0].key_columns[0].column",
        "did you mean 'standardized_email'?",
    ),
    (
        "incremental-column-typo",
        _set("unification", "tables", 0, "incremental_columns", ["updated"]),
        "unification.tables[0].incremental_columns[0]",
        "did you mean 'updated_at'?",
    ),
    (
        "master-column-typo",
        _set("unification", "master_tables", 0, "attributes", 0, "source_columns", 0, "column", "standardized_emal"),
        "unification.master_tables[0].attributes[0].source_columns[0].column",
        "did you mean 'standardized_email'?",
    ),
    (
        "key-column-not-staged",
        _set("unification", "tables", 0, "key_columns", 2, "column", "cleaned_fist_name"),
        "unification.tables[0].key_columns[2].column",
        "did you mean 'cleaned_first_name'?",
    ),
    ("unresolved-variable", _unresolved_variable, "unification.tables[0].database", "${stg} has no value"),
    ("no-ids", _no_ids, "unification", "define at least one entry in canonical_ids or persistent_ids"),
    (
        "duplicate-staging-column",
        _set("staging", "shop_customers", "email", "columns", ["email", "email"]),
        "staging.shop_customers.email.columns",
        "once",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "fix"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_config_names_the_field_and_the_fix(mutate: Mutation, field: str, fix: str, tmp_path: Path) -> None:
    cfg = valid_config(tmp_path)
    mutate(cfg, tmp_path)
    path = write_yaml(tmp_path / "cdp.yml", cfg)

    with pytest.raises(ConfigError) as exc:
        load_config(path)

    message = str(exc.value)
    assert str(path) in message, message
    # The field path is followed by ':' (or '.database'/'.table' style wording from the loader).
    assert f"{field}:" in message or f"{field} " in message, message
    assert fix in message, message


def test_bad_case_ids_are_unique() -> None:
    assert len({c[0] for c in BAD_CASES}) == len(BAD_CASES) >= 50


@pytest.mark.parametrize("mutate", [c[1] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_every_bad_config_is_a_cli_error_naming_the_file_never_a_stack_dump(
    mutate: Mutation, tmp_path: Path, capsys
) -> None:
    from cdp_assets.cli import main

    cfg = valid_config(tmp_path)
    mutate(cfg, tmp_path)
    path = write_yaml(tmp_path / "cdp.yml", cfg)
    assert main(["render-sql", "--config", str(path), "--out", str(tmp_path / "sql")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:"), err
    assert "Traceback (most recent call last)" not in err and '  File "' not in err, err


def test_a_valid_config_written_the_same_way_loads(tmp_path: Path) -> None:
    # The control for the cases above: the unmutated dict loads.
    loaded = load_config(write_yaml(tmp_path / "cdp.yml", valid_config(tmp_path)))
    assert loaded.pipeline.client == "acme"
    assert loaded.source_paths["shop"] == EXAMPLE_DATA / "shop"


def test_errors_in_unification_file_name_that_file(tmp_path: Path) -> None:
    cfg = valid_config(tmp_path)
    _unify_file_with_bad_key(cfg, tmp_path)
    path = write_yaml(tmp_path / "cdp.yml", cfg)

    with pytest.raises(ConfigError) as exc:
        load_config(path)

    message = str(exc.value)
    assert str(tmp_path / "unify.yml") in message
    assert "tables[1].key_columns[0].key:" in message
    assert "'mail' is not defined in keys" in message


def test_relative_unification_file_resolves_against_config_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = valid_config(tmp_path)
    unify = cfg.pop("unification")
    (tmp_path / "conf").mkdir()
    write_yaml(tmp_path / "conf" / "my_unify.yml", unify)
    cfg["unification_file"] = "my_unify.yml"
    path = write_yaml(tmp_path / "conf" / "cdp.yml", cfg)
    monkeypatch.chdir(REPO)

    loaded = load_config(path)

    assert loaded.unification is not None
    assert loaded.unification.name == "customer_360"


# ---------------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize(
    "text",
    ["client: [unclosed\n", "client: acme\n  engine: {kind: duckdb\n", "\tclient: acme\n"],
    ids=["unclosed-list", "bad-indent", "tab"],
)
def test_not_yaml_names_the_file(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "not valid YAML" in str(exc.value)


@pytest.mark.parametrize(
    "text",
    ["- client: acme\n- engine: duckdb\n", "just a string\n", "42\n", ""],
    ids=["list", "string", "number", "empty"],
)
def test_top_level_not_a_mapping_names_the_file(text: str, tmp_path: Path) -> None:
    path = tmp_path / "cdp.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "expected a mapping of fields at the top level" in str(exc.value)


def test_unification_file_that_is_a_list_names_that_file(tmp_path: Path) -> None:
    cfg = valid_config(tmp_path)
    del cfg["unification"]
    cfg["unification_file"] = "unify.yml"
    write_yaml(tmp_path / "unify.yml", [_UNIFY])
    with pytest.raises(ConfigError) as exc:
        load_config(write_yaml(tmp_path / "cdp.yml", cfg))
    assert str(tmp_path / "unify.yml") in str(exc.value)
    assert "expected a mapping" in str(exc.value)


def test_binary_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cdp.yml"
    path.write_bytes(b"client: \xff\xfe\x00acme\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "UTF-8" in str(exc.value)


def test_binary_unification_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = valid_config(tmp_path)
    del cfg["unification"]
    cfg["unification_file"] = "unify.parquet"
    (tmp_path / "unify.parquet").write_bytes(b"PAR1\xff\xfe\x00\x15")
    with pytest.raises(ConfigError) as exc:
        load_config(write_yaml(tmp_path / "cdp.yml", cfg))
    assert str(tmp_path / "unify.parquet") in str(exc.value)
    assert "save it as UTF-8 YAML" in str(exc.value)


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert str(tmp_path) in str(exc.value)
    assert "does not exist" in str(exc.value)


# ---------------------------------------------------------------------------- fuzzing

_TOP_LEVEL_FIELDS = ["client", "engine", "sources", "staging", "checks", "report", "unification", "unification_file"]
_PATHS = [".", "/", "", "data", "cdp.yml", "unify.yml", "binary.dat", "missing/x", "\x00", "~", "~nobody_here/x"]

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["acme", "duckdb", "local_files", "s3", "table", "email", "both", "2024-01-01", *_PATHS])
)
_value = st.recursive(
    _leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(_TOP_LEVEL_FIELDS + ["name", "kind", "path", "objects"]) | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_path_value = st.sampled_from(_PATHS) | st.text(max_size=8)
_random_config = st.dictionaries(st.sampled_from(_TOP_LEVEL_FIELDS) | st.text(max_size=8), _value, max_size=6)


def _all_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _all_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _all_paths(v, (*prefix, i))
    return out


_TEMPLATE = valid_config(Path("/nonexistent-out-dir"))
_TEMPLATE_PATHS = _all_paths(_TEMPLATE)


@st.composite
def _mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    cfg = copy.deepcopy(_TEMPLATE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_TEMPLATE_PATHS))
        parent: Any = cfg
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]]  # the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["replace", "delete", "add_field", "unification_file"]))
        if op == "unification_file":
            cfg.pop("unification", None)
            cfg["unification_file"] = draw(st.sampled_from(_PATHS))
        elif op == "replace":
            # Path-like fields get path-like values, so path handling is exercised, not just typing.
            is_path = path[-1] in ("path", "unification_file")
            parent[path[-1]] = draw(_path_value if is_path else _value)
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "delete":
            parent.pop(path[-1])
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=6))] = draw(_leaf)
    return cfg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=_random_config | _mutated_example())
def test_fuzzed_configs_load_or_raise_config_error(raw: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        (folder / "binary.dat").write_bytes(b"\xff\xfe\x00\x01")
        write_yaml(folder / "unify.yml", _UNIFY)
        path = write_yaml(folder / "cdp.yml", raw)
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            message = str(exc)
            # It names the file, then the field (or the file itself: not YAML, not a mapping).
            assert message.startswith(f"{path}:") or message.startswith(f"{folder.resolve()}"), message
            assert "  - " in message or message.count(":") >= 2, message
        else:
            assert loaded.pipeline.client
            assert loaded.duckdb_path.is_absolute()
