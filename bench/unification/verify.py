"""The check after every size: every method that finished found the same partition."""

from __future__ import annotations

import duckdb

from .base import make_plan


def verify(results: dict) -> dict:
    """Whether every method that finished gave the same partition (``ok``), with the problems
    found and the figures of the partition (values, components, the largest, their sizes)."""
    _, plan = make_plan()
    lookup = f'"{plan.schema}"."{plan.name}_lookup"'
    con = duckdb.connect(config={"threads": "2", "memory_limit": "8GB"})
    rels = {}
    for m in ("ours", "labelprop"):
        r = results.get(m)
        if r and r.get("status") == "ok":
            con.execute(f"ATTACH '{r['work_db']}' AS {m} (READ_ONLY)")
            con.execute(
                f"CREATE TEMP VIEW p_{m} AS SELECT id_key_type AS key_type, id AS value, unified_id AS comp "
                f"FROM {m}.{lookup}"
            )
            rels[m] = f"p_{m}"
    r = results.get("scipy")
    if r and r.get("status") == "ok":
        con.execute(
            "CREATE TEMP VIEW p_scipy AS SELECT CAST(key_type AS INTEGER) AS key_type, value, "
            f"component AS comp FROM read_parquet('{r['partition']}')"
        )
        rels["scipy"] = "p_scipy"
    info: dict = {"checked": sorted(rels), "ok": True, "problems": []}
    if not rels:
        info["ok"] = False
        info["problems"].append("no method finished")
        return info
    first = next(iter(rels.values()))
    info["values"] = con.execute(f"SELECT COUNT(*) FROM {first}").fetchone()[0]
    info["components"] = con.execute(f"SELECT COUNT(DISTINCT comp) FROM {first}").fetchone()[0]
    sizes = con.execute(f"SELECT COUNT(*) AS s FROM {first} GROUP BY comp ORDER BY s DESC LIMIT 1").fetchone()
    info["largest_component"] = sizes[0] if sizes else 0
    info["size_histogram"] = con.execute(
        f"SELECT s, COUNT(*) FROM (SELECT COUNT(*) AS s FROM {first} GROUP BY comp) GROUP BY s ORDER BY s"
    ).fetchall()
    names = list(rels)
    for other in names[1:]:
        a, b = rels[names[0]], rels[other]
        n_a, n_b = (con.execute(f"SELECT COUNT(*) FROM {x}").fetchone()[0] for x in (a, b))
        joined, pairs, ca, cb = con.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT (x.comp, y.comp)), COUNT(DISTINCT x.comp), COUNT(DISTINCT y.comp) "
            f"FROM {a} AS x JOIN {b} AS y ON x.key_type = y.key_type AND x.value = y.value"
        ).fetchone()
        # same values, and the component ids correspond one to one: identical partitions
        same = n_a == n_b == joined and pairs == ca == cb
        if names[0] == "ours" and other == "labelprop":
            # both pick the smallest node as leader: even the canonical ids must agree
            diff = con.execute(
                f"SELECT COUNT(*) FROM {a} AS x JOIN {b} AS y USING (key_type, value) WHERE x.comp <> y.comp"
            ).fetchone()[0]
            same = same and diff == 0
        if not same:
            info["ok"] = False
            info["problems"].append(
                f"{names[0]} vs {other}: values {n_a} / {n_b}, matched {joined}, "
                f"components {ca} / {cb}, distinct pairs {pairs}"
            )
    con.close()
    return info
