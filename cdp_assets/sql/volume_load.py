"""Loading files staged in a Unity Catalog Volume into a table (Databricks SQL ``COPY INTO``)."""

from __future__ import annotations

from sqlglot import exp

from cdp_assets.config.identifiers import check_volume_path
from cdp_assets.sql.dialects import Dialect, TableRef


def copy_into_from_volume(dialect: Dialect, ref: TableRef, folder: str) -> str:
    """Append every Parquet file of ``folder`` to ``ref``, columns matched by name.

    The folder is checked against the Volume path rule and written as a string literal by
    sqlglot (COPY INTO takes no bound parameter for its source); ``mergeSchema`` is off so a file
    never changes the table's columns: new columns are added by the engine beforehand.
    """
    path = exp.Literal.string(check_volume_path(folder, "staging folder")).sql(dialect=dialect.sqlglot_name)
    return (
        f"COPY INTO {dialect.table_name(ref)} FROM {path} FILEFORMAT = PARQUET "
        "FORMAT_OPTIONS ('mergeSchema' = 'false') COPY_OPTIONS ('mergeSchema' = 'false')"
    )
