"""The Markdown writer: the ``unification`` section of ``docs/benchmarks.md`` (through
``bench/doc_sections.py``, which leaves the other benchmarks' sections alone)."""

from __future__ import annotations

from doc_sections import write_section

from .base import DOC, GIB, METHODS
from .machine import CONTENDED_CORES
from .results import (
    build_tables,
    by_kind,
    fmt_b,
    fmt_n,
    fmt_s,
    fmt_x,
    loop_seconds,
    ratio_with_build,
    ratios,
    shares,
    status_cell,
    targets,
)

LABEL = {
    "ours": "ours (hook/compress/contract, DuckDB)",
    "scipy": "scipy connected_components (in memory)",
    "labelprop": "min-label propagation (DuckDB)",
}


def statement_table(stmts: list[dict], total: float, memory: list[dict] | None) -> list[str]:
    order = {"build": 0, "loop": 1, "publish": 2}
    kinds = by_kind(stmts)
    mem = {k: sum(v) for k, v in by_kind(memory).items()} if memory else {}
    head = "| phase | statement | calls | seconds | share of run_loop |" + (
        " in-memory database, seconds |" if memory else ""
    )
    lines = [head, "|---|---|---:|---:|---:|" + ("---:|" if memory else "")]
    for (phase, kind), xs in sorted(kinds.items(), key=lambda kv: (order.get(kv[0][0], 9), -sum(kv[1]))):
        if sum(xs) < 0.005 * total and (phase, kind) not in (("loop", "hook"),):
            continue
        extra = f" {mem.get((phase, kind), 0.0):.2f} |" if memory else ""
        lines.append(f"| {phase} | {kind} | {len(xs)} | {sum(xs):.2f} | {100 * sum(xs) / total:.1f}% |{extra}")
    shown = sum(sum(xs) for (p, k), xs in kinds.items() if sum(xs) >= 0.005 * total or (p, k) == ("loop", "hook"))
    rest = sum(s["seconds"] for s in stmts) - shown
    end = " |" if memory else ""  # the empty in-memory cell
    lines.append(f"| | *other statements (each < 0.5%)* | | {rest:.2f} | {100 * rest / total:.1f}% |" + end)
    gap = total - sum(s["seconds"] for s in stmts)
    lines.append(f"| | *Python between statements, DataFrame writes* | | {gap:.2f} | {100 * gap / total:.1f}% |" + end)
    return lines


def write_doc(all_results: dict, machine: dict, argv: list[str], final: bool) -> None:
    """Rewrite the ``unification`` section of docs/benchmarks.md from the sizes run so far
    (``final``: the last size is in; otherwise the section says the run is still going)."""
    lines = [
        *_title(machine, argv, final),
        *_machine(all_results, machine),
        *_results(all_results),
        *_targets(all_results),
        *_what_is_timed(all_results),
    ]
    for n, res in all_results.items():
        lines += _size(n, res)
    done = [n for n, res in all_results.items() if res["methods"].get("ours", {}).get("status") == "ok"]
    if done:
        lines.append(where_the_time_goes(all_results, max(done)))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    write_section(DOC, "unification", "\n".join(lines))


def _table(head: str, align: str, rows) -> list[str]:
    """A Markdown table (header row, alignment row, one line per row) and the blank line after it."""
    return [head, align, *rows, ""]


def _title(machine: dict, argv: list[str], final: bool) -> list[str]:
    return [
        "# Identity unification benchmark",
        "",
        f"Written by `bench/bench_unification.py` on {machine['date']} "
        f"(`.venv/bin/python bench/bench_unification.py {' '.join(argv)}`)"
        + ("" if final else " — **run still in progress: partial results**")
        + ". "
        "Each run overwrites this file; `bench/README.md` explains what is measured and how to run it.",
        "",
    ]


