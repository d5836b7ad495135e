"""Secrets never leak: with tokens in the environment, a whole run leaves zero copies of them in
the event log and compute logs (DAGSTER_HOME), stdout and stderr, metadata, the report files
and the rendered SQL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_assets.config.loader import REPO_ROOT
from cdp_assets_tests.conftest import write_project

TOKENS = {
    "TD_API_KEY": "1/" + secrets.token_hex(20),
    "DATABRICKS_TOKEN": "dapi" + secrets.token_hex(16),
    "DATABRICKS_CLIENT_SECRET": "dose" + secrets.token_hex(16),
    "CDP_SLACK_TOKEN": "xoxb-" + secrets.token_hex(16),
    "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
}


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdp_assets.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _occurrences(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n[:6]!r}..." for n in needles if n in data]
    return found


@pytest.mark.parametrize("engine", ["duckdb"])
def test_no_token_appears_in_any_output_of_a_run(engine, tmp_path):
    config = write_project(tmp_path / "project", records=80)
    home = tmp_path / "dagster_home"
    env = {**os.environ, **TOKENS, "DAGSTER_HOME": str(home), "CDP_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook/" + TOKENS["CDP_SLACK_TOKEN"]}
    run = _cli("run", "--config", str(config), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    rendered = []
    for dialect in ("duckdb", "databricks", "spark", "trino", "hive"):
        out = tmp_path / "sql" / dialect
        result = _cli("render-sql", "--config", str(config), "--dialect", dialect, "--out", str(out), env=env)
        assert result.returncode == 0, result.stderr
        rendered.append(result.stdout + result.stderr)
    needles = [t.encode() for t in TOKENS.values()]
    text = run.stdout + run.stderr + "".join(rendered)
    assert "checks passed" in run.stdout and list(home.rglob("*.db")), "the run must have written its event log"
    leaks = [f"stdout/stderr: {n[:6]!r}" for n in needles if n.decode() in text]
    # event log and run storage (SQLite), compute logs, the report (Markdown and PNG), the rendered SQL, the project's files
    leaks += _occurrences(home, needles) + _occurrences(tmp_path / "sql", needles) + _occurrences(tmp_path / "project", needles)
    assert leaks == [], leaks
