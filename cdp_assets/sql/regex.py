"""``valid_regexp`` means what it means on Treasure Data (a Java-style regex engine), on every engine.

Treasure Data evaluates ``valid_regexp`` with a Java-style engine, as Spark does (``RLIKE``).
DuckDB uses RE2, which differs in two ways:

* it lacks some constructs (lookaround, backreferences, atomic groups, possessive quantifiers,
  ``\\Z``, class intersection, named groups written ``(?<name>...)``): a pattern using one is
  refused when the config loads, naming the key, the construct and the engine;
* some constructs mean something else: ``$`` also matches before a final line terminator in
  Java, ``.`` excludes every line terminator (not only ``\\n``) and ``\\s`` includes the vertical
  tab. These are rewritten into what Java means, written so that RE2 and Java read it alike; the
  rewritten pattern is what every engine evaluates (so the rules tables are the same on every
  engine, and the Treasure Data fake, which runs on DuckDB, answers as Treasure Data does).

The scanner below reads the pattern once, outside and inside character classes, and never pastes
a value into SQL: patterns reach the warehouse as rows of a rules table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Engines whose regular expressions are RE2 (the rest here are Java-style, as Treasure Data).
RE2_ENGINES = ("duckdb",)

_LINE_END = r"(?:\r\n|[\n\r\x{85}\x{2028}\x{2029}])?\z"
_NOT_LINE_TERMINATOR = r"[^\n\r\x{85}\x{2028}\x{2029}]"
_SPACE_CHARS = r"\t\n\x0B\f\r "


@dataclass(frozen=True)
class Construct:
    name: str
    position: int


def _scan(pattern: str) -> tuple[list[Construct], str]:
    """(constructs RE2 lacks, the pattern rewritten into RE2 with Java's meaning)."""
    flags = "".join(re.findall(r"\(\?([a-zA-Z]+)[):]", pattern))
    dotall, multiline = "s" in flags, "m" in flags  # then '.' and '$' mean the same on both
    lacking: list[Construct] = []
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt.isdigit() and nxt != "0" and not in_class:
                lacking.append(Construct(f"backreference \\{nxt}", i))
            elif nxt == "Z":
                lacking.append(Construct("\\Z (end before a final line terminator)", i))
            elif nxt == "G":
                lacking.append(Construct("\\G (end of the previous match)", i))
            if nxt in "pP" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.find("}", i)
                end = n - 1 if end < 0 else end
                out.append(pattern[i : end + 1])
                i = end + 1
                continue
            if nxt == "Q":  # quoted literal up to \E: copied as is (RE2 has \Q...\E too)
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end + 2
                out.append(pattern[i:end])
                i = end
                continue
            if nxt == "s":
                out.append(_SPACE_CHARS if in_class else f"[{_SPACE_CHARS}]")
            elif nxt == "S" and not in_class:
                out.append(f"[^{_SPACE_CHARS}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "[":
                lacking.append(Construct("nested character class (class union or intersection)", i))
            elif c == "&" and pattern.startswith("&&", i):
                lacking.append(Construct("character class intersection &&", i))
            elif c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            # A ']' first in the class (after an optional '^') is a literal.
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("]")
                i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            for prefix, name in (
                ("=", "lookahead (?=...)"),
                ("!", "negative lookahead (?!...)"),
                ("<=", "lookbehind (?<=...)"),
                ("<!", "negative lookbehind (?<!...)"),
                (">", "atomic group (?>...)"),
            ):
                if rest.startswith(prefix):
                    lacking.append(Construct(name, i))
                    break
            else:
                if rest[:1] == "<" and rest[1:2].isalpha():
                    lacking.append(Construct("named group (?<name>...)", i))
        if c in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            lacking.append(Construct("possessive quantifier (x*+, x++, x?+)", i))
        if c == "$" and not multiline:
            out.append(_LINE_END)
        elif c == "." and not dotall:
            out.append(_NOT_LINE_TERMINATOR)
        else:
            out.append(c)
        i += 1
    return lacking, "".join(out)


def unsupported_constructs(pattern: str, engine: str) -> list[str]:
    """Constructs of ``pattern`` that ``engine`` (duckdb | databricks | treasure_data) cannot evaluate."""
    if engine not in RE2_ENGINES:
        return []
    return [c.name for c in _scan(pattern)[0]]


def pattern_for(pattern: str | None) -> str | None:
    """The pattern as engines evaluate it: Treasure Data's (Java's) meaning, in a form RE2 and
    Java read alike."""
    if pattern is None:
        return None
    return _scan(pattern)[1]


def check_syntax(pattern: str) -> None:
    """Raise ValueError when ``pattern`` is not a regular expression. Java's own escapes
    (``\\p{Alpha}``, ``\\Q...\\E``) are accepted; Python's ``re`` checks the rest."""
    masked = re.sub(r"\\[pP]\{[^}]*\}", "x", pattern)
    masked = re.sub(r"\\Q.*?(\\E|$)", "x", masked, flags=re.S)
    masked = re.sub(r"([*+?}])\+", r"\1", masked)  # possessive quantifiers: Java syntax
    masked = masked.replace("\\Z", "\\z").replace("\\z", "$")
    re.compile(masked)