def _machine(all_results: dict, machine: dict) -> list[str]:
    first = next(iter(all_results.values()))["settings"] if all_results else {}
    repeat = first.get("repeat", 1)
    lines = [
        "## Machine",
        "",
        f"- {machine['cpu']}, `nproc` = {machine['nproc']}, memory {machine['memory'] / GIB:.1f} GiB, {machine['os']}",
        f"- Python {machine['python']}, DuckDB {machine['duckdb']}, SciPy {machine['scipy']}, NumPy {machine['numpy']}",
        f"- DuckDB for both SQL methods: `threads={first.get('threads')}`, "
        f"`memory_limit='{first.get('memory_limit')}'`, "
        "temp_directory under `bench/.data`, database file on local disk; scipy runs single-threaded",
        f"- Each method ran {repeat} time(s) per size in its own process, methods interleaved"
        + (
            "; the fastest run during which other processes stayed under "
            f"{CONTENDED_CORES} of a core is reported, with min–max of all runs in brackets"
            if repeat > 1
            else ""
        )
        + ". The machine is shared: other processes (test suites, for one) may compete for its cores. Before each run "
        "the script waits for them to go quiet, up to a limit, and the per-size tables show how many cores they "
        "used during the reported run.",
    ]
    contended = [
        f"{fmt_n(n)} {k}" for n, res in all_results.items() for k, r in res["methods"].items() if r.get("contended")
    ]
    if contended:
        lines.append(
            f"- **†: no run of {', '.join(contended)} was free of other load** "
            f"(more than {CONTENDED_CORES} of a core used by other processes throughout); those figures, and the "
            "ratios built on them, overstate the time."
        )
    if machine.get("commit"):
        lines.append(f"- Repository HEAD `{machine['commit']}` (the working tree may hold uncommitted changes)")
    return lines + [""]


def _results(all_results: dict) -> list[str]:
    return [
        "## Results",
        "",
        "Seconds of the timed part of each method (see *What is timed*). *ours / scipy* compares both from the "
        "valid key values to the finished ids (ours includes building its nodes and edges). *label prop. / ours* "
        "compares the two SQL loops over the same span, from the valid-key edges to the finished lookup (rounds, "
        "then `graph` and `lookup`); *with the same build* adds ours' graph build to both sides. *Loops only* "
        "compares the rounds alone.",
        "",
        *_table(
            "| records | ours s | scipy s | label prop. s | ours / scipy | label prop. / ours (edges → lookup) "
            "| with the same build | loops only: ours s | loops only: label prop. s "
            "| loops only: label prop. / ours |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            (_times_row(n, res["methods"]) for n, res in all_results.items()),
        ),
        "Graph, rounds and memory. Peak RSS is the high-water mark (`VmHWM`) of the method's own process, "
        "Python interpreter and imports included (those alone are 0.1–0.25 GiB; see *RSS when timing starts* "
        "per size).",
        "",
        *_table(
            "| records | key rows | nodes | edges | components (largest) | rounds: ours / label prop. "
            "| peak RSS: ours / scipy / label prop. | same partition |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
            (_graph_row(n, res) for n, res in all_results.items()),
        ),
    ]


def _times_row(n: int, m: dict) -> str:
    r_scipy, r_lp = ratios(m)
    lo, llp = loop_seconds(m)
    return (
        f"| {fmt_n(n)} | {status_cell(m.get('ours'), True)} | {status_cell(m.get('scipy'), True)} | "
        f"{status_cell(m.get('labelprop'), True)} | {fmt_x(r_scipy)} | {fmt_x(r_lp)} | "
        f"{fmt_x(ratio_with_build(m))} | {fmt_s(lo)} | {fmt_s(llp)} | "
        f"{fmt_x(llp / lo if lo and llp else None)} |"
    )


