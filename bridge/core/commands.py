"""The commands the bridge runs, as typed values (mqtt-api.md, Commands).

`parse` builds them from MQTT payloads and checks them completely; everything
downstream (the device, the bus) takes a command that exists as a valid one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge.core.points import Table


@dataclass(frozen=True)
class RawRead:
    table: Table
    address: int
    count: int


@dataclass(frozen=True)
class RawWrite:
    table: Table
    address: int
    values: tuple[int, ...] | tuple[bool, ...]
    single: bool  # FC 06/05 rather than 16/15


@dataclass(frozen=True)
class ReadPoints:
    names: tuple[str, ...]


@dataclass(frozen=True)
class WritePoints:
    # Raw JSON scalars per name, in payload order; read-only so a queued
    # command cannot change under the worker. Excluded from the hash (dicts
    # have none); equality still compares it.
    values: Mapping[str, object] = field(hash=False)
    # The registers (or bits) each value encodes to: checked and encoded once, here,
    # so the device layer writes them as they are.
    encoded: Mapping[str, tuple[int, ...] | tuple[bool, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=False)


Command = RawRead | RawWrite | ReadPoints | WritePoints


@dataclass(frozen=True)
class Request:
    id: str | int | float | None
    op: str
    command: Command
