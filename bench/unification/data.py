"""The benchmark's input (not timed): the generated sample, and from it one DuckDB table
``src.rows(email, phone, cookie, ts)`` of standardised, valid keys per source record."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .base import DATA, ROOT, log

JUNK_EMAILS = ("test@test.com", "n/a", "", "not-an-email")


def ensure_sample(n: int, seed: int, chain: tuple[int, int]) -> Path:
    """Generate the sample into bench/.data/N/sample unless a complete one is there."""
    out = DATA / str(n) / "sample"
    marker = out / ".complete"
    stamp = f"records={n} seed={seed} chain_emails={chain[0]}-{chain[1]}"
    if marker.exists() and marker.read_text().strip() == stamp:
        log(f"N={n}: reusing sample in {out.relative_to(ROOT)}")
        return out
    if out.exists():
        shutil.rmtree(out)
    from cdp_assets.sample.generator import generate_sample

    log(f"N={n}: generating sample (seed {seed}) ...")
    t0 = time.perf_counter()
    summary = generate_sample(out, n, seed=seed, chain_emails=chain)
    marker.write_text(stamp + "\n")
    log(f"N={n}: generated {sum(summary.records.values())} records in {time.perf_counter() - t0:.1f}s")
    return out


def _files(sample: Path, source: str, obj: str, ext: str) -> str:
    paths = sorted(str(p) for p in (sample / source / obj).rglob(f"*.{ext}"))
    if not paths:
        raise SystemExit(f"no {ext} files under {sample / source / obj}")
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def raw_sql(sample: Path) -> str:
    """Every source record with its raw email, phone, cookie and time, all VARCHAR."""
    cust = _files(sample, "shop", "customers", "csv")
    orders = _files(sample, "shop", "orders", "csv")
    members = _files(sample, "loyalty", "members", "parquet")
    events = _files(sample, "web", "events", "jsonl")
    json_cols = (
        "{'event_id': 'VARCHAR', 'cookie_id': 'VARCHAR', 'email': 'VARCHAR', 'event_type': 'VARCHAR', "
        "'updated_at': 'VARCHAR'}"
    )
    return f"""
  SELECT email, phone, CAST(NULL AS VARCHAR) AS cookie, updated_at
  FROM read_csv({cust}, header = true, all_varchar = true)
  UNION ALL
  SELECT email, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), updated_at
  FROM read_csv({orders}, header = true, all_varchar = true)
  UNION ALL
  SELECT CAST(email AS VARCHAR), CAST(phone AS VARCHAR), CAST(NULL AS VARCHAR), CAST(updated_at AS VARCHAR)
  FROM read_parquet({members})
  UNION ALL
  SELECT email, CAST(NULL AS VARCHAR), cookie_id, updated_at
  FROM read_json({events}, format = 'newline_delimited', columns = {json_cols})
"""


def rows_sql(sample: Path) -> str:
    """One row per source record with its standardised, valid keys (NULL where absent)."""
    junk = ", ".join(f"'{j}'" for j in JUNK_EMAILS)
    return f"""
WITH raw AS ({raw_sql(sample)}),
std AS (
  SELECT lower(trim(email)) AS e,
         regexp_replace(phone, '[^0-9]', '', 'g') AS d,
         cookie AS c,
         updated_at
  FROM raw
),
nat AS (
  -- US numbers: '+1 ...' / '1-...' and the 10-digit spellings are the same number
  SELECT e, CASE WHEN length(d) = 11 AND d LIKE '1%' THEN substr(d, 2) ELSE d END AS p, c, updated_at
  FROM std
),
keyed AS (
  SELECT CASE WHEN e IS NULL OR e IN ({junk}) OR NOT contains(e, '@') THEN NULL ELSE e END AS email,
         CASE WHEN p IS NULL OR length(p) < 10 OR p = repeat(left(p, 1), length(p)) THEN NULL ELSE p END AS phone,
         c AS cookie,
         CAST(updated_at AS TIMESTAMP) AS ts
  FROM nat
)
SELECT email, phone, cookie, ts FROM keyed
WHERE email IS NOT NULL OR phone IS NOT NULL OR cookie IS NOT NULL
"""


def ensure_rows_db(n: int, sample: Path, seed: int, chain: tuple[int, int]) -> tuple[Path, dict]:
    """bench/.data/N/rows.duckdb with src.rows (built once, atomically, reused after)."""
    import duckdb

    db = DATA / str(n) / "rows.duckdb"
    stamp = f"records={n} seed={seed} chain_emails={chain[0]}-{chain[1]} v=1"
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            meta = con.execute("SELECT stamp, source_records, key_rows FROM src.meta").fetchone()
            if meta and meta[0] == stamp:
                log(f"N={n}: reusing {db.relative_to(ROOT)} ({meta[2]:,} key rows)")
                return db, {"source_records": meta[1], "key_rows": meta[2]}
        except duckdb.Error:
            pass
        finally:
            con.close()
    tmp = db.with_suffix(".building.duckdb")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    log(f"N={n}: building {db.relative_to(ROOT)} (src.rows) ...")
    t0 = time.perf_counter()
    con = duckdb.connect(str(tmp), config={"threads": "2", "memory_limit": "8GB"})
    try:
        con.execute("CREATE SCHEMA src")
        source_records = con.execute(f"SELECT COUNT(*) FROM ({raw_sql(sample)})").fetchone()[0]
        con.execute("CREATE TABLE src.rows AS " + rows_sql(sample))
        key_rows = con.execute("SELECT COUNT(*) FROM src.rows").fetchone()[0]
        con.execute(
            "CREATE TABLE src.meta AS SELECT ? AS stamp, ? AS source_records, ? AS key_rows",
            [stamp, source_records, key_rows],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    tmp.rename(db)
    log(f"N={n}: {source_records:,} source records -> {key_rows:,} key rows in {time.perf_counter() - t0:.1f}s")
    return db, {"source_records": source_records, "key_rows": key_rows}