def _graph_row(n: int, res: dict) -> str:
    m = res["methods"]
    o, lp, sp = m.get("ours", {}), m.get("labelprop", {}), m.get("scipy", {})
    v = res.get("verify", {})
    nodes = o.get("nodes") or lp.get("nodes") or sp.get("nodes")
    edges = o.get("edges") or lp.get("edges")
    comps = f"{v['components']:,} ({v['largest_component']:,})" if "components" in v else "—"
    same = (
        ("yes (" + ", ".join(v["checked"]) + ")")
        if v.get("ok")
        else ("**NO**: " + "; ".join(v.get("problems", ["not checked"])))
    )
    return (
        f"| {fmt_n(n)} | {res['prep']['key_rows']:,} | {'—' if nodes is None else f'{nodes:,}'} | "
        f"{'—' if edges is None else f'{edges:,}'} | {comps} | "
        f"{o.get('rounds', '—')} / {lp.get('rounds', '—')} | "
        f"{' / '.join(fmt_b(m.get(k, {}).get('peak_rss')) for k in METHODS)} | {same} |"
    )


def _targets(all_results: dict) -> list[str]:
    return [
        "### Targets (from the issue)",
        "",
        *_table(
            "| records | target | measured | |",
            "|---:|---|---:|---|",
            ("| " + " | ".join(row) + " |" for row in targets(all_results)),
        ),
        target_notes(all_results),
        "",
    ]


def _what_is_timed(all_results: dict) -> list[str]:
    return [
        "## What is timed",
        "",
        "All three methods start from the same table `src.rows(email, phone, cookie, ts)`: one row per source "
        "record of the generated sample (CSV customers and orders, Parquet members, JSON-lines events) with its "
        "standardised valid keys (emails `lower(trim())` minus junk; phones as digits, a leading US `1` of "
        "11 digits dropped, fewer than 10 digits or one repeated digit dropped; cookies as they are). The graph's "
        "nodes are the distinct (key, value) pairs, its edges link values that occur in the same row. Building "
        "`src.rows` is not timed.",
        "",
        "- **ours**: `cdp_assets.unify.runner.run_loop` on a `DuckDBWarehouse`, from its call to its return: it "
        "builds its inputs from `src.rows` (" + ", ".join(f"`{b}`" for b in build_tables(all_results)) + "), runs "
        "hook/compress/contract rounds until no edge is left, and publishes `graph` and `lookup` (a full refresh; "
        "no previous state). `prepare_inputs`, which loads three tiny rule tables, is not timed.",
        "- **scipy**: `email, phone, cookie` of `src.rows` read out of DuckDB as Arrow, `pandas.factorize` per key, "
        "a CSR adjacency of the key pairs of every row, `scipy.sparse.csgraph.connected_components`, and an Arrow "
        "table with one component id per distinct (key, value).",
        "- **label propagation**: the inputs are exactly those ours builds (`run_loop` itself builds them and is "
        "stopped at its first round; not timed). Timed: a symmetric adjacency table, then rounds of "
        "`label(v) = min(label(v), min label of v's neighbours)` over every node (one `CREATE TABLE AS` and one "
        "count each) until no label changes — the last round is the one that changes nothing — then the same "
        "`graph` and `lookup` builders as ours. Its time covers the span from the valid-key edges to the finished "
        "lookup; the ratio compares it with the same span of ours.",
        "- The partitions are compared after every size: ours and label propagation must give every value the "
        "same canonical id; scipy's component ids must map one to one onto ours'. The script exits non-zero "
        "otherwise.",
        "",
    ]


