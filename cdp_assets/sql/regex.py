"""``valid_regexp`` means what it means on Treasure Data (a Java-style regex engine), on every engine.

Treasure Data evaluates ``valid_regexp`` with a Java-style engine, as Spark does (``RLIKE``).
DuckDB uses RE2, which differs in three ways:

* it lacks some constructs (lookaround, backreferences, atomic groups, possessive quantifiers,
  ``\\Z``, ``\\G``, class intersection and nesting, Java's word boundary ``\\b`` (Unicode letters
  and digits count as word characters in Java, only ASCII ones in RE2), the inline modes
  ``(?m)``, ``(?d)``, ``(?x)``, ``(?U)`` and ``(?iu)``, property classes RE2 does not name): a
  pattern using one is evaluated on DuckDB by ``java_regex_matches`` (Python's ``regex`` module
  on the pattern's *Python form*, :func:`python_form`, which means what Java 17 means); what that
  form cannot express (class nesting, ``(?d)``, ``(?x)``, ``(?U)``, ``(?u)``, ...) is refused
  when the config loads, naming the key, the construct and the engine;
* some constructs mean something else: ``$`` also matches before a final line terminator in
  Java, ``.`` excludes every line terminator (not only ``\\n``), ``\\s`` includes the vertical
  tab, ``\\v`` is every vertical space, and ``(?i)`` folds ASCII letters only (RE2 folds Unicode:
  ``k`` matches the Kelvin sign). These are rewritten into what Java means;
* some Java spellings RE2 does not read: ``\\p{Alpha}`` and the other POSIX classes,
  ``\\p{IsLu}``, ``\\uFFFF``, ``\\0oo``, ``\\e``, ``\\cX``, ``\\h``, ``\\R``, ``(?<name>...)``.
  These are rewritten too.

The rewritten pattern is written so that RE2 and Java read it alike, and it is what every engine
evaluates (so the rules tables are the same on every engine, and the Treasure Data fake, which
runs on DuckDB, answers as Treasure Data does). A pattern with a construct RE2 lacks is kept as
written and flagged (:func:`re2_lacks`): Java-style engines evaluate it as written, DuckDB
through ``java_regex_matches`` (cdp_assets/engines/java_regex.py).

The scanner below reads the pattern once, outside and inside character classes, and never pastes
a value into SQL: patterns reach the warehouse as rows of a rules table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import regex

# Engines whose regular expressions are RE2 (the rest here are Java-style, as Treasure Data).
RE2_ENGINES = ("duckdb",)

_WORD_NOTE = "Java counts Unicode letters and digits as word characters, RE2 ASCII only"
_LINE_TERMINATORS = r"\n\r\x{85}\x{2028}\x{2029}"
_LINE_END = rf"(?:\r\n|[{_LINE_TERMINATORS}])?\z"
_NOT_LINE_TERMINATOR = rf"[^{_LINE_TERMINATORS}]"
_ANY = "(?s:.)"
_SPACE_CHARS = r"\t\n\x0B\f\r "
_VERTICAL_CHARS = r"\n\x0B\f\r\x{85}\x{2028}\x{2029}"
_HORIZONTAL_CHARS = r" \t\x{A0}\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}"
_LINEBREAK = rf"(?:\r\n|[{_VERTICAL_CHARS}])"
# Java's POSIX classes (US-ASCII only), as class contents both engines read alike.
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": r"\x00-\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": r"!-/:-@\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": r" \t",
    "Cntrl": r"\x00-\x1F\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": _SPACE_CHARS,
}
# Unicode general categories: both engines name them alike (Java also as IsLu or gc=Lu).
_CATEGORIES = {
    "L",
    "Lu",
    "Ll",
    "Lt",
    "Lm",
    "Lo",
    "M",
    "Mn",
    "Mc",
    "Me",
    "N",
    "Nd",
    "Nl",
    "No",
    "P",
    "Pc",
    "Pd",
    "Ps",
    "Pe",
    "Pi",
    "Pf",
    "Po",
    "S",
    "Sm",
    "Sc",
    "Sk",
    "So",
    "Z",
    "Zs",
    "Zl",
    "Zp",
    "C",
    "Cc",
    "Cf",
    "Co",
    "Cs",
}
# Java 17's word characters for \b (Pattern.Bound): Character.isLetterOrDigit or '_', and a
# non-spacing mark that follows a letter or digit (through other marks). Python form only.
_WORD_BEFORE = r"(?<=[\p{L}\p{Nd}_]|[\p{L}\p{Nd}]\p{Mn}+)"
_NO_WORD_BEFORE = r"(?<![\p{L}\p{Nd}_]|[\p{L}\p{Nd}]\p{Mn}+)"
_WORD_AFTER = r"(?=[\p{L}\p{Nd}_]|(?<=[\p{L}\p{Nd}]\p{Mn}*)\p{Mn})"
_NO_WORD_AFTER = r"(?![\p{L}\p{Nd}_]|(?<=[\p{L}\p{Nd}]\p{Mn}*)\p{Mn})"
_JAVA_WORD_BOUNDARY = f"(?:{_WORD_BEFORE}{_NO_WORD_AFTER}|{_NO_WORD_BEFORE}{_WORD_AFTER})"
_JAVA_NOT_WORD_BOUNDARY = f"(?:{_WORD_BEFORE}{_WORD_AFTER}|{_NO_WORD_BEFORE}{_NO_WORD_AFTER})"
# Java's $ (and \Z) as a zero-width assertion (Pattern.Dollar): at the end, before a final
# \r\n, or before a final line terminator that is not the \n of a \r\n. Python form only.
_JAVA_DOLLAR = rf"(?:(?=\r\n\z)|(?!(?<=\r)\n)(?=[{_LINE_TERMINATORS}]?\z))"
# Under (?m): before any line terminator but inside \r\n, or at the end.
_JAVA_MULTILINE_DOLLAR = r"(?:\z|(?=[\r\x{85}\x{2028}\x{2029}])|(?<!\r)(?=\n))"
# Java's ^ under (?m) (Pattern.Caret): never at the end, else at the start or after a line
# terminator but inside \r\n.
_JAVA_MULTILINE_CARET = r"(?!\z)(?:\A|(?<=[\n\x{85}\x{2028}\x{2029}])|(?<=\r)(?!\n))"
# Inline modes: what each one means for RE2 (None: evaluated as Java means it, see _Mode).
# Java's \d, \w and their complements (ASCII), as class contents, for the Python form.
_ASCII_CLASSES = {
    "d": "0-9",
    "w": "a-zA-Z0-9_",
    "D": r"\x00-\x2F\x3A-\x{10FFFF}",
    "W": r"\x00-\x2F\x3A-\x40\x5B-\x5E\x60\x7B-\x{10FFFF}",
}
_MULTILINE = "(?m) multiline mode (Java's line terminators are not RE2's)"
_REFUSED_MODES = {
    "d": "(?d) Unix lines mode",
    "x": "(?x) comments mode",
    "U": "(?U) Unicode character classes",
    "u": "(?u) Unicode case folding",
}


@dataclass(frozen=True)
class Construct:
    name: str
    position: int


@dataclass(frozen=True)
class _Mode:
    fold: bool = False  # (?i): ASCII letters match either case (Java without (?u))
    dotall: bool = False  # (?s)
    multiline: bool = False  # (?m): only the Python form reads it


@dataclass
class _Scan:
    pattern: str
    # False: the form RE2 and Java read alike. True: the form Python's ``regex`` module reads
    # with Java's meaning, for DuckDB's java_regex_matches function.
    python: bool = False
    lacking: list[Construct] = field(default_factory=list)
    out: list[str] = field(default_factory=list)
    groups: int = 0  # capturing groups opened so far (Java reads backreferences against them)

    def lack(self, name: str, at: int) -> None:
        self.lacking.append(Construct(name, at))


def _literal(ch: str, mode: _Mode) -> str:
    """One literal character, outside a class: letters folded under (?i), specials escaped."""
    if mode.fold and ch.isascii() and ch.isalpha():
        return f"[{ch.lower()}{ch.upper()}]"
    if not ch.isprintable() or not ch.isascii():
        return rf"\x{{{ord(ch):X}}}"
    if not ch.isalnum() and ch not in " _":
        return "\\" + ch
    return ch


def _class_literal(ch: str) -> str:
    if not ch.isprintable() or not ch.isascii():
        return rf"\x{{{ord(ch):X}}}"
    if not ch.isalnum() and ch not in " _":
        return "\\" + ch
    return ch


def _code_point(pattern: str, i: int) -> tuple[int, int] | None:
    """A character written as a numeric escape at ``pattern[i]`` (the backslash): (code, end)."""
    nxt = pattern[i + 1]
    if nxt == "x":
        if pattern.startswith("{", i + 2):
            end = pattern.find("}", i)
            return (int(pattern[i + 3 : end], 16), end + 1) if end > 0 else None
        digits = pattern[i + 2 : i + 4]
        return (int(digits, 16), i + 4) if re.fullmatch(r"[0-9a-fA-F]{2}", digits) else None
    if nxt == "u":
        digits = pattern[i + 2 : i + 6]
        return (int(digits, 16), i + 6) if re.fullmatch(r"[0-9a-fA-F]{4}", digits) else None
    if nxt == "0":
        m = re.match(r"[0-7]{1,3}", pattern[i + 2 :])
        if m is None:
            return None
        digits = m.group(0)
        if len(digits) == 3 and digits[0] > "3":
            digits = digits[:2]
        return int(digits, 8), i + 2 + len(digits)
    if nxt == "e":
        return 0x1B, i + 2
    if nxt == "c" and i + 2 < len(pattern):
        return ord(pattern[i + 2]) ^ 64, i + 3
    return None


def _property(pattern: str, i: int) -> tuple[str | None, bool, int]:
    """``\\p{...}``/``\\P{...}``/``\\pL`` at ``i``: (class contents or ``\\p{X}``, negated, end);
    contents None when the name is not one both engines can be given."""
    negated = pattern[i + 1] == "P"
    if pattern.startswith("{", i + 2):
        end = pattern.find("}", i)
        end = len(pattern) - 1 if end < 0 else end
        name, stop = pattern[i + 3 : end], end + 1
    else:
        name, stop = pattern[i + 2 : i + 3], i + 3
    for prefix in ("Is", "gc=", "general_category="):
        if name.startswith(prefix) and name[len(prefix) :] in _CATEGORIES:
            name = name[len(prefix) :]
    if name in _POSIX:
        return _POSIX[name], negated, stop
    if name in _CATEGORIES:
        return rf"\p{{{name}}}", negated, stop
    return None, negated, stop


def _escape(scan: _Scan, i: int, mode: _Mode, in_class: bool) -> tuple[str, int, list[tuple[int, int]]]:
    """The escape at ``pattern[i]``: (its rewriting, the index after it, the characters it stands
    for as ranges when it is one character, for case folding inside a class)."""
    pattern = scan.pattern
    nxt = pattern[i + 1]
    if nxt in "pP":
        contents, negated, end = _property(pattern, i)
        written = pattern[i:end]
        if contents is None:
            scan.lack(f"property class {written} (RE2 does not know it)", i)
            return written, end, []
        if mode.fold:
            scan.lack(f"{written} under (?i)", i)
            return written, end, []
        if contents.startswith("\\p"):
            return (contents.replace("\\p", "\\P") if negated else contents), end, []
        if in_class:
            if negated:
                scan.lack(f"negated POSIX class {written} inside a character class", i)
                return written, end, []
            return contents, end, []
        return f"[{'^' if negated else ''}{contents}]", end, []
    if nxt == "Q":  # quoted literal up to \E
        end = pattern.find("\\E", i + 2)
        body = pattern[i + 2 : len(pattern) if end < 0 else end]
        stop = len(pattern) if end < 0 else end + 2
        if in_class:
            return "".join(_class_literal(c) for c in body), stop, [(ord(c), ord(c)) for c in body]
        return "".join(_literal(c, mode) for c in body), stop, []
    point = _code_point(pattern, i)
    if point is not None:
        code, end = point
        ch = chr(code)
        if in_class:
            return _class_literal(ch), end, [(code, code)]
        return _literal(ch, mode), end, []
    if nxt.isdigit() and not in_class:
        if not scan.python:
            scan.lack(f"backreference \\{nxt}", i)
        else:
            return _backreference(scan, i, mode)
    elif nxt == "k" and not in_class:
        named = re.match(r"\\k<([a-zA-Z][a-zA-Z0-9]*)>", pattern[i:])
        if not scan.python or named is None:
            scan.lack("named backreference \\k<name>", i)
        else:
            return _reference(scan, f"(?P={named.group(1)})", i, mode), i + named.end(), []
    elif nxt in "bB":
        if not scan.python or in_class or pattern.startswith("{", i + 2):
            scan.lack(f"\\{nxt} word boundary ({_WORD_NOTE})", i)
        else:
            return (_JAVA_WORD_BOUNDARY if nxt == "b" else _JAVA_NOT_WORD_BOUNDARY), i + 2, []
    elif nxt == "Z":
        if not scan.python or in_class:
            scan.lack("\\Z (end before a final line terminator)", i)
        else:
            return _JAVA_DOLLAR, i + 2, []
    elif nxt == "G":
        if not scan.python or in_class:  # for one find from the start, \G is where it starts
            scan.lack("\\G (end of the previous match)", i)
    elif nxt in "XN":
        scan.lack(f"\\{nxt}", i)
    elif nxt == "R":
        if in_class:
            scan.lack("\\R inside a character class", i)
        else:
            return _LINEBREAK, i + 2, []
    elif nxt in "sShHvV":
        chars = {"s": _SPACE_CHARS, "h": _HORIZONTAL_CHARS, "v": _VERTICAL_CHARS}[nxt.lower()]
        if nxt.islower():
            return (chars if in_class else f"[{chars}]"), i + 2, []
        if in_class:
            scan.lack(f"\\{nxt} inside a character class", i)
        else:
            return f"[^{chars}]", i + 2, []
    elif nxt in "dDwW" and scan.python:  # Java's are ASCII; the Python form is compiled for Unicode
        chars = _ASCII_CLASSES[nxt]
        return (chars if in_class else f"[{chars}]"), i + 2, []
    elif nxt.isascii() and nxt.isalpha() and nxt not in "dDwWtnrfaAz":
        scan.lack(f"escape \\{nxt}", i)
    if in_class and not nxt.isalnum():
        return pattern[i : i + 2], i + 2, [(ord(nxt), ord(nxt))]
    return pattern[i : i + 2], i + 2, []


def _reference(scan: _Scan, text: str, i: int, mode: _Mode) -> str:
    """A backreference in the Python form. Under (?i) Java compares it folding ASCII letters only,
    which Python's regex cannot be told (it folds the Kelvin sign too): refused."""
    if mode.fold:
        scan.lack("backreference under (?i)", i)
    return f"(?:{text})"


