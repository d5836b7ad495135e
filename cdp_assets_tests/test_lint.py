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
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = subprocess.run(
        [ruff, *command, *CODE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
