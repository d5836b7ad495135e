"""A plain (non-editable) install works outside the checkout: the example config and
dagster.yaml ship inside the package, and a run's outputs go to the current folder.

The wheel is built from a copy of the sources without build isolation and installed with
--no-deps into a new venv that sees the shared venv's packages (dagster, duckdb, ...) through a
.pth file, so nothing is downloaded. About a minute: one full run of the bundled example."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_assets.config.loader import REPO_ROOT

pytestmark = pytest.mark.pipeline  # builds the wheel and runs the bundled example with the installed CLI


def _sh(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done


def test_a_wheel_installed_outside_the_checkout_runs_the_bundled_example(tmp_path):
    src = tmp_path / "src"
    for name in ("cdp_assets", "examples"):
        shutil.copytree(REPO_ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "dagster.yaml"):
        shutil.copy(REPO_ROOT / name, src / name)
    _sh(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("cdp_assets-*.whl")

    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    (new_site,) = venv.glob("lib/python*/site-packages")
    # The shared venv's packages (not its editable cdp_assets: .pth files of a path added this
    # way are not processed), after the new venv's own site-packages.
    (new_site / "shared_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = venv / "bin" / "python"
    _sh(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path,
    )

    outside = tmp_path / "somewhere"
    outside.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME", "CDP_CONFIG", "CDP_DUCKDB_PATH")
    }
    where = _sh(
        [str(python), "-c", "import cdp_assets; print(cdp_assets.__file__)"], cwd=outside, env=env
    ).stdout.strip()
    assert where.startswith(str(new_site)), where  # the installed copy, not the checkout

    done = _sh([str(venv / "bin" / "cdp-assets"), "run"], cwd=outside, env=env)
    assert ": SUCCESS" in done.stdout and "copied the bundled example to" in done.stderr, done.stderr[-2000:]
    for path in (".cdp/report.md", ".cdp/acme.duckdb", ".cdp/dagster_home/dagster.yaml", "examples/acme/cdp.yml"):
        assert (outside / path).exists(), path
    assert f"Dagster home:    {outside / '.cdp' / 'dagster_home'} " in done.stdout
    assert (
        not list(new_site.rglob("*.duckdb")) and not (new_site / ".cdp").exists()
    )  # nothing written into site-packages
