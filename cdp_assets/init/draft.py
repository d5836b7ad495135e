"""Drafting ``cdp.yml``, ``unify.yml`` and ``init_report.md`` from what detection found.

The files are written as text with comments (the evidence of each choice), not dumped from
dicts, so the reviewer reads why each line is there. Values are JSON-quoted, which YAML reads
unchanged.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cdp_assets.init.detect import IDENTIFIER_KINDS, ColumnKind
from cdp_assets.init.sources import ObjectSample

CANONICAL_ID = "unified_id"
KEY_REGEXPS = {"email": ".+@.+", "phone": "^[0-9]{8,15}$"}  # what the staging rules output


@dataclass
class DraftObject:
    sample: ObjectSample
    kinds: list[ColumnKind] = field(default_factory=list)
    primary_key: ColumnKind | None = None
    watermark: tuple[ColumnKind, str] | None = None
    left_out: str | None = None
    source: str = ""  # the drafted source name (objects of one folder may be split by watermark)

    @property
    def table(self) -> str:
        return f"{self.source}_{self.sample.name}"

    @property
    def identifiers(self) -> list[ColumnKind]:
        return [k for k in self.kinds if k.identifier]

    @property
    def mode(self) -> str:
        inc, hist = self.sample.incremental_files > 0, self.sample.historical_files > 0
        return "both" if inc and hist else ("historical" if hist else "incremental")


@dataclass
class DraftSource:
    name: str
    connector: dict
    mode: str
    incremental_field: str
    objects: list[DraftObject]


def j(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {j(v)}" for k, v in mapping.items()) + "}"


def plan_sources(objects: list[DraftObject]) -> list[DraftSource]:
    """Sources of the config: the objects of one folder (or prefix, or schema) that share a
    watermark column and a layout (the config sets both per source)."""
    sources: list[DraftSource] = []
    used: set[str] = set()
    groups: dict[tuple, list[DraftObject]] = {}
    for o in objects:
        if o.left_out is None:
            assert o.watermark is not None
            groups.setdefault((o.sample.source, j(o.sample.connector), o.watermark[0].column, o.mode), []).append(o)
    for (base, _, field_, mode), objs in groups.items():
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        for o in objs:
            o.source = name
        sources.append(DraftSource(name, objs[0].sample.connector, mode, field_, objs))
    return sources


def _rule_names(obj: DraftObject) -> dict[str, str]:
    """column -> staging rule name: the kind when a table has one column of it, else the column."""
    out = {}
    for kind in ("email", "phone"):
        cols = [k.column for k in obj.kinds if k.kind == kind]
        for c in cols:
            out[c] = kind if len(cols) == 1 else c
    for k in obj.kinds:
        if k.kind == "name":
            out[k.column] = k.column
    return out


def key_column(obj: DraftObject, col: ColumnKind) -> str:
    """The staged column a key reads: the standardised one for email and phone, else the raw."""
    if col.kind in ("email", "phone"):
        return f"standardized_{_rule_names(obj)[col.column]}"
    return col.column


def id_regexp(values: set[str]) -> str | None:
    """A regexp every sampled value of an id key matches, when the values share one shape
    (the same letters before digits, or the same prefix before hex): rejects stray text."""
    vals = [v for v in values if v]
    if len(vals) < 20:
        return None
    m = [re.fullmatch(r"([A-Za-z]*[_\-]?)([0-9]+)", v) for v in vals]
    if all(m) and len({x.group(1) for x in m}) == 1:
        return f"^{re.escape(m[0].group(1))}[0-9]+$"
    h = [re.fullmatch(r"([A-Za-z]*[_\-])([0-9a-f]+)", v) for v in vals]
    if all(h) and len({x.group(1) for x in h}) == 1:
        return f"^{re.escape(h[0].group(1))}[0-9a-f]+$"
    return None


def cdp_yaml(client: str, sources: list[DraftSource], inputs: list[str], out_dir: Path, engine_yaml: str | None) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Drafted by `cdp-assets init` on {now} from: {', '.join(inputs)}.",
        "# Review every line (init_report.md shows the evidence for each column), then run",
        "# `cdp-assets validate --config <this file>` before `cdp-assets run`.",
        "# Relative paths resolve against this file's folder.",
        f"client: {client}",
    ]
    if engine_yaml:
        lines += ["engine:  # copied from the config given to init", *("  " + l for l in engine_yaml.splitlines())]
    else:
        lines += [
            "engine:",
            "  kind: duckdb                 # duckdb | databricks | treasure_data",
            f"  duckdb: {{path: .cdp/{client}.duckdb}}   # CDP_DUCKDB_PATH overrides it",
            "  # databricks: {catalog: main, auth: pat}   # DATABRICKS_HOST, DATABRICKS_HTTP_PATH, DATABRICKS_TOKEN",
            "  # treasure_data: {query_engine: presto, region: us}   # TD_API_KEY",
        ]
    lines.append("sources:")
    for s in sources:
        connector = dict(s.connector)
        if connector.get("kind") == "local_files":
            # Relative to the config when it sits near it (the project moves as one folder).
            rel = os.path.relpath(connector["path"], out_dir)
            connector["path"] = rel if not rel.startswith(os.path.join("..", "..")) else connector["path"]
        layout = {
            "both": "historical/ files and incremental files",
            "historical": "only historical/ files",
            "incremental": "only incremental files",
        }[s.mode]
        if connector.get("kind") == "table":
            layout = "warehouse tables, loaded by watermark"
        wm = s.objects[0].watermark
        read_from = (
            connector["database"]
            if connector.get("kind") == "table"
            else s.objects[0].sample.location.rsplit("/", 2)[0]
        )
        lines += [
            f"  # {len(s.objects)} object(s) read from {read_from}",
            f"  - name: {s.name}",
            f"    connector: {flow(connector)}",
            "    objects:",
        ]
        for o in s.objects:
            entry = {"name": o.sample.name}
            why = (
                f"{o.sample.format}, {o.sample.historical_files} historical "
                f"and {o.sample.incremental_files} incremental file(s)"
            )
            if o.primary_key is not None:
                entry["primary_key"] = [o.primary_key.column]
                why += f"; primary key {o.primary_key.column}: unique and never empty in every file"
            else:
                why += (
                    "; no primary key found (no column unique in every file): hist-union removes exact duplicates only"
                )
            lines.append(f"      - {flow(entry)}   # {why}")
        lines += [
            f"    mode: {s.mode}   # {layout}",
            f"    incremental_field: {s.incremental_field}   # watermark: {wm[1] if wm else ''}",
        ]
    lines.append("staging:   # rules for the detected identifier kinds; other columns pass through")
    for s in sources:
        for o in s.objects:
            names = _rule_names(o)
            if not names:
                continue
            lines.append(f"  {o.table}:")
            for k in o.kinds:
                if k.column not in names:
                    continue
                rule = {"rule": k.kind, "columns": [k.column]}
                if k.kind == "phone":
                    rule["default_region"] = k.phone_region or "US"
                lines.append(f"    {names[k.column]}: {flow(rule)}   # {k.evidence}")
    lines += [
        "checks:",
        "  coverage_min_pct: 90     # share of rows that must get a canonical id (blocking)",
        "  unparseable_max_pct: 25  # share of values a staging rule may fail to parse",
        "report:",
        f"  path: .cdp/{client}_report.md",
        "unification_file: unify.yml",
    ]
    return "\n".join(lines) + "\n"


def unify_yaml(
    client: str, sources: list[DraftSource], keys: dict[str, list[ColumnKind]], junk: dict[str, list[tuple[str, int]]]
) -> str:
    objects = [o for s in sources for o in s.objects if o.identifiers]
    key_order = sorted(keys, key=lambda k: (IDENTIFIER_KINDS.index(keys[k][0].kind), k))
    lines = [
        "# Treasure Data's unify.yml format: this file would run on Treasure Data as well.",
        "# Drafted by `cdp-assets init`; invalid_texts are values the sample shows far more often",
        "# than a real identifier (see init_report.md). Review them before the first run.",
        "name: customer_360",
        "keys:",
    ]
    for name in key_order:
        cols = keys[name]
        kind = cols[0].kind
        lines.append(f"  - name: {name}   # {kind}: " + ", ".join(f"{c.table}.{c.column}" for c in cols))
        regexp = KEY_REGEXPS.get(kind) or id_regexp(set().union(*(c.stats.values for c in cols)))
        if regexp:
            why = "the staging rule's output" if kind in KEY_REGEXPS else "every sampled value has this shape"
            lines.append(f"    valid_regexp: {j(regexp)}   # {why}")
        bad = junk.get(name, [])
        lines.append(f"    invalid_texts: {j(['', *[v for v, _ in bad if v != '']])}")
        for v, n in bad:
            lines.append(f"    #   {j(v)}: {n} rows")
    lines.append("tables:")
    for o in objects:
        lines += [f"  - database: {client}_stg", f"    table: {o.table}_stg", "    key_columns:"]
        for k in o.identifiers:
            lines.append(f"      - {flow({'column': key_column(o, k), 'key': k.key})}")
    lines += [
        "canonical_ids:",
        f"  - name: {CANONICAL_ID}",
        f"    merge_by_keys: {j(key_order)}   # priority: first-party "
        "ids and emails, then phones, then device and browser ids",
        "master_tables:",
        "  - name: customer_master",
        f"    canonical_id: {CANONICAL_ID}",
        "    attributes:",
    ]
    attributes: dict[str, list[tuple[DraftObject, str]]] = {}
    for o in objects:
        for k in o.kinds:
            if k.kind in ("email", "phone"):
                attributes.setdefault(k.kind if k.key == k.kind else k.column, []).append((o, key_column(o, k)))
            elif k.kind == "name":
                attributes.setdefault(k.column, []).append((o, f"cleaned_{k.column}"))
    for attr, cols in attributes.items():
        lines += [f"      - name: {attr}", "        source_columns:"]
        for priority, (o, column) in enumerate(cols, start=1):
            wm = o.watermark[0].column if o.watermark else None
            sc = {
                "table": f"{o.table}_stg",
                "column": column,
                "priority": priority,
                **({"order_by": wm} if wm else {}),
                "order": "last",
            }
            lines.append(f"          - {flow(sc)}")
    return "\n".join(lines) + "\n"


def value_type(k: ColumnKind) -> str:
    s = k.stats.shares
    if k.kind == "complex":
        return "nested"
    if s["datetime"] >= 0.9:
        return "datetime"
    if s["number"] >= 0.95:
        return "number"
    return "text"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_rows(objects: list[DraftObject], junk: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    rows = []
    for o in objects:
        for k in o.kinds:
            st = k.stats
            bad = [v for v, _ in junk.get(k.key, [])] if k.key else []
            rows.append(
                [
                    o.table if o.source else o.sample.table,
                    k.column,
                    value_type(k),
                    k.kind + (f" ({k.phone_region})" if k.phone_region else ""),
                    k.evidence,
                    str(st.distinct),
                    f"{100 * st.null_share:.1f}%",
                    st.min_value or "",
                    st.max_value or "",
                    ", ".join(f"{v} ({n})" for v, n in st.top[:3]),
                    ", ".join(j(v) for v in bad),
                ]
            )
    return rows


HEADER = [
    "table",
    "column",
    "type",
    "detected kind",
    "evidence",
    "distinct",
    "nulls",
    "min",
    "max",
    "most frequent",
    "suggested invalid values",
]


def report_markdown(
    client: str,
    inputs: list[str],
    objects: list[DraftObject],
    sources: list[DraftSource],
    keys: dict[str, list[ColumnKind]],
    junk,
) -> str:
    used = [o for s in sources for o in s.objects]
    left = [o for o in objects if o.left_out is not None]
    lines = [
        f"# init report: {client}",
        "",
        f"Sources inspected: {', '.join(inputs)}. {len(objects)} "
        f"object(s) found, {len(used)} drafted, {len(left)} left out.",
        "",
        "## Columns",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += [
        "| " + " | ".join(_cell(c) for c in row) + " |" for row in report_rows([o for o in objects if o.kinds], junk)
    ]
    lines += ["", "## Keys", ""]
    for name, cols in keys.items():
        lines.append(f"- `{name}` ({cols[0].kind}): " + ", ".join(f"{c.table}.{c.column}" for c in cols))
    lines += ["", "## Left out", ""]
    if not left:
        lines.append("Nothing: every object found is in the draft.")
    for o in left:
        lines.append(f"- `{o.sample.table}` ({o.sample.location}): {o.left_out}")
    excluded = [(o, k) for o in objects for k in o.kinds if k.kind == "complex"]
    for o, k in excluded:
        lines.append(f"- column `{o.sample.table}.{k.column}`: {k.evidence}")
    return "\n".join(lines) + "\n"


def summary_table(objects: list[DraftObject], junk) -> str:
    """The printed summary: the report's table without the long columns."""
    rows = [
        [r[0], r[1], r[2], r[3], r[4][:90], r[5], r[6], r[10][:40]]
        for r in report_rows([o for o in objects if o.kinds], junk)
    ]
    head = ["table", "column", "type", "kind", "evidence", "distinct", "nulls", "invalid values"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])
