"""Seeded, realistic, messy multi-source sample data for the CDP pipeline.

``generate_sample(out_dir, n_records)`` writes four source objects (shop customers
and orders as CSV, loyalty members as Parquet, web events as JSON lines), each
split into a historical file (``updated_at`` in 2023) and two daily incremental
files (2024-06-01 and 2024-06-02), plus ``ground_truth.csv`` mapping every record
to the person that produced it.

Identity model
--------------
About ``n_records / 3`` persons.  A regular person owns 1-3 emails, 1-2 US phone
numbers and 1-3 web cookies; each record of the person uses a random pick of
those identifiers, so identities are shared transitively across sources.  About
2% of the persons are *chain* persons: they own 6-12 emails and their records
form a path ``(e1,b1) (e2,b1) (e2,b2) (e3,b2) ...`` where each bridge ``b`` is a
phone (shop customer / loyalty member records) or a cookie (web events), so
consecutive records share exactly one identifier and unification needs many
hops.  Chain records are never nulled or junked (that would break the chain).

Every valid identifier belongs to exactly one person.  Junk values
(``test@test.com``, ``N/A``, ``""``, ``not-an-email``, ``0000000000``, ``123``)
are shared by many unrelated persons on purpose.

Row counts
----------
``n_records`` is exactly the number of rows written over the four objects
(customers 25%, orders 30%, members 20%, events the rest, integer floor
division).  Per object ``round(historical_share * rows)`` rows are historical and
the rest incremental (day 1 gets the odd row).  For shop customers,
``min(5% of rows, incremental rows, historical rows)`` of the incremental rows are
updated versions of historical customers (same ``customer_id``, later
``updated_at``, possibly another phone of the person), so distinct customer ids
= customer rows - updates.  With the messy columns (the default), about 3% of the
web events with an email and a cookie are re-delivered: extra rows under new event ids
(``SampleSummary.duplicates``; ``records`` counts without them).  ``ground_truth.csv``
has one row per distinct record id, re-deliveries included.

Messy values
------------
Birth dates, newsletter flags, currency amounts, international mobiles, JSON attributes
and client times in several spellings, drawn without touching the identity stream
(``messiness``; docs/sample.md).  ``extra_columns=False`` leaves them out.

The identity model is vectorised with numpy/pandas; output is byte-identical for the
same ``(n_records, seed, historical_share, chain_emails, extra_columns)``.

Parts
-----
``generate_sample`` runs named parts, each in its own module: the row budget, the persons, the
chain persons, the identifier pools and each object's records (``identities``: the one random
stream that decides who merges with whom), the rendering of values (``render``), the messiness
that adds columns without touching that stream (``messiness``), and the files (``files``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cdp_assets.sample.files import SEGMENTS, ground_truth, object_file, segment_rows, segments, write_frame
from cdp_assets.sample.identities import (
    draw_chains,
    draw_event_types,
    draw_identifier_pools,
    draw_object_records,
    draw_people,
    link_orders,
    row_budget,
    with_customer_updates,
)
from cdp_assets.sample.layout import (
    EXTRA_COLUMNS,
    IDENTITY_COLUMNS,
    INCREMENTAL_DATES,
    JUNK_EMAILS,
    JUNK_PHONES,
    OBJECT_COLUMNS,
)
from cdp_assets.sample.messiness import Messiness
from cdp_assets.sample.render import id_width, render_columns, timestamps

__all__ = [
    "EXTRA_COLUMNS",
    "IDENTITY_COLUMNS",
    "INCREMENTAL_DATES",
    "JUNK_EMAILS",
    "JUNK_PHONES",
    "OBJECT_COLUMNS",
    "SampleSummary",
    "generate_sample",
    "main",
]


@dataclass(frozen=True)
class SampleSummary:
    out_dir: Path
    records: dict[str, int]  # "shop/customers" -> rows written (historical + incremental)
    persons: int  # distinct persons having at least one record
    files: list[Path]
    duplicates: int = 0  # web event re-deliveries written besides the records (extra_columns only)


def generate_sample(
    out_dir: Path | str,
    n_records: int,
    seed: int = 42,
    historical_share: float = 0.7,
    chain_emails: tuple[int, int] = (6, 12),
    extra_columns: bool = True,
) -> SampleSummary:
    """Write the messy multi-source sample under ``out_dir`` (see module docstring).

    ``chain_emails`` bounds the number of emails of a chain person (a chain of 2(k-1) records);
    benchmarks raise it to stress loops that need one round per link. ``extra_columns=False``
    writes the identity columns only, byte for byte as before the messiness was added.
    """
    chain = _checked_chain_emails(chain_emails)
    n = int(n_records)
    if n < 0:
        raise ValueError(f"n_records must be >= 0, got {n_records!r}")
    share = float(historical_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"historical_share must be within [0, 1], got {historical_share!r}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)  # the identity stream: every draw below, in this order

    budget = row_budget(n, share)
    people = draw_people(n, rng)
    chains = draw_chains(people, budget, chain, rng)
    pools = draw_identifier_pools(people, chains, rng)
    recs = draw_object_records(budget, chains, pools, rng)
    customers = with_customer_updates(recs["shop/customers"], budget, pools, rng)
    link_orders(recs["shop/orders"], recs["shop/customers"], people.count, rng)
    draw_event_types(recs["web/events"], rng)
    recs["shop/customers"] = customers

    width = id_width(n)  # one width for every object, so references match
    messiness = Messiness(seed, len(recs["web/events"]["id"]) + 1, width) if extra_columns else None
    files: list[Path] = []
    for key, rec in recs.items():
        seg = segments(len(rec["person"]), budget.hist[key])
        secs = timestamps(seg, rng)
        cols = render_columns(key, rec, secs, width, people, pools, rng)
        for segment in SEGMENTS:
            rows = segment_rows(seg, rec["id"], secs, segment)
            frame = pd.DataFrame({c: cols[c][rows] for c in IDENTITY_COLUMNS[key]})
            if messiness is not None:
                frame = messiness.apply(key, segment, frame, rec["person"][rows] + 1)
            path = object_file(out, key, segment)
            write_frame(frame, path)
            files.append(path)

    gt_path = out / "ground_truth.csv"
    truth = ground_truth(recs, width, people.count)
    write_frame(truth if messiness is None else messiness.truth_rows(truth), gt_path)
    files.append(gt_path)
    persons_used = len(np.unique(np.concatenate([rec["person"] for rec in recs.values()])))
    return SampleSummary(
        out_dir=out,
        records={key: len(rec["person"]) for key, rec in recs.items()},
        persons=int(persons_used),
        files=files,
        duplicates=0 if messiness is None else messiness.duplicates,
    )


def _checked_chain_emails(chain_emails: tuple[int, int]) -> tuple[int, int]:
    lo_chain, hi_chain = (int(x) for x in chain_emails)
    if not 2 <= lo_chain <= hi_chain:
        raise ValueError(f"chain_emails must be (low, high) with 2 <= low <= high, got {chain_emails!r}")
    return lo_chain, hi_chain


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdp_assets.sample.generator",
        description="Write a seeded, messy multi-source CDP sample data set.",
    )
    parser.add_argument("--records", type=int, default=2000, help="total rows over all objects")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--historical-share", type=float, default=0.7)
    args = parser.parse_args(argv)
    summary = generate_sample(args.out, args.records, seed=args.seed, historical_share=args.historical_share)
    counts = ", ".join(f"{k}={v}" for k, v in summary.records.items())
    print(
        f"wrote {sum(summary.records.values())} records of {summary.persons} persons "
        f"({counts}) and {summary.duplicates} re-delivered web events in {len(summary.files)} files "
        f"to {summary.out_dir}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
