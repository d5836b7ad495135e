"""Acceptance: on 100,000 generated records the canonical ids group records exactly as a
union-find over the same valid keys does."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from cdp_assets.config import load_config
from cdp_assets_tests.conftest import run_pipeline, warehouse_for, write_project

pytestmark = pytest.mark.pipeline  # the whole pipeline on 100k records


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def test_canonical_ids_match_union_find_on_100k_records(tmp_path, instance):
    loaded = load_config(write_project(tmp_path, records=100_000, seed=11))
    result = run_pipeline(loaded, instance)
    assert result.success

    unify = loaded.unification
    keys = {k.name: k for k in unify.keys}

    def is_valid(key: str, value) -> bool:
        if value is None or pd.isna(value):
            return False
        k = keys[key]
        return value not in k.invalid_texts and (k.valid_regexp is None or re.search(k.valid_regexp, value) is not None)

    wh = warehouse_for(loaded)
    uf = UnionFind()
    records: list[tuple[str, int, str | None]] = []  # (table, row, canonical id)
    keyless = 0
    with wh.session():
        for t in unify.tables:
            cols = [kc.column for kc in t.key_columns]
            df = wh.fetch(
                f'SELECT {", ".join(cols)}, unified_id FROM "cdp_unification_customer_360"."enriched_{t.table}"'
            )
            for i, row in enumerate(df.itertuples(index=False)):
                values = [(kc.key, getattr(row, kc.column)) for kc in t.key_columns]
                nodes = [(k, v) for k, v in values if is_valid(k, v)]
                record = (t.table, i)
                uf.find(record)
                for node in nodes:
                    uf.union(record, node)
                cid = None if pd.isna(row.unified_id) else row.unified_id
                # a record gets an id exactly when it has a valid key
                assert (cid is None) == (not nodes), (t.table, i, values, cid)
                keyless += cid is None
                if cid is not None:
                    records.append((t.table, i, cid))

    # The partition induced by canonical ids equals the union-find partition, both ways.
    by_root: dict = {}
    by_id: dict = {}
    for table, i, cid in records:
        root = uf.find((table, i))
        by_root.setdefault(root, set()).add(cid)
        by_id.setdefault(cid, set()).add(root)
    assert all(len(roots) == 1 for roots in by_id.values()), "one canonical id spans several union-find sets"
    assert all(len(ids) == 1 for ids in by_root.values()), "one union-find set has several canonical ids"
    staged_rows = len(records) + keyless
    # updated customers collapse into one row per customer_id in hist-union
    assert 95_000 < staged_rows <= 100_000

    report = loaded.report_path.read_text()
    assert re.search(r"canonical ids: \*\*\d+\*\*", report)
    assert re.search(r"coverage \(rows with an id / rows\): \*\*[\d.]+%\*\*", report)
    assert re.search(r"loop iterations: \d+ \(converged\)", report)
    print(f"100k records: {len(by_id)} canonical ids, {keyless} records without a valid key")
