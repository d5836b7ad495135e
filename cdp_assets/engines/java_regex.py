"""DuckDB's ``java_regex_matches(value, pattern)``: a valid_regexp evaluated with Java's meaning.

DuckDB's own regular expressions are RE2, which lacks lookaround, backreferences, atomic groups,
possessive quantifiers, Java's word boundary and more (cdp_assets/sql/regex.py). A pattern using
one is evaluated by this function instead: Python's ``regex`` module on the pattern's Python form,
which means what Java 17 means (Treasure Data's answer). Patterns RE2 can evaluate never come here
(the SQL chooses per pattern, cdp_assets/sql/dialects.py), so the slow path is paid only by them.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from duckdb.sqltypes import BOOLEAN, VARCHAR

from cdp_assets.sql.dialects import JAVA_REGEX_FUNCTION
from cdp_assets.sql.regex import compile_java


def java_regex_matches(values: pa.Array, patterns: pa.Array) -> pa.Array:
    """Whether each value contains a match of its pattern (Java's ``Matcher.find``); NULL in, NULL out.
    A pattern is compiled once per process (compile_java's cache), whatever the number of rows."""
    out = []
    for value, pattern in zip(values.to_pylist(), patterns.to_pylist()):
        if value is None or pattern is None:
            out.append(None)
        else:
            out.append(compile_java(pattern).search(value) is not None)
    return pa.array(out, type=pa.bool_())


def register_java_regex(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``java_regex_matches`` callable on ``con`` (and on its cursors)."""
    con.create_function(
        JAVA_REGEX_FUNCTION,
        java_regex_matches,
        [VARCHAR, VARCHAR],
        BOOLEAN,
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
