"""Workflow variables in ``unify.yml``: ``${name}`` and ``${a.b}``, resolved before validation.

Real ``unify.yml`` files are templates that a Treasure Data workflow fills in before it calls the
unification API (``database: ${client_short_name}_${stg}``, ``table: ${globals.unif_input_tbl}``).
Here the values come from ``unification_variables:`` in the pipeline config, a mapping read as a
workflow's ``_export`` is: a dotted name walks nested mappings (``${td.tbl_aaa}`` reads
``td: {tbl_aaa: ...}``). The environment may supply or override a value: ``${td.tbl_aaa}`` reads
``CDP_UNIFY_VAR_td__tbl_aaa`` (dots become double underscores). Precedence: environment, then
``unification_variables``.

Only string values are rewritten; a value that is exactly one ``${...}`` keeps the variable's
own type (``merge_iterations: ${iterations}`` stays a number).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VARIABLE = re.compile(r"\$\{([^{}]*)\}")
ENV_PREFIX = "CDP_UNIFY_VAR_"
_MISSING = object()


class UnresolvedVariable(ValueError):
    """A ``${...}`` with no value; the message names the variable, the file and the line."""


def env_name(variable: str) -> str:
    """The environment variable that supplies ``variable`` (``td.tbl`` -> ``CDP_UNIFY_VAR_td__tbl``)."""
    return ENV_PREFIX + variable.strip().replace(".", "__")


def lookup(variable: str, values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
    """The value of ``variable``, or ``_MISSING``: the environment first, then the mapping, where
    a dotted name walks nested mappings (a literal dotted key is tried first)."""
    environ = os.environ if environ is None else environ
    name = variable.strip()
    if env_name(name) in environ:
        return environ[env_name(name)]
    if name in values:
        return values[name]
    node: Any = values
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def resolve(
    data: Any,
    values: Mapping[str, Any],
    source: Path,
    text: str,
    where: str = "",
    environ: Mapping[str, str] | None = None,
) -> Any:
    """``data`` (parsed YAML) with every ``${...}`` in its string values replaced.

    ``text`` is the file's text, used to point at the line of an unresolved variable; ``where``
    is the field path of ``data`` inside that file (``unification`` for an inline section)."""

    def one(value: str, path: str) -> Any:
        found = VARIABLE.findall(value)
        if not found:
            return value
        resolved = {}
        for name in found:
            got = lookup(name, values, environ)
            if got is _MISSING or isinstance(got, (Mapping, list)):
                raise UnresolvedVariable(_message(name, got, source, text, path))
            resolved[name] = got
        whole = VARIABLE.fullmatch(value.strip())
        if whole is not None:
            return resolved[whole.group(1)]
        return VARIABLE.sub(lambda m: _text(resolved[m.group(1)]), value)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, str):
            return one(node, path)
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(data, where)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as a workflow prints it
    return str(value)


def _message(name: str, got: Any, source: Path, text: str, path: str) -> str:
    token = "${" + name + "}"
    line = next((n for n, row in enumerate(text.splitlines(), start=1) if token in row), None)
    at = f"{source}:{line}" if line else str(source)
    if got is _MISSING:
        why = (
            f"workflow variable {token} has no value; add it under unification_variables in the pipeline "
            f"config (a dotted name reads nested mappings, as a workflow's _export does) or set {env_name(name)}"
        )
    else:
        why = f"workflow variable {token} names a {type(got).__name__}, not a value; point it at a single value"
    return f"{at}: {path}: {why}"
