"""Seeded, realistic, messy multi-source sample data for the CDP pipeline.

Re-exports :mod:`cdp_assets.sample.generator` lazily, so that
``python -m cdp_assets.sample.generator`` does not import the module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cdp_assets.sample.generator import (
        EXTRA_COLUMNS,
        IDENTITY_COLUMNS,
        INCREMENTAL_DATES,
        JUNK_EMAILS,
        JUNK_PHONES,
        OBJECT_COLUMNS,
        SampleSummary,
        generate_sample,
        main,
    )

__all__ = [
    "EXTRA_COLUMNS",
    "IDENTITY_COLUMNS",
    "INCREMENTAL_DATES",
    "JUNK_EMAILS",
    "JUNK_PHONES",
    "OBJECT_COLUMNS",
    "SampleSummary",
    "generate_sample",
    "main",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cdp_assets.sample import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