def _size(n: int, res: dict) -> list[str]:
    """One size: its graph, each method's figures, ours' rounds and label propagation's."""
    m = res["methods"]
    v = res.get("verify", {})
    lines = [
        f"## {fmt_n(n)} records",
        "",
        f"{res['prep']['source_records']:,} source records → {res['prep']['key_rows']:,} rows with a valid key"
        + (
            f" → {v['values']:,} nodes in {v['components']:,} components (the largest has {v['largest_component']:,} "
            f"values)."
            if "values" in v
            else "."
        ),
        "",
        *_table(
            "| method | seconds | rounds | peak RSS | RSS when timing starts | other processes' CPU meanwhile "
            "| breakdown |",
            "|---|---:|---:|---:|---:|---:|---|",
            (_method_row(k, m[k]) for k in METHODS if m.get(k)),
        ),
    ]
    o = m.get("ours", {})
    if o.get("status") == "ok":
        lines += [
            "Rounds of ours (seconds as `run_loop` reports them):",
            "",
            *_table(
                "| round | seconds | pointer jumps | labels moved | edges left |",
                "|---:|---:|---:|---:|---:|",
                (
                    f"| {it['iteration']} | {it['seconds']:.2f} | {it['jumps']} | {it['relabeled']:,} | "
                    f"{it['edges_left']:,} |"
                    for it in o["iterations"]
                ),
            ),
        ]
    lp = m.get("labelprop", {})
    if lp.get("status") == "ok" and lp["iterations"]:
        per = [it["seconds"] for it in lp["iterations"]]
        lines += [
            f"Label propagation: {lp['rounds']} rounds of {min(per):.2f}–{max(per):.2f}s "
            f"(mean {sum(per) / len(per):.2f}s); "
            "labels changed per round: " + ", ".join(f"{it['changed']:,}" for it in lp["iterations"]) + ".",
            "",
        ]
    return lines


def _method_row(k: str, r: dict) -> str:
    notes = ""
    if k == "ours" and r.get("status") == "ok":
        st = shares(r["statements"])
        notes = (
            f"inputs {st['phase:build']:.2f}s, "
            f"rounds {st['phase:loop']:.2f}s, graph + lookup {st['phase:publish']:.2f}s"
        )
    elif k == "scipy" and r.get("status") == "ok":
        notes = ", ".join(f"{name} {s:.2f}s" for name, s in r["steps"].items())
    elif k == "labelprop" and r.get("status") == "ok":
        notes = f"adjacency + rounds {r['loop_seconds']:.2f}s, graph + lookup {r['publish_seconds']:.2f}s" + (
            "" if r["converged"] else f"; **not converged after {r['rounds']} rounds**"
        )
    elif r.get("status") == "timeout":
        notes = "stopped at the time limit"
    others = f"{r['others_cores']:.2f} cores" if r.get("others_cores") is not None else "—"
    return (
        f"| {LABEL[k]} | {status_cell(r, True)} | {r.get('rounds', '—') if k != 'scipy' else '—'} | "
        f"{fmt_b(r.get('peak_rss'))} | {fmt_b(r.get('rss_start'))} | {others} | {notes} |"
    )


def target_notes(all_results: dict) -> str:
    lines = []
    for n, res in all_results.items():
        m = res["methods"]
        o, lp, sp = m.get("ours", {}), m.get("labelprop", {}), m.get("scipy", {})
        lo, llp = loop_seconds(m)
        if not (lo and llp):
            continue
        st = shares(o["statements"])
        per_o = lo / max(1, o["rounds"])
        per_lp = sum(it["seconds"] for it in lp["iterations"]) / max(1, lp["rounds"])
        lines.append(
            f"- {fmt_n(n)}: {o['rounds']} rounds of ours against {lp['rounds']} of propagation, averaging {per_o:.2f}s "
            f"and {per_lp:.2f}s per round, so the loops alone differ {llp / lo:.1f}x. Both publish `graph` + `lookup` "
            f"(ours {st['phase:publish']:.2f}s, propagation {lp['publish_seconds']:.2f}s), which the edges-to-lookup "
            f"ratio includes; ours' graph build ({st['phase:build']:.2f}s) is in the *with the same build* ratio."
            + (
                f" scipy spends {sp['steps'].get('factorize values', 0):.2f}s of its {sp['seconds']:.2f}s factorizing "
                "the strings."
                if sp.get("status") == "ok"
                else ""
            )
        )
    if not lines:
        return ""
    largest = max((res.get("verify", {}).get("largest_component", 0) for res in all_results.values()), default=0)
    return (
        "How to read the targets. Propagation needs one round per link of the longest chain, and ours needs "
        f"about log2 of the largest component (here {largest} values: the sample's chain persons, generated with "
        "`--chain-emails`). The label-propagation target is read over the span the issue names, from the "
        "valid-key edges to the finished lookup, the same for both loops; the statements that build the graph "
        "do not depend on the number of rounds and dilute the ratio when added to both sides:\n\n" + "\n".join(lines)
    )


