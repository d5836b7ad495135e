"""``cdp-assets validate``: prove a config before a run, writing nothing to the warehouse.

It loads the config, checks the engine's connection (secrets masked), checks that every
source object, file and column the config names exists, then renders every phase's SQL and
has it parsed and planned: on DuckDB every statement runs in order on empty copies of the raw
tables in a private in-memory database (so DuckDB parses, binds and plans each one, and later
statements see the tables earlier ones create); for Databricks and Treasure Data each
statement is also parsed in the engine's dialect. Every problem is listed, each naming the
file and the field to fix; the exit code follows cdp_assets/exit_codes.py.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cdp_assets import exit_codes
from cdp_assets.config.loader import ConfigError, load_config
from cdp_assets.config.models import DLT_CONNECTORS, LoadedConfig, LocalFilesConnector, S3Connector, TableConnector
from cdp_assets.engines.base import WarehouseError, WarehouseResource, mask_secret


class CredentialsError(ValueError):
    """An engine secret's environment variable is not set; names the variable."""


@dataclass
class Problem:
    file: Path
    field: str
    message: str
    config_error: bool = False  # exit 2 (before anything could run) rather than 1

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    statements: int = 0

    @property
    def exit_code(self) -> int:
        if any(p.config_error for p in self.problems):
            return exit_codes.CONFIG_ERROR
        return exit_codes.FAILED if self.problems else exit_codes.OK


# ---------------------------------------------------------------------------- the engine


def secret_env_names(loaded: LoadedConfig) -> list[str]:
    """The variables holding secrets: the engine's and the database and API sources'."""
    names = []
    for source in loaded.pipeline.sources:
        c = source.connector
        names += [getattr(c, "credentials_env", None)]
        auth = getattr(c, "auth", None)
        names += [auth.token_env, auth.key_env, auth.password_env] if auth is not None else []
    return [n for n in names if n] + _engine_secret_env_names(loaded)


def _engine_secret_env_names(loaded: LoadedConfig) -> list[str]:
    engine = loaded.pipeline.engine
    if engine.kind == "treasure_data":
        return [engine.treasure_data.apikey_env]
    if engine.kind == "databricks" and engine.databricks.connection == "sql_warehouse":
        db = engine.databricks
        return [db.token_env] if db.auth == "pat" else [db.client_id_env, db.client_secret_env]
    return []


def open_warehouse(loaded: LoadedConfig) -> WarehouseResource:
    """The config's engine with its secrets read from the environment (outside a Dagster run)."""
    from dagster import DagsterInvalidConfigError

    from cdp_assets.engines.factory import build_warehouse

    warehouse = build_warehouse(loaded)
    if loaded.pipeline.engine.kind == "duckdb":
        return warehouse
    try:
        return warehouse.process_config_and_initialize()
    except DagsterInvalidConfigError as exc:
        missing = sorted(set(re.findall(r'environment variable "([A-Z0-9_]+)" which is not set', str(exc))))
        raise CredentialsError(
            f"set the environment variable(s) {', '.join(missing) or '(see the engine settings)'} for engine "
            f"{loaded.pipeline.engine.kind!r}; the secret comes from the environment, never from the file"
        ) from None


def scrub(text: str, loaded: LoadedConfig) -> str:
    """Whatever an engine says, a secret in it is shown masked."""
    for name in secret_env_names(loaded):
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, mask_secret(value))
    return text


# ---------------------------------------------------------------------------- sources


@dataclass
class _Columns:
    """The raw columns of each (source, object, mode), as a run would load them."""

    by_object: dict[tuple[str, str, bool], list[str]] = field(default_factory=dict)


