"""The sections of the config file as frozen pydantic models (config.md).

Field constraints check single values; rules between fields (`rules`) run in model
validators that raise every problem at its own sub-field, so a path such as
`devices[2].datapoints[0].bit` names exactly what is wrong. The models live in
`sections` (mqtt, bridge, homeassistant, metrics, bus) and `devices` (devices and
datapoints); the root `Config` (pydantic-settings: file and environment) in `load`.
"""

from bridge.config.devices import (
    DatapointSettings,
    DeviceLink,
    DeviceSettings,
    HomeAssistantEntity,
    SerialSettings,
    TcpSettings,
)
from bridge.config.sections import (
    BridgeSettings,
    BusSettings,
    HomeAssistantSettings,
    MetricsSettings,
    MqttSettings,
    TlsSettings,
)
from bridge.core.points import DataType, Order, Table

__all__ = [
    "BridgeSettings", "BusSettings", "DataType", "DatapointSettings", "DeviceLink",
    "DeviceSettings", "HomeAssistantEntity", "HomeAssistantSettings", "MetricsSettings",
    "MqttSettings", "Order",
    "SerialSettings", "Table", "TcpSettings", "TlsSettings",
]
