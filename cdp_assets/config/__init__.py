"""Configuration: pydantic models for the pipeline and for Treasure Data's unify.yml."""

from cdp_assets.config.loader import ConfigError, load_config, produced_tables
from cdp_assets.config.models import LoadedConfig, PipelineConfig
from cdp_assets.config.unify import UnifyConfig

__all__ = ["ConfigError", "LoadedConfig", "PipelineConfig", "UnifyConfig", "load_config", "produced_tables"]