def _backreference(scan: _Scan, i: int, mode: _Mode) -> tuple[str, int, list[tuple[int, int]]]:
    """``\\n`` at ``i``, as Java reads it: more digits join the number while such a group has
    been opened before it; a group that does not exist yet is refused (Java's own meaning,
    a reference that never matched, cannot be written for Python)."""
    pattern = scan.pattern
    number, end = int(pattern[i + 1]), i + 2
    while end < len(pattern) and pattern[end].isdigit() and number * 10 + int(pattern[end]) <= scan.groups:
        number, end = number * 10 + int(pattern[end]), end + 1
    if number == 0 or number > scan.groups:
        scan.lack(f"backreference \\{number} to a group not opened before it", i)
        return pattern[i:end], end, []
    return _reference(scan, f"\\{number}", i, mode), end, []


def _folded(ranges: list[tuple[int, int]]) -> str:
    """The other case of the ASCII letters in ``ranges``, as class contents."""
    extra = []
    for lo, hi in ranges:
        for first, last, shift in ((ord("a"), ord("z"), -32), (ord("A"), ord("Z"), 32)):
            a, b = max(lo, first), min(hi, last)
            if a <= b:
                extra.append(chr(a + shift) if a == b else f"{chr(a + shift)}-{chr(b + shift)}")
    return "".join(extra)


