"""Explain a merge: why two identifiers share a canonical id, or what one canonical id holds.

The chain is found on the bipartite graph of source rows and their key values inside one
component, so each step names the table and the row that links two values.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import pandas as pd

from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.explain import identifiers_of_id_sql, ids_of_identifier_sql, rows_of_id_sql


class ExplainError(ValueError):
    """The identifier or id asked about is not in the lookup."""


@dataclass(frozen=True)
class Identifier:
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}:{self.value}"


def parse_identifier(text: str, keys: tuple[str, ...]) -> tuple[str | None, str]:
    """``key:value`` names the key; a bare value matches it under any key."""
    key, sep, value = text.partition(":")
    if sep and key in keys:
        return key, value
    return None, text


def _plan(loaded: LoadedConfig, cid_name: str | None) -> u.IdPlan:
    plans = u.build_id_plans(loaded)
    if not plans:
        raise ExplainError(f"{loaded.config_path}: the config has no unification")
    if cid_name is None:
        return plans[0]
    for p in plans:
        if p.name == cid_name:
            return p
    raise ExplainError(f"no canonical id named {cid_name!r}; use one of {[p.name for p in plans]}")


def find_canonical_ids(wh: WarehouseResource, plan: u.IdPlan, text: str) -> list[tuple[Identifier, str]]:
    key, value = parse_identifier(text, plan.keys)
    lookup = plan.ref("lookup")
    df = wh.fetch(ids_of_identifier_sql(lookup, plan.name), [value])
    if key is not None:
        df = df[df["id_key_name"] == key]
    if df.empty:
        raise ExplainError(
            f"{text!r} is not in {lookup.display}: it is invalid, excluded (over its cap), or not in the data; "
            f"write it as key:value with one of the keys {list(plan.keys)} to be precise"
        )
    return [(Identifier(r.id_key_name, r.id), r.cid) for r in df.itertuples()]


def component_rows(wh: WarehouseResource, plan: u.IdPlan, cid: str) -> list[tuple[str, dict, list[Identifier]]]:
    """Every source row of the component: (table, row values, its identifiers in the component)."""
    members = wh.fetch(identifiers_of_id_sql(plan.ref("lookup"), plan.name), [cid])
    inside = {Identifier(k, v) for k, v in zip(members["id_key_name"], members["id"])}
    out = []
    for t in plan.tables:
        enriched = TableRef(plan.schema, f"enriched_{t.alias}", plan.catalog)
        df = wh.fetch(rows_of_id_sql(enriched, plan.name), [cid])
        # A merged id's value is the enriched table's column of that id.
        cols = [(c.removeprefix(u.DERIVED_PREFIX), k) for c, k in t.key_columns if k in plan.merge_names]
        for row in df.to_dict("records"):
            ids = [Identifier(k, str(row[c])) for c, k in cols if row.get(c) is not None and not pd.isna(row[c])]
            ids = [i for i in ids if i in inside]
            shown = {c: _shown(row[c]) for c in row if not c.startswith("_cdp") and c != plan.name and _present(row[c])}
            out.append((t.alias, shown, ids))
    return out


def _present(value) -> bool:
    """A value to show: not NULL (an array, e.g. a json rule's ``type: array`` output, always is)."""
    if value is None:
        return False
    return not (pd.api.types.is_scalar(value) and pd.isna(value))


def _shown(value) -> str:
    if pd.api.types.is_scalar(value):
        return str(value)
    return "[" + ", ".join(str(v) for v in value) + "]"


def shortest_chain(rows: list[tuple[str, dict, list[Identifier]]], start: Identifier, goal: Identifier) -> list:
    """BFS over identifiers; each hop is a row holding both ends. Returns [id, row, id, row, ..., id]."""
    by_id: dict[Identifier, list[int]] = {}
    for i, (_, _, ids) in enumerate(rows):
        for ident in ids:
            by_id.setdefault(ident, []).append(i)
    previous: dict[Identifier, tuple[Identifier, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for r in by_id.get(node, []):
            for nxt in rows[r][2]:
                if nxt not in previous:
                    previous[nxt] = (node, r)
                    queue.append(nxt)
    if goal not in previous:
        return []
    chain: list = [goal]
    node = goal
    while previous[node] is not None:
        prev, r = previous[node]  # type: ignore[misc]
        chain = [prev, rows[r], *chain]
        node = prev
    return chain


def _describe_component(plan: u.IdPlan, cid: str, rows: list) -> list[str]:
    idents = {i for _, _, ids in rows for i in ids}
    by_key = Counter(i.key for i in idents)
    by_table = Counter(t for t, _, _ in rows)
    return [
        f"{plan.name} {cid}: {len(idents)} identifier(s) "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(by_key.items()))}), {len(rows)} "
        f"source row(s) ({', '.join(f'{t}: {n}' for t, n in by_table.items())})",
    ]


def explain(
    wh: WarehouseResource,
    loaded: LoadedConfig,
    identifiers: list[str],
    canonical_id: str | None = None,
    cid_name: str | None = None,
) -> str:
    plan = _plan(loaded, cid_name)
    lines: list[str] = []
    with wh.session():
        if canonical_id is not None:
            rows = component_rows(wh, plan, canonical_id)
            if not rows:
                raise ExplainError(f"{plan.name} {canonical_id!r} is not in {plan.ref('lookup').display}")
            lines += _describe_component(plan, canonical_id, rows)
            idents = sorted({str(i) for _, _, ids in rows for i in ids})
            lines += ["identifiers:", *(f"  {i}" for i in idents)]
            return "\n".join(lines)
        if len(identifiers) not in (1, 2):
            raise ExplainError("give one or two identifiers, or --canonical-id")
        found = [find_canonical_ids(wh, plan, text) for text in identifiers]
        first = found[0][0]
        rows = component_rows(wh, plan, first[1])
        lines += _describe_component(plan, first[1], rows)
        if len(found) == 1:
            return "\n".join(lines)
        second = next(((i, c) for i, c in found[1] if c == first[1]), found[1][0])
        if second[1] != first[1]:
            lines.append(f"{first[0]} and {second[0]} are NOT merged: {second[0]} has {plan.name} {second[1]}")
            return "\n".join(lines)
        chain = shortest_chain(rows, first[0], second[0])
        lines.append(f"why {first[0]} and {second[0]} share it ({len(chain) // 2} link(s)):")
        for step in chain:
            if isinstance(step, Identifier):
                lines.append(f"  {step}")
            else:
                table, values, _ = step
                lines.append(f"    -- {table} row {values}")
    return "\n".join(lines)
