"""Untrusted MQTT payload bytes -> JSON values, safely. Pure.

`json.loads` alone accepts NaN/Infinity, parses 100,000-digit numbers (or raises
a bare ValueError past Python's 4,300-digit limit), recurses until it overflows
on deep nesting, and lets a duplicate key silently win. Each of those becomes a
typed `RequestError` here, before any command is built.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.core.errors import InvalidJson, InvalidRequest, OutOfRange

MAX_PAYLOAD = 65536  # bytes; checked before decoding so a flood costs nothing
MAX_DIGITS = 4300  # Python's int<->str limit; longer numbers are refused, not parsed


def short(value: object) -> str:
    """repr() for messages, capped: errors are published, echo little."""
    if isinstance(value, int) and value.bit_length() > 128:
        return "a number that large"  # repr() of a 5,000-digit int raises
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _BadNumber(Exception):
    pass


class _NotJson(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; JSON (RFC 8259) does not.
    raise _NotJson(f"{name} is not JSON")


def _parse_int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise _BadNumber(f"a number with {len(text)} digits is out of range")
    return int(text)


class _Duplicate(Exception):
    pass


def _object(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) != len(items):
        raise _Duplicate
    return obj


# Commands nearly never repeat a key: they are decoded by one decoder kept for all (a
# decoder and its scanner built per call were half of json.loads' time), and only a
# payload with a duplicate key is decoded again, noting each one.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_parse_int,
                            object_pairs_hook=_object)


def check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise InvalidRequest(f"payload of {len(payload)} bytes exceeds the limit of "
                             f"{MAX_PAYLOAD} bytes")


def load_json(payload: bytes, duplicates: list[str] | None = None) -> Any:
    """Decode and parse JSON; refuse what json.loads would accept but we won't."""
    check_size(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if text.startswith("\ufeff"):  # a BOM is harmless: tolerate it ("utf-8-sig" is a
        text = text[1:]  # codec in Python, a tenth of this function's time)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # RFC 8259 leaves duplicate keys undefined; for commands that write to
        # hardware "the last one wins" is too quiet, so they are refused.
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj and duplicates is not None:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        try:
            return _DECODER.decode(text)
        except _Duplicate:
            return json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int,
                              object_pairs_hook=pairs)
    except _BadNumber as exc:
        raise OutOfRange(str(exc)) from None
    except _NotJson as exc:
        raise InvalidJson(f"payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJson("payload is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError
        raise InvalidJson(f"payload is not valid JSON: {exc}") from None


def no_duplicates(duplicates: list[str]) -> None:
    if duplicates:
        raise InvalidRequest(f"duplicate key {short(duplicates[0])}", duplicates[0])


def kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")
