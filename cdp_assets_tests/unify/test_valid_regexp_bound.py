"""valid_regexps bound as statement parameters (DuckDB, ``Dialect.binds_regexp_parameters``) keep
the rows of the rules-table form: the key values and the master attributes, on real DuckDB, with
patterns RE2 evaluates and patterns only the Java-semantics function can (``re2_lacks``), keys and
attributes without a pattern, NULLs and invalid texts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_assets.config.unify import UnifyConfig
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef, get_dialect
from cdp_assets.sql.master import master_rules_frame, master_table_query
from cdp_assets.sql.regex import re2_lacks
from cdp_assets.unify.runner import prepare_inputs

KEYS = ("k1", "k2", "k3")
# RE2 evaluates the first ones (as rewritten to Java's meaning); the last ones need the Java-semantics function.
RE2_PATTERNS = [".+@.+", "^C[0-9]+$", "^p", "(?i)^ab", "\\d", "^\\w+$"]
JAVA_PATTERNS = ["^(?=.*[0-9]).+$", "^(.)\\1", "^\\w+\\Z", "^(?!x).*"]
PATTERNS = st.one_of(st.none(), st.sampled_from(RE2_PATTERNS), st.sampled_from(JAVA_PATTERNS))
# Values some pattern matches and others not; "N/A" and "" are invalid texts when drawn.
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["a@b.co", "C123", "c123", "p1", "AB", "abc", "aa", "x1", "é", "N/A", "", "1", "C12\n", "ab\n"]),
)
INVALID = st.lists(st.sampled_from(["N/A", "", "aa", "C123"]), max_size=2, unique=True)

assert all(re2_lacks(p) for p in JAVA_PATTERNS) and not any(re2_lacks(p) for p in RE2_PATTERNS)


def _key(name: str, pattern: str | None, invalid: list[str]) -> dict:
    key: dict = {"name": name, "invalid_texts": invalid}
    if pattern is not None:
        key["valid_regexp"] = pattern
    return key


def _unify(keys: list[dict], attributes: list[dict]) -> UnifyConfig:
    return UnifyConfig.model_validate(
        {
            "name": "t",
            "keys": keys,
            "tables": [{"database": "src", "table": "rows", "key_columns": [{"column": k, "key": k} for k in KEYS]}],
            "canonical_ids": [{"name": "unified_id", "merge_by_keys": list(KEYS)}],
            "master_tables": [{"name": "m", "canonical_id": "unified_id", "attributes": attributes}],
        }
    )


def _rows(df: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(PATTERNS, min_size=3, max_size=3),
    invalid=st.lists(INVALID, min_size=3, max_size=3),
    rows=st.lists(st.tuples(VALUES, VALUES, VALUES), min_size=1, max_size=25),
)
def test_key_values_and_master_attributes_bound_equal_the_rules_table_form(patterns, invalid, rows):
    keys = [_key(k, p, t) for k, p, t in zip(KEYS, patterns, invalid)]
    # One attribute per key column, with that key's pattern and invalid texts, and one without any.
    attributes = [
        {**{f: v for f, v in _key(f"a_{k}", p, t).items()}, "source_columns": [{"table": "rows", "column": k}]}
        for k, p, t in zip(KEYS, patterns, invalid)
    ] + [{"name": "plain", "source_columns": [{"table": "rows", "column": "k1"}]}]
    unify = _unify(keys, attributes)
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(path=str(Path(d) / "wh.duckdb"))
        with wh.session():
            source = TableRef("src", "rows")
            df = pd.DataFrame(rows, columns=list(KEYS)).astype("string")
            df["ts"] = pd.Timestamp("2024-01-01")
            wh.write_dataframe(source, df)
            plan = u.IdPlan(
                cid=unify.all_ids[0],
                persistent=False,
                schema=unify.schema,
                catalog=None,
                keys=KEYS,
                tables=(u.SourceTablePlan(1, "rows", source, tuple((k, k) for k in KEYS), "ts"),),
                valid_regexps=tuple(patterns),
            )
            prepare_inputs(wh, plan, unify)
            bound_plan = u.for_dialect(plan, get_dialect("duckdb"))
            assert bound_plan.binds_regexps and not plan.binds_regexps

            by_rules, bound = u.key_values_sql(plan), u.key_values_sql(bound_plan)
            assert not by_rules.params and len(bound.params) == sum(p is not None for p in patterns)
            assert "valid_regexp" not in bound.sql  # nothing read from the keys table's patterns
            expected = _rows(wh.fetch(by_rules.sql))
            assert _rows(wh.fetch(bound.sql, list(bound.params))) == expected
            # The oracle's own check: every key value kept is a value of the rows, not an invalid text.
            for _, key_type, value, *_ in expected:
                assert value is not None and value not in invalid[key_type - 1]

            # The master table: each id's attributes (ids: one per row, the enriched table is the rows).
            master = unify.master_tables[0]
            enriched = {"rows": TableRef(unify.schema, "enriched_rows")}
            frame = df.copy()
            frame["unified_id"] = [f"U{i % 7}" for i in range(len(frame))]
            frame["unified_id"] = frame["unified_id"].astype("string")
            wh.write_dataframe(enriched["rows"], frame)
            lookup = TableRef(unify.schema, "unified_id_lookup")
            wh.write_dataframe(lookup, frame[["unified_id"]])
            rules = TableRef(unify.schema, "m_attribute_rules")
            wh.write_dataframe(rules, master_rules_frame(master))
            args = (master, unify, lookup, enriched, rules, {"rows": "ts"})
            m_rules, m_bound = master_table_query(*args), master_table_query(*args, binds_regexps=True)
            assert not m_rules.params and len(m_bound.params) == sum(p is not None for p in patterns)
            assert "'valid_regexp'" not in m_bound.sql
            assert _rows(wh.fetch(m_bound.sql, list(m_bound.params))) == _rows(wh.fetch(m_rules.sql))


# Each example opens an in-memory DuckDB: no deadline (a loaded machine took 0.58 s for one).
@settings(deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=3))
def test_render_sqls_parameter_comment_is_one_line_of_sql_expressions_of_the_values(values):
    """What `render-sql` prints above a statement: one comment line whose expressions are the values."""
    import duckdb

    from cdp_assets.sql.pipeline import parameters_comment

    line = parameters_comment(tuple(values))
    assert line.endswith("\n") and "\n" not in line[:-1] and "\r" not in line
    prefix = "-- parameters, bound to the ? placeholders in order: "
    assert line.startswith(prefix + "1: ") and (len(values) < 2 or f", {len(values)}: " in line)
    with duckdb.connect() as con:
        for value in values:  # each value's expression, printed alone
            expr = parameters_comment((value,)).removeprefix(prefix + "1: ").rstrip("\n")
            assert con.execute(f"SELECT {expr}").fetchone()[0] == value