def where_the_time_goes(all_results: dict, n: int) -> str:
    """Ours' time per phase and statement, and what the exploration found (at size ``n``)."""
    res = all_results[n]
    o = res["methods"]["ours"]
    total = o["seconds"]
    ex = res.get("explore") or {}
    st = shares(o["statements"])
    lines = [
        "## Where the time goes (ours)",
        "",
        "A `DuckDBWarehouse` subclass in `bench/` timed every statement that `run_loop` sends; the runner "
        "itself is unchanged. Per phase and size:",
        "",
        *_table(
            "| records | inputs (key values, per-value stats, nodes, edges) | rounds | graph + lookup "
            "| run_loop total | rounds' share |",
            "|---:|---:|---:|---:|---:|---:|",
            (
                _phases_row(size, r["methods"]["ours"])
                for size, r in all_results.items()
                if r["methods"].get("ours", {}).get("status") == "ok"
            ),
        ),
        f"Statements at {fmt_n(n)} records (run_loop {total:.2f}s)"
        + (
            f". The last column is one more run on an in-memory DuckDB database ({ex['in_memory_seconds']:.2f}s "
            "in all), so the gap between the two columns is roughly the cost of writing each table into the "
            "database file"
            if ex.get("in_memory_seconds")
            else ""
        )
        + ":",
        "",
        *statement_table(o["statements"], total, ex.get("in_memory_statements")),
        "",
    ]
    timings = ex.get("timings") or {}
    if timings:
        lines += [
            f"Alternative formulations of the heaviest statements, timed on the tables ours left behind at "
            f"{fmt_n(n)} records (best of 3, `CREATE TABLE AS` into the same database file). These are candidate "
            "rewrites only: nothing in `cdp_assets/` was changed. Each *as built* row uses the current builder.",
            "",
            *_table(
                "| statement | seconds |",
                "|---|---:|",
                (f"| {k} | {v:.3f} |" if v < 0.1 else f"| {k} | {v:.2f} |" for k, v in timings.items()),
            ),
        ]
    lines += ["### Suggestions", "", suggestions(o, st, ex, total, n)]
    return "\n".join(lines)


def _phases_row(n: int, o: dict) -> str:
    s = shares(o["statements"])
    return (
        f"| {fmt_n(n)} | {s['phase:build']:.2f} | {s['phase:loop']:.2f} | {s['phase:publish']:.2f} | "
        f"{o['seconds']:.2f} | {100 * s['phase:loop'] / o['seconds']:.0f}% |"
    )


