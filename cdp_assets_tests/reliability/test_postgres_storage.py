"""The production dagster.yaml (examples/dagster.postgres.yaml) against a real PostgreSQL
server that this test starts on loopback (Debian's postgresql package; `.ci/run` installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from cdp_assets.config import load_config
from cdp_assets.config.loader import REPO_ROOT
from cdp_assets_tests.conftest import check_results, run_pipeline, write_project

pytestmark = pytest.mark.postgres

PG_BIN = (
    next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if Path("/usr/lib/postgresql").is_dir()
    else None
)


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run its programs as the postgres user then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    if PG_BIN is None or not (PG_BIN / "postgres").exists():
        # A missing server is a failure, never a skip: CI installs it (.ci/run), and the
        # `postgres` marker is how a developer leaves these tests out on purpose.
        pytest.fail(
            "PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it). "
            "To leave these tests out, run pytest with -m 'not postgres'."
        )
    data = Path(tempfile.mkdtemp(prefix="cdp_pg_"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data / "db"), "-U", "dagster", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-l",
                str(data / "log"),
                "-w",
                "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        createdb = str(PG_BIN / "createdb") if (PG_BIN / "createdb").exists() else "createdb"
        subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"], check=True, capture_output=True
        )
        yield {"DAGSTER_PG_URL": f"postgresql+psycopg2://dagster@127.0.0.1:{port}/dagster", "port": port}
    finally:
        # pg_ctl stop reads the server's PID from its data folder and stops exactly that process.
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_runs_and_events_are_stored_in_postgresql(postgres, tmp_path, monkeypatch):
    import psycopg2
    from dagster import DagsterInstance

    monkeypatch.setenv("DAGSTER_PG_URL", postgres["DAGSTER_PG_URL"])
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "examples" / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    loaded = load_config(write_project(tmp_path / "p", records=60))
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_pipeline(loaded, instance)
        assert result.success and all(check_results(result).values())
        assert instance.get_run_by_id(result.run_id).is_success
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    con = psycopg2.connect(host="127.0.0.1", port=postgres["port"], user="dagster", dbname="dagster")
    try:
        cur = con.cursor()
        cur.execute("SELECT COUNT(*) FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT COUNT(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (result.run_id,),
        )
        assert cur.fetchone()[0] >= 20
    finally:
        con.close()
