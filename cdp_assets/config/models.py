"""The pipeline configuration (SPEC §3): one YAML file describes the whole CDP implementation.

Models are strict (unknown fields are errors, since a misspelt field silently ignored is a
bug a user finds in production) and every identifier that will reach SQL is checked here.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from cdp_assets.config.identifiers import check_identifier, check_lower_identifier, check_volume_path
from cdp_assets.config.phone_regions import check_region
from cdp_assets.config.unify import FieldError, UnifyConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------- engine


class DuckDBSettings(_Strict):
    path: str = ".cdp/cdp.duckdb"
    memory_limit: str | None = None
    threads: int | None = Field(default=None, ge=1)


def _check_env_var_name(value: str) -> str:
    # The value itself is never echoed: a user may have pasted a secret here by mistake.
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", value):
        raise ValueError(
            "give the NAME of an environment variable (uppercase letters, digits and underscores, "
            "for example DATABRICKS_TOKEN), never the secret itself; set the secret in that variable"
        )
    return value


EnvVarName = Annotated[str, AfterValidator(_check_env_var_name)]


class DatabricksSettings(_Strict):
    """A Databricks SQL warehouse through databricks-sql-connector; secrets from the environment."""

    # sql_warehouse: a real Databricks SQL warehouse. local_spark: a local Spark session behind
    # the same cursor interface (development and tests; no Delta, so no OPTIMIZE).
    connection: Literal["sql_warehouse", "local_spark"] = "sql_warehouse"
    catalog: str = "main"
    use_catalog: bool = True  # send USE CATALOG once per connection
    auth: Literal["pat", "oauth"] = "pat"
    optimize: bool = True  # Delta OPTIMIZE after each loop iteration and on final tables
    host_env: EnvVarName = "DATABRICKS_HOST"
    http_path_env: EnvVarName = "DATABRICKS_HTTP_PATH"
    token_env: EnvVarName = "DATABRICKS_TOKEN"  # auth: pat
    client_id_env: EnvVarName = "DATABRICKS_CLIENT_ID"  # auth: oauth (service principal, M2M)
    client_secret_env: EnvVarName = "DATABRICKS_CLIENT_SECRET"
    local_spark_dir: str = ".cdp/spark-warehouse"  # connection: local_spark
    # A Unity Catalog Volume folder: DataFrames are loaded as Parquet files through it with one
    # COPY INTO (cdp_assets/resources/databricks_workspace.py); unset, by bound INSERT batches.
    staging_volume: str | None = None
    # Steps of a run that may write at once (the per-object phases, enrichment). local_spark is
    # always 1: its tables live in one process's Spark catalog.
    concurrent_steps: int = Field(default=4, ge=1, le=64)
    # S3 sources are read by the SQL warehouse itself (read_files; the workspace needs access to
    # the bucket through Unity Catalog). false: objects are fetched and loaded from Python.
    read_s3_in_warehouse: bool = True

    _catalog = field_validator("catalog")(lambda v: check_identifier(v, "databricks catalog"))
    _staging_volume = field_validator("staging_volume")(
        lambda v: v if v is None else check_volume_path(v, "databricks staging_volume")
    )

    @model_validator(mode="after")
    def _volume_needs_a_warehouse(self) -> DatabricksSettings:
        if self.staging_volume is not None and self.connection != "sql_warehouse":
            raise ValueError(
                "staging_volume needs connection: sql_warehouse (COPY INTO from a Volume runs on a Databricks SQL "
                "warehouse, not on local Spark); remove staging_volume for local_spark"
            )
        return self


TD_REGION_ENDPOINTS = {
    "us": "https://api.treasuredata.com",
    "eu": "https://api.eu01.treasuredata.com",
    "tokyo": "https://api.treasuredata.co.jp",
    "ap02": "https://api.ap02.treasuredata.com",
}


class TreasureDataSettings(_Strict):
    """Treasure Data through pytd; the API key from the environment."""

    # presto and trino are the same engine on Treasure Data (Trino SQL); hive is the option.
    query_engine: Literal["presto", "trino", "hive"] = "presto"
    region: Literal["us", "eu", "tokyo", "ap02"] = "us"
    endpoint: str | None = None  # overrides the region's API endpoint (a proxy, a test server)
    apikey_env: EnvVarName = "TD_API_KEY"
    # How often a running job's or bulk import's status is asked for.
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Steps of a run that may write at once, each with its own jobs (the per-object phases,
    # enrichment); TD queues jobs beyond the account's concurrency.
    concurrent_steps: int = Field(default=4, ge=1, le=64)

    @property
    def api_endpoint(self) -> str:
        return self.endpoint or TD_REGION_ENDPOINTS[self.region]

    @property
    def dialect_name(self) -> str:
        return "hive" if self.query_engine == "hive" else "trino"


class EngineConfig(_Strict):
    kind: Literal["duckdb", "databricks", "treasure_data"] = "duckdb"
    # A statement running longer is cancelled and fails its step; none by default.
    statement_timeout_seconds: float | None = Field(default=None, gt=0)
    duckdb: DuckDBSettings = DuckDBSettings()
    databricks: DatabricksSettings = DatabricksSettings()
    treasure_data: TreasureDataSettings = TreasureDataSettings()


# ---------------------------------------------------------------------------- sources

FileFormat = Literal["auto", "csv", "parquet", "jsonl"]


class LocalFilesConnector(_Strict):
    kind: Literal["local_files"]
    path: str
    format: FileFormat = "auto"


class S3Connector(_Strict):
    """Objects under s3://bucket/prefix/{object}/ (incremental) and .../{object}/historical/.
    Credentials: the standard AWS environment variables (AWS_ACCESS_KEY_ID, ...)."""

    kind: Literal["s3"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = ""
    format: FileFormat = "auto"
    endpoint_url: str | None = None  # an S3-compatible server (MinIO, a test server)
    region_name: str | None = None


class TableConnector(_Strict):
    kind: Literal["table"]
    database: str

    _database = field_validator("database")(lambda v: check_identifier(v, "connector database"))


class SqlDatabaseConnector(_Strict):
    """Tables of a database (PostgreSQL, MySQL, SQL Server, ... anything SQLAlchemy reaches),
    extracted by dlt's sql_database source, incrementally by the source's incremental_field.
    The connection URL holds the password, so it comes from an environment variable."""

    kind: Literal["sql_database"]
    credentials_env: EnvVarName = "CDP_SQL_DATABASE_URL"  # e.g. postgresql://user:pw@host:5432/db
    schema_: str | None = Field(default=None, alias="schema")  # the database schema of the objects
    chunk_size: int = Field(default=10_000, ge=1, le=1_000_000)

    _schema = field_validator("schema_")(lambda v: v if v is None else check_identifier(v, "connector schema"))


class RestAuth(_Strict):
    """How the API authenticates; the secret comes from the environment variable named here."""

    type: Literal["bearer", "api_key", "http_basic"]
    token_env: EnvVarName | None = None  # bearer
    key_env: EnvVarName | None = None  # api_key
    name: str = "Authorization"  # api_key: the header or query parameter carrying the key
    location: Literal["header", "query"] = "header"  # api_key
    username: str | None = None  # http_basic
    password_env: EnvVarName | None = None  # http_basic

    @model_validator(mode="after")
    def _secret_named(self) -> "RestAuth":
        needed = {"bearer": "token_env", "api_key": "key_env", "http_basic": "password_env"}[self.type]
        if getattr(self, needed) is None:
            raise FieldError(
                (needed,),
                f"auth type {self.type!r} needs {needed}: the NAME of the environment variable holding the secret",
            )
        return self


class RestEndpoint(_Strict):
    """One object of a REST API, in the terms of dlt's rest_api source."""

    path: str  # relative to base_url, e.g. customers or v2/contacts
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    data_selector: str | None = None  # JSONPath to the records in a response, e.g. data or results
    # The query parameter that takes the watermark (the API returns rows newer than it); without
    # it every page is read and rows are filtered by the watermark after reading.
    cursor_param: str | None = None
    paginator: dict | None = None  # dlt's paginator settings; default: the client's


