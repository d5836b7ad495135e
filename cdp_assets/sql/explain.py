"""The queries behind `cdp-assets explain`: an identifier's ids, and one id's identifiers and rows.

The identifier and the id asked about are bound as ``?`` parameters, never pasted.
"""

from __future__ import annotations

from cdp_assets.sql.dialects import TableRef, quote


def ids_of_identifier_sql(lookup: TableRef, cid: str) -> str:
    """Every (key, value, id) whose value is the bound parameter."""
    return f"SELECT id_key_name, id, {quote(cid)} AS cid FROM {lookup.sql} WHERE id = ?"


def identifiers_of_id_sql(lookup: TableRef, cid: str) -> str:
    """Every (key, value) the bound id holds."""
    return f"SELECT id_key_name, id FROM {lookup.sql} WHERE {quote(cid)} = ?"


def rows_of_id_sql(enriched: TableRef, cid: str) -> str:
    """The enriched table's rows that got the bound id."""
    return f"SELECT * FROM {enriched.sql} WHERE {quote(cid)} = ?"
