"""Bus scan vocabulary (pure): which unit ids to probe, what a probe found, and the
`{"op": "scan", ...}` command on `<base>/bridge/request`, parsed once here.

A probe is one small read (holding register 0). Whatever answers is there: data,
or a Modbus exception (02 "illegal data address" from a device without register
0, 01 from one without holding registers): both prove a unit. Silence, a garbled
reply, or a gateway's 0A/0B ("no path", "target did not respond") mean nobody
answered at that id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.core.errors import InvalidRequest, RequestError
from bridge.core.payload import load_json, short

DEFAULT_TIMEOUT = 0.2  # seconds per probe: most units answer within 20..50 ms
MIN_TIMEOUT, MAX_TIMEOUT = 0.02, 5.0

Status = Literal["data", "exception", "absent", "skipped"]


def parse_units(spec: object, allowed: range, name: str = "units") -> list[int]:
    """"1-247", "1,3,10-20", 5, or [1, 2, 3] -> sorted unique unit ids within `allowed`."""
    units: set[int] = set()
    if isinstance(spec, bool):
        raise InvalidRequest(f"{name}: expected ids like \"1-247\" or [1, 2]", field=name)
    if isinstance(spec, int):
        items: list[object] = [spec]
    elif isinstance(spec, str):
        items = [part.strip() for part in spec.split(",")]
    elif isinstance(spec, list):
        items = list(spec)
    else:
        raise InvalidRequest(f"{name}: expected ids like \"1-247\" or [1, 2], got"
                             f" {short(spec)}", field=name)
    for item in items:
        low, high = _bounds(item, name)
        if low > high:
            raise InvalidRequest(f"{name}: range {low}-{high} runs backwards", field=name)
        for unit in (low, high):
            if unit not in allowed:
                raise InvalidRequest(f"{name}: unit {unit} is outside {allowed.start}.."
                                     f"{allowed.stop - 1} for this transport", field=name)
        units.update(range(low, high + 1))
    if not units:
        raise InvalidRequest(f"{name}: no unit ids given", field=name)
    return sorted(units)


def _bounds(item: object, name: str) -> tuple[int, int]:
    if isinstance(item, int) and not isinstance(item, bool):
        return item, item
    if isinstance(item, str):
        low, sep, high = item.partition("-")
        try:
            return (int(low), int(high)) if sep else (int(low), int(low))
        except ValueError:
            pass
    raise InvalidRequest(f"{name}: {short(item)} is not a unit id or a range like 1-247",
                         field=name)


@dataclass(frozen=True)
class Found:
    unit: int
    status: Status
    exception_code: int | None = None
    registers: tuple[int, ...] = ()
    ms: float = 0.0  # how long the probe took

    @property
    def present(self) -> bool:
        return self.status in ("data", "exception")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "status": self.status}
        if self.exception_code is not None:
            out["exception_code"] = self.exception_code
        if self.registers:
            out["registers"] = list(self.registers)
        out["ms"] = round(self.ms, 1)
        return out


@dataclass
class ScanReport:
    port: str
    timeout: float
    results: list[Found] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the scan ended early (port lost, time budget)

    @property
    def present(self) -> list[Found]:
        return [f for f in self.results if f.present]

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "port": self.port, "timeout": self.timeout, "probed": len(self.results),
            "present": [f.to_wire() for f in self.present],
            "skipped": [f.unit for f in self.results if f.status == "skipped"],
            "seconds": round(self.seconds, 2)}
        if self.stopped:
            out["stopped"] = self.stopped
        return out


@dataclass(frozen=True)
class ScanRequest:
    """A valid `{"op": "scan", "port": ..., "units": ..., "timeout": ...}`."""

    id: Any
    port: str
    units: object  # checked against the port's transport once the port is known
    timeout: float = DEFAULT_TIMEOUT


class BridgeRejected(Exception):
    """A bridge command refused at parsing: the error, and the id if it could be read."""

    def __init__(self, error: RequestError, request_id: Any = None, op: str = "") -> None:
        super().__init__(error.message)
        self.error, self.request_id, self.op = error, request_id, op


def parse_bridge_request(payload: bytes) -> ScanRequest:
    """The one command on `<base>/bridge/request` so far: scan. Raises BridgeRejected."""
    request_id: Any = None
    op = ""
    try:
        body = load_json(payload)
        if not isinstance(body, dict):
            raise InvalidRequest("expected a JSON object like {\"op\": \"scan\", ...}")
        request_id = body.get("id")
        if request_id is not None and (isinstance(request_id, bool) or
                                       not isinstance(request_id, str | int | float)):
            request_id = None
            raise InvalidRequest("id: expected a string or a number", field="id")
        raw_op = body.get("op")
        op = raw_op if isinstance(raw_op, str) else ""
        if op != "scan":
            raise InvalidRequest(f"op: expected \"scan\", got {short(body.get('op'))}",
                                 field="op")
        unknown = set(body) - {"id", "op", "port", "units", "timeout"}
        if unknown:
            raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}",
                                 field=sorted(unknown)[0])
        port = body.get("port")
        if not isinstance(port, str) or not port:
            raise InvalidRequest("port: expected the name of a configured port", field="port")
        timeout = body.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
                not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            raise InvalidRequest(f"timeout: expected {MIN_TIMEOUT}..{MAX_TIMEOUT} seconds,"
                                 f" got {short(timeout)}", field="timeout")
        return ScanRequest(request_id, port, body.get("units", "1-247"), float(timeout))
    except RequestError as exc:
        raise BridgeRejected(exc, request_id, op) from None


def summary_lines(report: ScanReport) -> Sequence[str]:
    """The plain-text summary `bridge scan` prints."""
    lines = [f"{f.unit:>3}  " + ("answers with data" if f.status == "data" else
                                 f"answers with exception {f.exception_code:02d}")
             for f in report.present]
    found = len(report.present)
    lines.append(f"{found} unit{'s' if found != 1 else ''} answered of {len(report.results)}"
                 f" probed on {report.port} in {report.seconds:.1f} s"
                 f" (timeout {report.timeout:g} s)")
    if report.stopped:
        lines.append(f"scan stopped early: {report.stopped}")
    return lines