def _source_columns(loaded: LoadedConfig, warehouse: WarehouseResource | None, report: ValidationReport) -> _Columns:
    from cdp_assets.connectors.local_files import object_files
    from cdp_assets.connectors.readers import file_columns
    from cdp_assets.sql.dialects import TableRef
    from cdp_assets.sql.hist_union import LINEAGE_COLUMNS

    cfg = loaded.config_path
    out = _Columns()
    for i, source in enumerate(loaded.pipeline.sources):
        folder: Path | None = None
        if isinstance(source.connector, LocalFilesConnector):
            folder = loaded.source_paths[source.name]
        elif isinstance(source.connector, S3Connector):
            try:
                from cdp_assets.connectors.s3 import s3_client, sync_source

                folder = sync_source(s3_client(source.connector), source.connector, source, Path(tempfile.mkdtemp(prefix="cdp_validate_s3_")))
            except Exception as exc:  # noqa: BLE001 - boto raises many kinds; the message is what the user needs
                report.problems.append(Problem(cfg, f"sources[{i}].connector", f"cannot list s3://{source.connector.bucket}/{source.connector.prefix}: {str(exc).splitlines()[0]}"))
                continue
        for j, obj in enumerate(source.objects):
            where = f"sources[{i}].objects[{j}]"
            modes = [m for m, on in ((False, source.loads_incremental), (True, source.loads_historical)) if on]
            for historical in modes:
                kind = "historical" if historical else "incremental"
                if isinstance(source.connector, DLT_CONNECTORS):
                    from cdp_assets.connectors.dlt_sources import source_columns
                    from cdp_assets.connectors.readers import SourceFileError

                    try:
                        cols = source_columns(source, obj)
                    except SourceFileError as exc:
                        report.problems.append(Problem(cfg, f"sources[{i}].connector", scrub(str(exc), loaded)))
                        continue
                    checked = [f"{source.connector.kind} object {obj.name}"]
                    if source.incremental_field not in cols:
                        report.problems.append(Problem(cfg, f"sources[{i}].incremental_field", f"{obj.name} has no column {source.incremental_field!r}; its columns are {cols}"))
                elif isinstance(source.connector, TableConnector):
                    if warehouse is None:
                        if loaded.pipeline.engine.kind == "duckdb" and not loaded.duckdb_path.exists():
                            report.problems.append(Problem(cfg, where, f"table {source.connector.database}.{obj.name} cannot exist: the DuckDB database {loaded.duckdb_path} does not exist yet"))
                        continue
                    ref = TableRef(source.connector.database, obj.name)
                    try:
                        if not warehouse.table_exists(ref):
                            report.problems.append(Problem(cfg, where, f"table {ref.display} does not exist on the engine; create it or fix connector.database / the object name"))
                            continue
                        cols = [c.lower() for c in warehouse.columns(ref)]
                    except WarehouseError as exc:
                        report.problems.append(Problem(cfg, where, f"cannot read the columns of {ref.display}: {scrub(exc.engine_message, loaded)}"))
                        continue
                    checked = [ref.display]
                else:
                    assert folder is not None
                    files = object_files(folder, obj.name, historical=historical, fmt=source.connector.format)
                    if not files:
                        sub = f"{obj.name}/historical/" if historical else f"{obj.name}/"
                        report.problems.append(Problem(
                            cfg, where,
                            f"mode {source.mode!r} loads {kind} files but {folder / sub} has none; add files or set mode to "
                            f"{'incremental' if historical else 'historical'}",
                        ))
                        continue
                    cols = []
                    checked = []
                    for path in files:
                        names = file_columns(path)
                        if source.incremental_field not in names:
                            report.problems.append(Problem(
                                cfg, f"sources[{i}].incremental_field",
                                f"{path} has no column {source.incremental_field!r}; its columns are {names}. Fix incremental_field or the file",
                            ))
                        cols.extend(c for c in names if c not in cols)
                        checked.append(str(path))
                for k, pk in enumerate(obj.primary_key):
                    if pk not in cols:
                        report.problems.append(Problem(cfg, f"{where}.primary_key[{k}]", f"column {pk!r} is not in {', '.join(checked[:3])}; its columns are {cols}"))
                out.by_object[(source.name, obj.name, historical)] = [*cols, *(c for c in LINEAGE_COLUMNS if c not in cols)]
    return out


