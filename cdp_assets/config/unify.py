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

# Limits documented for Treasure Data's unification.
MAX_MERGE_ITERATIONS = 49
DEFAULT_MERGE_ITERATIONS = 3
MAX_KEYS_PER_TABLE = 32
MAX_TABLES = 255
MAX_INVALID_TEXTS = 127
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
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"valid_regexp {value!r} is not a valid regular expression: {exc}") from exc
    return value


class UnifyKey(_Strict):
    name: str
    valid_regexp: str | None = None
    invalid_texts: list[str] = Field(default_factory=list, max_length=MAX_INVALID_TEXTS)

    _name = field_validator("name")(lambda v: check_identifier(v, "key name"))
    _regexp = field_validator("valid_regexp")(_check_regexp)


class KeyColumn(_Strict):
    column: str
    key: str

    _column = field_validator("column")(lambda v: check_identifier(v, "key column"))
    _key = field_validator("key")(lambda v: check_identifier(v, "key"))


class UnifyTable(_Strict):
    database: str | None = None
    table: str
    as_: str | None = Field(default=None, alias="as")
    incremental_columns: list[str] = Field(default_factory=list)
    key_columns: list[KeyColumn] = Field(min_length=1, max_length=MAX_KEYS_PER_TABLE)

    _database = field_validator("database")(lambda v: v if v is None else check_identifier(v, "database"))
    _table = field_validator("table")(lambda v: check_identifier(v, "table"))
    _as = field_validator("as_")(lambda v: v if v is None else check_identifier(v, "table alias (as)"))

    @field_validator("incremental_columns")
    @classmethod
    def _incremental(cls, value: list[str]) -> list[str]:
        return [check_identifier(v, "incremental column") for v in value]

    @property
    def alias(self) -> str:
        """The name other sections use to refer to this table (``as`` when given)."""
        return self.as_ or self.table


