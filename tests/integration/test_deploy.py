"""The deploy/ files work: the systemd unit passes `systemd-analyze verify` with no
warning and keeps its hardening; the udev rules parse; the env file example and the
two-bridges example configs load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config.load import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "modbus-bridge.service"


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: `make test` installs Debian's systemd package"
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)


def installed_copy(tmp_path: Path, text: str) -> Path:
    """The unit as installed, ExecStart pointing at this venv's `bridge` (verify
    checks that the program exists)."""
    bridge = Path(sys.executable).parent / "bridge"
    assert bridge.exists()
    path = tmp_path / "modbus-bridge.service"
    path.write_text(text.replace("/opt/modbus-bridge/.venv/bin/bridge", str(bridge)))
    return path


def test_systemd_unit_verifies_without_a_warning(tmp_path):
    result = verify(installed_copy(tmp_path, UNIT.read_text()))
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""


def test_verify_does_catch_mistakes(tmp_path):
    """systemd-analyze exits 0 even for a bad directive: the warnings are the signal."""
    broken = UNIT.read_text().replace("DevicePolicy=closed", "DevicePolicy=closd") \
        .replace("NoNewPrivileges=true", "NoNewPriviledges=true")
    out = verify(installed_copy(tmp_path, broken))
    assert "Failed to parse device policy" in out.stderr
    assert "Unknown key 'NoNewPriviledges'" in out.stderr


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_keeps_serial_access_and_hardening():
    unit = directives(UNIT.read_text())
    assert unit["SupplementaryGroups"] == ["dialout"]
    assert unit["DevicePolicy"] == ["closed"]
    assert unit["DeviceAllow"] == ["char-ttyUSB rw", "char-ttyACM rw", "char-ttyS rw"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # bad config: restarting cannot help
    assert unit["Restart"] == ["on-failure"]
    assert unit["EnvironmentFile"] == ["-/etc/modbus-bridge/env"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert unit[key] == ["strict" if key == "ProtectSystem" else "true"]
    assert "PrivateDevices" not in unit  # it would hide the serial ports
    assert unit["ExecStart"][0].endswith("bridge run --config /etc/modbus-bridge/bridge.yaml")


_RULE_PART = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_]+)\})?'
                        r'(?P<op>==|!=|\+=|:=|=)"(?P<value>[^"]*)"$')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "KERNELS", "DRIVER", "DRIVERS",
               "ATTRS", "ATTR", "ENV"}
_ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "OWNER", "ATTR", "ENV", "RUN"}


def test_udev_rules_parse():
    rules = [line for line in (DEPLOY / "99-modbus-serial.rules").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(rules) == 2
    for rule in rules:
        parts = [_RULE_PART.match(p.strip()) for p in rule.split(",")]
        assert all(parts), rule
        for part in parts:
            assert part is not None
            keys = _MATCH_KEYS if part["op"] in ("==", "!=") else _ASSIGN_KEYS
            assert part["key"] in keys, (part["key"], part["op"])
    assert 'ATTR{latency_timer}="1"' in rules[1] and 'DRIVER=="ftdi_sio"' in rules[1]
    assert 'SYMLINK+="modbus-hall"' in rules[0]


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_]+", key), line
            pairs[key] = value
    return pairs


def test_env_file_example_sets_the_secrets():
    env = env_file(DEPLOY / "modbus-bridge.env.example")
    config = load_config(DEPLOY / "two-bridges" / "hall1.yaml", env=env)
    assert config.mqtt.username == "bridge"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "change-me"


def test_two_bridges_example_shares_broker_and_base_not_ids():
    one, two = (load_config(DEPLOY / "two-bridges" / f"{name}.yaml", env={})
                for name in ("hall1", "hall2"))
    assert (one.mqtt.host, one.mqtt.port, one.mqtt.base_topic) == \
        (two.mqtt.host, two.mqtt.port, two.mqtt.base_topic)
    assert one.bridge.instance_id != two.bridge.instance_id
    assert one.mqtt.client_id != two.mqtt.client_id
    assert not {d.id for d in one.devices} & {d.id for d in two.devices}
    assert [d.unit for d in two.devices if d.tcp is not None] == [255]


@pytest.mark.parametrize("name", ["hall1", "hall2"])
def test_check_config_accepts_the_examples(name):
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config",
                          str(DEPLOY / "two-bridges" / f"{name}.yaml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stdout.startswith("ok: 2 devices"), out.stderr
