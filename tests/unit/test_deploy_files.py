"""The shipped deploy files say what README "Security" promises (issue 9, items 4, 9)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def directives(path: Path) -> list[tuple[str, str]]:
    found = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=") if "=" in line.split()[0] else \
                line.partition(" ")
            found.append((key.strip(), value.strip()))
    return found


def test_systemd_unit_stops_on_bad_config_and_bounds_memory():
    unit = dict(directives(REPO / "deploy" / "modbus-bridge.service"))
    assert unit["RestartPreventExitStatus"] == "2"
    assert unit["Restart"] == "on-failure"
    assert unit["MemoryMax"].endswith("M") and int(unit["MemoryMax"][:-1]) >= 128


def test_broker_config_ships_no_credentials_and_no_open_plaintext():
    assert not (REPO / "deploy" / "mosquitto.passwd").exists()
    conf = directives(REPO / "mosquitto.conf")
    listeners = [value for key, value in conf if key == "listener"]
    assert listeners == ["1883 127.0.0.1"], listeners  # plaintext on loopback only
    assert ("allow_anonymous", "false") in conf
    assert ("use_username_as_clientid", "true") in conf
    assert ("max_packet_size", "262144") in conf
    acl = (REPO / "deploy" / "mosquitto.acl").read_text()
    assert "pattern read replies/%u/#" in acl
