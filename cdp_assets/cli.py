"""Command line: run the pipeline, generate sample data.

    cdp-assets run [--config FILE]          materialize every asset and check, print a summary
    cdp-assets sample --records N --out DIR generate seeded sample data
    cdp-assets explain ID [ID]              why two identifiers share a canonical id
    cdp-assets explain --canonical-id CID   what one canonical id holds
    cdp-assets render-sql --dialect D --out DIR   every phase's SQL for a dialect, for review
    cdp-assets init --client NAME --source DIR_OR_URI --out DIR   draft the config from the data
    cdp-assets validate [--config FILE]     check config, connection, columns and SQL; write nothing
    cdp-assets regenerate-phone-regions     rewrite the phone region table from phonenumbers

Exit codes (cdp_assets/exit_codes.py, the same for every command):
    0  success, every check passed
    1  the run failed, or a check of severity ERROR failed
    2  usage or configuration error before anything ran (bad config, a credentials variable not set)
    3  the run succeeded, but one or more checks of severity WARN failed

When a run fails, `run` prints each failing step's own message (or, when no step could start,
the error that stopped the run, e.g. the DuckDB file in use by another process), not Dagster's
wrapper. Before it starts, `run` marks failed the runs that a killed `cdp-assets run` left
STARTED (cdp_assets/orphaned_runs.py) and says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from cdp_assets import exit_codes
from cdp_assets.config.loader import BUNDLED_DAGSTER_YAML, CONFIG_ENV, REPO_ROOT, ConfigError, load_config

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".cdp" / "dagster_home"


def _instance():
    from dagster import DagsterInstance

    # Runs started here are kept where `dagster dev` can show them (same DAGSTER_HOME).
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(BUNDLED_DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _missing_secrets_message(loaded, names: list[str]) -> str:
    return f"error: set the environment variable(s) {', '.join(names)} for engine {loaded.pipeline.engine.kind!r}"


def cmd_run(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    from dagster import DagsterInvalidConfigError

    from cdp_assets.definitions import PIPELINE_JOB, build_definitions
    from cdp_assets.engines.factory import build_warehouse, unset_secret_variables
    from cdp_assets.orphaned_runs import fail_orphaned_runs, process_tags
    from cdp_assets.progress import PROGRESS_LOGGER, run_failure_reasons, with_progress_logger

    missing = unset_secret_variables(build_warehouse(loaded))
    if missing:  # before the run: it would fail at its start, naming them less clearly
        print(_missing_secrets_message(loaded, missing), file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    defs = with_progress_logger(build_definitions(loaded))
    job = defs.resolve_job_def(PIPELINE_JOB)
    instance = _instance()
    for note in fail_orphaned_runs(instance):
        print(f"note: {note}", file=sys.stderr)
    # Each step's phase and asset as it starts and ends, files read, rows built, loop iterations.
    run_config = {"loggers": {PROGRESS_LOGGER: {}}}
    if args.full_refresh:  # every incremental phase rebuilds from all rows (docs/incremental.md)
        from cdp_assets.assets.run_config import full_refresh_run_config

        run_config.update(full_refresh_run_config(job))
    try:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config, tags=process_tags()
        )
    except DagsterInvalidConfigError as exc:
        # A secret's environment variable is missing: name each one, without Dagster's stack.
        missing = sorted(set(re.findall(r'environment variable "([A-Z0-9_]+)" which is not set', str(exc))))
        print(
            f"error: set the environment variable(s) {', '.join(missing) or '(see below)'} for engine "
            f"{loaded.pipeline.engine.kind!r}" + ("" if missing else f": {str(exc).splitlines()[0]}"),
            file=sys.stderr,
        )
        return exit_codes.CONFIG_ERROR
    materialized = sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()})
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c for c in checks if not c.passed]
    print()
    print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    if not result.success:
        for where, message in run_failure_reasons(result.all_events):
            lines = message.splitlines()
            print(f"  failed: {where}: {lines[0]}")
            for line in lines[1:]:
                print(f"          {line}")
    print(f"  assets materialized: {len(materialized)}")
    print(f"  checks passed: {len(checks) - len(failed)} of {len(checks)}")
    from cdp_assets.checks import measurement_text

    for c in failed:  # what it measured and against what: the convention the alerts use
        print(
            f"  FAILED check {c.asset_key.to_user_string()}:{c.check_name} "
            f"({c.severity.value}): {measurement_text(c.metadata or {}, c.description)}"
        )
    print(f"  report:          {loaded.report_path}")
    print(f"  DuckDB database: {loaded.duckdb_path}" if loaded.pipeline.engine.kind == "duckdb" else "")
    print(
        f"  Dagster home:    {os.environ['DAGSTER_HOME']} "
        f"(DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev shows this run)"
    )
    return run_exit_code(result.success, [c.severity.value for c in failed])


def run_exit_code(success: bool, failed_check_severities: list[str]) -> int:
    """The exit code of a finished run (cdp_assets/exit_codes.py): a failed run or a failed ERROR
    check is a failure; a successful run whose only failures are WARN checks succeeded with
    warnings."""
    if not success or any(s != "WARN" for s in failed_check_severities):
        return exit_codes.FAILED
    return exit_codes.SUCCEEDED_WITH_WARNINGS if failed_check_severities else exit_codes.OK


def cmd_sample(args: argparse.Namespace) -> int:
    from cdp_assets.sample.generator import generate_sample

    summary = generate_sample(args.out, args.records, seed=args.seed, chain_emails=tuple(args.chain_emails))
    total = sum(summary.records.values())
    print(f"wrote {total} records of {summary.persons} persons to {summary.out_dir} ({len(summary.files)} files)")
    return exit_codes.OK


def cmd_explain(args: argparse.Namespace) -> int:
    from cdp_assets.engines.base import WarehouseError
    from cdp_assets.engines.factory import build_warehouse, connected_warehouse, unset_secret_variables
    from cdp_assets.unify.explain import ExplainError, explain

    try:
        loaded = load_config(args.config)
        # explain reads the warehouse: its credentials must be set (render-sql needs none).
        missing = unset_secret_variables(build_warehouse(loaded))
        if missing:
            print(_missing_secrets_message(loaded, missing), file=sys.stderr)
            return exit_codes.CONFIG_ERROR
        with connected_warehouse(loaded) as warehouse:
            print(explain(warehouse, loaded, args.identifiers, args.canonical_id, args.id_name))
    except (ConfigError, ExplainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    except WarehouseError as exc:
        print(f"error: {exc.engine_message}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK


def cmd_render_sql(args: argparse.Namespace) -> int:
    from cdp_assets.render import write_rendered
    from cdp_assets.sql.dialects import get_dialect

    try:
        loaded = load_config(args.config)
        files = write_rendered(loaded, get_dialect(args.dialect), Path(args.out))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    phases = sorted({p.parent.name for p in files})
    print(f"wrote {len(files)} statement(s) for {args.dialect} to {args.out} ({', '.join(phases)})")
    return exit_codes.OK


def cmd_regenerate_phone_regions(args: argparse.Namespace) -> int:
    from cdp_assets.config.phone_regions import DATA_DIR, regenerate

    out = Path(args.out) if args.out else DATA_DIR
    n_regions, n_codes = regenerate(out)
    print(f"wrote the phone region table to {out}: {n_regions} regions, {n_codes} country codes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cdp-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset and check of the config")
    run.add_argument("--config", help=f"config file (default: ${CONFIG_ENV} or the bundled example)")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every table from all rows instead of the rows loaded since the last run",
    )
    run.set_defaults(func=cmd_run)
    sample = sub.add_parser("sample", help="generate seeded sample data")
    sample.add_argument("--records", type=int, default=2000)
    sample.add_argument("--out", required=True)
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument(
        "--chain-emails",
        type=int,
        nargs=2,
        default=(6, 12),
        metavar=("LOW", "HIGH"),
        help="emails per chain person: a chain of 2(k-1) linked records (default 6 12)",
    )
    sample.set_defaults(func=cmd_sample)
    exp = sub.add_parser("explain", help="why identifiers share a canonical id, or what an id holds")
    exp.add_argument("identifiers", nargs="*", help="one or two identifiers, as key:value or a bare value")
    exp.add_argument("--canonical-id", help="describe this canonical id instead")
    exp.add_argument("--id-name", help="which canonical id (default: the first of the config)")
    exp.add_argument("--config", help=f"config file (default: ${CONFIG_ENV} or the bundled example)")
    exp.set_defaults(func=cmd_explain)
    ren = sub.add_parser("render-sql", help="write every phase's SQL for a dialect, one folder per phase")
    ren.add_argument("--dialect", default="duckdb", help="duckdb, spark, databricks, trino or hive")
    ren.add_argument("--out", required=True, help="output folder")
    ren.add_argument("--config", help=f"config file (default: ${CONFIG_ENV} or the bundled example)")
    ren.set_defaults(func=cmd_render_sql)
    from cdp_assets import validate as validate_command
    from cdp_assets.init import command as init_command

    init_command.add_parser(sub)
    validate_command.add_parser(sub)
    regen = sub.add_parser(
        "regenerate-phone-regions", help="rewrite the phone region table from the installed phonenumbers"
    )
    regen.add_argument("--out", help="folder for the CSV files (default: the package's data folder)")
    regen.set_defaults(func=cmd_regenerate_phone_regions)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
