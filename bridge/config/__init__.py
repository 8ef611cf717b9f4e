"""The config file: models, rules and loading (the only pydantic importer)."""

from bridge.config.load import (
    Config,
    DeviceSettings,
    MqttSettings,
    config_json_schema,
    load_config,
    validate_config,
)

__all__ = ["Config", "DeviceSettings", "MqttSettings", "config_json_schema", "load_config",
           "validate_config"]
