"""The final report: per phase tables and rows, and the data quality of the unification."""

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from cdp_assets.assets.keys import table_key
from cdp_assets.assets.metadata import engine_kinds
from cdp_assets.assets.pools import WAREHOUSE_POOL
from cdp_assets.assets.staging import RULE_COUNTS
from cdp_assets.config.models import LoadedConfig
from cdp_assets.engines.base import WarehouseResource
from cdp_assets.assets.automation import downstream_condition
from cdp_assets.report_charts import write_chart
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.report import COMPONENT_SIZES, component_sizes_sql, latest_run_loop_sql
from cdp_assets.sql.unification_pipeline import enriched_ref

GROUP = "report"


def phase_of(key: AssetKey, loaded: LoadedConfig) -> str:
    schema, name = key.path[0], key.path[-1]
    if schema == loaded.pipeline.stg_schema:
        return "staging"
    if schema == loaded.pipeline.src_schema:
        return "hist_union" if name.endswith("_hist_union") else "ingestion"
    return "unification"


def build_report_asset(loaded: LoadedConfig, upstream: list[AssetKey]):
    @asset(
        pool=WAREHOUSE_POOL,
        key=AssetKey(["cdp_report"]),
        group_name=GROUP,
        deps=upstream,
        automation_condition=downstream_condition(),
        kinds=engine_kinds(loaded) | {"markdown"},
        description=f"Markdown report of the pipeline, also written to {loaded.report_path}.",
    )
    def cdp_report(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session():
            markdown, quality = render_report(context, loaded, warehouse, upstream)
        loaded.report_path.parent.mkdir(parents=True, exist_ok=True)
        loaded.report_path.write_text(markdown, encoding="utf-8")
        context.log.info(f"report written to {loaded.report_path}")
        return MaterializeResult(
            metadata={
                "report": MetadataValue.md(_inline_charts(markdown, loaded.report_path.parent)),
                "path": MetadataValue.path(str(loaded.report_path)),
                **quality,
            }
        )

    return cdp_report


def _staging_rule_lines(context: AssetExecutionContext, loaded: LoadedConfig, upstream: list[AssetKey]) -> list[str]:
    """Per staged table, each rule's counts as its latest build measured them."""
    rows = []
    for key in (k for k in upstream if phase_of(k, loaded) == "staging"):
        event = context.instance.get_latest_materialization_event(key)
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        counts = meta[RULE_COUNTS].value if RULE_COUNTS in meta else {}
        rows += [
            f"| `{key.path[-1]}` | `{out}` | {c['rule']} | {c['parsed']} | "
            f"{c['null']} | {c['unparseable']} | {c['unparseable_pct']} |"
            for out, c in counts.items()
        ]
    if not rows:
        return []
    return [
        "## Staging rules",
        "",
        "Rows each rule parsed, rows without input (NULL, empty "
        "or a null token) and rows whose input it could not read.",
        "",
        "| table | column | rule | parsed | no input | unparseable | unparseable % |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def render_report(
    context: AssetExecutionContext, loaded: LoadedConfig, wh: WarehouseResource, upstream: list[AssetKey]
) -> tuple[str, dict]:
    p = loaded.pipeline
    lines = [
        f"# CDP pipeline report: {p.client}",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} "
        f"UTC by run `{context.run.run_id}` on {wh.describe()}.",
        "",
    ]
    # Which tables exist (one description), and all their row counts (one round trip).
    refs = {key: TableRef(key.path[0], key.path[-1]) for key in upstream}
    described = wh.describe_tables(list(refs.values()))
    present = [ref for ref in refs.values() if described[ref] is not None]
    row_count = {(ref.schema, ref.name): n for ref, n in wh.row_counts(present).items()}
    for phase in ("ingestion", "hist_union", "staging", "unification"):
        keys = [k for k in upstream if phase_of(k, loaded) == phase]
        table_lines, steps, jobs, statuses = [], set(), [], []
        for key in keys:
            ref = refs[key]
            rows = row_count.get((ref.schema, ref.name))
            event = context.instance.get_latest_materialization_event(key)
            when = (
                datetime.fromtimestamp(event.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                if event
                else "never"
            )
            run = event.run_id[:8] if event else ""
            status = "ok" if rows is not None else "missing"
            statuses.append(status)
            if event is not None:
                steps.add((event.run_id, event.step_key))
                meta = event.asset_materialization.metadata if event.asset_materialization else {}
                ids = meta.get("engine_job_ids")
                jobs += [str(j) for j in (ids.value if ids is not None else [])]
            table_lines.append(f"| `{ref.display}` | {rows if rows is not None else '-'} | {status} | {when} | {run} |")
        seconds = _steps_seconds(context, steps)
        lines += [
            f"## {phase.replace('_', '-').title()}",
            "",
            f"Status: **{'ok' if statuses and all(st == 'ok' for st in statuses) else 'incomplete'}**; "
            f"{len(keys)} table(s); duration {seconds:.1f}s (its latest steps); "
            + (
                f"engine jobs: {', '.join(f'`{j}`' for j in jobs[:20])}"
                + (f" and {len(jobs) - 20} more" if len(jobs) > 20 else "")
                if jobs
                else "engine jobs: none (this engine has no job ids)"
            ),
            "",
            "| table | rows | status | last materialized | run |",
            "|---|---:|---|---|---|",
            *table_lines,
            "",
        ]

    lines += _staging_rule_lines(context, loaded, upstream)

    quality: dict = {}
    charts: list[Path] = []
    for plan in u.build_id_plans(loaded):
        lookup = plan.ref("lookup")
        if (lookup.schema, lookup.name) not in row_count:
            continue
        sizes = _component_sizes(context, wh, plan, row_count)
        ids, idents = int(sizes["ids"].sum()), int(sizes["identifiers"].sum())
        loop, changed = _latest_loop(context, wh, plan, row_count)
        coverage, rows_with_id, rows_total = {}, 0, 0
        for t in plan.tables:
            enriched = enriched_ref(plan.schema, t.alias)
            if (enriched.schema, enriched.name) in row_count:
                n, w = _enriched_counts(context, wh, enriched, plan.name, row_count[(enriched.schema, enriched.name)])
                coverage[t.alias] = u.coverage_pct(w, n)
                rows_with_id += w
                rows_total += n
        overall = u.coverage_pct(rows_with_id, rows_total)
        chart = write_chart(
            loaded.report_path.with_name(f"{loaded.report_path.stem}_{plan.name}.png"),
            coverage,
            [(str(r["bucket"]), int(r["ids"])) for _, r in sizes.iterrows()],
            changed,
            p.checks.coverage_min_pct,
            f"{p.client}: {plan.name}",
        )
        charts.append(chart)
        lines += [
            f"## Data quality: `{plan.name}`",
            "",
            f"- canonical ids: **{ids}**",
            f"- coverage (rows with an id / rows): **{overall}%** (minimum {p.checks.coverage_min_pct}%)",
            f"- average identifiers per profile: {idents / ids if ids else 0:.2f}",
            f"- merge ratio (source rows per id): {rows_with_id / ids if ids else 0:.2f}",
            f"- loop iterations: {int(loop['iteration'])} "
            f"({'converged' if bool(loop['converged']) else 'NOT converged: raise merge_iterations'})",
            f"- rows changed per iteration: {changed}",
            "",
            f"![coverage, component sizes and loop iterations]({chart.name})",
            "",
            "| table | coverage % |",
            "|---|---:|",
            *[f"| {a} | {c} |" for a, c in coverage.items()],
            "",
            "| component size (identifiers) | ids |",
            "|---|---:|",
            *[f"| {r['bucket']} | {int(r['ids'])} |" for _, r in sizes.iterrows()],
            "",
        ]
        quality.update(
            {
                f"{plan.name}_ids": ids,
                f"{plan.name}_coverage_pct": overall,
                f"{plan.name}_loop_iterations": int(loop["iteration"]),
            }
        )
    lines += ["## Next steps", ""]
    low = [k for k, v in quality.items() if k.endswith("_coverage_pct") and v < p.checks.coverage_min_pct]
    if low:
        lines.append("- Coverage is below the threshold: check the staging rules and the `invalid_texts` of the keys.")
    lines.append("- Open the Dagster UI (`dagster dev`) to see the checks and the loop iterations of each run.")
    quality["charts"] = MetadataValue.json([str(c) for c in charts])
    return "\n".join(lines) + "\n", quality


def _latest_loop(context: AssetExecutionContext, wh: WarehouseResource, plan: u.IdPlan, row_count: dict):
    """(the latest loop run's last round: iteration and converged, its rows changed per iteration):
    what the graph's latest build recorded (the rows it appended to the loop statistics) while the
    graph still holds that build's rows, else one query of the loop statistics."""
    graph = plan.ref("graph")
    event = context.instance.get_latest_materialization_event(table_key(graph))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    built_rows = meta.get("dagster/row_count")
    recorded = {"last_round_iteration", "last_round_converged", "rows_changed_per_iteration"} <= set(meta)
    if recorded and built_rows is not None and built_rows.value == row_count.get((graph.schema, graph.name)):
        loop = {"iteration": meta["last_round_iteration"].value, "converged": meta["last_round_converged"].value}
        return loop, [int(n) for n in meta["rows_changed_per_iteration"].value]
    iterations = wh.fetch(latest_run_loop_sql(plan.ref("loop_stats")))
    changed = iterations.loc[iterations["iteration"] > 0, "rows_changed"].astype(int).tolist()
    return iterations.iloc[-1], changed


def _component_sizes(context: AssetExecutionContext, wh: WarehouseResource, plan: u.IdPlan, row_count: dict):
    """The lookup's ids by size (``component_sizes_sql``'s rows): as the result statistics' build
    measured them (with the enrichments' coverage) in the run that built the lookup, while the
    lookup still holds that build's rows, else one query of the lookup."""
    lookup, stats = plan.ref("lookup"), plan.ref("result_key_stats")
    built = context.instance.get_latest_materialization_event(table_key(lookup))
    measured = context.instance.get_latest_materialization_event(table_key(stats))
    if built and measured and built.run_id == measured.run_id and built.asset_materialization:
        meta, rows = (
            measured.asset_materialization.metadata,
            built.asset_materialization.metadata.get("dagster/row_count"),
        )
        if COMPONENT_SIZES in meta and rows is not None and rows.value == row_count.get((lookup.schema, lookup.name)):
            columns = ["bucket", "ids", "identifiers", "smallest"]
            return pd.DataFrame(meta[COMPONENT_SIZES].value, columns=columns)
    return wh.fetch(component_sizes_sql(lookup, plan.name))


def _enriched_counts(
    context: AssetExecutionContext, wh: WarehouseResource, enriched: TableRef, cid: str, rows_now: int
) -> tuple[int, int]:
    """(rows, rows with the id) of an enriched table: what its latest build counted (its
    ``rows_with_id``) while the table still holds that build's rows, else one query."""
    event = context.instance.get_latest_materialization_event(table_key(enriched))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    built_rows, with_id = meta.get("dagster/row_count"), meta.get("rows_with_id")
    if built_rows is not None and with_id is not None and cid in with_id.value and built_rows.value == rows_now:
        return rows_now, int(with_id.value[cid])
    row = wh.fetch(u.coverage_sql(enriched, [cid])).iloc[0]
    return int(row["total_rows"]), int(row[f"with_{cid}"])


def _steps_seconds(context: AssetExecutionContext, steps: set[tuple[str, str | None]]) -> float:
    """Time spent in the steps that last materialized a phase's tables (each step once)."""
    by_run: dict[str, set[str]] = {}
    for run_id, step_key in steps:
        if step_key:
            by_run.setdefault(run_id, set()).add(step_key)
    total = 0.0
    for run_id, step_keys in by_run.items():
        for stat in context.instance.get_run_step_stats(run_id, step_keys=sorted(step_keys)):
            if stat.start_time and stat.end_time:
                total += stat.end_time - stat.start_time
    return total


def _inline_charts(markdown: str, folder: Path) -> str:
    """The report as the UI shows it: the charts embedded as data URIs (the file next to the
    Markdown on disk links them by name, which the UI cannot resolve)."""

    def embed(match: re.Match) -> str:
        path = folder / match.group(2)
        if not path.exists():
            return match.group(0)
        return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", embed, markdown)
