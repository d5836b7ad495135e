"""SQL as pipelines of named steps: one object that `render-sql` prints and the runner runs.

Two shapes, after Splink's ``CTEPipeline`` (named SQL steps that are both printed and executed):

- ``SqlPipeline``: a fixed list of statements, each with its name, the query, and the table it
  creates (hist-union, staging; and what `render-sql` prints of every phase).
- ``StepPipeline``: the unification's named ``Step``s. A step builds its SQL from ``Tables``:
  it names the tables it reads by their canonical names (``plan.ref("edges")``), and the runner
  puts the tables it really uses in their place (scratch tables, a new one per loop round).
  A ``Repeat`` is a named sub-pipeline the runner repeats until the data says stop (the loop's
  rounds, the pointer jumps inside a round); ``bind`` prints it once, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cdp_assets.sql.dialects import Dialect, TableRef

# What a step does with its SQL (the runner executes each kind its own way).
PUBLISH = "publish"  # a published table: built under a temporary name, then swapped in
SCRATCH = "scratch"  # a working table of the run, dropped when the run ends
SCALAR = "scalar"  # a query whose one number decides what runs next
ROWS = "rows"  # a query whose rows the runner reads
# No statement: a working table read under another name from here on (the loop's first labels
# are its nodes table, which carries a label column: no copy of every node to start the rounds).
ALIAS = "alias"
KINDS = (PUBLISH, SCRATCH, SCALAR, ROWS, ALIAS)


@dataclass(frozen=True)
class Query:
    """A statement's canonical SQL and the values bound to its ``?`` placeholders, in order: config
    values that never become SQL text (a valid_regexp's pattern where the dialect binds it,
    ``Dialect.binds_regexp_parameters``). A builder returns one where it binds values, else text."""

    sql: str
    params: tuple = ()


def as_query(built: "str | Query") -> Query:
    """A builder's answer as a ``Query`` (text alone binds nothing)."""
    return built if isinstance(built, Query) else Query(built)


def _sql_text_literal(value: object) -> str:
    """``value`` as an SQL string expression on one line (a line break as ``chr(10)``/``chr(13)``)."""
    text = "'" + str(value).replace("'", "''") + "'"
    return text.replace("\n", "' || chr(10) || '").replace("\r", "' || chr(13) || '")


def parameters_comment(params: tuple) -> str:
    """The values bound to a printed statement's ``?`` placeholders, as a comment line above it
    (each as an SQL string expression, for a reader or to run it by hand); none: empty."""
    if not params:
        return ""
    listed = ", ".join(f"{i}: {_sql_text_literal(v)}" for i, v in enumerate(params, 1))
    return f"-- parameters, bound to the ? placeholders in order: {listed}\n"


@dataclass(frozen=True)
class SqlStep:
    """One printed statement: ``query`` alone, or ``CREATE TABLE creates AS query``; ``params``:
    the values bound to its ``?`` placeholders, in order."""

    name: str
    query: str
    creates: TableRef | None = None
    note: str = ""  # printed above the statement (e.g. that a loop repeats it)
    params: tuple = ()

    @property
    def sql(self) -> str:
        return create_table_as(self.creates, self.query) if self.creates is not None else self.query


@dataclass
class SqlPipeline:
    """An ordered list of statements; each step says what it is for and what it creates."""

    name: str
    steps: list[SqlStep] = field(default_factory=list)

    def add(
        self, name: str, query: str, creates: TableRef | None = None, note: str = "", params: tuple = ()
    ) -> "SqlPipeline":
        self.steps.append(SqlStep(name, query.strip(), creates, note, tuple(params)))
        return self

    def extend(self, other: "SqlPipeline") -> "SqlPipeline":
        self.steps.extend(other.steps)
        return self

    def render(self, dialect: Dialect) -> list[SqlStep]:
        """Each statement whole in ``dialect`` (the CREATE included, so ``creates`` is cleared)."""
        return [SqlStep(s.name, dialect.render(s.sql), None, s.note, s.params) for s in self.steps]

    def to_text(self, dialect: Dialect) -> str:
        return "\n\n".join(
            f"-- {self.name}: {s.name}\n{parameters_comment(s.params)}{s.sql};" for s in self.render(dialect)
        )


