"""Modbus RTU/TCP <-> MQTT bridge."""

__version__ = "0.1.0"
