"""Before the unification writes anything: every table it reads exists and has the columns
``unify.yml`` names. Existing warehouse tables (not produced by this pipeline) can only be
checked here, against the warehouse; a missing one fails the step at its start, naming it."""

from __future__ import annotations

from cdp_assets.config.models import LoadedConfig
from cdp_assets.config.references import column_references, database_of, is_produced, missing_column_message
from cdp_assets.config.unify import TD_TIME_COLUMN
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql.dialects import TableRef


class UnificationInputError(ValueError):
    """A table or column unify.yml names is not in the warehouse; nothing was written."""


def unification_inputs(loaded: LoadedConfig, catalog: str | None = None) -> dict[str, TableRef]:
    """Every table of unify.yml by alias, where it is read from."""
    unify = loaded.unification
    if unify is None:
        return {}
    return {t.alias: TableRef(database_of(loaded.pipeline, t), t.table, catalog) for t in unify.tables}


def check_unification_inputs(wh: WarehouseResource, loaded: LoadedConfig, catalog: str | None = None) -> None:
    unify = loaded.unification
    if unify is None:
        return
    refs = unification_inputs(loaded, catalog)
    where = loaded.pipeline.unification_file or "unification"
    # Every input's existence and columns from one description.
    described = wh.describe_tables([refs[table.alias] for table in unify.tables])
    for i, table in enumerate(unify.tables):
        ref = refs[table.alias]
        if described[ref] is None:
            kind = (
                "a table this pipeline produces"
                if is_produced(loaded.pipeline, table)
                else "an existing warehouse table"
            )
            raise UnificationInputError(
                f"{where}: tables[{i}]: {ref.display} does not exist ({kind}, named by unify.yml); create it, "
                "fix database/table in unify.yml, or run the phases that produce it first. Nothing was written."
            )
    columns = {alias: [name for name, _ in described[ref]] for alias, ref in refs.items()}  # every one exists
    for i, table in enumerate(unify.tables):
        if table.incremental_columns or is_produced(loaded.pipeline, table):
            continue
        # Treasure Data dates an existing table's rows by `time` when incremental_columns is not set.
        ref = refs[table.alias]
        if TD_TIME_COLUMN not in {c.lower() for c in columns[table.alias]}:
            raise UnificationInputError(
                f"{where}: tables[{i}].incremental_columns: not set, so {ref.display} is dated by its column "
                f"'{TD_TIME_COLUMN}' (Treasure Data's default for first/last seen, persistent ids and master "
                f"attributes' order_by), which it does not have; add incremental_columns: [<the column that dates "
                "its rows>]. Nothing was written."
            )
    for ref_col in column_references(unify):
        ref = refs[ref_col.alias]
        have = columns[ref_col.alias]
        if ref_col.column.lower() not in {c.lower() for c in have}:
            raise UnificationInputError(
                f"{where}: "
                + missing_column_message(ref_col, ref.display, have, "in the warehouse")
                + ". Nothing was written."
            )
