"""Treasure Data compatibility: real unify.yml forms load unchanged and run with TD's meaning.

Workflow variables, ids built from ids, attributes taken from ids, null invalid texts, source
columns without `column`, `time` in a persistent id, and a unification that only reads a team's
existing warehouse tables (external source assets). Real DuckDB, real in-process Dagster runs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from dagster import AssetKey
import pytest
import yaml

from cdp_assets.config import ConfigError, load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.config.variables import env_name
from cdp_assets.render import render
from cdp_assets.sql.dialects import get_dialect
from cdp_assets.sql.unification import build_id_plans, canonical_id_expr
from cdp_assets_tests.conftest import check_results, run_pipeline, warehouse_for

# The example of a unification on existing tables: its unify.yml is a TD template whose names
# are all workflow variables; cdp.yml gives them values; seed.sql creates the team's tables.
EXAMPLE = REPO_ROOT / "examples" / "td_format" / "existing_tables"
TEMPLATE_UNIFY = (EXAMPLE / "unify.yml").read_text(encoding="utf-8")
EXAMPLE_CONFIG = yaml.safe_load((EXAMPLE / "cdp.yml").read_text(encoding="utf-8"))
VARIABLES = EXAMPLE_CONFIG["unification_variables"]


def write_existing_tables(db: Path) -> None:
    """The team's own tables (acme_crm.site_aaa, acme_crm.contacts), from the example's seed.sql."""
    con = duckdb.connect(str(db))
    con.execute((EXAMPLE / "seed.sql").read_text(encoding="utf-8"))
    con.close()


def unification_only_project(tmp: Path, variables: dict | None = None, unify_text: str = TEMPLATE_UNIFY) -> Path:
    (tmp / "unify.yml").write_text(unify_text, encoding="utf-8")
    cfg = {
        **EXAMPLE_CONFIG,
        "engine": {"kind": "duckdb", "duckdb": {"path": "cdp.duckdb"}},
        "report": {"path": "report.md"},
        "unification_variables": VARIABLES if variables is None else variables,
    }
    path = tmp / "cdp.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- variables


def test_the_example_loads_unchanged_from_its_folder() -> None:
    loaded = load_config(EXAMPLE / "cdp.yml")
    assert loaded.unification.tables[0].table == "site_aaa" and not loaded.pipeline.sources


def test_workflow_variables_resolve_before_validation(tmp_path: Path) -> None:
    loaded = load_config(unification_only_project(tmp_path))
    unify = loaded.unification
    assert unify.name == "crm360" and unify.schema == "cdp_unification_crm360"
    assert [(t.database, t.table) for t in unify.tables] == [("acme_crm", "site_aaa"), ("acme_crm", "contacts")]
    # A value that is exactly one variable keeps the variable's type.
    assert unify.canonical_ids[0].merge_iterations == 10
    # The file itself is unchanged: TD's workflow would fill in the same variables.
    assert "${globals.site_tbl}" in (tmp_path / "unify.yml").read_text()


def test_the_environment_overrides_unification_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env_name("td.tbl_contacts"), "contacts_v2")
    assert env_name("td.tbl_contacts") == "CDP_UNIFY_VAR_td__tbl_contacts"
    loaded = load_config(unification_only_project(tmp_path))
    assert loaded.unification.tables[1].table == "contacts_v2"


def test_an_unresolved_variable_names_the_variable_the_file_and_the_line(tmp_path: Path) -> None:
    variables = {k: v for k, v in VARIABLES.items() if k != "td"}
    with pytest.raises(ConfigError) as exc:
        load_config(unification_only_project(tmp_path, variables))
    message = str(exc.value)
    line = next(n for n, row in enumerate(TEMPLATE_UNIFY.splitlines(), 1) if "${td.tbl_contacts}" in row)
    assert f"{tmp_path / 'unify.yml'}:{line}: tables[1].table:" in message, message
    assert "${td.tbl_contacts} has no value" in message and "CDP_UNIFY_VAR_td__tbl_contacts" in message


def test_a_variable_naming_a_mapping_is_an_error(tmp_path: Path) -> None:
    text = TEMPLATE_UNIFY.replace("${globals.site_tbl}", "${globals}")
    with pytest.raises(ConfigError, match=r"\$\{globals\} names a dict"):
        load_config(unification_only_project(tmp_path, unify_text=text))


def test_render_sql_works_on_the_resolved_config(tmp_path: Path) -> None:
    loaded = load_config(unification_only_project(tmp_path))
    files = render(loaded, get_dialect("duckdb"))
    text = "\n".join(f.sql for f in files)
    assert '"acme_crm"."site_aaa"' in text and "${" not in text


# ---------------------------------------------------------------------------- TD forms at run time


@pytest.mark.pipeline
def test_unification_on_existing_tables_with_ids_from_ids(tmp_path: Path, instance) -> None:
    write_existing_tables(tmp_path / "cdp.duckdb")
    loaded = load_config(unification_only_project(tmp_path))
    result = run_pipeline(loaded, instance)
    assert result.success
    checks = check_results(result)
    assert checks and all(checks.values()), [k for k, v in checks.items() if not v]

    wh = warehouse_for(loaded)
    schema = "cdp_unification_crm360"
    with wh.session():
        site = wh.fetch(f'SELECT * FROM "{schema}"."enriched_site_aaa" ORDER BY td_client_id')
        contacts = wh.fetch(f'SELECT * FROM "{schema}"."enriched_contacts" ORDER BY email')
        browser = dict(zip(site["td_client_id"], site["browser_id"]))
        marketing = dict(zip(site["td_client_id"], site["marketing_id"]))
        household = dict(zip(site["td_client_id"], site["household_id"]))
        # browser_id: c1 and c2 share g1; c3 and c4 are other browsers.
        assert browser["c1"] == browser["c2"] and len({browser["c1"], browser["c3"], browser["c4"]}) == 3
        # marketing_id merges browsers and emails: c1 (a@x.com) links c3's browser; c4 stays alone.
        assert marketing["c1"] == marketing["c2"] == marketing["c3"] != marketing["c4"]
        a_contact = contacts.set_index("email").loc["a@x.com"]
        assert a_contact["marketing_id"] == marketing["c1"]
        # household_id (merge_by_keys: [], two ids) groups the same way here.
        assert household["c1"] == household["c2"] == household["c3"] != household["c4"]
        assert a_contact["household_id"] == household["c1"]
        # '' and null are invalid: c2's empty email links nothing, b@x.com's contact has its own id.
        assert contacts.set_index("email").loc["b@x.com", "marketing_id"] not in set(marketing.values())

        master = wh.fetch(f'SELECT * FROM "{schema}"."marketing_master"').set_index("marketing_id")
        assert len(master) == 3
        first = master.loc[marketing["c1"]]
        # source_canonical_id: the entity's browser ids (two browsers, array_elements: 2).
        assert sorted(first["browser_ids"]) == sorted({browser["c1"], browser["c3"]})
        # source_columns without column read the attribute's name; contacts has priority 1.
        assert first["name"] == "Ann Contact"
        assert master.loc[marketing["c4"], "name"] == "Bob"
        people = wh.fetch(f'SELECT * FROM "{schema}"."person_master"')
        assert people["person_id"].is_unique and (people["person"] == people["person_id"]).all()
        # first/last seen from `time` (epoch bigint in site_aaa, epoch text in contacts)
        seen = wh.fetch(f'SELECT * FROM "{schema}"."email_id_lookup"').set_index("id")
        assert seen.loc["a@x.com", "id_first_seen_at"] == pd.Timestamp("2023-11-14 22:13:20")
        assert seen.loc["a@x.com", "id_last_seen_at"] == pd.Timestamp("2023-11-14 22:16:40")


@pytest.mark.pipeline
def test_the_run_logs_where_it_differs_from_treasure_data(tmp_path: Path, instance) -> None:
    write_existing_tables(tmp_path / "cdp.duckdb")
    loaded = load_config(unification_only_project(tmp_path))
    result = run_pipeline(loaded, instance)
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    td_lines = [m for m in messages if "Treasure Data would stop after 3 iterations" in m]
    # every id without merge_iterations, one line each; browser_id sets it
    assert sorted(m.split(":")[0] for m in td_lines) == ["email_id", "household_id", "marketing_id", "person_id"]


def test_going_beyond_treasure_data_loads_and_says_how_td_would_differ(tmp_path: Path) -> None:
    # A persistent id with do_not_merge_key (TD does not support it) and ids without
    # merge_iterations (TD stops after 3): the file loads; each difference is one line.
    text = TEMPLATE_UNIFY.replace(
        "    merge_by_keys: [td_client_id, td_global_id, time]",
        "    merge_by_keys: [td_client_id, td_global_id, time]\n"
        "    do_not_merge_key: td_client_id\n    merge_iterations: 5",
    )
    assert text != TEMPLATE_UNIFY
    unify = load_config(unification_only_project(tmp_path, unify_text=text)).unification
    lines = unify.differences_from_td()
    assert [line.split(":")[0] for line in lines] == ["email_id", "marketing_id", "household_id", "person_id"]
    assert "Treasure Data does not support do_not_merge_key on a persistent id" in lines[-1]
    assert all("Treasure Data would stop after 3 iterations" in line for line in lines[:-1])


def test_a_key_no_table_uses_loads_and_the_run_log_names_it(tmp_path: Path) -> None:
    # TD's documentation does not say what TD does with such a key: we load it and say so, naming it.
    text = TEMPLATE_UNIFY.replace("tables:\n", "  - name: phone\n    invalid_texts: ['']\ntables:\n", 1)
    assert text != TEMPLATE_UNIFY
    unify = load_config(unification_only_project(tmp_path, unify_text=text)).unification
    unused = [line for line in unify.differences_from_td() if line.startswith("keys[")]
    assert unused == [
        "keys[3].name: key 'phone' is declared but no table's key_columns uses it, so it links nothing; Treasure "
        "Data's documentation does not say what TD does with such a key (map a column to it or remove it)"
    ]


def test_a_missing_existing_table_fails_at_the_start_naming_it(tmp_path: Path, instance) -> None:
    write_existing_tables(tmp_path / "cdp.duckdb")
    con = duckdb.connect(str(tmp_path / "cdp.duckdb"))
    con.execute("DROP TABLE acme_crm.contacts")
    con.close()
    loaded = load_config(unification_only_project(tmp_path))
    result = run_pipeline(loaded, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert "tables[1]" in text and "acme_crm.contacts" in text and "does not exist" in text, text
    wh = warehouse_for(loaded)
    with wh.session():
        assert wh.list_tables("cdp_unification_crm360") == []  # nothing written


def test_a_missing_column_of_an_existing_table_fails_naming_the_field(tmp_path: Path, instance) -> None:
    write_existing_tables(tmp_path / "cdp.duckdb")
    text = TEMPLATE_UNIFY.replace(
        "{column: email, key: email}\n  - database", "{column: emial, key: email}\n  - database", 1
    )
    assert text != TEMPLATE_UNIFY
    loaded = load_config(unification_only_project(tmp_path, unify_text=text))
    result = run_pipeline(loaded, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "tables[0].key_columns[2].column" in message and "did you mean 'email'?" in message, message


def test_existing_tables_are_external_assets_of_the_graph(tmp_path: Path) -> None:
    from cdp_assets.definitions import build_definitions

    loaded = load_config(unification_only_project(tmp_path))
    defs = build_definitions(loaded)
    graph = defs.resolve_asset_graph()
    for name in ("site_aaa", "contacts"):
        node = graph.get(AssetKey(["acme_crm", name]))
        assert not node.is_executable


# ---------------------------------------------------------------------------- epoch time, several incremental columns

INCREMENTAL_UNIFY = """\
name: inc
keys:
  - {name: td_client_id, invalid_texts: ['', null]}
  - {name: email, invalid_texts: ['', null]}
