"""Operator mistakes that used to pass `check-config` and then failed at run time
(issue 9, item 8): each is a config error naming the field, exit 2, for both
`check-config` and `run`, before it opens anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Mosquitto
from tests.e2e import make_config
from tests.integration.test_cli import run_cli

Edit = Callable[[dict[str, Any], Path], None]


def _tls(**files: str) -> Edit:
    def edit(config: dict[str, Any], tmp: Path) -> None:
        (tmp / "not-a-cert.pem").write_text("hello\n")
        config["mqtt"]["tls"] = {k: str(tmp / v) for k, v in files.items()}
    return edit


def _device(key: str, value: Any) -> Edit:
    def edit(config: dict[str, Any], tmp: Path) -> None:
        config["devices"][0][key] = value
    return edit


def _point(key: str, value: Any) -> Edit:
    def edit(config: dict[str, Any], tmp: Path) -> None:
        config["devices"][0]["datapoints"][0][key] = value
    return edit


def _mqtt(key: str, value: Any) -> Edit:
    def edit(config: dict[str, Any], tmp: Path) -> None:
        config["mqtt"][key] = value
    return edit


def _raw(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


CASES: list[tuple[str, Edit, str, str]] = [
    ("missing ca_file", _tls(ca_file="nowhere.pem"), "mqtt.tls.ca_file", "No such file"),
    ("ca_file not a certificate", _tls(ca_file="not-a-cert.pem"), "mqtt.tls.ca_file",
     "not a usable PEM"),
    ("cert_file not a certificate", _tls(cert_file="not-a-cert.pem"), "mqtt.tls.cert_file",
     "not a usable PEM"),
    ("trailing newline in a device id", _device("id", "meter1\n"), "devices[0].id",
     "[A-Za-z0-9_-]+"),
    ("trailing newline in a datapoint name", _point("name", "h0\n"),
     "devices[0].datapoints[0].name", "[A-Za-z0-9_]+"),
    ("70,000-character id", _device("id", "m" * 70_000), "devices[0].id", "at most 64"),
    ("control character in the base topic", _mqtt("base_topic", "mod\x01bus"),
     "mqtt.base_topic", "control characters"),
    ("newline in the client id", _mqtt("client_id", "bridge\n"), "mqtt.client_id",
     "control characters"),
    ("reply prefix under the base topic", _mqtt("reply_prefix", "modbus/replies"),
     "mqtt.reply_prefix", "overlaps mqtt.base_topic"),
]
YAML_CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("timeout .inf", _raw("timeout: 0.3", "timeout: .inf"), "devices[0].timeout"),
    ("scale .nan", _raw("scale: 0.1", "scale: .nan"), "devices[0].datapoints[2].scale"),
    ("command_deadline .inf", _raw("command_deadline: 5.0", "command_deadline: .inf"),
     "bus.command_deadline"),
]


def _check(tmp_path: Path, text: str, mosquitto: Mosquitto, field: str) -> str:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    checked = run_cli("check-config", str(path))
    assert checked.returncode == 2, (checked.stdout, checked.stderr)
    assert field in checked.stderr, checked.stderr
    assert "Traceback" not in checked.stderr
    ran = run_cli("run", "--config", str(path))
    assert ran.returncode == 2, ran.stderr
    assert field in ran.stderr and "Traceback" not in ran.stderr
    return checked.stderr


@pytest.mark.parametrize(("what", "edit", "field", "says"), CASES, ids=[c[0] for c in CASES])
def test_mistake_is_a_config_error(tmp_path: Path, mosquitto: Mosquitto, what: str,
                                   edit: Edit, field: str, says: str) -> None:
    import yaml
    config = make_config(mosquitto.port, "/dev/ttyUSB0")
    edit(config, tmp_path)
    stderr = _check(tmp_path, yaml.safe_dump(config, width=10**6), mosquitto, field)
    assert says in stderr, stderr
    assert len(stderr) < 2000, "the 70,000-character value was echoed"


@pytest.mark.parametrize(("what", "edit", "field"), YAML_CASES,
                         ids=[c[0] for c in YAML_CASES])
def test_non_finite_numbers_are_config_errors(tmp_path: Path, mosquitto: Mosquitto, what: str,
                                              edit: Callable[[str], str], field: str) -> None:
    import yaml
    text = yaml.safe_dump(make_config(mosquitto.port, "/dev/ttyUSB0"), width=10**6)
    changed = edit(text)
    assert changed != text
    stderr = _check(tmp_path, changed, mosquitto, field)
    assert "finite" in stderr, stderr
