#!/usr/bin/env bash
# Python model.predict against the Rust request path (bench/python_predict.py), from a
# fresh clone: builds the CLI (to prepare the bundled KuaiRand slice), installs the
# package into target/pyenv (as python/run_tests.sh does), trains MMoE and MFH briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MFH_PYENV:-target/pyenv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "./python"
cargo build -q -p mfh --features parquet,serve   # the features of the tests' build
work=$(mktemp -d)
target/debug/mfh prepare kuairand --raw data/kuairand-pure --out "$work/data" >/dev/null
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; flags: $(grep -m1 -ow 'avx512f' /proc/cpuinfo || echo no-avx512f)"
"$venv/bin/python" bench/python_predict.py "$work/data/kuairand.toml" "$work/models" "$@"
rm -rf "$work"
