"""Shared fixtures: small generated projects on a real DuckDB file, real in-process runs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from cdp_assets.config import LoadedConfig, load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets.definitions import PIPELINE_JOB, build_definitions
from cdp_assets.engines.duckdb import DuckDBWarehouse
from cdp_assets.sample.generator import generate_sample

EXAMPLE = REPO_ROOT / "examples" / "acme"

# Tests that use these fixtures start a slow real part; they get its marker, so that
# `pytest -m "not spark and not browser and not postgres and not kills and not pipeline and not slow"` is the fast
# suite. (`pipeline` is marked by hand on each test that runs the whole job itself, and here on the
# tests that read a whole-pipeline run made for them: the session's shared `sample_run`, and
# test_checks_native.py's module run of the same name, which counts its statements.)
# (`spark`: the module fixture of unify/test_engine_semantics.py; a test that asks for a fixture
# only at run time, with request.getfixturevalue, is marked by hand.)
MARKER_OF_FIXTURE = {
    "spark_dir": "spark",
    "spark": "spark",
    "spark_wh": "spark",
    "postgres": "postgres",
    "sample_run": "pipeline",
}


# The README's command runs the suite on two workers with `--dist loadgroup` (pyproject's addopts):
# xdist hands out units of work in collection order, one unit to whichever worker runs low (with
# `--no-loadscope-reorder`, also in addopts: by default xdist 3.6+ sorts the units by their number
# of tests, most first, which put every group of many short tests before the long units below).
# - A unit is one test, or every test of a module sharing one of the module's module-scoped
#   fixtures (a whole-pipeline run, a Spark session, a browser), or every test sharing a session
#   fixture of ours (`sample_run`): split over two workers such a fixture was built twice, once in
#   each (the Spark and DuckDB pipelines of test_cross_engine_pipeline.py ran twice so).
# - Units are ordered longest first, so that the two workers start with the runs of minutes and end
#   together on the short tests, instead of one worker starting a run of minutes when the other
#   has nothing left: first the tests measured to take minutes (LONGEST_FIRST, in that order; a
#   renamed test only falls back to its markers), then by their slow parts' markers.
# Only the order and the grouping change: every test runs, on a worker of its own process.
# Measured in the README command's run on a clean clone of main (1,594 tests, `--durations=150`,
# 1,159 s wall): a unit's seconds; an entry ending in `::` is a module's group (its setup and its
# tests). The two Spark sequences of test_incremental_engines.py are one since 2026-12-05 13:00 UTC
# (MIXED_LOADS: four runs where they had seven): its seconds from an A/B in one process without -n
# (12:49-12:55 UTC, load 1 to 2.4, after a 10 s warm-up test), the two it replaced in brackets.
# Likewise LOADS' three replays on Spark (full builds, kept measures, no scratch table) are one since
# 13:15 UTC (A/B 13:11-13:13 UTC, load 0.8 to 1.3).
# The kill harness runs two kills at a time (two processes): listed so that it starts among the
# long units, not after them.
LONGEST_FIRST = (
    "engines/test_cross_engine_td_examples.py::",  # 209 s: three unifications on Spark
    "engines/test_cross_engine_pipeline.py::",  # 160 s: full and nightly runs on Spark and DuckDB
    "engines/test_incremental_engines.py::test_on_local_spark_incremental_staged_enriched",  # 156 s (115 + 83 s)
    "reliability/test_kills.py::",  # 131 s
    "engines/test_spark_unification.py::",  # 94 s
    "reliability/test_secrets.py::test_no_token_appears_in_any_output_of_a_run[databricks]",  # 75 s
    "engines/test_incremental_engines.py::test_on_local_spark_incremental_runs_equal_a_full_refresh",  # 37 s (19+30+8)
    "unify/test_engine_semantics.py::",  # 34 s
    "test_validate.py::test_on_local_spark_explain_goes_to_spark",  # 22 s, on the shared session
)
WEIGHT_OF_MARKER = {"spark": 10, "kills": 10, "browser": 5, "slow": 5, "pipeline": 3, "postgres": 3}


def _unit_key(unit: list) -> tuple[int, int]:
    ids = [item.nodeid for item in unit]
    listed = [n for n, start in enumerate(LONGEST_FIRST) if any(i.startswith(f"cdp_assets_tests/{start}") for i in ids)]
    weight = sum(max((w for m, w in WEIGHT_OF_MARKER.items() if i.get_closest_marker(m)), default=0) for i in unit)
    return (min(listed, default=len(LONGEST_FIRST)), -weight)


def _shared_fixture_group(item) -> str | None:
    """The xdist group of a test sharing a fixture of ours wider than a test, or None."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module_scoped = False
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs or not defs[-1].baseid:  # a plugin's fixture (tmp_path_factory): not ours
            continue
        if defs[-1].scope == "session":
            return f"session.{name}"
        module_scoped = module_scoped or defs[-1].scope in ("module", "package", "class")
    return f"module.{item.module.__name__}" if module_scoped and item.module else None


def _join_group(item, group: str) -> None:
    """What xdist's `--dist loadgroup` does with an `xdist_group` mark: the group's name after an
    `@` at the end of the test's id, which its scheduler reads. xdist 3.8 sets `item._nodeid`, which
    pytest 9 no longer reads (the id is `item._id`): there its marks group nothing, so it is done here."""
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    units: dict[str, list] = {}
    for item in items:
        group = _shared_fixture_group(item)
        if group is not None and getattr(config.option, "loadgroup", False):  # set on xdist's workers
            _join_group(item, group)
        units.setdefault(group or item.nodeid, []).append(item)
    # Stable: same-weight units keep collection order, and each unit's tests stay together in
    # theirs (a module's fixture is set up once per worker only if its tests run one after another).
    ordered = sorted(units.values(), key=_unit_key)
    items[:] = [item for unit in ordered for item in unit]