def _class(scan: _Scan, i: int, mode: _Mode) -> int:
    """The character class opening at ``pattern[i]``; returns the index after it."""
    pattern, n = scan.pattern, len(scan.pattern)
    out = ["["]
    i += 1
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    if i < n and pattern[i] == "]":  # a ']' first in the class is a literal
        out.append("\\]")
        i += 1
    ranges: list[tuple[int, int]] = []
    previous: int | None = None  # the last single character, the start of a possible range
    while i < n and pattern[i] != "]":
        c = pattern[i]
        if c == "[":
            scan.lack("nested character class (class union or intersection)", i)
            out.append(c)
            i += 1
            previous = None
            continue
        if pattern.startswith("&&", i):
            scan.lack("character class intersection &&", i)
            out.append("&&")
            i += 2
            previous = None
            continue
        if c == "-" and previous is not None and i + 1 < n and pattern[i + 1] != "]":
            if pattern[i + 1] == "\\":
                text, end, chars = _escape(scan, i + 1, mode, True)
            else:
                text, end, chars = _class_literal(pattern[i + 1]), i + 2, [(ord(pattern[i + 1]),) * 2]
            if len(chars) == 1:
                ranges[-1] = (previous, chars[0][0])  # the range replaces its first character
                out.append("-" + text)
                i, previous = end, None
                continue
        if c == "\\" and i + 1 < n:
            text, i, chars = _escape(scan, i, mode, True)
            out.append(text)
            ranges.extend(chars)
            previous = chars[0][0] if len(chars) == 1 else None
            continue
        out.append(_class_literal(c))
        ranges.append((ord(c), ord(c)))
        previous = ord(c)
        i += 1
    if mode.fold:
        out.append(_folded(ranges))
    out.append("]")
    scan.out.append("".join(out))
    return i + 1