tables:
  - database: acme_crm
    table: events
    incremental_columns: [time, seq]
    key_columns:
      - {column: td_client_id, key: td_client_id}
      - {column: email, key: email}
  - database: acme_crm
    table: signups
    incremental_columns: [time]
    key_columns:
      - {column: email, key: email}
canonical_ids:
  - name: unified_id
    merge_by_keys: [email, td_client_id]
"""

# events.time is TD's epoch bigint; signups.time is the same epoch stored as text.
EVENTS = [("c1", "a@x.com", 1700000000, 1), ("c2", None, 1700000100, 1), ("c3", "b@x.com", 1700000200, 1)]
SIGNUPS = [("a@x.com", "1700000050"), ("c@x.com", "1700000300")]


def write_incremental_tables(db: Path, events, signups, create: bool = True) -> None:
    con = duckdb.connect(str(db))
    if create:
        con.execute("CREATE SCHEMA acme_crm")
        con.execute("CREATE TABLE acme_crm.events (td_client_id VARCHAR, email VARCHAR, time BIGINT, seq INTEGER)")
        con.execute("CREATE TABLE acme_crm.signups (email VARCHAR, time VARCHAR)")
    if events:
        con.executemany("INSERT INTO acme_crm.events VALUES (?, ?, ?, ?)", events)
    if signups:
        con.executemany("INSERT INTO acme_crm.signups VALUES (?, ?)", signups)
    con.close()


@pytest.mark.pipeline
def test_epoch_time_and_several_incremental_columns_equal_a_full_refresh(tmp_path: Path, instance) -> None:
    first, second = tmp_path / "first", tmp_path / "fresh"
    first.mkdir()
    second.mkdir()
    write_incremental_tables(first / "cdp.duckdb", EVENTS, SIGNUPS)
    loaded = load_config(unification_only_project(first, {}, INCREMENTAL_UNIFY))
    assert run_pipeline(loaded, instance).success
    wh = warehouse_for(loaded)
    lookup = wh.fetch('SELECT * FROM "cdp_unification_inc"."unified_id_lookup"').set_index("id")
    # first/last seen come from the epoch seconds, bigint and text alike
    assert lookup.loc["a@x.com", "id_first_seen_at"] == pd.Timestamp("2023-11-14 22:13:20")
    assert lookup.loc["a@x.com", "id_last_seen_at"] == pd.Timestamp("2023-11-14 22:14:10")  # the signup's text time
    assert lookup.loc["c2", "id_first_seen_at"] == pd.Timestamp("2023-11-14 22:15:00")

    # New rows: one at the very same time as the last event but a later seq (ordered by the
    # columns in turn, it is new), one later; c2 now shows its email.
    more_events = [("c2", "b@x.com", 1700000200, 2), ("c4", "c@x.com", 1700000400, 1)]
    write_incremental_tables(first / "cdp.duckdb", more_events, [], create=False)
    second_run = run_pipeline(loaded, instance)
    assert second_run.success
    modes = {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata["mode"].value
        for e in second_run.get_asset_materialization_events()
        if e.asset_key.path[-1] == "unified_id_graph"
    }
    assert modes == {"unified_id_graph": "incremental"}
    after = wh.fetch('SELECT * FROM "cdp_unification_inc"."unified_id_lookup"').set_index("id")
    # the tie row linked c2 to b@x.com (and so to c3): it was read although its time equals the watermark
    assert after.loc["c2", "unified_id"] == after.loc["c3", "unified_id"] == after.loc["b@x.com", "unified_id"]

    write_incremental_tables(second / "cdp.duckdb", EVENTS + more_events, SIGNUPS)
    fresh = load_config(unification_only_project(second, {}, INCREMENTAL_UNIFY))
    assert run_pipeline(fresh).success
    full = warehouse_for(fresh).fetch('SELECT * FROM "cdp_unification_inc"."unified_id_lookup"').set_index("id")
    cols = ["unified_id", "id_key_type", "id_first_seen_at", "id_last_seen_at"]
    pd.testing.assert_frame_equal(after.sort_index()[cols], full.sort_index()[cols])


# ---------------------------------------------------------------------------- `time` by default

DEFAULT_TIME_UNIFY = """\
name: dated
keys:
  - {name: td_client_id, invalid_texts: ['']}
  - {name: email, invalid_texts: ['', null]}
