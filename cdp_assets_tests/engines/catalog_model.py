"""The model of the model-based tests of what an engine keeps of its catalog: table -> its
columns (None: absent), and the writes through the engine's own API that every engine shares."""

from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef

TABLES = ("t1", "t2")
COLUMNS = ("a", "b", "c")
columns = st.lists(st.sampled_from(COLUMNS), min_size=1, unique=True)
shared_write = st.one_of(
    st.tuples(st.sampled_from(["build", "frame", "append"]), st.sampled_from(TABLES), columns),
    st.tuples(st.just("add_column"), st.sampled_from(TABLES), st.sampled_from(COLUMNS)),
    st.tuples(st.just("drop"), st.sampled_from(TABLES), st.none()),
)


def apply_shared_write(wh: WarehouseResource, model: dict, op: str, ref: TableRef, arg) -> bool:
    """Run one of ``shared_write``'s writes on ``ref`` and follow it in ``model``; False for an
    operation of another kind (the test's own). ``add_column`` adds a BIGINT column in the
    engine's own statement (``add_column_sql``) when the table has not got it."""
    cols = model[ref.name]
    if op == "build":
        wh.build_table(ref, "SELECT " + ", ".join(f'1 AS "{c}"' for c in arg))
        model[ref.name] = list(arg)
    elif op == "frame":
        wh.replace_with_dataframe(ref, pd.DataFrame({c: [1] for c in arg}))
        model[ref.name] = list(arg)
    elif op == "append":
        wh.append_frames([(ref, pd.DataFrame({c: [1] for c in arg}))])
        model[ref.name] = (cols or []) + [c for c in arg if c not in (cols or [])]
    elif op == "add_column":
        if cols is not None and arg not in cols:
            wh.execute(add_column_sql(wh, ref, arg))
            model[ref.name] = cols + [arg]
    elif op == "drop":
        wh.drop(ref)
        model[ref.name] = None
    else:
        return False
    return True


def add_column_sql(wh: WarehouseResource, ref: TableRef, column: str) -> str:
    table = wh.dialect.table_name(ref)
    if wh.dialect.sqlglot_name in ("spark", "databricks"):
        return f"ALTER TABLE {table} ADD COLUMNS (`{column}` BIGINT)"
    return f'ALTER TABLE {table} ADD COLUMN "{column}" BIGINT'
