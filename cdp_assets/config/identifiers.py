"""The one rule for names that reach SQL: client, source, object, table, column and key names.

Identifiers are validated here (at config load) and quoted by the dialect when SQL is
rendered; values never become SQL text.
"""

from __future__ import annotations

import re

# Letters, digits and underscores, not starting with a digit: portable across DuckDB,
# Spark SQL, Trino and Hive without surprises from case folding or reserved characters.
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LOWER_IDENTIFIER_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _check(value: str, what: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{what} {value!r} is not valid: {rule}")
    return value


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` when it is a safe SQL identifier, else raise ValueError saying how to fix it."""
    return _check(
        value,
        what,
        IDENTIFIER_PATTERN,
        "use letters, digits and underscores only, starting with a letter or underscore, at most 128 characters",
    )


def check_lower_identifier(value: str, what: str) -> str:
    """Names used to build schema names must be lowercase so every engine spells them the same."""
    return _check(
        value,
        what,
        LOWER_IDENTIFIER_PATTERN,
        "use lowercase letters, digits and underscores, starting "
        "with a letter, at most 63 characters (for example 'acme')",
    )


# A Unity Catalog Volume folder: /Volumes/<catalog>/<schema>/<volume>[/<folder>...]. Its parts are
# identifiers, so the path is safe to appear as a string literal in COPY INTO.
VOLUME_PATH_PATTERN = re.compile(r"^/Volumes(/[A-Za-z_][A-Za-z0-9_]{0,127}){3}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})*$")


def check_volume_path(value: str, what: str) -> str:
    """Return ``value`` when it is a Unity Catalog Volume folder built from safe names, else raise."""
    return _check(
        value,
        what,
        VOLUME_PATH_PATTERN,
        "use /Volumes/<catalog>/<schema>/<volume> with an optional sub-folder, names of letters, digits and "
        "underscores (for example '/Volumes/main/cdp/staging')",
    )
