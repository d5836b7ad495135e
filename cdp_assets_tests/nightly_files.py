"""The benchmark's nightly files for tests: ``bench/bench_nightly.write_nightly_files`` (one new
incremental file per object, with new and updated rows). bench/ is a folder of scripts, not a
package, so the script is loaded from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def write_nightly_files(data: Path, new_share: float, updated_share: float) -> dict:
    bench = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(bench))  # bench_nightly imports its sibling doc_sections
    try:
        spec = importlib.util.spec_from_file_location("bench_nightly", bench / "bench_nightly.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module.write_nightly_files(data, new_share, updated_share)
