"""The pipeline as a Dagster Component: a ``defs.yaml`` that names a ``cdp.yml`` adds every asset,
check, job, schedule and sensor of that config to an existing ``dg`` project.

This module is the package's registry module (the ``dagster_dg_cli.registry_modules`` entry point
in pyproject.toml), so ``dg list components`` shows ``cdp_assets.components.CdpPipelineComponent``
and ``dg scaffold defs`` writes its ``defs.yaml``. It imports nothing of the pipeline at module
level: ``dg`` imports every registry module of the environment to list them, and the pipeline's
definitions module loads a config when it is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field


class CdpPipelineScaffoldParams(BaseModel):
    config_path: str = Field(description="The pipeline's cdp.yml (relative to the current folder, or absolute).")


class CdpPipelineScaffolder(dg.Scaffolder[CdpPipelineScaffoldParams]):
    """``dg scaffold defs cdp_assets.components.CdpPipelineComponent DIR --config-path cdp.yml``:
    writes ``DIR/defs.yaml`` with the config's path relative to ``DIR``, so the project can move."""

    @classmethod
    def get_scaffold_params(cls) -> type[CdpPipelineScaffoldParams]:
        return CdpPipelineScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[CdpPipelineScaffoldParams]) -> None:
        config = Path(request.params.config_path).expanduser().resolve()
        if not config.is_file():
            raise FileNotFoundError(
                f"--config-path {request.params.config_path}: {config} is not a file; "
                "point it at the pipeline's cdp.yml (`cdp-assets sample` or `cdp-assets init` writes one)"
            )
        relative = os.path.relpath(config, request.target_path.resolve())
        dg.scaffold_component(request, {"config_path": Path(relative).as_posix()})


@dg.scaffold_with(CdpPipelineScaffolder)
class CdpPipelineComponent(dg.Component, dg.Resolvable, dg.Model):
    """The cdp_assets pipeline (ingestion, hist-union, staging, unification, report) of one
    ``cdp.yml``, with its asset checks, jobs, schedules, sensors and its ``warehouse`` resource.

    Example ``defs.yaml``::

        type: cdp_assets.components.CdpPipelineComponent
        attributes:
          config_path: cdp.yml   # relative to this defs.yaml's folder, or absolute
    """

    config_path: str = Field(
        description=(
            "The pipeline's cdp.yml. A relative path resolves against the folder of this defs.yaml; "
            "relative paths inside cdp.yml resolve against cdp.yml's own folder, as everywhere else."
        )
    )

    def resolved_config_path(self, context: dg.ComponentLoadContext) -> Path:
        return (context.path / Path(self.config_path).expanduser()).resolve()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Deferred: see the module docstring.
        from cdp_assets.config import ConfigError, load_config
        from cdp_assets.definitions import build_definitions

        config = self.resolved_config_path(context)
        if not config.is_file():
            # load_config's own hint names CDP_CONFIG, which a Component does not read.
            raise ConfigError(
                f"{context.path / 'defs.yaml'}: attributes.config_path: {config} does not exist; fix config_path "
                "(a relative path resolves against this defs.yaml's folder)"
            )
        return build_definitions(load_config(config))