def suggestions(o: dict, st: dict, ex: dict, total: float, n: int) -> str:
    """Numbered suggestions, each made only where the exploration's measurement supports it."""
    t = ex.get("timings") or {}
    loop = st["phase:loop"]
    items: list[str] = []
    saved = 0.0

    def pair(a: str, b: str) -> tuple[float, float] | None:
        return (t[a], t[b]) if a in t and b in t else None

    # The per-row nodes of edges_sql are a CTE; is it worth marking it MATERIALIZED?
    p = pair("edges: as built", "edges: row -> nodes joined once (MATERIALIZED CTE)")
    if p and p[1] < 0.85 * p[0]:
        saved += p[0] - p[1]
        items.append(
            f"**Mark the per-row CTE of `edges_sql` `MATERIALIZED`.** The per-row nodes are a CTE now, but the plan "
            f"without the keyword takes {p[0]:.2f}s, and with `AS MATERIALIZED` the same edges take {p[1]:.2f}s."
        )
    a = t.get("nodes: as built (ROW_NUMBER over a sort by priority, value)")
    b = t.get("nodes: the same without the sort (ROW_NUMBER() OVER ())")
    c = t.get("nodes: pick each component's leader after the loop (arg_min by priority, value)")
    if a is not None and b is not None and c is not None:
        gain = a - b - c
        saved += max(0.0, gain)
        items.append(
            f"**Number the nodes without sorting every value.** `ROW_NUMBER() OVER (ORDER BY merge_priority, value)` "
            f"sorts every distinct string, and the statement takes {a:.2f}s. Without the sort it takes {b:.2f}s. Each "
            f"component's leader can then be picked after the loop with `arg_min(node, (merge_priority, value))` "
            f"per final label, which takes {c:.2f}s, so the net "
            + (f"saving is {gain:.2f}s" if gain > 0 else f"cost is {-gain:.2f}s")
            + ". The catch is that the loop "
            "would then converge to an arbitrary member, so the leader and the canonical id must come from that "
            "extra step. Incremental runs also need stable node numbers."
            + (" Not worth it at this size." if gain <= 0 else "")
        )
    rel = ex.get("relabel") or []
    if rel:
        cells = "; ".join(f"{r['pointers']:,} moving: {r['ctas']:.3f}s vs {r['update']:.3f}s" for r in rel)
        moved = st["relabel (all nodes)"] + st["count relabeled"]
        items.append(
            f"**Relabel only the labels that move.** Each round counts the moving labels, then rewrites all "
            f"{rel[0]['labels']:,} labels with `CREATE TABLE AS`. That took {moved:.2f}s of the {loop:.2f}s of rounds "
            f"here, although after the first round few labels move. "
            f"`UPDATE labels SET label = h.parent FROM hooks h WHERE labels.label = h.node` touches only the "
            f"moving labels and returns their count as well (rewrite vs update: {cells}). Likewise, the count query "
            f"before every pointer jump could go if the jump itself reported whether anything is left to jump."
        )
    items.append(
        f"**Mind where the time is.** The rounds are {100 * loop / total:.0f}% of `run_loop` at {fmt_n(n)}: "
        f"{o['rounds']} rounds, the later ones cheaper as contraction shrinks the edges. Building the inputs "
        f"({st['phase:build']:.2f}s) and publishing `graph` and `lookup` ({st['phase:publish']:.2f}s) take the rest. "
        "Work on the loop has a low ceiling; work on the set-up and publication statements has a high one."
    )
    if ex.get("in_memory_seconds") and ex["in_memory_seconds"] < 0.85 * total:
        mem = ex["in_memory_seconds"]
        file_k = {k: sum(v) for k, v in by_kind(o["statements"]).items()}
        mem_k = {k: sum(v) for k, v in by_kind(ex.get("in_memory_statements") or []).items()}
        gaps = sorted(((file_k[k] - mem_k.get(k, 0.0), k[1]) for k in file_k), reverse=True)[:3]
        top = ", ".join(f"{name} {g:.2f}s" for g, name in gaps if g > 0.05)
        items.append(
            f"**Write less.** The same run on an in-memory database takes {mem:.2f}s instead of {total:.2f}s. "
            "Most of the "
            f"gap is compressing and writing tables into the database file ({top}). Two ways to "
            "write less: keep the loop's scratch tables (`edges`, `labels`, `hooks`, per-value statistics) in "
            "DuckDB `TEMP` tables, which stay in memory and spill to `temp_directory`; and write the value strings "
            "once, since both `graph` and `lookup` store the strings of every node."
        )
    lines = [f"{i}. {text}" for i, text in enumerate(items, 1)]
    if saved > 0:
        lines.append("")
        lines.append(
            f"Measured in isolation, the rewrites above with a before/after pair would save about {saved:.2f}s of "
            f"statement time at {fmt_n(n)} (run_loop took {total:.2f}s)."
        )
    return "\n".join(lines)
