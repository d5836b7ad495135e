"""Treasure Data's ``unify.yml``, accepted unchanged.

The field names and limits follow Treasure Data's ID unification documentation, so a file
written for Treasure Data loads here as it is. Cross-references (a key used by a table but
never declared, a master table naming an unknown canonical id, ...) are checked once the
whole document is parsed, and each error names the field that is wrong.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cdp_assets.config.identifiers import check_identifier
from cdp_assets.sql.regex import check_syntax

# Limits documented for Treasure Data's unification.
MAX_MERGE_ITERATIONS = 49
DEFAULT_MERGE_ITERATIONS = 3
MAX_KEYS_PER_TABLE = 32
MAX_TABLES = 255
MAX_INVALID_TEXTS = 127
MAX_INCREMENTAL_COLUMNS = 127
MAX_KEY_OCCURRENCES = 32  # times one key may appear over all tables' key_columns
MAX_ARRAY_ELEMENTS = 10
MAX_MERGE_LIST = 64  # entries of merge_by_keys / merge_by_canonical_ids
MAX_REGEXP_LENGTH = 512
# Every Treasure Data table has ``time`` (Unix epoch seconds); TD dates rows by it (first/last seen,
# a persistent id's leader, a master attribute's default order_by) unless told otherwise.
TD_TIME_COLUMN = "time"
# Treasure Data's persistent ids accept ``time`` in merge_by_keys: the leader is the earliest seen
# value, which is how every persistent id is led here; it is not a key of the graph.
TIME_KEY = "time"
# When merge_iterations is absent we iterate to convergence; this cap only protects against
# a bug or an adversarial graph (log2 of any real component size is far below it).
CONVERGENCE_SAFETY_CAP = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FieldError(ValueError):
    """A cross-reference error raised by a model validator, with the path of the offending field
    relative to that model (e.g. ``("tables", 0, "key_columns", 1, "key")``), so the loader can
    name the exact field instead of the whole model."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _check_regexp(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_syntax(value)
    except re.error as exc:
        raise ValueError(f"valid_regexp {value!r} is not a valid regular expression: {exc}") from exc
    return value


class UnifyKey(_Strict):
    name: str
    valid_regexp: str | None = Field(default=None, min_length=1, max_length=MAX_REGEXP_LENGTH)
    # TD accepts null among the invalid texts (``['', null]``); a null value is never valid anyway.
    invalid_texts: list[str | None] = Field(default_factory=list, max_length=MAX_INVALID_TEXTS)

    _name = field_validator("name")(lambda v: check_identifier(v, "key name"))
    _regexp = field_validator("valid_regexp")(_check_regexp)
    _texts = field_validator("invalid_texts", mode="before")(lambda v: [] if v is None else v)

    @property
    def invalid_text_values(self) -> list[str]:
        """The invalid texts that can match a value (null is never a value of a graph)."""
        return [t for t in self.invalid_texts if t is not None]


class KeyColumn(_Strict):
    column: str
    key: str

    _column = field_validator("column")(lambda v: check_identifier(v, "key column"))
    _key = field_validator("key")(lambda v: check_identifier(v, "key"))


class UnifyTable(_Strict):
    database: str | None = None
    table: str
    as_: str | None = Field(default=None, alias="as")
    incremental_columns: list[str] = Field(default_factory=list, max_length=MAX_INCREMENTAL_COLUMNS)
    key_columns: list[KeyColumn] = Field(min_length=1, max_length=MAX_KEYS_PER_TABLE)

    _database = field_validator("database")(lambda v: v if v is None else check_identifier(v, "database"))
    _table = field_validator("table")(lambda v: check_identifier(v, "table"))
    _as = field_validator("as_")(lambda v: v if v is None else check_identifier(v, "table alias (as)"))

    @field_validator("incremental_columns", mode="before")
    @classmethod
    def _incremental(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, list):
            return [check_identifier(v, "incremental column") for v in value]
        return value

    @property
    def alias(self) -> str:
        """The name other sections use to refer to this table (``as`` when given)."""
        return self.as_ or self.table


