#!/usr/bin/env python
"""Benchmark of identity unification: cdp_assets' hook/compress/contract loop on DuckDB
against an in-memory scipy baseline and plain min-label propagation in SQL.

Usage (from the repository root)::

    .venv/bin/python bench/bench_unification.py --quick
    .venv/bin/python bench/bench_unification.py --sizes 100000 1000000 5000000

The benchmark itself is the package ``bench/unification/`` (its ``__init__`` says what each
module does); this script is its command line, and the program its child processes run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is a folder of scripts, not a package
from unification.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
