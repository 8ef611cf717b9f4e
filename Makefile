# The two commands a newcomer needs:
#   make demo   - hardware-free demo (simulated RS-485 bus, local broker, bridge)
#   make test   - the whole test suite
# Both install what they need first (Debian/Ubuntu: mosquitto, socat; a venv in .venv).

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# systemd: only for `systemd-analyze verify` of deploy/modbus-bridge.service in the tests.
APT_PKGS := mosquitto mosquitto-clients socat openssl systemd

.PHONY: setup system-packages ha-venv demo test lint bench fuzz

system-packages:
	@missing=""; for c in mosquitto mosquitto_pub mosquitto_passwd socat openssl systemd-analyze; do command -v $$c >/dev/null || missing=1; done; \
	pkgs="$(APT_PKGS)"; \
	$(PY) -c 'import ensurepip, venv' 2>/dev/null || { missing=1; pkgs="$$pkgs python3-venv"; }; \
	if [ -n "$$missing" ]; then \
	  echo "installing $$pkgs"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	fi; \
	$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (PY=python3.11 make ...)")'

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: system-packages $(BIN)/python
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'

demo: setup
	$(BIN)/bridge demo

# A real Home Assistant (pinned in tests/real_ha/requirements.txt) in its own venv on
# Python 3.13, cached in ~/.cache/modbus-bridge: minutes the first time, instant after.
ha-venv:
	@bash tests/real_ha/install.sh

test: setup ha-venv
	$(BIN)/ruff check bridge tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Performance scenarios (benchmarks/perf.py): prints a table, writes
# benchmarks/results/perf.json; then instructions per command under callgrind
# (benchmarks/instructions.py: a CPU figure the machine's load does not move).
# BASELINE=<source tree> adds a column measured in the same run (e.g.
# `git worktree add /tmp/base <commit>`); PEER=<spicierModbus2mqtt checkout> adds
# the peer's row.
bench: setup
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends valgrind >/dev/null; }
	$(BIN)/python -m benchmarks.perf $(if $(BASELINE),--baseline $(BASELINE)) $(if $(PEER),--peer $(PEER))
	$(BIN)/python -m benchmarks.instructions $(if $(BASELINE),--baseline $(BASELINE))
	$(BIN)/python -m benchmarks.dead_unit
	$(BIN)/python -m benchmarks.scan
	$(BIN)/python -m benchmarks.oversize
	$(BIN)/python -m benchmarks.garbage_log

fuzz: setup
	$(BIN)/python -m benchmarks.fuzz --count 20000
