"""Finding, reading and validating the config file, with errors a user can act on."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cdp_assets.config.models import LoadedConfig, LocalFilesConnector, PipelineConfig
from cdp_assets.config.references import (  # noqa: F401
    ReferenceError_,
    check_columns,
    check_join_columns,
    check_tables,
    produced_tables,
)
from cdp_assets.config.unify import FieldError, UnifyConfig
from cdp_assets.config.variables import UnresolvedVariable, resolve
from cdp_assets.sql.regex import unsupported_constructs

CONFIG_ENV = "CDP_CONFIG"
DUCKDB_PATH_ENV = "CDP_DUCKDB_PATH"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The example and the instance settings, shipped inside the package (in a checkout, symlinks to
# examples/acme and dagster.yaml; a wheel holds copies), so that a plain `pip install` works.
BUNDLED_DIR = PACKAGE_DIR / "bundled"
BUNDLED_DAGSTER_YAML = BUNDLED_DIR / "dagster.yaml"


def _project_root() -> Path:
    """Where the default config, the run outputs (.cdp/) and the run history go: the source
    checkout when the package runs from one (an editable install, PYTHONPATH), else the current
    directory (a regular install: site-packages is no place for a user's data)."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "examples").is_dir():
        return checkout
    return Path.cwd().resolve()


REPO_ROOT = _project_root()
DEFAULT_CONFIG = REPO_ROOT / "examples" / "acme" / "cdp.yml"

# Extra advice for the errors users meet most often; pydantic's own text says what is wrong,
# these say what to do.
_MAPPING_HINT = (
    "write a mapping of fields here (name: value lines), see the configuration reference in docs/configuration.md"
)
_HINTS = {
    "extra_forbidden": "remove it or check its spelling against the configuration reference in docs/configuration.md",
    "missing": "add this field",
    "union_tag_invalid": "use one of the listed kinds",
    "literal_error": "use one of the listed values",
    "model_type": _MAPPING_HINT,
    "model_attributes_type": _MAPPING_HINT,
    "dict_type": "write a mapping here (name: value lines)",
    "list_type": "write a list here (lines starting with '- ')",
}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the field and the fix."""


def config_path_from_env() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    if not DEFAULT_CONFIG.exists() and (BUNDLED_DIR / "acme" / "cdp.yml").is_file():
        _copy_bundled_example()
    return DEFAULT_CONFIG


def _copy_bundled_example() -> None:
    """Outside a checkout, the default config is the bundled example, copied to
    ./examples/acme on first use: its relative paths (data, ../../.cdp/) then resolve in the
    user's folder, as they do in a checkout."""
    shutil.copytree(BUNDLED_DIR / "acme", DEFAULT_CONFIG.parent, dirs_exist_ok=True)
    logging.getLogger(__name__).warning(
        "no config given (--config or $%s): copied the bundled example to %s and using it",
        CONFIG_ENV,
        DEFAULT_CONFIG.parent,
    )


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Load and validate the pipeline config at ``path`` (default: ``$CDP_CONFIG`` or the example)."""
    config_path = Path(path).expanduser() if path is not None else config_path_from_env()
    config_path = config_path.resolve()
    raw = _read_yaml(config_path, "config file", hint=f"set {CONFIG_ENV} to an existing config file")
    variables = raw.get("unification_variables") or {}
    if not isinstance(variables, dict):
        raise ConfigError(
            f"{config_path}: unification_variables: expected a mapping of workflow variables "
            f"(name: value lines), got {type(variables).__name__}"
        )
    if raw.get("unification") is not None:
        # Workflow variables are resolved before validation: every check sees the real names.
        raw = {**raw, "unification": _resolve_variables(raw["unification"], variables, config_path, "unification")}
    pipeline = _validate(PipelineConfig, raw, config_path)
    base = config_path.parent

    unification = pipeline.unification
    if pipeline.unification_file is not None:
        unify_path = _resolve(base, pipeline.unification_file, config_path, "unification_file")
        raw_unify = _read_yaml(
            unify_path,
            f"{config_path}: unification_file:",
            hint="fix the path in unification_file (relative paths resolve against the config file's folder)",
        )
        raw_unify = _resolve_variables(raw_unify, variables, unify_path, "")
        unification = _validate(UnifyConfig, raw_unify, unify_path)

    source_paths: dict[str, Path] = {}
    for i, source in enumerate(pipeline.sources):
        if isinstance(source.connector, LocalFilesConnector):
            folder = _resolve(base, source.connector.path, config_path, f"sources[{i}].connector.path")
            if not folder.is_dir():
                raise ConfigError(
                    f"{config_path}: sources[{i}].connector.path: folder {folder} does not exist; "
                    "create it or fix the path (relative paths resolve against the config file's folder)"
                )
            source_paths[source.name] = folder

    try:
        check_join_columns(pipeline, source_paths)
    except ReferenceError_ as exc:
        raise ConfigError(f"{config_path}: {exc}") from None

    if unification is not None:
        unify_file = unify_path if pipeline.unification_file is not None else config_path
        _check_unification_references(
            pipeline, unification, source_paths, unify_file, pipeline.unification_file is None
        )
        _check_regexps(
            unification, pipeline.engine.kind, unify_file, "" if pipeline.unification_file else "unification."
        )
        key_names = [k.name for k in unification.keys]
        for key in pipeline.unification_options.max_rows_per_value_by_key:
            if key not in key_names:
                raise ConfigError(
                    f"{config_path}: unification_options.max_rows_per_value_by_key.{key}: {key!r} is not a key "
                    f"of the unification; use one of {key_names}"
                )

    duckdb_path = os.environ.get(DUCKDB_PATH_ENV) or pipeline.engine.duckdb.path
    duckdb_field = DUCKDB_PATH_ENV if os.environ.get(DUCKDB_PATH_ENV) else "engine.duckdb.path"
    return LoadedConfig(
        pipeline=pipeline,
        unification=unification,
        config_path=config_path,
        duckdb_path=_resolve(base, duckdb_path, config_path, duckdb_field),
        report_path=_resolve(base, pipeline.report.path, config_path, "report.path"),
        source_paths=source_paths,
    )


def _check_regexps(unification: UnifyConfig, engine: str, path: Path, prefix: str) -> None:
    """A valid_regexp the engine cannot evaluate with Treasure Data's meaning is refused now,
    never in the middle of a run."""
    patterns = [(f"keys[{i}].valid_regexp", k.name, k.valid_regexp) for i, k in enumerate(unification.keys)]
    patterns += [
        (f"master_tables[{m}].attributes[{a}].valid_regexp", attr.name, attr.valid_regexp)
        for m, master in enumerate(unification.master_tables)
        for a, attr in enumerate(master.attributes)
    ]
    for field, name, pattern in patterns:
        lacking = unsupported_constructs(pattern, engine) if pattern else []
        if lacking:
            raise ConfigError(
                f"{path}: {prefix}{field}: the valid_regexp of {name!r} uses {lacking[0]}, which the {engine} engine "
                f"cannot evaluate with Treasure Data's (Java's) meaning (neither RE2 nor its Java-semantics function "
                f"java_regex_matches can), and Treasure Data's can; rewrite the pattern without it "
                f"(or run on an engine with Java-style regular expressions: databricks, treasure_data)"
            )


def _check_unification_references(
    pipeline: PipelineConfig, unification: UnifyConfig, source_paths: dict[str, Path], path: Path, inline: bool
) -> None:
    prefix = "unification." if inline else ""
    try:
        check_tables(pipeline, unification, prefix)
        check_columns(pipeline, unification, source_paths, prefix)
    except ReferenceError_ as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _resolve_variables(data: Any, variables: dict[str, Any], path: Path, where: str) -> Any:
    try:
        return resolve(data, variables, path, path.read_text(encoding="utf-8"), where)
    except UnresolvedVariable as exc:
        raise ConfigError(str(exc)) from None


def _resolve(base: Path, value: str, config_path: Path, field: str) -> Path:
    try:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    except (ValueError, RuntimeError, OSError) as exc:  # e.g. an embedded NUL byte, a symlink loop
        raise ConfigError(f"{config_path}: {field}: {value!r} is not a usable path ({exc}); fix the path") from None


def _read_yaml(path: Path, what: str, hint: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist; {hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc}); save it as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}; fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def _validate(model: type, raw: Any, path: Path) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None


def format_validation_error(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        error = (err.get("ctx") or {}).get("error")
        # Cross-reference checks raise FieldError with the field's path inside the model.
        extra = error.loc if isinstance(error, FieldError) else ()
        field = _field_path((*err["loc"], *extra))
        msg = err["msg"].removeprefix("Value error, ")
        hint = _HINTS.get(err["type"])
        lines.append(f"  - {field}: {msg}" + (f" ({hint})" if hint else ""))
    return "\n".join(lines)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("local_files", "s3", "table", "sql_database", "rest_api") and out.endswith("connector"):
            continue  # the discriminator's branch name, not a field the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"
