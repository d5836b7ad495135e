"""The linter runs with the suite, so CI runs it: `ruff check` over the project passes."""

import shutil
import subprocess
import sys
from pathlib import Path

from cdp_assets.config.loader import REPO_ROOT


def test_ruff_check_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = subprocess.run(
        [ruff, "check", "cdp_assets", "cdp_assets_tests", "bench"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
