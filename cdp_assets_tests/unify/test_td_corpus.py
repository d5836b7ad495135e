"""unify.yml files written the way Treasure Data's public repositories and documentation write
them (workflow variables, comments, anchors and merge keys, quoted and unquoted scalars, flow and
block style, ``merge_iterations``, ``incremental_columns: [time, ...]``, ids from ids, master
tables): each loads unchanged with its workflow's variables and runs on DuckDB.

The tables each file names are created from the file itself (its key, incremental and source
columns plus TD's ``time``), with values that link rows across tables. The run is the unification
as the loop op runs it: every id, the enriched tables, the master tables; the assertions are what
holds for any unification: every row with a valid key value gets an id, every id of the lookup has
one master row, and rows sharing a key value share the id.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cdp_assets.config import load_config
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql.dialects import TableRef
from cdp_assets_tests.unify.test_td_compat import unification_only_project

CORPUS = sorted((Path(__file__).parent / "td_corpus").glob("*.yml"))

# What the workflows' _export (and the YAML files it !includes) would give these files.
VARIABLES = {
    "unif_name": "acme360",
    "client_short_name": "acme",
    "src": "src",
    "stg": "stg",
    "globals": {"unif_input_tbl": "unif_input", "canonical_id_name": "td_unified_id"},
    "td": {"tbl_web": "pageviews", "tbl_crm": "crm_contacts"},
}
ROWS = 6


def key_value(key: str, row: int) -> str:
    """A value of ``key`` that its file's valid_regexp accepts; few distinct values, so rows link."""
    if "email" in key:
        return f"user{row % 3}@example.com"
    if key == "phone":
        return f"+1555000{row % 3:04d}"
    if key == "td_global_id":
        return f"3rd_{row % 4:03d}"
    if key == "loyalty_no":
        return f"L{row % 2}"
    if key == "member_code":
        return f"AB{row % 3}"
    if key == "member_id":
        return str(row % 3 + 1)
    return f"{key}_{row % 4}"


def seed_tables(wh: WarehouseResource, unify) -> None:
    """Every table the file names, with the columns it reads and TD's epoch `time`."""
    for table in unify.tables:
        keys = {kc.column: kc.key for kc in table.key_columns}
        extra = {
            col
            for master in unify.master_tables
            for attr in master.attributes
            for sc in attr.source_columns
            if sc.table == table.alias
            for col in (sc.column, sc.order_by)
            if col
        } | set(table.incremental_columns)
        rows = []
        for r in range(ROWS):
            row = {col: key_value(key, r) for col, key in keys.items()}
            row.update({col: f"{col}_{r}" for col in extra - set(keys) - {"time", "seq"}})
            row.update(time=1700000000 + 100 * r, seq=r)
            rows.append(row)
        rows.append({**{col: "" for col in keys}, "time": 1700000000 + 100 * ROWS, "seq": ROWS})  # invalid texts
        frame = pd.DataFrame(rows)
        frame = frame.astype({c: "string" for c in frame.columns if c not in ("time", "seq")})
        ref = TableRef(table.database, table.table)
        wh.ensure_schema(ref.schema)
        wh.replace_with_dataframe(ref, frame.astype({"time": "int64", "seq": "int64"}))