class Tables:
    """Where each table a pipeline reads is now. Steps name tables by their canonical names; the
    runner maps the names of working tables to the scratch tables it made (unmapped: itself)."""

    def __init__(self) -> None:
        self._now: dict[TableRef, TableRef] = {}

    def __call__(self, canonical: TableRef) -> TableRef:
        return self._now.get(canonical, canonical)

    def put(self, canonical: TableRef, now: TableRef) -> None:
        self._now[canonical] = now

    def names_table(self, now: TableRef) -> bool:
        """Whether some canonical name still maps to ``now`` (an aliased table stays in use)."""
        return now in self._now.values()


@dataclass(frozen=True)
class Step:
    """A named statement. ``output``: the canonical name of the table it creates (PUBLISH,
    SCRATCH); ``counted``: the runner reads the new table's row count. ``counts``: a SCALAR
    that is the row count of this table (canonical name): the runner asks the engine's
    ``row_count``, which an engine may answer without a query (TD's table listing). ``names``:
    the working table an ALIAS step makes ``output`` name (canonical names; it builds no SQL).
    ``inlinable``: a SCRATCH table whose readers all run before anything it reads changes, and
    whose columns have the types a table of them would store: where the engine
    ``inlines_scratch_tables`` it is a subquery of each reader instead, with no statement."""

    name: str
    kind: str
    build: Callable[[Tables], "str | Query"]
    output: TableRef | None = None
    counted: bool = False
    counts: TableRef | None = None
    names: TableRef | None = None
    inlinable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step {self.name}: unknown kind {self.kind!r}; use one of {KINDS}")
        if (self.output is not None) != (self.kind in (PUBLISH, SCRATCH, ALIAS)):
            raise ValueError(
                f"step {self.name}: a {self.kind} step {'needs' if self.output is None else 'has no'} output"
            )
        if (self.names is not None) != (self.kind == ALIAS):
            raise ValueError(f"step {self.name}: an alias step, and only one, names the table it aliases")

    def query(self, tables: Tables) -> Query:
        """The step's statement for ``tables``, with the values bound to its placeholders."""
        return as_query(self.build(tables))

    @classmethod
    def alias(cls, name: str, output: TableRef, names: TableRef, counted: bool = False) -> "Step":
        """``output`` read as the working table ``names`` from here on, with no statement."""
        return cls(name, ALIAS, lambda t: "", output, counted=counted, names=names)


@dataclass(frozen=True)
class Repeat:
    """A named sub-pipeline the runner repeats; ``note`` says until when."""

    name: str
    items: tuple["Step | Repeat", ...]
    note: str


@dataclass
class StepPipeline:
    name: str
    items: list[Step | Repeat] = field(default_factory=list)

    def extend(self, items) -> "StepPipeline":
        self.items.extend(items)
        return self

    def walk(self) -> Iterator[tuple[Step, tuple[Repeat, ...]]]:
        """Every step once, in order, with the repeats it sits in (outermost first)."""
        yield from _walk(self.items, ())

    def step_names(self) -> list[str]:
        """The steps' names as printed: each repeat's steps once (an alias prints no statement)."""
        return [step.name for step, _ in self.walk() if step.kind != ALIAS]

    def bind(self) -> SqlPipeline:
        """The statements to print: every table under its canonical name. A working table that a
        later step makes again (a new version per round) is printed as ``<name>_2``, ``_3``..."""
        tables, versions, out = Tables(), {}, SqlPipeline(self.name)
        for step, repeats in self.walk():
            if step.kind == ALIAS:
                tables.put(step.output, tables(step.names))
                continue
            query = step.query(tables)
            note = "; ".join(f"{r.name}: {r.note}" for r in repeats)
            creates = step.output
            if step.kind == SCRATCH:
                versions[creates] = versions.get(creates, 0) + 1
                if versions[creates] > 1:
                    creates = creates.sibling(f"{creates.name}_{versions[creates]}")
                tables.put(step.output, creates)
            out.add(step.name, query.sql, creates, note, query.params)
        return out


def _walk(items, repeats: tuple[Repeat, ...]) -> Iterator[tuple[Step, tuple[Repeat, ...]]]:
    for item in items:
        if isinstance(item, Repeat):
            yield from _walk(item.items, (*repeats, item))
        else:
            yield item, repeats


def create_table_as(ref: TableRef, select_sql: str) -> str:
    return f"CREATE TABLE {ref.sql} AS\n{select_sql.strip()}"


def drop_table(ref: TableRef) -> str:
    return f"DROP TABLE IF EXISTS {ref.sql}"