class RestApiConnector(_Strict):
    """A REST/JSON API read with dlt's rest_api source: pagination, auth and the incremental
    cursor are dlt's; rows land in the raw tables through the ingestion contract."""

    kind: Literal["rest_api"]
    base_url: str = Field(pattern=r"^https?://")
    auth: RestAuth | None = None
    # dlt's paginator settings for every endpoint, e.g. {type: page_number, page_param: page,
    # total_path: total_pages} or {type: json_link, next_url_path: next}; none: dlt detects it.
    paginator: dict | None = None
    endpoints: dict[str, RestEndpoint] = Field(min_length=1)  # object name -> endpoint
    # How the watermark is written into cursor_param, and compared with the records' cursor
    # values (dlt compares them as the API writes them: keep the API's format).
    cursor_format: str = "%Y-%m-%dT%H:%M:%S"


DLT_CONNECTORS = (SqlDatabaseConnector, RestApiConnector)

Connector = Annotated[
    Union[LocalFilesConnector, S3Connector, TableConnector, SqlDatabaseConnector, RestApiConnector],
    Field(discriminator="kind"),
]


class SourceObject(_Strict):
    name: str
    primary_key: list[str] = Field(default_factory=list)

    _name = field_validator("name")(lambda v: check_lower_identifier(v, "object name"))

    @field_validator("primary_key", mode="before")
    @classmethod
    def _pk(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        return [check_identifier(v, "primary_key column") for v in value] if isinstance(value, list) else value


class SourceConfig(_Strict):
    name: str
    connector: Connector
    objects: list[SourceObject] = Field(min_length=1)
    mode: Literal["incremental", "historical", "both"] = "both"
    incremental_field: str = "updated_at"
    start_date: datetime | None = None
    # How a watermark written as 06/03/2024 is read: dmy (day first), mdy (month first) or ymd.
    # Unset, such values fail the load naming this field: the order is never guessed.
    date_order: Literal["dmy", "mdy", "ymd"] | None = None

    _name = field_validator("name")(lambda v: check_lower_identifier(v, "source name"))
    _field = field_validator("incremental_field")(lambda v: check_identifier(v, "incremental_field"))

    @field_validator("objects", mode="before")
    @classmethod
    def _objects(cls, value: object) -> object:
        # `objects: [customers, orders]` is the short form of `[{name: customers}, ...]`.
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _dlt_sources(self) -> "SourceConfig":
        if isinstance(self.connector, DLT_CONNECTORS) and self.mode != "incremental":
            raise FieldError(("mode",), f"a {self.connector.kind} source loads by its cursor: set mode: incremental")
        if isinstance(self.connector, RestApiConnector):
            missing = [o.name for o in self.objects if o.name not in self.connector.endpoints]
            if missing:
                raise FieldError(
                    ("connector", "endpoints"),
                    f"objects {missing} have no endpoint; add connector.endpoints.<object>: {{path: ...}}",
                )
        return self

    @model_validator(mode="after")
    def _unique_objects(self) -> "SourceConfig":
        seen: set[str] = set()
        for i, obj in enumerate(self.objects):
            if obj.name in seen:
                raise FieldError(
                    ("objects", i),
                    f"source {self.name!r}: object {obj.name!r} is listed twice in objects; list each once",
                )
            seen.add(obj.name)
        return self

    @property
    def loads_incremental(self) -> bool:
        return self.mode in ("incremental", "both")

    @property
    def loads_historical(self) -> bool:
        return self.mode in ("historical", "both")


# ---------------------------------------------------------------------------- staging

# The one list of staging rule names. Rules that standardise an identifier produce
# `standardized_<name>`, `hash` produces `hashed_<name>`, `date` produces `<name>_std`,
# `<name>_unixtime` and `<name>_date`, the others `cleaned_<name>`.
StagingRuleName = Literal["email", "phone", "name", "text", "number", "boolean", "hash", "date", "json"]
STAGING_RULES: tuple[str, ...] = get_args(StagingRuleName)
STANDARDIZING_RULES = ("email", "phone")
CLEANING_RULES = tuple(r for r in STAGING_RULES if r not in (*STANDARDIZING_RULES, "hash", "date", "json"))
# Formats the date rule reads, tried in the listed order. Day/month order is never guessed:
# `dd-mm-yyyy` and `mm/dd/yyyy` apply only when listed. Each date form takes an optional time.
DateFormat = Literal[
    "iso8601", "yyyy/mm/dd", "dd-mm-yyyy", "dd/mm/yyyy", "mm/dd/yyyy", "mm-dd-yyyy", "epoch_seconds", "epoch_millis"
]
DEFAULT_DATE_FORMATS: tuple[str, ...] = ("iso8601", "yyyy/mm/dd", "epoch_seconds", "epoch_millis")
# Values that mean "no value" in every rule's input unless the rule lists its own
# (compared after trimming, in any case).
DEFAULT_NULL_TOKENS: tuple[str, ...] = ("", "NULL", "NONE", "N/A", "NA", "-")
NullToken = Annotated[str, Field(max_length=64, pattern=r"^[^\\']*$")]
# The json rule without `paths` takes every key down to this depth.
DEFAULT_JSON_DEPTH = 2


# A key of a JSON path: no quote, backslash or control character (no engine's path spells them alike).
JsonKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\\'\"\x00-\x1f]*$")]


class JsonPath(_Strict):
    """One value of a JSON column: the keys leading to it, and whether it is an array (kept as an
    array of text) or a scalar (text; an object at the end of the path comes as JSON text).

    Written as a dotted string (``address.city``), a list of keys (any characters, spaces and
    ``$`` included: ``["favourite colour"]``) or ``{keys: [...], type: array}``."""

    keys: list[JsonKey] = Field(min_length=1)
    type: Literal["text", "array"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: object) -> object:
        if isinstance(value, str):
            return {"keys": value.split(".")}
        if isinstance(value, list):
            return {"keys": value}
        return value


class StagingRule(_Strict):
    rule: StagingRuleName
    columns: list[str] = Field(min_length=1)
    # With several columns: `first` takes the first column that gives a value; `concat` joins
    # every column's value with `separator` and is NULL when any of them is NULL (composite keys).
    combine: Literal["first", "concat"] = "first"
    separator: str = Field(default="|", pattern=r"^[-|:;,./_ #~]{0,3}$")
    # Input values that become NULL before the rule applies; None means DEFAULT_NULL_TOKENS.
    null_tokens: list[NullToken] | None = None
    # Phone numbers written without a country code are read as numbers of this region (any
    # ISO 3166 code of the phone table, cdp_assets/data/phone_regions.csv). Also for `hash` of phones.
    default_region: str = "US"
    # email and phone: add `<output>_valid` (TRUE valid, FALSE present but invalid, NULL absent).
    valid_flag: bool = False
    # number: a decimal comma (1.234,56) instead of a decimal point; round to this many digits.
    decimal_comma: bool = False
    decimals: int | None = Field(default=None, ge=0, le=12)
    # hash: what the value is normalised as before SHA-256 (lowercased trimmed email, E.164
    # phone digits without '+', or trimmed lowercased text).
    normalize: Literal["email", "phone", "text"] = "text"
    # date: the formats to try, in order (default DEFAULT_DATE_FORMATS).
    formats: list[DateFormat] | None = Field(default=None, min_length=1)
    # json: output name -> path, each output is `<name>_<output>`; without paths, every key down
    # to `depth` (found by profiling the table when it is built; DuckDB only, see docs/staging.md).
    paths: dict[str, JsonPath] | None = Field(default=None, min_length=1)
    depth: int | None = Field(default=None, ge=1, le=5)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        checked = [check_identifier(v, "staging column") for v in value]
        repeated = sorted({c for c in checked if checked.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} listed more than once; list each column once")
        return checked

    @field_validator("paths")
    @classmethod
    def _path_names(cls, value: dict[str, JsonPath] | None) -> dict[str, JsonPath] | None:
        for out in value or {}:
            check_identifier(out, "json path output name")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    @model_validator(mode="after")
    def _options_fit_the_rule(self) -> "StagingRule":
        misplaced = {
            "valid_flag": self.valid_flag and self.rule not in STANDARDIZING_RULES,
            "decimal_comma": self.decimal_comma and self.rule != "number",
            "decimals": self.decimals is not None and self.rule != "number",
            "normalize": self.normalize != "text" and self.rule != "hash",
            "formats": self.formats is not None and self.rule != "date",
            "combine: concat": self.combine == "concat" and self.rule in ("date", "json"),
            "paths": self.paths is not None and self.rule != "json",
            "depth": self.depth is not None and (self.rule != "json" or self.paths is not None),
        }
        wrong = [k for k, bad in misplaced.items() if bad]
        if wrong:
            raise ValueError(f"option(s) {wrong} do not apply to rule {self.rule!r}; remove them (see docs/staging.md)")
        if self.rule == "json" and len(self.columns) != 1:
            raise ValueError("the json rule reads one column; give one json rule per JSON column")
        return self

    @property
    def date_formats(self) -> tuple[str, ...]:
        return DEFAULT_DATE_FORMATS if self.formats is None else tuple(dict.fromkeys(self.formats))

    @property
    def tokens(self) -> tuple[str, ...]:
        return DEFAULT_NULL_TOKENS if self.null_tokens is None else tuple(self.null_tokens)

    @property
    def json_depth(self) -> int:
        return DEFAULT_JSON_DEPTH if self.depth is None else self.depth

    def with_table_null_tokens(self, tokens: list[str] | None) -> "StagingRule":
        """The rule with its table's null tokens when it lists none of its own."""
        if tokens is None or self.null_tokens is not None:
            return self
        return self.model_copy(update={"null_tokens": list(tokens)})


class DedupeOptions(_Strict):
    """Keep one row per ``partition_by`` (source or staged output columns, so after cleaning:
    rows differing only in case or spaces of an email collapse), the newest by ``order_by``."""

    partition_by: list[str] = Field(min_length=1)
    order_by: list[str] | None = None  # default: the source's incremental_field
    keep: Literal["newest", "oldest"] = "newest"

    @field_validator("partition_by", "order_by")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_identifier(v, "dedupe column") for v in value]


class DimensionJoin(_Strict):
    """Columns of a dimension table added to a staged table as ``<column>_dim``, LEFT JOINed on
    cleaned keys (text, trimmed, lowercased; NULL and null tokens never match). The dimension is
    another staged table (``from: staged``, default) or a source object's hist-union table
    (``from: source``), named ``<source>_<object>``; it keeps one row per key."""

    table: str
    from_: Literal["staged", "source"] = Field(default="staged", alias="from")
    # this table's column (a source column or a staged output) -> the dimension's column
    on: dict[str, str] = Field(min_length=1)
    columns: list[str] = Field(min_length=1)

    _table = field_validator("table")(lambda v: check_identifier(v, "join table"))

    @field_validator("on")
    @classmethod
    def _on(cls, value: dict[str, str]) -> dict[str, str]:
        for left, right in value.items():
            check_identifier(left, "join key column")
            check_identifier(right, "join key column of the dimension")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        checked = [check_identifier(v, "join column") for v in value]
        repeated = sorted({c for c in checked if checked.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} listed more than once; list each column once")
        return checked

    def outputs(self) -> list[str]:
        return [f"{c}_dim" for c in self.columns]


# The metadata columns `metadata_columns: true` adds to a staged table.
METADATA_COLUMNS = ("source_system", "load_timestamp")


class StagingTableOptions(_Strict):
    dedupe: DedupeOptions | None = None
    # Input values that mean "no value" for every rule of the table that lists none of its own
    # (default: DEFAULT_NULL_TOKENS).
    null_tokens: list[NullToken] | None = None
    join: list[DimensionJoin] = Field(default_factory=list)
    # Add `source_system` (the source's name) and `load_timestamp` (when ingestion loaded the row).
    metadata_columns: bool = False


class ChecksConfig(_Strict):
    coverage_min_pct: float = Field(default=90.0, ge=0, le=100)
    # A standardised column whose share of unparseable values is above this fails its check.
    unparseable_max_pct: float = Field(default=25.0, ge=0, le=100)
    # Monitoring (warnings): raw tables older than this, a load this many times smaller or
    # larger than the trailing loads, a coverage drop of more points than this since the last
    # run, one canonical id holding more than this share of the rows with an id.
    freshness_hours: float = Field(default=48.0, gt=0)
    volume_anomaly_factor: float = Field(default=10.0, gt=1)
    coverage_drop_max_points: float = Field(default=5.0, ge=0, le=100)
    largest_component_max_pct: float = Field(default=10.0, gt=0, le=100)


class UnificationOptions(_Strict):
    """Our settings around Treasure Data's unify.yml (which stays unchanged)."""

    # Guard against over-merging: a key value shared by more rows than this is excluded from
    # the graph, listed in {cid}_excluded_values and reported by a warning check.
    max_rows_per_value: int = Field(default=10_000, ge=1)
    max_rows_per_value_by_key: dict[str, int] = Field(default_factory=dict)
    # Keep each iteration's labels as {cid}_graph_unify_loop_{n} (debugging only).
    keep_loop_tables: bool = False

    @field_validator("max_rows_per_value_by_key")
    @classmethod
    def _by_key(cls, value: dict[str, int]) -> dict[str, int]:
        for key, cap in value.items():
            check_identifier(key, "max_rows_per_value_by_key key")
            if not isinstance(cap, int) or cap < 1:
                raise ValueError(f"max_rows_per_value_by_key.{key} must be a positive integer, got {cap!r}")
        return value

    def cap_for(self, key: str) -> int:
        return self.max_rows_per_value_by_key.get(key, self.max_rows_per_value)


class SchedulesConfig(_Strict):
    """When the scheduled refreshes run (cron, in ``timezone``)."""

    ingestion_cron: str = "0 2 * * *"
    unification_cron: str = "0 4 * * *"
    timezone: str = "UTC"
    # Whether the schedules run from the moment a Dagster home first sees them (the UI's toggle
    # overrides it). The bundled example says "stopped": `dagster dev` on it starts nothing alone.
    default_status: Literal["running", "stopped"] = "running"

    @field_validator("ingestion_cron", "unification_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError(f"{value!r} is not a valid cron expression; use five fields like '0 2 * * *'")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a known time zone; use an IANA name like 'Europe/Berlin' or 'UTC'"
            ) from None
        return value


class SensorsConfig(_Strict):
    """File-drop sensors on local source folders start ingestion when files arrive."""

    file_drop: bool = True
    minimum_interval_seconds: int = Field(default=30, ge=5)
    # Whether the sensors that start runs (file drop, S3 prefix, watermark, cdp_automation) run
    # from the moment a Dagster home first sees them; the UI's toggle overrides it. The alert
    # sensors start no run and always run. The bundled example says "stopped".
    default_status: Literal["running", "stopped"] = "running"


class AlertsConfig(_Strict):
    """Where alerts go. They are always logged; with a webhook they are also POSTed as JSON with
    a ``text`` field, which Slack incoming webhooks accept as they are; with a Slack bot token
    and a channel they are posted through dagster-slack. The URL and the token are secrets: they
    come from the environment variables named here, never from this file."""

    webhook_url_env: EnvVarName = "CDP_ALERT_WEBHOOK_URL"
    slack_token_env: EnvVarName = "CDP_SLACK_TOKEN"
    slack_channel: str | None = None  # e.g. "#cdp-alerts"; Slack is used when this and the token are set
    slack_api_url: str = "https://slack.com/api/"  # a proxy or a test server may stand in
    ui_base_url: str = "http://127.0.0.1:3000"
    # How often the alert sensors look for failed checks and runs.
    minimum_interval_seconds: int = Field(default=30, ge=5)


class ReportConfig(_Strict):
    path: str = ".cdp/report.md"


class PipelineConfig(_Strict):
    client: str
    engine: EngineConfig = EngineConfig()
    # Empty only for a unification on existing warehouse tables (no ingestion, no staging).
    sources: list[SourceConfig] = Field(default_factory=list)
    staging: dict[str, dict[str, StagingRule]] = Field(default_factory=dict)
    # Table-level staging options, per staged table (<source>_<object>): docs/staging.md.
    staging_tables: dict[str, StagingTableOptions] = Field(default_factory=dict)
    checks: ChecksConfig = ChecksConfig()
    report: ReportConfig = ReportConfig()
    unification_options: UnificationOptions = UnificationOptions()
    schedules: SchedulesConfig = SchedulesConfig()
    sensors: SensorsConfig = SensorsConfig()
    alerts: AlertsConfig = AlertsConfig()
    unification: UnifyConfig | None = None
    unification_file: str | None = None
    # Values for the workflow variables (${name}, ${a.b}) of unify.yml; resolved by the loader
    # before validation (cdp_assets/config/variables.py).
    unification_variables: dict[str, Any] = Field(default_factory=dict)

    @field_validator("client")
    @classmethod
    def _client(cls, value: str) -> str:
        return check_lower_identifier(value, "client")

    @field_validator("staging")
    @classmethod
    def _staging_names(cls, value: dict[str, dict[str, StagingRule]]) -> dict[str, dict[str, StagingRule]]:
        for table, rules in value.items():
            check_identifier(table, "staging table")
            for out in rules:
                check_identifier(out, "staging output column")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> "PipelineConfig":
        if not self.sources and self.unification is None and self.unification_file is None:
            raise FieldError(
                ("sources",),
                "list at least one source (or give unification / "
                "unification_file to unify existing warehouse tables only)",
            )
        names = [s.name for s in self.sources]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"sources: {n!r} is listed twice; give each source a unique name")
        produced = self.object_names
        for field, table in [("staging", t) for t in self.staging] + [
            ("staging_tables", t) for t in self.staging_tables
        ]:
            if table not in produced:
                raise FieldError(
                    (field, table),
                    f"no source object produces {table!r}; staging tables are named "
                    f"<source>_<object>, one of {sorted(produced)}",
                )
        if self.unification is not None and self.unification_file is not None:
            raise ValueError("set either unification (inline) or unification_file (a path), not both")
        self._check_staging_references()
        return self

    def _check_staging_references(self) -> None:
        """Joins name produced tables without cycles; staged columns they read exist; json rules
        without paths run only where their keys can be profiled (DuckDB)."""
        from cdp_assets.sql.staging import staged_columns

        produced = self.object_names
        for table, rules in self.staging.items():
            for name, rule in rules.items():
                if rule.rule == "json" and rule.paths is None and self.engine.kind != "duckdb":
                    raise FieldError(
                        ("staging", table, name, "paths"),
                        f"json rule {name!r} lists no paths: finding every key needs a profiling query that only the "
                        f"duckdb engine runs, not {self.engine.kind}; list the paths to extract",
                    )
        for table, options in self.staging_tables.items():
            outputs = {c.output for c in staged_columns(self.staging.get(table, {}))}
            for i, join in enumerate(options.join):
                where = ("staging_tables", table, "join", i)
                if join.table not in produced:
                    raise FieldError(
                        (*where, "table"),
                        f"no source object produces {join.table!r}; name a dimension as <source>_<object>, "
                        f"one of {sorted(produced)}",
                    )
                if join.from_ == "staged" and join.table == table:
                    raise FieldError((*where, "table"), f"{table!r} cannot join its own staged table; use from: source")
                clash = sorted(set(join.outputs()) & outputs)
                if clash:
                    raise FieldError(
                        (*where, "columns"),
                        f"output column(s) {clash} are also staging outputs of {table!r}; rename one",
                    )
                if join.from_ == "staged":
                    dim_outputs = {c.output for c in staged_columns(self.staging.get(join.table, {}))}
                    for k, col in enumerate(join.columns):
                        if _looks_staged(col) and col not in dim_outputs:
                            raise FieldError(
                                (*where, "columns", k),
                                f"{col!r} is not a staging output of {join.table!r}; "
                                f"its outputs are {sorted(dim_outputs)}",
                            )
                    for right in join.on.values():
                        if _looks_staged(right) and right not in dim_outputs:
                            raise FieldError(
                                (*where, "on"),
                                f"{right!r} is not a staging output of {join.table!r}; "
                                f"its outputs are {sorted(dim_outputs)}",
                            )
                for left in join.on:
                    if _looks_staged(left) and left not in outputs:
                        raise FieldError(
                            (*where, "on"),
                            f"{left!r} is not a staging output of {table!r}; its outputs are {sorted(outputs)}",
                        )
        self._check_join_cycles()

    def _check_join_cycles(self) -> None:
        edges = {t: [j.table for j in o.join if j.from_ == "staged"] for t, o in self.staging_tables.items()}

        def visit(table: str, path: list[str]) -> None:
            for nxt in edges.get(table, []):
                if nxt in path:
                    cycle = " -> ".join([*path[path.index(nxt) :], nxt])
                    raise FieldError(
                        ("staging_tables", table, "join"),
                        f"staged tables join each other in a cycle ({cycle}); join a source instead (from: source)",
                    )
                visit(nxt, [*path, nxt])

        for table in edges:
            visit(table, [table])

    def staging_table_columns(self, table: str) -> list[str]:
        """The columns the table-level options add to a staged table (``<source>_<object>``):
        the metadata columns, then each join's ``<column>_dim``."""
        options = self.staging_tables.get(table)
        if options is None:
            return []
        meta = list(METADATA_COLUMNS) if options.metadata_columns else []
        return [*meta, *(o for j in options.join for o in j.outputs())]

    def staging_rules_of(self, table: str) -> dict[str, StagingRule]:
        """The rules of a staged table (``<source>_<object>``), with the table's null tokens."""
        options = self.staging_tables.get(table)
        tokens = options.null_tokens if options is not None else None
        return {name: rule.with_table_null_tokens(tokens) for name, rule in self.staging.get(table, {}).items()}

    # ----- names of the tables each phase produces (the contract of SPEC §4)

    @property
    def src_schema(self) -> str:
        return f"{self.client}_src"

    @property
    def stg_schema(self) -> str:
        return f"{self.client}_stg"

    @property
    def object_names(self) -> list[str]:
        return [f"{s.name}_{o.name}" for s in self.sources for o in s.objects]

    def source_objects(self) -> list[tuple[SourceConfig, SourceObject]]:
        return [(s, o) for s in self.sources for o in s.objects]

    def source_of_staged_table(self, table: str) -> tuple[SourceConfig, SourceObject] | None:
        """The source object behind ``<source>_<object>_stg``, or None."""
        for source, obj in self.source_objects():
            if f"{source.name}_{obj.name}_stg" == table:
                return source, obj
        return None


def _looks_staged(column: str) -> bool:
    """A name only staging produces (its outputs), so checkable before any data is read."""
    return column.startswith(("standardized_", "cleaned_", "hashed_"))


class LoadedConfig(BaseModel):
    """A validated config with its paths resolved: what the rest of the package works from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    pipeline: PipelineConfig
    unification: UnifyConfig | None
    config_path: Path
    duckdb_path: Path
    report_path: Path
    source_paths: dict[str, Path]  # source name -> folder, for local_files connectors
