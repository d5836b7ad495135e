"""Local files: one folder per object; files directly in it are incremental loads, files in
``historical/`` the historical load. CSV, Parquet and JSON lines, chosen by extension."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cdp_assets.connectors.readers import FORMATS


def object_files(folder: Path, obj: str, historical: bool, fmt: str = "auto") -> list[Path]:
    """The data files of an object, sorted by name so loads are deterministic."""
    base = folder / obj / "historical" if historical else folder / obj
    if not base.is_dir():
        return []
    files = [p for p in base.iterdir() if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")]
    if fmt != "auto":
        files = [p for p in files if FORMATS[p.suffix.lower()] == fmt]
    return sorted(files)


def fingerprint(files: list[Path]) -> str:
    """Names, sizes and modification times: changes when any file is added, replaced or touched."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def file_version(path: Path) -> str:
    """What the per-file bookkeeping records of a loaded file: the SHA-256 of its bytes.

    The content, not the name, size and modification time: a file copied back, restored from a
    backup or downloaded again from S3 gets a new modification time but is the same data (not
    loaded twice), and a writer that rewrites a file in place within the clock's resolution, at
    the same size, still changes it (loaded again). The file is read to be loaded anyway."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