_GROUP = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([):])")


def _scan(pattern: str, python: bool = False) -> tuple[list[Construct], str]:
    """(constructs RE2 lacks, the pattern rewritten into what RE2 and Java read alike); with
    ``python``: (constructs the Python form cannot express, the Python form)."""
    scan = _Scan(pattern, python)
    modes = [_Mode()]  # the innermost group's mode is last
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        mode = modes[-1]
        if c == "\\" and i + 1 < n:
            text, i, _ = _escape(scan, i, mode, False)
            scan.out.append(text)
        elif c == "[":
            i = _class(scan, i, mode)
        elif c == "(" and pattern.startswith("(?", i):
            flags = _GROUP.match(pattern, i)
            rest = pattern[i + 2 : i + 4]
            if flags is not None:
                on, off, end = flags.group(1), flags.group(2) or "", flags.group(3)
                refused = [f for f in on + off if f in _REFUSED_MODES or (f == "m" and not python)]
                for f in refused:
                    scan.lack(_REFUSED_MODES.get(f, _MULTILINE), i)
                new = _Mode(
                    fold=("i" in on or mode.fold) and "i" not in off,
                    dotall=("s" in on or mode.dotall) and "s" not in off,
                    multiline=("m" in on or mode.multiline) and "m" not in off,
                )
                if refused:  # passed through as written: only Java engines evaluate it
                    scan.out.append(flags.group(0))
                elif end == ":":
                    scan.out.append("(?:")
                if end == ":":
                    modes.append(new)
                else:
                    modes[-1] = new
                i = flags.end()
                continue
            named = re.match(r"\(\?<([a-zA-Z][a-zA-Z0-9]*)>", pattern[i:])
            if named is not None:  # a name only matters to a backreference (Python form only)
                scan.out.append(f"(?P<{named.group(1)}>" if python else "(")
                scan.groups += 1
                modes.append(mode)
                i += named.end()
                continue
            for prefix, name in (
                ("=", "lookahead (?=...)"),
                ("!", "negative lookahead (?!...)"),
                ("<=", "lookbehind (?<=...)"),
                ("<!", "negative lookbehind (?<!...)"),
                (">", "atomic group (?>...)"),
            ):
                if rest.startswith(prefix):
                    if not python:  # Python's regex module reads them as Java does
                        scan.lack(name, i)
                    break
            scan.out.append("(?")
            modes.append(mode)
            i += 2
        elif c == "(":
            scan.out.append(c)
            scan.groups += 1
            modes.append(mode)
            i += 1
        elif c == ")":
            scan.out.append(c)
            if len(modes) > 1:
                modes.pop()
            i += 1
        else:
            if c in "*+?}" and i + 1 < n and pattern[i + 1] == "+" and not python:
                scan.lack("possessive quantifier (x*+, x++, x?+)", i)
            if c == "$" and python:
                scan.out.append(_JAVA_MULTILINE_DOLLAR if mode.multiline else _JAVA_DOLLAR)
            elif c == "^" and python and mode.multiline:
                scan.out.append(_JAVA_MULTILINE_CARET)
            elif c == "$":
                scan.out.append(_LINE_END)
            elif c == ".":
                scan.out.append(_ANY if mode.dotall else _NOT_LINE_TERMINATOR)
            elif mode.fold and c.isascii() and c.isalpha():
                scan.out.append(_literal(c, mode))
            else:
                scan.out.append(c)
            i += 1
    return scan.lacking, "".join(scan.out)


