"""Secrets never leak: with tokens in the environment, a whole run leaves zero copies of them in
the event log and compute logs (DAGSTER_HOME), stdout and stderr, metadata, the report files
and the rendered SQL. The run is made on each engine that runs here: DuckDB, Treasure Data
(against the fake of its HTTP API, which gets the key on every request) and Databricks on the
local Spark session."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_assets.config.loader import REPO_ROOT
from cdp_assets_tests.conftest import write_project
from cdp_assets_tests.fakes.td_api import FakeTreasureData

TOKENS = {
    "TD_API_KEY": "1/" + secrets.token_hex(20),
    "DATABRICKS_TOKEN": "dapi" + secrets.token_hex(16),
    "DATABRICKS_CLIENT_SECRET": "dose" + secrets.token_hex(16),
    "CDP_SLACK_TOKEN": "xoxb-" + secrets.token_hex(16),
    "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
}


# Each engine's run renders the SQL of the dialects that engine runs.
RENDERED_DIALECTS = {"duckdb": ("duckdb",), "treasure_data": ("trino", "hive"), "databricks": ("databricks", "spark")}


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdp_assets.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _occurrences(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n[:6]!r}..." for n in needles if n in data]
    return found


@pytest.fixture
def engine_settings(request, tmp_path):
    """The config's engine section, with the engine's server running where it needs one."""
    if request.param == "treasure_data":
        fake = FakeTreasureData(TOKENS["TD_API_KEY"])
        url = fake.start()
        yield {"kind": "treasure_data", "treasure_data": {"endpoint": url, "poll_seconds": 0.01}}, fake
        fake.stop()
    elif request.param == "databricks":
        yield (
            {
                "kind": "databricks",
                "databricks": {"connection": "local_spark", "local_spark_dir": str(tmp_path / "spark")},
            },
            None,
        )
    else:
        yield {"kind": "duckdb", "duckdb": {"path": "cdp.duckdb"}}, None


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "engine_settings", ["duckdb", "treasure_data", pytest.param("databricks", marks=pytest.mark.spark)], indirect=True
)
def test_no_token_appears_in_any_output_of_a_run(engine_settings, tmp_path):
    settings, td = engine_settings
    config = write_project(tmp_path / "project", records=60, mutate=lambda c: c.update(engine=settings))
    home = tmp_path / "dagster_home"
    env = {
        **os.environ,
        **TOKENS,
        "DAGSTER_HOME": str(home),
        "CDP_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook/" + TOKENS["CDP_SLACK_TOKEN"],
    }
    run = _cli("run", "--config", str(config), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    if td is not None:
        # the key did reach TD (every request carried it), and no job's SQL holds it
        assert td.jobs and all(h.get("authorization") == "TD1 " + TOKENS["TD_API_KEY"] for h in td.seen_headers)
        assert not [j.job_id for j in td.jobs.values() if TOKENS["TD_API_KEY"] in j.query]
    rendered = []
    for dialect in RENDERED_DIALECTS[settings["kind"]]:
        out = tmp_path / "sql" / dialect
        result = _cli("render-sql", "--config", str(config), "--dialect", dialect, "--out", str(out), env=env)
        assert result.returncode == 0, result.stderr
        rendered.append(result.stdout + result.stderr)
    needles = [t.encode() for t in TOKENS.values()]
    text = run.stdout + run.stderr + "".join(rendered)
    assert "checks passed" in run.stdout and list(home.rglob("*.db")), "the run must have written its event log"
    leaks = [f"stdout/stderr: {n[:6]!r}" for n in needles if n.decode() in text]
    # event log and run storage (SQLite), compute logs, the report (Markdown and PNG), the rendered SQL,
    # the project's files
    leaks += (
        _occurrences(home, needles)
        + _occurrences(tmp_path / "sql", needles)
        + _occurrences(tmp_path / "project", needles)
    )
    assert leaks == [], leaks


@pytest.mark.pipeline
def test_a_rejected_treasure_data_key_is_named_by_its_variable_and_never_shown(tmp_path):
    """The error path: TD refuses the key; the failure says which variable to fix, and no
    output of the failed run holds the key."""
    fake = FakeTreasureData("1/" + secrets.token_hex(20))  # the account's real key: not the one set
    url = fake.start()
    try:
        config = write_project(
            tmp_path / "project",
            records=20,
            mutate=lambda c: c.update(engine={"kind": "treasure_data", "treasure_data": {"endpoint": url}}),
        )
        home = tmp_path / "dagster_home"
        run = _cli("run", "--config", str(config), env={**os.environ, **TOKENS, "DAGSTER_HOME": str(home)})
    finally:
        fake.stop()
    assert run.returncode != 0 and "$TD_API_KEY" in run.stdout + run.stderr, run.stderr[-3000:]
    assert {s for _, _, s in fake.requests} == {401}
    needles = [t.encode() for t in TOKENS.values()]
    leaks = [f"stdout/stderr: {n[:6]!r}" for n in needles if n.decode() in run.stdout + run.stderr]
    leaks += _occurrences(home, needles) + _occurrences(tmp_path / "project", needles)
    assert leaks == [], leaks
