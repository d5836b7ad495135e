"""Run config of the incremental phases: ``full_refresh`` rebuilds from every input row.

Every op that takes it (hist-union, staging, the unification loop) reads the same field, so
``cdp-assets run --full-refresh`` and a launch from the UI set it the same way."""

from __future__ import annotations

from dagster import Config, GraphDefinition, JobDefinition

FULL_REFRESH = "full_refresh"


class IncrementalConfig(Config):
    """``full_refresh``: ignore the previous run's state and watermarks and build in full."""

    full_refresh: bool = False


def full_refresh_run_config(job: JobDefinition) -> dict:
    """Run config setting ``full_refresh`` on every op of ``job`` that takes it (graph-backed
    assets nest their ops' config under the graph's name)."""

    def ops_of(graph: GraphDefinition) -> dict:
        out = {}
        for node in graph.nodes:
            definition = node.definition
            if isinstance(definition, GraphDefinition):
                nested = ops_of(definition)
                if nested:
                    out[node.name] = {"ops": nested}
                continue
            fields = getattr(getattr(definition.config_schema, "config_type", None), "fields", None) or {}
            if FULL_REFRESH in fields:
                out[node.name] = {"config": {FULL_REFRESH: True}}
        return out

    return {"ops": ops_of(job.graph)}
