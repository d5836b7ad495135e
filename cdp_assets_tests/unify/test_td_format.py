"""Treasure Data's unify.yml format, loaded unchanged, through the whole pipeline."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.sample.generator import generate_sample
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.conftest import check_results, run_pipeline, warehouse_for

EXAMPLE = REPO_ROOT / "examples" / "td_format"
SCHEMA = "cdp_unification_customer_360_td"
IDS = ("unified_id", "contact_id", "person_id")
PER_ID = ("graph", "lookup", "keys", "tables", "loop_stats", "excluded_values", "source_key_stats", "result_key_stats")
ALIASES = ("customers", "orders", "members", "events")


def td_project(tmp_path, example=EXAMPLE):
    generate_sample(tmp_path / "data", 600, seed=5)
    shutil.copyfile(example / "unify.yml", tmp_path / "unify.yml")  # byte for byte: unchanged
    cfg = yaml.safe_load((example / "cdp.yml").read_text())
    for source in cfg["sources"]:
        source["connector"]["path"] = f"data/{source['name']}"
    cfg["engine"]["duckdb"]["path"] = "cdp.duckdb"
    cfg["report"]["path"] = "report.md"
    (tmp_path / "cdp.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(tmp_path / "cdp.yml")


@pytest.mark.pipeline
def test_td_unify_yml_with_two_canonical_ids_a_persistent_id_and_masters(tmp_path, instance):
    loaded = td_project(tmp_path)
    assert (tmp_path / "unify.yml").read_bytes() == (EXAMPLE / "unify.yml").read_bytes()
    result = run_pipeline(loaded, instance)
    assert result.success
    checks = check_results(result)
    assert all(checks.values()), [k for k, v in checks.items() if not v]

    wh = warehouse_for(loaded)
    with wh.session():
        tables = set(wh.list_tables(SCHEMA))
        expected = {f"{cid}_{s}" for cid in IDS for s in PER_ID} | {f"enriched_{a}" for a in ALIASES}
        expected |= {"customer_master", "person_master"}
        assert expected <= tables, sorted(expected - tables)
        cols = wh.columns(TableRef(SCHEMA, "enriched_customers"))
        assert {"unified_id", "contact_id", "person_id"} <= set(cols)
        # contact_id only merges by email and phone over its source tables
        assert set(wh.fetch(f'SELECT DISTINCT id_key_name FROM "{SCHEMA}"."contact_id_lookup"')["id_key_name"]) <= {
            "email",
            "phone",
        }
        # the do_not_merge_key holds: no person_id has two customer ids
        worst = wh.scalar(
            f'SELECT MAX(n) FROM (SELECT person_id, COUNT(DISTINCT id) AS n FROM "{SCHEMA}"."person_id_lookup" '
            "WHERE id_key_name = 'customer_id' GROUP BY person_id) AS t"
        )
        assert worst == 1
        master = wh.fetch(f'SELECT * FROM "{SCHEMA}"."customer_master"')
        assert master["unified_id"].is_unique and all(len(v) <= 3 for v in master["recent_emails"].dropna())
        people = wh.fetch(f'SELECT * FROM "{SCHEMA}"."person_master"')
        assert people["person_id"].is_unique and all(len(v) == 1 for v in people["customer_ids"].dropna())


@pytest.mark.pipeline
def test_new_data_keeps_persistent_ids_and_incremental_equals_full_refresh(tmp_path, instance, monkeypatch):
    loaded = td_project(tmp_path)
    assert run_pipeline(loaded, instance).success
    wh = warehouse_for(loaded)
    before = wh.fetch(f'SELECT id_key_name, id, person_id FROM "{SCHEMA}"."person_id_lookup"')

    # New customers arrive: some are new people, some reuse emails of existing people.
    folder = loaded.source_paths["shop"] / "customers"
    old = pd.read_csv(folder / "customers_2024-06-02.csv", dtype=str, keep_default_na=False)
    new = old.head(20).copy()
    new["customer_id"] = [f"C9{i:05d}" for i in range(len(new))]
    new["updated_at"] = "2024-08-01 00:00:00"
    new.loc[10:, "email"] = [f"brand.new.{i}@example.org" for i in range(10, len(new))]
    new.to_csv(folder / "customers_2024-08-01.csv", index=False)
    second = run_pipeline(loaded, instance)
    assert second.success
    modes = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata["mode"].value
        for e in second.get_asset_materialization_events()
        if e.asset_key.path[-1].endswith("_graph")
    }
    # ids whose tables have incremental_columns run incrementally; do_not_merge_key needs a full run
    assert modes == {"unified_id_graph": "incremental", "contact_id_graph": "incremental", "person_id_graph": "full"}

    after = wh.fetch(f'SELECT id_key_name, id, person_id FROM "{SCHEMA}"."person_id_lookup"')
    merged = before.merge(after, on=["id_key_name", "id"], suffixes=("_before", "_after"))
    assert len(merged) == len(before)  # every old identifier is still there
    changed = merged[merged["person_id_before"] != merged["person_id_after"]]
    assert changed.empty, changed.head()
    assert len(after) > len(before)

    # The incremental result equals a full refresh on the same data, in a fresh database.
    monkeypatch.setenv("CDP_DUCKDB_PATH", str(tmp_path / "fresh.duckdb"))
    fresh = load_config(tmp_path / "cdp.yml")
    assert run_pipeline(fresh).success
    fresh_wh = warehouse_for(fresh)
    for table in ("unified_id_lookup", "contact_id_lookup", "enriched_customers", "enriched_events"):
        a = wh.fetch(f'SELECT * FROM "{SCHEMA}"."{table}"').drop(
            columns=["_cdp_loaded_at", "person_id"], errors="ignore"
        )
        b = fresh_wh.fetch(f'SELECT * FROM "{SCHEMA}"."{table}"').drop(
            columns=["_cdp_loaded_at", "person_id"], errors="ignore"
        )
        key = list(a.columns)
        a = a.astype(str).sort_values(key).reset_index(drop=True)
        b = b.astype(str).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, obj=table)


@pytest.mark.pipeline
def test_the_templated_example_runs_with_ids_merged_from_ids(tmp_path, instance):
    """examples/td_format/templated: workflow variables, ids from ids (one with merge_by_keys: []),
    attributes from ids, null invalid texts, source columns without `column`, several
    incremental columns, `time` in a persistent id."""
    example = EXAMPLE / "templated"
    loaded = td_project(tmp_path, example)
    assert (tmp_path / "unify.yml").read_bytes() == (example / "unify.yml").read_bytes()
    assert "${" in (tmp_path / "unify.yml").read_text()
    result = run_pipeline(loaded, instance)
    assert result.success
    checks = check_results(result)
    assert checks and all(checks.values()), [k for k, v in checks.items() if not v]

    schema = "cdp_unification_customer_360_tpl"
    wh = warehouse_for(loaded)
    with wh.session():
        rows = pd.concat(
            [
                wh.fetch(f'SELECT contact_id, account_id, household_id, unified_id FROM "{schema}"."enriched_{a}"')
                for a in ("customers", "orders", "members")
            ]
        )
        # an id merged from ids never splits what those ids join
        for by in ("contact_id", "account_id"):
            for merged in ("unified_id", "household_id"):
                per = rows.dropna(subset=[by, merged]).groupby(by)[merged].nunique()
                assert (per == 1).all(), (by, merged)
        # household_id merges the same ids without cookies: it never spans two unified ids
        per_household = (
            rows.dropna(subset=["household_id", "unified_id"]).groupby("household_id")["unified_id"].nunique()
        )
        assert (per_household == 1).all()
        assert rows["unified_id"].nunique() < rows["contact_id"].nunique()  # merging ids merged something
        master = wh.fetch(f'SELECT * FROM "{schema}"."customer_master"')
        contact_ids = set(wh.fetch(f'SELECT DISTINCT contact_id FROM "{schema}"."contact_id_lookup"')["contact_id"])
        assert master["unified_id"].is_unique
        assert all(set(v) <= contact_ids and len(v) <= 3 for v in master["contact_ids"].dropna())
        assert master["email"].notna().any()  # read from the column named like the attribute
        people = wh.fetch(f'SELECT * FROM "{schema}"."person_master"')
        assert (people["person"] == people["person_id"]).all()
