"""Commands to the bridge itself on `<base>/bridge[/<instance>]/request`, answered
on `.../response`. One so far: `{"op": "scan", "port": ..., "units": ..., "timeout": ...}`
probes unit ids on a configured port through that port's bus, at poll priority
(device commands still go first), one probe at a time, within a time budget."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bridge.core.errors import BridgeError, Busy, InvalidRequest
from bridge.core.scan import BridgeRejected, parse_bridge_request, parse_units
from bridge.core.transport import canonical_port
from bridge.modbus.registry import ClientRegistry, ModbusClientWrapper
from bridge.modbus.scan import scan_budget, scan_bus
from bridge.mqtt import results

log = logging.getLogger(__name__)


class BridgeRequests:
    def __init__(self, registry: ClientRegistry) -> None:
        self.registry = registry
        self._scanning: set[str] = set()  # port keys with a scan running

    def port(self, name: str) -> ModbusClientWrapper:
        """A configured port by key (`/dev/ttyUSB0`, `host:502`), configured name or link."""
        for key, wrapper in self.registry.clients.items():
            names = {key, getattr(wrapper.transport, "port", None)}
            if name in names or name.lower() in names or canonical_port(name) in names:
                return wrapper
        known = ", ".join(sorted(self.registry.clients)) or "none"
        raise InvalidRequest(f"port: {name!r} is not a configured port (configured: {known})",
                             field="port")

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """The answer to one message; never raises for anything a user sends."""
        started = time.monotonic()
        request_id: Any = None
        op = "scan"
        try:
            try:
                request = parse_bridge_request(payload)
            except BridgeRejected as rejected:
                request_id, op = rejected.request_id, rejected.op or op
                raise rejected.error from None
            request_id = request.id
            wrapper = self.port(request.port)
            assert wrapper.transport is not None
            units = parse_units(request.units, wrapper.transport.units)
            if wrapper.identifier in self._scanning:
                raise Busy(f"a scan of {wrapper.identifier} is already running")
            self._scanning.add(wrapper.identifier)
            try:
                log.info("scanning %d unit ids on %s (timeout %g s)", len(units),
                         wrapper.identifier, request.timeout)
                report = await scan_bus(wrapper.bus, units, timeout=request.timeout,
                                        budget=scan_budget(len(units), request.timeout))
            finally:
                self._scanning.discard(wrapper.identifier)
            log.info("scan of %s: %d of %d unit ids answered in %.1f s", wrapper.identifier,
                     len(report.present), len(report.results), report.seconds)
            return results.success(request_id=request_id, op=op, device=None,
                                   duration_ms=_ms(started), **report.to_wire())
        except BridgeError as exc:
            return results.failure(request_id=request_id, op=op, device=None, error=exc,
                                   duration_ms=_ms(started))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error in a bridge request")
            from bridge.core.errors import InternalError
            return results.failure(request_id=request_id, op=op, device=None,
                                   error=InternalError("internal error"),
                                   duration_ms=_ms(started))


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
