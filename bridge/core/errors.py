"""The bridge's errors: every failure a user can see, each with its wire code.

Foreign exceptions (pymodbus, aiomqtt, pydantic, OSError) are translated into
these where they enter the bridge and never leak upward.

    BridgeError                      code (mqtt-api.md `error.code`)
    ├── RequestError                 the command is wrong; it never reached a bus
    │   ├── InvalidJson              invalid_json
    │   ├── InvalidRequest           invalid_request       (names the field)
    │   ├── UnknownDatapoint         unknown_datapoint
    │   ├── NotWritable              not_writable
    │   ├── OutOfRange               out_of_range          (names the field)
    │   └── RawWriteDisabled         raw_write_disabled
    ├── BusError                     the transaction did not succeed
    │   ├── ModbusExceptionError     modbus_exception      (exception_code 1..11)
    │   ├── ModbusTimeout            timeout               (no/garbled/wrong reply)
    │   ├── PortUnavailable          port_unavailable      (device file, TCP endpoint)
    │   ├── Busy                     busy                  (the port's queue is full)
    │   └── Expired                  expired               (deadline passed while queued)
    ├── ConfigError                  config_error          (never on the wire; CLI exit)
    │   └── SettingsConflict         two devices disagree on one port's settings
    └── InternalError                internal
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base of every error the bridge reports; `code` is the wire code."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, Any]:
        """The `error` object of a failed result (mqtt-api.md)."""
        return {"code": self.code, "message": self.message}


class RequestError(BridgeError):
    """The request itself is wrong; nothing was sent to a device."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        if self.field is not None:
            wire["field"] = self.field
        return wire


class InvalidJson(RequestError):
    code = "invalid_json"


class InvalidRequest(RequestError):
    code = "invalid_request"


class UnknownDatapoint(RequestError):
    code = "unknown_datapoint"


class NotWritable(RequestError):
    code = "not_writable"


class OutOfRange(RequestError):
    code = "out_of_range"


class RawWriteDisabled(RequestError):
    code = "raw_write_disabled"


class BusError(BridgeError):
    """A transaction on a bus did not succeed."""

    #: does this outcome count as a failed transaction for availability?
    #: (exception responses prove the unit is alive)
    counts_as_failure = False
    #: did the request reach the unit? busy/expired never did: they say nothing
    #: about its availability, either way.
    reached_unit = True


# Names from the Modbus application protocol spec, section 7.
EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusExceptionError(BusError):
    code = "modbus_exception"

    def __init__(self, exception_code: int, message: str | None = None) -> None:
        name = EXCEPTION_NAMES.get(exception_code, f"exception {exception_code}")
        super().__init__(message or name)
        self.exception_code = exception_code
        # 0A/0B: a gateway says the unit behind it is unreachable.
        self.counts_as_failure = exception_code in (10, 11)

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        wire["exception_code"] = self.exception_code
        return wire


class ModbusTimeout(BusError):
    code = "timeout"
    counts_as_failure = True


class PortUnavailable(BusError):
    code = "port_unavailable"
    counts_as_failure = True


class Busy(BusError):
    code = "busy"
    reached_unit = False


class Expired(BusError):
    code = "expired"
    reached_unit = False


class ConfigError(BridgeError):
    """The configuration is invalid; `problems` lists (field path, message)."""

    code = "config_error"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))


class SettingsConflict(ConfigError):
    """Two devices name one port with different line settings."""

    def __init__(self, port: str, setting: str, first: str, first_value: object,
                 second: str, second_value: object) -> None:
        super().__init__([(
            setting,
            f"devices {first!r} and {second!r} share port {port} but disagree on "
            f"{setting}: {first_value!r} vs {second_value!r}",
        )])
        self.setting = setting
        self.devices = (first, second)


class InternalError(BridgeError):
    code = "internal"
