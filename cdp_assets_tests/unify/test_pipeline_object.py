"""One pipeline object: the unification steps `render-sql` prints are the steps the runner runs.

The runner runs on a real DuckDB file through an engine that records, for every statement it
is sent, the name of the step it belongs to. The recorded names must be one execution of the
printed list: every step in order, each repeated sub-pipeline (the loop's round, the pointer
jumps inside it) any number of times, its last time possibly cut short where the data said stop.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from cdp_assets.config import load_config
from cdp_assets.render import build_pipelines, key_stats_config_of
from cdp_assets.sql import unification as u
from cdp_assets.sql.dialects import DIALECTS
from cdp_assets.sql.pipeline import ALIAS, SCALAR, Repeat, StepPipeline
from cdp_assets.sql.unification_pipeline import unification_pipeline
from cdp_assets.unify.runner import run_unification
from cdp_assets_tests.engines.recording import StepRecordingDuckDB
from cdp_assets_tests.unify.test_td_compat import EXAMPLE, TEMPLATE_UNIFY, unification_only_project

# A chain c0 - g0 - c1 - g1 - ... : its second round's pointers form a chain, so they jump.
CHAIN = 12


def chained_project(tmp_path: Path, unify_text: str = TEMPLATE_UNIFY, keep_loop_tables: bool = False):
    """The example on existing tables, plus a chain, in an in-memory DuckDB that records."""
    config = unification_only_project(tmp_path, unify_text=unify_text)
    if keep_loop_tables:
        cfg = yaml.safe_load(config.read_text())
        cfg["unification_options"] = {"keep_loop_tables": True}
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    wh = StepRecordingDuckDB(path=":memory:")
    wh.setup_for_execution(None)  # one in-memory database for every session of the run
    wh._anchor.execute((EXAMPLE / "seed.sql").read_text(encoding="utf-8"))
    for i in range(CHAIN):
        for client in (f"cc{i}", f"cc{i + 1}"):
            wh._anchor.execute(
                "INSERT INTO acme_crm.site_aaa VALUES (?, ?, NULL, 'x', ?)", [client, f"gg{i}", 1700001000 + i]
            )
    return load_config(config), wh


def trace_pattern(items) -> str:
    """A regular expression over ``name;name;...`` that every run of ``items`` matches. A
    scratch table's count sends nothing where the engine answered it with the create (DuckDB):
    such a step may be missing from the trace."""
    parts = []
    for item in items:
        if isinstance(item, Repeat):
            inner = [trace_pattern([i]) for i in item.items]
            partial = ""
            for piece in reversed(inner):  # a cut-short last time: a prefix of the items
                partial = f"(?:{piece}{partial})?"
            parts.append(f"(?:{''.join(inner)})*{partial}")
        elif item.kind == SCALAR and item.counts is not None:
            parts.append(f"(?:{re.escape(item.name)};)?")
        elif item.kind == ALIAS:  # a name for a table already made: no statement
            continue
        else:
            parts.append(re.escape(item.name) + ";")
    return "".join(parts)


def without_skipped_loops(items, cids: set[str]) -> list:
    """``items`` less what the loop of each id in ``cids`` skips when its run reads nothing new
    (``LoopResult.nothing_new``): every step after ``<id>_removed_key_values`` through
    ``<id>_watermarks``, the loop's last."""
    out, skipping = [], None
    for item in items:
        name = None if isinstance(item, Repeat) else item.name
        if skipping is None:
            out.append(item)
            skipping = next((c for c in cids if name == f"{c}_removed_key_values"), None)
        elif name == f"{skipping}_watermarks":
            skipping = None
    return out


def run_and_record(loaded, wh: StepRecordingDuckDB, run_id: str):
    wh._sent.clear()
    results = run_unification(wh, loaded, run_id)
    return results, list(wh._sent)


def named_trace(sent) -> list[str]:
    """The step of each statement, consecutive statements of one step counted once."""
    out: list[str] = []
    for step, _ in sent:
        if step is not None and (not out or out[-1] != step):
            out.append(step)
    return out


