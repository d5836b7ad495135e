"""``cdp-assets validate``: prove a config before a run, writing nothing to the warehouse.

It loads the config, checks the engine's connection (secrets masked), checks that every
source object, file and column the config names exists, then renders every phase's SQL and
has it parsed and planned. Every statement is parsed in the engine's dialect and runs in order
on empty copies of the raw tables in a private in-memory DuckDB (so DuckDB parses, binds and
plans each one, and later statements see the tables earlier ones create). The configured
engine itself is then sent ``EXPLAIN`` of each statement's query (never a DDL or DML) whose
input tables it already holds as this config builds them (after a first run, all but those
reading the unification loop's scratch tables, which no run keeps);
the others can only be rehearsed, and the summary says how many and why. Every problem is
listed, each naming the file and the field to fix; the exit code follows
cdp_assets/exit_codes.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlglot

from cdp_assets import exit_codes
from cdp_assets.config.loader import ConfigError, load_config
from cdp_assets.config.models import DLT_CONNECTORS, LoadedConfig, LocalFilesConnector, S3Connector, TableConnector
from cdp_assets.engines.base import WarehouseError, WarehouseResource, mask_secret
from cdp_assets.sql.dialects import TableRef
from cdp_assets.sql.engine_meta import explain_sql, no_rows_sql


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
    # Each statement ("phase/NN_name") -> None when the configured engine planned it (EXPLAIN),
    # else why it could only be rehearsed.
    engine_plans: dict[str, str | None] = field(default_factory=dict)
    missing_inputs: list[str] = field(default_factory=list)  # tables not (yet) in the warehouse

    @property
    def planned(self) -> int:
        return sum(1 for why in self.engine_plans.values() if why is None)

    def plan_summary(self) -> str:
        """How many statements the engine planned, and why the others were only rehearsed."""
        reasons: dict[str, int] = {}
        for why in self.engine_plans.values():
            if why is not None:
                reasons[why] = reasons.get(why, 0) + 1
        parts = [f"{self.planned} planned by the engine (EXPLAIN)"]
        for why, n in reasons.items():
            if why == NOT_YET_BUILT and self.missing_inputs:
                shown = ", ".join(self.missing_inputs[:3]) + (
                    f" and {len(self.missing_inputs) - 3} more" if len(self.missing_inputs) > 3 else ""
                )
                why = f"{why}: {shown}"
            parts.append(f"{n} only rehearsed, {why}")
        return "; ".join(parts)

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
        return warehouse.model_copy(update={"read_only": True})  # validate writes nothing
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

                folder = sync_source(
                    s3_client(source.connector),
                    source.connector,
                    source,
                    Path(tempfile.mkdtemp(prefix="cdp_validate_s3_")),
                )
            except Exception as exc:  # noqa: BLE001 - boto raises many kinds; the message is what the user needs
                report.problems.append(
                    Problem(
                        cfg,
                        f"sources[{i}].connector",
                        f"cannot list s3://{source.connector.bucket}/{source.connector.prefix}: "
                        f"{str(exc).splitlines()[0]}",
                    )
                )
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
                        report.problems.append(
                            Problem(
                                cfg,
                                f"sources[{i}].incremental_field",
                                f"{obj.name} has no column {source.incremental_field!r}; its columns are {cols}",
                            )
                        )
                elif isinstance(source.connector, TableConnector):
                    if warehouse is None:
                        if loaded.pipeline.engine.kind == "duckdb" and not loaded.duckdb_path.exists():
                            report.problems.append(
                                Problem(
                                    cfg,
                                    where,
                                    f"table {source.connector.database}.{obj.name} cannot exist: "
                                    f"the DuckDB database {loaded.duckdb_path} does not exist yet",
                                )
                            )
                        continue
                    ref = TableRef(source.connector.database, obj.name)
                    try:
                        if not warehouse.table_exists(ref):
                            report.problems.append(
                                Problem(
                                    cfg,
                                    where,
                                    f"table {ref.display} does not exist on the engine; "
                                    "create it or fix connector.database / the object name",
                                )
                            )
                            continue
                        cols = [c.lower() for c in warehouse.columns(ref)]
                    except WarehouseError as exc:
                        report.problems.append(
                            Problem(
                                cfg,
                                where,
                                f"cannot read the columns of {ref.display}: {scrub(exc.engine_message, loaded)}",
                            )
                        )
                        continue
                    checked = [ref.display]
                else:
                    assert folder is not None
                    files = object_files(folder, obj.name, historical=historical, fmt=source.connector.format)
                    if not files:
                        sub = f"{obj.name}/historical/" if historical else f"{obj.name}/"
                        report.problems.append(
                            Problem(
                                cfg,
                                where,
                                f"mode {source.mode!r} loads {kind} files but {folder / sub} has none; add "
                                f"files or set mode to {'incremental' if historical else 'historical'}",
                            )
                        )
                        continue
                    cols = []
                    checked = []
                    for path in files:
                        names = file_columns(path)
                        if source.incremental_field not in names:
                            report.problems.append(
                                Problem(
                                    cfg,
                                    f"sources[{i}].incremental_field",
                                    f"{path} has no column {source.incremental_field!r}; its "
                                    f"columns are {names}. Fix incremental_field or the file",
                                )
                            )
                        cols.extend(c for c in names if c not in cols)
                        checked.append(str(path))
                for k, pk in enumerate(obj.primary_key):
                    if pk not in cols:
                        report.problems.append(
                            Problem(
                                cfg,
                                f"{where}.primary_key[{k}]",
                                f"column {pk!r} is not in {', '.join(checked[:3])}; its columns are {cols}",
                            )
                        )
                out.by_object[(source.name, obj.name, historical)] = [
                    *cols,
                    *(c for c in LINEAGE_COLUMNS if c not in cols),
                ]
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
                    report.problems.append(
                        Problem(
                            cfg,
                            f"staging.{table}.{name}.columns[{k}]",
                            f"column {col!r} is not in {table}; its columns are "
                            f"{[c for c in raw if not c.startswith('_cdp_')]}",
                        )
                    )
        extra = loaded.pipeline.staging_table_columns(table)
        staged[f"{table}_stg"] = [*raw, *(c.output for c in staged_columns(rules)), *extra]
    unify = loaded.unification
    if unify is None:
        return
    ufile = (
        loaded.config_path
        if loaded.pipeline.unification_file is None
        else (loaded.config_path.parent / loaded.pipeline.unification_file).resolve()
    )
    prefix = "unification." if loaded.pipeline.unification_file is None else ""
    aliases = {t.alias: t.table for t in unify.tables}
    for i, t in enumerate(unify.tables):
        have = staged.get(t.table)
        if have is None:
            continue
        for j, kc in enumerate(t.key_columns):
            if kc.column not in have:
                report.problems.append(
                    Problem(
                        ufile,
                        f"{prefix}tables[{i}].key_columns[{j}].column",
                        f"column {kc.column!r} is not in {t.table}; its columns "
                        f"are {[c for c in have if not c.startswith('_cdp_')]}",
                    )
                )
    for m, master in enumerate(unify.master_tables):
        for a, attr in enumerate(master.attributes):
            for s, sc in enumerate(attr.source_columns):
                have = staged.get(aliases.get(sc.table, sc.table))
                if have is None:
                    continue
                for fname, col in (("column", sc.column), ("order_by", sc.order_by)):
                    if col is not None and col not in have:
                        report.problems.append(
                            Problem(
                                ufile,
                                f"{prefix}master_tables[{m}].attributes[{a}].source_columns[{s}].{fname}",
                                f"column {col!r} is not in {sc.table}",
                            )
                        )


# ---------------------------------------------------------------------------- SQL

NOT_YET_BUILT = (
    "inputs not yet built in the warehouse (a first run builds them; the unification loop's "
    "scratch tables exist only while a run builds an id)"
)
BUILT_DIFFERENTLY = "inputs in the warehouse lack columns this config adds (the next run rebuilds them)"
NO_WAREHOUSE = "no warehouse to plan on (the DuckDB database does not exist yet, or the engine's connection failed)"

# Spark's EXPLAIN answers a query it cannot analyse with the error as its plan text, not a failure.
_SPARK_PLAN_ERROR = re.compile(r"(Error occurred during query planning|AnalysisException)[:\s]*(.*)", re.DOTALL)


class _EnginePlanner:
    """Sends the configured engine ``EXPLAIN`` of a statement's query when every table it reads
    already exists there with the columns this config gives it (as the rehearsal holds them):
    the engine then plans the statement exactly as a run would send it, and nothing is written."""

    def __init__(self, warehouse: WarehouseResource | None, rehearsal: WarehouseResource, report: ValidationReport):
        self.warehouse, self.rehearsal, self.report = warehouse, rehearsal, report
        self._columns: dict = {}  # TableRef -> lower-case column names on the engine, or None

    def _engine_columns(self, ref) -> set[str] | None:
        if ref not in self._columns:
            assert self.warehouse is not None
            exists = self.warehouse.table_exists(ref)
            self._columns[ref] = {c.lower() for c in self.warehouse.columns(ref)} if exists else None
        return self._columns[ref]

    def why_not(self, query_sql: str) -> str | None:
        """None when the engine can plan ``query_sql`` (canonical SQL), else the reason."""
        from sqlglot import exp

        if self.warehouse is None:
            return NO_WAREHOUSE
        try:
            tree = sqlglot.parse_one(query_sql, read="duckdb")
        except sqlglot.errors.ParseError:
            return "its input tables could not be listed"
        inputs = {
            TableRef(t.db, t.name)
            for t in tree.find_all(exp.Table)
            if t.db and isinstance(t.this, exp.Identifier)  # CTEs and table functions have no schema
        }
        for ref in sorted(inputs, key=lambda r: (r.schema, r.name)):
            on_engine = self._engine_columns(ref)
            if on_engine is None:
                if ref.display not in self.report.missing_inputs:
                    self.report.missing_inputs.append(ref.display)
                return NOT_YET_BUILT
            if self.rehearsal.table_exists(ref) and not {c.lower() for c in self.rehearsal.columns(ref)} <= on_engine:
                return BUILT_DIFFERENTLY
        return None

    def explain(self, query_sql: str, params: tuple = ()) -> None:
        """EXPLAIN the query on the engine, ``params`` bound to its placeholders as a run binds
        them; a refusal raises WarehouseError with its message."""
        assert self.warehouse is not None
        rendered = self.warehouse.dialect.render(query_sql)
        plan = self.warehouse.query(explain_sql(rendered), list(params))
        text = "\n".join(str(v) for v in plan.to_numpy().ravel())
        refused = _SPARK_PLAN_ERROR.search(text) if self.warehouse.dialect.name in ("spark", "databricks") else None
        if refused:
            # Spark's plan text often leaves the analyser's message out; the query itself, asked
            # for no rows, raises it (Spark reads nothing for LIMIT 0).
            message = refused.group(0).strip()
            try:
                self.warehouse.query(no_rows_sql(rendered), list(params))
            except WarehouseError as exc:
                message = f"{message} {exc.engine_message.strip()}"
            raise WarehouseError(message)


def _check_sql(
    loaded: LoadedConfig, columns: _Columns, report: ValidationReport, warehouse: WarehouseResource | None = None
) -> None:
    """Every statement rendered for the engine's dialect and parsed; then run in order on an
    in-memory DuckDB over empty raw tables (parsed, bound and planned by DuckDB), and the
    query of each EXPLAINed on ``warehouse`` (the configured engine) where it holds the inputs."""
    from cdp_assets.assets.ingestion import ingestion_refs
    from cdp_assets.config.models import SourceConfig, SourceObject
    from cdp_assets.engines.duckdb import DuckDBWarehouse
    from cdp_assets.render import build_pipelines
    from cdp_assets.sql import unification as u
    from cdp_assets.sql.master import master_rules_frame
    from cdp_assets.sql.pipeline import create_table_as
    from cdp_assets.sql.incremental import no_builds_state_sql
    from cdp_assets.sql.unification_pipeline import key_stats_counts_states
    from cdp_assets.unify.runner import config_fingerprint

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
        pipelines = build_pipelines(loaded, raw_columns=raw, dialect=dialect)
    except ValueError as exc:
        report.problems.append(Problem(cfg, "staging", f"the SQL cannot be built: {exc}"))
        return
    rehearsal = DuckDBWarehouse(path=":memory:")
    planner = _EnginePlanner(warehouse, rehearsal, report)
    engine_session = warehouse.session() if warehouse is not None else contextlib.nullcontext()
    with rehearsal.session(), engine_session:
        for source, obj in loaded.pipeline.source_objects():
            for mode, ref in ingestion_refs(loaded, source, obj).items():
                cols = raw(source, obj, mode == "historical")
                typed = {
                    c: ("datetime64[us]" if c in (source.incremental_field, "_cdp_loaded_at") else "string")
                    for c in cols
                }
                rehearsal.write_dataframe(ref, pd.DataFrame({c: pd.Series([], dtype=t) for c, t in typed.items()}))
        unify = loaded.unification
        plans = u.build_id_plans(loaded) if unify is not None else []
        for plan in plans:  # what the unification op writes from the config before its SQL
            rehearsal.write_dataframe(plan.ref("keys"), u.keys_frame(plan, unify))
            rehearsal.write_dataframe(plan.ref("invalid_texts"), u.invalid_texts_frame(plan, unify))
            rehearsal.write_dataframe(plan.ref("tables"), u.tables_frame(plan, config_fingerprint(plan, unify)))
        for master in unify.master_tables if unify is not None else []:
            rehearsal.write_dataframe(
                TableRef(unify.schema, f"{master.name}_attribute_rules"), master_rules_frame(master)
            )
        persistent = {p.name: p for p in plans if p.persistent}
        by_name = {p.name: p for p in plans}
        for phase, pipeline in pipelines.items():
            for n, step in enumerate(pipeline.steps, start=1):
                where = f"{phase}/{n:02d}_{step.name}"
                report.statements += 1
                try:
                    rendered = dialect.render(step.sql)
                    if dialect_name != "duckdb":
                        sqlglot.parse(rendered, read=dialect.sqlglot_name)
                except Exception as exc:  # noqa: BLE001 - sqlglot's errors vary; the statement is named
                    report.problems.append(
                        Problem(
                            cfg,
                            f"SQL {where}",
                            f"cannot be rendered or parsed for {dialect_name}: {str(exc).splitlines()[0]}",
                        )
                    )
                    return
                try:
                    plan = persistent.get(step.name.removesuffix("_lookup")) if step.name.endswith("_lookup") else None
                    if plan is not None and not rehearsal.table_exists(plan.ref("lookup")):
                        # A persistent id reads its previous lookup: stand in the first run's.
                        rehearsal.ensure_schema(plan.ref("lookup").schema)
                        rehearsal.run(create_table_as(plan.ref("lookup"), u.lookup_sql(plan, None)))
                    counted = by_name.get(step.name.removesuffix("_key_stats_counts"))
                    if step.name.endswith("_key_stats_counts") and counted is not None:
                        # The kept counts read the build numbers the lookup and the enrichments
                        # keep beside them (written by runs, not printed): stand in empty ones.
                        for state in key_stats_counts_states(counted):
                            if not rehearsal.table_exists(state):
                                rehearsal.run(create_table_as(state, no_builds_state_sql()))
                    final = step.creates
                    try:
                        why = planner.why_not(step.query)
                        if why is None:
                            planner.explain(step.query, step.params)
                        report.engine_plans[where] = why
                    except WarehouseError as exc:
                        report.problems.append(
                            Problem(
                                cfg,
                                f"SQL {where}",
                                f"the {engine.kind} engine cannot plan this statement "
                                f"(EXPLAIN): {exc.engine_message.strip()} (see `cdp-assets "
                                "render-sql`); later statements were not checked",
                            )
                        )
                        return
                    if final is not None:
                        # Built under a new name, then swapped in, as runs do (a statement may
                        # read the table it replaces: a persistent id's previous lookup).
                        rehearsal.ensure_schema(final.schema)
                        staging = rehearsal.staging_ref(final)
                        rehearsal.create_table_counted(staging, step.query, list(step.params))
                        rehearsal.swap_in(staging, final)
                    elif step.params:
                        rehearsal.fetch(step.sql, list(step.params))
                    else:
                        rehearsal.run(step.sql)
                except WarehouseError as exc:
                    report.problems.append(
                        Problem(
                            cfg,
                            f"SQL {where}",
                            f"DuckDB cannot plan this statement: {exc.engine_message.splitlines()[0]} "
                            "(see `cdp-assets render-sql`); later statements were not checked",
                        )
                    )
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
    lines.append(
        "phases:  ingestion -> hist-union -> staging -> unification "
        f"({len(p.sources)} source(s), {len(p.object_names)} object(s))"
    )
    for s in p.sources:
        objs = ", ".join(o.name + (f" (pk {'+'.join(o.primary_key)})" if o.primary_key else "") for o in s.objects)
        lines.append(f"  source {s.name}: {s.connector.kind}, mode {s.mode}, watermark {s.incremental_field}: {objs}")
    lines.append(
        f"  {p.src_schema}: {len(produced[p.src_schema])} table(s); "
        f"{p.stg_schema}: {', '.join(sorted(produced[p.stg_schema]))}"
    )
    for table, rules in p.staging.items():
        lines.append(
            f"  staging {table}: " + ", ".join(f"{n}={r.rule}({', '.join(r.columns)})" for n, r in rules.items())
        )
    u = loaded.unification
    if u is not None:
        lines.append(
            f"  unification {u.name} -> cdp_unification_{u.name}: keys "
            f"{', '.join(k.name for k in u.keys)}; {len(u.tables)} table(s)"
        )
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
            report.problems.append(
                Problem(
                    loaded.config_path,
                    f"engine.{kind}",
                    f"the engine refused the connection: {scrub(exc.engine_message, loaded)}",
                )
            )
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
        _check_sql(loaded, columns, report, warehouse)
        report.summary.append(
            f"SQL:     {report.statements} statement(s) parsed and "
            f"rehearsed on an in-memory DuckDB; {report.plan_summary()}"
        )
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

    p = sub.add_parser(
        "validate", help="check config, connection, sources, columns and every statement; writes nothing"
    )
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
        print(
            f"\nOK: connection, sources, columns and {report.statements} statement(s) "
            f"checked, {report.planned} of them planned by the engine; nothing was written"
        )
    return report.exit_code
