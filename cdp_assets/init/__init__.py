"""``cdp-assets init``: draft ``cdp.yml``, ``unify.yml`` and ``init_report.md`` from the data.

sources.py finds the objects and samples them, profile.py computes per-column statistics,
detect.py decides what each column is, draft.py writes the files. Nothing here runs the
pipeline or writes to a warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdp_assets.config.identifiers import check_lower_identifier
from cdp_assets.config.models import StagingRule
from cdp_assets.init import detect
from cdp_assets.init.draft import DraftObject, cdp_yaml, plan_sources, report_markdown, summary_table, unify_yaml
from cdp_assets.init.profile import Profiler
from cdp_assets.init.sources import (
    InitSourceError,
    ObjectSample,
    inspect_declared,
    inspect_local,
    inspect_s3,
    inspect_sql_database,
    inspect_tables,
)

OUTPUT_FILES = ("cdp.yml", "unify.yml", "init_report.md")
UNPARSEABLE_MAX = 0.25  # the default of checks.unparseable_max_pct: a rule is drafted only if its check can pass


class InitError(ValueError):
    """init cannot draft: an existing file without --force, a bad client name, no usable data."""


@dataclass
class InitResult:
    files: dict[str, Path]
    objects: list[DraftObject]
    summary: str
    drafted: bool  # False when no object had an identifier: only the report was written


def inspect_sources(
    specs: list[str], warehouse=None, s3_endpoint_url: str | None = None, layout_dir: Path | None = None
) -> list[ObjectSample]:
    samples: list[ObjectSample] = []
    for spec in specs:
        if spec.startswith("s3://"):
            samples += inspect_s3(spec, s3_endpoint_url)
        elif spec.startswith("sources:"):
            samples += inspect_declared(Path(spec.removeprefix("sources:")))
        elif spec.startswith("sql_database:"):
            samples += inspect_sql_database(spec.removeprefix("sql_database:"))
        elif spec.startswith("table:"):
            if warehouse is None:
                raise InitSourceError(
                    f"--source {spec}: a warehouse source needs the engine; "
                    "pass --config FILE whose engine holds the tables"
                )
            samples += inspect_tables(warehouse, spec.removeprefix("table:"))
        else:
            samples += inspect_local(Path(spec), layout_dir)
    return samples


def detect_objects(samples: list[ObjectSample], profiler: Profiler) -> list[DraftObject]:
    objects = []
    for sample in samples:
        obj = DraftObject(sample)
        objects.append(obj)
        if sample.problem:
            obj.left_out = sample.problem
            continue
        for column in sample.columns:
            stats = profiler.column(sample, column)
            obj.kinds.append(detect.classify(stats, sample.complex_columns.get(column), UNPARSEABLE_MAX, sample.name))
    detect.link_ids([k for o in objects for k in o.kinds])
    for obj in objects:
        if obj.left_out:
            continue
        obj.primary_key = detect.primary_key(obj.kinds)
        obj.watermark = detect.watermark(obj.kinds)
        if obj.watermark is None:
            obj.left_out = (
                "no date/time column to load it incrementally by (every row needs one); add an updated-at column"
            )
        elif not obj.identifiers:
            obj.left_out = "no user identifier (email, phone, customer/user/member id, cookie, device id)"
    return objects


def key_junk(
    objects: list[DraftObject], keys: dict[str, list[detect.ColumnKind]], profiler: Profiler
) -> dict[str, list[tuple[str, int]]]:
    """Frequent junk among the values each key will hold (after its staging rule)."""
    by_table = {o.sample.table: o for o in objects}
    junk = {}
    for name, cols in keys.items():
        counts: dict[str, int] = {}
        for col in cols:
            rule = None
            if col.kind == "email":
                rule = StagingRule(rule="email", columns=[col.column])
            elif col.kind == "phone":
                rule = StagingRule(rule="phone", columns=[col.column], default_region=col.phone_region or "US")
            df = profiler.standardized_counts(by_table[col.table].sample, col.column, rule)
            for v, n in zip(df["value"], df["n"]):
                counts[str(v)] = counts.get(str(v), 0) + int(n)
        junk[name] = detect.junk_values(counts)
    return junk


def draft_project(
    client: str,
    sources: list[str],
    out_dir: Path,
    force: bool = False,
    warehouse=None,
    engine_yaml: str | None = None,
    s3_endpoint_url: str | None = None,
) -> InitResult:
    try:
        check_lower_identifier(client, "--client")
    except ValueError as exc:
        raise InitError(str(exc)) from None
    out_dir = out_dir.expanduser().resolve()
    files = {name: out_dir / name for name in OUTPUT_FILES}
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not force:
        raise InitError(
            f"{', '.join(existing)} already exist(s); nothing was "
            "written. Pass --force to overwrite, or choose another --out"
        )
    # Loose files of several objects are linked into the connector's layout here.
    samples = inspect_sources(sources, warehouse, s3_endpoint_url, layout_dir=out_dir / "sources")
    profiler = Profiler()
    with profiler.open(samples):
        objects = detect_objects(samples, profiler)
        planned = plan_sources(objects)
        used = [o for s in planned for o in s.objects]
        keys = detect.group_keys([k for o in used for k in o.kinds])
        junk = key_junk(used, keys, profiler)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The report first: it is useful even when nothing could be drafted.
    files["init_report.md"].write_text(report_markdown(client, sources, objects, planned, keys, junk), encoding="utf-8")
    drafted = bool(used)
    if drafted:
        files["cdp.yml"].write_text(cdp_yaml(client, planned, sources, out_dir, engine_yaml), encoding="utf-8")
        files["unify.yml"].write_text(unify_yaml(client, planned, keys, junk), encoding="utf-8")
    written = {n: p for n, p in files.items() if n == "init_report.md" or drafted}
    return InitResult(written, objects, summary_table(objects, junk), drafted)