class CanonicalId(_Strict):
    name: str
    merge_by_keys: list[str] = Field(min_length=1)
    merge_iterations: int | None = Field(default=None, ge=1, le=MAX_MERGE_ITERATIONS)
    incremental_merge_iterations: int | None = Field(default=None, ge=1, le=MAX_MERGE_ITERATIONS)
    do_not_merge_key: str | None = None
    source_tables: list[str] | None = None

    _name = field_validator("name")(lambda v: check_identifier(v, "canonical id name"))

    @field_validator("merge_by_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("merge_by_keys lists a key twice; list each key once, in priority order")
        return [check_identifier(v, "merge key") for v in value]

    @property
    def iteration_cap(self) -> int:
        return self.merge_iterations or CONVERGENCE_SAFETY_CAP


class PersistentId(CanonicalId):
    """Same shape as a canonical id; its leader is kept stable across runs."""


class SourceColumn(_Strict):
    table: str
    column: str
    priority: int = Field(default=1, ge=1)
    order: Literal["first", "last"] = "last"
    order_by: str | None = None

    _table = field_validator("table")(lambda v: check_identifier(v, "source column table"))
    _column = field_validator("column")(lambda v: check_identifier(v, "source column"))
    _order_by = field_validator("order_by")(lambda v: v if v is None else check_identifier(v, "order_by"))


class MasterAttribute(_Strict):
    name: str
    source_columns: list[SourceColumn] = Field(min_length=1)
    array_elements: int | None = Field(default=None, ge=1, le=1000)
    valid_regexp: str | None = None
    invalid_texts: list[str] = Field(default_factory=list, max_length=MAX_INVALID_TEXTS)

    _name = field_validator("name")(lambda v: check_identifier(v, "attribute name"))
    _regexp = field_validator("valid_regexp")(_check_regexp)


class MasterTable(_Strict):
    name: str
    canonical_id: str | None = None
    persistent_id: str | None = None
    attributes: list[MasterAttribute] = Field(min_length=1)

    _name = field_validator("name")(lambda v: check_identifier(v, "master table name"))

    @model_validator(mode="after")
    def _one_id(self) -> "MasterTable":
        if (self.canonical_id is None) == (self.persistent_id is None):
            raise ValueError(
                f"master table {self.name!r} must set exactly one of canonical_id or persistent_id"
            )
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
        if not re.match(r"^[a-z][a-z0-9_]{0,62}$", value or ""):
            raise ValueError(
                f"unification name {value!r} is not valid: use lowercase letters, digits and "
                "underscores, starting with a letter (it becomes the schema cdp_unification_<name>)"
            )
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> "UnifyConfig":
        key_names = [k.name for k in self.keys]
        _no_duplicates(key_names, ("keys",), "name")
        _no_duplicates([t.alias for t in self.tables], ("tables",), "table", "(by 'as' or table name)")
        _no_duplicates([m.name for m in self.master_tables], ("master_tables",), "name")
        for i, table in enumerate(self.tables):
            for j, kc in enumerate(table.key_columns):
                if kc.key not in key_names:
                    raise FieldError(
                        ("tables", i, "key_columns", j, "key"),
                        f"key {kc.key!r} is not defined in keys; add it to keys or use one of {key_names}",
                    )
        ids = self.all_ids
        if not ids:
            raise ValueError("define at least one entry in canonical_ids or persistent_ids")
        _no_duplicates([c.name for c in self.canonical_ids], ("canonical_ids",), "name")
        _no_duplicates([c.name for c in self.persistent_ids], ("persistent_ids",), "name")
        _no_duplicates(
            [c.name for c in ids], ("persistent_ids",), "name", "(canonical and persistent ids share names)", offset=len(self.canonical_ids)
        )
        aliases = [t.alias for t in self.tables]
        located = [("canonical_ids", n, c) for n, c in enumerate(self.canonical_ids)]
        located += [("persistent_ids", n, c) for n, c in enumerate(self.persistent_ids)]
        for section, n, cid in located:
            for k, key in enumerate(cid.merge_by_keys):
                if key not in key_names:
                    raise FieldError(
                        (section, n, "merge_by_keys", k),
                        f"canonical id {cid.name!r}: merge_by_keys entry {key!r} is not defined "
                        f"in keys; add it to keys or use one of {key_names}",
                    )
            if cid.do_not_merge_key is not None and cid.do_not_merge_key not in cid.merge_by_keys:
                raise FieldError(
                    (section, n, "do_not_merge_key"),
                    f"canonical id {cid.name!r}: do_not_merge_key {cid.do_not_merge_key!r} must be "
                    "one of its merge_by_keys",
                )
            for k, src in enumerate(cid.source_tables or []):
                if src not in aliases:
                    raise FieldError(
                        (section, n, "source_tables", k),
                        f"canonical id {cid.name!r}: source_tables entry {src!r} is not in tables; "
                        f"use one of {aliases}",
                    )
        id_names = {c.name for c in ids}
        persistent = {c.name for c in self.persistent_ids}
        canonical = {c.name for c in self.canonical_ids}
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
                for si, sc in enumerate(attr.source_columns):
                    if sc.table not in aliases:
                        raise FieldError(
                            ("master_tables", mi, "attributes", ai, "source_columns", si, "table"),
                            f"master table {m.name!r}, attribute {attr.name!r}: source table "
                            f"{sc.table!r} is not in tables; use one of {aliases}",
                        )
        return self

    @property
    def all_ids(self) -> list[CanonicalId]:
        """Canonical ids, then persistent ids: each gets its own graph, loop and lookup."""
        return [*self.canonical_ids, *self.persistent_ids]

    def key(self, name: str) -> UnifyKey:
        return next(k for k in self.keys if k.name == name)

    def tables_for(self, cid: CanonicalId) -> list[UnifyTable]:
        """The tables that feed a canonical id: its source_tables, or every table with one of its keys."""
        chosen = [
            t
            for t in self.tables
            if (cid.source_tables is None or t.alias in cid.source_tables)
            and any(kc.key in cid.merge_by_keys for kc in t.key_columns)
        ]
        return chosen

    @property
    def schema(self) -> str:
        return f"cdp_unification_{self.name}"


def _no_duplicates(names: list[str], section: tuple[str, ...], field: str, note: str = "", offset: int = 0) -> None:
    """Name the entry that repeats an earlier name (``keys[4].name``); ``offset`` is subtracted
    from its position when ``names`` starts with entries of another section."""
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            where = f" {note}" if note else ""
            raise FieldError((*section, i - offset, field), f"{n!r} is listed twice{where}; each name must be unique, list it once")
        seen.add(n)
        seen.add(n)