@pytest.fixture(autouse=True)
def _restore_environment():
    """The CLI sets DAGSTER_HOME for the process; no test may leak such a change into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def example_config_dict() -> dict:
    """The bundled example with the unify.yml inlined."""
    cfg = yaml.safe_load((EXAMPLE / "cdp.yml").read_text())
    cfg.pop("unification_file")
    cfg["unification"] = yaml.safe_load((EXAMPLE / "unify.yml").read_text())
    return cfg


def write_project(
    root: Path,
    records: int = 400,
    seed: int = 3,
    mutate: Callable[[dict], None] | None = None,
    generate: bool = True,
) -> Path:
    """Generated data + the example config pointing at it, under ``root``; returns the config path."""
    root.mkdir(parents=True, exist_ok=True)
    if generate:
        generate_sample(root / "data", records, seed=seed)
    cfg = example_config_dict()
    cfg["engine"]["duckdb"]["path"] = "cdp.duckdb"
    cfg["report"]["path"] = "report.md"
    if mutate is not None:
        mutate(cfg)
    path = root / "cdp.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_pipeline(loaded: LoadedConfig, instance: DagsterInstance | None = None):
    job = build_definitions(loaded).resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(instance=instance or DagsterInstance.ephemeral(), raise_on_error=False)


def check_results(result) -> dict[str, bool]:
    evals = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in evals}


def warehouse_for(loaded: LoadedConfig) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(loaded.duckdb_path))


@pytest.fixture
def project(tmp_path: Path) -> LoadedConfig:
    return load_config(write_project(tmp_path))


@pytest.fixture
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


@dataclass(frozen=True)
class SampleRun:
    """One successful whole-pipeline run of the default sample project (``write_project``'s 400
    records), shared by every test that only reads what such a run leaves: its config, warehouse,
    report and Dagster result. Read-only: a test that writes must build its own project."""

    loaded: LoadedConfig
    instance: DagsterInstance
    result: object  # dagster's ExecuteInProcessResult

    @property
    def config_path(self) -> Path:
        return self.loaded.config_path

    @property
    def duckdb_path(self) -> Path:
        return self.loaded.duckdb_path


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> SampleRun:
    """The whole pipeline run once per session (about 30 assets and 80 checks, the slowest thing
    the read-only tests need), instead of once per test."""
    loaded = load_config(write_project(tmp_path_factory.mktemp("sample_run")))
    instance = DagsterInstance.ephemeral()
    result = run_pipeline(loaded, instance)
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, f"the shared sample run (conftest.sample_run) failed at {failed}"
    yield SampleRun(loaded=loaded, instance=instance, result=result)
    instance.dispose()


def local_spark_warehouse(folder: str | Path):
    """The Databricks engine on a local Spark session (parquet tables, no Unity Catalog), its
    tables under ``folder``: the way every Spark test reaches the Databricks dialect."""
    from cdp_assets.engines.databricks import DatabricksWarehouse  # imported late: pulls in pyspark

    return DatabricksWarehouse(
        local_spark_dir=str(Path(folder) / "warehouse"),
        sql_dialect="spark",
        table_format="parquet",
        optimize_tables=False,
        use_catalog=False,
        catalog=None,
    )


# One Spark session per test process (an xdist worker, or the whole run without -n), instead of one
# per Spark module or test: about 13 JVM starts (6-12 s each on an idle 2-core machine) became one
# per worker, and the later users run on a JVM whose classes are loaded and code compiled. The
# session's warehouse dir is the process's own; each user gets the session empty
# (reset_spark_session drops every database, table and view, uncaches, RESETs the settings).
_WORKER_SPARK_DIR: str | None = None


def worker_spark_dir() -> str:
    """The warehouse dir of the process's shared Spark session (``shared_spark_session``)."""
    global _WORKER_SPARK_DIR
    if _WORKER_SPARK_DIR is None:
        _WORKER_SPARK_DIR = tempfile.mkdtemp(prefix="cdp-spark-worker-")
    return str(Path(_WORKER_SPARK_DIR) / "warehouse")


@contextmanager
def shared_spark_session() -> Iterator[None]:
    """The process's Spark session for a module's or a test's Spark work: started once per test
    process with the process's warehouse dir (the engines' own ``local_spark_dir`` is then
    ignored: one session per JVM), and emptied, not stopped, when the work is done. A test that
    inspects the files of its tables reads them under ``worker_spark_dir()``, which holds only
    its own while it has the session (``test_validate.py``)."""
    from cdp_assets.engines.spark import get_spark_session, reset_spark_session

    get_spark_session(worker_spark_dir())
    reset_spark_session()  # whatever a test left that did not come through here
    try:
        yield
    finally:
        reset_spark_session()


def pytest_sessionfinish(session, exitstatus):
    """The process's Spark session stopped and its warehouse dir removed at the end of its tests (a
    hook, not a session fixture: an autouse session fixture would put every test in its group)."""
    import shutil
    import sys

    spark = sys.modules.get("cdp_assets.engines.spark")
    if spark is not None:
        spark.stop_spark_session()
    if _WORKER_SPARK_DIR is not None:
        shutil.rmtree(_WORKER_SPARK_DIR, ignore_errors=True)


@contextmanager
def local_spark_session() -> Iterator:
    """``local_spark_warehouse`` inside one session of the engine, on the process's shared Spark
    session (``shared_spark_session``), emptied at the end."""
    with tempfile.TemporaryDirectory() as d, shared_spark_session():
        wh = local_spark_warehouse(d)
        with wh.session():
            yield wh
