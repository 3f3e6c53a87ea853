"""L6 config: the validated run schema, YAML I/O and dotted overrides."""

from snn5.config.io import (
    ConfigError, apply_overrides, config_diff, config_from_dict, config_to_dict, dump_config,
    load_config, parse_value, save_config,
)
from snn5.config.schema import MeasureConfig, Paradigm, RunConfig

__all__ = [
    "ConfigError", "MeasureConfig", "Paradigm", "RunConfig", "apply_overrides", "config_diff",
    "config_from_dict", "config_to_dict", "dump_config", "load_config", "parse_value",
    "save_config",
]
