"""The ``cdp-assets init`` command: arguments, output and exit codes around draft_project."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdp_assets import exit_codes


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="draft cdp.yml, unify.yml and init_report.md from the data")
    p.add_argument("--client", required=True, help="client name (lowercase identifier), used in schema names")
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="DIR_OR_URI",
        help="a local folder, s3://bucket/prefix, table:schema[.table] on the engine of --config, or "
        "sql_database:ENV_VAR[/schema] (ENV_VAR holds the database's SQLAlchemy URL), or sources:FILE "
        "(rest_api / sql_database sources written by hand, sampled through dlt) (repeatable)",
    )
    p.add_argument("--out", required=True, help="folder to write cdp.yml, unify.yml and init_report.md to")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist in --out")
    p.add_argument("--config", help="a config whose engine holds the table: sources (its engine section is copied)")
    p.add_argument("--s3-endpoint-url", help="an S3-compatible endpoint for s3:// sources (MinIO, a test server)")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from cdp_assets.config.loader import ConfigError, load_config
    from cdp_assets.init import InitError, draft_project
    from cdp_assets.init.sources import InitSourceError
    from cdp_assets.validate import CredentialsError, open_warehouse

    warehouse, engine_yaml = None, None
    try:
        if args.config:
            import yaml

            loaded = load_config(args.config)
            warehouse = open_warehouse(loaded)
            raw = yaml.safe_load(Path(loaded.config_path).read_text(encoding="utf-8"))
            engine_yaml = yaml.safe_dump(raw.get("engine", {}), sort_keys=False).strip() if raw.get("engine") else None
        result = draft_project(
            args.client,
            args.source,
            Path(args.out),
            force=args.force,
            warehouse=warehouse,
            engine_yaml=engine_yaml,
            s3_endpoint_url=args.s3_endpoint_url,
        )
    except (ConfigError, InitError, InitSourceError, CredentialsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    print(result.summary)
    print()
    for o in result.objects:
        if o.left_out:
            print(f"left out {o.sample.table} ({o.sample.location}): {o.left_out}")
    for name, path in result.files.items():
        print(f"wrote {path}")
    if not result.drafted:
        print(
            "error: no object has a user identifier and a watermark: nothing to unify, only the report was written",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    unreadable = [
        o
        for o in result.objects
        if o.sample.problem and ("cannot be read" in o.sample.problem or "not a usable" in o.sample.problem)
    ]
    if unreadable:
        # The draft covers what could be read; the rest needs fixing before it can be loaded.
        print(
            f"error: {len(unreadable)} object(s) could not be read or named (see above); the draft leaves them out",
            file=sys.stderr,
        )
        return exit_codes.FAILED
    print(
        "next: review the files, then `cdp-assets validate --config "
        f"{result.files['cdp.yml']}` and `cdp-assets run --config ...`"
    )
    return exit_codes.OK
