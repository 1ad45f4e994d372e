"""Config: typed models and the YAML loader."""

from indexer.config.loader import config_to_yaml, load_config, parse_set_options
from indexer.config.models import Config

__all__ = ["Config", "config_to_yaml", "load_config", "parse_set_options"]
