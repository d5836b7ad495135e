"""Local files: one folder per object; files directly in it are incremental loads, files in
``historical/`` the historical load. CSV, Parquet and JSON lines, chosen by extension."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import NamedTuple

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


# A file whose status changed this recently is hashed at its next load whatever its status then:
# on a file system whose clock ticks coarsely (1-2 s on some network and FAT file systems), a
# write in the same tick as the status taken before its hash would keep that status.
RACY_SECONDS = 2.0


class FileRecord(NamedTuple):
    """What the per-file bookkeeping holds of a file's newest loaded version: its content hash
    (``file_version``) and its status when that hash was taken (``file_status``; None: not kept,
    the file is hashed to tell)."""

    version: str
    status: str | None


class FileVersion(NamedTuple):
    """A file's version as a load reads it: the content hash, the status taken before it
    (``file_status``) and the size in that status."""

    version: str
    status: str | None
    size: int


def file_status(stat) -> str | None:
    """Size, modification and change times (nanoseconds) and inode: what changes when a file is
    written, replaced, renamed into place or has its times set (the change time cannot be set
    back); None when it changed within the last ``RACY_SECONDS``."""
    if time.time() - stat.st_ctime < RACY_SECONDS:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"


def read_version(path: Path, recorded: FileRecord | None = None) -> FileVersion:
    """``path``'s version: ``recorded``'s hash when the file's status is still the one recorded
    with it (no byte read, as git and rsync tell an unchanged file), else ``file_version``. The
    status is taken before the hash: a file still being written meanwhile is recorded with the
    older status, so the next load hashes it again."""
    stat = path.stat()
    status = file_status(stat)
    if recorded is not None and status is not None and recorded.status == status:
        return FileVersion(recorded.version, status, stat.st_size)
    return FileVersion(file_version(path), status, stat.st_size)
