"""The layers stay layers: the pure core imports nothing with I/O, and each
third-party I/O library has exactly one home (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"

# library (top-level import name) -> the folder (or module) that may import it
HOMES = {
    "aiomqtt": "mqtt", "paho": "mqtt",
    "pymodbus": "modbus", "serial": "modbus",
    "pydantic": "config", "pydantic_core": "config", "pydantic_settings": "config",
    "yaml": "config",
    "sgr_specification": "sgr", "xsdata": "sgr",
    "prometheus_client": "features",
}
# Standard-library modules that do I/O or run things: never in the pure core.
IO_STDLIB = {"asyncio", "socket", "ssl", "subprocess", "selectors", "signal", "threading",
             "http", "urllib", "shutil", "tempfile"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_io_library_has_one_home(path: Path) -> None:
    wrong = sorted(name for name in imports(path)
                   if HOMES.get(name.split(".")[0], layer(path)) != layer(path))
    assert wrong == [], f"{path.name} imports {wrong} outside their home"


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")),
                         ids=lambda p: p.name)
def test_the_core_is_pure(path: Path) -> None:
    names = {name.split(".")[0] for name in imports(path)}
    assert not names & (IO_STDLIB | set(HOMES)), names
    bridge_imports = {n for n in imports(path) if n.startswith("bridge")}
    assert all(n.startswith("bridge.core") for n in bridge_imports), bridge_imports


def test_the_layer_test_sees_every_layer() -> None:
    assert {layer(p) for p in modules()} >= {"core", "config", "modbus", "device", "mqtt",
                                            "demo", "app", "registry"}
