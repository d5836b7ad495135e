"""SQL as a pipeline of named steps that can be printed, rendered per dialect and run."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdp_assets.sql.dialects import Dialect, TableRef


@dataclass(frozen=True)
class SqlStep:
    name: str
    sql: str
    creates: TableRef | None = None


@dataclass
class SqlPipeline:
    """An ordered list of statements; each step says what it is for and what it creates."""

    name: str
    steps: list[SqlStep] = field(default_factory=list)

    def add(self, name: str, sql: str, creates: TableRef | None = None) -> "SqlPipeline":
        self.steps.append(SqlStep(name, sql.strip(), creates))
        return self

    def extend(self, other: "SqlPipeline") -> "SqlPipeline":
        self.steps.extend(other.steps)
        return self

    def render(self, dialect: Dialect) -> list[SqlStep]:
        return [SqlStep(s.name, dialect.render(s.sql), s.creates) for s in self.steps]

    def to_text(self, dialect: Dialect) -> str:
        return "\n\n".join(f"-- {self.name}: {s.name}\n{s.sql};" for s in self.render(dialect))


def create_table_as(ref: TableRef, select_sql: str) -> str:
    return f"CREATE TABLE {ref.sql} AS\n{select_sql.strip()}"


def drop_table(ref: TableRef) -> str:
    return f"DROP TABLE IF EXISTS {ref.sql}"