tables:
  - database: acme_crm
    table: events   # no incremental_columns: dated by its `time` column, as on Treasure Data
    key_columns:
      - {column: td_client_id, key: td_client_id}
      - {column: email, key: email}
persistent_ids:
  - name: pid
    merge_by_keys: [td_client_id, email]
    merge_iterations: 5
master_tables:
  - name: pid_master
    persistent_id: pid
    attributes:
      - name: td_client_id
        source_columns: [{table: events, order: first}]
"""


def test_an_existing_table_without_incremental_columns_is_dated_by_time(tmp_path: Path) -> None:
    from cdp_assets_tests.unify.test_td_corpus import run_unification

    # c2 is seen first although c1 is the smaller value: dated by `time`, c2 leads the persistent id
    # and is the first value of the master attribute (order_by defaults to time).
    events = [("c1", "a@x.com", 1700000100, 1), ("c2", "a@x.com", 1700000000, 2)]
    write_incremental_tables(tmp_path / "cdp.duckdb", events, [])
    loaded = load_config(unification_only_project(tmp_path, {}, DEFAULT_TIME_UNIFY))
    assert [t.seen_at for p in build_id_plans(loaded) for t in p.tables] == ["time"]
    wh = warehouse_for(loaded)
    with wh.session():
        run_unification(wh, loaded)
    lookup = wh.fetch('SELECT * FROM "cdp_unification_dated"."pid_lookup"').set_index("id")
    assert lookup.loc["c2", "id_first_seen_at"] == pd.Timestamp("2023-11-14 22:13:20")
    led_by_c2 = wh.fetch("SELECT " + canonical_id_expr("'td_client_id'", "'c2'") + " AS id")["id"][0]
    assert lookup.loc["c1", "pid"] == lookup.loc["c2", "pid"] == led_by_c2
    master = wh.fetch('SELECT * FROM "cdp_unification_dated"."pid_master"')
    assert list(master["td_client_id"]) == ["c2"]


def test_an_existing_table_without_time_or_incremental_columns_fails_at_the_start(tmp_path: Path, instance) -> None:
    con = duckdb.connect(str(tmp_path / "cdp.duckdb"))
    con.execute("CREATE SCHEMA acme_crm")
    con.execute("CREATE TABLE acme_crm.events (td_client_id VARCHAR, email VARCHAR, updated_at TIMESTAMP)")
    con.close()
    loaded = load_config(unification_only_project(tmp_path, {}, DEFAULT_TIME_UNIFY))
    result = run_pipeline(loaded, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "tables[0].incremental_columns" in message and "'time'" in message and "add incremental_columns" in message
    wh = warehouse_for(loaded)
    with wh.session():
        assert wh.list_tables("cdp_unification_dated") == []
