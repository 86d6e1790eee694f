#!/usr/bin/env bash
# torch-rechub peer on mfh's Census split: installs torch and torch-rechub into
# bench/.venv on demand (a large download), then writes COMPARE_OUT/peers/rechub.json;
# rerun `mfh compare` (same --out) to add the rows to table.md. Not part of CI.
#   bench/peers/run_rechub_census.sh CENSUS_DIR COMPARE_OUT [SEEDS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch_rechub, pandas" 2>/dev/null || "$venv/bin/pip" install -q torch torch-rechub pandas numpy scikit-learn
"$venv/bin/python" "$here/peers/rechub_census.py" --census "$1" --out "$2/peers/rechub.json" --seeds "${3:-3}"