def unsupported_constructs(pattern: str, engine: str) -> list[str]:
    """Constructs of ``pattern`` that ``engine`` (duckdb | databricks | treasure_data) cannot evaluate:
    on DuckDB, those neither RE2 nor the Java-semantics function (:func:`compile_java`) can."""
    if engine not in RE2_ENGINES:
        return []
    lacking = [c.name for c in _scan(pattern, python=True)[0]]
    if not lacking:
        try:
            compile_java(pattern)
        except regex.error as exc:
            lacking = [f"a form the Java-semantics fallback cannot compile ({exc})"]
    return lacking


def re2_lacks(pattern: str | None) -> bool:
    """Whether RE2 cannot evaluate ``pattern`` with Java's meaning. The rules tables carry this
    per pattern: DuckDB evaluates such a pattern with ``java_regex_matches`` (see
    :func:`cdp_assets.sql.dialects.valid_regexp_matches`), every other pattern with RE2."""
    return pattern is not None and bool(_scan(pattern)[0])


_CODE_POINT_ESCAPE = re.compile(r"\\(?:x\{([0-9A-Fa-f]+)\}|.)", re.S)


def python_form(pattern: str) -> str:
    """``pattern`` (Java's syntax) written for Python's ``regex`` module, with Java 17's meaning.
    Every class that differs between them is written out (``\\w``, ``\\d``, ``\\s``, ``.``,
    ``\\b``, ``$``, case folding), so it is compiled without flags (``\\p{L}`` stays Unicode).
    ValueError names the construct when one cannot be expressed."""
    lacking, form = _scan(pattern, python=True)
    if lacking:
        raise ValueError(f"valid_regexp {pattern!r} uses {lacking[0].name}, which has no Python form")
    # regex writes a code point as \\UHHHHHHHH, not \\x{H}; the escape pairs are read left to right.
    return _CODE_POINT_ESCAPE.sub(lambda m: f"\\U{int(m.group(1), 16):08X}" if m.group(1) else m.group(0), form)


