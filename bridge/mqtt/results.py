"""Result objects for `<base>/<device>/response` and the JSON the bridge publishes.

Key order follows mqtt-api.md (id, op, ok, device, payload fields or error, ts,
duration_ms): dicts keep insertion order and `to_json` does not sort, so what a
human sees in an MQTT client matches the documentation.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.core.errors import BridgeError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keys the envelope owns; a payload field with one of these names is a bug.
_ENVELOPE = frozenset({"id", "op", "ok", "device", "error", "ts", "duration_ms"})

RequestId = str | int | float | None


def utc_timestamp(t: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: `2026-11-23T20:01:02.345Z`.

    Milliseconds are truncated, not rounded, so a timestamp never names a
    moment later than `t` (and never rolls over into `...60.000`).
    """
    ms = math.floor((time.time() if t is None else t) * 1000)
    return f"{_seconds(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _seconds(seconds: int) -> str:
    # Formatting a datetime was a tenth of the CPU of a command's answer; answers
    # come many to a second.
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}"


def _duration(duration_ms: float) -> float:
    # 0.1 ms is below any bus's jitter; more digits would be noise.
    return round(max(duration_ms, 0.0), 1) if math.isfinite(duration_ms) else 0.0


def success(*, request_id: RequestId, op: str, device: str | None, duration_ms: float,
            now: float | None = None, **fields: Any) -> dict[str, Any]:
    """`{"id", "op", "ok": true, "device", **fields, "ts", "duration_ms"}`.

    `id` is always present (`null` when the command had none), so consumers
    can read `result["id"]` without checking for the key. `device` is left out
    (None) in answers to the bridge itself (`<base>/bridge/response`).
    """
    clash = _ENVELOPE & fields.keys()
    if clash:
        raise ValueError(f"result fields {sorted(clash)} collide with the envelope")
    return {"id": request_id, "op": op, "ok": True, **_device(device), **fields,
            "ts": utc_timestamp(now), "duration_ms": _duration(duration_ms)}


def failure(*, request_id: RequestId, op: str, device: str | None, error: BridgeError,
            duration_ms: float, now: float | None = None) -> dict[str, Any]:
    """`{"id", "op", "ok": false, "device", "error": {...}, "ts", "duration_ms"}`."""
    return {"id": request_id, "op": op, "ok": False, **_device(device),
            "error": error.to_wire(), "ts": utc_timestamp(now),
            "duration_ms": _duration(duration_ms)}


def _device(device: str | None) -> dict[str, str]:
    return {} if device is None else {"device": device}


def _plain(obj: Any) -> Any:
    """Make `obj` JSON-able: non-finite floats -> None, mappings -> dict, tuples -> list.

    JSON has no NaN/Infinity and `json.dumps` would emit them anyway (breaking
    strict parsers) unless told not to, and then it raises: null is the honest
    "no value". Read-only mappings (MappingProxyType) are not dicts to json.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(item) for item in obj]
    return obj


# One encoder for all answers (json.dumps with options builds one per call). Answers are
# trees built here from decoded values: no cycle to check for.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            check_circular=False)


def to_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON, never NaN/Infinity.

    Non-ASCII text stays readable (`°C`). A lone surrogate (`"\\ud800"` is
    valid JSON input, so an echoed id can carry one) cannot be UTF-8 encoded:
    then the ASCII-escaped form is published, which is the same JSON value.
    """
    try:  # most answers are plain already: json checks that faster than _plain walks
        text = _COMPACT.encode(obj)
    except (ValueError, TypeError):  # NaN/Infinity, a read-only mapping
        text = json.dumps(_plain(obj), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_plain(obj), separators=(",", ":"), allow_nan=False).encode("ascii")