class CanonicalId(_Strict):
    """An id over ``merge_by_keys`` (in priority order) and, optionally, over other canonical ids
    (``merge_by_canonical_ids``: two rows share this id when they share one of those ids)."""

    name: str
    merge_by_keys: list[str] = Field(default_factory=list, max_length=MAX_MERGE_LIST)
    merge_by_canonical_ids: list[str] = Field(default_factory=list, max_length=MAX_MERGE_LIST)
    merge_iterations: int | None = Field(default=None, ge=1, le=MAX_MERGE_ITERATIONS)
    incremental_merge_iterations: int | None = Field(default=None, ge=1, le=MAX_MERGE_ITERATIONS)
    do_not_merge_key: str | None = None
    source_tables: list[str] | None = None

    _name = field_validator("name")(lambda v: check_identifier(v, "canonical id name"))
    _empty = field_validator("merge_by_keys", "merge_by_canonical_ids", mode="before")(lambda v: [] if v is None else v)

    @field_validator("merge_by_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("merge_by_keys lists a key twice; list each key once, in priority order")
        return [check_identifier(v, "merge key") for v in value]

    @field_validator("merge_by_canonical_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an id is listed twice; list each id once")
        return [check_identifier(v, "merged id") for v in value]

    @model_validator(mode="after")
    def _rules(self) -> "CanonicalId":
        merged = self.merged_ids
        field = "merge_by_persistent_ids" if isinstance(self, PersistentId) else "merge_by_canonical_ids"
        if len(merged) <= 1 and not self.graph_keys:
            raise FieldError(
                ("merge_by_keys",),
                f"{self.name!r}: list at least one key in merge_by_keys (merge_by_keys may be empty only "
                f"when {field} lists two or more ids)",
            )
        if self.do_not_merge_key is not None and (
            not self.merge_by_keys or self.merge_by_keys[0] != self.do_not_merge_key
        ):
            first = self.merge_by_keys[0] if self.merge_by_keys else None
            raise FieldError(
                ("do_not_merge_key",),
                f"{self.name!r}: do_not_merge_key {self.do_not_merge_key!r} must be the first element of "
                f"merge_by_keys (it is {first!r}); move it to the front of merge_by_keys",
            )
        return self

    @property
    def merged_ids(self) -> list[str]:
        """The ids this id merges by (merge_by_canonical_ids / merge_by_persistent_ids)."""
        return list(self.merge_by_canonical_ids)

    @property
    def graph_keys(self) -> list[str]:
        """merge_by_keys without ``time`` (a persistent id's ordering, not a key of the graph)."""
        return list(self.merge_by_keys)

    @property
    def iteration_cap(self) -> int:
        return self.merge_iterations or CONVERGENCE_SAFETY_CAP


class PersistentId(CanonicalId):
    """Same shape as a canonical id; its leader is kept stable across runs. It merges by other
    persistent ids (``merge_by_persistent_ids``) and may list ``time`` in ``merge_by_keys``."""

    merge_by_persistent_ids: list[str] = Field(default_factory=list, max_length=MAX_MERGE_LIST)

    _pids = field_validator("merge_by_persistent_ids", mode="before")(lambda v: [] if v is None else v)

    @model_validator(mode="before")
    @classmethod
    def _no_canonical_merge(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("merge_by_canonical_ids"):
            raise FieldError(
                ("merge_by_canonical_ids",),
                "a persistent id merges by other persistent ids: use merge_by_persistent_ids",
            )
        return data

    @field_validator("merge_by_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("merge_by_keys lists a key twice (or 'time' twice); list each once, in priority order")
        return [check_identifier(v, "merge key") for v in value]

    @field_validator("merge_by_persistent_ids")
    @classmethod
    def _pid_list(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an id is listed twice; list each id once")
        return [check_identifier(v, "merged id") for v in value]

    @model_validator(mode="after")
    def _time(self) -> "PersistentId":
        if TIME_KEY in self.merge_by_keys and self.merge_by_persistent_ids:
            raise FieldError(
                ("merge_by_keys",),
                f"{self.name!r}: 'time' cannot be in merge_by_keys together with merge_by_persistent_ids; remove one",
            )
        return self

    @property
    def merged_ids(self) -> list[str]:
        return list(self.merge_by_persistent_ids)

    @property
    def graph_keys(self) -> list[str]:
        return [k for k in self.merge_by_keys if k != TIME_KEY]


class SourceColumn(_Strict):
    table: str
    column: str  # TD: defaults to the attribute's name (filled in by MasterAttribute)
    priority: int = Field(default=1, ge=1)
    order: Literal["first", "last"] = "last"
    order_by: str | None = None

    _table = field_validator("table")(lambda v: check_identifier(v, "source column table"))
    _column = field_validator("column")(lambda v: check_identifier(v, "source column"))
    _order_by = field_validator("order_by")(lambda v: v if v is None else check_identifier(v, "order_by"))


class MasterAttribute(_Strict):
    """One column of a master table: from source columns (best by priority, then order), or the
    value of another id of the same entity (``source_canonical_id`` / ``source_persistent_id``)."""

    name: str
    source_columns: list[SourceColumn] = Field(default_factory=list)
    source_canonical_id: str | None = None
    source_persistent_id: str | None = None
    array_elements: int | None = Field(default=None, ge=1, le=MAX_ARRAY_ELEMENTS)
    valid_regexp: str | None = Field(default=None, min_length=1, max_length=MAX_REGEXP_LENGTH)
    invalid_texts: list[str | None] = Field(default_factory=list, max_length=MAX_INVALID_TEXTS)

    _name = field_validator("name")(lambda v: check_identifier(v, "attribute name"))
    _regexp = field_validator("valid_regexp")(_check_regexp)
    _texts = field_validator("invalid_texts", "source_columns", mode="before")(lambda v: [] if v is None else v)
    _ids = field_validator("source_canonical_id", "source_persistent_id")(
        lambda v: v if v is None else check_identifier(v, "source id")
    )

    @model_validator(mode="before")
    @classmethod
    def _column_defaults_to_name(cls, data: object) -> object:
        # TD: a source column without `column` reads the column named like the attribute.
        if (
            isinstance(data, dict)
            and isinstance(data.get("source_columns"), list)
            and isinstance(data.get("name"), str)
        ):
            data = {
                **data,
                "source_columns": [
                    {**sc, "column": data["name"]} if isinstance(sc, dict) and sc.get("column") is None else sc
                    for sc in data["source_columns"]
                ],
            }
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "MasterAttribute":
        given = [
            f
            for f, v in (
                ("source_columns", self.source_columns),
                ("source_canonical_id", self.source_canonical_id),
                ("source_persistent_id", self.source_persistent_id),
            )
            if v
        ]
        if len(given) != 1:
            raise FieldError(
                (given[-1] if given else "source_columns",),
                f"attribute {self.name!r}: set exactly one of source_columns, source_canonical_id or "
                f"source_persistent_id" + (f" (it sets {', '.join(given)})" if given else ""),
            )
        return self

    @property
    def invalid_text_values(self) -> list[str]:
        return [t for t in self.invalid_texts if t is not None]

    @property
    def source_id(self) -> str | None:
        return self.source_canonical_id or self.source_persistent_id


class MasterTable(_Strict):
    name: str
    canonical_id: str | None = None
    persistent_id: str | None = None
    attributes: list[MasterAttribute] = Field(min_length=1)

    _name = field_validator("name")(lambda v: check_identifier(v, "master table name"))

    @model_validator(mode="after")
    def _one_id(self) -> "MasterTable":
        if (self.canonical_id is None) == (self.persistent_id is None):
            raise ValueError(f"master table {self.name!r} must set exactly one of canonical_id or persistent_id")
        _no_duplicates([a.name for a in self.attributes], ("attributes",), "name", "in this master table")
        return self

    @property
    def id_name(self) -> str:
        return self.canonical_id or self.persistent_id  # type: ignore[return-value]


class UnifyConfig(_Strict):
    name: str
    keys: list[UnifyKey] = Field(min_length=1)
    tables: list[UnifyTable] = Field(min_length=1, max_length=MAX_TABLES)
    canonical_ids: list[CanonicalId] = Field(default_factory=list)
    persistent_ids: list[PersistentId] = Field(default_factory=list)
    master_tables: list[MasterTable] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # TD takes any SQL symbol; the schema cdp_unification_<name> is spelt in lowercase.
        if not isinstance(value, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", value):
            raise ValueError(
                f"unification name {value!r} is not valid: use letters, digits and underscores, "
                "starting with a letter or underscore, at most 63 characters (it becomes the schema "
                "cdp_unification_<name>)"
            )
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> "UnifyConfig":
        key_names = [k.name for k in self.keys]
        _no_duplicates(key_names, ("keys",), "name")
        _no_duplicates([t.alias for t in self.tables], ("tables",), "table", "(by 'as' or table name)")
        _no_duplicates([m.name for m in self.master_tables], ("master_tables",), "name")
        occurrences: dict[str, int] = {}
        for i, table in enumerate(self.tables):
            for j, kc in enumerate(table.key_columns):
                if kc.key not in key_names:
                    raise FieldError(
                        ("tables", i, "key_columns", j, "key"),
                        f"key {kc.key!r} is not defined in keys; add it to keys or use one of {key_names}",
                    )
                occurrences[kc.key] = occurrences.get(kc.key, 0) + 1
                if occurrences[kc.key] > MAX_KEY_OCCURRENCES:
                    raise FieldError(
                        ("tables", i, "key_columns", j, "key"),
                        f"key {kc.key!r} appears in key_columns more than {MAX_KEY_OCCURRENCES} times over all "
                        "tables (Treasure Data's limit); split the unification or stage the tables into fewer",
                    )
        ids = self.all_ids
        if not ids:
            raise ValueError("define at least one entry in canonical_ids or persistent_ids")
        _no_duplicates([c.name for c in self.canonical_ids], ("canonical_ids",), "name")
        _no_duplicates([c.name for c in self.persistent_ids], ("persistent_ids",), "name")
        _no_duplicates(
            [c.name for c in ids],
            ("persistent_ids",),
            "name",
            "(canonical and persistent ids share names)",
            offset=len(self.canonical_ids),
        )
        aliases = [t.alias for t in self.tables]
        located = [("canonical_ids", n, c) for n, c in enumerate(self.canonical_ids)]
        located += [("persistent_ids", n, c) for n, c in enumerate(self.persistent_ids)]
        canonical = [c.name for c in self.canonical_ids]
        persistent = [c.name for c in self.persistent_ids]
        for section, n, cid in located:
            is_persistent = section == "persistent_ids"
            for k, key in enumerate(cid.merge_by_keys):
                if key not in key_names and not (is_persistent and key == TIME_KEY):
                    raise FieldError(
                        (section, n, "merge_by_keys", k),
                        f"{cid.name!r}: merge_by_keys entry {key!r} is not defined "
                        f"in keys; add it to keys or use one of {key_names}"
                        + (" (or 'time')" if is_persistent else ""),
                    )
            merge_field, pool = (
                ("merge_by_persistent_ids", persistent) if is_persistent else ("merge_by_canonical_ids", canonical)
            )
            for k, other in enumerate(cid.merged_ids):
                if other == cid.name or other not in pool:
                    raise FieldError(
                        (section, n, merge_field, k),
                        f"{cid.name!r}: {merge_field} entry {other!r} is not another id of {section}; "
                        f"use one of {[p for p in pool if p != cid.name]}",
                    )
            for k, src in enumerate(cid.source_tables or []):
                if src not in aliases:
                    raise FieldError(
                        (section, n, "source_tables", k),
                        f"{cid.name!r}: source_tables entry {src!r} is not in tables; use one of {aliases}",
                    )
        self._no_merge_cycles(located)
        id_names = {c.name for c in ids}
        for mi, m in enumerate(self.master_tables):
            wanted, pool, kind = (
                (m.canonical_id, canonical, "canonical_ids")
                if m.canonical_id
                else (m.persistent_id, persistent, "persistent_ids")
            )
            if wanted not in pool:
                raise FieldError(
                    ("master_tables", mi, "canonical_id" if m.canonical_id else "persistent_id"),
                    f"master table {m.name!r} refers to {wanted!r}, which is not defined in {kind} "
                    f"(defined ids: {sorted(id_names)})",
                )
            for ai, attr in enumerate(m.attributes):
                for field, value, id_pool, id_kind in (
                    ("source_canonical_id", attr.source_canonical_id, canonical, "canonical_ids"),
                    ("source_persistent_id", attr.source_persistent_id, persistent, "persistent_ids"),
                ):
                    if value is not None and value not in id_pool:
                        raise FieldError(
                            ("master_tables", mi, "attributes", ai, field),
                            f"master table {m.name!r}, attribute {attr.name!r}: {value!r} is not defined in "
                            f"{id_kind}; use one of {id_pool}",
                        )
                for si, sc in enumerate(attr.source_columns):
                    if sc.table not in aliases:
                        raise FieldError(
                            ("master_tables", mi, "attributes", ai, "source_columns", si, "table"),
                            f"master table {m.name!r}, attribute {attr.name!r}: source table "
                            f"{sc.table!r} is not in tables; use one of {aliases}",
                        )
        return self

    def _no_merge_cycles(self, located: list) -> None:
        by_name = {c.name: (section, n, c) for section, n, c in located}

        def visit(name: str, trail: tuple[str, ...]) -> None:
            section, n, cid = by_name[name]
            for other in cid.merged_ids:
                if other in trail:
                    field = "merge_by_persistent_ids" if section == "persistent_ids" else "merge_by_canonical_ids"
                    raise FieldError(
                        (section, n, field),
                        f"{name!r}: merging by {other!r} makes a cycle ({' -> '.join((*trail, other))}); "
                        "an id can only merge by ids that do not merge by it",
                    )
                visit(other, (*trail, other))

        for name in by_name:
            visit(name, (name,))

    @property
    def all_ids(self) -> list[CanonicalId]:
        """Canonical ids, then persistent ids: each gets its own graph, loop and lookup."""
        return [*self.canonical_ids, *self.persistent_ids]

    def key(self, name: str) -> UnifyKey:
        return next(k for k in self.keys if k.name == name)

    def tables_for(self, cid: CanonicalId) -> list[UnifyTable]:
        """The tables that feed a canonical id: its source_tables, or every table with one of its keys."""
        fed = {t.alias for other in cid.merged_ids for t in self.tables_for(self.id_by_name(other))}
        chosen = [
            t
            for t in self.tables
            if (cid.source_tables is None or t.alias in cid.source_tables)
            and (any(kc.key in cid.graph_keys for kc in t.key_columns) or t.alias in fed)
        ]
        return chosen

    @property
    def schema(self) -> str:
        return f"cdp_unification_{self.name.lower()}"

    def differences_from_td(self) -> list[str]:
        """One line per place where this config runs differently from Treasure Data (where we
        deliberately go beyond it); the run logs them."""
        lines = []
        used = {kc.key for t in self.tables for kc in t.key_columns}
        for i, key in enumerate(self.keys):
            if key.name not in used:
                lines.append(
                    f"keys[{i}].name: key {key.name!r} is declared but no table's key_columns uses it, so it links "
                    "nothing; Treasure Data's documentation does not say what TD does with such a key (map a column "
                    "to it or remove it)"
                )
        for cid in self.all_ids:
            if cid.merge_iterations is None:
                lines.append(
                    f"{cid.name}: merge_iterations is not set: Treasure Data would stop "
                    f"after {DEFAULT_MERGE_ITERATIONS} iterations; this run iterates "
                    f"until the graph converges (safety cap {CONVERGENCE_SAFETY_CAP})"
                )
            if isinstance(cid, PersistentId) and cid.do_not_merge_key is not None:
                lines.append(
                    f"{cid.name}: Treasure Data does not support do_not_merge_key on a persistent id; here two values "
                    f"of {cid.do_not_merge_key!r} never share a {cid.name}, as for a canonical id"
                )
        return lines

    def id_by_name(self, name: str) -> CanonicalId:
        return next(c for c in self.all_ids if c.name == name)

    def ordered_ids(self) -> list[CanonicalId]:
        """Every id after the ids it merges by (their lookups feed its graph)."""
        done: list[CanonicalId] = []

        def add(cid: CanonicalId) -> None:
            if cid in done:
                return
            for other in cid.merged_ids:
                add(self.id_by_name(other))
            done.append(cid)

        for cid in self.all_ids:
            add(cid)
        return done


def _no_duplicates(names: list[str], section: tuple[str, ...], field: str, note: str = "", offset: int = 0) -> None:
    """Name the entry that repeats an earlier name (``keys[4].name``); ``offset`` is subtracted
    from its position when ``names`` starts with entries of another section."""
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            where = f" {note}" if note else ""
            raise FieldError(
                (*section, i - offset, field), f"{n!r} is listed twice{where}; each name must be unique, list it once"
            )
        seen.add(n)
        seen.add(n)