def _staging_and_unification_columns(loaded: LoadedConfig, columns: _Columns, report: ValidationReport) -> None:
    from cdp_assets.sql.staging import staged_columns

    cfg = loaded.config_path
    staged: dict[str, list[str]] = {}
    for source, obj in loaded.pipeline.source_objects():
        table = f"{source.name}_{obj.name}"
        raw: list[str] = []
        for historical in (False, True):
            raw.extend(c for c in columns.by_object.get((source.name, obj.name, historical), []) if c not in raw)
        if not raw:
            continue  # its source already has a problem
        rules = loaded.pipeline.staging.get(table, {})
        for name, rule in rules.items():
            for k, col in enumerate(rule.columns):
                if col not in raw:
                    report.problems.append(Problem(cfg, f"staging.{table}.{name}.columns[{k}]", f"column {col!r} is not in {table}; its columns are {[c for c in raw if not c.startswith('_cdp_')]}"))
        staged[f"{table}_stg"] = [*raw, *(c.output for c in staged_columns(rules))]
    unify = loaded.unification
    if unify is None:
        return
    ufile = loaded.config_path if loaded.pipeline.unification_file is None else (loaded.config_path.parent / loaded.pipeline.unification_file).resolve()
    prefix = "unification." if loaded.pipeline.unification_file is None else ""
    aliases = {t.alias: t.table for t in unify.tables}
    for i, t in enumerate(unify.tables):
        have = staged.get(t.table)
        if have is None:
            continue
        for j, kc in enumerate(t.key_columns):
            if kc.column not in have:
                report.problems.append(Problem(ufile, f"{prefix}tables[{i}].key_columns[{j}].column", f"column {kc.column!r} is not in {t.table}; its columns are {[c for c in have if not c.startswith('_cdp_')]}"))
    for m, master in enumerate(unify.master_tables):
        for a, attr in enumerate(master.attributes):
            for s, sc in enumerate(attr.source_columns):
                have = staged.get(aliases.get(sc.table, sc.table))
                if have is None:
                    continue
                for fname, col in (("column", sc.column), ("order_by", sc.order_by)):
                    if col is not None and col not in have:
                        report.problems.append(Problem(ufile, f"{prefix}master_tables[{m}].attributes[{a}].source_columns[{s}].{fname}", f"column {col!r} is not in {sc.table}"))


# ---------------------------------------------------------------------------- SQL


