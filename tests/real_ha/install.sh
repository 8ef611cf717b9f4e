#!/usr/bin/env bash
# Installs the pinned Home Assistant (requirements.txt beside this file) into its own
# venv on Python 3.13, cached outside the repository, for
# tests/integration/test_homeassistant_real.py. A second run with the same pins is a
# no-op. Never fails `make test` by itself: a failure is written to <venv>.failed and
# that test fails loudly with it (the rest of the suite still runs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements.txt"
version=$(sed -n 's/^homeassistant==//p' "$req")
venv="${BRIDGE_HA_VENV:-$HOME/.cache/modbus-bridge/ha-$version}"
failed="$venv.failed"
log="$venv.log"
if cmp -s "$req" "$venv/requirements.txt"; then
  exit 0  # installed, for exactly these pins
fi
rm -rf "$venv" "$failed"
mkdir -p "$(dirname "$venv")"

py="${HA_PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13 \
                   /root/.pyenv/versions/3.13*/bin/python3.13 /usr/bin/python3.13; do
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 13))' \
        >/dev/null 2>&1; then
      py=$candidate
      break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "no Python 3.13 found (Home Assistant $version needs it; set HA_PYTHON)" | tee "$failed"
  exit 0
fi

echo "installing Home Assistant $version into $venv with $py (first run only: minutes)"
if "$py" -m venv "$venv" >"$log" 2>&1 &&
   "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" \
     >>"$log" 2>&1; then
  cp "$req" "$venv/requirements.txt"  # the marker: complete, for these pins
  echo "Home Assistant $version installed"
else
  { echo "installing Home Assistant $version failed (log: $log):"; tail -n 40 "$log"; } \
    >"$failed"
  echo "Home Assistant install FAILED: see $failed (test_homeassistant_real will fail)"
fi
exit 0