def assert_trace_is_the_pipeline(pipeline: StepPipeline, trace: list[str]) -> None:
    joined = "".join(f"{name};" for name in trace)
    assert re.fullmatch(trace_pattern(pipeline.items), joined), "\n".join(
        ["the runner's steps are not the printed list:", *trace, "--- printed:", *pipeline.step_names()]
    )


def test_the_runner_executes_the_steps_render_sql_prints_full_then_incremental(tmp_path):
    loaded, wh = chained_project(tmp_path)
    results, sent = run_and_record(loaded, wh, "run-1")
    trace = named_trace(sent)

    duckdb = DIALECTS["duckdb"]
    printed = [s.name for s in build_pipelines(loaded, dialect=duckdb)["unification"].steps]
    # What render-sql prints for DuckDB is the runner's list, each repeated sub-pipeline once: with
    # the key statistics' kept counts, a step of their own before the two statistics.
    plans = u.build_id_plans(loaded)
    kept = key_stats_config_of(loaded, duckdb)
    pipeline = unification_pipeline(
        loaded, plans, lambda table: [], previous_lookup=lambda plan: False, key_stats_config=kept
    )
    assert pipeline.step_names() == printed
    assert "browser_id_key_stats_counts" in printed
    assert "browser_id_key_stats_counts" not in [s.name for s in build_pipelines(loaded)["unification"].steps]
    assert_trace_is_the_pipeline(pipeline, trace)

    # Every printed step ran, except the rounds of an id whose graph has no edge (email_id).
    # Every printed step ran but steps inside a repeat that the data never needed: the rounds of
    # an id whose graph has no edge (email_id), the pointer jumps of short chains.
    # The edges left are counted by the create of the edges, which DuckDB answers with its rows:
    # that step sends nothing of its own.
    in_repeats = {step.name for step, repeats in pipeline.walk() if repeats}
    edges_left = {f"{p.name}_loop_edges_left" for p in plans}
    never = [n for n in printed if n not in set(trace)]
    assert set(never) <= in_repeats and edges_left <= set(never), never
    assert "email_id_loop_hook" in never and "browser_id_loop_jump" not in never

    # The repeats ran as often as the loop says: a hook per round, a jump per pointer jump.
    by_id = {r.cid: r for r in results}
    browser = by_id["browser_id"]
    assert browser.converged and browser.rounds >= 2
    assert trace.count("browser_id_loop_hook") == browser.rounds
    assert trace.count("browser_id_loop_jump") == sum(s.jumps for s in browser.iterations) > 0
    assert [s.edges_left > 0 for s in browser.iterations] == [True] * (browser.rounds - 1) + [False]
    assert by_id["email_id"].rounds == 0

    # Every table is built inside a named step; outside them only the engine's own bookkeeping
    # runs (schemas, catalog look-ups, DataFrame loads, dropping leftovers).
    unnamed = [sql for step, sql in sent if step is None]
    assert not [sql for sql in unnamed if re.match(r"\s*CREATE (TEMP )?TABLE\b.*\bAS\b", sql, re.S)]
    assert "enriched_site_aaa" in {name for name in trace}
    # The kept counts and the statistics built from them are sent as printed, word for word.
    printed_sql = {s.name: s.query for s in build_pipelines(loaded, dialect=duckdb)["unification"].steps}
    for name in ("browser_id_key_stats_counts", "browser_id_source_key_stats", "browser_id_result_key_stats"):
        assert any(printed_sql[name] in sql for step, sql in sent if step == name), name

    # The next run is incremental where it can be: the incremental inputs take the full ones' place.
    # A new row joins the chain's first component (browser_id's); an id whose tables gained no
    # row reads nothing new and stops after its removed key values (its tables stand).
    wh._anchor.execute("INSERT INTO acme_crm.site_aaa VALUES ('cc_new', 'gg0', NULL, 'x', 1700009999)")
    results, sent = run_and_record(loaded, wh, "run-2")
    modes = {r.cid: r.mode for r in results}
    assert modes["browser_id"] == "incremental", {r.cid: r.full_refresh_reason for r in results}
    assert not {r.cid: r for r in results}["browser_id"].nothing_new
    incremental = {r.cid for r in results if r.mode == "incremental"}
    pipeline = unification_pipeline(
        loaded,
        plans,
        lambda table: [],
        incremental=lambda plan: plan.name in incremental,
        key_stats_config=kept,
    )
    trace = named_trace(sent)
    skipped = {r.cid for r in results if r.nothing_new}
    assert_trace_is_the_pipeline(replace(pipeline, items=without_skipped_loops(pipeline.items, skipped)), trace)
    assert "browser_id_new_key_values" in trace and "browser_id_excluded_changed" in trace
    # Only the components the new rows touch take part in its rounds.
    assert "browser_id_touched_components" in trace and "browser_id_nodes" in trace
    # Only the changed values' statistics are computed again, and replace theirs in place.
    assert "browser_id_changed_stats" in trace and "browser_id_value_stats" in trace

    # A run that reads nothing new: every id's loop stops after its removed key values; what
    # follows the loops runs as printed.
    results, sent = run_and_record(loaded, wh, "run-3")
    assert {r.cid: (r.mode, r.nothing_new) for r in results if r.cid in incremental} == {
        c: ("incremental", True) for c in incremental
    }
    trace = named_trace(sent)
    assert_trace_is_the_pipeline(replace(pipeline, items=without_skipped_loops(pipeline.items, incremental)), trace)
    written = [n for n in trace if n.endswith(("_lookup", "_graph", "_watermarks"))]
    assert "browser_id_new_rows" in trace and not [n for n in written if n.startswith(tuple(incremental))]


