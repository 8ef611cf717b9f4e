"""End-to-end fixture pieces: a config for the simulated line + TCP gateway, and the
bridge running in-process against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bridge.app import Bridge
from bridge.config.load import Config, validate_config
from tests.broker import Mosquitto


def points_meter() -> list[dict[str, Any]]:
    return [
        {"name": "h0", "table": "holding", "address": 0, "type": "uint16"},
        {"name": "h1", "table": "holding", "address": 1, "type": "uint16"},
        {"name": "h4", "table": "holding", "address": 4, "type": "int16", "scale": 0.1,
         "writable": True, "min": 0, "max": 100},
        {"name": "mode", "table": "holding", "address": 5, "type": "uint16",
         "values": {5: "auto", 105: "heat", 0: "off"}, "writable": True},
        {"name": "flag", "table": "holding", "address": 6, "type": "bool", "bit": 2,
         "writable": True},
        {"name": "relay", "table": "coil", "address": 0, "type": "bool", "writable": True},
        {"name": "door", "table": "discrete", "address": 1, "type": "bool"},
        {"name": "power", "table": "input", "address": 0, "type": "uint32"},
    ]


def make_config(broker_port: int, line_path: str, gateway_port: int | None = None,
                **overrides: Any) -> dict[str, Any]:
    serial = {"port": line_path, "baudrate": 19200, "parity": "N"}
    devices: list[dict[str, Any]] = [
        {"id": "meter1", "serial": serial, "unit": 1, "timeout": 0.3, "retries": 1,
         "offline_after": 2, "poll_interval": 0.5, "allow_raw_writes": True,
         "datapoints": points_meter()},
        {"id": "meter2", "serial": serial, "unit": 2, "timeout": 0.3, "retries": 0,
         "offline_after": 2, "poll_interval": 0.5, "datapoints": points_meter()},
        {"id": "ghost", "serial": serial, "unit": 3, "timeout": 0.1, "retries": 0,
         "offline_after": 2, "poll_interval": 0.5,
         "datapoints": [{"name": "h0", "table": "holding", "address": 0, "type": "uint16"}]},
    ]
    if gateway_port is not None:
        devices.append({"id": "plc", "tcp": {"host": "127.0.0.1", "port": gateway_port},
                        "unit": 1, "timeout": 0.3, "poll_interval": 0.5,
                        "datapoints": points_meter()[:2]})
    config: dict[str, Any] = {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": "bridge-under-test",
                 "reconnect_min": 0.1, "reconnect_max": 1.0},
        "bus": {"queue_size": 64, "command_deadline": 5.0, "backoff_max": 1.0},
        "devices": devices,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@contextlib.asynccontextmanager
async def running_bridge(config: dict[str, Any] | Config) -> AsyncIterator[Bridge]:
    cfg = config if isinstance(config, Config) else validate_config(config)
    bridge = Bridge(cfg)
    task = asyncio.create_task(bridge.run(install_signal_handlers=False), name="bridge")
    try:
        yield bridge
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, 10)


__all__ = ["Mosquitto", "make_config", "running_bridge"]
