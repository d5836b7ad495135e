"""The linter and the formatter run with the suite, so CI runs them: `ruff check` passes and
`ruff format --check` finds nothing to reformat, over the project's code."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_assets.config.loader import REPO_ROOT

CODE = ["cdp_assets", "cdp_assets_tests", "bench"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_passes(command):
    # The venv's ruff first: it is the pinned version (another ruff on PATH may format otherwise).
    pinned = Path(sys.executable).parent / "ruff"
    ruff = str(pinned) if pinned.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[test]'"
    done = subprocess.run(
        [ruff, *command, *CODE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