def _check_sql(loaded: LoadedConfig, columns: _Columns, report: ValidationReport) -> None:
    """Every statement rendered for the engine's dialect and parsed; then run in order on an
    in-memory DuckDB over empty raw tables (parsed, bound and planned by DuckDB; the user's
    database is not opened)."""
    import sqlglot

    from cdp_assets.assets.ingestion import ingestion_refs
    from cdp_assets.config.models import SourceConfig, SourceObject
    from cdp_assets.engines.duckdb import DuckDBWarehouse
    from cdp_assets.render import build_pipelines
    from cdp_assets.sql import unification as u
    from cdp_assets.sql.dialects import TableRef
    from cdp_assets.sql.master import master_rules_frame
    from cdp_assets.sql.pipeline import create_table_as

    cfg = loaded.config_path
    engine = loaded.pipeline.engine
    dialect_name = {"duckdb": "duckdb", "treasure_data": engine.treasure_data.dialect_name}.get(engine.kind) or (
        "spark" if engine.databricks.connection == "local_spark" else "databricks"
    )
    from cdp_assets.sql.dialects import get_dialect

    dialect = get_dialect(dialect_name)

    def raw(source: SourceConfig, obj: SourceObject, historical: bool) -> list[str]:
        return columns.by_object.get((source.name, obj.name, historical), [source.incremental_field])

    try:
        pipelines = build_pipelines(loaded, raw_columns=raw)
    except ValueError as exc:
        report.problems.append(Problem(cfg, "staging", f"the SQL cannot be built: {exc}"))
        return
    rehearsal = DuckDBWarehouse(path=":memory:")
    with rehearsal.session():
        for source, obj in loaded.pipeline.source_objects():
            for mode, ref in ingestion_refs(loaded, source, obj).items():
                cols = raw(source, obj, mode == "historical")
                typed = {c: ("datetime64[us]" if c in (source.incremental_field, "_cdp_loaded_at") else "string") for c in cols}
                rehearsal.write_dataframe(ref, pd.DataFrame({c: pd.Series([], dtype=t) for c, t in typed.items()}))
        unify = loaded.unification
        plans = u.build_id_plans(loaded) if unify is not None else []
        for plan in plans:  # what the unification op writes from the config before its SQL
            rehearsal.write_dataframe(plan.ref("keys"), u.keys_frame(plan, unify))
            rehearsal.write_dataframe(plan.ref("invalid_texts"), u.invalid_texts_frame(plan, unify))
            rehearsal.write_dataframe(plan.ref("tables"), u.tables_frame(plan))
        for master in unify.master_tables if unify is not None else []:
            rehearsal.write_dataframe(TableRef(unify.schema, f"{master.name}_attribute_rules"), master_rules_frame(master))
        persistent = {p.name: p for p in plans if p.persistent}
        for phase, pipeline in pipelines.items():
            for n, step in enumerate(pipeline.steps, start=1):
                where = f"{phase}/{n:02d}_{step.name}"
                report.statements += 1
                try:
                    rendered = dialect.render(step.sql)
                    if dialect_name != "duckdb":
                        sqlglot.parse(rendered, read=dialect.sqlglot_name)
                except Exception as exc:  # noqa: BLE001 - sqlglot's errors vary; the statement is named
                    report.problems.append(Problem(cfg, f"SQL {where}", f"cannot be rendered or parsed for {dialect_name}: {str(exc).splitlines()[0]}"))
                    return
                try:
                    plan = persistent.get(step.name.removesuffix("_lookup")) if step.name.endswith("_lookup") else None
                    if plan is not None and not rehearsal.table_exists(plan.ref("lookup")):
                        # A persistent id reads its previous lookup: stand in the first run's.
                        rehearsal.ensure_schema(plan.ref("lookup").schema)
                        rehearsal.run(create_table_as(plan.ref("lookup"), u.lookup_sql(plan, None)))
                    target = re.match(r'CREATE TABLE "(\w+)"\."(\w+)" AS\b', step.sql)
                    if target:
                        # Built under a new name, then swapped in, as runs do (a statement may
                        # read the table it replaces: a persistent id's previous lookup).
                        final = TableRef(target.group(1), target.group(2))
                        rehearsal.ensure_schema(final.schema)
                        staging = rehearsal.staging_ref(final)
                        rehearsal.run(create_table_as(staging, step.sql[target.end():]))
                        rehearsal.swap_in(staging, final)
                    else:
                        rehearsal.run(step.sql)
                except WarehouseError as exc:
                    report.problems.append(Problem(
                        cfg, f"SQL {where}",
                        f"DuckDB cannot plan this statement: {exc.engine_message.splitlines()[0]} (see `cdp-assets render-sql`); later statements were not checked",
                    ))
                    return


# ---------------------------------------------------------------------------- the command


