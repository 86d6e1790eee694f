#!/usr/bin/env bash
# Python model.predict against the Rust request path (bench/python_predict.py), from a
# fresh clone: builds the CLI (to prepare the bundled KuaiRand slice), installs the
# package into target/pyenv (as python/run_tests.sh does), trains MMoE and MFH briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MFH_PYENV:-target/pyenv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "./python"
cargo build -q -p mfh
work=$(mktemp -d)
target/debug/mfh prepare kuairand --raw data/kuairand-pure --out "$work/data" >/dev/null
lscpu | sed -n 's/^Model name: *//p;s/^CPU(s): *//p' | paste -sd' ' | sed 's/^/# machine: /'
"$venv/bin/python" bench/python_predict.py "$work/data/kuairand.toml" "$work/models" "$@"
rm -rf "$work"