@lru_cache(maxsize=1024)
def compile_java(pattern: str) -> regex.Pattern:
    """``pattern`` compiled so that ``search`` answers as Java's ``Matcher.find`` (Treasure Data)."""
    return regex.compile(python_form(pattern), regex.VERSION0)


def pattern_for(pattern: str | None) -> str | None:
    """The pattern as engines evaluate it: Treasure Data's (Java's) meaning, in a form RE2 and
    Java read alike."""
    if pattern is None:
        return None
    lacking, rewritten = _scan(pattern)
    # A pattern RE2 cannot evaluate is refused on RE2 engines; Java-style engines read it as written.
    return pattern if lacking else rewritten


def check_syntax(pattern: str) -> None:
    """Raise re.error when ``pattern`` is not a regular expression. Java's own escapes
    (``\\p{Alpha}``, ``\\Q...\\E``) are accepted; Python's ``regex`` checks the rest (unlike ``re``, it
    accepts a lookbehind of alternatives of unequal lengths, as Java does)."""
    masked = re.sub(r"\\[pP]\{[^}]*\}", "x", pattern)
    masked = re.sub(r"\\Q.*?(\\E|$)", "x", masked, flags=re.S)
    masked = re.sub(r"([*+?}])\+", r"\1", masked)  # possessive quantifiers: Java syntax
    masked = re.sub(r"\\[hHvVRXeG]|\\c.|\\k<[^>]*>|\\N\{[^}]*\}|\\x\{[0-9a-fA-F]+\}|\\[pP][A-Za-z]", "x", masked)
    masked = re.sub(r"\(\?<([a-zA-Z][a-zA-Z0-9]*)>", r"(?P<\1>", masked)  # Java's named group
    masked = re.sub(r"\(\?([a-zA-Z]*)(-[a-zA-Z]*)?([):])", lambda m: "(?:" if m.group(3) == ":" else "", masked)
    masked = masked.replace("\\Z", "\\z").replace("\\z", "$")
    # Java compiles a backreference to any group number (one not opened yet never matches)
    masked = re.sub(r"\\(\\|[1-9])", lambda m: m.group(0) if m.group(1) == "\\" else "x", masked)
    try:
        regex.compile(masked, regex.VERSION0)
    except regex.error as exc:
        raise re.error(str(exc)) from exc
