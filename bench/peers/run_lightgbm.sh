#!/usr/bin/env bash
# LightGBM peer for `mfh compare`: installs lightgbm and pandas into bench/.venv on demand,
# then writes COMPARE_OUT/peers/lightgbm.json; rerun `mfh compare` (same --out) to add the
# row to table.md. Not part of CI.
#   bench/peers/run_lightgbm.sh CONFIG.toml COMPARE_OUT [SEEDS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import lightgbm, pandas" 2>/dev/null || "$venv/bin/pip" install -q lightgbm pandas numpy
"$venv/bin/python" "$here/peers/lightgbm_peer.py" --config "$1" --out "$2/peers/lightgbm.json" --seeds "${3:-3}"