def test_do_not_merge_and_kept_rounds_are_steps_of_the_list(tmp_path):
    unify_text = TEMPLATE_UNIFY.replace(
        "    merge_by_keys: [td_client_id, td_global_id]\n    merge_iterations",
        "    merge_by_keys: [td_client_id, td_global_id]\n    do_not_merge_key: td_client_id\n    merge_iterations",
    )
    assert unify_text != TEMPLATE_UNIFY
    loaded, wh = chained_project(tmp_path, unify_text, keep_loop_tables=True)
    results, sent = run_and_record(loaded, wh, "run-1")
    trace = named_trace(sent)
    plans = u.build_id_plans(loaded)
    duckdb = DIALECTS["duckdb"]
    pipeline = unification_pipeline(
        loaded,
        plans,
        lambda table: [],
        previous_lookup=lambda plan: False,
        key_stats_config=key_stats_config_of(loaded, duckdb),
    )
    printed = build_pipelines(loaded, dialect=duckdb)["unification"].steps
    assert pipeline.step_names() == [s.name for s in printed]
    assert_trace_is_the_pipeline(pipeline, trace)
    for step in ("browser_id_dnm_links", "browser_id_dnm_groups", "browser_id_dnm_conflicts", "browser_id_dnm_resolve"):
        assert trace.count(step) == 1
    person = next(r for r in results if r.cid == "person_id")
    assert trace.count("person_id_loop_keep_labels") == person.rounds > 0
    kept = [t for t in wh.list_tables(loaded.unification.schema) if t.startswith("person_id_graph_unify_loop_")]
    assert len(kept) == person.rounds


