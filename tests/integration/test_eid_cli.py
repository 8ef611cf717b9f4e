"""`bridge eid inspect` and `bridge check-config` on EIDs, as a person runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.integration.test_cli import run_cli

EIDS = Path(__file__).parent.parent / "data" / "eids"
STIEBEL = "SGr_04_0015_xxxx_StiebelEltron_HeatPump_V1.0.0.xml"
WAGO_BLOCK = "SGr_04_0014_0000_WAGO_SmartMeterV0.2.1-Blocktransfer.xml"


def test_inspect_prints_the_table() -> None:
    out = run_cli("eid", "inspect", str(EIDS / STIEBEL), "--properties", "slave_id=2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Stiebel-Eltron Internet Service Gateway ISG (EID 1.0.0)"
    assert "connection: unit 2, tcp port 502" in lines
    row = next(line.split() for line in lines if line.startswith("HeatPumpBase_OutsideAirTemp"))
    assert row == ["HeatPumpBase_OutsideAirTemp", "input", "506", "int16", "big", "0.1", "°C",
                   "R", "-60..80"]
    assert "42 datapoints" in lines and "skipped: none" in lines


def test_inspect_lists_skipped_points_with_the_reason() -> None:
    out = run_cli("eid", "inspect", str(EIDS / WAGO_BLOCK))
    assert out.returncode == 0, out.stderr
    assert "skipped (1):" in out.stdout
    assert "  PowerFactor/PowerFactorL2: address 205226 gives 205226..205227, outside" \
           " 0..65535" in out.stdout


def test_inspect_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    missing = run_cli("eid", "inspect", str(tmp_path / "nope.xml"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    (tmp_path / "bad.xml").write_text("<DeviceFrame")
    bad = run_cli("eid", "inspect", str(tmp_path / "bad.xml"))
    assert bad.returncode == 2 and "not a readable SGr EID" in bad.stderr
    unknown = run_cli("eid", "inspect", str(EIDS / STIEBEL), "--properties", "slaveid=2")
    assert unknown.returncode == 2
    assert "properties.slaveid: the EID has no property 'slaveid'" in unknown.stderr


def test_check_config_reads_the_eid_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "eids").mkdir()
    shutil.copy(EIDS / WAGO_BLOCK, tmp_path / "eids" / WAGO_BLOCK)
    config = {"devices": [{"id": "wago", "serial": {"port": "/dev/ttyUSB0"},
                           "eid": {"file": f"eids/{WAGO_BLOCK}"}}]}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    out = run_cli("check-config", str(path))
    assert out.returncode == 0, out.stderr
    assert "wago: EID eids/" in out.stdout and "46 datapoints" in out.stdout
    assert "skipped PowerFactor/PowerFactorL2: address 205226" in out.stdout
    config["devices"][0]["eid"]["exclude"] = ["PowerFactor/Nope"]
    path.write_text(yaml.safe_dump(config))
    out = run_cli("check-config", str(path))
    assert out.returncode == 2
    assert "devices[0].eid.exclude[0]: no data point 'PowerFactor/Nope'" in out.stderr