def _summary(loaded: LoadedConfig, warehouse: WarehouseResource | None) -> list[str]:
    from cdp_assets.config.loader import produced_tables

    p = loaded.pipeline
    info = warehouse.connection_info() if warehouse is not None else {"engine": p.engine.kind}
    if p.engine.kind == "duckdb":
        info = {"engine": "duckdb", "path": str(loaded.duckdb_path)}
    lines = [f"config:  {loaded.config_path}", "engine:  " + ", ".join(f"{k}={v}" for k, v in info.items())]
    produced = produced_tables(p)
    lines.append(f"phases:  ingestion -> hist-union -> staging -> unification ({len(p.sources)} source(s), {len(p.object_names)} object(s))")
    for s in p.sources:
        objs = ", ".join(o.name + (f" (pk {'+'.join(o.primary_key)})" if o.primary_key else "") for o in s.objects)
        lines.append(f"  source {s.name}: {s.connector.kind}, mode {s.mode}, watermark {s.incremental_field}: {objs}")
    lines.append(f"  {p.src_schema}: {len(produced[p.src_schema])} table(s); {p.stg_schema}: {', '.join(sorted(produced[p.stg_schema]))}")
    for table, rules in p.staging.items():
        lines.append(f"  staging {table}: " + ", ".join(f"{n}={r.rule}({', '.join(r.columns)})" for n, r in rules.items()))
    u = loaded.unification
    if u is not None:
        lines.append(f"  unification {u.name} -> cdp_unification_{u.name}: keys {', '.join(k.name for k in u.keys)}; {len(u.tables)} table(s)")
        for cid in u.all_ids:
            lines.append(f"    id {cid.name}: merge_by_keys {', '.join(cid.merge_by_keys)}")
        for m in u.master_tables:
            lines.append(f"    master {m.name}: {', '.join(a.name for a in m.attributes)}")
    return lines


def validate(config: str | Path | None = None) -> ValidationReport:
    report = ValidationReport()
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        path = Path(config).expanduser() if config else Path("(CDP_CONFIG)")
        report.problems.append(Problem(path, "(config)", str(exc), config_error=True))
        return report
    warehouse: WarehouseResource | None = None
    kind = loaded.pipeline.engine.kind
    try:
        warehouse = open_warehouse(loaded)
    except CredentialsError as exc:
        report.problems.append(Problem(loaded.config_path, f"engine.{kind}", str(exc), config_error=True))
    if warehouse is not None:
        try:
            if kind == "duckdb":
                _check_duckdb_file(loaded)
            else:
                warehouse.verify_connection()
        except WarehouseError as exc:
            report.problems.append(Problem(loaded.config_path, f"engine.{kind}", f"the engine refused the connection: {scrub(exc.engine_message, loaded)}"))
            warehouse_ok = False
        else:
            warehouse_ok = True
        report.summary = _summary(loaded, warehouse)
        if not warehouse_ok or (kind == "duckdb" and not loaded.duckdb_path.exists()):
            warehouse = None  # a DuckDB file is never created by validate
    else:
        report.summary = _summary(loaded, None)
    before = len(report.problems)
    columns = _source_columns(loaded, warehouse, report)
    _staging_and_unification_columns(loaded, columns, report)
    if len(report.problems) == before:  # SQL over missing sources or columns would only repeat those problems
        _check_sql(loaded, columns, report)
    for p in report.problems:
        p.message = scrub(p.message, loaded)
    return report


def _check_duckdb_file(loaded: LoadedConfig) -> None:
    """The database file can be opened (read-only when it exists: validate writes nothing)."""
    import duckdb

    path = loaded.duckdb_path
    if not path.exists():
        if not os.access(path.parent if path.parent.exists() else Path("."), os.W_OK):
            raise WarehouseError(f"DuckDB database {path} does not exist and its folder is not writable")
        return
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open DuckDB database {path}: {str(exc).splitlines()[0]}") from exc


def add_parser(sub) -> None:
    from cdp_assets.config.loader import CONFIG_ENV

    p = sub.add_parser("validate", help="check config, connection, sources, columns and every statement; writes nothing")
    p.add_argument("--config", help=f"config file (default: ${CONFIG_ENV} or the bundled example)")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    import logging
    import sys

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    report = validate(args.config)
    for line in report.summary:
        print(line)
    if report.problems:
        print(f"\n{len(report.problems)} problem(s):", file=sys.stderr)
        for p in report.problems:
            print(f"  - {p}", file=sys.stderr)
    else:
        print(f"\nOK: connection, sources, columns and {report.statements} statement(s) checked; nothing was written")
    return report.exit_code