def test_render_sql_prints_the_round_once_with_a_note_and_its_tables_in_order(tmp_path):
    from cdp_assets.render import write_rendered
    from cdp_assets.sql.dialects import get_dialect

    loaded = load_config()
    written = write_rendered(loaded, get_dialect("duckdb"), tmp_path)
    files = {p.name: p.read_text() for p in written if p.parent.name == "unification"}
    loop = {name: text for name, text in files.items() if "_unified_id_loop_" in name}
    assert len(loop) == 6  # edges_left, hook, pointer_counts, jump, relabel, contract: once
    for name, text in loop.items():
        assert text.splitlines()[1].startswith("-- unified_id_loop_round: repeated while edges are left"), name
    jump = next(text for name, text in loop.items() if name.endswith("_unified_id_loop_jump.sql"))
    assert "unified_id_loop_compress: repeated while a pointer points at a node" in jump.splitlines()[1]
    # A working table made again in the round is printed under a new name, read by what follows.
    assert 'CREATE TABLE "cdp_unification_customer_360"."unified_id_hooks_2" AS' in jump
    graph = next(text for name, text in files.items() if name.endswith("_unified_id_graph.sql"))
    assert '"unified_id_labels" AS p' in graph
    # The round starts from the nodes table, each node its own label: no copy of it is printed.
    relabel = next(text for name, text in loop.items() if name.endswith("_unified_id_loop_relabel.sql"))
    assert '"unified_id_nodes" AS p' in relabel and not any(n.endswith("_unified_id_labels.sql") for n in files)
    bound = "-- parameters, bound to the ? placeholders in order: "
    assert not any(
        text.splitlines()[1].startswith("-- ") and not text.splitlines()[1].startswith(bound)
        for name, text in files.items()
        if name not in loop
    )
    # DuckDB binds the valid_regexps: printed as sent (placeholders), the values listed above, in order.
    key_values = next(text for name, text in files.items() if name.endswith("_unified_id_key_values.sql"))
    listed = key_values.splitlines()[1]
    from cdp_assets.sql.regex import pattern_for  # the patterns as evaluated (Java's meaning)

    assert listed == bound + f"1: '{pattern_for('.+@.+')}', 2: '{pattern_for('^C[0-9]+$')}'", listed
    assert key_values.count("(r.value, ?)") == 2 and "_keys" not in key_values
    rendered_td = write_rendered(loaded, get_dialect("trino"), tmp_path / "td")
    td_key_values = next(p.read_text() for p in rendered_td if p.name.endswith("_unified_id_key_values.sql"))
    assert "?" not in td_key_values and '"unified_id_keys"' in td_key_values  # Treasure Data reads the rules


def test_an_alias_step_names_a_working_table_that_a_later_step_supersedes_without_dropping_it():
    """The loop's labels start as its nodes table (``Step.alias``): no statement, the table read
    under the alias's name, and making the alias's table again leaves the aliased one in place."""
    from cdp_assets.engines.duckdb import DuckDBWarehouse
    from cdp_assets.sql.dialects import TableRef
    from cdp_assets.sql.pipeline import SCRATCH, Step
    from cdp_assets.unify.runner import StepRunner

    nodes, labels = TableRef("main", "t_nodes"), TableRef("main", "t_labels")
    steps = [
        Step("nodes", SCRATCH, lambda t: "SELECT 1 AS node, 1 AS label UNION ALL SELECT 2, 2", nodes),
        Step.alias("labels", labels, nodes, counted=True),
        Step("relabel", SCRATCH, lambda t: f"SELECT node, 1 AS label FROM {t(labels).sql}", labels),
    ]
    printed = StepPipeline("p", list(steps)).bind()
    assert [s.name for s in printed.steps] == ["nodes", "relabel"]
    assert '"t_nodes"' in printed.steps[1].query  # the relabel reads the nodes under the alias

    wh = DuckDBWarehouse(path=":memory:")
    wh.setup_for_execution(None)
    runner = StepRunner(wh)
    with wh.session():
        runner.run(steps[0])
        assert runner.run(steps[1]) == 2  # the aliased table's rows, with no statement of its own
        assert runner.tables(labels) == runner.tables(nodes)
        runner.run(steps[2])
        runner.drop_superseded()
        assert wh.fetch(f"SELECT COUNT(*) AS n FROM {runner.tables(nodes).sql}")["n"].iloc[0] == 2
        assert wh.fetch(f"SELECT SUM(label) AS s FROM {runner.tables(labels).sql}")["s"].iloc[0] == 2
    with pytest.raises(ValueError, match="names the table it aliases"):
        Step("bad", ALIAS, lambda t: "", labels)