def run_unification(wh: WarehouseResource, loaded) -> None:
    """Every id after the ids it merges by, the enriched tables, then the master tables."""
    from cdp_assets.assets.unification import enrich_tables, enriched_ref, master_id_tables
    from cdp_assets.sql import unification as u
    from cdp_assets.sql.master import master_rules_frame, master_table_query
    from cdp_assets.unify.runner import config_fingerprint, prepare_inputs, run_loop

    unify = loaded.unification
    plans = u.build_id_plans(loaded)
    for plan in plans:
        prepare_inputs(wh, plan, unify)
        run_loop(wh, plan, fingerprint=config_fingerprint(plan, unify))
    for alias, table in enrich_tables(plans).items():
        wh.build_table(enriched_ref(unify.schema, alias), u.enriched_sql(plans, table, wh.columns(table.ref)))
    by_name = {p.name: p for p in plans}
    seen_at = {t.alias: t.seen_at for p in plans for t in p.tables}
    for master in unify.master_tables:
        plan = by_name[master.id_name]
        id_tables = master_id_tables(master, plan, by_name)
        aliases = {sc.table for a in master.attributes for sc in a.source_columns}
        aliases |= {t for ts in id_tables.values() for t in ts}
        enriched = {a: enriched_ref(unify.schema, a) for a in aliases}
        rules = TableRef(unify.schema, f"{master.name}_attribute_rules")
        wh.replace_with_dataframe(rules, master_rules_frame(master))
        sql = master_table_query(master, unify, plan.ref("lookup"), enriched, rules, seen_at, id_tables).sql
        wh.build_table(TableRef(unify.schema, master.name), sql)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_a_td_style_unify_yml_loads_unchanged_and_runs_on_duckdb(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    loaded = load_config(unification_only_project(tmp_path, VARIABLES, text))
    unify = loaded.unification
    assert "${" not in repr(unify)  # every workflow variable resolved before validation

    wh = DuckDBWarehouse(path=str(tmp_path / "corpus.duckdb"))
    with wh.session():
        seed_tables(wh, unify)
        run_unification(wh, loaded)
        for cid in unify.all_ids:
            lookup = wh.fetch(f'SELECT * FROM "{unify.schema}"."{cid.name}_lookup"')
            assert len(lookup) and lookup[cid.name].notna().all(), cid.name
            # one id per value: a value never belongs to two ids
            assert not lookup.duplicated(["id", "id_key_type"]).any(), cid.name
        for table in unify.tables:
            enriched = wh.fetch(f'SELECT * FROM "{unify.schema}"."enriched_{table.alias}"')
            assert len(enriched) == ROWS + 1
            for cid in unify.all_ids:
                if cid.name not in enriched or unify.key(table.key_columns[0].key).valid_regexp:
                    continue
                first = table.key_columns[0]
                if first.key not in cid.graph_keys:
                    continue
                valid = enriched[enriched[first.column].fillna("") != ""]
                # every row with a valid value of one of the id's keys has the id; rows sharing it share the id
                assert valid[cid.name].notna().all(), (table.alias, cid.name)
                assert (valid.groupby(first.column)[cid.name].nunique() == 1).all(), (table.alias, cid.name)
        for master in unify.master_tables:
            rows = wh.fetch(f'SELECT * FROM "{unify.schema}"."{master.name}"')
            ids = wh.fetch(f'SELECT DISTINCT "{master.id_name}" AS v FROM "{unify.schema}"."{master.id_name}_lookup"')
            assert rows[master.id_name].is_unique and set(rows[master.id_name]) == set(ids["v"]), master.name
            assert rows.drop(columns=[master.id_name]).notna().any().any(), master.name


def unification_tables(wh: WarehouseResource, unify) -> dict[str, pd.DataFrame]:
    """Every lookup, enriched table and master table, rows in a stable order."""
    names = [f"{c.name}_lookup" for c in unify.all_ids] + [f"enriched_{t.alias}" for t in unify.tables]
    names += [m.name for m in unify.master_tables]
    out = {}
    for name in names:
        df = wh.fetch(f'SELECT * FROM "{unify.schema}"."{name}"')
        df = df[sorted(c for c in df.columns if c != "time")]
        out[name] = df.map(cell_text).sort_values(list(df.columns)).reset_index(drop=True)
    return out


def cell_text(value) -> str | None:
    """A cell as text, arrays element by element (engines return lists or numpy arrays)."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "[" + ", ".join(str(v) for v in list(value)) + "]"
    return None if value is None or pd.isna(value) else str(value)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["06_ids_from_ids", "08_persistent_from_persistent"])
def test_ids_merged_from_ids_on_the_treasure_data_fake_equal_duckdb(stem: str, tmp_path: Path) -> None:
    # merge_by_canonical_ids (06) and merge_by_persistent_ids with source_*_id attributes (08):
    # the Treasure Data fake (Trino's SQL) gives the same ids, enriched rows and master rows.
    from cdp_assets.engines.treasure_data import TreasureDataWarehouse
    from cdp_assets_tests.fakes.td_api import FakeTreasureData

    path = next(p for p in CORPUS if p.stem == stem)
    loaded = load_config(unification_only_project(tmp_path, VARIABLES, path.read_text(encoding="utf-8")))
    unify = loaded.unification
    duck = DuckDBWarehouse(path=str(tmp_path / "corpus.duckdb"))
    with duck.session():
        seed_tables(duck, unify)
        run_unification(duck, loaded)
        expected = unification_tables(duck, unify)
    key = "4321/" + "9f3c" * 10
    fake = FakeTreasureData(key)
    url = fake.start()
    try:
        td = TreasureDataWarehouse(
            apikey=key, endpoint=url, database="cdp_src", job_poll_seconds=0.01, retry_backoff_seconds=0.01
        )
        seed_tables(td, unify)
        run_unification(td, loaded)
        got = unification_tables(td, unify)
    finally:
        fake.stop()
    assert got.keys() == expected.keys()
    for name in expected:
        columns = [c for c in expected[name].columns if not c.endswith("_at")]  # timestamps: engine types
        pd.testing.assert_frame_equal(got[name][columns], expected[name][columns], obj=name)
