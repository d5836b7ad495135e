"""docs/benchmarks.md holds one section per benchmark; each benchmark rewrites only its own."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- bench:name -->`` and ``<!-- /bench:name -->`` (appending
    the section when the file does not have it yet)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    current = doc.read_text() if doc.exists() else ""
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        doc.write_text(before + block + after)
    else:
        doc.write_text((current.rstrip() + "\n\n" if current.strip() else "") + block + "\n")
